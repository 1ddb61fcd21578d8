//! Writing an operation's outcome as the HTTP response: whole when small, streamed in
//! chunks when large, with DSP0200's error trailers when a stream fails part way.

use bytes::Bytes;
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode as HttpStatus};
use tokio::sync::mpsc;

use super::body::ResponseBody;
use crate::cimxml::response::ResponseWriter;
use crate::dispatch::result::Outcome;
use crate::error::CimError;

/// A response.
pub(super) type Reply = Response<ResponseBody>;

/// Responses smaller than this are sent whole, with a Content-Length.
const WHOLE_LIMIT: usize = 64 * 1024;
/// Size of the chunks of a streamed response.
const CHUNK: usize = 32 * 1024;
/// Once an operation has run out of time, how long a client that is not reading gets to
/// take the trailers that say so.
const TRAILER_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The error of an operation that did not complete within `limit`.
pub(super) fn timed_out(limit: std::time::Duration) -> CimError {
    CimError::failed(format!(
        "the operation did not complete within {} s (limits.request_timeout_secs)",
        limit.as_secs()
    ))
}

/// Sends `outcome`: whole when it is small or not a stream, else in chunks as the items
/// arrive. An error after streaming started ends the body with the `CIMStatusCode` and
/// `CIMStatusCodeDescription` trailers (DSP0200 chunking). An operation that passes
/// `deadline` fails as [`timed_out`] after `limit`.
pub(super) async fn respond(
    writer: ResponseWriter,
    outcome: Result<Outcome, CimError>,
    deadline: tokio::time::Instant,
    limit: std::time::Duration,
) -> Reply {
    let xml = |s: String| xml_reply(ResponseBody::full(s));
    let (mut items, form) = match outcome {
        Err(e) => return xml(writer.error(&e)),
        Ok(Outcome::Stream(items, form)) => (items, form),
        Ok(outcome) => return xml(writer.complete(&outcome)),
    };
    // Small results go out whole; large ones stream from here on.
    let mut body = writer.stream_prefix();
    loop {
        match tokio::time::timeout_at(deadline, items.recv()).await {
            Err(_) => return xml(writer.error(&timed_out(limit))),
            Ok(None) => {
                body.push_str(&writer.stream_suffix());
                return xml(body);
            }
            Ok(Some(Err(e))) => return xml(writer.error(&e)),
            Ok(Some(Ok(item))) => {
                writer.item(&mut body, &item, form);
                if body.len() >= WHOLE_LIMIT {
                    break;
                }
            }
        }
    }
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(4);
    tokio::spawn(async move {
        // Sends a frame unless the deadline passes first (a client that stopped
        // reading); Err(true) if the client is gone.
        let send = |frame: Frame<Bytes>| {
            let tx = tx.clone();
            async move {
                match tokio::time::timeout_at(deadline, tx.send(frame)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(true),
                    Err(_) => Err(false),
                }
            }
        };
        let mut buf = body;
        let failure = loop {
            if buf.len() >= CHUNK {
                let chunk = std::mem::replace(&mut buf, String::with_capacity(CHUNK + 4096));
                match send(Frame::data(Bytes::from(chunk))).await {
                    Ok(()) => {}
                    Err(true) => return,
                    Err(false) => break timed_out(limit),
                }
            }
            // A timeout polls its future first: check the deadline explicitly so a
            // producer that is always ready cannot outrun it.
            if tokio::time::Instant::now() >= deadline {
                break timed_out(limit);
            }
            match tokio::time::timeout_at(deadline, items.recv()).await {
                Ok(Some(Ok(item))) => writer.item(&mut buf, &item, form),
                Ok(None) => {
                    buf.push_str(&writer.stream_suffix());
                    match send(Frame::data(Bytes::from(std::mem::take(&mut buf)))).await {
                        Ok(()) | Err(true) => return,
                        Err(false) => break timed_out(limit),
                    }
                }
                Ok(Some(Err(e))) => break e,
                Err(_) => break timed_out(limit),
            }
        };
        // Too late for an ERROR element: DSP0200 puts the status in trailers.
        drop(items);
        let mut trailers = HeaderMap::new();
        trailers.insert("CIMStatusCode", HeaderValue::from(failure.code.code()));
        let description = percent_encoding::utf8_percent_encode(
            &failure.description,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        if let Ok(v) = HeaderValue::from_str(&description) {
            trailers.insert("CIMStatusCodeDescription", v);
        }
        let frames = [Frame::data(Bytes::from(buf)), Frame::trailers(trailers)];
        for frame in frames {
            if frame.data_ref().is_some_and(|d| d.is_empty()) {
                continue;
            }
            if !matches!(
                tokio::time::timeout(TRAILER_GRACE, tx.send(frame)).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    });
    let mut reply = xml_reply(ResponseBody::Stream(rx));
    reply.headers_mut().insert(
        "Trailer",
        HeaderValue::from_static("CIMStatusCode, CIMStatusCodeDescription"),
    );
    reply
}

pub(super) fn xml_reply(body: ResponseBody) -> Reply {
    Response::builder()
        .status(HttpStatus::OK)
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=\"utf-8\""),
        )
        .body(body)
        .expect("static response parts are valid")
}
