//! virtio-blk end to end: the test guest's driver against real VM processes on this host's
//! /dev/kvm, with raw image files in a temporary directory.

mod common;

use common::{kvm_present, wait_for, Host};
use hypervisor_shim::devices::virtio::block::DiskConfig;
use hypervisor_shim::guest::test_guest::{command, disk_pattern};
use hypervisor_shim::lifecycle::State;
use hypervisor_shim::protocol::Request;
use hypervisor_shim::supervisor::{SupervisorError, VmHandle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// An 8 MiB image whose bytes repeat "cimvirt!".
fn image(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, b"cimvirt!".repeat(1 << 20)).unwrap();
    path
}

fn disk(path: &Path, read_only: bool, id: Option<&str>) -> DiskConfig {
    DiskConfig {
        path: path.to_owned(),
        read_only,
        id: id.map(str::to_owned),
    }
}

fn start_with_disks(host: &Host, name: &str, disks: Vec<DiskConfig>) -> Arc<VmHandle> {
    let mut config = host.vm_config(name, 1, 16);
    config.disks = disks;
    let vm = host.supervisor.start(&config).unwrap();
    host.wait_console(name, "1 vCPUs online\n");
    vm
}

/// Sends the disk test command and waits for its last line.
fn disk_test(host: &Host, vm: &VmHandle, name: &str, last: &str) -> String {
    vm.call(&Request::SendConsole {
        bytes: vec![command::DISK],
    })
    .unwrap();
    host.wait_console(name, last);
    host.console(name)
}

fn stop(vm: &VmHandle) {
    vm.call(&Request::Stop).unwrap();
    vm.wait_exit(Duration::from_secs(10)).unwrap();
}

#[test]
fn the_guest_reads_writes_reads_back_and_flushes_its_disk() {
    if !kvm_present("the virtio-blk tests") {
        return;
    }
    let host = Host::new();
    let path = image(host.dir.path(), "rw.img");
    let vm = start_with_disks(
        &host,
        "blk-rw",
        vec![disk(&path, false, Some("cimvirt-disk-0"))],
    );
    let console = disk_test(&host, &vm, "blk-rw", "flush status 0\n");
    for line in [
        "disk: 16384 sectors, ID cimvirt-disk-0\n",
        // "cimvirt!" in hex: the guest saw the image's bytes.
        "disk: read status 0, first bytes 63696d7669727421\n",
        "disk: write status 0\n",
        "disk: read back status 0, same data\n",
    ] {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    // The guest's write reached the file, and nothing else changed.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 8 << 20);
    assert_eq!(bytes[..4096], disk_pattern()[..]);
    assert_eq!(&bytes[4096..4104], b"cimvirt!");
    stop(&vm);
}

#[test]
fn a_read_only_disk_refuses_writes_and_keeps_its_bytes() {
    if !kvm_present("the virtio-blk tests") {
        return;
    }
    let host = Host::new();
    let path = image(host.dir.path(), "ro.img");
    let before = std::fs::read(&path).unwrap();
    let vm = start_with_disks(&host, "blk-ro", vec![disk(&path, true, None)]);
    disk_test(&host, &vm, "blk-ro", "flush status 0\n");
    let console = host.console("blk-ro");
    for line in [
        // Without an ID the file name is the device ID.
        "disk: 16384 sectors, ID ro.img\n",
        "disk: read status 0, first bytes 63696d7669727421\n",
        "disk: write status 1\n",
        "disk: read back status 0, different data\n",
    ] {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    assert!(std::fs::read(&path).unwrap() == before, "the image changed");
    // Readers may share an image.
    let second = start_with_disks(&host, "blk-ro-2", vec![disk(&path, true, None)]);
    stop(&second);
    stop(&vm);
}

#[test]
fn the_disk_works_after_pause_snapshot_restore_and_reset() {
    if !kvm_present("the virtio-blk tests") {
        return;
    }
    let host = Host::new();
    let path = image(host.dir.path(), "state.img");
    let vm = start_with_disks(&host, "blk-state", vec![disk(&path, false, None)]);
    disk_test(&host, &vm, "blk-state", "flush status 0\n");

    vm.call(&Request::Pause).unwrap();
    vm.call(&Request::Resume).unwrap();
    let runs = |host: &Host| {
        host.console("blk-state")
            .matches("flush status 0\n")
            .count()
    };
    vm.call(&Request::SendConsole {
        bytes: vec![command::DISK],
    })
    .unwrap();
    wait_for("a second disk test after pause", || runs(&host) == 2);

    // Saved and restored in a new process: the device comes back with the image.
    let saved = host.dir.path().join("saved");
    vm.call(&Request::Save { dir: saved.clone() }).unwrap();
    assert_eq!(
        vm.wait_exit(Duration::from_secs(10)).unwrap().state,
        State::Saved
    );
    let restored = host.supervisor.restore("blk-state", &saved).unwrap();
    restored
        .call(&Request::SendConsole {
            bytes: vec![command::DISK],
        })
        .unwrap();
    wait_for("a disk test after restore", || runs(&host) >= 3);

    // A reset takes the device back to no driver; the guest sets it up again.
    restored.call(&Request::Reset).unwrap();
    host.wait_console("blk-state", "1 vCPUs online\n");
    wait_for("the guest back up after the reset", || {
        host.console("blk-state")
            .matches("1 vCPUs online\n")
            .count()
            >= 2
    });
    restored
        .call(&Request::SendConsole {
            bytes: vec![command::DISK],
        })
        .unwrap();
    wait_for("a disk test after reset", || runs(&host) >= 4);
    assert!(!host.console("blk-state").contains("different data"));
    stop(&restored);
}

#[test]
fn images_in_use_missing_or_absent_are_refused_or_reported() {
    if !kvm_present("the virtio-blk tests") {
        return;
    }
    let host = Host::new();
    let path = image(host.dir.path(), "busy.img");
    let vm = start_with_disks(&host, "blk-owner", vec![disk(&path, false, None)]);
    let mut second = host.vm_config("blk-second", 1, 16);
    second.disks = vec![disk(&path, false, None)];
    let err = host.supervisor.start(&second).unwrap_err();
    assert!(
        err.to_string().contains("another VM is using the image"),
        "{err}"
    );
    second.disks = vec![disk(&host.dir.path().join("missing.img"), false, None)];
    let err = host.supervisor.start(&second).unwrap_err();
    assert!(
        matches!(err, SupervisorError::StartFailed { .. })
            && err.to_string().contains("missing.img"),
        "{err}"
    );
    stop(&vm);

    // A VM without disks: the guest finds no device.
    let bare = start_with_disks(&host, "blk-none", Vec::new());
    disk_test(&host, &bare, "blk-none", "disk: no virtio block device\n");
    stop(&bare);
}
