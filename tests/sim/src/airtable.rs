//! Airtable Web API simulator (written from Airtable's public Web API documentation): base
//! schemas (`/v0/meta/bases/{base}/tables`, adding fields), record listing with `pageSize`,
//! `offset` iterators, `filterByFormula`, `fields[]`, `sort`, `returnFieldsByFieldId`, record
//! create/update (PATCH partial, PUT destructive)/delete of up to 10 records, `typecast`, cell
//! validation, Airtable's error bodies, and the 5 requests/s per base limit with its 30 s wait.

mod formula;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::common::{self, RateLimit, SimContext, Simulator};
pub use store::{AtError, FieldType};
use store::{ListRequest, RenderOptions, Workspace};

/// The base seeded at start.
pub const DEMO_BASE_ID: &str = "appSequinDemo0001";
/// How long Airtable makes a client wait after it exceeds the rate limit.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// A seeded field: name, type and (for selects) choices.
type FieldSpec = (&'static str, FieldType, &'static [&'static str]);

/// The simulated workspace. Test-facing methods change it the way another collaborator would.
pub struct Airtable {
    ctx: SimContext,
    workspace: Mutex<Workspace>,
    /// Bases in their post-breach wait, until the instant given.
    penalties: Mutex<HashMap<String, Instant>>,
    rate_limit_wait: Mutex<Duration>,
}

impl Airtable {
    pub fn new(ctx: SimContext) -> Self {
        let mut workspace = Workspace::new(
            ctx.clock.clone(),
            common::seeded_rng(ctx.rng_seed, "airtable"),
        );
        workspace.bases.push(store::Base {
            id: DEMO_BASE_ID.to_owned(),
            name: "Sequin Demo".to_owned(),
            tables: Vec::new(),
        });
        use FieldType as T;
        let tables: [(&str, Vec<FieldSpec>); 3] = [
            (
                "Contacts",
                vec![
                    ("Name", T::SingleLineText, &[]),
                    ("Email", T::Email, &[]),
                    ("Phone", T::PhoneNumber, &[]),
                    ("Company", T::SingleLineText, &[]),
                    ("Status", T::SingleSelect, &["Lead", "Customer", "Churned"]),
                    ("Notes", T::MultilineText, &[]),
                    ("Subscribed", T::Checkbox, &[]),
                    ("Created", T::CreatedTime, &[]),
                    ("Last Modified", T::LastModifiedTime, &[]),
                ],
            ),
            (
                "Deals",
                vec![
                    ("Name", T::SingleLineText, &[]),
                    ("Amount", T::Currency, &[]),
                    (
                        "Stage",
                        T::SingleSelect,
                        &["Prospecting", "Negotiation", "Won", "Lost"],
                    ),
                    ("Close Date", T::Date, &[]),
                    ("Probability", T::Percent, &[]),
                    ("Website", T::Url, &[]),
                    ("Last Modified", T::LastModifiedTime, &[]),
                ],
            ),
            (
                "Projects",
                vec![
                    ("Name", T::SingleLineText, &[]),
                    ("Description", T::MultilineText, &[]),
                    ("Start", T::DateTime, &[]),
                    (
                        "Tags",
                        T::MultipleSelects,
                        &["internal", "client", "urgent"],
                    ),
                    ("Budget", T::Number, &[]),
                    ("Done", T::Checkbox, &[]),
                ],
            ),
        ];
        for (name, fields) in tables {
            workspace
                .add_table(DEMO_BASE_ID, name, &fields)
                .expect("the demo base exists");
        }
        Self {
            ctx,
            workspace: Mutex::new(workspace),
            penalties: Mutex::new(HashMap::new()),
            rate_limit_wait: Mutex::new(DEFAULT_RATE_LIMIT_WAIT),
        }
    }

    fn workspace(&self) -> MutexGuard<'_, Workspace> {
        self.workspace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a base stays blocked after a rate-limit breach (30 s in production; tests
    /// shorten it).
    pub fn set_rate_limit_wait(&self, wait: Duration) {
        *self
            .rate_limit_wait
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = wait;
    }

    /// Creates a record as another collaborator would; returns its id.
    pub fn create(&self, base: &str, table: &str, fields: Value) -> Result<String, AtError> {
        let fields = as_object(fields)?;
        let created =
            self.workspace()
                .create(base, table, &[fields], false, &RenderOptions::default())?;
        Ok(created[0]["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Updates a record's cells (PATCH semantics), bumping its last-modified time.
    pub fn update(&self, base: &str, table: &str, id: &str, fields: Value) -> Result<(), AtError> {
        let fields = as_object(fields)?;
        self.workspace()
            .update(
                base,
                table,
                &[(id.to_owned(), fields)],
                false,
                false,
                &RenderOptions::default(),
            )
            .map(drop)
    }

    /// Deletes a record (Airtable keeps no trace of it).
    pub fn delete(&self, base: &str, table: &str, id: &str) -> Result<(), AtError> {
        self.workspace()
            .delete(base, table, &[id.to_owned()])
            .map(drop)
    }

    /// A record as `GET` renders it.
    pub fn get(&self, base: &str, table: &str, id: &str) -> Option<Value> {
        self.workspace()
            .get(base, table, id, &RenderOptions::default())
            .ok()
    }

    pub fn count(&self, base: &str, table: &str) -> usize {
        self.workspace().count(base, table)
    }

    /// Adds a field (`{"name","type","options"}`) to a table; returns its schema.
    pub fn add_field(&self, base: &str, table: &str, definition: Value) -> Result<Value, AtError> {
        self.workspace().add_field(base, table, &definition)
    }
}

fn as_object(value: Value) -> Result<Map<String, Value>, AtError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(invalid_request("fields must be an object")),
    }
}

fn invalid_request(detail: &str) -> AtError {
    AtError::new(
        422,
        "INVALID_REQUEST_UNKNOWN",
        format!(
            "Invalid request: parameter validation failed. Check your request data. ({detail})"
        ),
    )
}

fn error_response(error: AtError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    (status, Json(error.to_json())).into_response()
}

impl IntoResponse for AtError {
    fn into_response(self) -> Response {
        error_response(self)
    }
}

fn parse_json(body: &Bytes) -> Result<Value, AtError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| invalid_request(&format!("invalid JSON: {e}")))
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default()
}

fn truthy_param(value: &str) -> bool {
    matches!(value, "true" | "1")
}

/// Builds a list request from query parameters (`fields[]`, `sort[0][field]`, ...).
fn list_request_from_query(pairs: &[(String, String)]) -> Result<ListRequest, AtError> {
    let mut request = ListRequest::default();
    let mut sorts: Vec<(usize, Option<String>, bool)> = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "pageSize" => {
                request.page_size = Some(
                    value
                        .parse()
                        .map_err(|_| invalid_request("pageSize must be a number"))?,
                );
            }
            "maxRecords" => {
                request.max_records = Some(
                    value
                        .parse()
                        .map_err(|_| invalid_request("maxRecords must be a number"))?,
                );
            }
            "offset" => request.offset = Some(value.clone()),
            "filterByFormula" => request.filter_by_formula = Some(value.clone()),
            "fields[]" | "fields" => request.fields.push(value.clone()),
            "returnFieldsByFieldId" => request.return_fields_by_field_id = truthy_param(value),
            _ => {
                if let Some(rest) = key.strip_prefix("sort[") {
                    let (index, attribute) = rest.split_once("][").ok_or_else(|| {
                        invalid_request("sort must be sort[n][field] / sort[n][direction]")
                    })?;
                    let index: usize = index
                        .parse()
                        .map_err(|_| invalid_request("sort index must be a number"))?;
                    let position = match sorts.iter().position(|(i, _, _)| *i == index) {
                        Some(p) => p,
                        None => {
                            sorts.push((index, None, false));
                            sorts.len() - 1
                        }
                    };
                    match attribute.trim_end_matches(']') {
                        "field" => sorts[position].1 = Some(value.clone()),
                        "direction" => sorts[position].2 = value.eq_ignore_ascii_case("desc"),
                        _ => {
                            return Err(invalid_request("sort attributes are field and direction"));
                        }
                    }
                }
            }
        }
    }
    sorts.sort_by_key(|(index, _, _)| *index);
    request.sort = sorts
        .into_iter()
        .map(|(_, field, descending)| {
            field
                .map(|f| (f, descending))
                .ok_or_else(|| invalid_request("sort needs a field"))
        })
        .collect::<Result<_, _>>()?;
    Ok(request)
}

/// Builds a list request from a `listRecords` JSON body.
fn list_request_from_body(body: &Value) -> Result<ListRequest, AtError> {
    let number = |key: &str| body.get(key).and_then(Value::as_u64).map(|n| n as usize);
    Ok(ListRequest {
        page_size: number("pageSize"),
        max_records: number("maxRecords"),
        offset: body
            .get("offset")
            .and_then(Value::as_str)
            .map(str::to_owned),
        filter_by_formula: body
            .get("filterByFormula")
            .and_then(Value::as_str)
            .map(str::to_owned),
        fields: body
            .get("fields")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        sort: body
            .get("sort")
            .and_then(Value::as_array)
            .map(|sorts| {
                sorts
                    .iter()
                    .filter_map(|s| {
                        let field = s.get("field").and_then(Value::as_str)?;
                        let descending = s.get("direction").and_then(Value::as_str) == Some("desc");
                        Some((field.to_owned(), descending))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        return_fields_by_field_id: body
            .get("returnFieldsByFieldId")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

type Sim = State<Arc<Airtable>>;

fn list_response(
    sim: &Airtable,
    base: &str,
    table: &str,
    request: &ListRequest,
) -> Result<Response, AtError> {
    let (records, offset) = sim.workspace().list(base, table, request)?;
    let mut body = json!({"records": records});
    if let Some(offset) = offset {
        body["offset"] = json!(offset);
    }
    Ok(Json(body).into_response())
}

async fn list(
    State(sim): Sim,
    Path((base, table)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AtError> {
    let request = list_request_from_query(&query_pairs(raw.as_deref()))?;
    list_response(&sim, &base, &table, &request)
}

async fn list_post(
    State(sim): Sim,
    Path((base, table)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AtError> {
    let request = list_request_from_body(&parse_json(&body)?)?;
    list_response(&sim, &base, &table, &request)
}

fn render_options(body: &Value) -> RenderOptions {
    RenderOptions {
        field_ids: None,
        by_field_id: body
            .get("returnFieldsByFieldId")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

fn check_record_count(count: usize) -> Result<(), AtError> {
    if count > store::RECORDS_PER_REQUEST {
        return Err(AtError::new(
            422,
            "INVALID_RECORDS",
            format!(
                "You can only send up to {} records per request; got {count}",
                store::RECORDS_PER_REQUEST
            ),
        ));
    }
    Ok(())
}

fn record_fields(record: &Value) -> Result<Map<String, Value>, AtError> {
    match record.get("fields") {
        Some(Value::Object(fields)) => Ok(fields.clone()),
        None => Ok(Map::new()),
        Some(_) => Err(invalid_request("fields must be an object")),
    }
}

async fn create(
    State(sim): Sim,
    Path((base, table)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AtError> {
    let body = parse_json(&body)?;
    let typecast = body
        .get("typecast")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let options = render_options(&body);
    // Either `{"records":[{"fields":..}]}` or a single `{"fields":..}`.
    if let Some(records) = body.get("records") {
        let records = records
            .as_array()
            .ok_or_else(|| invalid_request("records must be an array"))?;
        check_record_count(records.len())?;
        let inputs = records
            .iter()
            .map(record_fields)
            .collect::<Result<Vec<_>, _>>()?;
        let created = sim
            .workspace()
            .create(&base, &table, &inputs, typecast, &options)?;
        Ok(Json(json!({"records": created})).into_response())
    } else {
        let fields = record_fields(&body)?;
        let mut created = sim
            .workspace()
            .create(&base, &table, &[fields], typecast, &options)?;
        Ok(Json(created.remove(0)).into_response())
    }
}

fn update_many(
    sim: &Airtable,
    base: &str,
    table: &str,
    body: &Bytes,
    destructive: bool,
) -> Result<Response, AtError> {
    let body = parse_json(body)?;
    let typecast = body
        .get("typecast")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            AtError::new(
                422,
                "INVALID_REQUEST_MISSING_FIELDS",
                "Could not find field \"records\" in the request body",
            )
        })?;
    check_record_count(records.len())?;
    let updates = records
        .iter()
        .map(|record| {
            let id = record
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid_request("each record needs an id"))?;
            Ok((id.to_owned(), record_fields(record)?))
        })
        .collect::<Result<Vec<_>, AtError>>()?;
    let updated = sim.workspace().update(
        base,
        table,
        &updates,
        destructive,
        typecast,
        &render_options(&body),
    )?;
    Ok(Json(json!({"records": updated})).into_response())
}

async fn patch_many(
    State(sim): Sim,
    Path((base, table)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AtError> {
    update_many(&sim, &base, &table, &body, false)
}

async fn put_many(
    State(sim): Sim,
    Path((base, table)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AtError> {
    update_many(&sim, &base, &table, &body, true)
}

async fn delete_many(
    State(sim): Sim,
    Path((base, table)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AtError> {
    let ids: Vec<String> = query_pairs(raw.as_deref())
        .into_iter()
        .filter(|(k, _)| k == "records[]" || k == "records")
        .map(|(_, v)| v)
        .collect();
    if ids.is_empty() {
        return Err(invalid_request("records[] is required"));
    }
    check_record_count(ids.len())?;
    let deleted = sim.workspace().delete(&base, &table, &ids)?;
    Ok(Json(json!({"records": deleted})).into_response())
}

async fn get_record(
    State(sim): Sim,
    Path((base, table, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AtError> {
    let pairs = query_pairs(raw.as_deref());
    let options = RenderOptions {
        field_ids: None,
        by_field_id: pairs
            .iter()
            .any(|(k, v)| k == "returnFieldsByFieldId" && truthy_param(v)),
    };
    Ok(Json(sim.workspace().get(&base, &table, &id, &options)?).into_response())
}

fn update_one(
    sim: &Airtable,
    base: &str,
    table: &str,
    id: &str,
    body: &Bytes,
    destructive: bool,
) -> Result<Response, AtError> {
    let body = parse_json(body)?;
    let typecast = body
        .get("typecast")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let updates = [(id.to_owned(), record_fields(&body)?)];
    let mut updated = sim.workspace().update(
        base,
        table,
        &updates,
        destructive,
        typecast,
        &render_options(&body),
    )?;
    Ok(Json(updated.remove(0)).into_response())
}

async fn patch_one(
    State(sim): Sim,
    Path((base, table, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, AtError> {
    update_one(&sim, &base, &table, &id, &body, false)
}

async fn put_one(
    State(sim): Sim,
    Path((base, table, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, AtError> {
    update_one(&sim, &base, &table, &id, &body, true)
}

async fn delete_one(
    State(sim): Sim,
    Path((base, table, id)): Path<(String, String, String)>,
) -> Result<Response, AtError> {
    let mut deleted = sim.workspace().delete(&base, &table, &[id])?;
    Ok(Json(deleted.remove(0)).into_response())
}

async fn meta_bases(State(sim): Sim) -> Response {
    let bases: Vec<Value> = sim
        .workspace()
        .bases
        .iter()
        .map(|b| json!({"id": b.id, "name": b.name, "permissionLevel": "create"}))
        .collect();
    Json(json!({"bases": bases})).into_response()
}

async fn meta_tables(State(sim): Sim, Path(base): Path<String>) -> Result<Response, AtError> {
    let workspace = sim.workspace();
    let tables: Vec<Value> = workspace
        .base(&base)?
        .tables
        .iter()
        .map(store::Table::to_json)
        .collect();
    Ok(Json(json!({"tables": tables})).into_response())
}

async fn meta_add_field(
    State(sim): Sim,
    Path((base, table)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AtError> {
    let body = parse_json(&body)?;
    Ok(Json(sim.add_field(&base, &table, body)?).into_response())
}

// ----- control routes (under /_sim) -------------------------------------------------------

async fn control_create(
    State(sim): Sim,
    Path((base, table)): Path<(String, String)>,
    Json(fields): Json<Value>,
) -> Result<Response, AtError> {
    sim.create(&base, &table, fields)
        .map(|id| Json(json!({"id": id})).into_response())
}

async fn control_update(
    State(sim): Sim,
    Path((base, table, id)): Path<(String, String, String)>,
    Json(fields): Json<Value>,
) -> Result<Response, AtError> {
    sim.update(&base, &table, &id, fields)
        .map(|()| StatusCode::NO_CONTENT.into_response())
}

async fn control_delete(
    State(sim): Sim,
    Path((base, table, id)): Path<(String, String, String)>,
) -> Result<Response, AtError> {
    sim.delete(&base, &table, &id)
        .map(|()| StatusCode::NO_CONTENT.into_response())
}

async fn control_rate_limit_wait(State(sim): Sim, Json(body): Json<Value>) -> Response {
    match body.get("waitMs").and_then(Value::as_u64) {
        Some(ms) => {
            sim.set_rate_limit_wait(Duration::from_millis(ms));
            StatusCode::NO_CONTENT.into_response()
        }
        None => error_response(invalid_request("waitMs (milliseconds) is required")),
    }
}

/// The base a request addresses (`/v0/{base}/...` or `/v0/meta/bases/{base}/...`).
fn base_of(path: &str) -> &str {
    let mut segments = path.trim_start_matches('/').split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("v0"), Some("meta"), Some("bases"), Some(base)) => base,
        (Some("v0"), Some("meta"), _, _) => "meta",
        (Some("v0"), Some(base), _, _) => base,
        _ => "",
    }
}

impl Simulator for Airtable {
    fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v0/meta/bases", get(meta_bases))
            .route("/v0/meta/bases/{base}/tables", get(meta_tables))
            .route(
                "/v0/meta/bases/{base}/tables/{table}/fields",
                post(meta_add_field),
            )
            .route(
                "/v0/{base}/{table}",
                get(list)
                    .post(create)
                    .patch(patch_many)
                    .put(put_many)
                    .delete(delete_many),
            )
            .route("/v0/{base}/{table}/listRecords", post(list_post))
            .route(
                "/v0/{base}/{table}/{record}",
                get(get_record)
                    .patch(patch_one)
                    .put(put_one)
                    .delete(delete_one),
            )
            .with_state(self)
    }

    fn authorized(&self, req: &Parts) -> bool {
        req.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| token.trim() == self.ctx.token)
    }

    fn unauthorized(&self) -> Response {
        error_response(AtError::new(
            401,
            "AUTHENTICATION_REQUIRED",
            "Authentication required",
        ))
    }

    fn rate_limited(&self, retry_after: Duration) -> Response {
        let body = json!({"errors": [{"error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later"}]});
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(common::retry_after_secs(retry_after)),
        );
        response
    }

    fn server_error(&self) -> Response {
        error_response(AtError::new(
            503,
            "SERVICE_UNAVAILABLE",
            "The service is temporarily unavailable. Please retry shortly.",
        ))
    }

    /// Airtable limits each base separately.
    fn rate_key(&self, req: &Parts) -> String {
        base_of(req.uri.path()).to_owned()
    }

    fn default_rate_limit(&self) -> RateLimit {
        RateLimit::per_second(5)
    }

    fn on_rate_limit_breach(&self, key: &str, _retry_after: Duration) -> Duration {
        let wait = *self
            .rate_limit_wait
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.penalties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), Instant::now() + wait);
        wait
    }

    fn rate_penalty(&self, key: &str) -> Option<Duration> {
        let mut penalties = self.penalties.lock().unwrap_or_else(|e| e.into_inner());
        let until = *penalties.get(key)?;
        let now = Instant::now();
        if now < until {
            Some(until - now)
        } else {
            penalties.remove(key);
            None
        }
    }

    fn seed(&self, n: usize) {
        let mut rng = common::seeded_rng(self.ctx.rng_seed, "airtable-data");
        let mut workspace = self.workspace();
        // Backdated, three records per second, so modified times have ties.
        let start = self.ctx.clock.now_ms() - (n as i64 / 3 + 1) * 1000;
        let stamp = |i: usize| start + (i as i64 / 3) * 1000;
        let options = RenderOptions::default();
        let mut create = |table: &str, fields: Value, created: i64| {
            let fields = as_object(fields).expect("seed fields are an object");
            workspace
                .create_at(DEMO_BASE_ID, table, &[fields], false, &options, created)
                .expect("seed records are valid");
        };
        for i in 0..n {
            let person = common::fake_person(&mut rng, i);
            let status = ["Lead", "Customer", "Churned"][i % 3];
            let fields = json!({
                "Name": person.full_name(),
                "Email": person.email,
                "Phone": person.phone,
                "Company": person.company,
                "Status": status,
                "Subscribed": i % 2 == 0,
            });
            create("Contacts", fields, stamp(i));
        }
        for i in 0..n {
            let stage = ["Prospecting", "Negotiation", "Won", "Lost"][i % 4];
            let close = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date")
                + chrono::Days::new(i as u64 % 365);
            let fields = json!({
                "Name": format!("{} deal", common::fake_sentence(&mut rng, 2)),
                "Amount": 1000 + (i % 50) * 250,
                "Stage": stage,
                "Close Date": close.format("%Y-%m-%d").to_string(),
                "Probability": (i % 10) as f64 / 10.0,
            });
            create("Deals", fields, stamp(i));
        }
        for i in 0..n {
            let tag = ["internal", "client", "urgent"][i % 3];
            let fields = json!({
                "Name": common::fake_sentence(&mut rng, 3),
                "Description": common::fake_sentence(&mut rng, 8),
                "Start": store::format_time(stamp(i)),
                "Tags": [tag],
                "Budget": (i % 100) * 1000,
                "Done": i % 5 == 0,
            });
            create("Projects", fields, stamp(i));
        }
    }

    fn control_routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/airtable/rate-limit-wait", post(control_rate_limit_wait))
            .route("/airtable/{base}/{table}", post(control_create))
            .route("/airtable/{base}/{table}/fields", post(meta_add_field))
            .route(
                "/airtable/{base}/{table}/{record}",
                axum::routing::patch(control_update).delete(control_delete),
            )
            .with_state(self)
    }
}
