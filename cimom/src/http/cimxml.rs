//! The CIM-XML endpoint, `POST /cimom`: method and path, authentication, the DSP0200
//! headers, the body under its limits, decoding, authorization, execution, the response.

// Early answers travel as `Err(Reply)`: the error is the response itself, moved once to
// the client, so boxing it (as clippy suggests for large errors) would buy nothing.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};
use hyper::{Method, Request, StatusCode as HttpStatus};
use tracing::{debug, info, warn};

use super::headers::{
    envelope_error, header_str, plain, protocol_error, unsupported_transfer_coding, CimHeaders,
};
use super::stream::{self, Reply};
use super::{Endpoint, HttpLimits, Scheme};
use crate::auth::{AuthOutcome, Authenticator, User};
use crate::cimxml::class_cache::ClassXmlCache;
use crate::cimxml::dom::XmlLimits;
use crate::cimxml::encode::PathContext;
use crate::cimxml::request;
use crate::cimxml::response::ResponseWriter;
use crate::dispatch::result::Outcome;
use crate::dispatch::Cimom;
use crate::error::CimResult;
use crate::wsman;

/// Serves requests.
pub struct Handler {
    cimom: Arc<Cimom>,
    auth: Arc<Authenticator>,
    limits: HttpLimits,
    xml: XmlLimits,
    wsman: wsman::Service,
    endpoints: Vec<Arc<dyn Endpoint>>,
    classes: Arc<ClassXmlCache>,
}

impl Handler {
    pub fn new(
        cimom: Arc<Cimom>,
        auth: Arc<Authenticator>,
        limits: HttpLimits,
        wsman: wsman::WsmanConfig,
        endpoints: Vec<Arc<dyn Endpoint>>,
    ) -> Self {
        let xml = cimom.xml_limits();
        Handler {
            wsman: wsman::Service::new(cimom.clone(), wsman),
            cimom,
            auth,
            limits,
            xml,
            endpoints,
            classes: Arc::default(),
        }
    }

    pub(super) fn wsman(&self) -> &wsman::Service {
        &self.wsman
    }

    pub(super) fn xml_limits(&self) -> XmlLimits {
        self.xml
    }

    pub(super) fn request_timeout(&self) -> std::time::Duration {
        self.limits.request_timeout
    }

    pub async fn handle(&self, req: Request<Incoming>, scheme: Scheme, peer: SocketAddr) -> Reply {
        // The path and the clock are read for the debug line only, when it is on.
        let logged = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (req.uri().path().to_string(), Instant::now()));
        let reply = match self.serve(req, scheme, peer).await {
            Ok(reply) | Err(reply) => reply,
        };
        if let Some((path, started)) = logged {
            debug!(
                path,
                status = reply.status().as_u16(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "request"
            );
        }
        reply
    }

    /// The steps of a request; `Err` is an early answer (an HTTP-level fault).
    async fn serve(
        &self,
        req: Request<Incoming>,
        scheme: Scheme,
        peer: SocketAddr,
    ) -> Result<Reply, Reply> {
        if let Some(refusal) = unsupported_transfer_coding(req.headers()) {
            return Err(refusal);
        }
        // WS-Management's future is the largest: boxed, it leaves every request's future
        // (which hyper moves into place per request) at the size CIM-XML needs.
        match req.uri().path() {
            "/wsman" => return Box::pin(self.serve_wsman(req, scheme, peer, false)).await,
            "/wsman-anon/identify" => {
                return Box::pin(self.serve_wsman(req, scheme, peer, true)).await
            }
            path => {
                let endpoint = self.endpoints.iter().find(|e| path.starts_with(e.prefix()));
                if let Some(endpoint) = endpoint {
                    let (parts, body) = req.into_parts();
                    let (user, body) = self
                        .authenticate(&parts.headers, body, scheme, peer)
                        .await?;
                    if let Some(what) = endpoint.administrators_only() {
                        if !user.is_administrator() {
                            return Err(plain(
                                HttpStatus::FORBIDDEN,
                                &format!(
                                    "user {} may not {what}: that takes an administrator \
                                     (read-write in every namespace)",
                                    user.name
                                ),
                            ));
                        }
                    }
                    return Ok(endpoint.serve(user, Request::from_parts(parts, body)).await);
                }
            }
        }
        let is_mpost = req.method().as_str() == "M-POST";
        let (parts, body) = req.into_parts();
        let headers = parts.headers;
        if let Some(refusal) = misdirected(&parts.method, parts.uri.path(), &headers) {
            return Err(self.discard_body(refusal, &headers, body).await);
        }
        // Authentication first: nothing about the server is revealed to strangers.
        let (user, body) = self.authenticate(&headers, body, scheme, peer).await?;
        let cim_headers = match CimHeaders::check(&headers, is_mpost) {
            Ok(h) => h,
            Err(refusal) => return Err(self.discard_body(refusal, &headers, body).await),
        };
        let body = self.read_body(&headers, body, self.request_limit()).await?;
        let request = request::parse(&body, &self.xml).map_err(|e| envelope_error(&e))?;
        cim_headers.check_against(&request)?;

        let writer = ResponseWriter {
            id: request.id.clone(),
            method: request.method.clone(),
            intrinsic: request.intrinsic,
            paths: PathContext {
                host: header_str(&headers, hyper::header::HOST)
                    .unwrap_or("localhost")
                    .to_string(),
                namespace: request.namespace.trim_matches('/').to_string(),
            },
            classes: self.classes.clone(),
        };
        let deadline = tokio::time::Instant::now() + self.limits.request_timeout;
        let (method, namespace) = (request.method.clone(), request.namespace.clone());
        let outcome = self.execute(&user, request, deadline).await;
        if let Err(e) = &outcome {
            info!(user = user.name, method, namespace, code = e.code.code(), error = e.description, scheme = ?scheme, "operation failed");
        }
        let limit = self.limits.request_timeout;
        let mut reply = stream::respond(writer, outcome, deadline, limit).await;
        cim_headers.mark_response(&mut reply);
        Ok(reply)
    }

    /// HTTP Basic against the user store: 401 with a Basic challenge for missing or wrong
    /// credentials, 503 when they cannot be checked in time. On refusal the request's body
    /// is read and dropped first (see [`Handler::discard_body`]).
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        body: Incoming,
        scheme: Scheme,
        peer: SocketAddr,
    ) -> Result<(Arc<User>, Incoming), Reply> {
        let authorization = headers.get(hyper::header::AUTHORIZATION);
        let outcome = self
            .auth
            .authenticate(authorization.map(|h| h.as_bytes()), peer.ip())
            .await;
        let refusal = match outcome {
            AuthOutcome::Authenticated(user) => return Ok((user, body)),
            AuthOutcome::Busy => {
                let mut r = plain(
                    HttpStatus::SERVICE_UNAVAILABLE,
                    "the server is busy checking other credentials; try again",
                );
                r.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            outcome => {
                if matches!(outcome, AuthOutcome::Rejected) {
                    warn!(%peer, scheme = ?scheme, "authentication failed: wrong user name or password");
                }
                unauthorized("authentication required (HTTP Basic)")
            }
        };
        Err(self.discard_body(refusal, headers, body).await)
    }

    /// Reads and drops the body of a request answered without it, so that the client can
    /// send its next request on the same connection (clients such as wbemexec send the
    /// whole request, read 401 and retry with credentials). A body that is too large, too
    /// slow, or not sent yet (`Expect: 100-continue`) is not waited for: the answer says
    /// `Connection: close` instead.
    pub(super) async fn discard_body(
        &self,
        mut reply: Reply,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Reply {
        let expects_continue = header_str(headers, hyper::header::EXPECT)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        let declared = header_str(headers, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let limit = self.limits.max_request_bytes;
        let drained = !expects_continue
            && declared.is_none_or(|n| n <= limit)
            && tokio::time::timeout(DISCARD_TIMEOUT, discard(body, limit))
                .await
                .unwrap_or(false);
        if !drained {
            reply
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        reply
    }

    /// The whole body, within `limit` (413) and the body timeout (408).
    pub(super) async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Incoming,
        limit: BodyLimit,
    ) -> Result<Bytes, Reply> {
        if let Some(len) = header_str(headers, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()) {
            if len > limit.bytes {
                return Err(too_large(limit));
            }
        }
        let body = Limited::new(body, usize::try_from(limit.bytes).unwrap_or(usize::MAX));
        match tokio::time::timeout(self.limits.body_read_timeout, body.collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(too_large(limit))
            }
            Ok(Err(e)) => {
                // Typically a body cut short by the client's end of the connection.
                let mut r = plain(
                    HttpStatus::BAD_REQUEST,
                    &format!("reading the request body failed: {e}"),
                );
                r.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                Err(r)
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
                Err(r)
            }
        }
    }

    /// The body limit of authenticated requests.
    pub(super) fn request_limit(&self) -> BodyLimit {
        BodyLimit {
            bytes: self.limits.max_request_bytes,
            key: "limits.max_request_bytes",
        }
    }

    /// The body limit of requests answered without credentials.
    pub(super) fn anonymous_limit(&self) -> BodyLimit {
        BodyLimit {
            bytes: self.limits.max_anonymous_request_bytes,
            key: "limits.max_anonymous_request_bytes",
        }
    }

    /// Runs the operation for `user` until `deadline`.
    async fn execute(
        &self,
        user: &User,
        request: request::Request,
        deadline: tokio::time::Instant,
    ) -> CimResult<Outcome> {
        let op = request.operation?;
        let served = self
            .cimom
            .serve(user, &request.namespace, op, &request.method);
        tokio::time::timeout_at(deadline, served)
            .await
            .unwrap_or_else(|_| Err(stream::timed_out(self.limits.request_timeout)))
    }
}

/// The answer to a request that is not a CIM-XML request at all: the wrong method, path,
/// or no Host header.
fn misdirected(method: &Method, path: &str, headers: &HeaderMap) -> Option<Reply> {
    // DSP0200 names no status for other methods; OpenPegasus answers 501, as RFC 9110
    // 15.6.2 has a server answer a method it does not implement.
    if method != Method::POST && method.as_str() != "M-POST" {
        return Some(plain(
            HttpStatus::NOT_IMPLEMENTED,
            "CIM-XML requests are POST (or M-POST) to /cimom",
        ));
    }
    if path != "/cimom" {
        return Some(plain(
            HttpStatus::NOT_FOUND,
            "no such endpoint; CIM-XML is served at /cimom, WS-Management at /wsman",
        ));
    }
    if headers.get(hyper::header::HOST).is_none() {
        return Some(protocol_error(
            HttpStatus::BAD_REQUEST,
            "request-not-valid",
            "the Host header is missing",
        ));
    }
    None
}

/// How long the body of a refused request is read before the connection is closed instead.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest body a request may have, and the setting that says so.
#[derive(Clone, Copy, Debug)]
pub(super) struct BodyLimit {
    pub bytes: u64,
    pub key: &'static str,
}

/// Reads `body` to its end without keeping it; false if it is longer than `limit` or
/// fails.
async fn discard(mut body: Incoming, limit: u64) -> bool {
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                    if seen > limit {
                        return false;
                    }
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// 401 with the Basic challenge.
pub(super) fn unauthorized(text: &str) -> Reply {
    let mut r = plain(HttpStatus::UNAUTHORIZED, text);
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cimvirt\""),
    );
    r
}

fn too_large(limit: BodyLimit) -> Reply {
    let mut r = plain(
        HttpStatus::PAYLOAD_TOO_LARGE,
        &format!(
            "the request body exceeds {} bytes ({})",
            limit.bytes, limit.key
        ),
    );
    r.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    r
}
