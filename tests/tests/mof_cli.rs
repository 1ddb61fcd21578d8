//! `cimvirtd mof compile` and `cimvirtd mof print`, run as a user runs them.

use std::fs;

use cimvirt_tests::{repo_dir, run_cimvirtd, Dmtf};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn compile_reports_the_full_dmtf_schema() {
    let dmtf = Dmtf::unpack();
    let out = run_cimvirtd(["mof".as_ref(), "compile".as_ref(), dmtf.root().as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.trim_end()
            .ends_with("1631 classes, 70 qualifier declarations, 0 instances"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
}

#[test]
fn compile_reports_the_served_schema() {
    let out = run_cimvirtd([
        "mof".as_ref(),
        "compile".as_ref(),
        repo_dir().join("mof/cimvirt.mof").as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .trim_end()
            .ends_with("312 classes, 140 qualifier declarations, 0 instances"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn compile_errors_name_the_place_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.mof");
    fs::write(&bad, "class A {\n  uint8 X = 999;\n  strng Y;\n};\n").unwrap();
    let out = run_cimvirtd(["mof".as_ref(), "compile".as_ref(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    let path = bad.display();
    let range =
        format!("{path}:2:13: error: default of A.X: 999 is out of range for uint8 (0 to 255)");
    let syntax = format!("{path}:3:3: error: 'strng' is not a CIM data type");
    assert!(err.contains(&range), "{err}");
    assert!(err.contains("      strng Y;\n      ^"), "{err}");
    assert!(
        err.find(&range) < err.find(&syntax),
        "in source order: {err}"
    );
    assert!(err.ends_with("2 errors found\n"), "{err}");
}

#[test]
fn include_dirs_and_namespace_flags() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    fs::create_dir(&lib).unwrap();
    fs::write(lib.join("quals.mof"), "Qualifier Key : boolean = false, Scope(property, reference), Flavor(DisableOverride, ToSubclass);").unwrap();
    let main = dir.path().join("main.mof");
    fs::write(&main, "#pragma include (\"quals.mof\")\nclass T_A { [Key] string Id; };\ninstance of T_A { Id = \"x\"; };\n").unwrap();
    let without = run_cimvirtd(["mof".as_ref(), "compile".as_ref(), main.as_os_str()]);
    assert_eq!(without.status.code(), Some(1));
    assert!(
        stderr(&without).contains("included file 'quals.mof' not found"),
        "{}",
        stderr(&without)
    );
    let with = run_cimvirtd([
        "mof".as_ref(),
        "compile".as_ref(),
        "-I".as_ref(),
        lib.as_os_str(),
        "--namespace".as_ref(),
        "root/x".as_ref(),
        main.as_os_str(),
    ]);
    assert!(with.status.success(), "{}", stderr(&with));
    assert!(stdout(&with).contains("1 classes, 1 qualifier declarations, 1 instances"));
}

#[test]
fn print_shows_a_resolved_class_with_inherited_features_marked() {
    let dmtf = Dmtf::unpack();
    let out = run_cimvirtd([
        "mof".as_ref(),
        "print".as_ref(),
        "cim_computersystem".as_ref(),
        dmtf.root().as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("class CIM_ComputerSystem : CIM_System {"),
        "{text}"
    );
    assert!(
        text.contains("   // from CIM_EnabledLogicalElement\n"),
        "{text}"
    );
    assert!(text.contains("   uint16 EnabledState"), "{text}");
    assert!(text.contains("uint32 RequestStateChange("), "{text}");

    let declared = run_cimvirtd([
        "mof".as_ref(),
        "print".as_ref(),
        "--declared".as_ref(),
        "CIM_ComputerSystem".as_ref(),
        dmtf.root().as_os_str(),
    ]);
    let declared = stdout(&declared);
    assert!(
        !declared.contains("EnabledState"),
        "declared form has only the class's own features"
    );

    let missing = run_cimvirtd([
        "mof".as_ref(),
        "print".as_ref(),
        "CIM_Nothing".as_ref(),
        dmtf.root().as_os_str(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("class 'CIM_Nothing' is not defined"));
}

#[test]
fn help_documents_the_commands() {
    let out = run_cimvirtd(["mof", "compile", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    assert!(
        help.contains("--include <DIR>") && help.contains("--namespace"),
        "{help}"
    );
    let out = run_cimvirtd(["mof"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing subcommand is a usage error"
    );
}
