//! The server side of VM processes: starts them, talks to them over their control sockets,
//! watches them end, and after a server restart re-adopts the ones still running.
//!
//! A VM process runs in its own process group with its output in `<run_dir>/<name>.log`, so it
//! outlives the server. Its socket is `<run_dir>/<name>.sock`; when it ends it leaves
//! `<name>.exit` saying why, which is how a supervisor that did not start it learns.

use crate::cgroup::{self, Cgroups};
use crate::lifecycle::State;
use crate::lock;
use crate::protocol::{self, ErrorKind, Event, Notice, Request, Response, Status};
use crate::sandbox::users::{self, IdRange, UserPool, VmUser};
use crate::vmm::config::VmConfig;
use crate::vmm::{exit_record_path, snapshot};
use crate::ExitRecord;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How the supervisor starts VM processes.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// Sockets, logs, definitions and exit records of VM processes.
    pub run_dir: PathBuf,
    /// The program that runs one VM: `cimvirt-vmm`, or a launcher that runs it.
    pub vmm_program: PathBuf,
    /// Arguments before the VM's own: none for `cimvirt-vmm`; a launcher's, ending with
    /// `cimvirt-vmm`'s path (the tests run VMs through `ip netns exec NS cimvirt-vmm`).
    pub vmm_args: Vec<OsString>,
    /// The KVM device.
    pub kvm_device: PathBuf,
    /// How long a new VM process may take to open its socket.
    pub start_timeout: Duration,
    /// The cgroup v2 mount, for CPU weight and limits.
    pub cgroup_root: PathBuf,
    /// Whether VM processes confine themselves (see [`crate::sandbox`]); off only to debug.
    pub sandbox: bool,
    /// The ids confined VM processes run as, one each (see [`crate::sandbox::users`]).
    pub vm_users: IdRange,
}

impl SupervisorConfig {
    /// Defaults for `run_dir` and the given VMM program.
    pub fn new(run_dir: PathBuf, vmm_program: PathBuf, vmm_args: Vec<OsString>) -> Self {
        SupervisorConfig {
            run_dir,
            vmm_program,
            vmm_args,
            kvm_device: PathBuf::from(crate::hypervisor::kvm::DEFAULT_DEVICE),
            start_timeout: Duration::from_secs(30),
            cgroup_root: PathBuf::from(cgroup::DEFAULT_ROOT),
            sandbox: true,
            vm_users: crate::sandbox::users::DEFAULT_RANGE,
        }
    }
}

/// What can go wrong talking to VM processes.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A VM of that name has a running process.
    #[error("VM {0} is already running")]
    AlreadyRunning(String),
    /// No VM of that name has a running process.
    #[error("VM {0} is not running")]
    NotRunning(String),
    /// The definition was refused before a process was started.
    #[error("{0}")]
    Invalid(String),
    /// The VM process could not start, with its own explanation.
    #[error("VM {name} did not start: {reason}")]
    StartFailed {
        /// The VM.
        name: String,
        /// Why (from its exit record or log).
        reason: String,
    },
    /// The VM refused or failed a request.
    #[error("{message}")]
    Vm {
        /// The kind of failure.
        kind: ErrorKind,
        /// What the VM process said.
        message: String,
    },
    /// The control connection failed (the process is probably gone).
    #[error("VM {name}: control connection: {error}")]
    Connection {
        /// The VM.
        name: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The files a request hands the VM could not be made ready or put in place.
    #[error("{0}")]
    Files(String),
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, SupervisorError>;

/// Hears every VM's events: the VM's name and the event. Process ends arrive as
/// [`Event::State`] with off, saved or crashed.
pub type EventListener = Arc<dyn Fn(&str, &Event) + Send + Sync>;

/// One running VM process.
#[derive(Debug)]
pub struct VmHandle {
    name: String,
    pid: u32,
    /// The user the process runs as, if it was given its own.
    user: Option<VmUser>,
    socket: PathBuf,
    control: Mutex<UnixStream>,
    exit: Mutex<Option<ExitRecord>>,
    exited: Condvar,
    /// The newest state heard from the process, with the number of the event (or the
    /// `events_sent` of the status) it came from.
    observed: Mutex<(State, u64)>,
}

/// The size of `sockaddr_un.sun_path` on Linux, its terminating NUL included.
const SUN_PATH_BYTES: usize = 108;

/// How long a request whose connection the process closed waits for the process's end to
/// be recorded.
const PROCESS_END_WAIT: Duration = Duration::from_secs(2);

/// Whether `error` on a control connection means the process is gone or going.
fn lost_process(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        UnexpectedEof | BrokenPipe | ConnectionReset | ConnectionRefused | NotFound
    )
}

/// The control socket's read timeout for requests that answer at once.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl VmHandle {
    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The VM process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The unprivileged user the VM process runs as, if it was given its own.
    pub fn user(&self) -> Option<VmUser> {
        self.user
    }

    /// Sends one request and reads its response.
    pub fn request(&self, request: &Request) -> Result<Response> {
        let response = match self.exchange(request) {
            Ok(response) => response,
            Err(SupervisorError::Connection { name, error }) if lost_process(&error) => {
                // The process is ending: its failure is reported once its watcher has
                // recorded how it ended, so that whoever hears of the failure and looks at
                // the VM next sees it ended, not the state it was in.
                self.wait_exit(PROCESS_END_WAIT);
                return Err(SupervisorError::Connection { name, error });
            }
            Err(e) => return Err(e),
        };
        if request.may_change_state() {
            // The event that reports the change may still be on its way to the watcher:
            // ask, so that the observed state is this request's result from now on. (A
            // process that has just ended answers nothing; its watcher records the end.)
            let _ = self.status();
        }
        Ok(response)
    }

    /// Writes `request` and reads the answer, over the main connection when it is free.
    fn exchange(&self, request: &Request) -> Result<Response> {
        let wait = match request {
            Request::Shutdown { timeout_ms } => Duration::from_millis(*timeout_ms) + REPLY_TIMEOUT,
            _ => REPLY_TIMEOUT,
        };
        let io = |error| SupervisorError::Connection {
            name: self.name.clone(),
            error,
        };
        // One request at a time per connection: while the main one waits (a graceful
        // shutdown can take a minute), others go over a connection of their own.
        let mut own;
        let mut shared;
        let stream: &mut UnixStream = match self.control.try_lock() {
            Ok(guard) => {
                shared = guard;
                &mut shared
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                shared = p.into_inner();
                &mut shared
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                own = connect(&self.socket).map_err(io)?.0;
                &mut own
            }
        };
        let outgoing = Outgoing::prepare(request)?;
        stream.set_read_timeout(Some(wait)).map_err(io)?;
        protocol::send_request(stream, request, &outgoing.files()).map_err(io)?;
        let response = match protocol::read_message(stream).map_err(io)? {
            Some(response) => response,
            None => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the VM process closed the connection",
                )))
            }
        };
        if matches!(response, Response::Ok) {
            outgoing.place()?;
        }
        Ok(response)
    }

    /// Sends a request that answers `ok` or an error.
    pub fn call(&self, request: &Request) -> Result<()> {
        match self.request(request)? {
            Response::Ok => Ok(()),
            Response::Error { kind, message } => Err(SupervisorError::Vm { kind, message }),
            other => Err(SupervisorError::Vm {
                kind: ErrorKind::Failed,
                message: format!("unexpected response {other:?}"),
            }),
        }
    }

    /// Copies guest memory into the file at `path` while the VM runs (see
    /// [`Request::CopyMemory`]); returns the file ranges written.
    pub fn copy_memory(&self, path: &Path, dirty_only: bool) -> Result<Vec<(u64, u64)>> {
        let request = Request::CopyMemory {
            path: path.to_owned(),
            dirty_only,
        };
        match self.request(&request)? {
            Response::Copied { ranges } => Ok(ranges),
            Response::Error { kind, message } => Err(SupervisorError::Vm { kind, message }),
            other => Err(SupervisorError::Vm {
                kind: ErrorKind::Failed,
                message: format!("unexpected response {other:?}"),
            }),
        }
    }

    /// The VM's status, asked now.
    pub fn status(&self) -> Result<Status> {
        match self.exchange(&Request::Status)? {
            Response::Status(status) => {
                self.observe(status.state, status.events_sent);
                Ok(*status)
            }
            Response::Error { kind, message } => Err(SupervisorError::Vm { kind, message }),
            other => Err(SupervisorError::Vm {
                kind: ErrorKind::Failed,
                message: format!("unexpected response {other:?}"),
            }),
        }
    }

    /// The state the process last reported, by event or in a status, without asking it:
    /// what every request that changed the state has left, and any change since that its
    /// event has brought.
    pub fn observed_state(&self) -> State {
        lock(&self.observed).0
    }

    /// Keeps `state` unless something newer than event `seq` has been heard.
    fn observe(&self, state: State, seq: u64) {
        let mut observed = lock(&self.observed);
        if seq >= observed.1 {
            *observed = (state, seq);
        }
    }

    /// Waits up to `timeout` for the process to end; returns its exit record.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitRecord> {
        let deadline = Instant::now() + timeout;
        let mut exit = lock(&self.exit);
        while exit.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            exit = self
                .exited
                .wait_timeout(exit, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        exit.clone()
    }

    /// The exit record, once the process has ended.
    pub fn exit_record(&self) -> Option<ExitRecord> {
        lock(&self.exit).clone()
    }
}

/// The files a request hands the VM process (see [`Request::files`]), which it writes and
/// this side then puts in place: the VM, confined to an empty root, can name no file.
enum Outgoing {
    None,
    Snapshot(snapshot::Pending),
    Memory(fs::File),
}

impl Outgoing {
    fn prepare(request: &Request) -> Result<Outgoing> {
        let files = |e: crate::Error| SupervisorError::Files(e.to_string());
        Ok(match request {
            Request::Save { dir } | Request::Snapshot { dir } => {
                Outgoing::Snapshot(snapshot::Pending::create(dir, false).map_err(files)?)
            }
            Request::SaveState { dir } => {
                Outgoing::Snapshot(snapshot::Pending::create(dir, true).map_err(files)?)
            }
            Request::CopyMemory { path, dirty_only } => {
                // A full copy starts from an empty file; a copy of the dirty pages goes over
                // the previous one.
                let file = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(!dirty_only)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| {
                        SupervisorError::Files(format!("opening {}: {e}", path.display()))
                    })?;
                Outgoing::Memory(file)
            }
            _ => Outgoing::None,
        })
    }

    fn files(&self) -> Vec<&fs::File> {
        match self {
            Outgoing::None => Vec::new(),
            Outgoing::Snapshot(pending) => pending.files(),
            Outgoing::Memory(file) => vec![file],
        }
    }

    /// After the VM's `ok`: a snapshot's files get their names.
    fn place(self) -> Result<()> {
        match self {
            Outgoing::Snapshot(pending) => pending
                .place()
                .map_err(|e| SupervisorError::Files(e.to_string())),
            Outgoing::None | Outgoing::Memory(_) => Ok(()),
        }
    }
}

/// Starts and tracks VM processes.
pub struct Supervisor {
    config: SupervisorConfig,
    users: Arc<UserPool>,
    running: Arc<Mutex<HashMap<String, Arc<VmHandle>>>>,
    ended: Arc<Mutex<HashMap<String, ExitRecord>>>,
    listeners: Arc<Mutex<Vec<EventListener>>>,
}

/// What a new VM process starts from.
enum Origin<'a> {
    Boot(&'a VmConfig),
    Restore { dir: &'a Path, config: &'a VmConfig },
}

impl Origin<'_> {
    fn config(&self) -> &VmConfig {
        match self {
            Origin::Boot(config) | Origin::Restore { config, .. } => config,
        }
    }
}

impl Supervisor {
    /// A supervisor over `config.run_dir` (created, mode 0700).
    pub fn new(config: SupervisorConfig) -> Result<Supervisor> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.run_dir)?;
        Ok(Supervisor {
            users: Arc::new(UserPool::new(config.vm_users)),
            config,
            running: Arc::default(),
            ended: Arc::default(),
            listeners: Arc::default(),
        })
    }

    /// Adds a listener for every VM's events.
    pub fn listen(&self, listener: EventListener) {
        lock(&self.listeners).push(listener);
    }

    /// The handle of a running VM.
    pub fn get(&self, name: &str) -> Option<Arc<VmHandle>> {
        lock(&self.running).get(name).cloned()
    }

    /// Names of the running VMs.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.running).keys().cloned().collect();
        names.sort();
        names
    }

    /// How a VM that is no longer running ended, if this supervisor saw it.
    pub fn last_exit(&self, name: &str) -> Option<ExitRecord> {
        lock(&self.ended).get(name).cloned()
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.config.run_dir.join(format!("{name}.sock"))
    }

    /// Removes what the VM `name`'s processes left in the run directory (their log, the
    /// configuration they started with, how the last one ended) and forgets how it ended;
    /// for a VM that is gone for good. Does nothing while it runs.
    pub fn remove_files(&self, name: &str) {
        if self.get(name).is_some() {
            return;
        }
        lock(&self.ended).remove(name);
        let socket = self.socket(name);
        for path in [
            self.config.run_dir.join(format!("{name}.log")),
            self.config.run_dir.join(format!("{name}.json")),
            exit_record_path(&socket),
            crate::sandbox::fault_record_path(&socket),
            socket,
        ] {
            let _ = fs::remove_file(path);
        }
    }

    /// Why a VM named `name` could not run here: its control socket's path would not fit a
    /// Unix socket address (`sun_path`, 108 bytes with its NUL).
    pub fn check_name_fits(&self, name: &str) -> std::result::Result<(), String> {
        let path = self.socket(name);
        let len = path.as_os_str().len();
        if len >= SUN_PATH_BYTES {
            return Err(format!(
                "a name of {} bytes makes the control socket {} of {len} bytes, and a Unix \
                 socket path has at most {}",
                name.len(),
                path.display(),
                SUN_PATH_BYTES - 1
            ));
        }
        Ok(())
    }

    /// Takes over the VM processes whose sockets are in the run directory (after a server
    /// restart); returns their names. Sockets nobody answers on are cleaned up, and the exit
    /// records beside them remembered.
    pub fn adopt(&self) -> Result<Vec<String>> {
        let mut adopted = Vec::new();
        for entry in fs::read_dir(&self.config.run_dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("sock") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            if self.get(&name).is_some() {
                continue;
            }
            match connect(&path) {
                Ok((stream, pid)) => {
                    let user = users::uid_of(pid)
                        .filter(|&uid| self.config.vm_users.contains(uid))
                        .map(|uid| {
                            self.users.mark_taken(uid);
                            VmUser { uid, gid: uid }
                        });
                    self.track(&name, pid, stream, None, user)?;
                    adopted.push(name);
                }
                Err(e) => {
                    tracing::info!(vm = %name, "removing the socket of a VM process that is gone: {e}");
                    let _ = fs::remove_file(&path);
                    if let Some(record) = take_exit_record(&path) {
                        lock(&self.ended).insert(name, record);
                    }
                }
            }
        }
        for (name, record) in self.ended_records()? {
            lock(&self.ended).entry(name).or_insert(record);
        }
        adopted.sort();
        Ok(adopted)
    }

    /// Exit records without a socket: VMs that ended while no supervisor watched.
    fn ended_records(&self) -> Result<Vec<(String, ExitRecord)>> {
        let mut records = Vec::new();
        for entry in fs::read_dir(&self.config.run_dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("exit") {
                if let (Some(name), Some(record)) = (
                    path.file_stem().and_then(|s| s.to_str()),
                    ExitRecord::read(&path),
                ) {
                    records.push((name.to_owned(), record));
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(records)
    }

    /// Boots a VM in a new process.
    pub fn start(&self, config: &VmConfig) -> Result<Arc<VmHandle>> {
        config
            .validate(u32::MAX)
            .map_err(SupervisorError::Invalid)?;
        self.spawn(&config.name, Origin::Boot(config))
    }

    /// Starts a VM process from a saved state or snapshot directory.
    pub fn restore(&self, name: &str, snapshot: &Path) -> Result<Arc<VmHandle>> {
        let file = crate::vmm::snapshot::read(snapshot)
            .map_err(|e| SupervisorError::Invalid(e.to_string()))?;
        if file.config.name != name {
            return Err(SupervisorError::Invalid(format!(
                "the snapshot in {} is of VM {}, not {name}",
                snapshot.display(),
                file.config.name
            )));
        }
        self.spawn(
            name,
            Origin::Restore {
                dir: snapshot,
                config: &file.config,
            },
        )
    }

    fn spawn(&self, name: &str, origin: Origin<'_>) -> Result<Arc<VmHandle>> {
        if self.get(name).is_some() {
            return Err(SupervisorError::AlreadyRunning(name.to_owned()));
        }
        let socket = self.socket(name);
        if connect(&socket).is_ok() {
            return Err(SupervisorError::AlreadyRunning(name.to_owned()));
        }
        let (weight, limit) = (
            origin.config().cpu_weight,
            origin.config().cpu_limit_percent,
        );
        let cgroups = cgroup::probe(&self.config.cgroup_root);
        if weight.is_some() || limit.is_some() {
            // A CPU setting this host cannot enforce is refused, never ignored.
            if let Some(why) = cgroup::cpu_unsupported_by(&cgroups) {
                return Err(SupervisorError::Invalid(why));
            }
        }
        let placement = cgroups
            .ok()
            .map(|cgroups| {
                let limits = cgroups.limits(origin.config().memory_bytes(), weight, limit);
                (cgroups, limits)
            })
            .filter(|(_, limits)| !limits.is_empty());
        let _ = fs::remove_file(&socket);
        let _ = fs::remove_file(exit_record_path(&socket));
        let _ = fs::remove_file(crate::sandbox::fault_record_path(&socket));
        let user = if self.config.sandbox {
            Some(self.users.take().ok_or_else(|| {
                SupervisorError::Invalid(format!(
                    "every id of the VM users' range {} is taken by a running VM",
                    self.config.vm_users
                ))
            })?)
        } else {
            None
        };
        let lease = UserLease {
            pool: &self.users,
            user,
        };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config.run_dir.join(format!("{name}.log")))?;

        let mut command = Command::new(&self.config.vmm_program);
        command
            .args(&self.config.vmm_args)
            .arg("--socket")
            .arg(&socket);
        command.arg("--kvm-device").arg(&self.config.kvm_device);
        match lease.user {
            Some(user) => {
                command
                    .arg("--uid")
                    .arg(user.uid.to_string())
                    .arg("--gid")
                    .arg(user.gid.to_string());
            }
            None => {
                command.arg("--no-sandbox");
            }
        }
        match origin {
            Origin::Boot(config) => {
                let path = self.config.run_dir.join(format!("{name}.json"));
                fs::write(
                    &path,
                    serde_json::to_vec_pretty(config).map_err(std::io::Error::other)?,
                )?;
                command.arg("--config").arg(path);
            }
            Origin::Restore { dir, .. } => {
                command.arg("--restore").arg(dir);
            }
        }
        // The VM waits for `start` until its events are subscribed to, so none is missed.
        command.arg("--paused-at-start");
        // Its own process group: a Ctrl-C or SIGTERM for the server's group leaves VMs running.
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let mut child = command.spawn()?;

        let deadline = Instant::now() + self.config.start_timeout;
        let mut pause = Duration::from_micros(100);
        let (stream, pid) = loop {
            if let Some(status) = child.try_wait()? {
                let reason = take_exit_record(&socket)
                    .map(|r| r.reason)
                    .unwrap_or_else(|| describe_status(status));
                return Err(SupervisorError::StartFailed {
                    name: name.to_owned(),
                    reason,
                });
            }
            if let Ok(connected) = connect(&socket) {
                break connected;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SupervisorError::StartFailed {
                    name: name.to_owned(),
                    reason: format!("no control socket after {:?}", self.config.start_timeout),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        };
        let handle = self.track(name, pid, stream, Some(child), lease.hand_over())?;
        if let Some((cgroups, limits)) = placement {
            let placed = cgroups.place(name, pid, &limits);
            match placed {
                // The VM asked for CPU settings: they hold or the VM does not run.
                Err(e) if weight.is_some() || limit.is_some() => {
                    let _ = handle.call(&Request::Stop);
                    return Err(SupervisorError::Invalid(format!(
                        "placing VM {name} in its cgroup: {e}"
                    )));
                }
                Err(e) => tracing::warn!(
                    vm = %name,
                    "the VM process runs without a memory limit: placing it in its cgroup: {e}"
                ),
                Ok(_) => {}
            }
        }
        if let Err(e) = handle.call(&Request::Start) {
            // A VM that cannot start must not stay behind, built and waiting.
            let _ = handle.call(&Request::Stop);
            return Err(e);
        }
        Ok(handle)
    }

    /// Registers a connected VM process and starts watching its events.
    /// The process runs as `user`, which the pool gets back when it ends.
    fn track(
        &self,
        name: &str,
        pid: u32,
        control: UnixStream,
        child: Option<Child>,
        user: Option<VmUser>,
    ) -> Result<Arc<VmHandle>> {
        let handle = Arc::new(VmHandle {
            name: name.to_owned(),
            pid,
            user,
            socket: self.socket(name),
            control: Mutex::new(control),
            exit: Mutex::new(None),
            exited: Condvar::new(),
            observed: Mutex::new((State::Starting, 0)),
        });
        let events = connect(&self.socket(name)).and_then(|(mut stream, _)| {
            protocol::write_message(&mut stream, &Request::Subscribe)?;
            match protocol::read_message::<Response, _>(&mut stream)? {
                Some(Response::Ok) => Ok(stream),
                other => Err(std::io::Error::other(format!(
                    "subscribe answered {other:?}"
                ))),
            }
        });
        // Asked after subscribing: a change in between is both in this answer and in an
        // event the watcher orders against it.
        let _ = handle.status();
        lock(&self.running).insert(name.to_owned(), handle.clone());
        let watcher = Watcher {
            handle: handle.clone(),
            socket: self.socket(name),
            child,
            running: self.running.clone(),
            ended: self.ended.clone(),
            listeners: self.listeners.clone(),
            cgroups: cgroup::probe(&self.config.cgroup_root).ok(),
            users: self.users.clone(),
        };
        std::thread::Builder::new()
            .name(format!("watch-{name}"))
            .spawn(move || watcher.run(events.ok()))?;
        Ok(handle)
    }
}

/// Follows one VM process's events until it ends, then records how.
struct Watcher {
    handle: Arc<VmHandle>,
    socket: PathBuf,
    child: Option<Child>,
    running: Arc<Mutex<HashMap<String, Arc<VmHandle>>>>,
    ended: Arc<Mutex<HashMap<String, ExitRecord>>>,
    listeners: Arc<Mutex<Vec<EventListener>>>,
    cgroups: Option<Cgroups>,
    users: Arc<UserPool>,
}

/// A user taken from the pool for a VM process being started: given back if the start
/// fails before the process is tracked, whose watcher gives it back when it ends.
struct UserLease<'a> {
    pool: &'a UserPool,
    user: Option<VmUser>,
}

impl UserLease<'_> {
    fn hand_over(mut self) -> Option<VmUser> {
        self.user.take()
    }
}

impl Drop for UserLease<'_> {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            self.pool.give_back(user);
        }
    }
}

impl Watcher {
    fn notify(&self, event: &Event) {
        let listeners: Vec<EventListener> = lock(&self.listeners).clone();
        for listener in listeners {
            listener(&self.handle.name, event);
        }
    }

    fn run(mut self, events: Option<UnixStream>) {
        if let Some(mut stream) = events {
            while let Ok(Some(Notice { seq, event })) =
                protocol::read_message::<Notice, _>(&mut stream)
            {
                if let Event::State { state } = event {
                    self.handle.observe(state, seq);
                }
                if !matches!(
                    event,
                    Event::State {
                        state: State::Off | State::Saved | State::Crashed
                    }
                ) {
                    self.notify(&event);
                }
            }
        }
        // The event stream ended: the process is gone (or going). A child is reaped for its
        // status; an adopted process is waited for until its pid disappears.
        let status = match self.child.as_mut() {
            Some(child) => child.wait().ok(),
            None => {
                wait_for_pid_exit(self.handle.pid);
                None
            }
        };
        let record = take_exit_record(&self.socket).unwrap_or_else(|| ExitRecord {
            state: State::Crashed,
            reason: match status {
                Some(status) => describe_status(status),
                None => "the VM process ended without saying why (killed?)".to_owned(),
            },
        });
        if record.state == State::Crashed {
            tracing::warn!(vm = %self.handle.name, reason = %record.reason, "VM process crashed");
        }
        let _ = fs::remove_file(&self.socket);
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove(&self.handle.name);
        }
        if let Some(user) = self.handle.user {
            self.users.give_back(user);
        }
        lock(&self.running).remove(&self.handle.name);
        lock(&self.ended).insert(self.handle.name.clone(), record.clone());
        // Listeners hear of the end before anyone waiting for it goes on, so that what a
        // waiter does next (destroying the VM, say) is reported after it.
        if record.state == State::Crashed {
            self.notify(&Event::Crashed {
                reason: record.reason.clone(),
            });
        }
        self.notify(&Event::State {
            state: record.state,
        });
        *lock(&self.handle.exit) = Some(record);
        self.handle.exited.notify_all();
    }
}

fn wait_for_pid_exit(pid: u32) {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    for _ in 0..5000 {
        // A zombie (adopted processes are not our children) counts as gone.
        let state = fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if zombie || !proc_dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (_, Some(signal)) => format!("the VM process was killed by signal {signal}"),
        (Some(code), _) => format!("the VM process exited with code {code} and no exit record"),
        _ => "the VM process ended".to_owned(),
    }
}

/// How the process at `socket` ended: its exit record, else what its sandbox recorded when
/// it stopped the process (see [`crate::sandbox`]).
fn take_exit_record(socket: &Path) -> Option<ExitRecord> {
    let path = exit_record_path(socket);
    let fault = crate::sandbox::fault_record_path(socket);
    let record = ExitRecord::read(&path).or_else(|| ExitRecord::read(&fault));
    let _ = fs::remove_file(&path);
    let _ = fs::remove_file(&fault);
    record
}

/// Connects to a VM process and says hello; returns the stream and the process's pid.
fn connect(socket: &Path) -> std::io::Result<(UnixStream, u32)> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    protocol::write_message(
        &mut stream,
        &Request::Hello {
            version: protocol::VERSION,
        },
    )?;
    match protocol::read_message::<Response, _>(&mut stream)? {
        Some(Response::Hello { pid, .. }) => {
            stream.set_read_timeout(None)?;
            Ok((stream, pid))
        }
        other => Err(std::io::Error::other(format!("hello answered {other:?}"))),
    }
}
