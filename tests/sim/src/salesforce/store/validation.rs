//! Validation rules (Salesforce Setup > Object Manager > Validation Rules):
//! an error condition evaluated on the record as it would be after a
//! create, update or upsert; when it is true the save fails with
//! `FIELD_CUSTOM_VALIDATION_EXCEPTION`, the rule's error message, and the
//! error location field in `fields` (none when the message shows at the top
//! of the page), as the REST API Developer Guide's error responses show.
//!
//! A rule's condition here is one comparison of one field (a formula such
//! as `Amount < 0` or `ISBLANK(Phone)`), which is what tests need.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Org, SfError};

/// One active validation rule of an object.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationRule {
    /// The sObject it belongs to.
    pub object: String,
    /// The rule's name (shown nowhere in the API's answer).
    #[serde(default)]
    pub name: String,
    /// The field the error condition reads.
    pub field: String,
    /// The comparison that makes the save fail.
    pub condition: RuleCondition,
    /// The value the field is compared with (not used by `blank`/`not_blank`).
    #[serde(default)]
    pub value: Value,
    pub error_message: String,
    /// The field the error is shown at; `None`: top of page.
    #[serde(default)]
    pub error_field: Option<String>,
}

/// How a rule compares its field with its value.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleCondition {
    Equals,
    NotEquals,
    LessThan,
    GreaterThan,
    Contains,
    Blank,
    NotBlank,
}

impl ValidationRule {
    /// Whether the error condition holds for `record` (values by field name).
    fn fails(&self, record: &HashMap<String, Value>) -> bool {
        let v = record
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&self.field))
            .map(|(_, v)| v)
            .unwrap_or(&Value::Null);
        let blank = v.is_null() || v.as_str() == Some("");
        let number = |x: &Value| match x {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let text = |x: &Value| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match self.condition {
            RuleCondition::Blank => blank,
            RuleCondition::NotBlank => !blank,
            RuleCondition::Equals => !blank && text(v) == text(&self.value),
            RuleCondition::NotEquals => blank || text(v) != text(&self.value),
            RuleCondition::LessThan => {
                matches!((number(v), number(&self.value)), (Some(a), Some(b)) if a < b)
            }
            RuleCondition::GreaterThan => {
                matches!((number(v), number(&self.value)), (Some(a), Some(b)) if a > b)
            }
            RuleCondition::Contains => !blank && text(v).contains(&text(&self.value)),
        }
    }

    fn error(&self) -> SfError {
        let e = SfError::bad_request(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            self.error_message.clone(),
        );
        match &self.error_field {
            Some(f) => e.on_fields(&[f.as_str()]),
            None => e,
        }
    }
}

impl Org {
    /// Adds a validation rule; its object and fields must exist.
    pub fn add_validation_rule(&mut self, rule: ValidationRule) -> Result<(), SfError> {
        let sobject = self.object(&rule.object)?;
        for f in std::iter::once(&rule.field).chain(rule.error_field.as_ref()) {
            if sobject.field(f).is_none() {
                return Err(SfError::bad_request(
                    "INVALID_FIELD",
                    format!(
                        "No such column '{f}' on sobject of type {}",
                        sobject.def.name
                    ),
                ));
            }
        }
        let taken = self.validation_rules.iter().any(|r| {
            !rule.name.is_empty()
                && r.name == rule.name
                && r.object.eq_ignore_ascii_case(&rule.object)
        });
        if taken {
            return Err(SfError::bad_request(
                "DUPLICATE_DEVELOPER_NAME",
                format!(
                    "a validation rule named {} exists on {}",
                    rule.name, rule.object
                ),
            ));
        }
        self.validation_rules.push(rule);
        Ok(())
    }

    /// The first rule of `object` whose error condition holds for the record
    /// as it would be saved.
    pub(super) fn check_rules(
        &self,
        object: usize,
        record: &HashMap<String, Value>,
    ) -> Result<(), SfError> {
        let name = &self.objects[object].def.name;
        match self
            .validation_rules
            .iter()
            .filter(|r| r.object.eq_ignore_ascii_case(name))
            .find(|r| r.fails(record))
        {
            Some(rule) => Err(rule.error()),
            None => Ok(()),
        }
    }

    /// `check_rules` for an update: the record's values with the changes.
    pub(super) fn check_rules_on_update(
        &self,
        object: usize,
        id: &str,
        changes: &HashMap<String, Value>,
    ) -> Result<(), SfError> {
        let mut merged = self.objects[object]
            .records
            .get(id)
            .map(|r| r.values.clone())
            .unwrap_or_default();
        merged.extend(changes.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.check_rules(object, &merged)
    }
}
