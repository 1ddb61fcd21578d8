//! Indications (DSP1054 with DSP0200's export messages): an indication raised in a
//! namespace goes to every enabled `CIM_IndicationSubscription` in the interop namespace whose
//! filter selects it (WQL: the FROM class or a superclass of the indication, the WHERE
//! condition, the source namespaces), as a CIM-XML `ExportIndication` request POSTed to the
//! subscription's `CIM_ListenerDestinationCIMXML`, or as a WS-Management event to a
//! `CIM_ListenerDestinationWSManagement` (WS-Eventing subscriptions), over HTTP or HTTPS (the listener's
//! certificate verified against the server's trust anchors). Subscriptions, filters and
//! destinations are the static instances clients create there (pywbem's
//! `WBEMSubscriptionManager` does).
//!
//! This module chooses the destinations and writes and sends the messages; [`queue`] keeps
//! what waits for each destination, [`dispatcher`] delivers it, and [`settings`] holds the
//! indication service's retry and removal settings.

pub mod dispatcher;
pub mod queue;
pub mod settings;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cim_schema::{Instance, ObjectPath, Value};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use tracing::{debug, warn};

use super::query::{Language, Query};
use super::sink_credentials::SinkCredentials;
use super::Cimom;
use crate::cimxml::encode;
use crate::http::client::{Client, Url};
use crate::wsman::{names as wsman_names, wscim};
use crate::INTEROP_NAMESPACE;

/// How long a listener may take to answer one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a listener's answer that is read (an Ack is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The destination class of WS-Management event sinks (WS-Eventing subscriptions).
pub const WSMAN_DESTINATION: &str = "CIM_ListenerDestinationWSManagement";

/// WS-Management's event and heartbeat actions.
const EVENT_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Event";
const HEARTBEAT_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Heartbeat";
/// The acknowledgement a PushWithAck event sink answers each event with.
const ACK_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Ack";

/// How an indication is carried to a listener.
#[derive(Debug, PartialEq, Eq)]
pub enum Format {
    /// A CIM-XML ExportIndication request (DSP0200).
    CimXml,
    /// A WS-Management event (DSP0226 clause 10).
    Wsman(EventSink),
}

/// What a WS-Management event sink is sent with each event.
#[derive(Debug, PartialEq, Eq)]
pub struct EventSink {
    /// The subscription's wse:Identifier.
    pub identifier: String,
    /// PushWithAck: each event asks for an acknowledgement.
    pub ack: bool,
}

/// A subscription that selects an indication: where it goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The listener's URL.
    pub destination: String,
    /// The destination instance's path.
    pub handler: ObjectPath,
    /// The filter's Name (the indication's IndicationFilterName).
    pub filter_name: Option<String>,
    /// What the listener expects.
    pub format: Format,
}

/// The credentials the listener of the destination at `path` expects, if any.
fn credentials_of(cimom: &Cimom, path: &ObjectPath) -> Option<SinkCredentials> {
    cimom.sink_credentials().get(path)
}

/// How long a subscription with a SubscriptionDuration has left (zero once expired);
/// `None` for one that does not expire.
pub fn time_left(subscription: &Instance) -> Option<Duration> {
    let Some(Value::UInt64(duration)) = subscription.get("SubscriptionDuration") else {
        return None;
    };
    let started = match subscription.get("SubscriptionStartTime") {
        Some(Value::DateTime(cim_schema::DateTime::Timestamp(t))) => t.to_unix(),
        _ => return None,
    };
    let now = cim_schema::Timestamp::now().to_unix();
    let end = started.saturating_add(i64::try_from(*duration).unwrap_or(i64::MAX));
    Some(Duration::from_secs(end.saturating_sub(now).max(0) as u64))
}

/// How a WS-Management destination is sent events: its wse:Identifier (`uuid:ID` for the
/// `wsman:ID` ones WS-Eventing Subscribe creates, else its Name) and whether its
/// DeliveryMode is 3, PushWithAck.
fn event_sink(destination: &Instance) -> EventSink {
    let identifier = match text(destination, "Name") {
        Some(name) => match name.strip_prefix("wsman:") {
            Some(id) => format!("uuid:{id}"),
            None => name.to_owned(),
        },
        None => String::new(),
    };
    let ack = matches!(destination.get("DeliveryMode"), Some(Value::UInt16(3)));
    EventSink { identifier, ack }
}

fn text<'a>(instance: &'a Instance, name: &str) -> Option<&'a str> {
    match instance.get(name) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn reference<'a>(instance: &'a Instance, name: &str) -> Option<&'a ObjectPath> {
    match instance.get(name) {
        Some(Value::Reference(path)) => Some(path),
        _ => None,
    }
}

/// Whether `filter` selects `indication`, raised in `namespace`.
fn selects(cimom: &Cimom, filter: &Instance, namespace: &str, indication: &Instance) -> bool {
    let language = text(filter, "QueryLanguage").unwrap_or("WQL");
    let Some(query_text) = text(filter, "Query") else {
        return false;
    };
    let query = match Language::parse(language)
        .and_then(|l| Query::parse(l, query_text))
        .and_then(|q| match q.from {
            Some(_) => Ok(q),
            None => Err(crate::error::CimError::invalid_parameter("no FROM class")),
        }) {
        Ok(query) => query,
        Err(e) => {
            debug!(
                query = query_text,
                "an indication filter cannot be used: {e}"
            );
            return false;
        }
    };
    let sources: Vec<String> = match filter.get("SourceNamespaces") {
        Some(Value::Array(items)) => items
            .iter()
            .flatten()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        _ => text(filter, "SourceNamespace")
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default(),
    };
    let same = |a: &str, b: &str| {
        a.trim_matches('/')
            .eq_ignore_ascii_case(b.trim_matches('/'))
    };
    if !sources.is_empty() && !sources.iter().any(|s| same(s, namespace)) {
        return false;
    }
    let schema = cimom.schema();
    let Ok(ns) = schema.namespace(namespace) else {
        return false;
    };
    let from = query.from.as_ref().map_or("", |f| f.as_str());
    ns.is_subclass_of(indication.class_name.as_str(), from)
        && query.matches(indication, &|class, ancestor| {
            ns.is_subclass_of(class, ancestor)
        })
}

/// The listeners an indication raised in `namespace` goes to.
pub fn deliveries(cimom: &Cimom, namespace: &str, indication: &Instance) -> Vec<Delivery> {
    let mut out = Vec::new();
    for subscription in cimom.static_instances(INTEROP_NAMESPACE, "CIM_IndicationSubscription") {
        let sub = &subscription.instance;
        // 4: Disabled.
        if matches!(sub.get("SubscriptionState"), Some(Value::UInt16(4))) {
            continue;
        }
        let (Some(filter), Some(handler)) = (reference(sub, "Filter"), reference(sub, "Handler"))
        else {
            continue;
        };
        let filter = cimom.static_instance(INTEROP_NAMESPACE, &filter.local());
        let handler = cimom.static_instance(INTEROP_NAMESPACE, &handler.local());
        let (Some(filter), Some(handler)) = (filter, handler) else {
            debug!(subscription = %subscription.path, "its filter or destination is gone");
            continue;
        };
        if time_left(sub).is_some_and(|left| left.is_zero()) {
            continue;
        }
        if !selects(cimom, &filter.instance, namespace, indication) {
            continue;
        }
        let format = format_of(cimom, &handler.instance);
        match text(&handler.instance, "Destination") {
            Some(destination) => out.push(Delivery {
                destination: destination.to_owned(),
                handler: handler.path.clone(),
                filter_name: text(&filter.instance, "Name").map(str::to_owned),
                format,
            }),
            None => debug!(subscription = %subscription.path, "its destination has no URL"),
        }
    }
    out
}

/// How the listener of `destination` is sent indications.
fn format_of(cimom: &Cimom, destination: &Instance) -> Format {
    if is_wsman(cimom, destination) {
        Format::Wsman(event_sink(destination))
    } else {
        Format::CimXml
    }
}

fn is_wsman(cimom: &Cimom, destination: &Instance) -> bool {
    let schema = cimom.schema();
    schema
        .namespace(INTEROP_NAMESPACE)
        .is_ok_and(|ns| ns.is_subclass_of(destination.class_name.as_str(), WSMAN_DESTINATION))
}

/// A WS-Management event envelope to `to`: `action`, the sink's subscription identifier,
/// an acknowledgement request for PushWithAck, and `body`.
fn wsman_envelope(to: &str, action: &str, sink: &EventSink, body: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><s:Envelope");
    for (prefix, uri) in [
        ("xmlns:s", wsman_names::SOAP),
        ("xmlns:wsa", wsman_names::WSA),
        ("xmlns:wsman", wsman_names::WSMAN),
        ("xmlns:wse", wsman_names::WSE),
        ("xmlns:xsi", wsman_names::XSI),
    ] {
        encode::attr(&mut out, prefix, uri);
    }
    out.push_str("><s:Header><wsa:To>");
    encode::text(&mut out, to);
    out.push_str("</wsa:To><wsa:Action>");
    out.push_str(action);
    out.push_str("</wsa:Action><wsa:MessageID>uuid:");
    out.push_str(&uuid::Uuid::new_v4().to_string());
    out.push_str("</wsa:MessageID><wse:Identifier>");
    encode::text(&mut out, &sink.identifier);
    out.push_str("</wse:Identifier>");
    if sink.ack {
        out.push_str("<wsman:AckRequested/>");
    }
    out.push_str("</s:Header><s:Body>");
    out.push_str(body);
    out.push_str("</s:Body></s:Envelope>");
    out
}

/// The WS-Management event carrying `indication`, raised in `namespace`.
pub fn wsman_event(indication: &Instance, namespace: &str, to: &str, sink: &EventSink) -> String {
    let mut body = String::new();
    wscim::write_instance(
        &mut body,
        indication,
        &encode::InstanceFilter::all(),
        namespace,
    );
    wsman_envelope(to, EVENT_ACTION, sink, &body)
}

/// The CIM-XML export request carrying `indication` (DSP0201's SIMPLEEXPREQ).
pub fn export_request(indication: &Instance, message_id: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n");
    out.push_str("<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.4\"><MESSAGE");
    encode::attr(&mut out, "ID", message_id);
    out.push_str(" PROTOCOLVERSION=\"1.0\"><SIMPLEEXPREQ>");
    out.push_str("<EXPMETHODCALL NAME=\"ExportIndication\"><EXPPARAMVALUE NAME=\"NewIndication\">");
    encode::instance(&mut out, indication, &encode::InstanceFilter::all(), None);
    out.push_str("</EXPPARAMVALUE></EXPMETHODCALL></SIMPLEEXPREQ></MESSAGE></CIM>");
    out
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The destination is not an `http://` or `https://` URL.
    #[error("destination {0}")]
    Unsupported(String),
    /// The listener could not be reached or did not answer in time.
    #[error("{0}")]
    Transport(String),
    /// The listener answered with an error.
    #[error("the listener answered HTTP {0}")]
    Refused(u16),
    /// A PushWithAck event sink answered without the acknowledgement.
    #[error("the event sink did not acknowledge the event")]
    NotAcknowledged,
}

/// POSTs one message to `destination`, over HTTPS where its URL says so: a CIM-XML export
/// request, or a WS-Management event; with `credentials`, HTTP Basic authenticated.
pub async fn post(
    client: &Client,
    destination: &str,
    format: &Format,
    credentials: Option<&SinkCredentials>,
    body: String,
) -> Result<(), DeliveryError> {
    let url = Url::parse(destination).map_err(|e| DeliveryError::Unsupported(e.to_string()))?;
    let transport =
        |e: &dyn std::fmt::Display| DeliveryError::Transport(format!("{destination}: {e}"));
    let work = async {
        let mut sender = client
            .connect::<Full<Bytes>>(&url)
            .await
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        let request = hyper::Request::post(url.path.as_str()).header(HOST, url.authority());
        let request = match format {
            Format::CimXml => request
                .header(CONTENT_TYPE, "application/xml; charset=\"utf-8\"")
                .header("CIMExport", "MethodRequest")
                .header("CIMExportMethod", "ExportIndication")
                .header("CIMProtocolVersion", "1.0"),
            Format::Wsman(_) => request.header(CONTENT_TYPE, "application/soap+xml;charset=UTF-8"),
        };
        let request = match credentials {
            Some(c) => request.header(AUTHORIZATION, basic_authorization(c)),
            None => request,
        }
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| transport(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status();
        // The answer is read (up to a bound; the connection is not reused): a PushWithAck
        // sink acknowledges in it.
        let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if !status.is_success() {
            return Err(DeliveryError::Refused(status.as_u16()));
        }
        match format {
            Format::Wsman(sink) if sink.ack && !acknowledges(&answer) => {
                Err(DeliveryError::NotAcknowledged)
            }
            _ => Ok(()),
        }
    };
    tokio::time::timeout(DELIVERY_TIMEOUT, work)
        .await
        .map_err(|_| {
            DeliveryError::Transport(format!("{destination}: no answer in {DELIVERY_TIMEOUT:?}"))
        })?
}

/// Whether a PushWithAck sink's answer is a wsman:Ack (DSP0226 10.7).
fn acknowledges(answer: &[u8]) -> bool {
    answer
        .windows(ACK_ACTION.len())
        .any(|w| w == ACK_ACTION.as_bytes())
}

/// An `Authorization` header value for HTTP Basic (RFC 7617).
fn basic_authorization(credentials: &SinkCredentials) -> String {
    use base64::Engine as _;
    let pair = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Keeps WS-Eventing subscriptions: removes the expired ones (subscription, destination
/// and filter), and sends each WS-Management destination with a Heartbeat interval a
/// heartbeat event when that interval has passed since the last one (`last_beat`, by
/// destination). Called about once a second.
pub async fn maintain(
    client: &Client,
    cimom: &Arc<Cimom>,
    last_beat: &mut HashMap<String, Instant>,
) {
    let ctx = super::RequestContext {
        user: Arc::from("cimvirtd"),
        administrator: true,
    };
    let mut live = HashSet::new();
    for subscription in cimom.static_instances(INTEROP_NAMESPACE, "CIM_IndicationSubscription") {
        let sub = &subscription.instance;
        let Some(handler_path) = reference(sub, "Handler") else {
            continue;
        };
        let Some(handler) = cimom.static_instance(INTEROP_NAMESPACE, &handler_path.local()) else {
            continue;
        };
        if !is_wsman(cimom, &handler.instance) {
            continue;
        }
        if time_left(sub).is_some_and(|left| left.is_zero()) {
            let mut parts = vec![subscription.path.clone(), handler.path.clone()];
            parts.extend(reference(sub, "Filter").cloned());
            for path in parts {
                let op = super::operation::Operation::DeleteInstance { path: path.clone() };
                if let Err(e) = cimom.execute(&ctx, INTEROP_NAMESPACE, op).await {
                    warn!(%path, "removing an expired subscription: {}", e.description);
                }
            }
            debug!(subscription = %subscription.path, "WS-Eventing subscription expired");
            continue;
        }
        let Some(Value::UInt64(interval)) = handler.instance.get("Heartbeat") else {
            continue;
        };
        let Some(to) = text(&handler.instance, "Destination") else {
            continue;
        };
        let key = handler.path.to_string();
        live.insert(key.clone());
        let due = last_beat
            .get(&key)
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(*interval));
        if !due {
            continue;
        }
        last_beat.insert(key, Instant::now());
        let sink = event_sink(&handler.instance);
        let beat = wsman_envelope(to, HEARTBEAT_ACTION, &sink, "");
        let credentials = credentials_of(cimom, &handler.path);
        if let Err(e) = post(client, to, &Format::Wsman(sink), credentials.as_ref(), beat).await {
            debug!(destination = to, "heartbeat not delivered: {e}");
        }
    }
    last_beat.retain(|k, _| live.contains(k));
}
