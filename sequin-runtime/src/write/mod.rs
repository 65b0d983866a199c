//! Write-through: INSERT, UPDATE and DELETE on synced tables, sent through
//! the proxy, are applied to the API first, synchronously.
//!
//! For each intercepted statement, on the client's own server session and
//! inside the client's transaction (an implicit one in autocommit):
//!
//! 1. the session gets the writer key and row capture for this statement
//!    (transaction-local settings; see migration 0002);
//! 2. Postgres executes the client's statement as sent (defaults,
//!    constraints, WHERE, row locks are its job), and the capture trigger
//!    records every changed row, old and new;
//! 3. each row becomes an API operation with only the changed writable
//!    fields, checked against the spec first;
//! 4. the API applies them (batch endpoints where the object has them);
//! 5. on success, each row is replaced by the API's canonical record (the
//!    API's id replaces the provisional one), the effects are journalled,
//!    and the client gets the command tag and its RETURNING rows computed
//!    over the final rows, in the formats it asked for;
//! 6. on any refusal, an error is raised in the client's transaction, so it
//!    is aborted like after any failed statement, and the client gets the
//!    ErrorResponse of the error contract.
//!
//! The API call happens when the statement runs; what a later ROLLBACK
//! means is settled by the journal's reconciler (see [`journal`]).

pub mod apply;
pub mod error;
pub mod journal;
pub mod rows;
pub mod sql;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sequin_proxy::codec::{BackendMessage, CommandComplete};
use sequin_proxy::{
    BoxFuture, InjectError, InjectedQuery, InterceptContext, Intercepted, Interceptor, Outcome,
    Protocol, Step, WriteKind,
};
use sequin_spec::Connector;
use sequin_spec::record::{WriteOp, decode_row, format_iso8601};
use serde_json::{Map, Value, json};

use crate::api::{ApiError, Client};
use crate::config::{Config, ConnectionConfig};
use crate::sync::plan::ObjectPlan;

use error::WriteError;
use journal::{Entry, Journal};
use rows::RowOp;

/// A synced table write-through can write: its connection's API client and
/// the object's plan (columns incl. discovered ones, endpoints).
pub struct Table {
    pub connection: String,
    pub spec: Arc<Connector>,
    pub client: Client,
    pub plan: ObjectPlan,
    /// Most rows one statement may write.
    pub max_rows: u32,
}

impl Table {
    fn api(&self) -> &str {
        &self.spec.display_name
    }

    /// The column of an API field name, if it is one.
    fn column_of(&self, field: Option<&str>) -> Option<String> {
        let f = field?;
        let find = |f: &str| {
            self.plan
                .table
                .columns
                .iter()
                .find(|c| &*c.api_name == f || &*c.path == f || c.path.ends_with(&format!(".{f}")))
                .map(|c| c.name.to_string())
        };
        // A member of a nested field (Stripe's form keys
        // `invoice_settings[footer]`, dotted paths) belongs to its column.
        find(f).or_else(|| {
            let top = f.split(['[', '.']).next().unwrap_or(f);
            (top != f).then(|| find(top)).flatten()
        })
    }
}

struct Connection {
    config: ConnectionConfig,
    spec: Arc<Connector>,
    client: Client,
}

struct Inner {
    url: String,
    connections: Vec<Connection>,
    tables: RwLock<HashMap<(String, String), Arc<Table>>>,
    last_refresh: std::sync::Mutex<Option<Instant>>,
    /// Sequin's journal sessions, one per thread that runs client sessions:
    /// a session's journal write then stays on its own thread (a database
    /// connection's I/O task runs where it was opened), instead of waking
    /// another thread and waiting for it.
    journal: thread_local::ThreadLocal<tokio::sync::Mutex<Option<Arc<Journal>>>>,
    /// The last failure to look up a connection's objects, by connection.
    lookup_errors: std::sync::Mutex<HashMap<String, String>>,
    /// What write-through needs of a statement's text (RETURNING list,
    /// alias), by text: parsing it again per execution is wasted work.
    shapes: std::sync::Mutex<HashMap<String, Arc<sql::Shape>>>,
    /// RETURNING rows still owed to portals executed with a row limit, by
    /// portal id.
    suspended: std::sync::Mutex<HashMap<u64, Suspended>>,
}

/// The rest of a portal's RETURNING rows after a row-limited Execute.
struct Suspended {
    rows: Vec<sequin_proxy::codec::DataRow>,
    tag: String,
}

/// Most statement shapes cached.
const SHAPES_MAX: usize = 4096;

/// Most suspended portals kept; a client that never fetches the rest of
/// its portals cannot grow this without bound.
const SUSPENDED_MAX: usize = 4096;

/// The write-through interceptor. Cheap to clone.
#[derive(Clone)]
pub struct WriteThrough {
    inner: Arc<Inner>,
}

/// Least time between two catalog refreshes caused by unknown tables.
const REFRESH_MIN: Duration = Duration::from_secs(5);

impl WriteThrough {
    /// Builds the interceptor for every connection of `config`. Looking up
    /// the objects' run-time fields needs the APIs; a connection whose API
    /// cannot be reached now is looked up again later.
    pub async fn new(config: &Config) -> Result<WriteThrough, crate::sync::SyncError> {
        let url = config.database_url.expose().to_string();
        let mut connections = Vec::new();
        for c in &config.connections {
            let (spec, client) = crate::sync::api_client(&url, c)?;
            connections.push(Connection {
                config: c.clone(),
                spec,
                client,
            });
        }
        let w = WriteThrough {
            inner: Arc::new(Inner {
                url,
                connections,
                tables: RwLock::new(HashMap::new()),
                last_refresh: std::sync::Mutex::new(None),
                journal: thread_local::ThreadLocal::new(),
                suspended: std::sync::Mutex::new(HashMap::new()),
                shapes: std::sync::Mutex::new(HashMap::new()),
                lookup_errors: std::sync::Mutex::new(HashMap::new()),
            }),
        };
        // Registers this process's key, which the proxy's statements show
        // `sequin.lend`, before the first write. The registration outlives
        // the session; journal sessions are opened by the threads that
        // write (and register the key again, harmlessly).
        match crate::store::connect(&w.inner.url).await {
            Ok(c) => {
                if let Err(e) = crate::guard::hold(&c).await {
                    tracing::warn!(error = %e, "write-through: cannot register the process key");
                }
            }
            Err(e) => tracing::warn!(error = %e, "write-through: cannot register the process key"),
        }
        w.refresh().await;
        Ok(w)
    }

    /// Looks up every connection's objects again (new Airtable tables,
    /// custom fields).
    pub async fn refresh(&self) {
        *self
            .inner
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        for c in &self.inner.connections {
            match crate::sync::connection_plans(
                &self.inner.url,
                &c.config,
                c.spec.clone(),
                c.client.clone(),
            )
            .await
            {
                Ok(plans) => {
                    self.inner
                        .lookup_errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&c.config.name);
                    let mut tables = self.inner.tables.write().unwrap_or_else(|e| e.into_inner());
                    tables.retain(|(schema, _), _| schema != &c.config.name);
                    for plan in plans {
                        let max_rows = max_rows(&c.spec, &plan);
                        tables.insert(
                            (c.config.name.clone(), plan.table.name.clone()),
                            Arc::new(Table {
                                connection: c.config.name.clone(),
                                spec: c.spec.clone(),
                                client: c.client.clone(),
                                plan,
                                max_rows,
                            }),
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(connection = %c.config.name, error = %e, "write-through: cannot look up the connection's objects");
                    self.inner
                        .lookup_errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(c.config.name.clone(), e.to_string());
                    continue;
                }
            }
        }
    }

    /// The table `schema.table`, if write-through knows it.
    pub fn table(&self, schema: &str, table: &str) -> Option<Arc<Table>> {
        self.inner
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(schema.to_string(), table.to_string()))
            .cloned()
    }

    /// A lookup for the journal's reconciler.
    pub fn lookup(&self) -> journal::Lookup {
        let w = self.clone();
        Arc::new(move |schema: &str, table: &str| w.table(schema, table))
    }

    async fn table_or_refresh(&self, schema: &str, table: &str) -> Option<Arc<Table>> {
        if let Some(t) = self.table(schema, table) {
            return Some(t);
        }
        let recent = self
            .inner
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < REFRESH_MIN);
        if !recent {
            self.refresh().await;
        }
        self.table(schema, table)
    }

    /// This thread's journal slot.
    fn journal_slot(&self) -> &tokio::sync::Mutex<Option<Arc<Journal>>> {
        self.inner.journal.get_or(|| tokio::sync::Mutex::new(None))
    }

    async fn journal(&self) -> Option<Arc<Journal>> {
        let mut j = self.journal_slot().lock().await;
        if j.is_none() {
            match Journal::connect(&self.inner.url).await {
                Ok(x) => *j = Some(Arc::new(x)),
                Err(e) => tracing::warn!(error = %e, "write journal: cannot connect"),
            }
        }
        j.clone()
    }

    async fn journal_record(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let Some(j) = self.journal().await else {
            tracing::error!(
                effects = entries.len(),
                "write journal unavailable: API effects not journalled"
            );
            return;
        };
        if let Err(e) = j.record(entries).await {
            tracing::error!(error = %e, effects = entries.len(), "write journal: recording failed");
            *self.journal_slot().lock().await = None;
        }
    }
}

fn max_rows(spec: &Connector, plan: &ObjectPlan) -> u32 {
    if let Some(o) = spec.objects.iter().find(|o| o.name == plan.table.name) {
        return o.max_rows_per_write;
    }
    spec.discovered_objects
        .as_ref()
        .map(|d| d.max_rows_per_write)
        .unwrap_or(100)
}

impl Interceptor for WriteThrough {
    fn intercept<'a>(
        &'a self,
        ctx: &'a mut InterceptContext<'_>,
    ) -> BoxFuture<'a, Result<Outcome, InjectError>> {
        Box::pin(self.run(ctx))
    }
}

/// Messages for the client, built up statement by statement.
type Reply = Vec<BackendMessage>;

fn failed(reply: &Reply) -> bool {
    matches!(reply.last(), Some(BackendMessage::ErrorResponse(_)))
}

impl WriteThrough {
    async fn run(&self, ctx: &mut InterceptContext<'_>) -> Result<Outcome, InjectError> {
        match self.run_statements(ctx).await {
            // A statement of Sequin's own failed at the server: the client's
            // transaction is aborted by it, and the client gets its error.
            Err(InjectError::Server(e)) => {
                Ok(Outcome::Respond(vec![BackendMessage::ErrorResponse(e)]))
            }
            other => other,
        }
    }

    async fn run_statements(&self, ctx: &mut InterceptContext<'_>) -> Result<Outcome, InjectError> {
        let st = ctx.statement().clone();
        if st.classification.parse_error.is_some() || ctx.transaction_status() == b'E' {
            return Ok(Outcome::PassThrough);
        }
        let mut reply = Reply::new();
        match st.protocol {
            Protocol::Extended => {
                // A later Execute of a row-limited portal: the write
                // happened at the first one; send the next rows.
                let resumed = self
                    .inner
                    .suspended
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&st.portal_id);
                if let Some(rest) = resumed {
                    self.send_rows(&st, rest.rows, rest.tag, &mut reply);
                    return Ok(Outcome::Respond(reply));
                }
                let Some(stmt) = st.classification.statements.first() else {
                    return Ok(Outcome::PassThrough);
                };
                let writes = self.resolve(ctx, &stmt.writes).await?;
                if writes.is_empty() {
                    return Ok(Outcome::PassThrough);
                }
                self.statement(ctx, &st, &stmt.sql, &writes, &mut reply, true)
                    .await?;
            }
            Protocol::Simple => {
                let statements = &st.classification.statements;
                if statements.is_empty() {
                    return Ok(Outcome::PassThrough);
                }
                if let [only] = statements.as_slice()
                    && self.resolve(ctx, &only.writes).await?.is_empty()
                {
                    return Ok(Outcome::PassThrough);
                }
                for (i, stmt) in statements.iter().enumerate() {
                    // Resolved when it runs: an earlier statement of the
                    // query may have changed the search_path.
                    let writes = self.resolve(ctx, &stmt.writes).await?;
                    if writes.is_empty() {
                        plain(ctx, &stmt.sql, &mut reply).await?;
                    } else {
                        let ends_exchange = i + 1 == statements.len();
                        self.statement(ctx, &st, &stmt.sql, &writes, &mut reply, ends_exchange)
                            .await?;
                    }
                    if failed(&reply) {
                        break;
                    }
                }
            }
        }
        Ok(Outcome::Respond(reply))
    }

    /// The synced tables a statement writes, with the schema of each
    /// unqualified name resolved by the server through the session's
    /// search_path (only names some synced table has reach here). Tables
    /// that turn out not to be synced are left out.
    async fn resolve(
        &self,
        ctx: &mut InterceptContext<'_>,
        writes: &[sequin_proxy::TableWrite],
    ) -> Result<Vec<sequin_proxy::TableWrite>, InjectError> {
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            if !w.table.schema.is_empty() {
                out.push(w.clone());
                continue;
            }
            let name = sql::ident(&w.table.table);
            let resolved = ctx
                .query(
                    "SELECT n.nspname::text FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.oid = pg_catalog.to_regclass($1)",
                    &[Some(&name)],
                )
                .await;
            // A failure here (the server is not skipping: the transaction
            // was checked) becomes the client's error in `run`.
            let schema = text_at(&resolved?, 0, 0);
            let synced = schema.as_deref().is_some_and(|s| {
                s == "sequin" || self.inner.connections.iter().any(|c| c.config.name == s)
            });
            if let (true, Some(schema)) = (synced, schema) {
                let mut w = w.clone();
                w.table = sequin_proxy::TableName::new(schema, w.table.table.clone());
                out.push(w);
            }
        }
        Ok(out)
    }

    /// Refuses a statement: the client's transaction is aborted (as after
    /// any failed statement) and the client gets `e`.
    async fn refuse(
        &self,
        ctx: &mut InterceptContext<'_>,
        e: WriteError,
        reply: &mut Reply,
    ) -> Result<(), InjectError> {
        if !ctx.server_failed() {
            let r = ctx
                .query(
                    "SELECT sequin.fail($1, $2, $3, $4, $5, $6)",
                    &[
                        Some(&e.sqlstate),
                        Some(&e.message),
                        e.fields.detail.as_deref(),
                        e.fields.schema.as_deref(),
                        e.fields.table.as_deref(),
                        e.fields.column.as_deref(),
                    ],
                )
                .await;
            match r {
                Err(InjectError::Server(_)) | Ok(_) => {}
                Err(other) => return Err(other),
            }
        }
        reply.push(BackendMessage::ErrorResponse(e.to_response()));
        Ok(())
    }

    /// One statement that writes synced tables.
    async fn statement(
        &self,
        ctx: &mut InterceptContext<'_>,
        st: &Intercepted,
        sql_text: &str,
        writes: &[sequin_proxy::TableWrite],
        reply: &mut Reply,
        ends_exchange: bool,
    ) -> Result<(), InjectError> {
        let first = &writes[0];
        let (schema, name) = (first.table.schema.as_str(), first.table.table.as_str());
        if schema == "sequin" {
            let e = WriteError::new(
                "Sequin",
                "42501",
                format!("sequin.{name} is maintained by Sequin and cannot be written by clients"),
            )
            .on(schema, name);
            return self.refuse(ctx, e, reply).await;
        }
        let Some(table) = self.table_or_refresh(schema, name).await else {
            let lookup_error = self
                .inner
                .lookup_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(schema)
                .cloned();
            if let Some(err) = lookup_error {
                let api = self
                    .inner
                    .connections
                    .iter()
                    .find(|c| c.config.name == schema)
                    .map(|c| c.spec.display_name.clone())
                    .unwrap_or_else(|| "Sequin".into());
                let e = WriteError::new(
                    &api,
                    "58030",
                    format!("cannot look up {schema}.{name} at the API right now, so nothing was written; try again: {err}"),
                )
                .on(schema, name);
                return self.refuse(ctx, e, reply).await;
            }
            let e = WriteError::new("Sequin", "0A000", format!("{schema}.{name} is not an object of a configured connection, so it cannot be written through to an API"))
                .on(schema, name);
            return self.refuse(ctx, e, reply).await;
        };
        let api = table.api().to_string();
        let unsupported = |what: &str| WriteError::new(&api, "0A000", what).on(schema, name);
        if writes.len() > 1 || first.in_cte {
            let e = unsupported(
                "a statement may write one synced table, in its main clause (not in a WITH clause); split it into one INSERT, UPDATE or DELETE per table",
            );
            return self.refuse(ctx, e, reply).await;
        }
        let e = &table.plan.endpoints;
        let (op, supported) = match first.kind {
            WriteKind::Insert => (
                WriteOp::Create,
                e.create.is_some() || e.batch_create.is_some(),
            ),
            WriteKind::Update => (
                WriteOp::Update,
                e.update.is_some() || e.batch_update.is_some(),
            ),
            WriteKind::Delete => (
                WriteOp::Delete,
                e.delete.is_some() || e.batch_delete.is_some(),
            ),
            WriteKind::Merge => {
                return self.refuse(ctx, unsupported("MERGE into a synced table is not supported; use INSERT, UPDATE or DELETE"), reply).await;
            }
            WriteKind::Copy => {
                return self.refuse(ctx, unsupported("COPY into a synced table is not supported; use INSERT (up to the object's rows per statement)"), reply).await;
            }
            WriteKind::Truncate => {
                return self.refuse(ctx, unsupported("TRUNCATE of a synced table is not supported (it would delete every record at the API); use DELETE"), reply).await;
            }
        };
        if !supported {
            let verb = match op {
                WriteOp::Create => "created",
                WriteOp::Update => "updated",
                WriteOp::Delete => "deleted",
            };
            let e = unsupported(&format!(
                "{} records cannot be {verb} through the API",
                table.plan.api_name
            ));
            return self.refuse(ctx, e, reply).await;
        }

        // 1. Key and capture, and the transaction's id for the journal.
        // The key is a fresh one per statement, registered inside the
        // client's transaction and removed before the client's next
        // statement: the statement itself can read the setting, but what it
        // reads opens nothing once the statement is over, and no other
        // session ever sees the uncommitted registration.
        // The steps up to the capture go in one round trip.
        let cap = table.max_rows.to_string();
        let key = crate::guard::statement_key();
        let prep_params = texts(&[
            Some(&key),
            Some(&cap),
            Some(&api),
            Some(crate::guard::key()),
            Some(&table.plan.table.qualified()),
        ]);
        let prep = InjectedQuery {
            sql: "SELECT txid_current()::text, sequin.lend($4, sha256(convert_to($1, 'UTF8')), $5::text::regclass),
                        set_config('sequin.write_key', $1, true),
                        set_config('sequin.capture', 'on', true), set_config('sequin.capture_cap', $2, true),
                        set_config('sequin.capture_api', $3, true), set_config('sequin.captured', '', true),
                        set_config('sequin.captured_n', '0', true)",
            param_types: &[0, 0, 0, 0, 0],
            param_formats: &[],
            params: &prep_params,
            result_formats: &[],
            cache: true,
        };
        // 2. The client's statement, as sent (its own portal in the
        // extended protocol, so its parameters are exactly the client's).
        let statement = match (st.protocol, &st.bind) {
            (Protocol::Extended, Some(bind)) => Step::Portal(&bind.portal),
            _ => Step::Query(InjectedQuery {
                sql: sql_text,
                param_types: &[],
                param_formats: &[],
                params: &[],
                result_formats: &[],
                cache: false,
            }),
        };
        let capture = Step::Query(InjectedQuery {
            sql: "SELECT current_setting('sequin.captured', true), set_config('sequin.capture', 'off', true)",
            param_types: &[],
            param_formats: &[],
            params: &[],
            result_formats: &[],
            cache: true,
        });
        let mut results = ctx
            .pipeline(&[Step::Query(prep), statement, capture])
            .await?
            .into_iter();
        let mut next = |reply: &mut Reply| match results.next() {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                reply.push(BackendMessage::ErrorResponse(e));
                None
            }
            None => None,
        };
        let Some(prepared) = next(reply) else {
            return Ok(());
        };
        let Some(executed) = next(reply) else {
            return Ok(());
        };
        let Some(captured) = next(reply) else {
            return Ok(());
        };
        let xid: i64 = text_at(&prepared, 0, 0)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let captured = text_at(&captured, 0, 0).unwrap_or_default();
        let changes = match rows::parse_captured(&captured) {
            Ok(c) => c,
            Err(e) => {
                let e = WriteError::new(
                    &api,
                    "XX000",
                    format!("internal error of write-through: {e}"),
                )
                .on(schema, name);
                return self.refuse(ctx, e, reply).await;
            }
        };
        if let Some(other) = changes
            .iter()
            .find(|c| c.schema != schema || c.table != name)
        {
            let e = unsupported(&format!(
                "the statement also changed {}.{} (a trigger?); write-through applies one table per statement",
                other.schema, other.table
            ));
            return self.refuse(ctx, e, reply).await;
        }

        // 3. The API operations, checked locally.
        // Values sit under the key the endpoint wraps bodies in (HubSpot's
        // `properties.x`, Airtable's `fields.x`); the wrap adds it back.
        let ep = &table.plan.endpoints;
        let strip = [ep.create.as_ref(), ep.update.as_ref()]
            .into_iter()
            .flatten()
            .chain(
                [&ep.batch_create, &ep.batch_update]
                    .into_iter()
                    .flatten()
                    .map(|b| &b.endpoint),
            )
            .find_map(|e| e.wrap.as_deref());
        let mut ops = Vec::with_capacity(changes.len());
        for c in &changes {
            match rows::plan_row(
                &api,
                &table.plan.table.columns,
                table.plan.table.primary_key,
                c,
                strip,
            ) {
                Ok(op) => ops.push(op),
                Err(e) => return self.refuse(ctx, e.on(schema, name), reply).await,
            }
        }
        let keys: Vec<String> = ops
            .iter()
            .map(|o| match o {
                RowOp::Create { key, .. } => key.clone(),
                RowOp::Update { id, .. } | RowOp::Delete { id } | RowOp::Unchanged { id } => {
                    id.clone()
                }
            })
            .collect();

        // 4. The API.
        let applied = apply::apply(&table, &ops, &keys).await;
        let entries: Vec<Entry> = applied
            .done
            .iter()
            .filter_map(|(i, d)| journal_entry(&table, &ops[*i], d, xid))
            .collect();
        if let Some(err) = applied.error {
            // Effects applied before the failure are undone by the
            // reconciler once the aborted transaction is seen.
            self.journal_record(&entries).await;
            let e = api_refusal(&table, op, &err).on(schema, name);
            return self.refuse(ctx, e, reply).await;
        }

        // 5. Canonical rows back into the table, and the journal.
        let (mut created_docs, mut updated_docs) = (Vec::new(), Vec::new());
        for (i, done) in &applied.done {
            let Some(record) = &done.record else { continue };
            match canonical_doc(&table, record, &keys[*i]) {
                Ok(d) if matches!(ops[*i], RowOp::Create { .. }) => created_docs.push(d),
                Ok(d) => updated_docs.push(d),
                Err(message) => {
                    self.journal_record(&entries).await;
                    let e = WriteError::new(&api, "58030", format!("the API accepted the write, but its record could not be read: {message}"))
                        .on(schema, name);
                    return self.refuse(ctx, e, reply).await;
                }
            }
        }
        // 6. Write-back, key removal and RETURNING in one round trip (the
        // journal is written meanwhile on Sequin's own session).
        let qualified = table.plan.table.qualified();
        let pk = sql::Key::of(&table.plan.table);
        let columns: Vec<String> = table
            .plan
            .table
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        // Created rows are inserted under the API's id: a copy the sync
        // engine brought in first (its events feed or a poll can be faster
        // than this statement, above all after a retried create), even one
        // it has not committed yet, is the same record and takes the
        // client's canonical values.
        let created_sql =
            (!created_docs.is_empty()).then(|| sql::write_back_created(&qualified, pk, &columns));
        let created_params = texts(&[Some(&Value::Array(created_docs).to_string())]);
        let updated_sql =
            (!updated_docs.is_empty()).then(|| sql::write_back(&qualified, pk, &columns));
        let updated_params = texts(&[Some(&Value::Array(updated_docs).to_string())]);
        let shape = self.shape(sql_text);
        let returning = match &shape.returning {
            Some(list) => {
                // Final rows: deleted ones as they were; the others read
                // back from the table by their final ids.
                let deleting = changes.iter().all(|c| c.op == WriteOp::Delete);
                let api_ids: HashMap<usize, &str> = applied
                    .done
                    .iter()
                    .map(|(i, d)| (*i, d.api_id.as_str()))
                    .collect();
                let doc = if deleting {
                    Value::Array(
                        changes
                            .iter()
                            .map(|c| c.old.clone().map(Value::Object).unwrap_or(Value::Null))
                            .collect(),
                    )
                } else {
                    Value::Array(
                        keys.iter()
                            .enumerate()
                            .map(|(i, k)| {
                                Value::String(api_ids.get(&i).copied().unwrap_or(k).to_string())
                            })
                            .collect(),
                    )
                };
                let from = if deleting {
                    sql::FinalRows::Json
                } else {
                    sql::FinalRows::Table { pk }
                };
                Some(
                    returning_query(ctx, st, &qualified, &shape, list, from, doc.to_string())
                        .await?,
                )
            }
            None => None,
        };
        let mut steps = Vec::with_capacity(5);
        for (q, params) in [
            (&created_sql, &created_params),
            (&updated_sql, &updated_params),
        ] {
            if let Some(q) = q {
                steps.push(Step::Query(InjectedQuery {
                    sql: q,
                    param_types: &[0],
                    param_formats: &[],
                    params,
                    result_formats: &[],
                    cache: true,
                }));
            }
        }
        // Markers of the effects, in the client's (sub)transaction (see
        // `journal` for what their absence after a commit means), and the
        // statement's key removed, in one call.
        let release_params = texts(&[
            Some(crate::guard::key()),
            Some(&key),
            Some(
                &Value::Array(
                    entries
                        .iter()
                        .map(|e| Value::String(e.id.to_string()))
                        .collect(),
                )
                .to_string(),
            ),
        ]);
        steps.push(Step::Query(InjectedQuery {
            sql: "SELECT sequin.release($1, sha256(convert_to($2, 'UTF8')),
                        ARRAY(SELECT jsonb_array_elements_text($3::text::jsonb)::uuid))",
            param_types: &[0, 0, 0],
            param_formats: &[],
            params: &release_params,
            result_formats: &[],
            cache: true,
        }));
        if let Some(r) = &returning {
            steps.push(Step::Query(r.query()));
        }
        // The last round trip of the exchange carries the Sync that ends
        // it (the implicit transaction commits with it; the journal's
        // reconciler settles the entry either way).
        let write_back = async {
            if ends_exchange {
                ctx.pipeline_to_sync(&steps).await
            } else {
                ctx.pipeline(&steps).await
            }
        };
        let (results, ()) = tokio::join!(write_back, self.journal_record(&entries));
        let results = results?;
        let n = results.len();
        let mut last = None;
        for r in results {
            match r {
                Ok(r) => last = Some(r),
                Err(e) => {
                    reply.push(BackendMessage::ErrorResponse(e));
                    return Ok(());
                }
            }
        }
        if n < steps.len() {
            return Err(InjectError::Closed);
        }
        let rows = match (returning.is_some(), last) {
            (true, Some(r)) => {
                if st.protocol == Protocol::Simple {
                    reply.push(BackendMessage::RowDescription(r.columns));
                }
                r.rows
            }
            _ => Vec::new(),
        };
        self.send_rows(st, rows, executed.command_tag, reply);
        Ok(())
    }

    /// The shape of a statement, cached by text (bounded like the
    /// proxy's classification cache).
    fn shape(&self, sql_text: &str) -> Arc<sql::Shape> {
        let mut shapes = self.inner.shapes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = shapes.get(sql_text) {
            return s.clone();
        }
        if shapes.len() >= SHAPES_MAX {
            shapes.clear();
        }
        let s = Arc::new(sql::shape(sql_text));
        shapes.insert(sql_text.to_string(), s.clone());
        s
    }

    /// Adds RETURNING rows and the command tag to the reply, at most the
    /// Execute's row limit of them: then PortalSuspended, and the rest is
    /// kept for the portal's next Execute.
    fn send_rows(
        &self,
        st: &Intercepted,
        mut rows: Vec<sequin_proxy::codec::DataRow>,
        tag: String,
        reply: &mut Reply,
    ) {
        let limit = usize::try_from(st.max_rows).unwrap_or(0);
        if st.protocol == Protocol::Extended && limit > 0 && rows.len() > limit {
            let rest = rows.split_off(limit);
            reply.extend(rows.into_iter().map(BackendMessage::DataRow));
            reply.push(BackendMessage::PortalSuspended);
            let mut s = self
                .inner
                .suspended
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if s.len() >= SUSPENDED_MAX {
                s.clear();
            }
            s.insert(st.portal_id, Suspended { rows: rest, tag });
            return;
        }
        reply.extend(rows.into_iter().map(BackendMessage::DataRow));
        reply.push(BackendMessage::CommandComplete(CommandComplete { tag }));
    }
}

/// Text parameters for an injected query.
fn texts(values: &[Option<&str>]) -> Vec<Option<Bytes>> {
    values
        .iter()
        .map(|v| v.map(|s| Bytes::copy_from_slice(s.as_bytes())))
        .collect()
}

/// The RETURNING query of a statement with its parameters, owned.
struct Returning {
    sql: String,
    types: Vec<u32>,
    formats: Vec<i16>,
    params: Vec<Option<Bytes>>,
    result_formats: Vec<i16>,
}

impl Returning {
    fn query(&self) -> InjectedQuery<'_> {
        InjectedQuery {
            sql: &self.sql,
            param_types: &self.types,
            param_formats: &self.formats,
            params: &self.params,
            result_formats: &self.result_formats,
            cache: false,
        }
    }
}

/// Builds the query computing RETURNING over the final rows, with the
/// client's parameters (when the list uses them; their types as the
/// server resolved them) and result formats.
async fn returning_query(
    ctx: &mut InterceptContext<'_>,
    st: &Intercepted,
    table: &str,
    shape: &sql::Shape,
    list: &str,
    from: sql::FinalRows<'_>,
    doc: String,
) -> Result<Returning, InjectError> {
    let (mut types, mut formats, mut params) = (Vec::new(), Vec::new(), Vec::new());
    if shape.returning_params
        && let Some(bind) = &st.bind
    {
        // The RETURNING list alone might not use (and so type) every
        // parameter of the statement.
        let resolved = ctx.describe_statement(&bind.statement).await?;
        for i in 0..bind.params.len() {
            types.push(
                resolved
                    .get(i)
                    .or(st.param_types.get(i))
                    .copied()
                    .unwrap_or(0),
            );
            formats.push(match bind.param_formats.len() {
                0 => 0,
                1 => bind.param_formats[0],
                _ => bind.param_formats.get(i).copied().unwrap_or(0),
            });
        }
        params.extend(bind.params.iter().cloned());
    }
    const JSONB: u32 = 3802;
    types.push(JSONB);
    formats.push(0);
    params.push(Some(Bytes::from(doc)));
    let sql = sql::returning_query(list, table, &shape.alias, params.len(), from);
    let result_formats = match (&st.protocol, &st.bind) {
        (Protocol::Extended, Some(b)) => b.result_formats.clone(),
        _ => Vec::new(),
    };
    Ok(Returning {
        sql,
        types,
        formats,
        params,
        result_formats,
    })
}

/// Runs a statement that writes no synced table (in a simple query with
/// several statements) and adds its results to the reply.
async fn plain(
    ctx: &mut InterceptContext<'_>,
    sql_text: &str,
    reply: &mut Reply,
) -> Result<(), InjectError> {
    match ctx.query(sql_text, &[]).await {
        Ok(r) => {
            reply.extend(r.notices.into_iter().map(BackendMessage::NoticeResponse));
            if !r.columns.fields.is_empty() {
                reply.push(BackendMessage::RowDescription(r.columns));
            }
            reply.extend(r.rows.into_iter().map(BackendMessage::DataRow));
            reply.push(if r.command_tag.is_empty() {
                BackendMessage::EmptyQueryResponse
            } else {
                BackendMessage::CommandComplete(CommandComplete { tag: r.command_tag })
            });
            Ok(())
        }
        Err(InjectError::Server(e)) => {
            reply.push(BackendMessage::ErrorResponse(e));
            Ok(())
        }
        Err(other) => Err(other),
    }
}

/// The row document of a canonical API record for the write-back.
pub(crate) fn canonical_doc(table: &Table, record: &Value, key: &str) -> Result<Value, String> {
    let cells = decode_row(&table.plan.table.columns, record).map_err(|e| e.to_string())?;
    let mut doc = Map::new();
    for (c, cell) in table.plan.table.columns.iter().zip(&cells) {
        doc.insert(c.name.to_string(), rows::cell_to_pg(cell));
    }
    let marker = table.plan.marker_of_row(&cells, crate::sync::now_us());
    doc.insert(
        "_sequin_updated_at".into(),
        marker
            .map(|m| Value::String(format_iso8601(m)))
            .unwrap_or(Value::Null),
    );
    doc.insert("__sequin_key".into(), Value::String(key.to_string()));
    Ok(Value::Object(doc))
}

fn journal_entry(table: &Table, op: &RowOp, done: &apply::Done, xid: i64) -> Option<Entry> {
    let (kind, request, undo) = match op {
        RowOp::Create { body, .. } => (
            "create",
            Value::Object(body.clone()),
            json!({"id": done.api_id}),
        ),
        RowOp::Update { body, undo, .. } => {
            ("update", Value::Object(body.clone()), json!({"body": undo}))
        }
        RowOp::Delete { .. } => ("delete", Value::Null, Value::Null),
        RowOp::Unchanged { .. } => return None,
    };
    Some(Entry {
        // From the thread's generator: no system call per write.
        id: uuid::Builder::from_random_bytes(rand::random()).into_uuid(),
        connection: table.connection.clone(),
        object: table.plan.table.name.clone(),
        op: kind,
        api_id: done.api_id.clone(),
        xid,
        request,
        undo,
    })
}

/// The client-visible error of an API rejection.
fn api_refusal(table: &Table, op: WriteOp, err: &ApiError) -> WriteError {
    let mut e = WriteError::api(err, table.column_of(err.field.as_deref()).as_deref());
    if op == WriteOp::Create && err.maybe_applied && table.spec.idempotency.is_none() {
        e.message.push_str(
            "; the record may have been created anyway: Sequin did not repeat the request (this API has no idempotency keys), and sync will bring the record in if it exists",
        );
    }
    e
}

fn text_at(r: &sequin_proxy::QueryResult, row: usize, col: usize) -> Option<String> {
    r.rows
        .get(row)?
        .values
        .get(col)?
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}
