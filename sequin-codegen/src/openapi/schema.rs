//! A flattened view of one OpenAPI schema: `$ref`s followed, `allOf` merged,
//! `anyOf`/`oneOf` reduced to what a column can hold.
//!
//! Only the composition keywords are followed here, never `properties` or
//! `items`, so a recursive schema costs nothing until someone walks into it.

use serde_json::Value;

use super::document::Document;

/// What kind of value a schema describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// Not said (no `type`, no `properties`), or alternatives of several kinds.
    #[default]
    Unknown,
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
}

/// A schema with its composition resolved.
#[derive(Clone, Debug, Default)]
pub struct View<'a> {
    pub kind: Kind,
    pub format: Option<&'a str>,
    pub enum_values: Vec<String>,
    pub max_length: Option<u64>,
    pub maximum: Option<u64>,
    pub max_items: Option<u64>,
    pub nullable: bool,
    pub read_only: bool,
    pub write_only: bool,
    /// Declared properties, in document order (allOf parts appended).
    pub properties: Vec<(&'a str, &'a Value)>,
    pub required: Vec<&'a str>,
    /// `additionalProperties` allows any key: a free-form map.
    pub free_form: bool,
    pub items: Option<&'a Value>,
    /// `anyOf: [string, object...]`: an id that the API can expand into the
    /// object it names (Stripe's `customer` on a charge).
    pub expandable: bool,
    /// Alternatives of incompatible kinds.
    pub mixed: bool,
    /// A `$ref` that does not resolve inside the document.
    pub dangling: Option<&'a str>,
    pub description: Option<&'a str>,
    /// Stripe's `x-resourceId`, the object's own name.
    pub resource_id: Option<&'a str>,
}

impl<'a> View<'a> {
    /// The schema of a declared property.
    pub fn property(&self, name: &str) -> Option<&'a Value> {
        self.properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
    }

    pub fn is_required(&self, name: &str) -> bool {
        self.required.contains(&name)
    }

    /// Whether this is an object (declared or implied by its properties).
    pub fn is_object(&self) -> bool {
        self.kind == Kind::Object || (self.kind == Kind::Unknown && !self.properties.is_empty())
    }

    /// Fills what `self` does not say from `other`.
    fn absorb(&mut self, other: View<'a>) {
        if self.kind == Kind::Unknown && !self.mixed {
            self.kind = other.kind;
        }
        self.format = self.format.or(other.format);
        if self.enum_values.is_empty() {
            self.enum_values = other.enum_values;
        }
        self.max_length = self.max_length.or(other.max_length);
        self.maximum = self.maximum.or(other.maximum);
        self.max_items = self.max_items.or(other.max_items);
        self.nullable |= other.nullable;
        self.read_only |= other.read_only;
        self.write_only |= other.write_only;
        for (name, schema) in other.properties {
            if self.property(name).is_none() {
                self.properties.push((name, schema));
            }
        }
        for r in other.required {
            if !self.required.contains(&r) {
                self.required.push(r);
            }
        }
        self.free_form |= other.free_form;
        self.items = self.items.or(other.items);
        self.expandable |= other.expandable;
        self.mixed |= other.mixed;
        self.dangling = self.dangling.or(other.dangling);
        self.description = self.description.or(other.description);
        self.resource_id = self.resource_id.or(other.resource_id);
    }
}

/// The view of `schema` inside `doc`.
pub fn view<'a>(doc: &'a Document, schema: &'a Value) -> View<'a> {
    view_at(doc, schema, 0)
}

fn view_at<'a>(doc: &'a Document, schema: &'a Value, depth: usize) -> View<'a> {
    let mut v = View::default();
    if depth > 24 {
        return v;
    }
    let s = doc.deref(schema);
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        v.dangling = Some(r);
        return v;
    }
    own_keywords(&mut v, s);
    for part in s["allOf"].as_array().into_iter().flatten() {
        let part = view_at(doc, part, depth + 1);
        v.absorb(part);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s[key].as_array() {
            let alts: Vec<View> = alts.iter().map(|a| view_at(doc, a, depth + 1)).collect();
            let combined = alternatives(alts);
            v.absorb(combined);
        }
    }
    // Properties gathered from the parts make an object closed unless it
    // says otherwise.
    if !v.properties.is_empty() && !s["additionalProperties"].is_object() {
        v.free_form = false;
    }
    v
}

/// The keywords a schema says itself.
fn own_keywords<'a>(v: &mut View<'a>, s: &'a Value) {
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        // OpenAPI 3.1: `type: [string, "null"]`.
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    v.nullable = s["nullable"] == true || types.contains(&"null");
    v.kind = match types.iter().find(|t| **t != "null").copied() {
        Some("string") => Kind::String,
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("boolean") => Kind::Boolean,
        Some("object") => Kind::Object,
        Some("array") => Kind::Array,
        _ if s.get("properties").is_some() || s.get("additionalProperties").is_some() => {
            Kind::Object
        }
        _ if s.get("items").is_some() => Kind::Array,
        _ => Kind::Unknown,
    };
    v.format = s["format"].as_str();
    v.enum_values = s["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| match e {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    v.max_length = s["maxLength"].as_u64();
    v.maximum = s["maximum"].as_u64();
    v.max_items = s["maxItems"].as_u64();
    v.read_only = s["readOnly"] == true;
    v.write_only = s["writeOnly"] == true;
    if let Some(props) = s["properties"].as_object() {
        v.properties = props.iter().map(|(k, p)| (k.as_str(), p)).collect();
    }
    v.required = s["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    v.free_form = match &s["additionalProperties"] {
        Value::Bool(b) => *b && v.properties.is_empty(),
        Value::Object(_) => true,
        _ => v.kind == Kind::Object && v.properties.is_empty(),
    };
    v.items = s.get("items");
    v.description = s["description"].as_str().filter(|d| !d.trim().is_empty());
    v.resource_id = s["x-resourceId"].as_str();
}

/// One view for `anyOf`/`oneOf` alternatives.
fn alternatives(alts: Vec<View<'_>>) -> View<'_> {
    let mut nullable = false;
    // `{type: null}` (3.1) makes the value nullable; Stripe's request
    // parameters add `{type: string, enum: [""]}` as "unset", which is no
    // alternative of their own.
    let mut kept: Vec<View> = Vec::new();
    let count = alts.len();
    for a in alts {
        let null_only = a.kind == Kind::Unknown && a.nullable && a.properties.is_empty();
        let unset = a.kind == Kind::String && a.enum_values == [""] && count > 1;
        if null_only || unset {
            nullable |= a.nullable || unset;
        } else {
            kept.push(a);
        }
    }
    let mut out = match kept.len() {
        0 => View::default(),
        1 => kept.pop().expect("one alternative"),
        _ => several(kept),
    };
    out.nullable |= nullable;
    out
}

/// Two or more alternatives: an expandable id, one kind, or mixed.
fn several(kept: Vec<View<'_>>) -> View<'_> {
    let strings = kept.iter().filter(|a| a.kind == Kind::String).count();
    let objects = kept
        .iter()
        .filter(|a| a.is_object() || a.dangling.is_some())
        .count();
    if strings == 1 && strings + objects == kept.len() {
        let mut id = kept
            .into_iter()
            .find(|a| a.kind == Kind::String)
            .expect("one string alternative");
        id.expandable = true;
        return id;
    }
    let first = kept[0].kind;
    let numeric = |k: Kind| matches!(k, Kind::Integer | Kind::Number);
    let same = kept.iter().all(|a| a.kind == first);
    let numbers = kept.iter().all(|a| numeric(a.kind));
    let objects_only = kept.iter().all(|a| a.is_object());
    let mut out = View::default();
    if same || numbers || objects_only {
        let kind = if same {
            first
        } else if numbers {
            Kind::Number
        } else {
            Kind::Object
        };
        let mut enums: Vec<String> = Vec::new();
        let all_enums = kept.iter().all(|a| !a.enum_values.is_empty());
        let format = kept[0]
            .format
            .filter(|f| kept.iter().all(|a| a.format == Some(f)));
        for a in kept {
            if all_enums {
                for e in &a.enum_values {
                    if !enums.contains(e) {
                        enums.push(e.clone());
                    }
                }
            }
            out.absorb(a);
        }
        out.kind = kind;
        out.format = format;
        out.enum_values = enums;
    } else {
        out.mixed = true;
        out.nullable = kept.iter().any(|a| a.nullable);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(schemas: &str) -> Document {
        Document::parse(
            "t.yaml",
            &format!("openapi: 3.0.0\ncomponents:\n  schemas:\n{schemas}"),
        )
        .unwrap()
    }

    fn schema<'a>(d: &'a Document, name: &str) -> &'a Value {
        &d.root["components"]["schemas"][name]
    }

    #[test]
    fn expandable_ids_and_nullable_refs() {
        let d = doc(concat!(
            "    Obj: {type: object, properties: {id: {type: string}}}\n",
            "    Exp: {anyOf: [{type: string, maxLength: 5000}, {$ref: '#/components/schemas/Obj'}], nullable: true}\n",
            "    Wrapped: {anyOf: [{$ref: '#/components/schemas/Obj'}], nullable: true}\n",
            "    Unset: {anyOf: [{type: string, maxLength: 20}, {type: string, enum: ['']}]}\n",
            "    Mixed: {oneOf: [{type: string}, {type: boolean}]}\n",
        ));
        let exp = view(&d, schema(&d, "Exp"));
        assert!(exp.expandable && exp.nullable);
        assert_eq!((exp.kind, exp.max_length), (Kind::String, Some(5000)));
        let wrapped = view(&d, schema(&d, "Wrapped"));
        assert!(wrapped.is_object() && wrapped.nullable && !wrapped.expandable);
        assert_eq!(wrapped.properties[0].0, "id");
        let unset = view(&d, schema(&d, "Unset"));
        assert_eq!((unset.kind, unset.max_length), (Kind::String, Some(20)));
        assert!(view(&d, schema(&d, "Mixed")).mixed);
    }

    #[test]
    fn all_of_merges_properties_and_required() {
        let d = doc(concat!(
            "    Base: {type: object, required: [id], properties: {id: {type: string}}}\n",
            "    Pet: {allOf: [{$ref: '#/components/schemas/Base'}, {properties: {name: {type: string}}, required: [name]}]}\n",
        ));
        let pet = view(&d, schema(&d, "Pet"));
        let names: Vec<&str> = pet.properties.iter().map(|p| p.0).collect();
        assert_eq!(names, ["id", "name"]);
        assert_eq!(pet.required, ["id", "name"]);
        assert!(pet.is_object());
    }
}
