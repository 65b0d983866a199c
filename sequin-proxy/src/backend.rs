//! The server side of a session: connecting to the upstream Postgres with
//! low-latency socket options, encrypting the connection as `sslmode` says
//! (SSLRequest, then a rustls handshake; see [`crate::pgtls`]), and sending
//! CancelRequests to it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::client::TlsStream;

use crate::codec::startup::{CancelRequest, StartupPacket};
use crate::pgtls::{PgTls, SslMode};

/// The client's read half (plain TCP or TLS), type-erased so interceptors
/// see one concrete context type.
pub type ClientRead = Box<dyn AsyncRead + Send + Unpin>;
/// The client's write half.
pub type ClientWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Where the proxy forwards sessions, and how it encrypts them.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// TLS to the server (`sslmode` and friends of `database_url`).
    pub tls: PgTls,
}

impl Upstream {
    /// A server reached over plain TCP.
    pub fn plain(host: impl Into<String>, port: u16) -> Upstream {
        Upstream {
            host: host.into(),
            port,
            tls: PgTls::disabled(),
        }
    }
}

/// A failure on the server side of a session.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to the upstream server {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to the upstream server {host}:{port} timed out")]
    ConnectTimeout { host: String, port: u16 },
    #[error(
        "the upstream server {host}:{port} does not accept SSL connections, and database_url has sslmode={mode}: enable ssl on the server, or set sslmode=prefer"
    )]
    NoSsl {
        host: String,
        port: u16,
        mode: SslMode,
    },
    #[error("TLS with the upstream server {host}:{port}: {message}")]
    Tls {
        host: String,
        port: u16,
        message: String,
    },
}

/// How long a connection attempt to the upstream may take (TCP, then the
/// TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server connection, plain or encrypted.
pub enum ServerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ServerStream {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, ServerStream::Tls(_))
    }

    /// Read and write halves that can be used concurrently.
    pub fn into_split(self) -> (ServerRead, ServerWrite) {
        match self {
            ServerStream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (ServerRead::Plain(r), ServerWrite::Plain(w))
            }
            ServerStream::Tls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (ServerRead::Tls(r), ServerWrite::Tls(w))
            }
        }
    }
}

/// The server connection's read half.
pub enum ServerRead {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The server connection's write half. Over TLS a write may stay in the
/// session's buffer when the socket is full: callers flush after writing
/// (a no-op for plain TCP).
pub enum ServerWrite {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for ServerRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerRead::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ServerRead::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerWrite::Plain(w) => Pin::new(w).poll_write(cx, buf),
            ServerWrite::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerWrite::Plain(w) => Pin::new(w).poll_flush(cx),
            ServerWrite::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerWrite::Plain(w) => Pin::new(w).poll_shutdown(cx),
            ServerWrite::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// Writes `bytes` to the server and pushes them out (TLS buffers what the
/// socket does not take at once).
pub async fn write_server(w: &mut ServerWrite, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Opens a server connection, encrypted as the upstream's `sslmode` says:
/// `disable` and `allow` start plain (see [`connect_encrypted`] for
/// `allow`'s second try); `prefer` asks for TLS and goes on in plain text
/// when the server does not speak SSL (or, as libpq, when the handshake
/// fails); `require` and the `verify-*` modes need TLS.
pub async fn connect(upstream: &Upstream) -> Result<ServerStream, BackendError> {
    match upstream.tls.mode() {
        SslMode::Disable | SslMode::Allow => Ok(ServerStream::Plain(tcp(upstream).await?)),
        SslMode::Prefer => match negotiate(upstream, false).await {
            Err(e @ BackendError::Tls { .. }) => {
                tracing::warn!(error = %e, "TLS with the upstream server failed; sslmode=prefer goes on without it");
                Ok(ServerStream::Plain(tcp(upstream).await?))
            }
            other => other,
        },
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            negotiate(upstream, true).await
        }
    }
}

/// An encrypted server connection (`sslmode=allow`'s second try, after
/// the server refused a plain session).
pub async fn connect_encrypted(upstream: &Upstream) -> Result<ServerStream, BackendError> {
    negotiate(upstream, true).await
}

/// SSLRequest, then the handshake when the server agrees; plain when it
/// does not and TLS is not `required`.
async fn negotiate(upstream: &Upstream, required: bool) -> Result<ServerStream, BackendError> {
    let mut stream = tcp(upstream).await?;
    let io_err = |source| BackendError::Connect {
        host: upstream.host.clone(),
        port: upstream.port,
        source,
    };
    let mut request = BytesMut::with_capacity(8);
    StartupPacket::SslRequest.encode(&mut request);
    stream.write_all(&request).await.map_err(io_err)?;
    // Exactly one byte: nothing the server sends after 'S' may be read
    // before the handshake (CVE-2021-23222).
    let answer = stream.read_u8().await.map_err(io_err)?;
    match answer {
        b'S' => {}
        b'N' if !required => return Ok(ServerStream::Plain(stream)),
        _ => {
            return Err(BackendError::NoSsl {
                host: upstream.host.clone(),
                port: upstream.port,
                mode: upstream.tls.mode(),
            });
        }
    }
    let tls_err = |message: String| BackendError::Tls {
        host: upstream.host.clone(),
        port: upstream.port,
        message,
    };
    let connector = upstream
        .tls
        .connector()
        .ok_or_else(|| tls_err("sslmode=disable has no TLS configuration".into()))?;
    let name = PgTls::server_name(&upstream.host).map_err(|e| tls_err(e.to_string()))?;
    let handshake = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream));
    match handshake.await {
        Ok(Ok(tls)) => Ok(ServerStream::Tls(Box::new(tls))),
        Ok(Err(e)) => Err(tls_err(
            upstream
                .tls
                .explain(&e, &upstream.host)
                .unwrap_or_else(|| e.to_string()),
        )),
        Err(_) => Err(BackendError::ConnectTimeout {
            host: upstream.host.clone(),
            port: upstream.port,
        }),
    }
}

/// A TCP connection with `TCP_NODELAY` (every message is a complete
/// request or reply; Nagle would only add latency).
async fn tcp(upstream: &Upstream) -> Result<TcpStream, BackendError> {
    let fut = TcpStream::connect((upstream.host.as_str(), upstream.port));
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(BackendError::Connect {
                host: upstream.host.clone(),
                port: upstream.port,
                source,
            });
        }
        Err(_) => {
            return Err(BackendError::ConnectTimeout {
                host: upstream.host.clone(),
                port: upstream.port,
            });
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends a CancelRequest for the backend `key` on a fresh connection, as
/// Postgres requires, encrypted like the sessions (libpq 17 does the same;
/// a server or provider that takes TLS only gets it).
pub async fn send_cancel(upstream: &Upstream, key: CancelRequest) -> Result<(), BackendError> {
    let (_, mut stream) = connect(upstream).await?.into_split();
    let mut buf = BytesMut::with_capacity(16);
    StartupPacket::Cancel(key).encode(&mut buf);
    let io = |source| BackendError::Connect {
        host: upstream.host.clone(),
        port: upstream.port,
        source,
    };
    write_server(&mut stream, &buf).await.map_err(io)?;
    stream.shutdown().await.map_err(io)?;
    Ok(())
}
