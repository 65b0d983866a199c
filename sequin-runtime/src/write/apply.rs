//! Step 4 of a write: the operations are journalled as intents
//! ([`journalled`]), then applied to the API: single-record endpoints, or
//! the object's batch endpoints (Salesforce composite with allOrNone, HubSpot
//! batch, Airtable's 10-record writes) when a statement changes several
//! rows. Every successful write yields the API's canonical record, read
//! back with `get` when the write's answer is only an id.

use sequin_spec::model::{BatchEndpoint, Endpoint};
use sequin_spec::record::{encode_body, get_path, id_text};
use serde_json::{Map, Value};

use crate::api::{
    ApiError, ErrorKind, Priority, SendRequest, Vars, error::decode_error, write_body,
};

use sequin_spec::record::WriteOp;

use super::entry;
use super::error::{Stop, WriteError};
use super::journal::{self, Entry, Journal};
use super::path::PathVars;
use super::rows::{self, RowOp};
use super::table::Table;

/// What the API did, and each intent's outcome for the journal.
pub type Journalled = (Applied, Vec<(uuid::Uuid, journal::Outcome)>);

/// Journals the operations as intents, then has the API apply them.
/// Returns what it did, and each intent's outcome for the journal (an
/// intent the API may or may not have applied, its answer lost, is handed
/// to the reconciler to find out). When the API refused, the outcomes are
/// recorded here and the refusal is the client's error.
pub async fn journalled(
    url: &str,
    table: &Table,
    op: WriteOp,
    (ops, paths): (&[RowOp], &[PathVars]),
    journal: &Journal,
    (xid, capture_ids): (i64, &[i64]),
) -> Result<Journalled, Stop> {
    let keys = rows::keys(ops);
    let singly = sent_singly(table, ops);
    let idempotent = table.spec.idempotency.is_some();
    let intents: Vec<(usize, Entry)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let key = (idempotent && singly[i]).then(|| keys[i].clone());
            entry::intent(table, o, &paths[i], xid, capture_ids[i], key).map(|e| (i, e))
        })
        .collect();
    let entries: Vec<&Entry> = intents.iter().map(|(_, e)| e).collect();
    if let Err(e) = journal.record(&entries).await {
        return Err(WriteError::new(
            table.api(),
            "58030",
            format!("Sequin's write journal cannot record the write, so nothing was sent to the API; try again: {}", crate::store::error_chain(&e)),
        )
        .into());
    }
    let applied = crate::metrics::time_api(apply(table, ops, &keys, paths)).await;
    let mut outcomes = entry::outcomes(table, &intents, &applied);
    if !applied.upserted.is_empty() {
        super::upsert::became(table, journal, &intents, &applied, &mut outcomes).await;
    }
    if let Some(err) = &applied.error {
        // Effects applied before the failure are undone by the
        // reconciler once the aborted transaction is seen.
        if let Err(e) = journal.settle_intents(&outcomes).await {
            journal::settle_later(url.to_string(), outcomes, e);
        }
        return Err(refusal(table, op, err).into());
    }
    Ok((applied, outcomes))
}

/// The client-visible error of an API rejection.
fn refusal(table: &Table, op: WriteOp, err: &ApiError) -> WriteError {
    let mut e = WriteError::api(err, table.column_of(err.field.as_deref()).as_deref());
    if op == WriteOp::Create && err.maybe_applied && table.spec.idempotency.is_none() {
        e.message.push_str(
            "; the record may have been created anyway: Sequin did not repeat the request (this API has no idempotency keys); if the API did create it, Sequin finds and deletes it again, since this statement failed",
        );
    }
    e
}

/// A write the API accepted.
#[derive(Clone, Debug)]
pub struct Done {
    /// The record's id at the API.
    pub api_id: String,
    /// The canonical record (`None` for deletes).
    pub record: Option<Value>,
}

/// What happened to a list of operations: those applied (by index), and the
/// error that stopped the rest.
#[derive(Debug, Default)]
pub struct Applied {
    pub done: Vec<(usize, Done)>,
    pub error: Option<ApiError>,
    /// Operations of the request that failed without an answer to say so
    /// (`ApiError::maybe_applied`): the API may have applied them.
    pub unknown: Vec<usize>,
    /// Upserts applied (by index), and whether each created its record
    /// (else it updated one).
    pub upserted: Vec<(usize, bool)>,
}

impl Applied {
    pub(super) fn fail(&mut self, e: ApiError, request: std::ops::Range<usize>) {
        if e.maybe_applied {
            self.unknown = request
                .filter(|i| !self.done.iter().any(|(d, _)| d == i))
                .collect();
        }
        self.error = Some(e);
    }
}

/// Template variables of the table's endpoints.
pub(super) fn vars(t: &Table) -> Vars {
    t.vars().clone()
}

/// Template variables of one operation's endpoints: the table's, and the
/// placeholders filled from its row (a child's parent).
pub(super) fn vars_at(t: &Table, path: &PathVars) -> Vars {
    let mut vars = vars(t);
    for (k, v) in path {
        vars.set(k.clone(), v.clone());
    }
    vars
}

fn pk_path(t: &Table) -> &str {
    &t.plan.table.columns[t.plan.table.primary_key].path
}

/// An API answer write-through could not read, as an error of the API.
pub fn decode_failure(t: &Table, what: &str) -> ApiError {
    ApiError::new(&t.spec.display_name, ErrorKind::Decode, what.to_string())
}

/// The batch endpoint for `op`'s kind, if the object has one.
fn batch_endpoint<'t>(t: &'t Table, op: &RowOp) -> Option<&'t BatchEndpoint> {
    match op {
        RowOp::Create { .. } => t.plan.endpoints.batch_create.as_ref(),
        RowOp::Update { .. } => t.plan.endpoints.batch_update.as_ref(),
        RowOp::Delete { .. } => t.plan.endpoints.batch_delete.as_ref(),
        RowOp::Unchanged { .. } | RowOp::Upsert { .. } => None,
    }
}

/// Whether each operation goes to the API on its own (not in a batch
/// request), as [`apply`] sends them.
pub fn sent_singly(t: &Table, ops: &[RowOp]) -> Vec<bool> {
    let mut out = vec![true; ops.len()];
    let mut i = 0;
    while i < ops.len() {
        let kind = std::mem::discriminant(&ops[i]);
        let mut j = i + 1;
        while j < ops.len() && std::mem::discriminant(&ops[j]) == kind {
            j += 1;
        }
        if j - i > 1 && batch_endpoint(t, &ops[i]).is_some() {
            out[i..j].fill(false);
        }
        i = j;
    }
    out
}

/// Applies `ops` in order, batching runs of the same kind where the object
/// has a batch endpoint. Stops at the first rejection.
pub async fn apply(t: &Table, ops: &[RowOp], keys: &[String], paths: &[PathVars]) -> Applied {
    // A link table's rows are associations, written by their own batch
    // endpoints (`link.rs`).
    if t.plan.link.is_some() {
        return super::link::apply(t, ops).await;
    }
    // An upsert statement's rows are all upserts (`upsert.rs`).
    if matches!(ops.first(), Some(RowOp::Upsert { .. })) {
        return super::upsert::apply(t, ops, paths).await;
    }
    let mut out = Applied::default();
    let mut i = 0;
    while i < ops.len() {
        let kind = std::mem::discriminant(&ops[i]);
        let mut j = i + 1;
        while j < ops.len() && std::mem::discriminant(&ops[j]) == kind {
            j += 1;
        }
        let batch = batch_endpoint(t, &ops[i]);
        match batch {
            Some(b) if j - i > 1 => {
                for start in (i..j).step_by(b.max_size.max(1) as usize) {
                    let end = (start + b.max_size.max(1) as usize).min(j);
                    let (done, error) = send_batch(t, b, &ops[start..end], &keys[start..end]).await;
                    out.done
                        .extend(done.into_iter().map(|(k, d)| (start + k, d)));
                    if let Some(e) = error {
                        out.fail(e, start..end);
                        return out;
                    }
                }
            }
            _ => {
                for k in i..j {
                    match send_one(t, &ops[k], &keys[k], &paths[k]).await {
                        Ok(Some(d)) => out.done.push((k, d)),
                        Ok(None) => {}
                        Err(e) => {
                            out.fail(e, k..k + 1);
                            return out;
                        }
                    }
                }
            }
        }
        i = j;
    }
    out
}

/// Reads the canonical record.
pub async fn fetch(t: &Table, id: &str, path: &PathVars) -> Result<Value, ApiError> {
    let ep = t.plan.endpoints.get.as_ref().ok_or_else(|| {
        decode_failure(
            t,
            "the spec has no `get` endpoint to read the written record back",
        )
    })?;
    let vars = vars_at(t, path).with("id", id.to_string());
    let resp = t
        .client
        .send(Priority::Write, ep, &vars, None, None)
        .await?;
    resp.json
        .ok_or_else(|| decode_failure(t, "the record read back had no body"))
}

/// The canonical record after a single write answered with `json`.
async fn canonical(
    t: &Table,
    ep: &Endpoint,
    (id, path): (Option<String>, &PathVars),
    json: Option<Value>,
) -> Result<Done, ApiError> {
    let id = match (&ep.returns_id, &json) {
        (Some(path), Some(j)) => get_path(j, path).and_then(id_text).or(id),
        (None, Some(j)) => get_path(j, pk_path(t)).and_then(id_text).or(id),
        _ => id,
    };
    let id = id.ok_or_else(|| decode_failure(t, "the API's answer has no record id"))?;
    let mut record = match json {
        Some(j) if ep.returns_id.is_none() && j.is_object() => j,
        _ => fetch(t, &id, path).await?,
    };
    with_parent(t, &mut record, path);
    Ok(Done {
        api_id: id,
        record: Some(record),
    })
}

async fn send_one(
    t: &Table,
    op: &RowOp,
    key: &str,
    path: &PathVars,
) -> Result<Option<Done>, ApiError> {
    let e = &t.plan.endpoints;
    let missing = |what: &str| decode_failure(t, &format!("no {what} endpoint"));
    match op {
        RowOp::Create { body, .. } => {
            let ep = e.create.as_ref().ok_or_else(|| missing("create"))?;
            let vars = vars_at(t, path);
            let mut req = SendRequest::new(Priority::Write, ep, &vars);
            req.body = Some(write_body(&t.spec, ep, body.clone()));
            req.idempotency_key = Some(key);
            let resp = t.client.send_request(req).await?;
            canonical(t, ep, (None, path), resp.json).await.map(Some)
        }
        RowOp::Update { id, body, .. } => {
            let ep = e.update.as_ref().ok_or_else(|| missing("update"))?;
            let vars = vars_at(t, path).with("id", id.clone());
            let mut req = SendRequest::new(Priority::Write, ep, &vars);
            req.body = Some(write_body(&t.spec, ep, body.clone()));
            // Setting the same values again is harmless.
            req.retry_safe = true;
            let resp = t.client.send_request(req).await?;
            canonical(t, ep, (Some(id.clone()), path), resp.json)
                .await
                .map(Some)
        }
        RowOp::Delete { id, .. } => {
            let ep = e.delete.as_ref().ok_or_else(|| missing("delete"))?;
            delete_one(t, ep, id, path).await.map(Some)
        }
        RowOp::Unchanged { .. } | RowOp::Upsert { .. } => Ok(None),
    }
}

/// Puts the parent's key into a child's record read back when the API
/// does not send it (as sync does), from the value that addressed it.
fn with_parent(t: &Table, record: &mut Value, path: &PathVars) {
    let Some(p) = &t.plan.parent else { return };
    let col = &t.plan.table.columns[p.column];
    let Some(key) = path.get(&p.param) else {
        return;
    };
    if get_path(record, &col.path).is_some_and(|v| !v.is_null()) {
        return;
    }
    let value = match col.ty {
        sequin_spec::model::FieldType::Integer => {
            key.parse::<i64>().map(Value::from).unwrap_or(Value::Null)
        }
        _ => Value::String(key.clone()),
    };
    if let Value::Object(m) = record {
        sequin_spec::record::set_path(m, &col.path, value);
    }
}

/// Deletes one record; a record already gone counts as deleted (a retry
/// after a lost answer finds it gone).
pub async fn delete_one(
    t: &Table,
    ep: &Endpoint,
    id: &str,
    path: &PathVars,
) -> Result<Done, ApiError> {
    let vars = vars_at(t, path).with("id", id.to_string());
    let mut req = SendRequest::new(Priority::Write, ep, &vars);
    req.retry_safe = true;
    match t.client.send_request(req).await {
        Ok(_) => {}
        Err(e) if e.status == Some(404) && e.attempts > 1 => {}
        Err(e) => return Err(e),
    }
    Ok(Done {
        api_id: id.to_string(),
        record: None,
    })
}

/// Sends one batch request for `ops` (all of one kind). Returns the writes
/// the API applied (by index in `ops`) and, if some were refused, the
/// error: a batch may be applied in part (HubSpot answers 207 with an
/// `errors` list), and what was applied must be journalled.
async fn send_batch(
    t: &Table,
    b: &BatchEndpoint,
    ops: &[RowOp],
    keys: &[String],
) -> (Vec<(usize, Done)>, Option<ApiError>) {
    let resp = match send_batch_request(t, b, ops, keys).await {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let results = batch_results(b, &resp);
    let mut error = batch_error(t, &resp, &results);
    let deleting = matches!(ops[0], RowOp::Delete { .. });
    let mut out = Vec::with_capacity(ops.len());
    if deleting {
        if error.is_none() {
            out.extend(ops.iter().enumerate().filter_map(|(k, op)| match op {
                RowOp::Delete { id, .. } => Some((
                    k,
                    Done {
                        api_id: id.clone(),
                        record: None,
                    },
                )),
                _ => None,
            }));
        }
        return (out, error);
    }
    let succeeded: Vec<&Value> = results
        .iter()
        .filter(|r| r.get("success") != Some(&Value::Bool(false)))
        .collect();
    let id_path = b.endpoint.returns_id.as_deref().unwrap_or(pk_path(t));
    for (k, op) in ops.iter().enumerate() {
        let result = match op {
            // Updates are matched by id (the order of results is not
            // promised); a record missing from the results was not written.
            RowOp::Update { id, .. } => succeeded
                .iter()
                .find(|r| get_path(r, id_path).and_then(id_text).as_ref() == Some(id))
                .copied(),
            // Created records have no id to match before the API gives one:
            // by position, when every item succeeded.
            _ if succeeded.len() == ops.len() => Some(succeeded[k]),
            _ => None,
        };
        let Some(result) = result else {
            if error.is_none() {
                error = Some(decode_failure(
                    t,
                    "a record of the batch is missing from the API's answer",
                ));
            }
            continue;
        };
        let Some(id) = get_path(result, id_path).and_then(id_text) else {
            if error.is_none() {
                error = Some(decode_failure(t, "a batch result has no record id"));
            }
            continue;
        };
        let record = if b.endpoint.returns_id.is_none() && result.is_object() {
            Ok(result.clone())
        } else {
            fetch(t, &id, &PathVars::new()).await
        };
        match record {
            Ok(r) => out.push((
                k,
                Done {
                    api_id: id,
                    record: Some(r),
                },
            )),
            Err(e) => {
                // Written, but unreadable: journal it, report the error.
                out.push((
                    k,
                    Done {
                        api_id: id,
                        record: None,
                    },
                ));
                if error.is_none() {
                    error = Some(e);
                }
            }
        }
    }
    (out, error)
}

/// The per-record results of a batch answer (under the endpoint's
/// `results` path).
pub(super) fn batch_results(b: &BatchEndpoint, resp: &crate::api::ApiResponse) -> Vec<Value> {
    match &resp.json {
        None => Vec::new(),
        Some(j) => {
            let at = match b.results.as_deref() {
                None | Some("") => Some(j),
                Some(p) => get_path(j, p),
            };
            at.and_then(Value::as_array).cloned().unwrap_or_default()
        }
    }
}

/// Failures inside a 2xx batch answer: per item (Salesforce composite's
/// `success: false`) or for the batch (HubSpot's 207 `errors`).
pub(super) fn batch_error(
    t: &Table,
    resp: &crate::api::ApiResponse,
    results: &[Value],
) -> Option<ApiError> {
    let failures: Vec<&Value> = results
        .iter()
        .filter(|r| r.get("success") == Some(&Value::Bool(false)))
        .collect();
    if !failures.is_empty() {
        let first = failures
            .iter()
            .find(|r| !item_code(r).is_some_and(|c| c.contains("ALL_OR_NONE")))
            .unwrap_or(&failures[0]);
        return Some(item_error(t, first));
    }
    let first = resp
        .json
        .as_ref()
        .and_then(|j| j.get("errors"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())?;
    let body = serde_json::to_vec(first).unwrap_or_default();
    Some(decode_error(
        &t.spec.display_name,
        &t.spec.errors,
        resp.status,
        Some(&resp.headers),
        &body,
    ))
}

/// A batch endpoint's `item_body`, its templates filled with the table's
/// variables (`{object}`: Salesforce's `attributes.type` of a discovered
/// object's collection items); every item of the batch takes these members.
/// `Err` says why a template could not be filled.
pub(super) fn item_body(t: &Table, b: &BatchEndpoint) -> Result<Map<String, Value>, String> {
    match crate::api::template::render_json(&Value::Object(b.item_body.clone()), &vars(t)) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => unreachable!("an object renders as an object"),
        Err(e) => Err(format!("batch item_body: {e}")),
    }
}

/// Builds and sends the batch request.
async fn send_batch_request(
    t: &Table,
    b: &BatchEndpoint,
    ops: &[RowOp],
    keys: &[String],
) -> Result<crate::api::ApiResponse, ApiError> {
    let vars = vars(t);
    let mut req = SendRequest::new(Priority::Write, &b.endpoint, &vars);
    let ids: Vec<String> = ops
        .iter()
        .filter_map(|op| match op {
            RowOp::Update { id, .. } | RowOp::Delete { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    let deleting = matches!(ops[0], RowOp::Delete { .. });
    if let (true, Some(param)) = (deleting, &b.ids_param) {
        match param.strip_suffix("[]") {
            Some(_) => req.extra_query = ids.iter().map(|id| (param.clone(), id.clone())).collect(),
            None => req.extra_query = vec![(param.clone(), ids.join(","))],
        }
    } else {
        let item_body = item_body(t, b).map_err(|e| decode_failure(t, &e))?;
        let mut items = Vec::with_capacity(ops.len());
        for op in ops {
            let mut item = Map::new();
            let (id, body) = match op {
                RowOp::Create { body, .. } => (None, Some(body)),
                RowOp::Update { id, body, .. } => (Some(id), Some(body)),
                RowOp::Delete { id, .. } => (Some(id), None),
                RowOp::Unchanged { .. } | RowOp::Upsert { .. } => continue,
            };
            if let Some(body) = body {
                match &b.endpoint.wrap {
                    Some(w) => {
                        item.insert(w.clone(), Value::Object(body.clone()));
                    }
                    None => item.extend(body.clone()),
                }
            }
            if let (Some(id), Some(k)) = (id, &b.item_id) {
                item.insert(k.clone(), Value::String(id.clone()));
            }
            for (k, v) in &item_body {
                item.entry(k.clone()).or_insert_with(|| v.clone());
            }
            items.push(Value::Object(item));
        }
        let Some(items_key) = &b.items else {
            return Err(decode_failure(t, "batch endpoint without `items`"));
        };
        let mut top = Map::new();
        top.insert(items_key.clone(), Value::Array(items));
        for (k, v) in &b.endpoint.body {
            top.entry(k.clone()).or_insert_with(|| v.clone());
        }
        req.body = Some(encode_body(top, t.spec.body));
    }
    // A create batch may not be repeated without an idempotency key the
    // API honours; updates and deletes may.
    let creating = matches!(ops[0], RowOp::Create { .. });
    req.retry_safe = !creating;
    if creating && let Some(k) = keys.first() {
        req.idempotency_key = Some(k);
    }
    t.client.send_request(req).await
}

fn item_errors(item: &Value) -> Vec<Value> {
    item.get("errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut e| {
            // Composite results name the code `statusCode`; the error
            // decoding of the spec reads REST errors' `errorCode`.
            if let Some(obj) = e.as_object_mut()
                && !obj.contains_key("errorCode")
                && let Some(c) = obj.get("statusCode").cloned()
            {
                obj.insert("errorCode".into(), c);
            }
            e
        })
        .collect()
}

fn item_code(item: &Value) -> Option<String> {
    item_errors(item)
        .first()
        .and_then(|e| e.get("errorCode"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn item_error(t: &Table, item: &Value) -> ApiError {
    let body = serde_json::to_vec(&Value::Array(item_errors(item))).unwrap_or_default();
    decode_error(&t.spec.display_name, &t.spec.errors, 400, None, &body)
}
