//! Postgres: migrations, bulk upserts with COPY, sync state.
//!
//! Every batch of synced records is loaded with `COPY` into a session temp
//! table and merged into the synced table in **one transaction together with
//! the sync cursor**, so a crash at any point resumes from the last committed
//! cursor with no gap and no duplicate. The merge never moves a row
//! backwards: a record whose upstream update marker is older than the row's
//! is ignored.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::Hasher;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::SinkExt;
use sequin_proxy::SslParams;
use sequin_spec::model::FieldType;
use sequin_spec::naming::quote_ident;
use sequin_spec::record::{Cell, Column};
use tokio_postgres::Client;

use crate::registry::Loaded;

mod pool;

pub use pool::{Origin, Pool, PoolSettings, PoolStats, Share};

/// The `sequin` schema migrations, in order.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_sequin_schema.sql")),
    (2, include_str!("../migrations/0002_write_through.sql")),
    (3, include_str!("../migrations/0003_backfill_total.sql")),
    (4, include_str!("../migrations/0004_journal_retention.sql")),
    (5, include_str!("../migrations/0005_release.sql")),
    (6, include_str!("../migrations/0006_grants.sql")),
    (7, include_str!("../migrations/0007_status.sql")),
    (8, include_str!("../migrations/0008_grant_table.sql")),
    (9, include_str!("../migrations/0009_upsert.sql")),
    (10, include_str!("../migrations/0010_quota.sql")),
    (11, include_str!("../migrations/0011_events.sql")),
    (12, include_str!("../migrations/0012_leases.sql")),
    (13, include_str!("../migrations/0013_rate_budget.sql")),
    (14, include_str!("../migrations/0014_write_path.sql")),
    (15, include_str!("../migrations/0015_trigger_fast_path.sql")),
    (16, include_str!("../migrations/0016_generic_plans.sql")),
];

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot connect to Postgres at {target}: {reason} (check that the server is running and accepts connections there, and that database_url in the config is right)"
    )]
    Connect {
        target: String,
        /// The cause with its own causes (`error connecting to server:
        /// Connection refused`), which the driver's error alone leaves out.
        reason: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A TLS problem, worded with the `database_url` parameter to change.
    #[error("cannot connect to Postgres at {target}: {problem}")]
    Tls { target: String, problem: String },
    /// A batch of a connection whose lease this process lost: another
    /// process took the connection over, and the batch is not committed.
    #[error(
        "this process no longer holds the lease of connection `{connection}` (another process took it over after the lease expired: this one missed heartbeats for longer than sync.failover); the batch was not committed"
    )]
    Fenced { connection: String },
    #[error("{context}: {}", db_message(source))]
    Db {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// The server's own message (tokio-postgres's Display says only "db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({detail})", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    }
}

pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Db { context, source }
}

/// An error and its causes, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// `host:port/db` of a URL, without credentials, for messages.
pub fn redact_url(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    rest.split('?').next().unwrap_or(rest).to_string()
}

/// Opens one of Sequin's own sessions; the connection task runs in the
/// background. The session holds this process's writer key from its start:
/// the key travels in the startup packet's `options` (never in SQL text or
/// a bind parameter, so no statement log, error CONTEXT or
/// `pg_stat_activity` shows it), and opens the guard once the process has
/// registered its digest (`guard::register`). The session is encrypted as
/// the URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` say, with
/// libpq's meanings ([`crate::tls`]).
pub async fn connect(url: &str) -> Result<Client, StoreError> {
    let tls_error = |problem: String| StoreError::Tls {
        target: redact_url(url),
        problem,
    };
    let (params, url_rest) = SslParams::split_url(url).map_err(|e| tls_error(e.to_string()))?;
    let tls = params.load().map_err(|e| tls_error(e.to_string()))?;
    let connect_error = |source: tokio_postgres::Error| StoreError::Connect {
        target: redact_url(url),
        reason: error_chain(&source),
        source,
    };
    let mut config: tokio_postgres::Config = url_rest.parse().map_err(connect_error)?;
    crate::guard::add_startup_option(&mut config);
    let (client, conn) = crate::tls::connect(&mut config, &tls).await.map_err(|e| {
        match crate::tls::explain(&e, &tls, &first_host(&config)) {
            Some(problem) => tls_error(problem),
            None => connect_error(e),
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// The first host of a config, for messages.
fn first_host(config: &tokio_postgres::Config) -> String {
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => String::new(),
    }
}

/// Applies the `sequin` schema's migrations not applied yet and each
/// connection's static tables and guards, and records the connections.
/// Several `sequin` processes may start at once: a session-level advisory
/// lock lets one migrate at a time.
///
/// Nothing is changed that is in place already, so a process that starts
/// beside running ones takes no lock they could queue behind. What must
/// change does, each piece in its own transaction under a short
/// `lock_timeout`, retried (see [`ddl`]): a client's open transaction makes
/// the migration wait, never the other clients.
pub async fn migrate(
    client: &mut Client,
    connections: &[(&str, &'static Loaded)],
) -> Result<(), StoreError> {
    let every: Vec<Migrating> = connections
        .iter()
        .map(|(name, loaded)| Migrating {
            name,
            loaded,
            tables: None,
        })
        .collect();
    migrate_tables(client, &every).await
}

/// A connection whose tables [`migrate_tables`] makes: its schema, its
/// connector, and the static tables it syncs (`None`: all of them).
pub struct Migrating<'a> {
    pub name: &'a str,
    pub loaded: &'static Loaded,
    pub tables: Option<Vec<&'static str>>,
}

impl Migrating<'_> {
    /// The static tables of the connection, schema-qualified.
    fn qualified_tables(&self) -> Vec<String> {
        self.loaded
            .table_sections()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| self.wants(t))
            .map(|t| format!("{}.{}", quote_ident(self.name), quote_ident(t)))
            .collect()
    }

    fn wants(&self, table: &str) -> bool {
        self.tables.as_ref().is_none_or(|ts| ts.contains(&table))
    }
}

/// [`migrate`] of only the static tables each connection syncs.
pub async fn migrate_tables(
    client: &mut Client,
    connections: &[Migrating<'_>],
) -> Result<(), StoreError> {
    client
        .batch_execute("SET client_min_messages = warning")
        .await
        .map_err(db("configuring the migration session"))?;
    client
        .execute("SELECT pg_advisory_lock(7305001)", &[])
        .await
        .map_err(db("locking migrations"))?;
    let migrated = migrate_locked(client, connections).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock(7305001)", &[])
        .await
        .map_err(db("unlocking migrations"));
    migrated.and(unlocked.map(|_| ()))
}

async fn migrate_locked(
    client: &mut Client,
    connections: &[Migrating<'_>],
) -> Result<(), StoreError> {
    let versioned: bool = client
        .query_one(
            "SELECT to_regclass('sequin.schema_version') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db("reading the schema version"))?
        .get(0);
    if !versioned {
        ddl(
            client,
            "creating sequin.schema_version",
            "CREATE SCHEMA IF NOT EXISTS sequin;
             CREATE TABLE IF NOT EXISTS sequin.schema_version (
                 version int PRIMARY KEY,
                 applied_at timestamp with time zone NOT NULL DEFAULT now()
             );",
        )
        .await?;
    }
    let applied: Vec<i32> = client
        .query("SELECT version FROM sequin.schema_version", &[])
        .await
        .map_err(db("reading the schema version"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        ddl(
            client,
            &format!("applying sequin migration {version}"),
            &format!("{sql}\nINSERT INTO sequin.schema_version (version) VALUES ({version});"),
        )
        .await?;
    }
    for conn in connections {
        let (name, loaded) = (&conn.name, conn.loaded);
        // The objects' tables and the link tables (`links:`) it syncs.
        let tables = conn.qualified_tables();
        // The schema too: a connector whose objects are discovered at run
        // time has no static table, and its tables' creation must not race
        // on the schema.
        let missing: bool = client
            .query_one(
                "SELECT to_regnamespace($2) IS NULL
                     OR coalesce((SELECT bool_or(to_regclass(t) IS NULL) FROM unnest($1::text[]) AS t), false)",
                &[&tables, &quote_ident(name)],
            )
            .await
            .map_err(db("looking up the connection's tables"))?
            .get::<_, Option<bool>>(0)
            .unwrap_or(false);
        if missing {
            ddl(
                client,
                &format!("creating the tables of connection `{name}`"),
                &loaded.ddl_of(name, &|t| conn.wants(t)),
            )
            .await?;
        }
        for t in &tables {
            protect(client, t).await?;
        }
        client
            .execute(
                "INSERT INTO sequin.connection (name, connector) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET connector = EXCLUDED.connector
                  WHERE sequin.connection.connector IS DISTINCT FROM EXCLUDED.connector",
                &[name, &loaded.spec.name],
            )
            .await
            .map_err(db("recording the connection"))?;
    }
    Ok(())
}

/// Installs the write guard and the row capture of write-through on a
/// synced table (`sequin.protect`, migration 0006), unless in place.
async fn protect(client: &mut Client, qualified: &str) -> Result<(), StoreError> {
    let protected: bool = client
        .query_one("SELECT sequin.protected($1::text::regclass)", &[&qualified])
        .await
        .map_err(db(format!("checking the write guard on {qualified}")))?
        .get(0);
    if protected {
        return Ok(());
    }
    ddl(
        client,
        &format!("installing the write guard on {qualified}"),
        &format!("SELECT sequin.protect({})", quote_literal(qualified)),
    )
    .await
}

/// How long one attempt at a schema change waits for its locks. Other
/// sessions' statements that need the same tables queue behind the attempt
/// for at most this long.
const DDL_LOCK_TIMEOUT: &str = "100ms";

/// Longest pause between two attempts at a schema change.
const DDL_RETRY_MAX: Duration = Duration::from_secs(2);

/// How often a schema change still waiting says so.
const DDL_WAIT_LOG_EVERY: Duration = Duration::from_secs(30);

/// Runs `sql` (a schema change, `what`) in a transaction of its own under a
/// short `lock_timeout`, again until it gets its locks: a transaction left
/// open by a client delays the change, but never makes every other session
/// queue behind it. While it waits, it says so (and which session it waits
/// for) in the log.
async fn ddl(client: &mut Client, what: &str, sql: &str) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(20);
    let mut last_log: Option<std::time::Instant> = None;
    loop {
        let tx = client
            .transaction()
            .await
            .map_err(db(format!("starting: {what}")))?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'"))
            .await
            .map_err(db(format!("configuring: {what}")))?;
        match tx.batch_execute(sql).await {
            Ok(()) => {
                tx.commit()
                    .await
                    .map_err(db(format!("committing: {what}")))?;
                if last_log.is_some() {
                    tracing::info!(waited_s = started.elapsed().as_secs(), "{what}: done");
                }
                return Ok(());
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                drop(tx);
                if last_log.is_none_or(|t| t.elapsed() >= DDL_WAIT_LOG_EVERY) {
                    last_log = Some(std::time::Instant::now());
                    let oldest = oldest_transaction(client).await;
                    tracing::warn!(
                        waited_s = started.elapsed().as_secs(),
                        oldest_transaction = %oldest,
                        "{what}: waiting for other sessions' transactions on the tables it changes to end (retrying; nothing else waits for it meanwhile)"
                    );
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(DDL_RETRY_MAX);
            }
            Err(e) => return Err(db(what.to_string())(e)),
        }
    }
}

/// The database's oldest open transaction, for the log of a waiting
/// schema change.
async fn oldest_transaction(client: &Client) -> String {
    let row = client
        .query_opt(
            "SELECT pid, coalesce(state, ''), extract(epoch FROM now() - xact_start)::bigint, coalesce(application_name, '')
               FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
              ORDER BY xact_start LIMIT 1",
            &[],
        )
        .await;
    match row {
        Ok(Some(r)) => format!(
            "pid {} ({}, {} s, application `{}`)",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, i64>(2),
            r.get::<_, String>(3)
        ),
        _ => "unknown".into(),
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A synced table as the store sees it.
#[derive(Clone, Debug)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Index of the primary key column.
    pub primary_key: usize,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// A row to upsert: cells in column order plus the upstream update marker
/// (microseconds since the epoch), which decides "newer".
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub cells: Vec<Cell>,
    pub updated_at: Option<i64>,
}

/// The sync state of one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncState {
    pub phase: Phase,
    pub backfill_cursor: Option<serde_json::Value>,
    pub incremental_cursor: Option<serde_json::Value>,
    pub rows_synced: i64,
}

/// Backfilling, then live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Backfilling,
    Live,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Backfilling => "backfilling",
            Phase::Live => "live",
        }
    }
}

/// What to record with a batch.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    pub phase: Option<Phase>,
    /// `Some(None)` clears the cursor.
    pub backfill_cursor: Option<Option<serde_json::Value>>,
    pub incremental_cursor: Option<Option<serde_json::Value>>,
}

/// Sync's writes to Postgres: each step (a batch with its checkpoint, a
/// poll's record, a diff's read) borrows a session of the process's
/// [`Pool`] for its statement or transaction, within the connection's
/// [`Share`], and gives it back. Holding a `Writer` holds no session; a
/// clone draws on the same pool and share.
#[derive(Clone)]
pub struct Writer {
    pool: Pool,
    share: Option<Share>,
    origin: Origin,
    fence: Option<Fence>,
}

/// A connection's lease as a process took it (`sequin.lease`, migration
/// 0012): a batch of the connection commits only while the lease still
/// has this token, so a process that lost the lease cannot commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub connection: String,
    pub token: i64,
}

impl Fence {
    /// Locks the lease row in `tx` (a takeover waits for the transaction),
    /// or fails when the lease has another token now.
    async fn check(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
        let held = tx
            .query_opt(
                "SELECT 1 FROM sequin.lease WHERE connection = $1 AND token = $2 FOR SHARE",
                &[&self.connection, &self.token],
            )
            .await
            .map_err(db("checking the connection's lease"))?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::Fenced {
                connection: self.connection.clone(),
            }),
        }
    }
}

impl Pool {
    /// A writer drawing on this pool, within `share` when given (a
    /// connection's).
    pub fn writer(&self, share: Option<Share>) -> Writer {
        Writer {
            pool: self.clone(),
            share,
            origin: Origin::Sync,
            fence: None,
        }
    }
}

/// The staging table of a sync session: one for every table the session
/// loads (a session serves every connection, so one per table would mean
/// thousands of temp tables), its columns `c1`, `c2`, ... of type text. A
/// batch is copied into its first columns in COPY's text format, which is
/// each type's text input, and cast to the table's types by the merge: the
/// same conversion COPY into typed columns makes.
///
/// Its rows are deleted by the batch's transaction, and the table is
/// truncated only now and then ([`STAGE_TRUNCATE_ROWS`]): a table `ON COMMIT
/// DELETE ROWS` is truncated at the commit of every transaction that
/// touches a temp table, which cost each batch 3.7 ms on an idle disk here
/// (30-100 ms on a busy one), where a commit after a DELETE costs 0.01 ms.
const STAGE: &str = "_sequin_stage";

/// Rows (or batches, [`STAGE_TRUNCATE_BATCHES`]) staged since the last
/// truncation after which the staging table is truncated again (3 ms),
/// before its deleted rows make the merges' scans long.
const STAGE_TRUNCATE_ROWS: usize = 20_000;
const STAGE_TRUNCATE_BATCHES: usize = 100;

/// Columns the staging table has at least.
const STAGE_MIN_WIDTH: usize = 64;

impl pool::Session {
    /// Makes sure the session's staging table has room for `t`'s columns,
    /// and truncates it when enough deleted rows piled up.
    async fn ensure_stage(&mut self, t: &Table) -> Result<(), StoreError> {
        if self.stage_width >= t.columns.len() {
            if self.staged_rows >= STAGE_TRUNCATE_ROWS
                || self.staged_batches >= STAGE_TRUNCATE_BATCHES
            {
                self.client
                    .batch_execute(&format!("TRUNCATE {STAGE}"))
                    .await
                    .map_err(db("truncating the session's staging table"))?;
                (self.staged_rows, self.staged_batches) = (0, 0);
            }
            return Ok(());
        }
        let width = t.columns.len().max(STAGE_MIN_WIDTH);
        let defs: Vec<String> = (1..=width).map(|i| format!("c{i} text")).collect();
        let drop = if self.stage_width > 0 {
            format!("DROP TABLE IF EXISTS {STAGE};")
        } else {
            String::new()
        };
        let sql = format!(
            "{drop} CREATE TEMP TABLE {STAGE} ({defs}, _sequin_updated_at timestamptz, _seq bigint) ON COMMIT PRESERVE ROWS",
            defs = defs.join(", ")
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(db("creating the session's staging table"))?;
        self.stage_width = width;
        (self.staged_rows, self.staged_batches) = (0, 0);
        Ok(())
    }
}

impl Writer {
    /// A writer over a pool of its own (a test's, a bench's): its first
    /// session is opened here, so a database that cannot be reached is
    /// reported now.
    pub async fn connect(url: &str) -> Result<Writer, StoreError> {
        let writer = Pool::new(url, PoolSettings::default()).writer(None);
        drop(writer.lease().await?);
        Ok(writer)
    }

    /// This writer, committing only while `fence` holds.
    pub fn fenced(mut self, fence: Option<Fence>) -> Writer {
        self.fence = fence;
        self
    }

    /// Checks the writer's fence, if any, in `tx`.
    async fn check_fence(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
        match &self.fence {
            Some(f) => f.check(tx).await,
            None => Ok(()),
        }
    }

    async fn lease(&self) -> Result<pool::Lease, StoreError> {
        self.pool.lease(self.share.as_ref(), self.origin).await
    }

    /// Runs `f` with this writer's changes marked as a backfill's
    /// (`sequin.origin`, read by the outbox trigger): inserted rows become
    /// `read` events, and only when a sink asks for them.
    pub async fn as_backfill<T, E: From<StoreError>>(
        &mut self,
        f: impl AsyncFnOnce(&mut Writer) -> Result<T, E>,
    ) -> Result<T, E> {
        self.origin = Origin::Backfill;
        let out = f(self).await;
        self.origin = Origin::Sync;
        out
    }

    /// Reads (or creates) the sync state of an object.
    pub async fn state(&self, connection: &str, object: &str) -> Result<SyncState, StoreError> {
        let s = self.lease().await?;
        s.client
            .execute(
                "INSERT INTO sequin.sync_state (connection, object) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&connection, &object],
            )
            .await
            .map_err(db("creating sync state"))?;
        let row = s
            .client
            .query_one(
                "SELECT phase, backfill_cursor, incremental_cursor, rows_synced
                   FROM sequin.sync_state WHERE connection = $1 AND object = $2",
                &[&connection, &object],
            )
            .await
            .map_err(db("reading sync state"))?;
        let phase: String = row.get(0);
        Ok(SyncState {
            phase: if phase == "live" {
                Phase::Live
            } else {
                Phase::Backfilling
            },
            backfill_cursor: row.get(1),
            incremental_cursor: row.get(2),
            rows_synced: row.get(3),
        })
    }

    /// Upserts `rows`, deletes `deletes` (primary keys) and records the
    /// checkpoint, all in one transaction. Returns the rows changed.
    pub async fn apply(
        &mut self,
        connection: &str,
        t: &Table,
        rows: &[Row],
        deletes: &[String],
        checkpoint: &Checkpoint,
    ) -> Result<u64, StoreError> {
        let mut batch = CopyBatch::new(t.primary_key);
        for row in rows {
            batch.push(row);
        }
        self.apply_batch(connection, t, &mut batch, deletes, checkpoint)
            .await
    }

    /// [`Writer::apply`] with the rows already encoded (the backfill encodes
    /// pages as they arrive, so whole batches of decoded rows are never held).
    /// The batch's rows are sent without a copy; the batch is left as it
    /// was, its buffer kept for reuse (see [`CopyBatch::clear`]).
    pub async fn apply_batch(
        &mut self,
        connection: &str,
        t: &Table,
        batch: &mut CopyBatch,
        deletes: &[String],
        checkpoint: &Checkpoint,
    ) -> Result<u64, StoreError> {
        let mut s = self.lease().await?;
        s.ensure_stage(t).await?;
        let tx = s
            .client
            .transaction()
            .await
            .map_err(db("starting a sync batch"))?;
        self.check_fence(&tx).await?;
        let mut changed = 0;
        if batch.rows > 0 {
            let col_list: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
            let stage_cols: Vec<String> = (1..=t.columns.len()).map(|i| format!("c{i}")).collect();
            let copy = format!(
                "COPY {STAGE} ({}, _sequin_updated_at, _seq) FROM STDIN",
                stage_cols.join(", ")
            );
            let sink = tx.copy_in(&copy).await.map_err(db("starting COPY"))?;
            let mut sink = Box::pin(sink);
            // Cheap slices of the batch's own buffer (no copy), sent in
            // pieces so the server can start parsing before the whole batch
            // is on the wire. The buffer comes back to the batch below.
            let data = batch.lend();
            let mut at = 0;
            while at < data.len() {
                let end = (at + COPY_CHUNK).min(data.len());
                sink.send(data.slice(at..end))
                    .await
                    .map_err(db("sending COPY data"))?;
                at = end;
            }
            sink.as_mut().finish().await.map_err(db("finishing COPY"))?;
            batch.take_back(data);
            let pk = quote_ident(&t.columns[t.primary_key].name);
            let updates: Vec<String> = t
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != t.primary_key)
                .map(|(_, c)| format!("{0} = EXCLUDED.{0}", quote_ident(&c.name)))
                .chain([
                    "_sequin_updated_at = EXCLUDED._sequin_updated_at".into(),
                    "_sequin_synced_at = now()".into(),
                ])
                .collect();
            // A record identical to the row is not rewritten (full refreshes
            // and replayed events would otherwise rewrite every row).
            let data_cols: Vec<String> = t
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != t.primary_key)
                .map(|(_, c)| quote_ident(&c.name))
                .collect();
            // The last occurrence of a key in a batch wins (DISTINCT ON keeps
            // the highest _seq); batches without repeated keys (nearly all)
            // skip that sort. An older record never overwrites a newer row.
            let typed: Vec<String> = t
                .columns
                .iter()
                .zip(&stage_cols)
                .map(|(c, s)| format!("{s}::{} AS {}", c.ty.pg_type(), quote_ident(&c.name)))
                .collect();
            let stage = format!(
                "(SELECT {}, _sequin_updated_at, _seq FROM {STAGE}) st",
                typed.join(", ")
            );
            let source = if batch.repeated_keys {
                format!(
                    "SELECT DISTINCT ON ({pk}) {cols}, _sequin_updated_at FROM {stage} ORDER BY {pk}, _seq DESC",
                    cols = col_list.join(", "),
                )
            } else {
                format!(
                    "SELECT {cols}, _sequin_updated_at FROM {stage}",
                    cols = col_list.join(", "),
                )
            };
            // A record deleted since this version was read stays deleted
            // (`sequin.tombstone`: an events page or list page read before a
            // delete would otherwise bring it back until the next poll).
            let source = format!(
                "SELECT * FROM ({source}) s WHERE NOT EXISTS (
                     SELECT 1 FROM sequin.tombstone tb
                      WHERE tb.relid = {relid}::regclass AND tb.key = s.{pk}::text
                        AND s._sequin_updated_at <= tb.updated_at)",
                relid = quote_literal(&t.qualified()),
            );
            let sql = format!(
                "INSERT INTO {table} AS t ({cols}, _sequin_updated_at)
                 {source}
                 ON CONFLICT ({pk}) DO UPDATE SET {updates}
                 WHERE (t._sequin_updated_at IS NULL OR EXCLUDED._sequin_updated_at IS NULL
                    OR EXCLUDED._sequin_updated_at >= t._sequin_updated_at)
                   AND {changed}",
                table = t.qualified(),
                cols = col_list.join(", "),
                updates = updates.join(", "),
                changed = if data_cols.is_empty() {
                    "false".to_string()
                } else {
                    format!(
                        "({}) IS DISTINCT FROM ({})",
                        data_cols
                            .iter()
                            .map(|c| format!("t.{c}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        data_cols
                            .iter()
                            .map(|c| format!("EXCLUDED.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            );
            changed += tx
                .execute(&sql, &[])
                .await
                .map_err(db(format!("merging into {}", t.qualified())))?;
        }
        if !deletes.is_empty() {
            // The keys in the column's own type: the index finds them.
            let pk = &t.columns[t.primary_key];
            let sql = format!(
                "DELETE FROM {} WHERE {} = ANY($1::text[]::{}[])",
                t.qualified(),
                quote_ident(&pk.name),
                pk.ty.pg_type()
            );
            changed += tx
                .execute(&sql, &[&deletes])
                .await
                .map_err(db(format!("deleting from {}", t.qualified())))?;
        }
        if batch.rows > 0 {
            tx.batch_execute(&format!("DELETE FROM {STAGE}"))
                .await
                .map_err(db("emptying the staging table"))?;
        }
        record_checkpoint(&tx, connection, &t.name, batch.rows as i64, checkpoint).await?;
        tx.commit().await.map_err(db("committing a sync batch"))?;
        if batch.rows > 0 {
            s.staged_rows += batch.rows;
            s.staged_batches += 1;
        }
        Ok(changed)
    }

    /// Records a checkpoint without rows (a cursor of a pseudo-object such as
    /// the events feed).
    pub async fn checkpoint(
        &mut self,
        connection: &str,
        object: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let mut s = self.lease().await?;
        let tx = s
            .client
            .transaction()
            .await
            .map_err(db("starting a checkpoint"))?;
        self.check_fence(&tx).await?;
        record_checkpoint(&tx, connection, object, 0, checkpoint).await?;
        tx.commit().await.map_err(db("committing a checkpoint"))
    }

    /// Saves where an object's incremental polls (or a pseudo-object's
    /// feed) resume, as its `incremental_cursor`.
    pub async fn save_cursor(
        &mut self,
        connection: &str,
        object: &str,
        cursor: &impl serde::Serialize,
    ) -> Result<(), StoreError> {
        let cursor = serde_json::to_value(cursor).expect("cursors serialize");
        let checkpoint = Checkpoint {
            incremental_cursor: Some(Some(cursor)),
            ..Default::default()
        };
        self.checkpoint(connection, object, &checkpoint).await
    }

    /// Upserts `rows` into `t` (never backwards), with no checkpoint.
    /// Returns the rows changed.
    pub async fn upsert(
        &mut self,
        connection: &str,
        t: &Table,
        rows: &[Row],
    ) -> Result<u64, StoreError> {
        self.apply(connection, t, rows, &[], &Checkpoint::default())
            .await
    }

    /// Deletes the rows of `t` with the primary keys `keys`. Returns the
    /// rows deleted.
    pub async fn delete(
        &mut self,
        connection: &str,
        t: &Table,
        keys: &[String],
    ) -> Result<u64, StoreError> {
        self.apply(connection, t, &[], keys, &Checkpoint::default())
            .await
    }

    /// Records a failed poll (the error text must not contain secrets).
    pub async fn record_error(
        &self,
        connection: &str,
        object: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        self.lease()
            .await?
            .client
            .execute(
                "UPDATE sequin.sync_state SET last_error = $3, last_error_at = now(), last_poll_at = now()
                  WHERE connection = $1 AND object = $2",
                &[&connection, &object, &error],
            )
            .await
            .map_err(db("recording a sync error"))?;
        Ok(())
    }

    /// Records a successful poll of `objects` (several when one feed serves
    /// them all).
    pub async fn record_poll(&self, connection: &str, objects: &[&str]) -> Result<(), StoreError> {
        self.lease()
            .await?
            .client
            .execute(
                "WITH pruned AS (DELETE FROM sequin.tombstone WHERE deleted_at < now() - interval '1 hour')
                 UPDATE sequin.sync_state SET last_poll_at = now(), last_success_at = now(), last_error = NULL
                  WHERE connection = $1 AND object = ANY($2)",
                &[&connection, &objects],
            )
            .await
            .map_err(db("recording a poll"))?;
        Ok(())
    }

    /// Every primary key of a table (for full diffs).
    pub async fn primary_keys(&self, t: &Table) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT {}::text FROM {}",
            quote_ident(&t.columns[t.primary_key].name),
            t.qualified()
        );
        Ok(self
            .lease()
            .await?
            .client
            .query(&sql, &[])
            .await
            .map_err(db("listing primary keys"))?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Keys of rows not in `seen` that were last synced before `before_us`
    /// (rows synced since then may be newer than the list that built `seen`).
    pub async fn stale_keys(
        &self,
        t: &Table,
        seen: &std::collections::HashSet<String>,
        before_us: i64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT {}::text FROM {} WHERE _sequin_synced_at < to_timestamp($1::float8 / 1e6)",
            quote_ident(&t.columns[t.primary_key].name),
            t.qualified()
        );
        Ok(self
            .lease()
            .await?
            .client
            .query(&sql, &[&(before_us as f64)])
            .await
            .map_err(db("listing rows for a full diff"))?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|k| !seen.contains(k))
            .collect())
    }

    /// Creates a runtime-discovered table, or adds columns that appeared.
    /// Columns that disappeared upstream are kept (and marked removed in
    /// `sequin.discovered_column`): dropping data is the user's decision.
    /// Like every schema change, under a short `lock_timeout`, retried (see
    /// [`ddl`]): a client's open transaction on the table delays the new
    /// column, not the client's neighbours.
    pub async fn ensure_table(
        &mut self,
        connection: &str,
        t: &Table,
        api_types: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut pause = Duration::from_millis(20);
        let mut waits = 0u32;
        loop {
            match self.try_ensure_table(connection, t, api_types).await {
                Err(StoreError::Db { source, .. })
                    if source.code()
                        == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
                {
                    if waits.is_multiple_of(100) {
                        let oldest = match self.lease().await {
                            Ok(s) => oldest_transaction(&s.client).await,
                            Err(e) => e.to_string(),
                        };
                        tracing::warn!(table = %t.qualified(), oldest_transaction = %oldest, "adding discovered columns waits for other sessions' transactions on the table to end (retrying)");
                    }
                    waits += 1;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(DDL_RETRY_MAX);
                }
                other => return other,
            }
        }
    }

    async fn try_ensure_table(
        &mut self,
        connection: &str,
        t: &Table,
        api_types: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut s = self.lease().await?;
        let existing: Vec<String> = s
            .client
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                &[&t.schema, &t.name],
            )
            .await
            .map_err(db("reading table columns"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut added = Vec::new();
        let tx = s
            .client
            .transaction()
            .await
            .map_err(db("starting a schema change"))?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'"))
            .await
            .map_err(db("configuring a schema change"))?;
        if existing.is_empty() {
            let pk = &t.columns[t.primary_key];
            let mut sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {};\nCREATE TABLE IF NOT EXISTS {} (",
                quote_ident(&t.schema),
                t.qualified()
            );
            for (i, c) in t.columns.iter().enumerate() {
                // A created row holds a provisional id until the API assigns
                // the real one (write-through), as in the generated DDL.
                let pk = match (i == t.primary_key, c.ty) {
                    (true, FieldType::String) => {
                        " NOT NULL DEFAULT ('_pending_' || gen_random_uuid()::text)"
                    }
                    (true, _) => " NOT NULL",
                    _ => "",
                };
                let _ = write!(
                    sql,
                    "\n    {} {}{},",
                    quote_ident(&c.name),
                    c.ty.pg_type(),
                    pk
                );
            }
            let _ = write!(
                sql,
                "\n    _sequin_synced_at timestamp with time zone NOT NULL DEFAULT now(),\n    _sequin_updated_at timestamp with time zone,\n    PRIMARY KEY ({})\n)",
                quote_ident(&pk.name)
            );
            tx.batch_execute(&sql)
                .await
                .map_err(db(format!("creating {}", t.qualified())))?;
            tx.execute(
                "SELECT sequin.protect($1::text::regclass)",
                &[&t.qualified()],
            )
            .await
            .map_err(db(format!(
                "installing the write guard on {}",
                t.qualified()
            )))?;
            added = t.columns.iter().map(|c| c.name.to_string()).collect();
        } else {
            for c in &t.columns {
                if !existing.iter().any(|e| e == &*c.name) {
                    let sql = format!(
                        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                        t.qualified(),
                        quote_ident(&c.name),
                        c.ty.pg_type()
                    );
                    tx.batch_execute(&sql).await.map_err(db(format!(
                        "adding column {} to {}",
                        c.name,
                        t.qualified()
                    )))?;
                    added.push(c.name.to_string());
                }
            }
        }
        for (c, api_type) in t.columns.iter().zip(api_types) {
            tx.execute(
                "INSERT INTO sequin.discovered_column (connection, object, column_name, api_name, api_type, column_type)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (connection, object, column_name) DO UPDATE SET removed_at = NULL, api_type = EXCLUDED.api_type",
                &[&connection, &t.name, &c.name.to_string(), &c.api_name.to_string(), api_type, &c.ty.pg_type()],
            )
            .await
            .map_err(db("recording discovered columns"))?;
        }
        let names: Vec<String> = t.columns.iter().map(|c| c.name.to_string()).collect();
        tx.execute(
            "UPDATE sequin.discovered_column SET removed_at = now()
              WHERE connection = $1 AND object = $2 AND removed_at IS NULL AND NOT (column_name = ANY($3))",
            &[&connection, &t.name, &names],
        )
        .await
        .map_err(db("marking removed columns"))?;
        tx.commit()
            .await
            .map_err(db("committing a schema change"))?;
        Ok(added)
    }

    /// Indexes the columns `columns` of a table created at run time (a
    /// discovered link table's `from_id` and `to_id`, its objects'
    /// `_sequin_synced_at`), as the generated DDL indexes a static one's,
    /// named as it names them. Only missing indexes are built, so a table
    /// that has them is not locked again.
    pub async fn ensure_indexes(&mut self, t: &Table, columns: &[&str]) -> Result<(), StoreError> {
        let existing: Vec<String> = self
            .lease()
            .await?
            .client
            .query(
                "SELECT indexname::text FROM pg_catalog.pg_indexes WHERE schemaname = $1 AND tablename = $2",
                &[&t.schema, &t.name],
            )
            .await
            .map_err(db("reading a table's indexes"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for c in columns {
            let name = format!("{}_{c}_idx", t.name);
            if existing.contains(&name) {
                continue;
            }
            let sql = format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                quote_ident(&name),
                t.qualified(),
                quote_ident(c)
            );
            match ddl(
                &mut self.lease().await?.client,
                &format!("indexing {}", t.qualified()),
                &sql,
            )
            .await
            {
                // Made meanwhile by another session (IF NOT EXISTS does not
                // guard against a concurrent CREATE): it is there.
                Err(StoreError::Db { source, .. })
                    if source.code()
                        == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                        || source.code()
                            == Some(&tokio_postgres::error::SqlState::DUPLICATE_TABLE) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Forgets an object's sync state (the connection-level error row once
    /// the connection runs again).
    pub async fn clear_state(&self, connection: &str, object: &str) -> Result<(), StoreError> {
        self.lease()
            .await?
            .client
            .execute(
                "DELETE FROM sequin.sync_state WHERE connection = $1 AND object = $2",
                &[&connection, &object],
            )
            .await
            .map_err(db("clearing sync state"))?;
        Ok(())
    }

    /// Records how many records an object's backfill listing has (the
    /// API's count), which `sequin status` turns into a percentage.
    pub async fn record_backfill_total(
        &self,
        connection: &str,
        object: &str,
        total: u64,
    ) -> Result<(), StoreError> {
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        self.lease()
            .await?
            .client
            .execute(
                "UPDATE sequin.sync_state SET backfill_total = $3 WHERE connection = $1 AND object = $2",
                &[&connection, &object, &total],
            )
            .await
            .map_err(db("recording the backfill total"))?;
        Ok(())
    }
}

/// The queries of child objects (records listed under a parent record):
/// the parents to walk, those that changed, the children under one parent,
/// and the children whose parent is gone. Keys travel as text and are cast
/// to the key column's own type, so the indexes find them.
impl Writer {
    /// The database's clock now, in microseconds since the epoch: the clock
    /// of `_sequin_synced_at`, which child objects follow their parents by.
    pub async fn now_us(&self) -> Result<i64, StoreError> {
        let row = self
            .lease()
            .await?
            .client
            .query_one("SELECT (extract(epoch FROM now()) * 1000000)::bigint", &[])
            .await
            .map_err(db("reading the database's clock"))?;
        Ok(row.get(0))
    }

    /// Up to `limit` primary keys of `t` after `after`, in key order.
    pub async fn keys_after(
        &self,
        t: &Table,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let pk = &t.columns[t.primary_key];
        let sql = format!(
            "SELECT {c}::text FROM {t} WHERE $1::text IS NULL OR {c} > $1::text::{ty} ORDER BY {c} LIMIT $2",
            c = quote_ident(&pk.name),
            t = t.qualified(),
            ty = pk.ty.pg_type(),
        );
        Ok(self
            .lease()
            .await?
            .client
            .query(&sql, &[&after, &limit])
            .await
            .map_err(db(format!("listing the keys of {}", t.qualified())))?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// The `json` column `col` of `t`'s row `key` (a child list the API
    /// embeds in the parent record); `None` when the row or value is gone.
    pub async fn json_of(
        &self,
        t: &Table,
        col: usize,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let pk = &t.columns[t.primary_key];
        let sql = format!(
            "SELECT {v} FROM {t} WHERE {c} = $1::text::{ty}",
            v = quote_ident(&t.columns[col].name),
            c = quote_ident(&pk.name),
            t = t.qualified(),
            ty = pk.ty.pg_type(),
        );
        let row = self
            .lease()
            .await?
            .client
            .query_opt(&sql, &[&key])
            .await
            .map_err(db(format!(
                "reading {}.{}",
                t.qualified(),
                t.columns[col].name
            )))?;
        Ok(row.and_then(|r| r.get::<_, Option<serde_json::Value>>(0)))
    }

    /// The keys of `t`'s rows written at or after `since_us` (the
    /// database's clock), with when, oldest first.
    pub async fn written_since(
        &self,
        t: &Table,
        since_us: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = format!(
            "SELECT {}::text, (extract(epoch FROM _sequin_synced_at) * 1000000)::bigint FROM {}
              WHERE _sequin_synced_at >= 'epoch'::timestamptz + $1::bigint * interval '1 microsecond'
              ORDER BY 2, 1",
            quote_ident(&t.columns[t.primary_key].name),
            t.qualified()
        );
        Ok(self
            .lease()
            .await?
            .client
            .query(&sql, &[&since_us])
            .await
            .map_err(db(format!(
                "listing the rows of {} written since",
                t.qualified()
            )))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Keys of `t`'s rows whose column `column` is `value` and that were
    /// last written before `before_us` (rows written since may be newer
    /// than the listing they are compared with).
    pub async fn keys_where(
        &self,
        t: &Table,
        column: usize,
        value: &str,
        before_us: i64,
    ) -> Result<Vec<String>, StoreError> {
        let c = &t.columns[column];
        let sql = format!(
            "SELECT {}::text FROM {} WHERE {} = $1::text::{} AND _sequin_synced_at < 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'",
            quote_ident(&t.columns[t.primary_key].name),
            t.qualified(),
            quote_ident(&c.name),
            c.ty.pg_type()
        );
        Ok(self
            .lease()
            .await?
            .client
            .query(&sql, &[&value, &before_us])
            .await
            .map_err(db(format!("listing rows of {}", t.qualified())))?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// `(primary key, column out)` of `t`'s rows whose column `column` is
    /// one of `values` and that were last written before `before_us` (a
    /// link table's rows of some records, compared with a read of them).
    pub async fn rows_where_any(
        &self,
        t: &Table,
        column: usize,
        values: &[String],
        out: usize,
        before_us: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let c = &t.columns[column];
        let sql = format!(
            "SELECT {}::text, {}::text FROM {} WHERE {} = ANY($1::text[]::{}[]) AND _sequin_synced_at < 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'",
            quote_ident(&t.columns[t.primary_key].name),
            quote_ident(&t.columns[out].name),
            t.qualified(),
            quote_ident(&c.name),
            c.ty.pg_type()
        );
        Ok(self
            .lease()
            .await?
            .client
            .query(&sql, &[&values, &before_us])
            .await
            .map_err(db(format!("listing rows of {}", t.qualified())))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Deletes `t`'s rows whose column `column` is one of `values` (the
    /// children of deleted parents). Returns the rows deleted.
    pub async fn delete_where(
        &self,
        t: &Table,
        column: usize,
        values: &[String],
    ) -> Result<u64, StoreError> {
        let c = &t.columns[column];
        let sql = format!(
            "DELETE FROM {} WHERE {} = ANY($1::text[]::{}[])",
            t.qualified(),
            quote_ident(&c.name),
            c.ty.pg_type()
        );
        self.fenced_execute(
            &sql,
            &[&values],
            &format!("deleting from {}", t.qualified()),
        )
        .await
    }

    /// Runs one statement in a transaction that checks the writer's fence
    /// first (without one, on its own).
    async fn fenced_execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &str,
    ) -> Result<u64, StoreError> {
        let mut s = self.lease().await?;
        if self.fence.is_none() {
            return s.client.execute(sql, params).await.map_err(db(what));
        }
        let tx = s.client.transaction().await.map_err(db(what))?;
        self.check_fence(&tx).await?;
        let n = tx.execute(sql, params).await.map_err(db(what))?;
        tx.commit().await.map_err(db(what))?;
        Ok(n)
    }

    /// Deletes `child`'s rows whose column `column` names no row of
    /// `parent` (children of parents deleted by another path, such as a
    /// write through the proxy). Returns the rows deleted.
    pub async fn delete_orphans(
        &self,
        child: &Table,
        column: usize,
        parent: &Table,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {child} c WHERE c.{col} IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{pk} = c.{col})",
            child = child.qualified(),
            col = quote_ident(&child.columns[column].name),
            parent = parent.qualified(),
            pk = quote_ident(&parent.columns[parent.primary_key].name),
        );
        self.fenced_execute(
            &sql,
            &[],
            &format!("deleting orphans from {}", child.qualified()),
        )
        .await
    }
}

/// Updates an object's sync state inside the batch's transaction.
async fn record_checkpoint(
    tx: &tokio_postgres::Transaction<'_>,
    connection: &str,
    object: &str,
    rows: i64,
    checkpoint: &Checkpoint,
) -> Result<(), StoreError> {
    use tokio_postgres::types::ToSql;
    let phase = checkpoint.phase.map(|p| p.as_str().to_string());
    let mut sets = vec![
        "rows_synced = rows_synced + $3".to_string(),
        "last_success_at = now()".into(),
        "last_poll_at = now()".into(),
        "last_error = NULL".into(),
    ];
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&connection, &object, &rows];
    if let Some(p) = &phase {
        params.push(p);
        sets.push(format!("phase = ${}", params.len()));
    }
    if let Some(c) = &checkpoint.backfill_cursor {
        params.push(c);
        sets.push(format!("backfill_cursor = ${}", params.len()));
    }
    if let Some(c) = &checkpoint.incremental_cursor {
        params.push(c);
        sets.push(format!("incremental_cursor = ${}", params.len()));
    }
    tx.execute(
        "INSERT INTO sequin.sync_state (connection, object) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&connection, &object],
    )
    .await
    .map_err(db("creating sync state"))?;
    let sql = format!(
        "UPDATE sequin.sync_state SET {} WHERE connection = $1 AND object = $2",
        sets.join(", ")
    );
    tx.execute(&sql, &params)
        .await
        .map_err(db("recording the checkpoint"))?;
    Ok(())
}

/// Bytes per COPY data message.
const COPY_CHUNK: usize = 256 * 1024;

/// Rows encoded in COPY text format, with what the merge needs to know
/// about them. Reused across batches (`clear`) so its buffers are allocated
/// once.
#[derive(Debug)]
pub struct CopyBatch {
    buf: BytesMut,
    rows: usize,
    primary_key: usize,
    /// Primary keys seen in this batch (hashes of their text), to find
    /// repeats; a hash collision only costs the DISTINCT ON sort.
    keys: HashSet<u64>,
    repeated_keys: bool,
    /// Scratch space for JSON text before it is escaped.
    json: Vec<u8>,
}

impl CopyBatch {
    /// An empty batch for a table whose primary key is column `primary_key`.
    pub fn new(primary_key: usize) -> CopyBatch {
        CopyBatch {
            // Grown by the first batches to what they need, then reused: a
            // thousand objects backfilling a few records each need little.
            buf: BytesMut::with_capacity(4 * 1024),
            rows: 0,
            primary_key,
            keys: HashSet::new(),
            repeated_keys: false,
            json: Vec::new(),
        }
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.rows = 0;
        self.keys.clear();
        self.repeated_keys = false;
    }

    /// Appends a row (its position is its `_seq`: later rows win).
    pub fn push(&mut self, row: &Row) {
        self.push_cells(&row.cells, row.updated_at);
    }

    /// Appends a row given as cells and update marker.
    pub fn push_cells(&mut self, cells: &[Cell], updated_at: Option<i64>) {
        if let Some(key) = cells.get(self.primary_key) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.pk_hash(&mut h);
            if !self.keys.insert(h.finish()) {
                self.repeated_keys = true;
            }
        }
        let seq = self.rows as i64;
        encode_copy_row(&mut self.buf, &mut self.json, cells, updated_at, seq);
        self.rows += 1;
    }

    /// The batch's encoded rows as shared bytes, without a copy; the batch
    /// holds no data until [`CopyBatch::take_back`].
    fn lend(&mut self) -> bytes::Bytes {
        std::mem::take(&mut self.buf).freeze()
    }

    /// Takes back the buffer lent by [`CopyBatch::lend`]. Once every slice
    /// of it is dropped (the COPY is finished) this is the same allocation,
    /// capacity included, so the next batch is encoded into it.
    fn take_back(&mut self, data: bytes::Bytes) {
        self.buf = match data.try_into_mut() {
            Ok(whole) => whole,
            // Still shared (not expected once the COPY finished): keep a
            // copy of the rows rather than lose them.
            Err(data) => BytesMut::from(&data[..]),
        };
    }
}

/// Hashing of a primary key cell by its Postgres text (what the table's key
/// compares), without building the text for the common kinds.
trait PkHash {
    fn pk_hash(&self, h: &mut impl Hasher);
}

impl PkHash for Cell {
    fn pk_hash(&self, h: &mut impl Hasher) {
        match self {
            Cell::Text(s) | Cell::Decimal(s) => h.write(s.as_bytes()),
            Cell::Int(i) => h.write(i.to_string().as_bytes()),
            other => h.write(other.to_pg_text().unwrap_or_default().as_bytes()),
        }
    }
}

/// Appends one row in COPY text format: the cells, the update marker and
/// the sequence number. Each cell's text is what [`Cell::to_pg_text`] gives,
/// written without intermediate strings for the common kinds.
fn encode_copy_row(
    buf: &mut BytesMut,
    json: &mut Vec<u8>,
    cells: &[Cell],
    updated_at: Option<i64>,
    seq: i64,
) {
    for cell in cells {
        encode_copy_cell(buf, json, cell);
        buf.extend_from_slice(b"\t");
    }
    match updated_at {
        Some(us) => encode_copy_cell(buf, json, &Cell::Timestamp(us)),
        None => buf.extend_from_slice(b"\\N"),
    }
    buf.extend_from_slice(b"\t");
    let _ = write!(buf, "{seq}");
    buf.extend_from_slice(b"\n");
}

fn encode_copy_cell(buf: &mut BytesMut, json: &mut Vec<u8>, cell: &Cell) {
    match cell {
        Cell::Null => buf.extend_from_slice(b"\\N"),
        Cell::Text(s) | Cell::Decimal(s) => escape_copy(buf, s.as_bytes()),
        Cell::Int(i) => {
            let _ = write!(buf, "{i}");
        }
        Cell::Bool(b) => buf.extend_from_slice(if *b { b"t" } else { b"f" }),
        Cell::Timestamp(us) => {
            if !write_timestamp(buf, *us) {
                match cell.to_pg_text() {
                    Some(text) => escape_copy(buf, text.as_bytes()),
                    None => buf.extend_from_slice(b"\\N"),
                }
            }
        }
        Cell::Json(v) => {
            json.clear();
            serde_json::to_writer(&mut *json, v).expect("writing JSON to memory cannot fail");
            escape_copy(buf, json);
        }
        Cell::Float(_) | Cell::Date(_) | Cell::TextArray(_) => match cell.to_pg_text() {
            Some(text) => escape_copy(buf, text.as_bytes()),
            None => buf.extend_from_slice(b"\\N"),
        },
    }
}

/// Writes microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`
/// (the instant [`Cell::to_pg_text`] names, in fewer steps). Returns false,
/// writing nothing, outside years 1000-9999 (the caller falls back).
fn write_timestamp(buf: &mut BytesMut, us: i64) -> bool {
    use chrono::{Datelike, Timelike};
    let Some(dt) = chrono::DateTime::from_timestamp_micros(us) else {
        return false;
    };
    let year = dt.year();
    if !(1000..=9999).contains(&year) {
        return false;
    }
    let mut out = [0u8; 27];
    let two = |out: &mut [u8], at: usize, v: u32| {
        out[at] = b'0' + (v / 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    let y = year as u32;
    two(&mut out, 0, y / 100);
    two(&mut out, 2, y % 100);
    out[4] = b'-';
    two(&mut out, 5, dt.month());
    out[7] = b'-';
    two(&mut out, 8, dt.day());
    out[10] = b'T';
    two(&mut out, 11, dt.hour());
    out[13] = b':';
    two(&mut out, 14, dt.minute());
    out[16] = b':';
    two(&mut out, 17, dt.second());
    let micros = us.rem_euclid(1_000_000) as u32;
    let len = if micros == 0 {
        19
    } else {
        out[19] = b'.';
        let mut m = micros;
        for i in (20..26).rev() {
            out[i] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        26
    };
    buf.extend_from_slice(&out[..len]);
    buf.extend_from_slice(b"Z");
    true
}

fn escape_copy(buf: &mut BytesMut, bytes: &[u8]) {
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(esc);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-256 of every migration as it landed, migration 1 first. A
    /// database that ran a migration never runs it again, so a change to a
    /// landed file reaches new databases only: change the schema with a new
    /// migration.
    const LANDED: &[&str] = &[
        "23480e320062368cda783ab9900c4d689bf0898eb10ae28e4e27de0ee4a344c2",
        "ebd25d594144fbc1e6086e4398257183ac0d4e45dac517c360281d095e986dad",
        "03acdc6ea8d5183fb62d3b540c803c81aa491677b9210bef84e29f4934ba6bda",
        "2ab7ab1b09ad8929cf94c15305cc1bf66a5228ad9efcdbc0881c24544067fbc2",
        "9b7591230b1381e73efd04994b0fd6c96bf5b944fc873f4acb0e87a73252110d",
        "2fda00bbe3b81cd0ec63be0b8d7e3545c5a891641f44d618858561ab5a50a7df",
        "1caca77413156d8e7366ecedf06b5d584bf4c6ed1af04a05813457c9d1785acf",
        "79218168e769d9b44c17093728e582d125f594a441f4267324922733e662a70b",
        "4b51620e0f36baa229b76e753f2d2ee3a0bcec3a01fc176b0b3134a31e32e4e0",
        "1d81874e624a6a6d1b5f92a091c082d1fab6f1d28297f85af23990df5e64eda4",
        "c786f9fdb28cb4a60d093dbba467eaa7c758ffcb4de5834efc5979eedfd9da81",
        "1cd35418372052e5b0b115a1a1c1722db752ea24c50572ec2d6eee5b96be7e3e",
        "e0701b8c571c5ba3244ec172a98a778af191e8101fd45b61ff6c22664d833b08",
        "0694fbbc28782d6ce8145f90b7ade7ca7f9a6105b30ba8d4fd865d46a317f999",
        "9117cbcf663ad127084dae92d9fdbb9b0dd4299f9df3203b872bf2e04d1916d4",
        "7c24ebddf89d02ab2a68afc4ab78f399eb7e2746e7870e5f98df3a7df2eb9bef",
    ];

    #[test]
    fn landed_migrations_never_change() {
        use sha2::{Digest, Sha256};
        let versions: Vec<i32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            versions,
            (1..=MIGRATIONS.len() as i32).collect::<Vec<_>>(),
            "migrations are numbered 1, 2, 3, ... in order"
        );
        for (version, sql) in MIGRATIONS {
            let digest: String = Sha256::digest(sql.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            match LANDED.get(*version as usize - 1) {
                Some(landed) => assert_eq!(
                    &digest, landed,
                    "migration {version} changed after it landed; restore it and put the change in a new migration"
                ),
                None => panic!(
                    "migration {version} is new: once it is final, add \"{digest}\" to LANDED"
                ),
            }
        }
    }

    #[test]
    fn copy_text_escapes() {
        let mut buf = BytesMut::new();
        encode_copy_row(
            &mut buf,
            &mut Vec::new(),
            &[Cell::Text("a\tb\\c\nd".into()), Cell::Null, Cell::Int(5)],
            None,
            7,
        );
        assert_eq!(&buf[..], b"a\\tb\\\\c\\nd\t\\N\t5\t\\N\t7\n");
    }

    /// Every cell encodes to exactly what `Cell::to_pg_text` says (escaped),
    /// or to the same instant for timestamps.
    #[test]
    fn copy_cells_match_pg_text() {
        let cells = [
            Cell::Text("plain".into()),
            Cell::Decimal("-12.50".into()),
            Cell::Int(-42),
            Cell::Int(i64::MAX),
            Cell::Float(1.5),
            Cell::Float(f64::NAN),
            Cell::Bool(true),
            Cell::Bool(false),
            Cell::Date(19000),
            Cell::Json(serde_json::json!({"a": "x\ty", "b": [1, null, "q\"\\"], "c": {"d": 1.25}})),
            Cell::TextArray(vec!["a b".into(), "c\"d".into()]),
        ];
        for cell in &cells {
            let mut buf = BytesMut::new();
            encode_copy_cell(&mut buf, &mut Vec::new(), cell);
            let mut want = BytesMut::new();
            escape_copy(&mut want, cell.to_pg_text().unwrap().as_bytes());
            assert_eq!(buf, want, "{cell:?}");
        }
        for us in [
            0i64,
            1,
            999_999,
            1_700_000_000_000_000,
            1_700_000_000_123_456,
            1_700_000_000_120_000,
            -1,
            -86_400_000_000 * 365 * 10 + 7,
            253_402_300_799_999_999,
        ] {
            let mut buf = BytesMut::new();
            encode_copy_cell(&mut buf, &mut Vec::new(), &Cell::Timestamp(us));
            let text = std::str::from_utf8(&buf).unwrap();
            let parsed = chrono::DateTime::parse_from_rfc3339(text)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.timestamp_micros(), us, "{text}");
        }
        // Outside 1000-9999 the generic path is used.
        let mut buf = BytesMut::new();
        encode_copy_cell(
            &mut buf,
            &mut Vec::new(),
            &Cell::Timestamp(-62_000_000_000_000_000),
        );
        let want = Cell::Timestamp(-62_000_000_000_000_000)
            .to_pg_text()
            .unwrap();
        assert_eq!(&buf[..], want.as_bytes());
    }

    #[test]
    fn batches_notice_repeated_keys() {
        let row = |id: &str| Row {
            cells: vec![Cell::Text(id.into()), Cell::Int(1)],
            updated_at: Some(1),
        };
        let mut batch = CopyBatch::new(0);
        batch.push(&row("a"));
        batch.push(&row("b"));
        assert!(!batch.repeated_keys);
        assert_eq!(batch.len(), 2);
        batch.push(&row("a"));
        assert!(batch.repeated_keys);
        batch.clear();
        assert!(batch.is_empty() && !batch.repeated_keys);
        batch.push(&row("a"));
        assert!(!batch.repeated_keys);
        assert_eq!(&batch.buf[..], b"a\t1\t1970-01-01T00:00:00.000001Z\t0\n");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5/db?x=1"), "h:5/db");
        assert_eq!(redact_url("postgres://h/db"), "h/db");
    }

    #[test]
    fn a_lent_buffer_comes_back_as_the_same_allocation() {
        let mut batch = CopyBatch::new(0);
        for i in 0..2000 {
            batch.push(&Row {
                cells: vec![Cell::Text(format!("cus_{i}")), Cell::Int(i)],
                updated_at: Some(i),
            });
        }
        let encoded = batch.buf.to_vec();
        let (ptr, capacity) = (batch.buf.as_ptr(), batch.buf.capacity());
        let data = batch.lend();
        assert_eq!(&data[..], &encoded[..]);
        // What apply_batch does: slices go out and are dropped.
        let pieces: Vec<bytes::Bytes> = data
            .chunks(1000)
            .enumerate()
            .map(|(i, c)| data.slice(i * 1000..i * 1000 + c.len()))
            .collect();
        drop(pieces);
        batch.take_back(data);
        assert_eq!(batch.buf.as_ptr(), ptr, "no new allocation");
        assert_eq!(batch.buf.capacity(), capacity);
        assert_eq!(&batch.buf[..], &encoded[..], "the rows are intact");
        batch.clear();
        assert!(batch.is_empty() && batch.buf.capacity() == capacity);
    }
}
