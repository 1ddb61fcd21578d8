//! WS-Eventing (DSP0226 clause 10) over CIM indications: Subscribe, Renew, GetStatus and
//! Unsubscribe. A subscription is the bridge DSP0227 describes: Subscribe creates, in the
//! interop namespace, a `CIM_IndicationFilter` (the wsman:Filter, or `SELECT * FROM` the
//! class the resource URI names), a `CIM_ListenerDestinationWSManagement` (the NotifyTo
//! address, the delivery mode, the heartbeat interval) and a `CIM_IndicationSubscription`
//! joining them (SubscriptionStartTime and SubscriptionDuration from wse:Expires). So the
//! subscription is visible to CIM-XML clients too, and survives a restart; indications reach
//! the NotifyTo address as WS-Management events ([`crate::dispatch::indication`]).
//!
//! Delivery modes: Push and PushWithAck (as OpenPegasus); Pull and batched Events are
//! refused with wse:DeliveryModeRequestedUnavailable.

use std::time::Duration;

use cim_schema::{DateTime, Instance, Name, ObjectPath, Timestamp, Value};

use super::enumeration::query_filter;
use super::fault::{Fault, Subcode};
use super::names;
use super::reply::Reply;
use super::resource::Resource;
use super::wscim::parse_duration;
use super::Call;
use crate::cimxml::dom::Element;
use crate::cimxml::encode::text;
use crate::dispatch::indication::{self, WSMAN_DESTINATION};
use crate::dispatch::operation::Operation;
use crate::dispatch::query::{Language, Query};
use crate::dispatch::result::Outcome;
use crate::dispatch::sink_credentials::SinkCredentials;
use crate::INTEROP_NAMESPACE;

/// The delivery modes offered.
const PUSH: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push";
const PUSH_WITH_ACK: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/PushWithAck";

fn body_named<'a>(call: &'a Call<'_>, local: &str) -> Result<&'a Element<'a>, Fault> {
    call.body_named(names::WSE, "wse", local)
}

/// wse:Expires as a duration; absolute times are refused.
fn expires(body: &Element) -> Result<Option<Duration>, Fault> {
    let Some(e) = body.child_ns(names::WSE, "Expires") else {
        return Ok(None);
    };
    match parse_duration(&e.text) {
        Some(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(Fault::sender(
            Subcode::EventingInvalidExpirationTime,
            format!(
                "wse:Expires '{}' is not a positive duration (absolute times are not supported)",
                e.text.trim()
            ),
        )),
    }
}

fn expires_element(d: Duration) -> String {
    format!("<wse:Expires>{}</wse:Expires>", super::wscim::xs_seconds(d))
}

/// The query a subscription filters with, checked: it parses, and selects from an
/// indication class of `namespace`.
fn filter_query(call: &Call<'_>, subscribe: &Element, namespace: &str) -> Result<String, Fault> {
    let text = requested_query(call, subscribe)?;
    let cannot = |why: String| Fault::sender(Subcode::CannotProcessFilter, why);
    let query = Query::parse(Language::Wql, &text)
        .map_err(|e| cannot(format!("{text}: {}", e.description)))?;
    let from = query
        .from
        .as_ref()
        .ok_or_else(|| cannot(format!("{text}: no FROM class")))?;
    let schema = call.cimom.schema();
    let ns = schema
        .namespace(namespace)
        .map_err(|e| cannot(format!("{namespace}: {e}")))?;
    if ns.class(from.as_str()).is_none() || !ns.is_subclass_of(from.as_str(), "CIM_Indication") {
        return Err(cannot(format!(
            "{from} is not an indication class in {namespace}"
        )));
    }
    Ok(text)
}

/// The wsman:Filter (WQL, or CQL in the form it shares with WQL), else every indication of
/// the class the resource URI names.
fn requested_query(call: &Call<'_>, subscribe: &Element) -> Result<String, Fault> {
    if let Some(filter) = subscribe.child_ns(names::WSMAN, "Filter") {
        let dialect = filter
            .attr("Dialect")
            .unwrap_or(names::dialect::WQL_MICROSOFT);
        if ![
            names::dialect::WQL_MICROSOFT,
            names::dialect::WQL_DMTF,
            names::dialect::CQL,
        ]
        .contains(&dialect)
        {
            return Err(Fault::sender(
                Subcode::EventingFilteringRequestedUnavailable,
                format!("filter dialect '{dialect}' is not supported; use WQL or CQL"),
            ));
        }
        return query_filter(dialect, filter);
    }
    match call.resource()? {
        Resource::Class { name, .. } => Ok(format!("SELECT * FROM {name}")),
        Resource::AllClasses => Err(Fault::sender(
            Subcode::EventingFilteringRequestedUnavailable,
            "subscribing to all classes needs a wsman:Filter",
        )),
    }
}

/// The subscription `identifier` names: its path and its destination's.
fn find(call: &Call<'_>, identifier: &str) -> Option<(ObjectPath, Instance)> {
    let id = identifier
        .trim()
        .strip_prefix("uuid:")
        .unwrap_or(identifier.trim());
    let name = format!("wsman:{id}");
    call.cimom
        .static_instances(INTEROP_NAMESPACE, "CIM_IndicationSubscription")
        .into_iter()
        .find(|s| match s.instance.get("Handler") {
            Some(Value::Reference(h)) => {
                matches!(h.key("Name"), Some(Value::String(n)) if **n == *name)
            }
            _ => false,
        })
        .map(|s| (s.path.clone(), s.instance.clone()))
}

fn subscription_of<'a>(call: &'a Call<'_>) -> Result<(&'a str, ObjectPath, Instance), Fault> {
    let identifier = call.request.subscription.as_deref().ok_or_else(|| {
        Fault::sender(
            Subcode::InvalidMessage,
            "the request names no subscription (wse:Identifier header)",
        )
    })?;
    let (path, instance) = find(call, identifier).ok_or_else(|| {
        Fault::sender(
            Subcode::InvalidMessage,
            format!("there is no subscription {identifier} (it may have expired)"),
        )
    })?;
    Ok((identifier, path, instance))
}

/// The security profiles of `wsman:Auth` under which events carry HTTP Basic credentials.
const BASIC_PROFILES: &[(&str, &str)] = &[
    (
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/basic",
        "http",
    ),
    (
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/basic",
        "https",
    ),
];

/// The credentials the sink at `notify_to` expects (DSP0226 10.2.2): with a `wsman:Auth`
/// profile for HTTP Basic, the `wst:IssuedTokens` username token that applies to that
/// address (or the only one given). Digest and certificate profiles are not offered.
fn sink_credentials(
    call: &Call<'_>,
    delivery: &Element,
    notify_to: &str,
) -> Result<Option<SinkCredentials>, Fault> {
    let Some(auth) = delivery.child_ns(names::WSMAN, "Auth") else {
        return Ok(None);
    };
    let profile = auth.attr("Profile").unwrap_or("").trim();
    let Some((_, scheme)) = BASIC_PROFILES.iter().find(|(p, _)| *p == profile) else {
        return Err(Fault::sender(
            Subcode::UnsupportedFeature,
            format!(
                "event sink security profile '{profile}' is not offered; use http/basic or https/basic"
            ),
        )
        .with_detail("AuthorizationMode"));
    };
    if !notify_to.starts_with(&format!("{scheme}://")) {
        return Err(Fault::sender(
            Subcode::InvalidParameter,
            format!("the profile {profile} needs a {scheme}:// NotifyTo address, not {notify_to}"),
        ));
    }
    let tokens = &call.request.issued_tokens;
    let token = tokens
        .iter()
        .find(|t| t.applies_to.as_deref() == Some(notify_to))
        .or_else(|| match tokens.as_slice() {
            [only] if only.applies_to.is_none() => Some(only),
            _ => None,
        })
        .ok_or_else(|| {
            Fault::sender(
                Subcode::InvalidParameter,
                format!("wsman:Auth asks for credentials, and no wst:IssuedTokens username token applies to {notify_to}"),
            )
        })?;
    Ok(Some(token.credentials.clone()))
}

/// WS-Eventing Subscribe.
pub async fn subscribe(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = body_named(call, "Subscribe")?;
    let delivery = body
        .child_ns(names::WSE, "Delivery")
        .ok_or_else(|| Fault::schema("wse:Subscribe has no wse:Delivery"))?;
    let mode = delivery.attr("Mode").unwrap_or(PUSH);
    let delivery_mode: u16 = match mode {
        PUSH => 2,
        PUSH_WITH_ACK => 3,
        other => {
            let mut fault = Fault::sender(
                Subcode::DeliveryModeRequestedUnavailable,
                format!("delivery mode '{other}' is not offered; use Push or PushWithAck"),
            );
            for supported in [PUSH, PUSH_WITH_ACK] {
                fault.detail_xml.push_str(&format!(
                    "<wse:SupportedDeliveryMode xmlns:wse=\"{}\">{supported}</wse:SupportedDeliveryMode>",
                    names::WSE
                ));
            }
            return Err(fault);
        }
    };
    let notify_to = delivery
        .child_ns(names::WSE, "NotifyTo")
        .and_then(|n| n.child_ns(names::WSA, "Address"))
        .map(|a| a.text.trim().to_owned())
        .ok_or_else(|| Fault::schema("wse:Delivery has no wse:NotifyTo address"))?;
    crate::http::client::Url::parse(&notify_to).map_err(|e| {
        Fault::sender(
            Subcode::InvalidParameter,
            format!("wse:NotifyTo: {e}; events go to http:// or https:// addresses"),
        )
    })?;
    let credentials = sink_credentials(call, delivery, &notify_to)?;
    let heartbeat = match delivery.child_ns(names::WSMAN, "Heartbeats") {
        Some(h) => Some(
            parse_duration(&h.text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Fault::sender(
                        Subcode::InvalidParameter,
                        format!(
                            "wsman:Heartbeats '{}' is not a positive duration",
                            h.text.trim()
                        ),
                    )
                })?,
        ),
        None => None,
    };
    let lifetime = expires(body)?;
    let source_namespace = call.namespace(None)?;
    let query = filter_query(call, body, &source_namespace)?;

    let id = uuid::Uuid::new_v4().to_string();
    let name = format!("wsman:{id}");
    // The object manager fills in the other keys (its system, the class), as for any
    // filter or destination created in interop.
    let keyed = |class: &str| {
        let mut i = Instance::new(Name::new(class));
        i.set("Name", Value::from(name.as_str()));
        i
    };
    let mut filter = keyed("CIM_IndicationFilter");
    filter.set("Query", Value::from(query.as_str()));
    filter.set("QueryLanguage", Value::from("WQL"));
    filter.set(
        "SourceNamespaces",
        Value::Array(vec![Some(Value::from(source_namespace.as_str()))]),
    );
    let mut destination = keyed(WSMAN_DESTINATION);
    destination.set("Destination", Value::from(notify_to.as_str()));
    destination.set("DeliveryMode", Value::UInt16(delivery_mode));
    if let Some(h) = heartbeat {
        destination.set("Heartbeat", Value::UInt64(h.as_secs().max(1)));
    }
    if let Some(c) = credentials {
        // Stored apart from the destination, never readable (its password is Read(false)).
        destination.set("username", Value::from(c.username.as_str()));
        destination.set("password", Value::from(c.password.as_str()));
    }
    let filter_path = create(call, filter).await?;
    let destination_path = match create(call, destination).await {
        Ok(p) => p,
        Err(e) => {
            remove(call, filter_path).await;
            return Err(e);
        }
    };
    let mut subscription = Instance::new(Name::new("CIM_IndicationSubscription"));
    subscription.set("Filter", Value::Reference(filter_path.clone()));
    subscription.set("Handler", Value::Reference(destination_path.clone()));
    subscription.set("SubscriptionState", Value::UInt16(2));
    set_lifetime(&mut subscription, lifetime);
    if let Err(e) = create(call, subscription).await {
        remove(call, destination_path).await;
        remove(call, filter_path).await;
        return Err(e);
    }
    tracing::info!(
        subscription = id,
        to = notify_to,
        query,
        "WS-Eventing subscription"
    );

    let mut out = String::from("<wse:SubscribeResponse xmlns:wse=\"");
    out.push_str(names::WSE);
    out.push_str("\"><wse:SubscriptionManager><wsa:Address>");
    text(
        &mut out,
        call.request.to.as_deref().unwrap_or(names::ANONYMOUS),
    );
    out.push_str("</wsa:Address><wsa:ReferenceParameters><wsman:ResourceURI>");
    text(
        &mut out,
        call.request
            .resource_uri
            .as_deref()
            .unwrap_or(names::ALL_CLASSES),
    );
    out.push_str("</wsman:ResourceURI><wse:Identifier>uuid:");
    out.push_str(&id);
    out.push_str("</wse:Identifier></wsa:ReferenceParameters></wse:SubscriptionManager>");
    if let Some(d) = lifetime {
        out.push_str(&expires_element(d));
    }
    out.push_str("</wse:SubscribeResponse>");
    Ok(Reply::new(
        format!("{}SubscribeResponse", names::action::EVENTING_PREFIX),
        out,
    ))
}

fn set_lifetime(subscription: &mut Instance, lifetime: Option<Duration>) {
    if let Some(d) = lifetime {
        subscription.set(
            "SubscriptionStartTime",
            Value::DateTime(DateTime::Timestamp(Timestamp::now())),
        );
        subscription.set("SubscriptionDuration", Value::UInt64(d.as_secs().max(1)));
    }
}

async fn create(call: &Call<'_>, instance: Instance) -> Result<ObjectPath, Fault> {
    match call
        .execute(
            INTEROP_NAMESPACE,
            Operation::CreateInstance { instance },
            "Subscribe",
        )
        .await?
    {
        Outcome::InstanceName(path) => Ok(path),
        _ => Err(Fault::receiver(
            Subcode::InternalError,
            "creating a subscription answered no instance name",
        )),
    }
}

async fn remove(call: &Call<'_>, path: ObjectPath) {
    let op = Operation::DeleteInstance { path: path.clone() };
    if let Err(e) = call.execute(INTEROP_NAMESPACE, op, "Unsubscribe").await {
        tracing::warn!(%path, "removing part of a subscription: {}", e.reason);
    }
}

/// WS-Eventing Renew: a new lifetime from now.
pub async fn renew(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = body_named(call, "Renew")?;
    let (identifier, path, mut subscription) = subscription_of(call).map_err(|f| Fault {
        subcode: Subcode::UnableToRenew,
        ..f
    })?;
    let lifetime = expires(body)?;
    subscription.properties.remove("SubscriptionStartTime");
    subscription.properties.remove("SubscriptionDuration");
    set_lifetime(&mut subscription, lifetime);
    let op = Operation::ModifyInstance {
        path,
        instance: subscription,
        property_list: None,
    };
    call.execute(INTEROP_NAMESPACE, op, "Renew").await?;
    tracing::info!(
        subscription = identifier,
        ?lifetime,
        "WS-Eventing subscription renewed"
    );
    let mut out = format!("<wse:RenewResponse xmlns:wse=\"{}\">", names::WSE);
    if let Some(d) = lifetime {
        out.push_str(&expires_element(d));
    }
    out.push_str("</wse:RenewResponse>");
    Ok(Reply::new(
        format!("{}RenewResponse", names::action::EVENTING_PREFIX),
        out,
    ))
}

/// WS-Eventing GetStatus (also under openwsman's misspelt action): when it expires.
pub async fn get_status(call: &Call<'_>) -> Result<Reply, Fault> {
    let (_, _, subscription) = subscription_of(call)?;
    let mut out = format!("<wse:GetStatusResponse xmlns:wse=\"{}\">", names::WSE);
    if let Some(left) = indication::time_left(&subscription) {
        out.push_str(&expires_element(left));
    }
    out.push_str("</wse:GetStatusResponse>");
    Ok(Reply::new(
        format!("{}GetStatusResponse", names::action::EVENTING_PREFIX),
        out,
    ))
}

/// WS-Eventing Unsubscribe: the subscription, its destination and its filter go.
pub async fn unsubscribe(call: &Call<'_>) -> Result<Reply, Fault> {
    let (identifier, path, subscription) = subscription_of(call)?;
    let op = Operation::DeleteInstance { path };
    call.execute(INTEROP_NAMESPACE, op, "Unsubscribe").await?;
    for part in ["Handler", "Filter"] {
        if let Some(Value::Reference(p)) = subscription.get(part) {
            remove(call, p.clone()).await;
        }
    }
    tracing::info!(subscription = identifier, "WS-Eventing subscription ended");
    Ok(Reply::new(
        format!("{}UnsubscribeResponse", names::action::EVENTING_PREFIX),
        String::new(),
    ))
}
