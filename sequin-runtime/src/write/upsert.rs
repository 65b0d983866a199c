//! `INSERT ... ON CONFLICT (<external id column>) DO UPDATE` as the API's
//! own upsert by an external id (the spec's `endpoints.upsert`).
//!
//! The proxy's classification records the clause ([`OnConflict`]); here it
//! is checked ([`target`]): its conflict target must be one external id
//! column of the table, and `DO UPDATE SET` must take every inserted column
//! from `EXCLUDED` (the API's upsert writes the same fields whether it
//! creates or updates). Anything else is refused (0A000) naming the columns
//! that would work. The statement then runs without the clause (capture:
//! provisional rows, as for any INSERT), each row becomes an upsert
//! ([`ops`]), and [`apply`] sends them: one request per row by the value
//! in the path, or the batch endpoint by the field for several. The API
//! says which records it created; the write-back puts its record under its
//! id either way (a row already synced under that id is replaced), and the
//! command tag counts every row (`INSERT 0 n`), as Postgres does.

use sequin_proxy::OnConflict;
use sequin_spec::model::{BatchEndpoint, Upsert};
use sequin_spec::record::{get_path, id_text};
use serde_json::{Map, Value};

use std::collections::HashMap;

use crate::api::{ApiError, Priority, SendRequest, write_body};
use sequin_spec::record::{encode_body, write_object};

use super::apply::{self, Applied, Done};
use super::error::WriteError;
use super::journal::{Became, Entry, Journal, Outcome};
use super::path::PathVars;
use super::rows::{RowOp, cell_from_pg};
use super::sql;
use super::table::Table;

/// The external id column an upsert goes by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its index among the table's columns.
    pub column: usize,
}

/// The table's external id columns (names).
fn external_ids(table: &Table) -> Vec<String> {
    table
        .plan
        .table
        .columns
        .iter()
        .filter(|c| c.external_id)
        .map(|c| c.name.to_string())
        .collect()
}

/// Checks an INSERT's ON CONFLICT clause against the table: the upsert
/// target, `None` when the target is the primary key (the synced rows hold
/// the API's ids, so Postgres decides: a row it finds is updated at the
/// API, the others created), or the refusal that names what would work.
pub fn target(table: &Table, clause: &OnConflict) -> Result<Option<Target>, WriteError> {
    let pk = &table.plan.table.columns[table.plan.table.primary_key].name;
    if clause.constraint.is_none()
        && !clause.target_where
        && matches!(clause.target.as_slice(), [Some(c)] if c == &**pk)
    {
        return Ok(None);
    }
    let ids = external_ids(table);
    let name = format!("{}.{}", table.connection, table.plan.table.name);
    let refuse = |what: String| {
        let e = WriteError::new(table.api(), "0A000", what);
        match ids.as_slice() {
            [] => e.hint("write an INSERT without ON CONFLICT, or an UPDATE"),
            [one, ..] => e.hint(format!(
                "e.g. INSERT INTO {name} ({one}, ...) VALUES (...) ON CONFLICT ({one}) DO UPDATE SET <column> = EXCLUDED.<column>, ..."
            )),
        }
    };
    let works = if ids.is_empty() {
        format!(
            "{name} has no external id column, so ON CONFLICT cannot become an upsert at the API; only ON CONFLICT ({pk}) works (the API's id, matched against the synced rows)"
        )
    } else {
        format!(
            "the columns that would work: {} (external ids, upserted by the API), or ON CONFLICT ({pk}) (the API's id, matched against the synced rows)",
            ids.iter()
                .map(|c| format!("ON CONFLICT ({c}) DO UPDATE"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let target_text = target_text(clause);
    if table.plan.endpoints.upsert.is_none() || ids.is_empty() {
        return Err(refuse(format!(
            "INSERT ... ON CONFLICT {target_text} on {name} cannot be written through: {works}"
        )));
    }
    let column = match (&clause.constraint, clause.target.as_slice()) {
        (None, [Some(c)]) => ids.iter().find(|id| *id == c),
        _ => None,
    };
    let Some(column) = column.filter(|_| !clause.target_where) else {
        return Err(refuse(format!(
            "ON CONFLICT {target_text} cannot be written through to the API, which matches records by one external id only; {works}"
        )));
    };
    if !clause.update {
        return Err(refuse(format!(
            "ON CONFLICT ({column}) DO NOTHING cannot be written through (the API's upsert updates a record it finds); use DO UPDATE SET <column> = EXCLUDED.<column>; {works}"
        )));
    }
    set_list(table, clause, column).map_err(refuse)?;
    let index = table
        .plan
        .table
        .columns
        .iter()
        .position(|c| &*c.name == column)
        .expect("an external id is a column");
    Ok(Some(Target { column: index }))
}

/// The conflict target as the statement wrote it.
fn target_text(clause: &OnConflict) -> String {
    match (&clause.constraint, clause.target.as_slice()) {
        (Some(c), _) => format!("ON CONSTRAINT {c}"),
        (None, []) => "without a target".to_string(),
        (None, cols) => format!(
            "({})",
            cols.iter()
                .map(|c| c.as_deref().unwrap_or("<expression>"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `DO UPDATE SET` must be what the API's upsert does: every inserted
/// column but the conflict column, each set from `EXCLUDED`, no `WHERE`.
fn set_list(table: &Table, clause: &OnConflict, column: &str) -> Result<(), String> {
    if clause.update_where {
        return Err("ON CONFLICT ... DO UPDATE ... WHERE cannot be written through: the API's upsert updates the record it finds unconditionally".into());
    }
    if clause.insert_columns.is_empty() {
        return Err(format!(
            "name the INSERT's columns (INSERT INTO {}.{} (<columns>) ...) to upsert by {column}",
            table.connection, table.plan.table.name
        ));
    }
    let odd: Vec<&str> = clause
        .set
        .iter()
        .filter(|(c, from)| from.as_deref() != Some(c.as_str()))
        .map(|(c, _)| c.as_str())
        .collect();
    if !odd.is_empty() {
        return Err(format!(
            "DO UPDATE SET must take each column from EXCLUDED (`{c} = EXCLUDED.{c}`): the API's upsert writes the inserted values whether it creates or updates; not so: {}",
            odd.join(", "),
            c = odd[0]
        ));
    }
    let missing: Vec<&str> = clause
        .insert_columns
        .iter()
        .filter(|c| c.as_str() != column && !clause.set.iter().any(|(s, _)| s == *c))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = clause
        .set
        .iter()
        .filter(|(s, _)| !clause.insert_columns.contains(s))
        .map(|(s, _)| s.as_str())
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "DO UPDATE SET must set exactly the inserted columns (but {column}) from EXCLUDED, since the API's upsert writes the same fields whether it creates or updates; missing: [{}], not inserted: [{}]",
            missing.join(", "),
            extra.join(", ")
        ));
    }
    Ok(())
}

/// The creates of the captured rows as upserts by the target column: its
/// value (which must be set) finds the record.
pub fn ops(table: &Table, target: &Target, ops: Vec<RowOp>) -> Result<Vec<RowOp>, WriteError> {
    let col = &table.plan.table.columns[target.column];
    ops.into_iter()
        .map(|op| match op {
            RowOp::Create { key, body, written } => {
                let value = written
                    .get(&*col.name)
                    .and_then(|v| match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        WriteError::new(
                            table.api(),
                            "23502",
                            format!(
                                "column `{}` is the external id this upsert goes by: give it a value in every row",
                                col.name
                            ),
                        )
                        .column(col.name.to_string())
                    })?;
                Ok(RowOp::Upsert {
                    key,
                    field: col.api_name.to_string(),
                    path: col.path.to_string(),
                    value,
                    body,
                    written,
                })
            }
            other => Ok(other),
        })
        .collect()
}

/// Sends the upserts: the batch endpoint for several rows (in chunks of
/// its size), else one request per row. Stops at the first rejection.
pub async fn apply(t: &Table, ops: &[RowOp], paths: &[PathVars]) -> Applied {
    let mut out = Applied::default();
    let Some(u) = &t.plan.endpoints.upsert else {
        out.error = Some(apply::decode_failure(t, "no upsert endpoint"));
        return out;
    };
    match &u.batch {
        Some(b) if ops.len() > 1 || u.single.is_none() => {
            let size = b.max_size.max(1) as usize;
            for start in (0..ops.len()).step_by(size) {
                let end = (start + size).min(ops.len());
                match send_batch(t, u, b, &ops[start..end]).await {
                    Ok(done) => {
                        for (k, d, created) in done {
                            out.upserted.push((start + k, created));
                            out.done.push((start + k, d));
                        }
                    }
                    Err((done, e)) => {
                        for (k, d, created) in done {
                            out.upserted.push((start + k, created));
                            out.done.push((start + k, d));
                        }
                        out.fail(e, start..end);
                        return out;
                    }
                }
            }
        }
        _ => {
            for (k, op) in ops.iter().enumerate() {
                match send_one(t, u, op, &paths[k]).await {
                    Ok(Some((d, created))) => {
                        out.upserted.push((k, created));
                        out.done.push((k, d));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        out.fail(e, k..k + 1);
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// Whether an answer says the record was created: its `created` member,
/// else its status.
fn created(u: &Upsert, status: u16, json: Option<&Value>) -> bool {
    match (u.created.as_deref(), json) {
        (Some(p), Some(j)) if get_path(j, p).is_some_and(|v| v.is_boolean()) => {
            get_path(j, p) == Some(&Value::Bool(true))
        }
        _ => u.created_status == Some(status),
    }
}

/// One upsert by the value in the path; the body carries the other fields.
async fn send_one(
    t: &Table,
    u: &Upsert,
    op: &RowOp,
    path: &PathVars,
) -> Result<Option<(Done, bool)>, ApiError> {
    let RowOp::Upsert {
        field,
        path: value_path,
        value,
        body,
        ..
    } = op
    else {
        return Ok(None);
    };
    let Some(ep) = &u.single else {
        return Err(apply::decode_failure(t, "no single upsert endpoint"));
    };
    let vars = apply::vars_at(t, path)
        .with("external_field", field.clone())
        .with("external_value", value.clone());
    let mut body = body.clone();
    // The external id is in the path, and the API takes it there only.
    remove_path(&mut body, value_path);
    let mut req = SendRequest::new(Priority::Write, ep, &vars);
    req.body = Some(write_body(&t.spec, ep, body));
    // Sent again, it finds what the first one made and sets the same
    // values: only "created" could read differently.
    req.retry_safe = true;
    let resp = t.client.send_request(req).await?;
    let made = created(u, resp.status, resp.json.as_ref());
    let id = resp
        .json
        .as_ref()
        .and_then(|j| get_path(j, ep.returns_id.as_deref().unwrap_or("id")))
        .and_then(id_text)
        .ok_or_else(|| apply::decode_failure(t, "the upsert's answer has no record id"))?;
    let record = apply::fetch(t, &id, path).await?;
    Ok(Some((
        Done {
            api_id: id,
            record: Some(record),
        },
        made,
    )))
}

/// What a batch of upserts did: `(index, done, created)` of each applied.
type BatchDone = Vec<(usize, Done, bool)>;

/// One batch request of upserts by the field in the path; each item
/// carries the external id with the other fields.
async fn send_batch(
    t: &Table,
    u: &Upsert,
    b: &BatchEndpoint,
    ops: &[RowOp],
) -> Result<BatchDone, (BatchDone, ApiError)> {
    let field = match ops.first() {
        Some(RowOp::Upsert { field, .. }) => field.clone(),
        _ => return Ok(Vec::new()),
    };
    let vars = apply::vars(t).with("external_field", field);
    let mut req = SendRequest::new(Priority::Write, &b.endpoint, &vars);
    let item_body =
        apply::item_body(t, b).map_err(|e| (Vec::new(), apply::decode_failure(t, &e)))?;
    let items: Vec<Value> = ops
        .iter()
        .filter_map(|op| match op {
            RowOp::Upsert { body, .. } => {
                let mut item: Map<String, Value> = match &b.endpoint.wrap {
                    Some(w) => [(w.clone(), Value::Object(body.clone()))]
                        .into_iter()
                        .collect(),
                    None => body.clone(),
                };
                for (k, v) in &item_body {
                    item.entry(k.clone()).or_insert_with(|| v.clone());
                }
                Some(Value::Object(item))
            }
            _ => None,
        })
        .collect();
    let Some(items_key) = &b.items else {
        return Err((
            Vec::new(),
            apply::decode_failure(t, "batch upsert without `items`"),
        ));
    };
    let mut top = Map::new();
    top.insert(items_key.clone(), Value::Array(items));
    for (k, v) in &b.endpoint.body {
        top.entry(k.clone()).or_insert_with(|| v.clone());
    }
    req.body = Some(encode_body(top, t.spec.body));
    req.retry_safe = true;
    let resp = t
        .client
        .send_request(req)
        .await
        .map_err(|e| (Vec::new(), e))?;
    let results = apply::batch_results(b, &resp);
    if let Some(e) = apply::batch_error(t, &resp, &results) {
        // All or none (the spec's `atomic`): nothing was applied.
        return Err((Vec::new(), e));
    }
    if results.len() != ops.len() {
        return Err((
            Vec::new(),
            apply::decode_failure(t, "the batch upsert's answer has not one result per record"),
        ));
    }
    let id_path = b.endpoint.returns_id.as_deref().unwrap_or("id");
    let mut done = Vec::with_capacity(ops.len());
    for (k, r) in results.iter().enumerate() {
        let Some(id) = get_path(r, id_path).and_then(id_text) else {
            return Err((
                done,
                apply::decode_failure(t, "a batch upsert result has no record id"),
            ));
        };
        let made = created(u, resp.status, Some(r));
        match apply::fetch(t, &id, &PathVars::new()).await {
            Ok(record) => done.push((
                k,
                Done {
                    api_id: id,
                    record: Some(record),
                },
                made,
            )),
            Err(e) => {
                // Written, but unreadable: journal it, report the error.
                done.push((
                    k,
                    Done {
                        api_id: id,
                        record: None,
                    },
                    made,
                ));
                return Err((done, e));
            }
        }
    }
    Ok(done)
}

/// Removes the value at a dot path from a body (a write body's external
/// id, which the single endpoint takes in its path only).
fn remove_path(body: &mut Map<String, Value>, path: &str) {
    match path.split_once('.') {
        None => {
            body.remove(path);
        }
        Some((head, rest)) => {
            if let Some(Value::Object(inner)) = body.get_mut(head) {
                remove_path(inner, rest);
            }
        }
    }
}

/// What each applied upsert became, for the journal: a create (undone by
/// deleting the record), or an update whose undo restores the values the
/// table held for that record before (read by its id on Sequin's own
/// session, before the write-back replaces the row). An update of a record
/// the table does not hold yet stays an `upsert` (nothing to restore from).
pub async fn became(
    table: &Table,
    journal: &Journal,
    intents: &[(usize, Entry)],
    applied: &Applied,
    outcomes: &mut [(uuid::Uuid, Outcome)],
) {
    let updated: Vec<String> = applied
        .upserted
        .iter()
        .filter(|(_, created)| !created)
        .filter_map(|(i, _)| applied.done.iter().find(|(k, _)| k == i))
        .map(|(_, d)| d.api_id.clone())
        .collect();
    let before = match previous_rows(table, journal, &updated).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "write journal: reading the rows upserts updated failed; their undo cannot restore them");
            Default::default()
        }
    };
    for ((i, entry), (_, outcome)) in intents.iter().zip(outcomes.iter_mut()) {
        let Some(&(_, created)) = applied.upserted.iter().find(|(k, _)| k == i) else {
            continue;
        };
        let Outcome::Applied {
            api_id,
            written,
            became,
        } = outcome
        else {
            continue;
        };
        *became = if created {
            Some(Became {
                op: "create",
                undo: entry.undo.clone(),
            })
        } else {
            before
                .get(api_id.as_str())
                .and_then(|old| update_undo(table, old, written.as_ref()?))
                .map(|undo| Became { op: "update", undo })
        };
    }
}

/// The rows the table holds for `ids` (as `to_jsonb` shows them), by id.
async fn previous_rows(
    table: &Table,
    journal: &Journal,
    ids: &[String],
) -> Result<HashMap<String, Map<String, Value>>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let pk = sql::Key::of(&table.plan.table);
    let q = format!(
        "SELECT t.{name}::text, to_jsonb(t)::text FROM {table} AS t \
          WHERE t.{name} = ANY(ARRAY(SELECT k::{ty} FROM unnest($1::text[]) AS s(k)))",
        name = sql::ident(pk.name),
        table = table.plan.table.qualified(),
        ty = pk.ty,
    );
    let rows = journal.client.query(&q, &[&ids]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let id: String = r.get(0);
            let doc: String = r.get(1);
            match serde_json::from_str(&doc) {
                Ok(Value::Object(m)) => Some((id, m)),
                _ => None,
            }
        })
        .collect())
}

/// An update's undo (as `rows::Undo` journals it) from the row before and
/// the values the API holds now for the columns the upsert set.
fn update_undo(
    table: &Table,
    old: &Map<String, Value>,
    written: &Map<String, Value>,
) -> Option<Value> {
    let columns = &table.plan.table.columns;
    let mut cells = Vec::new();
    let mut previous = Map::new();
    for c in columns.iter().filter(|c| written.contains_key(&*c.name)) {
        let v = old.get(&*c.name);
        cells.push((c, cell_from_pg(c, v).ok()?));
        previous.insert(c.name.to_string(), v.cloned().unwrap_or(Value::Null));
    }
    let body = write_object(cells.iter().map(|(c, cell)| (*c, cell)), None);
    Some(serde_json::json!({ "body": body, "written": written, "previous": previous }))
}
