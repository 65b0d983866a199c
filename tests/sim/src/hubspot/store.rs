//! The simulated HubSpot portal's CRM data: the records of every object type (standard and
//! custom) with string-valued properties, an ordered last-modified index, the unique email
//! index of contacts, listing with `after` cursors and the batch operations; the portal's
//! owners, pipelines and custom object schemas sit beside them (`owners.rs`, `pipelines.rs`,
//! `schemas.rs`) and the search endpoint in `search.rs`. Pure logic; the HTTP layer is in the
//! parent module.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::associations::Associations;
use super::defaults;
use super::objects::{ObjectMeta, ObjectType, STANDARD};
use super::owners::Owners;
use super::pipelines::Pipelines;
use super::properties::{self, InvalidValue, OptionsSource, Property};
use super::rules;
use super::schemas::Schema;
use super::search::SearchCache;
use crate::common::Clock;

/// Search never returns results past this offset.
pub const SEARCH_RESULT_CAP: usize = 10_000;
pub const LIST_LIMIT_MAX: usize = 100;
pub const SEARCH_LIMIT_MAX: usize = 200;
pub const BATCH_LIMIT: usize = 100;

/// A HubSpot error: HTTP status, category and message (rendered with a correlation id).
#[derive(Debug, Clone, PartialEq)]
pub struct HsError {
    pub status: u16,
    pub category: &'static str,
    pub message: String,
}

impl HsError {
    pub fn new(status: u16, category: &'static str, message: impl Into<String>) -> HsError {
        HsError {
            status,
            category,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> HsError {
        HsError::new(400, "VALIDATION_ERROR", message)
    }

    pub fn not_found() -> HsError {
        HsError::new(404, "OBJECT_NOT_FOUND", "resource not found")
    }

    fn invalid_values(errors: &[InvalidValue]) -> HsError {
        let list: Vec<Value> = errors.iter().map(InvalidValue::to_json).collect();
        HsError::validation(format!(
            "Property values were not valid: {}",
            Value::Array(list)
        ))
    }
}

/// `2024-01-01T00:00:00.000Z` from epoch milliseconds.
pub fn format_time(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Epoch milliseconds from the forms HubSpot accepts: a millisecond timestamp, an ISO-8601
/// datetime or a `YYYY-MM-DD` date (midnight UTC).
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<i64>() {
        return Some(millis);
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.timestamp_millis())
}

#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) properties: BTreeMap<String, String>,
    pub(super) created: i64,
    pub(super) updated: i64,
    pub(super) archived_at: Option<i64>,
}

/// One object type's definition and records.
pub(super) struct ObjectStore {
    pub(super) meta: ObjectMeta,
    pub(super) properties: Vec<Property>,
    pub(super) records: BTreeMap<u64, Record>,
    /// `(updated millis, id)` of live records: the order incremental searches ask for.
    pub(super) by_updated: BTreeSet<(i64, u64)>,
    /// Lower-cased email -> live contact id (email is unique among contacts).
    by_email: HashMap<String, u64>,
}

impl ObjectStore {
    pub(super) fn new(meta: ObjectMeta, properties: Vec<Property>) -> ObjectStore {
        ObjectStore {
            meta,
            properties,
            records: BTreeMap::new(),
            by_updated: BTreeSet::new(),
            by_email: HashMap::new(),
        }
    }

    pub(super) fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }
}

/// Which properties a read returns.
pub enum Selection<'a> {
    Default,
    Named(&'a [String]),
}

/// The whole portal.
pub struct Portal {
    pub(super) objects: BTreeMap<ObjectType, ObjectStore>,
    /// Custom object definitions, by the number of their type id.
    pub(super) schemas: BTreeMap<u32, Schema>,
    pub(super) owners: Owners,
    pub(super) pipelines: Pipelines,
    pub(super) associations: Associations,
    next_id: u64,
    pub(super) clock: Clock,
    /// Bumped by every write; invalidates the search cache.
    pub(super) generation: u64,
    pub(super) search_cache: Option<SearchCache>,
}

/// One validated write: the properties to set (empty value = clear).
type Changes = BTreeMap<String, String>;

impl Portal {
    pub fn new(clock: Clock) -> Portal {
        let now = clock.now_ms();
        let objects = STANDARD
            .iter()
            .map(|t| {
                let store = ObjectStore::new(ObjectMeta::standard(*t), defaults::properties(*t));
                (*t, store)
            })
            .collect();
        let mut portal = Portal {
            objects,
            schemas: BTreeMap::new(),
            owners: Owners::seeded(now),
            pipelines: Pipelines::defaults(),
            associations: Associations::new(),
            next_id: 1001,
            clock,
            generation: 0,
            search_cache: None,
        };
        portal.refresh_options();
        portal
    }

    /// The object type a `{objectType}` path segment names: a standard name or type id, or a
    /// custom object's type id, name or fully qualified name.
    pub fn resolve(&self, text: &str) -> Result<ObjectType, HsError> {
        let unknown = || HsError::validation(format!("Unable to infer object type from: {text}"));
        match ObjectType::parse(text) {
            Ok(ObjectType::Custom(n)) if !self.schemas.contains_key(&n) => Err(unknown()),
            Ok(found) => Ok(found),
            Err(_) => self
                .schemas
                .values()
                .find(|s| s.answers_to(text))
                .map(|s| ObjectType::Custom(s.number))
                .ok_or_else(unknown),
        }
    }

    pub(super) fn store(&self, object_type: ObjectType) -> &ObjectStore {
        self.objects
            .get(&object_type)
            .unwrap_or_else(|| panic!("{object_type:?} is an object type of the portal"))
    }

    pub(super) fn store_mut(&mut self, object_type: ObjectType) -> &mut ObjectStore {
        self.objects
            .get_mut(&object_type)
            .unwrap_or_else(|| panic!("{object_type:?} is an object type of the portal"))
    }

    /// Sets the options of the enumerations that follow the portal's owners and pipelines.
    pub(super) fn refresh_options(&mut self) {
        let owners = self.owners.options();
        for (object_type, store) in self.objects.iter_mut() {
            for property in store.properties.iter_mut() {
                let options = match property.options_from {
                    None => continue,
                    Some(OptionsSource::Owners) => owners.clone(),
                    Some(OptionsSource::Pipelines) => self.pipelines.pipeline_options(*object_type),
                    Some(OptionsSource::PipelineStages) => {
                        self.pipelines.stage_options(*object_type)
                    }
                };
                property.options = options;
            }
        }
    }

    // ----- rendering ------------------------------------------------------------------------

    pub(super) fn render(
        &self,
        object_type: ObjectType,
        id: u64,
        record: &Record,
        selection: &Selection,
    ) -> Value {
        let meta = &self.store(object_type).meta;
        let mut properties = Map::new();
        let mut put = |name: &str| {
            if let Some(value) = record.properties.get(name) {
                properties.insert(name.to_owned(), Value::String(value.clone()));
            }
        };
        // HubSpot always includes the three system properties.
        meta.system_properties().into_iter().for_each(&mut put);
        match selection {
            Selection::Default => meta.default_properties.iter().for_each(|name| put(name)),
            Selection::Named(names) => names.iter().for_each(|name| put(name)),
        }
        let mut object = json!({
            "id": id.to_string(),
            "properties": properties,
            "createdAt": format_time(record.created),
            "updatedAt": format_time(record.updated),
            "archived": record.archived_at.is_some(),
        });
        if let Some(archived_at) = record.archived_at {
            object["archivedAt"] = json!(format_time(archived_at));
        }
        object
    }

    /// Renders a record with every property that has a value (write responses).
    fn render_all(&self, object_type: ObjectType, id: u64) -> Value {
        let record = &self.store(object_type).records[&id];
        let names: Vec<String> = record.properties.keys().cloned().collect();
        self.render(object_type, id, record, &Selection::Named(&names))
    }

    /// `GET /crm/v3/objects/{type}/{id}`; `id_property` looks the record up by a unique
    /// property (e.g. `email`) instead.
    pub fn get(
        &self,
        object_type: ObjectType,
        id: &str,
        id_property: Option<&str>,
        archived: bool,
        selection: &Selection,
    ) -> Result<Value, HsError> {
        let store = self.store(object_type);
        let id = match id_property {
            Some("email") if object_type == ObjectType::Contacts => {
                store.by_email.get(&id.to_lowercase()).copied()
            }
            Some("hs_object_id") | None => id.parse::<u64>().ok(),
            Some(other) => {
                return Err(HsError::validation(format!(
                    "{other} is not a unique property"
                )));
            }
        }
        .ok_or_else(HsError::not_found)?;
        match store.records.get(&id) {
            Some(record) if record.archived_at.is_some() == archived => {
                Ok(self.render(object_type, id, record, selection))
            }
            _ => Err(HsError::not_found()),
        }
    }

    /// `GET /crm/v3/objects/{type}`: ascending ids from `after`.
    pub fn list(
        &self,
        object_type: ObjectType,
        limit: usize,
        after: Option<&str>,
        archived: bool,
        selection: &Selection,
    ) -> Result<(Vec<Value>, Option<String>), HsError> {
        let start = match after {
            None | Some("") => 0,
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| HsError::validation(format!("Invalid after value: {text}")))?,
        };
        let store = self.store(object_type);
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut page = store
            .records
            .range(start..)
            .filter(|(_, r)| r.archived_at.is_some() == archived);
        let results: Vec<Value> = page
            .by_ref()
            .take(limit)
            .map(|(id, r)| self.render(object_type, *id, r, selection))
            .collect();
        let next = page.next().map(|(id, _)| id.to_string());
        Ok((results, next))
    }

    // ----- writes ---------------------------------------------------------------------------

    /// Checks every supplied property; all problems are reported together, as HubSpot does.
    fn validate(
        &self,
        object_type: ObjectType,
        input: &Map<String, Value>,
    ) -> Result<Changes, HsError> {
        let store = self.store(object_type);
        let mut changes = Changes::new();
        let mut problems = Vec::new();
        for (name, value) in input {
            let raw = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => other.to_string(),
            };
            match store.property(name) {
                None => problems.push(InvalidValue {
                    name: name.clone(),
                    error: "PROPERTY_DOESNT_EXIST",
                    message: format!("Property \"{name}\" does not exist"),
                }),
                Some(property) => match property.normalize(&raw) {
                    Ok(value) => {
                        changes.insert(name.clone(), value);
                    }
                    Err(problem) => problems.push(problem),
                },
            }
        }
        if problems.is_empty() {
            Ok(changes)
        } else {
            Err(HsError::invalid_values(&problems))
        }
    }

    /// A 409 if `changes` would give a contact an email another live contact has.
    fn check_unique_email(
        &self,
        object_type: ObjectType,
        changes: &Changes,
        own_id: Option<u64>,
    ) -> Result<(), HsError> {
        if object_type != ObjectType::Contacts {
            return Ok(());
        }
        let Some(email) = changes.get("email").filter(|e| !e.is_empty()) else {
            return Ok(());
        };
        match self.store(object_type).by_email.get(&email.to_lowercase()) {
            Some(existing) if Some(*existing) != own_id => Err(HsError::new(
                409,
                "CONFLICT",
                format!("Contact already exists. Existing ID: {existing}"),
            )),
            _ => Ok(()),
        }
    }

    fn insert(&mut self, object_type: ObjectType, changes: Changes, created: i64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.generation += 1;
        let mut properties: BTreeMap<String, String> =
            changes.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let meta = &self.store(object_type).meta;
        properties.insert("hs_object_id".into(), id.to_string());
        properties.insert(meta.created_property.clone(), format_time(created));
        properties.insert(meta.modified_property.clone(), format_time(created));
        let derived = rules::derived(self, object_type, id, &properties, None, created);
        set_all(&mut properties, derived);
        let store = self.store_mut(object_type);
        if let Some(email) = properties.get("email") {
            store.by_email.insert(email.to_lowercase(), id);
        }
        store.by_updated.insert((created, id));
        let record = Record {
            properties,
            created,
            updated: created,
            archived_at: None,
        };
        store.records.insert(id, record);
        id
    }

    /// A create's validated changes: each value checked, the required ones present, defaults
    /// filled in, and the rules between properties (pipelines, unique emails) kept.
    fn plan_create(
        &self,
        object_type: ObjectType,
        input: &Map<String, Value>,
    ) -> Result<Changes, HsError> {
        let mut changes = self.validate(object_type, input)?;
        rules::complete_create(self, object_type, &mut changes)?;
        self.check_unique_email(object_type, &changes, None)?;
        Ok(changes)
    }

    /// An update's validated changes for the live record `id`.
    fn plan_update(
        &self,
        object_type: ObjectType,
        id: u64,
        input: &Map<String, Value>,
    ) -> Result<Changes, HsError> {
        let changes = self.validate(object_type, input)?;
        let current = &self.store(object_type).records[&id].properties;
        rules::check_update(self, object_type, current, &changes)?;
        self.check_unique_email(object_type, &changes, Some(id))?;
        Ok(changes)
    }

    /// Creates a record (`POST /crm/v3/objects/{type}`); returns it rendered.
    pub fn create(
        &mut self,
        object_type: ObjectType,
        input: &Map<String, Value>,
    ) -> Result<Value, HsError> {
        let changes = self.plan_create(object_type, input)?;
        let now = self.clock.now_ms();
        let id = self.insert(object_type, changes, now);
        Ok(self.render_all(object_type, id))
    }

    /// Creates a record with a given creation time (seeding backdates records).
    pub fn create_at(
        &mut self,
        object_type: ObjectType,
        input: &Map<String, Value>,
        created: i64,
    ) -> Result<u64, HsError> {
        let changes = self.plan_create(object_type, input)?;
        Ok(self.insert(object_type, changes, created))
    }

    fn live_id(&self, object_type: ObjectType, id: &str) -> Result<u64, HsError> {
        id.parse::<u64>()
            .ok()
            .filter(|id| {
                self.store(object_type)
                    .records
                    .get(id)
                    .is_some_and(|r| r.archived_at.is_none())
            })
            .ok_or_else(HsError::not_found)
    }

    /// Applies changes (and the calculated values that follow them); bumps the modified time
    /// only when a value actually changed.
    fn apply(&mut self, object_type: ObjectType, id: u64, changes: Changes) {
        let now = self.clock.now_ms();
        self.generation += 1;
        let store = self.store_mut(object_type);
        let record = store.records.get_mut(&id).expect("caller checked the id");
        let before = record.properties.clone();
        for (name, value) in changes {
            let previous = set_one(&mut record.properties, &name, value.clone());
            if name == "email" && previous.as_deref() != Some(value.as_str()) {
                if let Some(old) = previous {
                    store.by_email.remove(&old.to_lowercase());
                }
                if !value.is_empty() {
                    store.by_email.insert(value.to_lowercase(), id);
                }
            }
        }
        if record.properties == before {
            return;
        }
        let after = record.properties.clone();
        let derived = rules::derived(self, object_type, id, &after, Some(&before), now);
        let store = self.store_mut(object_type);
        let record = store.records.get_mut(&id).expect("caller checked the id");
        set_all(&mut record.properties, derived);
        let stamp = now.max(record.updated + 1);
        store.by_updated.remove(&(record.updated, id));
        store.by_updated.insert((stamp, id));
        record.updated = stamp;
        record
            .properties
            .insert(store.meta.modified_property.clone(), format_time(stamp));
    }

    /// Updates a record (`PATCH /crm/v3/objects/{type}/{id}`); returns it rendered.
    pub fn update(
        &mut self,
        object_type: ObjectType,
        id: &str,
        id_property: Option<&str>,
        input: &Map<String, Value>,
    ) -> Result<Value, HsError> {
        let id = match id_property {
            Some("email") if object_type == ObjectType::Contacts => self
                .store(object_type)
                .by_email
                .get(&id.to_lowercase())
                .copied()
                .ok_or_else(HsError::not_found)?,
            _ => self.live_id(object_type, id)?,
        };
        let changes = self.plan_update(object_type, id, input)?;
        self.apply(object_type, id, changes);
        Ok(self.render_all(object_type, id))
    }

    /// Archives a record; archiving a missing or archived record is not an error (204).
    pub fn archive(&mut self, object_type: ObjectType, id: &str) {
        let Ok(id) = self.live_id(object_type, id) else {
            return;
        };
        let now = self.clock.now_ms();
        self.generation += 1;
        let store = self.store_mut(object_type);
        let record = store.records.get_mut(&id).expect("live id");
        let stamp = now.max(record.updated + 1);
        store.by_updated.remove(&(record.updated, id));
        record.updated = stamp;
        record.archived_at = Some(stamp);
        if let Some(email) = record.properties.get("email") {
            store.by_email.remove(&email.to_lowercase());
        }
        self.associations.forget(object_type, id);
    }

    /// A live record with every property that has a value.
    pub fn full_record(&self, object_type: ObjectType, id: &str) -> Option<Value> {
        let id = self.live_id(object_type, id).ok()?;
        Some(self.render_all(object_type, id))
    }

    /// Every live record with every property that has a value, by ascending id.
    pub fn all_records(&self, object_type: ObjectType) -> Vec<Value> {
        let store = self.store(object_type);
        store
            .records
            .iter()
            .filter(|(_, r)| r.archived_at.is_none())
            .map(|(id, _)| self.render_all(object_type, *id))
            .collect()
    }

    /// Number of records (archived ones only when asked).
    pub fn count(&self, object_type: ObjectType, archived: bool) -> usize {
        self.store(object_type)
            .records
            .values()
            .filter(|r| r.archived_at.is_some() == archived)
            .count()
    }

    // ----- properties API -------------------------------------------------------------------

    pub fn properties(&self, object_type: ObjectType) -> Vec<Value> {
        self.store(object_type)
            .properties
            .iter()
            .map(Property::to_json)
            .collect()
    }

    pub fn property(&self, object_type: ObjectType, name: &str) -> Result<Value, HsError> {
        self.store(object_type)
            .property(name)
            .map(Property::to_json)
            .ok_or_else(|| {
                HsError::new(
                    404,
                    "OBJECT_NOT_FOUND",
                    format!("Unable to find property {name}"),
                )
            })
    }

    pub fn create_property(
        &mut self,
        object_type: ObjectType,
        body: &Value,
    ) -> Result<Value, HsError> {
        let now = self.clock.now_ms();
        let property = properties::custom_property(body, now).map_err(HsError::validation)?;
        let store = self.store_mut(object_type);
        if store.property(&property.name).is_some() {
            return Err(HsError::new(
                409,
                "OBJECT_ALREADY_EXISTS",
                format!("Property named '{}' already exists.", property.name),
            ));
        }
        let rendered = property.to_json();
        store.properties.push(property);
        Ok(rendered)
    }

    // ----- batch ----------------------------------------------------------------------------

    fn inputs(body: &Value) -> Result<&[Value], HsError> {
        let inputs = body
            .get("inputs")
            .and_then(Value::as_array)
            .ok_or_else(|| HsError::validation("Invalid input JSON: inputs is required"))?;
        if inputs.len() > BATCH_LIMIT {
            return Err(HsError::validation(format!(
                "Batch input is limited to {BATCH_LIMIT} inputs; {} were given",
                inputs.len()
            )));
        }
        Ok(inputs)
    }

    fn input_properties(input: &Value) -> Result<&Map<String, Value>, HsError> {
        input
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| HsError::validation("Invalid input JSON: properties is required"))
    }

    /// `POST /batch/create`: all inputs are validated first; any problem fails the batch.
    pub fn batch_create(
        &mut self,
        object_type: ObjectType,
        body: &Value,
    ) -> Result<Vec<Value>, HsError> {
        let inputs = Self::inputs(body)?;
        let mut planned = Vec::with_capacity(inputs.len());
        let mut emails = BTreeSet::new();
        for input in inputs {
            let changes = self.plan_create(object_type, Self::input_properties(input)?)?;
            if let Some(email) = changes.get("email").filter(|e| !e.is_empty())
                && !emails.insert(email.to_lowercase())
            {
                return Err(HsError::validation(format!(
                    "Duplicate email in batch input: {email}"
                )));
            }
            planned.push(changes);
        }
        let mut results = Vec::with_capacity(planned.len());
        for changes in planned {
            let now = self.clock.now_ms();
            let id = self.insert(object_type, changes, now);
            results.push(self.render_all(object_type, id));
        }
        Ok(results)
    }

    /// `POST /batch/update`: returns results and the ids that were not found.
    pub fn batch_update(
        &mut self,
        object_type: ObjectType,
        body: &Value,
    ) -> Result<(Vec<Value>, Vec<String>), HsError> {
        let inputs = Self::inputs(body)?;
        let mut planned = Vec::new();
        let mut missing = Vec::new();
        for input in inputs {
            let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
            let properties = Self::input_properties(input)?;
            match self.live_id(object_type, id) {
                Ok(id) => planned.push((id, self.plan_update(object_type, id, properties)?)),
                Err(_) => {
                    // Still validated: a bad value fails the batch even beside a missing id.
                    self.validate(object_type, properties)?;
                    missing.push(id.to_owned());
                }
            }
        }
        let mut results = Vec::with_capacity(planned.len());
        for (id, changes) in planned {
            self.apply(object_type, id, changes);
            results.push(self.render_all(object_type, id));
        }
        Ok((results, missing))
    }

    /// `POST /batch/read`: returns results and the ids that were not found.
    pub fn batch_read(
        &self,
        object_type: ObjectType,
        body: &Value,
        archived: bool,
    ) -> Result<(Vec<Value>, Vec<String>), HsError> {
        let inputs = Self::inputs(body)?;
        let names: Option<Vec<String>> =
            body.get("properties")
                .and_then(Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                });
        let selection = match &names {
            Some(names) if !names.is_empty() => Selection::Named(names),
            _ => Selection::Default,
        };
        let id_property = body.get("idProperty").and_then(Value::as_str);
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for input in inputs {
            let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
            match self.get(object_type, id, id_property, archived, &selection) {
                Ok(record) => results.push(record),
                Err(_) => missing.push(id.to_owned()),
            }
        }
        Ok((results, missing))
    }

    /// `POST /batch/archive`.
    pub fn batch_archive(&mut self, object_type: ObjectType, body: &Value) -> Result<(), HsError> {
        for input in Self::inputs(body)? {
            let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
            self.archive(object_type, id);
        }
        Ok(())
    }

    /// The error element batch responses carry for ids that were not found.
    pub fn not_found_batch_error(&self, object_type: ObjectType, ids: &[String]) -> Value {
        let singular = &self.store(object_type).meta.singular;
        json!({
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", singular),
            "context": {"ids": ids},
            "errors": [],
            "links": {},
        })
    }
}

/// Sets a property (an empty value clears it); returns the previous value.
fn set_one(properties: &mut BTreeMap<String, String>, name: &str, value: String) -> Option<String> {
    if value.is_empty() {
        properties.remove(name)
    } else {
        properties.insert(name.to_owned(), value)
    }
}

fn set_all(properties: &mut BTreeMap<String, String>, values: Vec<(String, String)>) {
    for (name, value) in values {
        set_one(properties, &name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("1704067200000"), Some(1_704_067_200_000));
        assert_eq!(parse_time("2024-01-01"), Some(1_704_067_200_000));
        assert_eq!(
            parse_time("2024-01-01T00:00:00.000Z"),
            Some(1_704_067_200_000)
        );
        assert_eq!(format_time(1_704_067_200_000), "2024-01-01T00:00:00.000Z");
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut portal = Portal::new(Clock::new());
        let error = portal
            .create(
                ObjectType::Contacts,
                &props(json!({"email": "andrea__invalid", "nope": "x"})),
            )
            .unwrap_err();
        assert_eq!(error.status, 400);
        assert!(
            error
                .message
                .starts_with("Property values were not valid: [{"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("INVALID_EMAIL")
                && error.message.contains("PROPERTY_DOESNT_EXIST")
        );
    }
}
