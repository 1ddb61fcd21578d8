//! The CIM-XML endpoint: DSP0200 header checks, authentication and authorization, body
//! limits, dispatch, and streamed responses with error trailers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode as HttpStatus};
use percent_encoding::percent_decode_str;
use tracing::{debug, info, warn};

use super::body::ResponseBody;
use super::stream;
use super::{HttpLimits, Scheme};
use crate::auth::{Access, AuthOutcome, Authenticator};
use crate::cimom::{Cimom, RequestContext};
use crate::cimxml::dom::XmlLimits;
use crate::cimxml::encode::PathContext;
use crate::cimxml::request::{self, EnvelopeError};
use crate::cimxml::response::ResponseWriter;
use crate::error::{CimError, StatusCode};

/// Serves requests.
pub struct Handler {
    cimom: Arc<Cimom>,
    auth: Arc<Authenticator>,
    limits: HttpLimits,
    xml: XmlLimits,
}

use super::stream::Reply;

fn plain(status: HttpStatus, text: &str) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(ResponseBody::full(format!("{text}\n")))
        .expect("static response parts are valid")
}

/// A protocol fault: an HTTP status with the `CIMError` header, and the detail in
/// `PGErrorDetail` (as OpenPegasus sends it, and pywbem shows it) and the body.
fn protocol_error(status: HttpStatus, cim_error: &str, detail: &str) -> Reply {
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

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decodes a header with DSP0200's two-step encoding (UTF-8, then %-escapes); values
/// sent raw pass through unchanged.
fn decoded(value: &str) -> String {
    percent_decode_str(value.trim())
        .decode_utf8_lossy()
        .into_owned()
}

fn same_namespace(a: &str, b: &str) -> bool {
    a.trim_matches('/')
        .eq_ignore_ascii_case(b.trim_matches('/'))
}

impl Handler {
    pub fn new(cimom: Arc<Cimom>, auth: Arc<Authenticator>, limits: HttpLimits) -> Self {
        let xml = cimom.xml_limits();
        Handler {
            cimom,
            auth,
            limits,
            xml,
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, scheme: Scheme, peer: SocketAddr) -> Reply {
        let started = Instant::now();
        let path = req.uri().path().to_string();
        let reply = self.handle_inner(req, scheme, peer).await;
        debug!(
            path,
            status = reply.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request"
        );
        reply
    }

    async fn handle_inner(
        &self,
        req: Request<Incoming>,
        scheme: Scheme,
        peer: SocketAddr,
    ) -> Reply {
        let is_mpost = req.method().as_str() == "M-POST";
        if req.method() != Method::POST && !is_mpost {
            let mut r = plain(
                HttpStatus::METHOD_NOT_ALLOWED,
                "CIM-XML requests are POST (or M-POST) to /cimom",
            );
            r.headers_mut()
                .insert("Allow", HeaderValue::from_static("POST, M-POST"));
            return r;
        }
        if req.uri().path() != "/cimom" {
            return plain(
                HttpStatus::NOT_FOUND,
                "no such endpoint; CIM-XML is served at /cimom",
            );
        }
        let headers = req.headers().clone();
        if headers.get(hyper::header::HOST).is_none() {
            return protocol_error(
                HttpStatus::BAD_REQUEST,
                "request-not-valid",
                "the Host header is missing",
            );
        }
        // Authentication first: nothing about the server is revealed to strangers.
        let authorization = headers.get(hyper::header::AUTHORIZATION);
        let remembered = authorization.and_then(|h| self.auth.remembered(h.as_bytes()));
        let outcome = match remembered {
            Some(user) => AuthOutcome::Authenticated(user),
            None => {
                // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
                let authorization = authorization.map(|v| v.as_bytes().to_vec());
                let auth = self.auth.clone();
                tokio::task::spawn_blocking(move || auth.authenticate(authorization.as_deref()))
                    .await
                    .unwrap_or(AuthOutcome::Rejected)
            }
        };
        let user = match outcome {
            AuthOutcome::Authenticated(u) => u,
            outcome @ (AuthOutcome::Missing | AuthOutcome::Rejected) => {
                if matches!(outcome, AuthOutcome::Rejected) {
                    warn!(%peer, scheme = ?scheme, "authentication failed: wrong user name or password");
                }
                let mut r = plain(
                    HttpStatus::UNAUTHORIZED,
                    "authentication required (HTTP Basic)",
                );
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"cimvirt\""),
                );
                return r;
            }
        };
        // M-POST (RFC 2774): the CIM headers carry the prefix declared in Man.
        let prefix = if is_mpost {
            match header_str(&headers, "Man").and_then(mpost_prefix) {
                Some(p) => Some(p),
                None => {
                    return protocol_error(
                        HttpStatus::BAD_REQUEST,
                        "request-not-valid",
                        "M-POST needs a Man header declaring http://www.dmtf.org/cim/mapping/http/v1.0 with ns=NN",
                    )
                }
            }
        } else {
            None
        };
        let cim_header = |name: &str| -> Option<String> {
            let full = match &prefix {
                Some(p) => format!("{p}-{name}"),
                None => name.to_string(),
            };
            header_str(&headers, &full).map(str::to_string)
        };
        let content_type = header_str(&headers, "content-type").unwrap_or("");
        if !valid_content_type(content_type) {
            return protocol_error(
                HttpStatus::BAD_REQUEST,
                "request-not-valid",
                &format!("Content-Type must be application/xml or text/xml with charset utf-8, not '{content_type}'"),
            );
        }
        match cim_header("CIMOperation") {
            Some(op) if op.trim().eq_ignore_ascii_case("MethodCall") => {}
            Some(op) => {
                return protocol_error(
                    HttpStatus::BAD_REQUEST,
                    "unsupported-operation",
                    &format!(
                        "CIMOperation '{op}' is not supported; this server accepts MethodCall"
                    ),
                )
            }
            None if cim_header("CIMExport").is_some() => {
                return protocol_error(
                    HttpStatus::BAD_REQUEST,
                    "unsupported-operation",
                    "this is a WBEM server, not an indication listener",
                )
            }
            None => {
                return protocol_error(
                    HttpStatus::BAD_REQUEST,
                    "unsupported-operation",
                    "the CIMOperation header is missing",
                )
            }
        }
        if cim_header("CIMBatch").is_some() {
            return protocol_error(
                HttpStatus::NOT_IMPLEMENTED,
                "multiple-requests-unsupported",
                "batched (multiple) requests are not supported",
            );
        }
        let header_version = cim_header("CIMProtocolVersion");
        if let Some(v) = &header_version {
            if v.trim().split('.').next() != Some("1") {
                return protocol_error(
                    HttpStatus::NOT_IMPLEMENTED,
                    "unsupported-protocol-version",
                    &format!("CIMProtocolVersion {v} is not supported; this server speaks 1.x"),
                );
            }
        }
        let Some(method_header) = cim_header("CIMMethod") else {
            return protocol_error(
                HttpStatus::BAD_REQUEST,
                "header-mismatch",
                "the CIMMethod header is missing",
            );
        };
        let object_header = cim_header("CIMObject");

        if let Some(len) =
            header_str(&headers, CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok())
        {
            if len > self.limits.max_request_bytes {
                return self.too_large();
            }
        }
        let body = Limited::new(req.into_body(), self.limits.max_request_bytes as usize);
        let body = match tokio::time::timeout(self.limits.body_read_timeout, body.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return self.too_large()
            }
            Ok(Err(e)) => {
                return plain(
                    HttpStatus::BAD_REQUEST,
                    &format!("reading the request body failed: {e}"),
                )
            }
            Err(_) => {
                let mut r = plain(
                    HttpStatus::REQUEST_TIMEOUT,
                    &format!(
                        "the request body did not arrive within {} s (limits.body_read_timeout_secs)",
                        self.limits.body_read_timeout.as_secs()
                    ),
                );
                r.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
        };
        let request = match request::parse(&body, &self.xml) {
            Ok(r) => r,
            Err(e) => return envelope_error(&e),
        };
        if let Some(v) = &header_version {
            if v.trim() != request.protocol_version.trim() {
                return protocol_error(
                    HttpStatus::BAD_REQUEST,
                    "header-mismatch",
                    &format!(
                        "CIMProtocolVersion {v} does not match PROTOCOLVERSION {}",
                        request.protocol_version
                    ),
                );
            }
        }
        if decoded(&method_header) != request.method {
            return protocol_error(
                HttpStatus::BAD_REQUEST,
                "header-mismatch",
                &format!(
                    "CIMMethod '{method_header}' does not match the method '{}' in the body",
                    request.method
                ),
            );
        }
        if let Some(object) = &object_header {
            let object = decoded(object);
            let matches = if request.intrinsic {
                same_namespace(&object, &request.namespace)
            } else {
                let (ns, rest) = object.split_once(':').unwrap_or(("", object.as_str()));
                let class = rest.split('.').next().unwrap_or("");
                same_namespace(ns, &request.namespace)
                    && request
                        .target_class
                        .as_ref()
                        .is_some_and(|c| c.as_str().eq_ignore_ascii_case(class.trim()))
            };
            if !matches {
                return protocol_error(
                    HttpStatus::BAD_REQUEST,
                    "header-mismatch",
                    &format!("CIMObject '{object}' does not match the target in the body"),
                );
            }
        }

        let host = header_str(&headers, "host")
            .unwrap_or("localhost")
            .to_string();
        let writer = ResponseWriter {
            id: request.id.clone(),
            method: request.method.clone(),
            intrinsic: request.intrinsic,
            paths: PathContext {
                host,
                namespace: request.namespace.trim_matches('/').to_string(),
            },
        };
        let deadline = tokio::time::Instant::now() + self.limits.request_timeout;
        let outcome = match request.operation {
            Err(e) => Err(e),
            Ok(op) => match self.cimom.resolve_namespace(&request.namespace) {
                Err(e) => Err(e),
                Ok(ns) => match user.access(&ns) {
                    None => Err(CimError::new(
                        StatusCode::AccessDenied,
                        format!("user {} has no access to namespace {ns}", user.name),
                    )),
                    Some(Access::ReadOnly) if op.is_write() => Err(CimError::new(
                        StatusCode::AccessDenied,
                        format!(
                            "user {} may only read in namespace {ns}; {} changes state",
                            user.name, request.method
                        ),
                    )),
                    Some(_) => {
                        let ctx = RequestContext {
                            user: Arc::from(user.name.as_str()),
                        };
                        match tokio::time::timeout_at(deadline, self.cimom.execute(&ctx, &ns, op))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(self.timed_out()),
                        }
                    }
                },
            },
        };
        if let Err(e) = &outcome {
            info!(user = user.name, method = request.method, namespace = request.namespace, code = e.code.code(), error = e.description, scheme = ?scheme, "operation failed");
        }
        let mut reply = stream::respond(writer, outcome, deadline, self.timed_out()).await;
        let h = reply.headers_mut();
        match &prefix {
            Some(p) => {
                h.insert("Ext", HeaderValue::from_static(""));
                if let Ok(name) = HeaderName::from_bytes(format!("{p}-CIMOperation").as_bytes()) {
                    h.insert(name, HeaderValue::from_static("MethodResponse"));
                }
            }
            None => {
                h.insert("CIMOperation", HeaderValue::from_static("MethodResponse"));
            }
        }
        reply
    }

    fn too_large(&self) -> Reply {
        let mut r = plain(
            HttpStatus::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body exceeds {} bytes (limits.max_request_bytes)",
                self.limits.max_request_bytes
            ),
        );
        r.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        r
    }

    fn timed_out(&self) -> CimError {
        CimError::failed(format!(
            "the operation did not complete within {} s (limits.request_timeout_secs)",
            self.limits.request_timeout.as_secs()
        ))
    }
}

fn envelope_error(e: &EnvelopeError) -> Reply {
    let status = HttpStatus::from_u16(e.status()).unwrap_or(HttpStatus::BAD_REQUEST);
    protocol_error(status, e.header(), &e.to_string())
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
