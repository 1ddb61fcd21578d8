//! WS-Management faults (DSP0226 clause 14): the SOAP code, the subcode, a reason a
//! person can act on, and the fault detail URI, mapped from CIM status codes where an
//! operation failed in the object manager (DSP0227 clause 12).

use super::names::{self, action};
use crate::error::{CimError, StatusCode};

/// The SOAP fault code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The request was at fault (HTTP 400).
    Sender,
    /// The service was (HTTP 500).
    Receiver,
    /// A mustUnderstand header was not understood (HTTP 500).
    MustUnderstand,
}

/// A fault subcode: which specification defines it and its local name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the names are DSP0226's
pub enum Subcode {
    // WS-Addressing
    ActionNotSupported,
    DestinationUnreachable,
    EndpointUnavailable,
    InvalidMessageInformationHeader,
    MessageInformationHeaderRequired,
    // WS-Management
    AccessDenied,
    AlreadyExists,
    CannotProcessFilter,
    Concurrency,
    EncodingLimit,
    InternalError,
    InvalidOptions,
    InvalidParameter,
    InvalidSelectors,
    SchemaValidationError,
    TimedOut,
    UnsupportedFeature,
    // WS-Transfer
    InvalidRepresentation,
    // WS-Enumeration
    InvalidEnumerationContext,
    InvalidExpirationTime,
    FilterDialectRequestedUnavailable,
    FilteringNotSupported,
    // WS-Eventing
    DeliveryModeRequestedUnavailable,
    EventingInvalidExpirationTime,
    EventingFilteringRequestedUnavailable,
    InvalidMessage,
    UnableToRenew,
    // CIM binding
    PolymorphismModeNotSupported,
    // SOAP
    None,
}

impl Subcode {
    /// (namespace prefix, namespace URI, local name, fault action).
    fn parts(self) -> (&'static str, &'static str, &'static str, &'static str) {
        use Subcode as S;
        let wsa = ("wsa", names::WSA, action::ADDRESSING_FAULT);
        let wsman = ("wsman", names::WSMAN, action::WSMAN_FAULT);
        let wxf = ("wxf", names::WXF, action::TRANSFER_FAULT);
        let wsen = ("wsen", names::WSEN, action::ENUMERATION_FAULT);
        let wsmb = ("wsmb", names::WSMB, action::WSMAN_FAULT);
        let wse = ("wse", names::WSE, action::EVENTING_FAULT);
        let ((p, ns, a), local) = match self {
            S::ActionNotSupported => (wsa, "ActionNotSupported"),
            S::DestinationUnreachable => (wsa, "DestinationUnreachable"),
            S::EndpointUnavailable => (wsa, "EndpointUnavailable"),
            S::InvalidMessageInformationHeader => (wsa, "InvalidMessageInformationHeader"),
            S::MessageInformationHeaderRequired => (wsa, "MessageInformationHeaderRequired"),
            S::AccessDenied => (wsman, "AccessDenied"),
            S::AlreadyExists => (wsman, "AlreadyExists"),
            S::CannotProcessFilter => (wsen, "CannotProcessFilter"),
            S::Concurrency => (wsman, "Concurrency"),
            S::EncodingLimit => (wsman, "EncodingLimit"),
            S::InternalError => (wsman, "InternalError"),
            S::InvalidOptions => (wsman, "InvalidOptions"),
            S::InvalidParameter => (wsman, "InvalidParameter"),
            S::InvalidSelectors => (wsman, "InvalidSelectors"),
            S::SchemaValidationError => (wsman, "SchemaValidationError"),
            S::TimedOut => (wsman, "TimedOut"),
            S::UnsupportedFeature => (wsman, "UnsupportedFeature"),
            S::InvalidRepresentation => (wxf, "InvalidRepresentation"),
            S::InvalidEnumerationContext => (wsen, "InvalidEnumerationContext"),
            S::InvalidExpirationTime => (wsen, "InvalidExpirationTime"),
            S::FilterDialectRequestedUnavailable => (wsen, "FilterDialectRequestedUnavailable"),
            S::FilteringNotSupported => (wsen, "FilteringNotSupported"),
            S::DeliveryModeRequestedUnavailable => (wse, "DeliveryModeRequestedUnavailable"),
            S::EventingInvalidExpirationTime => (wse, "InvalidExpirationTime"),
            S::EventingFilteringRequestedUnavailable => (wse, "FilteringRequestedUnavailable"),
            S::InvalidMessage => (wse, "InvalidMessage"),
            S::UnableToRenew => (wse, "UnableToRenew"),
            S::PolymorphismModeNotSupported => (wsmb, "PolymorphismModeNotSupported"),
            S::None => (("s", names::SOAP, action::WSMAN_FAULT), ""),
        };
        (p, ns, local, a)
    }
}

/// A fault to send back.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// The SOAP code.
    pub code: Code,
    /// The subcode.
    pub subcode: Subcode,
    /// What went wrong, for a person.
    pub reason: String,
    /// The last segment of a `.../wsman/1/wsman/faultDetail/X` URI, if one applies.
    pub detail: Option<&'static str>,
    /// Extra detail elements, already encoded (SupportedDialect, SupportedSelectorName ...).
    pub detail_xml: String,
    /// For a MustUnderstand fault: the header not understood, as namespace and local
    /// name, named in an `s:NotUnderstood` header (SOAP 1.2 part 1, 5.4.8).
    pub not_understood: Option<Box<(String, String)>>,
}

impl Fault {
    /// A fault the sender caused.
    pub fn sender(subcode: Subcode, reason: impl Into<String>) -> Self {
        Fault {
            code: Code::Sender,
            subcode,
            reason: reason.into(),
            detail: None,
            detail_xml: String::new(),
            not_understood: None,
        }
    }

    /// A fault of the service.
    pub fn receiver(subcode: Subcode, reason: impl Into<String>) -> Self {
        Fault {
            code: Code::Receiver,
            ..Fault::sender(subcode, reason)
        }
    }

    /// The MustUnderstand fault for a header the service does not support.
    pub fn not_understood(namespace: &str, local: &str) -> Self {
        Fault {
            code: Code::MustUnderstand,
            not_understood: Some(Box::new((namespace.to_owned(), local.to_owned()))),
            ..Fault::sender(
                Subcode::None,
                format!(
                    "header {{{namespace}}}{local} is marked mustUnderstand and this service does not support it"
                ),
            )
        }
    }

    /// Writes the `s:NotUnderstood` header of a MustUnderstand fault (nothing for others).
    pub fn write_headers(&self, out: &mut String) {
        if let Some((namespace, local)) = self.not_understood.as_deref() {
            out.push_str("<s:NotUnderstood");
            crate::cimxml::encode::attr(out, "xmlns:h", namespace);
            crate::cimxml::encode::attr(out, "qname", &format!("h:{local}"));
            out.push_str("/>");
        }
    }

    /// With a faultDetail URI.
    pub fn with_detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    /// A required header is missing or wrong.
    pub fn header(reason: impl Into<String>) -> Self {
        Fault::sender(Subcode::InvalidMessageInformationHeader, reason)
    }

    /// A body or header value does not match the schema.
    pub fn schema(reason: impl Into<String>) -> Self {
        Fault::sender(Subcode::SchemaValidationError, reason)
    }

    /// The HTTP status the fault travels with: SOAP 1.2's binding sends Sender faults as
    /// 400 and everything else as 500. Both are codes on which wsmancli reads the body.
    pub fn http_status(&self) -> u16 {
        match self.code {
            Code::Sender => 400,
            Code::Receiver | Code::MustUnderstand => 500,
        }
    }

    /// The wsa:Action of the fault message.
    pub fn action(&self) -> &'static str {
        self.subcode.parts().3
    }

    /// Writes the `s:Fault` element.
    pub fn write_body(&self, out: &mut String) {
        let code = match self.code {
            Code::Sender => "s:Sender",
            Code::Receiver => "s:Receiver",
            Code::MustUnderstand => "s:MustUnderstand",
        };
        out.push_str("<s:Fault><s:Code><s:Value>");
        out.push_str(code);
        out.push_str("</s:Value>");
        let (prefix, ns, local, _) = self.subcode.parts();
        if !local.is_empty() {
            out.push_str("<s:Subcode><s:Value xmlns:");
            out.push_str(prefix);
            out.push_str("=\"");
            out.push_str(ns);
            out.push_str("\">");
            out.push_str(prefix);
            out.push(':');
            out.push_str(local);
            out.push_str("</s:Value></s:Subcode>");
        }
        out.push_str("</s:Code><s:Reason><s:Text xml:lang=\"en-US\">");
        crate::cimxml::encode::text(out, &self.reason);
        out.push_str("</s:Text></s:Reason>");
        if self.detail.is_some() || !self.detail_xml.is_empty() {
            out.push_str("<s:Detail>");
            if let Some(d) = self.detail {
                out.push_str("<wsman:FaultDetail>");
                out.push_str(names::FAULT_DETAIL);
                out.push_str(d);
                out.push_str("</wsman:FaultDetail>");
            }
            out.push_str(&self.detail_xml);
            out.push_str("</s:Detail>");
        }
        out.push_str("</s:Fault>");
    }
}

impl From<CimError> for Fault {
    /// DSP0227 clause 12 (as OpenPegasus and openwsman apply it).
    fn from(e: CimError) -> Self {
        use StatusCode as C;
        let reason = format!("{}: {}", e.code.name(), e.description);
        match e.code {
            C::InvalidClass => Fault::sender(Subcode::DestinationUnreachable, reason)
                .with_detail("InvalidResourceURI"),
            C::NotFound | C::InvalidNamespace => {
                Fault::sender(Subcode::DestinationUnreachable, reason)
            }
            C::NotSupported | C::MethodNotFound | C::MethodNotAvailable => {
                Fault::sender(Subcode::ActionNotSupported, reason).with_detail("ActionMismatch")
            }
            C::InvalidParameter | C::TypeMismatch | C::NoSuchProperty => {
                Fault::sender(Subcode::InvalidParameter, reason)
            }
            C::AlreadyExists => Fault::sender(Subcode::AlreadyExists, reason),
            C::AccessDenied => Fault::sender(Subcode::AccessDenied, reason),
            C::InvalidQuery => Fault::sender(Subcode::CannotProcessFilter, reason),
            C::QueryLanguageNotSupported => Fault::sender(Subcode::FilteringNotSupported, reason),
            C::InvalidEnumerationContext => {
                Fault::receiver(Subcode::InvalidEnumerationContext, reason)
            }
            C::ServerLimitsExceeded => {
                Fault::receiver(Subcode::InternalError, reason).with_detail("InsufficientResources")
            }
            _ => Fault::receiver(Subcode::InternalError, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cim_errors_map_to_dsp0227_subcodes() {
        let f = Fault::from(CimError::invalid_class("X", "root/virt"));
        assert_eq!(f.subcode, Subcode::DestinationUnreachable);
        assert_eq!(f.detail, Some("InvalidResourceURI"));
        assert_eq!(f.http_status(), 400);
        let f = Fault::from(CimError::failed("boom"));
        assert_eq!((f.subcode, f.http_status()), (Subcode::InternalError, 500));
        assert!(f.reason.contains("boom"));
    }

    #[test]
    fn the_body_names_code_subcode_reason_and_detail() {
        let mut out = String::new();
        Fault::sender(Subcode::InvalidSelectors, "a < b")
            .with_detail("InsufficientSelectors")
            .write_body(&mut out);
        assert!(out.contains("<s:Value>s:Sender</s:Value>"));
        assert!(out.contains(">wsman:InvalidSelectors</s:Value>"));
        assert!(out.contains("a &lt; b"));
        assert!(out.contains("faultDetail/InsufficientSelectors"));
    }
}
