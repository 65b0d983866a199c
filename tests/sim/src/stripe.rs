//! Stripe simulator: customers, products, prices, subscriptions, invoices, payment intents and
//! charges (list, retrieve, create, update, delete where Stripe allows it) and the events log.
//!
//! Written from Stripe's official OpenAPI description and example objects: `data/stripe.json` is
//! extracted from them by `data/extract_stripe.py` and gives, per operation, the exact request
//! parameters (names, nesting, types, enums, required, which may be emptied with `""`), and per
//! object, Stripe's example object used as the template for new objects so that every field the
//! real API returns is present.
//!
//! Behaviour mirrored from Stripe's API reference: form-encoded bodies with deepObject nesting,
//! unknown parameters rejected, metadata merge semantics, newest-first lists with
//! `starting_after`/`ending_before` cursors, `Idempotency-Key` replays, the error envelope, events
//! for every change (with `previous_attributes` on updates, and only the event types Stripe really
//! emits: no `payment_intent.updated`, `charge.succeeded` on create), events older than 30 days
//! hidden, and the 25 requests/s test-mode rate limit.
//!
//! Records are stored with their serialized JSON next to the structured value, so a list page is a
//! concatenation of pre-serialized strings found through a `BTreeSet` ordered by `(created, id)`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use rand::Rng;
use rand::rngs::StdRng;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::common::{
    RateLimit, SimContext, Simulator, fake_company, fake_person, fake_sentence, random_id,
    retry_after_secs, seeded_rng,
};

/// Events older than this are no longer listed (Stripe keeps 30 days).
const EVENT_RETENTION_SECS: i64 = 30 * 24 * 3600;

// ---------------------------------------------------------------------------------------------
// Reference data extracted from Stripe's spec and fixtures.

#[derive(Deserialize)]
struct StripeData {
    api_version: String,
    ops: HashMap<String, OpSpec>,
    fixtures: Map<String, Value>,
}

#[derive(Deserialize)]
struct OpSpec {
    query: Node,
    body: Option<Node>,
}

/// One parameter's schema, compacted from the OpenAPI description (see `extract_stripe.py`).
#[derive(Deserialize)]
struct Node {
    t: String,
    #[serde(default)]
    p: Map<String, Value>,
    #[serde(default)]
    r: Vec<String>,
    i: Option<Box<Node>>,
    #[serde(default)]
    e: Vec<String>,
    max: Option<usize>,
    #[serde(default)]
    empty: bool,
    #[serde(default)]
    of: Vec<Node>,
}

static DATA: LazyLock<StripeData> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../data/stripe.json")).expect("data/stripe.json is valid")
});

/// Node trees are stored as JSON maps (to keep property order); this parses one property lazily.
fn child(node: &Node, name: &str) -> Option<Node> {
    node.p
        .get(name)
        .map(|v| Node::deserialize(v).expect("data/stripe.json nodes are well-formed"))
}

fn op(key: &str) -> &'static OpSpec {
    DATA.ops
        .get(key)
        .unwrap_or_else(|| panic!("no operation {key} in data/stripe.json"))
}

fn fixture(name: &str) -> Map<String, Value> {
    match DATA.fixtures.get(name) {
        Some(Value::Object(m)) => m.clone(),
        _ => panic!("no fixture {name} in data/stripe.json"),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// A Stripe error response: `{"error":{"code","doc_url","message","param","type"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    pub message: String,
}

impl StripeError {
    fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: Some(param.into()),
            message: message.into(),
        }
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn unknown_param(param: &str) -> Self {
        Self::invalid(param, format!("Received unknown parameter: {param}"))
            .with_code("parameter_unknown")
    }

    fn missing_param(param: &str) -> Self {
        Self::invalid(param, format!("Missing required param: {param}."))
            .with_code("parameter_missing")
    }

    /// `No such customer: 'cus_x'`; 404 for the object named in the URL, 400 for a parameter.
    fn no_such(kind: Kind, id: &str, param: &str) -> Self {
        let status = if param == "id" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        Self {
            status,
            kind: "invalid_request_error",
            code: Some("resource_missing"),
            param: Some(param.to_owned()),
            message: format!("No such {}: '{id}'", kind.object().replace('_', "")),
        }
    }

    fn body(&self) -> Value {
        let mut e = Map::new();
        if let Some(code) = self.code {
            e.insert("code".into(), code.into());
            e.insert(
                "doc_url".into(),
                format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )
                .into(),
            );
        }
        e.insert("message".into(), self.message.clone().into());
        if let Some(p) = &self.param {
            e.insert("param".into(), p.clone().into());
        }
        e.insert("type".into(), self.kind.into());
        json!({ "error": e })
    }
}

impl fmt::Display for StripeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for StripeError {}

impl IntoResponse for StripeError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, self.body().to_string());
        if self.status.is_server_error() || self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert("stripe-should-retry", HeaderValue::from_static("true"));
        }
        r
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Objects.

/// The object types served under `/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Customer,
    Product,
    Price,
    Subscription,
    Invoice,
    PaymentIntent,
    Charge,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Customer,
        Kind::Product,
        Kind::Price,
        Kind::Subscription,
        Kind::Invoice,
        Kind::PaymentIntent,
        Kind::Charge,
    ];

    /// The `object` field.
    pub fn object(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Product => "product",
            Kind::Price => "price",
            Kind::Subscription => "subscription",
            Kind::Invoice => "invoice",
            Kind::PaymentIntent => "payment_intent",
            Kind::Charge => "charge",
        }
    }

    /// The URL collection, `/v1/{collection}`.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Customer => "customers",
            Kind::Product => "products",
            Kind::Price => "prices",
            Kind::Subscription => "subscriptions",
            Kind::Invoice => "invoices",
            Kind::PaymentIntent => "payment_intents",
            Kind::Charge => "charges",
        }
    }

    /// The path parameter's name in Stripe's spec (used to find the operation).
    fn path_param(self) -> &'static str {
        match self {
            Kind::Customer => "{customer}",
            Kind::Product => "{id}",
            Kind::Price => "{price}",
            Kind::Subscription => "{subscription_exposed_id}",
            Kind::Invoice => "{invoice}",
            Kind::PaymentIntent => "{intent}",
            Kind::Charge => "{charge}",
        }
    }

    /// Id prefix and number of random characters after it.
    fn id_shape(self) -> (&'static str, usize) {
        match self {
            Kind::Customer => ("cus_", 14),
            Kind::Product => ("prod_", 14),
            Kind::Price => ("price_", 24),
            Kind::Subscription => ("sub_", 24),
            Kind::Invoice => ("in_", 24),
            Kind::PaymentIntent => ("pi_", 24),
            Kind::Charge => ("ch_", 24),
        }
    }

    fn event_prefix(self) -> &'static str {
        match self {
            Kind::Subscription => "customer.subscription",
            other => other.object(),
        }
    }

    /// The event type Stripe emits for a change, if it emits one at all.
    fn event_type(self, change: Change) -> Option<String> {
        let verb = match (self, change) {
            (Kind::Charge, Change::Created) => "succeeded",
            (Kind::PaymentIntent, Change::Updated) => return None,
            (_, Change::Created) => "created",
            (_, Change::Updated) => "updated",
            (_, Change::Deleted) => "deleted",
        };
        Some(format!("{}.{verb}", self.event_prefix()))
    }

    fn op(self, method: &str, item: bool) -> &'static OpSpec {
        if item {
            op(&format!(
                "{method} /v1/{}/{}",
                self.collection(),
                self.path_param()
            ))
        } else {
            op(&format!("{method} /v1/{}", self.collection()))
        }
    }

    /// List filters that compare a query parameter with the same-named field.
    fn equality_filters(self) -> &'static [&'static str] {
        match self {
            Kind::Customer => &["email"],
            Kind::Product => &["active", "shippable", "url"],
            Kind::Price => &["active", "currency", "product", "type"],
            Kind::Subscription => &["customer", "collection_method"],
            Kind::Invoice => &["customer", "status", "subscription", "collection_method"],
            Kind::PaymentIntent => &["customer"],
            Kind::Charge => &["customer", "payment_intent", "transfer_group"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Deleted,
}

struct Record {
    created: i64,
    obj: Map<String, Value>,
    json: String,
}

impl Record {
    fn new(obj: Map<String, Value>) -> Self {
        let created = obj.get("created").and_then(Value::as_i64).unwrap_or(0);
        let json = Value::Object(obj.clone()).to_string();
        Self { created, obj, json }
    }

    fn set(&mut self, obj: Map<String, Value>) {
        self.json = Value::Object(obj.clone()).to_string();
        self.obj = obj;
    }
}

/// One object type's records. Live records sit in a `BTreeMap` in list order, so a page is a
/// range walk over adjacent entries (no per-record hash lookups, few cache misses).
#[derive(Default)]
struct Collection {
    records: BTreeMap<(i64, String), Record>,
    /// `created` of every id stored, live or deleted: deleted ones stay so that a cursor naming a
    /// deleted object still resolves (a sync in progress must not break on a deletion).
    created: HashMap<String, i64>,
    deleted: HashSet<String>,
}

impl Collection {
    fn key_of(&self, id: &str) -> Option<(i64, String)> {
        self.created.get(id).map(|c| (*c, id.to_owned()))
    }

    fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(&self.key_of(id)?)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Record> {
        let key = self.key_of(id)?;
        self.records.get_mut(&key)
    }

    fn insert(&mut self, id: String, record: Record) {
        self.created.insert(id.clone(), record.created);
        self.records.insert((record.created, id), record);
    }

    /// Deletes a record; its id keeps resolving as a cursor.
    fn delete(&mut self, id: &str) -> Option<Record> {
        let record = self.records.remove(&self.key_of(id)?)?;
        self.deleted.insert(id.to_owned());
        Some(record)
    }

    /// Removes every trace of a record (used to undo a half-made create).
    fn forget(&mut self, id: &str) {
        if let Some(key) = self.key_of(id) {
            self.records.remove(&key);
            self.created.remove(id);
        }
    }
}

struct Event {
    created: i64,
    kind: String,
    json: String,
}

/// The event log. Events are ordered by when they happened (`(created, sequence)`), not by id:
/// a client replaying `customer.created` then `customer.updated` from the same second must see
/// them in that order.
#[derive(Default)]
struct Events {
    by_id: HashMap<String, (i64, u64)>,
    log: BTreeMap<(i64, u64), Event>,
}

/// A stored idempotent result.
struct Saved {
    endpoint: String,
    body: Bytes,
    status: StatusCode,
    json: String,
    /// The request that produced the result, sent back as `Original-Request` on replays.
    request_id: String,
}

struct StripeState {
    rng: StdRng,
    collections: HashMap<Kind, Collection>,
    events: Events,
    idempotency: HashMap<String, Saved>,
}

/// The simulated Stripe account.
pub struct Stripe {
    ctx: SimContext,
    state: Mutex<StripeState>,
    request_seq: AtomicU64,
    /// The key is a restricted key without the Events read permission
    /// (`rak_event_read`): the events endpoints answer 403.
    events_refused: std::sync::atomic::AtomicBool,
}

/// Who asked for a change (recorded in the event's `request`).
struct Origin {
    request_id: String,
    idempotency_key: Option<String>,
}

impl Stripe {
    pub fn new(ctx: SimContext) -> Self {
        let rng = seeded_rng(ctx.rng_seed, "stripe");
        Self {
            ctx,
            state: Mutex::new(StripeState {
                rng,
                collections: Kind::ALL
                    .iter()
                    .map(|k| (*k, Collection::default()))
                    .collect(),
                events: Events::default(),
                idempotency: HashMap::new(),
            }),
            request_seq: AtomicU64::new(0),
            events_refused: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Makes the account's key a restricted key without the Events read
    /// permission (or gives it back): `GET /v1/events` and
    /// `GET /v1/events/{id}` then answer 403 as Stripe does.
    pub fn refuse_events(&self, refuse: bool) {
        self.events_refused.store(refuse, Ordering::Relaxed);
    }

    /// Stripe's answer to a restricted key without `rak_event_read`.
    fn events_permission(&self) -> Result<(), StripeError> {
        if !self.events_refused.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(StripeError {
            status: StatusCode::FORBIDDEN,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message: format!(
                "The provided key '{}' does not have the required permissions for this endpoint on account 'acct_1SequinSimulator'. Having the 'rak_event_read' permission would allow this request to continue.",
                masked(&self.ctx.token)
            ),
        })
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

    // ----- library API for tests: the same operations a second Stripe user would make -----

    /// Creates an object from a form-encoded body (`name=x&metadata[k]=v`), exactly as
    /// `POST /v1/{collection}` would, and records its event.
    pub fn create(&self, kind: Kind, form: &str) -> Result<Value, StripeError> {
        let params = parse_body(kind.op("POST", false), form.as_bytes())?;
        let origin = self.sim_origin();
        self.lock()
            .create(&self.ctx, kind, params, None, Some(&origin))
    }

    /// Updates an object from a form-encoded body, as `POST /v1/{collection}/{id}` would.
    pub fn update(&self, kind: Kind, id: &str, form: &str) -> Result<Value, StripeError> {
        let params = parse_body(kind.op("POST", true), form.as_bytes())?;
        let origin = self.sim_origin();
        self.lock().update(&self.ctx, kind, id, params, &origin)
    }

    /// Deletes (or, for subscriptions, cancels) an object, as `DELETE /v1/{collection}/{id}`.
    pub fn delete(&self, kind: Kind, id: &str) -> Result<Value, StripeError> {
        let origin = self.sim_origin();
        self.lock().delete(&self.ctx, kind, id, &origin)
    }

    /// The current object, if it exists and is not deleted.
    pub fn get(&self, kind: Kind, id: &str) -> Option<Value> {
        let s = self.lock();
        s.collections[&kind]
            .get(id)
            .map(|r| Value::Object(r.obj.clone()))
    }

    /// Ids of live objects in list order (newest first).
    pub fn ids(&self, kind: Kind) -> Vec<String> {
        let s = self.lock();
        let c = &s.collections[&kind];
        c.records.keys().rev().map(|(_, id)| id.clone()).collect()
    }

    /// One list page as `GET /v1/{collection}?{query}` returns it (the same validation and
    /// serialization, without HTTP); used to measure the cost of serving a page.
    pub fn list(&self, kind: Kind, query: &str) -> Result<String, StripeError> {
        let q = parse_query(kind.op("GET", false), Some(query))?;
        self.lock().list(kind, &q)
    }

    /// Number of live objects.
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

// ---------------------------------------------------------------------------------------------
// Request parameters: form/query parsing and validation against the spec.

/// Parses `a[b][0]=x&a[c][]=y` into nested JSON objects with string leaves; array positions are
/// object keys ("0", "1", ...), converted to arrays during validation where the spec says array.
fn parse_form(raw: &[u8]) -> Result<Map<String, Value>, StripeError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).map_err(|e| {
        StripeError::invalid("", format!("Invalid request body: {e}"))
            .with_code("parameter_invalid")
    })?;
    let mut root = Map::new();
    for (key, value) in pairs {
        let (head, rest) = match key.find('[') {
            Some(i) => (&key[..i], &key[i..]),
            None => (key.as_str(), ""),
        };
        let mut segments = vec![head.to_owned()];
        let mut rest = rest;
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']').ok_or_else(|| {
                StripeError::invalid(key.clone(), format!("Invalid parameter name: {key}"))
            })?;
            segments.push(stripped[..end].to_owned());
            rest = &stripped[end + 1..];
        }
        insert_path(&mut root, &segments, value);
    }
    Ok(root)
}

fn insert_path(map: &mut Map<String, Value>, segments: &[String], value: String) {
    let mut seg = segments[0].clone();
    if seg.is_empty() {
        // `a[]=x`: append.
        seg = map.len().to_string();
    }
    if segments.len() == 1 {
        map.insert(seg, Value::String(value));
        return;
    }
    let slot = map.entry(seg).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(inner) = slot {
        insert_path(inner, &segments[1..], value);
    }
}

fn param_name(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}[{key}]")
    }
}

fn last_segment(param: &str) -> &str {
    param
        .rsplit('[')
        .next()
        .map(|s| s.trim_end_matches(']'))
        .unwrap_or(param)
}

/// Validates the parsed parameters of an object node; returns typed values. `Value::Null` means
/// "unset" (the parameter was sent as an empty string where that is allowed).
fn check_object(
    node: &Node,
    value: &Map<String, Value>,
    parent: &str,
) -> Result<Value, StripeError> {
    let mut out = Map::new();
    for (k, v) in value {
        let name = param_name(parent, k);
        let Some(sub) = child(node, k) else {
            return Err(StripeError::unknown_param(&name));
        };
        out.insert(k.clone(), check(&sub, v, &name)?);
    }
    for r in &node.r {
        if !out.contains_key(r) {
            return Err(StripeError::missing_param(&param_name(parent, r)));
        }
    }
    Ok(Value::Object(out))
}

fn check(node: &Node, value: &Value, param: &str) -> Result<Value, StripeError> {
    let text = value.as_str();
    if text == Some("") && (node.empty || node.t == "string") {
        return Ok(Value::Null);
    }
    match node.t.as_str() {
        "object" => match value {
            Value::Object(m) => check_object(node, m, param),
            _ => Err(StripeError::invalid(param, "Invalid object")),
        },
        "map" => match value {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) if s.is_empty() => out.insert(k.clone(), Value::Null),
                        Value::String(s) => out.insert(k.clone(), Value::String(s.clone())),
                        _ => {
                            return Err(StripeError::invalid(
                                param_name(param, k),
                                "Invalid string",
                            ));
                        }
                    };
                }
                Ok(Value::Object(out))
            }
            _ => Err(StripeError::invalid(param, "Invalid object")),
        },
        "array" => match value {
            Value::Object(m) => {
                let items = node.i.as_deref().expect("array nodes have items");
                let mut entries: Vec<(u64, &Value)> = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let idx = k
                        .parse::<u64>()
                        .map_err(|_| StripeError::invalid(param, "Invalid array"))?;
                    entries.push((idx, v));
                }
                entries.sort_by_key(|(i, _)| *i);
                let mut out = Vec::with_capacity(entries.len());
                for (i, v) in entries {
                    out.push(check(items, v, &format!("{param}[{i}]"))?);
                }
                Ok(Value::Array(out))
            }
            // An empty value unsets a list, which leaves it empty: Stripe's
            // convention for form-encoded bodies ("set it to null and the
            // library converts that into an empty string, which will cause
            // Stripe to set it to an empty list", stripe-node#337; the same
            // for `spending_controls[blocked_categories]=`, stripe-python#802).
            Value::String(s) if s.is_empty() => Ok(Value::Array(Vec::new())),
            _ => Err(StripeError::invalid(param, "Invalid array")),
        },
        "any" => {
            let mut first_err = None;
            for alt in &node.of {
                let shape_fits = matches!(
                    (alt.t.as_str(), value),
                    ("object" | "map" | "array", Value::Object(_))
                        | (
                            "string" | "integer" | "number" | "boolean",
                            Value::String(_)
                        )
                );
                if !shape_fits {
                    continue;
                }
                match check(alt, value, param) {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            Err(first_err.unwrap_or_else(|| StripeError::invalid(param, "Invalid value")))
        }
        scalar => {
            let Some(s) = text else {
                return Err(StripeError::invalid(param, format!("Invalid {scalar}")));
            };
            let typed = match scalar {
                "integer" => s
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| StripeError::invalid(param, format!("Invalid integer: {s}")))?,
                "number" => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| StripeError::invalid(param, format!("Invalid decimal: {s}")))?,
                "boolean" => match s {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(StripeError::invalid(param, format!("Invalid boolean: {s}"))),
                },
                _ => {
                    if let Some(max) = node.max
                        && s.chars().count() > max
                    {
                        return Err(StripeError::invalid(
                            param,
                            format!("Invalid string: {s}; must be at most {max} characters"),
                        ));
                    }
                    Value::String(s.to_owned())
                }
            };
            if !node.e.is_empty() && !node.e.iter().any(|e| Some(e.as_str()) == typed.as_str()) {
                return Err(StripeError::invalid(
                    param,
                    format!(
                        "Invalid {}: must be one of {}",
                        last_segment(param),
                        one_of(&node.e)
                    ),
                ));
            }
            Ok(typed)
        }
    }
}

/// `a, b, or c`
fn one_of(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        [init @ .., last] => format!("{}, or {last}", init.join(", ")),
    }
}

fn parse_body(op: &OpSpec, raw: &[u8]) -> Result<Map<String, Value>, StripeError> {
    let node = op
        .body
        .as_ref()
        .expect("POST operations have a body schema");
    match check_object(node, &parse_form(raw)?, "")? {
        Value::Object(m) => Ok(m),
        _ => unreachable!("check_object returns an object"),
    }
}

fn parse_query(op: &OpSpec, raw: Option<&str>) -> Result<Map<String, Value>, StripeError> {
    let form = parse_form(raw.unwrap_or("").as_bytes())?;
    match check_object(&op.query, &form, "")? {
        Value::Object(m) => Ok(m),
        _ => unreachable!("check_object returns an object"),
    }
}

// ---------------------------------------------------------------------------------------------
// Applying parameters to objects.

/// Email syntax as Stripe checks it: something@something.tld, no spaces.
fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !s.contains(char::is_whitespace)
        && !domain.contains('@')
        && domain
            .rsplit_once('.')
            .is_some_and(|(host, tld)| !host.is_empty() && tld.len() >= 2)
}

fn address_shape() -> Value {
    json!({"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null})
}

/// The full shape of a nested object that is `null` in the template, so that setting one key
/// yields an object with every field Stripe returns.
fn shape_for(field: &str) -> Value {
    match field {
        "address" => address_shape(),
        "shipping" | "shipping_details" => {
            json!({"address": address_shape(), "carrier": null, "name": null, "phone": null, "tracking_number": null})
        }
        _ => Value::Object(Map::new()),
    }
}

/// Sets `value` into `target`: objects merge key by key, anything else replaces.
fn merge_into(field: &str, target: &mut Value, value: Value) {
    match value {
        Value::Object(m) => {
            if !target.is_object() {
                *target = shape_for(field);
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in m {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                merge_into(&k, slot, v);
            }
        }
        other => *target = other,
    }
}

/// Applies typed parameters to an object: metadata merges (`""` deletes a key, `metadata=`
/// clears), nested objects merge, parameters the object has no field for are accepted and
/// dropped (as Stripe does for e.g. `payment_method` on a customer).
fn apply(obj: &mut Map<String, Value>, params: Map<String, Value>) {
    for (k, v) in params {
        if k == "expand" {
            continue;
        }
        if k == "metadata" {
            let md = obj
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            match v {
                Value::Object(m) => {
                    let md = md.as_object_mut().expect("metadata is an object");
                    for (mk, mv) in m {
                        if mv.is_null() {
                            md.remove(&mk);
                        } else {
                            md.insert(mk, mv);
                        }
                    }
                }
                _ => *md = Value::Object(Map::new()),
            }
            continue;
        }
        if let Some(slot) = obj.get_mut(&k) {
            merge_into(&k, slot, v);
        }
    }
}

/// `previous_attributes`: for each changed key the old value; nested objects only list the
/// changed sub-keys (a key that did not exist before shows as null), as in Stripe's events.
fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, nv) in new {
        let ov = old.get(k).unwrap_or(&Value::Null);
        if ov == nv {
            continue;
        }
        match (ov, nv) {
            (Value::Object(o), Value::Object(n)) => {
                let mut d = diff(o, n);
                for ok in o.keys() {
                    if !n.contains_key(ok) {
                        d.insert(ok.clone(), o[ok].clone());
                    }
                }
                out.insert(k.clone(), Value::Object(d));
            }
            _ => {
                out.insert(k.clone(), ov.clone());
            }
        }
    }
    out
}

fn str_param<'a>(params: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

impl StripeState {
    fn new_id(&mut self, kind: Kind) -> String {
        let (prefix, len) = kind.id_shape();
        loop {
            let id = random_id(&mut self.rng, prefix, len);
            if self.collections[&kind].key_of(&id).is_none() {
                return id;
            }
        }
    }

    fn live(&self, kind: Kind, id: &str) -> Option<&Record> {
        self.collections[&kind].get(id)
    }

    fn require(&self, kind: Kind, id: &str, param: &str) -> Result<&Record, StripeError> {
        self.live(kind, id)
            .ok_or_else(|| StripeError::no_such(kind, id, param))
    }

    /// Creates an object. `created` is `None` for API calls (now) and set for seeded history;
    /// `origin` is `None` for seeded history, which has no events (older than the retention).
    fn create(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        mut params: Map<String, Value>,
        created: Option<i64>,
        origin: Option<&Origin>,
    ) -> Result<Value, StripeError> {
        let now = created.unwrap_or_else(|| ctx.clock.now_secs());
        let mut obj = fixture(kind.object());
        let id = match (kind, str_param(&params, "id")) {
            (Kind::Product, Some(id)) => {
                if self.collections[&kind].key_of(id).is_some() {
                    return Err(StripeError::invalid("id", "Product already exists.")
                        .with_code("resource_already_exists"));
                }
                id.to_owned()
            }
            _ => self.new_id(kind),
        };
        params.remove("id");
        obj.insert("id".into(), id.clone().into());
        obj.insert("created".into(), now.into());
        obj.insert("livemode".into(), false.into());
        obj.insert("metadata".into(), json!({}));
        match kind {
            Kind::Customer => self.init_customer(&mut obj, &params)?,
            Kind::Product => self.init_product(ctx, &mut obj, &mut params, now, origin)?,
            Kind::Price => self.init_price(ctx, &mut obj, &mut params, now, origin)?,
            Kind::Subscription => self.init_subscription(&mut obj, &mut params, now)?,
            Kind::Invoice => self.init_invoice(&mut obj, &params)?,
            Kind::PaymentIntent => self.init_payment_intent(&mut obj, &params, &id)?,
            Kind::Charge => self.init_charge(&mut obj, &params)?,
        }
        apply(&mut obj, params);
        if kind == Kind::Price
            && let Some(amount) = obj.get("unit_amount").and_then(Value::as_i64)
        {
            obj.insert("unit_amount_decimal".into(), amount.to_string().into());
        }
        let value = Value::Object(obj.clone());
        let c = self.collections.get_mut(&kind).expect("all kinds exist");
        c.insert(id, Record::new(obj));
        if let Some(origin) = origin {
            self.record_event(ctx, kind, Change::Created, &value, None, origin);
        }
        Ok(value)
    }

    fn init_customer(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &Map<String, Value>,
    ) -> Result<(), StripeError> {
        if let Some(email) = str_param(params, "email")
            && !valid_email(email)
        {
            return Err(
                StripeError::invalid("email", format!("Invalid email address: {email}"))
                    .with_code("email_invalid"),
            );
        }
        let prefix: String = (0..8)
            .map(|_| b"0123456789ABCDEF"[self.rng.random_range(0..16)] as char)
            .collect();
        obj.insert("invoice_prefix".into(), prefix.into());
        // A new customer has no currency until it is first charged.
        obj.insert("currency".into(), Value::Null);
        Ok(())
    }

    fn init_product(
        &mut self,
        ctx: &SimContext,
        obj: &mut Map<String, Value>,
        params: &mut Map<String, Value>,
        now: i64,
        origin: Option<&Origin>,
    ) -> Result<(), StripeError> {
        obj.insert("updated".into(), now.into());
        obj.insert("default_price".into(), Value::Null);
        obj.insert("description".into(), Value::Null);
        if let Some(Value::Array(features)) = params.remove("features") {
            obj.insert("features".into(), Value::Array(features));
        }
        if let Some(Value::Object(price)) = params.remove("default_price_data") {
            // Created after the product exists: remember it and create it right away below.
            let id = obj["id"].as_str().expect("id set").to_owned();
            let mut price_params = price;
            price_params.insert("product".into(), id.clone().into());
            // Insert the product first so the price can reference it.
            let c = self.collections.get_mut(&Kind::Product).expect("exists");
            c.insert(id.clone(), Record::new(obj.clone()));
            let price = self.create(ctx, Kind::Price, price_params, Some(now), origin);
            let c = self.collections.get_mut(&Kind::Product).expect("exists");
            c.forget(&id);
            obj.insert("default_price".into(), price?["id"].clone());
        }
        Ok(())
    }

    fn init_price(
        &mut self,
        ctx: &SimContext,
        obj: &mut Map<String, Value>,
        params: &mut Map<String, Value>,
        now: i64,
        origin: Option<&Origin>,
    ) -> Result<(), StripeError> {
        let product = str_param(params, "product").map(str::to_owned);
        match (product, params.remove("product_data")) {
            (Some(product), _) => {
                self.require(Kind::Product, &product, "product")?;
            }
            (None, Some(Value::Object(data))) => {
                let product = self.create(ctx, Kind::Product, data, Some(now), origin)?;
                params.insert("product".into(), product["id"].clone());
            }
            _ => {
                return Err(StripeError::invalid(
                    "product",
                    "You must specify either `product` or `product_data` when creating a price.",
                )
                .with_code("parameter_missing"));
            }
        }
        for (k, v) in [
            ("nickname", Value::Null),
            ("lookup_key", Value::Null),
            ("unit_amount", Value::Null),
            ("unit_amount_decimal", Value::Null),
        ] {
            obj.insert(k.into(), v);
        }
        match params.remove("recurring") {
            Some(Value::Object(r)) => {
                let mut recurring = json!({"aggregate_usage": null, "interval": "month", "interval_count": 1, "usage_type": "licensed"});
                merge_into("recurring", &mut recurring, Value::Object(r));
                obj.insert("recurring".into(), recurring);
                obj.insert("type".into(), "recurring".into());
            }
            _ => {
                obj.insert("recurring".into(), Value::Null);
                obj.insert("type".into(), "one_time".into());
            }
        }
        if let Some(Value::String(d)) = params.remove("unit_amount_decimal") {
            obj.insert("unit_amount_decimal".into(), d.clone().into());
            if let Ok(n) = d.parse::<f64>() {
                obj.insert("unit_amount".into(), (n.round() as i64).into());
            }
        }
        Ok(())
    }

    fn init_subscription(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &mut Map<String, Value>,
        now: i64,
    ) -> Result<(), StripeError> {
        let customer = str_param(params, "customer").expect("required by the spec");
        self.require(Kind::Customer, customer, "customer")?;
        let id = obj["id"].as_str().expect("id set").to_owned();
        let mut items = Vec::new();
        let mut currency = Value::String("usd".into());
        if let Some(Value::Array(requested)) = params.remove("items") {
            for (i, item) in requested.into_iter().enumerate() {
                let Some(price_id) = item.get("price").and_then(Value::as_str) else {
                    return Err(StripeError::missing_param(&format!("items[{i}][price]")));
                };
                let price = self
                    .require(Kind::Price, price_id, &format!("items[{i}][price]"))?
                    .obj
                    .clone();
                if price.get("type").and_then(Value::as_str) != Some("recurring") {
                    return Err(StripeError::invalid(
                        format!("items[{i}][price]"),
                        "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
                    ));
                }
                currency = price["currency"].clone();
                let mut si = fixture("subscription_item");
                si.insert("id".into(), random_id(&mut self.rng, "si_", 14).into());
                si.insert("created".into(), now.into());
                si.insert("metadata".into(), json!({}));
                si.insert("price".into(), Value::Object(price));
                si.insert(
                    "quantity".into(),
                    item.get("quantity").cloned().unwrap_or(1.into()),
                );
                si.insert("subscription".into(), id.clone().into());
                if let Some(plan) = si.get_mut("plan") {
                    // The legacy `plan` mirrors the price; keep its id consistent.
                    if let Some(p) = plan.as_object_mut() {
                        p.insert("id".into(), price_id.into());
                    }
                }
                items.push(Value::Object(si));
            }
        }
        obj.insert(
            "items".into(),
            json!({"object": "list", "data": items, "has_more": false,
                   "url": format!("/v1/subscription_items?subscription={id}")}),
        );
        obj.insert("currency".into(), currency);
        let month = 30 * 24 * 3600;
        for (k, v) in [
            ("billing_cycle_anchor", now.into()),
            ("start_date", now.into()),
            ("current_period_start", now.into()),
            ("current_period_end", (now + month).into()),
            ("cancel_at", Value::Null),
            ("canceled_at", Value::Null),
            ("ended_at", Value::Null),
            ("trial_start", Value::Null),
            ("trial_end", Value::Null),
            ("next_pending_invoice_item_invoice", Value::Null),
            ("status", "active".into()),
        ] {
            obj.insert(k.into(), v);
        }
        Ok(())
    }

    fn init_invoice(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &Map<String, Value>,
    ) -> Result<(), StripeError> {
        let Some(customer_id) = str_param(params, "customer") else {
            return Err(StripeError::missing_param("customer"));
        };
        let customer = self
            .require(Kind::Customer, customer_id, "customer")?
            .obj
            .clone();
        let id = obj["id"].as_str().expect("id set").to_owned();
        for (k, v) in [
            ("status", "draft".into()),
            ("number", Value::Null),
            ("paid", false.into()),
            ("amount_due", 0.into()),
            ("amount_paid", 0.into()),
            ("amount_remaining", 0.into()),
            ("subtotal", 0.into()),
            ("total", 0.into()),
            ("customer_email", customer["email"].clone()),
            ("customer_name", customer["name"].clone()),
            ("customer_phone", customer["phone"].clone()),
            ("customer_address", customer["address"].clone()),
            ("customer_shipping", customer["shipping"].clone()),
            ("subscription", Value::Null),
            ("hosted_invoice_url", Value::Null),
            ("invoice_pdf", Value::Null),
            (
                "lines",
                json!({"object": "list", "data": [], "has_more": false, "url": format!("/v1/invoices/{id}/lines")}),
            ),
        ] {
            obj.insert(k.into(), v);
        }
        Ok(())
    }

    fn init_payment_intent(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &Map<String, Value>,
        id: &str,
    ) -> Result<(), StripeError> {
        if let Some(c) = str_param(params, "customer") {
            self.require(Kind::Customer, c, "customer")?;
        }
        let secret = random_id(&mut self.rng, "", 25);
        for (k, v) in [
            ("client_secret", format!("{id}_secret_{secret}").into()),
            ("status", "requires_payment_method".into()),
            ("canceled_at", Value::Null),
            ("amount_received", 0.into()),
            ("latest_charge", Value::Null),
        ] {
            obj.insert(k.into(), v);
        }
        Ok(())
    }

    fn init_charge(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &Map<String, Value>,
    ) -> Result<(), StripeError> {
        for p in ["amount", "currency"] {
            if !params.contains_key(p) {
                return Err(StripeError::missing_param(p));
            }
        }
        if let Some(c) = str_param(params, "customer") {
            self.require(Kind::Customer, c, "customer")?;
        }
        let txn = random_id(&mut self.rng, "txn_", 24);
        obj.insert("amount_captured".into(), params["amount"].clone());
        obj.insert("balance_transaction".into(), txn.into());
        obj.insert("status".into(), "succeeded".into());
        obj.insert("paid".into(), true.into());
        obj.insert("captured".into(), true.into());
        obj.insert("payment_intent".into(), Value::Null);
        obj.insert("invoice".into(), Value::Null);
        obj.insert("description".into(), Value::Null);
        Ok(())
    }

    fn update(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        id: &str,
        params: Map<String, Value>,
        origin: &Origin,
    ) -> Result<Value, StripeError> {
        let old = self.require(kind, id, "id")?.obj.clone();
        if kind == Kind::Customer
            && let Some(email) = str_param(&params, "email")
            && !valid_email(email)
        {
            return Err(
                StripeError::invalid("email", format!("Invalid email address: {email}"))
                    .with_code("email_invalid"),
            );
        }
        if kind == Kind::Product
            && let Some(p) = str_param(&params, "default_price")
        {
            let price = self.require(Kind::Price, p, "default_price")?;
            if price.obj.get("product").and_then(Value::as_str) != Some(id) {
                return Err(StripeError::invalid(
                    "default_price",
                    format!("The price `{p}` does not belong to this product."),
                ));
            }
        }
        let mut obj = old.clone();
        apply(&mut obj, params);
        let previous = diff(&old, &obj);
        if previous.is_empty() {
            return Ok(Value::Object(obj));
        }
        if kind == Kind::Product {
            obj.insert("updated".into(), ctx.clock.now_secs().into());
        }
        let value = Value::Object(obj.clone());
        self.collections
            .get_mut(&kind)
            .and_then(|c| c.get_mut(id))
            .expect("checked above")
            .set(obj);
        self.record_event(ctx, kind, Change::Updated, &value, Some(previous), origin);
        Ok(value)
    }

    fn delete(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        id: &str,
        origin: &Origin,
    ) -> Result<Value, StripeError> {
        let record = self.require(kind, id, "id")?;
        match kind {
            Kind::Subscription => {
                // Deleting a subscription cancels it; it stays listable with status=canceled.
                let old = record.obj.clone();
                let now = ctx.clock.now_secs();
                let mut obj = old.clone();
                if obj["status"] == "canceled" {
                    return Err(StripeError::invalid(
                        "id",
                        format!("No such subscription: '{id}'"),
                    )
                    .with_code("resource_missing"));
                }
                obj.insert("status".into(), "canceled".into());
                obj.insert("canceled_at".into(), now.into());
                obj.insert("ended_at".into(), now.into());
                let value = Value::Object(obj.clone());
                self.collections
                    .get_mut(&kind)
                    .and_then(|c| c.get_mut(id))
                    .expect("checked above")
                    .set(obj);
                self.record_event(ctx, kind, Change::Deleted, &value, None, origin);
                Ok(value)
            }
            Kind::Customer | Kind::Product | Kind::Invoice => {
                if kind == Kind::Invoice && record.obj["status"] != "draft" {
                    return Err(StripeError::invalid(
                        "invoice",
                        "You can only delete draft invoices.",
                    ));
                }
                if kind == Kind::Product
                    && self.collections[&Kind::Price]
                        .records
                        .values()
                        .any(|p| p.obj.get("product").and_then(Value::as_str) == Some(id))
                {
                    return Err(StripeError::invalid(
                        "product",
                        "This product cannot be deleted because it has one or more user-created prices.",
                    ));
                }
                let c = self.collections.get_mut(&kind).expect("exists");
                let rec = c.delete(id).expect("checked above");
                let value = Value::Object(rec.obj);
                self.record_event(ctx, kind, Change::Deleted, &value, None, origin);
                Ok(json!({"id": id, "object": kind.object(), "deleted": true}))
            }
            Kind::Price | Kind::PaymentIntent | Kind::Charge => {
                unreachable!("no DELETE route for {kind:?}")
            }
        }
    }

    fn record_event(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        change: Change,
        object: &Value,
        previous: Option<Map<String, Value>>,
        origin: &Origin,
    ) {
        let Some(event_type) = kind.event_type(change) else {
            return;
        };
        let id = loop {
            let id = random_id(&mut self.rng, "evt_", 24);
            if !self.events.by_id.contains_key(&id) {
                break id;
            }
        };
        let created = ctx.clock.now_secs();
        let mut data = Map::new();
        data.insert("object".into(), object.clone());
        if let Some(p) = previous {
            data.insert("previous_attributes".into(), Value::Object(p));
        }
        let event = json!({
            "api_version": DATA.api_version,
            "created": created,
            "data": data,
            "id": id,
            "livemode": false,
            "object": "event",
            "pending_webhooks": 0,
            "request": {"id": origin.request_id, "idempotency_key": origin.idempotency_key},
            "type": event_type,
        });
        let key = (created, self.events.log.len() as u64);
        self.events.by_id.insert(id, key);
        self.events.log.insert(
            key,
            Event {
                created,
                kind: event_type,
                json: event.to_string(),
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Lists.

/// A `created` filter: exact value or range.
#[derive(Default)]
struct CreatedFilter {
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
}

impl CreatedFilter {
    fn from(v: Option<&Value>) -> Self {
        match v {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                Self {
                    gte: Some(n),
                    lte: Some(n),
                    ..Self::default()
                }
            }
            Some(Value::Object(m)) => {
                let get = |k: &str| m.get(k).and_then(Value::as_i64);
                Self {
                    gt: get("gt"),
                    gte: get("gte"),
                    lt: get("lt"),
                    lte: get("lte"),
                }
            }
            _ => Self::default(),
        }
    }

    fn matches(&self, c: i64) -> bool {
        self.gt.is_none_or(|v| c > v)
            && self.gte.is_none_or(|v| c >= v)
            && self.lt.is_none_or(|v| c < v)
            && self.lte.is_none_or(|v| c <= v)
    }
}

/// Validated paging parameters.
struct Paging {
    limit: usize,
    starting_after: Option<String>,
    ending_before: Option<String>,
}

fn paging(q: &Map<String, Value>) -> Result<Paging, StripeError> {
    let limit = match q.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            if n < 1 {
                return Err(StripeError::invalid(
                    "limit",
                    "This value must be greater than or equal to 1.",
                ));
            }
            if n > 100 {
                return Err(StripeError::invalid(
                    "limit",
                    "This value must be less than or equal to 100.",
                ));
            }
            n as usize
        }
    };
    Ok(Paging {
        limit,
        starting_after: str_param(q, "starting_after").map(str::to_owned),
        ending_before: str_param(q, "ending_before").map(str::to_owned),
    })
}

/// Walks `order` newest first from the cursor (`(key, false)`: after it, `(key, true)`: before
/// it), keeping entries `keep` accepts; returns the page in list order and whether more matching
/// entries exist in that direction. The cursor key need not be present (a deleted object).
fn page<'a, K: Ord, V>(
    order: &'a BTreeMap<K, V>,
    cursor: Option<(K, bool)>,
    limit: usize,
    mut keep: impl FnMut(&K, &V) -> bool,
) -> (Vec<&'a V>, bool) {
    let mut out = Vec::with_capacity(limit);
    let mut has_more = false;
    let mut take = |it: &mut dyn Iterator<Item = (&'a K, &'a V)>| {
        for (k, v) in it {
            if keep(k, v) {
                if out.len() == limit {
                    has_more = true;
                    break;
                }
                out.push(v);
            }
        }
    };
    match cursor {
        None => take(&mut order.iter().rev()),
        Some((key, false)) => take(&mut order.range(..key).rev()),
        Some((key, true)) => {
            take(&mut order.range((Bound::Excluded(key), Bound::Unbounded)));
            out.reverse();
        }
    }
    (out, has_more)
}

fn list_json<'a>(
    items: impl Iterator<Item = &'a str> + Clone,
    has_more: bool,
    url: &str,
) -> String {
    // Sized exactly up front: one allocation, no regrowth copies of a ~70 KB page.
    let url = Value::String(url.to_owned()).to_string();
    let size: usize = items.clone().map(|i| i.len() + 1).sum::<usize>() + url.len() + 64;
    let mut out = String::with_capacity(size);
    out.push_str(r#"{"object":"list","data":["#);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push_str(r#"],"has_more":"#);
    out.push_str(if has_more { "true" } else { "false" });
    out.push_str(r#","url":"#);
    out.push_str(&url);
    out.push('}');
    out
}

fn resolve_cursor<K>(
    p: &Paging,
    key_of: impl Fn(&str) -> Option<K>,
    missing: impl Fn(&str, &str) -> StripeError,
) -> Result<Option<(K, bool)>, StripeError> {
    if let Some(id) = &p.starting_after {
        return key_of(id)
            .map(|k| Some((k, false)))
            .ok_or_else(|| missing(id, "starting_after"));
    }
    if let Some(id) = &p.ending_before {
        return key_of(id)
            .map(|k| Some((k, true)))
            .ok_or_else(|| missing(id, "ending_before"));
    }
    Ok(None)
}

impl StripeState {
    fn list(&self, kind: Kind, q: &Map<String, Value>) -> Result<String, StripeError> {
        let p = paging(q)?;
        let c = &self.collections[&kind];
        let cursor = resolve_cursor(
            &p,
            |id| c.key_of(id),
            |id, param| StripeError::no_such(kind, id, param),
        )?;
        let created = CreatedFilter::from(q.get("created"));
        let eq: Vec<(&str, &Value)> = kind
            .equality_filters()
            .iter()
            .filter_map(|f| q.get(*f).filter(|v| !v.is_null()).map(|v| (*f, v)))
            .collect();
        // Subscriptions: without `status`, every status but canceled; `all` means all.
        let status = if kind == Kind::Subscription {
            Some(str_param(q, "status").unwrap_or("not_canceled"))
        } else {
            None
        };
        let (records, has_more) = page(&c.records, cursor, p.limit, |(created_at, _), r| {
            created.matches(*created_at)
                && eq.iter().all(|(f, v)| r.obj.get(*f) == Some(*v))
                && match status {
                    None | Some("all") => true,
                    Some("not_canceled") => r.obj["status"] != "canceled",
                    Some("ended") => {
                        r.obj["status"] == "canceled" || r.obj["status"] == "incomplete_expired"
                    }
                    Some(s) => r.obj["status"] == s,
                }
        });
        let url = format!("/v1/{}", kind.collection());
        Ok(list_json(
            records.iter().map(|r| r.json.as_str()),
            has_more,
            &url,
        ))
    }

    fn list_events(&self, now: i64, q: &Map<String, Value>) -> Result<String, StripeError> {
        let p = paging(q)?;
        let oldest = now - EVENT_RETENTION_SECS;
        let ev = &self.events;
        let missing = |id: &str, param: &str| {
            StripeError::invalid(param, format!("No such event: '{id}'"))
                .with_code("resource_missing")
        };
        let cursor = resolve_cursor(
            &p,
            |id| {
                ev.by_id
                    .get(id)
                    .copied()
                    .filter(|(created, _)| *created >= oldest)
            },
            missing,
        )?;
        let created = CreatedFilter::from(q.get("created"));
        let mut types: Vec<&str> = Vec::new();
        if let Some(t) = str_param(q, "type") {
            types.push(t);
        }
        if let Some(Value::Array(ts)) = q.get("types") {
            types.extend(ts.iter().filter_map(Value::as_str));
        }
        let type_matches = |t: &str| {
            types.is_empty()
                || types.iter().any(|pat| match pat.strip_suffix('*') {
                    Some(prefix) => t.starts_with(prefix),
                    None => t == *pat,
                })
        };
        let (events, has_more) = page(&ev.log, cursor, p.limit, |(at, _), e| {
            *at >= oldest && created.matches(*at) && type_matches(&e.kind)
        });
        Ok(list_json(
            events.iter().map(|e| e.json.as_str()),
            has_more,
            "/v1/events",
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP handlers.

#[derive(Clone)]
struct RequestId(String);

/// Adds Stripe's `Request-Id` header and makes the id available to handlers (for events).
async fn request_id(State(s): State<Arc<Stripe>>, mut req: Request, next: Next) -> Response {
    let id = s.next_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

fn ok_json(body: String) -> Response {
    json_response(StatusCode::OK, body)
}

async fn list(
    State(s): State<Arc<Stripe>>,
    kind: Kind,
    RawQuery(query): RawQuery,
) -> Result<Response, StripeError> {
    let q = parse_query(kind.op("GET", false), query.as_deref())?;
    let body = s.lock().list(kind, &q)?;
    Ok(ok_json(body))
}

async fn retrieve(
    State(s): State<Arc<Stripe>>,
    kind: Kind,
    id: String,
    RawQuery(query): RawQuery,
) -> Result<Response, StripeError> {
    parse_query(kind.op("GET", true), query.as_deref())?;
    let st = s.lock();
    if let Some(r) = st.live(kind, &id) {
        return Ok(ok_json(r.json.clone()));
    }
    if kind == Kind::Customer && st.collections[&kind].deleted.contains(&id) {
        // Deleted customers stay retrievable as a stub.
        return Ok(ok_json(
            json!({"id": id, "object": "customer", "deleted": true}).to_string(),
        ));
    }
    Err(StripeError::no_such(kind, &id, "id"))
}

/// Runs a POST with `Idempotency-Key` semantics: a saved 2xx result for the same key is
/// replayed for the same endpoint and body, and refused for a different one.
fn idempotent(
    s: &Stripe,
    headers: &HeaderMap,
    endpoint: String,
    body: &Bytes,
    run: impl FnOnce(&mut StripeState, &Origin) -> Result<Value, StripeError>,
    request_id: String,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let origin = Origin {
        request_id,
        idempotency_key: key.clone(),
    };
    // One lock for check, run and save: concurrent retries with one key cannot both execute.
    let mut st = s.lock();
    if let Some(key) = &key
        && let Some(saved) = st.idempotency.get(key)
    {
        let error = if saved.endpoint != endpoint {
            Some(format!(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{}' vs '{endpoint}'). Try using a key other than '{key}' if you meant to execute a different request.",
                saved.endpoint
            ))
        } else if saved.body != body {
            Some(format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            ))
        } else {
            None
        };
        if let Some(message) = error {
            return StripeError {
                status: StatusCode::BAD_REQUEST,
                kind: "idempotency_error",
                code: None,
                param: None,
                message,
            }
            .into_response();
        }
        let mut r = json_response(saved.status, saved.json.clone());
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        if let Ok(v) = HeaderValue::from_str(&saved.request_id) {
            r.headers_mut().insert("original-request", v);
        }
        add_idempotency_header(&mut r, key);
        return r;
    }
    let result = run(&mut st, &origin);
    let mut response = match result {
        Ok(v) => {
            let json = v.to_string();
            if let Some(key) = &key {
                st.idempotency.insert(
                    key.clone(),
                    Saved {
                        endpoint,
                        body: body.clone(),
                        status: StatusCode::OK,
                        json: json.clone(),
                        request_id: origin.request_id.clone(),
                    },
                );
            }
            ok_json(json)
        }
        Err(e) => e.into_response(),
    };
    if let Some(key) = &key {
        add_idempotency_header(&mut response, key);
    }
    response
}

fn add_idempotency_header(r: &mut Response, key: &str) {
    if let Ok(v) = HeaderValue::from_str(key) {
        r.headers_mut().insert("idempotency-key", v);
    }
}

fn create_handler(s: &Arc<Stripe>, kind: Kind, req: PostRequest) -> Response {
    let params = match parse_body(kind.op("POST", false), &req.body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ctx = &s.ctx;
    idempotent(
        s,
        &req.headers,
        format!("POST /v1/{}", kind.collection()),
        &req.body,
        |st, origin| st.create(ctx, kind, params, None, Some(origin)),
        req.request_id,
    )
}

fn update_handler(s: &Arc<Stripe>, kind: Kind, id: &str, req: PostRequest) -> Response {
    let params = match parse_body(kind.op("POST", true), &req.body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ctx = &s.ctx;
    idempotent(
        s,
        &req.headers,
        format!("POST /v1/{}/{id}", kind.collection()),
        &req.body,
        |st, origin| st.update(ctx, kind, id, params, origin),
        req.request_id,
    )
}

struct PostRequest {
    headers: HeaderMap,
    body: Bytes,
    request_id: String,
}

fn delete_handler(s: &Arc<Stripe>, kind: Kind, id: &str, request_id: String) -> Response {
    let origin = Origin {
        request_id,
        idempotency_key: None,
    };
    match s.lock().delete(&s.ctx, kind, id, &origin) {
        Ok(v) => ok_json(v.to_string()),
        Err(e) => e.into_response(),
    }
}

async fn events_list(
    State(s): State<Arc<Stripe>>,
    RawQuery(query): RawQuery,
) -> Result<Response, StripeError> {
    s.events_permission()?;
    let q = parse_query(op("GET /v1/events"), query.as_deref())?;
    let now = s.ctx.clock.now_secs();
    let body = s.lock().list_events(now, &q)?;
    Ok(ok_json(body))
}

async fn event_retrieve(
    State(s): State<Arc<Stripe>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, StripeError> {
    s.events_permission()?;
    parse_query(op("GET /v1/events/{id}"), query.as_deref())?;
    let oldest = s.ctx.clock.now_secs() - EVENT_RETENTION_SECS;
    let st = s.lock();
    let event = st.events.by_id.get(&id).and_then(|k| st.events.log.get(k));
    match event.filter(|e| e.created >= oldest) {
        Some(e) => Ok(ok_json(e.json.clone())),
        None => Err(StripeError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("resource_missing"),
            param: Some("id".into()),
            message: format!("No such event: '{id}'"),
        }),
    }
}

/// Unknown URLs get Stripe's 404 body.
async fn not_found(method: Method, uri: axum::http::Uri) -> StripeError {
    StripeError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: None,
        param: None,
        message: format!(
            "Unrecognized request URL ({method}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            uri.path()
        ),
    }
}

impl Stripe {
    fn router(self: Arc<Self>) -> Router {
        let mut r: Router<Arc<Stripe>> = Router::new();
        for kind in Kind::ALL {
            let collection = format!("/v1/{}", kind.collection());
            let item = format!("/v1/{}/{{id}}", kind.collection());
            r = r.route(
                &collection,
                get(move |s: State<Arc<Stripe>>, q: RawQuery| list(s, kind, q)).post(
                    move |State(s): State<Arc<Stripe>>,
                          axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
                          headers: HeaderMap,
                          body: Bytes| async move {
                        create_handler(
                            &s,
                            kind,
                            PostRequest {
                                headers,
                                body,
                                request_id: rid,
                            },
                        )
                    },
                ),
            );
            let mut item_route = get(
                move |s: State<Arc<Stripe>>, Path(id): Path<String>, q: RawQuery| {
                    retrieve(s, kind, id, q)
                },
            )
            .post(
                move |State(s): State<Arc<Stripe>>,
                      Path(id): Path<String>,
                      axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
                      headers: HeaderMap,
                      body: Bytes| async move {
                    update_handler(
                        &s,
                        kind,
                        &id,
                        PostRequest {
                            headers,
                            body,
                            request_id: rid,
                        },
                    )
                },
            );
            if matches!(
                kind,
                Kind::Customer | Kind::Product | Kind::Subscription | Kind::Invoice
            ) {
                item_route = item_route.delete(
                    move |State(s): State<Arc<Stripe>>,
                          Path(id): Path<String>,
                          axum::Extension(RequestId(rid)): axum::Extension<RequestId>| async move {
                        delete_handler(&s, kind, &id, rid)
                    },
                );
            }
            r = r.route(&item, item_route);
        }
        r.route("/v1/events", get(events_list))
            .route("/v1/events/{id}", get(event_retrieve))
            .fallback(not_found)
            .method_not_allowed_fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                request_id,
            ))
            .with_state(self)
    }

    fn seed_all(&self, n: usize) {
        let customers = self.seed_customers(n);
        self.seed_billing(&customers);
    }

    /// Seeds `n` customers as history (40 days old, no events); returns their ids oldest first.
    /// Tests that only page through customers use this instead of the full seed, which also
    /// creates products, prices, subscriptions, invoices, payment intents and charges.
    pub fn seed_customers(&self, n: usize) -> Vec<String> {
        let mut st = self.lock();
        let ctx = &self.ctx;
        // History starts 40 days ago (older than the event retention, so it has no events);
        // four objects share each second so that ties on `created` are exercised.
        let base = ctx.clock.now_secs() - 40 * 24 * 3600;
        let at = |i: usize| base + (i / 4) as i64;
        let mut customers = Vec::with_capacity(n);
        for i in 0..n {
            let person = fake_person(&mut st.rng, i);
            let params = json!({
                "name": person.full_name(),
                "email": person.email,
                "phone": person.phone,
                "description": format!("Customer at {}", person.company),
                "address": {"city": person.city, "country": person.country,
                            "line1": format!("{} Main Street", i + 1), "postal_code": format!("{:05}", 10000 + i)},
                "metadata": {"seed": i.to_string()},
            });
            let v = st
                .create(ctx, Kind::Customer, obj(params), Some(at(i)), None)
                .expect("seed customer");
            customers.push(v["id"].as_str().unwrap_or_default().to_owned());
        }
        customers
    }

    /// One product, price, subscription, invoice, payment intent and charge per customer.
    fn seed_billing(&self, customers: &[String]) {
        let n = customers.len();
        let mut st = self.lock();
        let ctx = &self.ctx;
        let base = ctx.clock.now_secs() - 40 * 24 * 3600;
        let at = |i: usize| base + (i / 4) as i64;
        let mut prices = Vec::with_capacity(n);
        let mut recurring = Vec::with_capacity(n);
        for i in 0..n {
            let company = fake_company(&mut st.rng);
            let name = format!("{} {}", company, fake_sentence(&mut st.rng, 2));
            let description = fake_sentence(&mut st.rng, 6);
            let product = st
                .create(
                    ctx,
                    Kind::Product,
                    obj(json!({"name": name, "description": description})),
                    Some(at(i)),
                    None,
                )
                .expect("seed product");
            let is_recurring = i % 3 != 2;
            let mut params = json!({
                "currency": "usd",
                "product": product["id"],
                "unit_amount": 100 * (1 + i as i64 % 50),
                "nickname": format!("Plan {i}"),
            });
            if is_recurring {
                params["recurring"] =
                    json!({"interval": if i % 2 == 0 { "month" } else { "year" }});
            }
            let price = st
                .create(ctx, Kind::Price, obj(params), Some(at(i)), None)
                .expect("seed price");
            let pid = price["id"].as_str().unwrap_or_default().to_owned();
            if is_recurring {
                recurring.push(pid.clone());
            }
            prices.push(pid);
        }
        for i in 0..n {
            let customer = &customers[i];
            if !recurring.is_empty() {
                let price = &recurring[i % recurring.len()];
                st.create(
                    ctx,
                    Kind::Subscription,
                    obj(json!({"customer": customer, "items": [{"price": price}]})),
                    Some(at(i)),
                    None,
                )
                .expect("seed subscription");
            }
            let invoice = st
                .create(
                    ctx,
                    Kind::Invoice,
                    obj(json!({"customer": customer})),
                    Some(at(i)),
                    None,
                )
                .expect("seed invoice");
            if i % 2 == 1 {
                // Every other invoice is paid: finalized in place (history, no events).
                let id = invoice["id"].as_str().unwrap_or_default().to_owned();
                let number = format!("{}-{:04}", &customer[4..10].to_uppercase(), i);
                let rec = st
                    .collections
                    .get_mut(&Kind::Invoice)
                    .and_then(|c| c.get_mut(&id))
                    .expect("just created");
                let mut o = rec.obj.clone();
                for (k, v) in [
                    ("status", json!("paid")),
                    ("paid", json!(true)),
                    ("number", json!(number)),
                ] {
                    o.insert(k.into(), v);
                }
                rec.set(o);
            }
            st.create(
                ctx,
                Kind::PaymentIntent,
                obj(json!({"amount": 1000 + i as i64, "currency": "usd", "customer": customer})),
                Some(at(i)),
                None,
            )
            .expect("seed payment intent");
            st.create(
                ctx,
                Kind::Charge,
                obj(
                    json!({"amount": 500 + i as i64, "currency": "usd", "customer": customer,
                           "description": format!("Charge {i}")}),
                ),
                Some(at(i)),
                None,
            )
            .expect("seed charge");
        }
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The key in `Authorization: Bearer KEY` or `Authorization: Basic base64(KEY:)`.
fn api_key(req: &Parts) -> Option<String> {
    let value = req.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
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

/// Stripe shows only the key's last four characters.
fn masked(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head = key.split('_').take(2).collect::<Vec<_>>().join("_");
    let stars = key.len().saturating_sub(head.len() + 5);
    format!("{head}_{}{tail}", "*".repeat(stars))
}

impl Simulator for Stripe {
    fn routes(self: Arc<Self>) -> Router {
        self.router()
    }

    fn authorized(&self, req: &Parts) -> bool {
        api_key(req).is_some_and(|k| k == self.ctx.token)
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
        let Some(key) = api_key(req) else {
            return self.unauthorized();
        };
        let mut r = StripeError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message: format!("Invalid API Key provided: {}", masked(&key)),
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

    fn control_routes(self: Arc<Self>) -> Router {
        // The same API without auth, limits or faults: `/_sim/v1/customers/...` lets scripts
        // change data as another Stripe user would (events are recorded the same way).
        self.router()
    }
}
