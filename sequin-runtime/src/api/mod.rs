//! The API client layer: one [`Client`] per connection, driven entirely by
//! the connector spec (no per-API code).
//!
//! - [`template`]: `{placeholders}` in paths, queries and bodies ([`Vars`]).
//! - [`auth`]: API keys, bearer, basic, OAuth2 refresh with rotation and a
//!   [`TokenStore`]; [`Secret`] keeps credentials out of logs and errors.
//! - [`limit`]: the account's request [`Budget`], shared by every client of
//!   the account, with a share kept for writes ([`Priority`]).
//! - [`quota`]: the account's allowance over a long period (the spec's
//!   `quota:`), read from the API and counted between reads; reads pause
//!   near the connection's floors, writes never ([`QuotaGate`]).
//! - [`retry`]: backoff with full jitter, `Retry-After` and reset headers.
//! - [`page`]: every pagination kind, checkpointable [`PageCursor`]s.
//! - [`error`]: [`ApiError`] decoded with the spec's `errors` section.
//!
//! Reads ([`Client::fetch_page`]) are retried through 429s, 5xx, timeouts,
//! connection failures and truncated or undecodable bodies, and never turn a
//! failed page into an empty one. Writes ([`Client::send`]) are retried
//! after they reached the API only when that is safe (an idempotency key the
//! API honours, or the caller says so); a failure before sending, a 401
//! answered by a token refresh, and a rate-limit refusal are always retried.
//!
//! Every attempt runs in a `tracing` span `api_request` with the connector,
//! connection, method, the path *template* (never the URL, whose query may
//! hold a key), attempt number, status and elapsed milliseconds, and is
//! counted in the process's [`Metrics`] by [`Purpose`] and status class, as
//! are waits for the rate limit.

// An ApiError carries everything a Postgres ErrorResponse needs (about 160
// bytes); errors are rare next to successful calls, so returning it by value
// costs nothing that matters, and boxing would only make matching clumsier.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

pub mod auth;
pub mod error;
pub mod ledger;
pub mod limit;
pub mod page;
pub mod quota;
pub mod retry;
pub mod template;

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use sequin_spec::Connector;
use sequin_spec::model::{Endpoint, EndpointLimit, Method, Pagination};
use sequin_spec::record::{Body, encode_body, get_path};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::Instrument;

pub use auth::{MemoryTokenStore, Secret, StoredToken, TokenStore, TokenStoreError};
pub use error::{ApiError, ErrorKind};
pub use ledger::{AccountAnswer, AccountAsk, RateStore};
pub use limit::{Budget, Budgets, Lane, Permit, Priority};
pub use page::{Page, PageCursor};
pub use quota::{Floor, QuotaGate, QuotaSettings};
pub use retry::RetryPolicy;
pub use template::Vars;

use auth::Applied;

use crate::metrics::{BudgetLevel, Metrics, Purpose, WaitReason};

/// How to build a [`Client`] for one connection.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// The connection's name (its Postgres schema): the key of its OAuth
    /// tokens and, unless `rate_limit.per_param` says otherwise, of its
    /// request budget.
    pub connection: String,
    /// Replaces the spec's `base_url` (a sandbox, a simulator). An OAuth2
    /// instance URL still wins.
    pub base_url: Option<String>,
    /// Replaces the spec's OAuth2 `token_url`.
    pub token_url: Option<String>,
    /// Credentials by the names the spec's `auth` uses.
    pub credentials: BTreeMap<String, Secret>,
    /// Connection parameters (`{base_id}`); spec defaults fill the gaps.
    pub params: BTreeMap<String, String>,
    /// Retries and timeouts of every request.
    pub retry: RetryPolicy,
    /// Where OAuth2 tokens persist (rotated refresh tokens!).
    pub token_store: Option<Arc<dyn TokenStore>>,
    /// Shared budgets; clients of one account must get the same registry.
    /// `None`: a budget of this client (and its clones) alone.
    pub budgets: Option<Budgets>,
    /// Where requests and rate-limit waits are counted, and the budget's
    /// level is read from.
    pub metrics: Metrics,
    /// The floors kept of the spec's quota, if it has one.
    pub quota: QuotaSettings,
}

impl ClientConfig {
    /// A config for `connection` with no credentials or params yet.
    pub fn new(connection: impl Into<String>) -> ClientConfig {
        ClientConfig {
            connection: connection.into(),
            ..ClientConfig::default()
        }
    }

    /// Adds a credential.
    pub fn credential(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.credentials.insert(name.into(), value.into());
        self
    }

    /// Adds a connection parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Sets the base URL override.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
}

/// A successful response to a write (or any single request).
#[derive(Clone, Debug)]
pub struct ApiResponse {
    /// HTTP status (2xx, or 304 for a conditional request).
    pub status: u16,
    /// Response headers (ETag, Location...).
    pub headers: HeaderMap,
    /// The parsed body; `None` when empty (204).
    pub json: Option<Value>,
}

/// A successful response whose body was kept as received (not JSON).
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

/// A write (or any single request) to send.
#[derive(Clone, Debug)]
pub struct SendRequest<'a> {
    /// Whose share of the budget the request draws from.
    pub priority: Priority,
    /// The endpoint (method, path and query templates).
    pub endpoint: &'a Endpoint,
    /// Values of the templates' placeholders.
    pub vars: &'a Vars,
    /// The encoded body (see [`write_body`]).
    pub body: Option<Body>,
    /// Sent in the spec's `idempotency.header`; makes retries after sending
    /// safe when the connector declares idempotency support.
    pub idempotency_key: Option<&'a str>,
    /// The caller vouches that repeating this request is harmless (a PUT of
    /// a whole record, a delete whose 404 the caller accepts).
    pub retry_safe: bool,
    /// Query pairs added after the endpoint's own, repeats allowed (batch
    /// deletes' `records[]=a&records[]=b`).
    pub extra_query: Vec<(String, String)>,
    /// Extra request headers (`If-None-Match` for conditional reads; a 304
    /// answer is then a success without a body).
    pub headers: Vec<(String, String)>,
}

impl<'a> SendRequest<'a> {
    /// A request with no body, key or extra query.
    pub fn new(priority: Priority, endpoint: &'a Endpoint, vars: &'a Vars) -> SendRequest<'a> {
        SendRequest {
            priority,
            endpoint,
            vars,
            body: None,
            idempotency_key: None,
            retry_safe: false,
            extra_query: Vec::new(),
            headers: Vec::new(),
        }
    }
}

/// Builds the body of a write: `object` wrapped in the endpoint's `wrap`,
/// plus its constant `body` members, in the connector's encoding.
pub fn write_body(connector: &Connector, endpoint: &Endpoint, object: Map<String, Value>) -> Body {
    let mut out = match &endpoint.wrap {
        Some(key) => {
            let mut m = Map::new();
            m.insert(key.clone(), Value::Object(object));
            m
        }
        None => object,
    };
    for (k, v) in &endpoint.body {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    encode_body(out, connector.body)
}

/// A client of one connection. Cheap to clone; clones share the HTTP pool,
/// the token cache and the budget.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// What this clone's reads are for (writes count as [`Purpose::Write`]).
    purpose: Purpose,
}

struct Inner {
    connector: Arc<Connector>,
    connection: String,
    base_url: String,
    params: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    auth: auth::Method,
    http: Arc<Http>,
    budget: Arc<Budget>,
    /// The budgets of the spec's endpoint limits, each beside its limit.
    endpoint_budgets: Vec<(EndpointLimit, Arc<Budget>)>,
    /// The gate of the spec's quota, shared like the budget.
    quota: Option<Arc<QuotaGate>>,
    retry: RetryPolicy,
    /// Configured credentials, scrubbed from every error.
    secrets: Vec<String>,
    metrics: Metrics,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connector", &self.inner.connector.name)
            .field("connection", &self.inner.connection)
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

/// A transport failure in words, without the URL (whose query may carry a
/// key): the innermost cause.
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response body was cut short or unreadable"
    } else {
        "the request failed"
    };
    let mut inner: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = inner {
        last = Some(s.to_string());
        inner = s.source();
    }
    match last {
        Some(cause) if !cause.contains("://") => format!("{what}: {cause}"),
        _ => what.to_string(),
    }
}

/// HTTP connection pools, one per thread that sends requests.
///
/// A pooled connection's I/O task runs on the runtime that opened it. The
/// proxy runs sessions on dedicated single-threaded runtimes, so with one
/// shared pool a write-through call would hand its request to a connection
/// owned by another thread and wait for that thread to wake up, twice per
/// call. A pool per thread keeps the call, its connection and the session
/// on one thread.
struct Http {
    timeout: Duration,
    per_thread: thread_local::ThreadLocal<reqwest::Client>,
}

impl Http {
    /// The process's pools of clients with this timeout, shared by every
    /// connection: a client holds its TLS roots and connections, so one set
    /// per connection would cost a thousand accounts hundreds of MB.
    fn shared(timeout: Duration) -> Arc<Http> {
        static SHARED: std::sync::Mutex<Vec<Arc<Http>>> = std::sync::Mutex::new(Vec::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = shared.iter().find(|h| h.timeout == timeout) {
            return h.clone();
        }
        let h = Arc::new(Http {
            timeout,
            per_thread: thread_local::ThreadLocal::new(),
        });
        shared.push(h.clone());
        h
    }

    fn get(&self) -> Result<&reqwest::Client, reqwest::Error> {
        self.per_thread.get_or_try(|| {
            reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout.min(Duration::from_secs(10)))
                // Redirects could carry credentials to another host.
                .redirect(reqwest::redirect::Policy::none())
                .build()
        })
    }
}

/// A response that arrived whole.
struct Raw {
    status: u16,
    headers: HeaderMap,
    /// The parsed body; `None` when empty.
    json: Option<Value>,
    /// The body as received, for a call with `raw_body`.
    body: bytes::Bytes,
}

/// One logical request (its attempts share all of this).
struct Call<'a> {
    priority: Priority,
    method: Method,
    url: Url,
    /// For spans: the path template, never the URL.
    template: &'a str,
    body: Option<(&'static str, Vec<u8>)>,
    idempotency_key: Option<&'a str>,
    retry_after_send: bool,
    /// A 2xx answer must carry a JSON body (pages).
    body_required: bool,
    /// A 2xx answer's body is kept as bytes, not parsed (CSV results).
    raw_body: bool,
    /// Extra headers of this request.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The quota's own read: not held at the quota gate (it is what opens
    /// it), and tried once (the gate reads again later).
    quota_read: bool,
}

/// How building or sending an attempt failed.
enum ReqFailure {
    Config(ApiError),
    /// The error, and whether a status line had arrived.
    Transport(reqwest::Error, bool),
}

/// How one attempt failed.
enum Failure {
    /// Worth another attempt. `sent`: the API may have processed it.
    Retry {
        error: ApiError,
        wait: Option<Duration>,
        sent: bool,
    },
    /// The token was refused: refresh it (once) and try again.
    Unauthorized {
        error: ApiError,
        generation: u64,
    },
    Fatal(ApiError),
}

/// Whether obtaining a token failed for a reason worth retrying.
fn transient_token_failure(e: &ApiError) -> bool {
    matches!(
        e.kind,
        ErrorKind::Network | ErrorKind::Timeout | ErrorKind::RateLimited
    ) || (e.kind == ErrorKind::Http && e.status.is_some_and(|s| s >= 500))
}

fn reqwest_method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Client {
    /// Builds a client for `connector` with a connection's config. Checks
    /// that every required parameter and every credential the auth needs are
    /// present (naming them, never showing values).
    pub fn new(connector: Arc<Connector>, config: ClientConfig) -> Result<Client, ApiError> {
        let api = connector.display_name.clone();
        let config_error = |m: String| ApiError::new(&api, ErrorKind::Config, m);
        let mut params = config.params.clone();
        for p in &connector.params {
            if !params.contains_key(&p.name) {
                match &p.default {
                    Some(d) => {
                        params.insert(p.name.clone(), d.clone());
                    }
                    None if p.required => {
                        return Err(config_error(format!(
                            "connection parameter `{}` is required ({})",
                            p.name, p.description
                        )));
                    }
                    None => {}
                }
            }
        }
        let vars = Vars::new().with_params(&params);
        let base_url = match &config.base_url {
            Some(b) => b.clone(),
            None => template::render(&connector.base_url, &vars)
                .map_err(|e| config_error(e.to_string()))?,
        };
        Url::parse(&base_url).map_err(|_| config_error(format!("`{base_url}` is not a URL")))?;
        let mut headers = Vec::new();
        for (k, v) in &connector.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| config_error(format!("`{k}` is not a header name")))?;
            let value = template::render(v, &vars).map_err(|e| config_error(e.to_string()))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| config_error(format!("header `{k}` has an invalid value")))?;
            headers.push((name, value));
        }
        if !headers.iter().any(|(n, _)| n == ACCEPT) {
            headers.push((ACCEPT, HeaderValue::from_static("application/json")));
        }
        let token_url = auth::token_url(&connector.auth, &vars, config.token_url.as_deref())
            .map_err(|e| config_error(e.to_string()))?;
        let auth = auth::Method::new(
            &api,
            &connector.auth,
            &config.credentials,
            token_url,
            &config.connection,
            config.token_store.clone(),
        )?;
        let limit = &connector.rate_limit;
        let budget_key = match &limit.per_param {
            Some(p) => format!(
                "{}:{p}={}",
                connector.name,
                params.get(p).cloned().unwrap_or_default()
            ),
            None => format!(
                "{}:account={}",
                connector.name,
                account_digest(&base_url, &config.credentials)
            ),
        };
        let budget = match &config.budgets {
            Some(b) => b.get(&budget_key, limit),
            None => Budget::new(limit),
        };
        let endpoint_budgets = limit
            .endpoints
            .iter()
            .map(|e| {
                let own = limit::endpoint_limit(limit, e);
                let key = format!("{budget_key}:{:?} {}", e.method, e.path);
                let b = match &config.budgets {
                    Some(b) => b.get(&key, &own),
                    None => Budget::new(&own),
                };
                (e.clone(), b)
            })
            .collect();
        let watched = budget.clone();
        config
            .metrics
            .watch_budget(&config.connection, move || BudgetLevel {
                capacity: watched.capacity(),
                available: match watched.paused_for() {
                    Some(_) => 0,
                    None => watched.capacity().saturating_sub(watched.in_use()),
                },
            });
        let quota = connector.quota.as_ref().map(|q| {
            let make = || QuotaGate::new(&config.connection, q, &config.quota);
            match &config.budgets {
                Some(b) => b.quota(&budget_key, make),
                None => Arc::new(make()),
            }
        });
        if let Some(gate) = &quota {
            budget.count_quota(gate);
            let watched = gate.clone();
            config
                .metrics
                .watch_quota(&config.connection, move || watched.state());
        }
        let http = Http::shared(config.retry.timeout);
        // Built once here so a client that cannot be built is a config error
        // now, not a failed request later.
        http.get().map_err(|e| {
            config_error(format!(
                "cannot build the HTTP client: {}",
                transport_reason(&e)
            ))
        })?;
        Ok(Client {
            inner: Arc::new(Inner {
                secrets: config
                    .credentials
                    .values()
                    .map(|s| s.expose().to_string())
                    .collect(),
                connector,
                connection: config.connection,
                base_url,
                params,
                headers,
                auth,
                http,
                budget,
                endpoint_budgets,
                quota,
                retry: config.retry,
                metrics: config.metrics,
            }),
            purpose: Purpose::default(),
        })
    }

    /// This client, counting its reads as made for `purpose`.
    pub fn with_purpose(&self, purpose: Purpose) -> Client {
        Client {
            inner: self.inner.clone(),
            purpose,
        }
    }

    /// The metrics this client counts in (write-through counts its
    /// statements in them too).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// What a request of `priority` is for.
    fn purpose(&self, priority: Priority) -> Purpose {
        match priority {
            Priority::Write => Purpose::Write,
            Priority::Read => self.purpose,
        }
    }

    /// Which share of the budget a request of `priority` draws from.
    fn lane(&self, priority: Priority) -> Lane {
        match self.purpose(priority) {
            Purpose::Write => Lane::Write,
            Purpose::Backfill => Lane::Backfill,
            Purpose::Poll | Purpose::Discover => Lane::Poll,
        }
    }

    /// The connector this client speaks for.
    pub fn connector(&self) -> &Connector {
        &self.inner.connector
    }

    /// The connection parameters, spec defaults included.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.inner.params
    }

    /// The budget this client draws from.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.inner.budget
    }

    /// The gate of the spec's quota, if it has one.
    pub fn quota(&self) -> Option<&Arc<QuotaGate>> {
        self.inner.quota.as_ref()
    }

    /// This thread's HTTP pool.
    fn http(&self) -> Result<&reqwest::Client, ApiError> {
        self.inner.http.get().map_err(|e| {
            self.err(
                ErrorKind::Config,
                format!("cannot build the HTTP client: {}", transport_reason(&e)),
            )
        })
    }

    /// The base URL requests go to now: the OAuth2 instance URL once known
    /// (obtaining a token if needed), else the configured or spec base URL.
    pub async fn base_url(&self) -> Result<String, ApiError> {
        if let auth::Method::OAuth(o) = &self.inner.auth
            && let Some(u) = o
                .instance_url(self.api(), self.http()?)
                .await
                .map_err(|e| self.scrub(e))?
        {
            return Ok(u);
        }
        Ok(self.inner.base_url.clone())
    }

    /// [`Client::base_url`] for a request: obtaining the first token (which
    /// may bring the instance URL) is retried like the request itself.
    async fn request_base(&self) -> Result<String, ApiError> {
        let policy = &self.inner.retry;
        let started = Instant::now();
        // Jitter only: seeded from the thread's generator (no system call).
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.base_url().await {
                Ok(b) => return Ok(b),
                Err(mut e) => {
                    e.attempts = attempt;
                    let wait = policy.backoff(attempt, &mut rng);
                    if !transient_token_failure(&e)
                        || attempt >= policy.max_attempts
                        || started.elapsed() + wait > policy.max_elapsed
                    {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn api(&self) -> &str {
        &self.inner.connector.display_name
    }

    fn scrub(&self, e: ApiError) -> ApiError {
        let mut secrets = self.inner.secrets.clone();
        if let auth::Method::OAuth(o) = &self.inner.auth {
            secrets.extend(o.secrets());
        }
        e.scrub(&secrets)
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError::new(self.api(), kind, message)
    }

    /// Fetches one page of a list endpoint: the first page without a cursor,
    /// the next ones with the cursor of the previous [`Page`]. Records are
    /// read from the endpoint's `records` path (empty or absent: the body
    /// is the array). A JSON `body` (search POSTs) is a template: its
    /// placeholders are filled from `vars`.
    pub async fn fetch_page(
        &self,
        endpoint: &Endpoint,
        pagination: Option<&Pagination>,
        vars: &Vars,
        cursor: Option<&PageCursor>,
        body: Option<Value>,
    ) -> Result<Page, ApiError> {
        let records = endpoint.records.clone().unwrap_or_default();
        self.fetch_records_page(endpoint, &records, pagination, vars, cursor, body)
            .await
    }

    /// [`Client::fetch_page`] with the records path given apart from the
    /// endpoint (events feeds, searches and deleted lists name it beside
    /// their endpoint).
    pub async fn fetch_records_page(
        &self,
        endpoint: &Endpoint,
        records_path: &str,
        pagination: Option<&Pagination>,
        vars: &Vars,
        cursor: Option<&PageCursor>,
        body: Option<Value>,
    ) -> Result<Page, ApiError> {
        self.fetch_page_inner(endpoint, records_path, pagination, vars, cursor, body)
            .await
            .map_err(|e| self.scrub(e))
    }

    async fn fetch_page_inner(
        &self,
        endpoint: &Endpoint,
        records_path: &str,
        pagination: Option<&Pagination>,
        vars: &Vars,
        cursor: Option<&PageCursor>,
        body: Option<Value>,
    ) -> Result<Page, ApiError> {
        let vars = vars.clone().with_params(&self.inner.params);
        let base = self.request_base().await?;
        let mut body = match body {
            Some(t) => Some(
                template::render_json(&t, &vars)
                    .map_err(|e| self.err(ErrorKind::Config, e.to_string()))?,
            ),
            None => None,
        };
        let url = match cursor {
            Some(PageCursor::Url { url }) => self.resolve_next(&base, url)?,
            _ => {
                let mut url = template::build_url(&base, &endpoint.path, &endpoint.query, &vars)
                    .map_err(|e| self.err(ErrorKind::Config, e.to_string()))?;
                page::apply_cursor(pagination, cursor, &mut url, body.as_mut())
                    .map_err(|m| self.err(ErrorKind::Config, m))?;
                url
            }
        };
        let body_bytes = body.as_ref().map(|b| {
            (
                "application/json",
                serde_json::to_vec(b).unwrap_or_default(),
            )
        });
        let raw = self
            .execute(Call {
                priority: Priority::Read,
                method: endpoint.method,
                url,
                template: &endpoint.path,
                body: body_bytes,
                idempotency_key: None,
                // Reads, including search POSTs, are safe to repeat.
                retry_after_send: true,
                body_required: true,
                raw_body: false,
                headers: Vec::new(),
                quota_read: false,
            })
            .await?;
        let mut json = raw.json.unwrap_or(Value::Null);
        let records = match get_path(&json, records_path) {
            Some(Value::Array(items)) => items,
            _ => {
                let mut e = self.err(
                    ErrorKind::Decode,
                    format!(
                        "the response has no record array at `{}`",
                        if records_path.is_empty() {
                            "(the body)"
                        } else {
                            records_path
                        }
                    ),
                );
                e.status = Some(raw.status);
                return Err(e);
            }
        };
        let link = header_str(&raw.headers, "link");
        let next = page::next_cursor(
            pagination,
            cursor,
            &page::PageResponse {
                body: &json,
                records,
                link,
            },
        )
        .map_err(|m| {
            let mut e = self.err(ErrorKind::Decode, m);
            e.status = Some(raw.status);
            e
        })?;
        let next = match next {
            Some(PageCursor::Url { url }) => Some(PageCursor::Url {
                url: self.checkpointable_url(&base, &url)?,
            }),
            other => other,
        };
        let total = pagination
            .and_then(|p| p.common().total.as_deref())
            .and_then(|path| get_path(&json, path))
            .and_then(Value::as_u64);
        // Moved out of the response rather than cloned: a page's records
        // are most of its memory.
        let records = match page::take_path(&mut json, records_path) {
            Value::Array(items) => items,
            _ => unreachable!("checked above: an array is at the records path"),
        };
        Ok(Page {
            records,
            next,
            total,
            raw_status: raw.status,
        })
    }

    /// Resolves a next-page URL or path against the base URL; it must stay
    /// on the base URL's host (credentials go with it).
    fn resolve_next(&self, base: &str, next: &str) -> Result<Url, ApiError> {
        let base_url = Url::parse(base)
            .map_err(|_| self.err(ErrorKind::Config, format!("`{base}` is not a URL")))?;
        let url = base_url
            .join(next)
            .map_err(|_| self.err(ErrorKind::Decode, "the next-page URL is not a URL"))?;
        if url.scheme() != base_url.scheme()
            || url.host_str() != base_url.host_str()
            || url.port_or_known_default() != base_url.port_or_known_default()
        {
            return Err(self.err(
                ErrorKind::Decode,
                format!(
                    "the next-page URL points to {}, not to the API's host {}",
                    url.host_str().unwrap_or("?"),
                    base_url.host_str().unwrap_or("?")
                ),
            ));
        }
        Ok(url)
    }

    /// A next-page URL as checkpointed: checked, and without a query-string
    /// API key the server may have echoed.
    fn checkpointable_url(&self, base: &str, next: &str) -> Result<String, ApiError> {
        let mut url = self.resolve_next(base, next)?;
        if let auth::Method::Static(Applied::Query(name, _)) = &self.inner.auth {
            template::remove_query_param(&mut url, name);
            return Ok(url.to_string());
        }
        // Keep what the API gave (a relative path survives an instance move).
        Ok(next.to_string())
    }

    /// Sends one request (a write, or a single-record read) as
    /// [`Client::send_request`] does, with the defaults: retried after
    /// sending only for GETs and when an idempotency key the API honours is
    /// given.
    pub async fn send(
        &self,
        priority: Priority,
        endpoint: &Endpoint,
        vars: &Vars,
        body: Option<Body>,
        idempotency_key: Option<&str>,
    ) -> Result<ApiResponse, ApiError> {
        let mut req = SendRequest::new(priority, endpoint, vars);
        req.body = body;
        req.idempotency_key = idempotency_key;
        self.send_request(req).await
    }

    /// Sends one request. A 2xx answer is returned with its headers and
    /// parsed body; anything else is an [`ApiError`].
    pub async fn send_request(&self, req: SendRequest<'_>) -> Result<ApiResponse, ApiError> {
        self.send_inner(req).await.map_err(|e| self.scrub(e))
    }

    async fn send_inner(&self, req: SendRequest<'_>) -> Result<ApiResponse, ApiError> {
        let vars = req.vars.clone().with_params(&self.inner.params);
        let base = self.request_base().await?;
        let mut url = template::build_url(&base, &req.endpoint.path, &req.endpoint.query, &vars)
            .map_err(|e| self.err(ErrorKind::Config, e.to_string()))?;
        if !req.extra_query.is_empty() {
            let mut qp = url.query_pairs_mut();
            for (k, v) in &req.extra_query {
                qp.append_pair(k, v);
            }
        }
        let mut headers = Vec::new();
        for (k, v) in &req.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| self.err(ErrorKind::Config, format!("`{k}` is not a header name")))?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                self.err(
                    ErrorKind::Config,
                    format!("header `{k}` has an invalid value"),
                )
            })?;
            headers.push((name, value));
        }
        let honoured_key =
            req.idempotency_key.is_some() && self.inner.connector.idempotency.is_some();
        let method = req.endpoint.method;
        let raw = self
            .execute(Call {
                priority: req.priority,
                method,
                url,
                template: &req.endpoint.path,
                body: req.body.map(|b| (b.content_type(), b.into_bytes())),
                idempotency_key: req.idempotency_key,
                retry_after_send: req.retry_safe || honoured_key || method == Method::Get,
                body_required: false,
                raw_body: false,
                headers,
                quota_read: false,
            })
            .await?;
        Ok(ApiResponse {
            status: raw.status,
            headers: raw.headers,
            json: raw.json,
        })
    }

    /// Sends a GET of `endpoint` and returns the body as received, not
    /// parsed (an asynchronous query job's CSV results), with the headers
    /// (the next page's locator). Retried like any read.
    pub async fn fetch_raw(
        &self,
        endpoint: &Endpoint,
        vars: &Vars,
        extra_query: &[(String, String)],
    ) -> Result<RawResponse, ApiError> {
        let fetched = async {
            let vars = vars.clone().with_params(&self.inner.params);
            let base = self.request_base().await?;
            let mut url = template::build_url(&base, &endpoint.path, &endpoint.query, &vars)
                .map_err(|e| self.err(ErrorKind::Config, e.to_string()))?;
            if !extra_query.is_empty() {
                let mut qp = url.query_pairs_mut();
                for (k, v) in extra_query {
                    qp.append_pair(k, v);
                }
            }
            self.execute(Call {
                priority: Priority::Read,
                method: endpoint.method,
                url,
                template: &endpoint.path,
                body: None,
                idempotency_key: None,
                retry_after_send: true,
                body_required: false,
                raw_body: true,
                headers: Vec::new(),
                quota_read: false,
            })
            .await
        };
        let raw = fetched.await.map_err(|e| self.scrub(e))?;
        Ok(RawResponse {
            status: raw.status,
            headers: raw.headers,
            body: raw.body,
        })
    }

    /// The credential for one attempt.
    async fn credential(&self, stale: Option<u64>) -> Result<(Option<Applied>, u64), ApiError> {
        match &self.inner.auth {
            auth::Method::Static(a) => Ok((Some(a.clone()), 0)),
            auth::Method::OAuth(o) => {
                let t = o.token(self.api(), self.http()?, stale).await?;
                Ok((Some(t.applied), t.generation))
            }
        }
    }

    /// Runs a request's attempts: budget, auth, send, classify, wait.
    async fn execute(&self, call: Call<'_>) -> Result<Raw, ApiError> {
        let started = Instant::now();
        let policy = &self.inner.retry;
        // Jitter only: seeded from the thread's generator (no system call).
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let mut attempt: u32 = 0;
        let mut stale: Option<u64> = None;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let failure = match self.credential(stale.take()).await {
                Ok((applied, generation)) => {
                    match self
                        .attempt(&call, applied.as_ref(), generation, attempt)
                        .await
                    {
                        Ok(raw) => return Ok(raw),
                        Err(f) => f,
                    }
                }
                // The token endpoint is down or busy: the request was not sent.
                Err(e) if transient_token_failure(&e) => Failure::Retry {
                    error: e,
                    wait: None,
                    sent: false,
                },
                Err(mut e) => {
                    e.attempts = attempt;
                    return Err(e);
                }
            };
            let (mut error, wait, sent) = match failure {
                Failure::Fatal(mut e) => {
                    e.attempts = attempt;
                    return Err(e);
                }
                Failure::Unauthorized { error, generation } => {
                    if refreshed || !matches!(self.inner.auth, auth::Method::OAuth(_)) {
                        let mut e = error;
                        e.attempts = attempt;
                        return Err(e);
                    }
                    // Refresh once and retry at once: a refused token was not processed.
                    refreshed = true;
                    stale = Some(generation);
                    continue;
                }
                Failure::Retry { error, wait, sent } => (error, wait, sent),
            };
            error.attempts = attempt;
            if call.quota_read {
                return Err(error);
            }
            if sent && !call.retry_after_send {
                error.maybe_applied = true;
                return Err(error);
            }
            if attempt >= policy.max_attempts {
                return Err(error);
            }
            let wait = wait.unwrap_or_else(|| policy.backoff(attempt, &mut rng));
            if started.elapsed() + wait > policy.max_elapsed {
                return Err(error);
            }
            tracing::debug!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                reason = %error.message,
                "retrying API request"
            );
            if error.kind == ErrorKind::RateLimited {
                self.inner.metrics.rate_limit_wait(
                    &self.inner.connection,
                    call.priority == Priority::Write,
                    WaitReason::Api,
                    wait,
                );
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: take a budget slot, send, read the whole body, classify.
    async fn attempt(
        &self,
        call: &Call<'_>,
        applied: Option<&Applied>,
        generation: u64,
        attempt: u32,
    ) -> Result<Raw, Failure> {
        let connector = &self.inner.connector;
        let span = tracing::info_span!(
            "api_request",
            api = %connector.name,
            connection = %self.inner.connection,
            method = ?call.method,
            path = %call.template,
            attempt,
            status = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        if !call.quota_read {
            self.pass_quota(self.lane(call.priority)).await;
        }
        // The endpoint's own limits first, so that waiting for one of them
        // holds no slot of the account's.
        let mut permits = Vec::new();
        for (_, budget) in self
            .inner
            .endpoint_budgets
            .iter()
            .filter(|(e, _)| e.covers(call.method, call.template))
        {
            permits.push(budget.acquire_in(self.lane(call.priority)).await);
        }
        permits.push(self.inner.budget.acquire_in(self.lane(call.priority)).await);
        for waited in permits.iter().filter_map(Permit::waited) {
            self.inner.metrics.rate_limit_wait(
                &self.inner.connection,
                call.priority == Priority::Write,
                WaitReason::Budget,
                waited,
            );
        }
        let t0 = Instant::now();
        let outcome = async {
            let mut url = call.url.clone();
            if let Some(Applied::Query(name, value)) = applied {
                template::set_query_param(&mut url, name, value.expose());
            }
            let http = self.http().map_err(ReqFailure::Config)?;
            let mut rb = http.request(reqwest_method(call.method), url);
            for (k, v) in &self.inner.headers {
                rb = rb.header(k, v);
            }
            rb = rb.header(USER_AGENT, concat!("sequin/", env!("CARGO_PKG_VERSION")));
            if let Some(Applied::Header(name, value)) = applied {
                let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                    ReqFailure::Config(self.err(
                        ErrorKind::Config,
                        "a credential is not a valid header value",
                    ))
                })?;
                v.set_sensitive(true);
                rb = rb.header(name.as_str(), v);
            }
            for (k, v) in &call.headers {
                rb = rb.header(k, v);
            }
            if let (Some(key), Some(idem)) = (call.idempotency_key, &connector.idempotency) {
                rb = rb.header(idem.header.as_str(), key);
            }
            if let Some((ct, bytes)) = &call.body {
                rb = rb.header(CONTENT_TYPE, *ct).body(bytes.clone());
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| ReqFailure::Transport(e, false))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| ReqFailure::Transport(e, true))?;
            Ok::<_, ReqFailure>((status, headers, bytes))
        }
        .instrument(span.clone())
        .await;
        drop(permits);
        let elapsed_ms = t0.elapsed().as_millis() as u64;
        span.record("elapsed_ms", elapsed_ms);
        if let Some(status) = match &outcome {
            Ok((status, _, _)) => Some(Some(*status)),
            Err(ReqFailure::Transport(..)) => Some(None),
            // Never sent.
            Err(ReqFailure::Config(_)) => None,
        } {
            self.inner.metrics.api_request(
                &self.inner.connection,
                &connector.name,
                self.purpose(call.priority),
                status,
            );
            if let Some(gate) = &self.inner.quota {
                gate.sent();
            }
        }
        let (status, headers, bytes) = match outcome {
            Ok(parts) => parts,
            Err(ReqFailure::Config(e)) => return Err(Failure::Fatal(e)),
            Err(ReqFailure::Transport(e, got_status)) => {
                let _e = span.enter();
                let reason = transport_reason(&e);
                tracing::warn!(%reason, "API request failed in transport");
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else if got_status {
                    ErrorKind::Decode
                } else {
                    ErrorKind::Network
                };
                // Only a failed connect proves the API never saw the request.
                let sent = !e.is_connect();
                return Err(Failure::Retry {
                    error: self.err(kind, reason),
                    wait: None,
                    sent,
                });
            }
        };
        span.record("status", status);
        let _e = span.enter();
        tracing::debug!(status, elapsed_ms, "API response");
        self.note_quota(&headers);
        let mut raw = self.classify(call, status, headers, &bytes, generation)?;
        if call.raw_body {
            raw.body = bytes;
        }
        Ok(raw)
    }

    /// Waits until the quota lets a request of `lane` go, reading the
    /// quota's level when it is due (one request reads; the others go on
    /// with the estimate, or wait for the answer when their lane is
    /// closed). Writes never wait.
    async fn pass_quota(&self, lane: Lane) {
        let Some(gate) = &self.inner.quota else {
            return;
        };
        if lane == Lane::Write {
            return;
        }
        loop {
            // Registered before looking, so a read's answer is not missed.
            let mut answered = pin!(gate.notify.notified());
            answered.as_mut().enable();
            if gate.read_due() {
                match gate.reading.try_lock() {
                    Ok(_reading) => {
                        self.read_quota(gate).await;
                        continue;
                    }
                    Err(_) if !gate.is_open(lane) => {
                        answered.await;
                        continue;
                    }
                    Err(_) => {}
                }
            }
            if gate.is_open(lane) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(gate.next_read()) => {}
                _ = answered => {}
            }
        }
    }

    /// Reads the quota's level once and hands the answer to the gate.
    fn read_quota<'a>(
        &'a self,
        gate: &'a QuotaGate,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        // Boxed: a read runs through `attempt`, which called this.
        Box::pin(async move {
            let endpoint = &gate.spec.endpoint;
            let read = async {
                let vars = Vars::new().with_params(&self.inner.params);
                let base = self.request_base().await?;
                let url = template::build_url(&base, &endpoint.path, &endpoint.query, &vars)
                    .map_err(|e| self.err(ErrorKind::Config, e.to_string()))?;
                self.execute(Call {
                    priority: Priority::Read,
                    method: Method::Get,
                    url,
                    template: &endpoint.path,
                    body: None,
                    idempotency_key: None,
                    retry_after_send: true,
                    body_required: true,
                    raw_body: false,
                    headers: Vec::new(),
                    quota_read: true,
                })
                .await
            };
            match read.await.map_err(|e| self.scrub(e)) {
                Ok(raw) => gate.read(&raw.json.unwrap_or(Value::Null)),
                Err(e) => gate.read_failed(&e.to_string()),
            }
        })
    }

    /// Pauses the budget when the API says the window's quota is spent.
    fn note_quota(&self, headers: &HeaderMap) {
        let limit = &self.inner.connector.rate_limit;
        let (Some(rem), Some(reset)) = (&limit.remaining_header, &limit.reset_header) else {
            return;
        };
        if header_str(headers, rem).and_then(|v| v.trim().parse::<u64>().ok()) == Some(0)
            && let Some(wait) =
                header_str(headers, reset).and_then(|v| retry::parse_reset(v, SystemTime::now()))
        {
            self.inner.budget.pause_for(wait);
        }
    }

    /// Sorts a whole response into success or a kind of failure.
    fn classify(
        &self,
        call: &Call<'_>,
        status: u16,
        headers: HeaderMap,
        bytes: &[u8],
        generation: u64,
    ) -> Result<Raw, Failure> {
        let connector = &self.inner.connector;
        if status == 304 && !call.headers.is_empty() {
            // Not modified, for a conditional request the caller made.
            return Ok(Raw {
                status,
                headers,
                json: None,
                body: bytes::Bytes::new(),
            });
        }
        if (200..300).contains(&status) {
            let json = if call.raw_body
                || (bytes.iter().all(u8::is_ascii_whitespace) && !call.body_required)
            {
                None
            } else {
                match serde_json::from_slice::<Value>(bytes) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        let mut error =
                            self.err(ErrorKind::Decode, "the response body is not valid JSON");
                        error.status = Some(status);
                        return Err(Failure::Retry {
                            error,
                            wait: None,
                            sent: true,
                        });
                    }
                }
            };
            return Ok(Raw {
                status,
                headers,
                json,
                body: bytes::Bytes::new(),
            });
        }
        let raw_headers = &headers;
        let error = error::decode_error(
            &connector.display_name,
            &connector.errors,
            status,
            Some(raw_headers),
            bytes,
        );
        let limit = &connector.rate_limit;
        let now = SystemTime::now();
        let retry_after = limit
            .retry_after_header
            .as_deref()
            .and_then(|h| header_str(raw_headers, h))
            .and_then(|v| retry::parse_retry_after(v, now));
        let quota_spent = limit
            .remaining_header
            .as_deref()
            .and_then(|h| header_str(raw_headers, h))
            .and_then(|v| v.trim().parse::<u64>().ok())
            == Some(0);
        let reset = limit
            .reset_header
            .as_deref()
            .and_then(|h| header_str(raw_headers, h))
            .and_then(|v| retry::parse_reset(v, now));
        // An extra status (GitHub's 403) means "limited" only with a wait or
        // a spent quota; otherwise it is a real permission error.
        let limited = status == 429
            || (limit.extra_statuses.contains(&status) && (retry_after.is_some() || quota_spent))
            || error.sqlstate == "53400";
        if limited {
            // Not a rate (no 429, no wait given): the quota of the period
            // is spent, and reads wait for it at the gate instead of
            // retrying into the refusal.
            if status != 429
                && retry_after.is_none()
                && let Some(gate) = &self.inner.quota
            {
                gate.spent();
            }
            let wait = retry_after.or(if quota_spent { reset } else { None });
            if let Some(w) = wait {
                self.inner.budget.pause_for(w);
            }
            let mut error = error;
            error.kind = ErrorKind::RateLimited;
            error.sqlstate = "53400".into();
            // A refusal for rate means the API did not process the request.
            return Err(Failure::Retry {
                error,
                wait,
                sent: false,
            });
        }
        if status == 401 {
            return Err(Failure::Unauthorized { error, generation });
        }
        if status >= 500 {
            return Err(Failure::Retry {
                error,
                wait: retry_after,
                sent: true,
            });
        }
        Err(Failure::Fatal(error))
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use sequin_spec::Connector;

    /// Loads a connector spec from `connectors/<name>.yaml`, as written.
    pub(crate) fn connector(name: &str) -> Connector {
        let path = format!("{}/../connectors/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let doc = sequin_spec::yaml::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_value(doc.value).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
}

/// Who the API counts a connection's requests against, as a digest:
/// connections with the same base URL and credentials are one account to
/// the API, so they share one budget (and one quota gate) whatever their
/// names, and the key names no secret.
fn account_digest(base_url: &str, credentials: &BTreeMap<String, Secret>) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(base_url.as_bytes());
    for (name, value) in credentials {
        hash.update([0]);
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value.expose().as_bytes());
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> Client {
        let spec = test_support::connector(name);
        let mut cfg = ClientConfig::new("c").base_url("http://127.0.0.1:9");
        for c in [
            "api_key",
            "token",
            "access_token",
            "client_id",
            "client_secret",
            "refresh_token",
        ] {
            cfg = cfg.credential(c, "secret-value");
        }
        for p in &spec.params {
            cfg = cfg.param(p.name.clone(), "x");
        }
        Client::new(Arc::new(spec), cfg).unwrap()
    }

    fn call(headers: Vec<(HeaderName, HeaderValue)>) -> Call<'static> {
        Call {
            priority: Priority::Read,
            method: Method::Get,
            url: Url::parse("http://127.0.0.1:9/x").unwrap(),
            template: "/x",
            body: None,
            idempotency_key: None,
            retry_after_send: true,
            body_required: true,
            raw_body: false,
            headers,
            quota_read: false,
        }
    }

    fn classify(
        c: &Client,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Raw, Failure> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        c.classify(&call(vec![]), status, h, body.as_bytes(), 7)
    }

    fn retry(f: Result<Raw, Failure>) -> (ApiError, Option<Duration>, bool) {
        match f {
            Err(Failure::Retry { error, wait, sent }) => (error, wait, sent),
            Err(Failure::Fatal(e)) => panic!("fatal: {e:?}"),
            Err(Failure::Unauthorized { error, .. }) => panic!("401: {error:?}"),
            Ok(raw) => panic!("success {}", raw.status),
        }
    }

    #[test]
    fn github_403_is_a_rate_limit_only_with_a_wait_or_a_spent_quota() {
        let gh = client("github");
        let body = r#"{"message":"Resource not accessible by personal access token"}"#;
        match classify(&gh, 403, &[("X-RateLimit-Remaining", "4999")], body) {
            Err(Failure::Fatal(e)) => {
                assert_eq!(e.sqlstate, "42501");
                assert_eq!(e.kind, ErrorKind::Http);
            }
            _ => panic!("a plain 403 is a permission error"),
        }
        let secondary = r#"{"message":"You have exceeded a secondary rate limit."}"#;
        let (e, wait, sent) = retry(classify(&gh, 403, &[("Retry-After", "30")], secondary));
        assert_eq!(
            (e.kind, e.sqlstate.as_str()),
            (ErrorKind::RateLimited, "53400")
        );
        assert_eq!(wait, Some(Duration::from_secs(30)));
        assert!(!sent);
        let reset = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 120;
        let (_, wait, _) = retry(classify(
            &gh,
            403,
            &[
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", &reset.to_string()),
            ],
            r#"{"message":"API rate limit exceeded"}"#,
        ));
        let wait = wait.unwrap();
        assert!(
            wait > Duration::from_secs(115) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        // The whole account waits, not just this request.
        let paused = gh.budget().paused_for().unwrap();
        assert!(paused > Duration::from_secs(115), "{paused:?}");
    }

    #[test]
    fn statuses_are_sorted_into_retries_and_final_errors() {
        let stripe = client("stripe");
        let in_a_minute = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        let (e, wait, sent) = retry(classify(
            &stripe,
            429,
            &[("Retry-After", &in_a_minute)],
            r#"{"error":{"code":"rate_limit","message":"Too many requests"}}"#,
        ));
        assert_eq!(e.sqlstate, "53400");
        let wait = wait.unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(!sent);
        let (e, wait, sent) = retry(classify(
            &stripe,
            503,
            &[],
            r#"{"error":{"message":"down","type":"api_error"}}"#,
        ));
        assert_eq!((e.sqlstate.as_str(), wait, sent), ("58030", None, true));
        assert!(matches!(
            classify(
                &stripe,
                401,
                &[],
                r#"{"error":{"message":"Invalid API Key"}}"#
            ),
            Err(Failure::Unauthorized { generation: 7, .. })
        ));
        assert!(matches!(
            classify(&stripe, 400, &[], r#"{"error":{"code":"parameter_missing","message":"m"}}"#),
            Err(Failure::Fatal(ref e)) if e.sqlstate == "23502"
        ));
        // A truncated success is retried; the API may have processed it.
        let (e, _, sent) = retry(classify(
            &stripe,
            200,
            &[],
            r#"{"object":"list","data":[{"id":"cu"#,
        ));
        assert_eq!(e.kind, ErrorKind::Decode);
        assert!(sent);
        let ok = classify(&stripe, 200, &[], r#"{"data":[]}"#).ok().unwrap();
        assert_eq!(ok.json.unwrap()["data"], serde_json::json!([]));
        // 304 is a success only for a conditional request.
        let conditional = call(vec![(
            HeaderName::from_static("if-none-match"),
            HeaderValue::from_static("\"x\""),
        )]);
        assert!(
            stripe
                .classify(&conditional, 304, HeaderMap::new(), b"", 0)
                .is_ok()
        );
        assert!(matches!(
            classify(&stripe, 304, &[], ""),
            Err(Failure::Fatal(_))
        ));

        // Salesforce's limit answer is a 403 with REQUEST_LIMIT_EXCEEDED.
        let sf = client("salesforce");
        let (e, wait, sent) = retry(classify(
            &sf,
            403,
            &[],
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        ));
        assert_eq!((e.sqlstate.as_str(), wait, sent), ("53400", None, false));
    }

    #[test]
    fn config_problems_name_what_is_missing() {
        let spec = test_support::connector("airtable");
        let err = Client::new(
            Arc::new(spec.clone()),
            ClientConfig::new("a").credential("api_key", "k"),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        assert!(err.message.contains("`base_id`"), "{err}");
        let err = Client::new(
            Arc::new(spec),
            ClientConfig::new("a").param("base_id", "app1"),
        )
        .unwrap_err();
        assert!(err.message.contains("`api_key`"), "{err}");
        // Defaults fill optional parameters.
        let sf = client("salesforce");
        assert_eq!(sf.params()["api_version"], "x");
        let sf = Client::new(
            Arc::new(test_support::connector("salesforce")),
            ClientConfig::new("s")
                .credential("client_id", "i")
                .credential("client_secret", "s")
                .credential("refresh_token", "r"),
        )
        .unwrap();
        assert_eq!(sf.params()["api_version"], "v59.0");
        assert_eq!(sf.params()["login_host"], "login.salesforce.com");
    }

    #[test]
    fn write_bodies_are_wrapped_with_constants_and_encoded() {
        let at = test_support::connector("airtable");
        let create = at
            .discovered_objects
            .as_ref()
            .unwrap()
            .endpoints
            .create
            .clone()
            .unwrap();
        let mut obj = Map::new();
        obj.insert("Name".into(), serde_json::json!("x"));
        assert_eq!(
            write_body(&at, &create, obj.clone()),
            Body::Json(serde_json::json!({"fields": {"Name": "x"}, "typecast": true}))
        );
        let stripe = test_support::connector("stripe");
        let create = stripe
            .object("customer")
            .unwrap()
            .endpoints
            .create
            .clone()
            .unwrap();
        obj.insert("metadata".into(), serde_json::json!({"plan": "pro"}));
        assert_eq!(
            write_body(&stripe, &create, obj),
            Body::Form("Name=x&metadata%5Bplan%5D=pro".into())
        );
    }
}
