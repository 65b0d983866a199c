//! TLS for Sequin's own Postgres sessions: tokio-postgres over rustls, with
//! libpq's `sslmode` meanings (read by [`sequin_proxy::pgtls`], which the
//! proxy's upstream shares).
//!
//! tokio-postgres negotiates only `disable`, `prefer` and `require`;
//! [`connect`] adds what libpq does beyond that: `allow` (plain, then TLS
//! when the server refuses), `prefer` going on in plain text when the
//! handshake fails, and the certificate checks of `verify-ca`/`verify-full`
//! (in the rustls configuration). The session offers SCRAM channel binding
//! (`tls-server-end-point`) when the server's certificate allows it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use sequin_proxy::{PgTls, SslMode};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Connection, Socket};

/// A session's connection task, plain or encrypted.
pub type PgConnection = Connection<Socket, RustlsStream<Socket>>;

/// Opens a session with `config` (its own `sslmode` is replaced), encrypted
/// as `tls` says.
pub async fn connect(
    config: &mut Config,
    tls: &PgTls,
) -> Result<(Client, PgConnection), tokio_postgres::Error> {
    let make = MakeRustls { tls: tls.clone() };
    match tls.mode() {
        SslMode::Disable => config.ssl_mode(DriverSslMode::Disable).connect(make).await,
        SslMode::Allow => {
            match config
                .ssl_mode(DriverSslMode::Disable)
                .connect(make.clone())
                .await
            {
                // Refused in plain text (pg_hba.conf `hostssl`): try TLS;
                // a server without SSL leaves the plain refusal as the
                // answer.
                Err(plain) if plain.as_db_error().is_some() => {
                    match config.ssl_mode(DriverSslMode::Require).connect(make).await {
                        Err(e) if no_tls(&e) => Err(plain),
                        other => other,
                    }
                }
                other => other,
            }
        }
        SslMode::Prefer => match config
            .ssl_mode(DriverSslMode::Prefer)
            .connect(make.clone())
            .await
        {
            Err(e) if tls.explain(&e, "").is_some() => {
                tracing::warn!(error = %e, "TLS handshake with Postgres failed; sslmode=prefer goes on without TLS");
                config.ssl_mode(DriverSslMode::Disable).connect(make).await
            }
            other => other,
        },
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            config.ssl_mode(DriverSslMode::Require).connect(make).await
        }
    }
}

/// One line that names the `database_url` parameter to change, for a
/// connection error that TLS explains: a certificate refused, a server
/// without SSL under `sslmode=require`, a server that takes only SSL under
/// `sslmode=disable`. `None` for other errors.
pub fn explain(e: &tokio_postgres::Error, tls: &PgTls, host: &str) -> Option<String> {
    if let Some(text) = tls.explain(e, host) {
        return Some(text);
    }
    if no_tls(e) {
        return Some(format!(
            "the server does not accept SSL connections, and database_url has sslmode={}: enable ssl on the server (ssl = on), or set sslmode=prefer",
            tls.mode()
        ));
    }
    let db = e.as_db_error()?;
    if db.code() == &tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        && db.message().contains("no encryption")
        && tls.mode() == SslMode::Disable
    {
        return Some(format!(
            "the server accepts only SSL connections ({}), and database_url has sslmode=disable: use sslmode=require or better (sslmode=verify-full&sslrootcert=system, or a CA file)",
            db.message()
        ));
    }
    None
}

/// The server answered SSLRequest with 'N' under `sslmode=require`.
/// tokio-postgres has no error kind for it; its message is in the cause.
fn no_tls(e: &tokio_postgres::Error) -> bool {
    std::iter::successors(Some(e as &dyn std::error::Error), |c| c.source())
        .any(|c| c.to_string().contains("server does not support TLS"))
}

/// Makes a TLS connector per host (tokio-postgres asks once per host).
#[derive(Clone)]
pub struct MakeRustls {
    tls: PgTls,
}

impl MakeRustls {
    pub fn new(tls: PgTls) -> MakeRustls {
        MakeRustls { tls }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, io::Error> {
        // Errors wait for the handshake: a Unix-socket host has no name and
        // never gets that far.
        Ok(RustlsConnect {
            connector: self.tls.connector(),
            name: PgTls::server_name(host),
        })
    }
}

/// The handshake with one host.
pub struct RustlsConnect {
    connector: Option<tokio_rustls::TlsConnector>,
    name: Result<ServerName<'static>, io::Error>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = self.connector.ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "sslmode=disable has no TLS")
            })?;
            let tls = connector.connect(self.name?, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// An encrypted session.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| tls_server_end_point(leaf))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929 `tls-server-end-point`: the certificate's hash with the hash of
/// its signature algorithm (SHA-256 for MD5 and SHA-1). `None` when the
/// algorithm names no hash (Ed25519, RSA-PSS): the session then offers no
/// channel binding, as libpq does.
fn tls_server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm_oid(der)?;
    // DER contents of the signature algorithm OIDs, grouped by hash.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let hash = match oid {
        o if o.starts_with(RSA) && o.len() == RSA.len() + 1 => match o[RSA.len()] {
            0x04 | 0x05 | 0x0b => 256, // md5, sha1, sha256 WithRSAEncryption
            0x0c => 384,
            0x0d => 512,
            _ => return None,
        },
        o if o == [ECDSA, &[0x01]].concat() => 256, // ecdsa-with-SHA1
        o if o.starts_with(ECDSA) && o.len() == ECDSA.len() + 2 && o[ECDSA.len()] == 0x03 => {
            match o[ECDSA.len() + 1] {
                0x02 => 256,
                0x03 => 384,
                0x04 => 512,
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(match hash {
        256 => sha2::Sha256::digest(der).to_vec(),
        384 => sha2::Sha384::digest(der).to_vec(),
        _ => sha2::Sha512::digest(der).to_vec(),
    })
}

/// The OID of `Certificate.signatureAlgorithm` (RFC 5280:
/// `SEQUENCE { tbsCertificate, SEQUENCE { OID, params }, BIT STRING }`).
fn signature_algorithm_oid(der: &[u8]) -> Option<&[u8]> {
    let (tag, cert, _) = der_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _tbs, rest) = der_tlv(cert)?;
    let (tag, algorithm, _) = der_tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = der_tlv(algorithm)?;
    (tag == 0x06).then_some(oid)
}

/// One DER tag-length-value: (tag, contents, what follows).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let contents = b.get(header..header.checked_add(len)?)?;
    Some((tag, contents, &b[header + len..]))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn channel_binding_hashes_with_the_signature_hash() {
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            tls_server_end_point(&p256),
            Some(sha2::Sha256::digest(&p256).to_vec())
        );
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            tls_server_end_point(&p384),
            Some(sha2::Sha384::digest(&p384).to_vec())
        );
        // Ed25519 names no hash: no channel binding.
        assert_eq!(tls_server_end_point(&cert(&rcgen::PKCS_ED25519)), None);
        assert_eq!(tls_server_end_point(b"\x30\x03\x02\x01"), None);
        assert_eq!(tls_server_end_point(&[]), None);
    }
}
