//! `sequin proxy`: the Postgres proxy applications connect to.
//!
//! Forwards every session to the server of `database_url` (session mode;
//! clients authenticate against Postgres itself) and keeps the proxy's set of
//! synced tables: every table in a connection's schema, including tables
//! discovered at run time. Writes to them go through [`crate::write`]; the
//! journal's reconciler runs beside.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sequin_proxy::{
    ALL_TABLES, BoxFuture, InjectError, InterceptContext, Interceptor, Outcome, Proxy, ProxyConfig,
    SslParams, SyncedTables, TableName, TlsConfig, TlsParamError, Upstream,
};
use tokio::sync::watch;

use crate::config::Config;
use crate::config::reload::Changes;
use crate::metrics::{Metrics, Part, PartState};
use crate::store::StoreError;
use crate::write::{self, WriteThrough};

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
    Tls(#[from] TlsParamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::Error),
}

/// The Postgres server behind `database_url`, with its TLS parameters
/// (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `sslsni`): the proxy
/// encrypts its upstream sessions as Sequin's own sessions are.
pub fn upstream(database_url: &str) -> Result<Upstream, ServeError> {
    let (params, rest) = SslParams::split_url(database_url)?;
    let tls = params.load()?;
    let cfg =
        tokio_postgres::Config::from_str(&rest).map_err(|e| ServeError::Upstream(e.to_string()))?;
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
    Ok(Upstream { host, port, tls })
}

/// How often the names of the synced tables are read again.
const TABLES_EVERY: Duration = Duration::from_secs(5);

/// The synced set: every table of `schemas` (by wildcard, so a table
/// created a moment ago is covered), plus the names of the tables there now.
/// `db` is kept between calls (opened again when lost); when the tables
/// cannot be listed, the set stays as it was.
async fn refresh_synced(
    synced: &SyncedTables,
    db: &mut Option<tokio_postgres::Client>,
    url: &str,
    schemas: &[String],
) {
    if db.as_ref().is_none_or(|c| c.is_closed()) {
        match crate::store::connect(url).await {
            Ok(c) => *db = Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the synced tables");
                return;
            }
        }
    }
    let Some(client) = db.as_ref() else { return };
    let rows = match client
        .query(
            "SELECT table_schema::text, table_name::text FROM information_schema.tables
              WHERE table_schema = ANY($1) AND table_type = 'BASE TABLE'",
            &[&schemas],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the synced tables");
            return;
        }
    };
    let tables: Vec<TableName> = schemas
        .iter()
        .map(|s| TableName::new(s.as_str(), ALL_TABLES))
        .chain(
            rows.iter()
                .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))),
        )
        .collect();
    // Unchanged: keep the set (a new one drops the proxy's statement cache).
    let snapshot = synced.snapshot();
    let now: std::collections::HashSet<&TableName> = snapshot.tables().collect();
    let changed = now.len() != tables.len() || tables.iter().any(|t| !now.contains(t));
    drop(now);
    if changed {
        synced.replace(tables);
    }
}

/// How often write-through looks up the connections' objects again.
const CATALOG_EVERY: Duration = Duration::from_secs(60);

/// How often the journal's reconciler looks for transactions that ended.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);

/// Runs the proxy, with write-through, until `shutdown` turns true. Its
/// counters and write-through's go to `metrics`, which also learns when the
/// proxy listens (`/readyz`).
pub async fn proxy(
    config: &Config,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
    mut reloads: Option<watch::Receiver<Arc<Config>>>,
) -> Result<(), ServeError> {
    let p = config.proxy.as_ref().ok_or(ServeError::NoProxy)?;
    metrics.part(Part::Proxy, PartState::Starting);
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
    // The schema first (applied once; a no-op when in place, and
    // serialized with `sync`'s own migration in `sequin run`): the journal,
    // the guard and the connections' rows must exist before the first
    // client writes, and the synced tables before they are listed.
    let mut admin = crate::store::connect(&url).await?;
    crate::store::migrate_tables(&mut admin, &crate::catalog::to_migrate(config)).await?;
    // Before the first client write: its changes are events when asked for.
    crate::events::outbox::apply_settings(&admin, config, false).await?;
    // Every table of a connection's schema is synced, also one discovered
    // later (an Airtable table); Sequin's own schema is in the set too:
    // clients may not write it. The tables' names are listed as well, for
    // statements that name them without a schema (search_path).
    let mut schemas = schemas_of(config);
    // The config write-through runs now (reloads replace it).
    let mut running = Arc::new(config.clone());
    let synced = SyncedTables::new(
        schemas
            .iter()
            .map(|s| TableName::new(s.as_str(), ALL_TABLES)),
    );
    let mut db = None;
    refresh_synced(&synced, &mut db, &url, &schemas).await;
    pc.synced = synced.clone();
    let writes = Arc::new(Current(RwLock::new(
        WriteThrough::new(config, metrics).await?,
    )));
    // This process's key opens the guard for its journal sessions (which
    // write compensations); clients' statements write under grants.
    let registration = crate::guard::Registration::start(&url, &admin)
        .await
        .map_err(crate::store::db("registering this process's writer key"))?;
    drop(admin);
    let reconciler = tokio::spawn(write::reconcile::reconcile(
        url.clone(),
        writes.lookup(),
        RECONCILE_EVERY,
        p.journal_retention,
        shutdown.clone(),
    ));
    let proxy = Proxy::bind(pc, writes.clone())
        .await
        .map_err(|source| ServeError::Bind {
            listen: p.listen.clone(),
            source,
        })?;
    tracing::info!(listen = %proxy.local_addr(), "proxy listening");
    metrics.watch_proxy(proxy.stats());
    metrics.part(Part::Proxy, PartState::Started);
    let handle = proxy.spawn();
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            // New custom fields and tables reach write-through by this
            // refresh, or sooner when a statement names an unknown table.
            _ = tokio::time::sleep(TABLES_EVERY) => {
                refresh_synced(&synced, &mut db, &url, &schemas).await;
                ticks += 1;
                if ticks.is_multiple_of(CATALOG_EVERY.as_secs() / TABLES_EVERY.as_secs()) {
                    writes.get().refresh().await;
                }
            }
            Some(new) = next_config(&mut reloads) => {
                if reload(&writes, &running, &new, metrics).await {
                    schemas = schemas_of(&new);
                    refresh_synced(&synced, &mut db, &url, &schemas).await;
                    running = new;
                }
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        }
    }
    handle.shutdown(Duration::from_secs(5)).await;
    let _ = reconciler.await;
    registration.stop().await;
    Ok(())
}

/// The schemas the proxy guards: every connection's, and Sequin's own.
fn schemas_of(config: &Config) -> Vec<String> {
    config
        .connections
        .iter()
        .map(|c| c.name.clone())
        .chain(["sequin".to_string()])
        .collect()
}

/// The next config `reloads` brings (never, without reloads).
async fn next_config(reloads: &mut Option<watch::Receiver<Arc<Config>>>) -> Option<Arc<Config>> {
    let r = reloads.as_mut()?;
    match r.changed().await {
        Ok(()) => Some(r.borrow_and_update().clone()),
        Err(_) => {
            *reloads = None;
            None
        }
    }
}

/// Applies a new config's connections to write-through, when any of them
/// differs from the `running` config's: the tables of those added or
/// changed are created, then a write-through for the new connections
/// replaces the running one; statements already in flight end with the
/// old. Returns whether it was replaced (a failure is logged, and the
/// running one stays).
async fn reload(writes: &Current, running: &Config, new: &Config, metrics: &Metrics) -> bool {
    let changes = Changes::between(running, new);
    if changes.is_empty() {
        return false;
    }
    let url = new.database_url.expose();
    let replaced = match crate::catalog::migrate_connections(url, new, &changes.to_migrate()).await
    {
        Ok(()) => WriteThrough::new(new, metrics)
            .await
            .map_err(ServeError::from),
        Err(e) => Err(ServeError::from(e)),
    };
    match replaced {
        Ok(w) => {
            *writes.0.write().unwrap_or_else(|e| e.into_inner()) = w;
            tracing::info!(added = ?changes.added, removed = ?changes.removed, changed = ?changes.changed, "write-through reloaded");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "write-through not reloaded (fix it and send SIGHUP again); the running connections stay");
            false
        }
    }
}

/// The running write-through, replaced when the config is reloaded.
struct Current(RwLock<WriteThrough>);

impl Current {
    fn get(&self) -> WriteThrough {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Tables of whichever write-through runs, for the reconciler.
    fn lookup(self: &Arc<Self>) -> write::reconcile::Lookup {
        let current = self.clone();
        Arc::new(move |schema: &str, table: &str| current.get().table(schema, table))
    }
}

impl Interceptor for Current {
    fn intercept<'a>(
        &'a self,
        ctx: &'a mut InterceptContext<'_>,
    ) -> BoxFuture<'a, Result<Outcome, InjectError>> {
        let writes = self.get();
        Box::pin(async move { writes.intercept(ctx).await })
    }
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
        assert_eq!(d.tls.mode(), sequin_proxy::SslMode::Prefer);
        let off =
            upstream("postgres://u@127.0.0.1/app?sslmode=disable&application_name=x").unwrap();
        assert_eq!(off.tls.mode(), sequin_proxy::SslMode::Disable);
        assert!(
            upstream("postgres://u@127.0.0.1/app?sslmode=verify-full")
                .unwrap_err()
                .to_string()
                .contains("needs sslrootcert")
        );
    }
}
