//! The draft as YAML, laid out like the hand-written specs: keys in the
//! model's order, blocks for the structure, one line per field and per
//! endpoint (`- {name: id, type: string, nullable: false}`), a blank line
//! between objects, comments above what they are about.
//!
//! The spec is serialized through serde (so the model stays the one
//! definition of the format) with values equal to their defaults left out,
//! and the text is emitted here, because no YAML writer keeps comments or
//! chooses flow style per key.

use sequin_spec::Connector;
use sequin_spec::yaml::escape_segment;
use serde_json::{Map, Value};

use super::notes::{Note, Notes};

/// Comments are wrapped to stay within this many columns.
const WIDTH: usize = 100;

/// The whole spec file: header comment lines, then the spec.
pub fn document(header: &[String], connector: &Connector, notes: &Notes) -> String {
    let mut e = Emitter {
        out: String::new(),
        notes,
    };
    for line in header {
        if line.is_empty() {
            e.out.push_str("#\n");
        } else {
            e.wrapped(0, line);
        }
    }
    let value = spec_value(connector);
    e.map("", value.as_object().expect("a connector is a mapping"), 0);
    e.out
}

/// One sequence item (a field, an object) at `indent`, for insertion into an
/// existing file; `pointer` names it in `notes`.
pub fn item(value: &Value, pointer: &str, indent: usize, notes: &Notes) -> String {
    let mut e = Emitter {
        out: String::new(),
        notes,
    };
    e.seq_item(pointer, value, indent);
    e.out
}

/// The spec as a JSON value in the model's key order, without the values
/// a reader would not write because they are the defaults.
pub fn spec_value(connector: &Connector) -> Value {
    let mut v = serde_json::to_value(connector).expect("the model serializes");
    strip_defaults(&mut v);
    v
}

/// A model value (an object, a field) as it is rendered.
pub fn part_value<T: serde::Serialize>(part: &T) -> Value {
    let mut v = serde_json::to_value(part).expect("the model serializes");
    strip_defaults(&mut v);
    v
}

/// Keys whose value is the model's default, wherever they occur: each key
/// names one member of one type of the model, so the pairs are unambiguous.
const DEFAULTS: &[(&str, DefaultValue)] = &[
    ("nullable", DefaultValue::Bool(true)),
    ("access", DefaultValue::Str("read_only")),
    ("method", DefaultValue::Str("GET")),
    ("atomic", DefaultValue::Bool(false)),
    ("in_body", DefaultValue::Bool(false)),
    ("required", DefaultValue::Bool(true)),
    ("retry_after_header", DefaultValue::Str("Retry-After")),
    ("newest_first", DefaultValue::Bool(false)),
    ("inclusive", DefaultValue::Bool(false)),
];

enum DefaultValue {
    Bool(bool),
    Str(&'static str),
}

fn strip_defaults(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, val| {
                !DEFAULTS.iter().any(|(key, d)| {
                    key == k
                        && match d {
                            DefaultValue::Bool(b) => val.as_bool() == Some(*b),
                            DefaultValue::Str(s) => val.as_str() == Some(*s),
                        }
                })
            });
            m.values_mut().for_each(strip_defaults);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}

/// Whether the mapping at `pointer` is written on one line.
fn is_flow(pointer: &str, value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|i| !i.is_object() && !i.is_array()),
        // `{kind: full_refresh}`: a strategy without settings.
        Value::Object(m) if m.len() == 1 && m.contains_key("kind") => true,
        Value::Object(_) => {
            let segs: Vec<&str> = pointer.split('/').collect();
            let last = segs.last().copied().unwrap_or("");
            let parent = segs.len().checked_sub(2).map_or("", |i| segs[i]);
            (parent == "fields" || parent == "fixed_fields") && last.parse::<usize>().is_ok()
                || parent == "endpoints"
                    && matches!(last, "list" | "get" | "create" | "update" | "delete")
                || last == "stop"
                || last == "endpoint"
        }
        _ => true,
    }
}

struct Emitter<'n> {
    out: String,
    notes: &'n Notes,
}

impl Emitter<'_> {
    /// Writes `# text` lines at `indent`, wrapped.
    fn wrapped(&mut self, indent: usize, text: &str) {
        let room = WIDTH.saturating_sub(indent + 2).max(40);
        let mut line = String::new();
        for word in text.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > room {
                self.comment_line(indent, &line);
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            self.comment_line(indent, &line);
        }
    }

    fn comment_line(&mut self, indent: usize, text: &str) {
        self.out.push_str(&" ".repeat(indent));
        self.out.push_str("# ");
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn comments<'a>(&mut self, indent: usize, notes: impl Iterator<Item = &'a Note>) {
        for n in notes {
            self.wrapped(indent, &n.rendered());
        }
    }

    /// The comments of a value about to be written at `pointer`.
    fn comments_of(&mut self, pointer: &str, value: &Value, indent: usize) {
        let notes = self.notes;
        if is_flow(pointer, value) {
            self.comments(indent, notes.within(pointer));
        } else {
            self.comments(indent, notes.at(pointer).iter());
        }
    }

    fn map(&mut self, pointer: &str, map: &Map<String, Value>, indent: usize) {
        for (k, v) in map {
            let p = format!("{pointer}/{}", escape_segment(k));
            self.comments_of(&p, v, indent);
            self.out.push_str(&" ".repeat(indent));
            self.entry(&p, k, v, indent);
        }
    }

    /// `key: value` from the current position; nested blocks at `indent + 2`.
    fn entry(&mut self, pointer: &str, key: &str, value: &Value, indent: usize) {
        self.out.push_str(&key_text(key));
        self.out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() && !is_flow(pointer, value) => {
                self.out.push('\n');
                self.map(pointer, m, indent + 2);
            }
            Value::Array(a) if !a.is_empty() && !is_flow(pointer, value) => {
                self.out.push('\n');
                self.seq(pointer, a, indent + 2);
            }
            _ => {
                self.out.push(' ');
                self.out.push_str(&flow(value));
                self.out.push('\n');
            }
        }
    }

    fn seq(&mut self, pointer: &str, items: &[Value], indent: usize) {
        for (i, v) in items.iter().enumerate() {
            if pointer == "/objects" && i > 0 {
                self.out.push('\n');
            }
            self.seq_item(&format!("{pointer}/{i}"), v, indent);
        }
    }

    fn seq_item(&mut self, pointer: &str, value: &Value, indent: usize) {
        let pad = " ".repeat(indent);
        match value {
            Value::Object(m) if !m.is_empty() && !is_flow(pointer, value) => {
                let notes = self.notes;
                self.comments(indent, notes.at(pointer).iter());
                let mut entries = m.iter();
                let (k0, v0) = entries.next().expect("a non-empty mapping");
                let p0 = format!("{pointer}/{}", escape_segment(k0));
                self.comments_of(&p0, v0, indent);
                self.out.push_str(&pad);
                self.out.push_str("- ");
                self.entry(&p0, k0, v0, indent + 2);
                for (k, v) in entries {
                    let p = format!("{pointer}/{}", escape_segment(k));
                    self.comments_of(&p, v, indent + 2);
                    self.out.push_str(&pad);
                    self.out.push_str("  ");
                    self.entry(&p, k, v, indent + 2);
                }
            }
            _ => {
                self.comments_of(pointer, value, indent);
                self.out.push_str(&pad);
                self.out.push_str("- ");
                self.out.push_str(&flow(value));
                self.out.push('\n');
            }
        }
    }
}

/// A value on one line: `{a: 1, b: [x, y]}`.
fn flow(value: &Value) -> String {
    match value {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", key_text(k), flow(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(flow).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::String(s) => scalar_text(s),
        other => other.to_string(),
    }
}

/// A mapping key: plain when it reads back as the same text (keys are
/// always text to the spec reader, so `402` may stay plain).
fn key_text(k: &str) -> String {
    if k.chars().all(|c| c.is_ascii_digit()) && !k.is_empty() || plain_ok(k) {
        k.to_string()
    } else {
        quoted(k)
    }
}

/// A string scalar: plain when YAML reads it back as this very string,
/// double-quoted otherwise.
pub fn scalar_text(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn quoted(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).expect("strings serialize")
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s != s.trim() || "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if s.chars().any(|c| c.is_control() || ",[]{}".contains(c)) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    let special = [
        "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n", ".nan", ".inf",
    ];
    if special.contains(&lower.as_str()) {
        return false;
    }
    // Anything a YAML reader might take for a number, date or time.
    let numberish = s.bytes().any(|b| b.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() || "+-._:xXoO".contains(c));
    !numberish
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back_as_written() {
        for s in [
            "/v1/customers",
            "/v1/customers/{id}",
            "2023-08-16",
            "23514",
            "yes",
            "",
            "a: b",
            "x #y",
            "-x",
            "Retry-After",
            "1s",
            "it's \"quoted\"",
        ] {
            let text = format!("k: {}\n", scalar_text(s));
            let doc = sequin_spec::yaml::parse(&text).unwrap();
            assert_eq!(doc.value["k"], Value::String(s.into()), "{text}");
        }
        assert_eq!(scalar_text("/v1/customers"), "/v1/customers");
        assert_eq!(scalar_text("/v1/customers/{id}"), "\"/v1/customers/{id}\"");
    }

    #[test]
    fn flow_for_fields_and_endpoints_blocks_elsewhere() {
        assert!(is_flow(
            "/objects/0/fields/3",
            &serde_json::json!({"name": "id"})
        ));
        assert!(is_flow(
            "/objects/0/endpoints/list",
            &serde_json::json!({"path": "/a"})
        ));
        assert!(!is_flow(
            "/objects/0/endpoints/batch_create",
            &serde_json::json!({"path": "/a"})
        ));
        assert!(!is_flow("/objects/0", &serde_json::json!({"name": "a"})));
        assert!(is_flow("/errors/code_fallbacks", &serde_json::json!(["a"])));
    }
}
