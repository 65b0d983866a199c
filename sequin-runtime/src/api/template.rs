//! Request templating: `{placeholders}` in endpoint paths, queries and JSON
//! bodies filled from a [`Vars`] map, and URL assembly.
//!
//! Values are percent-encoded where they land (a path segment, a query
//! value), never by the spec author, so an id or a SOQL query can hold any
//! character. A placeholder without a value is an error rather than an empty
//! string: a silently empty `{base_id}` would address the wrong resource.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::Url;
use serde_json::Value;

/// Characters escaped in a path segment: everything but RFC 3986 unreserved
/// characters and sub-delimiters that are harmless inside a segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Values for template placeholders.
///
/// Lookup order: values set on this map (`id`, `object`, `since`, ...), then
/// connection parameters (added by the client), then fields of the record
/// given with [`Vars::record`] (so connection parameters win over fields of
/// the same name, as the spec format says). `{fields}` is the list given with
/// [`Vars::fields`]: comma-joined in paths and queries, an array where a JSON
/// body string is exactly `"{fields}"`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vars {
    values: BTreeMap<String, String>,
    params: BTreeMap<String, String>,
    record: BTreeMap<String, String>,
    /// Shared: a request's variables are copied per request, and an
    /// object has dozens of fields.
    fields: Option<std::sync::Arc<[String]>>,
}

impl Vars {
    /// An empty map.
    pub fn new() -> Vars {
        Vars::default()
    }

    /// Sets `{name}` (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Vars {
        self.set(name, value);
        self
    }

    /// Sets `{name}`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Vars {
        self.values.insert(name.into(), value.into());
        self
    }

    /// Sets `{fields}`: the API names of the fields to ask for.
    pub fn fields(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Vars {
        self.fields = Some(
            names
                .into_iter()
                .map(Into::into)
                .collect::<Vec<String>>()
                .into(),
        );
        self
    }

    /// Makes the top-level scalar members of `record` available by API name
    /// (`{number}` for GitHub issues), below explicit values and connection
    /// parameters.
    pub fn record(mut self, record: &Value) -> Vars {
        if let Value::Object(m) = record {
            for (k, v) in m {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                self.record.insert(k.clone(), text);
            }
        }
        self
    }

    /// Adds connection parameters (below explicit values, above record fields).
    pub(crate) fn with_params(mut self, params: &BTreeMap<String, String>) -> Vars {
        for (k, v) in params {
            self.params.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self
    }

    /// The value of `{name}` as text (`{fields}` comma-joined).
    pub fn get(&self, name: &str) -> Option<String> {
        if name == "fields"
            && let Some(f) = &self.fields
        {
            return Some(f.join(","));
        }
        self.values
            .get(name)
            .or_else(|| self.params.get(name))
            .or_else(|| self.record.get(name))
            .cloned()
    }

    /// The `{fields}` list, when set.
    pub fn field_list(&self) -> Option<&[String]> {
        self.fields.as_deref()
    }
}

/// A template that cannot be filled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{name}` has no value.
    #[error("template `{template}` needs `{{{name}}}`, which has no value")]
    Missing {
        /// The template.
        template: String,
        /// The placeholder without a value.
        name: String,
    },
    /// An unclosed `{`.
    #[error("template `{0}` has an unclosed `{{`")]
    Unclosed(String),
    /// The result is not a URL.
    #[error("`{0}` is not a valid URL")]
    BadUrl(String),
}

/// Fills `{placeholders}` in `template`, passing each value through
/// `encode`. `{{` and `}}` stand for literal braces.
pub fn render_with(
    template: &str,
    vars: &Vars,
    encode: impl Fn(&str) -> String,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            // A lone `}` is literal text.
            out.push('}');
            rest = after;
            continue;
        }
        let end = tail
            .find('}')
            .ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
        let name = &tail[1..end];
        let value = vars.get(name).ok_or_else(|| TemplateError::Missing {
            template: template.to_string(),
            name: name.to_string(),
        })?;
        out.push_str(&encode(&value));
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills a template with raw values (headers, base URLs, body strings).
pub fn render(template: &str, vars: &Vars) -> Result<String, TemplateError> {
    render_with(template, vars, str::to_string)
}

/// Fills a path template, percent-encoding each value as one path segment.
pub fn render_path(template: &str, vars: &Vars) -> Result<String, TemplateError> {
    render_with(template, vars, |v| {
        utf8_percent_encode(v, SEGMENT).to_string()
    })
}

/// Fills a JSON body template: a string that is exactly `"{fields}"` becomes
/// the array of field names; other strings have their placeholders filled.
pub fn render_json(template: &Value, vars: &Vars) -> Result<Value, TemplateError> {
    Ok(match template {
        Value::String(s) if s == "{fields}" && vars.field_list().is_some() => Value::Array(
            vars.field_list()
                .unwrap_or_default()
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        ),
        Value::String(s) if s.contains('{') || s.contains('}') => Value::String(render(s, vars)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_json(i, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, vars)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// Builds a request URL from an endpoint path template (which may carry a
/// query string, or be an absolute URL) and its extra query parameters.
///
/// A relative path is appended to `base` (keeping any path prefix the base
/// has); an absolute template is used as is.
pub fn build_url(
    base: &str,
    path_template: &str,
    query: &BTreeMap<String, String>,
    vars: &Vars,
) -> Result<Url, TemplateError> {
    let (path_part, query_part) = match path_template.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_template, None),
    };
    let path = render_path(path_part, vars)?;
    let joined = if is_absolute(&path) {
        path
    } else {
        let base = base.trim_end_matches('/');
        if path.starts_with('/') {
            format!("{base}{path}")
        } else {
            format!("{base}/{path}")
        }
    };
    let mut url = Url::parse(&joined).map_err(|_| TemplateError::BadUrl(joined.clone()))?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(q) = query_part {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            pairs.push((k.into_owned(), render(&v, vars)?));
        }
    }
    for (k, v) in query {
        pairs.push((k.clone(), render(v, vars)?));
    }
    if !pairs.is_empty() {
        let mut qp = url.query_pairs_mut();
        for (k, v) in &pairs {
            qp.append_pair(k, v);
        }
    }
    Ok(url)
}

/// Whether `s` is an absolute `http(s)` URL.
pub fn is_absolute(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Replaces (or adds) query parameter `name` with `value`.
pub fn set_query_param(url: &mut Url, name: &str, value: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut qp = url.query_pairs_mut();
    qp.clear();
    for (k, v) in &kept {
        qp.append_pair(k, v);
    }
    qp.append_pair(name, value);
}

/// Removes query parameter `name` (an API key echoed in a next-page URL must
/// not be checkpointed).
pub fn remove_query_param(url: &mut Url, name: &str) {
    if !url.query_pairs().any(|(k, _)| k == name) {
        return;
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        let mut qp = url.query_pairs_mut();
        qp.clear();
        for (k, v) in &kept {
            qp.append_pair(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_encode_each_value_as_one_segment() {
        let vars = Vars::new()
            .with("id", "a b/c?d#e%f")
            .with("object", "Contact");
        let url = build_url(
            "https://api.example.com/",
            "/sobjects/{object}/{id}",
            &BTreeMap::new(),
            &vars,
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/sobjects/Contact/a%20b%2Fc%3Fd%23e%25f"
        );
    }

    #[test]
    fn base_path_prefix_is_kept_and_queries_are_encoded() {
        let mut query = BTreeMap::new();
        query.insert(
            "q".to_string(),
            "SELECT {fields} FROM {object} WHERE SystemModstamp >= {since}".to_string(),
        );
        let vars = Vars::new()
            .with("object", "Account")
            .with("since", "2024-05-01T00:00:00.000Z")
            .fields(["Id", "Name"]);
        let url = build_url("http://h:1/prefix", "query?x={object}", &query, &vars).unwrap();
        assert_eq!(url.path(), "/prefix/query");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("x".into(), "Account".into()),
                (
                    "q".into(),
                    "SELECT Id,Name FROM Account WHERE SystemModstamp >= 2024-05-01T00:00:00.000Z"
                        .into()
                ),
            ]
        );
        // `+` and `&` inside a value must survive the round trip.
        let v = Vars::new().with("since", "a+b&c=d");
        let mut q = BTreeMap::new();
        q.insert("s".to_string(), "{since}".to_string());
        let url = build_url("http://h", "/x", &q, &v).unwrap();
        assert_eq!(url.query_pairs().next().unwrap().1, "a+b&c=d");
    }

    #[test]
    fn absolute_templates_are_used_as_is() {
        let vars = Vars::new().with("login_host", "test.salesforce.com");
        let url = build_url(
            "http://ignored",
            "https://{login_host}/services/oauth2/token",
            &BTreeMap::new(),
            &vars,
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://test.salesforce.com/services/oauth2/token"
        );
    }

    #[test]
    fn missing_values_are_errors_and_braces_escape() {
        let err =
            render_path("/v0/{base_id}/{object}", &Vars::new().with("object", "t")).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                template: "/v0/{base_id}/{object}".into(),
                name: "base_id".into()
            }
        );
        assert!(matches!(
            render("{oops", &Vars::new()),
            Err(TemplateError::Unclosed(_))
        ));
        assert_eq!(render("{{x}} }", &Vars::new()).unwrap(), "{x} }");
    }

    #[test]
    fn lookup_order_explicit_then_params_then_record() {
        let mut params = BTreeMap::new();
        params.insert("owner".to_string(), "param-owner".to_string());
        let vars = Vars::new()
            .with("id", "explicit")
            .record(&json!({"id": "rec", "owner": "rec-owner", "number": 42, "nested": {"a": 1}}))
            .with_params(&params);
        assert_eq!(vars.get("id").unwrap(), "explicit");
        assert_eq!(vars.get("owner").unwrap(), "param-owner");
        assert_eq!(vars.get("number").unwrap(), "42");
        assert_eq!(vars.get("nested"), None);
    }

    #[test]
    fn json_bodies_get_field_arrays_and_values() {
        let vars = Vars::new()
            .with("since", "1700000000000")
            .fields(["email", "firstname"]);
        let body = json!({
            "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GT", "value": "{since}"}]}],
            "properties": "{fields}",
            "limit": 200,
        });
        let out = render_json(&body, &vars).unwrap();
        assert_eq!(out["properties"], json!(["email", "firstname"]));
        assert_eq!(
            out["filterGroups"][0]["filters"][0]["value"],
            json!("1700000000000")
        );
        assert_eq!(out["limit"], json!(200));
    }

    #[test]
    fn query_params_are_replaced_and_removed() {
        let mut url = Url::parse("http://h/x?a=1&key=s3cret&b=2").unwrap();
        remove_query_param(&mut url, "key");
        assert_eq!(url.as_str(), "http://h/x?a=1&b=2");
        set_query_param(&mut url, "a", "9");
        assert_eq!(url.as_str(), "http://h/x?b=2&a=9");
        let mut only = Url::parse("http://h/x?key=s").unwrap();
        remove_query_param(&mut only, "key");
        assert_eq!(only.as_str(), "http://h/x");
    }
}
