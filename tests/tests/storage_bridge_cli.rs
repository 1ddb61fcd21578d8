//! `cimvirtd storage` and `cimvirtd bridge` from outside: a pool's volumes made, grown,
//! imported, guarded while a VM uses them and deleted; a bridge made, given a VM's port and
//! deleted, inside a network namespace the test makes.

use std::process::{Command, Output};
use std::time::Duration;

use cimvirt_tests::{cimvirt_vmm, cimvirtd, kvm_present, run_cimvirtd};
use hypervisor_shim::devices::virtio::block::DiskConfig;
use hypervisor_shim::devices::virtio::net::NetConfig;
use hypervisor_shim::protocol::Request;
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use hypervisor_shim::vmm::config::VmConfig;

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_pool_makes_grows_imports_guards_and_deletes_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool");
    let pool = pool.to_str().unwrap();
    let storage = |args: &[&str]| run_cimvirtd([&["storage", "--pool", pool][..], args].concat());

    let created = json(&storage(&["create", "disk.img", "64M"]));
    assert_eq!(created["capacity"], 64 << 20);
    assert_eq!(created["allocation"], 0, "sparse");
    assert!(stderr(&storage(&["create", "disk.img", "1M"])).contains("exists already"));
    assert!(stderr(&storage(&["create", "../escape", "1M"])).contains("not a volume name"));
    assert!(stderr(&storage(&["create", "odd.img", "1000"])).contains("multiple of 512"));
    assert_eq!(
        json(&storage(&["resize", "disk.img", "128M"]))["capacity"],
        128 << 20
    );
    assert!(stderr(&storage(&["resize", "disk.img", "1M"])).contains("would cut"));

    let qcow2 = dir.path().join("source.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&qcow2)
        .arg("8M")
        .status()
        .expect("qemu-img (qemu-utils) is installed by scripts/setup-test-env");
    assert!(made.success());
    let imported = json(&storage(&[
        "import",
        "imported.img",
        qcow2.to_str().unwrap(),
    ]));
    assert_eq!(imported["capacity"], 8 << 20);

    let list = json(&storage(&["list"]));
    let names: Vec<&str> = list["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["disk.img", "imported.img"]);
    assert!(list["available"].as_u64().unwrap() <= list["capacity"].as_u64().unwrap());

    if kvm_present() {
        // A running VM's disk cannot be deleted.
        let supervisor = Supervisor::new(SupervisorConfig::new(
            dir.path().join("run"),
            cimvirt_vmm(),
            Vec::new(),
        ))
        .unwrap();
        let mut config = VmConfig::test_guest("pool-user", 1, 16);
        config.disks = vec![DiskConfig {
            path: dir.path().join("pool/disk.img"),
            read_only: false,
            id: None,
        }];
        let vm = supervisor.start(&config).unwrap();
        assert!(stderr(&storage(&["delete", "disk.img"])).contains("in use by a running VM"));
        vm.call(&Request::Stop).unwrap();
        vm.wait_exit(Duration::from_secs(10)).unwrap();
    }
    json(&storage(&["delete", "disk.img"]));
    assert!(stderr(&storage(&["delete", "disk.img"])).contains("no volume disk.img"));
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("cvtest-cli-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(status.is_ok_and(|s| s.success()), "ip netns add {name}");
        Netns(name)
    }

    fn cimvirtd(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(cimvirtd())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_bridge_is_made_given_a_vm_port_and_deleted() {
    if !kvm_present() {
        return;
    }
    let ns = Netns::new();
    let bridges = |ns: &Netns| json(&ns.cimvirtd(&["bridge", "list"]));
    assert_eq!(bridges(&ns), serde_json::json!([]));
    json_ok(&ns.cimvirtd(&["bridge", "create", "cvbr0"]));
    assert_eq!(
        bridges(&ns),
        serde_json::json!([{ "name": "cvbr0", "up": true, "ports": [] }])
    );
    assert!(stderr(&ns.cimvirtd(&["bridge", "create", "cvbr0"])).contains("creating bridge cvbr0"));

    // A VM in the namespace whose port names the bridge.
    let dir = tempfile::tempdir().unwrap();
    let supervisor = Supervisor::new(SupervisorConfig::new(
        dir.path().join("run"),
        "ip".into(),
        ["netns", "exec", &ns.0]
            .iter()
            .map(Into::into)
            .chain([cimvirt_vmm().into_os_string()])
            .collect(),
    ))
    .unwrap();
    let mut config = VmConfig::test_guest("bridged", 1, 16);
    config.nics = vec![NetConfig {
        bridge: Some("cvbr0".into()),
        tap: Some("cvport0".into()),
        mac: None,
    }];
    let vm = supervisor.start(&config).unwrap();
    assert_eq!(bridges(&ns)[0]["ports"], serde_json::json!(["cvport0"]));
    vm.call(&Request::Stop).unwrap();
    vm.wait_exit(Duration::from_secs(10)).unwrap();

    json_ok(&ns.cimvirtd(&["bridge", "delete", "cvbr0"]));
    assert_eq!(bridges(&ns), serde_json::json!([]));
    assert!(stderr(&ns.cimvirtd(&["bridge", "delete", "cvbr0"])).contains("cvbr0"));
}

fn json_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
