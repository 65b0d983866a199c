//! YAML with source positions.
//!
//! Specs and configs are parsed into a `serde_json::Value` (what jsonschema
//! and serde consume) plus a map from JSON Pointer to the line and column
//! where that value, and that mapping key, stand in the file. Every later
//! stage (schema checks, deserialization, semantic checks) reports problems
//! by JSON Pointer and gets a `file:line:column` from here.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

/// A parsed document and where each of its values stands.
#[derive(Clone, Debug, Default)]
pub struct Located {
    pub value: Value,
    values: HashMap<String, Span>,
    keys: HashMap<String, Span>,
}

impl Located {
    /// Where the value at `pointer` stands; falls back to the closest
    /// enclosing value that has a position.
    pub fn span(&self, pointer: &str) -> Span {
        let mut p = pointer;
        loop {
            if let Some(s) = self.values.get(p) {
                return *s;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Span { line: 1, col: 1 },
            }
        }
    }

    /// Where the mapping key naming the value at `pointer` stands (for
    /// "unknown key" problems); falls back to [`Self::span`].
    pub fn key_span(&self, pointer: &str) -> Span {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.span(pointer))
    }
}

/// A YAML syntax error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Located, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        span: span_of(e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    let value = builder.root.unwrap_or(Value::Null);
    Ok(Located {
        value,
        values: builder.values,
        keys: builder.keys,
    })
}

fn span_of(m: &Marker) -> Span {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Span {
        line: m.line(),
        col: m.col() + 1,
    }
}

/// A value that does not deserialize into `T`: where (JSON Pointer) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeError {
    pub pointer: String,
    pub message: String,
}

/// Deserializes a parsed document (or part of one), reporting the failing
/// value's JSON Pointer so callers can map it to a [`Span`].
pub fn deserialize<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, DeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        use serde_path_to_error::Segment;
        let mut pointer = String::new();
        for seg in e.path().iter() {
            match seg {
                Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                Segment::Map { key } => pointer.push_str(&format!("/{}", escape_segment(key))),
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        DeError {
            pointer,
            message: e.inner().to_string(),
        }
    })
}

/// Escapes one JSON Pointer segment (RFC 6901).
pub fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

enum Frame {
    Seq {
        pointer: String,
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        pointer: String,
        map: Map<String, Value>,
        pending_key: Option<String>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    values: HashMap<String, Span>,
    keys: HashMap<String, Span>,
    anchors: HashMap<usize, Value>,
    error: Option<SyntaxError>,
}

impl Builder {
    /// The pointer of the next value to be completed, or `None` when the next
    /// scalar is a mapping key.
    fn next_pointer(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { pointer, items, .. }) => Some(format!("{pointer}/{}", items.len())),
            Some(Frame::Map {
                pointer,
                pending_key,
                ..
            }) => pending_key
                .as_ref()
                .map(|k| format!("{pointer}/{}", escape_segment(k))),
        }
    }

    fn complete(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                map, pending_key, ..
            }) => {
                let key = pending_key.take().expect("value follows a key");
                map.insert(key, value);
            }
        }
    }

    fn fail(&mut self, mark: Marker, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                span: span_of(&mark),
                message,
            });
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let span = span_of(&mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => match self.next_pointer() {
                None => {
                    // A mapping key.
                    if let Some(Frame::Map {
                        pointer,
                        map,
                        pending_key,
                        ..
                    }) = self.stack.last_mut()
                    {
                        let p = format!("{pointer}/{}", escape_segment(&text));
                        if map.contains_key(&text) {
                            let msg = format!("duplicate key `{text}`");
                            self.fail(mark, msg);
                            return;
                        }
                        self.keys.insert(p, span);
                        *pending_key = Some(text);
                    }
                }
                Some(p) => {
                    self.values.insert(p, span);
                    let v = scalar(text, style);
                    self.complete(v, anchor);
                }
            },
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let Some(pointer) = self.next_pointer() else {
                    self.fail(mark, "complex mapping keys are not supported".into());
                    return;
                };
                self.values.insert(pointer.clone(), span);
                let frame = if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        pointer,
                        items: Vec::new(),
                        anchor,
                    }
                } else {
                    Frame::Map {
                        pointer,
                        map: Map::new(),
                        pending_key: None,
                        anchor,
                    }
                };
                self.stack.push(frame);
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor, .. }) => {
                    self.complete(Value::Array(items), anchor)
                }
                Some(Frame::Map { map, anchor, .. }) => self.complete(Value::Object(map), anchor),
                None => {}
            },
            Event::Alias(id) => {
                let Some(p) = self.next_pointer() else {
                    self.fail(mark, "aliases as mapping keys are not supported".into());
                    return;
                };
                match self.anchors.get(&id).cloned() {
                    Some(v) => {
                        self.values.insert(p, span);
                        self.complete(v, 0);
                    }
                    None => self.fail(mark, "alias to an unknown anchor".into()),
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.2 core schema resolution of a scalar (quoted ones are text); also
/// used by the OpenAPI importer's reader.
pub fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit())
        && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_positions() {
        let text = "name: stripe\nobjects:\n  - name: customer\n    fields:\n      - {name: id, type: string}\n  - name: \"42\"\n    n: 42\n";
        let doc = parse(text).unwrap();
        assert_eq!(doc.value["name"], "stripe");
        assert_eq!(doc.value["objects"][1]["name"], "42");
        assert_eq!(doc.value["objects"][1]["n"], 42);
        assert_eq!(doc.span("/name"), Span { line: 1, col: 7 });
        assert_eq!(doc.key_span("/name"), Span { line: 1, col: 1 });
        assert_eq!(doc.span("/objects/0/name"), Span { line: 3, col: 11 });
        assert_eq!(
            doc.span("/objects/0/fields/0/type"),
            Span { line: 5, col: 26 }
        );
        // Unknown pointers fall back to the nearest enclosing value.
        assert_eq!(
            doc.span("/objects/0/fields/0/nope"),
            doc.span("/objects/0/fields/0")
        );
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let doc = parse("a: true\nb: ~\nc: 1.5\nd: '1'\ne: 1.2.3\nf: -7\n").unwrap();
        assert_eq!(doc.value["a"], true);
        assert!(doc.value["b"].is_null());
        assert_eq!(doc.value["c"], 1.5);
        assert_eq!(doc.value["d"], "1");
        assert_eq!(doc.value["e"], "1.2.3");
        assert_eq!(doc.value["f"], -7);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.span.line >= 1, "{err:?}");
        let dup = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(dup.span.line, 2);
        assert!(dup.message.contains("duplicate key"));
    }

    #[test]
    fn aliases_copy_anchored_values() {
        let doc = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(doc.value["other"]["x"], 1);
    }
}
