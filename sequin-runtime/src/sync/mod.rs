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
//!   become tables and columns without a restart.
//!
//! Data never goes backwards: every row carries an upstream update marker
//! and the store ignores a record older than the row it would replace.

pub mod progress;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sequin_spec::model::{DeleteDetection, Incremental, Pagination, TimeFormat};
use sequin_spec::record::{Cell, Column, decode_row, encode_time, get_path};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::{self, Client, PageCursor, Vars};
use crate::catalog::{self, ObjectPlan, now_us, plan};
use crate::config::{Config, ConnectionConfig};
use crate::metrics::{Metrics, Part, PartState, Purpose};
use crate::registry::{self, Loaded};
use crate::store::{self, Checkpoint, CopyBatch, Phase, Row, StoreError, Writer};

/// Errors that stop a sync task.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(Box<api::ApiError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog's errors but the API's (which are [`SyncError::Api`]).
    #[error(transparent)]
    Catalog(catalog::Error),
    #[error("{0}")]
    Decode(String),
    /// The API refused the connection's credentials: retrying cannot help,
    /// so the connection stops and says what to change.
    #[error(
        "connection `{connection}`: {source}; the credentials were refused: update {credentials} in the config (or the environment variable it comes from) and start sequin again"
    )]
    Credentials {
        connection: String,
        /// The credential names, quoted (`` `api_key` ``).
        credentials: String,
        #[source]
        source: Box<SyncError>,
    },
}

impl From<api::ApiError> for SyncError {
    fn from(e: api::ApiError) -> SyncError {
        SyncError::Api(Box::new(e))
    }
}

impl From<catalog::Error> for SyncError {
    fn from(e: catalog::Error) -> SyncError {
        match e {
            catalog::Error::Api(e) => SyncError::Api(e),
            e => SyncError::Catalog(e),
        }
    }
}

impl SyncError {
    /// Whether waiting may cure the error: the database unreachable or its
    /// session lost (a restart), the API down, timing out, limiting or
    /// answering garbage.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Store(StoreError::Connect { .. }) => true,
            // A refused certificate or sslmode waits for the operator.
            SyncError::Store(StoreError::Tls { .. }) => false,
            SyncError::Store(StoreError::Db { source, .. }) => match source.code() {
                None => true,
                Some(c) => {
                    let c = c.code();
                    // 55P03: a lock an application's transaction holds
                    // (sync sessions wait at most 300 ms, then retry).
                    c.starts_with("08")
                        || c.starts_with("57P")
                        || c == "40001"
                        || c == "40P01"
                        || c == "55P03"
                }
            },
            SyncError::Api(e) => match e.kind {
                api::ErrorKind::Timeout
                | api::ErrorKind::Network
                | api::ErrorKind::RateLimited
                | api::ErrorKind::Decode => true,
                api::ErrorKind::Http => e.status.is_none_or(|s| s >= 500),
                api::ErrorKind::Auth | api::ErrorKind::Config => false,
            },
            SyncError::Decode(_) => true,
            SyncError::Catalog(_) | SyncError::Credentials { .. } => false,
        }
    }

    /// Whether the API refused the credentials (HTTP 401 after any token
    /// refresh, or an OAuth token endpoint refusing the refresh token).
    /// Such an error stops the whole connection instead of being retried.
    pub fn is_auth(&self) -> bool {
        match self {
            SyncError::Api(e) => e.status == Some(401) || e.kind == api::ErrorKind::Auth,
            SyncError::Credentials { .. } => true,
            _ => false,
        }
    }
}

/// How the engine runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Backfill, do one incremental pass, and return.
    pub once: bool,
    /// Where API requests are counted and each connection says whether it
    /// has started (`/readyz`).
    pub metrics: Metrics,
}

/// Records per transaction during backfill (several pages per commit).
const BATCH_RECORDS: usize = 5000;

/// COPY batches of one backfill: one being filled by the fetcher, one
/// waiting in the channel, one being written. They go back to the fetcher
/// once written, so their buffers are allocated once per backfill, not
/// once per batch (allocating ~3 MB buffers per batch on one thread and
/// freeing them on another left the allocator's heaps growing with the
/// volume synced).
const BATCHES_IN_FLIGHT: usize = 3;

/// First pause before a failed backfill resumes (doubling up to the max).
const BACKFILL_RETRY_BASE: Duration = Duration::from_millis(500);
const BACKFILL_RETRY_MAX: Duration = Duration::from_secs(60);

/// Overlap of updated-since polls, for records whose update time was
/// assigned before their change became visible upstream.
const OVERLAP_US: i64 = 1_000_000;

/// Runs every connection of `config` until `shutdown` turns true (or, with
/// `once`, until everything is backfilled and polled once).
pub async fn run(
    config: &Config,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let url = config.database_url.expose().to_string();
    let mut admin = store::connect(&url).await?;
    let loaded: Vec<(&str, &Loaded)> = config
        .connections
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                registry::get(&c.connector).expect("config is checked"),
            )
        })
        .collect();
    store::migrate(&mut admin, &loaded).await?;
    let registration = crate::guard::Registration::start(&url, &admin)
        .await
        .map_err(store::db("registering this process's writer key"))?;
    let mut tasks = tokio::task::JoinSet::new();
    for conn in &config.connections {
        opts.metrics
            .part(Part::Connection(conn.name.clone()), PartState::Starting);
        let conn = conn.clone();
        let url = url.clone();
        let opts = opts.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let name = conn.name.clone();
            let connector = conn.connector.clone();
            run_connection_resilient(url, conn, opts, shutdown)
                .await
                .map_err(|e| match e {
                    e @ SyncError::Api(_) if e.is_auth() => {
                        let spec = &registry::get(&connector).expect("config is checked").spec;
                        let names: Vec<String> = crate::config::required_credentials(spec)
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect();
                        SyncError::Credentials {
                            connection: name,
                            credentials: names.join(", "),
                            source: Box::new(e),
                        }
                    }
                    e => e,
                })
        });
    }
    let mut first_error = None;
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "connection stopped");
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(SyncError::Decode(format!("sync task panicked: {e}")));
            }
        }
    }
    registration.stop().await;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Shared by the tasks of one connection.
struct Ctx {
    api: catalog::Connection,
    url: String,
    opts: Options,
    shutdown: watch::Receiver<bool>,
}

impl Ctx {
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

async fn run_connection(
    url: String,
    conn: ConnectionConfig,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let name = conn.name.clone();
    let metrics = opts.metrics.clone();
    let result = run_connection_inner(url.clone(), conn, opts, shutdown).await;
    if let Err(e) = &result {
        metrics.part(
            Part::Connection(name.clone()),
            PartState::Failed(e.to_string()),
        );
        // Make a connection-level failure (bad credentials, unreachable API)
        // visible in `sequin status`, not only in the log.
        if let Ok(w) = Writer::connect(&url).await {
            let _ = w.state(&name, CONNECTION).await;
            let _ = w.record_error(&name, CONNECTION, &e.to_string()).await;
        }
    }
    result
}

/// First pause before a connection that failed transiently starts again
/// (doubling up to [`RESTART_MAX`]).
const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);

/// Runs a connection, starting it again (from its checkpoints) after a
/// failure that waiting can cure: the database restarting or unreachable,
/// the API down, timing out or limiting. Credentials, configuration and
/// spec problems stop it.
async fn run_connection_resilient(
    url: String,
    conn: ConnectionConfig,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let mut pause = RESTART_MIN;
    loop {
        let started = Instant::now();
        match run_connection(url.clone(), conn.clone(), opts.clone(), shutdown.clone()).await {
            // `--once` reports failures instead of waiting them out.
            Err(e) if e.is_transient() && !opts.once && !*shutdown.borrow() => {
                if started.elapsed() > RESTART_MAX * 2 {
                    pause = RESTART_MIN;
                }
                tracing::warn!(connection = %conn.name, error = %e, retry_in = ?pause, "connection failed; starting it again");
                let mut rx = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = async { let _ = rx.wait_for(|s| *s).await; } => return Ok(()),
                }
                pause = (pause * 2).min(RESTART_MAX);
            }
            other => return other,
        }
    }
}

/// The pseudo-object under which connection-level errors are recorded.
pub const CONNECTION: &str = "_connection";

async fn run_connection_inner(
    url: String,
    conn: ConnectionConfig,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let api = catalog::Connection::open(&url, &conn, &opts.metrics)?;
    let ctx = Arc::new(Ctx {
        api,
        url,
        opts,
        shutdown,
    });
    let plans = ctx.api.plans().await?;
    // The connection runs (again): an earlier connection-level error (see
    // `run_connection`) no longer holds.
    // Every object is in `sequin status` (and backfilling) from the start,
    // not only once its task gets going.
    let w = Writer::connect(&ctx.url).await?;
    let _ = w.clear_state(&ctx.api.config.name, CONNECTION).await;
    for p in &plans {
        w.state(&ctx.api.config.name, &p.table.name).await?;
    }
    drop(w);
    ctx.opts.metrics.part(
        Part::Connection(ctx.api.config.name.clone()),
        PartState::Started,
    );
    // The events feed cursor is captured before any backfill starts.
    let event_objects: Vec<ObjectPlan> = plans
        .iter()
        .filter(|p| matches!(p.incremental, Incremental::Events { .. }))
        .cloned()
        .collect();
    let (live_tx, live_rx) = watch::channel(0usize);
    let live_tx = Arc::new(live_tx);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(Incremental::Events { .. }) = event_objects.first().map(|p| &p.incremental) {
        let mut writer = Writer::connect(&ctx.url).await?;
        events::ensure_cursor(&ctx, &mut writer, &event_objects[0]).await?;
        let ctx2 = ctx.clone();
        let objects = event_objects.clone();
        tasks.spawn(async move { events::run(ctx2, objects, live_rx).await });
    }
    // Runtime-defined objects (Airtable tables) are looked up again every
    // discovery interval: a new table gets its own task, and the tasks of
    // known tables pick up added fields from this channel.
    let dynamic: Vec<ObjectPlan> = plans.iter().filter(|p| p.dynamic_table).cloned().collect();
    let mut known: std::collections::HashSet<String> =
        dynamic.iter().map(|p| p.api_name.clone()).collect();
    let (discovered_tx, discovered_rx) = watch::channel(Arc::new(dynamic));
    let spawn = |tasks: &mut tokio::task::JoinSet<Result<(), SyncError>>, plan: ObjectPlan| {
        let ctx = ctx.clone();
        let live_tx = live_tx.clone();
        let discovered = discovered_rx.clone();
        tasks.spawn(async move { run_object(ctx, plan, live_tx, discovered).await });
    };
    for plan in plans {
        spawn(&mut tasks, plan);
    }
    let rediscover_every = match &ctx.api.spec.discovered_objects {
        Some(d) if !ctx.opts.once => ctx
            .api
            .config
            .discovery_interval
            .or_else(|| crate::config::parse_duration(&d.every)),
        _ => None,
    };
    let mut first_error = None;
    loop {
        let tick = async {
            match rediscover_every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            res = tasks.join_next() => match res {
                None => break,
                Some(Ok(Err(e))) => {
                    tracing::error!(connection = %ctx.api.config.name, error = %e, "sync task stopped");
                    // Refused credentials fail every task of the connection:
                    // stop them all (the error is recorded in sync_state).
                    if e.is_auth() {
                        tasks.abort_all();
                    }
                    // A lost database session or the like: stop every task,
                    // and the connection starts again from its checkpoints
                    // (see `run_connection_resilient`).
                    if e.is_transient() && !ctx.opts.once {
                        tasks.abort_all();
                        return Err(e);
                    }
                    first_error.get_or_insert(e);
                }
                Some(_) => {}
            },
            _ = tick => {
                if ctx.stopping() {
                    continue;
                }
                match ctx.api.discover_objects().await {
                    Ok(found) => {
                        let found: Vec<ObjectPlan> = found
                            .into_iter()
                            .filter(|p| ctx.api.wants(&p.table.name))
                            .collect();
                        for p in &found {
                            if known.insert(p.api_name.clone()) {
                                tracing::info!(connection = %ctx.api.config.name, table = %p.table.name, "new table discovered");
                                spawn(&mut tasks, p.clone());
                            }
                        }
                        discovered_tx.send_replace(Arc::new(found));
                    }
                    Err(e) => {
                        tracing::warn!(connection = %ctx.api.config.name, error = %e, "object discovery failed");
                    }
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Applies discovered fields: new columns are added to the table. Returns
/// the columns added.
async fn refresh_fields(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &mut ObjectPlan,
) -> Result<Vec<String>, SyncError> {
    if plan.discovered_fields.is_none() {
        return Ok(Vec::new());
    }
    let found = ctx.api.discover_fields(plan).await?;
    let (cols, types): (Vec<Column>, Vec<String>) = found.into_iter().unzip();
    let next = plan.with_discovered(cols);
    if next.table.columns == plan.table.columns {
        return Ok(Vec::new());
    }
    let mut all_types: Vec<String> = vec![String::new(); next.static_columns];
    all_types.extend(types);
    let added = writer
        .ensure_table(&ctx.api.config.name, &next.table, &all_types)
        .await?;
    if !added.is_empty() {
        tracing::info!(connection = %ctx.api.config.name, table = %next.table.name, columns = ?added, "new columns discovered");
    }
    *plan = next;
    Ok(added)
}

/// Takes the latest columns of a discovered table (fields added to an
/// Airtable table) from the connection's discovery. Returns the columns
/// added to the Postgres table.
async fn refresh_dynamic(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &mut ObjectPlan,
    discovered: &mut watch::Receiver<Arc<Vec<ObjectPlan>>>,
) -> Result<Vec<String>, SyncError> {
    if !discovered.has_changed().unwrap_or(false) {
        return Ok(Vec::new());
    }
    let latest = discovered.borrow_and_update().clone();
    let Some(found) = latest.iter().find(|p| p.api_name == plan.api_name) else {
        return Ok(Vec::new());
    };
    if found.table.columns == plan.table.columns {
        return Ok(Vec::new());
    }
    // The table keeps its name (a renamed Airtable table is still this one);
    // columns that disappeared upstream stay in Postgres with their data.
    let mut next = plan.clone();
    next.table.columns = found.table.columns.clone();
    next.static_columns = next.table.columns.len();
    next.marker = found.marker.clone();
    let types = vec![String::new(); next.table.columns.len()];
    let added = writer
        .ensure_table(&ctx.api.config.name, &next.table, &types)
        .await?;
    if !added.is_empty() {
        tracing::info!(connection = %ctx.api.config.name, table = %next.table.name, columns = ?added, "new columns discovered");
    }
    *plan = next;
    Ok(added)
}

/// Lists the whole object again after columns were added, so the values
/// records already hold in the new fields arrive: adding a field upstream
/// does not change the records' update markers, so an incremental poll
/// would never bring them.
async fn resync(ctx: &Ctx, writer: &mut Writer, plan: &ObjectPlan) -> Result<(), SyncError> {
    if matches!(plan.incremental, Incremental::FullRefresh) {
        // The next poll lists everything anyway.
        return Ok(());
    }
    let seen = full_list(ctx, writer, plan).await?;
    tracing::info!(connection = %ctx.api.config.name, table = %plan.table.name, records = seen.len(), "re-listed for new columns");
    Ok(())
}

/// Backfills one object, then keeps it current.
async fn run_object(
    ctx: Arc<Ctx>,
    mut plan: ObjectPlan,
    live_tx: Arc<watch::Sender<usize>>,
    mut discovered: watch::Receiver<Arc<Vec<ObjectPlan>>>,
) -> Result<(), SyncError> {
    let mut writer = Writer::connect(&ctx.url).await?;
    let name = ctx.api.config.name.clone();
    let mut added = match refresh_fields(&ctx, &mut writer, &mut plan).await {
        Ok(added) => added,
        Err(e) => {
            // Shown by `sequin status` when the object was synced before.
            writer
                .record_error(&name, &plan.table.name, &e.to_string())
                .await?;
            return Err(e);
        }
    };
    if plan.dynamic_table {
        let types = vec![String::new(); plan.table.columns.len()];
        added = writer.ensure_table(&name, &plan.table, &types).await?;
    }
    let mut state = writer.state(&name, &plan.table.name).await?;
    // Fields added upstream while Sequin was stopped need a re-list (a
    // backfill lists them anyway).
    let mut pending_resync = state.phase == Phase::Live && !added.is_empty();
    // A backfill that fails (the API down for longer than the client's
    // retries, a database hiccup) resumes from its last checkpoint after a
    // growing pause, rather than leaving the object half-synced while the
    // rest of the process runs on. Refused credentials stop it for good.
    let mut failures: u32 = 0;
    while state.phase == Phase::Backfilling {
        // A resumed backfill counts the records its earlier runs committed.
        let resumed = match &state.backfill_cursor {
            Some(_) => state.rows_synced.max(0) as u64,
            None => 0,
        };
        let Err(e) = backfill(
            &ctx,
            &mut writer,
            &plan,
            state.backfill_cursor.take(),
            state.incremental_cursor.is_none(),
            resumed,
        )
        .await
        else {
            break;
        };
        // Shown by `sequin status`; the committed batches stay.
        writer
            .record_error(&name, &plan.table.name, &e.to_string())
            .await?;
        if ctx.opts.once || e.is_auth() {
            return Err(e);
        }
        failures += 1;
        let pause = BACKFILL_RETRY_BASE
            .saturating_mul(1u32 << failures.min(6))
            .min(BACKFILL_RETRY_MAX);
        tracing::warn!(connection = %name, table = %plan.table.name, error = %e, pause_ms = pause.as_millis() as u64, "backfill failed; resuming from the last checkpoint");
        if !ctx.sleep(pause).await {
            return Ok(());
        }
        // The checkpoint, and the incremental cursor captured by the first
        // attempt (which must not move past changes made meanwhile).
        state = writer.state(&name, &plan.table.name).await?;
    }
    if matches!(plan.incremental, Incremental::Events { .. }) {
        live_tx.send_modify(|n| *n += 1);
    }
    let discovery_every = discovery_interval(&ctx, &plan);
    let mut last_discovery = Instant::now();
    loop {
        if !matches!(plan.incremental, Incremental::Events { .. }) {
            match poll_once(&ctx, &mut writer, &plan).await {
                Ok(()) => {}
                Err(e) if ctx.opts.once || e.is_auth() => {
                    writer
                        .record_error(&name, &plan.table.name, &e.to_string())
                        .await?;
                    return Err(e);
                }
                // The database session is gone (a restart): the connection
                // starts again with new sessions.
                Err(e) if writer.client().is_closed() => return Err(e),
                Err(e) => {
                    tracing::warn!(connection = %name, table = %plan.table.name, error = %e, "poll failed; will retry");
                    writer
                        .record_error(&name, &plan.table.name, &e.to_string())
                        .await?;
                }
            }
        }
        if ctx.opts.once || ctx.stopping() {
            return Ok(());
        }
        let refreshed = if plan.dynamic_table {
            refresh_dynamic(&ctx, &mut writer, &mut plan, &mut discovered).await
        } else if let Some(every) = discovery_every
            && last_discovery.elapsed() >= every
        {
            last_discovery = Instant::now();
            refresh_fields(&ctx, &mut writer, &mut plan).await
        } else {
            Ok(Vec::new())
        };
        match refreshed {
            Ok(added) => pending_resync |= !added.is_empty(),
            Err(e) => {
                tracing::warn!(connection = %name, table = %plan.table.name, error = %e, "field discovery failed");
            }
        }
        if pending_resync {
            match resync(&ctx, &mut writer, &plan).await {
                Ok(()) => pending_resync = false,
                Err(e) => {
                    tracing::warn!(connection = %name, table = %plan.table.name, error = %e, "re-listing for new columns failed; will retry");
                }
            }
        }
        if !ctx.sleep(ctx.api.config.poll_interval).await {
            return Ok(());
        }
    }
}

fn discovery_interval(ctx: &Ctx, plan: &ObjectPlan) -> Option<Duration> {
    let spec_every = plan
        .discovered_fields
        .as_ref()
        .map(|d| d.every.as_str())
        .or(ctx
            .api
            .spec
            .discovered_objects
            .as_ref()
            .map(|d| d.every.as_str()))?;
    ctx.api
        .config
        .discovery_interval
        .or_else(|| crate::config::parse_duration(spec_every))
}

/// Pages through the list endpoint from the checkpointed cursor, committing
/// every batch with the cursor that follows it. `resumed`: records earlier
/// runs of this backfill committed (for progress).
async fn backfill(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    cursor: Option<Value>,
    capture_incremental: bool,
    resumed: u64,
) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    let started = now_us();
    // Where incremental polling will start once the backfill is done.
    if capture_incremental {
        let initial = match &plan.incremental {
            Incremental::UpdatedSince { .. } | Incremental::Search { .. } => {
                Some(json!({ "since": started }))
            }
            _ => None,
        };
        let deletes_since = json!({ "deletes_since": started });
        let mut cursor = initial.unwrap_or(json!({}));
        if let (Value::Object(a), Value::Object(b)) = (&mut cursor, deletes_since) {
            a.extend(b);
        }
        writer
            .apply(
                name,
                &plan.table,
                &[],
                &[],
                &Checkpoint {
                    incremental_cursor: Some(Some(cursor)),
                    ..Default::default()
                },
            )
            .await?;
    }
    let cursor: Option<PageCursor> = match cursor {
        Some(v) => Some(
            serde_json::from_value(v)
                .map_err(|e| SyncError::Decode(format!("bad stored cursor: {e}")))?,
        ),
        None => None,
    };
    let t0 = Instant::now();
    tracing::info!(connection = %name, table = %plan.table.name, "backfill started");
    let mut progress = progress::Backfill::start(name, &plan.table.name, resumed);
    // A task of its own fetches and encodes pages while this one writes, so
    // the API, Sequin and Postgres work at the same time. The channel holds
    // one batch; written batches go back to the fetcher to be refilled.
    let (batches, mut ready) = tokio::sync::mpsc::channel(1);
    let (spare_tx, spare) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
    for _ in 0..BATCHES_IN_FLIGHT {
        spare_tx
            .try_send(CopyBatch::new(plan.table.primary_key))
            .expect("the channel holds every batch");
    }
    let _fetcher = AbortOnDrop(tokio::spawn(fetch_batches(
        BatchSource {
            client: ctx.api.client.with_purpose(Purpose::Backfill),
            plan: plan.clone(),
            pagination: ctx.pagination_with_size(&plan.pagination),
            vars: ctx.api.vars(Some(plan)),
            stop: ctx.shutdown.clone(),
        },
        cursor,
        batches,
        spare,
    )));
    let mut written = 0usize;
    let mut recorded_total = None;
    // Where a batch's time goes (debug log): waiting for the fetcher (API
    // and decoding) or writing (Postgres).
    let mut waiting_since = Instant::now();
    while let Some(encoded) = ready.recv().await {
        let waited = waiting_since.elapsed();
        let Encoded {
            mut batch,
            next,
            total,
        } = encoded?;
        if let Some(t) = total
            && recorded_total != Some(t)
        {
            // For `sequin status`'s percentage; the bar gets it at once.
            progress.set_total(t);
            writer
                .record_backfill_total(name, &plan.table.name, t)
                .await?;
            recorded_total = Some(t);
        }
        let done = next.is_none();
        let checkpoint = if done {
            Checkpoint {
                phase: Some(Phase::Live),
                backfill_cursor: Some(None),
                ..Default::default()
            }
        } else {
            Checkpoint {
                backfill_cursor: Some(Some(
                    serde_json::to_value(&next).expect("cursors serialize"),
                )),
                ..Default::default()
            }
        };
        let records = batch.len();
        let writing = Instant::now();
        writer
            .apply_batch(name, &plan.table, &mut batch, &[], &checkpoint)
            .await?;
        let wrote = writing.elapsed();
        // Back to the fetcher for refilling (it is gone when it finished).
        batch.clear();
        let _ = spare_tx.try_send(batch);
        waiting_since = Instant::now();
        written += records;
        tracing::debug!(
            connection = %name,
            table = %plan.table.name,
            records,
            wait_ms = waited.as_millis() as u64,
            write_ms = wrote.as_millis() as u64,
            "backfill batch written"
        );
        progress.advance(records as u64);
        if done {
            let secs = t0.elapsed().as_secs_f64();
            tracing::info!(
                connection = %name,
                table = %plan.table.name,
                records = written,
                per_sec = (written as f64 / secs.max(1e-9)) as u64,
                "backfill done"
            );
            progress.finish();
            return Ok(());
        }
        if ctx.stopping() {
            return Ok(());
        }
    }
    // The fetcher stopped early: shutting down.
    Ok(())
}

/// A spawned task that is aborted when its handle is dropped (an early
/// return of its owner must not leave it running).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the backfill's fetching task needs (owned: it runs on its own).
struct BatchSource {
    client: Client,
    plan: ObjectPlan,
    pagination: Pagination,
    vars: Vars,
    stop: watch::Receiver<bool>,
}

impl BatchSource {
    /// Starts fetching the page at `cursor`.
    fn fetch(&self, cursor: Option<PageCursor>) -> AbortOnDrop<Result<api::Page, api::ApiError>> {
        let client = self.client.clone();
        let endpoint = self.plan.endpoints.list.clone();
        let pagination = self.pagination.clone();
        let vars = self.vars.clone();
        AbortOnDrop(tokio::spawn(async move {
            client
                .fetch_page(&endpoint, Some(&pagination), &vars, cursor.as_ref(), None)
                .await
        }))
    }
}

/// A batch of encoded rows, the cursor of the page after it (`None`: the
/// last batch) and the listing's size if the API gives it.
struct Encoded {
    batch: CopyBatch,
    next: Option<PageCursor>,
    total: Option<u64>,
}

/// Pages through the list from `cursor`, encoding records into batches of
/// [`BATCH_RECORDS`] and sending each with the cursor that follows it. The
/// next page is requested before the current one is decoded. Batches to
/// fill come from `spare` (the writer returns them once written).
async fn fetch_batches(
    source: BatchSource,
    cursor: Option<PageCursor>,
    out: tokio::sync::mpsc::Sender<Result<Encoded, SyncError>>,
    mut spare: tokio::sync::mpsc::Receiver<CopyBatch>,
) {
    let run = async {
        let mut in_flight = source.fetch(cursor);
        let Some(mut batch) = spare.recv().await else {
            return Ok(());
        };
        let mut total = None;
        loop {
            let page = (&mut in_flight.0)
                .await
                .map_err(|e| SyncError::Decode(format!("page fetch task failed: {e}")))??;
            let fetched_at = now_us();
            let next = page.next.clone();
            if let Some(n) = &next {
                in_flight = source.fetch(Some(n.clone()));
            }
            total = page.total.or(total);
            for r in &page.records {
                batch.push(&decode(&source.plan, r, fetched_at)?);
            }
            // The page's records are dropped here, on the thread that
            // decoded them, before waiting for anything.
            drop(page);
            if batch.len() >= BATCH_RECORDS || next.is_none() {
                let Some(empty) = spare.recv().await else {
                    // The writer stopped (error or shutdown).
                    return Ok(());
                };
                let full = std::mem::replace(&mut batch, empty);
                let encoded = Encoded {
                    batch: full,
                    next: next.clone(),
                    total,
                };
                if out.send(Ok(encoded)).await.is_err() {
                    return Ok(());
                }
            }
            if next.is_none() || *source.stop.borrow() {
                return Ok(());
            }
        }
    };
    if let Err(e) = run.await {
        let _ = out.send(Err(e)).await;
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

/// One incremental poll (non-events strategies) plus delete detection.
async fn poll_once(ctx: &Ctx, writer: &mut Writer, plan: &ObjectPlan) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    let state = writer.state(name, &plan.table.name).await?;
    let mut cursor = state.incremental_cursor.unwrap_or(json!({}));
    let poll_started = now_us();
    let mut changed = 0u64;
    match &plan.incremental {
        Incremental::UpdatedSince {
            since_param,
            since_format,
            endpoint,
            ..
        } => {
            let since = cursor.get("since").and_then(Value::as_i64).unwrap_or(0);
            let vars = ctx
                .api
                .vars(Some(plan))
                .with("since", format_since(since - OVERLAP_US, *since_format));
            let mut ep = endpoint
                .clone()
                .unwrap_or_else(|| plan.endpoints.list.clone());
            if let (None, Some(param)) = (endpoint, since_param) {
                ep.query.insert(param.clone(), "{since}".into());
            }
            let (n, max) = pull_all(
                ctx,
                writer,
                plan,
                &ep,
                &ctx.pagination_with_size(&plan.pagination),
                &vars,
                None,
            )
            .await?;
            changed += n;
            if let Some(m) = max {
                cursor["since"] = json!(m.max(since));
            }
        }
        Incremental::Search {
            endpoint,
            body,
            pagination,
            since_format,
            max_results,
            ..
        } => {
            let mut since = cursor.get("since").and_then(Value::as_i64).unwrap_or(0);
            loop {
                let vars = ctx
                    .api
                    .vars(Some(plan))
                    .with("since", format_since(since - OVERLAP_US, *since_format));
                let (n, max, capped) = pull_search(
                    ctx,
                    writer,
                    plan,
                    endpoint,
                    pagination,
                    &vars,
                    body.clone(),
                    *max_results,
                )
                .await?;
                changed += n;
                if let Some(m) = max {
                    since = since.max(m);
                }
                // The search caps results; start again after the newest seen.
                if !capped || max.is_none() {
                    break;
                }
            }
            cursor["since"] = json!(since);
        }
        Incremental::FullRefresh => {
            let seen = full_list(ctx, writer, plan).await?;
            // Rows written since the list began (a write-through insert
            // made after the list passed its page) are not gone.
            let gone = writer.stale_keys(&plan.table, &seen, poll_started).await?;
            changed += writer
                .apply(name, &plan.table, &[], &gone, &Checkpoint::default())
                .await?;
        }
        Incremental::Events { .. } => {}
    }
    // Delete detection.
    match &plan.deletes {
        Some(DeleteDetection::DeletedList {
            endpoint,
            records,
            pagination,
            since_format,
        }) => {
            let since = cursor
                .get("deletes_since")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let vars = ctx
                .api
                .vars(Some(plan))
                .with("since", format_since(since - OVERLAP_US, *since_format));
            let mut ep = endpoint.clone();
            ep.records = Some(records.clone());
            let pagination = pagination
                .clone()
                .unwrap_or_else(|| plan.pagination.clone());
            let mut ids = Vec::new();
            let mut newest: Option<i64> = None;
            let mut page_cursor: Option<PageCursor> = None;
            loop {
                let page = ctx
                    .api
                    .client
                    .fetch_page(&ep, Some(&pagination), &vars, page_cursor.as_ref(), None)
                    .await?;
                for r in &page.records {
                    let col = &plan.table.columns[plan.table.primary_key];
                    if let Ok(cell) = sequin_spec::record::decode_cell(col, get_path(r, &col.path))
                        && let Some(k) = cell.to_pg_text()
                    {
                        ids.push(k);
                    }
                    if let plan::Marker::Column(i) = plan.marker {
                        let col = &plan.table.columns[i];
                        if let Ok(Cell::Timestamp(us)) =
                            sequin_spec::record::decode_cell(col, get_path(r, &col.path))
                        {
                            newest = Some(newest.map_or(us, |n| n.max(us)));
                        }
                    }
                }
                match page.next {
                    Some(n) => page_cursor = Some(n),
                    None => break,
                }
            }
            // With an update marker, the cursor follows the API's clock (the
            // newest deletion seen): our own clock running ahead of the
            // API's would skip deletions stamped within the difference.
            cursor["deletes_since"] = json!(match plan.marker {
                plan::Marker::Column(_) => newest.map_or(since, |m| m.max(since)),
                plan::Marker::FetchTime => poll_started,
            });
            changed += writer
                .apply(name, &plan.table, &[], &ids, &Checkpoint::default())
                .await?;
        }
        Some(DeleteDetection::FullDiff { every })
            if !matches!(plan.incremental, Incremental::FullRefresh) =>
        {
            let every_us = crate::config::parse_duration(every)
                .unwrap_or(Duration::from_secs(60))
                .as_micros() as i64;
            let last = cursor.get("diff_at").and_then(Value::as_i64).unwrap_or(0);
            if poll_started - last >= every_us {
                let seen = full_list(ctx, writer, plan).await?;
                let gone = writer.stale_keys(&plan.table, &seen, poll_started).await?;
                changed += writer
                    .apply(name, &plan.table, &[], &gone, &Checkpoint::default())
                    .await?;
                cursor["diff_at"] = json!(poll_started);
            }
        }
        _ => {}
    }
    writer
        .apply(
            name,
            &plan.table,
            &[],
            &[],
            &Checkpoint {
                incremental_cursor: Some(Some(cursor)),
                ..Default::default()
            },
        )
        .await?;
    if changed > 0 {
        tracing::info!(connection = %name, table = %plan.table.name, changed, "incremental changes applied");
    }
    Ok(())
}

fn format_since(us: i64, fmt: TimeFormat) -> String {
    match encode_time(us.max(0), fmt) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Lists everything of an object, upserting as it goes; returns the keys.
async fn full_list(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
) -> Result<std::collections::HashSet<String>, SyncError> {
    let mut seen = std::collections::HashSet::new();
    let vars = ctx.api.vars(Some(plan));
    let pagination = ctx.pagination_with_size(&plan.pagination);
    let mut cursor: Option<PageCursor> = None;
    loop {
        let page = ctx
            .api
            .client
            .fetch_page(
                &plan.endpoints.list,
                Some(&pagination),
                &vars,
                cursor.as_ref(),
                None,
            )
            .await?;
        let fetched_at = now_us();
        let mut rows = Vec::with_capacity(page.records.len());
        for r in &page.records {
            let row = decode(plan, r, fetched_at)?;
            if let Some(k) = pk_text(&row.cells, plan.table.primary_key) {
                seen.insert(k);
            }
            rows.push(row);
        }
        writer
            .apply(
                &ctx.api.config.name,
                &plan.table,
                &rows,
                &[],
                &Checkpoint::default(),
            )
            .await?;
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(seen),
        }
    }
}

/// Pages through an endpoint, upserting; returns (rows, max marker).
async fn pull_all(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    ep: &sequin_spec::model::Endpoint,
    pagination: &Pagination,
    vars: &Vars,
    body: Option<Value>,
) -> Result<(u64, Option<i64>), SyncError> {
    let mut cursor: Option<PageCursor> = None;
    let mut max = None;
    let mut n = 0;
    loop {
        let page = ctx
            .api
            .client
            .fetch_page(ep, Some(pagination), vars, cursor.as_ref(), body.clone())
            .await?;
        let fetched_at = now_us();
        let mut rows = Vec::with_capacity(page.records.len());
        for r in &page.records {
            let row = decode(plan, r, fetched_at)?;
            if let (plan::Marker::Column(_), Some(m)) = (&plan.marker, row.updated_at) {
                max = Some(max.map_or(m, |x: i64| x.max(m)));
            }
            rows.push(row);
        }
        n += writer
            .apply(
                &ctx.api.config.name,
                &plan.table,
                &rows,
                &[],
                &Checkpoint::default(),
            )
            .await?;
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok((n, max)),
        }
    }
}

/// Like [`pull_all`] for search endpoints; also says whether the search's
/// result cap was reached.
#[allow(clippy::too_many_arguments)]
async fn pull_search(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    ep: &sequin_spec::model::Endpoint,
    pagination: &Pagination,
    vars: &Vars,
    body: Value,
    max_results: Option<u32>,
) -> Result<(u64, Option<i64>, bool), SyncError> {
    let mut cursor: Option<PageCursor> = None;
    let mut max = None;
    let mut n = 0;
    let mut seen = 0usize;
    loop {
        let page = ctx
            .api
            .client
            .fetch_page(
                ep,
                Some(pagination),
                vars,
                cursor.as_ref(),
                Some(body.clone()),
            )
            .await?;
        let fetched_at = now_us();
        let mut rows = Vec::with_capacity(page.records.len());
        for r in &page.records {
            let row = decode(plan, r, fetched_at)?;
            if let Some(m) = row.updated_at {
                max = Some(max.map_or(m, |x: i64| x.max(m)));
            }
            rows.push(row);
        }
        seen += rows.len();
        n += writer
            .apply(
                &ctx.api.config.name,
                &plan.table,
                &rows,
                &[],
                &Checkpoint::default(),
            )
            .await?;
        let capped =
            max_results.is_some_and(|cap| seen + pagination_size(pagination) > cap as usize);
        match page.next {
            Some(_) if capped => return Ok((n, max, true)),
            Some(c) => cursor = Some(c),
            None => return Ok((n, max, false)),
        }
    }
}

fn pagination_size(p: &Pagination) -> usize {
    let common = p.common();
    common.page_size.unwrap_or(100) as usize
}

mod events;
