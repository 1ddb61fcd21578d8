//! Every descriptor in `../shared/ovf` (written by VMware, VirtualBox, XenCenter, vCloud,
//! Cisco, Canonical, and DSP0243's own example) read and planned, against what its
//! SOURCES.md says it should import as.

use std::path::PathBuf;

use super::descriptor;
use super::plan::{self, DiskSource, ImportOptions, SystemPlan};
use super::OvfError;

fn shared(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/ovf")
        .join(file)
}

fn plans(file: &str, options: &ImportOptions) -> Result<Vec<SystemPlan>, OvfError> {
    let bytes = std::fs::read(shared(file)).expect("../shared/ovf sits beside the repository");
    let envelope = descriptor::parse(&bytes)?;
    envelope
        .systems
        .iter()
        .map(|system| plan::plan(&envelope, system, None, options))
        .collect()
}

/// (name, vCPUs, memory MiB, disk capacities, NICs).
type Expected = (&'static str, u32, u64, &'static [u64], usize);

fn check(file: &str, expected: &[Expected]) -> Vec<SystemPlan> {
    let plans = plans(file, &ImportOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let got: Vec<(String, u32, u64, Vec<u64>, usize)> = plans
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.vcpus,
                p.memory_mib,
                p.disks.iter().map(|d| d.capacity).collect(),
                p.nics.len(),
            )
        })
        .collect();
    let want: Vec<(String, u32, u64, Vec<u64>, usize)> = expected
        .iter()
        .map(|(n, c, m, d, nics)| (n.to_string(), *c, *m, d.to_vec(), *nics))
        .collect();
    assert_eq!(got, want, "{file}");
    plans
}

const GIB: u64 = 1 << 30;

#[test]
fn vmware_exports_import() {
    let plans = check("vmware.ovf", &[("vmw", 2, 1536, &[GIB], 4)]);
    assert_eq!(
        plans[0].skipped,
        [
            "Video card (ResourceType 24)",
            "VMCI device (ResourceType 1)"
        ]
    );
    assert!(plans[0].notes.iter().any(|n| n.starts_with("OVF product")));
    check("test-i-ova.ovf", &[("TestOva", 1, 2048, &[32 * GIB], 1)]);
    check(
        "esxvmovf-25262174.ovf",
        &[("esxvm-sb-62272164-rZ0", 2, 8192, &[32 * GIB], 1)],
    );
    check(
        "ubuntu-xenial-juju.ovf",
        &[(
            "ubuntu-xenial-16.04-cloudimg-20170815",
            2,
            1024,
            &[10 * GIB],
            0,
        )],
    );
}

#[test]
fn the_default_deployment_option_and_an_iso_on_a_required_cd() {
    let csr = check(
        "csr1000v.ovf",
        // The ISO is the second, read-only disk (its size is the file's: 0 here).
        &[(
            "Cisco CSR 1000V Cloud Services Router",
            1,
            4096,
            &[GIB, 0],
            3,
        )],
    );
    let cd = &csr[0].disks[1];
    assert!(cd.read_only);
    assert!(matches!(&cd.source, DiskSource::File { file_id, .. } if file_id == "csr1000v.iso"));
    let big = plans_with(
        "csr1000v.ovf",
        ImportOptions {
            deployment: Some("4CPU-8GB".into()),
            ..ImportOptions::default()
        },
    );
    assert_eq!((big[0].vcpus, big[0].memory_mib), (4, 8192));
    let unknown = plans(
        "csr1000v.ovf",
        &ImportOptions {
            deployment: Some("64CPU".into()),
            ..ImportOptions::default()
        },
    );
    assert!(matches!(unknown, Err(OvfError::Invalid(_))));
}

fn plans_with(file: &str, options: ImportOptions) -> Vec<SystemPlan> {
    plans(file, &options).unwrap()
}

#[test]
fn collections_give_a_vm_each() {
    check(
        "sun-vapp-multiVM.ovf",
        &[
            ("sun-xp-sp3", 2, 512, &[1536 << 20], 1),
            ("sun-test", 2, 512, &[1536 << 20], 1),
        ],
    );
    let spec = check(
        "virtualsystemcollection.ovf",
        &[
            ("Virtual Appliance One", 1, 1024, &[GIB], 1),
            ("Virtual Appliance Two", 1, 1024, &[GIB], 1),
        ],
    );
    assert!(spec[0].notes.iter().any(|n| n.contains("CIM OS type 58")));
    assert_eq!(
        spec[0].description.as_deref(),
        Some("Contact customer support if you have any problems")
    );
}

#[test]
fn xencenter_export_with_its_false_encoding() {
    let plans = check("sample_app.ovf", &[("Web server", 1, 64, &[10 << 20], 0)]);
    assert!(matches!(
        plans[0].disks[0].source,
        DiskSource::File {
            format: plan::ImageFormat::Vhd,
            ..
        }
    ));
}

fn refusal(file: &str) -> String {
    match plans(file, &ImportOptions::default()) {
        Err(OvfError::Unsupported(message)) => message,
        other => panic!("{file}: {other:?}"),
    }
}

#[test]
fn required_items_a_kvm_host_lacks_are_refused_by_name() {
    let vbox = refusal("vbox1.ovf");
    assert!(vbox.contains("floppy0 (ResourceType 14)"), "{vbox}");
    let vcloud = refusal("win2k3_centos_vms.ovf");
    assert!(
        vcloud.contains("Floppy Drive 1 (ResourceType 14)"),
        "{vcloud}"
    );
    // Lax skips and reports them.
    let lax = ImportOptions {
        lax: true,
        ..ImportOptions::default()
    };
    let plans = plans_with("vbox1.ovf", lax.clone());
    assert_eq!(
        (plans[0].name.as_str(), plans[0].vcpus, plans[0].memory_mib),
        ("vbox1", 1, 192)
    );
    assert_eq!(plans[0].disks.len(), 1);
    assert_eq!(plans[0].disks[0].capacity, 10 * GIB);
    for item in [
        "floppy0 (ResourceType 14)",
        "usb (ResourceType 23)",
        "sound (ResourceType 35)",
        "cdrom1 (ResourceType 15)",
    ] {
        assert!(
            plans[0].skipped.iter().any(|s| s == item),
            "{item}: {:?}",
            plans[0].skipped
        );
    }
    let plans = plans_with("win2k3_centos_vms.ovf", lax);
    let shape: Vec<(&str, u32, u64, Vec<u64>, usize)> = plans
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.vcpus,
                p.memory_mib,
                p.disks.iter().map(|d| d.capacity).collect(),
                p.nics.len(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("win2k3ent-64_snapshots", 2, 512, vec![4 * GIB], 1),
            ("CG_Ubuntu_10.10_64bit", 1, 512, vec![8 * GIB], 1),
        ]
    );
}

#[test]
fn ovf_0_9_is_refused_as_a_version() {
    assert!(matches!(
        plans("v0.9.ovf", &ImportOptions::default()),
        Err(OvfError::UnsupportedVersion(_))
    ));
}

#[test]
fn not_an_envelope() {
    for bytes in [
        &b"<html/>"[..],
        b"not xml",
        b"<Envelope xmlns='http://schemas.dmtf.org/ovf/envelope/1'/>",
    ] {
        assert!(
            matches!(descriptor::parse(bytes), Err(OvfError::NotOvf(_))),
            "{bytes:?}"
        );
    }
}

#[test]
fn an_export_reads_back_as_it_was_written() {
    use super::writer::{self, DiskEntry, DiskFormat, FileEntry, NicEntry, SystemEntry};
    let text = writer::descriptor(&SystemEntry {
        name: "web <1>".into(),
        vcpus: 2,
        memory_mib: 96,
        disks: vec![DiskEntry {
            file: FileEntry {
                href: "web_1_-disk1.vmdk".into(),
                size: 4096,
            },
            capacity: 64 << 20,
            populated: 0,
            format: DiskFormat::StreamOptimizedVmdk,
            cdrom: false,
        }],
        nics: vec![NicEntry {
            mac: "52:54:00:12:34:56".into(),
            network: Some("br0".into()),
        }],
        description: Some("a & b".into()),
    });
    let envelope = descriptor::parse(text.as_bytes()).unwrap();
    let options = ImportOptions {
        keep_macs: true,
        ..ImportOptions::default()
    };
    let plan = plan::plan(&envelope, &envelope.systems[0], None, &options).unwrap();
    assert_eq!(
        (plan.name.as_str(), plan.vcpus, plan.memory_mib),
        ("web <1>", 2, 96)
    );
    assert_eq!(plan.disks[0].capacity, 64 << 20);
    assert_eq!(plan.nics[0].network.as_deref(), Some("br0"));
    assert_eq!(plan.nics[0].mac.unwrap().to_string(), "52:54:00:12:34:56");
    assert_eq!(plan.description.as_deref(), Some("a & b"));
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
}
