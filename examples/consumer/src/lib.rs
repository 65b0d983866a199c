//! An example consumer of Sequin's webhook events, for an application to
//! copy: it verifies each request's Standard Webhooks signature
//! ([`verify`]), dedupes deliveries on `webhook-id` and applies their events
//! idempotently into its own Postgres ([`apply`]).
//!
//! Routes:
//! - `POST /webhook`: a delivery (one event's payload or a `sequin.batch`).
//!   200 when taken (applied, or a duplicate); 401 for a bad signature or a
//!   stale timestamp; 400 for a body that is not an event; 500 when
//!   Postgres fails (Sequin retries).
//! - `GET /stats`: the [`Stats`] counters as JSON.
//! - `POST /control {"status": 500}`: a test aid for fault tests; every
//!   webhook request is answered with that status, untouched, until it is
//!   set back to 200.

pub mod apply;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// What the consumer runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// `whsec_<base64>` secrets; a request signed with any of them is taken.
    pub secrets: Vec<String>,
    /// Its own Postgres (not Sequin's).
    pub database_url: String,
}

/// Why the consumer could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("no --secret given (fix: pass the whsec_ secret Sequin signs with)")]
    NoSecret,
    #[error("--secret #{number}: {reason}")]
    Secret { number: usize, reason: String },
    #[error("cannot connect to --database-url: {0} (fix: check the URL and that Postgres is up)")]
    Connect(String),
    #[error("cannot create the tables seen and records: {0}")]
    Schema(String),
}

/// The counters of `GET /stats`.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Deliveries (requests) with a good signature.
    pub received: u64,
    /// Deliveries whose `webhook-id` was taken before.
    pub duplicates: u64,
    /// Events applied (newer than the record's stored seq).
    pub applied: u64,
    /// Events (of deliveries that were not duplicates) older than the
    /// record's stored seq.
    pub order_violations: u64,
    /// Requests refused with 401.
    pub bad_signatures: u64,
}

/// Postgres sessions deliveries are applied on, each delivery in one
/// transaction. Deliveries in flight together are of different records
/// (Sequin sends a record's next event only once the one before is
/// taken); a redelivery racing its first delivery is a duplicate on
/// whichever session commits second (`seen`'s key), so no order is lost.
const SESSIONS: usize = 4;

/// What the handlers share.
struct Consumer {
    keys: Vec<Vec<u8>>,
    /// [`SESSIONS`] sessions, taken in turn.
    db: Vec<Mutex<tokio_postgres::Client>>,
    next_session: AtomicUsize,
    /// The status `POST /control` set; 200 is normal operation.
    forced_status: AtomicU16,
    received: AtomicU64,
    duplicates: AtomicU64,
    applied: AtomicU64,
    order_violations: AtomicU64,
    bad_signatures: AtomicU64,
}

/// The consumer's routes (serve them with `axum::serve`), its secrets
/// decoded, connected to its database with the tables created.
pub async fn router(config: &Config) -> Result<Router, ConsumerError> {
    if config.secrets.is_empty() {
        return Err(ConsumerError::NoSecret);
    }
    let keys = config
        .secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            verify::decode_secret(s).map_err(|reason| ConsumerError::Secret {
                number: i + 1,
                reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut db = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let (client, connection) =
            tokio_postgres::connect(&config.database_url, tokio_postgres::NoTls)
                .await
                .map_err(|e| ConsumerError::Connect(with_cause(&e)))?;
        tokio::spawn(connection);
        db.push(Mutex::new(client));
    }
    db[0]
        .lock()
        .await
        .batch_execute(apply::SCHEMA)
        .await
        .map_err(|e| ConsumerError::Schema(with_cause(&e)))?;
    let consumer = Arc::new(Consumer {
        keys,
        db,
        next_session: AtomicUsize::new(0),
        forced_status: AtomicU16::new(200),
        received: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        applied: AtomicU64::new(0),
        order_violations: AtomicU64::new(0),
        bad_signatures: AtomicU64::new(0),
    });
    Ok(Router::new()
        .route("/webhook", post(webhook))
        .route("/stats", get(stats))
        .route("/control", post(control))
        .with_state(consumer))
}

/// A Postgres error with its cause (its own text is often just "error
/// connecting to server").
fn with_cause(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// The address a `--listen` value names, for the binary.
pub fn parse_listen(listen: &str) -> Result<SocketAddr, String> {
    listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e} (fix: give host:port, e.g. 127.0.0.1:8088)"))
}

async fn webhook(
    State(c): State<Arc<Consumer>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let forced = c.forced_status.load(Ordering::Relaxed);
    if forced != 200 {
        let status = StatusCode::from_u16(forced).expect("checked by control");
        return (status, "status forced by POST /control").into_response();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64;
    let id = match verify::verify(&c.keys, &headers, &body, now) {
        Ok(id) => id,
        Err(why) => {
            c.bad_signatures.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::UNAUTHORIZED, why).into_response();
        }
    };
    c.received.fetch_add(1, Ordering::Relaxed);
    let changes = match apply::parse(&body) {
        Ok(changes) => changes,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a Sequin event payload: {e}"),
            )
                .into_response();
        }
    };
    // Applied in a task of its own: a sender that hangs up mid-request (a
    // timeout, a crash) must not cut the work between the commit and the
    // counters; its retry then finds the id in `seen`.
    match tokio::spawn(apply_counted(c, id, changes)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("database: {e}")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("apply: {e}")).into_response(),
    }
}

/// One delivery applied ([`apply::deliver`]) and counted.
async fn apply_counted(
    c: Arc<Consumer>,
    id: String,
    changes: Vec<apply::Change>,
) -> Result<(), tokio_postgres::Error> {
    let session = c.next_session.fetch_add(1, Ordering::Relaxed) % c.db.len();
    let outcome = apply::deliver(&mut *c.db[session].lock().await, &id, &changes).await?;
    if outcome.duplicate {
        c.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    c.applied.fetch_add(outcome.applied, Ordering::Relaxed);
    c.order_violations
        .fetch_add(outcome.order_violations, Ordering::Relaxed);
    Ok(())
}

async fn stats(State(c): State<Arc<Consumer>>) -> Json<Stats> {
    let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
    Json(Stats {
        received: read(&c.received),
        duplicates: read(&c.duplicates),
        applied: read(&c.applied),
        order_violations: read(&c.order_violations),
        bad_signatures: read(&c.bad_signatures),
    })
}

/// `POST /control`'s body.
#[derive(Deserialize)]
struct Control {
    status: u16,
}

async fn control(State(c): State<Arc<Consumer>>, Json(control): Json<Control>) -> Response {
    if StatusCode::from_u16(control.status).is_err() || control.status < 200 {
        return (
            StatusCode::BAD_REQUEST,
            "status must be an HTTP status from 200 to 999",
        )
            .into_response();
    }
    c.forced_status.store(control.status, Ordering::Relaxed);
    Json(serde_json::json!({ "status": control.status })).into_response()
}
