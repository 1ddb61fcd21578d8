//! Any text given to the MOF compiler yields a summary or diagnostics: never a panic, a hang
//! or a stack overflow. Qualifier declarations are prepended so that inputs reach the class
//! and instance paths, not only the "qualifier not declared" error.
#![no_main]

use cim_schema::mof::Compiler;
use cim_schema::Repository;
use libfuzzer_sys::fuzz_target;

const PRELUDE: &str = "Qualifier Key : boolean = false, Scope(property, reference), Flavor(DisableOverride, ToSubclass);
Qualifier Association : boolean = false, Scope(association), Flavor(DisableOverride, ToSubclass);
Qualifier Abstract : boolean = false, Scope(class, association, indication), Flavor(EnableOverride, Restricted);
Qualifier Override : string = null, Scope(property, reference, method), Flavor(EnableOverride, Restricted);
Qualifier Description : string = null, Scope(any), Flavor(EnableOverride, ToSubclass, Translatable);
Qualifier ValueMap : string[], Scope(property, method, parameter);
Qualifier EmbeddedInstance : string = null, Scope(property, method, parameter);
Qualifier In : boolean = true, Scope(parameter), Flavor(DisableOverride, ToSubclass);
";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut repo = Repository::new();
    let _ = Compiler::new(&mut repo, "root/fuzz").compile_str("fuzz.mof", &format!("{PRELUDE}{text}"));
    // What compiled must print; printing must not panic either.
    if let Ok(ns) = repo.namespace("root/fuzz") {
        let _ = cim_schema::mof::writer::namespace(ns);
    }
});
