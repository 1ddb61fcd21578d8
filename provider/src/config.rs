//! Server configuration: defaults, overridden by a TOML file, overridden by flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use cimom::auth::{AuthSettings, HashSettings, ThrottleSettings};
use cimom::cimxml::dom::XmlLimits;
use cimom::dispatch::pull::PullLimits;
use cimom::dispatch::CimomConfig;
use cimom::http::HttpLimits;
use cimom::wsman::WsmanConfig;
use hypervisor_shim::sandbox::users::IdRange;

/// The configuration file (every key optional).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The data directory (database, certificate, initial password).
    pub data_dir: Option<PathBuf>,
    /// HTTP listeners; empty disables HTTP.
    pub http: Option<Vec<SocketAddr>>,
    /// HTTPS listeners; empty disables HTTPS.
    pub https: Option<Vec<SocketAddr>>,
    /// The TLS certificate.
    pub tls: TlsConfig,
    /// Limits.
    pub limits: Limits,
    /// Logging.
    pub log: LogConfig,
    /// The VM processes.
    pub vmm: VmmConfig,
    /// `[wsman]`: the WS-Management endpoint.
    pub wsman: WsmanSection,
    /// `[storage]`: the storage pools disks come from.
    pub storage: StorageSection,
    /// `[migration]`: how VMs move to other cimvirt hosts.
    pub migration: MigrationSection,
    /// `[auth]`: password checking and hashing.
    pub auth: AuthSection,
    /// `[console]`.
    pub console: ConsoleSection,
}

/// `[auth]`: what checking passwords may cost the server, and the cost of new hashes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Threads checking passwords, each with its argon2 memory (default: the CPUs, at
    /// most 4).
    pub workers: Option<usize>,
    /// Milliseconds a check may wait for a thread, or for its client's turn, before the
    /// request is answered 503.
    pub max_wait_ms: u64,
    /// Checks of one client (address) waiting or running at once.
    pub checks_per_client: usize,
    /// Failed checks a client may have before its next ones are delayed.
    pub free_failures: u32,
    /// The delay after the first failure beyond the free ones, in milliseconds; it doubles
    /// with each further failure.
    pub first_failure_delay_ms: u64,
    /// The longest such delay, in milliseconds.
    pub max_failure_delay_ms: u64,
    /// Seconds after its last failure that a client's failures are forgotten.
    pub forget_failures_secs: u64,
    /// `[auth.argon2]`: the cost of password hashes made from now on.
    pub argon2: HashSettings,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            workers: None,
            max_wait_ms: 2000,
            checks_per_client: 2,
            free_failures: 5,
            first_failure_delay_ms: 250,
            max_failure_delay_ms: 4000,
            forget_failures_secs: 600,
            argon2: HashSettings::default(),
        }
    }
}

/// How much lower than the server's other threads the password-checking threads run: a
/// check (tens of milliseconds of CPU) then yields to the requests being served instead of
/// delaying them.
const CHECKING_THREAD_NICE_INCREMENT: i32 = 10;

fn lower_checking_thread_priority() -> std::io::Result<()> {
    hypervisor_shim::rlimits::lower_thread_priority(CHECKING_THREAD_NICE_INCREMENT)
}

impl AuthSection {
    /// The authenticator's settings, with `remember` from `[limits] auth_cache_secs`.
    pub fn settings(&self, remember: Duration) -> AuthSettings {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        AuthSettings {
            remember,
            workers: self.workers.unwrap_or(cpus.min(4)).max(1),
            max_wait: Duration::from_millis(self.max_wait_ms.max(1)),
            throttle: ThrottleSettings {
                concurrent_per_client: self.checks_per_client.max(1),
                free_failures: self.free_failures,
                first_delay: Duration::from_millis(self.first_failure_delay_ms),
                max_delay: Duration::from_millis(self.max_failure_delay_ms),
                forget_after: Duration::from_secs(self.forget_failures_secs),
            },
            hashing: self.argon2,
            worker_setup: Some(lower_checking_thread_priority),
        }
    }
}

/// `[migration]`: the account this server uses on destination hosts, and their port.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationSection {
    /// The user name on the destination hosts (with write access to root/virt there).
    pub user: Option<String>,
    /// A file holding that user's password (its first line).
    pub password_file: Option<PathBuf>,
    /// The destinations' HTTPS port when DestinationHost names none.
    pub port: u16,
    /// Seconds one request to the destination may take.
    pub timeout_secs: u64,
}

impl Default for MigrationSection {
    fn default() -> Self {
        MigrationSection {
            user: None,
            password_file: None,
            port: 5989,
            timeout_secs: 120,
        }
    }
}

/// The largest console scrollback a configuration may ask for.
const MAX_SCROLLBACK_BYTES: usize = 16 << 20;

/// `[console]`: the VMs' consoles as WebSockets (`/console/NAME` on every listener).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// Bytes of recent output a client gets on joining a console.
    pub scrollback_bytes: usize,
    /// Console sessions open at once, on every VM together.
    pub max_sessions: usize,
    /// Console sessions open at once on one VM.
    pub max_sessions_per_vm: usize,
    /// The host name the console URLs give for listeners on every address (0.0.0.0, ::)
    /// [default: the host's name].
    pub url_host: Option<String>,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        let limits = crate::virt::console::ConsoleLimits::default();
        ConsoleSection {
            scrollback_bytes: limits.scrollback_bytes,
            max_sessions: limits.max_sessions,
            max_sessions_per_vm: limits.max_sessions_per_vm,
            url_host: None,
        }
    }
}

impl ConsoleSection {
    /// The limits these settings give; refuses a scrollback over 16 MiB (each watched VM
    /// keeps one in memory) and limits of no session.
    pub fn limits(&self) -> Result<crate::virt::console::ConsoleLimits, String> {
        if self.scrollback_bytes > MAX_SCROLLBACK_BYTES {
            return Err(format!(
                "[console] scrollback_bytes is at most {MAX_SCROLLBACK_BYTES}, not {}",
                self.scrollback_bytes
            ));
        }
        if self.max_sessions == 0 || self.max_sessions_per_vm == 0 {
            return Err("[console] max_sessions and max_sessions_per_vm are at least 1".into());
        }
        Ok(crate::virt::console::ConsoleLimits {
            scrollback_bytes: self.scrollback_bytes,
            max_sessions: self.max_sessions,
            max_sessions_per_vm: self.max_sessions_per_vm,
        })
    }
}

/// `[storage]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Storage pools by name, each a directory of raw images (`KVM_DiskPool`
    /// `DiskPool/NAME`). Default: `default` in `DATA_DIR/images`.
    pub pools: std::collections::BTreeMap<String, PathBuf>,
    /// The directories under which clients may create storage pools
    /// (CreateChildResourcePool). Default: `DATA_DIR/images`.
    pub pool_roots: Option<Vec<PathBuf>>,
}

impl StorageSection {
    /// The pools and the pool roots, with their defaults in `data_dir`.
    pub fn settings(&self, data_dir: &Path) -> crate::vm::pools::PoolSettings {
        crate::vm::pools::PoolSettings {
            configured: self.pools(data_dir),
            roots: self
                .pool_roots
                .clone()
                .unwrap_or_else(|| vec![data_dir.join("images")]),
        }
    }

    /// The pools, or the default one in `data_dir`.
    pub fn pools(&self, data_dir: &Path) -> Vec<(String, PathBuf)> {
        if self.pools.is_empty() {
            return vec![("default".into(), data_dir.join("images"))];
        }
        self.pools
            .iter()
            .map(|(name, dir)| (name.clone(), dir.clone()))
            .collect()
    }
}

/// `[wsman]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WsmanSection {
    /// The namespace of requests without a `__cimnamespace` selector.
    pub default_namespace: String,
    /// The largest response envelope when a client sets no MaxEnvelopeSize.
    pub max_envelope_bytes: u64,
    /// The most items one Pull or optimized Enumerate returns.
    pub max_elements: u32,
}

impl Default for WsmanSection {
    fn default() -> Self {
        let d = WsmanConfig::default();
        WsmanSection {
            default_namespace: d.default_namespace,
            max_envelope_bytes: d.max_envelope_size,
            max_elements: d.max_elements,
        }
    }
}

impl WsmanSection {
    /// The endpoint's settings.
    pub fn settings(&self) -> WsmanConfig {
        WsmanConfig {
            default_namespace: self.default_namespace.clone(),
            max_envelope_size: self
                .max_envelope_bytes
                .max(cimom::wsman::envelope::MIN_ENVELOPE_SIZE),
            max_elements: self.max_elements.max(1),
        }
    }
}

/// `[vmm]`: where VM processes live and which KVM they use.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VmmConfig {
    /// The KVM device.
    pub kvm_device: PathBuf,
    /// Sockets, logs and exit records of VM processes (default `DATA_DIR/run`).
    pub run_dir: Option<PathBuf>,
    /// How long a new VM process may take to open its control socket.
    pub start_timeout_secs: u64,
    /// The program each VM runs in (default `cimvirt-vmm` beside cimvirtd).
    pub program: Option<PathBuf>,
    /// Whether VM processes confine themselves (namespaces, an empty root, their own
    /// unprivileged user, no capabilities, seccomp); off only to debug the VMM.
    pub sandbox: bool,
    /// The user and group ids confined VM processes run as, one per running VM
    /// (`FIRST-LAST`); no host account may use them.
    pub users: IdRange,
    /// Where cgroup v2 is mounted (`/sys/fs/cgroup/unified` on a host that mounts v1 and
    /// v2 side by side).
    pub cgroup_root: PathBuf,
}

impl Default for VmmConfig {
    fn default() -> Self {
        VmmConfig {
            kvm_device: PathBuf::from(hypervisor_shim::hypervisor::kvm::DEFAULT_DEVICE),
            run_dir: None,
            start_timeout_secs: 30,
            program: None,
            sandbox: true,
            users: hypervisor_shim::sandbox::users::DEFAULT_RANGE,
            cgroup_root: PathBuf::from(hypervisor_shim::cgroup::DEFAULT_ROOT),
        }
    }
}

/// `[tls]`: a PEM certificate chain and private key. Without them, a self-signed
/// certificate is generated into the data directory on first start.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// The private key (PEM).
    pub key: Option<PathBuf>,
    /// Certificates (PEM files) trusted in outgoing HTTPS: migration destinations and
    /// indication listeners. Default: the server's own certificate.
    pub trusted: Vec<PathBuf>,
}

/// `[log]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// A tracing filter such as `info` or `cimvirt=debug` (default `info`; `RUST_LOG`
    /// overrides).
    pub level: Option<String>,
}

/// `[limits]`, with their defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, bytes (HTTP 413 above).
    pub max_request_bytes: u64,
    /// Deepest XML element nesting (HTTP 400 request-not-valid above).
    pub max_xml_depth: usize,
    /// Most XML elements in one request (HTTP 400 request-not-valid above).
    pub max_xml_elements: usize,
    /// Most concurrent connections (the longest idle one is closed above, HTTP 503 when
    /// all are busy).
    pub max_connections: usize,
    /// Most concurrent connections of one client address (IPv6: /64).
    pub max_connections_per_client: usize,
    /// Seconds a connection may stay idle while at most half of `max_connections` are
    /// open; shorter as more are, down to 1 s.
    pub idle_timeout_secs: u64,
    /// Largest body of a request answered without credentials (WS-Management Identify).
    pub max_anonymous_request_bytes: u64,
    /// Seconds to receive a request's headers, and for the TLS handshake.
    pub header_read_timeout_secs: u64,
    /// Seconds to receive a request's body (HTTP 408 after).
    pub body_read_timeout_secs: u64,
    /// Seconds an operation may take, streaming included (CIM_ERR_FAILED after).
    pub request_timeout_secs: u64,
    /// OperationTimeout of pull enumerations when the client gives none.
    pub pull_default_timeout_secs: u64,
    /// Largest OperationTimeout accepted (CIM_ERR_INVALID_OPERATION_TIMEOUT above).
    pub pull_max_timeout_secs: u64,
    /// Largest MaxObjectCount accepted (CIM_ERR_INVALID_PARAMETER above).
    pub pull_max_object_count: u32,
    /// Most open pull enumerations (CIM_ERR_SERVER_LIMITS_EXCEEDED above).
    pub max_enumeration_contexts: usize,
    /// Seconds verified credentials are remembered (argon2 is deliberately slow).
    pub auth_cache_secs: u64,
    /// Seconds a stopping server waits for running requests.
    pub shutdown_grace_secs: u64,
    /// Most indications kept waiting for one listener destination that cannot be reached
    /// (the oldest are dropped past it, and logged).
    pub max_queued_indications: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 * 1024 * 1024,
            max_xml_depth: 64,
            max_xml_elements: 100_000,
            max_connections: 1024,
            max_connections_per_client: 128,
            idle_timeout_secs: 30,
            max_anonymous_request_bytes: 16 * 1024,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 60,
            request_timeout_secs: 600,
            pull_default_timeout_secs: 30,
            pull_max_timeout_secs: 600,
            pull_max_object_count: 10_000,
            max_enumeration_contexts: 1000,
            auth_cache_secs: 60,
            shutdown_grace_secs: 30,
            max_queued_indications: 10_000,
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML for this schema.
    #[error("{0}: {1}")]
    Parse(PathBuf, toml::de::Error),
}

impl Config {
    /// Reads a TOML configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e))
    }
}

impl Limits {
    /// The XML limits.
    pub fn xml(&self) -> XmlLimits {
        XmlLimits {
            max_depth: self.max_xml_depth,
            max_elements: self.max_xml_elements,
        }
    }

    /// The HTTP limits.
    pub fn http(&self) -> HttpLimits {
        HttpLimits {
            max_request_bytes: self.max_request_bytes,
            max_connections: self.max_connections.max(1),
            max_connections_per_client: self.max_connections_per_client.max(1),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            max_anonymous_request_bytes: self.max_anonymous_request_bytes,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }

    /// The object manager's configuration.
    pub fn cimom(&self) -> CimomConfig {
        CimomConfig {
            pull: PullLimits {
                default_timeout: Duration::from_secs(self.pull_default_timeout_secs.max(1)),
                max_timeout: Duration::from_secs(self.pull_max_timeout_secs.max(1)),
                max_object_count: self.pull_max_object_count,
                max_contexts: self.max_enumeration_contexts.max(1),
            },
            stream_buffer: 256,
            xml: self.xml(),
            indication_queue_limit: self.max_queued_indications.max(1),
        }
    }
}

/// The default data directory: `/var/lib/cimvirt` for root, else
/// `$XDG_DATA_HOME/cimvirt` or `~/.local/share/cimvirt`.
pub fn default_data_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if is_root {
        return PathBuf::from("/var/lib/cimvirt");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("cimvirt");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/cimvirt"),
        None => PathBuf::from("cimvirt-data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_keys() {
        let c: Config = toml::from_str(
            "data_dir = \"/tmp/x\"\nhttp = [\"127.0.0.1:1\"]\nhttps = []\n[limits]\nmax_request_bytes = 10\n",
        )
        .unwrap();
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/tmp/x")));
        assert_eq!(c.https, Some(vec![]));
        assert_eq!(c.limits.max_request_bytes, 10);
        assert_eq!(c.limits.max_xml_depth, Limits::default().max_xml_depth);
        assert!(toml::from_str::<Config>("[limits]\nmax_bytes = 1\n").is_err());
    }

    #[test]
    fn the_auth_section_has_defaults_and_takes_overrides() {
        let c: Config = toml::from_str("").unwrap();
        let s = c.auth.settings(Duration::from_secs(60));
        assert!((1..=4).contains(&s.workers));
        assert_eq!(s.hashing, HashSettings::default());
        assert_eq!(s.throttle.concurrent_per_client, 2);
        let c: Config = toml::from_str(
            "[auth]\nworkers = 3\nfree_failures = 1\n[auth.argon2]\nmemory_kib = 65536\n",
        )
        .unwrap();
        let s = c.auth.settings(Duration::from_secs(1));
        assert_eq!((s.workers, s.throttle.free_failures), (3, 1));
        assert_eq!(s.hashing.memory_kib, 65536);
        assert_eq!(s.hashing.iterations, HashSettings::default().iterations);
        assert!(toml::from_str::<Config>("[auth]\nthreads = 1\n").is_err());
        assert!(toml::from_str::<Config>("[auth.argon2]\nm = 1\n").is_err());
    }

    #[test]
    fn the_vmm_section_has_defaults_and_takes_overrides() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.vmm.kvm_device, Path::new("/dev/kvm"));
        assert_eq!((c.vmm.run_dir, c.vmm.start_timeout_secs), (None, 30));
        let c: Config = toml::from_str("[vmm]\nrun_dir = \"/run/cimvirt\"\n").unwrap();
        assert_eq!(c.vmm.run_dir.as_deref(), Some(Path::new("/run/cimvirt")));
        assert!(toml::from_str::<Config>("[vmm]\nkvm = \"x\"\n").is_err());
        let c: Config = toml::from_str("[vmm]\nusers = \"5000-5999\"\n").unwrap();
        assert_eq!(c.vmm.users.len(), 1000);
        let e = toml::from_str::<Config>("[vmm]\nusers = \"0-10\"\n").unwrap_err();
        assert!(e.to_string().contains("root"), "{e}");
    }
}
