//! Backfills through the connector's asynchronous query jobs (the spec's
//! `async_query`, Salesforce's Bulk API 2.0): an object whose record count
//! is at or above the threshold is read by one job instead of paging its
//! list. The job is created with the object's query, polled with a growing
//! pause until it is done, and its results are read page by page (pages
//! chained by a response header's locator), decoded from CSV into the same
//! typed columns as the list's JSON, and committed batch by batch.
//!
//! Each batch is committed with a [`JobCursor`]: the job's id, the locator of
//! the results page the next batch starts in, how many records of that page
//! are already committed, and the window field (the primary key) of the last
//! committed record. The cursor is saved as soon as the job exists, so a
//! restarted backfill asks the API about that job rather than creating
//! another: a job still running or complete is reused from the committed
//! locator; one the API no longer knows (expired results) or that failed is
//! created again for the records after the last committed one only (the
//! spec's `window`, on results ordered by that field). No window is ever
//! asked for twice, except when a crash falls between the job's creation
//! and the commit of its cursor (one small transaction later).

use sequin_spec::model::{AsyncQuery, AsyncResults, FieldType};
use sequin_spec::record::{Cell, decode_cell, get_path};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::watch;

use super::backfill::{AbortOnDrop, BATCH_RECORDS, Drained, Encoded, Fetcher, Run};
use super::{Ctx, SyncError};
use crate::api::{self, Client, Priority, Vars, template};
use crate::catalog::{ObjectPlan, now_us};
use crate::metrics::Purpose;
use crate::store::{Checkpoint, CopyBatch, Row, Writer};

/// Jobs created again in a row without a committed record in between
/// before the backfill gives up on jobs and pages the list instead.
const MAX_FRUITLESS_JOBS: u32 = 2;

/// Where a backfill inside a job stands, as checkpointed with each batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "async_job")]
pub(super) struct JobCursor {
    /// The job's id.
    pub job: String,
    /// Locator of the results page the next batch starts in (`None`: the
    /// first page).
    pub locator: Option<String>,
    /// Records of that page already committed.
    pub skip: u64,
    /// The page size the pages are read with (a locator's page depends on
    /// it, so a resumed backfill keeps it).
    pub page_size: u32,
    /// The window field (`window_field`) of the last committed record.
    pub after: Option<String>,
}

impl JobCursor {
    fn is(v: &Value) -> bool {
        v.get("kind").and_then(Value::as_str) == Some("async_job")
    }

    /// A stored backfill cursor, when it is a job's (`None`: a list's).
    fn stored(v: &Value) -> Option<Result<JobCursor, SyncError>> {
        Self::is(v).then(|| {
            serde_json::from_value(v.clone())
                .map_err(|e| SyncError::Decode(format!("bad stored cursor: {e}")))
        })
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("cursors serialize")
    }
}

/// How a backfill reads its object.
pub(super) enum Choice {
    /// Through a job: resumed from its cursor, or a new one (with the
    /// object's record count, for progress).
    Job {
        start: Option<JobCursor>,
        total: Option<u64>,
    },
    /// Through the list endpoint, from this page cursor.
    List(Option<Value>),
}

/// Decides how the backfill reads the object: a backfill resumed inside a
/// job stays in it; a fresh one uses a job when the connector has them, the
/// object can be read by one, and its record count reaches the threshold.
pub(super) async fn choose(
    ctx: &Ctx,
    plan: &ObjectPlan,
    cursor: Option<Value>,
) -> Result<Choice, SyncError> {
    let Some(q) = &ctx.api.spec.async_query else {
        return Ok(Choice::List(cursor));
    };
    if let Some(v) = cursor {
        return Ok(match JobCursor::stored(&v) {
            Some(start) => Choice::Job {
                start: Some(start?),
                total: None,
            },
            None => Choice::List(Some(v)),
        });
    }
    if plan.parent.is_some() || plan.link.is_some() || window_column(q, plan).is_none() {
        return Ok(Choice::List(None));
    }
    let name = &ctx.api.config.name;
    if let Some(c) = plan
        .table
        .columns
        .iter()
        .find(|c| q.unsupported_types.contains(&c.ty))
    {
        tracing::info!(connection = %name, table = %plan.table.name, column = %c.name, "backfill through the list endpoint: a query job cannot return this column's type");
        return Ok(Choice::List(None));
    }
    let threshold = ctx.api.config.async_query_threshold.unwrap_or(q.threshold);
    let count = match count_records(ctx, plan, q).await {
        Ok(count) => count,
        Err(e) if e.is_auth() => return Err(e),
        // The count only chooses the path: without it, the list endpoint.
        Err(e) => {
            tracing::warn!(connection = %name, table = %plan.table.name, error = %e, "counting the records failed; backfill through the list endpoint");
            return Ok(Choice::List(None));
        }
    };
    if count.is_some_and(|n| n >= threshold) {
        tracing::info!(connection = %name, table = %plan.table.name, records = count, threshold, "backfill through an asynchronous query job");
        Ok(Choice::Job {
            start: None,
            total: count,
        })
    } else {
        Ok(Choice::List(None))
    }
}

/// The object's record count (`None` when the response holds none).
async fn count_records(
    ctx: &Ctx,
    plan: &ObjectPlan,
    q: &AsyncQuery,
) -> Result<Option<u64>, SyncError> {
    let client = ctx.api.client.with_purpose(Purpose::Backfill);
    let vars = ctx.api.vars(Some(plan));
    let resp = client
        .send(Priority::Read, &q.count.endpoint, &vars, None, None)
        .await?;
    Ok(resp
        .json
        .as_ref()
        .and_then(|j| get_path(j, &q.count.total))
        .and_then(Value::as_u64))
}

/// The index of the window field's column.
fn window_column(q: &AsyncQuery, plan: &ObjectPlan) -> Option<usize> {
    plan.table
        .columns
        .iter()
        .position(|c| *c.api_name == q.window_field)
}

/// Runs the backfill through a job (a new one when `start` is `None`) until
/// every result is committed. A job refused at creation returns
/// [`Drained::Refused`]: the list endpoint takes over.
pub(super) async fn backfill(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    start: Option<JobCursor>,
    total: Option<u64>,
    run: &mut Run,
) -> Result<Drained, SyncError> {
    let q = ctx
        .api
        .spec
        .async_query
        .as_ref()
        .expect("chosen only when the spec has async_query");
    let jobs = Jobs {
        ctx,
        plan,
        q,
        client: ctx.api.client.with_purpose(Purpose::Backfill),
    };
    let mut cursor = match start {
        Some(c) => c,
        None => match jobs.create(writer, None, "backfill").await? {
            Some(c) => c,
            None => return Ok(Drained::Refused),
        },
    };
    let mut fruitless = 0;
    loop {
        let why = match jobs.wait(&cursor.job).await? {
            Wait::Done => {
                let fetcher = jobs.fetcher(&cursor, total);
                match run.drain(ctx, writer, plan, fetcher).await {
                    Ok(d) => return Ok(d),
                    Err(e) if is_gone(&e) => format!("its results are gone ({e})"),
                    Err(e) => return Err(e),
                }
            }
            Wait::Stopped => return Ok(Drained::Stopped),
            Wait::Gone(why) => why,
        };
        // The committed cursor says which window is left.
        let state = writer.state(&ctx.api.config.name, &plan.table.name).await?;
        let committed = match state.backfill_cursor.as_ref().and_then(JobCursor::stored) {
            Some(c) => c?,
            None => cursor.clone(),
        };
        if committed.after == cursor.after && committed.job == cursor.job {
            fruitless += 1;
        } else {
            fruitless = 0;
        }
        tracing::warn!(connection = %ctx.api.config.name, table = %plan.table.name, job = %cursor.job, after = ?committed.after, "asynchronous query job {why}; creating one for the records not yet committed");
        if fruitless > MAX_FRUITLESS_JOBS {
            tracing::warn!(connection = %ctx.api.config.name, table = %plan.table.name, "asynchronous query jobs keep ending without results; backfilling through the list endpoint");
            return Ok(Drained::Refused);
        }
        cursor = match jobs.create(writer, committed.after.clone(), "rest").await? {
            Some(c) => c,
            None => return Ok(Drained::Refused),
        };
    }
}

/// Whether a results error means the job's results are gone (expired, or
/// the job deleted): the API no longer knows them.
fn is_gone(e: &SyncError) -> bool {
    matches!(e, SyncError::Api(a) if matches!(a.status, Some(404) | Some(410)))
}

/// A job's wait's outcome.
enum Wait {
    /// The results are ready.
    Done,
    /// Shutting down.
    Stopped,
    /// The job failed, was aborted, or is unknown to the API: why.
    Gone(String),
}

/// The job requests of one object's backfill.
struct Jobs<'a> {
    ctx: &'a Ctx,
    plan: &'a ObjectPlan,
    q: &'a AsyncQuery,
    client: Client,
}

impl Jobs<'_> {
    /// Creates a job for the records after `after` (all of them with
    /// `None`) and commits its cursor at once. `None` when the API refuses
    /// the job (a 4xx answer other than auth or rate limiting).
    async fn create(
        &self,
        writer: &mut Writer,
        after: Option<String>,
        what: &str,
    ) -> Result<Option<JobCursor>, SyncError> {
        let name = &self.ctx.api.config.name;
        let window = match &after {
            Some(a) => template::render(&self.q.window, &Vars::new().with("after", soql_escape(a)))
                .map_err(|e| SyncError::Decode(e.to_string()))?,
            None => String::new(),
        };
        let vars = self.ctx.api.vars(Some(self.plan)).with("window", window);
        let query =
            template::render(&self.q.query, &vars).map_err(|e| SyncError::Decode(e.to_string()))?;
        let body = template::render_json(
            &Value::Object(self.q.create.body.clone()),
            &Vars::new().with("query", query),
        )
        .map_err(|e| SyncError::Decode(e.to_string()))?;
        let mut req = api::SendRequest::new(Priority::Read, &self.q.create, &vars);
        req.body = Some(sequin_spec::record::Body::Json(body));
        let resp = match self.client.send_request(req).await {
            Ok(r) => r,
            Err(e) if refused(&e) => {
                tracing::warn!(connection = %name, table = %self.plan.table.name, error = %e, "the API refused an asynchronous query job; backfilling through the list endpoint");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let job = resp
            .json
            .as_ref()
            .and_then(|j| get_path(j, &self.q.id))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                SyncError::Decode(format!(
                    "the job's create response has no id at `{}`",
                    self.q.id
                ))
            })?
            .to_string();
        let cursor = JobCursor {
            job,
            locator: None,
            skip: 0,
            page_size: self.q.results.page_size,
            after,
        };
        writer
            .checkpoint(
                name,
                &self.plan.table.name,
                &Checkpoint {
                    backfill_cursor: Some(Some(cursor.to_value())),
                    ..Default::default()
                },
            )
            .await?;
        tracing::info!(connection = %name, table = %self.plan.table.name, job = %cursor.job, after = ?cursor.after, "asynchronous query job created for the {what}");
        Ok(Some(cursor))
    }

    /// Polls the job's state with a growing pause until it is done, gone or
    /// shutting down.
    async fn wait(&self, job: &str) -> Result<Wait, SyncError> {
        let vars = self.ctx.api.vars(Some(self.plan)).with("job", job);
        let mut pause = self.q.poll_first.get();
        loop {
            let state = match self
                .client
                .send(Priority::Read, &self.q.status, &vars, None, None)
                .await
            {
                Ok(resp) => resp
                    .json
                    .as_ref()
                    .and_then(|j| get_path(j, &self.q.state))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Err(e) if matches!(e.status, Some(404) | Some(410)) => {
                    return Ok(Wait::Gone("is unknown to the API".into()));
                }
                Err(e) => return Err(e.into()),
            };
            if self.q.done.contains(&state) {
                return Ok(Wait::Done);
            }
            if self.q.failed.contains(&state) {
                return Ok(Wait::Gone(format!("ended in state {state}")));
            }
            tracing::debug!(
                job,
                state,
                pause_ms = pause.as_millis() as u64,
                "asynchronous query job not done yet"
            );
            if !self.ctx.sleep(pause).await {
                return Ok(Wait::Stopped);
            }
            pause = (pause * 2).min(self.q.poll_max.get());
        }
    }

    /// Starts reading the job's results from `cursor`.
    fn fetcher(&self, cursor: &JobCursor, total: Option<u64>) -> Fetcher {
        let source = ResultSource {
            client: self.client.clone(),
            plan: self.plan.clone(),
            results: self.q.results.clone(),
            vars: self
                .ctx
                .api
                .vars(Some(self.plan))
                .with("job", cursor.job.clone()),
            window: window_column(self.q, self.plan).expect("checked when chosen"),
            total,
            stop: self.ctx.shutdown.clone(),
        };
        let cursor = cursor.clone();
        Fetcher::spawn(self.plan, move |out, spare| {
            fetch_results(source, cursor, out, spare)
        })
    }
}

/// A refusal of the job itself (an object the API cannot query as a job),
/// not of the credentials or the rate.
fn refused(e: &api::ApiError) -> bool {
    matches!(e.status, Some(s) if (400..500).contains(&s) && s != 401 && s != 429)
        && e.kind != api::ErrorKind::RateLimited
}

/// Escapes a value for a single-quoted SOQL-style literal.
fn soql_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\'', "\\'")
}

/// What the results-reading task needs (owned: it runs on its own).
struct ResultSource {
    client: Client,
    plan: ObjectPlan,
    results: AsyncResults,
    vars: Vars,
    /// The window field's column.
    window: usize,
    total: Option<u64>,
    stop: watch::Receiver<bool>,
}

/// One page of results: its CSV and the next page's locator (`None`: the
/// last page).
struct ResultPage {
    body: bytes::Bytes,
    next: Option<String>,
}

impl ResultSource {
    /// Starts fetching the page at `locator` (the first with `None`).
    fn fetch(&self, locator: Option<String>) -> AbortOnDrop<Result<ResultPage, api::ApiError>> {
        let client = self.client.clone();
        let r = self.results.clone();
        let vars = self.vars.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut query = vec![(r.size_param.clone(), r.page_size.to_string())];
            if let Some(l) = locator {
                query.push((r.locator_param.clone(), l));
            }
            let resp = client.fetch_raw(&r.endpoint, &vars, &query).await?;
            let next = resp
                .headers
                .get(r.locator_header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && Some(*v) != r.end.as_deref())
                .map(str::to_string);
            Ok(ResultPage {
                body: resp.body,
                next,
            })
        }))
    }
}

/// Reads the results from `start`, decoding records into batches of
/// [`BATCH_RECORDS`], each sent with the cursor after its last record. The
/// next page is requested before the current one is decoded.
async fn fetch_results(
    mut source: ResultSource,
    start: JobCursor,
    out: Sender<Result<Encoded, SyncError>>,
    mut spare: Receiver<CopyBatch>,
) {
    let run = async {
        source.results.page_size = start.page_size;
        let mut at = start.clone();
        let mut in_flight = source.fetch(at.locator.clone());
        let Some(mut batch) = spare.recv().await else {
            return Ok(());
        };
        loop {
            let page = (&mut in_flight.0)
                .await
                .map_err(|e| SyncError::Decode(format!("results fetch task failed: {e}")))??;
            if let Some(n) = &page.next {
                in_flight = source.fetch(Some(n.clone()));
            }
            let fetched_at = now_us();
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(&page.body[..]);
            let columns = header_map(&source.plan, &mut reader)?;
            let mut read: u64 = 0;
            let mut record = csv::StringRecord::new();
            while reader
                .read_record(&mut record)
                .map_err(|e| SyncError::Decode(format!("the job's CSV results: {e}")))?
            {
                read += 1;
                if read <= at.skip {
                    continue;
                }
                let row = decode_csv(&source.plan, &columns, &record, fetched_at)?;
                at.after = row.cells[source.window].to_pg_text();
                batch.push(&row);
                if batch.len() >= BATCH_RECORDS {
                    at.skip = read;
                    if !send(
                        &out,
                        &mut spare,
                        &mut batch,
                        Some(at.to_value()),
                        source.total,
                    )
                    .await
                    {
                        return Ok(());
                    }
                    if *source.stop.borrow() {
                        return Ok(());
                    }
                }
            }
            match page.next {
                None => {
                    send(&out, &mut spare, &mut batch, None, source.total).await;
                    return Ok(());
                }
                Some(next) => {
                    at.locator = Some(next);
                    at.skip = 0;
                }
            }
        }
    };
    if let Err(e) = run.await {
        let _ = out.send(Err(e)).await;
    }
}

/// Sends the filled batch with its cursor and takes an empty one; false
/// when the writer stopped.
async fn send(
    out: &Sender<Result<Encoded, SyncError>>,
    spare: &mut Receiver<CopyBatch>,
    batch: &mut CopyBatch,
    next: Option<Value>,
    total: Option<u64>,
) -> bool {
    let Some(empty) = spare.recv().await else {
        return false;
    };
    let full = std::mem::replace(batch, empty);
    out.send(Ok(Encoded {
        batch: full,
        next,
        total,
    }))
    .await
    .is_ok()
}

/// For each column of the plan, its position in the page's header row.
fn header_map(plan: &ObjectPlan, reader: &mut csv::Reader<&[u8]>) -> Result<Vec<usize>, SyncError> {
    let headers = reader
        .headers()
        .map_err(|e| SyncError::Decode(format!("the job's CSV results: {e}")))?;
    plan.table
        .columns
        .iter()
        .map(|c| {
            headers
                .iter()
                .position(|h| h == &*c.api_name)
                .ok_or_else(|| {
                    SyncError::Decode(format!(
                        "{}.{}: the job's results have no column `{}`",
                        plan.table.schema, plan.table.name, c.api_name
                    ))
                })
        })
        .collect()
}

/// Decodes one CSV record into a row of the plan's table: an empty field is
/// null, other fields are text decoded as the list's JSON values are.
fn decode_csv(
    plan: &ObjectPlan,
    columns: &[usize],
    record: &csv::StringRecord,
    fetched_at: i64,
) -> Result<Row, SyncError> {
    let mut cells = Vec::with_capacity(columns.len());
    for (col, &at) in plan.table.columns.iter().zip(columns) {
        let text = record.get(at).unwrap_or_default();
        let cell = if text.is_empty() {
            Cell::Null
        } else {
            decode_cell(col, Some(&csv_value(col.ty, text))).map_err(|e| {
                SyncError::Decode(format!("{}.{}: {e}", plan.table.schema, plan.table.name))
            })?
        };
        cells.push(cell);
    }
    if cells[plan.table.primary_key].is_null() {
        return Err(SyncError::Decode(format!(
            "{}.{}: a record has no primary key ({})",
            plan.table.schema, plan.table.name, plan.table.columns[plan.table.primary_key].api_name
        )));
    }
    Ok(Row {
        updated_at: plan.marker_of_row(&cells, fetched_at),
        cells,
    })
}

/// A CSV field as the JSON value the codec decodes: text, except numbers
/// in scientific notation (CSV writes large doubles as `1.0E7`), which are
/// read as numbers.
fn csv_value(ty: FieldType, text: &str) -> Value {
    let numeric = matches!(
        ty,
        FieldType::Decimal | FieldType::Float | FieldType::Integer
    );
    if numeric
        && text.contains(['e', 'E'])
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}
