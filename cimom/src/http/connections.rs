//! The table of open connections: how many each client may hold, which are idle, and
//! which to close when room is needed.
//!
//! A connection is idle from its start until its first request's headers are read and
//! between requests; it is busy while a request is served (until its response has been
//! sent). Idle connections cost the server little but a slot, so when the table is full a
//! new connection takes the slot of the connection idle the longest (of the same client,
//! when that client is at its own limit), and idle connections are closed sooner the
//! fuller the table is. A new client is thus served however many idle sockets others
//! hold; it is refused only when every slot it could take is busy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::lock;
use crate::peer::ClientKey;

/// The table's bounds.
#[derive(Clone, Copy, Debug)]
pub struct TableLimits {
    /// Connections open at once, all clients together.
    pub max_total: usize,
    /// Connections one client may hold.
    pub max_per_client: usize,
    /// How long a connection may stay idle while the table is at most half full; it
    /// shrinks in step with the fill above that, to [`MIN_IDLE`] when full.
    pub idle_timeout: Duration,
}

/// The shortest idle timeout, when the table is full.
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// A connection is not closed to make room until it has been idle this long: a client
/// that opened it an instant ago gets to send its request.
pub const EVICTION_GRACE: Duration = Duration::from_millis(250);

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every connection of this client is serving a request.
    ClientBusy,
    /// Every connection of the server is serving a request.
    ServerBusy,
}

/// What the table and a connection's task share about it.
struct Shared {
    client: ClientKey,
    /// Requests in progress (more than one only when pipelined).
    requests: AtomicU32,
    /// When it last became idle, as nanoseconds since the table's epoch.
    idle_since: AtomicU64,
    /// Tells the connection's task to close it.
    close: Notify,
}

impl Shared {
    fn is_idle(&self) -> bool {
        self.requests.load(Ordering::Acquire) == 0
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    open: HashMap<u64, Arc<Shared>>,
    per_client: HashMap<ClientKey, usize>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Arc<Shared>> {
        let shared = self.open.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&shared.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&shared.client);
            }
        }
        Some(shared)
    }

    /// The connection idle the longest (at least since `idle_before`), of `client` only if
    /// given.
    fn longest_idle(&self, client: Option<ClientKey>, idle_before: u64) -> Option<u64> {
        self.open
            .iter()
            .filter(|(_, c)| {
                c.is_idle()
                    && c.idle_since.load(Ordering::Acquire) <= idle_before
                    && client.is_none_or(|k| c.client == k)
            })
            .min_by_key(|(_, c)| c.idle_since.load(Ordering::Acquire))
            .map(|(id, _)| *id)
    }

    /// Closes connection `id` to make room.
    fn evict(&mut self, id: u64) {
        if let Some(shared) = self.remove(id) {
            shared.close.notify_one();
        }
    }
}

/// The open connections of a server.
pub struct ConnectionTable {
    limits: TableLimits,
    epoch: Instant,
    state: Mutex<State>,
}

/// A connection's place in the table; gives it up when dropped.
pub struct Slot {
    id: u64,
    shared: Arc<Shared>,
    table: Arc<ConnectionTable>,
}

/// Marks a connection busy while it lives: held by a request until its response is sent.
pub struct Busy {
    shared: Arc<Shared>,
    table: Arc<ConnectionTable>,
}

impl ConnectionTable {
    /// An empty table.
    pub fn new(limits: TableLimits) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable {
            limits: TableLimits {
                max_total: limits.max_total.max(1),
                max_per_client: limits.max_per_client.max(1),
                idle_timeout: limits.idle_timeout.max(MIN_IDLE),
            },
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// A slot for a new connection from `addr`, closing an idle connection if that is what
    /// makes room.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<Slot, Refusal> {
        let client = ClientKey::from(addr);
        let idle_before = self.now().saturating_sub(EVICTION_GRACE.as_nanos() as u64);
        let mut state = lock(&self.state);
        if state.per_client.get(&client).copied().unwrap_or(0) >= self.limits.max_per_client {
            let id = state
                .longest_idle(Some(client), idle_before)
                .ok_or(Refusal::ClientBusy)?;
            state.evict(id);
        }
        if state.open.len() >= self.limits.max_total {
            let id = state
                .longest_idle(None, idle_before)
                .ok_or(Refusal::ServerBusy)?;
            state.evict(id);
        }
        let id = state.next_id;
        state.next_id += 1;
        let shared = Arc::new(Shared {
            client,
            requests: AtomicU32::new(0),
            idle_since: AtomicU64::new(self.now()),
            close: Notify::new(),
        });
        state.open.insert(id, shared.clone());
        *state.per_client.entry(client).or_insert(0) += 1;
        Ok(Slot {
            id,
            shared,
            table: self.clone(),
        })
    }

    /// How long a connection may stay idle now, given how full the table is.
    #[cfg(test)]
    pub fn idle_timeout(&self) -> Duration {
        let open = lock(&self.state).open.len();
        idle_timeout_at(self.limits, open)
    }

    /// Closes the connections idle for longer than the current idle timeout; returns how
    /// many.
    pub fn close_idle(&self) -> usize {
        let mut state = lock(&self.state);
        let timeout = idle_timeout_at(self.limits, state.open.len());
        let cutoff = self.now().saturating_sub(timeout.as_nanos() as u64);
        let stale: Vec<u64> = state
            .open
            .iter()
            .filter(|(_, c)| c.is_idle() && c.idle_since.load(Ordering::Acquire) <= cutoff)
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            state.evict(*id);
        }
        stale.len()
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        lock(&self.state).open.len()
    }
}

/// The idle timeout with `open` connections: the configured one up to half the table, then
/// shrinking linearly to [`MIN_IDLE`] at full.
fn idle_timeout_at(limits: TableLimits, open: usize) -> Duration {
    let half = limits.max_total / 2;
    if open <= half {
        return limits.idle_timeout;
    }
    let over = (open - half) as f64 / (limits.max_total - half).max(1) as f64;
    let span = limits.idle_timeout.saturating_sub(MIN_IDLE).as_secs_f64();
    (limits.idle_timeout - Duration::from_secs_f64(span * over.min(1.0))).max(MIN_IDLE)
}

impl Slot {
    /// Resolves when the table closes this connection to make room (or for idleness).
    pub async fn closed(&self) {
        self.shared.close.notified().await
    }

    /// Marks the connection busy until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        self.shared.requests.fetch_add(1, Ordering::AcqRel);
        Busy {
            shared: self.shared.clone(),
            table: self.table.clone(),
        }
    }

    /// Whether a request is being served on it.
    pub fn is_busy(&self) -> bool {
        !self.shared.is_idle()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.table.state).remove(self.id);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.shared
            .idle_since
            .store(self.table.now(), Ordering::Release);
        self.shared.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_total: usize, max_per_client: usize) -> Arc<ConnectionTable> {
        ConnectionTable::new(TableLimits {
            max_total,
            max_per_client,
            idle_timeout: Duration::from_secs(30),
        })
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[tokio::test]
    async fn a_full_table_makes_room_by_closing_the_longest_idle_connection() {
        let t = table(3, 3);
        let first = t.admit(addr(1)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let second = t.admit(addr(1)).unwrap();
        let third = t.admit(addr(2)).unwrap();
        let _busy = second.busy();
        // Connections that opened an instant ago are left to send their requests.
        assert_eq!(t.admit(addr(3)).err(), Some(Refusal::ServerBusy));
        std::thread::sleep(EVICTION_GRACE);
        let fourth = t.admit(addr(3)).unwrap();
        // The first was idle the longest: it is told to close and its slot is taken.
        tokio::time::timeout(Duration::from_secs(1), first.closed())
            .await
            .expect("the first connection is closed");
        assert_eq!(t.open(), 3);
        drop((third, fourth));
        assert_eq!(t.open(), 1);
    }

    #[test]
    fn busy_connections_are_never_closed_to_make_room() {
        let t = table(2, 2);
        let a = t.admit(addr(1)).unwrap();
        let b = t.admit(addr(2)).unwrap();
        let (_a, _b) = (a.busy(), b.busy());
        assert_eq!(t.admit(addr(3)).err(), Some(Refusal::ServerBusy));
        assert!(a.is_busy());
    }

    #[test]
    fn a_client_at_its_limit_gives_up_its_own_idle_connection() {
        let t = table(10, 2);
        let other = t.admit(addr(9)).unwrap();
        let a1 = t.admit(addr(1)).unwrap();
        let a2 = t.admit(addr(1)).unwrap();
        std::thread::sleep(EVICTION_GRACE);
        let _a3 = t.admit(addr(1)).unwrap();
        let state = lock(&t.state);
        assert!(
            state.open.contains_key(&other.id),
            "another client's connection stays"
        );
        assert!(
            !state.open.contains_key(&a1.id),
            "the client's own oldest went"
        );
        assert!(state.open.contains_key(&a2.id));
        assert_eq!(state.per_client[&ClientKey::from(addr(1))], 2);
        drop(state);
        let (_b1, _b2) = (a2.busy(), _a3.busy());
        assert_eq!(t.admit(addr(1)).err(), Some(Refusal::ClientBusy));
    }

    #[test]
    fn the_idle_timeout_shrinks_as_the_table_fills() {
        let limits = TableLimits {
            max_total: 100,
            max_per_client: 100,
            idle_timeout: Duration::from_secs(31),
        };
        assert_eq!(idle_timeout_at(limits, 0), Duration::from_secs(31));
        assert_eq!(idle_timeout_at(limits, 50), Duration::from_secs(31));
        assert_eq!(idle_timeout_at(limits, 75), Duration::from_secs(16));
        assert_eq!(idle_timeout_at(limits, 100), MIN_IDLE);
    }

    #[test]
    fn idle_connections_past_the_timeout_are_closed() {
        let t = ConnectionTable::new(TableLimits {
            max_total: 2,
            max_per_client: 2,
            idle_timeout: Duration::from_secs(30),
        });
        let a = t.admit(addr(1)).unwrap();
        let b = t.admit(addr(2)).unwrap();
        let _busy = b.busy();
        // Full table: a 1 s timeout.
        assert_eq!(t.idle_timeout(), MIN_IDLE);
        assert_eq!(t.close_idle(), 0);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(t.close_idle(), 1, "the idle one goes, the busy one stays");
        assert_eq!(t.open(), 1);
        drop(a);
        assert_eq!(t.open(), 1);
    }
}
