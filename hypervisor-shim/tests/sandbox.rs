//! The sandbox of a VM process started without privileges, as by a server that does not run
//! as root: it takes every step such a process may (its filters, no_new_privs, no core
//! dumps, no capabilities) and says in its log which it skipped and why; the VM runs, saves
//! and restores as a confined one does. (A server that is root, the normal case, is covered
//! by tests/python/test_sandbox.py.)

mod common;

use common::{kvm_present, Host, VMM};
use hypervisor_shim::lifecycle::State;
use hypervisor_shim::protocol::Request;
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use std::path::PathBuf;
use std::time::Duration;

fn proc_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

#[test]
fn a_vm_process_without_privileges_confines_itself_as_far_as_it_may_and_says_so() {
    if !kvm_present("the sandbox tests") {
        return;
    }
    // setpriv (util-linux) runs cimvirt-vmm as this user with an empty bounding set: after
    // the exec it holds no capability, as a process of an unprivileged server would. (It
    // stays uid 0, so that it may open /dev/kvm, which is root's alone on this host.)
    let mut host = Host::new();
    let run_dir = host.dir.path().join("unprivileged");
    host.supervisor = Supervisor::new(SupervisorConfig::new(
        run_dir.clone(),
        PathBuf::from("setpriv"),
        ["--bounding-set=-all", "--inh-caps=-all", VMM]
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
    .unwrap();
    let vm = host.start("plain", 1);
    let pid = vm.pid();
    assert_eq!(proc_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(proc_field(pid, "CapPrm"), "0000000000000000");
    assert_eq!(proc_field(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_field(pid, "Seccomp"), "2");
    // The host's namespaces and root: it may create none of its own.
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_eq!(ns(&pid.to_string()), ns("self"));
    let log = std::fs::read_to_string(run_dir.join("plain.log")).unwrap();
    for said in [
        "host namespaces (creating them needs CAP_SYS_ADMIN",
        "the host's root (making one needs a mount namespace of its own)",
        "the server's user (changing it needs CAP_SETUID and CAP_SETGID",
        "no capabilities (bounding set kept: emptying it needs CAP_SETPCAP",
    ] {
        assert!(
            log.contains(said),
            "{said:?} is not in the VM's log:\n{log}"
        );
    }

    // It runs, and writes a snapshot through the descriptors it is handed.
    host.wait_console("plain", "cimvirt test guest");
    let saved = host.dir.path().join("saved");
    vm.call(&Request::Save { dir: saved.clone() }).unwrap();
    assert_eq!(
        vm.wait_exit(Duration::from_secs(10)).unwrap().state,
        State::Saved
    );
    let restored = host.supervisor.restore("plain", &saved).unwrap();
    assert_eq!(restored.status().unwrap().state, State::Running);
    restored.call(&Request::Stop).unwrap();
}
