//! The schema cimvirtd serves: the MOF under `mof/`, embedded in the binary and compiled at
//! start-up into the namespaces `root/virt` and `interop` (also reachable as
//! `root/interop`).

use cim_schema::mof::{Compiler, Diagnostic, Embedded};
use cim_schema::Repository;

/// Namespace of the virtualization classes and their instances.
pub const VIRT_NAMESPACE: &str = "root/virt";
/// Namespace of profile registration and the object manager.
pub use cimom::INTEROP_NAMESPACE;

/// The embedded MOF files, by their path under `mof/`.
pub const FILES: &[(&str, &str)] = &[
    ("cimvirt.mof", include_str!("../../mof/cimvirt.mof")),
    ("qualifiers.mof", include_str!("../../mof/qualifiers.mof")),
    ("cim_schema.mof", include_str!("../../mof/cim_schema.mof")),
    ("kvm_virt.mof", include_str!("../../mof/kvm_virt.mof")),
    ("kvm_interop.mof", include_str!("../../mof/kvm_interop.mof")),
];

/// The file that includes the others.
pub const ROOT: &str = "cimvirt.mof";

/// Compiles the embedded schema into a new repository.
pub fn load() -> Result<Repository, Vec<Diagnostic>> {
    let mut repo = Repository::new();
    Compiler::new(&mut repo, VIRT_NAMESPACE)
        .with_sources(Embedded::new(FILES))
        .compile_files(&[ROOT])?;
    Ok(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_schema_compiles_into_both_namespaces() {
        let repo = load().unwrap_or_else(|d| panic!("{}", cim_schema::mof::render(&d)));
        let virt = repo.namespace(VIRT_NAMESPACE).unwrap();
        let interop = repo.namespace(INTEROP_NAMESPACE).unwrap();
        let kvm = |ns: &cim_schema::Namespace| {
            ns.classes()
                .filter(|c| c.name.as_str().starts_with("KVM_"))
                .count()
        };
        assert_eq!(kvm(virt), 90);
        assert_eq!(kvm(interop), 3);
        assert!(interop.class("CIM_RegisteredProfile").is_some());

        let cs = virt.class("KVM_ComputerSystem").unwrap();
        assert!(virt.is_subclass_of("KVM_ComputerSystem", "CIM_EnabledLogicalElement"));
        assert!(cs.method("RequestStateChange").is_some());
        assert_eq!(
            cs.keys().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            ["Name", "CreationClassName"]
        );
        let vsms = virt.class("KVM_VirtualSystemManagementService").unwrap();
        let define = vsms.method("DefineSystem").unwrap();
        assert_eq!(
            define
                .parameters
                .get("SystemSettings")
                .unwrap()
                .qualifiers
                .str("EmbeddedInstance"),
            Some("CIM_VirtualSystemSettingData")
        );
        let vssd = virt.class("KVM_VirtualSystemSettingData").unwrap();
        assert!(virt.is_subclass_of(vssd.name.as_str(), "Virt_VirtualSystemSettingData"));
        assert!(vssd.property("ClockOffset").is_some() && vssd.property("Emulator").is_some());
        assert!(virt
            .class("KVM_ComputerSystemModifiedIndication")
            .unwrap()
            .is_indication());
        assert!(virt
            .class("KVM_SettingsDefineCapabilities")
            .unwrap()
            .is_association());
    }
}
