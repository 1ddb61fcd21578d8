//! Indication delivery: each raised indication is numbered and queued, in the store, for
//! every destination whose subscriptions select it, and each destination has a task of
//! its own that delivers its queue in order. A listener that is slow, silent or gone only
//! delays itself.
//!
//! A destination's task tries its oldest indication; on a failure it waits
//! DeliveryRetryInterval and tries the same one again (same sequence identifier), so the
//! order holds. Once a destination has failed, with no success, for DeliveryRetryAttempts
//! retry intervals (the retry window), the indications that have waited longer than the
//! window are given up at each failed try, counted and logged. A destination that keeps
//! failing for SubscriptionRemovalTimeInterval has the service's SubscriptionRemovalAction
//! applied to its subscriptions.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cim_schema::{Instance, Name, ObjectPath, Value};
use tracing::{debug, info, warn};

use super::queue::{now_ms, Outgoing};
use super::settings::{IndicationSettings, RemovalAction};
use super::{deliveries, export_request, post, wsman_event, Format};
use crate::dispatch::operation::Operation;
use crate::dispatch::{Cimom, RequestContext};
use crate::http::client::Client;
use crate::INTEROP_NAMESPACE;

/// Delivers indications.
pub struct Dispatcher {
    cimom: Arc<Cimom>,
    client: Client,
    settings: Arc<IndicationSettings>,
    /// The destinations whose task is running, by key.
    workers: Mutex<HashSet<String>>,
}

impl Dispatcher {
    /// A dispatcher that starts delivering what the store still holds.
    pub fn start(
        cimom: Arc<Cimom>,
        client: Client,
        settings: Arc<IndicationSettings>,
    ) -> Arc<Self> {
        let dispatcher = Arc::new(Dispatcher {
            cimom,
            client,
            settings,
            workers: Mutex::default(),
        });
        let waiting = dispatcher.cimom.indication_queues().waiting();
        if !waiting.is_empty() {
            info!(
                destinations = waiting.len(),
                "delivering the indications queued before the restart"
            );
        }
        for key in waiting {
            dispatcher.wake(key);
        }
        dispatcher
    }

    /// Queues `indication`, raised in `namespace`, for every subscription that selects
    /// it, each copy with its destination's sequence identifier and its filter's name;
    /// committed to the store before it returns, in one transaction with `marker` (a key
    /// and value the raiser reads back with the store's `indication_markers` after a
    /// restart, to know what it had raised).
    pub fn raise(
        self: &Arc<Self>,
        namespace: &str,
        indication: &Instance,
        marker: Option<(&str, &[u8])>,
    ) {
        let routes = deliveries(&self.cimom, namespace, indication);
        if routes.is_empty() && marker.is_none() {
            return;
        }
        let class = indication.class_name.as_str();
        let outgoing: Vec<Outgoing<'_>> = routes
            .iter()
            .map(|r| Outgoing {
                destination: &r.handler,
                class,
            })
            .collect();
        let message = |i: usize, context: &str, number: i64| {
            let route = &routes[i];
            let mut copy = indication.clone();
            copy.set("SequenceContext", context);
            copy.set("SequenceNumber", Value::SInt64(number));
            if let Some(filter) = &route.filter_name {
                copy.set("IndicationFilterName", filter.as_str());
            }
            match &route.format {
                Format::CimXml => export_request(&copy, &uuid::Uuid::new_v4().to_string()),
                Format::Wsman(sink) => wsman_event(&copy, namespace, &route.destination, sink),
            }
        };
        match self
            .cimom
            .indication_queues()
            .push(&outgoing, message, marker)
        {
            Ok(keys) => {
                for key in keys {
                    self.wake(key);
                }
            }
            Err(e) => warn!(
                class,
                destinations = routes.len(),
                "an indication could not be queued and is lost: {e}"
            ),
        }
    }

    /// Starts the task of destination `key` unless it is running (a running task reads
    /// its queue again after every delivery, so it finds the new work itself).
    fn wake(self: &Arc<Self>, key: String) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if workers.insert(key.clone()) {
            let dispatcher = self.clone();
            tokio::spawn(async move { dispatcher.deliver_queue(key).await });
        }
    }

    /// Ends the task of `key` if its queue is empty, under the workers' lock so that a
    /// concurrent [`Dispatcher::wake`] either sees it running or starts a new one.
    fn retire(&self, key: &str) -> bool {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if self.cimom.indication_queues().len(key) > 0 {
            return false;
        }
        workers.remove(key);
        true
    }

    /// One destination's task: its queue, oldest first, until it is empty.
    async fn deliver_queue(self: Arc<Self>, key: String) {
        let queues = self.cimom.indication_queues();
        let mut failing_since: Option<Instant> = None;
        loop {
            let Some((ordinal, queued)) = queues.first(&key) else {
                if self.retire(&key) {
                    return;
                }
                continue;
            };
            let Some(target) = self.target(&key) else {
                // Deleted: what waited for it goes with it.
                debug!(
                    destination = key,
                    "the destination is gone; its queue is dropped"
                );
                let _ = queues.remove_through(&key, u64::MAX);
                continue;
            };
            let credentials = self.cimom.sink_credentials().get(&target.path);
            let result = post(
                &self.client,
                &target.url,
                &target.format,
                credentials.as_ref(),
                queued.message,
            )
            .await;
            match result {
                Ok(()) => {
                    queues.remove_through(&key, ordinal);
                    if failing_since.take().is_some() {
                        info!(destination = target.url, "the listener is reachable again");
                    }
                    debug!(
                        destination = target.url,
                        class = queued.class,
                        number = queued.number,
                        "indication delivered"
                    );
                }
                Err(e) => {
                    let settings = self.settings.get();
                    if failing_since.is_none() {
                        warn!(
                            destination = target.url,
                            waiting = queues.len(&key),
                            retry_secs = settings.retry_interval().as_secs(),
                            "the listener cannot be reached; its indications wait: {e}"
                        );
                    }
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    debug!(
                        destination = target.url,
                        number = queued.number,
                        "delivery failed: {e}"
                    );
                    // Only an outage as long as the retry window gives anything up: a
                    // backlog behind a slow listener is not old for having waited.
                    if since.elapsed() >= settings.retry_window() {
                        self.give_up_expired(&key, &target.url, settings.retry_window(), &e);
                    }
                    if since.elapsed() >= settings.removal_interval()
                        && settings.removal_action != RemovalAction::Ignore
                    {
                        self.apply_removal(&target.path, settings.removal_action, since.elapsed())
                            .await;
                        failing_since = None;
                    }
                    tokio::time::sleep(settings.retry_interval()).await;
                }
            }
        }
    }

    /// Drops the oldest indications of `key` that have waited longer than `window` (called
    /// once the destination has failed for that long).
    fn give_up_expired(
        &self,
        key: &str,
        url: &str,
        window: Duration,
        error: &super::DeliveryError,
    ) {
        let oldest_kept = now_ms().saturating_sub(window.as_millis() as u64);
        let given_up = self
            .cimom
            .indication_queues()
            .give_up_raised_before(key, oldest_kept);
        if given_up > 0 {
            warn!(
                destination = url,
                given_up,
                window_secs = window.as_secs(),
                "indications given up after the retry window: {error}"
            );
        }
    }

    /// Applies `action` to every subscription whose handler is the destination at `path`.
    async fn apply_removal(&self, path: &ObjectPath, action: RemovalAction, failing: Duration) {
        let ctx = RequestContext {
            user: Arc::from("cimvirtd"),
            administrator: true,
        };
        let wanted = path.local();
        for subscription in self
            .cimom
            .static_instances(INTEROP_NAMESPACE, "CIM_IndicationSubscription")
        {
            let handler = match subscription.instance.get("Handler") {
                Some(Value::Reference(h)) => h.local(),
                _ => continue,
            };
            if handler != wanted {
                continue;
            }
            let op = match action {
                RemovalAction::Remove => Operation::DeleteInstance {
                    path: subscription.path.clone(),
                },
                RemovalAction::Disable => {
                    let mut disabled = subscription.instance.clone();
                    // 4: Disabled.
                    disabled.set("SubscriptionState", Value::UInt16(4));
                    Operation::ModifyInstance {
                        path: subscription.path.clone(),
                        instance: disabled,
                        property_list: Some(vec![Name::from("SubscriptionState")]),
                    }
                }
                RemovalAction::Ignore => return,
            };
            match self.cimom.execute(&ctx, INTEROP_NAMESPACE, op).await {
                Ok(_) => warn!(
                    subscription = %subscription.path,
                    action = ?action,
                    failing_secs = failing.as_secs(),
                    "the listener has failed for longer than SubscriptionRemovalTimeInterval"
                ),
                Err(e) => warn!(
                    subscription = %subscription.path,
                    "applying SubscriptionRemovalAction failed: {}", e.description
                ),
            }
        }
    }

    /// Where the destination `key` is now: its URL and format (read at every try, so a
    /// modified destination is followed).
    fn target(&self, key: &str) -> Option<Target> {
        let path = ObjectPath::parse(key).ok()?;
        let destination = self.cimom.static_instance(INTEROP_NAMESPACE, &path)?;
        let url = match destination.instance.get("Destination") {
            Some(Value::String(url)) => url.to_string(),
            _ => return None,
        };
        let format = super::format_of(&self.cimom, &destination.instance);
        Some(Target {
            path: destination.path.clone(),
            url,
            format,
        })
    }
}

/// A destination as a delivery needs it.
struct Target {
    path: ObjectPath,
    url: String,
    format: Format,
}
