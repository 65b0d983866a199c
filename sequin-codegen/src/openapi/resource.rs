//! Resources: the list endpoint of a kind of record and the endpoints that
//! share its path (`GET /v1/customers`, `GET|POST|DELETE
//! /v1/customers/{customer}`, `POST /crm/v3/objects/tickets/batch/create`).
//!
//! A list endpoint is a GET on a path not ending in a placeholder whose
//! success response is an array of objects, or an object holding one under
//! a records key (`data`, `results`, ..., or the path's last segment) or
//! beside paging hints (`has_more`, `paging`, `next`, ...).

use sequin_spec::model::Method;
use sequin_spec::naming::table_name;
use serde_json::Value;

use super::document::Document;
use super::schema::{Kind, view};

/// Keys under which list responses hold their records.
const RECORD_KEYS: &[&str] = &[
    "data", "results", "items", "records", "values", "entries", "elements", "content",
];

/// Keys that show a response is one page of a longer list.
const PAGING_HINTS: &[&str] = &[
    "has_more",
    "hasMore",
    "paging",
    "next",
    "next_url",
    "nextUrl",
    "nextLink",
    "next_cursor",
    "nextCursor",
    "next_page_token",
    "nextPageToken",
    "cursor",
    "total_count",
    "totalSize",
];

/// One resource of the document.
#[derive(Clone, Debug)]
pub struct Resource<'a> {
    /// The list path (`/v1/customers`).
    pub collection: String,
    pub list: &'a Value,
    /// Where the records sit in the list response (empty: the response is
    /// the array).
    pub records: String,
    /// The schema of one record.
    pub record: &'a Value,
    /// The single-record path (`/v1/customers/{customer}`) and its
    /// placeholder (`customer`).
    pub item: Option<(String, String)>,
    pub get: Option<&'a Value>,
    pub create: Option<&'a Value>,
    pub update: Option<(Method, &'a Value)>,
    pub delete: Option<&'a Value>,
    pub batch_create: Option<(String, &'a Value)>,
    pub batch_update: Option<(String, &'a Value)>,
    pub batch_delete: Option<(String, &'a Value)>,
    /// A `POST <list>/search` endpoint, if any.
    pub search: Option<String>,
    /// Placeholders of the list path: a resource nested under a parent.
    pub parents: Vec<String>,
    /// Query parameters the list requires (search endpoints).
    pub required_query: Vec<String>,
    /// Table name: the singular snake_case of the resource.
    pub table: String,
    /// The API's name: the record's `object` enum, or the path segment.
    pub api_name: String,
    /// The last literal segment of the list path.
    pub segment: String,
}

impl Resource<'_> {
    /// Drafted unless asked for: top level, and listable without arguments.
    pub fn is_plain(&self) -> bool {
        self.parents.is_empty() && self.required_query.is_empty()
    }

    /// Whether `name` designates this resource: its table name, API name or
    /// path segment, singular or plural, ignoring case, `_`, `-` and `.`.
    pub fn answers_to(&self, name: &str) -> bool {
        let want = squash(name);
        [
            &self.table,
            &self.api_name,
            &self.segment,
            &singular(&self.segment),
        ]
        .iter()
        .any(|n| squash(n) == want)
    }

    /// Whether two names are the same ignoring case, `_`, `-` and `.`.
    pub fn same_name(a: &str, b: &str) -> bool {
        squash(a) == squash(b)
    }
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Everything list-shaped in a document.
#[derive(Clone, Debug)]
pub struct Survey<'a> {
    pub resources: Vec<Resource<'a>>,
}

impl Survey<'_> {
    /// List endpoints whose path has no placeholder.
    pub fn top_level(&self) -> usize {
        self.resources
            .iter()
            .filter(|r| r.parents.is_empty())
            .count()
    }

    /// Top-level list endpoints that need query parameters (searches).
    pub fn needing_query(&self) -> usize {
        self.resources
            .iter()
            .filter(|r| r.parents.is_empty() && !r.required_query.is_empty())
            .count()
    }

    /// List endpoints under a parent's id (`/v1/customers/{customer}/sources`).
    pub fn nested(&self) -> usize {
        self.resources.len() - self.top_level()
    }
}

/// Finds every resource of `doc`, in path order.
pub fn survey(doc: &Document) -> Survey<'_> {
    let mut resources = Vec::new();
    for (path, item) in doc.paths() {
        // A path ending in a placeholder addresses one record.
        if path.trim_end_matches('/').ends_with('}') {
            continue;
        }
        let Some(list) = item.get("get").filter(|op| op.is_object()) else {
            continue;
        };
        let segment = last_literal(path).to_string();
        let Some(schema) = doc.success_schema(list) else {
            continue;
        };
        let Some((records, record)) = records_of(doc, schema, &segment) else {
            continue;
        };
        resources.push(resource(doc, path, list, records, record, segment));
    }
    Survey { resources }
}

fn resource<'a>(
    doc: &'a Document,
    path: &str,
    list: &'a Value,
    records: String,
    record: &'a Value,
    segment: String,
) -> Resource<'a> {
    let item = doc.paths().find_map(|(p, _)| {
        let rest = p.strip_prefix(path)?.strip_prefix('/')?;
        let name = rest.strip_prefix('{')?.strip_suffix('}')?;
        (!name.contains('/')).then(|| (p.to_string(), name.to_string()))
    });
    let on_item = |method: &str| item.as_ref().and_then(|(p, _)| doc.operation(p, method));
    let update = [
        (Method::Patch, "patch"),
        (Method::Post, "post"),
        (Method::Put, "put"),
    ]
    .into_iter()
    .find_map(|(m, name)| on_item(name).map(|op| (m, op)));
    let sub = |suffixes: &[&str]| {
        suffixes.iter().find_map(|s| {
            let p = format!("{path}/{s}");
            doc.operation(&p, "post").map(|op| (p, op))
        })
    };
    let required_query = doc
        .parameters(path, list)
        .into_iter()
        .filter(|p| p["in"] == "query" && p["required"] == true)
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let (table, api_name) = names(doc, record, &segment, item.as_ref().map(|i| i.1.as_str()));
    Resource {
        collection: path.to_string(),
        list,
        records,
        record,
        get: on_item("get"),
        create: doc
            .operation(path, "post")
            .filter(|op| op.get("requestBody").is_some()),
        update,
        delete: on_item("delete"),
        batch_create: sub(&["batch/create"]),
        batch_update: sub(&["batch/update"]),
        batch_delete: sub(&["batch/archive", "batch/delete"]),
        search: sub(&["search"]).map(|(p, _)| p),
        item,
        parents: placeholders(path),
        required_query,
        table,
        api_name,
        segment,
    }
}

/// Where a list response holds its records, and their schema.
fn records_of<'a>(
    doc: &'a Document,
    schema: &'a Value,
    segment: &str,
) -> Option<(String, &'a Value)> {
    let v = view(doc, schema);
    let of_objects = |s: &'a Value| -> Option<&'a Value> {
        let sv = view(doc, s);
        let items = sv.items.filter(|_| sv.kind == Kind::Array)?;
        view(doc, items).is_object().then_some(items)
    };
    if v.kind == Kind::Array {
        return of_objects(schema).map(|items| (String::new(), items));
    }
    if !v.is_object() {
        return None;
    }
    for key in RECORD_KEYS.iter().copied().chain([segment]) {
        if let Some(items) = v.property(key).and_then(of_objects) {
            return Some((key.to_string(), items));
        }
    }
    let paged = v.properties.iter().any(|(n, _)| PAGING_HINTS.contains(n));
    let mut arrays = v
        .properties
        .iter()
        .filter_map(|(n, s)| of_objects(s).map(|items| (n.to_string(), items)));
    match (paged, arrays.next(), arrays.next()) {
        (true, Some(only), None) => Some(only),
        _ => None,
    }
}

/// Table and API names of a resource.
fn names(
    doc: &Document,
    record: &Value,
    segment: &str,
    item_param: Option<&str>,
) -> (String, String) {
    let rv = view(doc, record);
    let object_enum = rv
        .property("object")
        .map(|s| view(doc, s).enum_values)
        .filter(|e| e.len() == 1)
        .map(|mut e| e.remove(0));
    let api_name = object_enum.clone().unwrap_or_else(|| segment.to_string());
    let from_param = item_param.and_then(|p| {
        let stem = p
            .strip_suffix("Id")
            .or_else(|| p.strip_suffix("_id"))
            .or_else(|| p.strip_suffix("ID"))?;
        (!stem.is_empty() && stem.chars().all(char::is_alphanumeric)).then_some(stem)
    });
    let table = match (&object_enum, from_param) {
        (Some(e), _) => table_name(e),
        (None, Some(stem)) => table_name(stem),
        (None, None) => table_name(&singular(segment)),
    };
    (table, api_name)
}

/// The last segment of a path that is not a placeholder.
pub fn last_literal(path: &str) -> &str {
    path.rsplit('/')
        .find(|s| !s.is_empty() && !s.starts_with('{'))
        .unwrap_or("")
}

/// The `{placeholders}` of a path.
pub fn placeholders(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

/// English singular of a plural noun, for the common regular cases
/// (`customers`, `tax_rates`, `companies`, `addresses`, `line-items`).
pub fn singular(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    let strip = |n: usize| word[..word.len() - n].to_string();
    if lower.ends_with("ies") && word.len() > 4 {
        format!("{}y", strip(3))
    } else if ["sses", "shes", "ches", "xes", "zzes", "uses"]
        .iter()
        .any(|s| lower.ends_with(s))
    {
        strip(2)
    } else if ["ss", "us", "is"].iter().any(|s| lower.ends_with(s)) {
        word.to_string()
    } else if lower.ends_with('s') && word.len() > 1 {
        strip(1)
    } else {
        word.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singulars() {
        for (plural, one) in [
            ("customers", "customer"),
            ("tax_rates", "tax_rate"),
            ("companies", "company"),
            ("addresses", "address"),
            ("line-items", "line-item"),
            ("invoiceitems", "invoiceitem"),
            ("statuses", "status"),
            ("boxes", "box"),
            ("status", "status"),
            ("data", "data"),
        ] {
            assert_eq!(singular(plural), one, "{plural}");
        }
    }
}
