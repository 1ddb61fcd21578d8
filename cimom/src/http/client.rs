//! Outgoing HTTP and HTTPS, for indication deliveries to listeners and migrations to other
//! cimvirt hosts. HTTPS verifies the peer's certificate chain against the configured trust
//! anchors and its name against the URL's host (rustls' WebPKI verifier).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why an outgoing request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or host is not usable.
    #[error("{0}")]
    Url(String),
    /// A trust anchor file could not be loaded.
    #[error("{path}: {message}")]
    Trust {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The connection, the TLS handshake or the exchange failed.
    #[error("{0}")]
    Transport(String),
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlScheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// Where a request goes: scheme, host, port and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: UrlScheme,
    /// The host: a DNS name or an IP address (without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL (as `http::Uri`, RFC 3986); a
    /// WebSocket's `ws://` and `wss://` (RFC 6455 3) are read as the HTTP they start as.
    pub fn parse(text: &str) -> Result<Url, ClientError> {
        let bad = |why: String| ClientError::Url(format!("{text}: {why}"));
        let uri: hyper::Uri = text.parse().map_err(|e| bad(format!("{e}")))?;
        let (scheme, default_port) = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") => {
                (UrlScheme::Https, 443)
            }
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("ws") => {
                (UrlScheme::Http, 80)
            }
            _ => return Err(bad("not an http:// or https:// URL".into())),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host".into()))?;
        let (host, port) = split_authority(authority.as_str(), default_port)?;
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("/{p}"),
            None => "/".to_owned(),
        };
        Ok(Url {
            scheme,
            host,
            port,
            path,
        })
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            UrlScheme::Http => "http",
            UrlScheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Splits `host`, `host:port`, an IPv6 address, or `[v6]:port` into host and port (an
/// IPv6 address without brackets, which is no URL authority, as a host without a port).
pub fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16), ClientError> {
    let bad = |why: &str| ClientError::Url(format!("{authority}: {why}"));
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    if authority.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((authority.to_owned(), default_port));
    }
    let parsed: hyper::http::uri::Authority = authority
        .parse()
        .map_err(|e| bad(&format!("not a host and port: {e}")))?;
    let after_host = &parsed.as_str()[parsed.host().len()..];
    let host = parsed.host();
    let host = match host.strip_prefix('[') {
        Some(v6) => {
            let v6 = v6.strip_suffix(']').unwrap_or(v6);
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address in brackets"))?;
            v6
        }
        None => host,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match after_host {
        "" => default_port,
        rest => rest
            .strip_prefix(':')
            .ok_or_else(|| bad("text after the host"))?
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number"))?,
    };
    Ok((host.to_owned(), port))
}

/// Opens HTTP/1.1 connections, over TLS where the URL says https.
#[derive(Clone)]
pub struct Client {
    tls: Arc<rustls::ClientConfig>,
    /// The trust anchor files, for error messages.
    trusted: Vec<PathBuf>,
}

impl Client {
    /// A client that trusts the certificates in the given PEM files (each may hold several).
    pub fn new(trusted: &[PathBuf]) -> Result<Client, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for path in trusted {
            let trust = |message: String| ClientError::Trust {
                path: path.clone(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| trust(e.to_string()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| trust(e.to_string()))?;
            if certs.is_empty() {
                return Err(trust("holds no certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| trust(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            tls: Arc::new(config),
            trusted: trusted.to_vec(),
        })
    }

    /// Connects to `url`'s host and port, and returns the connection's request sender; the
    /// connection itself runs on a task of its own until the sender is dropped.
    pub async fn connect<B>(&self, url: &Url) -> Result<SendRequest<B>, ClientError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let transport = self.open(url).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(transport))
            .await
            .map_err(|e| ClientError::Transport(format!("HTTP with {}: {e}", url.authority())))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// A connection to `url`'s host and port: TCP, with TLS for HTTPS (the peer's
    /// certificate checked), for a protocol that runs over it itself (a WebSocket).
    pub async fn open(&self, url: &Url) -> Result<Transport, ClientError> {
        let stream = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| {
                ClientError::Transport(format!("connecting to {}: {e}", url.authority()))
            })?;
        let _ = stream.set_nodelay(true);
        match url.scheme {
            UrlScheme::Http => Ok(Transport::Plain(stream)),
            UrlScheme::Https => {
                let name = server_name(&url.host)?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| {
                        ClientError::Transport(format!(
                            "TLS with {}: {e} (trusted certificates: {})",
                            url.authority(),
                            self.describe_trust()
                        ))
                    })?;
                Ok(Transport::Tls(Box::new(tls)))
            }
        }
    }

    fn describe_trust(&self) -> String {
        if self.trusted.is_empty() {
            return "none".into();
        }
        self.trusted
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A connection [`Client::open`] made: plain TCP, or TLS over it.
pub enum Transport {
    /// HTTP.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, ClientError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|e| ClientError::Url(format!("{host}: not a usable host name: {e}")))
}

/// The trust anchors of outgoing HTTPS: the configured files, or else the server's own
/// certificate (enough where every host presents the same certificate or one CA signed them).
pub fn trust_anchors(configured: &[PathBuf], own_certificate: Option<&Path>) -> Vec<PathBuf> {
    if configured.is_empty() {
        own_certificate.map(Path::to_path_buf).into_iter().collect()
    } else {
        configured.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_authorities_parse_with_their_default_ports() {
        let url = Url::parse("https://host.example:5990/listen?x=1").unwrap();
        assert_eq!(url.scheme, UrlScheme::Https);
        assert_eq!((url.host.as_str(), url.port), ("host.example", 5990));
        assert_eq!(url.path, "/listen?x=1");
        assert_eq!(url.to_string(), "https://host.example:5990/listen?x=1");
        let url = Url::parse("http://[::1]/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 80));
        assert_eq!(url.authority(), "[::1]:80");
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("https://user:pw@x/").is_err());
        assert_eq!(
            split_authority("10.0.0.2", 5989).unwrap(),
            ("10.0.0.2".into(), 5989)
        );
        assert_eq!(
            split_authority("fe80::1", 5989).unwrap(),
            ("fe80::1".into(), 5989)
        );
        assert_eq!(
            split_authority("[fe80::1]:15989", 5989).unwrap(),
            ("fe80::1".into(), 15989)
        );
        assert_eq!(
            split_authority("kvm2:6000", 5989).unwrap(),
            ("kvm2".into(), 6000)
        );
        for bad in ["", ":5989", "kvm2:http", "[fe80::1", "[kvm2]:1", "[::1]x"] {
            assert!(split_authority(bad, 5989).is_err(), "{bad}");
        }
    }

    #[test]
    fn trust_defaults_to_the_servers_own_certificate() {
        let own = Path::new("/data/tls/cert.pem");
        assert_eq!(trust_anchors(&[], Some(own)), vec![own.to_path_buf()]);
        let ca = PathBuf::from("/etc/cimvirt/ca.pem");
        assert_eq!(
            trust_anchors(std::slice::from_ref(&ca), Some(own)),
            vec![ca]
        );
        assert!(Client::new(&[PathBuf::from("/nonexistent.pem")]).is_err());
    }

    /// A TLS server on loopback presenting a certificate for `names`; answers every request
    /// with 204. Returns its port and its certificate's PEM file.
    async fn tls_server(dir: &Path, names: &[&str]) -> (u16, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let generated = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
        let loaded = crate::http::tls::load(&cert, &key, "localhost", false).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(loaded.config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req| async {
                        hyper::Response::builder()
                            .status(204)
                            .body(http_body_util::Empty::<bytes::Bytes>::new())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (port, cert)
    }

    async fn get(client: &Client, url: &str) -> Result<u16, ClientError> {
        let url = Url::parse(url).unwrap();
        let mut sender = client
            .connect::<http_body_util::Empty<bytes::Bytes>>(&url)
            .await?;
        let request = hyper::Request::get(url.path.as_str())
            .header(hyper::header::HOST, url.authority())
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(response.status().as_u16())
    }

    #[tokio::test]
    async fn https_verifies_the_peers_certificate_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (port, cert) = tls_server(&a, &["127.0.0.1", "localhost"]).await;
        let (_, other) = tls_server(&b, &["127.0.0.1"]).await;
        let trusting = Client::new(&[cert]).unwrap();
        assert_eq!(
            get(&trusting, &format!("https://127.0.0.1:{port}/"))
                .await
                .unwrap(),
            204
        );
        assert_eq!(
            get(&trusting, &format!("https://localhost:{port}/"))
                .await
                .unwrap(),
            204
        );
        // Another certificate is not trusted; nor is no certificate at all.
        for client in [Client::new(&[other]).unwrap(), Client::new(&[]).unwrap()] {
            let err = get(&client, &format!("https://127.0.0.1:{port}/"))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("TLS with 127.0.0.1"), "{err}");
        }
        // A certificate for another name is refused.
        let (port_b, cert_b) = tls_server(&b, &["kvm2.example"]).await;
        let err = get(
            &Client::new(&[cert_b]).unwrap(),
            &format!("https://127.0.0.1:{port_b}/"),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");
    }
}
