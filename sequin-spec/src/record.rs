//! Columns, cells and the generic codec of API records.
//!
//! One implementation of the value semantics serves both kinds of objects:
//! typed structs generated from specs (whose `sequin-derive` impls call these
//! functions with static [`Column`]s) and objects discovered at run time
//! (whose columns are built from describe/meta responses). A row is a
//! `Vec<Cell>` in column order.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::model::{Access, BodyEncoding, Field, FieldType, Format, TimeFormat};

/// Static or owned text, so generated statics and runtime-built columns share
/// one type.
pub type Text = Cow<'static, str>;

/// One column of a synced table, with everything needed to decode, encode and
/// validate its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Column name (snake_case).
    pub name: Text,
    /// The API's field name (what request bodies use).
    pub api_name: Text,
    /// Where the value sits in a record (dot path).
    pub path: Text,
    pub ty: FieldType,
    pub nullable: bool,
    pub access: Access,
    pub required_on_create: bool,
    pub format: Option<Format>,
    pub max_length: Option<u32>,
    pub enum_values: Cow<'static, [Text]>,
    pub pattern: Option<Text>,
    pub time_format: TimeFormat,
    /// The API sends and expects every value as a string (HubSpot).
    pub stringly: bool,
    /// The API merges the value, an object, key by key on update
    /// ([`crate::model::Merge::Keys`]).
    pub merge_keys: bool,
    /// An external id: a conflict target of the object's upsert
    /// ([`crate::model::Upsert`]).
    pub external_id: bool,
}

impl Column {
    /// A column from a spec field.
    pub fn from_field(f: &Field) -> Column {
        Column {
            name: f.column_name().into(),
            api_name: f.name.clone().into(),
            path: f.value_path().to_string().into(),
            ty: f.ty,
            nullable: f.nullable,
            access: f.access,
            required_on_create: f.required_on_create,
            format: f.format,
            max_length: f.max_length,
            enum_values: f
                .enum_values
                .iter()
                .map(|s| Text::from(s.clone()))
                .collect::<Vec<_>>()
                .into(),
            pattern: f.pattern.clone().map(Text::from),
            time_format: f.time_format.unwrap_or_default(),
            stringly: f.stringly,
            merge_keys: f.merge == Some(crate::model::Merge::Keys),
            external_id: f.external_id,
        }
    }

    /// Whether a write of kind `op` may set this column.
    pub fn settable(&self, op: WriteOp) -> bool {
        matches!(
            (self.access, op),
            (Access::Writable, _)
                | (Access::CreateOnly, WriteOp::Create)
                | (Access::UpdateOnly, WriteOp::Update)
        )
    }
}

/// A value of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    /// An exact decimal, kept as its decimal text.
    Decimal(String),
    Bool(bool),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// Days since 1970-01-01.
    Date(i32),
    Json(Value),
    TextArray(Vec<String>),
}

impl Cell {
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// Postgres text representation (as COPY text format and casts accept).
    pub fn to_pg_text(&self) -> Option<String> {
        Some(match self {
            Cell::Null => return None,
            Cell::Text(s) | Cell::Decimal(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Cell::Timestamp(us) => micros_to_datetime(*us)
                .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .unwrap_or_default(),
            Cell::Date(d) => days_to_date(*d).map(|d| d.to_string()).unwrap_or_default(),
            Cell::Json(v) => v.to_string(),
            Cell::TextArray(items) => {
                let quoted: Vec<String> = items
                    .iter()
                    .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect();
                format!("{{{}}}", quoted.join(","))
            }
        })
    }
}

/// A value that does not fit its column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: expected {expected}, got {got}")]
pub struct DecodeError {
    pub field: String,
    pub expected: &'static str,
    pub got: String,
}

/// An id as text: a string as it is, a number written out (Salesforce's
/// and HubSpot's ids come as either); anything else is no id.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads the value at a dot path.
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(v);
    }
    let mut cur = v;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Sets the value at a dot path, creating objects on the way.
pub fn set_path(target: &mut Map<String, Value>, path: &str, value: Value) {
    let mut segs = path.split('.').peekable();
    let mut cur = target;
    while let Some(seg) = segs.next() {
        if segs.peek().is_none() {
            cur.insert(seg.to_string(), value);
            return;
        }
        let next = cur
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next.as_object_mut().expect("just made an object");
    }
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(57)])
    } else {
        s
    }
}

/// Decodes one API value into a cell of `col`.
pub fn decode_cell(col: &Column, v: Option<&Value>) -> Result<Cell, DecodeError> {
    let err = |expected: &'static str, got: &Value| DecodeError {
        field: col.api_name.to_string(),
        expected,
        got: describe(got),
    };
    let v = match v {
        None | Some(Value::Null) => return Ok(Cell::Null),
        Some(v) => v,
    };
    // Stringly APIs send "" for unset values.
    if col.stringly && col.ty != FieldType::String && v.as_str() == Some("") {
        return Ok(Cell::Null);
    }
    Ok(match col.ty {
        FieldType::String => match v {
            Value::String(s) => Cell::Text(s.clone()),
            Value::Number(n) => Cell::Text(n.to_string()),
            Value::Bool(b) => Cell::Text(b.to_string()),
            other => Cell::Text(other.to_string()),
        },
        FieldType::Integer => match v {
            Value::Number(n) => Cell::Int(
                n.as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    .ok_or_else(|| err("an integer", v))?,
            ),
            Value::String(s) => Cell::Int(s.trim().parse().map_err(|_| err("an integer", v))?),
            _ => return Err(err("an integer", v)),
        },
        FieldType::Float => match v {
            Value::Number(n) => Cell::Float(n.as_f64().ok_or_else(|| err("a number", v))?),
            Value::String(s) => Cell::Float(s.trim().parse().map_err(|_| err("a number", v))?),
            _ => return Err(err("a number", v)),
        },
        FieldType::Decimal => match v {
            Value::Number(n) => Cell::Decimal(n.to_string()),
            Value::String(s) if is_decimal(s.trim()) => Cell::Decimal(s.trim().to_string()),
            _ => return Err(err("a decimal number", v)),
        },
        FieldType::Boolean => match v {
            Value::Bool(b) => Cell::Bool(*b),
            Value::String(s) if s == "true" => Cell::Bool(true),
            Value::String(s) if s == "false" => Cell::Bool(false),
            _ => return Err(err("a boolean", v)),
        },
        FieldType::Timestamp => {
            Cell::Timestamp(decode_time(v, col.time_format).ok_or_else(|| err("a timestamp", v))?)
        }
        FieldType::Date => match v {
            Value::String(s) => Cell::Date(
                NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                    .map(date_to_days)
                    .map_err(|_| err("a date (YYYY-MM-DD)", v))?,
            ),
            _ => return Err(err("a date (YYYY-MM-DD)", v)),
        },
        FieldType::Json => Cell::Json(v.clone()),
        FieldType::StringArray => match v {
            Value::Array(items) => Cell::TextArray(
                items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            ),
            // HubSpot multi-selects travel as "a;b;c".
            Value::String(s) if col.stringly => Cell::TextArray(
                s.split(';')
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            _ => return Err(err("an array of strings", v)),
        },
    })
}

/// Decodes a whole API record into a row in column order.
pub fn decode_row(columns: &[Column], record: &Value) -> Result<Vec<Cell>, DecodeError> {
    columns
        .iter()
        .map(|c| decode_cell(c, get_path(record, &c.path)))
        .collect()
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a time value into microseconds since the epoch.
pub fn decode_time(v: &Value, fmt: TimeFormat) -> Option<i64> {
    match (v, fmt) {
        (Value::Number(n), TimeFormat::UnixSeconds) => n
            .as_i64()
            .map(|s| s * 1_000_000)
            .or_else(|| n.as_f64().map(|f| (f * 1e6) as i64)),
        (Value::Number(n), TimeFormat::UnixMillis) => n.as_i64().map(|ms| ms * 1000),
        (Value::String(s), TimeFormat::UnixSeconds) => s.parse::<i64>().ok().map(|x| x * 1_000_000),
        (Value::String(s), TimeFormat::UnixMillis) => s.parse::<i64>().ok().map(|x| x * 1000),
        (Value::Number(n), TimeFormat::Iso8601) => n.as_i64().map(|ms| ms * 1000),
        (Value::String(s), TimeFormat::Iso8601) => parse_iso8601(s),
        _ => None,
    }
}

/// Parses RFC 3339 and the common variants APIs send (`+0000` offsets as
/// Salesforce does, a bare date, epoch millis as text as HubSpot does).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_micros());
    }
    if let Ok(d) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(d.timestamp_micros());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)
                .timestamp_micros(),
        );
    }
    if s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().map(|ms| ms * 1000);
    }
    None
}

/// Formats microseconds since the epoch in `fmt`, as a JSON value.
pub fn encode_time(us: i64, fmt: TimeFormat) -> Value {
    match fmt {
        TimeFormat::UnixSeconds => Value::from(us.div_euclid(1_000_000)),
        TimeFormat::UnixMillis => Value::from(us.div_euclid(1000)),
        TimeFormat::Iso8601 => Value::String(format_iso8601(us)),
    }
}

/// RFC 3339 in UTC with milliseconds (`2024-05-01T12:00:00.000Z`).
pub fn format_iso8601(us: i64) -> String {
    micros_to_datetime(us)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn micros_to_datetime(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

fn date_to_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

fn days_to_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(days.into()))
}

/// Encodes a cell as the API's JSON value for `col`.
pub fn encode_cell(col: &Column, cell: &Cell) -> Value {
    let v = match cell {
        Cell::Null => return Value::Null,
        Cell::Text(s) => Value::String(s.clone()),
        Cell::Int(i) => Value::from(*i),
        Cell::Float(f) => Value::from(*f),
        Cell::Decimal(s) => serde_json::from_str::<serde_json::Number>(s)
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(s.clone())),
        Cell::Bool(b) => Value::Bool(*b),
        Cell::Timestamp(us) => encode_time(*us, col.time_format),
        Cell::Date(d) => Value::String(days_to_date(*d).map(|d| d.to_string()).unwrap_or_default()),
        Cell::Json(v) => v.clone(),
        Cell::TextArray(items) => {
            if col.stringly {
                Value::String(items.join(";"))
            } else {
                Value::Array(items.iter().cloned().map(Value::String).collect())
            }
        }
    };
    if col.stringly {
        match v {
            Value::String(_) => v,
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            other => Value::String(other.to_string()),
        }
    } else {
        v
    }
}

/// A request body, in the connector's encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Json(Value),
    /// `application/x-www-form-urlencoded` text.
    Form(String),
}

impl Body {
    pub fn content_type(&self) -> &'static str {
        match self {
            Body::Json(_) => "application/json",
            Body::Form(_) => "application/x-www-form-urlencoded",
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Body::Json(v) => serde_json::to_vec(&v).expect("json serializes"),
            Body::Form(s) => s.into_bytes(),
        }
    }
}

/// Builds the JSON object of a write from (column, cell) pairs, placing each
/// value at its path (minus `strip`, the body's wrapping key such as
/// `properties`, which the endpoint adds back).
pub fn write_object<'a>(
    cells: impl IntoIterator<Item = (&'a Column, &'a Cell)>,
    strip: Option<&str>,
) -> Map<String, Value> {
    let mut obj = Map::new();
    for (col, cell) in cells {
        let path = &*col.path;
        let path = match strip {
            Some(prefix) => path
                .strip_prefix(prefix)
                .and_then(|p| p.strip_prefix('.'))
                .unwrap_or(path),
            None => path,
        };
        set_path(&mut obj, path, encode_cell(col, cell));
    }
    obj
}

/// Encodes a JSON object as a body in `encoding`.
pub fn encode_body(obj: Map<String, Value>, encoding: BodyEncoding) -> Body {
    match encoding {
        BodyEncoding::Json => Body::Json(Value::Object(obj)),
        BodyEncoding::Form => Body::Form(form_encode(&obj)),
    }
}

/// Form-encodes an object in deepObject style: `a[b]=1&items[0][price]=p`.
/// Null becomes an empty value, which Stripe reads as "unset" (and
/// `metadata=` clears all metadata).
pub fn form_encode(obj: &Map<String, Value>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in obj {
        form_pairs(k, v, &mut |key, val| {
            out.append_pair(key, val);
        });
    }
    out.finish()
}

fn form_pairs(prefix: &str, v: &Value, emit: &mut dyn FnMut(&str, &str)) {
    match v {
        Value::Null => emit(prefix, ""),
        Value::Bool(b) => emit(prefix, if *b { "true" } else { "false" }),
        Value::Number(n) => emit(prefix, &n.to_string()),
        Value::String(s) => emit(prefix, s),
        Value::Array(items) => {
            if items.is_empty() {
                emit(prefix, "");
            }
            for (i, item) in items.iter().enumerate() {
                form_pairs(&format!("{prefix}[{i}]"), item, emit);
            }
        }
        Value::Object(m) => {
            if m.is_empty() {
                emit(prefix, "");
            }
            for (k, item) in m {
                form_pairs(&format!("{prefix}[{k}]"), item, emit);
            }
        }
    }
}

/// The kind of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteOp {
    Create,
    Update,
    Delete,
}

impl fmt::Display for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriteOp::Create => "INSERT",
            WriteOp::Update => "UPDATE",
            WriteOp::Delete => "DELETE",
        })
    }
}

/// Why a write was refused before any API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// Read-only, or create-only on update (SQLSTATE 428C9).
    NotWritable,
    /// Required on create and missing (23502).
    Required,
    /// Null in a non-nullable column (23502).
    NotNull,
    /// Malformed value: format, pattern (22023).
    Malformed,
    /// Too long (22001).
    TooLong,
    /// Not one of the allowed values (23514).
    NotAllowed,
}

impl ViolationKind {
    /// The SQLSTATE the proxy answers with.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ViolationKind::NotWritable => "428C9",
            ViolationKind::Required | ViolationKind::NotNull => "23502",
            ViolationKind::Malformed => "22023",
            ViolationKind::TooLong => "22001",
            ViolationKind::NotAllowed => "23514",
        }
    }
}

/// A local validation failure of one column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Violation {
    pub column: String,
    pub kind: ViolationKind,
    pub message: String,
}

/// Checks a value against its column's constraints (format, length, enum,
/// pattern, nullability). Access is checked by [`validate_write`].
pub fn validate_cell(col: &Column, cell: &Cell) -> Result<(), Violation> {
    let v = |kind, message: String| Violation {
        column: col.name.to_string(),
        kind,
        message,
    };
    let text = match cell {
        Cell::Null => {
            return if col.nullable {
                Ok(())
            } else {
                Err(v(
                    ViolationKind::NotNull,
                    format!("`{}` cannot be null", col.name),
                ))
            };
        }
        Cell::Text(s) => s,
        Cell::Json(j) if col.merge_keys && !j.is_object() => {
            return Err(v(
                ViolationKind::Malformed,
                format!(
                    "`{}` takes a JSON object of keys and values, not {j}",
                    col.name
                ),
            ));
        }
        _ => return Ok(()),
    };
    if let Some(max) = col.max_length {
        let n = text.chars().count();
        if n > max as usize {
            return Err(v(
                ViolationKind::TooLong,
                format!(
                    "`{}` is {n} characters long; at most {max} are allowed",
                    col.name
                ),
            ));
        }
    }
    if !col.enum_values.is_empty() && !col.enum_values.iter().any(|e| e == text) {
        let allowed: Vec<&str> = col.enum_values.iter().map(|s| &**s).collect();
        return Err(v(
            ViolationKind::NotAllowed,
            format!(
                "`{}` '{text}' is not one of: {}",
                col.name,
                allowed.join(", ")
            ),
        ));
    }
    if let Some(fmt) = col.format
        && !format_ok(fmt, text)
    {
        return Err(v(
            ViolationKind::Malformed,
            format!(
                "`{}` is invalid: '{text}' is not a valid {}",
                col.name,
                format_name(fmt)
            ),
        ));
    }

    if let Some(p) = &col.pattern {
        let ok = regex::Regex::new(&format!("^(?:{p})$"))
            .map(|re| re.is_match(text))
            .unwrap_or(true);
        if !ok {
            return Err(v(
                ViolationKind::Malformed,
                format!("`{}` '{text}' does not match the pattern {p}", col.name),
            ));
        }
    }
    Ok(())
}

/// Checks a write locally: every column the write sets must be settable for
/// `op` and valid; on create, required columns must be present. `set` lists
/// (column index, new value) pairs.
pub fn validate_write(
    columns: &[Column],
    op: WriteOp,
    set: &[(usize, &Cell)],
) -> Result<(), Violation> {
    for (i, cell) in set {
        let col = &columns[*i];
        if !col.settable(op) {
            let why = match col.access {
                Access::ReadOnly => "is read-only",
                Access::UpdateOnly => "can only be set by an UPDATE of an existing record",
                _ => "can only be set when the record is created",
            };
            return Err(Violation {
                column: col.name.to_string(),
                kind: ViolationKind::NotWritable,
                message: format!("column `{}` {why}", col.name),
            });
        }
        validate_cell(col, cell)?;
    }
    if op == WriteOp::Create {
        for (i, col) in columns.iter().enumerate() {
            if col.required_on_create && !set.iter().any(|(j, c)| *j == i && !c.is_null()) {
                return Err(Violation {
                    column: col.name.to_string(),
                    kind: ViolationKind::Required,
                    message: format!("column `{}` is required to create a record", col.name),
                });
            }
        }
    }
    Ok(())
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Email => "email address",
        Format::Uri => "URL",
        Format::Phone => "phone number",
        Format::Currency => "ISO 4217 currency code",
        Format::Country => "ISO 3166-1 alpha-2 country code",
    }
}

fn format_ok(f: Format, s: &str) -> bool {
    match f {
        Format::Email => {
            let Some((local, domain)) = s.rsplit_once('@') else {
                return false;
            };
            !local.is_empty()
                && !domain.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace())
        }
        Format::Uri => {
            (s.starts_with("http://") || s.starts_with("https://"))
                && s.len() > 8
                && !s.contains(' ')
        }
        Format::Phone => {
            let digits = s.chars().filter(|c| c.is_ascii_digit()).count();
            digits >= 3
                && s.chars()
                    .all(|c| c.is_ascii_digit() || " +-().x".contains(c))
        }
        Format::Currency => s.len() == 3 && s.chars().all(|c| c.is_ascii_alphabetic()),
        Format::Country => s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic()),
    }
}

/// A typed record of a static object. Implemented by `#[derive(Record)]` on
/// generated structs; the runtime uses it for objects known at build time.
pub trait Record: Sized {
    /// Table name.
    const TABLE: &'static str;
    /// The API's object name.
    const API_NAME: &'static str;
    /// Index of the primary key in [`Record::columns`].
    const PRIMARY_KEY: usize;

    /// The columns, in table order.
    fn columns() -> &'static [Column];

    /// Decodes an API record.
    fn decode(record: &Value) -> Result<Self, DecodeError>;

    /// The row, in column order.
    fn to_row(&self) -> Vec<Cell>;

    /// Rebuilds a record from a row in column order.
    fn from_row(row: Vec<Cell>) -> Result<Self, DecodeError>;

    /// The request body creating this record: every settable, non-null column.
    fn create_body(&self, encoding: BodyEncoding, wrap: Option<&str>) -> Result<Body, Violation> {
        let row = self.to_row();
        let cols = Self::columns();
        let set: Vec<(usize, &Cell)> = row
            .iter()
            .enumerate()
            .filter(|(i, c)| !c.is_null() && cols[*i].settable(WriteOp::Create))
            .collect();
        validate_write(cols, WriteOp::Create, &set)?;
        let obj = write_object(set.iter().map(|(i, c)| (&cols[*i], *c)), wrap);
        Ok(encode_body(obj, encoding))
    }

    /// The request body updating `old` into `self`: only changed columns.
    fn update_body(
        &self,
        old: &Self,
        encoding: BodyEncoding,
        wrap: Option<&str>,
    ) -> Result<Body, Violation> {
        let (new_row, old_row) = (self.to_row(), old.to_row());
        let cols = Self::columns();
        let set: Vec<(usize, &Cell)> = new_row
            .iter()
            .enumerate()
            .filter(|(i, c)| old_row[*i] != **c)
            .collect();
        validate_write(cols, WriteOp::Update, &set)?;
        let obj = write_object(set.iter().map(|(i, c)| (&cols[*i], *c)), wrap);
        Ok(encode_body(obj, encoding))
    }
}

/// Conversions between cells and the Rust types of generated struct fields.
pub trait FromCell: Sized {
    fn from_cell(cell: Cell, col: &Column) -> Result<Self, DecodeError>;
    fn to_cell(&self) -> Cell;
}

fn mismatch(col: &Column, expected: &'static str, cell: &Cell) -> DecodeError {
    DecodeError {
        field: col.api_name.to_string(),
        expected,
        got: format!("{cell:?}"),
    }
}

macro_rules! from_cell {
    ($t:ty, $variant:ident, $expected:literal) => {
        impl FromCell for $t {
            fn from_cell(cell: Cell, col: &Column) -> Result<Self, DecodeError> {
                match cell {
                    Cell::$variant(v) => Ok(v),
                    other => Err(mismatch(col, $expected, &other)),
                }
            }
            fn to_cell(&self) -> Cell {
                Cell::$variant(self.clone())
            }
        }
    };
}

from_cell!(i64, Int, "an integer");
from_cell!(f64, Float, "a number");
from_cell!(bool, Bool, "a boolean");
from_cell!(Value, Json, "JSON");
from_cell!(Vec<String>, TextArray, "an array of strings");

impl FromCell for String {
    fn from_cell(cell: Cell, col: &Column) -> Result<Self, DecodeError> {
        match cell {
            Cell::Text(s) | Cell::Decimal(s) => Ok(s),
            other => Err(mismatch(col, "text", &other)),
        }
    }
    fn to_cell(&self) -> Cell {
        Cell::Text(self.clone())
    }
}

/// An exact decimal number as its text (`"12.50"`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Decimal(pub String);

impl FromCell for Decimal {
    fn from_cell(cell: Cell, col: &Column) -> Result<Self, DecodeError> {
        match cell {
            Cell::Decimal(s) => Ok(Decimal(s)),
            other => Err(mismatch(col, "a decimal", &other)),
        }
    }
    fn to_cell(&self) -> Cell {
        Cell::Decimal(self.0.clone())
    }
}

/// A point in time, as microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl FromCell for Timestamp {
    fn from_cell(cell: Cell, col: &Column) -> Result<Self, DecodeError> {
        match cell {
            Cell::Timestamp(us) => Ok(Timestamp(us)),
            other => Err(mismatch(col, "a timestamp", &other)),
        }
    }
    fn to_cell(&self) -> Cell {
        Cell::Timestamp(self.0)
    }
}

/// A calendar date, as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date(pub i32);

impl FromCell for Date {
    fn from_cell(cell: Cell, col: &Column) -> Result<Self, DecodeError> {
        match cell {
            Cell::Date(d) => Ok(Date(d)),
            other => Err(mismatch(col, "a date", &other)),
        }
    }
    fn to_cell(&self) -> Cell {
        Cell::Date(self.0)
    }
}

/// Typed records deserialize from a synced row as Postgres's `row_to_json`
/// renders it: `timestamptz` as RFC 3339 text, `date` as `YYYY-MM-DD`,
/// `numeric` as a number (or as text, which keeps every digit).
mod row_json {
    use std::fmt;

    use chrono::{DateTime, NaiveDate};
    use serde::de::{self, Deserializer, Visitor};

    use super::{Date, Decimal, Timestamp, date_to_days, is_decimal};

    impl<'de> serde::Deserialize<'de> for Timestamp {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            DateTime::parse_from_rfc3339(&s)
                .map(|t| Timestamp(t.timestamp_micros()))
                .map_err(|e| de::Error::custom(format!("`{s}` is not an RFC 3339 timestamp ({e})")))
        }
    }

    impl<'de> serde::Deserialize<'de> for Date {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .map(|day| Date(date_to_days(day)))
                .map_err(|e| de::Error::custom(format!("`{s}` is not a YYYY-MM-DD date ({e})")))
        }
    }

    impl<'de> serde::Deserialize<'de> for Decimal {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(DecimalVisitor)
        }
    }

    struct DecimalVisitor;

    impl Visitor<'_> for DecimalVisitor {
        type Value = Decimal;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a decimal number, or its text")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal(v.to_string()))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal(v.to_string()))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            let text = v.to_string();
            if is_decimal(&text) {
                Ok(Decimal(text))
            } else {
                Err(E::custom(format!("{v} is not a finite decimal")))
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            if is_decimal(v) {
                Ok(Decimal(v.to_string()))
            } else {
                Err(E::custom(format!("`{v}` is not a decimal number")))
            }
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: Cell, col: &Column) -> Result<Self, DecodeError> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other, col).map(Some),
        }
    }
    fn to_cell(&self) -> Cell {
        match self {
            None => Cell::Null,
            Some(v) => v.to_cell(),
        }
    }
}

/// Takes the next cell of a row being decoded into a typed record; a null in
/// a non-nullable column is an error.
pub fn take<T: FromCell>(
    cells: &mut std::vec::IntoIter<Cell>,
    col: &Column,
) -> Result<T, DecodeError> {
    let cell = cells.next().unwrap_or(Cell::Null);
    if cell.is_null() && !col.nullable {
        return Err(DecodeError {
            field: col.api_name.to_string(),
            expected: "a value",
            got: "null".into(),
        });
    }
    T::from_cell(cell, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(name: &str, ty: FieldType) -> Column {
        Column {
            name: name.to_string().into(),
            api_name: name.to_string().into(),
            path: name.to_string().into(),
            ty,
            nullable: true,
            access: Access::Writable,
            required_on_create: false,
            format: None,
            max_length: None,
            enum_values: Cow::Borrowed(&[]),
            pattern: None,
            time_format: TimeFormat::Iso8601,
            stringly: false,
            merge_keys: false,
            external_id: false,
        }
    }

    #[test]
    fn decodes_each_type() {
        let mut ts = col("created", FieldType::Timestamp);
        ts.time_format = TimeFormat::UnixSeconds;
        assert_eq!(
            decode_cell(&ts, Some(&json!(1700000000))).unwrap(),
            Cell::Timestamp(1_700_000_000_000_000)
        );
        let iso = col("t", FieldType::Timestamp);
        assert_eq!(
            decode_cell(&iso, Some(&json!("2023-11-14T22:13:20.000+0000"))).unwrap(),
            Cell::Timestamp(1_700_000_000_000_000)
        );
        assert_eq!(
            decode_cell(&col("d", FieldType::Decimal), Some(&json!("12.50"))).unwrap(),
            Cell::Decimal("12.50".into())
        );
        assert!(decode_cell(&col("d", FieldType::Decimal), Some(&json!("abc"))).is_err());
        assert_eq!(
            decode_cell(&col("n", FieldType::Integer), Some(&json!("42"))).unwrap(),
            Cell::Int(42)
        );
        let err = decode_cell(&col("n", FieldType::Integer), Some(&json!({"a": 1}))).unwrap_err();
        assert!(err.to_string().contains("expected an integer"), "{err}");
        assert_eq!(
            decode_cell(&col("n", FieldType::Integer), None).unwrap(),
            Cell::Null
        );
        assert_eq!(
            decode_cell(&col("d", FieldType::Date), Some(&json!("1970-01-11"))).unwrap(),
            Cell::Date(10)
        );
    }

    #[test]
    fn stringly_values_round_trip() {
        let mut c = col("amount", FieldType::Decimal);
        c.stringly = true;
        assert_eq!(decode_cell(&c, Some(&json!(""))).unwrap(), Cell::Null);
        assert_eq!(
            encode_cell(&c, &Cell::Decimal("10.5".into())),
            json!("10.5")
        );
        let mut b = col("flag", FieldType::Boolean);
        b.stringly = true;
        assert_eq!(
            decode_cell(&b, Some(&json!("true"))).unwrap(),
            Cell::Bool(true)
        );
        assert_eq!(encode_cell(&b, &Cell::Bool(false)), json!("false"));
    }

    #[test]
    fn nested_paths_and_form_encoding() {
        let mut city = col("address_city", FieldType::String);
        city.path = "address.city".into();
        let meta = col("metadata", FieldType::Json);
        let cells = [
            Cell::Text("Paris".into()),
            Cell::Json(json!({"plan": "pro", "x": null})),
        ];
        let obj = write_object([(&city, &cells[0]), (&meta, &cells[1])], None);
        assert_eq!(obj["address"]["city"], "Paris");
        let form = form_encode(&obj);
        assert_eq!(
            form,
            "address%5Bcity%5D=Paris&metadata%5Bplan%5D=pro&metadata%5Bx%5D="
        );
        let cleared = form_encode(json!({"metadata": {}}).as_object().unwrap());
        assert_eq!(cleared, "metadata=");
    }

    #[test]
    fn wrapped_paths_are_stripped() {
        let mut email = col("email", FieldType::String);
        email.path = "properties.email".into();
        let cell = Cell::Text("a@b.co".into());
        let obj = write_object([(&email, &cell)], Some("properties"));
        assert_eq!(Value::Object(obj), json!({"email": "a@b.co"}));
    }

    #[test]
    fn validation() {
        let mut email = col("email", FieldType::String);
        email.format = Some(Format::Email);
        email.max_length = Some(20);
        assert!(validate_cell(&email, &Cell::Text("a@b.co".into())).is_ok());
        let bad = validate_cell(&email, &Cell::Text("andrea__invalid".into())).unwrap_err();
        assert_eq!(bad.kind, ViolationKind::Malformed);
        assert_eq!(bad.kind.sqlstate(), "22023");
        let long = validate_cell(&email, &Cell::Text("a".repeat(30) + "@b.co")).unwrap_err();
        assert_eq!(long.kind, ViolationKind::TooLong);
        let mut status = col("status", FieldType::String);
        status.enum_values = Cow::Owned(vec!["open".into(), "closed".into()]);
        assert_eq!(
            validate_cell(&status, &Cell::Text("nope".into()))
                .unwrap_err()
                .kind,
            ViolationKind::NotAllowed
        );
        let mut id = col("id", FieldType::String);
        id.access = Access::ReadOnly;
        let mut cur = col("currency", FieldType::String);
        cur.access = Access::CreateOnly;
        cur.required_on_create = true;
        let cols = [id, cur];
        let x = Cell::Text("x".into());
        assert_eq!(
            validate_write(&cols, WriteOp::Create, &[(0, &x)])
                .unwrap_err()
                .kind,
            ViolationKind::NotWritable
        );
        assert_eq!(
            validate_write(&cols, WriteOp::Create, &[])
                .unwrap_err()
                .kind,
            ViolationKind::Required
        );
        assert!(validate_write(&cols, WriteOp::Create, &[(1, &x)]).is_ok());
        let upd = validate_write(&cols, WriteOp::Update, &[(1, &x)]).unwrap_err();
        assert_eq!(upd.kind.sqlstate(), "428C9");
        assert!(
            upd.message
                .contains("only be set when the record is created")
        );
        // Update-only (a Stripe dispute's evidence): refused on create.
        let mut evidence = col("evidence", FieldType::Json);
        evidence.access = Access::UpdateOnly;
        let cols = [evidence];
        let ev = Cell::Json(serde_json::json!({"product_description": "x"}));
        assert!(validate_write(&cols, WriteOp::Update, &[(0, &ev)]).is_ok());
        let create = validate_write(&cols, WriteOp::Create, &[(0, &ev)]).unwrap_err();
        assert_eq!(create.kind.sqlstate(), "428C9");
        assert!(create.message.contains("only be set by an UPDATE"));
    }

    #[test]
    fn pg_text() {
        assert_eq!(
            Cell::Timestamp(0).to_pg_text().unwrap(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            Cell::TextArray(vec!["a\"b".into(), "c".into()])
                .to_pg_text()
                .unwrap(),
            "{\"a\\\"b\",\"c\"}"
        );
        assert_eq!(Cell::Null.to_pg_text(), None);
    }
}
