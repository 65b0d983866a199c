//! HubSpot CRM v3 simulator, checked against HubSpot's published OpenAPI files
//! (`shared/reference/hubspot/v3-*.json`): the twelve standard objects (contacts, companies,
//! deals, tickets, products, line items, quotes, calls, emails, meetings, notes, tasks) and the
//! portal's custom objects (list, read, create, update, archive, search, batch
//! create/update/read/archive), the properties API, owners, pipelines, the custom object
//! schemas API and associations v4, with private-app bearer auth, HubSpot's error bodies and
//! its ten-secondly rolling rate limit.

mod association_routes;
mod associations;
mod defaults;
mod meta_routes;
mod objects;
mod owners;
mod pipelines;
mod properties;
mod rules;
mod schemas;
mod search;
mod seed;
mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::common::{self, RateLimit, SimContext, Simulator};
pub use associations::Category as AssociationCategory;
pub use objects::{ObjectType, STANDARD};
pub use pipelines::{DEAL_STAGES, TICKET_STAGES};
pub use schemas::PORTAL_ID;
pub use store::HsError;
use store::{Portal, Selection};

/// The simulated portal. Test-facing methods change it the way another HubSpot user would.
pub struct Hubspot {
    ctx: SimContext,
    portal: Mutex<Portal>,
}

impl Hubspot {
    pub fn new(ctx: SimContext) -> Self {
        let portal = Portal::new(ctx.clock.clone());
        Self {
            ctx,
            portal: Mutex::new(portal),
        }
    }

    fn portal(&self) -> MutexGuard<'_, Portal> {
        self.portal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a record as another user would; returns its id.
    pub fn create(&self, object_type: ObjectType, properties: Value) -> Result<String, HsError> {
        let created = self.portal().create(object_type, &as_object(properties)?)?;
        Ok(created["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Updates a record as another user would (bumps `updatedAt` and the modified property).
    pub fn update(
        &self,
        object_type: ObjectType,
        id: &str,
        properties: Value,
    ) -> Result<(), HsError> {
        self.portal()
            .update(object_type, id, None, &as_object(properties)?)
            .map(drop)
    }

    /// Archives a record (it then shows in `archived=true` listings).
    pub fn archive(&self, object_type: ObjectType, id: &str) {
        self.portal().archive(object_type, id);
    }

    /// A record with its default properties, `None` if missing or archived.
    pub fn get(&self, object_type: ObjectType, id: &str) -> Option<Value> {
        self.portal()
            .get(object_type, id, None, false, &Selection::Default)
            .ok()
    }

    /// Number of live (or archived) records.
    pub fn count(&self, object_type: ObjectType, archived: bool) -> usize {
        self.portal().count(object_type, archived)
    }

    /// Creates a custom property from a `PropertyCreate` body.
    pub fn create_property(
        &self,
        object_type: ObjectType,
        definition: Value,
    ) -> Result<Value, HsError> {
        self.portal().create_property(object_type, &definition)
    }

    /// A live record with every property that has a value (`None` if missing or archived).
    pub fn full_record(&self, object_type: ObjectType, id: &str) -> Option<Value> {
        self.portal().full_record(object_type, id)
    }

    /// Every live record of a type with every property that has a value.
    pub fn records(&self, object_type: ObjectType) -> Vec<Value> {
        self.portal().all_records(object_type)
    }

    /// Defines a custom object from an `ObjectSchemaEgg` body, as a portal admin would;
    /// returns its type.
    pub fn create_schema(&self, egg: Value) -> Result<ObjectType, HsError> {
        self.portal().create_schema(&egg).map(|(t, _)| t)
    }

    /// The `{objectType}` the paths use for a type (`line_items`; a custom object's name).
    pub fn path_name(&self, object_type: ObjectType) -> String {
        self.portal().store(object_type).meta.name.clone()
    }

    /// The type of an object by any name the API accepts (`tickets`, `0-5`, `pets`).
    pub fn object_type(&self, name: &str) -> Result<ObjectType, HsError> {
        self.portal().resolve(name)
    }

    /// Adds an owner (a user invited to the portal); returns its id.
    pub fn create_owner(&self, email: &str, first_name: &str, last_name: &str) -> String {
        let now = self.ctx.clock.now_ms();
        let mut portal = self.portal();
        let id = portal
            .owners
            .create(email, first_name, last_name, None, now);
        portal.refresh_options();
        id.to_string()
    }

    /// Renames an active owner.
    pub fn rename_owner(&self, id: &str, first_name: &str, last_name: &str) -> Result<(), HsError> {
        let now = self.ctx.clock.now_ms();
        let id = id.parse::<u64>().map_err(|_| HsError::not_found())?;
        match self.portal().owners.rename(id, first_name, last_name, now) {
            true => Ok(()),
            false => Err(HsError::not_found()),
        }
    }

    /// Deactivates an owner (it then lists only with `archived=true`).
    pub fn archive_owner(&self, id: &str) -> Result<(), HsError> {
        let now = self.ctx.clock.now_ms();
        let id = id.parse::<u64>().map_err(|_| HsError::not_found())?;
        let mut portal = self.portal();
        if !portal.owners.archive(id, now) {
            return Err(HsError::not_found());
        }
        portal.refresh_options();
        Ok(())
    }

    /// Ids of the active owners.
    pub fn owner_ids(&self) -> Vec<String> {
        let portal = self.portal();
        portal
            .owners
            .active_ids()
            .iter()
            .map(u64::to_string)
            .collect()
    }

    /// Links two records with association types `(category, typeId)`, as another user would.
    pub fn associate(
        &self,
        from: (ObjectType, &str),
        to: (ObjectType, &str),
        types: &[(AssociationCategory, u32)],
    ) -> Result<(), HsError> {
        self.portal().associate(from, to, types).map(drop)
    }

    /// Removes a link (every type of it).
    pub fn dissociate(&self, from: (ObjectType, &str), to: (ObjectType, &str)) {
        self.portal().dissociate(from, to, None);
    }

    /// The associations of a record to a type (`MultiAssociatedObjectWithLabel` each).
    pub fn associations_of(
        &self,
        from: ObjectType,
        id: &str,
        to: ObjectType,
    ) -> Result<Vec<Value>, HsError> {
        self.portal().associations_of(from, id, to)
    }

    /// The live pipelines of `object` (`deals`, `tickets`), rendered as the API does.
    pub fn pipelines(&self, object: &str) -> Vec<Value> {
        let portal = self.portal();
        portal
            .resolve(object)
            .and_then(|t| portal.pipelines.list(t))
            .unwrap_or_default()
    }

    /// Creates a pipeline of `object` (`deals`, `tickets`) from a `PipelineInput` body.
    pub fn create_pipeline(&self, object: &str, input: Value) -> Result<Value, HsError> {
        self.portal().create_pipeline(object, &input)
    }

    /// Changes a pipeline's label or display order (`PipelinePatchInput`).
    pub fn update_pipeline(&self, object: &str, id: &str, patch: Value) -> Result<Value, HsError> {
        self.portal().update_pipeline(object, id, &patch)
    }

    /// Adds a stage to a pipeline (`PipelineStageInput`).
    pub fn add_stage(&self, object: &str, id: &str, input: Value) -> Result<Value, HsError> {
        self.portal().add_stage(object, id, &input)
    }

    /// Deletes (archives) a pipeline.
    pub fn archive_pipeline(&self, object: &str, id: &str) -> Result<(), HsError> {
        self.portal().archive_pipeline(object, id)
    }
}

fn as_object(value: Value) -> Result<Map<String, Value>, HsError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(HsError::validation(
            "Invalid input JSON: expected an object of properties",
        )),
    }
}

fn parse_json(body: &Bytes) -> Result<Value, HsError> {
    serde_json::from_slice(body).map_err(|e| {
        HsError::validation(format!(
            "Invalid input JSON on line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// Query parameters, decoded; repeated keys are kept in order.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default()
}

fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `properties=a,b&properties=c` -> `[a, b, c]`; `None` when absent.
fn requested_properties(pairs: &[(String, String)]) -> Option<Vec<String>> {
    let names: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "properties")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    (!names.is_empty()).then_some(names)
}

fn flag(pairs: &[(String, String)], name: &str) -> bool {
    query_value(pairs, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

type Sim = State<Arc<Hubspot>>;

/// A fresh request id in UUID form, as HubSpot puts in every error.
fn correlation_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("5e9a1c0d-5e91-4c0d-9a1e-{n:012x}")
}

impl IntoResponse for HsError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id(),
            "category": self.category,
        });
        (status, Json(body)).into_response()
    }
}

/// HubSpot's documented limit for the CRM search endpoints.
pub const SEARCH_REQUESTS_PER_SECOND: u32 = 5;

const SEARCH_RATE_KEY: &str = "portal:search";

thread_local! {
    /// Set by `on_rate_limit_breach` and taken by the `rate_limited` call the framework makes
    /// right after it on the same thread, so the 429 names the policy that was breached (the
    /// search endpoints' secondly limit or the ten-secondly one). Injected 429s find it unset.
    static BREACHED_SEARCH_LIMIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn is_search(req: &Parts) -> bool {
    req.method == axum::http::Method::POST && req.uri.path().ends_with("/search")
}

async fn list(
    State(sim): Sim,
    Path(object): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let pairs = query_pairs(raw.as_deref());
    let limit = match query_value(&pairs, "limit") {
        None => 10,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| HsError::validation(format!("limit: {text} is not a valid integer")))?,
    };
    let names = requested_properties(&pairs);
    let selection = names
        .as_deref()
        .map_or(Selection::Default, Selection::Named);
    let (results, next) = sim.portal().list(
        object_type,
        limit,
        query_value(&pairs, "after"),
        flag(&pairs, "archived"),
        &selection,
    )?;
    let mut body = json!({"results": results});
    if let Some(after) = next {
        let link = format!("{}/crm/v3/objects/{object}?after={after}", sim.ctx.base_url);
        body["paging"] = json!({"next": {"after": after, "link": link}});
    }
    Ok(Json(body).into_response())
}

async fn read(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let pairs = query_pairs(raw.as_deref());
    let names = requested_properties(&pairs);
    let selection = names
        .as_deref()
        .map_or(Selection::Default, Selection::Named);
    let record = sim.portal().get(
        object_type,
        &id,
        query_value(&pairs, "idProperty"),
        flag(&pairs, "archived"),
        &selection,
    )?;
    Ok(Json(record).into_response())
}

fn body_properties(body: &Value) -> Result<&Map<String, Value>, HsError> {
    body.get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| HsError::validation("Invalid input JSON: properties is required"))
}

async fn create(
    State(sim): Sim,
    Path(object): Path<String>,
    body: Bytes,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let body = parse_json(&body)?;
    let created = sim.portal().create(object_type, body_properties(&body)?)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn update(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let pairs = query_pairs(raw.as_deref());
    let body = parse_json(&body)?;
    let updated = sim.portal().update(
        object_type,
        &id,
        query_value(&pairs, "idProperty"),
        body_properties(&body)?,
    )?;
    Ok(Json(updated).into_response())
}

async fn archive(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    sim.portal().archive(object_type, &id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn search(
    State(sim): Sim,
    Path(object): Path<String>,
    body: Bytes,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let body = parse_json(&body)?;
    let (total, results, next) = sim.portal().search(object_type, &body)?;
    let mut response = json!({"total": total, "results": results});
    if let Some(after) = next {
        response["paging"] = json!({"next": {"after": after}});
    }
    Ok(Json(response).into_response())
}

/// A batch response (`BatchResponseSimplePublicObject[WithErrors]`); 207 when some ids failed.
fn batch_response(
    ok_status: StatusCode,
    results: Vec<Value>,
    errors: Vec<Value>,
    started: &str,
    completed: &str,
) -> Response {
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": completed,
    });
    let status = if errors.is_empty() {
        ok_status
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        StatusCode::MULTI_STATUS
    };
    (status, Json(body)).into_response()
}

async fn batch(
    State(sim): Sim,
    Path((object, operation)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let body = parse_json(&body)?;
    let started = store::format_time(sim.ctx.clock.now_ms());
    let mut portal = sim.portal();
    let (ok_status, results, missing) = match operation.as_str() {
        "create" => (
            StatusCode::CREATED,
            portal.batch_create(object_type, &body)?,
            Vec::new(),
        ),
        "update" => {
            let (results, missing) = portal.batch_update(object_type, &body)?;
            (StatusCode::OK, results, missing)
        }
        "read" => {
            let archived = flag(&query_pairs(raw.as_deref()), "archived");
            let (results, missing) = portal.batch_read(object_type, &body, archived)?;
            (StatusCode::OK, results, missing)
        }
        "archive" => {
            portal.batch_archive(object_type, &body)?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        _ => return Err(HsError::not_found()),
    };
    let errors = if missing.is_empty() {
        Vec::new()
    } else {
        vec![portal.not_found_batch_error(object_type, &missing)]
    };
    let completed = store::format_time(sim.ctx.clock.now_ms());
    Ok(batch_response(
        ok_status, results, errors, &started, &completed,
    ))
}

async fn list_properties(State(sim): Sim, Path(object): Path<String>) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    Ok(Json(json!({"results": sim.portal().properties(object_type)})).into_response())
}

async fn read_property(
    State(sim): Sim,
    Path((object, name)): Path<(String, String)>,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    Ok(Json(sim.portal().property(object_type, &name)?).into_response())
}

async fn create_property(
    State(sim): Sim,
    Path(object): Path<String>,
    body: Bytes,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let body = parse_json(&body)?;
    let created = sim.portal().create_property(object_type, &body)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

// ----- control routes (under /_sim) -------------------------------------------------------

async fn control_create(
    State(sim): Sim,
    Path(object): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let created = sim.portal().create(object_type, body_properties(&body)?)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn control_update(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Response, HsError> {
    let object_type = sim.portal().resolve(&object)?;
    let updated = sim
        .portal()
        .update(object_type, &id, None, body_properties(&body)?)?;
    Ok(Json(updated).into_response())
}

impl Simulator for Hubspot {
    fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/crm/v3/objects/{object}", get(list).post(create))
            .route("/crm/v3/objects/{object}/search", post(search))
            .route("/crm/v3/objects/{object}/batch/{operation}", post(batch))
            .route(
                "/crm/v3/objects/{object}/{id}",
                get(read).patch(update).delete(archive),
            )
            .route(
                "/crm/v3/properties/{object}",
                get(list_properties).post(create_property),
            )
            .route("/crm/v3/properties/{object}/{name}", get(read_property))
            .route("/crm/v3/owners", get(meta_routes::list_owners))
            .route("/crm/v3/owners/{id}", get(meta_routes::read_owner))
            .route(
                "/crm/v3/pipelines/{object}",
                get(meta_routes::list_pipelines).post(meta_routes::create_pipeline),
            )
            .route(
                "/crm/v3/pipelines/{object}/{id}",
                get(meta_routes::read_pipeline)
                    .patch(meta_routes::update_pipeline)
                    .delete(meta_routes::archive_pipeline),
            )
            .route(
                "/crm/v3/pipelines/{object}/{id}/stages",
                get(meta_routes::list_stages).post(meta_routes::create_stage),
            )
            // HubSpot's docs use /crm/v3/schemas; its OpenAPI the crm-object-schemas path.
            .route(
                "/crm/v3/schemas",
                get(meta_routes::list_schemas).post(meta_routes::create_schema),
            )
            .route(
                "/crm-object-schemas/v3/schemas",
                get(meta_routes::list_schemas).post(meta_routes::create_schema),
            )
            .route("/crm/v3/schemas/{object}", get(meta_routes::read_schema))
            .route(
                "/crm-object-schemas/v3/schemas/{object}",
                get(meta_routes::read_schema),
            )
            .route(
                "/crm/v4/associations/{from}/{to}/batch/read",
                post(association_routes::batch_read),
            )
            .route(
                "/crm/v4/associations/{from}/{to}/batch/create",
                post(association_routes::batch_create),
            )
            .route(
                "/crm/v4/associations/{from}/{to}/batch/archive",
                post(association_routes::batch_archive),
            )
            .route(
                "/crm/v4/associations/{from}/{to}/batch/labels/archive",
                post(association_routes::batch_archive_labels),
            )
            .route(
                "/crm/v4/associations/{from}/{to}/batch/associate/default",
                post(association_routes::batch_associate_default),
            )
            .route(
                "/crm/v4/objects/{object}/{id}/associations/{to}",
                get(association_routes::list_for_object),
            )
            .route(
                "/crm/v4/objects/{object}/{id}/associations/{to}/{to_id}",
                axum::routing::put(association_routes::put_for_object)
                    .delete(association_routes::delete_for_object),
            )
            .route(
                "/crm/v4/objects/{object}/{id}/associations/default/{to}/{to_id}",
                axum::routing::put(association_routes::put_default_for_object),
            )
            .route(
                "/crm/associations/v4/{from}/{to}/labels",
                get(association_routes::list_labels).post(association_routes::create_label),
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
        let body = json!({
            "status": "error",
            "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can \
                        find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "correlationId": correlation_id(),
            "category": "INVALID_AUTHENTICATION",
        });
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
    }

    fn rate_limited(&self, retry_after: Duration) -> Response {
        let (message, policy) = if BREACHED_SEARCH_LIMIT.take() {
            ("You have reached your secondly limit.", "SECONDLY")
        } else {
            (
                "You have reached your ten_secondly_rolling limit.",
                "TEN_SECONDLY_ROLLING",
            )
        };
        let body = json!({
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(),
            "policyName": policy,
            "groupName": "publicapi:private-app:sequin-sim",
        });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(common::retry_after_secs(retry_after)),
        );
        headers.insert(
            "x-hubspot-ratelimit-interval-milliseconds",
            HeaderValue::from_static("10000"),
        );
        headers.insert(
            "x-hubspot-ratelimit-remaining",
            HeaderValue::from_static("0"),
        );
        response
    }

    fn server_error(&self) -> Response {
        let body = json!({
            "status": "error",
            "message": "internal error",
            "correlationId": correlation_id(),
            "category": "INTERNAL_ERROR",
        });
        (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
    }

    /// Search requests have their own, stricter limit, so their own bucket.
    fn rate_key(&self, req: &Parts) -> String {
        if is_search(req) {
            SEARCH_RATE_KEY
        } else {
            "portal"
        }
        .to_owned()
    }

    /// Search endpoints: 5 requests per second (or the configured limit if stricter).
    fn rate_limit_for(&self, req: &Parts, configured: RateLimit) -> RateLimit {
        let search = RateLimit::per_second(SEARCH_REQUESTS_PER_SECOND);
        let configured_rate = f64::from(configured.requests) / configured.window.as_secs_f64();
        if is_search(req) && configured_rate > f64::from(SEARCH_REQUESTS_PER_SECOND) {
            search
        } else {
            configured
        }
    }

    fn on_rate_limit_breach(&self, key: &str, retry_after: Duration) -> Duration {
        BREACHED_SEARCH_LIMIT.set(key == SEARCH_RATE_KEY);
        retry_after
    }

    /// Private apps: 100 requests per rolling 10 seconds.
    fn default_rate_limit(&self) -> RateLimit {
        RateLimit {
            requests: 100,
            window: Duration::from_secs(10),
        }
    }

    fn seed(&self, n: usize) {
        let mut rng = common::seeded_rng(self.ctx.rng_seed, "hubspot");
        let now = self.ctx.clock.now_ms();
        seed::seed(&mut self.portal(), &mut rng, n, now);
    }

    fn control_routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/hubspot/objects/{object}", post(control_create))
            .route(
                "/hubspot/objects/{object}/{id}",
                axum::routing::patch(control_update).delete(archive),
            )
            .route("/hubspot/properties/{object}", post(create_property))
            .route("/hubspot/schemas", post(meta_routes::create_schema))
            .with_state(self)
    }
}
