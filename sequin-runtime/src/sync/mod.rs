//! The sync engine: backfill, then near-real-time incremental sync, of every
//! configured object into Postgres.
//!
//! Per connection:
//! - one task per object backfills page by page (each batch committed with
//!   its cursor, so a crash resumes where it stopped) and then polls for
//!   changes with the object's incremental strategy and delete detection;
//! - for connectors with an account-wide events feed (Stripe), one task
//!   polls the feed for every event-driven object once they are all live;
//!   the feed's cursor is taken *before* the backfill starts, so nothing
//!   that happens during the backfill is missed;
//! - objects and fields discovered at run time (Airtable tables, custom
//!   fields) are looked up at start and every discovery interval; new ones
//!   become tables and columns without a restart;
//! - a child object (listed only under a parent record) is listed under
//!   every parent once the parent is backfilled, again under each parent
//!   whose row changes, and its rows go with their parent's (`child.rs`);
//! - a link table (`links:` of the spec, HubSpot's associations) reads the
//!   links of its source records in batches once both objects are
//!   backfilled, again for each record of either object whose row changes,
//!   and all of them every `association_interval`, diffed (`links.rs`);
//! - an object with many records (at or above the connector's
//!   `async_query` threshold) backfills through one asynchronous query job
//!   (Salesforce's Bulk API 2.0) instead of paging its list; its job and
//!   results locator are checkpointed with the rows (`job.rs`);
//! - when the events feed is refused (a restricted key) and the spec allows
//!   it, event-driven objects are re-listed and diffed instead
//!   (`fallback.rs`).
//!
//! Data never goes backwards: every row carries an upstream update marker
//! and the store ignores a record older than the row it would replace.

mod backfill;
mod child;
mod connection;
mod discover;
mod error;
mod events;
mod fallback;
mod job;
mod lease;
mod links;
mod object;
mod poll;
pub mod progress;
mod quota;
mod window;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sequin_spec::model::{Incremental, Pagination};
use sequin_spec::record::{Cell, decode_row};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use crate::catalog::{self, ObjectPlan};
use crate::config::Config;
use crate::metrics::{Metrics, Part, PartState};
use crate::registry;
use crate::store::{self, Row, Table, Writer};

pub use connection::CONNECTION;
pub use error::SyncError;
pub use poll::PollCursor;

/// How the engine runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Backfill, do one incremental pass, and return.
    pub once: bool,
    /// Where API requests are counted and each connection says whether it
    /// has started (`/readyz`).
    pub metrics: Metrics,
    /// New versions of the config (SIGHUP): connections added, removed and
    /// changed are applied as they come.
    pub reloads: Option<watch::Receiver<Arc<Config>>>,
}

/// Runs every connection of `config` until `shutdown` turns true (or, with
/// `once`, until everything is backfilled and polled once).
pub async fn run(
    config: &Config,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let url = config.database_url.expose().to_string();
    let pool = store::Pool::new(&url, config.pool.settings());
    let mut admin = store::connect(&url).await?;
    // The `sequin` schema first: a running engine is counted among the
    // processes sharing the connections while it creates their tables.
    store::migrate_tables(&mut admin, &[]).await?;
    let worker = lease::Worker::new(pool.clone(), config.sync.failover);
    let migrating = async {
        store::migrate_tables(&mut admin, &catalog::to_migrate(config)).await?;
        // Before the first synced row: its changes are events when asked for.
        crate::events::outbox::apply_settings(&admin, config, false).await
    };
    match opts.once {
        true => migrating.await?,
        false => worker.live_during(migrating).await?,
    }
    let registration = crate::guard::Registration::start(&url, &admin)
        .await
        .map_err(store::db("registering this process's writer key"))?;
    // The migration's session is not needed while sync runs.
    drop(admin);
    opts.metrics.watch_pool(pool.stats());
    let engine = Engine {
        pool,
        backfills: Arc::new(Semaphore::new(config.sync.backfills)),
        opts,
    };
    // `--once` is a one-off pass over every connection; a running engine
    // syncs the connections whose leases it holds.
    let result = if engine.opts.once {
        engine.run_all(config, shutdown).await
    } else {
        lease::run_leased(config, &engine, worker, shutdown).await
    };
    registration.stop().await;
    result
}

/// What the connections of one engine share: the pool, the backfill
/// slots, the options.
struct Engine {
    pool: store::Pool,
    backfills: Arc<Semaphore>,
    opts: Options,
}

impl Engine {
    /// Starts `conn`, fenced by `fence` (its lease's token), until
    /// `shutdown`.
    fn start(
        &self,
        conn: &crate::config::ConnectionConfig,
        fence: Option<store::Fence>,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<Result<(), SyncError>> {
        self.opts
            .metrics
            .part(Part::Connection(conn.name.clone()), PartState::Starting);
        let sessions = Sessions {
            share: self.pool.share(conn.max_sessions),
            pool: self.pool.clone(),
            fence,
            backfills: self.backfills.clone(),
        };
        let conn = conn.clone();
        let opts = self.opts.clone();
        tokio::spawn(async move {
            let name = conn.name.clone();
            let connector = conn.connector.clone();
            connection::run_connection_resilient(sessions, conn, opts, shutdown)
                .await
                .map_err(|e| credentials_error(e, name, &connector))
        })
    }

    /// Every connection of `config` at once (no leases), until each ended;
    /// the first error.
    async fn run_all(
        &self,
        config: &Config,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), SyncError> {
        let tasks: Vec<_> = config
            .connections
            .iter()
            .map(|conn| self.start(conn, None, shutdown.clone()))
            .collect();
        let mut first_error = None;
        for task in tasks {
            if let Err(e) = ended(task.await) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// How a connection's task ended, logged when it failed.
fn ended(joined: Result<Result<(), SyncError>, tokio::task::JoinError>) -> Result<(), SyncError> {
    let result = match joined {
        Ok(r) => r,
        Err(e) => Err(SyncError::Decode(format!("sync task panicked: {e}"))),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "connection stopped");
    }
    result
}

/// Refused credentials, worded with the credentials the connector needs.
fn credentials_error(e: SyncError, connection: String, connector: &str) -> SyncError {
    match e {
        e @ SyncError::Api(_) if e.is_auth() => {
            let spec = &registry::get(connector).expect("config is checked").spec;
            let names: Vec<String> = crate::config::required_credentials(spec)
                .iter()
                .map(|c| format!("`{c}`"))
                .collect();
            SyncError::Credentials {
                connection,
                credentials: names.join(", "),
                source: Box::new(e),
            }
        }
        e => e,
    }
}

/// A connection's Postgres sessions: its share of the process's pool, the
/// fence of its lease, and the process's backfill slots.
#[derive(Clone)]
struct Sessions {
    pool: store::Pool,
    share: store::Share,
    fence: Option<store::Fence>,
    /// Objects backfilling at once in the process (`sync.backfills`): a
    /// backfill holds pages, batches and HTTP connections, and a thousand
    /// accounts starting together would hold them all at once.
    backfills: Arc<Semaphore>,
}

impl Sessions {
    /// A writer within the connection's share, committing only while the
    /// connection's lease holds.
    fn writer(&self) -> Writer {
        self.pool
            .writer(Some(self.share.clone()))
            .fenced(self.fence.clone())
    }
}

/// Shared by the tasks of one connection.
struct Ctx {
    api: catalog::Connection,
    sessions: Sessions,
    opts: Options,
    shutdown: watch::Receiver<bool>,
    /// When the connection started (microseconds since the epoch).
    started_us: i64,
    /// Set once the events feed is refused and the spec allows re-listing
    /// instead (`fallback.rs`).
    feed_refused: OnceLock<fallback::Refused>,
    /// The child objects synced under each parent table, whose rows go
    /// with their parent's (link tables discovered at run time join later).
    children: std::sync::RwLock<BTreeMap<String, Vec<ChildLink>>>,
}

/// A child object's table and the column holding its parent's key.
#[derive(Clone, Debug)]
struct ChildLink {
    table: Table,
    column: usize,
}

impl Ctx {
    /// A writer within the connection's share of the pool.
    fn writer(&self) -> Writer {
        self.sessions.writer()
    }

    /// Waits for one of the process's backfill slots.
    async fn backfill_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.sessions
            .backfills
            .clone()
            .acquire_owned()
            .await
            .expect("the backfill slots are never closed")
    }

    /// Whether `plan` is kept current by the events feed now (not when the
    /// feed was refused and the object is re-listed instead).
    fn by_events(&self, plan: &ObjectPlan) -> bool {
        matches!(*plan.incremental, Incremental::Events { .. }) && self.feed_refused.get().is_none()
    }

    /// Deletes the rows of `plan`'s table with the keys `keys`, and the
    /// rows of its child objects under them. Returns the rows deleted from
    /// `plan`'s table.
    async fn delete_rows(
        &self,
        writer: &mut Writer,
        plan: &ObjectPlan,
        keys: &[String],
    ) -> Result<u64, SyncError> {
        let n = writer
            .delete(&self.api.config.name, &plan.table, keys)
            .await?;
        self.delete_children(writer, &plan.table.name, keys).await?;
        Ok(n)
    }

    /// Deletes the rows of `parent`'s child objects under the parents `keys`.
    async fn delete_children(
        &self,
        writer: &Writer,
        parent: &str,
        keys: &[String],
    ) -> Result<(), SyncError> {
        if keys.is_empty() {
            return Ok(());
        }
        let children: Vec<ChildLink> = self
            .children
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(parent)
            .cloned()
            .unwrap_or_default();
        for child in &children {
            let n = writer
                .delete_where(&child.table, child.column, keys)
                .await?;
            if n > 0 {
                tracing::info!(connection = %self.api.config.name, table = %child.table.name, deleted = n, "children of deleted parents deleted");
            }
        }
        Ok(())
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps for `d`, or less if shutting down. Returns false when stopping.
    async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = rx.wait_for(|s| *s) => {}
        }
        !self.stopping()
    }

    fn pagination_with_size(&self, p: &Pagination) -> Pagination {
        let mut p = p.clone();
        if let Some(size) = self.api.config.page_size {
            let common = p.common_mut();
            common.page_size = Some(common.max_page_size.map_or(size, |m| size.min(m)));
        }
        p
    }
}

/// Decodes an API record into a row of the plan's table.
fn decode(plan: &ObjectPlan, record: &Value, fetched_at: i64) -> Result<Row, SyncError> {
    let cells = decode_row(&plan.table.columns, record).map_err(|e| {
        SyncError::Decode(format!("{}.{}: {e}", plan.table.schema, plan.table.name))
    })?;
    if cells[plan.table.primary_key].is_null() {
        return Err(SyncError::Decode(format!(
            "{}.{}: a record has no primary key ({})",
            plan.table.schema, plan.table.name, plan.table.columns[plan.table.primary_key].api_name
        )));
    }
    Ok(Row {
        updated_at: plan.marker_of_row(&cells, fetched_at),
        cells,
    })
}

fn pk_text(cells: &[Cell], pk: usize) -> Option<String> {
    cells[pk].to_pg_text()
}

/// A record's id as the table's primary key text, read at `path` (default:
/// the primary key's path): the ids of deleted-records and id listings.
fn record_id(plan: &ObjectPlan, record: &serde_json::Value, path: Option<&str>) -> Option<String> {
    let col = &plan.table.columns[plan.table.primary_key];
    let value = sequin_spec::record::get_path(record, path.unwrap_or(&col.path));
    sequin_spec::record::decode_cell(col, value)
        .ok()?
        .to_pg_text()
}
