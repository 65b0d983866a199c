//! The server side of a session: connecting to the upstream Postgres with
//! low-latency socket options, and sending CancelRequests to it.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::startup::{CancelRequest, StartupPacket};

/// The client's read half (plain TCP or TLS), type-erased so interceptors
/// see one concrete context type.
pub type ClientRead = Box<dyn AsyncRead + Send + Unpin>;
/// The client's write half.
pub type ClientWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Where the proxy forwards sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
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
}

/// How long a connection attempt to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a server connection with `TCP_NODELAY` (every message is a complete
/// request or reply; Nagle would only add latency).
pub async fn connect(upstream: &Upstream) -> Result<TcpStream, BackendError> {
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
/// Postgres requires.
pub async fn send_cancel(upstream: &Upstream, key: CancelRequest) -> Result<(), BackendError> {
    let mut stream = connect(upstream).await?;
    let mut buf = BytesMut::with_capacity(16);
    StartupPacket::Cancel(key).encode(&mut buf);
    let io = |source| BackendError::Connect {
        host: upstream.host.clone(),
        port: upstream.port,
        source,
    };
    stream.write_all(&buf).await.map_err(io)?;
    stream.shutdown().await.map_err(io)?;
    Ok(())
}
