//! Bulk API 2.0 query jobs, written from Salesforce's "Bulk API 2.0 and Bulk API Developer
//! Guide" (Create a Query Job, Get Information About a Query Job, Abort a Query Job, Delete a
//! Query Job, Get Results for a Query Job) and the REST API's `limits/recordCount`.
//!
//! - `POST /services/data/vXX.X/jobs/query` takes `{"operation": "query"|"queryAll", "query",
//!   "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}` and answers the job
//!   in state `UploadComplete`. A query that does not parse or names an unknown field is refused
//!   with 400 and the SOQL error; so are compound (address) fields, which Bulk queries cannot
//!   select, and objects the test marked unsupported (`INVALIDENTITY`).
//! - `GET .../jobs/query/{jobId}`: the job moves `UploadComplete -> InProgress -> JobComplete`
//!   as real time passes (a base time plus a time per record); `Failed` (with `errorMessage`)
//!   when the test fails it, `Aborted` after a `PATCH {"state": "Aborted"}`.
//! - `DELETE .../jobs/query/{jobId}`: 204, and the job is gone (404 afterwards).
//! - `GET .../jobs/query/{jobId}/results?locator=&maxRecords=`: CSV (every value quoted,
//!   quotes doubled, newlines kept inside quotes, null as an empty value, booleans `true`/
//!   `false`, datetimes `2024-01-01T00:00:00.000Z`) with a header row on every set, headers
//!   `Sforce-NumberOfRecords` and `Sforce-Locator` (the literal `null` after the last set). A
//!   locator is an opaque string that stays valid while the job exists.
//! - Results expire: after the test expires them the job is unknown (404), as once Salesforce
//!   has deleted a job's results.
//! - `GET .../limits/recordCount?sObjects=A,B`: `{"sObjects": [{"count", "name"}]}`.
//!
//! The job's records are chosen when it is created (the ids, in the query's order); their
//! values are read when the results are. Control routes under `/_sim/salesforce/bulk`: the jobs
//! created (their count feeds `DailyBulkV2QueryJobs`), expiry, failure, settings (processing
//! time, a cap on records per set, a delay per results request) and fast seeding of N records
//! of one object.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::schema::{FieldType, LEAD_STATUSES};
use super::store::{ORG_ID, SfError, USER_ID, format_datetime};
use super::{Salesforce, Sim, check_version, parse_body, query_param};

/// Records per results set when the request names no `maxRecords`.
const DEFAULT_MAX_RECORDS: usize = 50_000;
/// A job is `UploadComplete` this long before it is `InProgress`.
const QUEUED_FOR: Duration = Duration::from_millis(50);

/// How jobs behave (set by tests through [`Salesforce::set_bulk_settings`] or the control
/// route).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BulkSettings {
    /// Time from creation to `JobComplete`, besides the time per record.
    pub processing_ms: u64,
    /// Processing time per selected record, in microseconds.
    pub per_record_us: u64,
    /// Records per results set at most, whatever `maxRecords` asks (Salesforce also cuts sets
    /// by size).
    pub max_page_records: Option<usize>,
    /// Delay before each results response.
    pub results_delay_ms: u64,
}

impl Default for BulkSettings {
    fn default() -> Self {
        BulkSettings {
            processing_ms: 300,
            per_record_us: 1,
            max_page_records: None,
            results_delay_ms: 0,
        }
    }
}

/// A job as the test sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulkJobInfo {
    pub id: String,
    pub object: String,
    pub query: String,
    pub state: String,
    pub records: usize,
}

struct Job {
    id: String,
    operation: String,
    /// Index of the object in the org.
    object: usize,
    object_name: String,
    fields: Vec<String>,
    ids: Vec<String>,
    created: Instant,
    created_ms: i64,
    version: String,
    /// `Aborted` or `Failed`, once so.
    ended: Option<&'static str>,
    error: Option<String>,
}

/// Every job of the org, plus what tests set.
#[derive(Default)]
pub struct BulkJobs {
    state: Mutex<JobsState>,
}

#[derive(Default)]
struct JobsState {
    jobs: BTreeMap<String, Job>,
    /// Every job created, in order (deleted and expired ones included).
    created: Vec<BulkJobInfo>,
    next: u64,
    settings: BulkSettings,
    /// Objects whose jobs are refused (`INVALIDENTITY`).
    unsupported: BTreeSet<String>,
}

impl BulkJobs {
    fn lock(&self) -> MutexGuard<'_, JobsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl JobsState {
    fn state_of(&self, job: &Job) -> &'static str {
        if let Some(ended) = job.ended {
            return ended;
        }
        let elapsed = job.created.elapsed();
        let processing = Duration::from_millis(self.settings.processing_ms)
            + Duration::from_micros(self.settings.per_record_us * job.ids.len() as u64);
        if elapsed < QUEUED_FOR {
            "UploadComplete"
        } else if elapsed < QUEUED_FOR + processing {
            "InProgress"
        } else {
            "JobComplete"
        }
    }

    fn job(&self, id: &str) -> Result<&Job, SfError> {
        self.jobs.get(id).ok_or_else(SfError::not_found)
    }

    /// The job as `Create a Query Job` and `Get Information About a Query Job` render it.
    fn info(&self, job: &Job, detailed: bool) -> Value {
        let state = self.state_of(job);
        let stamp = format_datetime(job.created_ms);
        let mut v = json!({
            "id": job.id,
            "operation": job.operation,
            "object": job.object_name,
            "createdById": USER_ID,
            "createdDate": stamp,
            "systemModstamp": stamp,
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": job.version.trim_start_matches('v').parse::<f64>().unwrap_or(59.0),
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        });
        if detailed {
            let done = state == "JobComplete";
            v["jobType"] = json!("V2Query");
            v["numberRecordsProcessed"] = json!(if done { job.ids.len() } else { 0 });
            v["retries"] = json!(0);
            v["totalProcessingTime"] = json!(job.created.elapsed().as_millis() as u64);
            v["isPkChunkingSupported"] = json!(true);
            if let Some(e) = &job.error {
                v["errorMessage"] = json!(e);
            }
        }
        v
    }
}

impl Salesforce {
    /// Every Bulk API 2.0 query job created so far, in order (deleted and expired ones too).
    pub fn bulk_jobs(&self) -> Vec<BulkJobInfo> {
        let state = self.bulk.lock();
        state
            .created
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.state = match state.jobs.get(&c.id) {
                    Some(job) => state.state_of(job).to_string(),
                    None => "Deleted".to_string(),
                };
                c
            })
            .collect()
    }

    /// The ids of `object`'s live records, in Id order (what a job's results list).
    pub fn ids(&self, object: &str) -> Vec<String> {
        self.org()
            .select(&format!("SELECT Id FROM {object} ORDER BY Id ASC"), false)
            .map(|(_, _, ids)| ids)
            .unwrap_or_default()
    }

    /// Query jobs created so far (what `DailyBulkV2QueryJobs` counts).
    pub fn bulk_jobs_created(&self) -> usize {
        self.bulk.lock().created.len()
    }

    /// How jobs behave from now on.
    pub fn set_bulk_settings(&self, settings: BulkSettings) {
        self.bulk.lock().settings = settings;
    }

    /// Expires every job's results: the jobs become unknown, as after Salesforce deletes them.
    pub fn expire_bulk_results(&self) {
        self.bulk.lock().jobs.clear();
    }

    /// Fails a job as a query that fails while it runs does (`Failed`, with `errorMessage`).
    pub fn fail_bulk_job(&self, id: &str) -> Result<(), SfError> {
        let mut state = self.bulk.lock();
        let job = state.jobs.get_mut(id).ok_or_else(SfError::not_found)?;
        job.ended = Some("Failed");
        job.error = Some("InternalServerError : retried more than 15 times".into());
        Ok(())
    }

    /// Refuses query jobs on `object` from now on, as for an object Bulk API does not support.
    pub fn refuse_bulk_object(&self, object: &str) {
        self.bulk
            .lock()
            .unsupported
            .insert(object.to_ascii_lowercase());
    }

    /// Creates `count` records of `object` (Account, Contact, Lead or Opportunity) with simple
    /// varied values, fast: the benchmarks' million records.
    pub fn seed_bulk(&self, object: &str, count: usize) -> Result<(), SfError> {
        let mut org = self.org();
        let start = self.ctx.clock.now_ms() - (count as i64 / 3 + 1) * 1000;
        for i in 0..count {
            let fields = seed_fields(object, i)?;
            org.create_at(object, &fields, start + (i as i64 / 3) * 1000)?;
        }
        Ok(())
    }
}

/// The refresh token a simulator started with API token `token` accepts at start (for a
/// process that knows only the token its child simulator printed).
pub fn refresh_token_for(token: &str) -> String {
    super::initial_refresh_token(token)
}

/// The values of the `i`th seeded record of `object`.
fn seed_fields(object: &str, i: usize) -> Result<serde_json::Map<String, Value>, SfError> {
    let v = match object.to_ascii_lowercase().as_str() {
        "account" => json!({
            "Name": format!("Account {i}, Ltd."),
            "NumberOfEmployees": 10 + i % 500,
            "AnnualRevenue": 1000.0 + (i % 97) as f64 * 12.5,
            "Description": if i.is_multiple_of(10) { Value::Null } else { json!(format!("Seeded \"bulk\" account\nline {i}")) },
        }),
        "contact" => json!({
            "LastName": format!("Contact {i}"),
            "Email": format!("contact{i}@example.com"),
            "HasOptedOutOfEmail": i.is_multiple_of(2),
        }),
        "lead" => json!({
            "LastName": format!("Lead {i}"),
            "FirstName": format!("Ada, {}", i % 1000),
            "Company": format!("Company \"{}\"", i % 1000),
            "Email": format!("lead{i}@example.com"),
            "Status": LEAD_STATUSES[i % 2],
            "NumberOfEmployees": 5 + i % 200,
        }),
        "opportunity" => json!({
            "Name": format!("Deal {i}"),
            "StageName": "Prospecting",
            "CloseDate": "2025-06-30",
            "Amount": 100.0 + (i % 50) as f64 * 2.5,
        }),
        _ => {
            return Err(SfError::new(
                400,
                "INVALID_TYPE",
                format!("cannot seed {object}: use Account, Contact, Lead or Opportunity"),
            ));
        }
    };
    match v {
        Value::Object(m) => Ok(m),
        _ => unreachable!("a JSON object"),
    }
}

// ----- API routes ---------------------------------------------------------------------------

/// The Bulk API 2.0 query and record-count routes, under `data` (`/services/data/{version}`).
pub(super) fn routes(data: &str) -> Router<Arc<Salesforce>> {
    Router::new()
        .route(&format!("{data}/jobs/query"), post(create_job))
        .route(
            &format!("{data}/jobs/query/{{job}}"),
            get(job_info).patch(abort_job).delete(delete_job),
        )
        .route(&format!("{data}/jobs/query/{{job}}/results"), get(results))
        .route(&format!("{data}/limits/recordCount"), get(record_count))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateJob {
    operation: Option<String>,
    query: Option<String>,
    content_type: Option<String>,
    column_delimiter: Option<String>,
    line_ending: Option<String>,
}

fn invalid_job(message: impl Into<String>) -> SfError {
    SfError::new(400, "INVALIDJOB", message)
}

async fn create_job(
    State(sim): Sim,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let request: CreateJob = serde_json::from_value(parse_body(&body)?)
        .map_err(|e| SfError::new(400, "JSON_PARSER_ERROR", e.to_string()))?;
    let operation = request.operation.unwrap_or_default();
    if operation != "query" && operation != "queryAll" {
        return Err(invalid_job(format!(
            "Invalid operation: '{operation}'; use query or queryAll"
        )));
    }
    for (what, value, only) in [
        ("contentType", &request.content_type, "CSV"),
        ("columnDelimiter", &request.column_delimiter, "COMMA"),
        ("lineEnding", &request.line_ending, "LF"),
    ] {
        if value.as_deref().is_some_and(|v| v != only) {
            return Err(invalid_job(format!(
                "The simulator serves {what} {only} only"
            )));
        }
    }
    let query = request
        .query
        .ok_or_else(|| invalid_job("A query is required"))?;
    let (object, fields, ids) = sim.org().select(&query, operation == "queryAll")?;
    let org = sim.org();
    let def = org.object_def_at(object);
    if sim
        .bulk
        .lock()
        .unsupported
        .contains(&def.name.to_ascii_lowercase())
    {
        return Err(SfError::new(
            400,
            "INVALIDENTITY",
            format!("Entity '{}' is not supported by the Bulk API.", def.name),
        ));
    }
    if let Some(f) = fields.iter().find(|f| {
        def.field(f)
            .is_some_and(|d| d.field_type == FieldType::Address)
    }) {
        return Err(invalid_job(format!(
            "Selecting compound data not supported in Bulk Query: {f}"
        )));
    }
    let object_name = def.name.to_string();
    drop(org);
    // A job takes one of the org's DailyBulkV2QueryJobs (`limits.rs`).
    sim.take_bulk_query_job()?;
    let mut state = sim.bulk.lock();
    state.next += 1;
    let id = super::ids::record_id("750", state.next);
    let job = Job {
        id: id.clone(),
        operation,
        object,
        object_name: object_name.clone(),
        fields,
        ids,
        created: Instant::now(),
        created_ms: sim.ctx.clock.now_ms(),
        version,
        ended: None,
        error: None,
    };
    let info = state.info(&job, false);
    state.created.push(BulkJobInfo {
        id: id.clone(),
        object: object_name,
        query,
        state: "UploadComplete".into(),
        records: job.ids.len(),
    });
    state.jobs.insert(id, job);
    Ok(Json(info).into_response())
}

async fn job_info(
    State(sim): Sim,
    Path((version, job)): Path<(String, String)>,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let state = sim.bulk.lock();
    let job = state.job(&job)?;
    Ok(Json(state.info(job, true)).into_response())
}

async fn abort_job(
    State(sim): Sim,
    Path((version, job)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let wanted = parse_body(&body)?;
    if wanted.get("state").and_then(Value::as_str) != Some("Aborted") {
        return Err(invalid_job(
            "Only the state Aborted can be set on a query job",
        ));
    }
    let mut state = sim.bulk.lock();
    let current = state.state_of(state.job(&job)?);
    if current == "JobComplete" || current == "Failed" {
        return Err(invalid_job(format!(
            "Cannot abort a job in state {current}"
        )));
    }
    let entry = state.jobs.get_mut(&job).expect("found above");
    entry.ended = Some("Aborted");
    let state = &*state;
    Ok(Json(state.info(state.job(&job)?, false)).into_response())
}

async fn delete_job(
    State(sim): Sim,
    Path((version, job)): Path<(String, String)>,
) -> Result<StatusCode, SfError> {
    check_version(&version)?;
    let mut state = sim.bulk.lock();
    let current = state.state_of(state.job(&job)?);
    if current == "InProgress" {
        return Err(invalid_job(
            "Cannot delete a job in state InProgress; abort it first",
        ));
    }
    state.jobs.remove(&job);
    Ok(StatusCode::NO_CONTENT)
}

async fn results(
    State(sim): Sim,
    Path((version, job)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let delay = sim.bulk.lock().settings.results_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let bad_locator = || SfError::new(400, "INVALIDLOCATOR", "Invalid locator");
    let offset = match query_param(raw.as_deref(), "locator") {
        None => 0,
        Some(l) => base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(l.trim_end_matches('='))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(bad_locator)?,
    };
    let max_records = match query_param(raw.as_deref(), "maxRecords") {
        None => DEFAULT_MAX_RECORDS,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid_job("maxRecords must be a positive integer"))?,
    };
    let state = sim.bulk.lock();
    let entry = state.job(&job)?;
    let current = state.state_of(entry);
    if current != "JobComplete" {
        return Err(invalid_job(format!(
            "The job's results are not ready: it is {current}"
        )));
    }
    if offset > entry.ids.len() {
        return Err(bad_locator());
    }
    let size = state
        .settings
        .max_page_records
        .map_or(max_records, |cap| max_records.min(cap));
    let end = (offset + size).min(entry.ids.len());
    let org = sim.org();
    let csv = render_csv(&org, entry, offset, end);
    drop(org);
    let locator = if end < entry.ids.len() {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(end.to_string())
    } else {
        "null".to_string()
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/csv")),
        (
            header::HeaderName::from_static("sforce-numberofrecords"),
            HeaderValue::from(end - offset),
        ),
        (
            header::HeaderName::from_static("sforce-locator"),
            HeaderValue::from_str(&locator).expect("base64 is a header value"),
        ),
    ];
    Ok((headers, csv).into_response())
}

/// Records `offset..end` of a job as CSV, header row first.
fn render_csv(org: &super::store::Org, job: &Job, offset: usize, end: usize) -> String {
    let def = org.object_def_at(job.object);
    let datetime: Vec<bool> = job
        .fields
        .iter()
        .map(|f| {
            def.field(f)
                .is_some_and(|d| d.field_type == FieldType::DateTime)
        })
        .collect();
    let mut out = String::with_capacity((end - offset + 1) * 64 * job.fields.len().max(1));
    let header: Vec<String> = job.fields.iter().map(|f| quote(f)).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for id in &job.ids[offset..end] {
        let Some((values, _)) = org.stored(job.object, id) else {
            continue;
        };
        for (i, field) in job.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match values.get(field) {
                None | Some(Value::Null) => out.push_str("\"\""),
                Some(Value::String(s)) if datetime[i] => {
                    out.push_str(&quote(&csv_datetime(s)));
                }
                Some(Value::String(s)) => out.push_str(&quote(s)),
                Some(Value::Bool(b)) => {
                    let _ = write!(out, "\"{b}\"");
                }
                Some(Value::Number(n)) => {
                    let _ = write!(out, "\"{n}\"");
                }
                Some(other) => out.push_str(&quote(&other.to_string())),
            }
        }
        out.push('\n');
    }
    out
}

/// A CSV field in double quotes, inner quotes doubled.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// REST renders datetimes `2024-01-01T00:00:00.000+0000`; Bulk CSV `...000Z`.
fn csv_datetime(s: &str) -> String {
    match s.strip_suffix("+0000") {
        Some(head) => format!("{head}Z"),
        None => s.to_string(),
    }
}

/// `GET /limits/recordCount?sObjects=A,B`: the stored record counts (all objects without
/// `sObjects`).
async fn record_count(
    State(sim): Sim,
    Path(version): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let org = sim.org();
    let names: Vec<String> = match query_param(raw.as_deref(), "sObjects") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => org.object_defs().map(|d| d.name.to_string()).collect(),
    };
    let counts: Vec<Value> = names
        .iter()
        .filter_map(|n| {
            let def = org.object_defs().find(|d| d.name.eq_ignore_ascii_case(n))?;
            Some(json!({"count": org.count(def.name, false), "name": def.name}))
        })
        .collect();
    Ok(Json(json!({ "sObjects": counts })).into_response())
}

// ----- control routes (under /_sim) ---------------------------------------------------------

/// Control routes: `GET /salesforce/bulk/jobs`, `POST /salesforce/bulk/expire`,
/// `POST /salesforce/bulk/jobs/{id}/fail`, `POST /salesforce/bulk/settings`,
/// `POST /salesforce/bulk/seed` (`{"object", "count"}`).
pub(super) fn control_routes() -> Router<Arc<Salesforce>> {
    Router::new()
        .route("/salesforce/bulk/jobs", get(control_jobs))
        .route("/salesforce/bulk/expire", post(control_expire))
        .route("/salesforce/bulk/jobs/{id}/fail", post(control_fail))
        .route("/salesforce/bulk/settings", post(control_settings))
        .route("/salesforce/bulk/seed", post(control_seed))
}

async fn control_jobs(State(sim): Sim) -> Json<Value> {
    let jobs = sim.bulk_jobs();
    Json(json!({"created": jobs.len(), "jobs": jobs, "org": ORG_ID}))
}

async fn control_expire(State(sim): Sim) -> StatusCode {
    sim.expire_bulk_results();
    StatusCode::NO_CONTENT
}

async fn control_fail(State(sim): Sim, Path(id): Path<String>) -> Result<StatusCode, SfError> {
    sim.fail_bulk_job(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn control_settings(State(sim): Sim, Json(settings): Json<BulkSettings>) -> StatusCode {
    sim.set_bulk_settings(settings);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct SeedRequest {
    object: String,
    count: usize,
}

async fn control_seed(
    State(sim): Sim,
    Json(request): Json<SeedRequest>,
) -> Result<Response, SfError> {
    let t0 = Instant::now();
    let seeder = sim.clone();
    let object = request.object.clone();
    tokio::task::spawn_blocking(move || seeder.seed_bulk(&object, request.count))
        .await
        .map_err(|e| SfError::new(500, "UNKNOWN_EXCEPTION", e.to_string()))??;
    Ok(Json(json!({
        "object": request.object,
        "created": request.count,
        "ms": t0.elapsed().as_millis() as u64,
    }))
    .into_response())
}
