//! Helpers for cimvirt's end-to-end tests: where the shared inputs are, the `cimvirtd`
//! binary under test and a running server of it ([`server`]), raw HTTP ([`raw_http`]), and
//! the DMTF schema unpacked for a test.

pub mod raw_http;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The directory beside the repository that holds the DMTF schema and the references.
pub fn shared_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    assert!(
        dir.is_dir(),
        "{} is missing: it is checked out beside the repository",
        dir.display()
    );
    dir
}

/// Whether /dev/kvm is here; in CI its absence is a failure, elsewhere the test says plainly
/// that it does not run.
pub fn kvm_present() -> bool {
    if Path::new("/dev/kvm").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "/dev/kvm is missing on a CI machine"
    );
    eprintln!("NOT RUN: this host has no /dev/kvm");
    false
}

/// The repository root.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `cimvirtd` binary built by `cargo build` with the same profile as the tests. The
/// tests run the real binary, built once, rather than rebuilding it themselves.
pub fn cimvirtd() -> PathBuf {
    built_binary("cimvirtd")
}

/// The `cimvirt-vmm` binary (each VM's process) built beside [`cimvirtd`].
pub fn cimvirt_vmm() -> PathBuf {
    built_binary("cimvirt-vmm")
}

fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build --release` (the README's test command does)",
        bin.display()
    );
    bin
}

/// Runs `cimvirtd` with `args`.
pub fn run_cimvirtd<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(cimvirtd())
        .args(args)
        .output()
        .expect("cimvirtd runs")
}

/// The DMTF CIM Schema 2.49 Final, unpacked into a temporary directory that lives as long
/// as the returned guard.
pub struct Dmtf {
    dir: tempfile::TempDir,
}

impl Dmtf {
    /// Unpacks the schema.
    pub fn unpack() -> Self {
        let zip_path = shared_dir().join("dmtf/cim_schema_2.49.0Final-MOFs.zip");
        let file = std::fs::File::open(&zip_path)
            .unwrap_or_else(|e| panic!("{}: {e}", zip_path.display()));
        let dir = tempfile::tempdir().expect("temporary directory");
        zip::ZipArchive::new(file)
            .and_then(|mut z| z.extract(dir.path()))
            .expect("unzip the DMTF schema");
        Dmtf { dir }
    }

    /// The root file that includes the whole schema.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("cim_schema_2.49.0.mof")
    }

    /// The unpacked directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The experimental 2.41 migration classes that 2.49 Final lacks.
pub fn experimental_migration_files() -> Vec<PathBuf> {
    let dir = shared_dir().join("dmtf/experimental-2.41");
    [
        "CIM_VirtualSystemMigrationCapabilities.mof",
        "CIM_VirtualSystemMigrationService.mof",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}
