//! The simulated org's data: records per sObject type with an ordered `SystemModstamp` index,
//! write validation with Salesforce's error codes, SOQL execution with query cursors, and
//! OAuth2 access/refresh tokens. Pure logic; the HTTP layer lives in the parent module.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value, json};

mod upsert;
mod validation;

pub use upsert::UpsertOutcome;
pub use validation::ValidationRule;

use super::ids;
use super::schema::{
    FORECAST_CATEGORIES, FOREIGN_KEY_PREFIXES, FieldDef, FieldType, ObjectDef, STAGES,
    standard_objects,
};
use super::soql::{self, CompareOp, Condition, Literal};
use crate::common::Clock;

/// The user every record is owned by and modified by (the integration user).
pub const USER_ID: &str = "005Dn0000000001AAA";
/// The org id, as it appears in the identity URL of token responses.
pub const ORG_ID: &str = "00DDn0000000001AAA";
/// Page size of query results unless `Sforce-Query-Options: batchSize=` asks for less.
pub const DEFAULT_BATCH_SIZE: usize = 2000;
/// Maximum records per sObject Collections request.
pub const COLLECTION_LIMIT: usize = 200;
/// Open query cursors kept before the oldest is discarded.
const MAX_CURSORS: usize = 1000;

/// One error of Salesforce's error array, with the HTTP status it is sent with.
#[derive(Debug, Clone, PartialEq)]
pub struct SfError {
    pub status: u16,
    pub error_code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl SfError {
    pub fn new(status: u16, error_code: &str, message: impl Into<String>) -> SfError {
        SfError {
            status,
            error_code: error_code.to_owned(),
            message: message.into(),
            fields: Vec::new(),
        }
    }

    fn bad_request(error_code: &str, message: impl Into<String>) -> SfError {
        SfError::new(400, error_code, message)
    }

    fn on_fields(mut self, fields: &[&str]) -> SfError {
        self.fields = fields.iter().map(|f| (*f).to_owned()).collect();
        self
    }

    pub fn not_found() -> SfError {
        SfError::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    fn entity_is_deleted() -> SfError {
        SfError::new(404, "ENTITY_IS_DELETED", "entity is deleted")
    }

    /// The error as an element of a REST error array.
    pub fn to_json(&self) -> Value {
        if self.fields.is_empty() {
            json!({"message": self.message, "errorCode": self.error_code})
        } else {
            json!({"message": self.message, "errorCode": self.error_code, "fields": self.fields})
        }
    }

    /// The error as an element of an sObject Collections result (`statusCode`, not `errorCode`).
    pub fn to_collection_json(&self) -> Value {
        json!({"statusCode": self.error_code, "message": self.message, "fields": self.fields})
    }
}

/// Field values by canonical field name.
type Values = HashMap<String, Value>;

#[derive(Debug, Clone)]
struct Record {
    values: Values,
    created: i64,
    modstamp: i64,
    deleted: bool,
}

struct SObject {
    def: ObjectDef,
    records: BTreeMap<String, Record>,
    /// `(SystemModstamp millis, Id)`: the order incremental sync queries ask for.
    by_modstamp: BTreeSet<(i64, String)>,
    next_sequence: u64,
}

impl SObject {
    fn field(&self, name: &str) -> Option<&FieldDef> {
        self.def.field(name)
    }
}

struct Cursor {
    object: String,
    fields: Vec<String>,
    ids: Vec<String>,
    batch_size: usize,
    query_all: bool,
}

/// OAuth2 client settings and token state.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub client_id: String,
    pub client_secret: String,
    /// Issue a new refresh token on every refresh and revoke the one used.
    pub rotate_refresh_tokens: bool,
    pub access_token_ttl: Duration,
}

/// A successful token refresh.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub issued_at: i64,
}

/// The whole org.
pub struct Org {
    objects: Vec<SObject>,
    cursors: HashMap<String, Cursor>,
    cursor_order: VecDeque<String>,
    next_cursor: u64,
    pub oauth: OAuthSettings,
    access_tokens: HashMap<String, Option<Instant>>,
    refresh_tokens: HashSet<String>,
    next_token: u64,
    clock: Clock,
    /// Validation rules, checked on every create and update (`validation.rs`).
    validation_rules: Vec<ValidationRule>,
}

/// Formats epoch milliseconds the way Salesforce renders datetimes (`2024-01-01T00:00:00.000+0000`).
pub fn format_datetime(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

impl Org {
    /// An org with the standard objects and no records; `static_token` is an access token that
    /// never expires, `refresh_token` the initial refresh token.
    pub fn new(clock: Clock, oauth: OAuthSettings, static_token: &str, refresh_token: &str) -> Org {
        Org {
            objects: standard_objects()
                .into_iter()
                .chain(super::catalog::objects())
                .map(|def| SObject {
                    def,
                    records: BTreeMap::new(),
                    by_modstamp: BTreeSet::new(),
                    next_sequence: 1,
                })
                .collect(),
            cursors: HashMap::new(),
            cursor_order: VecDeque::new(),
            next_cursor: 1,
            oauth,
            access_tokens: HashMap::from([(static_token.to_owned(), None)]),
            refresh_tokens: HashSet::from([refresh_token.to_owned()]),
            next_token: 1,
            clock,
            validation_rules: Vec::new(),
        }
    }

    fn object_index(&self, name: &str) -> Option<usize> {
        self.objects
            .iter()
            .position(|o| o.def.name.eq_ignore_ascii_case(name))
    }

    fn object(&self, name: &str) -> Result<&SObject, SfError> {
        self.object_index(name)
            .map(|i| &self.objects[i])
            .ok_or_else(SfError::not_found)
    }

    pub fn object_defs(&self) -> impl Iterator<Item = &ObjectDef> {
        self.objects.iter().map(|o| &o.def)
    }

    pub fn describe(&self, object: &str, version: &str) -> Result<Value, SfError> {
        Ok(self.object(object)?.def.describe(version))
    }

    /// Adds an object (a custom object created at run time): it appears in describeGlobal and
    /// describe, and is accepted in writes and queries.
    pub fn add_object(&mut self, def: ObjectDef) -> Result<(), SfError> {
        if self.object_index(def.name).is_some() {
            return Err(SfError::bad_request(
                "DUPLICATE_DEVELOPER_NAME",
                format!("An object named {} already exists", def.name),
            ));
        }
        self.objects.push(SObject {
            def,
            records: BTreeMap::new(),
            by_modstamp: BTreeSet::new(),
            next_sequence: 1,
        });
        Ok(())
    }

    /// The key prefixes in use (a new custom object takes a free one).
    pub fn key_prefixes(&self) -> Vec<&'static str> {
        self.objects.iter().map(|o| o.def.key_prefix).collect()
    }

    /// Stores a record the API would not let a client create (field history rows), values
    /// taken as they are.
    pub fn seed_raw(
        &mut self,
        object: &str,
        values: HashMap<String, Value>,
        created: i64,
    ) -> Result<String, SfError> {
        let index = self.object_index(object).ok_or_else(SfError::not_found)?;
        Ok(self.insert(index, values, created))
    }

    /// Adds a custom field; it appears in describe and is accepted in writes and queries.
    pub fn add_field(&mut self, object: &str, field: FieldDef) -> Result<(), SfError> {
        if !field.name.ends_with("__c") {
            return Err(SfError::bad_request(
                "INVALID_FIELD",
                format!("Custom field names must end in __c: {}", field.name),
            ));
        }
        let index = self.object_index(object).ok_or_else(SfError::not_found)?;
        let sobject = &mut self.objects[index];
        if sobject.field(&field.name).is_some() {
            return Err(SfError::bad_request(
                "DUPLICATE_DEVELOPER_NAME",
                format!("A field named {} already exists", field.name),
            ));
        }
        sobject.def.fields.push(field);
        Ok(())
    }

    // ----- authentication -------------------------------------------------------------

    /// Is `token` a live access token?
    pub fn access_token_valid(&self, token: &str) -> bool {
        match self.access_tokens.get(token) {
            Some(None) => true,
            Some(Some(expiry)) => Instant::now() < *expiry,
            None => false,
        }
    }

    /// Expires every issued access token (not the static one), as a session timeout would.
    pub fn expire_access_tokens(&mut self) {
        self.access_tokens.retain(|_, expiry| expiry.is_none());
    }

    /// The `refresh_token` grant. Errors are OAuth error codes with their description.
    pub fn refresh(
        &mut self,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
    ) -> Result<IssuedToken, (&'static str, &'static str)> {
        if client_id != self.oauth.client_id {
            return Err(("invalid_client_id", "client identifier invalid"));
        }
        if client_secret != self.oauth.client_secret {
            return Err(("invalid_client", "invalid client credentials"));
        }
        if !self.refresh_tokens.contains(refresh_token) {
            return Err(("invalid_grant", "expired access/refresh token"));
        }
        let sequence = self.next_token;
        self.next_token += 1;
        let access_token = format!(
            "{ORG_ID}!AQ0AQ{}",
            ids::base62_fixed(sequence * 7919 + 104_729, 24)
        );
        self.access_tokens.insert(
            access_token.clone(),
            Some(Instant::now() + self.oauth.access_token_ttl),
        );
        let refresh_token = self.oauth.rotate_refresh_tokens.then(|| {
            self.refresh_tokens.remove(refresh_token);
            let rotated = format!(
                "5Aep861{}",
                ids::base62_fixed(sequence * 104_729 + 7919, 40)
            );
            self.refresh_tokens.insert(rotated.clone());
            rotated
        });
        Ok(IssuedToken {
            access_token,
            refresh_token,
            issued_at: self.clock.now_ms(),
        })
    }

    // ----- records ----------------------------------------------------------------------

    /// Renders a record with every field (`GET /sobjects/{Object}/{id}`).
    pub fn get(&self, object: &str, id: &str, version: &str) -> Result<Value, SfError> {
        self.get_fields(object, id, None, version)
    }

    /// A live record with the named fields (`?fields=`), or all of them.
    pub fn get_fields(
        &self,
        object: &str,
        id: &str,
        fields: Option<&[String]>,
        version: &str,
    ) -> Result<Value, SfError> {
        let sobject = self.object(object)?;
        let id = ids::to_18(id).ok_or_else(SfError::not_found)?;
        let record = match sobject.records.get(&id) {
            Some(record) if !record.deleted => record,
            _ => return Err(SfError::not_found()),
        };
        let names: Vec<&str> = match fields {
            None => sobject.def.fields.iter().map(|f| f.name.as_str()).collect(),
            Some(requested) => requested
                .iter()
                .map(|name| {
                    sobject.field(name).map(|f| f.name.as_str()).ok_or_else(|| {
                        SfError::bad_request(
                            "INVALID_FIELD",
                            format!(
                                "No such column '{name}' on sobject of type {}",
                                sobject.def.name
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(render(&sobject.def, &id, record, &names, version))
    }

    /// Validates a create and returns the values to store (without system fields).
    fn validate_create(
        &self,
        object: usize,
        input: &Map<String, Value>,
    ) -> Result<HashMap<String, Value>, SfError> {
        let sobject = &self.objects[object];
        let values = self.validate_values(sobject, input, true)?;
        let missing: Vec<&str> = sobject
            .def
            .fields
            .iter()
            .filter(|f| f.required_on_create() && values.get(&f.name).is_none_or(Value::is_null))
            .map(|f| f.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(SfError::bad_request(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
            )
            .on_fields(&missing));
        }
        self.check_rules(object, &values)?;
        Ok(values)
    }

    fn validate_update(
        &self,
        object: usize,
        id: &str,
        input: &Map<String, Value>,
    ) -> Result<(String, HashMap<String, Value>), SfError> {
        let sobject = &self.objects[object];
        let id = ids::to_18(id).ok_or_else(|| {
            SfError::bad_request(
                "MALFORMED_ID",
                format!("{} ID: id value of incorrect type: {id}", sobject.def.name),
            )
        })?;
        match sobject.records.get(&id) {
            None => Err(SfError::not_found()),
            Some(record) if record.deleted => Err(SfError::entity_is_deleted()),
            Some(_) => {
                let values = self.validate_values(sobject, input, false)?;
                self.check_rules_on_update(object, &id, &values)?;
                Ok((id, values))
            }
        }
    }

    /// Checks each supplied field: known, writable, of the right type, within its length.
    fn validate_values(
        &self,
        sobject: &SObject,
        input: &Map<String, Value>,
        creating: bool,
    ) -> Result<HashMap<String, Value>, SfError> {
        let mut values = HashMap::new();
        let mut not_writable = Vec::new();
        for (key, value) in input {
            if key == "attributes" || (!creating && key.eq_ignore_ascii_case("Id")) {
                continue;
            }
            let field = sobject.field(key).ok_or_else(|| {
                SfError::bad_request(
                    "INVALID_FIELD",
                    format!(
                        "No such column '{key}' on sobject of type {}",
                        sobject.def.name
                    ),
                )
            })?;
            let writable = if creating {
                field.createable
            } else {
                field.updateable
            };
            if !writable {
                not_writable.push(field.name.as_str());
                continue;
            }
            values.insert(field.name.clone(), self.validate_value(field, value)?);
        }
        if !not_writable.is_empty() {
            return Err(SfError::bad_request(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify \
                     that it is read/write for your profile or permission set.",
                    not_writable.join(", ")
                ),
            )
            .on_fields(&not_writable));
        }
        Ok(values)
    }

    fn validate_value(&self, field: &FieldDef, value: &Value) -> Result<Value, SfError> {
        let name = field.name.as_str();
        if value.is_null() || value.as_str() == Some("") && !field.field_type.is_text() {
            if !field.nillable
                && !field.defaulted_on_create
                && field.field_type != FieldType::Boolean
            {
                return Err(SfError::bad_request(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{name}]"),
                )
                .on_fields(&[name]));
            }
            return Ok(Value::Null);
        }
        let parse_error = || {
            let (kind, token) = match value {
                Value::String(s) => ("VALUE_STRING", s.clone()),
                Value::Bool(b) => ("VALUE_TRUE", b.to_string()),
                Value::Number(n) => ("VALUE_NUMBER_INT", n.to_string()),
                Value::Array(_) => ("START_ARRAY", "[".to_owned()),
                Value::Object(_) => ("START_OBJECT", "{".to_owned()),
                Value::Null => ("VALUE_NULL", "null".to_owned()),
            };
            SfError::bad_request(
                "JSON_PARSER_ERROR",
                format!(
                    "Cannot deserialize instance of {} from {kind} value {token} or request may be missing a required \
                     field at [line:1, column:1]",
                    field.field_type.name()
                ),
            )
        };
        let normalized = match field.field_type {
            t if t.is_text() => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(parse_error()),
                };
                if text.chars().count() > field.length as usize {
                    return Err(SfError::bad_request(
                        "STRING_TOO_LONG",
                        format!(
                            "{}: data value too large: {text} (max length={})",
                            field.label, field.length
                        ),
                    )
                    .on_fields(&[name]));
                }
                if t == FieldType::Email && !text.is_empty() && !is_valid_email(&text) {
                    return Err(SfError::bad_request(
                        "INVALID_EMAIL_ADDRESS",
                        format!("{}: invalid email address: {text}", field.label),
                    )
                    .on_fields(&[name]));
                }
                if field.restricted_picklist
                    && !text.is_empty()
                    && !field.picklist_values.contains(&text)
                {
                    return Err(SfError::bad_request(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!(
                            "{}: bad value for restricted picklist field: {text}",
                            field.label
                        ),
                    )
                    .on_fields(&[name]));
                }
                if text.is_empty() {
                    Value::Null
                } else {
                    Value::String(text)
                }
            }
            FieldType::Boolean => match value {
                Value::Bool(b) => Value::Bool(*b),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
                _ => return Err(parse_error()),
            },
            FieldType::Int => {
                let number = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|n| n.fract() == 0.0)
                .ok_or_else(parse_error)?;
                check_range(field, number, field.digits)?;
                json!(number as i64)
            }
            FieldType::Double | FieldType::Currency | FieldType::Percent => {
                let number = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|n| n.is_finite())
                .ok_or_else(parse_error)?;
                check_range(field, number, field.precision.saturating_sub(field.scale))?;
                json!(number)
            }
            FieldType::Date => {
                let text = value.as_str().ok_or_else(parse_error)?;
                let date =
                    chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d")
                        .map_err(|_| parse_error())?;
                Value::String(date.format("%Y-%m-%d").to_string())
            }
            FieldType::DateTime => {
                let text = value.as_str().ok_or_else(parse_error)?;
                let millis = soql::parse_datetime_literal(text).ok_or_else(parse_error)?;
                Value::String(format_datetime(millis))
            }
            FieldType::Reference | FieldType::Id => {
                let text = value.as_str().ok_or_else(parse_error)?;
                let id = ids::to_18(text).ok_or_else(|| {
                    SfError::bad_request(
                        "MALFORMED_ID",
                        format!("{}: id value of incorrect type: {text}", field.label),
                    )
                    .on_fields(&[name])
                })?;
                if !field.reference_to.is_empty() {
                    let foreign = |target: &&str| {
                        FOREIGN_KEY_PREFIXES
                            .iter()
                            .any(|(object, prefix)| object == target && id.starts_with(prefix))
                    };
                    let exists = field.reference_to.iter().any(|target| {
                        match self.object_index(target) {
                            // The org's own user and the like are not seeded as records, so a
                            // well-formed id of those objects stays accepted.
                            Some(index) => {
                                self.objects[index]
                                    .records
                                    .get(&id)
                                    .is_some_and(|r| !r.deleted)
                                    || foreign(target)
                            }
                            // Users, campaigns, ... are not simulated; a well-formed id with
                            // the target's key prefix is accepted.
                            None => FOREIGN_KEY_PREFIXES
                                .iter()
                                .any(|(object, prefix)| object == target && id.starts_with(prefix)),
                        }
                    });
                    if !exists {
                        return Err(SfError::bad_request(
                            "FIELD_INTEGRITY_EXCEPTION",
                            format!("{}: id value of incorrect type: {text}", field.label),
                        )
                        .on_fields(&[name]));
                    }
                }
                Value::String(id)
            }
            FieldType::Base64 => Value::String(value.as_str().ok_or_else(parse_error)?.to_owned()),
            FieldType::AnyType => value.clone(),
            _ => return Err(parse_error()),
        };
        Ok(normalized)
    }

    fn insert(
        &mut self,
        object: usize,
        mut values: HashMap<String, Value>,
        created: i64,
    ) -> String {
        let sobject = &mut self.objects[object];
        let id = ids::record_id(sobject.def.key_prefix, sobject.next_sequence);
        sobject.next_sequence += 1;
        let stamp = Value::String(format_datetime(created));
        values.insert("Id".into(), Value::String(id.clone()));
        values.insert("IsDeleted".into(), Value::Bool(false));
        values
            .entry("OwnerId".into())
            .or_insert_with(|| Value::String(USER_ID.into()));
        values.insert("CreatedById".into(), Value::String(USER_ID.into()));
        values.insert("LastModifiedById".into(), Value::String(USER_ID.into()));
        values.insert("CreatedDate".into(), stamp.clone());
        values.insert("LastModifiedDate".into(), stamp.clone());
        values.insert("SystemModstamp".into(), stamp);
        for field in &sobject.def.fields {
            let default = match (&field.default_value, field.field_type) {
                (Some(value), _) => value.clone(),
                // Checkboxes are never null; the server-maintained ones start out false.
                (None, FieldType::Boolean) => Value::Bool(false),
                (None, _) => continue,
            };
            if values.get(&field.name).is_none_or(Value::is_null) {
                values.insert(field.name.clone(), default);
            }
        }
        if sobject.def.field("PhotoUrl").is_some() {
            values.insert(
                "PhotoUrl".into(),
                Value::String(format!("/services/images/photo/{id}")),
            );
        }
        if sobject.def.name == "Opportunity" {
            apply_stage_defaults(&mut values, None);
        }
        derive_computed(&sobject.def, &mut values);
        sobject.by_modstamp.insert((created, id.clone()));
        sobject.records.insert(
            id.clone(),
            Record {
                values,
                created,
                modstamp: created,
                deleted: false,
            },
        );
        id
    }

    /// Applies validated changes and bumps the modstamp (strictly increasing per record).
    fn apply_update(&mut self, object: usize, id: &str, changes: HashMap<String, Value>) {
        let sobject = &mut self.objects[object];
        let Some(record) = sobject.records.get_mut(id) else {
            return;
        };
        let stamp = self.clock.now_ms().max(record.modstamp + 1);
        sobject
            .by_modstamp
            .remove(&(record.modstamp, id.to_owned()));
        sobject.by_modstamp.insert((stamp, id.to_owned()));
        record.modstamp = stamp;
        let mut changes = changes;
        let formatted = Value::String(format_datetime(stamp));
        if sobject.def.name == "Opportunity" {
            let new_stage = changes.get("StageName").and_then(Value::as_str);
            let old_stage = record.values.get("StageName").and_then(Value::as_str);
            if new_stage.is_some() && new_stage != old_stage {
                apply_stage_defaults(&mut changes, Some(&record.values));
                changes.insert("LastStageChangeDate".into(), formatted.clone());
            }
        }
        record.values.extend(changes);
        record
            .values
            .insert("LastModifiedDate".into(), formatted.clone());
        record.values.insert("SystemModstamp".into(), formatted);
        derive_computed(&sobject.def, &mut record.values);
    }

    fn apply_delete(&mut self, object: usize, id: &str) {
        let sobject = &mut self.objects[object];
        let Some(record) = sobject.records.get_mut(id) else {
            return;
        };
        let stamp = self.clock.now_ms().max(record.modstamp + 1);
        sobject
            .by_modstamp
            .remove(&(record.modstamp, id.to_owned()));
        sobject.by_modstamp.insert((stamp, id.to_owned()));
        record.modstamp = stamp;
        record.deleted = true;
        let formatted = Value::String(format_datetime(stamp));
        record.values.insert("IsDeleted".into(), Value::Bool(true));
        record
            .values
            .insert("LastModifiedDate".into(), formatted.clone());
        record.values.insert("SystemModstamp".into(), formatted);
    }

    /// Creates a record; returns its id.
    pub fn create(&mut self, object: &str, input: &Map<String, Value>) -> Result<String, SfError> {
        let now = self.clock.now_ms();
        self.create_at(object, input, now)
    }

    /// Creates a record with a given creation time (seeding backdates records).
    pub fn create_at(
        &mut self,
        object: &str,
        input: &Map<String, Value>,
        created: i64,
    ) -> Result<String, SfError> {
        let index = self.object_index(object).ok_or_else(SfError::not_found)?;
        let values = self.validate_create(index, input)?;
        Ok(self.insert(index, values, created))
    }

    pub fn update(
        &mut self,
        object: &str,
        id: &str,
        input: &Map<String, Value>,
    ) -> Result<(), SfError> {
        let index = self.object_index(object).ok_or_else(SfError::not_found)?;
        let (id, changes) = self.validate_update(index, id, input)?;
        self.apply_update(index, &id, changes);
        Ok(())
    }

    pub fn delete(&mut self, object: &str, id: &str) -> Result<(), SfError> {
        let index = self.object_index(object).ok_or_else(SfError::not_found)?;
        let id = self.check_deletable(index, id)?;
        self.apply_delete(index, &id);
        Ok(())
    }

    fn check_deletable(&self, object: usize, id: &str) -> Result<String, SfError> {
        let id18 = ids::to_18(id)
            .ok_or_else(|| SfError::bad_request("MALFORMED_ID", format!("malformed id {id}")))?;
        match self.objects[object].records.get(&id18) {
            None => Err(SfError::not_found()),
            Some(record) if record.deleted => Err(SfError::entity_is_deleted()),
            Some(_) => Ok(id18),
        }
    }

    /// The object a record id belongs to, from its key prefix.
    fn object_of_id(&self, id: &str) -> Option<usize> {
        self.objects
            .iter()
            .position(|o| id.starts_with(o.def.key_prefix))
    }

    /// The ids of up to `k` live records of `object`, oldest first.
    pub fn live_ids(&self, object: &str, k: usize) -> Vec<String> {
        self.object(object)
            .map(|o| {
                o.records
                    .iter()
                    .filter(|(_, r)| !r.deleted)
                    .map(|(id, _)| id.clone())
                    .take(k)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of records of an object (deleted ones only when asked).
    pub fn count(&self, object: &str, include_deleted: bool) -> usize {
        self.object(object)
            .map(|o| {
                o.records
                    .values()
                    .filter(|r| include_deleted || !r.deleted)
                    .count()
            })
            .unwrap_or(0)
    }

    // ----- the recycle bin (its policy lives in `deleted.rs`) --------------------------------

    /// The org's clock.
    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The canonical name of `object` and its deleted records still held (the recycle bin):
    /// `(id, deletion time in epoch millis)`, oldest first.
    pub(super) fn recycle_bin(
        &self,
        object: &str,
    ) -> Result<(String, Vec<(String, i64)>), SfError> {
        let sobject = self.object(object)?;
        let mut held: Vec<(String, i64)> = sobject
            .records
            .iter()
            .filter(|(_, r)| r.deleted)
            .map(|(id, r)| (id.clone(), r.modstamp))
            .collect();
        held.sort_by_key(|(id, at)| (*at, id.clone()));
        Ok((sobject.def.name.to_owned(), held))
    }

    /// Removes a deleted record for good (emptied from the recycle bin): `queryAll` no longer
    /// shows it and its id is unknown from then on. Returns its deletion time; a live record
    /// is refused (delete it first).
    pub(super) fn erase(&mut self, object: &str, id: &str) -> Result<i64, SfError> {
        let index = self.object_index(object).ok_or_else(SfError::not_found)?;
        let id18 = ids::to_18(id)
            .ok_or_else(|| SfError::bad_request("MALFORMED_ID", format!("malformed id {id}")))?;
        let sobject = &mut self.objects[index];
        match sobject.records.get(&id18) {
            Some(record) if record.deleted => {
                let at = record.modstamp;
                sobject.by_modstamp.remove(&(at, id18.clone()));
                sobject.records.remove(&id18);
                Ok(at)
            }
            Some(_) => Err(SfError::bad_request(
                "INVALID_OPERATION",
                "only deleted records can be emptied from the recycle bin",
            )),
            None => Err(SfError::not_found()),
        }
    }

    // ----- sObject Collections ------------------------------------------------------------

    /// `POST /composite/sobjects`.
    pub fn collection_create(&mut self, records: &[Value], all_or_none: bool) -> Vec<Value> {
        let planned: Vec<Result<(usize, Values), SfError>> = records
            .iter()
            .map(|record| {
                let (index, fields) = self.collection_record(record)?;
                if fields.keys().any(|k| k.eq_ignore_ascii_case("Id")) {
                    return Err(SfError::bad_request(
                        "INVALID_FIELD",
                        "cannot specify Id in an insert call",
                    )
                    .on_fields(&["Id"]));
                }
                Ok((index, self.validate_create(index, fields)?))
            })
            .collect();
        let input_ids = vec![None; records.len()];
        self.finish_collection(planned, all_or_none, input_ids, |org, (index, values)| {
            let now = org.clock.now_ms();
            org.insert(index, values, now)
        })
    }

    /// `PATCH /composite/sobjects`.
    pub fn collection_update(&mut self, records: &[Value], all_or_none: bool) -> Vec<Value> {
        let planned: Vec<Result<(usize, String, Values), SfError>> = records
            .iter()
            .map(|record| {
                let (index, fields) = self.collection_record(record)?;
                let id = fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("Id"))
                    .and_then(|(_, v)| v.as_str())
                    .ok_or_else(|| {
                        SfError::bad_request(
                            "MISSING_ARGUMENT",
                            "Id not specified in an update call",
                        )
                    })?;
                let (id, changes) = self.validate_update(index, id, fields)?;
                Ok((index, id, changes))
            })
            .collect();
        let input_ids = records
            .iter()
            .map(|r| {
                r.get("Id")
                    .or_else(|| r.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        self.finish_collection(
            planned,
            all_or_none,
            input_ids,
            |org, (index, id, changes)| {
                org.apply_update(index, &id, changes);
                id
            },
        )
    }

    /// `DELETE /composite/sobjects?ids=...`.
    pub fn collection_delete(&mut self, record_ids: &[String], all_or_none: bool) -> Vec<Value> {
        let planned: Vec<Result<(usize, String), SfError>> = record_ids
            .iter()
            .map(|id| {
                let index = self.object_of_id(id).ok_or_else(|| {
                    SfError::bad_request("MALFORMED_ID", format!("malformed id {id}"))
                })?;
                Ok((index, self.check_deletable(index, id)?))
            })
            .collect();
        let input_ids = record_ids.iter().cloned().map(Some).collect();
        self.finish_collection(planned, all_or_none, input_ids, |org, (index, id)| {
            org.apply_delete(index, &id);
            id
        })
    }

    fn collection_record<'a>(
        &self,
        record: &'a Value,
    ) -> Result<(usize, &'a Map<String, Value>), SfError> {
        let fields = record.as_object().ok_or_else(|| {
            SfError::bad_request("JSON_PARSER_ERROR", "record must be a JSON object")
        })?;
        let object_type = fields
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                SfError::bad_request(
                    "INVALID_TYPE",
                    "When the sObject type isn't specified, the body must contain attributes with a type",
                )
            })?;
        let index = self.object_index(object_type).ok_or_else(|| {
            SfError::bad_request(
                "INVALID_TYPE",
                format!("sObject type '{object_type}' is not supported."),
            )
        })?;
        Ok((index, fields))
    }

    /// Applies the planned operations (all, or the valid ones) and renders the result array;
    /// `input_ids` are the ids the request named, reported for records that were not applied.
    fn finish_collection<P>(
        &mut self,
        planned: Vec<Result<P, SfError>>,
        all_or_none: bool,
        input_ids: Vec<Option<String>>,
        mut apply: impl FnMut(&mut Org, P) -> String,
    ) -> Vec<Value> {
        let any_failed = planned.iter().any(Result::is_err);
        let rolled_back = SfError::bad_request(
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
        );
        // Failed entries carry the id only when the request named one (updates, deletes).
        let failure = |id: Option<String>, error: &SfError| {
            let mut result = json!({"success": false, "errors": [error.to_collection_json()]});
            if let Some(id) = id {
                result["id"] = json!(id);
            }
            result
        };
        planned
            .into_iter()
            .zip(input_ids)
            .map(|(plan, id)| match plan {
                Err(error) => failure(id, &error),
                Ok(_) if all_or_none && any_failed => failure(id, &rolled_back),
                Ok(plan) => json!({"id": apply(self, plan), "success": true, "errors": []}),
            })
            .collect()
    }

    // ----- SOQL -----------------------------------------------------------------------------

    /// Parses a query and runs its selection: the object's index, the selected fields and the
    /// matching ids in the query's order, LIMIT and OFFSET applied (query results and Bulk
    /// API 2.0 query jobs share it).
    pub(super) fn select(
        &self,
        text: &str,
        query_all: bool,
    ) -> Result<(usize, Vec<String>, Vec<String>), SfError> {
        let parsed =
            soql::parse(text).map_err(|e| SfError::bad_request("MALFORMED_QUERY", e.message))?;
        let index = self.object_index(&parsed.object.value).ok_or_else(|| {
            query_error(
                "INVALID_TYPE",
                text,
                parsed.object.column,
                &format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to \
                     append the '__c' after the entity name. Please reference your WSDL or the describe call for the \
                     appropriate names.",
                    parsed.object.value
                ),
            )
        })?;
        let sobject = &self.objects[index];
        if let (Some(message), None) = (sobject.def.requires_filter, &parsed.condition) {
            return Err(SfError::bad_request(
                "MALFORMED_QUERY",
                format!("Implementation restriction: {message}"),
            ));
        }
        let resolve = |name: &soql::Located<String>| -> Result<&FieldDef, SfError> {
            sobject.field(&name.value).ok_or_else(|| {
                query_error(
                    "INVALID_FIELD",
                    text,
                    name.column,
                    &format!(
                        "No such column '{}' on entity '{}'. If you are attempting to use a custom field, be sure to \
                         append the '__c' after the custom field name. Please reference your WSDL or the describe call \
                         for the appropriate names.",
                        name.value, sobject.def.name
                    ),
                )
            })
        };
        let mut fields = Vec::with_capacity(parsed.fields.len());
        for name in &parsed.fields {
            let field = resolve(name)?;
            if fields.contains(&field.name) {
                return Err(SfError::bad_request(
                    "MALFORMED_QUERY",
                    format!("duplicate field selected: {}", field.name),
                ));
            }
            fields.push(field.name.clone());
        }
        let predicate = parsed
            .condition
            .as_ref()
            .map(|c| compile(c, &resolve, text))
            .transpose()?;
        let order: Vec<(FieldDef, bool, bool)> = parsed
            .order_by
            .iter()
            .map(|o| resolve(&o.field).map(|f| (f.clone(), o.descending, o.nulls_last)))
            .collect::<Result<_, _>>()?;

        let matches = |record: &Record| {
            (query_all || !record.deleted) && predicate.as_ref().is_none_or(|p| p.eval(record))
        };
        let lower_bound = predicate.as_ref().and_then(Predicate::modstamp_lower_bound);
        // The modstamp index already yields `ORDER BY SystemModstamp ASC, Id ASC`.
        let index_order = !order.is_empty()
            && !order[0].1
            && order[0].0.name == "SystemModstamp"
            && order[1..]
                .iter()
                .all(|(f, desc, _)| f.name == "Id" && !desc)
            && order.len() <= 2;
        let wanted = parsed.limit.map(|l| l + parsed.offset.unwrap_or(0));
        let mut ids: Vec<String> = if index_order || lower_bound.is_some() {
            let start = (lower_bound.unwrap_or(i64::MIN), String::new());
            let candidates = sobject
                .by_modstamp
                .range(start..)
                .map(|(_, id)| (id, &sobject.records[id]))
                .filter(|(_, r)| matches(r))
                .map(|(id, _)| id.clone());
            match wanted {
                Some(n) if index_order => candidates.take(n).collect(),
                _ => candidates.collect(),
            }
        } else {
            sobject
                .records
                .iter()
                .filter(|(_, r)| matches(r))
                .map(|(id, _)| id.clone())
                .collect()
        };
        if !index_order {
            if order.is_empty() {
                ids.sort_unstable();
            } else {
                ids.sort_by(|a, b| {
                    let (ra, rb) = (&sobject.records[a], &sobject.records[b]);
                    order
                        .iter()
                        .map(|(field, descending, nulls_last)| {
                            compare_for_order(field, ra, rb, *descending, *nulls_last)
                        })
                        .find(|o| o.is_ne())
                        .unwrap_or_else(|| a.cmp(b))
                });
            }
        }
        if let Some(offset) = parsed.offset {
            ids.drain(..offset.min(ids.len()));
        }
        if let Some(limit) = parsed.limit {
            ids.truncate(limit);
        }
        Ok((index, fields, ids))
    }

    /// The definition of the object at `index` (of [`Org::select`]).
    pub(super) fn object_def_at(&self, index: usize) -> &ObjectDef {
        &self.objects[index].def
    }

    /// A record's stored values and whether it is deleted (`None`: no such record).
    pub(super) fn stored(&self, index: usize, id: &str) -> Option<(&HashMap<String, Value>, bool)> {
        self.objects[index]
            .records
            .get(id)
            .map(|r| (&r.values, r.deleted))
    }

    /// Runs a query (`query_all` includes deleted records) and returns its first page as the
    /// JSON response body.
    pub fn query(
        &mut self,
        text: &str,
        query_all: bool,
        batch_size: usize,
        version: &str,
    ) -> Result<Vec<u8>, SfError> {
        let (index, fields, ids) = self.select(text, query_all)?;
        let cursor = Cursor {
            object: self.objects[index].def.name.to_owned(),
            fields,
            ids,
            batch_size: batch_size.clamp(1, DEFAULT_BATCH_SIZE),
            query_all,
        };
        let locator = format!("01gDn{}", ids::base62_fixed(self.next_cursor, 13));
        self.next_cursor += 1;
        let page = self.render_page(&cursor, &locator, 0, version);
        if cursor.ids.len() > cursor.batch_size {
            self.cursors.insert(locator.clone(), cursor);
            self.cursor_order.push_back(locator);
            while self.cursor_order.len() > MAX_CURSORS {
                if let Some(old) = self.cursor_order.pop_front() {
                    self.cursors.remove(&old);
                }
            }
        }
        Ok(page)
    }

    /// `GET /query/{locator}-{offset}`: a later page of a query.
    pub fn query_more(&self, locator_and_offset: &str, version: &str) -> Result<Vec<u8>, SfError> {
        let invalid = || SfError::bad_request("INVALID_QUERY_LOCATOR", "invalid query locator");
        let (locator, offset) = locator_and_offset.rsplit_once('-').ok_or_else(invalid)?;
        let offset: usize = offset.parse().map_err(|_| invalid())?;
        let cursor = self.cursors.get(locator).ok_or_else(invalid)?;
        if offset >= cursor.ids.len() {
            return Err(invalid());
        }
        Ok(self.render_page(cursor, locator, offset, version))
    }

    /// Serializes one page of a cursor straight from the stored records: a 2000-record page
    /// is megabytes of JSON, and building it as a `Value` tree first costs more than the
    /// serialization itself.
    fn render_page(&self, cursor: &Cursor, locator: &str, offset: usize, version: &str) -> Vec<u8> {
        let sobject = &self.objects[self
            .object_index(&cursor.object)
            .expect("cursor names a known object")];
        let end = (offset + cursor.batch_size).min(cursor.ids.len());
        let next_records_url = (end < cursor.ids.len()).then(|| {
            let resource = if cursor.query_all {
                "queryAll"
            } else {
                "query"
            };
            format!("/services/data/{version}/{resource}/{locator}-{end}")
        });
        let page = PageView {
            total_size: cursor.ids.len(),
            done: end >= cursor.ids.len(),
            next_records_url,
            records: RecordsView {
                def: &sobject.def,
                records: &sobject.records,
                ids: &cursor.ids[offset..end],
                fields: &cursor.fields,
                version,
            },
        };
        serde_json::to_vec(&page).expect("a page serializes")
    }
}

/// A query result page, serialized in the key order Salesforce sends.
struct PageView<'a> {
    total_size: usize,
    done: bool,
    next_records_url: Option<String>,
    records: RecordsView<'a>,
}

impl Serialize for PageView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("totalSize", &self.total_size)?;
        map.serialize_entry("done", &self.done)?;
        if let Some(url) = &self.next_records_url {
            map.serialize_entry("nextRecordsUrl", url)?;
        }
        map.serialize_entry("records", &self.records)?;
        map.end()
    }
}

/// The records of a page, borrowed from the store.
struct RecordsView<'a> {
    def: &'a ObjectDef,
    records: &'a BTreeMap<String, Record>,
    ids: &'a [String],
    fields: &'a [String],
    version: &'a str,
}

impl Serialize for RecordsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for id in self.ids {
            let Some(record) = self.records.get(id) else {
                continue;
            };
            seq.serialize_element(&RecordView {
                def: self.def,
                id,
                record,
                fields: self.fields,
                version: self.version,
            })?;
        }
        seq.end()
    }
}

/// One record with the selected fields, as `render` builds it but without copying values.
struct RecordView<'a> {
    def: &'a ObjectDef,
    id: &'a str,
    record: &'a Record,
    fields: &'a [String],
    version: &'a str,
}

impl Serialize for RecordView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len() + 1))?;
        map.serialize_entry(
            "attributes",
            &AttributesView {
                object: self.def.name,
                id: self.id,
                version: self.version,
            },
        )?;
        for field in self.fields {
            map.serialize_entry(field, self.record.values.get(field).unwrap_or(&Value::Null))?;
        }
        map.end()
    }
}

struct AttributesView<'a> {
    object: &'a str,
    id: &'a str,
    version: &'a str,
}

impl Serialize for AttributesView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", self.object)?;
        map.serialize_entry(
            "url",
            &format_args!(
                "/services/data/{}/sobjects/{}/{}",
                self.version, self.object, self.id
            ),
        )?;
        map.end()
    }
}

/// A Salesforce query error pointing at a column, in the shape the REST API sends.
fn query_error(code: &str, text: &str, column: usize, message: &str) -> SfError {
    let caret = format!("{}^", " ".repeat(column.saturating_sub(1)));
    SfError::bad_request(
        code,
        format!("\n{text}\n{caret}\nERROR at Row:1:Column:{column}\n{message}"),
    )
}

fn render(def: &ObjectDef, id: &str, record: &Record, fields: &[&str], version: &str) -> Value {
    let mut object = Map::with_capacity(fields.len() + 1);
    object.insert(
        "attributes".into(),
        json!({"type": def.name, "url": format!("/services/data/{version}/sobjects/{}/{id}", def.name)}),
    );
    for field in fields {
        object.insert(
            (*field).to_owned(),
            record.values.get(*field).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(object)
}

/// Salesforce's range error for a number with more integer digits than the field allows.
fn check_range(field: &FieldDef, number: f64, integer_digits: u32) -> Result<(), SfError> {
    if integer_digits == 0 || number.abs() < 10f64.powi(integer_digits as i32) {
        return Ok(());
    }
    Err(SfError::bad_request(
        "NUMBER_OUTSIDE_VALID_RANGE",
        format!(
            "{}: value outside of valid range on numeric field: {number}",
            field.label
        ),
    )
    .on_fields(&[field.name.as_str()]))
}

/// A new stage brings its default probability and forecast category, unless the same write
/// sets them. `current` is the stored record on an update (`None` on create, where `values`
/// holds everything the create supplied).
fn apply_stage_defaults(values: &mut Values, current: Option<&Values>) {
    let stage = values
        .get("StageName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some((_, probability, forecast)) = STAGES.iter().find(|(name, _, _)| *name == stage) else {
        return;
    };
    let (probability, forecast) = (json!(f64::from(*probability)), json!(forecast));
    // On create an absent field takes the default; on update one the write did not name does.
    let unset = |values: &Values, key: &str| match current {
        None => values.get(key).is_none_or(Value::is_null),
        Some(_) => !values.contains_key(key),
    };
    if unset(values, "Probability") {
        values.insert("Probability".into(), probability);
    }
    if unset(values, "ForecastCategoryName") {
        values.insert("ForecastCategoryName".into(), forecast);
    }
}

/// Recomputes the fields the server derives from others: person `Name`, compound addresses,
/// Contact.IsEmailBounced, and Opportunity's closed/won flags, forecast category, expected
/// revenue and fiscal period.
fn derive_computed(def: &ObjectDef, values: &mut Values) {
    let text = |values: &Values, key: &str| -> Option<String> {
        values
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if matches!(def.name, "Contact" | "Lead") {
        let name = ["FirstName", "MiddleName", "LastName", "Suffix"]
            .iter()
            .filter_map(|part| text(values, part))
            .collect::<Vec<_>>()
            .join(" ");
        values.insert("Name".into(), Value::String(name));
    }
    for compound in def
        .fields
        .iter()
        .filter(|f| f.field_type == FieldType::Address)
    {
        let prefix = compound.name.trim_end_matches("Address");
        let mut address = Map::new();
        let mut any = false;
        for part in def
            .fields
            .iter()
            .filter(|f| f.compound_field_name == Some(compound.name.as_str()))
        {
            let suffix = &part.name[prefix.len()..];
            let key = format!("{}{}", suffix[..1].to_lowercase(), &suffix[1..]);
            let value = values.get(&part.name).cloned().unwrap_or(Value::Null);
            any |= !value.is_null();
            address.insert(key, value);
        }
        // An address with no component set is null, not an object of nulls.
        let value = if any {
            Value::Object(address)
        } else {
            Value::Null
        };
        values.insert(compound.name.clone(), value);
    }
    super::catalog::derive_catalog(def, values);
    match def.name {
        "Contact" => {
            let bounced = ["EmailBouncedReason", "EmailBouncedDate"]
                .iter()
                .any(|k| values.get(*k).is_some_and(|v| !v.is_null()));
            values.insert("IsEmailBounced".into(), Value::Bool(bounced));
        }
        "Opportunity" => {
            let stage = text(values, "StageName").unwrap_or_default();
            values.insert("IsClosed".into(), Value::Bool(stage.starts_with("Closed")));
            values.insert("IsWon".into(), Value::Bool(stage == "Closed Won"));
            let category = text(values, "ForecastCategoryName")
                .and_then(|name| FORECAST_CATEGORIES.iter().find(|(n, _)| *n == name))
                .map_or(Value::Null, |(_, value)| json!(value));
            values.insert("ForecastCategory".into(), category);
            let number = |key: &str| values.get(key).and_then(Value::as_f64);
            let expected = match (number("Amount"), number("Probability")) {
                (Some(amount), Some(probability)) => {
                    json!((amount * probability).round() / 100.0)
                }
                _ => Value::Null,
            };
            values.insert("ExpectedRevenue".into(), expected);
            let close = text(values, "CloseDate")
                .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
            let (year, quarter, fiscal) = match close {
                Some(date) => {
                    use chrono::Datelike;
                    let quarter = (date.month() - 1) / 3 + 1;
                    (
                        json!(date.year()),
                        json!(quarter),
                        json!(format!("{} {quarter}", date.year())),
                    )
                }
                None => (Value::Null, Value::Null, Value::Null),
            };
            values.insert("FiscalYear".into(), year);
            values.insert("FiscalQuarter".into(), quarter);
            values.insert("Fiscal".into(), fiscal);
        }
        _ => {}
    }
}

/// A deliberately simple email check in the spirit of Salesforce's: one `@`, a non-empty local
/// part, and a dotted domain without spaces.
pub fn is_valid_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.contains(char::is_whitespace)
}

/// A compiled `WHERE` condition with fields resolved against the describe.
enum Predicate {
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    Compare {
        field: FieldDef,
        op: CompareOp,
        value: Literal,
    },
    In {
        field: FieldDef,
        values: Vec<Literal>,
        negated: bool,
    },
}

fn compile<'a>(
    condition: &Condition,
    resolve: &impl Fn(&soql::Located<String>) -> Result<&'a FieldDef, SfError>,
    text: &str,
) -> Result<Predicate, SfError> {
    Ok(match condition {
        Condition::And(terms) => Predicate::And(
            terms
                .iter()
                .map(|t| compile(t, resolve, text))
                .collect::<Result<_, _>>()?,
        ),
        Condition::Or(terms) => Predicate::Or(
            terms
                .iter()
                .map(|t| compile(t, resolve, text))
                .collect::<Result<_, _>>()?,
        ),
        Condition::Not(inner) => Predicate::Not(Box::new(compile(inner, resolve, text)?)),
        Condition::Compare { field, op, value } => {
            let def = resolve(field)?;
            check_literal(def, value, field.column, text)?;
            Predicate::Compare {
                field: def.clone(),
                op: *op,
                value: normalize_literal(def, value),
            }
        }
        Condition::In {
            field,
            values,
            negated,
        } => {
            let def = resolve(field)?;
            for value in values {
                check_literal(def, value, field.column, text)?;
            }
            Predicate::In {
                field: def.clone(),
                values: values.iter().map(|v| normalize_literal(def, v)).collect(),
                negated: *negated,
            }
        }
    })
}

/// Salesforce rejects a literal of the wrong kind for the field (e.g. a quoted datetime).
fn check_literal(
    field: &FieldDef,
    value: &Literal,
    column: usize,
    text: &str,
) -> Result<(), SfError> {
    let ok = match (field.field_type, value) {
        (_, Literal::Null) => true,
        (FieldType::DateTime, Literal::DateTime(_)) => true,
        (FieldType::Date, Literal::Date(_)) => true,
        (FieldType::Boolean, Literal::Bool(_)) => true,
        (t, Literal::Number(_)) if t.is_numeric() => true,
        (FieldType::Id | FieldType::Reference, Literal::String(_)) => true,
        (t, Literal::String(_)) if t.is_text() => true,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let expected = match field.field_type {
        FieldType::DateTime => "dateTime and should not be enclosed in quotes",
        FieldType::Date => "date and should not be enclosed in quotes",
        FieldType::Boolean => "boolean and should not be enclosed in quotes",
        t if t.is_numeric() => "number and should not be enclosed in quotes",
        _ => "string and should be enclosed in quotes",
    };
    Err(query_error(
        "INVALID_FIELD",
        text,
        column,
        &format!(
            "value of filter criterion for field '{}' must be of type {expected}",
            field.name
        ),
    ))
}

fn normalize_literal(field: &FieldDef, value: &Literal) -> Literal {
    match (field.field_type, value) {
        (FieldType::Id | FieldType::Reference, Literal::String(s)) => {
            Literal::String(ids::to_18(s).unwrap_or_else(|| s.clone()))
        }
        _ => value.clone(),
    }
}

/// A field value reduced to something comparable.
#[derive(Debug, PartialEq, PartialOrd)]
enum Comparable {
    Number(f64),
    Text(String),
    Bool(bool),
}

fn comparable(field: &FieldDef, record: &Record) -> Option<Comparable> {
    match field.name.as_str() {
        "SystemModstamp" | "LastModifiedDate" => {
            return Some(Comparable::Number(record.modstamp as f64));
        }
        "CreatedDate" => return Some(Comparable::Number(record.created as f64)),
        _ => {}
    }
    let value = record.values.get(&field.name)?;
    match (field.field_type, value) {
        (_, Value::Null) => None,
        (FieldType::DateTime, Value::String(s)) => {
            soql::parse_datetime_literal(s).map(|m| Comparable::Number(m as f64))
        }
        (t, Value::String(s)) if t.is_text() => Some(Comparable::Text(s.to_lowercase())),
        (_, Value::String(s)) => Some(Comparable::Text(s.clone())),
        (_, Value::Number(n)) => n.as_f64().map(Comparable::Number),
        (_, Value::Bool(b)) => Some(Comparable::Bool(*b)),
        _ => None,
    }
}

fn literal_comparable(field: &FieldDef, literal: &Literal) -> Option<Comparable> {
    match literal {
        Literal::Null => None,
        Literal::Bool(b) => Some(Comparable::Bool(*b)),
        Literal::Number(n) => Some(Comparable::Number(*n)),
        Literal::DateTime(m) => Some(Comparable::Number(*m as f64)),
        Literal::Date(d) => Some(Comparable::Text(d.clone())),
        Literal::String(s) if field.field_type.is_text() => {
            Some(Comparable::Text(s.to_lowercase()))
        }
        Literal::String(s) => Some(Comparable::Text(s.clone())),
    }
}

fn like(value: &str, pattern: &str) -> bool {
    fn matches(value: &[char], pattern: &[char]) -> bool {
        match pattern.split_first() {
            None => value.is_empty(),
            Some(('%', rest)) => (0..=value.len()).any(|skip| matches(&value[skip..], rest)),
            Some(('_', rest)) => !value.is_empty() && matches(&value[1..], rest),
            Some((c, rest)) => value.first() == Some(c) && matches(&value[1..], rest),
        }
    }
    let value: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    matches(&value, &pattern)
}

impl Predicate {
    fn eval(&self, record: &Record) -> bool {
        match self {
            Predicate::And(terms) => terms.iter().all(|t| t.eval(record)),
            Predicate::Or(terms) => terms.iter().any(|t| t.eval(record)),
            Predicate::Not(inner) => !inner.eval(record),
            Predicate::Compare { field, op, value } => {
                let actual = comparable(field, record);
                let expected = literal_comparable(field, value);
                match (op, actual, expected) {
                    (CompareOp::Eq, a, e) => a == e,
                    (CompareOp::Ne, a, e) => a != e,
                    (_, None, _) | (_, _, None) => false,
                    (CompareOp::Like, Some(Comparable::Text(a)), Some(Comparable::Text(e))) => {
                        like(&a, &e)
                    }
                    (CompareOp::Like, _, _) => false,
                    (CompareOp::Lt, Some(a), Some(e)) => a < e,
                    (CompareOp::Le, Some(a), Some(e)) => a <= e,
                    (CompareOp::Gt, Some(a), Some(e)) => a > e,
                    (CompareOp::Ge, Some(a), Some(e)) => a >= e,
                }
            }
            Predicate::In {
                field,
                values,
                negated,
            } => {
                let actual = comparable(field, record);
                let found = values
                    .iter()
                    .any(|v| literal_comparable(field, v) == actual);
                found != *negated
            }
        }
    }

    /// A lower bound on `SystemModstamp` implied by the condition, so the ordered index can
    /// skip older records.
    fn modstamp_lower_bound(&self) -> Option<i64> {
        match self {
            Predicate::Compare {
                field,
                op: CompareOp::Gt | CompareOp::Ge | CompareOp::Eq,
                value: Literal::DateTime(millis),
            } if field.name == "SystemModstamp" => Some(*millis),
            Predicate::And(terms) => terms
                .iter()
                .filter_map(Predicate::modstamp_lower_bound)
                .max(),
            Predicate::Or(terms) => terms
                .iter()
                .map(Predicate::modstamp_lower_bound)
                .collect::<Option<Vec<_>>>()
                .and_then(|bounds| bounds.into_iter().min()),
            _ => None,
        }
    }
}

fn compare_for_order(
    field: &FieldDef,
    a: &Record,
    b: &Record,
    descending: bool,
    nulls_last: bool,
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (comparable(field, a), comparable(field, b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => {
            if nulls_last {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Some(_), None) => {
            if nulls_last {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (Some(x), Some(y)) => {
            let ordering = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn org() -> Org {
        Org::new(
            Clock::new(),
            OAuthSettings {
                client_id: "id".into(),
                client_secret: "secret".into(),
                rotate_refresh_tokens: true,
                access_token_ttl: Duration::from_secs(60),
            },
            "static",
            "refresh-1",
        )
    }

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn like_matches_wildcards() {
        assert!(like("andrea", "and%"));
        assert!(like("andrea", "_ndre_"));
        assert!(!like("andrea", "x%"));
    }

    #[test]
    fn modstamp_bound_uses_or_minimum() {
        let mut org = org();
        let first = org
            .create_at("Account", &fields(json!({"Name": "a"})), 1_000)
            .unwrap();
        org.create_at("Account", &fields(json!({"Name": "b"})), 2_000)
            .unwrap();
        let page = org
            .query(
                &format!(
                    "SELECT Id FROM Account WHERE SystemModstamp > 1970-01-01T00:00:01Z OR (SystemModstamp = \
                     1970-01-01T00:00:01Z AND Id > '{first}') ORDER BY SystemModstamp, Id"
                ),
                false,
                2000,
                "v59.0",
            )
            .unwrap();
        let page: Value = serde_json::from_slice(&page).unwrap();
        assert_eq!(page["totalSize"], 1);
        assert_eq!(page["records"][0]["Id"].as_str().unwrap().len(), 18);
    }

    #[test]
    fn refresh_rotates_and_revokes() {
        let mut org = org();
        let issued = org.refresh("id", "secret", "refresh-1").unwrap();
        assert!(org.access_token_valid(&issued.access_token));
        let rotated = issued.refresh_token.unwrap();
        assert_eq!(
            org.refresh("id", "secret", "refresh-1").unwrap_err().0,
            "invalid_grant"
        );
        assert!(org.refresh("id", "secret", &rotated).is_ok());
        org.expire_access_tokens();
        assert!(!org.access_token_valid(&issued.access_token));
        assert!(org.access_token_valid("static"));
    }
}
