//! Indication delivery (DSP1054 with DSP0200's export messages): an indication raised in a
//! namespace goes to every enabled `CIM_IndicationSubscription` in the interop namespace whose
//! filter selects it (WQL: the FROM class or a superclass of the indication, the WHERE
//! condition, the source namespaces), as a CIM-XML `ExportIndication` request POSTed to the
//! subscription's `CIM_ListenerDestinationCIMXML`, over HTTP or HTTPS (the listener's
//! certificate verified against the server's trust anchors). Subscriptions, filters and
//! destinations are the static instances clients create there (pywbem's
//! `WBEMSubscriptionManager` does).

use std::time::Duration;

use bytes::Bytes;
use cim_schema::{Instance, ObjectPath, Value};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use tracing::{debug, warn};

use super::query::{Language, Query};
use super::Cimom;
use crate::cimxml::encode;
use crate::http::client::{Client, Url};
use crate::schema::INTEROP_NAMESPACE;

/// How often and how far apart a failed delivery is tried (CIM_IndicationService's
/// DeliveryRetryAttempts and DeliveryRetryInterval defaults, shortened to seconds).
const ATTEMPTS: u32 = 3;
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a listener may take to answer one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A subscription that selects an indication: where it goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The listener's URL.
    pub destination: String,
    /// The subscription, for the log.
    pub subscription: String,
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
        if !selects(cimom, &filter.instance, namespace, indication) {
            continue;
        }
        match text(&handler.instance, "Destination") {
            Some(destination) => out.push(Delivery {
                destination: destination.to_owned(),
                subscription: subscription.path.to_string(),
            }),
            None => debug!(subscription = %subscription.path, "its destination has no URL"),
        }
    }
    out
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
}

/// POSTs one export request to `destination`, over HTTPS where its URL says so.
pub async fn post(client: &Client, destination: &str, body: String) -> Result<(), DeliveryError> {
    let url = Url::parse(destination).map_err(|e| DeliveryError::Unsupported(e.to_string()))?;
    let transport =
        |e: &dyn std::fmt::Display| DeliveryError::Transport(format!("{destination}: {e}"));
    let work = async {
        let mut sender = client
            .connect::<Full<Bytes>>(&url)
            .await
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        let request = hyper::Request::post(url.path.as_str())
            .header(HOST, url.authority())
            .header(CONTENT_TYPE, "application/xml; charset=\"utf-8\"")
            .header("CIMExport", "MethodRequest")
            .header("CIMExportMethod", "ExportIndication")
            .header("CIMProtocolVersion", "1.0")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status();
        // The answer's body is read to keep the connection's protocol state clean.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Refused(status.as_u16()))
        }
    };
    tokio::time::timeout(DELIVERY_TIMEOUT, work)
        .await
        .map_err(|_| {
            DeliveryError::Transport(format!("{destination}: no answer in {DELIVERY_TIMEOUT:?}"))
        })?
}

/// Delivers `indication`, raised in `namespace`, to every subscription that selects it,
/// trying each listener up to three times, a second apart.
pub async fn deliver(client: &Client, cimom: &Cimom, namespace: &str, indication: &Instance) {
    let targets = deliveries(cimom, namespace, indication);
    if targets.is_empty() {
        return;
    }
    let body = export_request(indication, &crate::ids::random_uuid());
    for target in targets {
        let mut attempt = 1;
        loop {
            match post(client, &target.destination, body.clone()).await {
                Ok(()) => {
                    debug!(destination = target.destination, class = %indication.class_name, "indication delivered");
                    break;
                }
                Err(e) if attempt < ATTEMPTS && !matches!(e, DeliveryError::Unsupported(_)) => {
                    attempt += 1;
                    tokio::time::sleep(RETRY_INTERVAL).await;
                }
                Err(e) => {
                    warn!(
                        subscription = target.subscription,
                        "indication not delivered: {e}"
                    );
                    break;
                }
            }
        }
    }
}
