//! Per-client bounds on password checking: how many checks of one client may wait or run
//! at once, and a delay, growing with the client's recent failures, before each further
//! check. A client guessing passwords therefore gets a few guesses a second at most,
//! however many connections it opens, and cannot crowd other clients out of the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::bounded::make_room;
use crate::peer::ClientKey;

/// How clients are throttled.
#[derive(Clone, Debug)]
pub struct ThrottleSettings {
    /// Checks of one client waiting or running at once.
    pub concurrent_per_client: usize,
    /// Failures a client may have before its checks are delayed.
    pub free_failures: u32,
    /// The delay after the first failure beyond the free ones; it doubles with each more.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// A client's failures are forgotten this long after its last one.
    pub forget_after: Duration,
}

/// The most clients whose failures are remembered; beyond it the oldest are forgotten.
const MAX_REMEMBERED_CLIENTS: usize = 65_536;

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Default)]
struct State {
    slots: HashMap<ClientKey, Arc<Semaphore>>,
    failures: HashMap<ClientKey, Failures>,
}

/// The per-client bounds.
pub struct Throttle {
    settings: ThrottleSettings,
    state: Mutex<State>,
}

/// A client's right to one check; frees the slot when dropped.
pub struct ClientSlot {
    _permit: OwnedSemaphorePermit,
    client: ClientKey,
    throttle: Arc<Throttle>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut state = self.throttle.lock();
        // Only the table holds the semaphore once no other check of the client is left
        // (this slot's permit still holds one reference until it is dropped just after).
        if state
            .slots
            .get(&self.client)
            .is_some_and(|s| Arc::strong_count(s) <= 2)
        {
            state.slots.remove(&self.client);
        }
    }
}

impl Throttle {
    /// A throttle with these settings.
    pub fn new(settings: ThrottleSettings) -> Arc<Throttle> {
        Arc::new(Throttle {
            settings,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// Waits, until `deadline` at most, for a slot of `client`; `None` when none came free.
    pub async fn admit(
        self: &Arc<Self>,
        client: ClientKey,
        deadline: Instant,
    ) -> Option<ClientSlot> {
        let semaphore = {
            let mut state = self.lock();
            if state.slots.len() >= MAX_REMEMBERED_CLIENTS {
                // Clients that gave up waiting leave their semaphore behind.
                state.slots.retain(|_, s| Arc::strong_count(s) > 1);
            }
            state
                .slots
                .entry(client)
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(self.settings.concurrent_per_client.max(1)))
                })
                .clone()
        };
        let permit = tokio::time::timeout_at(deadline, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(ClientSlot {
            _permit: permit,
            client,
            throttle: self.clone(),
        })
    }

    /// How long `client` waits before its next check.
    pub fn delay(&self, client: ClientKey) -> Duration {
        let s = &self.settings;
        let state = self.lock();
        let Some(f) = state.failures.get(&client) else {
            return Duration::ZERO;
        };
        if f.last.elapsed() > s.forget_after || f.count <= s.free_failures {
            return Duration::ZERO;
        }
        let doublings = (f.count - s.free_failures - 1).min(16);
        s.first_delay
            .saturating_mul(1 << doublings)
            .min(s.max_delay)
    }

    /// Records a failed check of `client`.
    pub fn record_failure(&self, client: ClientKey) {
        let now = Instant::now();
        let forget_after = self.settings.forget_after;
        let mut state = self.lock();
        make_room(
            &mut state.failures,
            &client,
            MAX_REMEMBERED_CLIENTS,
            |f| now.duration_since(f.last) > forget_after,
            |f| f.last,
        );
        let entry = state.failures.entry(client).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) > forget_after {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// The number of clients with a slot taken or waited for (for tests).
    #[cfg(test)]
    fn clients_waiting(&self) -> usize {
        self.lock().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            concurrent_per_client: 2,
            free_failures: 3,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            forget_after: Duration::from_secs(600),
        }
    }

    fn client(last: u8) -> ClientKey {
        ClientKey::from(std::net::IpAddr::from([192, 0, 2, last]))
    }

    #[tokio::test]
    async fn a_client_holds_at_most_its_share_of_slots() {
        let t = Throttle::new(settings());
        let soon = Instant::now() + Duration::from_millis(50);
        let a1 = t.admit(client(1), soon).await.unwrap();
        let _a2 = t.admit(client(1), soon).await.unwrap();
        assert!(t.admit(client(1), soon).await.is_none(), "a third slot");
        // Another client is not held up.
        let b = t.admit(client(2), soon).await.unwrap();
        drop(a1);
        let later = Instant::now() + Duration::from_millis(50);
        assert!(t.admit(client(1), later).await.is_some());
        drop(b);
        assert_eq!(
            t.clients_waiting(),
            1,
            "a client without slots is forgotten"
        );
    }

    #[test]
    fn failures_beyond_the_free_ones_delay_the_client_more_and_more() {
        let t = Throttle::new(settings());
        for _ in 0..3 {
            t.record_failure(client(1));
        }
        assert_eq!(t.delay(client(1)), Duration::ZERO);
        let delays: Vec<u64> = (0..6)
            .map(|_| {
                t.record_failure(client(1));
                t.delay(client(1)).as_millis() as u64
            })
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(t.delay(client(2)), Duration::ZERO);
    }
}
