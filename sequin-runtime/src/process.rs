//! One `sequin sync`, `proxy` or `run` process: its halves (the sync
//! engine, the proxy, or both), the [`Metrics`] they share, and the
//! endpoint of `metrics.listen` when the config has one.
//!
//! The endpoint is bound first, so a port in use stops the process before
//! any work; every part the process will run is registered as starting
//! before the endpoint answers, so `/readyz` never says ready before they
//! are.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::health::{Endpoint, HealthError, Scope};
use crate::metrics::{Metrics, Part, PartState};
use crate::serve::{self, ServeError};
use crate::sync::{self, SyncError};

/// Which halves a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halves {
    /// `sequin sync` (`once`: `--once`).
    Sync { once: bool },
    /// `sequin proxy`.
    Proxy,
    /// `sequin run`: sync and proxy.
    Both,
}

impl Halves {
    fn syncs(self) -> bool {
        matches!(self, Halves::Sync { .. } | Halves::Both)
    }

    fn proxies(self) -> bool {
        matches!(self, Halves::Proxy | Halves::Both)
    }
}

/// Why a process stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Metrics(#[from] HealthError),
    #[error("sync stopped: {0}")]
    Sync(#[source] SyncError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Runs `halves` of `config` until `shutdown` turns true (or, for
/// `sync --once`, until done).
pub async fn run(
    config: &Config,
    halves: Halves,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProcessError> {
    run_reloading(config, halves, shutdown, None).await
}

/// [`run`], applying the connections of each new config `reloads` brings
/// (SIGHUP, [`crate::config::reload`]).
pub async fn run_reloading(
    config: &Config,
    halves: Halves,
    shutdown: watch::Receiver<bool>,
    reloads: Option<watch::Receiver<Arc<Config>>>,
) -> Result<(), ProcessError> {
    let metrics = Metrics::new();
    let names: Vec<String> = config.connections.iter().map(|c| c.name.clone()).collect();
    let mut scope = Scope::default();
    if halves.syncs() {
        for name in &names {
            metrics.part(Part::Connection(name.clone()), PartState::Starting);
        }
        scope.synced = names.clone();
    }
    if halves.proxies() {
        metrics.part(Part::Proxy, PartState::Starting);
        scope.written = names;
    }
    scope.events = config.emits_events() && halves != Halves::Sync { once: true };
    let (stop_endpoint, endpoint_stopped) = watch::channel(false);
    let endpoint = match &config.metrics {
        Some(m) => {
            let e = Endpoint::bind(
                m.listen,
                metrics.clone(),
                config.database_url.expose(),
                scope,
            )
            .await?;
            Some(tokio::spawn(e.serve(endpoint_stopped)))
        }
        None => None,
    };
    // Events are delivered beside the halves, until they end (not by
    // `sync --once`, which ends: a later process delivers what it wrote).
    let (stop_events, events_stopped) = watch::channel(false);
    let events = (config.emits_events() && halves != Halves::Sync { once: true }).then(|| {
        let config = config.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move { crate::events::run(&config, metrics, events_stopped).await })
    });
    let ran = run_halves(config, halves, &metrics, shutdown, reloads).await;
    let _ = stop_events.send(true);
    if let Some(events) = events {
        match events.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "events stopped"),
            Err(e) => tracing::error!(error = %e, "events panicked"),
        }
    }
    let _ = stop_endpoint.send(true);
    if let Some(e) = endpoint {
        let _ = e.await;
    }
    ran
}

async fn run_halves(
    config: &Config,
    halves: Halves,
    metrics: &Metrics,
    shutdown: watch::Receiver<bool>,
    reloads: Option<watch::Receiver<Arc<Config>>>,
) -> Result<(), ProcessError> {
    let sync_options = |once| sync::Options {
        once,
        metrics: metrics.clone(),
        reloads: reloads.clone().filter(|_| !once),
    };
    match halves {
        Halves::Sync { once } => sync::run(config, sync_options(once), shutdown)
            .await
            .map_err(ProcessError::Sync),
        Halves::Proxy => Ok(serve::proxy(config, metrics, shutdown, reloads).await?),
        Halves::Both => {
            let (synced, proxied) = tokio::join!(
                sync::run(config, sync_options(false), shutdown.clone()),
                serve::proxy(config, metrics, shutdown, reloads.clone())
            );
            proxied?;
            synced.map_err(ProcessError::Sync)
        }
    }
}
