//! Stripe simulator: every list endpoint of Stripe's API reference that returns the account's
//! own data (64 top-level objects, from customers, charges and invoices to issuing, terminal and
//! treasury objects, and the nested lists whose records cannot be reached otherwise, such as
//! invoice lines and customer tax ids), each with the operations Stripe has for it (list,
//! retrieve, create, update, delete), and the events log.
//!
//! Written from Stripe's official OpenAPI description and example objects: `data/stripe.json` is
//! extracted from them by `data/extract_stripe.py` and is the object catalogue ([`Kind`]): per
//! object its paths, id shape, operations with their exact request parameters (names, nesting,
//! types, enums, required, which may be emptied with `""`), list filters, the events Stripe emits
//! for it, and Stripe's example object, used as the template for new objects so that every field
//! the real API returns is present.
//!
//! Behaviour mirrored from Stripe's API reference, the same for every object: form-encoded bodies
//! with deepObject nesting, unknown parameters rejected, metadata merge semantics, newest-first
//! lists with `starting_after`/`ending_before` cursors, `Idempotency-Key` replays, the error
//! envelope, events for every change (with `previous_attributes` on updates, and only the event
//! types Stripe really emits: no `payment_intent.updated`, `charge.succeeded` on create), events
//! older than 30 days hidden, the 25 requests/s test-mode rate limit, and restricted keys
//! (`rk_test_...`) refused with 403 on endpoints whose permission they lack. The seven core
//! billing objects (customers, products, prices, subscriptions, invoices, payment intents,
//! charges) also check and compute what Stripe does for them (`billing.rs`); other objects are
//! Stripe's example object with the request's parameters applied.
//!
//! # Left out
//!
//! List endpoints of the spec that are not served (the extractor fails on any list endpoint it
//! neither serves nor names here; [`Kind::left_out`] has the same list):
//!
//! - `/v1/events`: served apart, as the events log.
//! - Test helpers: `/v1/test_helpers/test_clocks`.
//! - Search endpoints (`/v1/customers/search` and the like): search results, not lists.
//! - Not account data: `/v1/country_specs`, `/v1/exchange_rates`, `/v1/tax_codes`,
//!   `/v1/reporting/report_types` (Stripe's own reference data and catalogues).
//! - Credentials: `/v1/apps/secrets` (app secrets, listed per app user with `scope` required).
//! - Other names of served lists: `/v1/balance/history` (balance transactions),
//!   `/v1/linked_accounts` and its `owners` (Financial Connections accounts),
//!   `/v1/accounts/{account}/people` (persons), `/v1/customers/{customer}/subscriptions`,
//!   `/v1/customers/{customer}/payment_methods` and `/v1/charges/{charge}/refunds` (the same
//!   records as the top-level list filtered by customer or charge).
//! - Previews computed on request: `/v1/invoices/upcoming/lines`, `/v1/credit_notes/preview/lines`.
//! - The legacy Sources API and mixed-object lists: `/v1/customers/{customer}/sources`,
//!   `/cards`, `/bank_accounts`, `/v1/sources/{source}/source_transactions`,
//!   `/v1/accounts/{account}/external_accounts` (bank accounts and cards in one list).
//! - `/v1/accounts/{account}/capabilities`: one entry per capability name (ids like
//!   `card_payments`); the account object carries them in `capabilities`.
//! - Lines of objects that cannot be listed: `/v1/tax/calculations/{calculation}/line_items`,
//!   `/v1/tax/transactions/{transaction}/line_items`.
//!
//! Not simulated: `expand[]` (accepted and ignored), webhooks, actions beyond create, update and
//! delete (finalizing invoices, confirming payments), and the side effects of one object on
//! another (a charge creates no balance transaction, an object embedded in another or a nested
//! list is not kept in step with its parent). List filters the catalogue cannot map onto a field
//! of the object are accepted, as Stripe accepts them, and not applied (`filters.ignored` in
//! `data/stripe.json`).

mod billing;
mod catalogue;
mod embedded;
mod error;
mod http;
mod lists;
mod objects;
mod params;
mod seed;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::Router;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::rngs::StdRng;
use serde_json::Value;

pub use catalogue::Kind;
pub use error::StripeError;

use crate::common::{RateLimit, SimContext, Simulator, random_id, retry_after_secs, seeded_rng};
use objects::Origin;
use params::{parse_body, parse_query};
use store::{Collection, Events};

struct StripeState {
    rng: StdRng,
    collections: HashMap<Kind, Collection>,
    events: Events,
    idempotency: HashMap<String, http::Saved>,
}

/// The simulated Stripe account.
pub struct Stripe {
    ctx: SimContext,
    state: Mutex<StripeState>,
    request_seq: AtomicU64,
    account_id: String,
    /// Restricted keys the account has, with the permissions each lacks.
    restricted_keys: RwLock<HashMap<String, HashSet<String>>>,
}

impl Stripe {
    pub fn new(ctx: SimContext) -> Self {
        let rng = seeded_rng(ctx.rng_seed, "stripe");
        let account_id = random_id(&mut seeded_rng(ctx.rng_seed, "stripe-account"), "acct_", 16);
        Self {
            ctx,
            state: Mutex::new(StripeState {
                rng,
                collections: Kind::all().map(|k| (k, Collection::default())).collect(),
                events: Events::default(),
                idempotency: HashMap::new(),
            }),
            request_seq: AtomicU64::new(0),
            account_id,
            restricted_keys: RwLock::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StripeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_request_id(&self) -> String {
        // splitmix64 over a counter: unique, deterministic, random-looking.
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed) ^ self.ctx.rng_seed;
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(z);
        random_id(&mut rng, "req_", 14)
    }

    /// The simulated account's id, as errors name it (`acct_...`).
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// Gives the account a restricted key (`rk_test_...`) that lacks the `denied` permissions
    /// (`rak_event_read`: no events; lacking `rak_<resource>_read` also denies its write).
    /// The account's secret key keeps working.
    pub fn add_restricted_key(&self, key: &str, denied: &[&str]) {
        self.restricted_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key.to_owned(),
                denied.iter().map(|p| (*p).to_owned()).collect(),
            );
    }

    /// Makes the account's own key a restricted key without the Events read permission
    /// (`rak_event_read`), or gives the permission back: `GET /v1/events` and
    /// `GET /v1/events/{id}` then answer Stripe's 403.
    pub fn refuse_events(&self, refuse: bool) {
        let mut keys = self
            .restricted_keys
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if refuse {
            keys.insert(
                self.ctx.token.clone(),
                HashSet::from(["rak_event_read".to_owned()]),
            );
        } else {
            keys.remove(&self.ctx.token);
        }
    }

    /// Whether `key` is a restricted key lacking any of `permissions`.
    fn lacks_permission(&self, key: &str, permissions: &[&str]) -> bool {
        let keys = self
            .restricted_keys
            .read()
            .unwrap_or_else(|e| e.into_inner());
        keys.get(key)
            .is_some_and(|denied| permissions.iter().any(|p| denied.contains(*p)))
    }

    fn is_restricted_key(&self, key: &str) -> bool {
        let keys = self
            .restricted_keys
            .read()
            .unwrap_or_else(|e| e.into_inner());
        keys.contains_key(key)
    }

    // ----- library API for tests: the same operations a second Stripe user would make -----

    /// Creates an object from a form-encoded body (`name=x&metadata[k]=v`), exactly as
    /// `POST /v1/{collection}` would, and records its event. For a nested list's record, use
    /// [`Stripe::create_in`].
    pub fn create(&self, kind: Kind, form: &str) -> Result<Value, StripeError> {
        self.create_under(kind, None, form)
    }

    /// Creates a record of a nested list under `parent`, as `POST /v1/customers/{parent}/tax_ids`
    /// would.
    pub fn create_in(&self, kind: Kind, parent: &str, form: &str) -> Result<Value, StripeError> {
        self.create_under(kind, Some(parent), form)
    }

    fn create_under(
        &self,
        kind: Kind,
        parent: Option<&str>,
        form: &str,
    ) -> Result<Value, StripeError> {
        let Some(op) = kind.spec().ops.create.as_ref() else {
            return Err(no_operation("POST", &kind.list_url(parent)));
        };
        let params = parse_body(op, form.as_bytes())?;
        let origin = self.sim_origin();
        self.lock()
            .create(&self.ctx, kind, parent, params, None, Some(&origin))
    }

    /// Updates an object from a form-encoded body, as `POST /v1/{collection}/{id}` would.
    pub fn update(&self, kind: Kind, id: &str, form: &str) -> Result<Value, StripeError> {
        let parent = self.located(kind, id)?;
        let Some(op) = kind.spec().ops.update.as_ref() else {
            let url = format!("{}/{id}", kind.list_url(parent.as_deref()));
            return Err(no_operation("POST", &url));
        };
        let params = parse_body(op, form.as_bytes())?;
        let origin = self.sim_origin();
        self.lock()
            .update(&self.ctx, kind, parent.as_deref(), id, params, &origin)
    }

    /// Deletes (or, for subscriptions, cancels) an object, as `DELETE /v1/{collection}/{id}`.
    pub fn delete(&self, kind: Kind, id: &str) -> Result<Value, StripeError> {
        let parent = self.located(kind, id)?;
        if !kind.can_delete() {
            let url = format!("{}/{id}", kind.list_url(parent.as_deref()));
            return Err(no_operation("DELETE", &url));
        }
        let origin = self.sim_origin();
        self.lock()
            .delete(&self.ctx, kind, parent.as_deref(), id, &origin)
    }

    /// The current object, if it exists and is not deleted.
    pub fn get(&self, kind: Kind, id: &str) -> Option<Value> {
        let s = self.lock();
        s.collections[&kind]
            .get(id)
            .map(|r| Value::Object(r.obj.clone()))
    }

    /// Ids of live objects in list order (newest first); of a nested list, every parent's.
    pub fn ids(&self, kind: Kind) -> Vec<String> {
        self.lock().collections[&kind].ids(None)
    }

    /// Ids of one parent's live records of a nested list, in list order.
    pub fn ids_in(&self, kind: Kind, parent: &str) -> Vec<String> {
        self.lock().collections[&kind].ids(Some(parent))
    }

    /// The parent of a nested list's record (`None` for a top-level object): what its URL names.
    fn located(&self, kind: Kind, id: &str) -> Result<Option<String>, StripeError> {
        match (kind.parent(), self.parent_of(kind, id)) {
            (Some(_), None) => Err(StripeError::no_such(kind, id, "id")),
            (_, parent) => Ok(parent),
        }
    }

    /// The parent a nested list's record (live or deleted) belongs to.
    pub fn parent_of(&self, kind: Kind, id: &str) -> Option<String> {
        kind.parent()?;
        self.lock().collections[&kind]
            .parent_of(id)
            .map(str::to_owned)
    }

    /// One list page as `GET /v1/{collection}?{query}` returns it (the same validation and
    /// serialization, without HTTP); used to measure the cost of serving a page.
    pub fn list(&self, kind: Kind, query: &str) -> Result<String, StripeError> {
        let q = parse_query(kind.list_op(), Some(query))?;
        self.lock().list(kind, None, &q)
    }

    /// One page of a nested list under `parent`, as `GET /v1/invoices/{parent}/lines` returns it.
    pub fn list_in(&self, kind: Kind, parent: &str, query: &str) -> Result<String, StripeError> {
        let q = parse_query(kind.list_op(), Some(query))?;
        self.lock().list(kind, Some(parent), &q)
    }

    /// Number of live objects (of a nested list: under every parent).
    pub fn len(&self, kind: Kind) -> usize {
        self.lock().collections[&kind].records.len()
    }

    /// Number of recorded events (including ones older than the retention window).
    pub fn event_count(&self) -> usize {
        self.lock().events.by_id.len()
    }

    fn sim_origin(&self) -> Origin {
        Origin {
            request_id: self.next_request_id(),
            idempotency_key: None,
        }
    }
}

/// What Stripe answers for an operation it does not have: its 404 for an unknown URL.
fn no_operation(method: &str, url: &str) -> StripeError {
    StripeError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: None,
        param: None,
        message: format!(
            "Unrecognized request URL ({method}: {url}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
        ),
    }
}

/// The key in `Authorization: Bearer KEY` or `Authorization: Basic base64(KEY:)`.
fn api_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return Some(text.split(':').next().unwrap_or_default().to_owned());
    }
    None
}

/// Stripe shows only a key's last characters: four in `Invalid API Key provided`, six in a
/// restricted key's permission error.
fn masked(key: &str, shown: usize) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(shown)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head = key.split('_').take(2).collect::<Vec<_>>().join("_");
    let stars = key.len().saturating_sub(head.len() + 1 + shown);
    format!("{head}_{}{tail}", "*".repeat(stars))
}

impl Simulator for Stripe {
    fn routes(self: Arc<Self>) -> Router {
        self.router()
    }

    fn authorized(&self, req: &Parts) -> bool {
        api_key(&req.headers).is_some_and(|k| k == self.ctx.token || self.is_restricted_key(&k))
    }

    fn unauthorized(&self) -> Response {
        let mut r = StripeError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message: "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".into(),
        }
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Stripe\""),
        );
        r
    }

    fn unauthorized_for(&self, req: &Parts) -> Response {
        let Some(key) = api_key(&req.headers) else {
            return self.unauthorized();
        };
        let mut r = StripeError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message: format!("Invalid API Key provided: {}", masked(&key, 4)),
        }
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Stripe\""),
        );
        r
    }

    fn rate_limited(&self, retry_after: Duration) -> Response {
        let mut r = StripeError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "invalid_request_error",
            code: Some("rate_limit"),
            param: None,
            message: "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.".into(),
        }
        .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(retry_after)),
        );
        r
    }

    fn server_error(&self) -> Response {
        StripeError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "api_error",
            code: None,
            param: None,
            message: "An unknown error occurred".into(),
        }
        .into_response()
    }

    fn rate_key(&self, _req: &Parts) -> String {
        // Stripe limits per account; one simulator is one account.
        "account".to_owned()
    }

    fn default_rate_limit(&self) -> RateLimit {
        // Stripe: 25 read and 25 write requests per second in test mode.
        RateLimit::per_second(25)
    }

    fn seed(&self, n: usize) {
        self.seed_all(n);
    }

    fn seed_every_object(&self, n: usize) {
        Stripe::seed_every_object(self, n);
    }

    fn control_routes(self: Arc<Self>) -> Router {
        // The same API without auth, limits or faults: `/_sim/v1/customers/...` lets scripts
        // change data as another Stripe user would (events are recorded the same way).
        self.router()
    }
}
