//! WBEM URI parsing never panics; whatever parses prints as a typed URI that parses back to
//! the same path, and as an untyped URI that parses again. (The untyped form cannot always
//! round-trip exactly: a string key that looks like a path reads back as a reference. That
//! ambiguity is why DSP0207 has the typed form.)
#![no_main]

use cim_schema::ObjectPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(path) = ObjectPath::parse(text) else { return };
    let typed = path.to_typed_uri();
    let again = ObjectPath::parse(&typed).unwrap_or_else(|e| panic!("{text:?} -> {typed:?}: {e}"));
    assert_eq!(again, path, "typed round trip of {text:?} via {typed:?}");
    let untyped = path.to_uri();
    if let Err(e) = ObjectPath::parse(&untyped) {
        panic!("{text:?} -> {untyped:?}: {e}");
    }
});
