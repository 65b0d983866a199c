//! TLS for client connections (rustls): answers SSLRequest with 'S' when a
//! certificate is configured.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// PEM files of the proxy's certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_chain_pem: PathBuf,
    pub private_key_pem: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {source}")]
    Certificate {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot read the private key {path}: {source}")]
    PrivateKey {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsConfig {
    pub(crate) fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let certs = CertificateDer::pem_file_iter(&self.cert_chain_pem)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|source| TlsError::Certificate {
                path: self.cert_chain_pem.clone(),
                source,
            })?;
        let key = PrivateKeyDer::from_pem_file(&self.private_key_pem).map_err(|source| {
            TlsError::PrivateKey {
                path: self.private_key_pem.clone(),
                source,
            }
        })?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}
