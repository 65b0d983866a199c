//! Machinery shared by every simulated API: the [`Simulator`] trait, the middleware that applies
//! authentication, rate limiting, fault injection and counting, the `/_sim` control routes, a
//! clock, a deterministic RNG, id generators and fake-data helpers.
//!
//! An API module only describes the API itself (routes, auth check, error bodies, rate-limit key);
//! everything that is the same across APIs lives here so that each fault behaves identically for
//! every API and tests can rely on one set of counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A rate limit as the API documents it: at most `requests` in any window of length `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    #[serde(with = "duration_ms")]
    pub window: Duration,
}

impl RateLimit {
    pub const fn per_second(requests: u32) -> Self {
        Self {
            requests,
            window: Duration::from_secs(1),
        }
    }

    /// Converts a requests-per-second figure (as given on the command line) into a limit.
    /// Fractional rates below one become one request per `1/rate` seconds; `None` for a rate of
    /// zero, a negative or a non-finite rate, which means "no limit".
    pub fn from_rate(per_second: f64) -> Option<Self> {
        if !per_second.is_finite() || per_second <= 0.0 {
            return None;
        }
        Some(if per_second >= 1.0 {
            Self::per_second(per_second.floor() as u32)
        } else {
            Self {
                requests: 1,
                window: Duration::from_secs_f64(1.0 / per_second),
            }
        })
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Everything an API module gets when it is constructed.
#[derive(Clone)]
pub struct SimContext {
    /// The credential the simulated account accepts.
    pub token: String,
    /// Seed for all deterministic randomness of the module (fake data, ids).
    pub rng_seed: u64,
    /// The clock every timestamp must come from.
    pub clock: Clock,
    /// `http://127.0.0.1:PORT`, for APIs that return absolute URLs (links, next pages).
    pub base_url: String,
}

/// One simulated API. Implemented by each API module; the framework (see [`app`]) wraps
/// [`Simulator::routes`] with auth, rate limiting, faults and counting, and mounts
/// [`Simulator::control_routes`] under `/_sim` without any of those.
pub trait Simulator: Send + Sync + 'static {
    /// The API's routes (without the /_sim control routes, which the framework adds).
    fn routes(self: Arc<Self>) -> Router;
    /// Does this request carry valid credentials? (header/query per the real API)
    fn authorized(&self, req: &Parts) -> bool;
    /// The real API's 401 response.
    fn unauthorized(&self) -> Response;
    /// The 401 response for this request, for APIs whose message depends on what was sent
    /// (no key vs. a wrong key). Defaults to [`Simulator::unauthorized`].
    fn unauthorized_for(&self, req: &Parts) -> Response {
        let _ = req;
        self.unauthorized()
    }
    /// The real API's 429 (or equivalent) response, with Retry-After.
    fn rate_limited(&self, retry_after: Duration) -> Response;
    /// The real API's 5xx response for an injected fault.
    fn server_error(&self) -> Response;
    /// Rate-limit bucket key for a request (e.g. "account", or the Airtable base id).
    fn rate_key(&self, req: &Parts) -> String;
    /// Default limit from the API's public docs.
    fn default_rate_limit(&self) -> RateLimit;
    /// Seed n records per main object with deterministic fake data.
    fn seed(&self, n: usize);
    /// Seed n records of every object the API serves (for APIs that serve more objects than
    /// their main ones: Stripe); defaults to [`Simulator::seed`].
    fn seed_every_object(&self, n: usize) {
        self.seed(n);
    }
    /// Control routes mounted under /_sim (mutating data behind the client's back).
    /// Paths are relative: a route `/customers` is served at `/_sim/customers`.
    fn control_routes(self: Arc<Self>) -> Router;
    /// The limit for this request's key, given the configured one: lets an API give an endpoint
    /// its own documented limit (HubSpot search: 5/s, under its own `rate_key`).
    fn rate_limit_for(&self, _req: &Parts, configured: RateLimit) -> RateLimit {
        configured
    }
    /// Called when a request on `key` breaches the limit; returns the wait to announce. APIs
    /// that punish a breach with a fixed wait (Airtable: 30 s) record it here.
    fn on_rate_limit_breach(&self, _key: &str, retry_after: Duration) -> Duration {
        retry_after
    }
    /// Remaining wait imposed on `key` by an earlier breach, if any: such requests are
    /// rejected (and counted as rate-limited) before the sliding window is consulted.
    fn rate_penalty(&self, _key: &str) -> Option<Duration> {
        None
    }
}

/// Fault-injection knobs. Probabilities are per request, drawn from the seeded RNG.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Answer with the API's 5xx body instead of handling the request.
    pub p_5xx: f64,
    /// Answer with the API's 429 body (an injected one, counted apart from real limit breaches).
    pub p_429: f64,
    /// Send a successful response with a `Content-Length` larger than the bytes sent, then close.
    pub p_truncate: f64,
    /// Reset the TCP connection (RST) instead of answering.
    pub p_reset: f64,
    /// Added to every API request before it is handled.
    #[serde(with = "duration_ms")]
    pub latency: Duration,
}

/// Counters served at `/_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Every request to the API routes (not /_sim), including faulted ones.
    pub requests: u64,
    /// Responses by HTTP status (injected resets have no status and are not counted here).
    pub by_status: BTreeMap<u16, u64>,
    /// Requests by route, as `"GET /v1/customers"` (the route pattern, not the concrete path).
    pub by_route: BTreeMap<String, u64>,
    pub faults: FaultCounts,
    /// 429s caused by a real limit breach (injected 429s are in `faults.http_429`).
    pub rate_limited: u64,
    /// 401s (bad or missing credentials).
    pub unauthorized: u64,
    /// Per rate-limit key.
    pub rate_keys: BTreeMap<String, RateKeyStats>,
}

/// Injected faults by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub http_5xx: u64,
    pub http_429: u64,
    pub truncated: u64,
    pub reset: u64,
}

/// What a client did against one rate-limit key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateKeyStats {
    /// The limit in force when last checked.
    pub limit: u32,
    pub window_ms: u64,
    /// The most requests admitted within any window (sliding): never above `limit`.
    pub max_admitted_in_window: u32,
    /// The most requests that arrived within any window, admitted or not: a client that respects
    /// the limit keeps this at or below `limit`.
    pub max_attempted_in_window: u32,
    /// Requests rejected with 429 for this key.
    pub rejected: u64,
    /// Every request checked against this key's limit, admitted or not (Stripe: the account's
    /// requests).
    pub requests: u64,
}

/// Thread-safe holder of the counters.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsSnapshot>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        self.lock().clone()
    }

    pub fn reset(&self) {
        *self.lock() = StatsSnapshot::default();
    }

    fn lock(&self) -> MutexGuard<'_, StatsSnapshot> {
        // A panic while counting cannot leave the counters inconsistent in a way that matters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sliding-window limiter: admits a request when fewer than `limit.requests` were admitted in the
/// last `limit.window`. This is the strict reading of "N requests per window" in the APIs' docs
/// (a token bucket whose capacity equals its refill per window), and it makes "the client was
/// never admitted more than N in a window" an invariant a test can check through the stats.
#[derive(Default)]
struct Limiter {
    keys: Mutex<HashMap<String, KeyWindow>>,
}

#[derive(Default)]
struct KeyWindow {
    admitted: VecDeque<Instant>,
    attempted: VecDeque<Instant>,
}

fn trim(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

impl Limiter {
    /// Returns `Err(retry_after)` when the request must be rejected.
    fn check(&self, key: &str, limit: RateLimit, stats: &Stats) -> Result<(), Duration> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let w = keys.entry(key.to_owned()).or_default();
        trim(&mut w.admitted, now, limit.window);
        trim(&mut w.attempted, now, limit.window);
        w.attempted.push_back(now);
        let admit = w.admitted.len() < limit.requests as usize;
        let retry_after = if admit {
            w.admitted.push_back(now);
            None
        } else {
            let oldest = *w.admitted.front().expect("a full window is not empty");
            Some(limit.window.saturating_sub(now.duration_since(oldest)))
        };
        let mut s = stats.lock();
        let k = s.rate_keys.entry(key.to_owned()).or_default();
        k.requests += 1;
        k.limit = limit.requests;
        k.window_ms = limit.window.as_millis() as u64;
        k.max_admitted_in_window = k.max_admitted_in_window.max(w.admitted.len() as u32);
        k.max_attempted_in_window = k.max_attempted_in_window.max(w.attempted.len() as u32);
        match retry_after {
            None => Ok(()),
            Some(d) => {
                k.rejected += 1;
                s.rate_limited += 1;
                Err(d)
            }
        }
    }
}

/// Runtime-adjustable settings of a running simulator.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub faults: Faults,
    /// `None`: no limit at all.
    pub rate_limit: Option<RateLimit>,
}

/// The framework state shared by the middleware and the control routes.
pub struct Framework {
    sim: Arc<dyn Simulator>,
    stats: Arc<Stats>,
    limiter: Limiter,
    settings: RwLock<Settings>,
    fault_rng: Mutex<StdRng>,
}

impl Framework {
    pub fn new(sim: Arc<dyn Simulator>, settings: Settings, rng_seed: u64) -> Arc<Self> {
        Arc::new(Self {
            sim,
            stats: Arc::new(Stats::default()),
            limiter: Limiter::default(),
            settings: RwLock::new(settings),
            fault_rng: Mutex::new(seeded_rng(rng_seed, "faults")),
        })
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn settings(&self) -> Settings {
        *self.settings.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .faults = faults;
    }

    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .rate_limit = limit;
    }

    /// Draws which fault (if any) hits this request. One lock per request keeps the sequence of
    /// decisions deterministic for a given order of requests.
    fn draw(&self, f: &Faults) -> Option<FaultKind> {
        let mut rng = self.fault_rng.lock().unwrap_or_else(|e| e.into_inner());
        // Always draw all four so that one knob's value does not shift the others' sequences.
        let (reset, e5xx, e429, trunc) = (
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random::<f64>(),
        );
        if reset < f.p_reset {
            Some(FaultKind::Reset)
        } else if e5xx < f.p_5xx {
            Some(FaultKind::ServerError)
        } else if e429 < f.p_429 {
            Some(FaultKind::TooManyRequests)
        } else if trunc < f.p_truncate {
            Some(FaultKind::Truncate)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Reset,
    ServerError,
    TooManyRequests,
    Truncate,
}

/// Builds the whole application: the API's routes behind the middleware, plus `/_sim/stats`,
/// `/_sim/reset-stats`, `/_sim/faults`, `/_sim/rate-limit` and the API's control routes.
pub fn app(fw: Arc<Framework>) -> Router {
    let api = fw
        .sim
        .clone()
        .routes()
        .layer(axum::middleware::from_fn_with_state(fw.clone(), middleware));
    let control = Router::new()
        .route("/stats", get(stats_route))
        .route("/reset-stats", post(reset_stats_route))
        .route("/faults", get(get_faults_route).post(set_faults_route))
        .route("/rate-limit", post(set_rate_limit_route))
        .with_state(fw.clone())
        .merge(fw.sim.clone().control_routes());
    api.nest("/_sim", control)
}

async fn stats_route(State(fw): State<Arc<Framework>>) -> Json<StatsSnapshot> {
    Json(fw.stats.snapshot())
}

async fn reset_stats_route(State(fw): State<Arc<Framework>>) -> StatusCode {
    fw.stats.reset();
    StatusCode::NO_CONTENT
}

async fn get_faults_route(State(fw): State<Arc<Framework>>) -> Json<Faults> {
    Json(fw.settings().faults)
}

async fn set_faults_route(State(fw): State<Arc<Framework>>, Json(f): Json<Faults>) -> StatusCode {
    fw.set_faults(f);
    StatusCode::NO_CONTENT
}

/// Body: `{"requests":N,"window":MS}` or `null` for no limit.
async fn set_rate_limit_route(
    State(fw): State<Arc<Framework>>,
    Json(limit): Json<Option<RateLimit>>,
) -> StatusCode {
    fw.set_rate_limit(limit);
    StatusCode::NO_CONTENT
}

async fn middleware(
    State(fw): State<Arc<Framework>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
    next: Next,
) -> Response {
    let route = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!("{} {}", req.method(), p.as_str()),
        None => format!("{} (unmatched)", req.method()),
    };
    {
        let mut s = fw.stats.lock();
        s.requests += 1;
        *s.by_route.entry(route).or_default() += 1;
    }
    let settings = fw.settings();
    if !settings.faults.latency.is_zero() {
        tokio::time::sleep(settings.faults.latency).await;
    }
    let fault = fw.draw(&settings.faults);
    let response = match fault {
        Some(FaultKind::Reset) => {
            fw.stats.lock().faults.reset += 1;
            conn.reset();
            // Never reaches the client: writing it fails and the socket is closed with RST.
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(FaultKind::ServerError) => {
            fw.stats.lock().faults.http_5xx += 1;
            fw.sim.server_error()
        }
        Some(FaultKind::TooManyRequests) => {
            fw.stats.lock().faults.http_429 += 1;
            fw.sim.rate_limited(Duration::from_secs(1))
        }
        Some(FaultKind::Truncate) | None => {
            handle(&fw, settings, req, next, fault == Some(FaultKind::Truncate)).await
        }
    };
    *fw.stats
        .lock()
        .by_status
        .entry(response.status().as_u16())
        .or_default() += 1;
    response
}

async fn handle(
    fw: &Framework,
    settings: Settings,
    req: Request,
    next: Next,
    truncate: bool,
) -> Response {
    let (parts, body) = req.into_parts();
    if !fw.sim.authorized(&parts) {
        fw.stats.lock().unauthorized += 1;
        return fw.sim.unauthorized_for(&parts);
    }
    if let Some(limit) = settings.rate_limit {
        let key = fw.sim.rate_key(&parts);
        if let Some(wait) = fw.sim.rate_penalty(&key) {
            let mut s = fw.stats.lock();
            s.rate_limited += 1;
            s.rate_keys.entry(key).or_default().rejected += 1;
            drop(s);
            return fw.sim.rate_limited(wait);
        }
        let limit = fw.sim.rate_limit_for(&parts, limit);
        if let Err(retry_after) = fw.limiter.check(&key, limit, &fw.stats) {
            return fw
                .sim
                .rate_limited(fw.sim.on_rate_limit_breach(&key, retry_after));
        }
    }
    let response = next.run(Request::from_parts(parts, body)).await;
    if truncate && response.status().is_success() {
        fw.stats.lock().faults.truncated += 1;
        truncated(response).await
    } else {
        response
    }
}

/// Re-sends `response` announcing its full length but sending only the first half of the bytes;
/// the body then fails, so the server closes the connection mid-body.
async fn truncated(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let half = bytes.slice(..bytes.len() / 2);
    // The error comes a moment later: while the body is pending hyper flushes the headers and
    // the first half, so the client really receives a short body rather than nothing.
    let rest = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err::<bytes::Bytes, _>(io::Error::other("injected truncation"))
    });
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, io::Error>(half)]),
        rest,
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Formats a Retry-After value in whole seconds, rounded up (the header has no fractions).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

// ---------------------------------------------------------------------------------------------
// Listener whose connections can be reset on demand.

/// A TCP listener for [`axum::serve`] whose connections carry a [`ConnHandle`].
pub struct SimListener {
    inner: TcpListener,
}

impl SimListener {
    pub fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        // Small JSON responses: Nagle would add 40 ms delays with delayed ACKs.
        let _ = stream.set_nodelay(true);
        let stream = SimStream {
            inner: stream,
            reset: Arc::new(AtomicBool::new(false)),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP stream that fails every write once its reset flag is set, after arming `SO_LINGER=0`,
/// so that hyper drops it and the kernel sends RST instead of FIN.
pub struct SimStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl SimStream {
    fn check_reset(&self) -> io::Result<()> {
        if self.reset.load(Ordering::Relaxed) {
            let _ = self.inner.set_zero_linger();
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        Ok(())
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_reset()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_reset()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_reset()?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_reset()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_reset()?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Per-connection handle given to the middleware (as `ConnectInfo<ConnHandle>`).
#[derive(Clone)]
pub struct ConnHandle {
    reset: Arc<AtomicBool>,
}

impl ConnHandle {
    /// Makes the connection fail with RST at its next I/O.
    pub fn reset(&self) {
        self.reset.store(true, Ordering::Relaxed);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        Self {
            reset: stream.io().reset.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time, randomness, ids, fake data.

/// Wall clock plus an offset tests can advance. [`Clock::now_ms`] never returns the same value
/// twice, so modstamps taken from it are strictly increasing.
#[derive(Clone, Default)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

#[derive(Default)]
struct ClockInner {
    offset_ms: AtomicI64,
    last_ms: AtomicI64,
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Unix milliseconds, strictly greater than any value returned before.
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64
            + self.inner.offset_ms.load(Ordering::Relaxed);
        let prev = self
            .inner
            .last_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(wall.max(last + 1))
            })
            .expect("closure always returns Some");
        wall.max(prev + 1)
    }

    /// Unix seconds (not unique: many events share a second).
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock forward (e.g. to age events past a retention window).
    pub fn advance(&self, by: Duration) {
        self.inner
            .offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

/// A deterministic RNG for one purpose (`stream`) of one simulator run: different purposes get
/// independent sequences from the same `--seed`.
pub fn seeded_rng(seed: u64, stream: &str) -> StdRng {
    // FNV-1a over the stream name, mixed into the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    StdRng::seed_from_u64(seed ^ h)
}

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` followed by `len` random characters from `[0-9A-Za-z]` (Stripe/Airtable style ids).
pub fn random_id(rng: &mut impl Rng, prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    for _ in 0..len {
        id.push(ALPHANUMERIC[rng.random_range(0..ALPHANUMERIC.len())] as char);
    }
    id
}

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Donald",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ivan",
    "John",
    "Katherine",
    "Leslie",
    "Margaret",
    "Niklaus",
    "Ole",
    "Radia",
    "Shafi",
    "Tim",
    "Yukihiro",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Knuth",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Lamarr",
    "Sutherland",
    "McCarthy",
    "Johnson",
    "Lamport",
    "Hamilton",
    "Wirth",
    "Dahl",
    "Perlman",
    "Goldwasser",
    "Berners-Lee",
    "Matsumoto",
];
const COMPANY_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
];
const COMPANY_SUFFIXES: &[&str] = &["Inc", "LLC", "GmbH", "Ltd", "Labs", "Systems"];
const CITIES: &[(&str, &str)] = &[
    ("San Francisco", "US"),
    ("New York", "US"),
    ("London", "GB"),
    ("Paris", "FR"),
    ("Berlin", "DE"),
    ("Tokyo", "JP"),
    ("Toronto", "CA"),
    ("Sydney", "AU"),
];

/// A fake person.
#[derive(Debug, Clone)]
pub struct Person {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub company: String,
    pub city: String,
    pub country: String,
    pub phone: String,
}

impl Person {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A fake person; `n` makes the email unique among persons generated with distinct `n`.
pub fn fake_person(rng: &mut impl Rng, n: usize) -> Person {
    let first = *pick(rng, FIRST_NAMES);
    let last = *pick(rng, LAST_NAMES);
    let company = fake_company(rng);
    let (city, country) = *pick(rng, CITIES);
    let domain = company
        .split(' ')
        .next()
        .unwrap_or("example")
        .to_lowercase();
    Person {
        email: format!(
            "{}.{}{}@{}.example.com",
            first.to_lowercase(),
            last.to_lowercase().replace('-', ""),
            n,
            domain
        ),
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        company,
        city: city.to_owned(),
        country: country.to_owned(),
        phone: format!("+1555{:07}", rng.random_range(0..10_000_000u32)),
    }
}

/// A fake company name such as "Globex Labs".
pub fn fake_company(rng: &mut impl Rng) -> String {
    format!(
        "{} {}",
        pick(rng, COMPANY_WORDS),
        pick(rng, COMPANY_SUFFIXES)
    )
}

/// A fake short sentence of `words` words (titles, descriptions).
pub fn fake_sentence(rng: &mut impl Rng, words: usize) -> String {
    const WORDS: &[&str] = &[
        "sync", "invoice", "crash", "timeout", "retry", "cursor", "page", "webhook", "schema",
        "token", "limit", "update", "delete", "customer", "report", "export", "import", "field",
        "error", "proxy",
    ];
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        let word: &&str = pick(rng, WORDS);
        s.push_str(word);
    }
    if let Some(first) = s.get(..1) {
        let upper = first.to_uppercase();
        s.replace_range(..1, &upper);
    }
    s
}
