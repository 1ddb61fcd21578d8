//! One keep-alive HTTP/1.1 connection (plain or TLS) with Basic authentication.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the server is and who calls it.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// Server URL: http://host:port or https://host:port.
    #[arg(long)]
    pub url: String,
    /// User name.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// Password.
    #[arg(long)]
    pub password: String,
    /// CA certificate (PEM) that signs the server certificate, for https.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Namespace.
    #[arg(long, default_value = "root/virt")]
    pub namespace: String,
}

impl Target {
    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.url.split("://").next().unwrap_or("?")
    }
}

/// One keep-alive connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    auth: String,
    host: String,
}

fn tls_connector(ca: &Option<PathBuf>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = ca.as_ref().ok_or("https needs --ca-cert")?;
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Client {
    /// Opens a connection to the target.
    pub async fn connect(target: &Target) -> Result<Client, String> {
        let (https, rest) = if let Some(r) = target.url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = target.url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "URL must start with http:// or https://: {}",
                target.url
            ));
        };
        let host = rest.trim_end_matches('/').to_string();
        let tcp = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let sender = if https {
            let server = host
                .rsplit_once(':')
                .map_or(host.as_str(), |(h, _)| h)
                .to_string();
            let name =
                rustls::pki_types::ServerName::try_from(server).map_err(|e| e.to_string())?;
            let tls = tls_connector(&target.ca_cert)?
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", target.user, target.password))
        );
        Ok(Client { sender, auth, host })
    }

    /// POSTs `body` to `path` with the given extra headers; returns the response body, or
    /// the status and body of an unsuccessful response as the error.
    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Result<Bytes, String> {
        let mut req = Request::post(path)
            .header("Host", &self.host)
            .header("Authorization", &self.auth);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(bytes)
    }
}
