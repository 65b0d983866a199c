//! The simulated HubSpot portal's CRM data: contacts, companies and deals with string-valued
//! properties, an ordered last-modified index, the unique email index of contacts, listing with
//! `after` cursors, the search endpoint's filters/sorts (with its 10,000-result cap) and the batch
//! operations. Pure logic; the HTTP layer is in the parent module.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::properties::{self, InvalidValue, Property};
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

/// The three CRM object types simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Contacts,
    Companies,
    Deals,
}

impl ObjectType {
    /// Parses the `{objectType}` path segment (`contacts`, `contact`, `0-1`, ...).
    pub fn parse(text: &str) -> Result<ObjectType, HsError> {
        match text.to_ascii_lowercase().as_str() {
            "contacts" | "contact" | "0-1" => Ok(ObjectType::Contacts),
            "companies" | "company" | "0-2" => Ok(ObjectType::Companies),
            "deals" | "deal" | "0-3" => Ok(ObjectType::Deals),
            _ => Err(HsError::validation(format!(
                "Unable to infer object type from: {text}"
            ))),
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The property holding the last-modified time (contacts predate the `hs_` convention).
    pub fn modified_property(self) -> &'static str {
        match self {
            ObjectType::Contacts => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }

    /// Properties returned when a request names none.
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            ObjectType::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            ObjectType::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            ObjectType::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
        }
    }

    /// Properties the free-text `query` of a search looks at (HubSpot's defaults).
    fn searchable_properties(self) -> &'static [&'static str] {
        match self {
            ObjectType::Contacts => &["firstname", "lastname", "email", "phone", "company"],
            ObjectType::Companies => &["name", "domain", "phone"],
            ObjectType::Deals => &[
                "dealname",
                "pipeline",
                "dealstage",
                "description",
                "dealtype",
            ],
        }
    }

    fn singular(self) -> &'static str {
        match self {
            ObjectType::Contacts => "CONTACT",
            ObjectType::Companies => "COMPANY",
            ObjectType::Deals => "DEAL",
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    properties: BTreeMap<String, String>,
    created: i64,
    updated: i64,
    archived_at: Option<i64>,
}

struct ObjectStore {
    object_type: ObjectType,
    properties: Vec<Property>,
    records: BTreeMap<u64, Record>,
    /// `(updated millis, id)` of live records: the order incremental searches ask for.
    by_updated: BTreeSet<(i64, u64)>,
    /// Lower-cased email -> live contact id (email is unique among contacts).
    by_email: HashMap<String, u64>,
}

impl ObjectStore {
    fn property(&self, name: &str) -> Option<&Property> {
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
    objects: [ObjectStore; 3],
    next_id: u64,
    clock: Clock,
    /// Bumped by every write; invalidates the search cache.
    generation: u64,
    search_cache: Option<SearchCache>,
}

/// One validated write: the properties to set (empty value = clear).
type Changes = BTreeMap<String, String>;

impl Portal {
    pub fn new(clock: Clock) -> Portal {
        let store = |object_type, properties| ObjectStore {
            object_type,
            properties,
            records: BTreeMap::new(),
            by_updated: BTreeSet::new(),
            by_email: HashMap::new(),
        };
        Portal {
            objects: [
                store(ObjectType::Contacts, properties::contact_properties()),
                store(ObjectType::Companies, properties::company_properties()),
                store(ObjectType::Deals, properties::deal_properties()),
            ],
            next_id: 1001,
            clock,
            generation: 0,
            search_cache: None,
        }
    }

    fn store(&self, object_type: ObjectType) -> &ObjectStore {
        &self.objects[object_type.index()]
    }

    fn store_mut(&mut self, object_type: ObjectType) -> &mut ObjectStore {
        &mut self.objects[object_type.index()]
    }

    // ----- rendering ------------------------------------------------------------------------

    fn render(
        &self,
        object_type: ObjectType,
        id: u64,
        record: &Record,
        selection: &Selection,
    ) -> Value {
        let mut properties = Map::new();
        let mut put = |name: &str| {
            if let Some(value) = record.properties.get(name) {
                properties.insert(name.to_owned(), Value::String(value.clone()));
            }
        };
        match selection {
            Selection::Default => object_type
                .default_properties()
                .iter()
                .for_each(|name| put(name)),
            Selection::Named(names) => {
                // HubSpot always includes these three alongside the requested properties.
                for name in [
                    "createdate",
                    object_type.modified_property(),
                    "hs_object_id",
                ] {
                    put(name);
                }
                names.iter().for_each(|name| put(name));
            }
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
        let store = self.store_mut(object_type);
        let mut record = Record {
            properties: changes.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            created,
            updated: created,
            archived_at: None,
        };
        record
            .properties
            .insert("hs_object_id".into(), id.to_string());
        record
            .properties
            .insert("createdate".into(), format_time(created));
        record
            .properties
            .insert(object_type.modified_property().into(), format_time(created));
        if let Some(email) = record.properties.get("email") {
            store.by_email.insert(email.to_lowercase(), id);
        }
        store.by_updated.insert((created, id));
        store.records.insert(id, record);
        id
    }

    /// Creates a record (`POST /crm/v3/objects/{type}`); returns it rendered.
    pub fn create(
        &mut self,
        object_type: ObjectType,
        input: &Map<String, Value>,
    ) -> Result<Value, HsError> {
        let changes = self.validate(object_type, input)?;
        self.check_unique_email(object_type, &changes, None)?;
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
        let changes = self.validate(object_type, input)?;
        self.check_unique_email(object_type, &changes, None)?;
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

    /// Applies changes; bumps the modified time only when a value actually changed.
    fn apply(&mut self, object_type: ObjectType, id: u64, changes: Changes) {
        let now = self.clock.now_ms();
        self.generation += 1;
        let store = self.store_mut(object_type);
        let record = store.records.get_mut(&id).expect("caller checked the id");
        let mut changed = false;
        for (name, value) in changes {
            let previous = if value.is_empty() {
                record.properties.remove(&name)
            } else {
                record.properties.insert(name.clone(), value.clone())
            };
            if previous.as_deref() != Some(value.as_str())
                && !(value.is_empty() && previous.is_none())
            {
                changed = true;
                if name == "email" {
                    if let Some(old) = previous {
                        store.by_email.remove(&old.to_lowercase());
                    }
                    if !value.is_empty() {
                        store.by_email.insert(value.to_lowercase(), id);
                    }
                }
            }
        }
        if changed {
            let stamp = now.max(record.updated + 1);
            store.by_updated.remove(&(record.updated, id));
            store.by_updated.insert((stamp, id));
            record.updated = stamp;
            record
                .properties
                .insert(object_type.modified_property().into(), format_time(stamp));
        }
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
        let changes = self.validate(object_type, input)?;
        self.check_unique_email(object_type, &changes, Some(id))?;
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
            let changes = self.validate(object_type, Self::input_properties(input)?)?;
            self.check_unique_email(object_type, &changes, None)?;
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
            let changes = self.validate(object_type, Self::input_properties(input)?)?;
            match self.live_id(object_type, id) {
                Ok(id) => {
                    self.check_unique_email(object_type, &changes, Some(id))?;
                    planned.push((id, changes));
                }
                Err(_) => missing.push(id.to_owned()),
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
    pub fn not_found_batch_error(object_type: ObjectType, ids: &[String]) -> Value {
        json!({
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", object_type.singular()),
            "context": {"ids": ids},
            "errors": [],
            "links": {},
        })
    }

    // ----- search ---------------------------------------------------------------------------

    /// `POST /crm/v3/objects/{type}/search`: returns `(total, results, next after)`.
    pub fn search(
        &mut self,
        object_type: ObjectType,
        body: &Value,
    ) -> Result<(usize, Vec<Value>, Option<String>), HsError> {
        let request = SearchRequest::parse(self.store(object_type), body)?;
        // Paging re-runs the same search with a new `after`: reuse the ordered hits while no
        // write happened in between, so a page costs its own records, not a scan.
        let key = format!(
            "{object_type:?}|{}|{}|{}",
            body.get("filterGroups").unwrap_or(&Value::Null),
            body.get("sorts").unwrap_or(&Value::Null),
            body.get("query").unwrap_or(&Value::Null),
        );
        let cached = self
            .search_cache
            .as_ref()
            .is_some_and(|c| c.key == key && c.generation == self.generation);
        if !cached {
            let hits = self.search_hits(object_type, &request);
            self.search_cache = Some(SearchCache {
                key,
                generation: self.generation,
                hits,
            });
        }
        let hits = &self.search_cache.as_ref().expect("filled above").hits;
        let store = self.store(object_type);
        let total = hits.len();
        let selection = match &request.properties {
            Some(names) => Selection::Named(names),
            None => Selection::Default,
        };
        // Results past the cap are never returned, whatever `limit` asks for.
        let end = (request.after + request.limit)
            .min(total)
            .min(SEARCH_RESULT_CAP);
        let results = hits
            .get(request.after..end)
            .unwrap_or_default()
            .iter()
            .map(|id| self.render(object_type, *id, &store.records[id], &selection))
            .collect();
        let next = (end < total).then(|| end.to_string());
        Ok((total, results, next))
    }

    /// Ids of the live records a search matches, in its order.
    fn search_hits(&self, object_type: ObjectType, request: &SearchRequest) -> Vec<u64> {
        let store = self.store(object_type);
        let matches = |record: &Record| request.matches(record);
        // Live records in index order when sorting by the modified time; by id otherwise.
        let mut hits: Vec<(u64, &Record)> = match &request.sort {
            Some(sort) if sort.property == object_type.modified_property() => {
                let lower = request.modified_lower_bound().unwrap_or(i64::MIN);
                let iter = store
                    .by_updated
                    .range((lower, 0)..)
                    .map(|(_, id)| (*id, &store.records[id]))
                    .filter(|(_, r)| matches(r));
                if sort.descending {
                    let mut all: Vec<_> = iter.collect();
                    all.reverse();
                    all
                } else {
                    iter.collect()
                }
            }
            _ => store
                .records
                .iter()
                .filter(|(_, r)| matches(r))
                .map(|(id, r)| (*id, r))
                .collect(),
        };
        if let Some(sort) = request
            .sort
            .as_ref()
            .filter(|s| s.property != object_type.modified_property())
        {
            hits.sort_by(|(ia, a), (ib, b)| {
                let ordering = compare_values(
                    a.properties.get(&sort.property).map(String::as_str),
                    b.properties.get(&sort.property).map(String::as_str),
                )
                .then(ia.cmp(ib));
                if sort.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
        hits.into_iter().map(|(id, _)| id).collect()
    }
}

/// The ordered hits of the last search, valid while `generation` is current.
struct SearchCache {
    key: String,
    generation: u64,
    hits: Vec<u64>,
}

struct Sort {
    property: String,
    descending: bool,
}

struct Filter {
    property: String,
    operator: String,
    value: Option<String>,
    high_value: Option<String>,
    values: Vec<String>,
    /// `value`/`highValue` as epoch millis, for the record timestamps compared without
    /// parsing each record's property text.
    value_time: Option<i64>,
    high_value_time: Option<i64>,
}

struct SearchRequest {
    groups: Vec<Vec<Filter>>,
    /// Free text matched against the object's default searchable properties.
    query: Option<String>,
    searchable: &'static [&'static str],
    sort: Option<Sort>,
    properties: Option<Vec<String>>,
    limit: usize,
    after: usize,
}

impl SearchRequest {
    fn parse(store: &ObjectStore, body: &Value) -> Result<SearchRequest, HsError> {
        let modified = store.object_type.modified_property();
        // Both names of the modified-time property are accepted on every object.
        let canonical = |name: &str| -> String {
            if name == "lastmodifieddate" || name == "hs_lastmodifieddate" {
                modified.to_owned()
            } else {
                name.to_owned()
            }
        };
        let limit = match body.get("limit") {
            None | Some(Value::Null) => 10,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| HsError::validation("limit must be an integer"))?
                as usize,
        };
        if limit > SEARCH_LIMIT_MAX {
            return Err(HsError::validation(format!(
                "Invalid input JSON: limit must be less than or equal to {SEARCH_LIMIT_MAX}, was {limit}"
            )));
        }
        let after = match body.get("after") {
            None | Some(Value::Null) => 0,
            Some(Value::String(s)) if s.is_empty() => 0,
            Some(Value::String(s)) => s
                .parse::<usize>()
                .map_err(|_| HsError::validation(format!("Invalid after value: {s}")))?,
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
            Some(_) => return Err(HsError::validation("after must be a string")),
        };
        if after >= SEARCH_RESULT_CAP {
            return Err(HsError::validation(format!(
                "Search results are limited to {SEARCH_RESULT_CAP} total results for any given query; \
                 after={after} pages beyond that"
            )));
        }
        let groups_json = body
            .get("filterGroups")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if groups_json.len() > 5 {
            return Err(HsError::validation(
                "Too many filter groups: at most 5 are allowed",
            ));
        }
        let mut groups = Vec::new();
        let mut total_filters = 0;
        for group in &groups_json {
            let filters_json = group
                .get("filters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if filters_json.len() > 6 {
                return Err(HsError::validation(
                    "Too many filters in a group: at most 6 are allowed",
                ));
            }
            total_filters += filters_json.len();
            let mut filters = Vec::new();
            for filter in &filters_json {
                let property = filter
                    .get("propertyName")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        HsError::validation("Invalid input JSON: propertyName is required")
                    })?;
                let property = canonical(property);
                if store.property(&property).is_none() {
                    return Err(HsError::validation(format!(
                        "There was a problem with the request: property {property} does not exist"
                    )));
                }
                let operator = filter
                    .get("operator")
                    .and_then(Value::as_str)
                    .ok_or_else(|| HsError::validation("Invalid input JSON: operator is required"))?
                    .to_owned();
                const OPERATORS: &[&str] = &[
                    "EQ",
                    "NEQ",
                    "LT",
                    "LTE",
                    "GT",
                    "GTE",
                    "BETWEEN",
                    "IN",
                    "NOT_IN",
                    "HAS_PROPERTY",
                    "NOT_HAS_PROPERTY",
                    "CONTAINS_TOKEN",
                    "NOT_CONTAINS_TOKEN",
                ];
                if !OPERATORS.contains(&operator.as_str()) {
                    return Err(HsError::validation(format!(
                        "Invalid input JSON: unknown operator {operator}"
                    )));
                }
                let text = |v: &Value| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                };
                let value = filter.get("value").and_then(text);
                let needs_value = !matches!(
                    operator.as_str(),
                    "HAS_PROPERTY" | "NOT_HAS_PROPERTY" | "IN" | "NOT_IN"
                );
                if needs_value && value.is_none() {
                    return Err(HsError::validation(format!(
                        "Invalid input JSON: operator {operator} on {property} requires a value"
                    )));
                }
                let high_value = filter.get("highValue").and_then(text);
                filters.push(Filter {
                    property,
                    operator,
                    value_time: value.as_deref().and_then(parse_time),
                    high_value_time: high_value.as_deref().and_then(parse_time),
                    value,
                    high_value,
                    values: filter
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|vs| vs.iter().filter_map(text).collect())
                        .unwrap_or_default(),
                });
            }
            groups.push(filters);
        }
        if total_filters > 18 {
            return Err(HsError::validation(
                "Too many filters: at most 18 are allowed across all groups",
            ));
        }
        let sorts = body
            .get("sorts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if sorts.len() > 1 {
            return Err(HsError::validation("Only one sort is allowed"));
        }
        let sort = match sorts.first() {
            None => None,
            Some(Value::String(s)) => Some(match s.strip_prefix('-') {
                Some(name) => Sort {
                    property: canonical(name),
                    descending: true,
                },
                None => Sort {
                    property: canonical(s),
                    descending: false,
                },
            }),
            Some(object) => {
                let property = object
                    .get("propertyName")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        HsError::validation("Invalid input JSON: sorts[0].propertyName is required")
                    })?;
                let direction = object
                    .get("direction")
                    .and_then(Value::as_str)
                    .unwrap_or("ASCENDING");
                Some(Sort {
                    property: canonical(property),
                    descending: direction.eq_ignore_ascii_case("DESCENDING"),
                })
            }
        };
        let properties = body
            .get("properties")
            .and_then(Value::as_array)
            .and_then(|names| {
                let names: Vec<String> = names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                (!names.is_empty()).then_some(names)
            });
        let query = body
            .get("query")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        Ok(SearchRequest {
            groups,
            query,
            searchable: store.object_type.searchable_properties(),
            sort,
            properties,
            limit,
            after,
        })
    }

    /// Smallest modified time any matching record can have, when every group bounds it.
    fn modified_lower_bound(&self) -> Option<i64> {
        if self.groups.is_empty() {
            return None;
        }
        self.groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .filter(|f| {
                        (f.property == "lastmodifieddate" || f.property == "hs_lastmodifieddate")
                            && matches!(f.operator.as_str(), "GT" | "GTE" | "EQ" | "BETWEEN")
                    })
                    .filter_map(|f| f.value.as_deref().and_then(parse_time))
                    .max()
            })
            .collect::<Option<Vec<i64>>>()
            .and_then(|bounds| bounds.into_iter().min())
    }

    /// Archived records never match; filter groups are ORed, filters within a group ANDed.
    fn matches(&self, record: &Record) -> bool {
        if record.archived_at.is_some() {
            return false;
        }
        if let Some(query) = &self.query {
            let found = self.searchable.iter().any(|name| {
                record
                    .properties
                    .get(*name)
                    .is_some_and(|value| value.to_lowercase().contains(query.as_str()))
            });
            if !found {
                return false;
            }
        }
        self.groups.is_empty()
            || self
                .groups
                .iter()
                .any(|group| group.iter().all(|f| f.matches(record)))
    }
}

/// Compares two property values: numerically, as times, or as case-insensitive text.
fn compare_text(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    if let (Some(x), Some(y)) = (parse_time(a), parse_time(b)) {
        return x.cmp(&y);
    }
    a.to_lowercase().cmp(&b.to_lowercase())
}

/// Orders values for a sort; records without the property come last.
fn compare_values(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => compare_text(a, b),
    }
}

impl Filter {
    /// The record's own timestamp when the filter is on `createdate` or the modified property
    /// (they always hold exactly these times).
    fn record_time(&self, record: &Record) -> Option<i64> {
        match self.property.as_str() {
            "createdate" => Some(record.created),
            "lastmodifieddate" | "hs_lastmodifieddate" => Some(record.updated),
            _ => None,
        }
    }

    fn matches(&self, record: &Record) -> bool {
        if let (Some(time), Some(value)) = (self.record_time(record), self.value_time) {
            let high = self.high_value_time.unwrap_or(value);
            match self.operator.as_str() {
                "EQ" => return time == value,
                "NEQ" => return time != value,
                "LT" => return time < value,
                "LTE" => return time <= value,
                "GT" => return time > value,
                "GTE" => return time >= value,
                "BETWEEN" => return time >= value && time <= high,
                _ => {}
            }
        }
        let actual = record.properties.get(&self.property).map(String::as_str);
        let value = self.value.as_deref().unwrap_or("");
        match (self.operator.as_str(), actual) {
            ("HAS_PROPERTY", actual) => actual.is_some(),
            ("NOT_HAS_PROPERTY", actual) => actual.is_none(),
            ("NEQ", None) => true,
            ("NOT_IN", None) => true,
            ("NOT_CONTAINS_TOKEN", None) => true,
            (_, None) => false,
            ("EQ", Some(a)) => compare_text(a, value).is_eq(),
            ("NEQ", Some(a)) => compare_text(a, value).is_ne(),
            ("LT", Some(a)) => compare_text(a, value).is_lt(),
            ("LTE", Some(a)) => compare_text(a, value).is_le(),
            ("GT", Some(a)) => compare_text(a, value).is_gt(),
            ("GTE", Some(a)) => compare_text(a, value).is_ge(),
            ("BETWEEN", Some(a)) => {
                compare_text(a, value).is_ge()
                    && compare_text(a, self.high_value.as_deref().unwrap_or(value)).is_le()
            }
            ("IN", Some(a)) => self.values.iter().any(|v| compare_text(a, v).is_eq()),
            ("NOT_IN", Some(a)) => !self.values.iter().any(|v| compare_text(a, v).is_eq()),
            ("CONTAINS_TOKEN", Some(a)) => token_matches(a, value),
            ("NOT_CONTAINS_TOKEN", Some(a)) => !token_matches(a, value),
            _ => false,
        }
    }
}

/// `CONTAINS_TOKEN`: a whole-word match, with `*` as a wildcard.
fn token_matches(text: &str, token: &str) -> bool {
    let token = token.to_lowercase();
    let text = text.to_lowercase();
    match (token.strip_prefix('*'), token.strip_suffix('*')) {
        (Some(rest), _) if rest.ends_with('*') => text.contains(rest.trim_end_matches('*')),
        (Some(rest), _) => text
            .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
            .any(|w| w.ends_with(rest)),
        (None, Some(rest)) => text
            .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
            .any(|w| w.starts_with(rest)),
        (None, None) => text
            .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
            .any(|w| w == token),
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

    #[test]
    fn tokens_match_words_and_wildcards() {
        assert!(token_matches("Ada Lovelace", "ada"));
        assert!(token_matches("ada@acme.example.com", "*@acme.example.com"));
        assert!(!token_matches("Ada Lovelace", "love"));
    }
}
