//! Salesforce REST API simulator (written from Salesforce's public REST API documentation):
//! OAuth2 refresh-token flow with expiring access tokens and optional refresh-token rotation,
//! sObject CRUD and describe, SOQL `query`/`queryAll` with 2000-record cursor pages, sObject
//! Collections (`/composite/sobjects`) with `allOrNone`, custom `__c` fields added at runtime
//! (External IDs among them), upserts by external ID (single and collections: `upsert.rs`),
//! validation rules (`FIELD_CUSTOM_VALIDATION_EXCEPTION` on create, update and upsert), and
//! Salesforce's error arrays `[{"message","errorCode","fields"}]`.
//!
//! Account, Contact, Lead and Opportunity carry the standard fields of Salesforce's Object
//! Reference with their describe metadata; 21 more standard objects and five custom objects
//! (`catalog.rs`) fill describeGlobal, and a control route creates custom objects at run time; the server-computed ones (person `Name`, compound
//! addresses, Opportunity probability/forecast defaults per stage, `ExpectedRevenue`, fiscal
//! period, `IsClosed`/`IsWon`) are read-only and recomputed on every write.
//!
//! The org's daily allocations (`/limits`) go down with every API request and refuse requests
//! with 403 `REQUEST_LIMIT_EXCEEDED` when spent (`limits.rs`).
//!
//! Bulk API 2.0 query jobs (create, state over time, abort, delete, CSV results paged with
//! `Sforce-Locator`, expiry) and `limits/recordCount` live in `salesforce/bulk.rs`.
//!
//! Any `vXX.X` API version is accepted. Deleted records stay visible to `queryAll` with
//! `IsDeleted = true` while in the recycle bin, which purges them after its window (15 days),
//! and the sObject Get Deleted resource lists them by time (`deleted.rs`).

mod bulk;
mod catalog;
mod deleted;
mod ids;
pub mod limits;
mod schema;
mod soql;
mod store;
mod upsert;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::common::{self, RateLimit, SimContext, Simulator};
pub use bulk::{BulkJobInfo, BulkSettings, refresh_token_for};
use schema::FieldDef;
pub use schema::FieldType;
pub use store::SfError;
pub(crate) use store::is_valid_email;
use store::{OAuthSettings, Org};

/// The connected app's consumer key the simulator accepts.
pub const CLIENT_ID: &str = "3MVG9sequin.sim.connected.app";
/// The connected app's consumer secret.
pub const CLIENT_SECRET: &str = "sequin-sim-client-secret";
/// Access tokens issued by the token endpoint live this long unless changed.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// The simulated org. Test-facing methods mutate it the way another user of the org would.
pub struct Salesforce {
    ctx: SimContext,
    org: Mutex<Org>,
    /// Locked after `org` when both are.
    bin: Mutex<deleted::RecycleBin>,
    limits: Mutex<limits::DailyLimits>,
    /// Bulk API 2.0 query jobs (`bulk.rs`).
    bulk: bulk::BulkJobs,
}

impl Salesforce {
    pub fn new(ctx: SimContext) -> Self {
        let oauth = OAuthSettings {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            rotate_refresh_tokens: false,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
        };
        let refresh_token = initial_refresh_token(&ctx.token);
        let org = Org::new(ctx.clock.clone(), oauth, &ctx.token, &refresh_token);
        Self {
            ctx,
            org: Mutex::new(org),
            bin: Mutex::new(deleted::RecycleBin::default()),
            limits: Mutex::new(limits::DailyLimits::default()),
            bulk: bulk::BulkJobs::default(),
        }
    }

    /// The org's daily allocations (the Limits resource's counters).
    pub fn limits(&self) -> MutexGuard<'_, limits::DailyLimits> {
        self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what is left of the day's API requests, as other integrations would.
    pub fn set_api_requests_remaining(&self, remaining: u64) {
        let mut l = self.limits();
        l.api_requests.remaining = remaining.min(l.api_requests.max);
    }

    /// The new day: every daily allocation is whole again.
    pub fn reset_daily_limits(&self) {
        self.limits().reset();
    }

    /// Takes one Bulk API 2.0 query job of the day's allocation (for the code creating jobs).
    pub fn take_bulk_query_job(&self) -> Result<(), SfError> {
        self.limits().take_bulk_query_job()
    }

    fn org(&self) -> MutexGuard<'_, Org> {
        // Handlers never leave the org half-updated across a panic point that matters here.
        self.org.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The refresh token the org accepts at start (until rotation revokes it).
    pub fn refresh_token(&self) -> String {
        initial_refresh_token(&self.ctx.token)
    }

    /// When on, every refresh returns a new refresh token and revokes the one used.
    pub fn set_rotate_refresh_tokens(&self, rotate: bool) {
        self.org().oauth.rotate_refresh_tokens = rotate;
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.org().oauth.access_token_ttl = ttl;
    }

    /// Expires every access token issued by the token endpoint (the static token stays valid).
    pub fn expire_access_tokens(&self) {
        self.org().expire_access_tokens();
    }

    /// Creates a record as another user would; returns its 18-character id.
    pub fn create(&self, object: &str, fields: Value) -> Result<String, SfError> {
        self.org().create(object, &as_object(fields)?)
    }

    /// Updates a record as another user would (bumps `SystemModstamp`).
    pub fn update(&self, object: &str, id: &str, fields: Value) -> Result<(), SfError> {
        self.org().update(object, id, &as_object(fields)?)
    }

    /// Deletes a record (it moves to the recycle bin: `queryAll` shows it with `IsDeleted`).
    pub fn delete(&self, object: &str, id: &str) -> Result<(), SfError> {
        self.org().delete(object, id)
    }

    /// How long deleted records stay in the recycle bin (15 days unless changed); older ones
    /// are purged at the next read.
    pub fn set_recycle_bin_window(&self, window: Duration) {
        self.recycle_bin().set_window(window);
    }

    /// Empties the recycle bin (of `object`, or of every object) now: the records are gone
    /// from `queryAll` and the `deleted` resource refuses spans starting before now. Returns
    /// the records purged.
    pub fn empty_recycle_bin(&self, object: Option<&str>) -> Result<usize, SfError> {
        let mut org = self.org();
        self.recycle_bin().empty(&mut org, object)
    }

    /// Deletes a record for good, skipping the recycle bin.
    pub fn hard_delete(&self, object: &str, id: &str) -> Result<(), SfError> {
        let mut org = self.org();
        self.recycle_bin().hard_delete(&mut org, object, id)
    }

    fn recycle_bin(&self) -> MutexGuard<'_, deleted::RecycleBin> {
        self.bin.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Purges what has been in the recycle bin longer than its window.
    fn purge_expired(&self) {
        let mut org = self.org();
        self.recycle_bin().purge_expired(&mut org);
    }

    /// A live record with every field, as `GET /sobjects/{object}/{id}` renders it.
    pub fn get(&self, object: &str, id: &str) -> Option<Value> {
        self.org().get(object, id, "v59.0").ok()
    }

    /// Number of records of `object`, deleted ones included when asked.
    pub fn count(&self, object: &str, include_deleted: bool) -> usize {
        self.purge_expired();
        self.org().count(object, include_deleted)
    }

    /// Adds a custom field (`name` must end in `__c`) to an object.
    pub fn add_custom_field(
        &self,
        object: &str,
        name: &str,
        label: &str,
        field_type: FieldType,
        length: Option<u32>,
    ) -> Result<(), SfError> {
        self.org()
            .add_field(object, FieldDef::custom(name, label, field_type, length))
    }

    /// Adds a text custom field marked External ID (and unique) to an
    /// object: upserts may go by it.
    pub fn add_external_id_field(&self, object: &str, name: &str) -> Result<(), SfError> {
        let mut field = FieldDef::custom(name, name, FieldType::String, Some(80));
        field.external_id = true;
        field.unique = true;
        self.org().add_field(object, field)
    }

    /// Adds a validation rule (the control route's JSON: `upsert.rs`).
    pub fn add_validation_rule(&self, rule: Value) -> Result<(), SfError> {
        let rule = serde_json::from_value(rule)
            .map_err(|e| SfError::new(400, "INVALID_INPUT", e.to_string()))?;
        self.org().add_validation_rule(rule)
    }
}

impl Salesforce {
    /// Creates a custom object as an admin would in Setup (`name` ends in `__c`), with the
    /// standard fields of custom objects plus `fields` (API name, type, length): describeGlobal
    /// lists it from now on.
    pub fn create_custom_object(
        &self,
        name: &str,
        label: &str,
        fields: &[(String, FieldType, Option<u32>)],
    ) -> Result<(), SfError> {
        let mut org = self.org();
        let def = catalog::runtime_object(&org, name, label, fields)?;
        org.add_object(def)
    }

    /// The API names describeGlobal lists, queryable or not.
    pub fn object_names(&self) -> Vec<String> {
        self.org()
            .object_defs()
            .map(|d| d.name.to_owned())
            .collect()
    }

    /// An object's describe (`GET /sobjects/{object}/describe`).
    pub fn describe(&self, object: &str) -> Option<Value> {
        self.org().describe(object, "v59.0").ok()
    }
}

/// Records per catalogue object (`catalog.rs`) that `seed(n)` adds: a few, whatever `n`, so
/// benchmarks of the first four objects stay about them.
const CATALOG_SEED: usize = 12;

fn initial_refresh_token(token: &str) -> String {
    format!("5Aep861.{token}.refresh")
}

fn as_object(value: Value) -> Result<Map<String, Value>, SfError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(SfError::new(
            400,
            "JSON_PARSER_ERROR",
            "The request body must be a JSON object",
        )),
    }
}

/// A 200 response with an already serialized JSON body (query pages are rendered as bytes).
fn json_bytes(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

/// Salesforce sends errors as a JSON array, even when there is one.
fn error_response(error: SfError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!([error.to_json()]))).into_response()
}

fn parse_body(body: &Bytes) -> Result<Value, SfError> {
    serde_json::from_slice(body).map_err(|e| {
        SfError::new(
            400,
            "JSON_PARSER_ERROR",
            format!(
                "Unexpected character: {e} at [line:{}, column:{}]",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Checks the `vXX.X` path segment; anything else is a missing resource.
fn check_version(version: &str) -> Result<(), SfError> {
    let valid = version
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
    if valid {
        Ok(())
    } else {
        Err(SfError::not_found())
    }
}

type Sim = State<Arc<Salesforce>>;

impl IntoResponse for SfError {
    fn into_response(self) -> Response {
        error_response(self)
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

async fn token(State(sim): Sim, body: Bytes) -> Response {
    let oauth_error = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    let Ok(request) = serde_urlencoded::from_bytes::<TokenRequest>(&body) else {
        return oauth_error(
            "invalid_request",
            "request body must be application/x-www-form-urlencoded",
        );
    };
    if request.grant_type.as_deref() != Some("refresh_token") {
        return oauth_error("unsupported_grant_type", "grant type not supported");
    }
    let issued = sim.org().refresh(
        request.client_id.as_deref().unwrap_or(""),
        request.client_secret.as_deref().unwrap_or(""),
        request.refresh_token.as_deref().unwrap_or(""),
    );
    match issued {
        Err((error, description)) => oauth_error(error, description),
        Ok(issued) => {
            let id = format!(
                "https://login.salesforce.com/id/{}/{}",
                store::ORG_ID,
                store::USER_ID
            );
            let issued_at = issued.issued_at.to_string();
            // Real signatures are HMAC-SHA256 over id + issued_at; clients treat them as opaque.
            let signature = format!(
                "{}=",
                ids::base62_fixed(issued.issued_at as u64 ^ 0x5eed_5eed, 43)
            );
            let mut body = json!({
                "access_token": issued.access_token,
                "instance_url": sim.ctx.base_url,
                "id": id,
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": signature,
                "scope": "api refresh_token",
            });
            if let Some(refresh_token) = issued.refresh_token {
                body["refresh_token"] = json!(refresh_token);
            }
            Json(body).into_response()
        }
    }
}

async fn versions() -> Response {
    let versions: Vec<Value> = (55..=62)
        .map(|v| json!({"label": format!("API {v}"), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0")}))
        .collect();
    Json(versions).into_response()
}

async fn describe_global(
    State(sim): Sim,
    Path(version): Path<String>,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let org = sim.org();
    let sobjects: Vec<Value> = org
        .object_defs()
        .map(|d| d.describe_global_entry(&version))
        .collect();
    Ok(
        Json(json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}))
            .into_response(),
    )
}

async fn describe(
    State(sim): Sim,
    Path((version, object)): Path<(String, String)>,
) -> Result<Response, SfError> {
    check_version(&version)?;
    Ok(Json(sim.org().describe(&object, &version)?).into_response())
}

async fn create(
    State(sim): Sim,
    Path((version, object)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let fields = as_object(parse_body(&body)?)?;
    let id = sim.org().create(&object, &fields)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "success": true, "errors": []})),
    )
        .into_response())
}

async fn get_record(
    State(sim): Sim,
    Path((version, object, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let fields: Option<Vec<String>> = query_param(raw.as_deref(), "fields")
        .map(|list| list.split(',').map(|f| f.trim().to_owned()).collect());
    let record = sim
        .org()
        .get_fields(&object, &id, fields.as_deref(), &version)?;
    Ok(Json(record).into_response())
}

async fn update_record(
    State(sim): Sim,
    Path((version, object, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let fields = as_object(parse_body(&body)?)?;
    sim.org().update(&object, &id, &fields)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_record(
    State(sim): Sim,
    Path((version, object, id)): Path<(String, String, String)>,
) -> Result<Response, SfError> {
    check_version(&version)?;
    sim.org().delete(&object, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Page size from `Sforce-Query-Options: batchSize=N` (200..=2000), else 2000.
fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|option| option.trim().split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        })
        .map_or(store::DEFAULT_BATCH_SIZE, |n| {
            n.clamp(200, store::DEFAULT_BATCH_SIZE)
        })
}

fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or("")).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn run_query(
    sim: &Salesforce,
    version: &str,
    raw: Option<String>,
    headers: &HeaderMap,
    all: bool,
) -> Result<Response, SfError> {
    check_version(version)?;
    let text = query_param(raw.as_deref(), "q").ok_or_else(|| {
        SfError::new(400, "MALFORMED_QUERY", "A query string has to be specified")
    })?;
    sim.purge_expired();
    let body = sim.org().query(&text, all, batch_size(headers), version)?;
    Ok(json_bytes(body))
}

async fn query(
    State(sim): Sim,
    Path(version): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, SfError> {
    run_query(&sim, &version, raw, &headers, false)
}

async fn query_all(
    State(sim): Sim,
    Path(version): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, SfError> {
    run_query(&sim, &version, raw, &headers, true)
}

async fn query_more(
    State(sim): Sim,
    Path((version, locator)): Path<(String, String)>,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let body = sim.org().query_more(&locator, &version)?;
    Ok(json_bytes(body))
}

fn collection_records(body: &Value) -> Result<(&[Value], bool), SfError> {
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            SfError::new(
                400,
                "JSON_PARSER_ERROR",
                "records: required field is missing",
            )
        })?;
    if records.len() > store::COLLECTION_LIMIT {
        return Err(too_many_records());
    }
    let all_or_none = body
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((records, all_or_none))
}

fn too_many_records() -> SfError {
    SfError::new(
        400,
        "EXCEEDED_ID_LIMIT",
        format!(
            "record limit reached. cannot submit more than {} records into this call",
            store::COLLECTION_LIMIT
        ),
    )
}

async fn collection_create(
    State(sim): Sim,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let body = parse_body(&body)?;
    let (records, all_or_none) = collection_records(&body)?;
    Ok(Json(sim.org().collection_create(records, all_or_none)).into_response())
}

async fn collection_update(
    State(sim): Sim,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let body = parse_body(&body)?;
    let (records, all_or_none) = collection_records(&body)?;
    Ok(Json(sim.org().collection_update(records, all_or_none)).into_response())
}

async fn collection_delete(
    State(sim): Sim,
    Path(version): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let ids: Vec<String> = query_param(raw.as_deref(), "ids")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err(SfError::new(
            400,
            "MISSING_ARGUMENT",
            "ids parameter must be specified",
        ));
    }
    if ids.len() > store::COLLECTION_LIMIT {
        return Err(too_many_records());
    }
    let all_or_none =
        query_param(raw.as_deref(), "allOrNone").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(Json(sim.org().collection_delete(&ids, all_or_none)).into_response())
}

/// `GET /sobjects/{object}/deleted/?start=..&end=..` (`deleted.rs`).
async fn get_deleted(
    State(sim): Sim,
    Path((version, object)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let start = query_param(raw.as_deref(), "start");
    let end = query_param(raw.as_deref(), "end");
    let mut org = sim.org();
    let answer =
        sim.recycle_bin()
            .get_deleted(&mut org, &object, start.as_deref(), end.as_deref())?;
    Ok(Json(answer).into_response())
}

// ----- control routes (under /_sim) -------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomFieldRequest {
    object: String,
    name: String,
    #[serde(rename = "type")]
    field_type: String,
    label: Option<String>,
    length: Option<u32>,
    /// An External ID field (`externalId` in describe).
    #[serde(default)]
    external_id: bool,
    #[serde(default)]
    unique: bool,
    /// Not nillable and not defaulted on create: every create must set it.
    #[serde(default)]
    required: bool,
}

async fn control_add_field(
    State(sim): Sim,
    Json(request): Json<CustomFieldRequest>,
) -> Result<Response, SfError> {
    let field_type = FieldType::from_name(&request.field_type).ok_or_else(|| {
        SfError::new(
            400,
            "INVALID_TYPE",
            format!("unknown field type {}", request.field_type),
        )
    })?;
    let label = request
        .label
        .clone()
        .unwrap_or_else(|| request.name.trim_end_matches("__c").replace('_', " "));
    let mut field = FieldDef::custom(&request.name, &label, field_type, request.length);
    field.external_id = request.external_id;
    field.unique = request.unique;
    field.nillable = !request.required;
    sim.org().add_field(&request.object, field)?;
    Ok(StatusCode::CREATED.into_response())
}

#[derive(Deserialize)]
struct CustomObjectRequest {
    name: String,
    label: Option<String>,
    #[serde(default)]
    fields: Vec<CustomObjectField>,
}

#[derive(Deserialize)]
struct CustomObjectField {
    name: String,
    #[serde(rename = "type")]
    field_type: String,
    length: Option<u32>,
}

/// Creates a custom object, as an admin would in Setup.
async fn control_add_object(
    State(sim): Sim,
    Json(request): Json<CustomObjectRequest>,
) -> Result<Response, SfError> {
    let mut fields = Vec::new();
    for f in request.fields {
        let t = FieldType::from_name(&f.field_type).ok_or_else(|| {
            SfError::new(
                400,
                "INVALID_TYPE",
                format!("unknown field type {}", f.field_type),
            )
        })?;
        if !f.name.ends_with("__c") {
            return Err(SfError::new(
                400,
                "INVALID_FIELD",
                format!("Custom field names must end in __c: {}", f.name),
            ));
        }
        fields.push((f.name, t, f.length));
    }
    let label = request
        .label
        .unwrap_or_else(|| request.name.trim_end_matches("__c").replace('_', " "));
    sim.create_custom_object(&request.name, &label, &fields)?;
    Ok(StatusCode::CREATED.into_response())
}

async fn control_create(
    State(sim): Sim,
    Path(object): Path<String>,
    Json(fields): Json<Value>,
) -> Result<Response, SfError> {
    sim.create(&object, fields).map(|id| {
        (
            StatusCode::CREATED,
            Json(json!({"id": id, "success": true, "errors": []})),
        )
            .into_response()
    })
}

async fn control_update(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
    Json(fields): Json<Value>,
) -> Result<Response, SfError> {
    sim.update(&object, &id, fields)
        .map(|()| StatusCode::NO_CONTENT.into_response())
}

async fn control_delete(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
) -> Result<Response, SfError> {
    sim.delete(&object, &id)
        .map(|()| StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecycleBinRequest {
    /// New window, in seconds.
    window_secs: Option<u64>,
    /// Empty the bin now (of `object`, or of every object).
    empty: Option<bool>,
    object: Option<String>,
}

/// `POST /_sim/salesforce/recycle-bin`: set the window and/or empty the bin.
async fn control_recycle_bin(
    State(sim): Sim,
    Json(request): Json<RecycleBinRequest>,
) -> Result<Response, SfError> {
    if let Some(secs) = request.window_secs {
        sim.set_recycle_bin_window(Duration::from_secs(secs));
    }
    let purged = match request.empty {
        Some(true) => sim.empty_recycle_bin(request.object.as_deref())?,
        _ => 0,
    };
    Ok(Json(json!({"purged": purged})).into_response())
}

/// `DELETE /_sim/salesforce/recycle-bin/{object}/{id}`: a hard delete.
async fn control_hard_delete(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
) -> Result<Response, SfError> {
    sim.hard_delete(&object, &id)
        .map(|()| StatusCode::NO_CONTENT.into_response())
}

async fn control_expire_tokens(State(sim): Sim) -> StatusCode {
    sim.expire_access_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OAuthSettingsRequest {
    rotate_refresh_tokens: Option<bool>,
    access_token_ttl_secs: Option<u64>,
}

async fn control_oauth(State(sim): Sim, Json(request): Json<OAuthSettingsRequest>) -> Response {
    if let Some(rotate) = request.rotate_refresh_tokens {
        sim.set_rotate_refresh_tokens(rotate);
    }
    if let Some(secs) = request.access_token_ttl_secs {
        sim.set_access_token_ttl(Duration::from_secs(secs));
    }
    Json(json!({
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "refreshToken": sim.refresh_token(),
    }))
    .into_response()
}

fn bearer_token(req: &Parts) -> Option<&str> {
    let value = req.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("OAuth "))
        .map(str::trim)
}

impl Simulator for Salesforce {
    fn routes(self: Arc<Self>) -> Router {
        let data = "/services/data/{version}";
        Router::new()
            .route("/services/oauth2/token", post(token))
            .route("/services/data", get(versions))
            .route(&format!("{data}/sobjects"), get(describe_global))
            .route(&format!("{data}/sobjects/{{object}}"), post(create))
            .route(
                &format!("{data}/sobjects/{{object}}/describe"),
                get(describe),
            )
            .route(
                &format!("{data}/sobjects/{{object}}/{{id}}"),
                get(get_record).patch(update_record).delete(delete_record),
            )
            .route(
                &format!("{data}/sobjects/{{object}}/deleted"),
                get(get_deleted),
            )
            .route(
                &format!("{data}/sobjects/{{object}}/deleted/"),
                get(get_deleted),
            )
            .route(&format!("{data}/query"), get(query))
            .route(&format!("{data}/query/{{locator}}"), get(query_more))
            .route(&format!("{data}/queryAll"), get(query_all))
            .route(&format!("{data}/queryAll/{{locator}}"), get(query_more))
            .route(
                &format!("{data}/composite/sobjects"),
                post(collection_create)
                    .patch(collection_update)
                    .delete(collection_delete),
            )
            .route(
                &format!("{data}/sobjects/{{object}}/{{field}}/{{value}}"),
                axum::routing::patch(upsert::single),
            )
            .route(
                &format!("{data}/composite/sobjects/{{object}}/{{field}}"),
                axum::routing::patch(upsert::collection),
            )
            .route(&format!("{data}/limits"), get(limits::limits))
            .merge(bulk::routes(data))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                limits::count_request,
            ))
            .with_state(self)
    }

    fn authorized(&self, req: &Parts) -> bool {
        // The token endpoint authenticates with client credentials in the body.
        if req.uri.path() == "/services/oauth2/token" || req.uri.path() == "/services/data" {
            return true;
        }
        bearer_token(req).is_some_and(|token| self.org().access_token_valid(token))
    }

    fn unauthorized(&self) -> Response {
        let mut response = error_response(SfError::new(
            401,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        ));
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        response
    }

    /// Salesforce answers an exceeded API limit with 403 `REQUEST_LIMIT_EXCEEDED`.
    fn rate_limited(&self, retry_after: Duration) -> Response {
        let mut response = error_response(SfError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        ));
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(common::retry_after_secs(retry_after)),
        );
        response
    }

    fn server_error(&self) -> Response {
        error_response(SfError::new(
            500,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1964215378-40771 \
             (-1287319131)",
        ))
    }

    fn rate_key(&self, _req: &Parts) -> String {
        "org".to_owned()
    }

    /// Salesforce's documented limit is per 24 hours (100,000 API requests for an Enterprise org).
    fn default_rate_limit(&self) -> RateLimit {
        RateLimit {
            requests: 100_000,
            window: Duration::from_secs(24 * 60 * 60),
        }
    }

    fn seed(&self, n: usize) {
        let mut rng = common::seeded_rng(self.ctx.rng_seed, "salesforce");
        let mut org = self.org();
        // Backdate seeded records, three per second, so modstamps have ties (as bulk loads do).
        let start = self.ctx.clock.now_ms() - (n as i64 / 3 + 1) * 1000;
        let stamp = |i: usize| start + (i as i64 / 3) * 1000;
        let mut account_ids = Vec::with_capacity(n);
        for i in 0..n {
            let company = common::fake_company(&mut rng);
            let person = common::fake_person(&mut rng, i);
            let address = SeedAddress::new(i, &person);
            let fields = json!({
                "Name": format!("{company} #{i}"),
                "Type": (["Prospect", "Customer - Direct", "Customer - Channel"][i % 3]),
                "Phone": person.phone,
                "Fax": person.phone,
                "AccountNumber": format!("CD{:06}", 100_000 + i),
                "Website": format!("https://www.{}.example.com", company.split(' ').next().unwrap_or("acme").to_lowercase()),
                "BillingStreet": address.street,
                "BillingCity": person.city,
                "BillingState": address.state,
                "BillingPostalCode": address.postal_code,
                "BillingCountry": person.country,
                "BillingLatitude": address.latitude,
                "BillingLongitude": address.longitude,
                "ShippingStreet": address.street,
                "ShippingCity": person.city,
                "ShippingPostalCode": address.postal_code,
                "ShippingCountry": person.country,
                "NumberOfEmployees": 10 + (i % 500),
                "AnnualRevenue": 100_000.0 + (i % 97) as f64 * 5_000.0,
                "Industry": schema::INDUSTRIES[i % schema::INDUSTRIES.len()],
                "Ownership": (["Public", "Private"][i % 2]),
                "Rating": schema::RATINGS[i % schema::RATINGS.len()],
                "AccountSource": schema::LEAD_SOURCES[i % schema::LEAD_SOURCES.len()],
                "Sic": format!("{}", 7370 + i % 10),
                "YearStarted": format!("{}", 1950 + i % 70),
                "Description": format!("{company} account seeded by the simulator."),
            });
            let id = org
                .create_at("Account", &as_map(fields), stamp(i))
                .expect("seed accounts are valid");
            account_ids.push(id);
        }
        let mut contact_ids: Vec<String> = Vec::with_capacity(n);
        for (i, account_id) in account_ids.iter().enumerate() {
            let person = common::fake_person(&mut rng, i);
            let address = SeedAddress::new(i, &person);
            let birthdate = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).expect("valid date")
                + chrono::Days::new((i as u64 * 37) % 14_000);
            let fields = json!({
                "AccountId": account_id,
                "Salutation": (["Mr.", "Ms.", "Dr."][i % 3]),
                "FirstName": person.first_name,
                "LastName": person.last_name,
                "Email": person.email,
                "Phone": person.phone,
                "MobilePhone": person.phone,
                "Title": common::fake_sentence(&mut rng, 2),
                "Department": (["Sales", "Engineering", "Finance", "Operations"][i % 4]),
                "LeadSource": schema::LEAD_SOURCES[i % schema::LEAD_SOURCES.len()],
                "Birthdate": birthdate.format("%Y-%m-%d").to_string(),
                "MailingStreet": address.street,
                "MailingCity": person.city,
                "MailingState": address.state,
                "MailingPostalCode": address.postal_code,
                "MailingCountry": person.country,
                "HasOptedOutOfEmail": i % 10 == 0,
                // One contact in 25 has a reporting line inside the seed.
                "ReportsToId": (i % 25 == 24).then(|| contact_ids[i - 1].clone()),
            });
            let id = org
                .create_at("Contact", &as_map(fields), stamp(i))
                .expect("seed contacts are valid");
            contact_ids.push(id);
        }
        for i in 0..n {
            let person = common::fake_person(&mut rng, n + i);
            let address = SeedAddress::new(n + i, &person);
            let fields = json!({
                "FirstName": person.first_name,
                "LastName": person.last_name,
                "Company": person.company,
                "Email": person.email,
                "Phone": person.phone,
                "Status": schema::LEAD_STATUSES[i % 2],
                "LeadSource": schema::LEAD_SOURCES[i % schema::LEAD_SOURCES.len()],
                "Industry": schema::INDUSTRIES[i % schema::INDUSTRIES.len()],
                "Rating": schema::RATINGS[i % schema::RATINGS.len()],
                "Street": address.street,
                "City": person.city,
                "State": address.state,
                "PostalCode": address.postal_code,
                "Country": person.country,
                "NumberOfEmployees": 5 + (i % 200),
            });
            org.create_at("Lead", &as_map(fields), stamp(i))
                .expect("seed leads are valid");
        }
        for (i, account_id) in account_ids.iter().enumerate() {
            let close = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date")
                + chrono::Days::new(i as u64 % 365);
            // Probability and forecast category come from the stage, as in a real org.
            let fields = json!({
                "AccountId": account_id,
                "Name": format!("{} deal", common::fake_sentence(&mut rng, 2)),
                "StageName": schema::STAGES[i % schema::STAGES.len()].0,
                "Amount": 1_000.0 + (i % 50) as f64 * 250.0,
                "CloseDate": close.format("%Y-%m-%d").to_string(),
                "Type": (["New Customer", "Existing Customer - Upgrade"][i % 2]),
                "LeadSource": schema::LEAD_SOURCES[i % schema::LEAD_SOURCES.len()],
                "NextStep": (["Send proposal", "Schedule demo", "Follow up"][i % 3]),
                "TotalOpportunityQuantity": (1 + i % 20) as f64,
            });
            org.create_at("Opportunity", &as_map(fields), stamp(i))
                .expect("seed opportunities are valid");
        }
        catalog::seed(&mut org, n.min(CATALOG_SEED), stamp);
    }

    fn control_routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/salesforce/fields", post(control_add_field))
            .route("/salesforce/objects", post(control_add_object))
            .route(
                "/salesforce/validation-rules",
                post(upsert::control_add_rule),
            )
            .route("/salesforce/oauth", post(control_oauth))
            .route("/salesforce/expire-tokens", post(control_expire_tokens))
            .route("/salesforce/recycle-bin", post(control_recycle_bin))
            .route(
                "/salesforce/recycle-bin/{object}/{id}",
                axum::routing::delete(control_hard_delete),
            )
            .route(
                "/salesforce/limits",
                get(limits::control_get).post(limits::control_set),
            )
            .route("/salesforce/limits/reset", post(limits::control_reset))
            .route("/salesforce/sobjects/{object}", post(control_create))
            .route(
                "/salesforce/sobjects/{object}/{id}",
                axum::routing::patch(control_update).delete(control_delete),
            )
            .merge(bulk::control_routes())
            .with_state(self)
    }
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Address parts for a seeded record, derived from its index so seeding draws no extra
/// random numbers (keeping other seeded values stable).
struct SeedAddress {
    street: String,
    state: &'static str,
    postal_code: String,
    latitude: f64,
    longitude: f64,
}

impl SeedAddress {
    fn new(i: usize, person: &common::Person) -> Self {
        const STREETS: &[&str] = &["Market St", "Main St", "High St", "Oak Ave", "Elm Rd"];
        const STATES: &[&str] = &["CA", "NY", "TX", "WA", "IL"];
        Self {
            street: format!(
                "{} {}",
                1 + (i * 7) % 999,
                STREETS[(i + person.city.len()) % STREETS.len()]
            ),
            state: STATES[i % STATES.len()],
            postal_code: format!("{:05}", 10_000 + (i * 131) % 89_999),
            latitude: 37.0 + (i % 1000) as f64 / 1000.0,
            longitude: -122.0 + (i % 1000) as f64 / 1000.0,
        }
    }
}
