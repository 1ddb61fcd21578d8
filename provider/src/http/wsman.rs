//! The WS-Management endpoint, `POST /wsman` (and `/wsman-anon/identify`): authentication,
//! the body in UTF-8 or UTF-16, the envelope, execution under the operation timeout, and
//! the response or SOAP fault.

#![allow(clippy::result_large_err)] // early answers travel as Err(Reply), as in cimxml.rs

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request as HttpRequest, Response, StatusCode as HttpStatus};
use tracing::info;

use super::body::ResponseBody;
use super::cimxml::{unauthorized, Handler};
use super::headers::{header_str, plain};
use super::stream::Reply;
use super::Scheme;
use crate::cimxml::dom;
use crate::wsman::envelope::{self, Request};
use crate::wsman::fault::{Fault, Subcode};
use crate::wsman::{identify, reply};

/// The character encoding of a request, which its response repeats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    Utf16Le,
    Utf16Be,
}

/// The body as UTF-8 text, and the encoding it came in (`wsman -j UTF-16`).
fn decode(bytes: &[u8], headers: &HeaderMap) -> Result<(Vec<u8>, Charset), Fault> {
    let declared_16 = header_str(headers, CONTENT_TYPE.as_str()).is_some_and(|t| {
        t.to_ascii_lowercase()
            .replace(' ', "")
            .contains("charset=utf-16")
    });
    let (charset, body) = match bytes {
        [0xff, 0xfe, rest @ ..] => (Charset::Utf16Le, rest),
        [0xfe, 0xff, rest @ ..] => (Charset::Utf16Be, rest),
        [0xef, 0xbb, 0xbf, rest @ ..] => return Ok((rest.to_vec(), Charset::Utf8)),
        // UTF-16 without a byte order mark: '<' is 3C 00 or 00 3C.
        [0x3c, 0x00, ..] if declared_16 => (Charset::Utf16Le, bytes),
        [0x00, 0x3c, ..] if declared_16 => (Charset::Utf16Be, bytes),
        _ => return Ok((bytes.to_vec(), Charset::Utf8)),
    };
    if body.len() % 2 != 0 {
        return Err(Fault::schema("the UTF-16 body has an odd number of bytes"));
    }
    let units = body.chunks_exact(2).map(|c| match charset {
        Charset::Utf16Be => u16::from_be_bytes([c[0], c[1]]),
        _ => u16::from_le_bytes([c[0], c[1]]),
    });
    let text: String = char::decode_utf16(units)
        .collect::<Result<_, _>>()
        .map_err(|_| Fault::schema("the body is not valid UTF-16"))?;
    // The declaration still says UTF-16; the parser reads the text as the UTF-8 it now is.
    Ok((text.into_bytes(), charset))
}

fn encode(text: String, charset: Charset) -> Vec<u8> {
    match charset {
        Charset::Utf8 => text.into_bytes(),
        Charset::Utf16Le | Charset::Utf16Be => {
            let text = text.replacen("encoding=\"UTF-8\"", "encoding=\"UTF-16\"", 1);
            let mut out = Vec::with_capacity(text.len() * 2 + 2);
            let bom: u16 = 0xfeff;
            for unit in std::iter::once(bom).chain(text.encode_utf16()) {
                out.extend_from_slice(&if charset == Charset::Utf16Be {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                });
            }
            out
        }
    }
}

fn soap(status: HttpStatus, text: String, charset: Charset) -> Reply {
    let content_type = match charset {
        Charset::Utf8 => "application/soap+xml;charset=UTF-8",
        _ => "application/soap+xml;charset=UTF-16",
    };
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(ResponseBody::full(encode(text, charset)))
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
        if let Some(t) = header_str(&headers, CONTENT_TYPE.as_str()) {
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
        let (text, charset) =
            decode(&bytes, &headers).map_err(|f| fault_reply(&f, None, Charset::Utf8))?;
        let envelope = dom::parse(&text, &self.xml_limits()).map_err(|e| {
            fault_reply(
                &Fault::schema(format!(
                    "the request is not an acceptable XML document: {e}"
                )),
                None,
                charset,
            )
        })?;
        let message_id = envelope::message_id(&envelope);
        let request = Request::parse(envelope)
            .map_err(|f| fault_reply(&f, message_id.as_deref(), charset))?;
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
