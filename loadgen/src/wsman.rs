//! WS-Management (DSP0226/DSP0227) requests and what cimload reads from the responses.

use std::sync::atomic::{AtomicU64, Ordering};

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::cimxml::escape;
use crate::client::Client;

const SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
const ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const ENUMERATION: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
/// The DMTF resource URI prefix; cimvirtd accepts it for every class.
pub const DMTF_CLASS_PREFIX: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";

/// WS-Transfer Get.
pub const GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
/// WS-Enumeration Enumerate.
pub const ENUMERATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
/// WS-Enumeration Pull.
pub const PULL: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";

/// The largest envelope cimload accepts, as WinRM asks by default.
const MAX_ENVELOPE_SIZE: u32 = 512_000;

/// A fresh MessageID for every request, as real clients send.
fn message_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("uuid:00000000-0000-4000-8000-{n:012x}")
}

/// What an envelope addresses: the resource URI and selectors (the namespace goes as the
/// `__cimnamespace` selector).
#[derive(Clone, Debug)]
pub struct Address {
    /// The resource URI.
    pub resource_uri: String,
    /// Key selectors, name and value.
    pub selectors: Vec<(String, String)>,
    /// The CIM namespace.
    pub namespace: String,
}

/// A whole SOAP envelope for `action` on `address` with `body` (the content of s:Body).
pub fn envelope(to: &str, action: &str, address: &Address, body: &str) -> String {
    let mut selectors = String::new();
    for (name, value) in address
        .selectors
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain([("__cimnamespace", address.namespace.as_str())])
    {
        selectors.push_str(&format!(
            "<w:Selector Name=\"{}\">{}</w:Selector>",
            escape(name),
            escape(value)
        ));
    }
    format!(
        "<s:Envelope xmlns:s=\"{SOAP}\" xmlns:a=\"{ADDRESSING}\" xmlns:w=\"{WSMAN}\" xmlns:n=\"{ENUMERATION}\">\
         <s:Header><a:To>{to}</a:To>\
         <w:ResourceURI s:mustUnderstand=\"true\">{uri}</w:ResourceURI>\
         <a:ReplyTo><a:Address s:mustUnderstand=\"true\">{ANONYMOUS}</a:Address></a:ReplyTo>\
         <a:Action s:mustUnderstand=\"true\">{action}</a:Action>\
         <w:MaxEnvelopeSize s:mustUnderstand=\"true\">{MAX_ENVELOPE_SIZE}</w:MaxEnvelopeSize>\
         <a:MessageID>{id}</a:MessageID><w:OperationTimeout>PT60S</w:OperationTimeout>\
         <w:SelectorSet>{selectors}</w:SelectorSet></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        to = escape(to),
        uri = escape(&address.resource_uri),
        id = message_id(),
    )
}

/// The body of an optimized Enumerate: `mode` is None (objects), `EnumerateEPR` or
/// `EnumerateObjectAndEPR`.
pub fn enumerate_body(mode: Option<&str>, max_elements: u32) -> String {
    let mode = mode.map_or(String::new(), |m| {
        format!("<w:EnumerationMode>{m}</w:EnumerationMode>")
    });
    format!(
        "<n:Enumerate>{mode}<w:OptimizeEnumeration/><w:MaxElements>{max_elements}</w:MaxElements></n:Enumerate>"
    )
}

/// The body of a Pull.
pub fn pull_body(context: &str, max_elements: u32) -> String {
    format!(
        "<n:Pull><n:EnumerationContext>{}</n:EnumerationContext><n:MaxElements>{max_elements}</n:MaxElements></n:Pull>",
        escape(context)
    )
}

/// Sends one envelope to /wsman and reads the response.
pub async fn send(client: &mut Client, envelope: String) -> Result<(Response, usize), String> {
    let bytes = client
        .post(
            "/wsman",
            &[("Content-Type", "application/soap+xml;charset=UTF-8")],
            envelope,
        )
        .await?;
    Ok((Response::read(&bytes)?, bytes.len()))
}

/// What cimload needs from a WS-Man response.
#[derive(Debug, Default)]
pub struct Response {
    /// Whether the body holds anything (a Get answers the instance).
    pub has_body: bool,
    /// Items of an Enumerate or Pull (children of `Items`).
    pub items: usize,
    /// The selectors of the first EPR in the response.
    pub first_selectors: Vec<(String, String)>,
    /// The enumeration context to pull with.
    pub context: Option<String>,
    /// Whether the response says EndOfSequence.
    pub end: bool,
}

impl Response {
    /// Reads a response; a SOAP fault is returned as the error.
    pub fn read(xml: &[u8]) -> Result<Response, String> {
        let mut reader = Reader::from_reader(xml);
        let mut out = Response::default();
        let mut stack: Vec<Vec<u8>> = Vec::new();
        let mut items_depth = None;
        let mut selectors_done = false;
        let mut selector: Option<String> = None;
        loop {
            let event = reader.read_event().map_err(|e| format!("bad XML: {e}"))?;
            match &event {
                Event::Start(t) | Event::Empty(t) => {
                    let name = t.local_name().as_ref().to_vec();
                    let parent = stack.last().map(Vec::as_slice);
                    if parent == Some(b"Body") {
                        out.has_body = true;
                    }
                    if items_depth == Some(stack.len()) {
                        out.items += 1;
                    }
                    match name.as_slice() {
                        b"Fault" if parent == Some(b"Body") => {
                            return Err(format!("SOAP fault: {}", String::from_utf8_lossy(xml)))
                        }
                        b"Items" => items_depth = Some(stack.len() + 1),
                        b"EndOfSequence" => out.end = true,
                        b"Selector" if !selectors_done => {
                            selector = t
                                .try_get_attribute("Name")
                                .ok()
                                .flatten()
                                .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()));
                        }
                        _ => {}
                    }
                    if matches!(event, Event::Start(_)) {
                        stack.push(name);
                    }
                }
                Event::End(_) => {
                    let name = stack.pop().unwrap_or_default();
                    match name.as_slice() {
                        b"Items" => items_depth = None,
                        b"SelectorSet" if !out.first_selectors.is_empty() => selectors_done = true,
                        _ => {}
                    }
                }
                Event::Text(t) => {
                    let text = || {
                        t.decode()
                            .map(|s| s.into_owned())
                            .map_err(|e| e.to_string())
                    };
                    match stack.last().map(Vec::as_slice) {
                        Some(b"EnumerationContext") => out.context = Some(text()?),
                        Some(b"Selector") => {
                            if let Some(name) = selector.take() {
                                out.first_selectors.push((name, text()?));
                            }
                        }
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(out)
    }
}
