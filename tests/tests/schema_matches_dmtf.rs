//! Every CIM_ class that cimvirtd serves (mof/) is the DMTF class: same superclass,
//! properties, types, keys, defaults, qualifiers (ValueMap, Values, EmbeddedInstance, ...),
//! methods and parameters. Only the prose differs: mof/ has its own Description qualifiers.

use cim_schema::mof::Compiler;
use cim_schema::{Class, Repository};
use cimvirt_tests::{experimental_migration_files, Dmtf};
use provider::schema::{self, INTEROP_NAMESPACE, VIRT_NAMESPACE};

/// The class with every Description qualifier removed, at every level.
fn without_descriptions(class: &Class) -> Class {
    let mut c = class.clone();
    c.remove_qualifier_everywhere("Description");
    c
}

#[test]
fn every_served_cim_class_matches_dmtf() {
    let dmtf = Dmtf::unpack();
    let mut reference = Repository::new();
    let mut files = vec![dmtf.root()];
    files.extend(experimental_migration_files());
    Compiler::new(&mut reference, "root/cimv2")
        .compile_files(&files)
        .expect("DMTF compiles");
    let reference = reference.namespace("root/cimv2").unwrap();

    let served = schema::load().expect("the embedded schema compiles");
    for ns_name in [VIRT_NAMESPACE, INTEROP_NAMESPACE] {
        let ns = served.namespace(ns_name).unwrap();
        let mut compared = 0;
        for class in ns.classes().filter(|c| c.name.as_str().starts_with("CIM_")) {
            let standard = reference
                .class(class.name.as_str())
                .unwrap_or_else(|| panic!("{} is not a DMTF class", class.name));
            let ours = without_descriptions(class);
            let theirs = without_descriptions(standard);
            if ours != theirs {
                for (name, p) in ours.properties.iter() {
                    assert_eq!(
                        Some(p),
                        theirs.properties.get(name.as_str()),
                        "{}.{name} differs from DMTF",
                        class.name
                    );
                }
                for (name, m) in ours.methods.iter() {
                    assert_eq!(
                        Some(m),
                        theirs.methods.get(name.as_str()),
                        "{}.{name}() differs from DMTF",
                        class.name
                    );
                }
                assert_eq!(ours, theirs, "{} differs from DMTF", class.name);
            }
            assert!(
                class
                    .qualifiers
                    .str("Description")
                    .is_some_and(|d| !d.is_empty()),
                "{} has no description",
                class.name
            );
            compared += 1;
        }
        assert_eq!(compared, 109, "CIM_ classes in {ns_name}");
        // The qualifier declarations are DMTF's too.
        for decl in ns.qualifiers() {
            assert_eq!(
                Some(decl),
                reference.qualifier(decl.name.as_str()),
                "qualifier {}",
                decl.name
            );
        }
    }
}

#[test]
fn every_kvm_class_derives_from_a_served_dmtf_class() {
    let served = schema::load().expect("the embedded schema compiles");
    let ns = served.namespace(VIRT_NAMESPACE).unwrap();
    let mut count = 0;
    for class in ns.classes().filter(|c| c.name.as_str().starts_with("KVM_")) {
        // The nearest ancestor that is not cimvirt's own is one of the DMTF classes compared
        // with the standard above.
        let mut ancestor = class.clone();
        while !ancestor.name.as_str().starts_with("CIM_") {
            let sup = ancestor
                .superclass
                .as_ref()
                .unwrap_or_else(|| panic!("{} has no DMTF ancestor", class.name));
            ancestor = ns
                .class(sup.as_str())
                .unwrap_or_else(|| panic!("{sup} is not served"))
                .clone();
        }
        assert!(
            class.qualifiers.str("Description").is_some(),
            "{} has no description",
            class.name
        );
        count += 1;
    }
    assert_eq!(count, 90);
}
