//! An OpenAPI 3 document, read from JSON or YAML into a `serde_json::Value`
//! (key order kept), with local `$ref`s followed on demand.
//!
//! YAML goes through yaml-rust2's event parser straight into `Value`s: no
//! intermediate tree and no positions, because the reference documents are
//! large (Stripe's is 4 MB) and only the values matter here.

use std::collections::HashMap;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::Error;

/// A parsed OpenAPI 3 document.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file name, for messages and the draft's header.
    pub name: String,
    pub root: Value,
}

impl Document {
    /// Parses JSON (text starting with `{`) or YAML, and checks that it is
    /// OpenAPI 3.
    pub fn parse(name: &str, text: &str) -> Result<Document, Error> {
        let bad = |message: String| Error::Syntax {
            file: name.to_string(),
            message,
        };
        let root = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| {
                bad(format!(
                    "JSON error at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ))
            })?
        } else {
            parse_yaml(text).map_err(bad)?
        };
        Document::from_value(name, root)
    }

    /// A document from an already parsed value (tests build variants this way).
    pub fn from_value(name: &str, root: Value) -> Result<Document, Error> {
        let version = root.get("openapi").and_then(Value::as_str);
        match version {
            Some(v) if v.starts_with("3.") => Ok(Document {
                name: name.to_string(),
                root,
            }),
            _ => Err(Error::NotOpenApi3 {
                file: name.to_string(),
                found: match (version, root.get("swagger")) {
                    (Some(v), _) => format!("`openapi: {v}`"),
                    (None, Some(s)) => format!("Swagger {}", s.as_str().unwrap_or("2.0")),
                    (None, None) => "no `openapi:` key".into(),
                },
            }),
        }
    }

    /// `info.title`, or the file name.
    pub fn title(&self) -> &str {
        self.root["info"]["title"].as_str().unwrap_or(&self.name)
    }

    /// `info.version`, if any.
    pub fn version(&self) -> Option<&str> {
        self.root["info"]["version"].as_str()
    }

    /// The target of a local `$ref` (`#/components/schemas/customer`).
    pub fn ref_target(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(&self.root);
        }
        self.root.pointer(pointer)
    }

    /// Follows `$ref`s until a value without one (at most 32 hops, against
    /// cycles); a dangling or external reference is returned as it is.
    pub fn deref<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        for _ in 0..32 {
            match value.get("$ref").and_then(Value::as_str) {
                Some(r) => match self.ref_target(r) {
                    Some(target) => value = target,
                    None => return value,
                },
                None => return value,
            }
        }
        value
    }

    /// Every path item, in document order.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.root["paths"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), self.deref(v))))
    }

    /// The operation `method` of the path item at `path`.
    pub fn operation(&self, path: &str, method: &str) -> Option<&Value> {
        let item = self.deref(self.root["paths"].get(path)?);
        item.get(method).filter(|op| op.is_object())
    }

    /// The parameters of an operation: the path item's, overridden by the
    /// operation's own (same name and location), each `$ref` followed.
    pub fn parameters<'a>(&'a self, path: &str, op: &'a Value) -> Vec<&'a Value> {
        let item_params = self.root["paths"]
            .get(path)
            .map(|i| self.deref(i))
            .and_then(|i| i.get("parameters"))
            .and_then(Value::as_array);
        let op_params = op.get("parameters").and_then(Value::as_array);
        let mut out: Vec<&Value> = Vec::new();
        for p in op_params.into_iter().flatten() {
            out.push(self.deref(p));
        }
        for p in item_params.into_iter().flatten() {
            let p = self.deref(p);
            let same = |q: &&Value| q.get("name") == p.get("name") && q.get("in") == p.get("in");
            if !out.iter().any(same) {
                out.push(p);
            }
        }
        out
    }

    /// The query parameter `name` of an operation.
    pub fn query_param<'a>(&'a self, path: &str, op: &'a Value, name: &str) -> Option<&'a Value> {
        self.parameters(path, op)
            .into_iter()
            .find(|p| p["in"] == "query" && p["name"] == name)
    }

    /// The schema of an operation's success response: 200, 201, 2XX or the
    /// first 2xx, its JSON content preferred.
    pub fn success_schema<'a>(&'a self, op: &'a Value) -> Option<&'a Value> {
        let responses = op.get("responses")?.as_object()?;
        let code = ["200", "201", "2XX", "2xx"]
            .into_iter()
            .find(|c| responses.contains_key(*c))
            .or_else(|| {
                responses
                    .keys()
                    .map(String::as_str)
                    .find(|k| k.starts_with('2'))
            })?;
        self.response_schema(&responses[code])
    }

    /// The schema of a response object (following its `$ref`).
    pub fn response_schema<'a>(&'a self, response: &'a Value) -> Option<&'a Value> {
        let response = self.deref(response);
        Some(&content_entry(response.get("content")?)?.1["schema"]).filter(|s| !s.is_null())
    }

    /// The request body of an operation: its media type and schema.
    pub fn request_body<'a>(&'a self, op: &'a Value) -> Option<(&'a str, &'a Value)> {
        let body = self.deref(op.get("requestBody")?);
        let (media, entry) = content_entry(body.get("content")?)?;
        Some((media, entry.get("schema")?))
    }

    /// The headers any response of `op` declares, by name.
    pub fn response_headers<'a>(&'a self, op: &'a Value) -> Vec<&'a str> {
        let mut out = Vec::new();
        for response in op["responses"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            let response = self.deref(response);
            if let Some(h) = response.get("headers").and_then(Value::as_object) {
                out.extend(h.keys().map(String::as_str));
            }
        }
        out
    }
}

/// The preferred entry of a `content` map: JSON, then form, then anything.
fn content_entry(content: &Value) -> Option<(&str, &Value)> {
    let map = content.as_object()?;
    let pick = |pred: &dyn Fn(&str) -> bool| {
        map.iter()
            .find(|(k, _)| pred(k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
    };
    pick(&|k| k == "application/json")
        .or_else(|| pick(&|k| k.contains("json")))
        .or_else(|| pick(&|k| k == "application/x-www-form-urlencoded"))
        .or_else(|| pick(&|_| true))
}

/// Parses one YAML document into a value, keeping key order.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| {
        format!(
            "YAML syntax error at line {} column {}: {}",
            e.marker().line(),
            e.marker().col() + 1,
            e.info()
        )
    })?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or(Value::Null))
}

enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    anchors: HashMap<usize, Value>,
    error: Option<String>,
}

impl Builder {
    fn complete(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq(items, _)) => items.push(value),
            Some(Frame::Map(map, key, _)) => match key.take() {
                Some(k) => {
                    map.insert(k, value);
                }
                None => match value {
                    Value::String(k) => *key = Some(k),
                    other => *key = Some(other.to_string()),
                },
            },
        }
    }

    /// Whether the next completed value is a mapping key.
    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map(_, None, _)))
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                // Keys stay text (`'200'`, `200` and `default` alike).
                let v = if self.expects_key() {
                    Value::String(text)
                } else {
                    sequin_spec::yaml::scalar(text, style)
                };
                self.complete(v, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                if self.expects_key() {
                    self.error.get_or_insert(format!(
                        "a sequence as a mapping key at line {}",
                        mark.line()
                    ));
                }
                self.stack.push(Frame::Seq(Vec::new(), anchor));
            }
            Event::MappingStart(anchor, _) => {
                if self.expects_key() {
                    self.error.get_or_insert(format!(
                        "a mapping as a mapping key at line {}",
                        mark.line()
                    ));
                }
                self.stack.push(Frame::Map(Map::new(), None, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(items, anchor)) => self.complete(Value::Array(items), anchor),
                Some(Frame::Map(map, _, anchor)) => self.complete(Value::Object(map), anchor),
                None => {}
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(v) => self.complete(v, 0),
                None => {
                    self.error.get_or_insert(format!(
                        "an alias to an unknown anchor at line {}",
                        mark.line()
                    ));
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_read_alike() {
        let yaml = "openapi: 3.0.0\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        '200': {description: ok}\n        404: {description: no}\n";
        let json = r#"{"openapi":"3.0.0","info":{"title":"T","version":"1"},"paths":{"/a":{"get":{"responses":{"200":{"description":"ok"},"404":{"description":"no"}}}}}}"#;
        let y = Document::parse("a.yaml", yaml).unwrap();
        let j = Document::parse("a.json", json).unwrap();
        assert_eq!(y.root, j.root);
        let keys: Vec<&String> = y.root["paths"]["/a"]["get"]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["200", "404"]);
    }

    #[test]
    fn refs_are_followed_and_swagger_is_refused() {
        let doc = Document::parse(
            "x.yaml",
            "openapi: 3.1.0\ncomponents:\n  schemas:\n    A: {$ref: '#/components/schemas/B'}\n    B: {type: string}\n",
        )
        .unwrap();
        let a = &doc.root["components"]["schemas"]["A"];
        assert_eq!(doc.deref(a)["type"], "string");
        let err = Document::parse("old.json", r#"{"swagger": "2.0"}"#).unwrap_err();
        assert!(err.to_string().contains("Swagger 2.0"), "{err}");
    }
}
