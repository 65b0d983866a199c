//! The journal's entries for a statement's API operations: the intent
//! written before each is sent (with what finds and undoes its effect),
//! and its outcome once the API answered.

use serde_json::{Map, Value, json};

use super::apply::Applied;
use super::journal::{Entry, Outcome};
use super::path::PathVars;
use super::rows::{self, RowOp};
use super::table::Table;

/// The journal's intent for one operation (none when nothing is sent).
/// Its `undo` keeps the placeholders filled from the row (`path`: a
/// child's parent), which the reconciler needs to address the record.
pub fn intent(
    table: &Table,
    op: &RowOp,
    path: &PathVars,
    xid: i64,
    capture_id: i64,
    idempotency_key: Option<String>,
) -> Option<Entry> {
    let (kind, api_id, request, undo, key) = match op {
        RowOp::Create { body, written, .. } => {
            // A create sent again with its idempotency key must carry the
            // very body it was first sent with (the API compares them).
            let replay = idempotency_key
                .as_ref()
                .zip(table.plan.endpoints.create.as_ref())
                .map(|(_, ep)| {
                    let sent = crate::api::write_body(&table.spec, ep, body.clone());
                    String::from_utf8_lossy(&sent.into_bytes()).into_owned()
                });
            (
                "create",
                None,
                Value::Object(body.clone()),
                json!({ "written": written, "replay": replay }),
                idempotency_key,
            )
        }
        RowOp::Update { id, body, undo } => (
            "update",
            Some(id.clone()),
            Value::Object(body.clone()),
            json!({"body": undo.body, "written": undo.written, "previous": undo.previous}),
            None,
        ),
        // A link's row is what re-creates it (the reconciler's undo).
        RowOp::Delete { id, old } => (
            "delete",
            Some(id.clone()),
            if table.plan.link.is_some() {
                Value::Object((**old).clone())
            } else {
                Value::Null
            },
            json!({}),
            None,
        ),
        // What it did is known from the answer (`upsert::became`).
        RowOp::Upsert {
            body,
            written,
            field,
            value,
            ..
        } => (
            "upsert",
            None,
            Value::Object(body.clone()),
            json!({ "written": written, "external": {"field": field, "value": value} }),
            None,
        ),
        RowOp::Unchanged { .. } => return None,
    };
    let mut undo = undo;
    if !path.is_empty()
        && let Value::Object(m) = &mut undo
    {
        m.insert("path".into(), json!(path));
    }
    let undo = match undo {
        Value::Object(m) if m.is_empty() => Value::Null,
        other => other,
    };
    Some(Entry {
        // From the thread's generator: no system call per write.
        id: uuid::Builder::from_random_bytes(rand::random()).into_uuid(),
        connection: table.connection.clone(),
        object: table.plan.table.name.clone(),
        op: kind,
        api_id,
        xid,
        capture_id,
        request,
        undo,
        idempotency_key: key,
    })
}

/// Each intent's outcome (`intents` by operation index): applied, with
/// what the API holds now; lost in transit (the reconciler finds out); or
/// refused or never sent.
pub fn outcomes(
    table: &Table,
    intents: &[(usize, Entry)],
    applied: &Applied,
) -> Vec<(uuid::Uuid, Outcome)> {
    intents
        .iter()
        .map(|(i, e)| {
            let outcome = if let Some((_, d)) = applied.done.iter().find(|(k, _)| k == i) {
                Outcome::Applied {
                    api_id: d.api_id.clone(),
                    written: d
                        .record
                        .as_ref()
                        .and_then(|r| canonical_values(table, r, &e.undo)),
                    became: None,
                }
            } else if applied.unknown.contains(i) {
                Outcome::Unknown
            } else {
                Outcome::Rejected
            };
            (e.id, outcome)
        })
        .collect()
}

/// The values the API holds after a write, for the columns the write set
/// (the keys of `undo.written`), as `to_jsonb` shows them: what an undo
/// later checks the API still holds (the API may have normalized what it
/// was sent).
fn canonical_values(table: &Table, record: &Value, undo: &Value) -> Option<Map<String, Value>> {
    use sequin_spec::record::{decode_cell, get_path};
    let set = undo.get("written")?.as_object()?;
    // Only the written columns are decoded (the write-back decodes the
    // whole record once more).
    table
        .plan
        .table
        .columns
        .iter()
        .filter(|c| set.contains_key(&*c.name))
        .map(|c| {
            let cell = decode_cell(c, get_path(record, &c.path)).ok()?;
            Some((c.name.to_string(), rows::cell_to_pg(&cell)))
        })
        .collect()
}
