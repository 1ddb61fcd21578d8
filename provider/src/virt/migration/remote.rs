//! The source's side of the protocol: requests to the destination's migration endpoint,
//! made from a job's thread (blocking on the server's runtime) over one kept-alive
//! connection.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HOST};
use hyper::{Method, StatusCode};
use tokio::runtime::Handle;

use super::{Accepted, MigrationSettings, Offer, CHUNK_BYTES, PREFIX};
use cimom::http::client::{split_authority, Url, UrlScheme};

/// Why a request to the destination did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// This server is not set up to migrate (`[migration]` in the configuration).
    #[error("{0}")]
    NotConfigured(String),
    /// The destination could not be reached, or did not answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// The destination answered with an error.
    #[error("the destination {host} refused: {message}")]
    Refused {
        /// The destination.
        host: String,
        /// Its HTTP status.
        status: u16,
        /// Its explanation.
        message: String,
    },
    /// A local file could not be read.
    #[error("{0}")]
    Local(String),
}

/// A connection to one destination's migration endpoint.
pub struct Remote {
    base: Url,
    authorization: String,
    settings: MigrationSettings,
    runtime: Handle,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Remote {
    /// Prepares requests to `destination` (`host`, `host:port`, an IPv6 address, or an
    /// `https://` URL), with the configured credentials.
    pub fn new(
        settings: &MigrationSettings,
        destination: &str,
        runtime: Handle,
    ) -> Result<Remote, RemoteError> {
        let destination = destination.trim();
        let base = if destination.contains("://") {
            let url = Url::parse(destination)
                .map_err(|e| RemoteError::NotConfigured(format!("DestinationHost {e}")))?;
            if url.scheme != UrlScheme::Https {
                return Err(RemoteError::NotConfigured(format!(
                    "DestinationHost {destination}: migrations go over HTTPS"
                )));
            }
            url
        } else {
            let (host, port) = split_authority(destination, settings.port)
                .map_err(|e| RemoteError::NotConfigured(format!("DestinationHost {e}")))?;
            Url {
                scheme: UrlScheme::Https,
                host,
                port,
                path: "/".into(),
            }
        };
        let (Some(user), Some(password_file)) = (&settings.user, &settings.password_file) else {
            return Err(RemoteError::NotConfigured(
                "this server has no account for destination hosts: set [migration] user and \
                 password_file in its configuration"
                    .into(),
            ));
        };
        let password = std::fs::read_to_string(password_file).map_err(|e| {
            RemoteError::NotConfigured(format!(
                "[migration] password_file {}: {e}",
                password_file.display()
            ))
        })?;
        let password = password.lines().next().unwrap_or_default();
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(Remote {
            base,
            authorization: format!("Basic {credentials}"),
            settings: settings.clone(),
            runtime,
            sender: None,
        })
    }

    /// The destination, as `host:port`.
    pub fn host(&self) -> String {
        self.base.authority()
    }

    /// Sends one request and returns the status and body of the answer.
    fn request(
        &mut self,
        method: Method,
        path: &str,
        content: Option<(&str, Bytes)>,
        range: Option<String>,
    ) -> Result<(StatusCode, Bytes), RemoteError> {
        let host = self.host();
        let unreachable =
            |e: &dyn std::fmt::Display| RemoteError::Unreachable(format!("{host}: {e}"));
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"))
            .header(HOST, &host)
            .header(AUTHORIZATION, &self.authorization);
        if let Some(range) = range {
            builder = builder.header(CONTENT_RANGE, range);
        }
        let body = match content {
            Some((kind, bytes)) => {
                builder = builder
                    .header(CONTENT_TYPE, kind)
                    .header(CONTENT_LENGTH, bytes.len());
                bytes
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(body)).map_err(|e| unreachable(&e))?;
        let timeout = self.settings.timeout;
        let client = self.settings.client.clone();
        let base = self.base.clone();
        let mut sender = self.sender.take();
        let (answer, sender) = self.runtime.block_on(async {
            let work = async {
                let mut sender = match sender.take().filter(|s| !s.is_closed()) {
                    Some(s) => s,
                    None => client
                        .connect::<Full<Bytes>>(&base)
                        .await
                        .map_err(|e| RemoteError::Unreachable(e.to_string()))?,
                };
                sender.ready().await.map_err(|e| unreachable(&e))?;
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|e| unreachable(&e))?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| unreachable(&e))?
                    .to_bytes();
                Ok::<_, RemoteError>(((status, body), sender))
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(Ok((answer, sender))) => (Ok(answer), Some(sender)),
                Ok(Err(e)) => (Err(e), None),
                Err(_) => (
                    Err(RemoteError::Unreachable(format!(
                        "{host}: no answer within {} s ([migration] timeout_secs)",
                        timeout.as_secs()
                    ))),
                    None,
                ),
            }
        });
        self.sender = sender;
        let (status, body) = answer?;
        if status.is_success() {
            Ok((status, body))
        } else {
            Err(RemoteError::Refused {
                host: self.host(),
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body).trim().to_owned(),
            })
        }
    }

    /// Offers the VM: with `check_only` the destination only says whether it would take it
    /// (`Ok(None)`); otherwise it holds the name and answers the migration's id.
    pub fn offer(
        &mut self,
        offer: &Offer,
        check_only: bool,
    ) -> Result<Option<String>, RemoteError> {
        let json = serde_json::to_vec(offer).map_err(|e| RemoteError::Local(e.to_string()))?;
        let path = if check_only {
            "incoming?check"
        } else {
            "incoming"
        };
        let (_, body) = self.request(
            Method::POST,
            path,
            Some(("application/json", Bytes::from(json))),
            None,
        )?;
        if check_only {
            return Ok(None);
        }
        let accepted: Accepted = serde_json::from_slice(&body).map_err(|e| {
            RemoteError::Unreachable(format!(
                "{}: an unreadable answer to the offer: {e}",
                self.host()
            ))
        })?;
        Ok(Some(accepted.id))
    }

    /// Sends `dir/name`: its data extents, in pieces of at most [`CHUNK_BYTES`]; returns the
    /// bytes sent.
    pub fn send_file(&mut self, id: &str, dir: &Path, name: &str) -> Result<u64, RemoteError> {
        let path = dir.join(name);
        let local = |e: std::io::Error| RemoteError::Local(format!("{}: {e}", path.display()));
        let file = File::open(&path).map_err(local)?;
        let size = file.metadata().map_err(local)?.len();
        let extents = hypervisor_shim::memory::data_extents(&file, 0, size).map_err(local)?;
        self.send_pieces(id, &file, &path, name, &extents)
    }

    /// Sends the byte ranges `ranges` of the local file `path` as the destination's file
    /// `name`, in pieces of at most [`CHUNK_BYTES`]; returns the bytes sent. No ranges still
    /// tells the destination the file's size.
    pub fn send_ranges(
        &mut self,
        id: &str,
        path: &Path,
        name: &str,
        ranges: &[(u64, u64)],
    ) -> Result<u64, RemoteError> {
        let file =
            File::open(path).map_err(|e| RemoteError::Local(format!("{}: {e}", path.display())))?;
        self.send_pieces(id, &file, path, name, ranges)
    }

    /// [`Remote::send_ranges`] on the open `file` (at `path`, for messages).
    fn send_pieces(
        &mut self,
        id: &str,
        file: &File,
        path: &Path,
        name: &str,
        ranges: &[(u64, u64)],
    ) -> Result<u64, RemoteError> {
        let local = |e: std::io::Error| RemoteError::Local(format!("{}: {e}", path.display()));
        let size = file.metadata().map_err(local)?.len();
        let whole = [(0, 0)];
        let ranges = if ranges.is_empty() {
            &whole[..]
        } else {
            ranges
        };
        let mut sent = 0;
        for &(start, end) in ranges {
            let mut offset = start;
            loop {
                let len = (end - offset).min(CHUNK_BYTES);
                let mut buffer = vec![0u8; len as usize];
                file.read_exact_at(&mut buffer, offset).map_err(local)?;
                let range = if len == 0 {
                    format!("bytes */{size}")
                } else {
                    format!("bytes {offset}-{}/{size}", offset + len - 1)
                };
                self.request(
                    Method::PUT,
                    &format!("incoming/{id}/{name}"),
                    Some(("application/octet-stream", Bytes::from(buffer))),
                    Some(range),
                )?;
                sent += len;
                offset += len;
                if offset >= end {
                    break;
                }
            }
        }
        Ok(sent)
    }

    /// Asks the destination to take the VM over.
    pub fn commit(&mut self, id: &str) -> Result<(), RemoteError> {
        self.request(Method::POST, &format!("incoming/{id}/commit"), None, None)
            .map(drop)
    }

    /// Withdraws the migration; the destination drops what it received. Best effort: the
    /// destination also drops migrations that go quiet.
    pub fn abort(&mut self, id: &str) {
        if let Err(e) = self.request(Method::DELETE, &format!("incoming/{id}"), None, None) {
            tracing::warn!(id, "withdrawing the migration at the destination: {e}");
        }
    }
}
