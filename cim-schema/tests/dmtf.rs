//! The full DMTF CIM Schema 2.49 Final is the acceptance test of the metamodel and the MOF
//! compiler: it must compile without errors into exactly the classes and qualifier
//! declarations DMTF publishes, resolve as DSP0004 says, and survive a round trip through
//! the MOF writer.

use std::path::{Path, PathBuf};

use cim_schema::mof::{writer, Compiler};
use cim_schema::{CimType, Repository, Value};

const NS: &str = "root/cimv2";

fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    assert!(
        dir.is_dir(),
        "{} is missing: the DMTF schema lives in the shared directory beside the repository",
        dir.display()
    );
    dir
}

/// Unpacks the DMTF zip into a temporary directory (kept alive by the returned guard).
fn unpack_dmtf() -> (tempfile::TempDir, PathBuf) {
    let zip_path = shared().join("dmtf/cim_schema_2.49.0Final-MOFs.zip");
    let file =
        std::fs::File::open(&zip_path).unwrap_or_else(|e| panic!("{}: {e}", zip_path.display()));
    let mut archive = zip::ZipArchive::new(file).expect("DMTF zip");
    let dir = tempfile::tempdir().expect("temp dir");
    archive.extract(dir.path()).expect("unzip");
    let root = dir.path().join("cim_schema_2.49.0.mof");
    (dir, root)
}

fn compile_dmtf() -> (tempfile::TempDir, Repository) {
    let (dir, root) = unpack_dmtf();
    let mut repo = Repository::new();
    let (summary, warnings) = Compiler::new(&mut repo, NS)
        .compile_files(&[root])
        .unwrap_or_else(|d| {
            panic!(
                "DMTF 2.49 failed to compile:
{}",
                cim_schema::mof::render(&d)
            )
        });
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(summary.classes, 1631);
    assert_eq!(summary.qualifiers, 70);
    assert_eq!(summary.instances, 0);
    (dir, repo)
}

#[test]
fn dmtf_249_compiles_to_1631_classes_and_70_qualifiers() {
    let (_dir, repo) = compile_dmtf();
    let ns = repo.namespace(NS).unwrap();
    assert_eq!(ns.classes().len(), 1631);
    assert_eq!(ns.qualifiers().len(), 70);
}

#[test]
fn computer_system_is_resolved_as_dsp0004_says() {
    let (_dir, repo) = compile_dmtf();
    let cs = repo.class(NS, "cim_computersystem").unwrap();
    assert_eq!(cs.name.as_str(), "CIM_ComputerSystem");
    assert_eq!(cs.superclass.as_ref().unwrap().as_str(), "CIM_System");
    let keys: Vec<&str> = cs.keys().map(|k| k.name.as_str()).collect();
    // Declaration order: Name is inherited from CIM_ManagedSystemElement and made a key by
    // CIM_System's override, which keeps its position; CreationClassName is new in CIM_System.
    assert_eq!(keys, ["Name", "CreationClassName"]);
    assert_eq!(
        cs.property("Name").unwrap().class_origin.as_str(),
        "CIM_System"
    );

    // EnabledState comes from CIM_EnabledLogicalElement with its ValueMap and Values.
    let es = cs.property("EnabledState").unwrap();
    assert!(es.propagated);
    assert_eq!(es.class_origin.as_str(), "CIM_EnabledLogicalElement");
    assert_eq!(es.ty, CimType::UInt16);
    let value_map = es
        .qualifiers
        .value("ValueMap")
        .unwrap()
        .as_str_array()
        .unwrap();
    assert_eq!(
        &value_map[..12],
        [
            "0",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
            "8",
            "9",
            "10",
            "11..32767"
        ]
    );
    let values = es
        .qualifiers
        .value("Values")
        .unwrap()
        .as_str_array()
        .unwrap();
    assert_eq!(values[2], "Enabled");
    assert_eq!(values[3], "Disabled");
    assert_eq!(values.len(), value_map.len());
    assert!(es.qualifiers.get("ValueMap").unwrap().propagated);

    // NameFormat is overridden here: local, with the override's own ValueMap.
    let nf = cs.property("NameFormat").unwrap();
    assert!(!nf.propagated);
    assert_eq!(nf.class_origin.as_str(), "CIM_ComputerSystem");
    assert!(nf
        .qualifiers
        .value("ValueMap")
        .unwrap()
        .as_str_array()
        .unwrap()
        .contains(&"IP"));

    // Abstract is Restricted: CIM_System has it, CIM_ComputerSystem must not inherit it.
    assert!(repo.class(NS, "CIM_System").unwrap().is_abstract());
    assert!(!cs.is_abstract());

    // Dedicated is an Indexed array (ArrayType qualifier).
    let dedicated = cs.property("Dedicated").unwrap();
    assert_eq!(
        dedicated.array.unwrap().kind,
        cim_schema::ArrayKind::Indexed
    );

    let rsc = cs.method("RequestStateChange").unwrap();
    assert_eq!(rsc.class_origin.as_str(), "CIM_EnabledLogicalElement");
    assert_eq!(rsc.return_type, CimType::UInt32);
}

#[test]
fn define_system_parameters_carry_embedded_instance_and_out() {
    let (_dir, repo) = compile_dmtf();
    let vsms = repo
        .class(NS, "CIM_VirtualSystemManagementService")
        .unwrap();
    let define = vsms.method("DefineSystem").unwrap();
    let names: Vec<&str> = define.parameters.keys().map(|n| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "SystemSettings",
            "ResourceSettings",
            "ReferenceConfiguration",
            "ResultingSystem",
            "Job"
        ]
    );
    let ss = define.parameters.get("SystemSettings").unwrap();
    assert_eq!(ss.ty, CimType::String);
    assert_eq!(
        ss.qualifiers.str("EmbeddedInstance"),
        Some("CIM_VirtualSystemSettingData")
    );
    assert!(ss.is_in() && !ss.is_out());
    let rs = define.parameters.get("ResourceSettings").unwrap();
    assert!(rs.array.is_some());
    assert_eq!(
        rs.qualifiers.str("EmbeddedInstance"),
        Some("CIM_ResourceAllocationSettingData")
    );
    let job = define.parameters.get("Job").unwrap();
    assert_eq!(job.ty, CimType::Reference);
    assert_eq!(
        job.reference_class.as_ref().unwrap().as_str(),
        "CIM_ConcreteJob"
    );
    assert!(job.is_out() && !job.is_in());
    let resulting = define.parameters.get("ResultingSystem").unwrap();
    assert_eq!(
        resulting.reference_class.as_ref().unwrap().as_str(),
        "CIM_ComputerSystem"
    );
}

#[test]
fn associations_are_indexed_by_role() {
    let (_dir, repo) = compile_dmtf();
    let ns = repo.namespace(NS).unwrap();
    let sd = repo.class(NS, "CIM_SystemDevice").unwrap();
    assert!(sd.is_association());
    let refs: Vec<(&str, &str)> = sd
        .references()
        .map(|r| {
            (
                r.name.as_str(),
                r.reference_class.as_ref().unwrap().as_str(),
            )
        })
        .collect();
    assert_eq!(
        refs,
        [
            ("GroupComponent", "CIM_System"),
            ("PartComponent", "CIM_LogicalDevice")
        ]
    );
    assert!(sd
        .property("GroupComponent")
        .unwrap()
        .qualifiers
        .is_true("Aggregate"));
    let roles = ns.association_roles("CIM_System");
    assert!(roles
        .iter()
        .any(|r| r.association == "CIM_SystemDevice" && r.role == "GroupComponent"));
    // A computer system is reached through its superclass CIM_System's roles.
    let reaching = ns.associations_reaching("CIM_ComputerSystem");
    assert!(reaching
        .iter()
        .any(|r| r.association == "CIM_HostedDependency"));
    assert!(ns.is_subclass_of("CIM_SystemDevice", "CIM_Component"));
    assert!(ns.descendants("CIM_EnabledLogicalElement").len() > 100);
}

/// The experimental 2.41 migration service and capabilities are not in 2.49 Final and
/// compile on top of it. Final already has CIM_VirtualSystemMigrationSettingData (2.33.0,
/// newer than the experimental 2.17.0 draft), so redefining it is refused, precisely.
#[test]
fn experimental_migration_classes_compile_on_top() {
    let (_dir, mut repo) = compile_dmtf();
    let dir = shared().join("dmtf/experimental-2.41");
    let files: Vec<PathBuf> = [
        "CIM_VirtualSystemMigrationCapabilities.mof",
        "CIM_VirtualSystemMigrationService.mof",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    let (summary, _) = Compiler::new(&mut repo, NS)
        .compile_files(&files)
        .unwrap_or_else(|d| panic!("{}", cim_schema::mof::render(&d)));
    assert_eq!(summary.classes, 2);
    let svc = repo.class(NS, "CIM_VirtualSystemMigrationService").unwrap();
    assert!(svc.method("MigrateVirtualSystemToHost").is_some());
    assert!(svc.method("MigrateVirtualSystemToSystem").is_some());
    assert!(svc.qualifiers.is_true("Experimental"));

    let errors = Compiler::new(&mut repo, NS)
        .compile_files(&[dir.join("CIM_VirtualSystemMigrationSettingData.mof")])
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!((e.line, e.column), (10, 7));
    assert!(
        e.message
            .contains("class 'CIM_VirtualSystemMigrationSettingData' already exists"),
        "{e}"
    );
    let final_sd = repo
        .class(NS, "CIM_VirtualSystemMigrationSettingData")
        .unwrap();
    assert_eq!(final_sd.qualifiers.str("Version"), Some("2.33.0"));
}

#[test]
fn writer_output_recompiles_to_an_identical_repository() {
    let (_dir, repo) = compile_dmtf();
    let ns = repo.namespace(NS).unwrap();
    let text = writer::namespace(ns);
    let mut again = Repository::new();
    let (summary, _) = Compiler::new(&mut again, NS)
        .compile_str("written.mof", &text)
        .unwrap_or_else(|d| {
            panic!(
                "writer output does not compile:
{}",
                cim_schema::mof::render(&d[..d.len().min(5)])
            )
        });
    assert_eq!(summary.classes, 1631);
    assert_eq!(summary.qualifiers, 70);
    let again_ns = again.namespace(NS).unwrap();
    for c in ns.classes() {
        let c2 = again_ns.class(c.name.as_str()).unwrap();
        assert_eq!(c, c2, "class {} differs after the round trip", c.name);
    }
    assert_eq!(repo, again);
    // Printing is stable: the second print is byte-identical.
    assert_eq!(writer::namespace(again_ns), text);
    assert!(matches!(
        ns.qualifier("Key").unwrap().default,
        Some(Value::Boolean(false))
    ));
}
