//! Harness of the end-to-end tests in `tests/`: a fresh database, API
//! simulators, and the sync engine (and, when the config has `proxy:`, the
//! proxy with write-through) running in-process against them.

use std::time::{Duration, Instant};

use sequin_runtime::config::Config;
use sequin_runtime::sync;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A sync engine (and proxy) running in the background of a test.
pub struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), sync::SyncError>>,
    proxy: Option<JoinHandle<Result<(), sequin_runtime::serve::ServeError>>>,
    events: Option<JoinHandle<Result<(), sequin_runtime::store::StoreError>>>,
}

impl Running {
    /// Starts `sequin sync` in-process with `config_yaml`, and the proxy
    /// (`sequin run`) when the config has a `proxy:` section. The proxy
    /// starts once the sync engine has migrated the database; wait for
    /// [`wait_live`] before connecting through it.
    pub fn start(config_yaml: &str) -> Running {
        let config =
            Config::parse("test.yaml", config_yaml, &|_| None).expect("test config is valid");
        Running::start_config(config)
    }

    /// [`Running::start`] with a parsed config (a test may give a
    /// connection a variant of its connector's spec, `ConnectionConfig::spec`).
    pub fn start_config(config: Config) -> Running {
        let (stop, rx) = watch::channel(false);
        // One process's metrics, shared by its halves as in `sequin run`.
        let metrics = sequin_runtime::metrics::Metrics::new();
        let proxy = config.proxy.is_some().then(|| {
            let config = config.clone();
            let rx = rx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                // The proxy reads the synced tables the migration creates.
                let url = config.database_url.expose().to_string();
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    // Sequin's own way in: the URL may ask for TLS.
                    let migrated = match sequin_runtime::store::connect(&url).await {
                        Ok(c) => c
                            .query_opt("SELECT to_regclass('sequin.write_journal')::text", &[])
                            .await
                            .ok()
                            .flatten()
                            .and_then(|r| r.get::<_, Option<String>>(0))
                            .is_some(),
                        Err(_) => false,
                    };
                    if migrated || Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                sequin_runtime::serve::proxy(&config, &metrics, rx, None).await
            })
        });
        // Events beside them when the config asks, as `sequin run` does.
        let events = config.emits_events().then(|| {
            let config = config.clone();
            let rx = rx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move { sequin_runtime::events::run(&config, metrics, rx).await })
        });
        let options = sync::Options {
            once: false,
            metrics,
            reloads: None,
        };
        let task = tokio::spawn(async move { sync::run(&config, options, rx).await });
        Running {
            stop,
            task,
            proxy,
            events,
        }
    }

    /// Stops the engine (and proxy) and returns the engine's result.
    pub async fn stop(self) -> Result<(), sync::SyncError> {
        let _ = self.stop.send(true);
        if let Some(p) = self.proxy {
            let _ = p.await;
        }
        if let Some(e) = self.events {
            let _ = e.await;
        }
        self.task.await.expect("sync task does not panic")
    }

    /// Whether the engine stopped by itself (an error).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// The test kit's wait, used by every end-to-end test.
pub use sequin_pgtemp::eventually;

/// Waits until every object of `connection` is live, and stays so with no
/// object added for a moment (the tasks of an engine start concurrently: one
/// may not have recorded its state yet when the others are live).
pub async fn wait_live(db: &tokio_postgres::Client, connection: &str, limit: Duration) {
    let read = || async {
        db.query(
            "SELECT object, phase, last_error FROM sequin.sync_state
              WHERE connection = $1 AND object NOT IN ('_events', '_connection') ORDER BY object",
            &[&connection],
        )
        .await
        .map(|r| {
            r.iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, Option<String>>(2),
                    )
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    let start = Instant::now();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        let rows = eventually(left, "all objects live", || async {
            let rows = read().await;
            (!rows.is_empty() && rows.iter().all(|r| r.1 == "live"), rows)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if read().await == rows {
            return;
        }
    }
}
