//! The VMs' serial consoles as clients share them: what the guest wrote lately (the
//! scrollback a client sees on joining), its output as it comes, and who may type.
//!
//! Output arrives from the supervisor as the VM processes report it, keyed by run id, and
//! is fanned out to every session of that VM. A VM's entry exists only while sessions are
//! attached: the first session seeds it from the tail of the console log, so no memory is
//! spent on consoles nobody watches. One session holds input at a time: the first one
//! whose user may type; the others who may type queue behind it, and the longest waiting
//! takes over when it leaves.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;

use cimom::lock;

/// Limits of the console service.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleLimits {
    /// Bytes of recent output a client gets on joining.
    pub scrollback_bytes: usize,
    /// Sessions open at once, on every VM together.
    pub max_sessions: usize,
    /// Sessions open at once on one VM.
    pub max_sessions_per_vm: usize,
}

impl Default for ConsoleLimits {
    fn default() -> Self {
        ConsoleLimits {
            scrollback_bytes: 64 << 10,
            max_sessions: 256,
            max_sessions_per_vm: 16,
        }
    }
}

/// Output chunks a session may fall behind by before it misses some.
const SESSION_BACKLOG: usize = 1024;

/// What a session receives.
#[derive(Clone, Debug)]
pub enum Output {
    /// Bytes the guest wrote to its serial port.
    Bytes(Bytes),
    /// A message for the person at the session `to` (every session when `None`).
    Notice {
        /// The session it is for.
        to: Option<u64>,
        /// The message.
        text: String,
    },
    /// The console is gone (its VM moved away or was destroyed, or it was disabled): the
    /// session ends.
    Closed(String),
}

/// Why a VM's console closes for good.
#[derive(Clone, Debug)]
pub enum Departure {
    /// The VM was destroyed.
    Destroyed,
    /// The VM moved to another host.
    Migrated {
        /// The host it runs on now.
        destination: String,
    },
    /// An administrator disabled the console.
    Disabled,
}

impl Departure {
    /// What the sessions are told, for VM `vm`.
    pub fn describe(&self, vm: &str) -> String {
        match self {
            Departure::Destroyed => format!("VM {vm} was destroyed"),
            Departure::Migrated { destination } => {
                format!("VM {vm} migrated to {destination}: open its console there")
            }
            Departure::Disabled => format!("the console of VM {vm} was disabled"),
        }
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Every session the server allows is open.
    #[error("the server has {0} console sessions open, its limit ([console] max_sessions)")]
    ServerFull(usize),
    /// Every session one VM allows is open.
    #[error(
        "VM {vm} has {limit} console sessions open, its limit ([console] max_sessions_per_vm)"
    )]
    VmFull {
        /// The VM.
        vm: String,
        /// The limit.
        limit: usize,
    },
}

/// Whether a session's user may type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rights {
    /// Watch only.
    Watch,
    /// Watch and type.
    Type,
}

/// The consoles of every VM.
pub struct Consoles {
    limits: ConsoleLimits,
    vms: Mutex<HashMap<String, Arc<VmConsole>>>,
    next_session: AtomicU64,
}

/// One VM's console while sessions are attached.
struct VmConsole {
    vm: String,
    state: Mutex<ConsoleState>,
    output: broadcast::Sender<Output>,
}

#[derive(Default)]
struct ConsoleState {
    scrollback: VecDeque<u8>,
    sessions: usize,
    /// The session that holds input, with its user.
    writer: Option<(u64, String)>,
    /// Sessions that may type, waiting for input, oldest first.
    waiting: VecDeque<(u64, String)>,
}

impl Consoles {
    /// No console open yet.
    pub fn new(limits: ConsoleLimits) -> Arc<Consoles> {
        Arc::new(Consoles {
            limits,
            vms: Mutex::default(),
            next_session: AtomicU64::new(1),
        })
    }

    /// The limits.
    pub fn limits(&self) -> ConsoleLimits {
        self.limits
    }

    /// Output of the VM process `run_id`: to its sessions, if it has any.
    pub fn record(&self, run_id: &str, bytes: &[u8]) {
        let Some(console) = lock(&self.vms).get(run_id).cloned() else {
            return;
        };
        {
            let mut state = lock(&console.state);
            let scrollback = &mut state.scrollback;
            scrollback.extend(bytes);
            let over = scrollback
                .len()
                .saturating_sub(self.limits.scrollback_bytes);
            scrollback.drain(..over);
        }
        let _ = console
            .output
            .send(Output::Bytes(Bytes::copy_from_slice(bytes)));
    }

    /// How many sessions VM `run_id`'s console has.
    pub fn sessions(&self, run_id: &str) -> usize {
        lock(&self.vms)
            .get(run_id)
            .map_or(0, |c| lock(&c.state).sessions)
    }

    /// Opens a session on VM `vm` (run id `run_id`), whose console log is `log` (the
    /// scrollback comes from there when it is the first session), for `user`.
    pub fn attach(
        self: &Arc<Self>,
        vm: &str,
        run_id: &str,
        log: &Path,
        user: &str,
        rights: Rights,
    ) -> Result<Session, AttachError> {
        // The log is read before the lock that every VM's output passes through is taken;
        // if another session made the entry meanwhile, its scrollback stands.
        let seed = (!lock(&self.vms).contains_key(run_id))
            .then(|| log_tail(log, self.limits.scrollback_bytes));
        let mut vms = lock(&self.vms);
        let open: usize = vms.values().map(|c| lock(&c.state).sessions).sum();
        if open >= self.limits.max_sessions {
            return Err(AttachError::ServerFull(open));
        }
        let console = vms
            .entry(run_id.to_owned())
            .or_insert_with(|| {
                Arc::new(VmConsole {
                    vm: vm.to_owned(),
                    state: Mutex::new(ConsoleState {
                        scrollback: seed.unwrap_or_default().into(),
                        ..ConsoleState::default()
                    }),
                    output: broadcast::channel(SESSION_BACKLOG).0,
                })
            })
            .clone();
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mut state = lock(&console.state);
        if state.sessions >= self.limits.max_sessions_per_vm {
            return Err(AttachError::VmFull {
                vm: vm.to_owned(),
                limit: self.limits.max_sessions_per_vm,
            });
        }
        state.sessions += 1;
        let holds_input = match rights {
            Rights::Watch => false,
            Rights::Type if state.writer.is_none() => {
                state.writer = Some((id, user.to_owned()));
                true
            }
            Rights::Type => {
                state.waiting.push_back((id, user.to_owned()));
                false
            }
        };
        let scrollback = state.scrollback.iter().copied().collect();
        // Subscribed under the state's lock: output recorded from here on is not in the
        // scrollback taken above, and is received.
        let output = console.output.subscribe();
        drop(state);
        drop(vms);
        Ok(Session {
            id,
            user: user.to_owned(),
            rights,
            holds_input,
            scrollback,
            output,
            console,
            consoles: self.clone(),
            run_id: run_id.to_owned(),
        })
    }

    /// Closes VM `run_id`'s console for good: every session is told why and ends.
    pub fn depart(&self, run_id: &str, why: &Departure) {
        if let Some(console) = lock(&self.vms).remove(run_id) {
            let _ = console
                .output
                .send(Output::Closed(why.describe(&console.vm)));
        }
    }

    fn detach(&self, session: &Session) {
        let mut vms = lock(&self.vms);
        let mut state = lock(&session.console.state);
        state.sessions -= 1;
        state.waiting.retain(|(id, _)| *id != session.id);
        if state
            .writer
            .as_ref()
            .is_some_and(|(id, _)| *id == session.id)
        {
            state.writer = state.waiting.pop_front();
            if let Some((id, user)) = &state.writer {
                let _ = session.console.output.send(Output::Notice {
                    to: None,
                    text: format!("{user} (session {id}) now holds the console's input"),
                });
            }
        }
        let empty = state.sessions == 0;
        drop(state);
        // The entry goes with its last session, unless a new console took its place.
        if empty
            && vms
                .get(&session.run_id)
                .is_some_and(|c| Arc::ptr_eq(c, &session.console))
        {
            vms.remove(&session.run_id);
        }
    }
}

/// One client's view of a console.
pub struct Session {
    id: u64,
    user: String,
    rights: Rights,
    holds_input: bool,
    /// The recent output, as the client joins.
    pub scrollback: Vec<u8>,
    /// Output from then on.
    pub output: broadcast::Receiver<Output>,
    console: Arc<VmConsole>,
    consoles: Arc<Consoles>,
    run_id: String,
}

impl Session {
    /// The session's number, as notices name it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the session held input when it was opened.
    pub fn held_input_at_start(&self) -> bool {
        self.holds_input
    }

    /// Whether this session may type now; if not, why, for the person.
    pub fn may_type(&self) -> Result<(), String> {
        if self.rights == Rights::Watch {
            return Err(format!(
                "input refused: user {} may only watch this console (read rights in root/virt)",
                self.user
            ));
        }
        match &lock(&self.console.state).writer {
            Some((id, _)) if *id == self.id => Ok(()),
            Some((id, user)) => Err(format!(
                "input refused: {user} (session {id}) holds the console's input; it passes \
                 to you when they leave"
            )),
            None => Err("input refused: nobody holds the console's input".into()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.consoles.detach(self);
    }
}

/// The last `limit` bytes of the console log at `log` and the one rotated before it.
fn log_tail(log: &Path, limit: usize) -> Vec<u8> {
    let mut rotated = log.as_os_str().to_owned();
    rotated.push(".1");
    let current = tail(log, limit);
    let earlier = tail(&PathBuf::from(rotated), limit - current.len());
    [earlier, current].concat()
}

/// The last `limit` bytes of `path` (nothing if it cannot be read).
fn tail(path: &Path, limit: usize) -> Vec<u8> {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(limit as u64);
        file.seek(SeekFrom::Start(start))?;
        let mut out = Vec::with_capacity((len - start) as usize);
        file.take(limit as u64).read_to_end(&mut out)?;
        Ok(out)
    };
    if limit == 0 {
        return Vec::new();
    }
    read().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consoles(max_sessions: usize) -> Arc<Consoles> {
        Consoles::new(ConsoleLimits {
            scrollback_bytes: 16,
            max_sessions,
            max_sessions_per_vm: 3,
        })
    }

    #[test]
    fn the_first_session_gets_the_logs_tail_and_later_ones_what_came_since() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vm.console.log");
        std::fs::write(dir.path().join("vm.console.log.1"), b"0123456789").unwrap();
        std::fs::write(&log, b"abcdefghij").unwrap();
        let hub = consoles(8);
        let mut first = hub
            .attach("vm", "id", &log, "alice", Rights::Watch)
            .unwrap();
        assert_eq!(first.scrollback, b"456789abcdefghij");
        hub.record("id", b"KLMNOPQR");
        let second = hub.attach("vm", "id", &log, "bob", Rights::Watch).unwrap();
        assert_eq!(second.scrollback, b"cdefghijKLMNOPQR");
        match first.output.try_recv().unwrap() {
            Output::Bytes(b) => assert_eq!(&b[..], b"KLMNOPQR"),
            other => panic!("{other:?}"),
        }
        // Output for a VM nobody watches is not kept.
        hub.record("other", b"lost");
        assert_eq!(hub.sessions("other"), 0);
        drop((first, second));
        assert_eq!(hub.sessions("id"), 0);
    }

    #[test]
    fn one_session_types_and_the_next_takes_over_when_it_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("none");
        let hub = consoles(8);
        let watcher = hub.attach("vm", "id", &log, "eve", Rights::Watch).unwrap();
        let first = hub.attach("vm", "id", &log, "alice", Rights::Type).unwrap();
        let mut second = hub.attach("vm", "id", &log, "bob", Rights::Type).unwrap();
        assert!(watcher.may_type().unwrap_err().contains("may only watch"));
        assert!(first.may_type().is_ok());
        let refused = second.may_type().unwrap_err();
        assert!(
            refused.contains("alice") && refused.contains("holds"),
            "{refused}"
        );
        drop(first);
        assert!(second.may_type().is_ok());
        match second.output.try_recv().unwrap() {
            Output::Notice { to: None, text } => assert!(text.contains("bob"), "{text}"),
            other => panic!("{other:?}"),
        }
        assert!(hub
            .attach("vm", "id", &log, "carol", Rights::Watch)
            .is_ok_and(|s| s.may_type().is_err()));
    }

    #[test]
    fn limits_refuse_sessions_and_a_departure_closes_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("none");
        let hub = consoles(4);
        let mut held: Vec<Session> = (0..3)
            .map(|_| hub.attach("vm", "id", &log, "a", Rights::Watch).unwrap())
            .collect();
        assert!(matches!(
            hub.attach("vm", "id", &log, "a", Rights::Watch),
            Err(AttachError::VmFull { limit: 3, .. })
        ));
        held.push(hub.attach("vm2", "id2", &log, "a", Rights::Watch).unwrap());
        assert!(matches!(
            hub.attach("vm3", "id3", &log, "a", Rights::Watch),
            Err(AttachError::ServerFull(4))
        ));
        hub.depart(
            "id",
            &Departure::Migrated {
                destination: "far.example".into(),
            },
        );
        match held[0].output.try_recv().unwrap() {
            Output::Closed(why) => assert!(why.contains("migrated to far.example"), "{why}"),
            other => panic!("{other:?}"),
        }
        held.clear();
        assert!(lock(&hub.vms).is_empty());
    }
}
