//! Write-through of link tables (`links:` of a spec, HubSpot's
//! associations), step 4 (apply) and the reconciler's undo for them.
//!
//! An INSERT creates links with the spec's `create` batch endpoint, or
//! `create_default` for rows whose `type_id` is null (the pair's default
//! type); a DELETE removes each row's association type with `delete`. The
//! items are the spec's item templates filled with the row's columns. A
//! created link is read back (the batch read of its source), which gives the
//! canonical row (the type's label) and says which links of a batch the API
//! made. Creating an existing link or removing a missing one changes
//! nothing at the API, so every request may be repeated. UPDATE never gets
//! here: a link table has no update endpoint (`check.rs` refuses it).
//!
//! The reconciler undoes a link write by its inverse: a created link is
//! removed again, a removed one created again from the row the journal
//! kept, each only while the API still shows the effect.

use serde_json::{Map, Value};

use sequin_spec::links::{fill, link_record, pair_endpoint};
use sequin_spec::model::LinkWrite;
use sequin_spec::record::{encode_body, get_path, id_text};

use super::apply::{Applied, Done, batch_error, decode_failure};
use super::rows::RowOp;
use super::table::Table;
use crate::api::{ApiError, ApiResponse, Priority, SendRequest, Vars};
use crate::catalog::{Direction, LinkPlan};

fn plan(t: &Table) -> &LinkPlan {
    t.plan.link.as_ref().expect("a link table has a link plan")
}

/// Applies a statement's link operations (all of one kind).
pub async fn apply(t: &Table, ops: &[RowOp]) -> Applied {
    let mut out = Applied::default();
    let creates: Vec<(usize, &Map<String, Value>)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            RowOp::Create { body, .. } => Some((i, body)),
            _ => None,
        })
        .collect();
    let deletes: Vec<(usize, &Map<String, Value>)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            RowOp::Delete { old, .. } => Some((i, &**old)),
            _ => None,
        })
        .collect();
    if !creates.is_empty() {
        create(t, &creates, &mut out).await;
    }
    if !deletes.is_empty() && out.error.is_none() {
        delete(t, &deletes, &mut out).await;
    }
    out
}

/// Sends one batch of items to a link write endpoint.
async fn send(t: &Table, w: &LinkWrite, items: Vec<Value>) -> Result<ApiResponse, ApiError> {
    let l = plan(t);
    let ep = pair_endpoint(&w.endpoint, &l.from_api, &l.to_api);
    let vars = Vars::new();
    let mut req = SendRequest::new(Priority::Write, &ep, &vars);
    let mut body = ep.body.clone();
    body.insert(w.items.clone(), Value::Array(items));
    req.body = Some(encode_body(body, t.spec.body));
    req.retry_safe = true;
    t.client.send_request(req).await
}

/// A row's type, if the INSERT gave one (else the pair's default type).
fn typed(body: &Map<String, Value>) -> bool {
    body.get("type_id").is_some_and(|v| !v.is_null())
}

/// Creates the links of `ops` (explicit types with `create`, the others
/// with `create_default`), then reads their sources' links back: an
/// operation is done when its link is there.
async fn create(t: &Table, ops: &[(usize, &Map<String, Value>)], out: &mut Applied) {
    let l = plan(t);
    let links = &l.links;
    // The type the API gave each default create, by operation index.
    let mut assigned: Vec<(usize, Option<String>)> = Vec::new();
    let groups: [(Option<&LinkWrite>, bool); 2] = [
        (Some(&links.create), true),
        (links.create_default.as_ref(), false),
    ];
    for (w, explicit) in groups {
        let group: Vec<&(usize, &Map<String, Value>)> =
            ops.iter().filter(|(_, b)| typed(b) == explicit).collect();
        if group.is_empty() {
            continue;
        }
        let w = w.unwrap_or(&links.create);
        for chunk in group.chunks(w.max_size.max(1) as usize) {
            let items = chunk.iter().map(|(_, body)| fill(&w.item, body)).collect();
            let resp = match send(t, w, items).await {
                Ok(r) => r,
                Err(e) => {
                    if e.maybe_applied {
                        out.unknown = chunk.iter().map(|(i, _)| *i).collect();
                    }
                    out.error = Some(e);
                    break;
                }
            };
            let results: Vec<Value> = resp
                .json
                .as_ref()
                .and_then(|j| j.get("results"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !explicit && results.len() == chunk.len() {
                for ((i, _), r) in chunk.iter().zip(&results) {
                    let type_id = w
                        .result_type_id
                        .as_deref()
                        .and_then(|p| get_path(r, p).and_then(id_text));
                    assigned.push((*i, type_id));
                }
            }
            if let Some(e) = batch_error(t, &resp, &results) {
                out.error = Some(e);
                break;
            }
        }
        if out.error.is_some() {
            break;
        }
    }
    read_back(t, ops, &assigned, out).await;
}

/// Finds the created links at the API: each operation whose link is there
/// is done, with its canonical row.
async fn read_back(
    t: &Table,
    ops: &[(usize, &Map<String, Value>)],
    assigned: &[(usize, Option<String>)],
    out: &mut Applied,
) {
    let l = plan(t);
    let mut sources: Vec<String> = ops
        .iter()
        .filter_map(|(_, b)| b.get("from_id").and_then(id_text))
        .collect();
    sources.sort();
    sources.dedup();
    let rows = match l
        .read(&t.client, Priority::Write, &sources, Direction::Forward)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            // Sent, but unreadable: the reconciler finds out what was made.
            out.unknown = ops.iter().map(|(i, _)| *i).collect();
            out.error.get_or_insert(e);
            return;
        }
    };
    for (i, body) in ops {
        let (from, to) = (
            body.get("from_id").and_then(id_text),
            body.get("to_id").and_then(id_text),
        );
        let between = |r: &&Value| {
            r.get("from_id").and_then(id_text) == from && r.get("to_id").and_then(id_text) == to
        };
        let found = if typed(body) {
            let id = link_record(
                &l.links.id,
                from.as_deref().unwrap_or_default(),
                to.as_deref().unwrap_or_default(),
                body.get("category").cloned().unwrap_or(Value::Null),
                body.get("type_id").cloned().unwrap_or(Value::Null),
                Value::Null,
            );
            rows.iter().find(|r| r.get("id") == id.get("id"))
        } else {
            let given = assigned
                .iter()
                .find(|(k, _)| k == i)
                .and_then(|(_, t)| t.clone());
            rows.iter().filter(between).find(|r| match &given {
                Some(type_id) => r.get("type_id").and_then(id_text).as_ref() == Some(type_id),
                // The default type is the pair's unlabeled one.
                None => r.get("label").is_none_or(Value::is_null),
            })
        };
        match found {
            Some(r) => out.done.push((
                *i,
                Done {
                    api_id: r.get("id").and_then(id_text).unwrap_or_default(),
                    record: Some(r.clone()),
                },
            )),
            None if out.error.is_none() => {
                out.error = Some(decode_failure(
                    t,
                    "the API answered the create, but the link is not among the source's links",
                ));
            }
            None => {}
        }
    }
}

/// Removes the association types of the deleted rows.
async fn delete(t: &Table, ops: &[(usize, &Map<String, Value>)], out: &mut Applied) {
    let w = &plan(t).links.delete;
    for chunk in ops.chunks(w.max_size.max(1) as usize) {
        let items = chunk.iter().map(|(_, old)| fill(&w.item, old)).collect();
        let resp = match send(t, w, items).await {
            Ok(r) => r,
            Err(e) => {
                if e.maybe_applied {
                    out.unknown = chunk.iter().map(|(i, _)| *i).collect();
                }
                out.error = Some(e);
                return;
            }
        };
        if let Some(e) = batch_error(t, &resp, &[]) {
            out.error = Some(e);
            return;
        }
        for (i, old) in chunk {
            out.done.push((
                *i,
                Done {
                    api_id: old.get("id").and_then(id_text).unwrap_or_default(),
                    record: None,
                },
            ));
        }
    }
}

/// The link a journalled row names, as the API holds it now (`None`: not
/// there). `row` has `from_id` and `to_id`, and the type when known; `id`
/// the derived id when known.
async fn current(
    t: &Table,
    row: &Map<String, Value>,
    id: Option<&str>,
) -> Result<Option<Value>, ApiError> {
    let Some(from) = row.get("from_id").and_then(id_text) else {
        return Ok(None);
    };
    let rows = plan(t)
        .read(
            &t.client,
            Priority::Write,
            std::slice::from_ref(&from),
            Direction::Forward,
        )
        .await?;
    let to = row.get("to_id").and_then(id_text);
    let type_id = row.get("type_id").and_then(id_text);
    Ok(rows.into_iter().find(|r| match id {
        Some(id) => r.get("id").and_then(id_text).as_deref() == Some(id),
        None => {
            r.get("to_id").and_then(id_text) == to
                && (type_id.is_none() || r.get("type_id").and_then(id_text) == type_id)
        }
    }))
}

/// The reconciler's undo of a link write whose transaction did not keep
/// it: `op` and `request` as journalled, `api_id` the link's derived id,
/// `intent` when the API's answer was never journalled. Returns the
/// journal's state and a note, and whether the local row should go.
pub async fn undo(
    t: &Table,
    op: &str,
    api_id: Option<&str>,
    request: &Value,
) -> ((&'static str, Option<String>), bool) {
    let Some(row) = request.as_object() else {
        return (
            (
                "compensation_failed",
                Some("the journal kept no link to undo".into()),
            ),
            false,
        );
    };
    let links = &plan(t).links;
    let now = match current(t, row, api_id).await {
        Ok(now) => now,
        Err(e) => {
            return (
                (
                    "compensation_failed",
                    Some(format!("reading the links: {e}")),
                ),
                false,
            );
        }
    };
    match (op, now) {
        // Created, and still there: remove it.
        ("create", Some(link)) => match send(
            t,
            &links.delete,
            vec![fill(
                &links.delete.item,
                link.as_object().expect("a link row"),
            )],
        )
        .await
        {
            Ok(_) => (("compensated", None), true),
            Err(e) => (("compensation_failed", Some(e.to_string())), false),
        },
        ("create", None) => (
            (
                "rejected",
                Some("the link is not at the API: it was never made, or was removed since".into()),
            ),
            true,
        ),
        // Removed, and still gone: make it again.
        ("delete", None) => match send(t, &links.create, vec![fill(&links.create.item, row)]).await
        {
            Ok(_) => (("compensated", None), false),
            Err(e) => (("compensation_failed", Some(e.to_string())), false),
        },
        ("delete", Some(_)) => (("rejected", None), false),
        _ => (
            (
                "compensation_failed",
                Some(format!("a link table has no `{op}`")),
            ),
            false,
        ),
    }
}
