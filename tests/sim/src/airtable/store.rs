//! Airtable bases: tables with typed fields, records keyed by creation order, cell validation
//! and `typecast`, list iterators (`offset`), and the meta (schema) rendering. Pure logic; the
//! HTTP layer is in the parent module.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use super::formula::{self, FormulaValue, RecordView};
use crate::common::{Clock, random_id};

/// Most records one create/update/delete request may carry.
pub const RECORDS_PER_REQUEST: usize = 10;
pub const MAX_PAGE_SIZE: usize = 100;
/// Open list iterators kept before the oldest is discarded.
const MAX_ITERATORS: usize = 1000;

/// An Airtable error: status, `type` and message.
#[derive(Debug, Clone, PartialEq)]
pub struct AtError {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

impl AtError {
    pub fn new(status: u16, error_type: &'static str, message: impl Into<String>) -> AtError {
        AtError {
            status,
            error_type,
            message: message.into(),
        }
    }

    fn unprocessable(error_type: &'static str, message: impl Into<String>) -> AtError {
        AtError::new(422, error_type, message)
    }

    pub fn to_json(&self) -> Value {
        json!({"error": {"type": self.error_type, "message": self.message}})
    }
}

/// A field type, by Airtable's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    SingleLineText,
    Email,
    Url,
    MultilineText,
    PhoneNumber,
    Number,
    Currency,
    Percent,
    Checkbox,
    SingleSelect,
    MultipleSelects,
    Date,
    DateTime,
    CreatedTime,
    LastModifiedTime,
}

const FIELD_TYPES: [(FieldType, &str); 15] = [
    (FieldType::SingleLineText, "singleLineText"),
    (FieldType::Email, "email"),
    (FieldType::Url, "url"),
    (FieldType::MultilineText, "multilineText"),
    (FieldType::PhoneNumber, "phoneNumber"),
    (FieldType::Number, "number"),
    (FieldType::Currency, "currency"),
    (FieldType::Percent, "percent"),
    (FieldType::Checkbox, "checkbox"),
    (FieldType::SingleSelect, "singleSelect"),
    (FieldType::MultipleSelects, "multipleSelects"),
    (FieldType::Date, "date"),
    (FieldType::DateTime, "dateTime"),
    (FieldType::CreatedTime, "createdTime"),
    (FieldType::LastModifiedTime, "lastModifiedTime"),
];

impl FieldType {
    pub fn name(self) -> &'static str {
        FIELD_TYPES
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .unwrap_or("singleLineText")
    }

    pub fn from_name(name: &str) -> Option<FieldType> {
        FIELD_TYPES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(t, _)| *t)
    }

    fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::SingleLineText
                | FieldType::Email
                | FieldType::Url
                | FieldType::MultilineText
                | FieldType::PhoneNumber
        )
    }

    fn is_number(self) -> bool {
        matches!(
            self,
            FieldType::Number | FieldType::Currency | FieldType::Percent
        )
    }

    fn is_computed(self) -> bool {
        matches!(self, FieldType::CreatedTime | FieldType::LastModifiedTime)
    }
}

/// A field of a table.
#[derive(Debug, Clone)]
pub struct Field {
    pub id: String,
    pub name: String,
    pub field_type: FieldType,
    /// Choice names of select fields.
    pub choices: Vec<(String, String)>,
    pub description: Option<String>,
}

impl Field {
    fn to_json(&self) -> Value {
        let mut value = json!({"id": self.id, "name": self.name, "type": self.field_type.name()});
        if let Some(description) = &self.description {
            value["description"] = json!(description);
        }
        let options = match self.field_type {
            FieldType::SingleSelect | FieldType::MultipleSelects => Some(json!({
                "choices": self.choices.iter().map(|(id, name)| json!({"id": id, "name": name, "color": "blueLight2"})).collect::<Vec<_>>(),
            })),
            FieldType::Number | FieldType::Percent => Some(json!({"precision": 2})),
            FieldType::Currency => Some(json!({"precision": 2, "symbol": "$"})),
            FieldType::Checkbox => Some(json!({"icon": "check", "color": "greenBright"})),
            FieldType::Date => Some(json!({"dateFormat": {"name": "iso", "format": "YYYY-MM-DD"}})),
            FieldType::DateTime | FieldType::CreatedTime | FieldType::LastModifiedTime => {
                Some(json!({
                    "timeZone": "utc",
                    "dateFormat": {"name": "iso", "format": "YYYY-MM-DD"},
                    "timeFormat": {"name": "24hour", "format": "HH:mm"},
                }))
            }
            _ => None,
        };
        if let Some(options) = options {
            value["options"] = options;
        }
        value
    }
}

#[derive(Debug, Clone)]
struct Record {
    id: String,
    created: i64,
    modified: i64,
    /// Cell values by field id; empty cells are absent.
    cells: HashMap<String, Value>,
}

/// A table.
pub struct Table {
    pub id: String,
    pub name: String,
    fields: Vec<Field>,
    /// Records by creation sequence: the default list order.
    records: BTreeMap<u64, Record>,
    by_id: HashMap<String, u64>,
    next_sequence: u64,
}

/// How to render records.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Only these field ids (all when `None`).
    pub field_ids: Option<Vec<String>>,
    pub by_field_id: bool,
}

/// Parameters of a list request.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub page_size: Option<usize>,
    pub offset: Option<String>,
    pub filter_by_formula: Option<String>,
    pub fields: Vec<String>,
    /// `(field name or id, descending)`
    pub sort: Vec<(String, bool)>,
    pub max_records: Option<usize>,
    pub return_fields_by_field_id: bool,
}

/// The ids a list request pages through: an open iterator's, or those just computed for a
/// first page (stored as a new iterator only if there is a next page).
enum Snapshot {
    Stored(String),
    Fresh(Vec<String>),
}

struct ListIterator {
    base: String,
    table: String,
    record_ids: Vec<String>,
}

/// A base.
pub struct Base {
    pub id: String,
    pub name: String,
    pub tables: Vec<Table>,
}

/// Every base of the simulated workspace, and the open list iterators.
pub struct Workspace {
    pub bases: Vec<Base>,
    iterators: HashMap<String, ListIterator>,
    iterator_order: VecDeque<String>,
    rng: StdRng,
    clock: Clock,
}

struct View<'a> {
    table: &'a Table,
    record: &'a Record,
}

impl RecordView for View<'_> {
    fn field(&self, name: &str) -> Option<FormulaValue> {
        let field = self.table.field(name)?;
        Some(match field.field_type {
            FieldType::CreatedTime => FormulaValue::DateTime(self.record.created),
            FieldType::LastModifiedTime => FormulaValue::DateTime(self.record.modified),
            _ => match self.record.cells.get(&field.id) {
                None | Some(Value::Null) => FormulaValue::Blank,
                Some(Value::Number(n)) => FormulaValue::Number(n.as_f64().unwrap_or(0.0)),
                Some(Value::Bool(b)) => FormulaValue::Bool(*b),
                Some(Value::String(s))
                    if matches!(field.field_type, FieldType::Date | FieldType::DateTime) =>
                {
                    formula::parse_datetime(s).map_or(FormulaValue::Blank, FormulaValue::DateTime)
                }
                Some(Value::String(s)) => FormulaValue::Text(s.clone()),
                Some(Value::Array(items)) => FormulaValue::Text(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                Some(other) => FormulaValue::Text(other.to_string()),
            },
        })
    }

    fn record_id(&self) -> &str {
        &self.record.id
    }

    fn created_time(&self) -> i64 {
        self.record.created
    }

    fn last_modified_time(&self) -> i64 {
        self.record.modified
    }
}

/// `2024-01-01T00:00:00.000Z`
pub fn format_time(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl Table {
    pub fn field(&self, name_or_id: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.id == name_or_id)
            .or_else(|| self.fields.iter().find(|f| f.name == name_or_id))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "primaryFieldId": self.fields[0].id,
            "fields": self.fields.iter().map(Field::to_json).collect::<Vec<_>>(),
            "views": [{"id": format!("viw{}", &self.id[3..]), "name": "Grid view", "type": "grid"}],
        })
    }

    fn render(&self, record: &Record, options: &RenderOptions) -> Value {
        let mut fields = Map::new();
        for field in &self.fields {
            if options
                .field_ids
                .as_ref()
                .is_some_and(|ids| !ids.contains(&field.id))
            {
                continue;
            }
            let value = match field.field_type {
                FieldType::CreatedTime => Some(Value::String(format_time(record.created))),
                FieldType::LastModifiedTime => Some(Value::String(format_time(record.modified))),
                _ => record.cells.get(&field.id).cloned(),
            };
            if let Some(value) = value {
                let key = if options.by_field_id {
                    &field.id
                } else {
                    &field.name
                };
                fields.insert(key.clone(), value);
            }
        }
        json!({"id": record.id, "createdTime": format_time(record.created), "fields": fields})
    }

    /// Resolves field names/ids to ids; an unknown one is `UNKNOWN_FIELD_NAME`.
    fn field_ids(&self, names: &[String]) -> Result<Vec<String>, AtError> {
        names
            .iter()
            .map(|name| {
                self.field(name).map(|f| f.id.clone()).ok_or_else(|| {
                    AtError::unprocessable(
                        "UNKNOWN_FIELD_NAME",
                        format!("Unknown field name: \"{name}\""),
                    )
                })
            })
            .collect()
    }

    fn record(&self, id: &str) -> Result<&Record, AtError> {
        self.by_id
            .get(id)
            .and_then(|seq| self.records.get(seq))
            .ok_or_else(|| record_not_found(id))
    }
}

fn record_not_found(id: &str) -> AtError {
    AtError::new(
        404,
        "MODEL_ID_NOT_FOUND",
        format!("Could not find a record with ID \"{id}\"."),
    )
}

/// Removes empty values, which Airtable never stores or returns.
fn is_empty_cell(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

impl Workspace {
    pub fn new(clock: Clock, rng: StdRng) -> Workspace {
        Workspace {
            bases: Vec::new(),
            iterators: HashMap::new(),
            iterator_order: VecDeque::new(),
            rng,
            clock,
        }
    }

    pub fn new_id(&mut self, prefix: &str) -> String {
        random_id(&mut self.rng, prefix, 14)
    }

    pub fn base(&self, base_id: &str) -> Result<&Base, AtError> {
        self.bases.iter().find(|b| b.id == base_id).ok_or_else(|| {
            AtError::new(404, "NOT_FOUND", "Could not find what you are looking for")
        })
    }

    fn table_index(&self, base_id: &str, table: &str) -> Result<(usize, usize), AtError> {
        let base_index = self
            .bases
            .iter()
            .position(|b| b.id == base_id)
            .ok_or_else(|| {
                AtError::new(404, "NOT_FOUND", "Could not find what you are looking for")
            })?;
        let tables = &self.bases[base_index].tables;
        let table_index = tables
            .iter()
            .position(|t| t.id == table)
            .or_else(|| tables.iter().position(|t| t.name == table))
            .ok_or_else(|| {
                AtError::new(
                    404,
                    "NOT_FOUND",
                    format!("Could not find table {table} in application {base_id}"),
                )
            })?;
        Ok((base_index, table_index))
    }

    pub fn table(&self, base_id: &str, table: &str) -> Result<&Table, AtError> {
        let (b, t) = self.table_index(base_id, table)?;
        Ok(&self.bases[b].tables[t])
    }

    fn table_mut(&mut self, base_id: &str, table: &str) -> Result<&mut Table, AtError> {
        let (b, t) = self.table_index(base_id, table)?;
        Ok(&mut self.bases[b].tables[t])
    }

    /// Creates a table with the given fields (`(name, type, choices)`); the first is primary.
    pub fn add_table(
        &mut self,
        base_id: &str,
        name: &str,
        fields: &[(&str, FieldType, &[&str])],
    ) -> Result<(), AtError> {
        let table_id = self.new_id("tbl");
        let mut defs = Vec::new();
        for (field_name, field_type, choices) in fields {
            let id = self.new_id("fld");
            let choices = choices
                .iter()
                .map(|c| (self.new_id("sel"), (*c).to_owned()))
                .collect();
            defs.push(Field {
                id,
                name: (*field_name).to_owned(),
                field_type: *field_type,
                choices,
                description: None,
            });
        }
        let base = self
            .bases
            .iter_mut()
            .find(|b| b.id == base_id)
            .ok_or_else(|| {
                AtError::new(404, "NOT_FOUND", "Could not find what you are looking for")
            })?;
        base.tables.push(Table {
            id: table_id,
            name: name.to_owned(),
            fields: defs,
            records: BTreeMap::new(),
            by_id: HashMap::new(),
            next_sequence: 1,
        });
        Ok(())
    }

    /// `POST /v0/meta/bases/{base}/tables/{table}/fields`: adds a field; returns its schema.
    pub fn add_field(
        &mut self,
        base_id: &str,
        table: &str,
        body: &Value,
    ) -> Result<Value, AtError> {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                AtError::unprocessable("INVALID_REQUEST_UNKNOWN", "Field name is required")
            })?
            .to_owned();
        let type_name = body.get("type").and_then(Value::as_str).unwrap_or_default();
        let field_type = FieldType::from_name(type_name).ok_or_else(|| {
            AtError::unprocessable(
                "INVALID_FIELD_TYPE",
                format!("Unsupported field type \"{type_name}\""),
            )
        })?;
        let choice_names: Vec<String> = body
            .pointer("/options/choices")
            .and_then(Value::as_array)
            .map(|choices| {
                choices
                    .iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if self
            .table(base_id, table)?
            .fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(&name))
        {
            return Err(AtError::unprocessable(
                "DUPLICATE_OR_EMPTY_FIELD_NAME",
                format!("Field name \"{name}\" is already used in this table"),
            ));
        }
        let id = self.new_id("fld");
        let choices = choice_names
            .into_iter()
            .map(|c| (self.new_id("sel"), c))
            .collect();
        let field = Field {
            id,
            name,
            field_type,
            choices,
            description: body
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let rendered = field.to_json();
        self.table_mut(base_id, table)?.fields.push(field);
        Ok(rendered)
    }

    /// Validates one record's `fields` object into cells by field id. With `typecast`, text is
    /// converted to numbers/booleans/dates and unknown select options are created.
    fn validate_cells(
        &mut self,
        base_id: &str,
        table: &str,
        input: &Map<String, Value>,
        typecast: bool,
    ) -> Result<HashMap<String, Value>, AtError> {
        let mut new_choices: Vec<(String, String)> = Vec::new();
        let mut cells = HashMap::new();
        {
            let table_ref = self.table(base_id, table)?;
            for (key, value) in input {
                let field = table_ref.field(key).ok_or_else(|| {
                    AtError::unprocessable(
                        "UNKNOWN_FIELD_NAME",
                        format!("Unknown field name: \"{key}\""),
                    )
                })?;
                let cannot = || {
                    AtError::unprocessable(
                        "INVALID_VALUE_FOR_COLUMN",
                        format!("Field \"{}\" cannot accept the provided value", field.name),
                    )
                };
                if field.field_type.is_computed() {
                    return Err(AtError::unprocessable(
                        "INVALID_VALUE_FOR_COLUMN",
                        format!(
                            "Field \"{}\" cannot accept a value because the field is computed",
                            field.name
                        ),
                    ));
                }
                if value.is_null() {
                    cells.insert(field.id.clone(), Value::Null);
                    continue;
                }
                let cell = match field.field_type {
                    t if t.is_text() => match value {
                        Value::String(s) => Value::String(s.clone()),
                        Value::Number(n) if typecast => Value::String(n.to_string()),
                        Value::Bool(b) if typecast => Value::String(b.to_string()),
                        _ => return Err(cannot()),
                    },
                    t if t.is_number() => match value {
                        Value::Number(n) => Value::Number(n.clone()),
                        Value::String(s) if typecast => {
                            let number: f64 = s.trim().parse().map_err(|_| cannot())?;
                            json!(number)
                        }
                        _ => return Err(cannot()),
                    },
                    FieldType::Checkbox => match value {
                        Value::Bool(b) => Value::Bool(*b),
                        Value::String(s) if typecast => Value::Bool(matches!(
                            s.trim().to_ascii_lowercase().as_str(),
                            "true" | "1" | "yes" | "checked"
                        )),
                        Value::Number(n) if typecast => Value::Bool(n.as_f64() != Some(0.0)),
                        _ => return Err(cannot()),
                    },
                    FieldType::SingleSelect => {
                        let choice = match value {
                            Value::String(s) => s.clone(),
                            Value::Number(n) if typecast => n.to_string(),
                            _ => return Err(cannot()),
                        };
                        Self::check_choice(field, &choice, typecast, &mut new_choices)?;
                        Value::String(choice)
                    }
                    FieldType::MultipleSelects => {
                        let choices: Vec<String> = match value {
                            Value::Array(items) => items
                                .iter()
                                .map(|i| i.as_str().map(str::to_owned).ok_or_else(cannot))
                                .collect::<Result<_, _>>()?,
                            Value::String(s) if typecast => {
                                s.split(',').map(|c| c.trim().to_owned()).collect()
                            }
                            _ => return Err(cannot()),
                        };
                        for choice in &choices {
                            Self::check_choice(field, choice, typecast, &mut new_choices)?;
                        }
                        json!(choices)
                    }
                    FieldType::Date => {
                        let text = value.as_str().ok_or_else(cannot)?;
                        let millis = formula::parse_datetime(text).ok_or_else(cannot)?;
                        Value::String(format_time(millis)[..10].to_owned())
                    }
                    FieldType::DateTime => {
                        let text = value.as_str().ok_or_else(cannot)?;
                        Value::String(format_time(
                            formula::parse_datetime(text).ok_or_else(cannot)?,
                        ))
                    }
                    _ => return Err(cannot()),
                };
                cells.insert(field.id.clone(), cell);
            }
        }
        if !new_choices.is_empty() {
            let ids: Vec<String> = new_choices.iter().map(|_| self.new_id("sel")).collect();
            let table = self.table_mut(base_id, table)?;
            for ((field_id, name), id) in new_choices.into_iter().zip(ids) {
                if let Some(field) = table.fields.iter_mut().find(|f| f.id == field_id)
                    && !field.choices.iter().any(|(_, n)| *n == name)
                {
                    field.choices.push((id, name));
                }
            }
        }
        Ok(cells)
    }

    fn check_choice(
        field: &Field,
        choice: &str,
        typecast: bool,
        new_choices: &mut Vec<(String, String)>,
    ) -> Result<(), AtError> {
        if field.choices.iter().any(|(_, name)| name == choice) {
            return Ok(());
        }
        if typecast {
            new_choices.push((field.id.clone(), choice.to_owned()));
            Ok(())
        } else {
            Err(AtError::unprocessable(
                "INVALID_MULTIPLE_CHOICE_OPTIONS",
                format!("Insufficient permissions to create new select option \"\"{choice}\"\""),
            ))
        }
    }

    fn insert(
        &mut self,
        base_id: &str,
        table: &str,
        cells: HashMap<String, Value>,
        created: i64,
    ) -> Result<String, AtError> {
        let id = self.new_id("rec");
        let table = self.table_mut(base_id, table)?;
        let sequence = table.next_sequence;
        table.next_sequence += 1;
        table.by_id.insert(id.clone(), sequence);
        table.records.insert(
            sequence,
            Record {
                id: id.clone(),
                created,
                modified: created,
                cells: cells
                    .into_iter()
                    .filter(|(_, v)| !is_empty_cell(v))
                    .collect(),
            },
        );
        Ok(id)
    }

    /// Creates records (all validated before any is written); returns them rendered.
    pub fn create(
        &mut self,
        base_id: &str,
        table: &str,
        inputs: &[Map<String, Value>],
        typecast: bool,
        options: &RenderOptions,
    ) -> Result<Vec<Value>, AtError> {
        let now = self.clock.now_ms();
        self.create_at(base_id, table, inputs, typecast, options, now)
    }

    /// [`Workspace::create`] with a given creation time (seeding backdates records).
    pub fn create_at(
        &mut self,
        base_id: &str,
        table: &str,
        inputs: &[Map<String, Value>],
        typecast: bool,
        options: &RenderOptions,
        created: i64,
    ) -> Result<Vec<Value>, AtError> {
        let planned = inputs
            .iter()
            .map(|input| self.validate_cells(base_id, table, input, typecast))
            .collect::<Result<Vec<_>, _>>()?;
        let ids = planned
            .into_iter()
            .map(|cells| self.insert(base_id, table, cells, created))
            .collect::<Result<Vec<_>, _>>()?;
        let table = self.table(base_id, table)?;
        Ok(ids
            .iter()
            .map(|id| table.render(table.record(id).expect("just inserted"), options))
            .collect())
    }

    /// Updates records (`destructive` = PUT: unspecified fields are cleared); all ids and
    /// values are checked before anything is written.
    pub fn update(
        &mut self,
        base_id: &str,
        table: &str,
        updates: &[(String, Map<String, Value>)],
        destructive: bool,
        typecast: bool,
        options: &RenderOptions,
    ) -> Result<Vec<Value>, AtError> {
        let mut planned = Vec::with_capacity(updates.len());
        for (id, input) in updates {
            self.table(base_id, table)?.record(id)?;
            planned.push((
                id.clone(),
                self.validate_cells(base_id, table, input, typecast)?,
            ));
        }
        let now = self.clock.now_ms();
        let table = self.table_mut(base_id, table)?;
        for (id, cells) in &planned {
            let sequence = table.by_id[id];
            let record = table.records.get_mut(&sequence).expect("checked above");
            let before = record.cells.clone();
            if destructive {
                record.cells.clear();
            }
            for (field_id, value) in cells {
                if is_empty_cell(value) {
                    record.cells.remove(field_id);
                } else {
                    record.cells.insert(field_id.clone(), value.clone());
                }
            }
            // Airtable only bumps the last-modified time when a cell really changed.
            if record.cells != before {
                record.modified = now.max(record.modified + 1);
            }
        }
        let table = &*table;
        Ok(planned
            .iter()
            .map(|(id, _)| table.render(table.record(id).expect("checked above"), options))
            .collect())
    }

    /// Deletes records (all ids checked first). Airtable keeps no tombstones.
    pub fn delete(
        &mut self,
        base_id: &str,
        table: &str,
        ids: &[String],
    ) -> Result<Vec<Value>, AtError> {
        let table = self.table_mut(base_id, table)?;
        for id in ids {
            table.record(id)?;
        }
        for id in ids {
            if let Some(sequence) = table.by_id.remove(id) {
                table.records.remove(&sequence);
            }
        }
        Ok(ids
            .iter()
            .map(|id| json!({"id": id, "deleted": true}))
            .collect())
    }

    pub fn get(
        &self,
        base_id: &str,
        table: &str,
        id: &str,
        options: &RenderOptions,
    ) -> Result<Value, AtError> {
        let table = self.table(base_id, table)?;
        Ok(table.render(table.record(id)?, options))
    }

    pub fn count(&self, base_id: &str, table: &str) -> usize {
        self.table(base_id, table)
            .map(|t| t.records.len())
            .unwrap_or(0)
    }

    /// Lists records; returns the page and the offset of the next one.
    pub fn list(
        &mut self,
        base_id: &str,
        table_name: &str,
        request: &ListRequest,
    ) -> Result<(Vec<Value>, Option<String>), AtError> {
        let page_size = request
            .page_size
            .unwrap_or(MAX_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        let table = self.table(base_id, table_name)?;
        let options = RenderOptions {
            field_ids: if request.fields.is_empty() {
                None
            } else {
                Some(table.field_ids(&request.fields)?)
            },
            by_field_id: request.return_fields_by_field_id,
        };
        // A first page snapshots the matching ids; later pages resume in that snapshot.
        let (snapshot, start) = match &request.offset {
            Some(offset) => {
                let not_available = || {
                    AtError::unprocessable(
                        "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                        "The offset is invalid or has expired",
                    )
                };
                let (iterator_id, next_record) =
                    offset.split_once('/').ok_or_else(not_available)?;
                let iterator = self.iterators.get(iterator_id).ok_or_else(not_available)?;
                if iterator.base != base_id || iterator.table != table.id {
                    return Err(not_available());
                }
                let start = iterator
                    .record_ids
                    .iter()
                    .position(|id| id == next_record)
                    .ok_or_else(not_available)?;
                (Snapshot::Stored(iterator_id.to_owned()), start)
            }
            None => (Snapshot::Fresh(self.matching_ids(table, request)?), 0),
        };
        let record_ids: &[String] = match &snapshot {
            Snapshot::Stored(iterator_id) => &self.iterators[iterator_id].record_ids,
            Snapshot::Fresh(ids) => ids,
        };
        let end = (start + page_size).min(record_ids.len());
        let page: Vec<Value> = record_ids[start..end]
            .iter()
            .filter_map(|id| table.record(id).ok())
            .map(|record| table.render(record, &options))
            .collect();
        if end >= record_ids.len() {
            return Ok((page, None));
        }
        let next_record = record_ids[end].clone();
        let table_id = table.id.clone();
        let iterator_id = match snapshot {
            Snapshot::Stored(id) => id,
            Snapshot::Fresh(record_ids) => {
                let id = self.new_id("itr");
                self.iterators.insert(
                    id.clone(),
                    ListIterator {
                        base: base_id.to_owned(),
                        table: table_id,
                        record_ids,
                    },
                );
                self.iterator_order.push_back(id.clone());
                while self.iterator_order.len() > MAX_ITERATORS {
                    if let Some(old) = self.iterator_order.pop_front() {
                        self.iterators.remove(&old);
                    }
                }
                id
            }
        };
        Ok((page, Some(format!("{iterator_id}/{next_record}"))))
    }

    /// Ids of the records a list request selects, in its order (snapshotted by iterators).
    fn matching_ids(&self, table: &Table, request: &ListRequest) -> Result<Vec<String>, AtError> {
        let formula = match request
            .filter_by_formula
            .as_deref()
            .filter(|f| !f.trim().is_empty())
        {
            None => None,
            Some(text) => {
                let invalid = |detail: String| {
                    AtError::unprocessable(
                        "INVALID_FILTER_BY_FORMULA",
                        format!("The formula for filtering records is invalid: {detail}"),
                    )
                };
                let expr = formula::parse(text).map_err(invalid)?;
                let mut names = Vec::new();
                formula::referenced_fields(&expr, &mut names);
                let unknown: Vec<&String> =
                    names.iter().filter(|n| table.field(n).is_none()).collect();
                if !unknown.is_empty() {
                    return Err(invalid(format!(
                        "Unknown field names: {}",
                        unknown
                            .iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Some(expr)
            }
        };
        let sort: Vec<(&Field, bool)> = request
            .sort
            .iter()
            .map(|(name, descending)| {
                table.field(name).map(|f| (f, *descending)).ok_or_else(|| {
                    AtError::unprocessable(
                        "UNKNOWN_FIELD_NAME",
                        format!("Unknown field name: \"{name}\""),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let mut records: Vec<&Record> = table
            .records
            .values()
            .filter(|record| {
                formula
                    .as_ref()
                    .is_none_or(|expr| formula::eval(expr, &View { table, record }).truthy())
            })
            .collect();
        if !sort.is_empty() {
            // Stable: ties keep creation order.
            records.sort_by(|a, b| {
                sort.iter()
                    .map(|(field, descending)| {
                        let (va, vb) = (
                            View { table, record: a }.field(&field.id),
                            View { table, record: b }.field(&field.id),
                        );
                        let ordering = sort_key(va)
                            .partial_cmp(&sort_key(vb))
                            .unwrap_or(std::cmp::Ordering::Equal);
                        if *descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        let mut ids: Vec<String> = records.into_iter().map(|r| r.id.clone()).collect();
        if let Some(max) = request.max_records {
            ids.truncate(max);
        }
        Ok(ids)
    }
}

/// Sort key: blanks first, then numbers/dates, then text.
#[derive(PartialEq, PartialOrd)]
enum SortKey {
    Blank,
    Number(f64),
    Text(String),
}

fn sort_key(value: Option<FormulaValue>) -> SortKey {
    match value {
        None | Some(FormulaValue::Blank) => SortKey::Blank,
        Some(FormulaValue::Number(n)) => SortKey::Number(n),
        Some(FormulaValue::DateTime(m)) => SortKey::Number(m as f64),
        Some(FormulaValue::Bool(b)) => SortKey::Number(if b { 1.0 } else { 0.0 }),
        Some(FormulaValue::Text(s)) => SortKey::Text(s.to_lowercase()),
    }
}
