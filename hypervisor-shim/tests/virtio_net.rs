//! virtio-net end to end: the test guest's driver sends a frame through its tap and bridge to
//! a packet socket on the host side, and receives the socket's answer. Everything network
//! lives in a network namespace the test makes (bridge, tap, the VM process itself) and
//! deletes.

mod common;

use common::{kvm_present, wait_for, VMM};
use hypervisor_shim::devices::virtio::net::NetConfig;
use hypervisor_shim::guest::test_guest::command;
use hypervisor_shim::protocol::Request;
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig, SupervisorError};
use hypervisor_shim::vmm::config::VmConfig;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A network namespace with a bridge `br0`, deleted on drop.
struct Netns {
    name: String,
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("cvtest-{tag}-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        // No IPv6 chatter (router and neighbour solicitations) on the test's wire.
        for key in ["all", "default"] {
            run(&mut ns.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ]));
        }
        run(&mut ns.exec(&["ip", "link", "add", "br0", "type", "bridge"]));
        run(&mut ns.exec(&["ip", "link", "set", "br0", "up"]));
        ns
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        command
    }

    /// A supervisor whose VM processes run inside the namespace.
    fn supervisor(&self, run_dir: &std::path::Path) -> Supervisor {
        let args = ["netns", "exec", &self.name, VMM].map(Into::into).to_vec();
        Supervisor::new(SupervisorConfig::new(run_dir.to_owned(), "ip".into(), args)).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Root and the tools the test needs; in CI their absence is a failure.
fn can_run() -> bool {
    if !kvm_present("the virtio-net tests") {
        return false;
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if root && ip && std::path::Path::new("/dev/net/tun").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the virtio-net tests need root, iproute2 and /dev/net/tun on a CI machine"
    );
    eprintln!("NOT RUN: the virtio-net tests need root, iproute2 (ip) and /dev/net/tun");
    false
}

/// On br0: waits for one frame of the test guest's EtherType, prints it in hex, and answers
/// with a broadcast frame carrying "hello from the host".
const PEER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind(("br0", 0))
s.settimeout(30)
print("ready", flush=True)
frame = s.recv(2048)
print(frame.hex(), flush=True)
s.send(b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x88\xb5"
       + b"hello from the host".ljust(46, b"\0"))
"#;

fn console(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.console"))).unwrap_or_default()
}

#[test]
fn a_frame_goes_out_through_the_bridge_and_one_comes_back() {
    if !can_run() {
        return;
    }
    let ns = Netns::new("frame");
    let dir = tempfile::tempdir().unwrap();
    let supervisor = ns.supervisor(&dir.path().join("run"));
    let mut config = VmConfig::test_guest("net", 1, 16);
    config.console_log = Some(dir.path().join("net.console"));
    config.nics = vec![NetConfig {
        bridge: Some("br0".into()),
        tap: Some("cvtap0".into()),
        mac: Some("02:43:00:00:00:07".parse().unwrap()),
    }];
    let vm = supervisor.start(&config).unwrap();
    wait_for("the guest's banner", || {
        console(dir.path(), "net").contains("1 vCPUs online")
    });
    // The VM process made the tap, set it up and made it a port of the bridge.
    let ports = ns
        .exec(&["ip", "-o", "link", "show", "master", "br0"])
        .output()
        .unwrap();
    let ports = String::from_utf8_lossy(&ports.stdout);
    assert!(ports.contains("cvtap0") && ports.contains("UP"), "{ports}");

    let mut peer = ns
        .exec(&["python3", "-c", PEER])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(peer.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    vm.call(&Request::SendConsole {
        bytes: vec![command::NET],
    })
    .unwrap();
    let frame = lines.next().expect("the peer saw a frame").unwrap();
    assert!(peer.wait().unwrap().success());
    let payload = hex_text(&frame[28..]);
    assert_eq!(
        &frame[..28],
        "ffffffffffff02430000000788b5",
        "broadcast, from the port's MAC"
    );
    assert!(
        payload.starts_with("cimvirt test guest frame"),
        "{payload:?}"
    );

    wait_for("the guest's report", || {
        console(dir.path(), "net").contains("net: received")
    });
    let log = console(dir.path(), "net");
    for line in [
        "net: MAC and EtherType 02430000000788b5\n",
        "net: sent 60 bytes\n",
        "net: received 60 bytes: hello from the host\n",
    ] {
        assert!(log.contains(line), "{line:?} missing from:\n{log}");
    }
    vm.call(&Request::Stop).unwrap();
    vm.wait_exit(Duration::from_secs(10)).unwrap();
    // The tap goes with the VM process.
    wait_for("the tap to go", || {
        !ns.exec(&["ip", "link", "show", "cvtap0"])
            .output()
            .unwrap()
            .status
            .success()
    });
}

fn hex_text(hex: &str) -> String {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap() as char)
        .collect()
}

#[test]
fn a_missing_bridge_is_named_and_a_vm_without_ports_has_no_device() {
    if !can_run() {
        return;
    }
    let ns = Netns::new("nobridge");
    let dir = tempfile::tempdir().unwrap();
    let supervisor = ns.supervisor(&dir.path().join("run"));
    let mut config = VmConfig::test_guest("nobr", 1, 16);
    config.console_log = Some(dir.path().join("nobr.console"));
    config.nics = vec![NetConfig {
        bridge: Some("nobr0".into()),
        tap: Some("cvtap1".into()),
        mac: None,
    }];
    let err = supervisor.start(&config).unwrap_err();
    assert!(
        matches!(err, SupervisorError::StartFailed { .. })
            && err.to_string().contains("attaching cvtap1 to bridge nobr0"),
        "{err}"
    );
    config.nics.clear();
    let vm = supervisor.start(&config).unwrap();
    wait_for("the guest's banner", || {
        console(dir.path(), "nobr").contains("1 vCPUs online")
    });
    vm.call(&Request::SendConsole {
        bytes: vec![command::NET],
    })
    .unwrap();
    wait_for("the guest's report", || {
        console(dir.path(), "nobr").contains("net: no virtio network device\n")
    });
    vm.call(&Request::Stop).unwrap();
    vm.wait_exit(Duration::from_secs(10)).unwrap();
}
