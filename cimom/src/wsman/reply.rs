//! Writing response envelopes: the WS-Addressing headers that tie a response to its
//! request, and the body.

use super::fault::Fault;
use super::names;
use crate::cimxml::encode::{attr, text};

/// A successful response: its action, extra headers and body content.
#[derive(Debug, Default)]
pub struct Reply {
    /// wsa:Action of the response.
    pub action: String,
    /// Headers beyond the addressing ones, already encoded.
    pub headers: String,
    /// The content of s:Body.
    pub body: String,
}

impl Reply {
    /// A response with `action` and `body`.
    pub fn new(action: impl Into<String>, body: String) -> Self {
        Reply {
            action: action.into(),
            headers: String::new(),
            body,
        }
    }
}

/// Bytes an envelope adds around its body (headers included), for MaxEnvelopeSize checks.
pub const ENVELOPE_OVERHEAD: usize = 1536;

/// The prefixes every response declares on its envelope.
const DECLARED: &[(&str, &str)] = &[
    ("xmlns:s", names::SOAP),
    ("xmlns:wsa", names::WSA),
    ("xmlns:wsman", names::WSMAN),
    ("xmlns:wsen", names::WSEN),
    ("xmlns:wxf", names::WXF),
    ("xmlns:wsmb", names::WSMB),
    ("xmlns:wsmid", names::WSMID),
    ("xmlns:xsi", names::XSI),
];

fn start(out: &mut String, action: &str, relates_to: Option<&str>) {
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope"#);
    for (prefix, uri) in DECLARED {
        attr(out, prefix, uri);
    }
    out.push_str("><s:Header><wsa:To>");
    out.push_str(names::ANONYMOUS);
    out.push_str("</wsa:To>");
    if !action.is_empty() {
        out.push_str("<wsa:Action>");
        text(out, action);
        out.push_str("</wsa:Action>");
    }
    out.push_str("<wsa:MessageID>uuid:");
    out.push_str(&uuid::Uuid::new_v4().to_string());
    out.push_str("</wsa:MessageID>");
    if let Some(id) = relates_to {
        // Echoed exactly: pypsrp compares upper-case MessageIDs byte for byte.
        out.push_str("<wsa:RelatesTo>");
        text(out, id);
        out.push_str("</wsa:RelatesTo>");
    }
}

/// The whole response envelope.
pub fn envelope(reply: &Reply, relates_to: Option<&str>) -> String {
    let mut out = String::with_capacity(reply.body.len() + ENVELOPE_OVERHEAD);
    start(&mut out, &reply.action, relates_to);
    out.push_str(&reply.headers);
    out.push_str("</s:Header><s:Body>");
    out.push_str(&reply.body);
    out.push_str("</s:Body></s:Envelope>");
    out
}

/// The envelope of a fault.
pub fn fault_envelope(fault: &Fault, relates_to: Option<&str>) -> String {
    let mut out = String::with_capacity(1024);
    start(&mut out, fault.action(), relates_to);
    fault.write_headers(&mut out);
    out.push_str("</s:Header><s:Body>");
    fault.write_body(&mut out);
    out.push_str("</s:Body></s:Envelope>");
    out
}
