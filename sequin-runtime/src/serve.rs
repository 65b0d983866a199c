//! `sequin proxy`: the Postgres proxy applications connect to.
//!
//! Forwards every session to the server of `database_url` (session mode;
//! clients authenticate against Postgres itself) and keeps the proxy's set of
//! synced tables current: every table in a connection's schema, including
//! tables discovered at run time, re-read every few seconds.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sequin_proxy::{PassThrough, Proxy, ProxyConfig, SyncedTables, TableName, TlsConfig, Upstream};
use tokio::sync::watch;

use crate::config::Config;
use crate::store::{self, StoreError};

/// Why the proxy could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("config has no `proxy:` section (add `proxy: {{ listen: 127.0.0.1:7432 }}`)")]
    NoProxy,
    #[error("proxy.listen `{0}` is not host:port (e.g. 127.0.0.1:7432)")]
    Listen(String),
    #[error("database_url is not a Postgres URL with a TCP host and port: {0}")]
    Upstream(String),
    #[error("cannot start the proxy on {listen}: {source} (is the port free?)")]
    Bind {
        listen: String,
        #[source]
        source: sequin_proxy::ProxyError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The Postgres server behind `database_url`.
pub fn upstream(database_url: &str) -> Result<Upstream, ServeError> {
    let cfg = tokio_postgres::Config::from_str(database_url)
        .map_err(|e| ServeError::Upstream(e.to_string()))?;
    let host = cfg
        .get_hosts()
        .iter()
        .find_map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .ok_or_else(|| ServeError::Upstream("no TCP host".into()))?;
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    Ok(Upstream { host, port })
}

/// Reads every table of the connections' schemas.
async fn synced_tables(url: &str, schemas: &[String]) -> Result<Vec<TableName>, StoreError> {
    let client = store::connect(url).await?;
    let rows = client
        .query(
            "SELECT table_schema::text, table_name::text FROM information_schema.tables
              WHERE table_schema = ANY($1) AND table_type = 'BASE TABLE'",
            &[&schemas],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "listing synced tables".into(),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// Runs the proxy until `shutdown` turns true.
pub async fn proxy(config: &Config, mut shutdown: watch::Receiver<bool>) -> Result<(), ServeError> {
    let p = config.proxy.as_ref().ok_or(ServeError::NoProxy)?;
    let listen: SocketAddr = p
        .listen
        .parse()
        .map_err(|_| ServeError::Listen(p.listen.clone()))?;
    let url = config.database_url.expose().to_string();
    let mut pc = ProxyConfig::new(listen, upstream(&url)?);
    if let (Some(cert), Some(key)) = (&p.tls_cert, &p.tls_key) {
        pc.tls = Some(TlsConfig {
            cert_chain_pem: cert.into(),
            private_key_pem: key.into(),
        });
    }
    let schemas: Vec<String> = config.connections.iter().map(|c| c.name.clone()).collect();
    let synced = SyncedTables::new(synced_tables(&url, &schemas).await?);
    pc.synced = synced.clone();
    let proxy = Proxy::bind(pc, Arc::new(PassThrough))
        .await
        .map_err(|source| ServeError::Bind {
            listen: p.listen.clone(),
            source,
        })?;
    tracing::info!(listen = %proxy.local_addr(), "proxy listening");
    let handle = proxy.spawn();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                match synced_tables(&url, &schemas).await {
                    Ok(tables) => synced.replace(tables),
                    Err(e) => tracing::warn!(error = %e, "cannot refresh the synced tables"),
                }
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    handle.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_from_urls() {
        let u = upstream("postgres://u:p@db.example:6543/app").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("db.example", 6543));
        let d = upstream("postgres://u@127.0.0.1/app").unwrap();
        assert_eq!(d.port, 5432);
        assert!(upstream("not a url").is_err());
    }
}
