//! Write-through: INSERT, UPDATE and DELETE on synced tables, sent through
//! the proxy, are applied to the API first, synchronously.
//!
//! Each intercepted statement runs as a pipeline of steps, on the client's
//! own server session and inside the client's transaction (an implicit one
//! in autocommit). Every step returns `Result<_, Stop>` ([`error::Stop`]);
//! any step may refuse the statement, and the one place at the top of the
//! pipeline (`WriteThrough::statement`) turns a refusal into an error raised
//! in the client's transaction (so it is aborted as after any failed
//! statement) and the error contract's ErrorResponse:
//!
//! 1. **check** ([`check`]): the statement writes one synced table, in
//!    its main clause, with an operation the object supports;
//! 2. **capture** ([`capture`]): under a grant held by Sequin's own session
//!    ([`grant`]), Postgres executes the statement (defaults, constraints,
//!    WHERE, row locks and row-level security are its job) and the capture
//!    triggers record every changed row, old and new, where the client
//!    cannot write; they must be exactly the rows the command tag counts;
//! 3. **plan** ([`rows`]): each row becomes an API operation with only the
//!    changed writable fields, checked against the spec first (an
//!    `INSERT ... ON CONFLICT (<external id>) DO UPDATE`'s rows become
//!    upserts: [`upsert`]);
//! 4. **apply** ([`apply`]): the operations are journalled as intents
//!    ([`entry`]), then the API applies them (batch endpoints where the
//!    object has them; a link table's associations through [`link`]), and
//!    the journal records the outcome ([`journal`]);
//! 5. **write back** ([`back`]): each row is replaced by the API's
//!    canonical record (the API's id replaces the provisional one), the
//!    client's command tag and RETURNING rows are computed over the final
//!    rows, and the grant ends.
//!
//! The interceptor answers in rows and errors (`sequin_proxy::Reply`); the
//! proxy renders them for the client's protocol (RowDescription, row
//! limits, suspended portals, formats). The tables it can write are in
//! [`table`]; this file holds only the pipeline that runs the steps.
//!
//! The API call happens when the statement runs; what a later ROLLBACK
//! means is settled by the journal's reconciler (see [`journal`]).

pub mod apply;
pub mod back;
pub mod capture;
pub mod check;
pub mod entry;
pub mod error;
pub mod grant;
pub mod journal;
pub mod link;
pub mod path;
pub mod reconcile;
pub mod rows;
pub mod sql;
pub mod table;
pub mod upsert;

use std::sync::Arc;

use sequin_proxy::{
    BoxFuture, ClassifiedStatement, InjectError, InterceptContext, Intercepted, Interceptor,
    Outcome, Protocol, Reply, TableWrite,
};
use sequin_spec::record::WriteOp;

use crate::config::Config;

use error::WriteError;
pub use error::{Stop, without_parameters};
use journal::Journal;
pub use table::Table;
use table::{Catalog, Connection};

struct Inner {
    url: String,
    catalog: Catalog,
    metrics: crate::metrics::Metrics,
    /// Sequin's journal sessions, one per thread that runs client sessions:
    /// a session's journal write (and its grants) then stays on its own
    /// thread (a database connection's I/O task runs where it was opened),
    /// instead of waking another thread and waiting for it.
    journal: thread_local::ThreadLocal<tokio::sync::Mutex<Option<Arc<Journal>>>>,
}

/// What write-through keeps of one client session between statements.
#[derive(Default)]
struct Session {
    /// The last capture row this session's writes have seen: rows after it
    /// are the next statement's.
    last_capture: i64,
}

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
        // The OAuth tokens' reads and writes: rare, two sessions at most.
        let tokens = crate::store::Pool::new(
            &url,
            crate::store::PoolSettings {
                size: 2,
                ..Default::default()
            },
        );
        let mut connections = Vec::new();
        for c in &config.connections {
            connections.push(Connection::open(&tokens, c, metrics)?);
        }
        let w = WriteThrough {
            inner: Arc::new(Inner {
                catalog: Catalog::new(connections),
                metrics: metrics.clone(),
                url,
                journal: thread_local::ThreadLocal::new(),
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

    /// This thread's journal session, connected on first use (and again
    /// after it failed).
    async fn journal(&self) -> Result<Arc<Journal>, String> {
        let slot = self.inner.journal.get_or(|| tokio::sync::Mutex::new(None));
        let mut j = slot.lock().await;
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
}

impl Interceptor for WriteThrough {
    fn intercept<'a>(
        &'a self,
        ctx: &'a mut InterceptContext<'_>,
    ) -> BoxFuture<'a, Result<Outcome, InjectError>> {
        Box::pin(self.run(ctx))
    }
}

impl WriteThrough {
    async fn run(&self, ctx: &mut InterceptContext<'_>) -> Result<Outcome, InjectError> {
        match self.run_statements(ctx).await {
            // A statement of Sequin's own failed at the server: the client's
            // transaction is aborted by it, and the client gets its error.
            Err(InjectError::Server(e)) => {
                Ok(Outcome::Respond(vec![Reply::Failed(without_parameters(e))]))
            }
            other => other,
        }
    }

    /// The statements of an intercepted Query (in order, up to the first
    /// that fails) or the statement of an Execute.
    async fn run_statements(&self, ctx: &mut InterceptContext<'_>) -> Result<Outcome, InjectError> {
        let st = ctx.statement().clone();
        if st.classification.parse_error.is_some() || ctx.transaction_status() == b'E' {
            return Ok(Outcome::PassThrough);
        }
        let catalog = &self.inner.catalog;
        let statements = &st.classification.statements;
        let mut replies = Vec::new();
        match st.protocol {
            Protocol::Extended => {
                let Some(stmt) = statements.first() else {
                    return Ok(Outcome::PassThrough);
                };
                let writes = check::resolve(ctx, catalog, &stmt.writes).await?;
                if writes.is_empty() {
                    return Ok(Outcome::PassThrough);
                }
                replies.push(self.statement(ctx, &st, stmt, &writes, true).await?);
            }
            Protocol::Simple => {
                if statements.is_empty() {
                    return Ok(Outcome::PassThrough);
                }
                if let [only] = statements.as_slice()
                    && check::resolve(ctx, catalog, &only.writes).await?.is_empty()
                {
                    return Ok(Outcome::PassThrough);
                }
                for (i, stmt) in statements.iter().enumerate() {
                    // Resolved when it runs: an earlier statement of the
                    // query may have changed the search_path.
                    let writes = check::resolve(ctx, catalog, &stmt.writes).await?;
                    let reply = if writes.is_empty() {
                        plain(ctx, &stmt.sql).await?
                    } else {
                        let ends_exchange = i + 1 == statements.len();
                        self.statement(ctx, &st, stmt, &writes, ends_exchange)
                            .await?
                    };
                    let failed = matches!(reply, Reply::Failed(_));
                    replies.push(reply);
                    if failed {
                        break;
                    }
                }
            }
        }
        Ok(Outcome::Respond(replies))
    }

    /// One statement that writes synced tables: the steps of the module
    /// docs, and the one place a refusal becomes the client's error.
    async fn statement(
        &self,
        ctx: &mut InterceptContext<'_>,
        st: &Intercepted,
        stmt: &ClassifiedStatement,
        writes: &[TableWrite],
        ends_exchange: bool,
    ) -> Result<Reply, InjectError> {
        let (schema, name) = (&writes[0].table.schema, &writes[0].table.table);
        // Boxed: the steps' future is large (12 KB), and the timing
        // wrappers would move it by value twice more.
        let write = Box::pin(self.write(ctx, st, stmt, writes, ends_exchange));
        let (written, times) = crate::metrics::time_statement(write).await;
        crate::metrics::write_statement(&self.inner.metrics, schema, &written, times);
        match written {
            Ok(answer) => {
                ctx.local::<Session>().last_capture = answer.last;
                Ok(Reply::Done(answer.result))
            }
            Err(Stop::Refuse(e)) => {
                let e = if e.fields.table.is_none() {
                    e.on(schema, name)
                } else {
                    e
                };
                refuse(ctx, e).await
            }
            Err(Stop::Failed(e)) => Ok(Reply::Failed(e)),
            Err(Stop::Inject(e)) => Err(e),
        }
    }

    /// The steps of one statement: check, then the rest under the grant.
    async fn write(
        &self,
        ctx: &mut InterceptContext<'_>,
        st: &Intercepted,
        stmt: &ClassifiedStatement,
        writes: &[TableWrite],
        ends_exchange: bool,
    ) -> Result<back::Answer, Stop> {
        let (table, op) = check::check(&self.inner.catalog, st, writes).await?;
        // INSERT ... ON CONFLICT: the API's upsert, or refused.
        let upsert = match &stmt.shape.on_conflict {
            Some(clause) => upsert::target(&table, clause)?,
            None => None,
        };
        let journal = self.journal().await.map_err(|e| {
            WriteError::new(
                table.api(),
                "58030",
                format!("Sequin's own database session is unavailable, so nothing was written; try again: {e}"),
            )
        })?;
        let run = Run {
            st,
            stmt,
            table: &table,
            op,
            upsert,
            journal: &journal,
        };
        self.granted(ctx, run, ends_exchange).await
    }

    /// Steps 2 to 5: capture, plan, apply, write back, under the grant of
    /// the client's transaction (opened by `capture`, closed by `back`).
    /// The journal records the API's answers while the write-back runs.
    async fn granted(
        &self,
        ctx: &mut InterceptContext<'_>,
        run: Run<'_>,
        ends_exchange: bool,
    ) -> Result<back::Answer, Stop> {
        let Run {
            st,
            stmt,
            table,
            op,
            upsert,
            journal,
        } = run;
        let after = ctx.local::<Session>().last_capture;
        let captured = capture::run(
            ctx,
            st,
            &stmt.sql,
            &stmt.shape,
            table,
            after,
            upsert.is_some(),
        )
        .await?;
        let paths = path::of_changes(table, &captured.changes)?;
        let mut ops = rows::plan(table, &captured.changes)?;
        if let Some(target) = &upsert {
            ops = upsert::ops(table, target, ops)?;
        }
        let capture_ids: Vec<i64> = captured.changes.iter().map(|c| c.capture_id).collect();
        let (applied, outcomes) = apply::journalled(
            &self.inner.url,
            table,
            op,
            (&ops, &paths),
            journal,
            (captured.xid, &capture_ids),
        )
        .await?;
        // The outcomes are recorded while the write-back runs: the
        // write-back names each record's journal entries itself (its
        // events carry them), and the reconciler leaves an intent alone
        // while this process runs.
        let write_back = back::run(
            ctx,
            st,
            table,
            &stmt.shape,
            &captured,
            (&ops, &applied, &outcomes),
            ends_exchange,
        );
        let (answer, settled) = tokio::join!(write_back, journal.settle_intents(&outcomes));
        if let Err(e) = settled {
            journal::settle_later(self.inner.url.clone(), outcomes, e);
        }
        answer
    }
}

/// What the steps after the check work on.
struct Run<'a> {
    st: &'a Intercepted,
    stmt: &'a ClassifiedStatement,
    table: &'a Table,
    op: WriteOp,
    /// The external id an `INSERT ... ON CONFLICT` upserts by.
    upsert: Option<upsert::Target>,
    journal: &'a Journal,
}

/// Refuses a statement: the client's transaction is aborted (as after any
/// failed statement) and the client gets `e`.
async fn refuse(ctx: &mut InterceptContext<'_>, e: WriteError) -> Result<Reply, InjectError> {
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
    Ok(Reply::Failed(e.to_response()))
}

/// Runs a statement that writes no synced table (in a simple query with
/// several statements): its result, or its error, for the client.
async fn plain(ctx: &mut InterceptContext<'_>, sql_text: &str) -> Result<Reply, InjectError> {
    match ctx.query(sql_text, &[]).await {
        Ok(r) => Ok(Reply::Done(r)),
        Err(InjectError::Server(e)) => Ok(Reply::Failed(e)),
        Err(other) => Err(other),
    }
}
