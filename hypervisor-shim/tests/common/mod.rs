//! What the VMM's end-to-end tests share. Each test binary uses part of it.
#![allow(dead_code)]

use hypervisor_shim::protocol::{Event, Request};
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig, VmHandle};
use hypervisor_shim::vmm::config::VmConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether /dev/kvm is here; in CI its absence is a failure, elsewhere the test says plainly
/// that `what` cannot run.
pub fn kvm_present(what: &str) -> bool {
    if Path::new("/dev/kvm").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "/dev/kvm is missing on a CI machine"
    );
    eprintln!("NOT RUN: this host has no /dev/kvm, so {what} cannot run here");
    false
}

/// The VM process binary.
pub const VMM: &str = env!("CARGO_BIN_EXE_cimvirt-vmm");

/// A supervisor over a temporary run directory, recording every VM event.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub supervisor: Supervisor,
    pub events: Arc<Mutex<Vec<(String, Event)>>>,
}

impl Host {
    pub fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = Supervisor::new(config(&dir.path().join("run"))).unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        supervisor.listen(Arc::new(move |name, event| {
            sink.lock().unwrap().push((name.to_owned(), event.clone()));
        }));
        Host {
            dir,
            supervisor,
            events,
        }
    }

    pub fn vm_config(&self, name: &str, vcpus: u32, memory_mib: u64) -> VmConfig {
        let mut config = VmConfig::test_guest(name, vcpus, memory_mib);
        config.console_log = Some(self.dir.path().join(format!("{name}.console")));
        config
    }

    pub fn start(&self, name: &str, vcpus: u32) -> Arc<VmHandle> {
        self.supervisor
            .start(&self.vm_config(name, vcpus, 32))
            .unwrap()
    }

    pub fn console(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.console"))).unwrap_or_default()
    }

    pub fn wait_console(&self, name: &str, text: &str) {
        wait_for(&format!("{text:?} on {name}'s console"), || {
            self.console(name).contains(text)
        });
    }

    pub fn saw(&self, name: &str, wanted: &Event) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|(n, e)| n == name && e == wanted)
    }
}

impl Drop for Host {
    /// A failed test leaves no VM processes behind (they outlive their supervisor by design).
    fn drop(&mut self) {
        for name in self.supervisor.running() {
            if let Some(vm) = self.supervisor.get(&name) {
                let _ = vm.call(&Request::Stop);
            }
        }
    }
}

/// The supervisor settings for `run_dir`.
pub fn config(run_dir: &Path) -> SupervisorConfig {
    SupervisorConfig::new(run_dir.to_path_buf(), PathBuf::from(VMM), Vec::new())
}

/// Polls `done` for up to 30 s.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
