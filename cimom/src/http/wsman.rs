//! The WS-Management endpoint, `POST /wsman` (and `/wsman-anon/identify`): authentication,
//! the body in UTF-8 or UTF-16, the envelope, execution under the operation timeout, and
//! the response or SOAP fault.

#![allow(clippy::result_large_err)] // early answers travel as Err(Reply), as in cimxml.rs

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request as HttpRequest, Response, StatusCode as HttpStatus};
use tracing::info;

use super::body::ResponseBody;
use super::cimxml::{unauthorized, Handler};
use super::headers::{header_str, plain};
use super::stream::Reply;
use super::Scheme;
use crate::wsman::charset::{self, Charset};
use crate::wsman::fault::{Fault, Subcode};
use crate::wsman::{decode_request, identify, reply};

fn soap(status: HttpStatus, text: String, charset: Charset) -> Reply {
    let content_type = match charset {
        Charset::Utf8 => "application/soap+xml;charset=UTF-8",
        _ => "application/soap+xml;charset=UTF-16",
    };
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(ResponseBody::full(charset.encode(text)))
        .expect("static response parts are valid")
}

fn fault_reply(fault: &Fault, relates_to: Option<&str>, charset: Charset) -> Reply {
    let status =
        HttpStatus::from_u16(fault.http_status()).unwrap_or(HttpStatus::INTERNAL_SERVER_ERROR);
    soap(status, reply::fault_envelope(fault, relates_to), charset)
}

impl Handler {
    /// Serves a WS-Management request; `anonymous_path` is `/wsman-anon/identify`.
    pub(super) async fn serve_wsman(
        &self,
        req: HttpRequest<Incoming>,
        scheme: Scheme,
        peer: SocketAddr,
        anonymous_path: bool,
    ) -> Result<Reply, Reply> {
        let (parts, body) = req.into_parts();
        let headers = parts.headers;
        if parts.method != Method::POST {
            let mut r = plain(
                HttpStatus::METHOD_NOT_ALLOWED,
                "WS-Management requests are POST to /wsman",
            );
            r.headers_mut()
                .insert("Allow", HeaderValue::from_static("POST"));
            return Err(self.discard_body(r, &headers, body).await);
        }
        // DSP0226 R5.3-1: Identify may be answered without authentication when the
        // client asks for it so.
        let anonymous = anonymous_path
            || (headers.get(hyper::header::AUTHORIZATION).is_none()
                && header_str(&headers, "wsmanidentify")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("unauthenticated")));
        let (user, body, limit) = if anonymous {
            // A stranger's request may cost only what an Identify needs.
            (None, body, self.anonymous_limit())
        } else {
            let (user, body) = self.authenticate(&headers, body, scheme, peer).await?;
            (Some(user), body, self.request_limit())
        };
        if let Some(t) = header_str(&headers, CONTENT_TYPE) {
            let t = t.to_ascii_lowercase();
            if !(t.starts_with("application/soap+xml")
                || t.starts_with("text/xml")
                || t.starts_with("application/xml"))
            {
                let r = plain(
                    HttpStatus::UNSUPPORTED_MEDIA_TYPE,
                    "WS-Management requests are application/soap+xml",
                );
                return Err(self.discard_body(r, &headers, body).await);
            }
        }
        let bytes = self.read_body(&headers, body, limit).await?;
        let declared_utf16 =
            header_str(&headers, CONTENT_TYPE).is_some_and(charset::declares_utf16);
        let (request, charset) = decode_request(&bytes, declared_utf16, &self.xml_limits())
            .map_err(|r| fault_reply(&r.fault, r.relates_to.as_deref(), r.charset))?;
        let relates_to = request.message_id.clone();
        let fail = |f: &Fault| fault_reply(f, relates_to.as_deref(), charset);
        let result = match &user {
            None if identify::is_identify(&request) => identify::answer(&request, false),
            None => {
                return Err(unauthorized(
                    "authentication required (HTTP Basic); only Identify is answered anonymously",
                ));
            }
            Some(user) => {
                let limit = self.request_timeout();
                let timeout = request.operation_timeout.map_or(limit, |t| t.min(limit));
                match tokio::time::timeout(timeout, self.wsman().handle(user, &request)).await {
                    Ok(r) => r,
                    Err(_) => Err(Fault::receiver(
                        Subcode::TimedOut,
                        format!(
                            "the operation did not complete within {} ms",
                            timeout.as_millis()
                        ),
                    )),
                }
            }
        };
        let reply = match result {
            Ok(r) => r,
            Err(f) => {
                if let Some(user) = &user {
                    info!(user = user.name, action = request.action.as_deref().unwrap_or("Identify"), fault = ?f.subcode, reason = f.reason, "WS-Management request failed");
                }
                return Ok(fail(&f));
            }
        };
        let envelope = reply::envelope(&reply, relates_to.as_deref());
        if let Some(max) = request.max_envelope_size {
            if envelope.len() as u64 > max {
                let f = Fault::sender(
                    Subcode::EncodingLimit,
                    format!(
                        "the response has {} octets, more than MaxEnvelopeSize {max}",
                        envelope.len()
                    ),
                )
                .with_detail("MaxEnvelopeSize");
                return Ok(fail(&f));
            }
        }
        Ok(soap(HttpStatus::OK, envelope, charset))
    }
}
