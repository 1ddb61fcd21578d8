//! Reading a request envelope: the SOAP 1.2 structure, the WS-Addressing and
//! WS-Management headers (DSP0226 clause 5-6), and mustUnderstand.

use std::time::Duration;

use cim_schema::Value;

use super::fault::{Fault, Subcode};
use super::names;
use super::resource;
use super::wscim::parse_duration;
use crate::cimxml::dom::Element;
use crate::dispatch::sink_credentials::SinkCredentials;

/// The smallest MaxEnvelopeSize a client may ask for (DSP0226 R6.2-4; OpenPegasus).
pub const MIN_ENVELOPE_SIZE: u64 = 8192;

/// A request's headers and body.
#[derive(Debug)]
pub struct Request {
    /// wsa:Action; `None` for Identify, which has none.
    pub action: Option<String>,
    /// wsa:MessageID, exactly as sent (RelatesTo must echo it byte for byte).
    pub message_id: Option<String>,
    /// wsman:ResourceURI.
    pub resource_uri: Option<String>,
    /// The `__cimnamespace` selector.
    pub cim_namespace: Option<String>,
    /// The other selectors of wsman:SelectorSet: the keys.
    pub selectors: Vec<(String, Value)>,
    /// wsman:OptionSet: name and value.
    pub options: Vec<(String, String)>,
    /// wsman:OperationTimeout.
    pub operation_timeout: Option<Duration>,
    /// wsman:MaxEnvelopeSize in bytes.
    pub max_envelope_size: Option<u64>,
    /// wsman:FragmentTransfer: the property expression.
    pub fragment: Option<String>,
    /// wsman:RequestTotalItemsCountEstimate.
    pub request_estimate: bool,
    /// Whether the client sent WinRM's own headers (WinRM itself, pypsrp, pywinrm).
    pub winrm_client: bool,
    /// wsa:To: the address the client sent the request to.
    pub to: Option<String>,
    /// wse:Identifier: the WS-Eventing subscription a Renew, GetStatus or Unsubscribe is for.
    pub subscription: Option<String>,
    /// wst:IssuedTokens: the credentials the client gave for its event sinks.
    pub issued_tokens: Vec<IssuedToken>,
    /// The first element of the body, if any (owned: a request outlives its bytes).
    pub body: Option<Element<'static>>,
}

/// A user name and password a subscriber gives the service for delivering events to its
/// sink (DSP0226 10.2.2: a wsse:UsernameToken in wst:IssuedTokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The user name and password (their Debug form leaves the password out).
    pub credentials: SinkCredentials,
    /// The sink address the token applies to (wsp:AppliesTo), if named.
    pub applies_to: Option<String>,
}

/// The username tokens of a wst:IssuedTokens header; other token types (certificate
/// thumbprints) are not read.
fn issued_tokens(h: &Element) -> Vec<IssuedToken> {
    h.children_ns(names::WST, "RequestSecurityTokenResponse")
        .filter_map(|response| {
            let token = response
                .child_ns(names::WST, "RequestedSecurityToken")?
                .child_ns(names::WSSE, "UsernameToken")?;
            let applies_to = response
                .child_ns(names::WSP, "AppliesTo")
                .and_then(|a| a.child_ns(names::WSA, "EndpointReference"))
                .and_then(|e| e.child_ns(names::WSA, "Address"))
                .map(|a| a.text.trim().to_owned());
            Some(IssuedToken {
                credentials: SinkCredentials {
                    username: token.child_ns(names::WSSE, "Username")?.text.to_string(),
                    password: token
                        .child_ns(names::WSSE, "Password")
                        .map(|p| p.text.to_string())
                        .unwrap_or_default(),
                },
                applies_to,
            })
        })
        .collect()
}

/// Headers this service acts on or may safely ignore (so mustUnderstand is honoured).
fn understood(h: &Element) -> bool {
    let ns = h.namespace.as_deref().unwrap_or("");
    let local = h.local_name();
    match ns {
        names::WSA => matches!(
            local,
            "To" | "Action" | "MessageID" | "ReplyTo" | "FaultTo" | "From" | "RelatesTo"
        ),
        names::WSMAN => matches!(
            local,
            "ResourceURI"
                | "SelectorSet"
                | "OptionSet"
                | "OperationTimeout"
                | "MaxEnvelopeSize"
                | "Locale"
                | "FragmentTransfer"
                | "RequestTotalItemsCountEstimate"
        ),
        // WinRM's and pypsrp's session bookkeeping changes nothing here.
        names::MS_WSMAN => matches!(
            local,
            "DataLocale" | "SessionId" | "OperationID" | "SequenceId"
        ),
        // WS-Eventing's subscription identifier (Renew, Unsubscribe).
        names::WSE => local == "Identifier",
        // The credentials of an event sink (Subscribe with wsman:Auth).
        names::WST => local == "IssuedTokens",
        _ => false,
    }
}

fn is_true(v: &str) -> bool {
    matches!(v.trim(), "true" | "1")
}

/// Options that change what the service does and so may carry mustUnderstand.
const OPTIONS: &[&str] = &["ShowExtensions", "ExcludeNilProperties"];

/// The wsa:MessageID of an envelope, read before anything else is checked so that a
/// fault about its other headers still relates to it.
pub fn message_id(envelope: &Element) -> Option<String> {
    envelope
        .child_ns(names::SOAP, "Header")?
        .child_ns(names::WSA, "MessageID")
        .map(|m| m.text.to_string())
}

impl Request {
    /// Reads an envelope; every header fault is raised here.
    pub fn parse(envelope: Element) -> Result<Request, Fault> {
        if !envelope.is(names::SOAP, "Envelope") {
            let reason = if envelope.local_name() == "Envelope" {
                format!(
                    "the envelope is in namespace {}; WS-Management uses SOAP 1.2 ({})",
                    envelope.namespace.as_deref().unwrap_or("(none)"),
                    names::SOAP
                )
            } else {
                format!("the document is <{}>, not a SOAP envelope", envelope.name)
            };
            return Err(Fault::schema(reason));
        }
        let mut request = Request {
            action: None,
            message_id: None,
            resource_uri: None,
            cim_namespace: None,
            selectors: Vec::new(),
            options: Vec::new(),
            operation_timeout: None,
            max_envelope_size: None,
            fragment: None,
            request_estimate: false,
            winrm_client: false,
            to: None,
            subscription: None,
            issued_tokens: Vec::new(),
            body: None,
        };
        let mut body = None;
        let mut header = None;
        for part in envelope.children {
            if part.is(names::SOAP, "Header") {
                header = Some(part);
            } else if part.is(names::SOAP, "Body") {
                body = Some(part);
            } else {
                return Err(Fault::schema(format!(
                    "unexpected <{}> in the SOAP envelope",
                    part.name
                )));
            }
        }
        let body = body.ok_or_else(|| Fault::schema("the SOAP envelope has no Body"))?;
        request.body = body.children.into_iter().next().map(Element::into_owned);
        for h in header.map(|h| h.children).unwrap_or_default() {
            request.header(h)?;
        }
        Ok(request)
    }

    fn header(&mut self, h: Element) -> Result<(), Fault> {
        if !understood(&h) {
            if h.attr_local("mustUnderstand").is_some_and(is_true) {
                return Err(Fault::not_understood(
                    h.namespace.as_deref().unwrap_or(""),
                    h.local_name(),
                ));
            }
            return Ok(());
        }
        let text = || h.text.trim().to_string();
        let ns = h.namespace.as_deref().unwrap_or("");
        self.winrm_client |= ns == names::MS_WSMAN;
        match (ns, h.local_name()) {
            (names::WSA, "Action") => self.action = Some(text()),
            (names::WSA, "To") => self.to = Some(text()),
            (names::WSE, "Identifier") => self.subscription = Some(text()),
            (names::WST, "IssuedTokens") => self.issued_tokens.extend(issued_tokens(&h)),
            (names::WSA, "MessageID") => {
                if text().is_empty() {
                    return Err(Fault::header("wsa:MessageID is empty"));
                }
                self.message_id = Some(h.text.to_string());
            }
            (names::WSA, "ReplyTo") => {
                let address = h.child_ns(names::WSA, "Address").map(|a| a.text.trim());
                if address.is_some_and(|a| a != names::ANONYMOUS) {
                    return Err(Fault::sender(
                        Subcode::UnsupportedFeature,
                        "replies go back on the request's connection: wsa:ReplyTo must be the anonymous address",
                    )
                    .with_detail("AddressingMode"));
                }
            }
            (names::WSMAN, "ResourceURI") => self.resource_uri = Some(text()),
            (names::WSMAN, "SelectorSet") => {
                (self.cim_namespace, self.selectors) =
                    resource::split_namespace(resource::read_selectors(&h)?);
            }
            (names::WSMAN, "OptionSet") => {
                for o in h.children_ns(names::WSMAN, "Option") {
                    let name = o.attr("Name").unwrap_or("").to_string();
                    if o.attr_local("mustUnderstand").is_some_and(is_true)
                        && !OPTIONS.iter().any(|k| k.eq_ignore_ascii_case(&name))
                    {
                        return Err(Fault::sender(
                            Subcode::InvalidOptions,
                            format!("option '{name}' is not supported"),
                        )
                        .with_detail("NotSupported"));
                    }
                    self.options.push((name, o.text.trim().to_string()));
                }
            }
            (names::WSMAN, "OperationTimeout") => {
                let t = parse_duration(&h.text).ok_or_else(|| {
                    Fault::header(format!(
                        "wsman:OperationTimeout '{}' is not an xs:duration",
                        text()
                    ))
                })?;
                self.operation_timeout = Some(t);
            }
            (names::WSMAN, "MaxEnvelopeSize") => {
                let n: u64 = text().parse().map_err(|_| {
                    Fault::header(format!(
                        "wsman:MaxEnvelopeSize '{}' is not a number of octets",
                        text()
                    ))
                })?;
                if n < MIN_ENVELOPE_SIZE {
                    return Err(Fault::sender(
                        Subcode::EncodingLimit,
                        format!(
                            "wsman:MaxEnvelopeSize {n} is below the minimum of {MIN_ENVELOPE_SIZE}"
                        ),
                    )
                    .with_detail("MinimumEnvelopeLimit"));
                }
                self.max_envelope_size = Some(n);
            }
            (names::WSMAN, "FragmentTransfer") => {
                if let Some(d) = h.attr("Dialect") {
                    if d != names::dialect::XPATH {
                        return Err(Fault::sender(
                            Subcode::UnsupportedFeature,
                            format!("fragment dialect '{d}' is not supported; use XPath"),
                        )
                        .with_detail("FragmentLevelAccess"));
                    }
                }
                self.fragment = Some(text());
            }
            (names::WSMAN, "RequestTotalItemsCountEstimate") => self.request_estimate = true,
            _ => {}
        }
        Ok(())
    }

    /// The value of option `name`, if given.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The resource URI, which the operation needs.
    pub fn require_resource_uri(&self) -> Result<&str, Fault> {
        self.resource_uri.as_deref().ok_or_else(|| {
            Fault::sender(
                Subcode::DestinationUnreachable,
                "the request has no wsman:ResourceURI",
            )
            .with_detail("InvalidResourceURI")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cimxml::dom::{parse, XmlLimits};
    use crate::wsman::fault::Code;

    const LIMITS: XmlLimits = XmlLimits {
        max_depth: 32,
        max_elements: 1000,
    };

    fn request(headers: &str) -> Result<Request, Fault> {
        let doc = format!(
            r#"<s:Envelope xmlns:s="{}" xmlns:wsa="{}" xmlns:wsman="{}" xmlns:x="urn:x"><s:Header>{headers}</s:Header><s:Body/></s:Envelope>"#,
            names::SOAP,
            names::WSA,
            names::WSMAN
        );
        Request::parse(parse(doc.as_bytes(), &LIMITS).unwrap())
    }

    #[test]
    fn headers_are_read() {
        let r = request(
            r#"<wsa:Action>A</wsa:Action><wsa:MessageID>uuid:ABC</wsa:MessageID>
            <wsman:OperationTimeout>PT2.5S</wsman:OperationTimeout>
            <wsman:MaxEnvelopeSize mustUnderstand="true">153600</wsman:MaxEnvelopeSize>
            <wsman:SelectorSet><wsman:Selector Name="__cimnamespace">root/virt</wsman:Selector></wsman:SelectorSet>
            <x:Other>ignored</x:Other>"#,
        )
        .unwrap();
        assert_eq!(r.action.as_deref(), Some("A"));
        assert_eq!(r.message_id.as_deref(), Some("uuid:ABC"));
        assert_eq!(r.operation_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(r.max_envelope_size, Some(153600));
        assert_eq!(r.cim_namespace.as_deref(), Some("root/virt"));
        assert!(r.selectors.is_empty());
    }

    #[test]
    fn header_faults() {
        let f = request(r#"<x:Other s:mustUnderstand="true"/>"#).unwrap_err();
        assert_eq!(f.code, Code::MustUnderstand);
        let mut headers = String::new();
        f.write_headers(&mut headers);
        assert!(headers.starts_with("<s:NotUnderstood "), "{headers}");
        assert!(headers.ends_with(" qname=\"h:Other\"/>"), "{headers}");
        let f = request("<wsman:MaxEnvelopeSize>100</wsman:MaxEnvelopeSize>").unwrap_err();
        assert_eq!(f.subcode, Subcode::EncodingLimit);
        let f = request("<wsman:OperationTimeout>soon</wsman:OperationTimeout>").unwrap_err();
        assert_eq!(f.subcode, Subcode::InvalidMessageInformationHeader);
        let f = request(
            r#"<wsman:SelectorSet><wsman:Selector Name="a">1</wsman:Selector><wsman:Selector Name="A">2</wsman:Selector></wsman:SelectorSet>"#,
        )
        .unwrap_err();
        assert_eq!(f.detail, Some("DuplicateSelectors"));
        let f = request("<wsa:ReplyTo><wsa:Address>http://elsewhere/</wsa:Address></wsa:ReplyTo>")
            .unwrap_err();
        assert_eq!(f.subcode, Subcode::UnsupportedFeature);
    }
}
