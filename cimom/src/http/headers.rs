//! The DSP0200 headers of a CIM-XML request: checked on their own before the body is
//! read, then against the decoded body. A fault is an HTTP error with a `CIMError` header.

// Early answers travel as `Err(Reply)`: the error is the response itself, moved once to
// the client, so boxing it (as clippy suggests for large errors) would buy nothing.
#![allow(clippy::result_large_err)]

use hyper::header::{AsHeaderName, HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode as HttpStatus};
use percent_encoding::percent_decode_str;

use super::body::ResponseBody;
use super::stream::Reply;
use crate::cimxml::request::{EnvelopeError, Request};

/// A plain-text response: `text` and a newline.
pub fn plain(status: HttpStatus, text: &str) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(ResponseBody::full(format!("{text}\n")))
        .expect("static response parts are valid")
}

/// A protocol fault: an HTTP status with the `CIMError` header, and the detail in
/// `PGErrorDetail` (as OpenPegasus sends it, and pywbem shows it) and the body.
pub(super) fn protocol_error(status: HttpStatus, cim_error: &str, detail: &str) -> Reply {
    let mut r = plain(status, detail);
    let h = r.headers_mut();
    h.insert(
        "CIMError",
        HeaderValue::from_str(cim_error).expect("CIMError values are ASCII"),
    );
    let encoded = percent_encoding::utf8_percent_encode(detail, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert("PGErrorDetail", v);
    }
    r
}

/// The answer to a faulty envelope.
pub(super) fn envelope_error(e: &EnvelopeError) -> Reply {
    let status = HttpStatus::from_u16(e.status()).unwrap_or(HttpStatus::BAD_REQUEST);
    protocol_error(status, e.header(), &e.to_string())
}

/// A header's value, if it is text. By `HeaderName` the lookup skips parsing the name.
pub(super) fn header_str(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

// The DSP0200 request headers, by name as hyper keeps them (lower case).
const CIM_OPERATION: HeaderName = HeaderName::from_static("cimoperation");
const CIM_EXPORT: HeaderName = HeaderName::from_static("cimexport");
const CIM_BATCH: HeaderName = HeaderName::from_static("cimbatch");
const CIM_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("cimprotocolversion");
const CIM_METHOD: HeaderName = HeaderName::from_static("cimmethod");
const CIM_OBJECT: HeaderName = HeaderName::from_static("cimobject");
const MAN: HeaderName = HeaderName::from_static("man");

/// Decodes a header with DSP0200's two-step encoding (UTF-8, then %-escapes); values
/// sent raw pass through unchanged.
fn decoded(value: &str) -> std::borrow::Cow<'_, str> {
    percent_decode_str(value.trim()).decode_utf8_lossy()
}

fn same_namespace(a: &str, b: &str) -> bool {
    a.trim_matches('/')
        .eq_ignore_ascii_case(b.trim_matches('/'))
}

/// The answer to a request body in a transfer coding other than chunked (RFC 9112 6.1: a
/// server that does not understand a coding should answer 501). hyper itself answers 400
/// when chunked is not the last coding, as RFC 9112 6.3 requires.
pub(super) fn unsupported_transfer_coding(headers: &HeaderMap) -> Option<Reply> {
    let codings = headers
        .get_all(hyper::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("chunked"))
        .collect::<Vec<_>>();
    if codings.is_empty() {
        return None;
    }
    let mut reply = plain(
        HttpStatus::NOT_IMPLEMENTED,
        &format!(
            "the transfer coding '{}' is not supported; send the body with Content-Length or chunked",
            codings.join(", ")
        ),
    );
    // The body cannot be read without the coding: the connection ends here.
    reply
        .headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    Some(reply)
}

/// The CIM headers of a request that passed the checks that need no body.
pub(super) struct CimHeaders<'h> {
    /// The M-POST extension prefix (`73` for `73-CIMMethod`), if any.
    prefix: Option<String>,
    method: &'h str,
    object: &'h str,
    protocol_version: Option<&'h str>,
}

impl<'h> CimHeaders<'h> {
    /// Checks Content-Type, CIMOperation, CIMBatch, CIMProtocolVersion and CIMMethod,
    /// with the M-POST prefix when `is_mpost`.
    pub(super) fn check(headers: &'h HeaderMap, is_mpost: bool) -> Result<Self, Reply> {
        // M-POST (RFC 2774): the CIM headers carry the prefix declared in Man.
        let prefix = if is_mpost {
            Some(header_str(headers, MAN).and_then(mpost_prefix).ok_or_else(|| {
                protocol_error(
                    HttpStatus::BAD_REQUEST,
                    "request-not-valid",
                    "M-POST needs a Man header declaring http://www.dmtf.org/cim/mapping/http/v1.0 with ns=NN",
                )
            })?)
        } else {
            None
        };
        let cim_header = |name: &HeaderName| -> Option<&'h str> {
            match &prefix {
                Some(p) => header_str(headers, format!("{p}-{name}")),
                None => header_str(headers, name),
            }
        };
        let bad = |cim_error: &str, detail: &str| {
            Err(protocol_error(HttpStatus::BAD_REQUEST, cim_error, detail))
        };
        let content_type = header_str(headers, CONTENT_TYPE).unwrap_or("");
        if !valid_content_type(content_type) {
            return bad(
                "request-not-valid",
                &format!("Content-Type must be application/xml or text/xml with charset utf-8, not '{content_type}'"),
            );
        }
        match cim_header(&CIM_OPERATION) {
            Some(op) if op.trim().eq_ignore_ascii_case("MethodCall") => {}
            Some(op) => {
                return bad(
                    "unsupported-operation",
                    &format!(
                        "CIMOperation '{op}' is not supported; this server accepts MethodCall"
                    ),
                )
            }
            None if cim_header(&CIM_EXPORT).is_some() => {
                return bad(
                    "unsupported-operation",
                    "this is a WBEM server, not an indication listener",
                )
            }
            None => {
                return bad(
                    "unsupported-operation",
                    "the CIMOperation header is missing",
                )
            }
        }
        if cim_header(&CIM_BATCH).is_some() {
            return Err(protocol_error(
                HttpStatus::NOT_IMPLEMENTED,
                "multiple-requests-unsupported",
                "batched (multiple) requests are not supported",
            ));
        }
        let protocol_version = cim_header(&CIM_PROTOCOL_VERSION);
        if let Some(v) = &protocol_version {
            if v.trim().split('.').next() != Some("1") {
                return Err(protocol_error(
                    HttpStatus::NOT_IMPLEMENTED,
                    "unsupported-protocol-version",
                    &format!("CIMProtocolVersion {v} is not supported; this server speaks 1.x"),
                ));
            }
        }
        let Some(method) = cim_header(&CIM_METHOD) else {
            return bad("header-mismatch", "the CIMMethod header is missing");
        };
        // DSP0200 7.3.7: a simple request without CIMObject is a header mismatch.
        let Some(object) = cim_header(&CIM_OBJECT) else {
            return bad("header-mismatch", "the CIMObject header is missing");
        };
        Ok(CimHeaders {
            object,
            prefix,
            method,
            protocol_version,
        })
    }

    /// Checks CIMProtocolVersion, CIMMethod and CIMObject against the decoded body.
    pub(super) fn check_against(&self, request: &Request) -> Result<(), Reply> {
        let mismatch = |detail: String| {
            Err(protocol_error(
                HttpStatus::BAD_REQUEST,
                "header-mismatch",
                &detail,
            ))
        };
        if let Some(v) = self.protocol_version {
            if v.trim() != request.protocol_version.trim() {
                return mismatch(format!(
                    "CIMProtocolVersion {v} does not match PROTOCOLVERSION {}",
                    request.protocol_version
                ));
            }
        }
        if decoded(self.method) != request.method {
            return mismatch(format!(
                "CIMMethod '{}' does not match the method '{}' in the body",
                self.method, request.method
            ));
        }
        let object = decoded(self.object);
        let matches = if request.intrinsic {
            same_namespace(&object, &request.namespace)
        } else {
            let (ns, rest) = object.split_once(':').unwrap_or(("", &object));
            let class = rest.split('.').next().unwrap_or("");
            same_namespace(ns, &request.namespace)
                && request
                    .target_class
                    .as_ref()
                    .is_some_and(|c| c.as_str().eq_ignore_ascii_case(class.trim()))
        };
        if !matches {
            return mismatch(format!(
                "CIMObject '{object}' does not match the target in the body"
            ));
        }
        Ok(())
    }

    /// Marks a reply as a CIM-XML response (`CIMOperation: MethodResponse`, prefixed and
    /// with `Ext` for M-POST).
    pub(super) fn mark_response(&self, reply: &mut Reply) {
        let h = reply.headers_mut();
        match &self.prefix {
            Some(p) => {
                h.insert("Ext", HeaderValue::from_static(""));
                if let Ok(name) = HeaderName::from_bytes(format!("{p}-CIMOperation").as_bytes()) {
                    h.insert(name, HeaderValue::from_static("MethodResponse"));
                }
            }
            None => {
                h.insert(CIM_OPERATION, HeaderValue::from_static("MethodResponse"));
            }
        }
    }
}

/// `application/xml` or `text/xml`, with no charset or charset utf-8 (quoted or not).
fn valid_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/xml") && !media.eq_ignore_ascii_case("text/xml") {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

/// The header prefix of an M-POST, from `Man: http://www.dmtf.org/cim/mapping/http/v1.0; ns=73`.
fn mpost_prefix(man: &str) -> Option<String> {
    let (uri, rest) = man.split_once(';')?;
    if !uri
        .trim()
        .trim_matches('"')
        .eq_ignore_ascii_case("http://www.dmtf.org/cim/mapping/http/v1.0")
    {
        return None;
    }
    let ns = rest.trim().strip_prefix("ns=")?.trim();
    (!ns.is_empty() && ns.chars().all(|c| c.is_ascii_digit())).then(|| ns.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_man_headers() {
        assert!(valid_content_type("application/xml; charset=\"utf-8\""));
        assert!(valid_content_type("text/xml;charset=UTF-8"));
        assert!(valid_content_type("application/xml"));
        assert!(!valid_content_type("application/json"));
        assert!(!valid_content_type("text/xml; charset=latin1"));
        assert_eq!(
            mpost_prefix("http://www.dmtf.org/cim/mapping/http/v1.0; ns=73").as_deref(),
            Some("73")
        );
        assert_eq!(mpost_prefix("http://example.com; ns=73"), None);
        assert_eq!(decoded("root%2Fvirt"), "root/virt");
        assert_eq!(decoded("root/virt"), "root/virt");
    }
}
