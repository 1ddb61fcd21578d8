//! TLS: the server certificate, configured or generated on first start, and the rustls
//! configuration (TLS 1.2 and 1.3 only).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error("generating the certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("the certificate and key do not form a valid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate in use.
pub struct Certificate {
    /// The rustls configuration.
    pub config: Arc<ServerConfig>,
    /// SHA-256 fingerprint of the leaf certificate, colon-separated hex.
    pub fingerprint: String,
    /// Where the certificate is.
    pub cert_path: PathBuf,
    /// Whether it was generated just now.
    pub generated: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Generates a self-signed certificate for `hostname`, `localhost` and the loopback
/// addresses into `cert_path` and `key_path` (the key readable by the owner only).
pub fn generate(hostname: &str, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let mut names = vec![
        hostname.to_string(),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    names.dedup();
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names)?;
    if let Some(dir) = cert_path.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    fs::write(cert_path, cert.pem()).map_err(io(cert_path))?;
    let mut key = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key_path)
        .map_err(io(key_path))?;
    key.write_all(key_pair.serialize_pem().as_bytes())
        .map_err(io(key_path))?;
    Ok(())
}

/// Loads the certificate chain and key, generating them first when `generate_if_missing`
/// and the files do not exist.
pub fn load(
    cert_path: &Path,
    key_path: &Path,
    hostname: &str,
    generate_if_missing: bool,
) -> Result<Certificate, TlsError> {
    let mut generated = false;
    if generate_if_missing && !cert_path.exists() && !key_path.exists() {
        generate(hostname, cert_path, key_path)?;
        generated = true;
    }
    let pem_err = |path: &Path, message: String| TlsError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let cert_pem = fs::read(cert_path).map_err(io(cert_path))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(cert_path, "holds no certificate".into()));
    }
    let key_pem = fs::read(key_path).map_err(io(key_path))?;
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_err(key_path, e.to_string()))?;
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, chain[0].as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certificate {
        config: Arc::new(config),
        fingerprint,
        cert_path: cert_path.to_path_buf(),
        generated,
    })
}
