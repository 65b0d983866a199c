//! What the document says about the API as a whole: base URL, auth,
//! request body encoding, pagination of a list, error bodies, rate-limit
//! headers, idempotency, incremental filters and the event types it lists.
//!
//! Each function returns its finding and, where it had to guess, a
//! `# review:` text naming what to check.

use std::collections::{BTreeMap, BTreeSet};

use sequin_spec::model::{
    Auth, BodyEncoding, ErrorDecoding, Field, FieldType, Idempotency, Incremental, KeyLocation,
    PageCommon, Pagination, RateLimit, StopCondition, TimeFormat,
};
use serde_json::Value;

use super::document::Document;
use super::schema::{Kind, view};

/// A finding with the review comments it needs.
pub type Guess<T> = (T, Vec<String>);

/// `servers[0].url`, its variables at their defaults, without a trailing `/`.
pub fn base_url(doc: &Document) -> Guess<String> {
    let Some(server) = doc.root["servers"].get(0) else {
        return (
            "https://api.example.com".into(),
            vec!["the document names no server: set the API's base URL".into()],
        );
    };
    let mut url = server["url"].as_str().unwrap_or("").to_string();
    let mut reviews = Vec::new();
    for (name, var) in server["variables"].as_object().into_iter().flatten() {
        let default = var["default"].as_str().unwrap_or("");
        url = url.replace(&format!("{{{name}}}"), default);
        reviews.push(format!(
            "the server URL's `{{{name}}}` is set to its default `{default}`"
        ));
    }
    if url.starts_with('/') || url.is_empty() {
        reviews.push(format!(
            "the server URL `{url}` is relative: prefix the API's host"
        ));
        url = format!("https://api.example.com{url}");
    }
    (url.trim_end_matches('/').to_string(), reviews)
}

/// The best security scheme the operations use (of all the document
/// declares when none says): HTTP bearer, OAuth2 (its access token as a
/// bearer token), API keys, HTTP basic. The others are named in a note.
pub fn auth(doc: &Document, ops: &[&Value]) -> (Auth, Vec<String>, Vec<String>) {
    let schemes = doc.root["components"]["securitySchemes"].as_object();
    let mut used: Vec<&str> = Vec::new();
    let requirements = ops
        .iter()
        .filter_map(|op| op.get("security"))
        .chain(doc.root.get("security"));
    for req in requirements {
        for alt in req.as_array().into_iter().flatten() {
            for name in alt.as_object().into_iter().flat_map(|m| m.keys()) {
                if !used.contains(&name.as_str()) {
                    used.push(name);
                }
            }
        }
    }
    // The schemes the operations use come first, best kind first.
    let mut candidates: Vec<(&str, &Value)> = schemes
        .into_iter()
        .flatten()
        .map(|(n, s)| (n.as_str(), doc.deref(s)))
        .collect();
    candidates.sort_by_key(|(n, s)| (!used.is_empty() && !used.contains(n), rank(s)));
    let Some((chosen, scheme)) = candidates.first().copied() else {
        return (
            Auth::Bearer {
                credential: "api_key".into(),
            },
            vec!["the document declares no security scheme; a bearer token is assumed".into()],
            Vec::new(),
        );
    };
    let others: Vec<String> = candidates[1..]
        .iter()
        .map(|(n, s)| format!("{n} ({})", describe(s)))
        .collect();
    let mut notes = Vec::new();
    if !others.is_empty() {
        notes.push(format!("The document also offers: {}.", others.join(", ")));
    }
    let (auth, reviews) = scheme_auth(chosen, scheme);
    (auth, reviews, notes)
}

fn rank(s: &Value) -> u8 {
    match (
        s["type"].as_str(),
        s["scheme"].as_str().map(str::to_ascii_lowercase),
    ) {
        (Some("http"), Some(x)) if x == "bearer" => 0,
        (Some("oauth2" | "openIdConnect"), _) => 1,
        (Some("apiKey"), _) if s["in"] == "header" => 2,
        (Some("apiKey"), _) => 3,
        (Some("http"), _) => 4,
        _ => 5,
    }
}

fn describe(s: &Value) -> String {
    match s["type"].as_str() {
        Some("http") => format!("http {}", s["scheme"].as_str().unwrap_or("?")),
        Some("apiKey") => format!(
            "api key in {} `{}`",
            s["in"].as_str().unwrap_or("?"),
            s["name"].as_str().unwrap_or("?")
        ),
        Some(other) => other.to_string(),
        None => "?".into(),
    }
}

fn scheme_auth(name: &str, s: &Value) -> (Auth, Vec<String>) {
    match (s["type"].as_str(), rank(s)) {
        (_, 0) => (
            Auth::Bearer {
                credential: "api_key".into(),
            },
            Vec::new(),
        ),
        (Some("oauth2" | "openIdConnect"), _) => {
            let token_url = ["authorizationCode", "clientCredentials", "password"]
                .iter()
                .find_map(|f| s["flows"][f]["tokenUrl"].as_str());
            let how = match token_url {
                Some(u) => {
                    format!("for refresh tokens use `kind: oauth2_refresh` with `token_url: {u}`")
                }
                None => "check how clients obtain tokens".into(),
            };
            (
                Auth::Bearer {
                    credential: "access_token".into(),
                },
                vec![format!(
                    "`{name}` is OAuth2: its access token is sent as a bearer token; {how}"
                )],
            )
        }
        (Some("apiKey"), _) => {
            let key_name = s["name"].as_str().unwrap_or("api_key").to_string();
            let mut reviews = Vec::new();
            if key_name.eq_ignore_ascii_case("authorization") {
                reviews.push("check whether the key needs a `prefix:` such as `Bearer `".into());
            }
            (
                Auth::ApiKey {
                    location: if s["in"] == "query" {
                        KeyLocation::Query
                    } else {
                        KeyLocation::Header
                    },
                    name: key_name,
                    prefix: None,
                    credential: "api_key".into(),
                },
                reviews,
            )
        }
        _ => (
            Auth::Basic {
                username: "username".into(),
                password: Some("password".into()),
            },
            if s["type"] == "http" && s["scheme"].as_str() == Some("basic") {
                Vec::new()
            } else {
                vec![format!(
                    "`{name}` ({}) is not understood; basic auth is assumed",
                    describe(s)
                )]
            },
        ),
    }
}

/// JSON unless most write bodies are forms.
pub fn body_encoding(doc: &Document, writes: &[&Value]) -> BodyEncoding {
    let (mut json, mut form) = (0, 0);
    for op in writes {
        match doc.request_body(op).map(|b| b.0) {
            Some("application/x-www-form-urlencoded") => form += 1,
            Some(_) => json += 1,
            None => {}
        }
    }
    if form > json {
        BodyEncoding::Form
    } else {
        BodyEncoding::Json
    }
}

/// A named value inside a schema, found by walking its properties.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// Dotted path (`paging.next.after`, `errors.0.code`).
    pub path: String,
    pub name: String,
    pub kind: Kind,
    pub format: Option<String>,
    pub depth: usize,
}

/// Every property of `schema` down to `depth` levels, arrays entered at
/// their first item (`errors.0`).
pub fn leaves(doc: &Document, schema: &Value, depth: usize, skip: &str) -> Vec<Leaf> {
    let mut out = Vec::new();
    walk(doc, schema, depth, "", 1, skip, &mut out);
    out
}

fn walk(
    doc: &Document,
    schema: &Value,
    left: usize,
    prefix: &str,
    depth: usize,
    skip: &str,
    out: &mut Vec<Leaf>,
) {
    let v = view(doc, schema);
    for (name, s) in &v.properties {
        if depth == 1 && *name == skip {
            continue;
        }
        let pv = view(doc, s);
        let path = format!("{prefix}{name}");
        out.push(Leaf {
            path: path.clone(),
            name: name.to_string(),
            kind: pv.kind,
            format: pv.format.map(str::to_string),
            depth,
        });
        if left > 1 {
            if pv.is_object() {
                walk(doc, s, left - 1, &format!("{path}."), depth + 1, skip, out);
            } else if let Some(items) = pv.items.filter(|_| pv.kind == Kind::Array) {
                walk(
                    doc,
                    items,
                    left - 1,
                    &format!("{path}.0."),
                    depth + 1,
                    skip,
                    out,
                );
            }
        }
    }
}

/// Query parameters naming the page size, most common first.
const SIZE_PARAMS: &[&str] = &[
    "limit",
    "per_page",
    "page_size",
    "pageSize",
    "perPage",
    "size",
    "count",
    "max_results",
    "maxResults",
    "pagesize",
    "$top",
    "top",
];

/// The pagination of one list endpoint.
pub fn pagination(
    doc: &Document,
    path: &str,
    list: &Value,
    records: &str,
    pk: &str,
) -> Guess<Option<Pagination>> {
    let query: Vec<&Value> = doc
        .parameters(path, list)
        .into_iter()
        .filter(|p| p["in"] == "query")
        .collect();
    let has = |n: &str| query.iter().any(|p| p["name"] == n);
    let response = doc.success_schema(list).cloned().unwrap_or(Value::Null);
    let leaves = leaves(doc, &response, 3, records);
    let mut reviews = Vec::new();
    let (common, mut size_reviews) = page_common(doc, path, list);
    let flag = leaves.iter().find(|l| {
        l.depth == 1 && matches!(l.name.as_str(), "has_more" | "hasMore") && l.kind == Kind::Boolean
    });
    let kind = if has("starting_after") || has("after") && flag.is_some() {
        let param = if has("starting_after") {
            "starting_after"
        } else {
            "after"
        };
        let stop = flag.map(|l| StopCondition::FlagFalse {
            path: l.path.clone(),
        });
        if stop.is_none() {
            reviews.push(
                "no `has_more` flag in the list response: paging stops at an empty page".into(),
            );
        }
        Some(Pagination::RecordCursor {
            param: param.into(),
            field: pk.into(),
            common: PageCommon { stop, ..common },
        })
    } else if let Some((param, path)) = response_cursor(&leaves, &has) {
        Some(Pagination::ResponseCursor {
            param,
            path,
            in_body: false,
            common,
        })
    } else if let Some(l) = next_url(&leaves) {
        Some(Pagination::NextUrl {
            path: l.path.clone(),
            common,
        })
    } else if doc
        .response_headers(list)
        .iter()
        .any(|h| h.eq_ignore_ascii_case("link"))
    {
        Some(Pagination::LinkHeader { common })
    } else if let Some(param) = ["offset", "skip", "start"].into_iter().find(|p| has(p)) {
        Some(Pagination::Offset {
            param: param.into(),
            common,
        })
    } else if let Some(param) = ["page", "page_number", "pageNumber"]
        .into_iter()
        .find(|p| has(p))
    {
        reviews.push("check that the first page is number 1 (`first_page:`)".into());
        Some(Pagination::PageNumber {
            param: param.into(),
            first_page: 1,
            common,
        })
    } else {
        size_reviews.clear();
        None
    };
    reviews.extend(size_reviews);
    (kind, reviews)
}

/// The size parameter, its maximum (from the schema or the description),
/// and the page size asked for.
fn page_common(doc: &Document, path: &str, list: &Value) -> Guess<PageCommon> {
    let Some((name, param)) = SIZE_PARAMS
        .iter()
        .find_map(|n| doc.query_param(path, list, n).map(|p| (*n, p)))
    else {
        return (PageCommon::default(), Vec::new());
    };
    let schema = view(doc, &param["schema"]);
    let from_text = param["description"]
        .as_str()
        .or(schema.description)
        .and_then(max_in_text);
    let max = schema
        .maximum
        .or(from_text)
        .and_then(|m| u32::try_from(m).ok());
    let mut reviews = Vec::new();
    if max.is_none() {
        reviews.push(format!(
            "the document states no maximum for `{name}`: 100 is assumed (set the API's maximum)"
        ));
    }
    let common = PageCommon {
        size_param: Some(name.into()),
        page_size: Some(max.unwrap_or(100)),
        max_page_size: max,
        ..PageCommon::default()
    };
    (common, reviews)
}

/// A maximum stated in words: "between 1 and 100", "up to 100", "maximum
/// of 100", "at most 100".
fn max_in_text(text: &str) -> Option<u64> {
    let re = regex::Regex::new(
        r"(?i)(?:between\s+\d+\s+and|up to|maximum(?:\s+(?:of|is|value is))?|max(?:imum)?\s*[:=]|at most|no more than|cannot exceed|not exceed)\s+(\d+)",
    )
    .expect("the pattern compiles");
    re.captures(text)?.get(1)?.as_str().parse().ok()
}

/// A string in the response that a query parameter sends back: the cursor.
fn response_cursor(leaves: &[Leaf], has: &dyn Fn(&str) -> bool) -> Option<(String, String)> {
    let cursorish = |p: &str| {
        let p = p.to_ascii_lowercase();
        [
            "next",
            "cursor",
            "after",
            "token",
            "offset",
            "paging",
            "continuation",
        ]
        .iter()
        .any(|w| p.contains(w))
    };
    let mut found: Vec<(String, String)> = Vec::new();
    for l in leaves
        .iter()
        .filter(|l| l.kind == Kind::String && cursorish(&l.path))
    {
        let bare = l
            .name
            .strip_prefix("next_")
            .or_else(|| l.name.strip_prefix("next"))
            .unwrap_or(&l.name);
        let mut bare_lower = bare.to_string();
        if let Some(c) = bare_lower.get(..1) {
            bare_lower = format!("{}{}", c.to_ascii_lowercase(), &bare[1..]);
        }
        for param in [l.name.as_str(), bare, bare_lower.as_str()] {
            if !param.is_empty() && has(param) {
                found.push((param.to_string(), l.path.clone()));
                break;
            }
        }
    }
    found.sort_by_key(|(_, path)| !path.contains("next"));
    found.into_iter().next()
}

/// A string in the response holding the next page's URL.
fn next_url(leaves: &[Leaf]) -> Option<&Leaf> {
    leaves.iter().find(|l| {
        let name = l.name.to_ascii_lowercase();
        let path = l.path.to_ascii_lowercase();
        l.kind == Kind::String
            && (matches!(
                name.as_str(),
                "next"
                    | "nexturl"
                    | "next_url"
                    | "nextrecordsurl"
                    | "next_page_url"
                    | "nextpageurl"
                    | "nextlink"
                    | "next_link"
                    | "@odata.nextlink"
            ) || path.ends_with("next.href")
                || path.ends_with("links.next"))
    })
}

/// The error body most operations declare, read for its message, code,
/// offending field and request id.
pub fn errors(doc: &Document, ops: &[&Value]) -> Guess<ErrorDecoding> {
    let mut counts: BTreeMap<String, (usize, usize, &Value)> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        for (code, response) in op["responses"].as_object().into_iter().flatten() {
            let is_error = code == "default" || code.starts_with('4') || code.starts_with('5');
            if let Some(schema) = doc.response_schema(response).filter(|_| is_error) {
                let e = counts.entry(schema.to_string()).or_insert((0, i, schema));
                e.0 += 1;
            }
        }
    }
    let best = counts
        .into_values()
        .max_by_key(|(n, first, _)| (*n, std::cmp::Reverse(*first)));
    let mut reviews = Vec::new();
    let leaves = best.map(|b| leaves(doc, b.2, 3, "")).unwrap_or_default();
    let pick = |names: &[&str]| -> Option<&Leaf> {
        leaves
            .iter()
            .filter(|l| {
                l.kind == Kind::String || l.kind == Kind::Unknown || l.kind == Kind::Integer
            })
            .filter_map(|l| {
                names
                    .iter()
                    .position(|n| *n == l.name)
                    .map(|rank| (l, rank))
            })
            .min_by_key(|(l, rank)| (l.depth, *rank))
            .map(|(l, _)| l)
    };
    let message = pick(&[
        "message",
        "error_description",
        "detail",
        "title",
        "error",
        "msg",
    ]);
    let code = pick(&["code", "errorCode", "error_code", "category", "type"]);
    let field = pick(&[
        "param",
        "field",
        "in",
        "fields",
        "property",
        "parameter",
        "pointer",
        "target",
    ]);
    let request_id = pick(&[
        "correlationId",
        "request_id",
        "requestId",
        "trace_id",
        "traceId",
    ]);
    let parent = |p: &str| {
        p.rsplit_once('.')
            .map_or(String::new(), |(a, _)| a.to_string())
    };
    let code_fallbacks = code
        .map(|c| {
            leaves
                .iter()
                .filter(|l| l.path != c.path && parent(&l.path) == parent(&c.path))
                .filter(|l| {
                    ["code", "errorCode", "error_code", "category", "type"]
                        .contains(&l.name.as_str())
                })
                .filter(|l| l.kind == Kind::String)
                .map(|l| l.path.clone())
                .collect()
        })
        .unwrap_or_default();
    if message.is_none() {
        reviews.push(if best.is_none() {
            "the document declares no error body; `message` is assumed".into()
        } else {
            "no message found in the error body; `message` is assumed".into()
        });
    }
    reviews.push(
        "map the API's error codes to SQLSTATEs under `codes:` (unmapped 4xx answers become 23514)"
            .into(),
    );
    let headers: Vec<&str> = ops.iter().flat_map(|op| doc.response_headers(op)).collect();
    let request_id_header = headers
        .iter()
        .find(|h| {
            let h = h.to_ascii_lowercase();
            h == "request-id" || h == "x-request-id" || h.ends_with("-request-id")
        })
        .map(|h| h.to_string());
    let decoding = ErrorDecoding {
        message: message.map_or_else(|| "message".into(), |l| l.path.clone()),
        code: code.map(|l| l.path.clone()),
        code_fallbacks,
        field: field.map(|l| l.path.clone()),
        request_id_header,
        request_id: request_id.map(|l| l.path.clone()),
        status: BTreeMap::new(),
        codes: BTreeMap::new(),
    };
    (decoding, reviews)
}

/// A guessed rate limit, with the headers the responses declare.
pub fn rate_limit(doc: &Document, ops: &[&Value]) -> Guess<RateLimit> {
    let headers: Vec<&str> = ops.iter().flat_map(|op| doc.response_headers(op)).collect();
    let find = |word: &str| {
        headers
            .iter()
            .find(|h| {
                let h = h.to_ascii_lowercase().replace("rate-limit", "ratelimit");
                h.contains("ratelimit") && h.ends_with(word)
            })
            .map(|h| h.to_string())
    };
    let limit = RateLimit {
        requests: 10,
        per: "1s".parse().expect("a duration"),
        burst: None,
        write_share: 0.2,
        per_param: None,
        retry_after_header: Some("Retry-After".into()),
        remaining_header: find("remaining"),
        reset_header: find("reset"),
        extra_statuses: Vec::new(),
        endpoints: Vec::new(),
    };
    (
        limit,
        vec!["the document states no rate limit: 10 requests per second is a placeholder; set the API's documented limit".into()],
    )
}

/// An `Idempotency-Key` header parameter of a create operation.
pub fn idempotency(doc: &Document, creates: &[(&str, &Value)]) -> Option<Idempotency> {
    creates.iter().find_map(|(path, op)| {
        doc.parameters(path, op).into_iter().find_map(|p| {
            let name = p["name"].as_str()?;
            (p["in"] == "header" && name.eq_ignore_ascii_case("idempotency-key")).then(|| {
                Idempotency {
                    header: name.to_string(),
                }
            })
        })
    })
}

/// Query parameters that filter a list to records changed since a time.
const SINCE_PARAMS: &[&str] = &[
    "updated_since",
    "updatedSince",
    "modified_since",
    "modifiedSince",
    "changed_since",
    "updated_after",
    "updatedAfter",
    "last_modified_since",
    "since",
];

/// Fields holding a record's last update time.
const UPDATE_MARKERS: &[&str] = &[
    "updated_at",
    "updatedAt",
    "updated",
    "modified_at",
    "modifiedAt",
    "last_modified",
    "lastModified",
    "lastModifiedDate",
    "date_modified",
    "modified",
];

/// The event type names the document lists (`customer.created`,
/// `invoice.paid`, ...): the values of every string enum holding a
/// `<name>.created` among dotted names, as a webhook endpoint's
/// `enabled_events` does. Empty when the document lists none.
pub fn event_types(doc: &Document) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![&doc.root];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(values) = m.get("enum").and_then(Value::as_array) {
                    let names: Vec<&str> = values
                        .iter()
                        .filter_map(Value::as_str)
                        .filter(|s| is_event_type(s))
                        .collect();
                    if names.iter().any(|n| n.ends_with(".created")) {
                        out.extend(names.into_iter().map(String::from));
                    }
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    out
}

/// `customer.subscription.created`: lowercase words joined by dots.
fn is_event_type(s: &str) -> bool {
    s.contains('.')
        && s.split('.').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// `updated_since` when the list filters on an update time the record has.
pub fn incremental(
    doc: &Document,
    path: &str,
    list: &Value,
    fields: &[Field],
) -> Guess<Option<Incremental>> {
    let param = SINCE_PARAMS
        .iter()
        .find_map(|n| doc.query_param(path, list, n).map(|p| (*n, p)));
    let marker = UPDATE_MARKERS.iter().find_map(|m| {
        fields
            .iter()
            .find(|f| f.name == *m && f.ty == FieldType::Timestamp)
    });
    let (Some((name, p)), Some(field)) = (param, marker) else {
        return (None, Vec::new());
    };
    let since_format = if view(doc, &p["schema"]).kind == Kind::Integer {
        TimeFormat::UnixSeconds
    } else {
        field.time_format.unwrap_or_default()
    };
    (
        Some(Incremental::UpdatedSince {
            field: field.name.clone(),
            since_param: Some(name.into()),
            since_format,
            endpoint: None,
            inclusive: false,
        }),
        vec![format!(
            "check whether `{name}` includes records updated at that very time (then `inclusive: true`)"
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxima_in_words() {
        assert_eq!(
            max_in_text(
                "A limit on the number of objects. Limit can range between 1 and 100, and the default is 10."
            ),
            Some(100)
        );
        assert_eq!(max_in_text("Page size, up to 250."), Some(250));
        assert_eq!(
            max_in_text("The maximum number of results to display per page."),
            None
        );
    }
}
