//! The HTTP endpoint on `metrics.listen` (one per process):
//!
//! - `/metrics`: the process's [`Metrics`] in the Prometheus text format,
//!   with what Postgres holds read at the scrape (sync state of the objects
//!   this process syncs, journal entries of the connections it writes
//!   through);
//! - `/healthz`: 200 while the process is alive;
//! - `/readyz`: 200 when Postgres answers and every part of the process
//!   (each connection of the sync engine, the proxy) has started; 503
//!   otherwise, with one line per reason: Postgres unreachable and why, a
//!   part still starting, a part that failed with its error.
//!
//! Postgres is asked on one session of Sequin's own, kept between requests
//! and opened again when lost, within [`PROBE_TIMEOUT`]: a probe never
//! hangs on a server that does not answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::metrics::{Metrics, PartState};

/// How long a probe waits for Postgres (connecting, or one statement).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(
        "metrics.listen {listen}: cannot listen there: {source} (is another process using the port? set metrics.listen to a free one)"
    )]
    Bind {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the process does, for the values read from Postgres at a scrape.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Connections whose objects this process syncs.
    pub synced: Vec<String>,
    /// Connections this process writes through (and whose journal it
    /// settles).
    pub written: Vec<String>,
    /// Whether this process delivers events (its sinks' state is scraped).
    pub events: bool,
}

/// The endpoint, bound and not serving yet.
pub struct Endpoint {
    listener: TcpListener,
    state: Arc<Probe>,
}

/// What the handlers share.
struct Probe {
    metrics: Metrics,
    url: String,
    scope: Scope,
    /// The session probes use; `None` until opened or after it failed.
    session: tokio::sync::Mutex<Option<Client>>,
}

impl Endpoint {
    /// Binds `listen`; a port in use is an error that names `metrics.listen`.
    pub async fn bind(
        listen: SocketAddr,
        metrics: Metrics,
        database_url: &str,
        scope: Scope,
    ) -> Result<Endpoint, HealthError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| HealthError::Bind { listen, source })?;
        Ok(Endpoint {
            listener,
            state: Arc::new(Probe {
                metrics,
                url: database_url.to_string(),
                scope,
                session: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Serves until `shutdown` turns true.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.state);
        tracing::info!(listen = ?self.listener.local_addr().ok(), "metrics endpoint listening");
        let stopped = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(self.listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(probe): State<Arc<Probe>>) -> (StatusCode, String) {
    let mut reasons = Vec::new();
    if let Err(e) = probe.answering().await {
        reasons.push(format!("Postgres is unreachable: {e}"));
    }
    for (part, state) in probe.metrics.parts() {
        match state {
            PartState::Started => {}
            PartState::Starting => reasons.push(format!("{part} has not started yet")),
            PartState::Failed(e) => reasons.push(format!("{part} is not running: {e}")),
        }
    }
    if reasons.is_empty() {
        return (StatusCode::OK, "ready\n".to_string());
    }
    let mut body = String::from("not ready:\n");
    for r in reasons {
        body.push_str(&r);
        body.push('\n');
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn metrics(State(probe): State<Arc<Probe>>) -> impl IntoResponse {
    let text = match probe.answering().await {
        Ok(session) => {
            let client = session.as_ref().expect("an answering session");
            let scope = &probe.scope;
            let stored = crate::metrics::read_stored(
                client,
                &scope.synced,
                &scope.written,
                scope.events,
            )
            .await
            // Postgres answers, but not this (not migrated yet): the
            // scrape goes on without it.
            .inspect_err(
                |e| tracing::warn!(error = %e, "metrics: cannot read the sync state and journal"),
            )
            .ok();
            probe.metrics.encode(stored.as_ref(), true)
        }
        Err(_) => probe.metrics.encode(None, false),
    };
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    )
}

impl Probe {
    /// The probe session, once Postgres has answered on it (`SELECT 1`). A
    /// session that fails is dropped and one new session is tried at once
    /// (the server may have restarted since the last probe).
    async fn answering(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, String> {
        let mut session = self.session.lock().await;
        let mut last_error = String::new();
        for _ in 0..2 {
            if session.as_ref().is_none_or(Client::is_closed) {
                *session = Some(self.connect().await?);
            }
            let client = session.as_ref().expect("opened above");
            match tokio::time::timeout(PROBE_TIMEOUT, client.simple_query("SELECT 1")).await {
                Ok(Ok(_)) => return Ok(session),
                Ok(Err(e)) => last_error = crate::store::error_chain(&e),
                Err(_) => last_error = format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
            }
            *session = None;
        }
        Err(last_error)
    }

    /// A new probe session.
    async fn connect(&self) -> Result<Client, String> {
        match tokio::time::timeout(PROBE_TIMEOUT, crate::store::connect(&self.url)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no session within {}s (is the server up and the network open?)",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }
}
