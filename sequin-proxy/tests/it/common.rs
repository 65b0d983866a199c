//! Shared test helpers: a proxy in front of a throwaway Postgres cluster.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sequin_proxy::codec::startup::{PROTOCOL_3_0, StartupMessage, StartupPacket};
use sequin_proxy::codec::{self, ErrorResponse, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use sequin_pgtemp::{Cluster, connect};
use sequin_proxy::{
    Interceptor, PassThrough, Proxy, ProxyConfig, ProxyHandle, SyncedTables, Upstream,
};

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a proxy forwarding to `port` on 127.0.0.1.
pub async fn proxy_to(
    port: u16,
    synced: SyncedTables,
    interceptor: Arc<dyn Interceptor>,
) -> ProxyHandle {
    init_tracing();
    let mut config = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Upstream::plain("127.0.0.1", port),
    );
    config.synced = synced;
    Proxy::bind(config, interceptor)
        .await
        .expect("bind proxy")
        .spawn()
}

/// A pass-through proxy in front of `cluster`.
pub async fn plain_proxy(cluster: &Cluster) -> ProxyHandle {
    proxy_to(
        cluster.port(),
        SyncedTables::default(),
        Arc::new(PassThrough),
    )
    .await
}

/// `cluster`'s URL for `db`, pointed at the proxy instead.
pub fn via(cluster: &Cluster, proxy: &ProxyHandle, db: &str) -> String {
    cluster.url(db).replace(
        &format!(":{}/", cluster.port()),
        &format!(":{}/", proxy.local_addr().port()),
    )
}

/// A fresh database in `cluster`.
pub fn database(cluster: &Cluster, prefix: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "{prefix}_{}",
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    cluster.create_database(&name).expect("create database");
    name
}

/// Waits until `f` returns true (for effects that happen asynchronously on
/// the server, like a cancelled backend going away).
pub async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A hand-driven client for sending what no driver would.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

impl Raw {
    pub async fn connect(proxy: &sequin_proxy::ProxyHandle, db: &str) -> Raw {
        let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let mut out = BytesMut::new();
        StartupPacket::Startup(StartupMessage {
            protocol: PROTOCOL_3_0,
            params: vec![
                ("user".into(), "postgres".into()),
                ("database".into(), db.into()),
            ],
        })
        .encode(&mut out);
        stream.write_all(&out).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        while raw.next().await.expect("startup reply")[0] != b'Z' {}
        raw
    }

    /// The next message, or `None` once the proxy closed the connection.
    pub async fn next(&mut self) -> Option<BytesMut> {
        loop {
            if let Ok(Some(f)) = codec::split_frame(&self.buf, codec::MAX_MESSAGE_LEN) {
                let len = f.len;
                return Some(self.buf.split_to(len));
            }
            let n =
                tokio::time::timeout(Duration::from_secs(20), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("the proxy answers or closes in time")
                    .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads to the end and returns the first ErrorResponse.
    pub async fn error_then_close(&mut self) -> ErrorResponse {
        let mut error = None;
        while let Some(m) = self.next().await {
            if m[0] == b'E' && error.is_none() {
                error = Some(ErrorResponse::decode(&m).unwrap());
            }
        }
        error.expect("an ErrorResponse before the close")
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
}
