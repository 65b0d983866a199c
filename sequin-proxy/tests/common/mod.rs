//! Shared test helpers: a proxy in front of a throwaway Postgres cluster.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use sequin_pgtemp::Cluster;
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
        Upstream {
            host: "127.0.0.1".into(),
            port,
        },
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

/// A tokio-postgres connection whose driver task runs in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
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
