//! The HTTP handlers of associations v4: batch read, create, archive (links and labels) and
//! default associations per object pair (`/crm/v4/associations/{from}/{to}/batch/...`), one
//! record's associations (`/crm/v4/objects/{type}/{id}/associations/{toType}[/{toId}]`), and a
//! pair's types and labels (`/crm/associations/v4/{from}/{to}/labels`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::associations::{TypeKey, parse_specs};
use super::objects::ObjectType;
use super::store::{HsError, Portal, format_time};
use super::{Sim, batch_response, parse_json, query_pairs, query_value};

/// Most inputs of a batch read; other association batches take up to 2,000.
const READ_LIMIT: usize = 1000;
const WRITE_LIMIT: usize = 2000;
/// Most associations of one record a page lists.
const PAGE_LIMIT: usize = 500;

fn inputs(body: &Value, limit: usize) -> Result<&[Value], HsError> {
    let inputs = body
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| HsError::validation("Invalid input JSON: inputs is required"))?;
    if inputs.len() > limit {
        return Err(HsError::validation(format!(
            "Batch input is limited to {limit} inputs; {} were given",
            inputs.len()
        )));
    }
    Ok(inputs)
}

/// `input.<key>.id` as text.
fn id_at<'a>(input: &'a Value, key: &str) -> Result<&'a str, HsError> {
    input
        .pointer(&format!("/{key}/id"))
        .and_then(Value::as_str)
        .ok_or_else(|| HsError::validation(format!("Invalid input JSON: {key}.id is required")))
}

fn pair(portal: &Portal, from: &str, to: &str) -> Result<(ObjectType, ObjectType), HsError> {
    Ok((portal.resolve(from)?, portal.resolve(to)?))
}

/// A `StandardError` of a batch for ids it could not use; `reason` says which way (no such
/// record, or no association), in `context` (the reference types `subCategory` as an object).
fn batch_error(message: String, ids: &[String], reason: &str) -> Value {
    json!({
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": message,
        "context": {"ids": ids, "reason": [reason]},
        "errors": [],
        "links": {},
    })
}

fn completed(
    sim: &super::Hubspot,
    started: &str,
    status: StatusCode,
    results: Vec<Value>,
    errors: Vec<Value>,
) -> Response {
    let done = format_time(sim.ctx.clock.now_ms());
    batch_response(status, results, errors, started, &done)
}

pub(super) async fn batch_read(
    State(sim): Sim,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let started = format_time(sim.ctx.clock.now_ms());
    let portal = sim.portal();
    let (from, to) = pair(&portal, &from, &to)?;
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in inputs(&body, READ_LIMIT)? {
        let id = input
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| HsError::validation("Invalid input JSON: id is required"))?;
        match portal.associations_of(from, id, to) {
            Ok(linked) if !linked.is_empty() => {
                results.push(json!({"from": {"id": id}, "to": linked}));
            }
            Ok(_) => errors.push(batch_error(
                format!(
                    "No {} is associated with {} {id}.",
                    to.type_id(),
                    from.type_id()
                ),
                &[id.to_owned()],
                "crm.associations.NO_ASSOCIATIONS_FOUND",
            )),
            Err(_) => errors.push(batch_error(
                format!("Could not find {} {id}.", from.type_id()),
                &[id.to_owned()],
                "crm.associations.INVALID_OBJECT_IDS",
            )),
        }
    }
    drop(portal);
    Ok(completed(&sim, &started, StatusCode::OK, results, errors))
}

/// `{from, to, types}` inputs (create, labels/archive).
fn typed_links(body: &Value) -> Result<Vec<(String, String, Vec<TypeKey>)>, HsError> {
    inputs(body, WRITE_LIMIT)?
        .iter()
        .map(|input| {
            let types = parse_specs(input.get("types").unwrap_or(&Value::Null))?;
            Ok((
                id_at(input, "from")?.to_owned(),
                id_at(input, "to")?.to_owned(),
                types,
            ))
        })
        .collect()
}

pub(super) async fn batch_create(
    State(sim): Sim,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let started = format_time(sim.ctx.clock.now_ms());
    let mut portal = sim.portal();
    let (from, to) = pair(&portal, &from, &to)?;
    let links = typed_links(&body)?;
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for (a, b, types) in &links {
        match portal.associate((from, a), (to, b), types) {
            Ok(labels) => results.push(labels),
            Err(e) if e.status == 404 => missing.push(format!("{a}->{b}")),
            Err(e) => return Err(e),
        }
    }
    drop(portal);
    let errors = if missing.is_empty() {
        Vec::new()
    } else {
        let message = "Some records to associate were not found".to_owned();
        vec![batch_error(
            message,
            &missing,
            "crm.associations.INVALID_OBJECT_IDS",
        )]
    };
    Ok(completed(
        &sim,
        &started,
        StatusCode::CREATED,
        results,
        errors,
    ))
}

pub(super) async fn batch_archive(
    State(sim): Sim,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let mut portal = sim.portal();
    let (from, to) = pair(&portal, &from, &to)?;
    for input in inputs(&body, WRITE_LIMIT)? {
        let a = id_at(input, "from")?;
        let others = input
            .get("to")
            .and_then(Value::as_array)
            .ok_or_else(|| HsError::validation("Invalid input JSON: to is required"))?;
        for other in others {
            let b = other.get("id").and_then(Value::as_str).unwrap_or_default();
            portal.dissociate((from, a), (to, b), None);
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn batch_archive_labels(
    State(sim): Sim,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let mut portal = sim.portal();
    let (from, to) = pair(&portal, &from, &to)?;
    for (a, b, types) in typed_links(&body)? {
        portal.dissociate((from, &a), (to, &b), Some(&types));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn batch_associate_default(
    State(sim): Sim,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let started = format_time(sim.ctx.clock.now_ms());
    let mut portal = sim.portal();
    let (from, to) = pair(&portal, &from, &to)?;
    let mut results = Vec::new();
    for input in inputs(&body, WRITE_LIMIT)? {
        let (a, b) = (id_at(input, "from")?, id_at(input, "to")?);
        let (category, id) = portal.associate_default((from, a), (to, b))?;
        results.push(json!({
            "from": {"id": a},
            "to": {"id": b},
            "associationSpec": {"associationCategory": category.name(), "associationTypeId": id},
        }));
    }
    drop(portal);
    Ok(completed(
        &sim,
        &started,
        StatusCode::OK,
        results,
        Vec::new(),
    ))
}

pub(super) async fn list_for_object(
    State(sim): Sim,
    Path((object, id, to)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HsError> {
    let pairs = query_pairs(raw.as_deref());
    let limit = query_value(&pairs, "limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| HsError::validation(format!("limit: {l} is not a valid integer")))
        })
        .transpose()?
        .unwrap_or(PAGE_LIMIT)
        .clamp(1, PAGE_LIMIT);
    let after = query_value(&pairs, "after")
        .map(|a| {
            a.parse::<u64>()
                .map_err(|_| HsError::validation(format!("Invalid after value: {a}")))
        })
        .transpose()?;
    let portal = sim.portal();
    let (from, to) = pair(&portal, &object, &to)?;
    let linked = portal.associations_of(from, &id, to)?;
    let mut page = linked.into_iter().filter(|l| {
        let n = l["toObjectId"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        after.is_none_or(|a| n > a)
    });
    let results: Vec<Value> = page.by_ref().take(limit).collect();
    let mut body = json!({"results": results});
    if page.next().is_some()
        && let Some(last) = results.last()
    {
        body["paging"] = json!({"next": {"after": last["toObjectId"]}});
    }
    Ok(Json(body).into_response())
}

pub(super) async fn put_for_object(
    State(sim): Sim,
    Path((object, id, to, to_id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let types = parse_specs(&parse_json(&body)?)?;
    let mut portal = sim.portal();
    let (from, to) = pair(&portal, &object, &to)?;
    let labels = portal.associate((from, &id), (to, &to_id), &types)?;
    Ok((StatusCode::CREATED, Json(labels)).into_response())
}

pub(super) async fn delete_for_object(
    State(sim): Sim,
    Path((object, id, to, to_id)): Path<(String, String, String, String)>,
) -> Result<Response, HsError> {
    let mut portal = sim.portal();
    let (from, to) = pair(&portal, &object, &to)?;
    portal.dissociate((from, &id), (to, &to_id), None);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn put_default_for_object(
    State(sim): Sim,
    Path((object, id, to, to_id)): Path<(String, String, String, String)>,
) -> Result<Response, HsError> {
    let started = format_time(sim.ctx.clock.now_ms());
    let mut portal = sim.portal();
    let (from, to) = pair(&portal, &object, &to)?;
    let (category, type_id) = portal.associate_default((from, &id), (to, &to_id))?;
    drop(portal);
    let result = json!({
        "from": {"id": id},
        "to": {"id": to_id},
        "associationSpec": {"associationCategory": category.name(), "associationTypeId": type_id},
    });
    Ok(completed(
        &sim,
        &started,
        StatusCode::OK,
        vec![result],
        Vec::new(),
    ))
}

pub(super) async fn list_labels(
    State(sim): Sim,
    Path((from, to)): Path<(String, String)>,
) -> Result<Response, HsError> {
    let portal = sim.portal();
    let (from, to) = pair(&portal, &from, &to)?;
    let results: Vec<Value> = portal
        .associations
        .types(from, to)
        .iter()
        .map(|t| {
            let mut spec = json!({"category": t.category.name(), "typeId": t.type_id});
            if let Some(label) = &t.label {
                spec["label"] = json!(label);
            }
            spec
        })
        .collect();
    Ok(Json(json!({"results": results})).into_response())
}

pub(super) async fn create_label(
    State(sim): Sim,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let label = body
        .get("label")
        .and_then(Value::as_str)
        .ok_or_else(|| HsError::validation("Invalid input JSON: label is required"))?;
    body.get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| HsError::validation("Invalid input JSON: name is required"))?;
    let inverse = body.get("inverseLabel").and_then(Value::as_str);
    let mut portal = sim.portal();
    let (from, to) = pair(&portal, &from, &to)?;
    let (id, inverse_id) = portal.associations.add_label(from, to, label, inverse)?;
    let mut results = vec![json!({"category": "USER_DEFINED", "typeId": id, "label": label})];
    if inverse_id != id {
        results.push(json!({"category": "USER_DEFINED", "typeId": inverse_id, "label": inverse.unwrap_or(label)}));
    }
    Ok(Json(json!({"results": results})).into_response())
}
