//! The rules HubSpot keeps between the properties of one record: the properties a create must
//! set, the default pipeline of deals and tickets, a stage that belongs to the record's pipeline,
//! and the values HubSpot calculates (a line item's net price, a ticket's close date, a task's
//! completion date, a quote's number and public key).

use std::collections::BTreeMap;

use serde_json::json;

use super::objects::ObjectType;
use super::properties::InvalidValue;
use super::store::{HsError, Portal, format_time};

type Properties = BTreeMap<String, String>;

/// Fills in defaults and checks the required properties and the pipeline of a create.
pub(super) fn complete_create(
    portal: &Portal,
    object_type: ObjectType,
    changes: &mut Properties,
) -> Result<(), HsError> {
    if let Some((pipeline, _)) = portal.pipelines.properties_of(object_type)
        && changes.get(pipeline).is_none_or(String::is_empty)
        && let Some(default) = portal.pipelines.default_pipeline(object_type)
    {
        changes.insert(pipeline.to_owned(), default);
    }
    let missing: Vec<InvalidValue> = portal
        .store(object_type)
        .meta
        .required
        .iter()
        .filter(|name| changes.get(*name).is_none_or(String::is_empty))
        .map(|name| InvalidValue {
            name: name.clone(),
            error: "REQUIRED_PROPERTY",
            message: format!("Property \"{name}\" is required"),
        })
        .collect();
    if !missing.is_empty() {
        return Err(invalid(&missing));
    }
    check_stage(portal, object_type, &Properties::new(), changes)
}

/// Checks an update against the record as it is.
pub(super) fn check_update(
    portal: &Portal,
    object_type: ObjectType,
    current: &Properties,
    changes: &Properties,
) -> Result<(), HsError> {
    check_stage(portal, object_type, current, changes)
}

fn invalid(problems: &[InvalidValue]) -> HsError {
    let list: Vec<_> = problems.iter().map(InvalidValue::to_json).collect();
    HsError::validation(format!(
        "Property values were not valid: {}",
        serde_json::Value::Array(list)
    ))
}

/// A stage must be one of the record's pipeline (the pipeline as changed, else as it is).
fn check_stage(
    portal: &Portal,
    object_type: ObjectType,
    current: &Properties,
    changes: &Properties,
) -> Result<(), HsError> {
    let Some((pipeline_property, stage_property)) = portal.pipelines.properties_of(object_type)
    else {
        return Ok(());
    };
    let value = |name: &str| {
        changes
            .get(name)
            .or_else(|| current.get(name))
            .filter(|v| !v.is_empty())
    };
    let (Some(pipeline), Some(stage)) = (value(pipeline_property), value(stage_property)) else {
        return Ok(());
    };
    if portal.pipelines.stage_in(object_type, pipeline, stage) {
        return Ok(());
    }
    Err(invalid(&[InvalidValue {
        name: stage_property.to_owned(),
        error: "INVALID_OPTION",
        message: format!("{stage} is not a valid stage of pipeline {pipeline}"),
    }]))
}

/// The calculated values of a record after a create (`before` is `None`) or a change: each
/// `(property, value)` to set, an empty value clearing it.
pub(super) fn derived(
    portal: &Portal,
    object_type: ObjectType,
    id: u64,
    after: &Properties,
    before: Option<&Properties>,
    now: i64,
) -> Vec<(String, String)> {
    let changed = |name: &str| before.is_none_or(|b| b.get(name) != after.get(name));
    match object_type {
        ObjectType::LineItems => vec![("amount".into(), net_price(after))],
        ObjectType::Tickets if changed("hs_pipeline_stage") => {
            let closed = after.get("hs_pipeline_stage").is_some_and(|stage| {
                let pipeline = after.get("hs_pipeline").map_or("", String::as_str);
                portal.pipelines.is_closed(object_type, pipeline, stage)
            });
            let value = if closed {
                format_time(now)
            } else {
                String::new()
            };
            vec![("closed_date".into(), value)]
        }
        ObjectType::Tasks if changed("hs_task_status") => {
            let done = after.get("hs_task_status").map(String::as_str) == Some("COMPLETED");
            let value = if done {
                format_time(now)
            } else {
                String::new()
            };
            vec![("hs_task_completion_date".into(), value)]
        }
        ObjectType::Quotes if before.is_none() => vec![
            ("hs_quote_number".into(), format!("{:08}", id)),
            (
                "hs_public_url_key".into(),
                format!("{:032x}", id * 2_654_435_761),
            ),
        ],
        _ => Vec::new(),
    }
}

/// quantity × (price − discount), less the discount percentage; empty without a quantity and
/// a price.
fn net_price(p: &Properties) -> String {
    let number = |name: &str| p.get(name).and_then(|v| v.parse::<f64>().ok());
    let (Some(quantity), Some(price)) = (number("quantity"), number("price")) else {
        return String::new();
    };
    let unit = price - number("discount").unwrap_or(0.0);
    let percent = number("hs_discount_percentage").unwrap_or(0.0);
    let net = quantity * unit * (1.0 - percent / 100.0);
    // HubSpot's number properties print without a trailing `.0`.
    json!(net).to_string().trim_end_matches(".0").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_price_follows_quantity_price_and_discounts() {
        let p = |pairs: &[(&str, &str)]| -> Properties {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(net_price(&p(&[("quantity", "3"), ("price", "10")])), "30");
        assert_eq!(
            net_price(&p(&[
                ("quantity", "2"),
                ("price", "10"),
                ("discount", "1"),
                ("hs_discount_percentage", "50")
            ])),
            "9"
        );
        assert_eq!(net_price(&p(&[("price", "10")])), "");
    }
}
