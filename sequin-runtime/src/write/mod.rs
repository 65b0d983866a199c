//! Write-through: INSERT, UPDATE and DELETE on synced tables, sent through
//! the proxy, are applied to the API first, synchronously.
//!
//! Each intercepted statement runs as a pipeline of steps, on the client's
//! own server session and inside the client's transaction (an implicit one
//! in autocommit); any step may refuse it, and [`WriteThrough::statement`]
//! turns a refusal into an error raised in the client's transaction (so it
//! is aborted as after any failed statement) and the error contract's
//! ErrorResponse:
//!
//! 1. **check** (`check` below): the statement writes one synced table, in
//!    its main clause, with an operation the object supports;
//! 2. **capture** ([`capture`]): under a grant held by Sequin's own session
//!    ([`grant`]), Postgres executes the statement (defaults, constraints,
//!    WHERE, row locks and row-level security are its job) and the capture
//!    triggers record every changed row, old and new, where the client
//!    cannot write; they must be exactly the rows the command tag counts;
//! 3. **plan** ([`rows`]): each row becomes an API operation with only the
//!    changed writable fields, checked against the spec first;
//! 4. **apply** ([`apply`]): the operations are journalled as intents,
//!    then the API applies them (batch endpoints where the object has
//!    them), and the journal records the outcome ([`journal`]);
//! 5. **write back** ([`back`]): each row is replaced by the API's
//!    canonical record (the API's id replaces the provisional one), the
//!    client gets its command tag and RETURNING rows computed over the
//!    final rows in the formats it asked for, and the grant ends.
//!
//! The API call happens when the statement runs; what a later ROLLBACK
//! means is settled by the journal's reconciler (see [`journal`]).

pub mod apply;
pub mod back;
pub mod capture;
pub mod error;
pub mod grant;
pub mod journal;
pub mod reconcile;
pub mod rows;
pub mod sql;
pub mod table;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sequin_proxy::codec::{BackendMessage, CommandComplete, DataRow, ErrorResponse};
use sequin_proxy::{
    BoxFuture, InjectError, InterceptContext, Intercepted, Interceptor, Outcome, Protocol,
    TableWrite, Via, WriteKind,
};
use sequin_spec::record::WriteOp;
use serde_json::{Map, Value, json};

use crate::api::ApiError;
use crate::config::Config;

pub(crate) use back::canonical_doc;
use error::WriteError;
use journal::{Entry, Journal};
use rows::RowOp;
pub use table::Table;
use table::{Catalog, Connection};

/// Why a statement's write-through stopped before its answer.
#[derive(Debug)]
pub enum Stop {
    /// Refused by write-through: raised in the client's transaction, and
    /// sent as the error contract's ErrorResponse.
    Refuse(WriteError),
    /// The server refused (the client's statement, or one of Sequin's):
    /// the transaction is aborted by it already; the client gets it.
    Failed(ErrorResponse),
    /// The session's server connection is unusable.
    Inject(InjectError),
}

impl From<WriteError> for Stop {
    fn from(e: WriteError) -> Stop {
        Stop::Refuse(e)
    }
}

impl From<InjectError> for Stop {
    fn from(e: InjectError) -> Stop {
        match e {
            InjectError::Server(e) => Stop::Failed(without_parameters(e)),
            other => Stop::Inject(other),
        }
    }
}

/// The error of one of Sequin's own statements, for the client: without
/// the CONTEXT line that lists the statement's parameters (which a client
/// that sets `log_parameter_max_length_on_error` would otherwise get).
/// None of them is secret; they are just not the client's business.
pub fn without_parameters(mut e: ErrorResponse) -> ErrorResponse {
    use sequin_proxy::codec::error_response::field::WHERE;
    for (code, value) in &mut e.fields {
        if *code == WHERE {
            *value = value
                .lines()
                .filter(|l| !l.contains(" with parameters: "))
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    e.fields
        .retain(|(code, value)| *code != WHERE || !value.is_empty());
    e
}

struct Inner {
    url: String,
    catalog: Catalog,
    metrics: crate::metrics::Metrics,
    /// Sequin's journal sessions, one per thread that runs client sessions:
    /// a session's journal write (and its grants) then stays on its own
    /// thread (a database connection's I/O task runs where it was opened),
    /// instead of waking another thread and waiting for it.
    journal: thread_local::ThreadLocal<tokio::sync::Mutex<Option<Arc<Journal>>>>,
    /// What write-through needs of a statement's text (RETURNING list,
    /// alias), by text: parsing it again per execution is wasted work.
    shapes: std::sync::Mutex<HashMap<String, Arc<sql::Shape>>>,
}

/// Most statement shapes cached.
const SHAPES_MAX: usize = 4096;

/// What write-through keeps of one client session between statements.
#[derive(Default)]
struct Session {
    /// The last capture row this session's writes have seen: rows after it
    /// are the next statement's.
    last_capture: i64,
    /// Portals already executed, by id, with the RETURNING rows still owed
    /// after a row-limited Execute: a later Execute of one gets those (or,
    /// once they are sent, its tag again, as Postgres answers), and never
    /// writes again.
    portals: VecDeque<(u64, Suspended)>,
}

/// The rest of a portal's RETURNING rows after a row-limited Execute.
struct Suspended {
    rows: Vec<DataRow>,
    tag: String,
}

/// Most executed portals remembered per session.
const PORTALS_MAX: usize = 64;

/// The write-through interceptor. Cheap to clone.
#[derive(Clone)]
pub struct WriteThrough {
    inner: Arc<Inner>,
}

impl WriteThrough {
    /// Builds the interceptor for every connection of `config`. Looking up
    /// the objects' run-time fields needs the APIs; a connection whose API
    /// cannot be reached now is looked up again later.
    pub async fn new(
        config: &Config,
        metrics: &crate::metrics::Metrics,
    ) -> Result<WriteThrough, crate::catalog::Error> {
        let url = config.database_url.expose().to_string();
        let mut connections = Vec::new();
        for c in &config.connections {
            connections.push(Connection::open(&url, c, metrics)?);
        }
        let w = WriteThrough {
            inner: Arc::new(Inner {
                catalog: Catalog::new(connections),
                metrics: metrics.clone(),
                url,
                journal: thread_local::ThreadLocal::new(),
                shapes: std::sync::Mutex::new(HashMap::new()),
            }),
        };
        w.refresh().await;
        Ok(w)
    }

    /// Looks up every connection's objects again (new Airtable tables,
    /// custom fields).
    pub async fn refresh(&self) {
        self.inner.catalog.refresh().await;
    }

    /// The table `schema.table`, if write-through knows it.
    pub fn table(&self, schema: &str, table: &str) -> Option<Arc<Table>> {
        self.inner.catalog.table(schema, table)
    }

    /// A lookup for the journal's reconciler.
    pub fn lookup(&self) -> reconcile::Lookup {
        let w = self.clone();
        Arc::new(move |schema: &str, table: &str| w.table(schema, table))
    }

    /// This thread's journal slot.
    fn journal_slot(&self) -> &tokio::sync::Mutex<Option<Arc<Journal>>> {
        self.inner.journal.get_or(|| tokio::sync::Mutex::new(None))
    }

    /// This thread's journal session, connected on first use (and again
    /// after it failed).
    async fn journal(&self) -> Result<Arc<Journal>, String> {
        let mut j = self.journal_slot().lock().await;
        if let Some(existing) = j.as_ref().filter(|j| !j.is_closed()) {
            return Ok(existing.clone());
        }
        match Journal::connect(&self.inner.url).await {
            Ok(x) => {
                let x = Arc::new(x);
                *j = Some(x.clone());
                Ok(x)
            }
            Err(e) => {
                tracing::warn!(error = %e, "write journal: cannot connect");
                Err(e.to_string())
            }
        }
    }

    /// The shape of a statement, cached by text (bounded like the proxy's
    /// classification cache).
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
                Ok(Outcome::Respond(vec![BackendMessage::ErrorResponse(
                    without_parameters(e),
                )]))
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
                // A later Execute of a portal already executed: the write
                // happened at the first one.
                if let Some(rest) = take_portal(ctx.local::<Session>(), st.portal_id) {
                    send_rows(ctx.local::<Session>(), &st, rest.rows, rest.tag, &mut reply);
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
        writes: &[TableWrite],
    ) -> Result<Vec<TableWrite>, InjectError> {
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            if !w.table.schema.is_empty() {
                out.push(w.clone());
                continue;
            }
            let name = sql::ident(&w.table.table);
            let resolved = ctx
                .query(
                    "SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                      WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)",
                    &[Some(&name)],
                )
                .await;
            // A failure here (the server is not skipping: the transaction
            // was checked) becomes the client's error in `run`.
            let schema = text_at(&resolved?, 0, 0);
            let synced = schema
                .as_deref()
                .is_some_and(|s| s == "sequin" || self.inner.catalog.connection(s).is_some());
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

    /// One statement that writes synced tables: the steps of the module
    /// docs, and the one place a refusal becomes the client's error.
    async fn statement(
        &self,
        ctx: &mut InterceptContext<'_>,
        st: &Intercepted,
        sql_text: &str,
        writes: &[TableWrite],
        reply: &mut Reply,
        ends_exchange: bool,
    ) -> Result<(), InjectError> {
        let (schema, name) = (
            writes[0].table.schema.clone(),
            writes[0].table.table.clone(),
        );
        let (written, times) =
            crate::metrics::time_statement(self.write(ctx, st, sql_text, writes, ends_exchange))
                .await;
        crate::metrics::write_statement(&self.inner.metrics, &schema, &written, times);
        match written {
            Ok(answer) => {
                let session = ctx.local::<Session>();
                session.last_capture = answer.last;
                reply.extend(answer.description);
                send_rows(session, st, answer.rows, answer.tag, reply);
                Ok(())
            }
            Err(Stop::Refuse(e)) => {
                let e = if e.fields.table.is_none() {
                    e.on(&schema, &name)
                } else {
                    e
                };
                self.refuse(ctx, e, reply).await
            }
            Err(Stop::Failed(e)) => {
                reply.push(BackendMessage::ErrorResponse(e));
                Ok(())
            }
            Err(Stop::Inject(e)) => Err(e),
        }
    }

    /// The steps of one statement.
    async fn write(
        &self,
        ctx: &mut InterceptContext<'_>,
        st: &Intercepted,
        sql_text: &str,
        writes: &[TableWrite],
        ends_exchange: bool,
    ) -> Result<back::Answer, Stop> {
        let (table, op) = self.check(st, writes).await?;
        let shape = self.shape(sql_text);
        let journal = self.journal().await.map_err(|e| {
            WriteError::new(
                table.api(),
                "58030",
                format!("Sequin's own database session is unavailable, so nothing was written; try again: {e}"),
            )
        })?;
        self.granted(
            ctx,
            st,
            sql_text,
            &shape,
            &table,
            op,
            &journal,
            ends_exchange,
        )
        .await
    }

    /// Step 1: the table the statement writes, and how.
    async fn check(
        &self,
        st: &Intercepted,
        writes: &[TableWrite],
    ) -> Result<(Arc<Table>, WriteOp), WriteError> {
        let first = &writes[0];
        let (schema, name) = (first.table.schema.as_str(), first.table.table.as_str());
        if st.invalid_utf8 {
            // What would reach the API is not what the client sent.
            return Err(WriteError::new(
                "Sequin",
                "22021",
                format!(
                    "the statement writing {schema}.{name} is not valid UTF-8, so it cannot be written through; send UTF-8 text (client_encoding UTF8)"
                ),
            ));
        }
        let wrapped = match first.via {
            Via::Statement => None,
            Via::ExplainAnalyze => Some(
                "EXPLAIN ANALYZE would change the synced table without the API; use EXPLAIN without ANALYZE, or run the statement itself",
            ),
            Via::CopyTo => Some(
                "COPY (... RETURNING ...) TO cannot write through to the API; run the statement itself, with RETURNING",
            ),
            Via::Prepare => Some(
                "a write to a synced table cannot be PREPAREd in SQL (its EXECUTE would run where write-through cannot apply it to the API); use the driver's prepared statements, or send the statement itself",
            ),
            Via::Other => {
                Some("this statement cannot write a synced table; use INSERT, UPDATE or DELETE")
            }
        };
        if let Some(why) = wrapped {
            return Err(WriteError::new("Sequin", "0A000", why));
        }
        if schema == "sequin" {
            return Err(WriteError::new(
                "Sequin",
                "42501",
                format!("sequin.{name} is maintained by Sequin and cannot be written by clients"),
            ));
        }
        let Some(table) = self.inner.catalog.table_or_refresh(schema, name).await else {
            if let Some(err) = self.inner.catalog.lookup_error(schema) {
                let api = self
                    .inner
                    .catalog
                    .connection(schema)
                    .map(|c| c.spec.display_name.clone())
                    .unwrap_or_else(|| "Sequin".into());
                return Err(WriteError::new(
                    &api,
                    "58030",
                    format!(
                        "cannot look up {schema}.{name} at the API right now, so nothing was written; try again: {err}"
                    ),
                ));
            }
            return Err(WriteError::new(
                "Sequin",
                "0A000",
                format!(
                    "{schema}.{name} is not an object of a configured connection, so it cannot be written through to an API"
                ),
            ));
        };
        let unsupported = |what: &str| WriteError::new(table.api(), "0A000", what);
        if writes.len() > 1 || first.in_cte {
            return Err(unsupported(
                "a statement may write one synced table, in its main clause (not in a WITH clause); split it into one INSERT, UPDATE or DELETE per table",
            ));
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
                return Err(unsupported(
                    "MERGE into a synced table is not supported; use INSERT, UPDATE or DELETE",
                ));
            }
            WriteKind::Copy => {
                return Err(unsupported(
                    "COPY into a synced table is not supported; use INSERT (up to the object's rows per statement)",
                ));
            }
            WriteKind::Truncate => {
                return Err(unsupported(
                    "TRUNCATE of a synced table is not supported (it would delete every record at the API); use DELETE",
                ));
            }
        };
        if !supported {
            let verb = match op {
                WriteOp::Create => "created",
                WriteOp::Update => "updated",
                WriteOp::Delete => "deleted",
            };
            return Err(unsupported(&format!(
                "{} records cannot be {verb} through the API",
                table.plan.api_name
            )));
        }
        Ok((table, op))
    }

    /// Steps 2 to 5, under the grant of the client's transaction (opened by
    /// `capture`, closed by `back`).
    #[allow(clippy::too_many_arguments)]
    async fn granted(
        &self,
        ctx: &mut InterceptContext<'_>,
        st: &Intercepted,
        sql_text: &str,
        shape: &sql::Shape,
        table: &Table,
        op: WriteOp,
        journal: &Journal,
        ends_exchange: bool,
    ) -> Result<back::Answer, Stop> {
        let after = ctx.local::<Session>().last_capture;
        let captured = capture::run(ctx, st, sql_text, shape, table, after).await?;
        let ops = plan(table, &captured.changes)?;
        let (applied, outcomes) = self.apply(table, op, &ops, journal, &captured).await?;
        let (answer, settled) = tokio::join!(
            back::run(
                ctx,
                st,
                table,
                shape,
                &captured,
                &ops,
                &applied,
                ends_exchange
            ),
            journal.settle_intents(&outcomes)
        );
        if let Err(e) = settled {
            self.settle_later(outcomes, e);
        }
        answer
    }

    /// Records intents' outcomes the journal session could not take (it
    /// failed, or Postgres restarted): again on fresh sessions, in the
    /// background, until it works (an intent this process owns is settled
    /// by nobody else while it runs).
    fn settle_later(
        &self,
        outcomes: Vec<(uuid::Uuid, journal::Outcome)>,
        e: tokio_postgres::Error,
    ) {
        tracing::warn!(error = %e, "write journal: recording the API's answer failed; retrying on a new session");
        let url = self.inner.url.clone();
        tokio::spawn(async move {
            let mut pause = std::time::Duration::from_millis(100);
            for _ in 0..60 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
                let recorded = match Journal::connect(&url).await {
                    Ok(j) => j.settle_intents(&outcomes).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match recorded {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "write journal: still cannot record the API's answer")
                    }
                }
            }
            tracing::error!(
                "write journal: the API's answer to a write could not be recorded; its intent is settled once this process stops"
            );
        });
    }

    /// Step 4: the operations are journalled as intents, then the API
    /// applies them. Returns what it did, and each intent's outcome for
    /// the journal (an intent the API may or may not have applied, its
    /// answer lost, is handed to the reconciler to find out).
    async fn apply(
        &self,
        table: &Table,
        op: WriteOp,
        ops: &[RowOp],
        journal: &Journal,
        captured: &capture::Captured,
    ) -> Result<(apply::Applied, Vec<(uuid::Uuid, journal::Outcome)>), Stop> {
        let keys = back::keys(ops);
        let singly = apply::sent_singly(table, ops);
        let idempotent = table.spec.idempotency.is_some();
        let intents: Vec<(usize, Entry)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let key = (idempotent && singly[i]).then(|| keys[i].clone());
                intent(table, o, captured.xid, captured.changes[i].capture_id, key).map(|e| (i, e))
            })
            .collect();
        let entries: Vec<Entry> = intents.iter().map(|(_, e)| e.clone()).collect();
        if let Err(e) = journal.record(&entries).await {
            return Err(WriteError::new(
                table.api(),
                "58030",
                format!("Sequin's write journal cannot record the write, so nothing was sent to the API; try again: {}", crate::store::error_chain(&e)),
            )
            .into());
        }
        let applied = crate::metrics::time_api(apply::apply(table, ops, &keys)).await;
        let outcomes = intents
            .iter()
            .map(|(i, e)| {
                let outcome = if let Some((_, d)) = applied.done.iter().find(|(k, _)| k == i) {
                    journal::Outcome::Applied {
                        api_id: d.api_id.clone(),
                        written: d
                            .record
                            .as_ref()
                            .and_then(|r| canonical_values(table, r, &e.undo)),
                    }
                } else if applied.unknown.contains(i) {
                    journal::Outcome::Unknown
                } else {
                    journal::Outcome::Rejected
                };
                (e.id, outcome)
            })
            .collect::<Vec<_>>();
        if let Some(err) = &applied.error {
            // Effects applied before the failure are undone by the
            // reconciler once the aborted transaction is seen.
            if let Err(e) = journal.settle_intents(&outcomes).await {
                self.settle_later(outcomes, e);
            }
            return Err(api_refusal(table, op, err).into());
        }
        Ok((applied, outcomes))
    }
}

/// Step 3: the API operations, checked locally. Values sit under the key
/// the endpoint wraps bodies in (HubSpot's `properties.x`, Airtable's
/// `fields.x`); the wrap adds it back.
fn plan(table: &Table, changes: &[capture::Change]) -> Result<Vec<RowOp>, WriteError> {
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
    changes
        .iter()
        .map(|c| {
            rows::plan_row(
                table.api(),
                &table.plan.table.columns,
                table.plan.table.primary_key,
                c,
                strip,
            )
        })
        .collect()
}

/// The refusal of a statement that changed more rows than the object's
/// limit (`why`: the server's count).
fn too_many_rows(table: &Table, why: &str) -> WriteError {
    WriteError::new(
        table.api(),
        "54000",
        format!(
            "this statement changes more than {} rows of {}, the most one statement may write through to the API ({why})",
            table.max_rows,
            table.plan.table.qualified(),
        ),
    )
    .hint("Split the statement (e.g. by a range of ids) into several smaller ones.")
}

/// The executed portal `id`'s owed rows, if it was executed already.
fn take_portal(session: &mut Session, id: u64) -> Option<Suspended> {
    let at = session.portals.iter().position(|(p, _)| *p == id)?;
    session.portals.remove(at).map(|(_, s)| s)
}

/// Adds RETURNING rows and the command tag to the reply, at most the
/// Execute's row limit of them: then PortalSuspended, and the rest is kept
/// for the portal's next Execute. An executed portal is remembered either
/// way (see [`Session::portals`]).
fn send_rows(
    session: &mut Session,
    st: &Intercepted,
    mut rows: Vec<DataRow>,
    tag: String,
    reply: &mut Reply,
) {
    if st.protocol != Protocol::Extended {
        reply.extend(rows.into_iter().map(BackendMessage::DataRow));
        reply.push(BackendMessage::CommandComplete(CommandComplete { tag }));
        return;
    }
    let limit = usize::try_from(st.max_rows).unwrap_or(0);
    let rest = if limit > 0 && rows.len() > limit {
        rows.split_off(limit)
    } else {
        Vec::new()
    };
    let suspended = !rest.is_empty();
    reply.extend(rows.into_iter().map(BackendMessage::DataRow));
    reply.push(if suspended {
        BackendMessage::PortalSuspended
    } else {
        BackendMessage::CommandComplete(CommandComplete { tag: tag.clone() })
    });
    if session.portals.len() >= PORTALS_MAX {
        session.portals.pop_front();
    }
    session
        .portals
        .push_back((st.portal_id, Suspended { rows: rest, tag }));
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

/// The journal's intent for one operation (none when nothing is sent).
fn intent(
    table: &Table,
    op: &RowOp,
    xid: i64,
    capture_id: i64,
    idempotency_key: Option<String>,
) -> Option<Entry> {
    let (kind, api_id, request, undo, key) = match op {
        RowOp::Create { body, written, .. } => {
            // A create sent again with its idempotency key must carry the
            // very body it was first sent with (the API compares them).
            let replay = idempotency_key
                .as_ref()
                .zip(table.plan.endpoints.create.as_ref())
                .map(|(_, ep)| {
                    let sent = crate::api::write_body(&table.spec, ep, body.clone());
                    String::from_utf8_lossy(&sent.into_bytes()).into_owned()
                });
            (
                "create",
                None,
                Value::Object(body.clone()),
                json!({ "written": written, "replay": replay }),
                idempotency_key,
            )
        }
        RowOp::Update { id, body, undo } => (
            "update",
            Some(id.clone()),
            Value::Object(body.clone()),
            json!({"body": undo.body, "written": undo.written, "previous": undo.previous}),
            None,
        ),
        RowOp::Delete { id } => ("delete", Some(id.clone()), Value::Null, Value::Null, None),
        RowOp::Unchanged { .. } => return None,
    };
    Some(Entry {
        // From the thread's generator: no system call per write.
        id: uuid::Builder::from_random_bytes(rand::random()).into_uuid(),
        connection: table.connection.clone(),
        object: table.plan.table.name.clone(),
        op: kind,
        api_id,
        xid,
        capture_id,
        request,
        undo,
        idempotency_key: key,
    })
}

/// The values the API holds after a write, for the columns the write set
/// (the keys of `undo.written`), as `to_jsonb` shows them: what an undo
/// later checks the API still holds (the API may have normalized what it
/// was sent).
fn canonical_values(table: &Table, record: &Value, undo: &Value) -> Option<Map<String, Value>> {
    let set = undo.get("written")?.as_object()?;
    let cells = sequin_spec::record::decode_row(&table.plan.table.columns, record).ok()?;
    Some(
        table
            .plan
            .table
            .columns
            .iter()
            .zip(&cells)
            .filter(|(c, _)| set.contains_key(&*c.name))
            .map(|(c, cell)| (c.name.to_string(), rows::cell_to_pg(cell)))
            .collect(),
    )
}

/// The client-visible error of an API rejection.
fn api_refusal(table: &Table, op: WriteOp, err: &ApiError) -> WriteError {
    let mut e = WriteError::api(err, table.column_of(err.field.as_deref()).as_deref());
    if op == WriteOp::Create && err.maybe_applied && table.spec.idempotency.is_none() {
        e.message.push_str(
            "; the record may have been created anyway: Sequin did not repeat the request (this API has no idempotency keys); if the API did create it, Sequin finds and deletes it again, since this statement failed",
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
