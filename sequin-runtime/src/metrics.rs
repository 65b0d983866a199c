//! The Prometheus metrics of one `sequin` process (`sync`, `proxy` or
//! `run`), served on `metrics.listen` by [`crate::health`].
//!
//! One [`Metrics`] per process, created by [`crate::process`] and passed
//! down (never a global: the end-to-end tests run several engines in one
//! process, and each must count its own). It holds:
//!
//! - counters and histograms updated where things happen, each by one call:
//!   API requests and rate-limit waits ([`crate::api`]), write-through
//!   statements, their API time and Sequin's own overhead, compensations
//!   ([`crate::write`]);
//! - sources read when scraped: the rate-limit budgets, the proxy's session
//!   and statement counters ([`sequin_proxy::ProxyStats`]), which part of
//!   the process has started ([`Part`]: what `/readyz` answers from), and
//!   what Postgres holds ([`Stored`]: sync state per object, journal entries
//!   by state), read by the scrape itself.
//!
//! Metric names and what to alert on are in README.md ("Deploying").

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sequin_proxy::ProxyStats;
use tokio_postgres::Client;

use crate::status::JournalCount;
use crate::store::{PoolStats, StoreError, db};

/// What an API request was for: the `purpose` label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Listing an object from the start.
    Backfill,
    /// Incremental sync: changes, deletions, events feeds.
    #[default]
    Poll,
    /// Looking up objects and fields defined at run time.
    Discover,
    /// Write-through and its compensations.
    Write,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Backfill => "backfill",
            Purpose::Poll => "poll",
            Purpose::Discover => "discover",
            Purpose::Write => "write",
        }
    }
}

/// The `status` label of an API request: the HTTP status class, or
/// `transport` when no whole answer arrived (refused connection, timeout,
/// body cut short).
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        None => "transport",
        Some(s) if s < 300 => "2xx",
        Some(s) if s < 400 => "3xx",
        Some(s) if s < 500 => "4xx",
        Some(_) => "5xx",
    }
}

/// Why a request waited before it was sent: the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// Sequin's own budget of the account's rate limit was spent (or paused
    /// after the API said it was).
    Budget,
    /// The API answered "rate limited" (429) and the request is retried.
    Api,
}

/// How a write-through statement ended: the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Applied to the API and written back.
    Ok,
    /// Refused by write-through (locally or by the API): the client got
    /// the error contract's error.
    Refused,
    /// The server refused a statement (the client's own, or Sequin's), or
    /// the session's server connection failed.
    Failed,
}

impl WriteOutcome {
    fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Ok => "ok",
            WriteOutcome::Refused => "refused",
            WriteOutcome::Failed => "failed",
        }
    }
}

/// A part of the process `/readyz` waits for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// A connection of the sync engine: started once its objects are planned
    /// and recorded (and again after each restart).
    Connection(String),
    /// The proxy: started once it listens.
    Proxy,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Connection(name) => write!(f, "connection `{name}`"),
            Part::Proxy => f.write_str("the proxy"),
        }
    }
}

/// Where a part is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartState {
    Starting,
    Started,
    /// Stopped with this error (it may be starting again).
    Failed(String),
}

/// A rate-limit budget as scraped: slots in its window, and slots free now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetLevel {
    pub capacity: u32,
    pub available: u32,
}

/// Reads a budget's level (the budget lives in [`crate::api`], which this
/// module does not depend on).
type BudgetProbe = Arc<dyn Fn() -> BudgetLevel + Send + Sync>;

/// Which reads a quota pauses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaPaused {
    pub backfill: bool,
    pub poll: bool,
}

impl QuotaPaused {
    /// Backfills and polls.
    pub const BOTH: QuotaPaused = QuotaPaused {
        backfill: true,
        poll: true,
    };

    /// `backfill`, `backfill, poll` or `None`, as `sequin.quota` stores it.
    pub fn text(self) -> Option<&'static str> {
        match (self.backfill, self.poll) {
            (_, true) => Some("backfill, poll"),
            (true, false) => Some("backfill"),
            (false, false) => None,
        }
    }
}

/// One counter of a quota as scraped (`None`: not read yet; floors only
/// for counters every request takes one of).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaLevel {
    pub quota: String,
    pub max: Option<u64>,
    /// The last level read, less the requests sent since.
    pub remaining: Option<u64>,
    pub floor: Option<u64>,
    pub backfill_floor: Option<u64>,
}

/// A connection's quota as scraped: its counters, what is paused and why,
/// and when the level was last read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaState {
    pub counters: Vec<QuotaLevel>,
    pub paused: QuotaPaused,
    pub reason: Option<String>,
    pub read_at: Option<std::time::SystemTime>,
}

/// Reads a connection's quota (the gate lives in [`crate::api`]).
type QuotaProbe = Arc<dyn Fn() -> QuotaState + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    connection: String,
    quota: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabels {
    connection: String,
    lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiRequestLabels {
    connection: String,
    connector: String,
    purpose: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    connection: String,
    priority: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabels {
    connection: String,
    outcome: &'static str,
    sqlstate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    connection: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    connection: String,
    object: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    connection: String,
    object: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkStateLabels {
    sink: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkEventLabels {
    sink: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlingLabels {
    handling: &'static str,
}

type SecondsHistograms = Family<ConnectionLabels, Histogram, fn() -> Histogram>;
type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// API time of a statement: 5 ms to about 20 s.
fn api_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Sequin's own time in a statement: 0.25 ms to about 4 s.
fn overhead_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.00025, 2.0, 15))
}

/// The metrics of one process. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// The metrics updated as things happen (the scrape adds the rest).
    registry: Registry,
    api_requests: Family<ApiRequestLabels, Counter>,
    rate_limit_waits: Family<WaitLabels, Counter>,
    rate_limit_wait_seconds: Family<WaitLabels, FloatCounter>,
    write_statements: Family<StatementLabels, Counter>,
    write_api_seconds: SecondsHistograms,
    write_overhead_seconds: SecondsHistograms,
    compensations: Family<StateLabels, Counter>,
    events_sequenced: Counter,
    sink_events: Family<SinkEventLabels, Counter>,
    budgets: Mutex<BTreeMap<String, BudgetProbe>>,
    quotas: Mutex<BTreeMap<String, QuotaProbe>>,
    proxy: Mutex<Option<Arc<ProxyStats>>>,
    pool: Mutex<Option<Arc<PoolStats>>>,
    parts: Mutex<BTreeMap<Part, PartState>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is one insert or assignment: a poisoned lock is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Fresh metrics, all at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        registry.register(
            "sequin_api_requests",
            "API requests sent (every attempt), by connection, connector, purpose (backfill, poll, discover, write) and status class (2xx, 3xx, 4xx, 5xx, transport)",
            api_requests.clone(),
        );
        let rate_limit_waits = Family::<WaitLabels, Counter>::default();
        registry.register(
            "sequin_api_rate_limit_waits",
            "API requests held back by the rate limit: by Sequin's budget (reason=budget) or after the API answered 429 (reason=api)",
            rate_limit_waits.clone(),
        );
        let rate_limit_wait_seconds = Family::<WaitLabels, FloatCounter>::default();
        registry.register(
            "sequin_api_rate_limit_wait_seconds",
            "Time API requests spent held back by the rate limit",
            rate_limit_wait_seconds.clone(),
        );
        let write_statements = Family::<StatementLabels, Counter>::default();
        registry.register(
            "sequin_write_statements",
            "Write-through statements by outcome (ok, refused, failed) and SQLSTATE (00000 when ok)",
            write_statements.clone(),
        );
        let write_api_seconds: SecondsHistograms = Family::new_with_constructor(api_seconds);
        registry.register(
            "sequin_write_api_seconds",
            "API time of each write-through statement that called the API",
            write_api_seconds.clone(),
        );
        let write_overhead_seconds: SecondsHistograms =
            Family::new_with_constructor(overhead_seconds);
        registry.register(
            "sequin_write_overhead_seconds",
            "Sequin's own time in each write-through statement: its wall time minus its API time",
            write_overhead_seconds.clone(),
        );
        let compensations = Family::<StateLabels, Counter>::default();
        registry.register(
            "sequin_write_compensations",
            "Write-through effects of transactions that did not commit, settled by this process, by outcome (compensated, irreversible, compensation_failed, ...)",
            compensations.clone(),
        );
        let events_sequenced = Counter::default();
        registry.register(
            "sequin_events_sequenced",
            "Changes to synced tables moved from the outbox into sequin.events by this process",
            events_sequenced.clone(),
        );
        let sink_events = Family::<SinkEventLabels, Counter>::default();
        registry.register(
            "sequin_sink_events",
            "Events a sink handled in this process, by outcome: delivered, failed (an attempt that failed; it is retried) and dead (out of attempts: dead-lettered)",
            sink_events.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                api_requests,
                rate_limit_waits,
                rate_limit_wait_seconds,
                write_statements,
                write_api_seconds,
                write_overhead_seconds,
                compensations,
                events_sequenced,
                sink_events,
                budgets: Mutex::new(BTreeMap::new()),
                quotas: Mutex::new(BTreeMap::new()),
                proxy: Mutex::new(None),
                pool: Mutex::new(None),
                parts: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// One API request attempt that was sent; `status` is `None` when no
    /// whole answer arrived.
    pub fn api_request(
        &self,
        connection: &str,
        connector: &str,
        purpose: Purpose,
        status: Option<u16>,
    ) {
        self.inner
            .api_requests
            .get_or_create(&ApiRequestLabels {
                connection: connection.to_string(),
                connector: connector.to_string(),
                purpose: purpose.as_str(),
                status: status_class(status),
            })
            .inc();
    }

    /// A request held back `waited` by the rate limit (`write`: a request
    /// of write-through, which may use the budget's write reserve).
    pub fn rate_limit_wait(
        &self,
        connection: &str,
        write: bool,
        reason: WaitReason,
        waited: Duration,
    ) {
        let labels = WaitLabels {
            connection: connection.to_string(),
            priority: if write { "write" } else { "read" },
            reason: match reason {
                WaitReason::Budget => "budget",
                WaitReason::Api => "api",
            },
        };
        self.inner.rate_limit_waits.get_or_create(&labels).inc();
        self.inner
            .rate_limit_wait_seconds
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
    }

    /// The rate-limit budget of `connection`, read when scraped.
    pub fn watch_budget(
        &self,
        connection: &str,
        level: impl Fn() -> BudgetLevel + Send + Sync + 'static,
    ) {
        lock(&self.inner.budgets).insert(connection.to_string(), Arc::new(level));
    }

    /// The quota of `connection`, read when scraped.
    pub fn watch_quota(
        &self,
        connection: &str,
        state: impl Fn() -> QuotaState + Send + Sync + 'static,
    ) {
        lock(&self.inner.quotas).insert(connection.to_string(), Arc::new(state));
    }

    /// One write-through statement of `connection` (its schema), ended with
    /// `outcome` and `sqlstate` after `times`.
    pub fn write_statement(
        &self,
        connection: &str,
        outcome: WriteOutcome,
        sqlstate: &str,
        times: StatementTimes,
    ) {
        let inner = &self.inner;
        inner
            .write_statements
            .get_or_create(&StatementLabels {
                connection: connection.to_string(),
                outcome: outcome.as_str(),
                sqlstate: sqlstate.to_string(),
            })
            .inc();
        let labels = ConnectionLabels {
            connection: connection.to_string(),
        };
        if times.api_calls > 0 {
            inner
                .write_api_seconds
                .get_or_create(&labels)
                .observe(times.api.as_secs_f64());
        }
        inner
            .write_overhead_seconds
            .get_or_create(&labels)
            .observe(times.overhead().as_secs_f64());
    }

    /// One effect of a transaction that did not commit, settled as `state`.
    pub fn compensation(&self, connection: &str, state: &str) {
        self.inner
            .compensations
            .get_or_create(&StateLabels {
                connection: connection.to_string(),
                state: state.to_string(),
            })
            .inc();
    }

    /// Changes moved into `sequin.events`.
    pub fn events_sequenced(&self, n: u64) {
        self.inner.events_sequenced.inc_by(n);
    }

    /// Events a sink handled with `outcome` (`delivered`, `failed`, `dead`).
    pub fn sink_events(&self, sink: &str, outcome: &'static str, n: u64) {
        if n > 0 {
            self.inner
                .sink_events
                .get_or_create(&SinkEventLabels {
                    sink: sink.to_string(),
                    outcome,
                })
                .inc_by(n);
        }
    }

    /// The proxy's counters, read when scraped.
    pub fn watch_proxy(&self, stats: Arc<ProxyStats>) {
        *lock(&self.inner.proxy) = Some(stats);
    }

    /// Sync's session pool, read when scraped.
    pub fn watch_pool(&self, stats: Arc<PoolStats>) {
        *lock(&self.inner.pool) = Some(stats);
    }

    /// Records where a part of the process is.
    pub fn part(&self, part: Part, state: PartState) {
        lock(&self.inner.parts).insert(part, state);
    }

    /// Forgets a part this process no longer runs (a connection another
    /// process syncs now).
    pub fn forget(&self, part: &Part) {
        lock(&self.inner.parts).remove(part);
    }

    /// Every part and where it is.
    pub fn parts(&self) -> Vec<(Part, PartState)> {
        lock(&self.inner.parts)
            .iter()
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect()
    }

    /// The exposition (Prometheus text format 0.0.4): the metrics counted
    /// so far, the sources read now, and `stored` (what Postgres holds;
    /// `None` when it could not be read, which `postgres_up` says).
    pub fn encode(&self, stored: Option<&Stored>, postgres_up: bool) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry);
        let scraped = self.scraped(stored, postgres_up);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &scraped);
        out
    }

    /// A registry of the values read at scrape time.
    fn scraped(&self, stored: Option<&Stored>, postgres_up: bool) -> Registry {
        let mut r = Registry::default();
        let up = Gauge::<i64>::default();
        up.set(i64::from(postgres_up));
        r.register(
            "sequin_postgres_up",
            "Whether Postgres answered this scrape (1) or not (0)",
            up,
        );
        self.register_parts(&mut r);
        self.register_budgets(&mut r);
        self.register_quotas(&mut r);
        self.register_proxy(&mut r);
        self.register_pool(&mut r);
        if let Some(stored) = stored {
            register_stored(&mut r, stored);
        }
        r
    }

    fn register_parts(&self, r: &mut Registry) {
        let running = Family::<ConnectionLabels, Gauge>::default();
        let mut any = false;
        for (part, state) in self.parts() {
            if let Part::Connection(connection) = part {
                any = true;
                running
                    .get_or_create(&ConnectionLabels { connection })
                    .set(i64::from(state == PartState::Started));
            }
        }
        if any {
            r.register(
                "sequin_connection_running",
                "Whether the sync engine runs the connection (1), or it is starting or failed (0)",
                running,
            );
        }
    }

    fn register_budgets(&self, r: &mut Registry) {
        let budgets: Vec<(String, BudgetProbe)> = lock(&self.inner.budgets)
            .iter()
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect();
        if budgets.is_empty() {
            return;
        }
        let capacity = Family::<ConnectionLabels, Gauge>::default();
        let available = Family::<ConnectionLabels, Gauge>::default();
        for (connection, probe) in budgets {
            let level = probe();
            let labels = ConnectionLabels { connection };
            capacity
                .get_or_create(&labels)
                .set(i64::from(level.capacity));
            available
                .get_or_create(&labels)
                .set(i64::from(level.available));
        }
        r.register(
            "sequin_api_budget_capacity",
            "Requests the connection's rate limit allows per window",
            capacity,
        );
        r.register(
            "sequin_api_budget_available",
            "Requests that may start now without waiting (the window's capacity less requests in flight or cooling down; 0 while the API said to pause)",
            available,
        );
    }

    fn register_quotas(&self, r: &mut Registry) {
        let quotas: Vec<(String, QuotaProbe)> = lock(&self.inner.quotas)
            .iter()
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect();
        if quotas.is_empty() {
            return;
        }
        let max = Family::<QuotaLabels, Gauge>::default();
        let remaining = Family::<QuotaLabels, Gauge>::default();
        let floor = Family::<QuotaLabels, Gauge>::default();
        let paused = Family::<LaneLabels, Gauge>::default();
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (connection, probe) in quotas {
            let state = probe();
            for c in &state.counters {
                let labels = QuotaLabels {
                    connection: connection.clone(),
                    quota: c.quota.clone(),
                };
                if let Some(m) = c.max {
                    max.get_or_create(&labels).set(gauge(m));
                }
                if let Some(n) = c.remaining {
                    remaining.get_or_create(&labels).set(gauge(n));
                }
                if let Some(f) = c.floor {
                    floor.get_or_create(&labels).set(gauge(f));
                }
            }
            for (lane, on) in [
                ("backfill", state.paused.backfill),
                ("poll", state.paused.poll),
            ] {
                paused
                    .get_or_create(&LaneLabels {
                        connection: connection.clone(),
                        lane,
                    })
                    .set(i64::from(on));
            }
        }
        r.register(
            "sequin_api_quota_max",
            "The API's allowance of a quota over its period (Salesforce's DailyApiRequests), as last read",
            max,
        );
        r.register(
            "sequin_api_quota_remaining",
            "What is left of a quota: the level last read less the requests sent since",
            remaining,
        );
        r.register(
            "sequin_api_quota_floor",
            "The connection's floor of a quota: polls pause at it, backfills earlier (quota.floor)",
            floor,
        );
        r.register(
            "sequin_api_quota_paused",
            "Whether reads of a lane (backfill, poll) are paused because the quota is near its floor or spent (writes never are)",
            paused,
        );
    }

    fn register_pool(&self, r: &mut Registry) {
        let Some(stats) = lock(&self.inner.pool).clone() else {
            return;
        };
        let gauge = |v: usize| {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g
        };
        let sessions = Family::<SessionLabels, Gauge>::default();
        let open = stats.open.load(Ordering::Relaxed);
        let in_use = stats.in_use.load(Ordering::Relaxed).min(open);
        for (state, n) in [("in_use", in_use), ("idle", open - in_use)] {
            sessions
                .get_or_create(&SessionLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        r.register(
            "sequin_sync_sessions",
            "Postgres sessions of sync's pool open now, lent to a step or idle",
            sessions,
        );
        r.register(
            "sequin_sync_sessions_max",
            "The pool's size (pool.size): sync never opens more sessions",
            gauge(stats.size),
        );
        r.register(
            "sequin_sync_session_waiters",
            "Sync steps waiting for a session now",
            gauge(stats.waiting.load(Ordering::Relaxed)),
        );
        let opened = Counter::<u64>::default();
        opened.inc_by(stats.opened.load(Ordering::Relaxed));
        r.register(
            "sequin_sync_sessions_opened",
            "Postgres sessions the pool opened (a steady rise means sessions close idle and reopen, or break)",
            opened,
        );
        let waited = FloatCounter::default();
        waited.inc_by(stats.wait_us.load(Ordering::Relaxed) as f64 / 1e6);
        r.register(
            "sequin_sync_session_wait_seconds",
            "Time sync steps waited for a session of the pool",
            waited,
        );
    }

    fn register_proxy(&self, r: &mut Registry) {
        let Some(stats) = lock(&self.inner.proxy).clone() else {
            return;
        };
        let open = Gauge::<i64>::default();
        open.set(stats.active_sessions.load(Ordering::Relaxed) as i64);
        r.register(
            "sequin_proxy_sessions_open",
            "Client sessions open now",
            open,
        );
        let total = Counter::<u64>::default();
        total.inc_by(stats.sessions_total.load(Ordering::Relaxed));
        r.register("sequin_proxy_sessions", "Client sessions accepted", total);
        let statements = Family::<HandlingLabels, Counter>::default();
        statements
            .get_or_create(&HandlingLabels {
                handling: "intercepted",
            })
            .inc_by(stats.statements_intercepted.load(Ordering::Relaxed));
        statements
            .get_or_create(&HandlingLabels {
                handling: "passed_through",
            })
            .inc_by(stats.statements_passed.load(Ordering::Relaxed));
        r.register(
            "sequin_proxy_statements",
            "Statements (Query and Execute messages) the proxy saw: written through by the interceptor, or passed through to Postgres untouched",
            statements,
        );
    }
}

/// Counts a write-through statement of `connection` by how it ended: the
/// one call at the end of `WriteThrough::statement`.
pub fn write_statement<T>(
    metrics: &Metrics,
    connection: &str,
    written: &Result<T, crate::write::Stop>,
    times: StatementTimes,
) {
    use crate::write::Stop;
    let (outcome, sqlstate) = match written {
        Ok(_) => (WriteOutcome::Ok, "00000"),
        Err(Stop::Refuse(e)) => (WriteOutcome::Refused, e.sqlstate.as_str()),
        Err(Stop::Failed(e)) => (WriteOutcome::Failed, e.code().unwrap_or("XX000")),
        // The session's server connection failed (connection_failure).
        Err(Stop::Inject(_)) => (WriteOutcome::Failed, "08006"),
    };
    metrics.write_statement(connection, outcome, sqlstate, times);
}

/// The timings of one write-through statement.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatementTimes {
    /// From the start of its write-through to its answer (or refusal).
    pub wall: Duration,
    /// Spent waiting for the API.
    pub api: Duration,
    /// How many times it called the API.
    pub api_calls: u32,
}

impl StatementTimes {
    /// Sequin's own time: the wall time less the API's.
    pub fn overhead(&self) -> Duration {
        self.wall.saturating_sub(self.api)
    }
}

tokio::task_local! {
    /// The API time of the statement being written through by this task.
    static STATEMENT_API: std::cell::Cell<(Duration, u32)>;
}

/// Runs one write-through statement, timing it and the API calls made in it
/// through [`time_api`].
pub async fn time_statement<T>(statement: impl Future<Output = T>) -> (T, StatementTimes) {
    let started = Instant::now();
    STATEMENT_API
        .scope(std::cell::Cell::new((Duration::ZERO, 0)), async move {
            let out = statement.await;
            let (api, api_calls) = STATEMENT_API.with(|c| c.get());
            let times = StatementTimes {
                wall: started.elapsed(),
                api,
                api_calls,
            };
            (out, times)
        })
        .await
}

/// Runs an API call of the statement [`time_statement`] is timing, adding
/// its time to the statement's API time (nothing is counted outside one).
pub async fn time_api<T>(call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    let took = started.elapsed();
    let _ = STATEMENT_API.try_with(|c| {
        let (api, calls) = c.get();
        c.set((api + took, calls + 1));
    });
    out
}

/// An object's sync state as scraped.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectRow {
    pub connection: String,
    pub object: String,
    pub live: bool,
    /// Records merged so far (`sequin.sync_state.rows_synced`).
    pub records_synced: i64,
    /// Live rows in the table, as Postgres's statistics estimate them
    /// (counting every table at every scrape would cost a scan each).
    pub rows_estimate: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub since_poll_seconds: Option<f64>,
    pub failing: bool,
}

/// What Postgres holds, for one scrape: the sync state of the objects of
/// the connections this process syncs, and the write journal's entries by
/// state for those it writes through.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stored {
    pub objects: Vec<ObjectRow>,
    pub journal: Vec<JournalCount>,
    pub sinks: Vec<crate::status::SinkStatus>,
}

/// Reads [`Stored`]: the objects of `synced` connections and the journal
/// entries of `written` ones.
pub async fn read_stored(
    client: &Client,
    synced: &[String],
    written: &[String],
    events: bool,
) -> Result<Stored, StoreError> {
    let mut stored = Stored::default();
    if !synced.is_empty() {
        let rows = client
            .query(
                "SELECT s.connection, s.object, s.phase = 'live', s.rows_synced, t.n_live_tup,
                        extract(epoch FROM now() - s.last_success_at)::float8,
                        extract(epoch FROM now() - s.last_poll_at)::float8,
                        s.last_error IS NOT NULL
                   FROM sequin.sync_state s
                   LEFT JOIN pg_catalog.pg_stat_user_tables t
                     ON t.schemaname = s.connection AND t.relname = s.object
                  WHERE s.connection = ANY($1) AND s.object <> '_connection'
                  ORDER BY 1, 2",
                &[&synced],
            )
            .await
            .map_err(db("reading the sync state for metrics"))?;
        stored.objects = rows
            .iter()
            .map(|r| ObjectRow {
                connection: r.get(0),
                object: r.get(1),
                live: r.get(2),
                records_synced: r.get(3),
                rows_estimate: r.get(4),
                lag_seconds: r.get(5),
                since_poll_seconds: r.get(6),
                failing: r.get(7),
            })
            .collect();
    }
    if events {
        stored.sinks = crate::status::read_sinks(client).await?;
    }
    if !written.is_empty() {
        stored.journal = crate::status::read_journal(client)
            .await?
            .into_iter()
            .filter(|j| written.contains(&j.connection))
            .collect();
    }
    Ok(stored)
}

/// Registers the families of what Postgres holds.
fn register_stored(r: &mut Registry, stored: &Stored) {
    if !stored.objects.is_empty() {
        let lag = Family::<ObjectLabels, FloatGauge>::default();
        let since_poll = Family::<ObjectLabels, FloatGauge>::default();
        let rows = Family::<ObjectLabels, Gauge>::default();
        let records = Family::<ObjectLabels, Counter>::default();
        let phase = Family::<PhaseLabels, Gauge>::default();
        let failing = Family::<ObjectLabels, Gauge>::default();
        for o in &stored.objects {
            let labels = ObjectLabels {
                connection: o.connection.clone(),
                object: o.object.clone(),
            };
            if let Some(l) = o.lag_seconds {
                lag.get_or_create(&labels).set(l);
            }
            if let Some(s) = o.since_poll_seconds {
                since_poll.get_or_create(&labels).set(s);
            }
            if let Some(n) = o.rows_estimate {
                rows.get_or_create(&labels).set(n.max(0));
            }
            records
                .get_or_create(&labels)
                .inc_by(o.records_synced.max(0) as u64);
            failing.get_or_create(&labels).set(i64::from(o.failing));
            for (name, is) in [("live", o.live), ("backfilling", !o.live)] {
                phase
                    .get_or_create(&PhaseLabels {
                        connection: o.connection.clone(),
                        object: o.object.clone(),
                        phase: name,
                    })
                    .set(i64::from(is));
            }
        }
        r.register(
            "sequin_object_lag_seconds",
            "Seconds since the object's last successful poll or backfill batch (absent before the first)",
            lag,
        );
        r.register(
            "sequin_object_since_poll_seconds",
            "Seconds since the object's last poll, successful or not",
            since_poll,
        );
        r.register(
            "sequin_object_rows",
            "Rows in the object's table (Postgres's statistics estimate of live rows)",
            rows,
        );
        r.register(
            "sequin_object_records_synced",
            "Records received from the API and merged into the object's table, since the object was first synced",
            records,
        );
        r.register(
            "sequin_object_phase",
            "The object's phase: 1 for the phase it is in (backfilling or live), 0 for the other",
            phase,
        );
        r.register(
            "sequin_object_failing",
            "Whether the object's last poll or batch failed (its error is in sequin.status)",
            failing,
        );
    }
    if !stored.sinks.is_empty() {
        register_sinks(r, &stored.sinks);
    }
    if !stored.journal.is_empty() {
        let entries = Family::<StateLabels, Gauge>::default();
        for j in &stored.journal {
            entries
                .get_or_create(&StateLabels {
                    connection: j.connection.clone(),
                    state: j.state.clone(),
                })
                .set(j.entries);
        }
        r.register(
            "sequin_write_journal_entries",
            "Entries of the write journal (sequin.write_journal) by state: open ones (intent, applied) and those settled within proxy.journal_retention",
            entries,
        );
    }
}

/// Each sink's lag, pause and held-back events, from `sequin.sink_status`.
fn register_sinks(r: &mut Registry, sinks: &[crate::status::SinkStatus]) {
    let lag = Family::<SinkLabels, FloatGauge>::default();
    let paused = Family::<SinkLabels, Gauge>::default();
    let parked = Family::<SinkStateLabels, Gauge>::default();
    for k in sinks {
        let labels = SinkLabels {
            sink: k.sink.clone(),
        };
        lag.get_or_create(&labels).set(k.lag_seconds);
        paused
            .get_or_create(&labels)
            .set(i64::from(k.state == "paused"));
        for (state, n) in [
            ("retrying", k.retrying),
            ("blocked", k.blocked),
            ("dead", k.dead),
        ] {
            parked
                .get_or_create(&SinkStateLabels {
                    sink: k.sink.clone(),
                    state,
                })
                .set(n);
        }
    }
    r.register(
        "sequin_sink_lag_seconds",
        "Age of the oldest event the sink has not delivered (0 when caught up)",
        lag,
    );
    r.register(
        "sequin_sink_paused",
        "1 when the sink is paused after failing attempts in a row (new events wait; a retry that goes through resumes it)",
        paused,
    );
    r.register(
        "sequin_sink_parked_events",
        "Events the sink holds back, by state: retrying, blocked (behind an earlier event of the same record) and dead (dead-lettered: `sequin events retry`)",
        parked,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(None), "transport");
        assert_eq!(status_class(Some(201)), "2xx");
        assert_eq!(status_class(Some(304)), "3xx");
        assert_eq!(status_class(Some(429)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
    }

    #[tokio::test]
    async fn statement_times_add_up_the_api_calls_inside() {
        let ((), times) = time_statement(async {
            time_api(tokio::time::sleep(Duration::from_millis(20))).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            time_api(tokio::time::sleep(Duration::from_millis(20))).await;
        })
        .await;
        assert_eq!(times.api_calls, 2);
        assert!(times.api >= Duration::from_millis(40), "{times:?}");
        assert!(
            times.wall >= times.api + Duration::from_millis(10),
            "{times:?}"
        );
        assert!(times.overhead() >= Duration::from_millis(10), "{times:?}");
        // Outside a statement an API call counts nowhere (and does not fail).
        time_api(async {}).await;
    }

    #[test]
    fn the_exposition_has_the_counted_and_the_scraped_values() {
        let m = Metrics::new();
        m.api_request("stripe", "stripe", Purpose::Backfill, Some(200));
        m.api_request("stripe", "stripe", Purpose::Write, None);
        m.write_statement(
            "stripe",
            WriteOutcome::Refused,
            "23514",
            StatementTimes {
                wall: Duration::from_millis(30),
                api: Duration::from_millis(20),
                api_calls: 1,
            },
        );
        m.part(Part::Connection("stripe".into()), PartState::Started);
        let stored = Stored {
            objects: vec![ObjectRow {
                connection: "stripe".into(),
                object: "customer".into(),
                live: true,
                records_synced: 7,
                rows_estimate: Some(5),
                lag_seconds: Some(1.5),
                since_poll_seconds: Some(1.5),
                failing: false,
            }],
            journal: vec![],
            sinks: vec![crate::status::SinkStatus {
                sink: "hook".into(),
                kind: "webhook".into(),
                state: "paused".into(),
                dead: 2,
                lag_seconds: 30.5,
                ..Default::default()
            }],
        };
        m.sink_events("hook", "delivered", 5);
        let text = m.encode(Some(&stored), true);
        for line in [
            r#"sequin_api_requests_total{connection="stripe",connector="stripe",purpose="backfill",status="2xx"} 1"#,
            r#"sequin_api_requests_total{connection="stripe",connector="stripe",purpose="write",status="transport"} 1"#,
            r#"sequin_write_statements_total{connection="stripe",outcome="refused",sqlstate="23514"} 1"#,
            r#"sequin_write_api_seconds_count{connection="stripe"} 1"#,
            r#"sequin_write_overhead_seconds_sum{connection="stripe"} 0.01"#,
            r#"sequin_connection_running{connection="stripe"} 1"#,
            r#"sequin_object_lag_seconds{connection="stripe",object="customer"} 1.5"#,
            r#"sequin_object_records_synced_total{connection="stripe",object="customer"} 7"#,
            r#"sequin_object_phase{connection="stripe",object="customer",phase="live"} 1"#,
            r#"sequin_object_phase{connection="stripe",object="customer",phase="backfilling"} 0"#,
            "sequin_postgres_up 1",
            r#"sequin_sink_events_total{sink="hook",outcome="delivered"} 5"#,
            r#"sequin_sink_lag_seconds{sink="hook"} 30.5"#,
            r#"sequin_sink_paused{sink="hook"} 1"#,
            r#"sequin_sink_parked_events{sink="hook",state="dead"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "`{line}` missing:\n{text}");
        }
    }
}
