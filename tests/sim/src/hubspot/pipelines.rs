//! Pipelines and their stages (`/crm/v3/pipelines/{objectType}`): the default sales pipeline of
//! deals and support pipeline of tickets (both created at time 0, as HubSpot reports its
//! defaults), pipelines created, relabelled and deleted through the API, and stages added to
//! them. A deal's `pipeline`/`dealstage` and a ticket's `hs_pipeline`/`hs_pipeline_stage` take
//! their options from here. Shapes as `Pipeline`, `PipelineStage` and `PipelineInput` in
//! `shared/reference/hubspot/v3-pipelines.json`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::objects::ObjectType;
use super::properties::PropertyOption;
use super::store::{HsError, Portal, format_time};

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    /// `probability` (deals) or `ticketState` (tickets), as strings.
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    pub stages: Vec<Stage>,
    pub created: i64,
    pub updated: i64,
    pub archived_at: Option<i64>,
}

impl Stage {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "label": self.label,
            "displayOrder": self.display_order,
            "metadata": self.metadata,
            "createdAt": format_time(self.created),
            "updatedAt": format_time(self.updated),
            "archived": false,
        })
    }
}

impl Pipeline {
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "id": self.id,
            "label": self.label,
            "displayOrder": self.display_order,
            "stages": self.stages.iter().map(Stage::to_json).collect::<Vec<_>>(),
            "createdAt": format_time(self.created),
            "updatedAt": format_time(self.updated),
            "archived": self.archived_at.is_some(),
        });
        if let Some(at) = self.archived_at {
            value["archivedAt"] = json!(format_time(at));
        }
        value
    }
}

/// The deal stages of the default sales pipeline, with their close probabilities.
pub const DEAL_STAGES: &[(&str, &str, &str)] = &[
    ("appointmentscheduled", "Appointment Scheduled", "0.2"),
    ("qualifiedtobuy", "Qualified To Buy", "0.4"),
    ("presentationscheduled", "Presentation Scheduled", "0.6"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"),
    ("contractsent", "Contract Sent", "0.9"),
    ("closedwon", "Closed Won", "1.0"),
    ("closedlost", "Closed Lost", "0.0"),
];

/// The ticket statuses of the default support pipeline, with their ticket states.
pub const TICKET_STAGES: &[(&str, &str, &str)] = &[
    ("1", "New", "OPEN"),
    ("2", "Waiting on contact", "OPEN"),
    ("3", "Waiting on us", "OPEN"),
    ("4", "Closed", "CLOSED"),
];

/// The pipelines of the object types that have them.
pub struct Pipelines {
    by_type: BTreeMap<ObjectType, Vec<Pipeline>>,
    next_id: u64,
}

fn default_pipeline(id: &str, label: &str, key: &str, stages: &[(&str, &str, &str)]) -> Pipeline {
    Pipeline {
        id: id.to_owned(),
        label: label.to_owned(),
        display_order: 0,
        stages: stages
            .iter()
            .enumerate()
            .map(|(i, (id, label, meta))| Stage {
                id: (*id).to_owned(),
                label: (*label).to_owned(),
                display_order: i as i64,
                metadata: BTreeMap::from([(key.to_owned(), (*meta).to_owned())]),
                created: 0,
                updated: 0,
            })
            .collect(),
        created: 0,
        updated: 0,
        archived_at: None,
    }
}

impl Pipelines {
    pub fn defaults() -> Pipelines {
        let mut by_type = BTreeMap::new();
        by_type.insert(
            ObjectType::Deals,
            vec![default_pipeline(
                "default",
                "Sales Pipeline",
                "probability",
                DEAL_STAGES,
            )],
        );
        by_type.insert(
            ObjectType::Tickets,
            vec![default_pipeline(
                "0",
                "Support Pipeline",
                "ticketState",
                TICKET_STAGES,
            )],
        );
        Pipelines {
            by_type,
            next_id: 30_000_001,
        }
    }

    /// The record properties naming a pipeline and its stage, for types with pipelines.
    pub fn properties_of(&self, object_type: ObjectType) -> Option<(&'static str, &'static str)> {
        match object_type {
            ObjectType::Deals => Some(("pipeline", "dealstage")),
            ObjectType::Tickets => Some(("hs_pipeline", "hs_pipeline_stage")),
            _ => None,
        }
    }

    fn of(&self, object_type: ObjectType) -> Result<&Vec<Pipeline>, HsError> {
        self.by_type.get(&object_type).ok_or_else(|| {
            HsError::validation(format!(
                "Object type {} does not support pipelines",
                object_type.type_id()
            ))
        })
    }

    fn live(&self, object_type: ObjectType) -> impl Iterator<Item = &Pipeline> {
        self.by_type
            .get(&object_type)
            .into_iter()
            .flatten()
            .filter(|p| p.archived_at.is_none())
    }

    /// The first live pipeline, which records without one are put in.
    pub fn default_pipeline(&self, object_type: ObjectType) -> Option<String> {
        self.live(object_type).next().map(|p| p.id.clone())
    }

    pub fn pipeline_options(&self, object_type: ObjectType) -> Vec<PropertyOption> {
        self.live(object_type)
            .map(|p| PropertyOption {
                label: p.label.clone(),
                value: p.id.clone(),
            })
            .collect()
    }

    pub fn stage_options(&self, object_type: ObjectType) -> Vec<PropertyOption> {
        self.live(object_type)
            .flat_map(|p| &p.stages)
            .map(|s| PropertyOption {
                label: s.label.clone(),
                value: s.id.clone(),
            })
            .collect()
    }

    fn stage(&self, object_type: ObjectType, pipeline: &str, stage: &str) -> Option<&Stage> {
        self.live(object_type)
            .find(|p| p.id == pipeline)
            .and_then(|p| p.stages.iter().find(|s| s.id == stage))
    }

    pub fn stage_in(&self, object_type: ObjectType, pipeline: &str, stage: &str) -> bool {
        self.stage(object_type, pipeline, stage).is_some()
    }

    /// Whether a ticket stage closes the ticket (`ticketState` CLOSED).
    pub fn is_closed(&self, object_type: ObjectType, pipeline: &str, stage: &str) -> bool {
        self.stage(object_type, pipeline, stage)
            .is_some_and(|s| s.metadata.get("ticketState").map(String::as_str) == Some("CLOSED"))
    }

    /// `GET /crm/v3/pipelines/{objectType}`: the live pipelines.
    pub fn list(&self, object_type: ObjectType) -> Result<Vec<Value>, HsError> {
        self.of(object_type)?;
        Ok(self.live(object_type).map(Pipeline::to_json).collect())
    }

    /// `GET /crm/v3/pipelines/{objectType}/{pipelineId}`.
    pub fn get(&self, object_type: ObjectType, id: &str) -> Result<Value, HsError> {
        self.of(object_type)?;
        self.live(object_type)
            .find(|p| p.id == id)
            .map(Pipeline::to_json)
            .ok_or_else(|| pipeline_not_found(id))
    }

    fn live_mut(&mut self, object_type: ObjectType, id: &str) -> Result<&mut Pipeline, HsError> {
        self.of(object_type)?;
        self.by_type
            .get_mut(&object_type)
            .into_iter()
            .flatten()
            .find(|p| p.id == id && p.archived_at.is_none())
            .ok_or_else(|| pipeline_not_found(id))
    }

    fn next_id(&mut self) -> String {
        let id = self.next_id;
        self.next_id += 1;
        id.to_string()
    }

    /// `POST /crm/v3/pipelines/{objectType}` with a `PipelineInput`.
    pub fn create(
        &mut self,
        object_type: ObjectType,
        body: &Value,
        now: i64,
    ) -> Result<Value, HsError> {
        self.of(object_type)?;
        let label = required_text(body, "label")?;
        if self.live(object_type).any(|p| p.label == label) {
            return Err(HsError::new(
                409,
                "CONFLICT",
                format!("A pipeline with label {label} already exists"),
            ));
        }
        let display_order = required_order(body)?;
        let inputs = body
            .get("stages")
            .and_then(Value::as_array)
            .ok_or_else(|| HsError::validation("Invalid input JSON: stages is required"))?;
        let mut stages = Vec::new();
        for input in inputs {
            let stage = self.stage_from(object_type, input, &stages, now)?;
            stages.push(stage);
        }
        let pipeline = Pipeline {
            id: self.next_id(),
            label,
            display_order,
            stages,
            created: now,
            updated: now,
            archived_at: None,
        };
        let rendered = pipeline.to_json();
        self.by_type
            .get_mut(&object_type)
            .expect("checked")
            .push(pipeline);
        Ok(rendered)
    }

    /// A stage from a `PipelineStageInput`, its label unique among `siblings`.
    fn stage_from(
        &mut self,
        object_type: ObjectType,
        input: &Value,
        siblings: &[Stage],
        now: i64,
    ) -> Result<Stage, HsError> {
        let label = required_text(input, "label")?;
        if siblings.iter().any(|s| s.label == label) {
            return Err(HsError::validation(format!(
                "Stage labels must be unique within a pipeline: {label}"
            )));
        }
        let metadata: BTreeMap<String, String> = input
            .get("metadata")
            .and_then(Value::as_object)
            .ok_or_else(|| HsError::validation("Invalid input JSON: metadata is required"))?
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect();
        if object_type == ObjectType::Deals && !metadata.contains_key("probability") {
            return Err(HsError::validation(
                "Deal stages require metadata.probability (0.0 to 1.0)",
            ));
        }
        Ok(Stage {
            id: self.next_id(),
            label,
            display_order: required_order(input)?,
            metadata,
            created: now,
            updated: now,
        })
    }

    /// `PATCH /crm/v3/pipelines/{objectType}/{pipelineId}` with a `PipelinePatchInput`.
    pub fn update(
        &mut self,
        object_type: ObjectType,
        id: &str,
        body: &Value,
        now: i64,
    ) -> Result<Value, HsError> {
        let patch: &Map<String, Value> = body
            .as_object()
            .ok_or_else(|| HsError::validation("Invalid input JSON: expected an object"))?;
        if patch.contains_key("archived") {
            return Err(HsError::validation(
                "archived may only be sent to restore an archived pipeline",
            ));
        }
        let label = patch
            .get("label")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(label) = &label
            && self
                .live(object_type)
                .any(|p| &p.label == label && p.id != id)
        {
            return Err(HsError::new(
                409,
                "CONFLICT",
                format!("A pipeline with label {label} already exists"),
            ));
        }
        let pipeline = self.live_mut(object_type, id)?;
        if let Some(label) = label {
            pipeline.label = label;
        }
        if let Some(order) = patch.get("displayOrder").and_then(Value::as_i64) {
            pipeline.display_order = order;
        }
        pipeline.updated = now.max(pipeline.updated + 1);
        Ok(pipeline.to_json())
    }

    /// `POST /crm/v3/pipelines/{objectType}/{pipelineId}/stages`.
    pub fn add_stage(
        &mut self,
        object_type: ObjectType,
        id: &str,
        body: &Value,
        now: i64,
    ) -> Result<Value, HsError> {
        let siblings = self.live_mut(object_type, id)?.stages.clone();
        let stage = self.stage_from(object_type, body, &siblings, now)?;
        let rendered = stage.to_json();
        let pipeline = self.live_mut(object_type, id)?;
        pipeline.stages.push(stage);
        pipeline.updated = now.max(pipeline.updated + 1);
        Ok(rendered)
    }

    /// `DELETE /crm/v3/pipelines/{objectType}/{pipelineId}`: the pipeline is archived.
    pub fn archive(&mut self, object_type: ObjectType, id: &str, now: i64) -> Result<(), HsError> {
        let pipeline = self.live_mut(object_type, id)?;
        pipeline.archived_at = Some(now);
        pipeline.updated = now.max(pipeline.updated + 1);
        Ok(())
    }
}

fn pipeline_not_found(id: &str) -> HsError {
    HsError::new(
        404,
        "OBJECT_NOT_FOUND",
        format!("Unable to find pipeline {id}"),
    )
}

fn required_text(body: &Value, key: &str) -> Result<String, HsError> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| HsError::validation(format!("Invalid input JSON: {key} is required")))
}

fn required_order(body: &Value) -> Result<i64, HsError> {
    body.get("displayOrder")
        .and_then(Value::as_i64)
        .ok_or_else(|| HsError::validation("Invalid input JSON: displayOrder is required"))
}

impl Portal {
    /// Runs a change of `object`'s pipelines, then follows it in the options of the pipeline
    /// and stage properties.
    fn change_pipelines<T>(
        &mut self,
        object: &str,
        change: impl FnOnce(&mut Pipelines, ObjectType, i64) -> Result<T, HsError>,
    ) -> Result<T, HsError> {
        let object_type = self.resolve(object)?;
        let now = self.clock.now_ms();
        let out = change(&mut self.pipelines, object_type, now)?;
        self.refresh_options();
        Ok(out)
    }

    pub fn create_pipeline(&mut self, object: &str, body: &Value) -> Result<Value, HsError> {
        self.change_pipelines(object, |p, t, now| p.create(t, body, now))
    }

    pub fn update_pipeline(
        &mut self,
        object: &str,
        id: &str,
        body: &Value,
    ) -> Result<Value, HsError> {
        self.change_pipelines(object, |p, t, now| p.update(t, id, body, now))
    }

    pub fn archive_pipeline(&mut self, object: &str, id: &str) -> Result<(), HsError> {
        self.change_pipelines(object, |p, t, now| p.archive(t, id, now))
    }

    pub fn add_stage(&mut self, object: &str, id: &str, body: &Value) -> Result<Value, HsError> {
        self.change_pipelines(object, |p, t, now| p.add_stage(t, id, body, now))
    }
}
