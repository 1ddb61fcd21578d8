//! The MOF compiler and the repository's DSP0004 rules, on small schemas written here.

use std::fs;
use std::path::Path;

use cim_schema::mof::{writer, Compiler, Diagnostic, Embedded, Severity};
use cim_schema::{ObjectPath, Repository, Value};

const NS: &str = "root/test";

/// The qualifier declarations the tests need, as DMTF declares them.
const QUALIFIERS: &str = r#"
Qualifier Association : boolean = false, Scope(association), Flavor(DisableOverride, ToSubclass);
Qualifier Abstract : boolean = false, Scope(class, association, indication), Flavor(EnableOverride, Restricted);
Qualifier Description : string = null, Scope(any), Flavor(EnableOverride, ToSubclass, Translatable);
Qualifier Key : boolean = false, Scope(property, reference), Flavor(DisableOverride, ToSubclass);
Qualifier Override : string = null, Scope(property, reference, method), Flavor(EnableOverride, Restricted);
Qualifier ValueMap : string[], Scope(property, method, parameter);
Qualifier MaxLen : uint32 = null, Scope(property, method, parameter);
Qualifier EmbeddedInstance : string = null, Scope(property, method, parameter);
Qualifier In : boolean = true, Scope(parameter), Flavor(DisableOverride, ToSubclass);
Qualifier Out : boolean = false, Scope(parameter), Flavor(DisableOverride, ToSubclass);
Qualifier Units : string = null, Scope(property, method, parameter), Flavor(EnableOverride, ToSubclass, Translatable);
"#;

fn compile(text: &str) -> Result<Repository, Vec<Diagnostic>> {
    let mut repo = Repository::new();
    let full = format!("{QUALIFIERS}\n{text}");
    Compiler::new(&mut repo, NS)
        .compile_str("test.mof", &full)
        .map(|_| repo)
}

fn first_error(text: &str) -> Diagnostic {
    let errors = compile(text).expect_err("should not compile");
    errors
        .into_iter()
        .find(Diagnostic::is_error)
        .expect("an error")
}

const BASE: &str = r#"
[Abstract] class T_Base { [Key] string Id; [Description("the size"), Units("bytes")] uint64 Size; uint32 Go([IN] uint16 How); };
class T_Thing : T_Base { [Override("Size")] uint64 Size = 4; };
"#;

#[test]
fn resolution_follows_the_flavor_rules() {
    let repo = compile(BASE).unwrap();
    let thing = repo.class(NS, "T_Thing").unwrap();
    let size = thing.property("Size").unwrap();
    assert!(!size.propagated);
    assert_eq!(size.class_origin.as_str(), "T_Thing");
    assert_eq!(size.default, Some(Value::UInt64(4)));
    // ToSubclass qualifiers come down marked propagated; Restricted Override does not go further.
    assert!(size.qualifiers.get("Description").unwrap().propagated);
    assert!(!size.qualifiers.get("Override").unwrap().propagated);
    assert!(!thing.is_abstract(), "Abstract is Restricted");
    let id = thing.property("Id").unwrap();
    assert!(id.propagated && id.is_key());
    assert_eq!(id.class_origin.as_str(), "T_Base");
    assert!(thing.method("go").unwrap().propagated);
}

#[test]
fn refuses_a_missing_superclass() {
    let e = first_error("class T_A : T_Missing { };");
    assert!(
        e.message
            .contains("names superclass 'T_Missing', which does not exist"),
        "{e}"
    );
    assert_eq!((e.line, e.column), (14, 13));
}

#[test]
fn refuses_a_qualifier_outside_its_scope() {
    let e = first_error("[Key] class T_A { string Id; };");
    assert!(e.message.contains("qualifier 'Key' is not allowed on T_A: its scope is property, reference, this is a class"), "{e}");
    let e = first_error("class T_A { [Association] string Id; };");
    assert!(e.message.contains("scope is association"), "{e}");
}

#[test]
fn refuses_a_qualifier_of_the_wrong_type() {
    let e = first_error(r#"class T_A { [MaxLen("ten")] string Id; };"#);
    assert!(
        e.message
            .contains("qualifier 'MaxLen': expected a uint32 value, found a string"),
        "{e}"
    );
    let e = first_error(r#"class T_A { [ValueMap("1")] uint8 V; };"#);
    assert!(e.message.contains("expected an array of string"), "{e}");
    let e = first_error(r#"class T_A { [Nonsense] string Id; };"#);
    assert!(
        e.message.contains("qualifier 'Nonsense' is not declared"),
        "{e}"
    );
}

#[test]
fn refuses_to_override_a_disable_override_qualifier() {
    let e = first_error(&format!(
        "{BASE} class T_More : T_Thing {{ [Key(false)] string Id; }};"
    ));
    assert!(
        e.message
            .contains("cannot change qualifier 'Key': it is DisableOverride in T_Base"),
        "{e}"
    );
    // Restating the same value is allowed.
    compile(&format!(
        "{BASE} class T_More : T_Thing {{ [Key] string Id; }};"
    ))
    .unwrap();
}

#[test]
fn refuses_a_key_below_a_keyed_class() {
    let e = first_error(&format!(
        "{BASE} class T_More : T_Thing {{ [Key] string Other; }};"
    ));
    assert!(
        e.message.contains(
            "T_More.Other cannot be a key: superclass 'T_Thing' already defines the keys"
        ),
        "{e}"
    );
}

#[test]
fn refuses_overrides_that_do_not_match() {
    let e = first_error(&format!(
        "{BASE} class T_More : T_Thing {{ [Override(\"Nope\")] string Nope; }};"
    ));
    assert!(
        e.message
            .contains("overrides 'Nope', which its superclass does not have"),
        "{e}"
    );
    let e = first_error(&format!(
        "{BASE} class T_More : T_Thing {{ string Size; }};"
    ));
    assert!(
        e.message
            .contains("overrides with a different type: string instead of uint64"),
        "{e}"
    );
}

#[test]
fn refuses_bad_instances() {
    let e = first_error(&format!("{BASE} instance of T_Base {{ Id = \"x\"; }};"));
    assert!(e.message.contains("class 'T_Base' is abstract"), "{e}");
    let e = first_error(&format!("{BASE} instance of T_Thing {{ Size = 1; }};"));
    assert!(e.message.contains("has no value for key 'Id'"), "{e}");
    let e = first_error(&format!("{BASE} instance of T_Thing {{ Id = 7; }};"));
    assert!(
        e.message
            .contains("T_Thing.Id: expected a string value, found an integer"),
        "{e}"
    );
    let e = first_error(&format!(
        "{BASE} instance of T_Thing {{ Id = \"a\"; Bogus = 1; }};"
    ));
    assert!(e.message.contains("has no property 'Bogus'"), "{e}");
    let e = first_error(&format!(
        "{BASE} instance of T_Thing {{ Id = \"a\"; }}; instance of T_Thing {{ Id = \"a\"; }};"
    ));
    assert!(e.message.contains("already exists"), "{e}");
    let e = first_error(&format!(
        "{BASE} instance of T_Thing {{ Id = \"a\"; Size = 18446744073709551616; }};"
    ));
    assert!(e.message.contains("does not fit in 64 bits"), "{e}");
    let e = first_error(&format!(
        "{BASE} instance of T_Thing {{ Id = \"a\"; Size = -1; }};"
    ));
    assert!(e.message.contains("-1 is out of range for uint64"), "{e}");
}

const ASSOC: &str = r#"
class T_Host { [Key] string Name; };
class T_Vm { [Key] string Name; [EmbeddedInstance("T_Host")] string Spec; };
[Association] class T_Runs { [Key] T_Host REF Host; [Key] T_Vm REF Vm; };
"#;

#[test]
fn aliases_resolve_forward_and_embed_instances() {
    let repo = compile(&format!(
        r#"{ASSOC}
        instance of T_Runs {{ Host = $h; Vm = $v; }};
        instance of T_Vm as $v {{ Name = "vm1"; Spec = instance of T_Host {{ Name = "inline"; }}; }};
        instance of T_Host as $h {{ Name = "host"; }};
        instance of T_Vm {{ Name = "vm2"; Spec = $h; }};"#
    ))
    .unwrap();
    let ns = repo.namespace(NS).unwrap();
    assert_eq!(ns.instance_count(), 4);
    let runs_path = ObjectPath::parse(r#"/root/test:T_Runs.Host="/root/test:T_Host.Name=\"host\"",Vm="/root/test:T_Vm.Name=\"vm1\"""#).unwrap();
    let runs = ns
        .instance(&runs_path)
        .expect("association instance keyed by references");
    assert!(matches!(runs.get("Host"), Some(Value::Reference(_))));
    let vm2 = ns
        .instance(&ObjectPath::parse(r#"/root/test:T_Vm.Name="vm2""#).unwrap())
        .unwrap();
    let Some(Value::Instance(spec)) = vm2.get("Spec") else {
        panic!("embedded instance expected")
    };
    assert_eq!(spec.get("Name"), Some(&Value::String("host".into())));
    let roles = ns.association_roles("T_Vm");
    assert_eq!(roles[0].role.as_str(), "Vm");

    // The writer prints instances back; they compile to the same instances.
    let text = writer::namespace(ns);
    let mut again = Repository::new();
    Compiler::new(&mut again, NS)
        .compile_str("again.mof", &text)
        .unwrap();
    assert_eq!(
        again.namespace(NS).unwrap().instance(&runs_path),
        Some(runs)
    );
}

#[test]
fn undefined_and_self_embedding_aliases_are_errors() {
    let e = first_error(&format!(
        "{ASSOC} instance of T_Runs {{ Host = $nobody; Vm = $nobody; }};"
    ));
    assert!(e.message.contains("alias $nobody is not defined"), "{e}");
    let e = first_error(&format!(
        "{ASSOC} instance of T_Vm as $v {{ Name = \"x\"; Spec = $v; }};"
    ));
    assert!(e.message.contains("nested too deeply"), "{e}");
}

#[test]
fn several_errors_are_reported_with_file_line_column_and_caret() {
    let errors =
        compile("class T_A { uint8 X = 300; };\nclass T_B { strin Y; };\nclass T_C { uint8 Z };\n")
            .unwrap_err();
    let errors: Vec<&Diagnostic> = errors.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors
        .iter()
        .any(|d| d.message.contains("'strin' is not a CIM data type")));
    let range = errors
        .iter()
        .find(|d| {
            d.message
                .contains("300 is out of range for uint8 (0 to 255)")
        })
        .unwrap();
    assert_eq!(range.line, 14);
    assert_eq!(range.to_string(), "test.mof:14:23: error: default of T_A.X: 300 is out of range for uint8 (0 to 255)\n    class T_A { uint8 X = 300; };\n                          ^");
    let semi = errors.iter().find(|d| d.line == 16).unwrap();
    assert!(
        semi.message
            .contains("expected ';' after the property, found '}'"),
        "{semi}"
    );
}

#[test]
fn every_literal_form_compiles() {
    let repo = compile(
        r#"class T_L {
            [Key] string S = "tab\there \"q\" \x41" " and more";
            char16 C = '\'';
            sint32 Neg = -0x10;
            uint8 Oct = 017;
            uint8 Bin = 101B;
            real32 R = 1.5e2;
            real64 Small = -.25;
            datetime When = "20240229120000.000000+060";
            datetime Span = "00000001******.******:000";
            boolean B = TRUE;
            uint16 Arr[] = { 1, null, 3 };
            uint8 Fixed[2] = { 1, 2 };
            string Nothing = NULL;
            T_L REF Self;
        };"#,
    )
    .unwrap();
    let c = repo.class(NS, "T_L").unwrap();
    let default = |n: &str| c.property(n).unwrap().default.clone();
    assert_eq!(
        default("S"),
        Some(Value::String("tab\there \"q\" A and more".into()))
    );
    assert_eq!(default("C"), Some(Value::Char16('\'')));
    assert_eq!(default("Neg"), Some(Value::SInt32(-16)));
    assert_eq!(default("Oct"), Some(Value::UInt8(15)));
    assert_eq!(default("Bin"), Some(Value::UInt8(5)));
    assert_eq!(default("R"), Some(Value::Real32(150.0)));
    assert_eq!(default("Small"), Some(Value::Real64(-0.25)));
    assert_eq!(
        default("When").unwrap().cim_type(),
        Some(cim_schema::CimType::DateTime)
    );
    assert_eq!(
        default("Arr"),
        Some(Value::Array(vec![
            Some(Value::UInt16(1)),
            None,
            Some(Value::UInt16(3))
        ]))
    );
    assert_eq!(
        c.property("Fixed").unwrap().array.unwrap().size,
        cim_schema::ArraySize::Fixed(2)
    );
    assert_eq!(default("Nothing"), None);
}

#[test]
fn includes_resolve_beside_the_file_then_in_search_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("schema/sub")).unwrap();
    fs::create_dir_all(root.join("extra")).unwrap();
    fs::write(root.join("schema/qualifiers.mof"), QUALIFIERS).unwrap();
    fs::write(
        root.join("schema/sub/a.mof"),
        "class T_A { [Key] string Id; };",
    )
    .unwrap();
    fs::write(
        root.join("extra/b.mof"),
        "#pragma locale (\"en_US\")\nclass T_B : T_A { };",
    )
    .unwrap();
    fs::write(
        root.join("schema/all.mof"),
        "#pragma include (\"qualifiers.mof\")\n#pragma include (\"sub/a.mof\")\n#pragma include (\"b.mof\")\n#pragma namespace (\"root/other\")\n#pragma include (\"qualifiers.mof\")\nclass T_C { };\n#pragma frobnicate (\"x\")\n",
    )
    .unwrap();
    let mut repo = Repository::new();
    let mut compiler = Compiler::new(&mut repo, NS);
    compiler.include_dir(root.join("extra"));
    let (summary, warnings) = compiler
        .compile_files(&[root.join("schema/all.mof")])
        .unwrap();
    assert_eq!(summary.classes, 3);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].severity, Severity::Warning);
    assert!(warnings[0]
        .message
        .contains("unknown pragma 'frobnicate' ignored"));
    assert!(repo.class(NS, "T_B").is_ok());
    assert!(repo.class("root/other", "T_C").is_ok());
    assert!(repo.class(NS, "T_C").is_err());
}

#[test]
fn include_problems_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.mof");
    fs::write(&a, "#pragma include (\"b.mof\")").unwrap();
    fs::write(dir.path().join("b.mof"), "#pragma include (\"a.mof\")").unwrap();
    let errors = Compiler::new(&mut Repository::new(), NS)
        .compile_files(&[&a])
        .unwrap_err();
    assert!(
        errors[0].message.starts_with("include cycle: "),
        "{}",
        errors[0]
    );
    assert!(errors[0].message.ends_with("a.mof"), "{}", errors[0]);

    fs::write(&a, "#pragma include (\"missing.mof\")").unwrap();
    let errors = Compiler::new(&mut Repository::new(), NS)
        .compile_files(&[&a])
        .unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("included file 'missing.mof' not found beside"),
        "{}",
        errors[0]
    );

    let errors = Compiler::new(&mut Repository::new(), NS)
        .compile_files(&[Path::new("/nonexistent.mof")])
        .unwrap_err();
    assert!(
        errors[0]
            .to_string()
            .starts_with("/nonexistent.mof: error: cannot read"),
        "{}",
        errors[0]
    );
}

#[test]
fn truncated_input_gives_errors_at_every_cut() {
    let last = "instance of T_Thing as $t { Id = \"a\\\"b\"; Size = 0x10; };";
    let text = format!("{QUALIFIERS}\n{BASE}\n{last}");
    let last_start = text.len() - last.len();
    let mut unterminated = 0;
    for cut in 0..text.len() {
        if !text.is_char_boundary(cut) {
            continue;
        }
        let result = Compiler::new(&mut Repository::new(), NS).compile_str("cut.mof", &text[..cut]);
        // Every cut inside the last statement leaves it incomplete: an error, never a panic
        // or a silently accepted half instance.
        if cut > last_start {
            let errors = result.expect_err(&format!(
                "cut at {cut} accepted: {:?}",
                &text[last_start..cut]
            ));
            if errors
                .iter()
                .any(|e| e.message.contains("unterminated string"))
            {
                unterminated += 1;
            }
        }
    }
    assert!(
        unterminated > 0,
        "cuts inside the string literal report it as unterminated"
    );
}

#[test]
fn embedded_sources_compile_with_includes() {
    let files = [
        ("qualifiers.mof", QUALIFIERS),
        (
            "schema.mof",
            "#pragma include (\"qualifiers.mof\")\nclass T_E { [Key] string Id; };",
        ),
    ];
    let mut repo = Repository::new();
    Compiler::new(&mut repo, NS)
        .with_sources(Embedded::new(&files))
        .compile_files(&["schema.mof"])
        .unwrap();
    assert!(repo.class(NS, "T_E").is_ok());
}

#[test]
fn huge_and_deep_inputs_are_refused_cleanly() {
    let deep = format!(
        "{QUALIFIERS} instance of X {{ P = {} 1;",
        "instance of X { P = ".repeat(10_000)
    );
    let errors = compile(&deep[QUALIFIERS.len()..]).unwrap_err();
    assert!(errors
        .iter()
        .any(|d| d.message.contains("nested too deeply")));
    let long = format!(
        "class T_Long {{ string S = \"{}\"; }};",
        "x".repeat(5_000_000)
    );
    let repo = compile(&long).unwrap();
    assert_eq!(
        repo.class(NS, "T_Long")
            .unwrap()
            .property("S")
            .unwrap()
            .default
            .as_ref()
            .unwrap()
            .as_str()
            .unwrap()
            .len(),
        5_000_000
    );
    let many_errors = "class ;".repeat(500);
    let errors = compile(&many_errors).unwrap_err();
    assert!(errors.len() <= 102, "{}", errors.len());
    assert!(errors.last().unwrap().message.contains("too many errors"));
}

/// Inputs that fuzzing once made misbehave (tests/fuzz-regressions/): each must compile or
/// fail with diagnostics, and finish.
#[test]
fn fuzz_regressions_end_with_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
        let result = Compiler::new(&mut Repository::new(), NS).compile_str("regression.mof", &text);
        assert!(
            result.is_err(),
            "{} compiled, but it is not valid MOF",
            path.display()
        );
        count += 1;
    }
    assert!(count > 0);
}

#[test]
fn removing_a_qualifier_everywhere_leaves_shared_features_alone() {
    let repo = compile(BASE).unwrap();
    let mut thing = (**repo.class(NS, "T_Thing").unwrap()).clone();
    assert!(thing
        .property("Size")
        .unwrap()
        .qualifiers
        .get("Description")
        .is_some());
    thing.remove_qualifier_everywhere("description");
    assert!(thing
        .properties
        .values()
        .all(|p| p.qualifiers.get("Description").is_none()));
    assert!(thing
        .property("Size")
        .unwrap()
        .qualifiers
        .get("Units")
        .is_some());
    // The repository's classes share these features and are unchanged.
    let base = repo.class(NS, "T_Base").unwrap();
    assert!(base
        .property("Size")
        .unwrap()
        .qualifiers
        .get("Description")
        .is_some());
    assert!(repo
        .class(NS, "T_Thing")
        .unwrap()
        .property("Size")
        .unwrap()
        .qualifiers
        .get("Description")
        .is_some());
}

#[test]
fn an_embedded_instance_in_mof_is_typed_without_being_added() {
    let repo = compile(
        "class Test_Rasd { [Key] string InstanceID; uint16 ResourceType; uint64 VirtualQuantity; string Names[]; };",
    )
    .unwrap();
    let text = "instance of Test_Rasd {\n  ResourceType = 3;\n  VirtualQuantity = 0x10;\n  Names = {\"a\", \"b\"};\n};\n";
    let inst = cim_schema::mof::parse_instance(&repo, NS, text).unwrap();
    assert_eq!(inst.class_name.as_str(), "Test_Rasd");
    assert_eq!(inst.get("ResourceType"), Some(&Value::UInt16(3)));
    assert_eq!(inst.get("VirtualQuantity"), Some(&Value::UInt64(16)));
    assert!(
        inst.get("InstanceID")
            .is_none_or(|v| matches!(v, Value::String(_))),
        "no key needed"
    );

    let err = cim_schema::mof::parse_instance(
        &repo,
        NS,
        "instance of Test_Rasd {\n  ResourceType = \"x\";\n};",
    )
    .unwrap_err();
    assert!(err.starts_with("MOF instance, line 2, column"), "{err}");
    let err = cim_schema::mof::parse_instance(&repo, NS, "instance of Nope { };").unwrap_err();
    assert!(err.contains("Nope"), "{err}");
    let two = "instance of Test_Rasd { }; instance of Test_Rasd { };";
    assert!(cim_schema::mof::parse_instance(&repo, NS, two)
        .unwrap_err()
        .contains("more than one"));
    assert!(cim_schema::mof::parse_instance(&repo, NS, "class X { };")
        .unwrap_err()
        .contains("no instance"));
}
