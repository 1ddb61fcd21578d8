//! The indications waiting for each listener destination, in the store, in order, with
//! the sequence identifiers (DSP1054 reliable indications) they were numbered with.
//!
//! A destination's SequenceContext is `SERVICE#START#SINCE`: the indication service's
//! Name, when this server process started and when the server first sent to the
//! destination (all in µs), the format CIM_Indication's description recommends. It
//! changes when the server restarts and when the destination is deleted and created
//! again; SequenceNumber starts at 0 with each context and grows by one per indication.
//! An indication keeps its identifier through every retry and across restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cim_schema::ObjectPath;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::store::{Store, StoreError};

/// One indication waiting for one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedIndication {
    /// When it was raised, in ms since the epoch.
    pub raised_ms: u64,
    /// Its class, for the log.
    pub class: String,
    /// Its SequenceContext.
    pub context: String,
    /// Its SequenceNumber.
    pub number: i64,
    /// The message delivered: a CIM-XML export request or a WS-Management event.
    pub message: String,
}

/// An indication to queue for one destination, before it is numbered.
pub struct Outgoing<'a> {
    /// The destination's path.
    pub destination: &'a ObjectPath,
    /// Its class.
    pub class: &'a str,
}

/// The numbering of one destination.
struct Numbering {
    context: String,
    next: i64,
    /// How many indications the store holds for it.
    queued: usize,
}

struct State {
    /// The next row's ordinal: above every ordinal in the store.
    next_ordinal: u64,
    destinations: HashMap<String, Numbering>,
    /// Queued counts of destinations not numbered since the start (from the store).
    carried_over: HashMap<String, usize>,
}

/// The queues of every destination.
pub struct IndicationQueues {
    store: Arc<Store>,
    service_name: String,
    started_us: u64,
    limit: usize,
    state: Mutex<State>,
}

/// The queue key of a destination: its path without host and namespace (destinations
/// live in the interop namespace).
pub fn destination_key(path: &ObjectPath) -> String {
    path.local().to_uri()
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

impl IndicationQueues {
    /// The queues the store holds; `service_name` starts every context, and each
    /// destination keeps at most `limit` indications (the oldest are dropped past it).
    pub fn load(store: Arc<Store>, service_name: &str, limit: usize) -> Result<Self, StoreError> {
        let mut next_ordinal = 0;
        let mut carried_over: HashMap<String, usize> = HashMap::new();
        for (destination, count, last) in store.queue_summary()? {
            next_ordinal = next_ordinal.max(last + 1);
            carried_over.insert(destination, count);
        }
        Ok(IndicationQueues {
            store,
            service_name: service_name.to_owned(),
            started_us: now_us(),
            limit: limit.max(1),
            state: Mutex::new(State {
                next_ordinal,
                destinations: HashMap::new(),
                carried_over,
            }),
        })
    }

    /// The destinations that have indications waiting (at start, those the store held).
    pub fn waiting(&self) -> Vec<String> {
        let state = self.lock();
        state
            .carried_over
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, _)| k.clone())
            .chain(
                state
                    .destinations
                    .iter()
                    .filter(|(_, d)| d.queued > 0)
                    .map(|(k, _)| k.clone()),
            )
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers and queues one indication for each of `outgoing`, with `marker`, committed
    /// to the store in one transaction before it returns; `message` writes the message of
    /// one of them given its sequence context and number. Returns the keys of the
    /// destinations.
    pub fn push(
        &self,
        outgoing: &[Outgoing<'_>],
        message: impl Fn(usize, &str, i64) -> String,
        marker: Option<(&str, &[u8])>,
    ) -> Result<Vec<String>, StoreError> {
        let raised_ms = now_ms();
        let mut state = self.lock();
        let mut records = Vec::with_capacity(outgoing.len());
        let mut numbered: Vec<(String, i64)> = Vec::with_capacity(outgoing.len());
        for (i, out) in outgoing.iter().enumerate() {
            let key = destination_key(out.destination);
            if !state.destinations.contains_key(&key) {
                let since = self.store.destination_since(&key, now_us())?;
                let queued = state.carried_over.remove(&key).unwrap_or(0);
                let context = format!("{}#{}#{since}", self.service_name, self.started_us);
                state.destinations.insert(
                    key.clone(),
                    Numbering {
                        context,
                        next: 0,
                        queued,
                    },
                );
            }
            let numbering = state.destinations.get_mut(&key).expect("inserted above");
            let number = numbering.next;
            // sint64 wraps to 0, as CIM_Indication.SequenceNumber says.
            numbering.next = number.checked_add(1).unwrap_or(0);
            let record = QueuedIndication {
                raised_ms,
                class: out.class.to_owned(),
                context: numbering.context.clone(),
                number,
                message: message(i, &numbering.context, number),
            };
            numbered.push((key.clone(), number));
            records.push((key, serde_json::to_vec(&record).expect("serializes")));
        }
        let first_ordinal = state.next_ordinal;
        let rows: Vec<(&str, u64, &[u8])> = records
            .iter()
            .enumerate()
            .map(|(i, (key, bytes))| (key.as_str(), first_ordinal + i as u64, bytes.as_slice()))
            .collect();
        // Past the bound, the oldest go: counted per destination.
        let mut added: HashMap<&str, usize> = HashMap::new();
        for (key, _) in &records {
            *added.entry(key.as_str()).or_default() += 1;
        }
        let trim: Vec<(&str, usize)> = added
            .iter()
            .filter_map(|(key, n)| {
                let queued = state.destinations[*key].queued + n;
                (queued > self.limit).then(|| (*key, queued - self.limit))
            })
            .collect();
        if let Err(e) = self.store.queue_indications(&rows, &trim, marker) {
            // Nothing was queued: the numbers are free again.
            for (key, number) in numbered.iter().rev() {
                if let Some(d) = state.destinations.get_mut(key) {
                    d.next = *number;
                }
            }
            return Err(e);
        }
        state.next_ordinal = first_ordinal + rows.len() as u64;
        for (key, n) in &added {
            let d = state.destinations.get_mut(*key).expect("numbered above");
            d.queued += n;
        }
        for (key, dropped) in &trim {
            let d = state.destinations.get_mut(*key).expect("numbered above");
            d.queued -= dropped;
            warn!(
                destination = key,
                dropped,
                limit = self.limit,
                "indication queue full: the oldest indications were dropped"
            );
        }
        Ok(added.into_keys().map(str::to_owned).collect())
    }

    /// The oldest indication waiting for `destination`, with its ordinal.
    pub fn first(&self, destination: &str) -> Option<(u64, QueuedIndication)> {
        loop {
            let (ordinal, bytes) = match self.store.first_queued(destination) {
                Ok(row) => row?,
                Err(e) => {
                    error!(destination, "reading the indication queue: {e}");
                    return None;
                }
            };
            match serde_json::from_slice(&bytes) {
                Ok(record) => return Some((ordinal, record)),
                Err(e) => {
                    warn!(
                        destination,
                        "an unreadable queued indication was dropped: {e}"
                    );
                    self.remove_through(destination, ordinal);
                }
            }
        }
    }

    /// Removes the indications waiting for `destination` up to `ordinal` (inclusive):
    /// delivered, or given up. Returns how many.
    pub fn remove_through(&self, destination: &str, ordinal: u64) -> usize {
        let mut state = self.lock();
        match self.store.dequeue_through(destination, ordinal) {
            Ok(n) => {
                if let Some(d) = state.destinations.get_mut(destination) {
                    d.queued = d.queued.saturating_sub(n);
                } else if let Some(q) = state.carried_over.get_mut(destination) {
                    *q = q.saturating_sub(n);
                }
                n
            }
            Err(e) => {
                error!(destination, "removing from the indication queue: {e}");
                0
            }
        }
    }

    /// Gives up the indications waiting for `destination` raised at or before
    /// `oldest_kept_ms` (unreadable ones with them), in one transaction; returns how many.
    pub fn give_up_raised_before(&self, destination: &str, oldest_kept_ms: u64) -> usize {
        /// The one field a give-up reads of a queued indication.
        #[derive(Deserialize)]
        struct Raised {
            raised_ms: u64,
        }
        let expired = |bytes: &[u8]| {
            serde_json::from_slice::<Raised>(bytes).map_or(true, |r| r.raised_ms <= oldest_kept_ms)
        };
        match self.store.last_queued_while(destination, expired) {
            Ok(Some(last)) => self.remove_through(destination, last),
            Ok(None) => 0,
            Err(e) => {
                error!(destination, "reading the indication queue: {e}");
                0
            }
        }
    }

    /// Forgets a deleted destination: what waits for it, and its numbering (a destination
    /// created again with the same keys starts a new sequence context).
    pub fn forget(&self, path: &ObjectPath) -> Result<(), StoreError> {
        let key = destination_key(path);
        let mut state = self.lock();
        self.store.forget_destination(&key)?;
        state.destinations.remove(&key);
        state.carried_over.remove(&key);
        Ok(())
    }

    /// How many indications wait for `destination`.
    pub fn len(&self, destination: &str) -> usize {
        let state = self.lock();
        state
            .destinations
            .get(destination)
            .map(|d| d.queued)
            .or_else(|| state.carried_over.get(destination).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(name: &str) -> ObjectPath {
        ObjectPath::class(None, "CIM_ListenerDestinationCIMXML").with_key("Name", name)
    }

    fn message(_: usize, context: &str, number: i64) -> String {
        format!("{context}/{number}")
    }

    #[test]
    fn numbers_each_destination_from_zero_and_keeps_order_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let (a, b) = (destination("a"), destination("b"));
        let queues = IndicationQueues::load(store.clone(), "svc", 100).unwrap();
        for _ in 0..3 {
            queues
                .push(
                    &[
                        Outgoing {
                            destination: &a,
                            class: "X",
                        },
                        Outgoing {
                            destination: &b,
                            class: "X",
                        },
                    ],
                    message,
                    None,
                )
                .unwrap();
        }
        let key_a = destination_key(&a);
        let (ordinal, first) = queues.first(&key_a).unwrap();
        assert_eq!(first.number, 0);
        assert!(first.context.starts_with("svc#"));
        assert_eq!(first.message, format!("{}/0", first.context));
        assert_eq!(queues.remove_through(&key_a, ordinal), 1);
        assert_eq!(queues.len(&key_a), 2);
        let old_context = first.context;
        drop(queues);

        // After a restart: the rest in order with their identifiers, then a new context.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let queues = IndicationQueues::load(store, "svc", 100).unwrap();
        assert_eq!(queues.len(&key_a), 2);
        let mut waiting = queues.waiting();
        waiting.sort();
        assert_eq!(waiting.len(), 2);
        queues
            .push(
                &[Outgoing {
                    destination: &a,
                    class: "X",
                }],
                message,
                None,
            )
            .unwrap();
        let mut seen = Vec::new();
        while let Some((ordinal, q)) = queues.first(&key_a) {
            seen.push((q.context == old_context, q.number));
            queues.remove_through(&key_a, ordinal);
        }
        assert_eq!(seen, [(true, 1), (true, 2), (false, 0)]);
        assert_eq!(queues.len(&key_a), 0);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_a_forgotten_destination_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let a = destination("a");
        let key = destination_key(&a);
        let queues = IndicationQueues::load(store, "svc", 3).unwrap();
        let one = [Outgoing {
            destination: &a,
            class: "X",
        }];
        for _ in 0..5 {
            queues.push(&one, message, None).unwrap();
        }
        assert_eq!(queues.len(&key), 3);
        assert_eq!(queues.first(&key).unwrap().1.number, 2);
        let context = queues.first(&key).unwrap().1.context;

        std::thread::sleep(std::time::Duration::from_millis(2));
        queues.forget(&a).unwrap();
        assert_eq!(queues.len(&key), 0);
        assert!(queues.first(&key).is_none());
        queues.push(&one, message, None).unwrap();
        let (_, again) = queues.first(&key).unwrap();
        assert_eq!(again.number, 0);
        assert_ne!(
            again.context, context,
            "a recreated destination has a new context"
        );
    }
}
