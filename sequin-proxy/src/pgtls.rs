//! TLS to a Postgres server with libpq's meanings: the `sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey` and `sslsni` parameters of a
//! connection URL, read into [`SslParams`], and the rustls client
//! configuration they call for ([`PgTls`]).
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require`, so the
//! parameters are taken out of the URL here ([`SslParams::split_url`]) and
//! the rest goes to the driver. Sequin's own sessions (crate
//! `sequin-runtime`) and the proxy's upstream ([`crate::backend`]) share this
//! reading, so both honour one `database_url` the same way.
//!
//! libpq's rules kept here: `prefer` is the default; a given `sslrootcert`
//! makes every TLS mode check the certificate chain (so `require` with a
//! root certificate behaves like `verify-ca`); only `verify-full` checks the
//! host name; `sslrootcert=system` defaults to `verify-full` and refuses
//! weaker modes; SNI is sent for host names, never for IP addresses.
//! Sequin reads only the URL: not `~/.postgresql/` nor the `PGSSL*`
//! environment variables.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// Plain first; TLS when the server refuses the plain session.
    Allow,
    /// TLS first; plain when the server does not speak SSL (the default).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is not checked (unless `sslrootcert`
    /// is given, which makes it `verify-ca`).
    Require,
    /// TLS, certificate chain checked against `sslrootcert`.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The value as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == value)
    }

    /// Whether a plain session is acceptable.
    pub fn allows_plain(self) -> bool {
        matches!(self, SslMode::Disable | SslMode::Allow | SslMode::Prefer)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where trusted CA certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RootCert {
    /// Not given: the chain is not checked (`prefer`, `require`, `allow`).
    #[default]
    None,
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// `system`: the operating system's trusted roots.
    System,
}

/// The TLS parameters of a connection URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslParams {
    pub mode: SslMode,
    pub root_cert: RootCert,
    /// Client certificate chain (PEM), with `client_key`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Send SNI (`sslsni`, default on; never for IP addresses).
    pub sni: bool,
}

/// A mistake in the TLS parameters of `database_url`: one line that names
/// the parameter and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsParamError {
    #[error(
        "database_url: sslmode=`{0}` is not a libpq sslmode; use one of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    UnknownMode(String),
    #[error(
        "database_url: sslmode={0} checks the server's certificate and needs sslrootcert: a CA file (sslrootcert=/path/to/ca.pem) or sslrootcert=system for the system's trusted roots"
    )]
    NeedsRootCert(SslMode),
    #[error(
        "database_url: sslmode={0} may not be used with sslrootcert=system (use sslmode=verify-full: the system's roots trust certificates for any host, only the host check makes them safe)"
    )]
    WeakWithSystemRoots(SslMode),
    #[error(
        "database_url: {given} needs {missing} too (a client certificate and its key go together)"
    )]
    Pair {
        given: &'static str,
        missing: &'static str,
    },
    #[error("database_url: sslsni=`{0}` is not 0 or 1")]
    Sni(String),
    #[error("database_url: {param} is not supported by Sequin ({hint})")]
    Unsupported {
        param: &'static str,
        hint: &'static str,
    },
    #[error(
        "database_url: {0} needs the URL form to be read by Sequin (postgres://user@host:5432/db?sslmode=verify-full&sslrootcert=system)"
    )]
    NotUrl(String),
    #[error("database_url: parameter `{0}` is not valid UTF-8 after percent-decoding")]
    Encoding(String),
    #[error("database_url: cannot read {param} `{}`: {source} (check the path and the file's permissions)", path.display())]
    Read {
        param: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database_url: {param} `{}` holds no {what} in PEM form ({pem})", path.display())]
    NoPem {
        param: &'static str,
        path: PathBuf,
        what: &'static str,
        pem: &'static str,
    },
    #[error(
        "database_url: sslrootcert=system found no trusted roots on this system (install the ca-certificates package, or point sslrootcert at a CA file)"
    )]
    NoSystemRoots,
    #[error("database_url: sslrootcert: {0}")]
    Roots(String),
    #[error(
        "database_url: sslcert/sslkey: {0} (the key in sslkey must belong to the certificate in sslcert)"
    )]
    ClientCert(rustls::Error),
}

/// Parameters libpq knows that Sequin refuses with a reason (instead of the
/// driver's "unknown option").
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "sslpassword",
        "encrypted keys are not read; give sslkey an unencrypted key file readable only by Sequin's user",
    ),
    (
        "sslcrl",
        "certificate revocation lists are not checked; remove it",
    ),
    (
        "sslcrldir",
        "certificate revocation lists are not checked; remove it",
    ),
    (
        "sslcertmode",
        "a client certificate is sent when sslcert and sslkey are given",
    ),
    (
        "ssl_min_protocol_version",
        "TLS 1.2 and 1.3 are used, never older; remove it",
    ),
    (
        "ssl_max_protocol_version",
        "TLS 1.2 and 1.3 are used; remove it",
    ),
    ("sslcompression", "TLS compression is never used; remove it"),
    ("sslkeylogfile", "TLS keys are never logged; remove it"),
    ("requiressl", "write sslmode=require instead"),
];

/// The parameters read here (taken out of the URL).
const OURS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "sslsni"];

impl SslParams {
    /// Reads the TLS parameters of a connection string and returns them with
    /// the string minus those parameters (for tokio-postgres). URLs
    /// (`postgres://`, `postgresql://`) may carry them; a `key=value`
    /// connection string may not (it is returned as is, with the defaults).
    pub fn split_url(url: &str) -> Result<(SslParams, String), TlsParamError> {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !is_url {
            if let Some(key) = keyword_ssl_parameter(url) {
                return Err(TlsParamError::NotUrl(key));
            }
            return Ok((SslParams::from_pairs(std::iter::empty())?, url.to_string()));
        }
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut ours = Vec::new();
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(raw_key)?;
            if OURS.contains(&key.as_str()) || UNSUPPORTED.iter().any(|(k, _)| *k == key) {
                ours.push((key, decode(raw_value)?));
            } else {
                kept.push(pair);
            }
        }
        let params = SslParams::from_pairs(ours.into_iter())?;
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((params, rest))
    }

    /// The parameters from `(key, value)` pairs, checked as libpq checks
    /// them.
    fn from_pairs(
        pairs: impl Iterator<Item = (String, String)>,
    ) -> Result<SslParams, TlsParamError> {
        let mut mode = None;
        let mut params = SslParams {
            sni: true,
            ..SslParams::default()
        };
        for (key, value) in pairs {
            match key.as_str() {
                "sslmode" => {
                    mode = Some(SslMode::parse(&value).ok_or(TlsParamError::UnknownMode(value))?)
                }
                "sslrootcert" => {
                    params.root_cert = match value.as_str() {
                        "" => RootCert::None,
                        "system" => RootCert::System,
                        _ => RootCert::File(value.into()),
                    }
                }
                "sslcert" => params.client_cert = (!value.is_empty()).then(|| value.into()),
                "sslkey" => params.client_key = (!value.is_empty()).then(|| value.into()),
                "sslsni" => {
                    params.sni = match value.as_str() {
                        "1" => true,
                        "0" => false,
                        _ => return Err(TlsParamError::Sni(value)),
                    }
                }
                other => {
                    if let Some((param, hint)) = UNSUPPORTED.iter().find(|(k, _)| *k == other) {
                        return Err(TlsParamError::Unsupported { param, hint });
                    }
                }
            }
        }
        // libpq 16: the system's roots mean verify-full, by default and
        // by force.
        params.mode = match (mode, &params.root_cert) {
            (None, RootCert::System) => SslMode::VerifyFull,
            (Some(m), RootCert::System) if m != SslMode::VerifyFull => {
                return Err(TlsParamError::WeakWithSystemRoots(m));
            }
            (m, _) => m.unwrap_or_default(),
        };
        if matches!(params.mode, SslMode::VerifyCa | SslMode::VerifyFull)
            && params.root_cert == RootCert::None
        {
            return Err(TlsParamError::NeedsRootCert(params.mode));
        }
        match (&params.client_cert, &params.client_key) {
            (Some(_), None) => {
                return Err(TlsParamError::Pair {
                    given: "sslcert",
                    missing: "sslkey",
                });
            }
            (None, Some(_)) => {
                return Err(TlsParamError::Pair {
                    given: "sslkey",
                    missing: "sslcert",
                });
            }
            _ => {}
        }
        Ok(params)
    }

    /// Reads the files the parameters name and builds the TLS client
    /// configuration (`None` for `sslmode=disable`).
    pub fn load(&self) -> Result<PgTls, TlsParamError> {
        if self.mode == SslMode::Disable {
            return Ok(PgTls::disabled());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.roots()? {
            None => Arc::new(NoVerification(provider.clone())),
            Some(roots) => {
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsParamError::Roots(e.to_string()))?;
                if self.mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsParamError::ClientCert)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs("sslcert", cert)?, read_key(key)?)
                .map_err(TlsParamError::ClientCert)?,
            _ => builder.with_no_client_auth(),
        };
        config.enable_sni = self.sni;
        // Postgres 17 selects this protocol; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(PgTls {
            mode: self.mode,
            config: Some(Arc::new(config)),
            roots: match &self.root_cert {
                RootCert::None => String::new(),
                RootCert::File(p) => format!("sslrootcert `{}`", p.display()),
                RootCert::System => "the system's trusted roots (sslrootcert=system)".into(),
            },
        })
    }

    /// The trusted roots, when the chain is to be checked.
    fn roots(&self) -> Result<Option<RootCertStore>, TlsParamError> {
        let certs = match &self.root_cert {
            RootCert::None => return Ok(None),
            RootCert::File(path) => read_certs("sslrootcert", path)?,
            RootCert::System => rustls_native_certs::load_native_certs().certs,
        };
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(match &self.root_cert {
                RootCert::File(path) => TlsParamError::NoPem {
                    param: "sslrootcert",
                    path: path.clone(),
                    what: "usable CA certificate",
                    pem: "-----BEGIN CERTIFICATE-----",
                },
                _ => TlsParamError::NoSystemRoots,
            });
        }
        Ok(Some(roots))
    }
}

/// The first TLS keyword of a `key=value` connection string (`key = value`
/// with spaces too).
fn keyword_ssl_parameter(conninfo: &str) -> Option<String> {
    let keys = OURS
        .iter()
        .copied()
        .chain(UNSUPPORTED.iter().map(|(k, _)| *k));
    keys.filter_map(|key| {
        conninfo
            .match_indices(key)
            .find(|(at, _)| {
                let before = conninfo[..*at].chars().next_back();
                let after = conninfo[at + key.len()..].trim_start();
                before.is_none_or(char::is_whitespace) && after.starts_with('=')
            })
            .map(|(at, _)| (at, key))
    })
    .min()
    .map(|(_, key)| key.to_string())
}

fn decode(raw: &str) -> Result<String, TlsParamError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| TlsParamError::Encoding(raw.to_string()))
}

fn read_certs(
    param: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsParamError> {
    let bytes = std::fs::read(path).map_err(|source| TlsParamError::Read {
        param,
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsParamError::NoPem {
            param,
            path: path.to_path_buf(),
            what: "certificate",
            pem: "-----BEGIN CERTIFICATE-----",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsParamError> {
    let bytes = std::fs::read(path).map_err(|source| TlsParamError::Read {
        param: "sslkey",
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsParamError::NoPem {
        param: "sslkey",
        path: path.to_path_buf(),
        what: "unencrypted private key",
        pem: "-----BEGIN PRIVATE KEY----- (PKCS#8), RSA or EC",
    })
}

/// TLS to one Postgres server: how to negotiate it and the client
/// configuration (shared by every connection).
#[derive(Clone)]
pub struct PgTls {
    mode: SslMode,
    config: Option<Arc<rustls::ClientConfig>>,
    /// Where trusted roots came from, for errors ("" when not checked).
    roots: String,
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls")
            .field("mode", &self.mode)
            .field("roots", &self.roots)
            .finish()
    }
}

impl Default for PgTls {
    fn default() -> Self {
        PgTls::disabled()
    }
}

impl PgTls {
    /// Plain TCP (`sslmode=disable`).
    pub fn disabled() -> PgTls {
        PgTls {
            mode: SslMode::Disable,
            config: None,
            roots: String::new(),
        }
    }

    /// Reads the TLS parameters of `url` and loads their files.
    pub fn from_url(url: &str) -> Result<PgTls, TlsParamError> {
        SslParams::split_url(url)?.0.load()
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The rustls configuration (`None` for `sslmode=disable`).
    pub fn config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.config.as_ref()
    }

    /// A connector for the handshake.
    pub fn connector(&self) -> Option<tokio_rustls::TlsConnector> {
        self.config.clone().map(tokio_rustls::TlsConnector::from)
    }

    /// The server name to verify and (for host names) send as SNI.
    pub fn server_name(host: &str) -> Result<ServerName<'static>, std::io::Error> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{host}` is not a host name or IP address for TLS: {e}"),
            )
        })
    }

    /// One line, naming the URL parameter to change, for a failed TLS
    /// handshake with `host`; `None` when `error` holds no TLS error.
    pub fn explain(&self, error: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
        let e = find_rustls_error(error)?;
        let roots = &self.roots;
        Some(match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                "the server's certificate is not signed by a CA in {roots}: set sslrootcert in database_url to the CA that issued it (your provider publishes it)"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "the server's certificate is not valid for host `{host}`{}: connect by a name the certificate holds, or use sslmode=verify-ca in database_url to check the CA only",
                presented_names(e)
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "the server's certificate has expired: renew it on the server (sslmode verification refuses it)".to_string(),
            rustls::Error::InvalidCertificate(c) => format!(
                "the server's certificate was refused ({c:?}): fix the server's certificate, or sslmode/sslrootcert in database_url"
            ),
            rustls::Error::AlertReceived(alert) => format!(
                "the server ended the TLS handshake ({alert:?}); if it asks for a client certificate, give database_url sslcert and sslkey it accepts"
            ),
            other => format!(
                "TLS handshake with the server failed: {other} (check sslmode and sslrootcert in database_url)"
            ),
        })
    }
}

/// ` (it names a, b)` from a name mismatch with context.
fn presented_names(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) if !presented.is_empty() => format!(" (it names {})", presented.join(", ")),
        _ => String::new(),
    }
}

/// The rustls error in a chain of errors (directly, or inside an
/// `io::Error` as tokio-rustls returns it).
fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// `prefer`/`require`/`allow` without `sslrootcert`: encryption without
/// checking who holds the certificate (libpq's behaviour). The handshake's
/// signatures are still verified.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (and a weaker mode with `sslrootcert`): the chain must lead
/// to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name: a name error means the chain
        // was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> Result<(SslParams, String), String> {
        SslParams::split_url(url).map_err(|e| e.to_string())
    }

    #[test]
    fn prefer_is_the_default_and_the_url_keeps_other_parameters() {
        let (p, rest) = split("postgres://u:p@db:5432/app?application_name=x").unwrap();
        assert_eq!(p.mode, SslMode::Prefer);
        assert_eq!(p.root_cert, RootCert::None);
        assert!(p.sni);
        assert_eq!(rest, "postgres://u:p@db:5432/app?application_name=x");
    }

    #[test]
    fn ssl_parameters_are_taken_out_of_the_url() {
        let (p, rest) = split(
            "postgresql://u@db/app?sslmode=verify-full&connect_timeout=5&sslrootcert=%2Fetc%2Fca.pem&sslcert=/c.pem&sslkey=/k.pem&sslsni=0",
        )
        .unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.root_cert, RootCert::File("/etc/ca.pem".into()));
        assert_eq!(p.client_cert, Some("/c.pem".into()));
        assert_eq!(p.client_key, Some("/k.pem".into()));
        assert!(!p.sni);
        assert_eq!(rest, "postgresql://u@db/app?connect_timeout=5");
        let (_, bare) = split("postgres://u@db/app?sslmode=require").unwrap();
        assert_eq!(bare, "postgres://u@db/app");
    }

    #[test]
    fn every_libpq_mode_is_read() {
        for m in SslMode::ALL {
            let url = format!("postgres://db/app?sslmode={m}&sslrootcert=/ca.pem");
            assert_eq!(split(&url).unwrap().0.mode, m);
        }
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let (p, _) = split("postgres://db/app?sslrootcert=system").unwrap();
        assert_eq!(
            (p.mode, p.root_cert),
            (SslMode::VerifyFull, RootCert::System)
        );
        for weak in ["require", "verify-ca", "prefer", "disable"] {
            let e = split(&format!(
                "postgres://db/app?sslrootcert=system&sslmode={weak}"
            ))
            .unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "database_url: sslmode={weak} may not be used with sslrootcert=system"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn mistakes_name_the_parameter() {
        assert_eq!(
            split("postgres://db/app?sslmode=verify").unwrap_err(),
            "database_url: sslmode=`verify` is not a libpq sslmode; use one of disable, allow, prefer, require, verify-ca, verify-full"
        );
        assert!(
            split("postgres://db/app?sslmode=verify-ca")
                .unwrap_err()
                .starts_with("database_url: sslmode=verify-ca checks the server's certificate and needs sslrootcert")
        );
        assert_eq!(
            split("postgres://db/app?sslcert=/c.pem").unwrap_err(),
            "database_url: sslcert needs sslkey too (a client certificate and its key go together)"
        );
        assert_eq!(
            split("postgres://db/app?sslsni=yes").unwrap_err(),
            "database_url: sslsni=`yes` is not 0 or 1"
        );
        assert!(
            split("postgres://db/app?sslpassword=x")
                .unwrap_err()
                .starts_with("database_url: sslpassword is not supported by Sequin (encrypted keys are not read")
        );
        assert!(
            split("host=db sslmode=require")
                .unwrap_err()
                .starts_with("database_url: sslmode needs the URL form")
        );
        assert!(
            split("host=db sslrootcert = /ca.pem")
                .unwrap_err()
                .starts_with("database_url: sslrootcert needs the URL form")
        );
        let (p, rest) = split("host=db dbname=app").unwrap();
        assert_eq!(
            (p.mode, rest.as_str()),
            (SslMode::Prefer, "host=db dbname=app")
        );
    }

    #[test]
    fn unreadable_files_name_the_parameter_and_the_path() {
        let missing = split("postgres://db/app?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .unwrap()
            .0
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("database_url: cannot read sslrootcert `/nonexistent/ca.pem`: "),
            "{missing}"
        );
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = split(&format!(
            "postgres://db/app?sslmode=verify-full&sslrootcert={}",
            not_pem.display()
        ))
        .unwrap()
        .0
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds no certificate in PEM form"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn disable_needs_no_files_and_other_modes_get_a_config() {
        let off = split("postgres://db/app?sslmode=disable")
            .unwrap()
            .0
            .load()
            .unwrap();
        assert!(off.config().is_none());
        let on = split("postgres://db/app?sslmode=require")
            .unwrap()
            .0
            .load()
            .unwrap();
        let config = on.config().unwrap();
        assert!(config.enable_sni);
        assert_eq!(on.mode(), SslMode::Require);
    }

    #[test]
    fn ip_addresses_get_no_sni_name() {
        assert!(matches!(
            PgTls::server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            PgTls::server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            PgTls::server_name("db.example.com").unwrap(),
            ServerName::DnsName(_)
        ));
    }
}
