//! What the VMM's end-to-end tests share.

use std::path::Path;

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
