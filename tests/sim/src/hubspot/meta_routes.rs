//! The HTTP handlers of what describes the CRM rather than being its records: owners
//! (`/crm/v3/owners`), pipelines and stages (`/crm/v3/pipelines/{objectType}`) and custom
//! object schemas (`/crm/v3/schemas`, also at `/crm-object-schemas/v3/schemas`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::owners::OWNER_LIMIT_MAX;
use super::{HsError, Sim, flag, parse_json, query_pairs, query_value};

pub(super) async fn list_owners(
    State(sim): Sim,
    RawQuery(raw): RawQuery,
) -> Result<Response, HsError> {
    let pairs = query_pairs(raw.as_deref());
    let limit = match query_value(&pairs, "limit") {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| HsError::validation(format!("limit: {text} is not a valid integer")))?,
    };
    if limit > OWNER_LIMIT_MAX {
        return Err(HsError::validation(format!(
            "limit must be at most {OWNER_LIMIT_MAX}, was {limit}"
        )));
    }
    let (results, next) = sim.portal().owners.list(
        limit,
        query_value(&pairs, "after"),
        flag(&pairs, "archived"),
        query_value(&pairs, "email"),
    )?;
    let mut body = json!({"results": results});
    if let Some(after) = next {
        let link = format!("{}/crm/v3/owners?after={after}", sim.ctx.base_url);
        body["paging"] = json!({"next": {"after": after, "link": link}});
    }
    Ok(Json(body).into_response())
}

pub(super) async fn read_owner(
    State(sim): Sim,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HsError> {
    let pairs = query_pairs(raw.as_deref());
    let owner = sim.portal().owners.get(
        &id,
        query_value(&pairs, "idProperty"),
        flag(&pairs, "archived"),
    )?;
    Ok(Json(owner).into_response())
}

pub(super) async fn list_pipelines(
    State(sim): Sim,
    Path(object): Path<String>,
) -> Result<Response, HsError> {
    let portal = sim.portal();
    let object_type = portal.resolve(&object)?;
    Ok(Json(json!({"results": portal.pipelines.list(object_type)?})).into_response())
}

pub(super) async fn create_pipeline(
    State(sim): Sim,
    Path(object): Path<String>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let created = sim.portal().create_pipeline(&object, &body)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(super) async fn read_pipeline(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
) -> Result<Response, HsError> {
    let portal = sim.portal();
    let object_type = portal.resolve(&object)?;
    Ok(Json(portal.pipelines.get(object_type, &id)?).into_response())
}

pub(super) async fn update_pipeline(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let updated = sim.portal().update_pipeline(&object, &id, &body)?;
    Ok(Json(updated).into_response())
}

pub(super) async fn archive_pipeline(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
) -> Result<Response, HsError> {
    sim.portal().archive_pipeline(&object, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_stages(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
) -> Result<Response, HsError> {
    let portal = sim.portal();
    let object_type = portal.resolve(&object)?;
    let pipeline = portal.pipelines.get(object_type, &id)?;
    Ok(Json(json!({"results": pipeline["stages"]})).into_response())
}

pub(super) async fn create_stage(
    State(sim): Sim,
    Path((object, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let created = sim.portal().add_stage(&object, &id, &body)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(super) async fn list_schemas(
    State(sim): Sim,
    RawQuery(raw): RawQuery,
) -> Result<Response, HsError> {
    // Custom objects are never archived here, so an archived listing is empty.
    let archived = flag(&query_pairs(raw.as_deref()), "archived");
    let results = if archived {
        Vec::new()
    } else {
        sim.portal().schemas()
    };
    Ok(Json(json!({"results": results})).into_response())
}

pub(super) async fn read_schema(
    State(sim): Sim,
    Path(object): Path<String>,
) -> Result<Response, HsError> {
    Ok(Json(sim.portal().schema(&object)?).into_response())
}

pub(super) async fn create_schema(State(sim): Sim, body: Bytes) -> Result<Response, HsError> {
    let body = parse_json(&body)?;
    let (_, created) = sim.portal().create_schema(&body)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}
