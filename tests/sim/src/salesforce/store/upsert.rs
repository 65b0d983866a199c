//! Upsert by external ID (REST API Developer Guide: "Upsert Records Using
//! sObject Rows by External ID", and sObject Collections upsert, API 46.0
//! and later).
//!
//! - `PATCH /sobjects/{object}/{field}/{value}`: no match creates the
//!   record (201), one match updates it (200); both answer
//!   `{"id","success","errors","created"}`. Several matches answer 300 with
//!   the matching records' URLs and change nothing. The body may name
//!   neither `Id` nor the external ID field (the value is in the URL).
//! - `PATCH /composite/sobjects/{object}/{field}` with
//!   `{"allOrNone", "records": [...]}`: each record carries the external ID
//!   among its fields; the results, in order, add `created`. A value
//!   matching several records, or given twice in one request, is a
//!   `DUPLICATE_EXTERNAL_ID` error of that record.
//!
//! The field must be an external ID (`externalId` in describe) or `Id`;
//! otherwise the answer is 404 `NOT_FOUND`. Text values match without
//! regard to case, as Salesforce matches external IDs by default.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{Org, SfError};

/// What a single upsert did, or the records its value matched.
pub enum UpsertOutcome {
    /// The record's id; whether it was created.
    Done(String, bool),
    /// The value matched these records (300 Multiple Choices).
    Multiple(Vec<String>),
}

/// A planned upsert of one record: create these values, or update `id`.
enum Planned {
    Create(usize, HashMap<String, Value>),
    Update(usize, String, HashMap<String, Value>),
}

impl Org {
    /// The canonical name of `field` of `object`, when it may be upserted by.
    fn external_field(&self, object: usize, field: &str) -> Result<String, SfError> {
        let sobject = &self.objects[object];
        match sobject.field(field) {
            Some(f) if f.external_id || f.name == "Id" => Ok(f.name.clone()),
            _ => Err(SfError::new(
                404,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {field}"),
            )),
        }
    }

    /// The live records whose `field` holds `value`.
    fn matching(&self, object: usize, field: &str, value: &Value) -> Vec<String> {
        let text = |v: &Value| match v {
            Value::String(s) => s.to_lowercase(),
            other => other.to_string().to_lowercase(),
        };
        let want = text(value);
        self.objects[object]
            .records
            .iter()
            .filter(|(_, r)| !r.deleted)
            .filter(|(_, r)| {
                r.values
                    .get(field)
                    .is_some_and(|v| !v.is_null() && text(v) == want)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Plans one record's upsert: validated as a create or an update.
    fn plan_upsert(
        &self,
        object: usize,
        field: &str,
        value: &Value,
        input: &Map<String, Value>,
    ) -> Result<Result<Planned, Vec<String>>, SfError> {
        match self.matching(object, field, value).as_slice() {
            [] => {
                let mut with_key = input.clone();
                with_key.insert(field.to_owned(), value.clone());
                let values = self.validate_create(object, &with_key)?;
                Ok(Ok(Planned::Create(object, values)))
            }
            [id] => {
                let (id, changes) = self.validate_update(object, id, input)?;
                Ok(Ok(Planned::Update(object, id, changes)))
            }
            several => Ok(Err(several.to_vec())),
        }
    }

    fn apply_planned(&mut self, planned: Planned) -> (String, bool) {
        match planned {
            Planned::Create(object, values) => {
                let now = self.clock.now_ms();
                (self.insert(object, values, now), true)
            }
            Planned::Update(object, id, changes) => {
                self.apply_update(object, &id, changes);
                (id, false)
            }
        }
    }

    /// `PATCH /sobjects/{object}/{field}/{value}`.
    pub fn upsert(
        &mut self,
        object: &str,
        field: &str,
        value: &str,
        input: &Map<String, Value>,
    ) -> Result<UpsertOutcome, SfError> {
        let index = self.object_index(object).ok_or_else(SfError::not_found)?;
        let field = self.external_field(index, field)?;
        if let Some(k) = input
            .keys()
            .find(|k| k.eq_ignore_ascii_case("Id") || k.eq_ignore_ascii_case(&field))
        {
            return Err(SfError::bad_request(
                "INVALID_FIELD",
                format!("{k}: the external ID field and Id cannot be specified in the request body of an upsert by external ID; the value is in the URL"),
            )
            .on_fields(&[k.as_str()]));
        }
        let value = Value::String(value.to_owned());
        match self.plan_upsert(index, &field, &value, input)? {
            Ok(planned) => {
                let (id, created) = self.apply_planned(planned);
                Ok(UpsertOutcome::Done(id, created))
            }
            Err(ids) => Ok(UpsertOutcome::Multiple(ids)),
        }
    }

    /// `PATCH /composite/sobjects/{object}/{field}`: the result array.
    pub fn collection_upsert(
        &mut self,
        object: &str,
        field: &str,
        records: &[Value],
        all_or_none: bool,
    ) -> Result<Vec<Value>, SfError> {
        let index = self.object_index(object).ok_or_else(SfError::not_found)?;
        let field = self.external_field(index, field)?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let planned: Vec<Result<Planned, SfError>> = records
            .iter()
            .map(|record| {
                let (i, fields) = self.collection_record(record)?;
                if i != index {
                    return Err(SfError::bad_request(
                        "INVALID_TYPE",
                        format!("records must be of type {object}"),
                    ));
                }
                let value = fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&field))
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_null() && v.as_str() != Some(""))
                    .ok_or_else(|| {
                        SfError::bad_request("MISSING_ARGUMENT", format!("{field} not specified"))
                    })?;
                let key = value.to_string().to_lowercase();
                *seen.entry(key.clone()).or_default() += 1;
                if seen[&key] > 1 {
                    return Err(SfError::bad_request(
                        "DUPLICATE_EXTERNAL_ID",
                        format!(
                            "Duplicate external id specified: {}",
                            value.as_str().unwrap_or_default()
                        ),
                    )
                    .on_fields(&[field.as_str()]));
                }
                let mut input = fields.clone();
                input.retain(|k, _| !k.eq_ignore_ascii_case(&field));
                match self.plan_upsert(index, &field, &value, &input)? {
                    Ok(p) => Ok(p),
                    Err(ids) => Err(SfError::bad_request(
                        "DUPLICATE_EXTERNAL_ID",
                        format!(
                            "{field}: more than one record found for external id field: [{}]",
                            ids.join(", ")
                        ),
                    )
                    .on_fields(&[field.as_str()])),
                }
            })
            .collect();
        let any_failed = planned.iter().any(Result::is_err);
        let rolled_back = SfError::bad_request(
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
        );
        let failure = |e: &SfError| json!({"success": false, "errors": [e.to_collection_json()]});
        Ok(planned
            .into_iter()
            .map(|plan| match plan {
                Err(e) => failure(&e),
                Ok(_) if all_or_none && any_failed => failure(&rolled_back),
                Ok(p) => {
                    let (id, created) = self.apply_planned(p);
                    json!({"id": id, "success": true, "errors": [], "created": created})
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::org;
    use super::*;
    use crate::salesforce::schema::{FieldDef, FieldType};

    fn with_external_id() -> Org {
        let mut o = org();
        let mut f = FieldDef::custom("Ext__c", "Ext", FieldType::String, Some(80));
        f.external_id = true;
        o.add_field("Account", f).unwrap();
        o
    }

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn single_upsert_creates_then_updates_and_several_matches_are_refused() {
        let mut o = with_external_id();
        let UpsertOutcome::Done(id, true) = o
            .upsert("Account", "Ext__c", "E1", &fields(json!({"Name": "A"})))
            .unwrap()
        else {
            panic!("created")
        };
        let UpsertOutcome::Done(again, false) = o
            .upsert("Account", "ext__c", "e1", &fields(json!({"Name": "B"})))
            .unwrap()
        else {
            panic!("updated")
        };
        assert_eq!(again, id, "matched without regard to case");
        assert_eq!(o.get("Account", &id, "v59.0").unwrap()["Name"], "B");
        let body_with_key = o.upsert("Account", "Ext__c", "E1", &fields(json!({"Ext__c": "E1"})));
        assert_eq!(body_with_key.err().unwrap().error_code, "INVALID_FIELD");
        let not_external = o.upsert("Account", "Name", "B", &fields(json!({})));
        assert_eq!(not_external.err().unwrap().status, 404);
        o.create("Account", &fields(json!({"Name": "C", "Ext__c": "E1"})))
            .unwrap();
        assert!(matches!(
            o.upsert("Account", "Ext__c", "E1", &fields(json!({"Name": "D"}))).unwrap(),
            UpsertOutcome::Multiple(ids) if ids.len() == 2
        ));
    }

    #[test]
    fn collection_upsert_reports_created_and_rolls_back_all_or_none() {
        let mut o = with_external_id();
        let rec = |ext: &str, name: &str| json!({"attributes": {"type": "Account"}, "Ext__c": ext, "Name": name});
        let r = o
            .collection_upsert(
                "Account",
                "Ext__c",
                &[rec("X1", "One"), rec("X2", "Two")],
                true,
            )
            .unwrap();
        assert_eq!(r[0]["created"], true);
        assert_eq!(r[1]["created"], true);
        let before = o.count("Account", false);
        let r = o
            .collection_upsert(
                "Account",
                "Ext__c",
                &[rec("X1", "One'"), rec("X3", "Three"), rec("X3", "Dup")],
                true,
            )
            .unwrap();
        assert_eq!(
            r[2]["errors"][0]["statusCode"], "DUPLICATE_EXTERNAL_ID",
            "{r:?}"
        );
        assert_eq!(
            r[0]["errors"][0]["statusCode"],
            "ALL_OR_NONE_OPERATION_ROLLED_BACK"
        );
        assert_eq!(o.count("Account", false), before, "nothing applied");
        let r = o
            .collection_upsert(
                "Account",
                "Ext__c",
                &[rec("X1", "One'"), rec("X3", "Three")],
                true,
            )
            .unwrap();
        assert_eq!(
            (r[0]["created"].clone(), r[1]["created"].clone()),
            (json!(false), json!(true))
        );
    }

    #[test]
    fn validation_rules_refuse_creates_updates_and_upserts() {
        let mut o = with_external_id();
        o.add_validation_rule(
            serde_json::from_value(json!({
                "object": "Account", "name": "R", "field": "NumberOfEmployees",
                "condition": "less_than", "value": 0,
                "errorMessage": "no negatives", "errorField": "NumberOfEmployees"
            }))
            .unwrap(),
        )
        .unwrap();
        let e = o
            .create(
                "Account",
                &fields(json!({"Name": "A", "NumberOfEmployees": -1})),
            )
            .unwrap_err();
        assert_eq!(
            e.to_json(),
            json!({"message": "no negatives", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "fields": ["NumberOfEmployees"]})
        );
        let id = o
            .create(
                "Account",
                &fields(json!({"Name": "A", "NumberOfEmployees": 1})),
            )
            .unwrap();
        let e = o
            .update("Account", &id, &fields(json!({"NumberOfEmployees": -2})))
            .unwrap_err();
        assert_eq!(e.error_code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
        let e = o
            .upsert(
                "Account",
                "Ext__c",
                "V",
                &fields(json!({"Name": "V", "NumberOfEmployees": -3})),
            )
            .err()
            .unwrap();
        assert_eq!(e.error_code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
    }
}
