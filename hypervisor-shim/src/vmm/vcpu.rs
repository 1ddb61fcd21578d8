//! vCPU threads. Each owns its vCPU and runs it; the control thread talks to it through a
//! request channel and kicks it out of KVM_RUN with a signal.

use crate::devices::virtio::bus::VirtioBus;
use crate::devices::Devices;
use crate::hypervisor::{Vcpu, VcpuExit, VcpuState};
use crate::lock;
use crate::memory::Memory;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// What the control thread asks of a vCPU thread.
pub enum VcpuRequest {
    /// Leave guest mode and wait.
    Pause,
    /// Go back to running the guest.
    Resume,
    /// Report the whole vCPU state (only while paused).
    GetState(Arc<Vec<u32>>),
    /// Load a whole vCPU state (only while paused).
    SetState(Box<VcpuState>),
    /// End the thread.
    Exit,
}

/// A vCPU thread's answer.
pub enum VcpuReply {
    /// Out of guest mode, waiting.
    Paused,
    /// The state asked for.
    State(Result<Box<VcpuState>, String>),
    /// The state was loaded (or why not).
    Loaded(Result<(), String>),
}

/// Why a vCPU stopped running the guest for good.
#[derive(Debug, Clone)]
pub struct VcpuFailure {
    /// The vCPU's index.
    pub index: u32,
    /// What happened, for a person.
    pub reason: String,
}

/// The control thread's handle on one vCPU thread.
pub struct VcpuHandle {
    requests: Sender<VcpuRequest>,
    replies: Receiver<VcpuReply>,
    thread: Option<JoinHandle<()>>,
    /// The host thread id, for CPU accounting.
    pub tid: i32,
}

fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: the signal's arrival makes KVM_RUN return EINTR.
}

/// How long the control thread waits for a vCPU to answer before kicking it again (a kick
/// that lands just before KVM_RUN starts is lost; the next one is not).
const KICK_INTERVAL: Duration = Duration::from_millis(2);

impl VcpuHandle {
    /// Starts the thread for vCPU `index`. `failed` hears about guest crashes and VMM errors.
    pub fn spawn(
        index: u32,
        vcpu: Box<dyn Vcpu>,
        devices: Arc<Mutex<Devices>>,
        virtio: Arc<VirtioBus>,
        memory: Arc<Memory>,
        failed: Box<dyn Fn(VcpuFailure) + Send>,
        start_paused: bool,
    ) -> std::io::Result<VcpuHandle> {
        static HANDLER: Once = Once::new();
        HANDLER.call_once(|| {
            if let Err(e) = register_signal_handler(kick_signal(), on_kick) {
                tracing::error!("cannot install the vCPU kick handler: {e}");
            }
        });
        let (requests, request_rx) = mpsc::channel();
        let (reply_tx, replies) = mpsc::channel();
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || {
                crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Vcpu)
                    .unwrap_or_else(|e| crate::sandbox::abort_unconfined(&e));
                // SAFETY: gettid has no preconditions.
                let _ = tid_tx.send(unsafe { libc::gettid() });
                let mut runner = VcpuRunner {
                    index,
                    vcpu,
                    devices,
                    virtio,
                    memory,
                    requests: request_rx,
                    replies: reply_tx,
                    failed,
                };
                runner.run(start_paused);
            })?;
        let tid = tid_rx.recv().unwrap_or(0);
        Ok(VcpuHandle {
            requests,
            replies,
            thread: Some(thread),
            tid,
        })
    }

    fn kick(&self) {
        if let Some(thread) = &self.thread {
            // A failed kick means the thread is gone; the reply wait notices.
            let _ = thread.kill(kick_signal());
        }
    }

    /// Sends `request` and waits for its reply, kicking the thread until it answers.
    pub fn ask(&self, request: VcpuRequest) -> Result<VcpuReply, String> {
        self.requests
            .send(request)
            .map_err(|_| "the vCPU thread is gone".to_owned())?;
        loop {
            self.kick();
            match self.replies.recv_timeout(KICK_INTERVAL) {
                Ok(reply) => return Ok(reply),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err("the vCPU thread is gone".into()),
            }
        }
    }

    /// Lets a paused vCPU run again (no reply).
    pub fn resume(&self) {
        let _ = self.requests.send(VcpuRequest::Resume);
    }

    /// Ends the thread and waits for it.
    pub fn exit(&mut self) {
        let _ = self.requests.send(VcpuRequest::Exit);
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                let _ = thread.kill(kick_signal());
                std::thread::sleep(Duration::from_micros(200));
            }
            let _ = thread.join();
        }
    }
}

impl Drop for VcpuHandle {
    fn drop(&mut self) {
        self.exit();
    }
}

struct VcpuRunner {
    index: u32,
    vcpu: Box<dyn Vcpu>,
    devices: Arc<Mutex<Devices>>,
    virtio: Arc<VirtioBus>,
    memory: Arc<Memory>,
    requests: Receiver<VcpuRequest>,
    replies: Sender<VcpuReply>,
    failed: Box<dyn Fn(VcpuFailure) + Send>,
}

/// What the run loop does after handling a request.
enum Next {
    Run,
    Exit,
}

impl VcpuRunner {
    fn run(&mut self, start_paused: bool) {
        if start_paused && matches!(self.wait_paused(), Next::Exit) {
            return;
        }
        loop {
            while let Ok(request) = self.requests.try_recv() {
                if let Next::Exit = self.handle(request) {
                    return;
                }
            }
            if let Some(reason) = self.run_once() {
                (self.failed)(VcpuFailure {
                    index: self.index,
                    reason,
                });
                // Stay answerable (for state dumps and the exit) but never run the guest again.
                while let Ok(request) = self.requests.recv() {
                    if let VcpuRequest::Exit = request {
                        return;
                    }
                    self.answer(request);
                }
                return;
            }
        }
    }

    fn handle(&mut self, request: VcpuRequest) -> Next {
        match request {
            VcpuRequest::Pause => {
                let _ = self.replies.send(VcpuReply::Paused);
                self.wait_paused()
            }
            VcpuRequest::Exit => Next::Exit,
            other => {
                self.answer(other);
                Next::Run
            }
        }
    }

    /// Handles requests until told to resume or exit.
    fn wait_paused(&mut self) -> Next {
        while let Ok(request) = self.requests.recv() {
            match request {
                VcpuRequest::Resume => return Next::Run,
                VcpuRequest::Exit => return Next::Exit,
                other => self.answer(other),
            }
        }
        Next::Exit
    }

    fn answer(&mut self, request: VcpuRequest) {
        let reply = match request {
            VcpuRequest::Pause => VcpuReply::Paused,
            VcpuRequest::GetState(msrs) => VcpuReply::State(
                self.vcpu
                    .state(&msrs)
                    .map(Box::new)
                    .map_err(|e| e.to_string()),
            ),
            VcpuRequest::SetState(state) => {
                VcpuReply::Loaded(self.vcpu.set_state(&state).map_err(|e| e.to_string()))
            }
            VcpuRequest::Resume | VcpuRequest::Exit => return,
        };
        let _ = self.replies.send(reply);
    }

    /// Runs until one exit is handled; returns why the guest cannot go on, if it cannot.
    fn run_once(&mut self) -> Option<String> {
        let exit = match self.vcpu.run() {
            Ok(exit) => exit,
            Err(e) => return Some(format!("vCPU {}: {e}", self.index)),
        };
        match exit {
            VcpuExit::IoIn(port, data) => lock(&self.devices).io_in(port, data),
            VcpuExit::IoOut(port, data) => lock(&self.devices).io_out(port, data),
            VcpuExit::MmioRead(address, data) => {
                if !self.virtio.read(address, data) {
                    data.fill(0xff);
                }
            }
            VcpuExit::MmioWrite(address, data) => {
                self.virtio.write(address, data);
            }
            VcpuExit::Interrupted => {}
            VcpuExit::Shutdown => return Some(self.describe("triple fault (KVM_EXIT_SHUTDOWN)")),
            VcpuExit::SystemEvent(kind) => {
                let what = match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => {
                        crate::devices::PlatformEvent::PowerOff
                    }
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => crate::devices::PlatformEvent::Reset,
                    other => {
                        return Some(self.describe(&format!("system event {other} (guest crash)")))
                    }
                };
                lock(&self.devices).platform_event(what);
            }
            VcpuExit::InternalError { suberror, data } => {
                return Some(self.describe(&internal_error(suberror, &data)));
            }
            VcpuExit::FailEntry(reason) => {
                return Some(
                    self.describe(&format!("VM entry failed, hardware reason {reason:#x}")),
                )
            }
            VcpuExit::Unhandled(name) => {
                return Some(self.describe(&format!("unexpected KVM exit {name}")));
            }
        }
        None
    }

    /// Adds the vCPU, its instruction pointer and the bytes there to `what`.
    fn describe(&self, what: &str) -> String {
        let Ok(regs) = self.vcpu.regs() else {
            return format!("vCPU {}: {what}", self.index);
        };
        let mut bytes = [0u8; 16];
        let read = self.vcpu.translate(regs.rip).and_then(|phys| {
            self.memory
                .guest
                .read_slice(&mut bytes, GuestAddress(phys))
                .ok()
        });
        let code = match read {
            Some(()) => format!(", code {}", hex(&bytes)),
            None => String::new(),
        };
        format!("vCPU {}: {what} at rip {:#x}{code}", self.index, regs.rip)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Describes KVM_EXIT_INTERNAL_ERROR; an emulation failure carries the instruction bytes
/// (`data[0]` flags, then the length byte and up to 15 bytes) where KVM supplies them.
fn internal_error(suberror: u32, data: &[u64]) -> String {
    const EMULATION: u32 = 1;
    const FLAG_INSTRUCTION_BYTES: u64 = 1;
    if suberror != EMULATION {
        return format!("KVM internal error, suberror {suberror}");
    }
    let mut what = "instruction emulation failed (the host's KVM cannot emulate it)".to_owned();
    if data
        .first()
        .is_some_and(|f| f & FLAG_INSTRUCTION_BYTES != 0)
        && data.len() >= 3
    {
        let raw: Vec<u8> = data[1..].iter().flat_map(|w| w.to_le_bytes()).collect();
        let len = usize::from(raw[0]).min(15).min(raw.len() - 1);
        what.push_str(&format!(
            ": bytes from the failing instruction on {}",
            hex(&raw[1..1 + len])
        ));
    }
    what
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_failures_name_the_instruction() {
        let mut words = [0u8; 16];
        words[0] = 2;
        words[1] = 0x0f;
        words[2] = 0x01;
        let data = [1, u64::from_le_bytes(words[..8].try_into().unwrap()), 0];
        assert_eq!(
            internal_error(1, &data),
            "instruction emulation failed (the host's KVM cannot emulate it): bytes from the failing instruction on 0f 01"
        );
        assert_eq!(internal_error(3, &[]), "KVM internal error, suberror 3");
    }
}
