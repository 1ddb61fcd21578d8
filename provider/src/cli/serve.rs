//! `cimvirtd serve`: the WBEM server.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hypervisor_shim::inventory::HostInventory;
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use cimom::auth::{self, Access, Authenticator, Right};
use cimom::dispatch::interop::{Interop, ServerIdentity};
use cimom::dispatch::provider::Registry;
use cimom::dispatch::Cimom;
use cimom::http::{self, tls, Listener, Scheme};
use cimom::store::Store;
use provider::config::{default_data_dir, Config};
use provider::virt::console::{ConsoleEndpoint, ConsoleUrls};
use provider::virt::migration::MigrationSettings;
use provider::virt::Virt;
use provider::vm::manager::VirtManager;

/// Options of `serve`; each overrides the configuration file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; see README.md for every key).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory [default: /var/lib/cimvirt as root, else ~/.local/share/cimvirt].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// An HTTP listener (repeatable) [default: 127.0.0.1:5988 and 127.0.0.1:5985].
    #[arg(long = "http", value_name = "ADDR:PORT")]
    pub http: Vec<SocketAddr>,
    /// An HTTPS listener (repeatable) [default: 0.0.0.0:5989 and 0.0.0.0:5986].
    #[arg(long = "https", value_name = "ADDR:PORT")]
    pub https: Vec<SocketAddr>,
    /// Serve no HTTP (HTTPS only).
    #[arg(long, conflicts_with = "http")]
    pub no_http: bool,
    /// The TLS certificate chain (PEM) [default: generated into DATA_DIR/tls/].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// The VM processes' sockets, logs and exit records [default: DATA_DIR/run]; at most
    /// 65 bytes, so that a control socket's path fits a Unix socket address.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}

/// The settings after flags, file and defaults are merged.
struct Settings {
    data_dir: PathBuf,
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    config: Config,
}

fn addresses(list: &[&str]) -> Vec<SocketAddr> {
    list.iter()
        .map(|a| a.parse().expect("valid address"))
        .collect()
}

fn settings(args: ServeArgs) -> Result<Settings, String> {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let data_dir = args
        .data_dir
        .or_else(|| config.data_dir.clone())
        .unwrap_or_else(default_data_dir);
    let http = if args.no_http {
        Vec::new()
    } else if !args.http.is_empty() {
        args.http
    } else {
        config
            .http
            .clone()
            // CIM-XML's and WS-Management's ports; both protocols are served on each.
            .unwrap_or_else(|| addresses(&["127.0.0.1:5988", "127.0.0.1:5985"]))
    };
    let https = if !args.https.is_empty() {
        args.https
    } else {
        config
            .https
            .clone()
            .unwrap_or_else(|| addresses(&["0.0.0.0:5989", "0.0.0.0:5986"]))
    };
    if http.is_empty() && https.is_empty() {
        return Err("no listener configured: give --http or --https".into());
    }
    let mut config = config;
    if let Some(f) = args.log_format {
        config.log.format = Some(f);
    }
    if let Some(dir) = args.run_dir {
        config.vmm.run_dir = Some(dir);
    }
    Ok(Settings {
        data_dir,
        http,
        https,
        tls_cert: args.tls_cert.or_else(|| config.tls.cert.clone()),
        tls_key: args.tls_key.or_else(|| config.tls.key.clone()),
        config,
    })
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| {
            tracing_subscriber::EnvFilter::try_new(config.log.level.as_deref().unwrap_or("info"))
        })
        .map_err(|e| format!("invalid log level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log.format.as_deref().unwrap_or("text") {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => return Err(format!("log format must be text or json, not '{other}'")),
    }
    Ok(())
}

/// Creates the first user, `admin`, with a random password written to the data directory.
fn create_initial_admin(store: &Store, data_dir: &Path, config: &Config) -> Result<(), String> {
    let password = auth::random_password();
    let path = data_dir.join("initial-admin-password");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{password}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    auth::put_user(
        store,
        "admin",
        &password,
        vec![Right {
            namespace: "*".into(),
            access: Access::ReadWrite,
        }],
        &config.auth.argon2,
    )
    .map_err(|e| e.to_string())?;
    warn!(file = %path.display(), "created user 'admin' with a random password; it is in the file named here");
    Ok(())
}

/// Reports what the host offers VMs and takes over the VM processes still running from a
/// previous server. Without usable KVM the server still serves everything else.
fn start_supervisor(settings: &Settings) -> Result<(Supervisor, HostInventory), String> {
    let vmm = &settings.config.vmm;
    let host = hypervisor_shim::inventory::collect(&vmm.kvm_device, &vmm.cgroup_root);
    match &host.kvm.unavailable {
        None => info!(
            kvm = ?host.kvm.kind,
            api = host.kvm.api_version,
            max_vcpus = host.kvm.max_vcpus,
            cpus = host.logical_cpus,
            memory_mib = host.memory_total_bytes >> 20,
            "KVM ready"
        ),
        Some(why) => warn!("VMs cannot run on this host: {why}"),
    }
    if let Some(why) = &host.kvm.cgroup_cpu_unsupported {
        warn!("VM CPU weights and limits cannot be enforced, and are refused: {why}");
    }
    if let Some(why) = &host.kvm.cgroup_memory_unsupported {
        warn!("VM processes' memory cannot be limited: {why}");
    }
    if host.kvm.kind == Some(hypervisor_shim::hypervisor::KvmKind::Pvm) {
        warn!(
            "this host's KVM is kvm_pvm (software): the test guest runs, stock Linux guests boot \
             slowly and their user space cannot run"
        );
    }
    let program = match super::vm_program(vmm.program.as_deref()) {
        Ok(program) => {
            info!(program = %program.display(), "VM processes run as this program");
            program
        }
        // The server still serves everything else; each VM start then fails with the reason.
        Err(why) => {
            warn!("VMs cannot run: {why}");
            vmm.program
                .clone()
                .unwrap_or_else(|| PathBuf::from("cimvirt-vmm"))
        }
    };
    let run_dir = vmm
        .run_dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("run"));
    let mut config = SupervisorConfig::new(run_dir, program, Vec::new());
    config.kvm_device = vmm.kvm_device.clone();
    config.start_timeout = Duration::from_secs(vmm.start_timeout_secs);
    config.sandbox = vmm.sandbox;
    config.vm_users = vmm.users;
    config.cgroup_root = vmm.cgroup_root.clone();
    if !vmm.sandbox {
        warn!(
            "[vmm] sandbox = false: VM processes run with the server's privileges, in its \
             namespaces and without seccomp filters; a guest that escapes its VMM owns the host"
        );
    }
    let supervisor = Supervisor::new(config).map_err(|e| format!("VM run directory: {e}"))?;
    // Every VM's control socket is RUN_DIR/UUID.sock: the directory must leave room for it.
    supervisor
        .check_name_fits(&"0".repeat(UUID_BYTES))
        .map_err(|e| format!("[vmm] run_dir is too long for VM control sockets: {e}"))?;
    let adopted = supervisor
        .adopt()
        .map_err(|e| format!("re-adopting VMs: {e}"))?;
    if !adopted.is_empty() {
        info!(?adopted, "re-adopted running VMs");
    }
    Ok((supervisor, host))
}

/// The length of a UUID in text, as VM processes are named.
const UUID_BYTES: usize = 36;

/// Files the server keeps open beside its connections: listeners, the database, logs,
/// VM control sockets, outgoing connections.
const RESERVED_FILES: u64 = 256;

/// Raises the open-files limit to what `limits.max_connections` needs; if the hard limit
/// does not allow it, lowers the connection limit to fit instead, so that the connection
/// table (which makes room by closing idle connections) is full before accept(2) fails.
fn fit_open_files(mut limits: http::HttpLimits) -> http::HttpLimits {
    let wanted = limits.max_connections as u64 + RESERVED_FILES;
    match hypervisor_shim::rlimits::raise_open_files(wanted) {
        Ok(soft) if soft < wanted => {
            let fit = soft.saturating_sub(RESERVED_FILES).max(16) as usize;
            warn!(
                open_files = soft,
                max_connections = fit,
                "the open-files limit (ulimit -Hn) is too low for [limits] max_connections; serving fewer"
            );
            limits.max_connections = fit;
            limits.max_connections_per_client = limits.max_connections_per_client.min(fit);
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read the open-files limit"),
    }
    limits
}

/// Threads the async runtime may start for blocking work.
const MAX_BLOCKING_THREADS: usize = 64;

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> ExitCode {
    let settings = match settings(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cimvirtd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&settings.config) {
        eprintln!("cimvirtd: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = settings.config.auth.argon2.validate() {
        eprintln!("cimvirtd: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work (VM control, migration files) is bounded like everything else a
        // request can start; password checks have threads of their own.
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(addrs: &[SocketAddr], scheme: Scheme) -> Result<Vec<Listener>, String> {
    let mut out = Vec::new();
    for addr in addrs {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        out.push(Listener { scheme, socket });
    }
    Ok(out)
}

async fn serve(settings: Settings) -> Result<(), String> {
    let data_dir = &settings.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let db_path = data_dir.join("cimvirt.redb");
    let store = Arc::new(Store::open(&db_path).map_err(|e| {
        format!(
            "cannot open the database {}: {e} (is another cimvirtd using this data directory?)",
            db_path.display()
        )
    })?);
    if auth::list_users(&store)
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        create_initial_admin(&store, data_dir, &settings.config)?;
    }
    let limits = settings.config.limits.clone();
    let auth_settings = settings
        .config
        .auth
        .settings(Duration::from_secs(limits.auth_cache_secs));
    let authenticator = Authenticator::new(&store, auth_settings).map_err(|e| e.to_string())?;
    info!(
        threads = authenticator.workers(),
        "password checks run on a fixed set of threads"
    );
    let identity = ServerIdentity::current();
    let tls = if settings.https.is_empty() {
        None
    } else {
        let (cert, key, generate) = match (&settings.tls_cert, &settings.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), false),
            _ => (
                data_dir.join("tls/cert.pem"),
                data_dir.join("tls/key.pem"),
                true,
            ),
        };
        let certificate =
            tls::load(&cert, &key, &identity.hostname, generate).map_err(|e| e.to_string())?;
        if certificate.generated {
            let _ = std::fs::set_permissions(
                data_dir.join("tls"),
                std::fs::Permissions::from_mode(0o700),
            );
            info!(cert = %certificate.cert_path.display(), "generated a self-signed TLS certificate");
        }
        info!(
            sha256 = certificate.fingerprint,
            "TLS certificate fingerprint"
        );
        Some((certificate.config, certificate.cert_path))
    };
    let own_certificate = tls.as_ref().map(|(_, path)| path.clone());
    let tls = tls.map(|(config, _)| config);
    let trusted =
        http::client::trust_anchors(&settings.config.tls.trusted, own_certificate.as_deref());
    let outgoing =
        http::client::Client::new(&trusted).map_err(|e| format!("[tls] trusted: {e}"))?;
    let schema = provider::schema::load().map_err(|d| {
        format!(
            "the built-in schema does not compile (a build defect):\n{}",
            cim_schema::mof::render(&d)
        )
    })?;
    let console_limits = settings.config.console.limits()?;
    // Bound before the providers are built: the console URLs they show name each listener.
    let mut listeners = bind(&settings.http, Scheme::Http).await?;
    listeners.extend(bind(&settings.https, Scheme::Https).await?);
    let mut bound = Vec::with_capacity(listeners.len());
    for l in &listeners {
        let addr = l.socket.local_addr().map_err(|e| e.to_string())?;
        info!(scheme = ?l.scheme, %addr, "listening (CIM-XML at /cimom, WS-Management at /wsman, consoles at /console/NAME)");
        bound.push((addr, l.scheme == Scheme::Https));
    }
    let console_urls = ConsoleUrls::new(
        &bound,
        settings
            .config
            .console
            .url_host
            .as_deref()
            .unwrap_or(&identity.hostname),
    );
    let mut registry = Registry::default();
    let (supervisor, host) = start_supervisor(&settings)?;
    let storage_pools = settings.config.storage.settings(data_dir);
    let (vm_events, vm_event_queue) = provider::vm::events::channel();
    let manager = Arc::new(
        VirtManager::new(
            supervisor,
            store.clone(),
            data_dir.join("vms"),
            host,
            storage_pools,
            Some(vm_events),
            console_limits,
        )
        .map_err(|e| e.to_string())?,
    );
    manager
        .start_automatically()
        .map_err(|e| format!("starting the automatic-start thread: {e}"))?;
    let migration = &settings.config.migration;
    let virt = Virt::new(
        manager.clone(),
        identity.hostname.clone(),
        MigrationSettings {
            client: outgoing.clone(),
            user: migration.user.clone(),
            password_file: migration.password_file.clone(),
            port: migration.port,
            timeout: Duration::from_secs(migration.timeout_secs.max(1)),
        },
        console_urls,
    );
    let migration_endpoint = provider::virt::migration::Receiver::new(manager.clone());
    let console_endpoint = ConsoleEndpoint::new(manager.clone());
    virt.register(&schema, &mut registry);
    let hostname = identity.hostname.clone();
    let indication_settings = Arc::new(
        cimom::dispatch::indication::settings::IndicationSettings::load(store.clone())
            .map_err(|e| format!("database: {e}"))?,
    );
    let interop = Interop::new(identity, indication_settings.clone());
    virt.register_profiles(&interop);
    interop.register(&mut registry);
    let cimom = Arc::new(
        Cimom::open(schema, store.clone(), registry, limits.cimom()).map_err(|e| e.to_string())?,
    );
    let dispatcher = cimom::dispatch::indication::dispatcher::Dispatcher::start(
        cimom.clone(),
        outgoing.clone(),
        indication_settings,
    );
    manager.report_changes_while_away();
    let indications = tokio::spawn(provider::virt::indications::run(
        vm_event_queue,
        manager,
        cimom.clone(),
        hostname,
        dispatcher,
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper_cimom = cimom.clone();
    let mut sweeper_stop = stop_rx.clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let expired = sweeper_cimom.pulls().sweep();
                    if expired > 0 {
                        info!(expired, "closed expired enumeration contexts");
                    }
                }
                _ = sweeper_stop.changed() => break,
            }
        }
    });
    // WS-Eventing upkeep (expiries, heartbeats) on a task of its own: a slow event sink
    // must not hold up the enumeration sweeper.
    let events_cimom = cimom.clone();
    let events = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut heartbeats = std::collections::HashMap::new();
        loop {
            tick.tick().await;
            cimom::dispatch::indication::maintain(&outgoing, &events_cimom, &mut heartbeats).await;
        }
    });
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        }
        let _ = stop_tx.send(true);
    });
    let http_limits = fit_open_files(limits.http());
    info!(data_dir = %data_dir.display(), version = env!("CARGO_PKG_VERSION"), "cimvirtd ready");
    http::serve(
        listeners,
        tls,
        http::Services {
            cimom: cimom.clone(),
            auth: authenticator,
            wsman: settings.config.wsman.settings(),
            endpoints: vec![migration_endpoint, console_endpoint],
        },
        http_limits,
        stop_rx,
    )
    .await
    .map_err(|e| e.to_string())?;
    // The background tasks hold the object manager and, through it, the database: they
    // end before it is closed.
    for task in [indications, sweeper, events] {
        task.abort();
        let _ = task.await;
    }
    drop((cimom, virt, interop));
    match Arc::try_unwrap(store) {
        Ok(store) => drop(store),
        Err(_) => {
            warn!("the database is still referenced at exit; redb will close it with the process")
        }
    }
    info!("stopped");
    Ok(())
}
