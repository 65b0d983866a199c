//! Request parameters: form bodies and query strings parsed into nested values (`a[b][0]=x`)
//! and validated against the operation's parameter tree from Stripe's spec, with Stripe's
//! messages for unknown, missing and malformed parameters.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::catalogue::{Node, OpSpec};
use super::error::StripeError;

/// Node trees are stored as JSON maps (to keep property order); this parses one property lazily.
fn child(node: &Node, name: &str) -> Option<Node> {
    node.p
        .get(name)
        .map(|v| Node::deserialize(v).expect("data/stripe.json nodes are well-formed"))
}

/// Parses `a[b][0]=x&a[c][]=y` into nested JSON objects with string leaves; array positions are
/// object keys ("0", "1", ...), converted to arrays during validation where the spec says array.
pub(super) fn parse_form(raw: &[u8]) -> Result<Map<String, Value>, StripeError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).map_err(|e| {
        StripeError::invalid("", format!("Invalid request body: {e}"))
            .with_code("parameter_invalid")
    })?;
    let mut root = Map::new();
    for (key, value) in pairs {
        let (head, rest) = match key.find('[') {
            Some(i) => (&key[..i], &key[i..]),
            None => (key.as_str(), ""),
        };
        let mut segments = vec![head.to_owned()];
        let mut rest = rest;
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']').ok_or_else(|| {
                StripeError::invalid(key.clone(), format!("Invalid parameter name: {key}"))
            })?;
            segments.push(stripped[..end].to_owned());
            rest = &stripped[end + 1..];
        }
        insert_path(&mut root, &segments, value);
    }
    Ok(root)
}

fn insert_path(map: &mut Map<String, Value>, segments: &[String], value: String) {
    let mut seg = segments[0].clone();
    if seg.is_empty() {
        // `a[]=x`: append.
        seg = map.len().to_string();
    }
    if segments.len() == 1 {
        map.insert(seg, Value::String(value));
        return;
    }
    let slot = map.entry(seg).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(inner) = slot {
        insert_path(inner, &segments[1..], value);
    }
}

fn param_name(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}[{key}]")
    }
}

fn last_segment(param: &str) -> &str {
    param
        .rsplit('[')
        .next()
        .map(|s| s.trim_end_matches(']'))
        .unwrap_or(param)
}

/// Validates the parsed parameters of an object node; returns typed values. `Value::Null` means
/// "unset" (the parameter was sent as an empty string where that is allowed).
pub(super) fn check_object(
    node: &Node,
    value: &Map<String, Value>,
    parent: &str,
) -> Result<Value, StripeError> {
    let mut out = Map::new();
    for (k, v) in value {
        let name = param_name(parent, k);
        let Some(sub) = child(node, k) else {
            return Err(StripeError::unknown_param(&name));
        };
        out.insert(k.clone(), check(&sub, v, &name)?);
    }
    for r in &node.r {
        if !out.contains_key(r) {
            return Err(StripeError::missing_param(&param_name(parent, r)));
        }
    }
    Ok(Value::Object(out))
}

fn check(node: &Node, value: &Value, param: &str) -> Result<Value, StripeError> {
    let text = value.as_str();
    if text == Some("") && (node.empty || node.t == "string") {
        return Ok(Value::Null);
    }
    match node.t.as_str() {
        "object" => match value {
            Value::Object(m) => check_object(node, m, param),
            _ => Err(StripeError::invalid(param, "Invalid object")),
        },
        "map" => match value {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) if s.is_empty() => out.insert(k.clone(), Value::Null),
                        Value::String(s) => out.insert(k.clone(), Value::String(s.clone())),
                        _ => {
                            return Err(StripeError::invalid(
                                param_name(param, k),
                                "Invalid string",
                            ));
                        }
                    };
                }
                Ok(Value::Object(out))
            }
            _ => Err(StripeError::invalid(param, "Invalid object")),
        },
        "array" => match value {
            Value::Object(m) => {
                let items = node.i.as_deref().expect("array nodes have items");
                let mut entries: Vec<(u64, &Value)> = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let idx = k
                        .parse::<u64>()
                        .map_err(|_| StripeError::invalid(param, "Invalid array"))?;
                    entries.push((idx, v));
                }
                entries.sort_by_key(|(i, _)| *i);
                let mut out = Vec::with_capacity(entries.len());
                for (i, v) in entries {
                    out.push(check(items, v, &format!("{param}[{i}]"))?);
                }
                Ok(Value::Array(out))
            }
            // An empty value unsets a list, which leaves it empty: Stripe's
            // convention for form-encoded bodies ("set it to null and the
            // library converts that into an empty string, which will cause
            // Stripe to set it to an empty list", stripe-node#337; the same
            // for `spending_controls[blocked_categories]=`, stripe-python#802).
            Value::String(s) if s.is_empty() => Ok(Value::Array(Vec::new())),
            _ => Err(StripeError::invalid(param, "Invalid array")),
        },
        "any" => {
            let mut first_err = None;
            for alt in &node.of {
                let shape_fits = matches!(
                    (alt.t.as_str(), value),
                    ("object" | "map" | "array", Value::Object(_))
                        | (
                            "string" | "integer" | "number" | "boolean",
                            Value::String(_)
                        )
                );
                if !shape_fits {
                    continue;
                }
                match check(alt, value, param) {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            Err(first_err.unwrap_or_else(|| StripeError::invalid(param, "Invalid value")))
        }
        scalar => {
            let Some(s) = text else {
                return Err(StripeError::invalid(param, format!("Invalid {scalar}")));
            };
            let typed = match scalar {
                "integer" => s
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| StripeError::invalid(param, format!("Invalid integer: {s}")))?,
                "number" => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| StripeError::invalid(param, format!("Invalid decimal: {s}")))?,
                "boolean" => match s {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(StripeError::invalid(param, format!("Invalid boolean: {s}"))),
                },
                _ => {
                    if let Some(max) = node.max
                        && s.chars().count() > max
                    {
                        return Err(StripeError::invalid(
                            param,
                            format!("Invalid string: {s}; must be at most {max} characters"),
                        ));
                    }
                    Value::String(s.to_owned())
                }
            };
            if !node.e.is_empty() && !node.e.iter().any(|e| Some(e.as_str()) == typed.as_str()) {
                return Err(StripeError::invalid(
                    param,
                    format!(
                        "Invalid {}: must be one of {}",
                        last_segment(param),
                        one_of(&node.e)
                    ),
                ));
            }
            Ok(typed)
        }
    }
}

/// `a, b, or c`
fn one_of(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        [init @ .., last] => format!("{}, or {last}", init.join(", ")),
    }
}

pub(super) fn parse_body(op: &OpSpec, raw: &[u8]) -> Result<Map<String, Value>, StripeError> {
    let node = op
        .body
        .as_ref()
        .expect("POST operations have a body schema");
    match check_object(node, &parse_form(raw)?, "")? {
        Value::Object(m) => Ok(m),
        _ => unreachable!("check_object returns an object"),
    }
}

pub(super) fn parse_query(
    op: &OpSpec,
    raw: Option<&str>,
) -> Result<Map<String, Value>, StripeError> {
    let form = parse_form(raw.unwrap_or("").as_bytes())?;
    match check_object(&op.query, &form, "")? {
        Value::Object(m) => Ok(m),
        _ => unreachable!("check_object returns an object"),
    }
}
