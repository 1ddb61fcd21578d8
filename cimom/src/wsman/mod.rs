//! WS-Management (DSP0226) with the CIM binding (DSP0227) and the WS-CIM mapping
//! (DSP0230): the SOAP envelopes of WinRM, openwsman and pypsrp, decoded into the same
//! protocol-neutral operations the CIM-XML endpoint executes.
//!
//! - [`charset`] and [`decode_request`]: a request body into a [`Request`].
//! - [`envelope`]: reading a request's headers; [`fault`]: faults and CIM status mapping.
//! - [`resource`]: resource URIs and selectors; [`wscim`]: instances and values as XML.
//! - [`identify`], [`transfer`] (Get, Put, Create, Delete), [`enumeration`] (Enumerate,
//!   Pull, Release, Renew, GetStatus), [`eventing`] (Subscribe, Renew, GetStatus,
//!   Unsubscribe) and [`invoke`] (extrinsic methods) carry the operations out; [`reply`]
//!   writes the response envelope.

pub mod charset;
pub mod enumeration;
pub mod envelope;
pub mod eventing;
pub mod fault;
pub mod identify;
pub mod invoke;
pub mod names;
pub mod reply;
pub mod resource;
pub mod transfer;
pub mod wscim;

use std::sync::Arc;

use cim_schema::Value;

use crate::auth::User;
use crate::cimxml::dom::{self, XmlLimits};
use crate::dispatch::operation::Operation;
use crate::dispatch::result::Outcome;
use crate::dispatch::{Cimom, RequestContext};
use charset::Charset;
pub use envelope::Request;
use fault::{Fault, Subcode};
use reply::Reply;
use resource::Resource;

/// Settings of the WS-Management endpoint.
#[derive(Clone, Debug)]
pub struct WsmanConfig {
    /// The namespace of a request with no `__cimnamespace` selector.
    pub default_namespace: String,
    /// The largest response envelope when the client sets no MaxEnvelopeSize.
    pub max_envelope_size: u64,
    /// The most items one Pull (or optimized Enumerate) returns.
    pub max_elements: u32,
}

impl Default for WsmanConfig {
    fn default() -> Self {
        WsmanConfig {
            default_namespace: "root/virt".into(),
            max_envelope_size: 4 * 1024 * 1024,
            max_elements: 10_000,
        }
    }
}

/// A request body that could not be decoded: the fault, the MessageID to answer to if it
/// was read, and the encoding to answer in.
#[derive(Debug)]
pub struct Undecodable {
    /// What is wrong.
    pub fault: Fault,
    /// The request's MessageID, if its header was read.
    pub relates_to: Option<String>,
    /// The encoding of the answer.
    pub charset: Charset,
}

/// Decodes a request body (in UTF-8 or UTF-16; `declared_utf16` is what its Content-Type
/// says) into a request, within the XML `limits`.
pub fn decode_request(
    bytes: &[u8],
    declared_utf16: bool,
    limits: &XmlLimits,
) -> Result<(Request, Charset), Undecodable> {
    let fail = |fault, relates_to, charset| Undecodable {
        fault,
        relates_to,
        charset,
    };
    let (text, charset) =
        Charset::decode(bytes, declared_utf16).map_err(|f| fail(f, None, Charset::Utf8))?;
    let envelope = dom::parse(&text, limits).map_err(|e| {
        fail(
            Fault::schema(format!(
                "the request is not an acceptable XML document: {e}"
            )),
            None,
            charset,
        )
    })?;
    let message_id = envelope::message_id(&envelope);
    let request = Request::parse(envelope).map_err(|f| fail(f, message_id, charset))?;
    Ok((request, charset))
}

/// The WS-Management service over the object manager.
pub struct Service {
    cimom: Arc<Cimom>,
    config: WsmanConfig,
}

impl Service {
    /// A service executing on `cimom`.
    pub fn new(cimom: Arc<Cimom>, config: WsmanConfig) -> Self {
        Service { cimom, config }
    }

    /// Carries out an authenticated request.
    pub async fn handle(&self, user: &User, request: &Request) -> Result<Reply, Fault> {
        let Some(action) = request.action.as_deref() else {
            return identify::answer(request, true);
        };
        if request.message_id.is_none() {
            return Err(Fault::sender(
                Subcode::MessageInformationHeaderRequired,
                "the request has no wsa:MessageID",
            ));
        }
        let call = Call {
            cimom: &self.cimom,
            user,
            ctx: RequestContext::of(user),
            request,
            config: &self.config,
        };
        use names::action as A;
        match action {
            A::GET => transfer::get(&call).await,
            A::PUT => transfer::put(&call).await,
            A::CREATE => transfer::create(&call).await,
            A::DELETE => transfer::delete(&call).await,
            A::ENUMERATE => enumeration::enumerate(&call).await,
            A::PULL => enumeration::pull(&call).await,
            A::RELEASE => enumeration::release(&call).await,
            A::RENEW => enumeration::renew(&call).await,
            A::GET_STATUS => enumeration::get_status(&call).await,
            a if a.starts_with(A::EVENTING_PREFIX) => {
                match &a[A::EVENTING_PREFIX.len()..] {
                    "Subscribe" => eventing::subscribe(&call).await,
                    "Renew" => eventing::renew(&call).await,
                    // openwsman's wsman-names.h spells it GetStaus.
                    "GetStatus" | "GetStaus" => eventing::get_status(&call).await,
                    "Unsubscribe" => eventing::unsubscribe(&call).await,
                    other => Err(Fault::sender(
                        Subcode::ActionNotSupported,
                        format!("WS-Eventing {other} is not an action this service takes"),
                    )
                    .with_detail("ActionMismatch")),
                }
            }
            _ => invoke::invoke(&call, action).await,
        }
    }
}

/// One request being carried out.
pub struct Call<'a> {
    /// The object manager.
    pub cimom: &'a Arc<Cimom>,
    /// The authenticated user.
    pub user: &'a User,
    /// The object manager's view of the user.
    pub ctx: RequestContext,
    /// The request.
    pub request: &'a Request,
    /// The endpoint's settings.
    pub config: &'a WsmanConfig,
}

impl Call<'_> {
    /// The resource the request addresses.
    pub fn resource(&self) -> Result<Resource, Fault> {
        resource::parse_uri(self.request.require_resource_uri()?)
    }

    /// The namespace: the `__cimnamespace` selector, else the one a WMI resource URI
    /// names, else the default; resolved to the object manager's spelling.
    pub fn namespace(&self, from_uri: Option<&str>) -> Result<String, Fault> {
        let ns = self
            .request
            .cim_namespace
            .as_deref()
            .or(from_uri)
            .unwrap_or(&self.config.default_namespace);
        self.cimom.resolve_namespace(ns).map_err(Fault::from)
    }

    /// The selectors that are keys (`__cimnamespace` taken out).
    pub fn keys(&self) -> Vec<(String, Value)> {
        self.request.selectors.clone()
    }

    /// Executes `op` as the user (whose rights the object manager checks).
    pub async fn execute(&self, ns: &str, op: Operation, what: &str) -> Result<Outcome, Fault> {
        Ok(self.cimom.serve(self.user, ns, op, what).await?)
    }

    /// The body's element, which must be `local` in `namespace` (written `prefix:local` in
    /// the fault otherwise).
    pub fn body_named(
        &self,
        namespace: &str,
        prefix: &str,
        local: &str,
    ) -> Result<&crate::cimxml::dom::Element<'static>, Fault> {
        self.request
            .body
            .as_ref()
            .filter(|b| b.is(namespace, local))
            .ok_or_else(|| Fault::schema(format!("the body is not a {prefix}:{local}")))
    }

    /// The most octets the response envelope may have.
    pub fn max_envelope_size(&self) -> usize {
        let n = self
            .request
            .max_envelope_size
            .unwrap_or(self.config.max_envelope_size);
        usize::try_from(n).unwrap_or(usize::MAX)
    }
}
