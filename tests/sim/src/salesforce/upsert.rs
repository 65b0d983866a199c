//! The HTTP side of upserts by external ID (`store/upsert.rs` has the
//! org's side) and the control route adding validation rules
//! (`store/validation.rs`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::store::{UpsertOutcome, ValidationRule};
use super::{SfError, Sim, as_object, check_version, collection_records, parse_body};

/// `PATCH /services/data/{version}/sobjects/{object}/{field}/{value}`:
/// 201 when created, 200 when updated (`{"id","success","errors",
/// "created"}`), 300 with the matching records' URLs when several match.
pub(super) async fn single(
    State(sim): Sim,
    Path((version, object, field, value)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let fields = as_object(parse_body(&body)?)?;
    let outcome = sim.org().upsert(&object, &field, &value, &fields)?;
    Ok(match outcome {
        UpsertOutcome::Done(id, created) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (
                status,
                Json(json!({"id": id, "success": true, "errors": [], "created": created})),
            )
                .into_response()
        }
        UpsertOutcome::Multiple(ids) => {
            let urls: Vec<String> = ids
                .iter()
                .map(|id| format!("/services/data/{version}/sobjects/{object}/{id}"))
                .collect();
            (StatusCode::MULTIPLE_CHOICES, Json(json!(urls))).into_response()
        }
    })
}

/// `PATCH /services/data/{version}/composite/sobjects/{object}/{field}`.
pub(super) async fn collection(
    State(sim): Sim,
    Path((version, object, field)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, SfError> {
    check_version(&version)?;
    let body = parse_body(&body)?;
    let (records, all_or_none) = collection_records(&body)?;
    let results = sim
        .org()
        .collection_upsert(&object, &field, records, all_or_none)?;
    Ok(Json(results).into_response())
}

/// `POST /_sim/salesforce/validation-rules`: `{"object", "name", "field",
/// "condition": "less_than"|"greater_than"|"equals"|"not_equals"|
/// "contains"|"blank"|"not_blank", "value", "errorMessage", "errorField"}`.
pub(super) async fn control_add_rule(
    State(sim): Sim,
    Json(rule): Json<ValidationRule>,
) -> Result<Response, SfError> {
    sim.org().add_validation_rule(rule)?;
    Ok(StatusCode::CREATED.into_response())
}
