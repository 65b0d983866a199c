//! The interception seam for write-through: an [`Interceptor`] is called when
//! a statement writes a synced table (a simple Query, or the Execute of a
//! portal whose statement was classified at Parse). Through the
//! [`InterceptContext`] it can run its own statements on the session's server
//! connection (injected with Flush, never Sync, replies swallowed), answer
//! the client with results and errors ([`Outcome::Respond`]), which the
//! proxy renders in the client's protocol (`reply`: RowDescription,
//! `max_rows`, PortalSuspended, portals executed before), or let the
//! statement pass through. The interceptor never writes wire messages.
//!
//! When the interceptor runs, the server owes nothing for the client's
//! earlier messages, or only replies that come back at once (ParseComplete,
//! BindComplete, a Describe's): those are read by the interceptor's first
//! round trip, in front of its own replies, and reach the client before its
//! answer. Anything else owed is waited for first (a Flush in the extended
//! protocol). So injected replies never mix with the client's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::ClientWrite;
use crate::classify::Classification;
use crate::codec::{
    self, Bind, Close, CodecError, DataRow, Describe, ErrorResponse, Execute, Flush, Message,
    NoticeResponse, Parse, RowDescription, Target,
};

/// A boxed, sendable future (the trait is object-safe this way).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Names the proxy reserves for its injected statement and portal; they never
/// clash with the client's (unnamed or named) statements and portals.
pub const INJECTED_NAME: &str = "__sequin_proxy_injected";

/// Which protocol carried the intercepted statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A Query message; the proxy sends ReadyForQuery after a synthesized
    /// answer.
    Simple,
    /// An Execute; the client's pipeline goes on after the answer.
    Extended,
}

/// What the client sent that writes a synced table.
#[derive(Debug, Clone)]
pub struct Intercepted {
    pub protocol: Protocol,
    /// The query string (simple) or the prepared statement's text (extended),
    /// decoded leniently (see `invalid_utf8`).
    pub sql: String,
    /// The text as sent is not valid UTF-8 (`sql` has U+FFFD in place of
    /// the bad bytes, so it is not what the client sent).
    pub invalid_utf8: bool,
    /// Per-statement classification of `sql`.
    pub classification: Arc<Classification>,
    /// Extended protocol: the prepared statement's name ("" = unnamed).
    pub statement_name: Option<String>,
    /// Extended protocol: parameter types given at Parse (0 = unspecified).
    pub param_types: Vec<u32>,
    /// Extended protocol: the Bind that created the executed portal (its
    /// parameter values and formats).
    pub bind: Option<Bind>,
    /// Extended protocol: the Execute's row limit (0 = all).
    pub max_rows: i32,
    /// Extended protocol: an id unique to the Bind that created the
    /// executed portal (several Executes of one portal share it; a new Bind
    /// of the same name gets a new one). 0 in the simple protocol.
    pub portal_id: u64,
}

/// Facts about the session.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub user: String,
    pub database: String,
    pub application_name: Option<String>,
    pub peer: Option<std::net::SocketAddr>,
    /// Process id of the server backend.
    pub backend_pid: i32,
}

/// The interceptor's decision.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Forward the client's message unchanged.
    PassThrough,
    /// Do not forward it; answer with these results instead: one per
    /// statement of a simple Query that ran (a failed one last), one for
    /// an Execute. In the simple protocol the proxy then ends the exchange
    /// with the server's own ReadyForQuery (it sends a Sync itself). In the
    /// extended protocol, a failure makes the proxy skip the client's
    /// messages up to its next Sync, as Postgres would; a later Execute of
    /// the same portal is answered by the proxy (see `reply`).
    Respond(Vec<Reply>),
}

/// The result of one statement the interceptor answers for.
#[derive(Debug, Clone)]
pub enum Reply {
    /// It ran: its rows (with their columns, empty for a statement
    /// without rows, in the formats asked for: see
    /// [`InjectedQuery::in_client_formats`]), notices and command tag
    /// (empty for an empty query).
    Done(QueryResult),
    /// It failed with this error.
    Failed(ErrorResponse),
}

/// An error while talking to the server for the interceptor.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The injected statement failed; the server now ignores messages until
    /// a Sync (see [`InterceptContext::sync`]).
    #[error("injected statement failed: {0}")]
    Server(ErrorResponse),
    #[error("not allowed here: {0}")]
    NotAllowed(&'static str),
    #[error("server connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("server sent an invalid message: {0}")]
    Codec(#[from] CodecError),
    #[error("server closed the connection")]
    Closed,
    /// An earlier message of the client's pipeline (its Parse or Bind)
    /// failed: the server skips everything up to the client's Sync, the
    /// injected statements included. The proxy sends the client that error
    /// and lets the intercepted Execute be skipped too.
    #[error("an earlier message of the client's pipeline failed")]
    ClientFailed,
}

/// Result rows of an injected statement (text format).
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// Column layout; empty for statements without rows.
    pub columns: RowDescription,
    pub rows: Vec<DataRow>,
    /// The CommandComplete tag (`INSERT 0 1`), empty for an empty query.
    pub command_tag: String,
    pub notices: Vec<NoticeResponse>,
}

/// A statement for [`InterceptContext::query_with`], in the terms of the
/// extended protocol's Parse and Bind; built from [`InjectedQuery::new`]
/// (no parameters, text results, not kept prepared).
#[derive(Debug, Clone, Copy)]
pub struct InjectedQuery<'q> {
    sql: &'q str,
    /// Parameter type OIDs (0 = let the server infer).
    param_types: &'q [u32],
    /// Parameter formats, with Bind's none/one/each convention.
    param_formats: &'q [i16],
    params: &'q [Option<bytes::Bytes>],
    /// Results in the formats the intercepted Execute's Bind asked for
    /// (text otherwise).
    client_formats: bool,
    /// Keep the statement prepared on the session for the next time the
    /// same text runs.
    cache: bool,
}

impl<'q> InjectedQuery<'q> {
    /// The statement `sql`, without parameters.
    pub fn new(sql: &'q str) -> Self {
        InjectedQuery {
            sql,
            param_types: &[],
            param_formats: &[],
            params: &[],
            client_formats: false,
            cache: false,
        }
    }

    /// Its parameter values (`None` = NULL), in text format and of types
    /// the server infers unless given.
    pub fn params(mut self, params: &'q [Option<bytes::Bytes>]) -> Self {
        self.params = params;
        self
    }

    /// Its parameters' type OIDs (0 = let the server infer).
    pub fn param_types(mut self, types: &'q [u32]) -> Self {
        self.param_types = types;
        self
    }

    /// Its parameters' formats, with Bind's none/one/each convention (a
    /// client's Bind values pass through as they are).
    pub fn param_formats(mut self, formats: &'q [i16]) -> Self {
        self.param_formats = formats;
        self
    }

    /// Results in the formats the client asked for in the Bind of the
    /// intercepted Execute (text in the simple protocol): for rows that go
    /// to the client as they are.
    pub fn in_client_formats(mut self) -> Self {
        self.client_formats = true;
        self
    }

    /// Keeps the statement prepared on the session for the next time the
    /// same text runs (for the interceptor's fixed statements; the client
    /// never sees it).
    pub fn cached(mut self) -> Self {
        self.cache = true;
        self
    }

    /// The statement's text.
    pub fn sql(&self) -> &'q str {
        self.sql
    }
}

/// One step of [`InterceptContext::pipeline`].
#[derive(Debug, Clone, Copy)]
pub enum Step<'q> {
    /// A statement of the proxy's own.
    Query(InjectedQuery<'q>),
    /// Execute one of the client's portals (all rows).
    Portal(&'q str),
}

/// Encodes Bind, Describe, Execute and Close of the reserved portal for
/// an already prepared statement (preceded by a Close of the portal, so a
/// leftover from a failed injection is harmless).
fn encode_bind(out: &mut BytesMut, statement: &str, q: &InjectedQuery<'_>, result_formats: &[i16]) {
    Close {
        target: Target::Portal,
        name: INJECTED_NAME.into(),
    }
    .encode(out);
    Bind {
        portal: INJECTED_NAME.into(),
        statement: statement.into(),
        param_formats: q.param_formats.to_vec(),
        params: q.params.to_vec(),
        result_formats: result_formats.to_vec(),
    }
    .encode(out);
    Describe {
        target: Target::Portal,
        name: INJECTED_NAME.into(),
    }
    .encode(out);
    Execute {
        portal: INJECTED_NAME.into(),
        max_rows: 0,
    }
    .encode(out);
    Close {
        target: Target::Portal,
        name: INJECTED_NAME.into(),
    }
    .encode(out);
}

/// Encodes an injected statement with the reserved names. Closing first
/// makes a leftover from an earlier failed injection harmless; closing what
/// does not exist is not an error.
fn encode_query(out: &mut BytesMut, q: &InjectedQuery<'_>, result_formats: &[i16]) {
    Close {
        target: Target::Statement,
        name: INJECTED_NAME.into(),
    }
    .encode(out);
    encode_parse(out, INJECTED_NAME, q);
    encode_bind(out, INJECTED_NAME, q, result_formats);
}

fn encode_parse(out: &mut BytesMut, statement: &str, q: &InjectedQuery<'_>) {
    Parse {
        name: statement.into(),
        sql: q.sql.into(),
        param_types: q.param_types.to_vec(),
    }
    .encode(out);
}

/// Decides what happens to statements that write synced tables.
pub trait Interceptor: Send + Sync + 'static {
    /// Called with the server connection quiet. An `Err` ends the session
    /// (the connection is no longer usable).
    fn intercept<'a>(
        &'a self,
        ctx: &'a mut InterceptContext<'_>,
    ) -> BoxFuture<'a, Result<Outcome, InjectError>>;
}

/// The default interceptor: every statement passes through.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

impl Interceptor for PassThrough {
    fn intercept<'a>(
        &'a self,
        _ctx: &'a mut InterceptContext<'_>,
    ) -> BoxFuture<'a, Result<Outcome, InjectError>> {
        Box::pin(async { Ok(Outcome::PassThrough) })
    }
}

/// What an interceptor can see and do.
pub struct InterceptContext<'a> {
    pub(crate) statement: &'a Intercepted,
    pub(crate) session: &'a SessionInfo,
    pub(crate) transaction_status: u8,
    pub(crate) server_read: &'a mut crate::backend::ServerRead,
    pub(crate) server_buf: &'a mut BytesMut,
    pub(crate) server_write: &'a mut crate::backend::ServerWrite,
    pub(crate) client_write: &'a mut ClientWrite,
    pub(crate) server_failed: bool,
    pub(crate) max_message_len: u32,
    pub(crate) prepared: &'a mut Prepared,
    /// The interceptor's own state for this session ([`Self::local`]).
    pub(crate) local: &'a mut Option<Box<dyn std::any::Any + Send>>,
    /// Set while the server still owes replies to the client's earlier
    /// messages (see the module docs): the session's protocol state, fed
    /// with them as they are read.
    pub(crate) owed: Option<&'a std::sync::Mutex<crate::state::ProtocolState>>,
    /// Replies to the client's earlier messages read so far, for the client
    /// ahead of anything else.
    pub(crate) early: BytesMut,
    /// One of those replies was an error (see [`InjectError::ClientFailed`]).
    pub(crate) client_failed: bool,
    /// The client's messages ahead of the intercepted one, not yet sent to
    /// the server: they go out with the first write to it (one write, and
    /// one wake-up of the server, instead of two).
    pub(crate) unsent: BytesMut,
    /// The client's next message is a Sync (extended protocol), which
    /// [`InterceptContext::pipeline_to_sync`] may send for it.
    pub(crate) sync_follows: bool,
    /// The server's ReadyForQuery for the client's Sync, once sent.
    pub(crate) ready: Option<BytesMut>,
}

/// The interceptor's statements prepared on one session's server connection
/// (`InjectedQuery::cache`), by text: parsed and planned once per session,
/// and again now and then. Postgres keeps the first generic plan of a
/// prepared statement until something invalidates it (an ANALYZE of a table
/// it reads): one made while a synced table had a few hundred rows scans the
/// table, and would go on scanning it as it grows, until autovacuum's next
/// ANALYZE. A statement is prepared again under a new name, and Postgres
/// plans it afresh, after [`REPLAN_FIRST`] uses, then after twice as many
/// each time up to every [`REPLAN_USES`] (a table written through grows
/// fastest from empty), and once prepared [`REPLAN_AFTER`] ago (a table
/// sync fills); the old one is closed at the start of the next pipeline.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Statements by text, then by parameter types: looked up by the
    /// borrowed text (a write-back's text is kilobytes, hashed once and
    /// never copied per statement).
    names: std::collections::HashMap<String, Vec<PreparedStatement>>,
    /// Names are never reused: a Parse whose outcome is unknown (its
    /// pipeline failed) leaves its name taken.
    next: u64,
    /// Statements replaced by a new preparation or evicted, to close.
    retired: Vec<String>,
    /// Counts lookups: when each statement was last used.
    clock: u64,
}

/// One prepared statement of [`Prepared`].
#[derive(Debug)]
struct PreparedStatement {
    param_types: Vec<u32>,
    name: String,
    uses: u32,
    /// Uses after which it is prepared again.
    replan_at: u32,
    at: std::time::Instant,
    /// [`Prepared::clock`] at its last use.
    last_used: u64,
}

/// What [`Prepared`] holds for a statement.
enum Cached {
    /// Prepared, under this name.
    Fresh(String),
    /// Prepared, but due to be prepared again.
    Stale,
    Missing,
}

/// Uses of a prepared statement before it is prepared again, at most.
const REPLAN_USES: u32 = 1_000;

/// Uses before a new statement is prepared again for the first time.
const REPLAN_FIRST: u32 = 10;

/// Age of a prepared statement past which it is prepared again.
const REPLAN_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl Prepared {
    /// Forgets the statements (the client dropped them); names stay unique.
    pub(crate) fn forget(&mut self) {
        self.names.clear();
        self.retired.clear();
    }

    /// Statements prepared.
    fn len(&self) -> usize {
        self.names.values().map(Vec::len).sum()
    }

    /// What is prepared for `q`, counting a use of a fresh statement.
    fn lookup(&mut self, q: &InjectedQuery<'_>) -> Cached {
        self.clock += 1;
        let clock = self.clock;
        let found = self.names.get_mut(q.sql).and_then(|statements| {
            statements
                .iter_mut()
                .find(|p| p.param_types.as_slice() == q.param_types)
        });
        match found {
            None => Cached::Missing,
            Some(p) if p.uses >= p.replan_at || p.at.elapsed() >= REPLAN_AFTER => Cached::Stale,
            Some(p) => {
                p.uses += 1;
                p.last_used = clock;
                Cached::Fresh(p.name.clone())
            }
        }
    }

    /// Evicts the statement used longest ago, if it was last used before
    /// `before` (statements of the pipeline being built stay): a session
    /// whose clients run many texts (a RETURNING list per table and ORM
    /// query) keeps the ones in use prepared. Whether one was evicted.
    fn evict_one(&mut self, before: u64) -> bool {
        let oldest = self
            .names
            .iter()
            .flat_map(|(text, statements)| {
                statements
                    .iter()
                    .enumerate()
                    .map(move |(i, p)| (p.last_used, text, i))
            })
            .filter(|(used, _, _)| *used < before)
            .min_by_key(|(used, _, _)| *used)
            .map(|(_, text, i)| (text.clone(), i));
        let Some((text, i)) = oldest else {
            return false;
        };
        if let Some(statements) = self.names.get_mut(&text) {
            self.retired.push(statements.remove(i).name);
            if statements.is_empty() {
                self.names.remove(&text);
            }
        }
        true
    }

    /// Records `q` as prepared under `name` (retiring what it replaces).
    fn insert(&mut self, q: &InjectedQuery<'_>, name: String) {
        let mut fresh = PreparedStatement {
            param_types: q.param_types.to_vec(),
            name,
            uses: 1,
            replan_at: REPLAN_FIRST,
            at: std::time::Instant::now(),
            last_used: self.clock,
        };
        let statements = self.names.entry(q.sql.to_string()).or_default();
        match statements
            .iter_mut()
            .find(|p| p.param_types.as_slice() == q.param_types)
        {
            Some(old) => {
                fresh.replan_at = old.replan_at.saturating_mul(2).min(REPLAN_USES);
                self.retired.push(std::mem::replace(old, fresh).name);
            }
            None => statements.push(fresh),
        }
    }
}

/// Most statements kept prepared per session.
const PREPARED_MAX: usize = 64;

impl InterceptContext<'_> {
    /// The intercepted statement.
    pub fn statement(&self) -> &Intercepted {
        self.statement
    }

    pub fn session(&self) -> &SessionInfo {
        self.session
    }

    /// State the interceptor keeps for this session, from one intercepted
    /// statement to the next (created with `Default` on first use, dropped
    /// with the session). One type per session: asking for another type
    /// starts it afresh.
    pub fn local<T: Default + Send + 'static>(&mut self) -> &mut T {
        if !self.local.as_ref().is_some_and(|l| l.is::<T>()) {
            *self.local = Some(Box::new(T::default()));
        }
        self.local
            .as_mut()
            .and_then(|l| l.downcast_mut::<T>())
            .expect("the session's local state was just made a T")
    }

    /// Transaction status as of the last ReadyForQuery (or [`Self::sync`]):
    /// `I`, `T` or `E`.
    pub fn transaction_status(&self) -> u8 {
        self.transaction_status
    }

    /// An injected statement failed and the server skips messages until Sync.
    pub fn server_failed(&self) -> bool {
        self.server_failed
    }

    /// Runs one statement on the session's server connection with text
    /// parameters (`None` = NULL) and returns its rows. Uses the extended
    /// protocol with the proxy's reserved statement/portal name and a Flush,
    /// so the client's unnamed statement, portals, pipeline and transaction
    /// are untouched. Notifications and parameter changes that arrive
    /// meanwhile are forwarded to the client; notices are returned.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<QueryResult, InjectError> {
        let params: Vec<Option<bytes::Bytes>> = params
            .iter()
            .map(|p| p.map(|s| bytes::Bytes::copy_from_slice(s.as_bytes())))
            .collect();
        self.query_with(&InjectedQuery::new(sql).params(&params))
            .await
    }

    /// Runs one statement as [`Self::query`] does, with parameter types and
    /// formats and result formats of the caller's choosing (a client's Bind
    /// values can be passed through as they are).
    pub async fn query_with(&mut self, q: &InjectedQuery<'_>) -> Result<QueryResult, InjectError> {
        let mut results = self.pipeline(&[Step::Query(*q)]).await?;
        match results.pop() {
            Some(r) => r.map_err(InjectError::Server),
            None => Err(InjectError::Closed),
        }
    }

    /// Executes one of the client's own portals (all rows) and returns its
    /// result; the portal is consumed as the client's Execute would have
    /// consumed it. Used to run an intercepted extended-protocol statement
    /// with exactly the client's parameters.
    pub async fn execute_portal(&mut self, portal: &str) -> Result<QueryResult, InjectError> {
        let mut results = self.pipeline(&[Step::Portal(portal)]).await?;
        match results.pop() {
            Some(r) => r.map_err(InjectError::Server),
            None => Err(InjectError::Closed),
        }
    }

    /// Sends several steps in one write and reads their results in order
    /// (one round trip instead of one per step). The server skips the rest
    /// of the steps after one fails, so the returned list ends with the
    /// first error (and is shorter than `steps` then).
    pub async fn pipeline(
        &mut self,
        steps: &[Step<'_>],
    ) -> Result<Vec<Result<QueryResult, ErrorResponse>>, InjectError> {
        self.run_pipeline(steps, false).await
    }

    /// [`Self::pipeline`] for the interceptor's last round trip, which
    /// also ends the exchange: in the extended protocol, when the client's
    /// Sync follows the intercepted Execute, it is sent in the same write
    /// (so the client's pipeline, and an implicit transaction, end with this
    /// round trip instead of one more) and the server's ReadyForQuery
    /// reaches the client after the answer; in the simple protocol, the
    /// Sync the proxy sends after an answer goes in the same write.
    /// Afterwards the interceptor must answer ([`Outcome::Respond`])
    /// without talking to the server again.
    pub async fn pipeline_to_sync(
        &mut self,
        steps: &[Step<'_>],
    ) -> Result<Vec<Result<QueryResult, ErrorResponse>>, InjectError> {
        let sync = self.sync_follows;
        self.run_pipeline(steps, sync).await
    }

    async fn run_pipeline(
        &mut self,
        steps: &[Step<'_>],
        sync: bool,
    ) -> Result<Vec<Result<QueryResult, ErrorResponse>>, InjectError> {
        if self.ready.is_some() {
            return Err(InjectError::NotAllowed(
                "the client's Sync was sent: its pipeline has ended",
            ));
        }
        if self.server_failed {
            return Err(InjectError::NotAllowed(
                "the server is skipping messages after a failed injected statement",
            ));
        }
        let mut out = BytesMut::with_capacity(256);
        // Statements prepared again are closed first: a Close comes before
        // anything that could fail, so it always runs (its CloseComplete is
        // read past with the first step's replies).
        for name in self.prepared.retired.drain(..) {
            Close {
                target: Target::Statement,
                name,
            }
            .encode(&mut out);
        }
        // Statements parsed by this pipeline, recorded once it succeeds.
        let mut parsed: Vec<(usize, String)> = Vec::new();
        // Statements looked up from here on are this pipeline's.
        let pipeline_start = self.prepared.clock + 1;
        let client_formats = self.client_result_formats();
        for (i, step) in steps.iter().enumerate() {
            let formats = match step {
                Step::Query(q) if q.client_formats => client_formats.as_slice(),
                _ => &[],
            };
            match step {
                Step::Query(q) if q.cache => {
                    match self.prepared.lookup(q) {
                        Cached::Fresh(name) => encode_bind(&mut out, &name, q, formats),
                        // At the limit, the statement used longest ago
                        // makes room (closed at the start of the next
                        // pipeline); without one, the text runs unprepared.
                        Cached::Missing
                            if self.prepared.len() + parsed.len() >= PREPARED_MAX
                                && !self.prepared.evict_one(pipeline_start) =>
                        {
                            encode_query(&mut out, q, formats)
                        }
                        Cached::Missing | Cached::Stale => {
                            let name = format!("{INJECTED_NAME}_{}", self.prepared.next);
                            self.prepared.next += 1;
                            encode_parse(&mut out, &name, q);
                            encode_bind(&mut out, &name, q, formats);
                            parsed.push((i, name));
                        }
                    }
                }
                Step::Query(q) => encode_query(&mut out, q, formats),
                Step::Portal(name) => Execute {
                    portal: (*name).into(),
                    max_rows: 0,
                }
                .encode(&mut out),
            }
        }
        if sync {
            codec::Sync.encode(&mut out);
        } else {
            Flush.encode(&mut out);
        }
        self.write_server(&out).await?;
        self.drain_owed().await?;
        let mut results = Vec::with_capacity(steps.len());
        for step in steps {
            let r = self.read_step(matches!(step, Step::Query(_))).await?;
            let failed = r.is_err();
            results.push(r);
            if failed {
                self.server_failed = true;
                break;
            }
        }
        if sync {
            // After the steps (or the failed one, past which the server
            // skipped), its ReadyForQuery.
            self.ready = Some(self.read_ready().await?);
        }
        // The client dropped the prepared statements (DISCARD ALL,
        // DEALLOCATE ALL): prepare again from the next statement on.
        if results
            .iter()
            .any(|r| matches!(r, Err(e) if e.code() == Some("26000")))
        {
            self.prepared.forget();
            return Ok(results);
        }
        for (i, name) in parsed {
            if let (Some(Ok(_)), Step::Query(q)) = (results.get(i), &steps[i]) {
                self.prepared.insert(q, name);
            }
        }
        Ok(results)
    }

    /// The result formats of the intercepted Execute's Bind (none: text).
    fn client_result_formats(&self) -> Vec<i16> {
        match (self.statement.protocol, &self.statement.bind) {
            (Protocol::Extended, Some(b)) => b.result_formats.clone(),
            _ => Vec::new(),
        }
    }

    /// Reads the replies still owed to the client's earlier messages into
    /// `self.early` (the caller has sent a Flush, or a pipeline ending in
    /// one). An error among them means the server skipped whatever was sent
    /// after it: [`InjectError::ClientFailed`].
    async fn drain_owed(&mut self) -> Result<(), InjectError> {
        if self.client_failed {
            return Err(InjectError::ClientFailed);
        }
        let Some(state) = self.owed else {
            return Ok(());
        };
        loop {
            if state.lock().unwrap_or_else(|e| e.into_inner()).is_idle() {
                self.owed = None;
                return Ok(());
            }
            let frame = self.read_server_message().await?;
            let tag = frame[0];
            let status = (tag == b'Z')
                .then(|| frame.get(codec::HEADER_LEN).copied())
                .flatten();
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .server_sent(tag, status);
            self.early.extend_from_slice(&frame);
            if tag == b'E' {
                self.owed = None;
                self.client_failed = true;
                return Err(InjectError::ClientFailed);
            }
        }
    }

    /// Asks the server for the replies still owed to the client's earlier
    /// messages (if any) and appends them, and those read before, to `out`.
    pub(crate) async fn drain_owed_into(&mut self, out: &mut BytesMut) -> Result<(), InjectError> {
        if self.owed.is_some() {
            self.write_server(&Flush.to_bytes()).await?;
            match self.drain_owed().await {
                Ok(()) | Err(InjectError::ClientFailed) => {}
                Err(e) => return Err(e),
            }
        }
        out.extend_from_slice(&std::mem::take(&mut self.early));
        Ok(())
    }

    /// Reads one step's replies. An injected query ends with the
    /// CloseComplete of its portal; a client's portal with its
    /// CommandComplete.
    async fn read_step(
        &mut self,
        injected: bool,
    ) -> Result<Result<QueryResult, ErrorResponse>, InjectError> {
        let mut result = QueryResult::default();
        let mut done = false;
        loop {
            let frame = self.read_server_message().await?;
            match frame[0] {
                b'3' if done => return Ok(Ok(result)),
                b'1' | b'2' | b'3' | b'n' | b't' => {}
                b'T' => result.columns = RowDescription::decode(&frame)?,
                b'D' => result.rows.push(DataRow::decode(&frame)?),
                b'C' | b'I' | b's' => {
                    if frame[0] == b'C' {
                        result.command_tag = codec::CommandComplete::decode(&frame)?.tag;
                    }
                    if !injected {
                        return Ok(Ok(result));
                    }
                    done = true;
                }
                b'N' => result.notices.push(NoticeResponse::decode(&frame)?),
                b'A' | b'S' => {
                    self.client_write.write_all(&frame).await?;
                    self.client_write.flush().await?;
                }
                b'E' => return Ok(Err(ErrorResponse::decode(&frame)?)),
                b'G' => {
                    // COPY FROM STDIN cannot be fed from here: abort it.
                    let mut out = BytesMut::new();
                    codec::CopyFail {
                        message: "COPY is not supported in injected statements".into(),
                    }
                    .encode(&mut out);
                    Flush.encode(&mut out);
                    self.write_server(&out).await?;
                }
                // COPY TO STDOUT data is dropped until CommandComplete.
                _ => {}
            }
        }
    }

    /// The parameter types the server resolved for one of the client's
    /// prepared statements (Describe of the statement).
    pub async fn describe_statement(&mut self, name: &str) -> Result<Vec<u32>, InjectError> {
        if self.server_failed {
            return Err(InjectError::NotAllowed(
                "the server is skipping messages after a failed injected statement",
            ));
        }
        let mut out = BytesMut::with_capacity(64);
        Describe {
            target: Target::Statement,
            name: name.into(),
        }
        .encode(&mut out);
        Flush.encode(&mut out);
        self.write_server(&out).await?;
        self.drain_owed().await?;
        let mut types = Vec::new();
        loop {
            let frame = self.read_server_message().await?;
            match frame[0] {
                b't' => types = codec::ParameterDescription::decode(&frame)?.types,
                b'T' | b'n' => return Ok(types),
                b'A' | b'S' => {
                    self.client_write.write_all(&frame).await?;
                    self.client_write.flush().await?;
                }
                b'E' => {
                    self.server_failed = true;
                    return Err(InjectError::Server(ErrorResponse::decode(&frame)?));
                }
                _ => {}
            }
        }
    }

    /// Sends a Sync and waits for ReadyForQuery (swallowed), returning the
    /// transaction status. Ends an implicit transaction and clears a failed
    /// injection. Only allowed for simple-protocol statements: in the extended
    /// protocol a Sync would end the client's pipeline.
    pub async fn sync(&mut self) -> Result<u8, InjectError> {
        if self.statement.protocol != Protocol::Simple {
            return Err(InjectError::NotAllowed(
                "Sync inside the client's extended-protocol pipeline",
            ));
        }
        // Already sent with the last round trip (`pipeline_to_sync`).
        if self.ready.take().is_some() {
            return Ok(self.transaction_status);
        }
        self.write_server(&codec::Sync.to_bytes()).await?;
        self.read_ready().await?;
        Ok(self.transaction_status)
    }

    /// Reads up to the ReadyForQuery that answers a Sync (skipping what the
    /// server sends before it, forwarding notifications and parameter
    /// changes), records the transaction status it carries, and returns it.
    async fn read_ready(&mut self) -> Result<BytesMut, InjectError> {
        loop {
            let frame = self.read_server_message().await?;
            match frame[0] {
                b'Z' => {
                    self.transaction_status = codec::ReadyForQuery::decode(&frame)?.status;
                    self.server_failed = false;
                    return Ok(frame);
                }
                b'A' | b'S' => {
                    self.client_write.write_all(&frame).await?;
                    self.client_write.flush().await?;
                }
                _ => {}
            }
        }
    }

    /// Writes to the server, after any of the client's messages still
    /// unsent.
    async fn write_server(&mut self, out: &[u8]) -> Result<(), InjectError> {
        if self.unsent.is_empty() {
            crate::backend::write_server(self.server_write, out).await?;
        } else {
            let mut all = std::mem::take(&mut self.unsent);
            all.extend_from_slice(out);
            crate::backend::write_server(self.server_write, &all).await?;
        }
        Ok(())
    }

    async fn read_server_message(&mut self) -> Result<BytesMut, InjectError> {
        read_message(self.server_read, self.server_buf, self.max_message_len).await
    }
}

/// Reads one whole message from a buffered stream.
pub(crate) async fn read_message<R: tokio::io::AsyncRead + Unpin + ?Sized>(
    read: &mut R,
    buf: &mut BytesMut,
    max_len: u32,
) -> Result<BytesMut, InjectError> {
    loop {
        if let Some((_, len)) = codec::peek_header(buf, max_len)? {
            if buf.len() >= len {
                return Ok(buf.split_to(len));
            }
            buf.reserve(len - buf.len());
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8192);
        }
        if read.read_buf(buf).await? == 0 {
            return Err(InjectError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks `sql` up, and prepares it under a new name when missing.
    fn used(p: &mut Prepared, sql: &str) -> String {
        let q = InjectedQuery::new(sql).cached();
        match p.lookup(&q) {
            Cached::Fresh(name) => name,
            Cached::Missing | Cached::Stale => {
                let name = format!("s{}", p.next);
                p.next += 1;
                p.insert(&q, name.clone());
                name
            }
        }
    }

    #[test]
    fn the_statement_used_longest_ago_is_evicted_and_closed() {
        let mut p = Prepared::default();
        let a = used(&mut p, "SELECT 1");
        let b = used(&mut p, "SELECT 2");
        used(&mut p, "SELECT 3");
        // `SELECT 1` used again: `SELECT 2` is now the oldest.
        assert_eq!(used(&mut p, "SELECT 1"), a);
        let pipeline_start = p.clock + 1;
        assert!(p.evict_one(pipeline_start));
        assert_eq!(p.retired, vec![b]);
        assert_eq!(p.len(), 2);
        assert!(matches!(
            p.lookup(&InjectedQuery::new("SELECT 2").cached()),
            Cached::Missing
        ));
        // Statements the pipeline being built uses are never evicted.
        let pipeline_start = p.clock + 1;
        used(&mut p, "SELECT 1");
        used(&mut p, "SELECT 3");
        assert!(!p.evict_one(pipeline_start));
        assert_eq!(p.len(), 2);
    }
}
