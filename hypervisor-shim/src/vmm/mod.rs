//! One VM process (`cimvirt-vmm`): builds the machine, runs a thread per vCPU, and carries
//! out the control protocol's requests, checked against the lifecycle state machine.

pub mod config;
pub mod control;
pub mod machine;
pub mod snapshot;
pub mod vcpu;

use crate::devices::console::Console;
use crate::devices::PlatformEvent;
use crate::hypervisor::kvm::KvmHypervisor;
use crate::lifecycle::{Action, State};
use crate::lock;
use crate::protocol::{ErrorKind, Event, Request, Response, Status};
use crate::{Error, ExitRecord};
use config::{Boot, VmConfig};
use control::{PendingRequest, Subscribers};
use machine::{Machine, Origin};
use snapshot::MachineState;
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use vcpu::{VcpuFailure, VcpuHandle, VcpuReply, VcpuRequest};

/// How a VM process is started.
#[derive(Debug, Clone)]
pub struct VmmArgs {
    /// The control socket to create.
    pub socket: PathBuf,
    /// The VM definition (JSON), for a fresh boot.
    pub config: Option<PathBuf>,
    /// A snapshot directory to restore instead.
    pub restore: Option<PathBuf>,
    /// Build the machine but wait for a `start` request before running it.
    pub paused_at_start: bool,
    /// The KVM device.
    pub kvm_device: PathBuf,
    /// Confine the process once the machine is built (see [`crate::sandbox`]); off only to
    /// debug the VMM.
    pub sandbox: bool,
    /// The unprivileged user a confined process becomes.
    pub user: Option<crate::sandbox::users::VmUser>,
}

/// Where the process leaves its exit record: beside the socket.
pub fn exit_record_path(socket: &Path) -> PathBuf {
    socket.with_extension("exit")
}

/// Runs a VM process to its end; returns the process exit code (0: powered off or saved,
/// 2: the guest crashed, 1: the VM could not be built).
pub fn run(args: VmmArgs) -> i32 {
    let started = SystemTime::now();
    let path = exit_record_path(&args.socket);
    let record = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path);
    let record = match record {
        Ok(file) => file,
        Err(e) => {
            eprintln!("cimvirt vmm: exit record {}: {e}", path.display());
            return 1;
        }
    };
    match Process::build(&args, started) {
        Ok(process) => process.run(record),
        Err(e) => {
            eprintln!("cimvirt vmm: {e}");
            ExitRecord {
                state: State::Crashed,
                reason: e.to_string(),
            }
            .write_to(&record);
            1
        }
    }
}

enum ControlEvent {
    Request(PendingRequest),
    Platform(PlatformEvent),
    VcpuFailed(VcpuFailure),
    /// COM1 output is waiting for a newline: deliver it after [`CONSOLE_FLUSH_DELAY`].
    ConsoleWaiting,
}

/// How long partial console output (a prompt, an echoed keystroke) waits for more before
/// it is delivered: long enough to gather what the guest writes in one go.
const CONSOLE_FLUSH_DELAY: Duration = Duration::from_millis(1);

/// How often bytes typed into a full COM1 FIFO are offered again.
const CONSOLE_INPUT_RETRY: Duration = Duration::from_millis(2);

/// The most typed bytes kept for a guest that reads COM1 slower than they come.
const MAX_CONSOLE_INPUT: usize = 64 << 10;

struct PendingShutdown {
    deadline: Instant,
    request: PendingRequest,
}

struct Process {
    machine: Machine,
    vcpus: Vec<VcpuHandle>,
    events: Receiver<ControlEvent>,
    subscribers: Subscribers,
    state: State,
    started: SystemTime,
    ready: SystemTime,
    last_reset: Option<String>,
    shutdown: Option<PendingShutdown>,
    msr_indices: Arc<Vec<u32>>,
    /// Restored from a snapshot taken while paused.
    restored_paused: bool,
    /// Where [`Process::finish`] writes how the VM ended (opened before the sandbox).
    exit_record: Option<File>,
    /// When partial console output is due.
    console_flush_at: Option<Instant>,
    /// Typed bytes COM1's FIFO could not take yet, oldest first.
    console_input: VecDeque<u8>,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Process {
    fn build(args: &VmmArgs, started: SystemTime) -> Result<Process, Error> {
        let hypervisor = KvmHypervisor::open(&args.kvm_device)
            .map_err(|e| Error::kvm_unavailable(&args.kvm_device, e))?;
        let snapshot = match &args.restore {
            Some(dir) => Some(snapshot::read(dir)?),
            None => None,
        };
        let config: VmConfig = match (&snapshot, &args.config) {
            (Some(s), _) => s.config.clone(),
            (None, Some(path)) => {
                let text = std::fs::read(path)
                    .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
                serde_json::from_slice(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            (None, None) => return Err(Error::Config("no configuration and no snapshot".into())),
        };

        let (tx, events) = mpsc::channel();
        let subscribers = Subscribers::default();
        let mut console = match &config.console_log {
            Some(path) => Console::to_file(path, config.console_log_max_bytes)
                .map_err(|e| Error::Config(format!("console log {}: {e}", path.display())))?,
            None => Console::discard(),
        };
        let console_subscribers = subscribers.clone();
        console.set_listener(Arc::new(move |bytes| {
            console_subscribers.broadcast(&Event::Console {
                bytes: bytes.to_vec(),
            })
        }));
        let console_tx = tx.clone();
        console.set_waker(Arc::new(move || {
            let _ = console_tx.send(ControlEvent::ConsoleWaiting);
        }));
        let platform_tx = tx.clone();
        let platform = Box::new(move |e| {
            let _ = platform_tx.send(ControlEvent::Platform(e));
        });
        let origin = match &snapshot {
            Some(s) => {
                let dir = args.restore.as_deref().unwrap_or(Path::new("."));
                let memory = crate::memory::Memory::from_snapshot(
                    &dir.join(snapshot::MEMORY_FILE),
                    s.memory_bytes,
                )
                .map_err(|e| Error::Snapshot(format!("memory of {}: {e}", dir.display())))?;
                Origin::Snapshot {
                    memory,
                    state: &s.state,
                }
            }
            None => Origin::Boot,
        };
        let (machine, vcpus) = Machine::build(&hypervisor, config, console, platform, origin)?;

        let _ = std::fs::remove_file(&args.socket);
        let listener = UnixListener::bind(&args.socket)
            .map_err(|e| Error::Config(format!("control socket {}: {e}", args.socket.display())))?;
        // Everything is open and no thread has started yet: from here on the process keeps
        // only what it holds, and each thread installs its filter first thing.
        if args.sandbox {
            let jail = crate::sandbox::Jail {
                fault_record: crate::sandbox::fault_record_path(&args.socket),
                empty_root_at: args
                    .socket
                    .parent()
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
                user: args.user,
            };
            let confinement = crate::sandbox::confine_process(&jail)?;
            tracing::info!(vm = %machine.config.name, %confinement, "VM process confined");
        } else {
            tracing::warn!(vm = %machine.config.name, "VM process NOT confined (sandbox off)");
        }
        let (request_tx, request_rx) = mpsc::channel();
        control::serve(listener, request_tx, subscribers.clone());
        let forward = tx.clone();
        std::thread::Builder::new()
            .name("control-requests".into())
            .spawn(move || {
                crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Control)
                    .unwrap_or_else(|e| crate::sandbox::abort_unconfined(&e));
                for request in request_rx {
                    if forward.send(ControlEvent::Request(request)).is_err() {
                        return;
                    }
                }
            })
            .map_err(Error::Io)?;

        let paused = args.paused_at_start;
        let mut handles = Vec::with_capacity(vcpus.len());
        for (index, vcpu) in vcpus.into_iter().enumerate() {
            let failed = tx.clone();
            let handle = VcpuHandle::spawn(
                index as u32,
                vcpu,
                machine.devices.clone(),
                machine.virtio.clone(),
                machine.memory.clone(),
                Box::new(move |f| {
                    let _ = failed.send(ControlEvent::VcpuFailed(f));
                }),
                paused,
            )
            .map_err(Error::Io)?;
            handles.push(handle);
        }
        let state = if paused {
            State::Starting
        } else {
            State::Running
        };
        let msr_indices = Arc::new(machine.msr_indices.clone());
        crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Vmm)?;
        Ok(Process {
            machine,
            vcpus: handles,
            events,
            subscribers,
            state,
            started,
            ready: SystemTime::now(),
            last_reset: None,
            shutdown: None,
            msr_indices,
            restored_paused: snapshot.as_ref().is_some_and(|s| s.paused),
            exit_record: None,
            console_flush_at: None,
            console_input: VecDeque::new(),
        })
    }

    fn run(mut self, exit_record: File) -> i32 {
        self.exit_record = Some(exit_record);
        tracing::info!(vm = %self.machine.config.name, state = %self.state, "VM process ready");
        loop {
            let event = match self.next_deadline() {
                Some(deadline) => {
                    match self
                        .events
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        Ok(event) => event,
                        Err(RecvTimeoutError::Timeout) => {
                            self.run_due_work();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            return self.finish(
                                State::Crashed,
                                "control channel closed".into(),
                                None,
                            )
                        }
                    }
                }
                None => match self.events.recv() {
                    Ok(event) => event,
                    Err(_) => {
                        return self.finish(State::Crashed, "control channel closed".into(), None)
                    }
                },
            };
            let exit = match event {
                ControlEvent::Request(request) => self.handle(request),
                ControlEvent::Platform(PlatformEvent::PowerOff) => {
                    self.subscribers.broadcast(&Event::GuestPowerOff);
                    let waiting = self.shutdown.take().map(|p| p.request);
                    Some(self.finish(State::Off, "the guest powered off".into(), waiting))
                }
                ControlEvent::Platform(PlatformEvent::Reset) => {
                    if let Err(e) = self.reset("guest") {
                        return self.finish(State::Crashed, format!("reset failed: {e}"), None);
                    }
                    None
                }
                ControlEvent::ConsoleWaiting => {
                    self.console_flush_at
                        .get_or_insert_with(|| Instant::now() + CONSOLE_FLUSH_DELAY);
                    None
                }
                ControlEvent::VcpuFailed(failure) => {
                    self.subscribers.broadcast(&Event::Crashed {
                        reason: failure.reason.clone(),
                    });
                    Some(self.finish(State::Crashed, failure.reason, None))
                }
            };
            if let Some(code) = exit {
                return code;
            }
        }
    }

    /// The earliest time something is due: a graceful shutdown's end, partial console
    /// output, typed bytes to offer COM1 again.
    fn next_deadline(&self) -> Option<Instant> {
        let input = (!self.console_input.is_empty()).then(|| Instant::now() + CONSOLE_INPUT_RETRY);
        [
            self.shutdown.as_ref().map(|p| p.deadline),
            self.console_flush_at,
            input,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does what [`Process::next_deadline`] said was due.
    fn run_due_work(&mut self) {
        let now = Instant::now();
        if self.shutdown.as_ref().is_some_and(|p| p.deadline <= now) {
            self.shutdown_timed_out();
        }
        if self.console_flush_at.is_some_and(|at| at <= now) {
            self.console_flush_at = None;
            let _ = lock(&self.machine.devices).console().drain();
        }
        self.offer_console_input();
    }

    /// Moves what COM1's FIFO takes of the typed bytes waiting.
    fn offer_console_input(&mut self) {
        if self.console_input.is_empty() {
            return;
        }
        let taken =
            lock(&self.machine.devices).send_to_serial(self.console_input.make_contiguous());
        self.console_input.drain(..taken);
    }

    /// Types `bytes` into COM1: what its FIFO cannot take now waits here, in order, up to
    /// [`MAX_CONSOLE_INPUT`] bytes.
    fn type_into_console(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.console_input.len() + bytes.len() > MAX_CONSOLE_INPUT {
            return Err(format!(
                "the guest is not reading COM1: {} typed bytes are already waiting",
                self.console_input.len()
            ));
        }
        self.console_input.extend(bytes);
        self.offer_console_input();
        Ok(())
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            self.subscribers.broadcast(&Event::State { state });
        }
    }

    /// Carries out one request; returns the exit code when the process must end.
    fn handle(&mut self, request: PendingRequest) -> Option<i32> {
        let asked = request.request.clone();
        let action = match &asked {
            Request::DirtyPages => {
                match self.machine.take_dirty_pages() {
                    Ok(pages) => request.reply(&Response::DirtyPages { pages }),
                    Err(e) => request.fail(ErrorKind::Failed, e.to_string()),
                }
                return None;
            }
            Request::CopyMemory { path, dirty_only } => {
                let started = Instant::now();
                let copied = self.copy_memory(&request.files[0], *dirty_only);
                match copied {
                    Ok(ranges) => {
                        tracing::info!(
                            path = %path.display(),
                            dirty_only,
                            bytes = ranges.iter().map(|(a, b)| b - a).sum::<u64>(),
                            ms = started.elapsed().as_secs_f64() * 1e3,
                            "memory copied"
                        );
                        request.reply(&Response::Copied { ranges })
                    }
                    Err(e) => request.fail(ErrorKind::Failed, e.to_string()),
                }
                return None;
            }
            Request::SaveState { .. } => {
                if self.state != State::Paused {
                    request.fail(
                        ErrorKind::InvalidState,
                        format!(
                            "the state is saved alone from a paused VM, not a {} one",
                            self.state
                        ),
                    );
                    return None;
                }
                let saved = self.capture().and_then(|state| {
                    snapshot::write_state(
                        &request.files[0],
                        &self.machine.config,
                        state,
                        self.machine.memory.size(),
                        true,
                    )
                });
                match saved {
                    Ok(()) => request.reply(&Response::Ok),
                    Err(e) => request.fail(ErrorKind::Failed, e.to_string()),
                }
                return None;
            }
            Request::Status => {
                let status = self.status();
                request.reply(&Response::Status(Box::new(status)));
                return None;
            }
            Request::SendConsole { bytes } => {
                match self.type_into_console(bytes) {
                    Ok(()) => request.reply(&Response::Ok),
                    Err(why) => request.fail(ErrorKind::Failed, why),
                }
                return None;
            }
            Request::CancelShutdown => {
                match self.shutdown.take() {
                    Some(pending) => {
                        pending
                            .request
                            .fail(ErrorKind::Cancelled, "the shutdown was cancelled");
                        self.set_state(State::Running);
                        request.reply(&Response::Ok);
                    }
                    None => request.fail(
                        ErrorKind::InvalidState,
                        format!("no shutdown is in progress (the VM is {})", self.state),
                    ),
                }
                return None;
            }
            Request::TestForbiddenSyscall => {
                if std::env::var_os(crate::protocol::TEST_REQUESTS_ENV).is_none() {
                    request.fail(ErrorKind::BadRequest, "requests for tests are off");
                    return None;
                }
                // ptrace(2) is in no filter: a confined process ends here. Unconfined,
                // PTRACE_PEEKDATA of pid 0 fails harmlessly.
                // SAFETY: the call reads nothing from this process's memory.
                let _ = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_PEEKDATA, 0, 0, 0) };
                request.fail(
                    ErrorKind::Failed,
                    "ptrace was allowed: this VM process is not confined",
                );
                return None;
            }
            Request::Hello { .. } | Request::Subscribe => {
                request.fail(
                    ErrorKind::BadRequest,
                    "hello and subscribe only open a connection",
                );
                return None;
            }
            Request::Start => {
                if self.state != State::Starting {
                    request.fail(
                        ErrorKind::InvalidState,
                        format!("cannot Start a VM that is {}", self.state),
                    );
                    return None;
                }
                // A VM restored from a snapshot taken paused comes back paused.
                if self.restored_paused {
                    self.set_state(State::Paused);
                } else {
                    self.resume_all();
                    self.set_state(State::Running);
                }
                request.reply(&Response::Ok);
                return None;
            }
            Request::Pause => Action::Pause,
            Request::Resume => Action::Resume,
            Request::Shutdown { .. } => Action::Shutdown,
            Request::Stop => Action::Stop,
            Request::Reset => Action::Reset,
            Request::Reboot => Action::Reboot,
            Request::Save { .. } => Action::Save,
            Request::Snapshot { .. } => Action::Snapshot,
        };
        let next = match self.state.apply(action) {
            Ok(next) => next,
            Err(e) => {
                request.fail(ErrorKind::InvalidState, e.to_string());
                return None;
            }
        };
        let result = match (&asked, action) {
            (_, Action::Pause) => self.pause_all().map(|()| self.set_state(next)),
            (_, Action::Resume) => {
                self.resume_all();
                self.set_state(next);
                Ok(())
            }
            (Request::Shutdown { timeout_ms }, _) => {
                // Linux hears the ACPI power button (Ctrl-Alt-Del would reboot it); the test
                // guest knows no ACPI and powers off on Ctrl-Alt-Del.
                let (pressed, what) = match self.machine.config.boot {
                    Boot::Linux { .. } => (
                        lock(&self.machine.devices).press_power_button(),
                        "the ACPI power button",
                    ),
                    Boot::TestGuest => (lock(&self.machine.devices).ctrl_alt_del(), "Ctrl-Alt-Del"),
                };
                if let Err(e) = pressed {
                    request.fail(ErrorKind::Failed, format!("pressing {what}: {e}"));
                    return None;
                }
                self.set_state(State::ShuttingDown);
                let deadline = Instant::now() + Duration::from_millis(*timeout_ms);
                self.shutdown = Some(PendingShutdown { deadline, request });
                return None;
            }
            (_, Action::Stop) => {
                if let Some(pending) = self.shutdown.take() {
                    pending
                        .request
                        .fail(ErrorKind::InvalidState, "the VM was stopped");
                }
                return Some(self.finish(State::Off, "stopped".into(), Some(request)));
            }
            (_, Action::Reset) => self.reset("reset"),
            (_, Action::Reboot) => self.reset("reboot"),
            (Request::Save { dir }, _) => {
                let dir = dir.clone();
                let before = self.state;
                self.set_state(State::Saving);
                match self.write_snapshot(&dir, &request.files, before == State::Paused) {
                    Ok(()) => {
                        return Some(self.finish(
                            State::Saved,
                            format!("saved to {}", dir.display()),
                            Some(request),
                        ))
                    }
                    Err(e) => {
                        // The VM goes on as it was.
                        if before == State::Running {
                            self.resume_all();
                        }
                        self.set_state(before);
                        Err(e)
                    }
                }
            }
            (Request::Snapshot { dir }, _) => {
                let dir = dir.clone();
                let was_running = self.state == State::Running;
                let result = self.write_snapshot(&dir, &request.files, !was_running);
                if was_running {
                    self.resume_all();
                }
                result
            }
            _ => Err(Error::Config("unreachable request".into())),
        };
        match result {
            Ok(()) => request.reply(&Response::Ok),
            Err(e) => request.fail(ErrorKind::Failed, e.to_string()),
        }
        None
    }

    fn shutdown_timed_out(&mut self) {
        if let Some(pending) = self.shutdown.take() {
            self.set_state(State::Running);
            pending.request.fail(
                ErrorKind::Timeout,
                "the guest did not power off in time; it is still running (stop it to power off at once)",
            );
        }
    }

    fn pause_all(&mut self) -> Result<(), Error> {
        for vcpu in &self.vcpus {
            match vcpu.ask(VcpuRequest::Pause) {
                Ok(VcpuReply::Paused) => {}
                Ok(_) => return Err(Error::Vcpu("unexpected reply to pause".into())),
                Err(e) => return Err(Error::Vcpu(e)),
            }
        }
        // With no vCPU running, no new request arrives; the devices finish the ones in hand.
        self.machine.virtio.pause();
        Ok(())
    }

    fn resume_all(&mut self) {
        self.machine.virtio.resume();
        for vcpu in &self.vcpus {
            vcpu.resume();
        }
    }

    /// Pauses (if running) and collects every vCPU's, the VM's and the devices' state.
    fn capture(&mut self) -> Result<MachineState, Error> {
        if matches!(
            self.state,
            State::Running | State::ShuttingDown | State::Saving
        ) {
            self.pause_all()?;
        }
        let mut vcpus = Vec::with_capacity(self.vcpus.len());
        for vcpu in &self.vcpus {
            match vcpu.ask(VcpuRequest::GetState(self.msr_indices.clone())) {
                Ok(VcpuReply::State(Ok(state))) => vcpus.push(*state),
                Ok(VcpuReply::State(Err(e))) | Err(e) => return Err(Error::Vcpu(e)),
                Ok(_) => return Err(Error::Vcpu("unexpected reply to a state request".into())),
            }
        }
        Ok(MachineState {
            vcpus,
            vm: self.machine.vm.state()?,
            devices: lock(&self.machine.devices).state(),
            power_on: self.machine.power_on.clone(),
            virtio: self.machine.virtio.snapshot(),
        })
    }

    /// Copies guest memory into `file` while the VM runs: the pages written since the last
    /// copy, or (turning dirty logging on first) all of it. Returns the file ranges written.
    fn copy_memory(&mut self, file: &File, dirty_only: bool) -> Result<Vec<(u64, u64)>, Error> {
        let dirty = self.machine.take_dirty_pages()?;
        let pages = dirty_only.then_some(dirty.as_slice());
        self.machine
            .memory
            .copy_into(file, pages)
            .map_err(Error::Memory)
    }

    /// Writes a snapshot for `dir` into `files` (memory, state), leaving the vCPUs paused.
    fn write_snapshot(&mut self, dir: &Path, files: &[File], paused: bool) -> Result<(), Error> {
        let started = Instant::now();
        let state = self.capture()?;
        let written = snapshot::write(
            &files[0],
            &files[1],
            &self.machine.config,
            state,
            &self.machine.memory,
            paused,
        )?;
        tracing::info!(
            dir = %dir.display(),
            data_bytes = written.memory_data_bytes,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "snapshot written"
        );
        Ok(())
    }

    /// A hardware reset in place: memory cleared and the boot image reloaded, every device and
    /// vCPU back to its power-on state.
    fn reset(&mut self, cause: &str) -> Result<(), Error> {
        let was_paused = self.state == State::Paused;
        if !was_paused {
            self.pause_all()?;
        }
        self.machine.memory.clear().map_err(Error::Memory)?;
        self.machine.load_boot_image()?;
        self.machine.vm.set_state(&self.machine.power_on.vm)?;
        for (vcpu, state) in self.vcpus.iter().zip(&self.machine.power_on.vcpus) {
            match vcpu.ask(VcpuRequest::SetState(Box::new(state.clone()))) {
                Ok(VcpuReply::Loaded(Ok(()))) => {}
                Ok(VcpuReply::Loaded(Err(e))) | Err(e) => return Err(Error::Vcpu(e)),
                Ok(_) => return Err(Error::Vcpu("unexpected reply to a state load".into())),
            }
        }
        lock(&self.machine.devices)
            .restore(&self.machine.power_on.devices)
            .map_err(Error::Io)?;
        self.machine.virtio.reset();
        self.last_reset = Some(cause.to_owned());
        self.subscribers.broadcast(&Event::Reset {
            cause: cause.to_owned(),
        });
        if let Some(pending) = self.shutdown.take() {
            pending.request.fail(
                ErrorKind::InvalidState,
                "the VM was reset while shutting down",
            );
        }
        if was_paused {
            self.set_state(State::Paused);
        } else {
            self.resume_all();
            self.set_state(State::Running);
        }
        Ok(())
    }

    fn status(&self) -> Status {
        let devices = lock(&self.machine.devices);
        Status {
            name: self.machine.config.name.clone(),
            pid: std::process::id(),
            state: self.state,
            vcpus: self.machine.config.vcpus,
            memory_bytes: self.machine.config.memory_bytes(),
            heartbeats: self.machine.heartbeats(),
            vcpu_threads: self.vcpus.iter().map(|v| v.tid).collect(),
            process_start_ns: unix_ns(self.started),
            machine_ready_ns: unix_ns(self.ready),
            first_instruction_ns: devices.first_instruction().map(unix_ns),
            last_reset: self.last_reset.clone(),
            console_log: self.machine.config.console_log.clone(),
            events_sent: self.subscribers.sent(),
        }
    }

    /// Ends the VM: vCPU threads stopped, the exit record written, subscribers told, the
    /// request (if any) answered.
    fn finish(&mut self, state: State, reason: String, request: Option<PendingRequest>) -> i32 {
        for vcpu in &mut self.vcpus {
            vcpu.exit();
        }
        if let Some(pending) = self.shutdown.take() {
            pending
                .request
                .fail(ErrorKind::Failed, format!("the VM ended {state}: {reason}"));
        }
        let _ = lock(&self.machine.devices).console().drain();
        if let Some(file) = &self.exit_record {
            ExitRecord {
                state,
                reason: reason.clone(),
            }
            .write_to(file);
        }
        self.state = state;
        self.subscribers.broadcast(&Event::State { state });
        if let Some(request) = request {
            request.reply(&Response::Ok);
        }
        // The socket and the records stay for the supervisor, which removes them once it
        // has read how the VM ended: a confined process can name no file.
        tracing::info!(vm = %self.machine.config.name, %state, %reason, "VM process exiting");
        if state == State::Crashed {
            2
        } else {
            0
        }
    }
}
