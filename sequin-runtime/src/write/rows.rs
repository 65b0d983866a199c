//! Step 3 of a write (plan): the rows the client's statement changed, and
//! what they mean for the API ([`plan`]): the per-row creates, updates and
//! deletes with only the changed writable fields, checked against the spec
//! before anything is sent.

use sequin_spec::model::FieldType;
use sequin_spec::record::{
    Cell, Column, Violation, ViolationKind, WriteOp, parse_iso8601, validate_write, write_object,
};
use serde_json::{Map, Value};

use super::capture::Change;
use super::error::WriteError;
use super::table::Table;

/// Prefix of the provisional primary key an INSERT gets from the column
/// default until the API assigns the real one.
pub const PENDING_PREFIX: &str = "_pending_";

/// Metadata columns Sequin maintains itself.
pub const META_COLUMNS: [&str; 2] = ["_sequin_synced_at", "_sequin_updated_at"];

/// A column value as `to_jsonb(row)` renders it, as a cell.
pub fn cell_from_pg(col: &Column, v: Option<&Value>) -> Result<Cell, String> {
    let v = match v {
        None | Some(Value::Null) => return Ok(Cell::Null),
        Some(v) => v,
    };
    let bad = || format!("column `{}`: unexpected value {v}", col.name);
    Ok(match col.ty {
        FieldType::String => Cell::Text(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        FieldType::Integer => Cell::Int(v.as_i64().ok_or_else(bad)?),
        FieldType::Float => Cell::Float(v.as_f64().ok_or_else(bad)?),
        FieldType::Decimal => Cell::Decimal(match v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return Err(bad()),
        }),
        FieldType::Boolean => Cell::Bool(v.as_bool().ok_or_else(bad)?),
        FieldType::Timestamp => {
            Cell::Timestamp(v.as_str().and_then(parse_iso8601).ok_or_else(bad)?)
        }
        FieldType::Date => {
            let s = v.as_str().ok_or_else(bad)?;
            let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
            Cell::Date((d - epoch).num_days() as i32)
        }
        FieldType::Json => Cell::Json(v.clone()),
        FieldType::StringArray => Cell::TextArray(
            v.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
    })
}

/// A cell as a JSON value `jsonb_populate_record` turns back into the
/// column's type.
pub fn cell_to_pg(cell: &Cell) -> Value {
    serde_json::to_value(AsPg(cell)).expect("a cell converts to JSON")
}

/// [`cell_to_pg`], appended to `out` as JSON text (for documents written
/// straight to text, without a `Value` per cell).
pub fn write_cell_pg(out: &mut Vec<u8>, cell: &Cell) {
    serde_json::to_writer(out, &AsPg(cell)).expect("a cell serializes into memory");
}

/// A cell as `jsonb_populate_record` reads it: the one mapping behind
/// [`cell_to_pg`] and [`write_cell_pg`].
struct AsPg<'a>(&'a Cell);

impl serde::Serialize for AsPg<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Cell::Null => s.serialize_unit(),
            Cell::Json(v) => v.serialize(s),
            Cell::TextArray(items) => items.serialize(s),
            Cell::Int(i) => s.serialize_i64(*i),
            Cell::Bool(b) => s.serialize_bool(*b),
            // Text, numbers and times as Postgres's text; NULL otherwise.
            other => other.to_pg_text().serialize(s),
        }
    }
}

/// What one changed row asks of the API.
#[derive(Clone, Debug, PartialEq)]
pub enum RowOp {
    /// Create a record from `body`; `key` is the row's provisional id;
    /// `written` the set columns' values (as `to_jsonb` shows them), which
    /// find the record after a crash left its id unknown.
    Create {
        key: String,
        body: Map<String, Value>,
        written: Map<String, Value>,
    },
    /// Change `body`'s fields of record `id`; `undo` restores the old values.
    Update {
        id: String,
        body: Map<String, Value>,
        undo: Box<Undo>,
    },
    /// Delete record `id`; `old` is the deleted row (as `to_jsonb` shows
    /// it), for APIs that address what to delete by more than its id (a
    /// link table's association).
    Delete {
        id: String,
        old: Box<Map<String, Value>>,
    },
    /// Nothing writable changed (`SET x = x`): no API call.
    Unchanged { id: String },
    /// Create or update the record whose external id `field` (its value
    /// at `path` in a body) holds `value` (`upsert.rs`): a create's row
    /// upserted, with a create's `key`, `body` and `written`.
    Upsert {
        key: String,
        field: String,
        path: String,
        value: String,
        body: Map<String, Value>,
        written: Map<String, Value>,
    },
}

impl RowOp {
    pub fn op(&self) -> Option<WriteOp> {
        match self {
            RowOp::Create { .. } | RowOp::Upsert { .. } => Some(WriteOp::Create),
            RowOp::Update { .. } => Some(WriteOp::Update),
            RowOp::Delete { .. } => Some(WriteOp::Delete),
            RowOp::Unchanged { .. } => None,
        }
    }
}

/// How to take an update back: the body that restores the old values, and
/// the changed columns' values before and after (as `to_jsonb` shows them),
/// so that the undo is sent only while the API still holds what the update
/// wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Undo {
    pub body: Map<String, Value>,
    pub written: Map<String, Value>,
    pub previous: Map<String, Value>,
}

/// The primary key of a row as text.
pub fn key_of(row: &Map<String, Value>, pk: &str) -> Option<String> {
    match row.get(pk)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Turns one captured change into its API operation, validating it against
/// the spec: only settable columns may change (read-only 428C9), values
/// must fit (type, format, length, enum), creates need their required
/// fields. `fields_under` strips the connector's wrapper from value paths
/// (HubSpot's `properties.`), since the endpoint's `wrap` adds it back.
pub fn plan_row(
    api: &str,
    columns: &[Column],
    pk: usize,
    change: &Change,
    strip: Option<&str>,
) -> Result<RowOp, WriteError> {
    let pk_name = &*columns[pk].name;
    let violation = |v: Violation| WriteError::violation(api, &v);
    let not_writable = |column: &str, why: &str| {
        violation(Violation {
            column: column.to_string(),
            kind: ViolationKind::NotWritable,
            message: format!("column `{column}` {why}"),
        })
    };
    match change.op {
        WriteOp::Create => {
            let new = change
                .new
                .as_ref()
                .ok_or_else(|| internal(api, "insert without a new row"))?;
            let key = key_of(new, pk_name).unwrap_or_default();
            // Some APIs take a chosen id on create (Stripe products).
            let chosen_id = !key.starts_with(PENDING_PREFIX);
            if chosen_id && !columns[pk].settable(WriteOp::Create) {
                return Err(not_writable(
                    pk_name,
                    "is assigned by the API: leave it out of the INSERT",
                ));
            }
            unknown_columns(api, columns, new, None)?;
            let cells = cells_of(api, columns, new)?;
            let set: Vec<(usize, &Cell)> = cells
                .iter()
                .enumerate()
                .filter(|(i, c)| (*i != pk || chosen_id) && !c.is_null())
                .collect();
            validate_write(columns, WriteOp::Create, &set).map_err(violation)?;
            let body = write_object(set.iter().map(|(i, c)| (&columns[*i], *c)), strip);
            let written = set
                .iter()
                .filter(|(i, _)| *i != pk)
                .map(|(i, c)| (columns[*i].name.to_string(), cell_to_pg(c)))
                .collect();
            Ok(RowOp::Create { key, body, written })
        }
        WriteOp::Update => {
            let (old, new) = match (&change.old, &change.new) {
                (Some(o), Some(n)) => (o, n),
                _ => return Err(internal(api, "update without old and new rows")),
            };
            for m in META_COLUMNS {
                if old.get(m) != new.get(m) {
                    return Err(not_writable(m, "is maintained by Sequin"));
                }
            }
            if old.get(pk_name) != new.get(pk_name) {
                return Err(not_writable(pk_name, "is the API's id and cannot change"));
            }
            unknown_columns(api, columns, new, Some(old))?;
            let id = key_of(old, pk_name).unwrap_or_default();
            let (old_cells, new_cells) =
                (cells_of(api, columns, old)?, cells_of(api, columns, new)?);
            let changed: Vec<usize> = (0..columns.len())
                .filter(|i| old_cells[*i] != new_cells[*i])
                .collect();
            if changed.is_empty() {
                return Ok(RowOp::Unchanged { id });
            }
            let set: Vec<(usize, &Cell)> = changed.iter().map(|i| (*i, &new_cells[*i])).collect();
            validate_write(columns, WriteOp::Update, &set).map_err(violation)?;
            // An object the API merges key by key travels as the keys that
            // changed (a removed key as null, which unsets it); so does its
            // undo.
            let sent = |from: &[Cell], to: &[Cell], i: usize| {
                if columns[i].merge_keys {
                    key_diff(&from[i], &to[i])
                } else {
                    to[i].clone()
                }
            };
            let forward: Vec<Cell> = changed
                .iter()
                .map(|i| sent(&old_cells, &new_cells, *i))
                .collect();
            let backward: Vec<Cell> = changed
                .iter()
                .map(|i| sent(&new_cells, &old_cells, *i))
                .collect();
            let body = write_object(changed.iter().map(|i| &columns[*i]).zip(&forward), strip);
            let undo = Undo {
                body: write_object(changed.iter().map(|i| &columns[*i]).zip(&backward), strip),
                written: changed
                    .iter()
                    .map(|i| (columns[*i].name.to_string(), cell_to_pg(&new_cells[*i])))
                    .collect(),
                previous: changed
                    .iter()
                    .map(|i| (columns[*i].name.to_string(), cell_to_pg(&old_cells[*i])))
                    .collect(),
            };
            Ok(RowOp::Update {
                id,
                body,
                undo: Box::new(undo),
            })
        }
        WriteOp::Delete => deleted(api, pk_name, change),
    }
}

/// The delete of a captured row, with the row.
fn deleted(api: &str, pk_name: &str, change: &Change) -> Result<RowOp, WriteError> {
    let old = change
        .old
        .as_ref()
        .ok_or_else(|| internal(api, "delete without an old row"))?;
    Ok(RowOp::Delete {
        id: key_of(old, pk_name).unwrap_or_default(),
        old: Box::new(old.clone()),
    })
}

/// What turns object `from` into object `to` at an API that merges keys:
/// the keys whose values differ, and null for the keys `to` lacks. A value
/// that is not an object on either side travels whole (null clears it).
pub fn key_diff(from: &Cell, to: &Cell) -> Cell {
    let (Cell::Json(Value::Object(from)), Cell::Json(Value::Object(to))) = (from, to) else {
        return to.clone();
    };
    let mut diff = Map::new();
    for (k, v) in to {
        if from.get(k) != Some(v) {
            diff.insert(k.clone(), v.clone());
        }
    }
    for k in from.keys() {
        if !to.contains_key(k) {
            diff.insert(k.clone(), Value::Null);
        }
    }
    Cell::Json(Value::Object(diff))
}

fn internal(api: &str, what: &str) -> WriteError {
    WriteError::new(
        api,
        "XX000",
        format!("internal error of write-through: {what}"),
    )
}

fn cells_of(
    api: &str,
    columns: &[Column],
    row: &Map<String, Value>,
) -> Result<Vec<Cell>, WriteError> {
    columns
        .iter()
        .map(|c| {
            let v = row.get(&*c.name);
            // A NULL element of a text[] has no value the API could take
            // (it is not the string "null").
            if c.ty == FieldType::StringArray
                && let Some(Value::Array(items)) = v
                && items.iter().any(Value::is_null)
            {
                return Err(WriteError::new(
                    api,
                    "22004",
                    format!(
                        "column `{}` has a NULL element; the API takes none: remove it (array_remove(..., NULL))",
                        c.name
                    ),
                )
                .column(c.name.to_string()));
            }
            cell_from_pg(c, v).map_err(|e| internal(api, &e))
        })
        .collect()
}

/// Columns of the table the connector does not know (added by hand) may not
/// be set: their values could never reach the API.
fn unknown_columns(
    api: &str,
    columns: &[Column],
    new: &Map<String, Value>,
    old: Option<&Map<String, Value>>,
) -> Result<(), WriteError> {
    for (name, v) in new {
        if META_COLUMNS.contains(&name.as_str()) || columns.iter().any(|c| &*c.name == name) {
            continue;
        }
        let set = match old {
            Some(o) => o.get(name) != Some(v),
            None => !v.is_null(),
        };
        if set {
            return Err(WriteError::violation(
                api,
                &Violation {
                    column: name.clone(),
                    kind: ViolationKind::NotWritable,
                    message: format!(
                        "column `{name}` is not a field the connector knows, so it cannot be written to the API"
                    ),
                },
            ));
        }
    }
    Ok(())
}

/// The API operations of a statement's changed rows, checked locally.
/// Values sit under the key the endpoint wraps bodies in (HubSpot's
/// `properties.x`, Airtable's `fields.x`); the wrap adds it back. Columns
/// the create endpoint's path takes (a child's parent) are not part of a
/// create's body (`path.rs`).
pub fn plan(table: &Table, changes: &[Change]) -> Result<Vec<RowOp>, WriteError> {
    let ep = &table.plan.endpoints;
    let strip = [ep.create.as_ref(), ep.update.as_ref()]
        .into_iter()
        .flatten()
        .chain(
            [&ep.batch_create, &ep.batch_update]
                .into_iter()
                .flatten()
                .map(|b| &b.endpoint),
        )
        .find_map(|e| e.wrap.as_deref());
    let in_path = super::path::create_path_columns(table);
    changes
        .iter()
        .map(|c| {
            plan_row(
                table.api(),
                &table.plan.table.columns,
                table.plan.table.primary_key,
                &super::path::without_path_columns(table, c, &in_path),
                strip,
            )
        })
        .collect()
}

/// Each row's key: the provisional id of a created row, the id otherwise.
pub fn keys(ops: &[RowOp]) -> Vec<String> {
    ops.iter()
        .map(|o| match o {
            RowOp::Create { key, .. } | RowOp::Upsert { key, .. } => key.clone(),
            RowOp::Update { id, .. } | RowOp::Delete { id, .. } | RowOp::Unchanged { id } => {
                id.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequin_spec::model::{Access, Format};
    use serde_json::json;

    #[test]
    fn cells_as_json_values_and_as_text() {
        let text = |c: &Cell| json!(c.to_pg_text().expect("has a text form"));
        let cases = [
            (Cell::Null, json!(null)),
            (
                Cell::Json(json!({"a": [1, "x\"y"], "b": null})),
                json!({"a": [1, "x\"y"], "b": null}),
            ),
            (
                Cell::TextArray(vec!["en".into(), "fr\u{e9}".into()]),
                json!(["en", "fr\u{e9}"]),
            ),
            (Cell::Int(-42), json!(-42)),
            (Cell::Bool(true), json!(true)),
            (Cell::Text("line\nbreak".into()), json!("line\nbreak")),
            (
                Cell::Timestamp(1_700_000_000_123_456),
                text(&Cell::Timestamp(1_700_000_000_123_456)),
            ),
            (Cell::Date(19_000), text(&Cell::Date(19_000))),
        ];
        for (cell, expected) in &cases {
            assert_eq!(&cell_to_pg(cell), expected, "{cell:?}");
            let mut out = Vec::new();
            write_cell_pg(&mut out, cell);
            let written: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(&written, expected, "{cell:?} as text");
        }
    }

    fn col(name: &str, api: &str, ty: FieldType, access: Access) -> Column {
        Column {
            name: name.to_string().into(),
            api_name: api.to_string().into(),
            path: api.to_string().into(),
            ty,
            nullable: true,
            access,
            required_on_create: false,
            format: None,
            max_length: None,
            enum_values: Vec::new().into(),
            pattern: None,
            time_format: Default::default(),
            stringly: false,
            merge_keys: false,
            external_id: false,
        }
    }

    fn columns() -> Vec<Column> {
        let mut email = col("email", "Email", FieldType::String, Access::Writable);
        email.format = Some(Format::Email);
        let mut last = col("last_name", "LastName", FieldType::String, Access::Writable);
        last.required_on_create = true;
        vec![
            col("id", "Id", FieldType::String, Access::ReadOnly),
            last,
            email,
            col(
                "created_date",
                "CreatedDate",
                FieldType::Timestamp,
                Access::ReadOnly,
            ),
        ]
    }

    fn change(op: WriteOp, old: Option<Value>, new: Option<Value>) -> Change {
        let obj = |v: Option<Value>| v.map(|v| v.as_object().unwrap().clone());
        Change {
            op,
            old: obj(old),
            new: obj(new),
            capture_id: 1,
        }
    }

    #[test]
    fn insert_sends_set_fields_only() {
        let c = change(
            WriteOp::Create,
            None,
            Some(
                json!({"id": "_pending_x", "last_name": "Palladio", "email": null, "created_date": null, "_sequin_synced_at": "2026-01-01T00:00:00+00:00"}),
            ),
        );
        match plan_row("Salesforce", &columns(), 0, &c, None).unwrap() {
            RowOp::Create { key, body, .. } => {
                assert_eq!(key, "_pending_x");
                assert_eq!(Value::Object(body), json!({"LastName": "Palladio"}));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn insert_is_validated_locally() {
        let bad_email = change(
            WriteOp::Create,
            None,
            Some(json!({"id": "_pending_x", "last_name": "P", "email": "andrea__invalid"})),
        );
        let e = plan_row("Salesforce", &columns(), 0, &bad_email, None).unwrap_err();
        assert_eq!(e.sqlstate, "22023");
        assert!(e.message.starts_with("[Salesforce]: "), "{}", e.message);
        assert!(
            e.message.contains("`email`") && e.message.contains("invalid"),
            "{}",
            e.message
        );
        assert_eq!(e.fields.column.as_deref(), Some("email"));
        let missing = change(WriteOp::Create, None, Some(json!({"id": "_pending_x"})));
        assert_eq!(
            plan_row("Salesforce", &columns(), 0, &missing, None)
                .unwrap_err()
                .sqlstate,
            "23502"
        );
        let read_only = change(
            WriteOp::Create,
            None,
            Some(
                json!({"id": "_pending_x", "last_name": "P", "created_date": "2026-01-01T00:00:00+00:00"}),
            ),
        );
        let e = plan_row("Salesforce", &columns(), 0, &read_only, None).unwrap_err();
        assert_eq!(
            (e.sqlstate.as_str(), e.fields.column.as_deref()),
            ("428C9", Some("created_date"))
        );
        let own_id = change(
            WriteOp::Create,
            None,
            Some(json!({"id": "003abc", "last_name": "P"})),
        );
        assert_eq!(
            plan_row("Salesforce", &columns(), 0, &own_id, None)
                .unwrap_err()
                .sqlstate,
            "428C9"
        );
    }

    #[test]
    fn merged_objects_travel_as_the_keys_that_changed() {
        let mut cols = columns();
        let mut meta = col("metadata", "metadata", FieldType::Json, Access::Writable);
        meta.merge_keys = true;
        cols.push(meta);
        let c = change(
            WriteOp::Update,
            Some(json!({"id": "cus_1", "metadata": {"kept": "1", "gone": "2", "changed": "3"}})),
            Some(json!({"id": "cus_1", "metadata": {"kept": "1", "changed": "4", "added": "yes"}})),
        );
        match plan_row("Stripe", &cols, 0, &c, None).unwrap() {
            RowOp::Update { body, undo, .. } => {
                assert_eq!(
                    Value::Object(body),
                    json!({"metadata": {"changed": "4", "added": "yes", "gone": null}})
                );
                assert_eq!(
                    Value::Object(undo.body),
                    json!({"metadata": {"gone": "2", "changed": "3", "added": null}})
                );
            }
            other => panic!("{other:?}"),
        }
        // An array is no object of keys.
        let c = change(
            WriteOp::Update,
            Some(json!({"id": "cus_1", "metadata": {}})),
            Some(json!({"id": "cus_1", "metadata": ["a", "b"]})),
        );
        let e = plan_row("Stripe", &cols, 0, &c, None).unwrap_err();
        assert_eq!(e.sqlstate, "22023", "{e:?}");
    }

    #[test]
    fn null_array_elements_are_refused() {
        let mut cols = columns();
        cols.push(col(
            "tags",
            "tags",
            FieldType::StringArray,
            Access::Writable,
        ));
        let c = change(
            WriteOp::Create,
            None,
            Some(json!({"id": "_pending_1", "last_name": "L", "tags": ["a", null]})),
        );
        let e = plan_row("Stripe", &cols, 0, &c, None).unwrap_err();
        assert_eq!(e.sqlstate, "22004", "{e:?}");
        assert_eq!(e.fields.column.as_deref(), Some("tags"));
    }

    #[test]
    fn update_sends_the_diff_and_keeps_the_undo() {
        let c = change(
            WriteOp::Update,
            Some(json!({"id": "003", "last_name": "Old", "email": "a@b.co"})),
            Some(json!({"id": "003", "last_name": "New", "email": "a@b.co"})),
        );
        match plan_row("Salesforce", &columns(), 0, &c, None).unwrap() {
            RowOp::Update { id, body, undo } => {
                assert_eq!(id, "003");
                assert_eq!(Value::Object(body), json!({"LastName": "New"}));
                assert_eq!(Value::Object(undo.body), json!({"LastName": "Old"}));
                assert_eq!(Value::Object(undo.written), json!({"last_name": "New"}));
                assert_eq!(Value::Object(undo.previous), json!({"last_name": "Old"}));
            }
            other => panic!("{other:?}"),
        }
        let same = change(
            WriteOp::Update,
            Some(json!({"id": "003", "last_name": "A"})),
            Some(json!({"id": "003", "last_name": "A"})),
        );
        assert_eq!(
            plan_row("Salesforce", &columns(), 0, &same, None).unwrap(),
            RowOp::Unchanged { id: "003".into() }
        );
        let ro = change(
            WriteOp::Update,
            Some(json!({"id": "003", "created_date": null})),
            Some(json!({"id": "003", "created_date": "2026-01-01T00:00:00+00:00"})),
        );
        assert_eq!(
            plan_row("Salesforce", &columns(), 0, &ro, None)
                .unwrap_err()
                .sqlstate,
            "428C9"
        );
        let meta = change(
            WriteOp::Update,
            Some(json!({"id": "003", "_sequin_updated_at": null})),
            Some(json!({"id": "003", "_sequin_updated_at": "2026-01-01T00:00:00+00:00"})),
        );
        assert_eq!(
            plan_row("Salesforce", &columns(), 0, &meta, None)
                .unwrap_err()
                .sqlstate,
            "428C9"
        );
        let unknown = change(
            WriteOp::Update,
            Some(json!({"id": "003", "extra": 1})),
            Some(json!({"id": "003", "extra": 2})),
        );
        assert_eq!(
            plan_row("Salesforce", &columns(), 0, &unknown, None)
                .unwrap_err()
                .fields
                .column
                .as_deref(),
            Some("extra")
        );
    }

    #[test]
    fn pg_values_round_trip_through_cells() {
        let cols = [
            col("n", "n", FieldType::Decimal, Access::Writable),
            col("t", "t", FieldType::Timestamp, Access::Writable),
            col("d", "d", FieldType::Date, Access::Writable),
            col("a", "a", FieldType::StringArray, Access::Writable),
            col("i", "i", FieldType::Integer, Access::Writable),
        ];
        let vals = [
            json!(12.5),
            json!("2026-11-24T04:18:35.123456+00:00"),
            json!("2026-11-24"),
            json!(["x", "y"]),
            json!(7),
        ];
        for (c, v) in cols.iter().zip(vals) {
            let cell = cell_from_pg(c, Some(&v)).unwrap();
            let back = cell_to_pg(&cell);
            let again = cell_from_pg(c, Some(&back)).unwrap();
            assert_eq!(cell, again, "{}", c.name);
        }
        assert_eq!(
            cell_from_pg(&cols[4], Some(&json!("x"))).map_err(|e| e.contains("`i`")),
            Err(true)
        );
    }
}
