//! The CIM-XML endpoint, `POST /cimom`: method and path, authentication, the DSP0200
//! headers, the body under its limits, decoding, authorization, execution, the response.

// Early answers travel as `Err(Reply)`: the error is the response itself, moved once to
// the client, so boxing it (as clippy suggests for large errors) would buy nothing.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};
use hyper::{Method, Request, StatusCode as HttpStatus};
use tracing::{debug, info, warn};

use super::headers::{envelope_error, header_str, plain, protocol_error, CimHeaders};
use super::stream::{self, Reply};
use super::{Endpoint, HttpLimits, Scheme};
use crate::auth::{AuthOutcome, Authenticator, User};
use crate::cimom::result::Outcome;
use crate::cimom::{Cimom, RequestContext};
use crate::cimxml::dom::XmlLimits;
use crate::cimxml::encode::PathContext;
use crate::cimxml::request;
use crate::cimxml::response::ResponseWriter;
use crate::error::{CimError, CimResult};
use crate::wsman;

/// Serves requests.
pub struct Handler {
    cimom: Arc<Cimom>,
    auth: Arc<Authenticator>,
    limits: HttpLimits,
    xml: XmlLimits,
    wsman: wsman::Service,
    endpoints: Vec<Arc<dyn Endpoint>>,
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
        let started = Instant::now();
        let path = req.uri().path().to_string();
        let reply = match self.serve(req, scheme, peer).await {
            Ok(reply) | Err(reply) => reply,
        };
        debug!(
            path,
            status = reply.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request"
        );
        reply
    }

    /// The steps of a request; `Err` is an early answer (an HTTP-level fault).
    async fn serve(
        &self,
        req: Request<Incoming>,
        scheme: Scheme,
        peer: SocketAddr,
    ) -> Result<Reply, Reply> {
        match req.uri().path() {
            "/wsman" => return self.serve_wsman(req, scheme, peer, false).await,
            "/wsman-anon/identify" => return self.serve_wsman(req, scheme, peer, true).await,
            path => {
                let endpoint = self.endpoints.iter().find(|e| path.starts_with(e.prefix()));
                if let Some(endpoint) = endpoint {
                    let user = self.authenticate(req.headers(), scheme, peer).await?;
                    return Ok(endpoint.serve(user, req).await);
                }
            }
        }
        let is_mpost = req.method().as_str() == "M-POST";
        if req.method() != Method::POST && !is_mpost {
            let mut r = plain(
                HttpStatus::METHOD_NOT_ALLOWED,
                "CIM-XML requests are POST (or M-POST) to /cimom",
            );
            r.headers_mut()
                .insert("Allow", HeaderValue::from_static("POST, M-POST"));
            return Err(r);
        }
        if req.uri().path() != "/cimom" {
            return Err(plain(
                HttpStatus::NOT_FOUND,
                "no such endpoint; CIM-XML is served at /cimom, WS-Management at /wsman",
            ));
        }
        let (parts, body) = req.into_parts();
        let headers = parts.headers;
        if headers.get(hyper::header::HOST).is_none() {
            return Err(protocol_error(
                HttpStatus::BAD_REQUEST,
                "request-not-valid",
                "the Host header is missing",
            ));
        }
        // Authentication first: nothing about the server is revealed to strangers.
        let user = self.authenticate(&headers, scheme, peer).await?;
        let cim_headers = CimHeaders::check(&headers, is_mpost)?;
        let body = self.read_body(&headers, body).await?;
        let request = request::parse(&body, &self.xml).map_err(|e| envelope_error(&e))?;
        cim_headers.check_against(&request)?;

        let writer = ResponseWriter {
            id: request.id.clone(),
            method: request.method.clone(),
            intrinsic: request.intrinsic,
            paths: PathContext {
                host: header_str(&headers, "host")
                    .unwrap_or("localhost")
                    .to_string(),
                namespace: request.namespace.trim_matches('/').to_string(),
            },
        };
        let deadline = tokio::time::Instant::now() + self.limits.request_timeout;
        let (method, namespace) = (request.method.clone(), request.namespace.clone());
        let outcome = self.execute(&user, request, deadline).await;
        if let Err(e) = &outcome {
            info!(user = user.name, method, namespace, code = e.code.code(), error = e.description, scheme = ?scheme, "operation failed");
        }
        let mut reply = stream::respond(writer, outcome, deadline, self.timed_out()).await;
        cim_headers.mark_response(&mut reply);
        Ok(reply)
    }

    /// HTTP Basic against the user store; 401 with a Basic challenge otherwise.
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        scheme: Scheme,
        peer: SocketAddr,
    ) -> Result<Arc<User>, Reply> {
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
        match outcome {
            AuthOutcome::Authenticated(user) => Ok(user),
            outcome => {
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
                Err(r)
            }
        }
    }

    /// The whole body, within the size limit (413) and the body timeout (408).
    pub(super) async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Result<Bytes, Reply> {
        if let Some(len) =
            header_str(headers, CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok())
        {
            if len > self.limits.max_request_bytes {
                return Err(self.too_large());
            }
        }
        let body = Limited::new(body, self.limits.max_request_bytes as usize);
        match tokio::time::timeout(self.limits.body_read_timeout, body.collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(self.too_large())
            }
            Ok(Err(e)) => Err(plain(
                HttpStatus::BAD_REQUEST,
                &format!("reading the request body failed: {e}"),
            )),
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

    /// Checks the user's rights in the namespace, then runs the operation until `deadline`.
    async fn execute(
        &self,
        user: &User,
        request: request::Request,
        deadline: tokio::time::Instant,
    ) -> CimResult<Outcome> {
        let op = request.operation?;
        let ns = self.cimom.resolve_namespace(&request.namespace)?;
        user.authorize(&ns, &op, &request.method)?;
        let ctx = RequestContext {
            user: Arc::from(user.name.as_str()),
        };
        tokio::time::timeout_at(deadline, self.cimom.execute(&ctx, &ns, op))
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
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
