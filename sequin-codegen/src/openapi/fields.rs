//! An object's fields from its record schema and its write bodies.
//!
//! Every property of the record is a field, the primary key first, then in
//! the document's order. Types: `string`, `integer`, `number` -> `decimal`,
//! `boolean`; unix-time integers and date-time strings -> `timestamp`;
//! `date` -> `date`; expandable ids (`anyOf: [string, object]`) ->
//! `string`; arrays of strings -> `string_array`; other objects and arrays
//! -> `json`. Access: `writable` when the property is a parameter of both
//! the create and the update body, `create_only` when only of create,
//! `update_only` when only of update, `read_only` otherwise (and when the
//! document says `readOnly`).
//! A write parameter of another type than the field (an id where the record
//! returns the object) does not count. `max_length` is the request
//! parameters' (the smaller of create and update), on settable strings
//! only; a string without an `enum` takes its parameters'. Arrays never
//! get an `enum` (write-through checks it on single strings only). A
//! free-form map whose update parameter says keys are unset one by one is
//! `merge: keys`. Only the primary key is `nullable:
//! false`: a row inserted through the proxy exists before the API has
//! assigned the rest.

use sequin_spec::model::{Access, Field, FieldType, Format, Merge, TimeFormat};
use sequin_spec::naming::is_snake_identifier;

use super::document::Document;
use super::notes::Notes;
use super::schema::{Kind, View, view};

/// The bodies of an object's create and update requests.
#[derive(Default)]
pub struct Bodies<'a> {
    pub create: Option<View<'a>>,
    pub update: Option<View<'a>>,
}

/// A property's column type and what comes with it.
struct Typed {
    ty: FieldType,
    time_format: Option<TimeFormat>,
    format: Option<Format>,
    enum_values: Vec<String>,
    /// The allowed values of an array's items, which `enum` cannot carry.
    item_enum: Vec<String>,
    review: Option<String>,
}

fn typed(doc: &Document, v: &View) -> Typed {
    let mut t = Typed {
        ty: FieldType::Json,
        time_format: None,
        format: None,
        enum_values: Vec::new(),
        item_enum: Vec::new(),
        review: None,
    };
    if v.expandable {
        t.ty = FieldType::String;
        return t;
    }
    match v.kind {
        Kind::String => {
            t.enum_values = v.enum_values.clone();
            (t.ty, t.format) = match v.format {
                Some("date-time") => (FieldType::Timestamp, None),
                Some("date") => (FieldType::Date, None),
                Some("decimal") => (FieldType::Decimal, None),
                Some("email") => (FieldType::String, Some(Format::Email)),
                Some("uri" | "url") => (FieldType::String, Some(Format::Uri)),
                _ => (FieldType::String, None),
            };
            if t.ty != FieldType::String {
                t.enum_values.clear();
            }
        }
        Kind::Integer if v.format == Some("unix-time") => {
            t.ty = FieldType::Timestamp;
            t.time_format = Some(TimeFormat::UnixSeconds);
        }
        Kind::Integer => t.ty = FieldType::Integer,
        Kind::Number => t.ty = FieldType::Decimal,
        Kind::Boolean => t.ty = FieldType::Boolean,
        Kind::Array => {
            let items = v.items.map(|i| view(doc, i)).unwrap_or_default();
            if items.kind == Kind::String && !items.expandable && items.format.is_none() {
                t.ty = FieldType::StringArray;
                t.item_enum = items.enum_values;
            }
        }
        Kind::Object => {}
        Kind::Unknown if v.is_object() => {}
        Kind::Unknown => {
            t.review = Some(if let Some(r) = v.dangling {
                format!("`$ref: {r}` does not resolve in the document; stored as json")
            } else if v.mixed {
                "alternatives of different types; stored as json".into()
            } else {
                "the document gives no type; stored as json".into()
            });
        }
    }
    t
}

/// The primary key of a record: `id`, the single-record path's placeholder
/// when it is a property, `<table>_id`/`<table>Id`, or a guess.
pub fn primary_key(
    record: &View,
    item_param: Option<&str>,
    table: &str,
) -> (String, Option<String>) {
    if record.property("id").is_some() {
        return ("id".into(), None);
    }
    if let Some(p) = item_param.filter(|p| record.property(p).is_some()) {
        return (p.to_string(), None);
    }
    let camel = heck::ToLowerCamelCase::to_lower_camel_case(format!("{table}_id").as_str());
    for name in [format!("{table}_id"), camel] {
        if record.property(&name).is_some() {
            return (name, None);
        }
    }
    let guess = record
        .required
        .first()
        .copied()
        .or_else(|| record.properties.first().map(|p| p.0))
        .unwrap_or("id");
    (
        guess.to_string(),
        Some(format!(
            "the record has no `id` property; `{guess}` is a guess at the primary key"
        )),
    )
}

/// The fields of a record; comments go to `notes` under `/fields/<i>`.
pub fn fields(
    doc: &Document,
    record: &View,
    bodies: &Bodies,
    pk: &str,
    notes: &mut Notes,
    object_notes: &mut Vec<String>,
) -> Vec<Field> {
    let mut order: Vec<(&str, &serde_json::Value)> = record.properties.clone();
    if let Some(i) = order.iter().position(|(n, _)| *n == pk) {
        let key = order.remove(i);
        order.insert(0, key);
    }
    let mut out: Vec<Field> = Vec::new();
    let mut write_only = Vec::new();
    for (name, schema) in order {
        let v = view(doc, schema);
        if v.write_only {
            write_only.push(format!("`{name}`"));
            continue;
        }
        let pointer = format!("/fields/{}", out.len());
        let mut field = field(doc, name, &v, bodies, pk, &pointer, notes);
        let taken = |c: &str| out.iter().any(|f| f.column_name() == c);
        let column = field.column_name();
        if taken(&column) || !is_snake_identifier(&column) {
            let mut base = column
                .trim_matches('_')
                .chars()
                .take(50)
                .collect::<String>();
            if !is_snake_identifier(&base) {
                base = format!("f_{base}");
            }
            if !is_snake_identifier(&base) {
                base = "field".into();
            }
            let mut col = base.clone();
            let mut n = 2;
            while taken(&col) {
                col = format!("{base}_{n}");
                n += 1;
            }
            notes.review(
                &pointer,
                format!("column `{column}` is taken or not an identifier; `column: {col}` chosen"),
            );
            field.column = Some(col);
        }
        out.push(field);
    }
    if !write_only.is_empty() {
        object_notes.push(format!(
            "Left out: {} (writeOnly: sent, never returned).",
            write_only.join(", ")
        ));
    }
    out
}

fn field<'a>(
    doc: &'a Document,
    name: &str,
    v: &View,
    bodies: &Bodies<'a>,
    pk: &str,
    pointer: &str,
    notes: &mut Notes,
) -> Field {
    let t = typed(doc, v);
    if let Some(r) = &t.review {
        notes.review(pointer, r.clone());
    }
    if !t.item_enum.is_empty() {
        notes.review(pointer, item_enum_note(&t.item_enum));
    }
    let mut refused = Vec::new();
    let mut param = |body: &Option<View<'a>>, side: &'static str| {
        let p = body.as_ref()?.property(name).map(|s| view(doc, s))?;
        match carries(doc, &p, t.ty) {
            Ok(()) => Some(p),
            Err(pt) => {
                refused.push((side, pt));
                None
            }
        }
    };
    let create = param(&bodies.create, "create");
    let update = param(&bodies.update, "update");
    if let Some((_, pt)) = refused.first() {
        let sides: Vec<&str> = refused.iter().map(|r| r.0).collect();
        notes.review(
            pointer,
            format!(
                "the {} parameter `{name}` is {pt:?}, the field {:?}: a column value could not be sent as it, so it does not make the field settable; check they are the same thing",
                sides.join(" and "),
                t.ty
            )
            .to_lowercase(),
        );
    }
    let access = match (&create, &update) {
        _ if v.read_only => Access::ReadOnly,
        (Some(_), Some(_)) => Access::Writable,
        (Some(_), None) => Access::CreateOnly,
        (None, Some(_)) => Access::UpdateOnly,
        (None, None) => Access::ReadOnly,
    };
    let settable = access != Access::ReadOnly;
    let params: Vec<&View> = [create.as_ref(), update.as_ref()]
        .into_iter()
        .flatten()
        .take(if access == Access::Writable { 2 } else { 1 })
        .collect();
    let mut f = Field {
        name: name.to_string(),
        column: None,
        path: None,
        ty: t.ty,
        nullable: name != pk,
        access,
        required_on_create: settable && bodies.create.as_ref().is_some_and(|b| b.is_required(name)),
        format: t.format,
        max_length: None,
        enum_values: t.enum_values,
        external_id: false,
        pattern: None,
        time_format: t.time_format,
        stringly: false,
        merge: None,
        description: None,
    };
    if name == pk && v.nullable {
        notes.review(pointer, "the document says the primary key may be null");
    }
    if settable {
        settable_details(&mut f, v, &params, update.as_ref(), pointer, notes);
    }
    time_hint(&f, pointer, notes);
    if is_embedded_list(doc, v) {
        notes.review(
            pointer,
            "an embedded list of other records, which APIs usually return only when asked (expanded): consider leaving it out",
        );
    }
    f
}

/// What only matters for values a write sends: lengths, guessed formats,
/// the write parameters' enums, merged maps.
fn settable_details(
    f: &mut Field,
    record: &View,
    params: &[&View],
    update: Option<&View>,
    pointer: &str,
    notes: &mut Notes,
) {
    if f.ty == FieldType::String {
        f.max_length = params
            .iter()
            .filter_map(|p| p.max_length)
            .min()
            .map(|n| n as u32);
        if f.format.is_none() {
            f.format = params.iter().find_map(|p| match p.format {
                Some("email") => Some(Format::Email),
                Some("uri" | "url") => Some(Format::Uri),
                _ => None,
            });
        }
        if f.format.is_none() {
            let lower = f.name.to_ascii_lowercase();
            let guess =
                if lower == "email" || lower.ends_with("_email") || f.name.ends_with("Email") {
                    Some((Format::Email, "email"))
                } else if lower == "currency" || lower.ends_with("_currency") {
                    Some((Format::Currency, "currency"))
                } else {
                    None
                };
            if let Some((format, word)) = guess {
                f.format = Some(format);
                notes.review(pointer, format!("`format: {word}` guessed from the name"));
            }
        }
    }
    if f.ty == FieldType::String && f.enum_values.is_empty() {
        // The record says nothing of its values; what the API accepts on
        // writes is what write-through can check before sending.
        for p in params {
            for e in &p.enum_values {
                if !e.is_empty() && !f.enum_values.contains(e) {
                    f.enum_values.push(e.clone());
                }
            }
        }
    }
    if f.ty == FieldType::Json && record.free_form {
        match update.and_then(|u| u.description).filter(|d| unsets_keys(d)) {
            Some(_) if matches!(f.access, Access::Writable | Access::UpdateOnly) => {
                f.merge = Some(Merge::Keys);
                notes.review(
                    pointer,
                    "`merge: keys`: the update parameter's description says keys are unset one by one, so the API merges the map key by key",
                );
            }
            _ => notes.review(
                pointer,
                "a free-form map: if the API merges its keys on update (Stripe's metadata), add `merge: keys`; if it holds the record's properties, declare one field per key with `path:`",
            ),
        }
    }
}

/// Whether a map parameter's description says its keys are unset (or
/// removed) one by one, which only an API merging the map key by key does
/// ("Individual keys can be unset by posting an empty value to them").
fn unsets_keys(description: &str) -> bool {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    PATTERN
        .get_or_init(|| {
            regex::Regex::new(
                r"(?i)\b(individual|each|single|specific)\s+keys?\b[^.]*\b(unset|remov|delet|clear)",
            )
            .expect("the pattern compiles")
        })
        .is_match(description)
}

/// Whether a write parameter can carry the field's value: a parameter of
/// another type (an id where the record returns the object, an amount
/// where it returns an id, a keyword where it returns a time) does not
/// make the field settable by that write; the error is the parameter's type.
fn carries(doc: &Document, param: &View, ty: FieldType) -> Result<(), FieldType> {
    let pt = typed(doc, param).ty;
    if family(pt) == family(ty) || param.mixed || param.kind == Kind::Unknown {
        Ok(())
    } else {
        Err(pt)
    }
}

/// Why an array field has no `enum`: write-through checks `enum` on single
/// strings, not item by item.
fn item_enum_note(values: &[String]) -> String {
    let shown: Vec<&str> = values.iter().take(12).map(String::as_str).collect();
    let more = if values.len() > shown.len() {
        format!(" and {} more", values.len() - shown.len())
    } else {
        String::new()
    };
    format!(
        "each item is one of {}{more}; `enum` is left out: write-through checks it on single strings, never on the items of a string_array",
        shown.join(", ")
    )
}

/// Scalar families that a value of the one type cannot stand for the other.
fn family(ty: FieldType) -> u8 {
    match ty {
        FieldType::String | FieldType::Date | FieldType::Decimal => 0,
        FieldType::Integer | FieldType::Float | FieldType::Timestamp => 1,
        FieldType::Boolean => 2,
        FieldType::Json | FieldType::StringArray => 3,
    }
}

/// Integer fields named like times may hold unix seconds the document does
/// not mark as such.
fn time_hint(f: &Field, pointer: &str, notes: &mut Notes) {
    let lower = f.name.to_ascii_lowercase();
    let timeish = lower.ends_with("_at")
        || lower.ends_with("_date")
        || lower.ends_with("date")
        || lower.ends_with("time")
        || matches!(lower.as_str(), "created" | "updated" | "modified");
    if f.ty == FieldType::Integer && timeish {
        notes.review(
            pointer,
            "an integer named like a time: if it holds unix seconds, make it `type: timestamp` with `time_format: unix_seconds`",
        );
    }
}

/// A page of other records embedded in this one (`{object: list, data,
/// has_more}`).
fn is_embedded_list(doc: &Document, v: &View) -> bool {
    v.is_object()
        && v.property("has_more").is_some()
        && v.property("data")
            .is_some_and(|d| view(doc, d).kind == Kind::Array)
}
