//! Checks connector specs field by field against the APIs' own published
//! descriptions in `../shared/reference` (Stripe's OpenAPI and fixtures,
//! HubSpot's OpenAPI), so a spec cannot drift from the real API unnoticed.
//!
//! Stripe: every declared field is a top-level property of the object's
//! schema with a compatible type; every property is declared or listed in
//! [`STRIPE_OMITTED`] with the reason; `access` follows the create and update
//! request bodies (exceptions in [`STRIPE_ACCESS_EXCEPTIONS`]);
//! `required_on_create`, enums, `max_length` and non-nullability agree with
//! the OpenAPI; every endpoint exists with its method and query parameters;
//! the official fixtures decode. HubSpot: every CRM object of HubSpot's
//! reference files is in the spec, each object's record shape (custom
//! objects' too) matches `SimplePublicObject` of its own OpenAPI file, and
//! its endpoints, bodies, paging, error and properties paths exist there;
//! custom objects are read from the schemas API as `v3-schemas.json` says;
//! owners and pipelines agree with their own files field by field.
//!
//! Every check collects problems instead of stopping at the first, so one
//! run lists everything that disagrees.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sequin_spec::Connector;
use sequin_spec::model::{Access, Endpoint, Field, FieldType, Incremental, Method, TimeFormat};
use sequin_spec::record::{Column, decode_row};
use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// Stripe properties deliberately not declared as fields: (object,
/// property, reason). The test also requires each to be absent from the
/// official fixture, which shows what Stripe returns by default.
const STRIPE_OMITTED: &[(&str, &str, &str)] = &[
    (
        "customer",
        "sources",
        "embedded list of another resource, returned only when expanded",
    ),
    (
        "customer",
        "subscriptions",
        "embedded list of another resource, returned only when expanded",
    ),
    (
        "customer",
        "tax_ids",
        "embedded list of another resource, returned only when expanded",
    ),
    ("customer", "cash_balance", "returned only when expanded"),
    (
        "customer",
        "invoice_credit_balance",
        "returned only when expanded",
    ),
    ("customer", "tax", "returned only when expanded"),
    ("price", "currency_options", "returned only when expanded"),
    ("price", "tiers", "returned only when expanded"),
];

/// Fields whose access deliberately differs from the create/update body
/// rule: (object, field, access, reason).
const STRIPE_ACCESS_EXCEPTIONS: &[(&str, &str, Access, &str)] = &[
    (
        "invoiceitem",
        "price",
        Access::ReadOnly,
        "read as the whole price object, written as its id, which a json column cannot carry",
    ),
    (
        "issuing.card",
        "cardholder",
        Access::ReadOnly,
        "read as the whole cardholder object, written as its id, which a json column cannot carry",
    ),
    (
        "promotion_code",
        "coupon",
        Access::ReadOnly,
        "read as the whole coupon object, written as its id, which a json column cannot carry",
    ),
    (
        "topup",
        "source",
        Access::ReadOnly,
        "read as the whole source object, written as its id, which a json column cannot carry",
    ),
    (
        "subscription",
        "billing_cycle_anchor",
        Access::CreateOnly,
        "update takes only `now`/`unchanged`, which a timestamp column cannot carry",
    ),
    (
        "charge",
        "application_fee",
        Access::ReadOnly,
        "the create parameter of that name is a legacy fee amount; the field is the fee's id",
    ),
];

/// Primary keys the OpenAPI does not mark as required: (object, reason).
/// Synced records always have one; the rule for other non-nullable fields
/// still applies.
const STRIPE_KEYS_NOT_REQUIRED: &[(&str, &str)] = &[(
    "invoice",
    "only upcoming-invoice previews lack an id, and lists never return them",
)];

/// Stripe DELETE endpoints deliberately not mapped to SQL DELETE.
const STRIPE_UNMAPPED_DELETES: &[(&str, &str)] = &[(
    "subscription",
    "DELETE cancels: the subscription stays (status canceled) and would sync back",
)];

/// `SimplePublicObject` properties that are not fields of the HubSpot spec:
/// (property, reason).
const HUBSPOT_OMITTED: &[(&str, &str)] = &[
    (
        "properties",
        "spread into one field per property (`properties.<name>`)",
    ),
    (
        "propertiesWithHistory",
        "returned only when asked for with propertiesWithHistory=",
    ),
    (
        "objectWriteTraceId",
        "an echo of a write request's trace id, not record data",
    ),
    (
        "url",
        "a link to the record in HubSpot's app, not record data",
    ),
    ("warnings", "per-response diagnostics, not record data"),
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference(rel: &str) -> PathBuf {
    repo_root().join("../shared/reference").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn connector(name: &str) -> Connector {
    let path = repo_root().join("connectors").join(format!("{name}.yaml"));
    let located = sequin_spec::yaml::parse(&read(&path))
        .unwrap_or_else(|e| panic!("{}:{}:{}: {e}", path.display(), e.span.line, e.span.col));
    serde_json::from_value(located.value)
        .unwrap_or_else(|e| panic!("{} does not deserialize: {e}", path.display()))
}

/// YAML to JSON; mapping keys that are not strings (response codes) become
/// their text.
fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) | Yaml::Real(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => format!("{other:?}"),
                };
                m.insert(key, yaml_to_json(v));
            }
            Value::Object(m)
        }
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}

/// Stripe's OpenAPI, parsed once for all tests of this binary.
fn stripe_openapi() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let text = read(&reference("stripe/spec3.2023-09-12.yaml"));
        let docs = YamlLoader::load_from_str(&text).expect("Stripe OpenAPI parses");
        yaml_to_json(&docs[0])
    })
}

fn stripe_fixtures() -> Value {
    serde_json::from_str(&read(&reference("stripe/fixtures3.2023-09-12.json")))
        .expect("Stripe fixtures parse")
}

/// HubSpot object type ids, which its API accepts in place of the names
/// (`/crm/v3/objects/0-3` is `/crm/v3/objects/deals`); the deals OpenAPI
/// spells its paths with the id, the spec with the documented name.
const HUBSPOT_OBJECT_TYPE_IDS: &[(&str, &str)] =
    &[("0-1", "contacts"), ("0-2", "companies"), ("0-3", "deals")];

/// The CRM objects HubSpot publishes an objects API file for (`v3-<name>.json`,
/// with `-` for `_`), all of which the spec syncs.
const HUBSPOT_CRM_OBJECTS: &[&str] = &[
    "contacts",
    "companies",
    "deals",
    "tickets",
    "products",
    "line_items",
    "quotes",
    "calls",
    "emails",
    "meetings",
    "notes",
    "tasks",
];

/// The spec's CRM objects (served by the objects API, records with
/// `properties`).
fn hubspot_crm_objects(spec: &Connector) -> Vec<&sequin_spec::model::Object> {
    spec.objects
        .iter()
        .filter(|o| o.endpoints.list.path.starts_with("/crm/v3/objects/"))
        .collect()
}

/// Every kind of HubSpot record with its OpenAPI file: the CRM objects, and
/// the custom objects' template (their fixed fields, endpoints and
/// strategies, as an object named `{object}`) against the generic objects
/// API (`v3-objects.json`).
fn hubspot_record_objects(spec: &Connector) -> Vec<(sequin_spec::model::Object, Value)> {
    let mut out: Vec<_> = hubspot_crm_objects(spec)
        .into_iter()
        .map(|o| (o.clone(), hubspot_object_openapi(&o.api_name)))
        .collect();
    let d = spec
        .discovered_objects
        .as_ref()
        .expect("custom objects are discovered");
    let custom = sequin_spec::model::Object {
        name: "custom_object".into(),
        api_name: "{object}".into(),
        description: None,
        primary_key: d.primary_key.clone(),
        endpoints: d.endpoints.clone(),
        pagination: d.pagination.clone(),
        incremental: d.incremental.clone(),
        deletes: d.deletes.clone(),
        max_rows_per_write: d.max_rows_per_write,
        fields: d.fixed_fields.clone(),
        discovered_fields: None,
        parent: None,
    };
    out.push((custom, hubspot_openapi("v3-objects.json")));
    out
}

/// An object's OpenAPI file (`v3-line-items.json` for `line_items`).
fn hubspot_object_openapi(api_name: &str) -> Value {
    hubspot_openapi(&format!("v3-{}.json", api_name.replace('_', "-")))
}

fn hubspot_openapi(file: &str) -> Value {
    let mut doc: Value = serde_json::from_str(&read(&reference(&format!("hubspot/{file}"))))
        .unwrap_or_else(|e| panic!("hubspot/{file}: {e}"));
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        let renamed: Map<String, Value> = std::mem::take(paths)
            .into_iter()
            .map(|(path, item)| {
                let path = HUBSPOT_OBJECT_TYPE_IDS.iter().fold(path, |p, (id, name)| {
                    p.replace(&format!("/objects/{id}"), &format!("/objects/{name}"))
                });
                (path, item)
            })
            .collect();
        *paths = renamed;
    }
    doc
}

/// Follows `$ref`s within `doc`.
fn deref<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = r.strip_prefix('#').expect("local $ref");
        schema = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    schema
}

/// Whether a dot path (as specs write them) exists in a schema: segments
/// are properties, numeric segments index arrays; `$ref`, `anyOf`, `oneOf`
/// and `allOf` are followed.
fn schema_has_path(doc: &Value, schema: &Value, path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    let schema = deref(doc, schema);
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            return alts.iter().any(|a| schema_has_path(doc, a, path));
        }
    }
    let (seg, rest) = path.split_once('.').unwrap_or((path, ""));
    let next = if seg.parse::<usize>().is_ok() {
        schema.get("items")
    } else {
        schema.get("properties").and_then(|p| p.get(seg))
    };
    next.is_some_and(|n| schema_has_path(doc, n, rest))
}

/// The OpenAPI path matching a spec path template: same segments, where an
/// OpenAPI placeholder matches any segment (a spec placeholder, or a value
/// such as `contacts` for `{objectType}`). The closest match wins: the one
/// with the most literal segments in common. A query string is ignored.
fn openapi_path<'a>(doc: &'a Value, spec_path: &str) -> Option<(&'a str, &'a Value)> {
    let spec_path = spec_path.split('?').next().unwrap_or(spec_path);
    let want: Vec<&str> = spec_path.split('/').collect();
    doc["paths"]
        .as_object()?
        .iter()
        .filter_map(|(p, item)| {
            let have: Vec<&str> = p.split('/').collect();
            let fits = have.len() == want.len()
                && have
                    .iter()
                    .zip(&want)
                    .all(|(h, w)| h == w || h.starts_with('{'));
            let literal = have.iter().zip(&want).filter(|(h, w)| h == w).count();
            fits.then_some((literal, p.as_str(), item))
        })
        .max_by_key(|(literal, _, _)| *literal)
        .map(|(_, p, item)| (p, item))
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "get",
        Method::Post => "post",
        Method::Put => "put",
        Method::Patch => "patch",
        Method::Delete => "delete",
    }
}

/// The operation an endpoint calls, or a problem.
fn operation<'a>(
    doc: &'a Value,
    e: &Endpoint,
    what: &str,
    problems: &mut Vec<String>,
) -> Option<&'a Value> {
    let Some((path, item)) = openapi_path(doc, &e.path) else {
        problems.push(format!("{what}: path {} is not in the OpenAPI", e.path));
        return None;
    };
    let op = item.get(method_name(e.method));
    if op.is_none() {
        problems.push(format!(
            "{what}: {path} has no {:?} in the OpenAPI",
            e.method
        ));
    }
    op
}

/// Checks that every query parameter of an endpoint is a parameter of the
/// operation, and that its value is allowed when the parameter has an enum.
fn check_query(
    doc: &Value,
    op: &Value,
    e: &Endpoint,
    extra: &[&str],
    what: &str,
    problems: &mut Vec<String>,
) {
    let params: Vec<&Value> = op["parameters"]
        .as_array()
        .map(|ps| ps.iter().map(|p| deref(doc, p)).collect())
        .unwrap_or_default();
    let names: Vec<&str> = e
        .query
        .keys()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect();
    for name in names {
        let Some(param) = params.iter().find(|p| p["name"] == name) else {
            problems.push(format!(
                "{what}: query parameter `{name}` is not a parameter of {}",
                e.path
            ));
            continue;
        };
        if let (Some(allowed), Some(value)) =
            (param["schema"]["enum"].as_array(), e.query.get(name))
            && !allowed.iter().any(|a| a == value)
        {
            problems.push(format!(
                "{what}: `{name}={value}` is not one of {allowed:?}"
            ));
        }
    }
}

/// The form-encoded request body schema of an operation (Stripe).
fn form_body<'a>(doc: &'a Value, op: Option<&'a Value>) -> Option<&'a Value> {
    op.and_then(|op| op.pointer("/requestBody/content/application~1x-www-form-urlencoded/schema"))
        .map(|s| deref(doc, s))
}

/// The JSON request body schema of an operation (HubSpot).
fn json_body<'a>(doc: &'a Value, op: &'a Value) -> Option<&'a Value> {
    op.pointer("/requestBody/content/application~1json/schema")
        .map(|s| deref(doc, s))
}

/// The JSON schema of an operation's success response.
fn json_response<'a>(doc: &'a Value, op: &'a Value) -> Option<&'a Value> {
    let responses = op["responses"].as_object()?;
    let ok = responses.iter().find(|(code, _)| code.starts_with('2'))?.1;
    ok.pointer("/content/application~1json/schema")
        .map(|s| deref(doc, s))
}

fn body_param<'a>(body: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    body.and_then(|b| b["properties"].get(name))
}

/// Column types that can faithfully hold a Stripe property.
fn stripe_types(doc: &Value, p: &Value) -> Vec<FieldType> {
    if let Some(alts) = p["anyOf"].as_array() {
        // An expandable reference: an id string, or the object when expanded.
        return if alts.iter().any(|a| a["type"] == "string") {
            vec![FieldType::String]
        } else {
            vec![FieldType::Json]
        };
    }
    if p.get("$ref").is_some() {
        return vec![FieldType::Json];
    }
    if p.get("type").is_none() && p.get("x-expansionResources").is_some() {
        return vec![FieldType::String];
    }
    match (p["type"].as_str(), p["format"].as_str()) {
        (Some("integer"), Some("unix-time")) => vec![FieldType::Timestamp],
        (Some("integer"), _) => vec![FieldType::Integer],
        (Some("string"), Some("decimal")) => vec![FieldType::Decimal],
        (Some("string"), _) => vec![FieldType::String],
        (Some("number"), _) => vec![FieldType::Decimal, FieldType::Float],
        (Some("boolean"), _) => vec![FieldType::Boolean],
        (Some("array"), _) => {
            if deref(doc, &p["items"])["type"] == "string" {
                vec![FieldType::StringArray, FieldType::Json]
            } else {
                vec![FieldType::Json]
            }
        }
        (Some("object"), _) => vec![FieldType::Json],
        _ => vec![],
    }
}

/// String enums of a parameter's alternatives, without the `""` that means
/// "unset"; None when the parameter has no enum.
fn param_enum(p: &Value) -> Option<BTreeSet<String>> {
    let alts: Vec<&Value> = match p["anyOf"].as_array() {
        Some(a) => a.iter().collect(),
        None => vec![p],
    };
    let mut out: Option<BTreeSet<String>> = None;
    for alt in alts {
        if let Some(values) = alt["enum"].as_array() {
            let values: BTreeSet<String> = values
                .iter()
                .filter_map(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect();
            if !values.is_empty() {
                out.get_or_insert_with(BTreeSet::new).extend(values);
            }
        }
    }
    out
}

/// maxLength of a parameter's string alternatives (not the `""` one).
fn param_max_lengths(p: &Value) -> Vec<u64> {
    let alts: Vec<&Value> = match p["anyOf"].as_array() {
        Some(a) => a.iter().collect(),
        None => vec![p],
    };
    alts.iter()
        .filter(|a| a["type"] == "string" && a["enum"] != serde_json::json!([""]))
        .filter_map(|a| a["maxLength"].as_u64())
        .collect()
}

fn fmt_access(a: Access) -> &'static str {
    match a {
        Access::ReadOnly => "read_only",
        Access::CreateOnly => "create_only",
        Access::UpdateOnly => "update_only",
        Access::Writable => "writable",
    }
}

fn report(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// A child object's link to its parent agrees with the OpenAPI: the
/// parent's list endpoint it is listed under exists with the parent's id
/// as the placeholder or query parameter (checked with the endpoints), the
/// parent's key is a string id; an embedded list (`parent.embedded`) is a
/// property of the parent's schema whose `data` items are this object's
/// schema, and the parent field, when Stripe sends it, names the parent
/// (a string or an expandable reference to the parent's schema).
fn stripe_child_link(
    doc: &Value,
    spec: &Connector,
    obj: &sequin_spec::model::Object,
    link: &sequin_spec::model::Parent,
    problems: &mut Vec<String>,
) {
    let o = obj.api_name.as_str();
    let Some(parent) = spec.object(&link.object) else {
        problems.push(format!("{o}: parent `{}` is not an object", link.object));
        return;
    };
    let parent_schema = &doc["components"]["schemas"][parent.api_name.as_str()];
    if let Some(field) = &link.embedded {
        let list = deref(doc, &parent_schema["properties"][field.as_str()]);
        let items = deref(doc, &list["properties"]["data"]["items"]);
        let child_schema = &doc["components"]["schemas"][o];
        if list.is_null() {
            problems.push(format!(
                "{o}: embedded `{}.{field}` is not a property of the parent's schema",
                parent.api_name
            ));
        } else if items != child_schema {
            problems.push(format!(
                "{o}: `{}.{field}.data` does not hold {o} records",
                parent.api_name
            ));
        }
        if list["properties"].get("has_more").is_none() {
            problems.push(format!(
                "{o}: `{}.{field}` has no `has_more` to say it is complete",
                parent.api_name
            ));
        }
    }
    if let Some(p) = doc["components"]["schemas"][o]["properties"].get(link.field.as_str()) {
        let names_parent = stripe_types(doc, p).contains(&FieldType::String)
            || serde_json::to_string(p)
                .unwrap_or_default()
                .contains(&format!("#/components/schemas/{}\"", parent.api_name));
        if !names_parent {
            problems.push(format!(
                "{o}.{}: the parent field does not hold a {} id",
                link.field, parent.api_name
            ));
        }
    }
}

#[test]
fn stripe_fields_agree_with_the_openapi_schemas_and_request_bodies() {
    let doc = stripe_openapi();
    let spec = connector("stripe");
    let mut problems = Vec::new();
    assert!(spec.objects.len() >= 7, "the Stripe spec lost objects");
    for obj in &spec.objects {
        let o = obj.api_name.as_str();
        let Some(schema) = doc["components"]["schemas"].get(o) else {
            problems.push(format!("{o}: no components/schemas/{o}"));
            continue;
        };
        let props = schema["properties"].as_object().expect("object properties");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let create_op = obj
            .endpoints
            .create
            .as_ref()
            .and_then(|e| openapi_path(doc, &e.path))
            .and_then(|(_, i)| i.get("post"));
        let update_op = obj
            .endpoints
            .update
            .as_ref()
            .and_then(|e| openapi_path(doc, &e.path))
            .and_then(|(_, i)| i.get("post"));
        let create = form_body(doc, create_op);
        let update = form_body(doc, update_op);
        let create_required: Vec<&str> = create
            .and_then(|c| c["required"].as_array())
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();

        // Every property is declared, or omitted on purpose.
        let declared: BTreeSet<&str> = obj.fields.iter().map(|f| f.name.as_str()).collect();
        for name in props.keys() {
            let omitted = STRIPE_OMITTED
                .iter()
                .any(|(so, sf, _)| *so == o && sf == name);
            if !declared.contains(name.as_str()) && !omitted {
                problems.push(format!(
                    "{o}.{name}: property of the OpenAPI schema missing from the spec"
                ));
            }
            if declared.contains(name.as_str()) && omitted {
                problems.push(format!("{o}.{name}: listed as omitted but declared"));
            }
        }
        for (so, sf, _) in STRIPE_OMITTED.iter().filter(|(so, _, _)| *so == o) {
            if !props.contains_key(*sf) {
                problems.push(format!(
                    "{so}.{sf}: listed as omitted but not in the OpenAPI (stale entry)"
                ));
            }
        }

        if let Some(link) = &obj.parent {
            stripe_child_link(doc, &spec, obj, link, &mut problems);
        }
        for f in &obj.fields {
            let name = f.name.as_str();
            let Some(p) = props.get(name) else {
                // A child's parent column that Stripe does not send (an
                // invoice line has no `invoice`): Sequin sets it.
                let set_by_sequin = obj.parent.as_ref().is_some_and(|l| l.field == name)
                    && f.access == Access::ReadOnly
                    && f.ty == FieldType::String;
                if !set_by_sequin {
                    problems.push(format!(
                        "{o}.{name}: not a property of components/schemas/{o}"
                    ));
                }
                continue;
            };
            if f.path.is_some() {
                problems.push(format!(
                    "{o}.{name}: Stripe fields are top-level; no `path` expected"
                ));
            }
            let types = stripe_types(doc, p);
            if !types.contains(&f.ty) {
                problems.push(format!("{o}.{name}: type {:?} does not fit the OpenAPI's {p}, expected one of {types:?}", f.ty));
            }
            if f.ty == FieldType::Timestamp && f.time_format != Some(TimeFormat::UnixSeconds) {
                problems.push(format!("{o}.{name}: Stripe times are unix seconds"));
            }

            // Access follows the request bodies.
            let in_create = body_param(create, name);
            let in_update = body_param(update, name);
            let rule = match (in_create.is_some(), in_update.is_some()) {
                (true, true) => Access::Writable,
                (true, false) => Access::CreateOnly,
                (false, true) => Access::UpdateOnly,
                (false, false) => Access::ReadOnly,
            };
            let expected = match STRIPE_ACCESS_EXCEPTIONS
                .iter()
                .find(|(eo, ef, _, _)| *eo == o && *ef == name)
            {
                Some((_, _, access, _)) => {
                    if *access == rule {
                        problems.push(format!(
                            "{o}.{name}: access exception equals the rule (stale entry)"
                        ));
                    }
                    *access
                }
                None => rule,
            };
            if f.access != expected {
                problems.push(format!(
                    "{o}.{name}: access {} but the request bodies say {} (create: {}, update: {})",
                    fmt_access(f.access),
                    fmt_access(expected),
                    in_create.is_some(),
                    in_update.is_some()
                ));
            }
            // The parameters through which the field is actually written.
            let write_params: Vec<&Value> = match f.access {
                Access::ReadOnly => vec![],
                Access::CreateOnly => in_create.into_iter().collect(),
                Access::UpdateOnly => in_update.into_iter().collect(),
                Access::Writable => in_create.into_iter().chain(in_update).collect(),
            };

            let must_require = create_required.contains(&name)
                && matches!(f.access, Access::CreateOnly | Access::Writable);
            if f.required_on_create != must_require {
                problems.push(format!(
                    "{o}.{name}: required_on_create {} but the create body's `required` says {must_require}",
                    f.required_on_create
                ));
            }

            // Enums: the object's, and those of the parameters it is written with.
            let spec_enum: BTreeSet<String> = f.enum_values.iter().cloned().collect();
            let object_enum: BTreeSet<String> = p["enum"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            // The field's enum is what the API returns; a write parameter may
            // take fewer values (an issuing card can be read `canceled` but
            // not set to it: Stripe refuses the rest). When the object states
            // no enum, the field takes its write parameters' (checked locally).
            let param_enums: Vec<BTreeSet<String>> = if f.ty == FieldType::String {
                write_params
                    .iter()
                    .filter_map(|wp| param_enum(wp))
                    .collect()
            } else {
                vec![]
            };
            let expected_enum = if object_enum.is_empty() {
                param_enums.iter().flatten().cloned().collect()
            } else {
                object_enum.clone()
            };
            if spec_enum != expected_enum {
                problems.push(format!(
                    "{o}.{name}: enum {spec_enum:?} but the OpenAPI has {expected_enum:?} (object {object_enum:?}, write parameters {param_enums:?})"
                ));
            }
            for pe in &param_enums {
                if !pe.is_subset(&spec_enum) {
                    problems.push(format!(
                        "{o}.{name}: enum {spec_enum:?} but the request parameter takes {pe:?}"
                    ));
                }
            }

            // max_length is what the write parameters enforce.
            let expected_max = if f.ty == FieldType::String {
                write_params
                    .iter()
                    .flat_map(|wp| param_max_lengths(wp))
                    .min()
            } else {
                None
            };
            if f.max_length.map(u64::from) != expected_max {
                problems.push(format!(
                    "{o}.{name}: max_length {:?} but the write parameters allow {expected_max:?}",
                    f.max_length
                ));
            }

            let key_exception =
                name == obj.primary_key && STRIPE_KEYS_NOT_REQUIRED.iter().any(|(ko, _)| *ko == o);
            if !f.nullable && !key_exception && (!required.contains(&name) || p["nullable"] == true)
            {
                problems.push(format!(
                    "{o}.{name}: declared non-nullable but the OpenAPI lets it be absent or null"
                ));
            }
        }
        if obj.primary_key_field().is_none() {
            problems.push(format!(
                "{o}: primary key {} is not a field",
                obj.primary_key
            ));
        }
    }
    report("stripe.yaml vs OpenAPI schemas", problems);
}

#[test]
fn stripe_endpoints_exist_in_the_openapi() {
    let doc = stripe_openapi();
    let spec = connector("stripe");
    let mut problems = Vec::new();
    let paging: Vec<&str> = match &spec.pagination {
        Some(sequin_spec::model::Pagination::RecordCursor { param, common, .. }) => {
            [Some(param.as_str()), common.size_param.as_deref()]
                .into_iter()
                .flatten()
                .collect()
        }
        other => panic!("Stripe pages by record cursor, not {other:?}"),
    };
    for obj in &spec.objects {
        let o = obj.api_name.as_str();
        let e = &obj.endpoints;
        if let Some(op) = operation(doc, &e.list, &format!("{o} list"), &mut problems) {
            check_query(
                doc,
                op,
                &e.list,
                &paging,
                &format!("{o} list"),
                &mut problems,
            );
            let records = e.list.records.as_deref().unwrap_or("");
            match json_response(doc, op) {
                Some(resp)
                    if schema_has_path(doc, resp, records)
                        && schema_has_path(doc, resp, "has_more") => {}
                _ => problems.push(format!(
                    "{o} list: response has no `{records}` and `has_more`"
                )),
            }
        }
        let item_path = e
            .get
            .as_ref()
            .map(|g| g.path.clone())
            .unwrap_or_else(|| format!("{}/{{id}}", e.list.path));
        for (what, ep) in [
            ("get", &e.get),
            ("create", &e.create),
            ("update", &e.update),
            ("delete", &e.delete),
        ] {
            if let Some(ep) = ep {
                operation(doc, ep, &format!("{o} {what}"), &mut problems);
            }
        }
        // What the API offers must be offered, unless deliberately not.
        let list_item = openapi_path(doc, &e.list.path).map(|(_, i)| i);
        let item = openapi_path(doc, &item_path).map(|(_, i)| i);
        // Files are created by a multipart upload (files.stripe.com), which
        // write-through does not speak.
        let multipart_create = list_item
            .and_then(|i| i.pointer("/post/requestBody/content"))
            .is_some_and(|c| c.get("multipart/form-data").is_some());
        let api_creates = list_item.and_then(|i| i.get("post")).is_some() && !multipart_create;
        if api_creates != e.create.is_some() {
            problems.push(format!(
                "{o}: create endpoint disagrees with POST {}",
                e.list.path
            ));
        }
        if item.and_then(|i| i.get("post")).is_some() != e.update.is_some() {
            problems.push(format!(
                "{o}: update endpoint disagrees with POST {item_path}"
            ));
        }
        let api_deletes = item.and_then(|i| i.get("delete")).is_some();
        let unmapped = STRIPE_UNMAPPED_DELETES.iter().any(|(uo, _)| *uo == o);
        if api_deletes && e.delete.is_none() && !unmapped {
            problems.push(format!(
                "{o}: the API has DELETE {item_path} but the spec has no delete"
            ));
        }
        if unmapped && (!api_deletes || e.delete.is_some()) {
            problems.push(format!(
                "{o}: listed as an unmapped delete, but the API or the spec disagrees"
            ));
        }
    }

    // The events feed.
    let Some(Incremental::Events {
        endpoint,
        records,
        newer_param,
        id,
        event_type,
        created,
        object,
        pagination,
        ..
    }) = &spec.incremental
    else {
        panic!("Stripe syncs incrementally through events");
    };
    if let Some(op) = operation(doc, endpoint, "events", &mut problems) {
        let mut params = vec![newer_param.as_str()];
        if let sequin_spec::model::Pagination::RecordCursor { param, common, .. } = pagination {
            params.push(param);
            params.extend(common.size_param.as_deref());
        }
        check_query(doc, op, endpoint, &params, "events", &mut problems);
        if !json_response(doc, op).is_some_and(|r| schema_has_path(doc, r, records)) {
            problems.push(format!("events: response has no `{records}`"));
        }
    }
    let event = &doc["components"]["schemas"]["event"];
    for path in [id, event_type, created, object] {
        if !schema_has_path(doc, event, path) {
            problems.push(format!(
                "events: `{path}` is not in components/schemas/event"
            ));
        }
    }

    // Error paths and the error types used as codes.
    let error = &doc["components"]["schemas"]["error"];
    let e = &spec.errors;
    for path in [Some(&e.message), e.code.as_ref(), e.field.as_ref()]
        .into_iter()
        .flatten()
        .chain(&e.code_fallbacks)
    {
        if !schema_has_path(doc, error, path) {
            problems.push(format!(
                "errors: `{path}` is not in components/schemas/error"
            ));
        }
    }
    let types: Vec<&str> = doc["components"]["schemas"]["api_errors"]["properties"]["type"]["enum"]
        .as_array()
        .expect("api_errors.type enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in ["card_error", "idempotency_error"] {
        if !types.contains(&t) || !e.codes.contains_key(t) {
            problems.push(format!(
                "errors: error type `{t}` should be a Stripe type and mapped"
            ));
        }
    }
    report("stripe.yaml endpoints vs OpenAPI paths", problems);
}

#[test]
fn stripe_fixtures_decode_and_show_every_field() {
    let spec = connector("stripe");
    let fixtures = stripe_fixtures();
    let mut problems = Vec::new();
    for obj in &spec.objects {
        let o = obj.api_name.as_str();
        let Some(example) = fixtures["resources"].get(o) else {
            problems.push(format!("{o}: no fixture"));
            continue;
        };
        let columns: Vec<Column> = obj.fields.iter().map(Column::from_field).collect();
        if let Err(e) = decode_row(&columns, example) {
            problems.push(format!("{o}: the official fixture does not decode: {e}"));
        }
        let declared: BTreeSet<&str> = obj.fields.iter().map(|f| f.name.as_str()).collect();
        for key in example.as_object().expect("fixture object").keys() {
            if !declared.contains(key.as_str()) {
                problems.push(format!(
                    "{o}.{key}: returned by Stripe (fixture) but not declared"
                ));
            }
        }
        for (_, sf, why) in STRIPE_OMITTED.iter().filter(|(so, _, _)| *so == o) {
            if example.get(*sf).is_some() {
                problems.push(format!(
                    "{o}.{sf}: omitted as \"{why}\", yet the fixture has it"
                ));
            }
        }
    }
    report("stripe.yaml vs fixtures", problems);
}

/// Splits an object's fields into the record's own (top level: `id`,
/// `createdAt`...) and its properties (at `properties.<name>`).
fn hubspot_record_fields(obj: &sequin_spec::model::Object) -> (Vec<&Field>, Vec<&Field>) {
    obj.fields.iter().partition(|f| f.path.is_none())
}

#[test]
fn hubspot_record_shape_matches_simple_public_object() {
    let spec = connector("hubspot");
    let mut problems = Vec::new();
    let synced: BTreeSet<&str> = hubspot_crm_objects(&spec)
        .iter()
        .map(|o| o.api_name.as_str())
        .collect();
    let published: BTreeSet<&str> = HUBSPOT_CRM_OBJECTS.iter().copied().collect();
    assert_eq!(synced, published, "every CRM object HubSpot publishes");
    for (obj, doc) in &hubspot_record_objects(&spec) {
        let o = obj.api_name.as_str();
        let schema = &doc["components"]["schemas"]["SimplePublicObject"];
        let props = schema["properties"]
            .as_object()
            .expect("SimplePublicObject properties");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let (top, properties) = hubspot_record_fields(obj);
        for shape in ["id", "createdAt", "updatedAt", "archived", "archivedAt"] {
            if !top.iter().any(|f| f.name == shape) {
                problems.push(format!("{o}: record field `{shape}` missing"));
            }
        }
        for f in &top {
            let name = f.name.as_str();
            let Some(p) = props.get(name) else {
                problems.push(format!("{o}.{name}: not a property of SimplePublicObject"));
                continue;
            };
            let expected = match (p["type"].as_str(), p["format"].as_str()) {
                (Some("string"), Some("date-time")) => FieldType::Timestamp,
                (Some("string"), _) => FieldType::String,
                (Some("boolean"), _) => FieldType::Boolean,
                other => panic!("unexpected SimplePublicObject type {other:?}"),
            };
            if f.ty != expected {
                problems.push(format!(
                    "{o}.{name}: type {:?}, SimplePublicObject says {expected:?}",
                    f.ty
                ));
            }
            if f.access != Access::ReadOnly {
                problems.push(format!("{o}.{name}: record fields are set by HubSpot only"));
            }
            if f.stringly {
                problems.push(format!(
                    "{o}.{name}: record fields are typed JSON, not strings"
                ));
            }
            if !f.nullable && !required.contains(&name) {
                problems.push(format!(
                    "{o}.{name}: non-nullable but not required by SimplePublicObject"
                ));
            }
        }
        for name in props.keys() {
            let known = top.iter().any(|f| &f.name == name)
                || HUBSPOT_OMITTED.iter().any(|(n, _)| n == name);
            if !known {
                problems.push(format!(
                    "{o}: SimplePublicObject.{name} is neither declared nor omitted with a reason"
                ));
            }
        }
        // Properties are strings under `properties`, whatever their column type.
        for f in &properties {
            if f.path.as_deref() != Some(&format!("properties.{}", f.name)) || !f.stringly {
                problems.push(format!(
                    "{o}.{}: properties sit at `properties.<name>` with stringly: true",
                    f.name
                ));
            }
        }
        if obj.primary_key != "id" {
            problems.push(format!("{o}: the primary key is the record id"));
        }
    }
    report("hubspot.yaml vs SimplePublicObject", problems);
}

#[test]
fn hubspot_endpoints_bodies_and_errors_exist_in_the_openapi() {
    let spec = connector("hubspot");
    let mut problems = Vec::new();
    let list_paging = match &spec.pagination {
        Some(sequin_spec::model::Pagination::ResponseCursor {
            param,
            path,
            common,
            ..
        }) => (param.clone(), path.clone(), common.size_param.clone()),
        other => panic!("HubSpot pages by response cursor, not {other:?}"),
    };
    for (obj, doc) in &hubspot_record_objects(&spec) {
        let o = obj.api_name.as_str();
        let e = &obj.endpoints;
        let what = |s: &str| format!("{o} {s}");
        if let Some(op) = operation(doc, &e.list, &what("list"), &mut problems) {
            let mut extra = vec![list_paging.0.as_str()];
            extra.extend(list_paging.2.as_deref());
            check_query(doc, op, &e.list, &extra, &what("list"), &mut problems);
            let resp = json_response(doc, op);
            for path in [e.list.records.as_deref().unwrap_or(""), &list_paging.1] {
                if !resp.is_some_and(|r| schema_has_path(doc, r, path)) {
                    problems.push(format!("{o} list: response has no `{path}`"));
                }
            }
        }
        if let Some(get) = &e.get
            && let Some(op) = operation(doc, get, &what("get"), &mut problems)
        {
            check_query(doc, op, get, &[], &what("get"), &mut problems);
        }
        for (name, ep) in [("create", &e.create), ("update", &e.update)] {
            let Some(ep) = ep else {
                problems.push(format!("{o}: no {name} endpoint"));
                continue;
            };
            if let Some(op) = operation(doc, ep, &what(name), &mut problems) {
                let wrap = ep.wrap.as_deref().unwrap_or("");
                if wrap != "properties"
                    || !json_body(doc, op).is_some_and(|b| schema_has_path(doc, b, wrap))
                {
                    problems.push(format!(
                        "{o} {name}: writes wrap the properties in `properties`"
                    ));
                }
                let returns = ep.returns_id.as_deref().unwrap_or("");
                if !json_response(doc, op).is_some_and(|r| schema_has_path(doc, r, returns)) {
                    problems.push(format!("{o} {name}: response has no `{returns}`"));
                }
            }
        }
        match &e.delete {
            Some(d) => {
                operation(doc, d, &what("delete"), &mut problems);
            }
            None => problems.push(format!("{o}: no delete endpoint")),
        }
        for (name, batch) in [
            ("batch_create", &e.batch_create),
            ("batch_update", &e.batch_update),
            ("batch_delete", &e.batch_delete),
        ] {
            let Some(b) = batch else {
                problems.push(format!("{o}: no {name}"));
                continue;
            };
            let Some(op) = operation(doc, &b.endpoint, &what(name), &mut problems) else {
                continue;
            };
            let Some(body) = json_body(doc, op) else {
                problems.push(format!("{o} {name}: no JSON request body"));
                continue;
            };
            let items = b.items.as_deref().unwrap_or("");
            for member in [
                Some(format!("{items}.0")),
                b.endpoint.wrap.as_ref().map(|w| format!("{items}.0.{w}")),
                b.item_id.as_ref().map(|i| format!("{items}.0.{i}")),
            ]
            .into_iter()
            .flatten()
            {
                if !schema_has_path(doc, body, &member) {
                    problems.push(format!("{o} {name}: request body has no `{member}`"));
                }
            }
            if b.max_size != 100 {
                problems.push(format!("{o} {name}: HubSpot batches take up to 100 inputs"));
            }
            if let Some(results) = &b.results
                && !json_response(doc, op)
                    .is_some_and(|r| schema_has_path(doc, r, &format!("{results}.0.id")))
            {
                problems.push(format!("{o} {name}: response has no `{results}[].id`"));
            }
        }
        // Incremental search.
        match obj.incremental.as_ref().or(spec.incremental.as_ref()) {
            Some(Incremental::Search {
                endpoint,
                body,
                records,
                pagination,
                field,
                since_format,
                ..
            }) => {
                if let Some(op) = operation(doc, endpoint, &what("search"), &mut problems) {
                    let request = json_body(doc, op).expect("search body");
                    for key in body.as_object().expect("search body object").keys() {
                        if !schema_has_path(doc, request, key) {
                            problems.push(format!("{o} search: body member `{key}` is not in PublicObjectSearchRequest"));
                        }
                    }
                    let filter = &body["filterGroups"][0]["filters"][0];
                    let operators =
                        &doc["components"]["schemas"]["Filter"]["properties"]["operator"]["enum"];
                    if !operators
                        .as_array()
                        .is_some_and(|ops| ops.contains(&filter["operator"]))
                    {
                        problems.push(format!(
                            "{o} search: operator {} is not a Filter operator",
                            filter["operator"]
                        ));
                    }
                    if filter["propertyName"] != field.as_str()
                        || body["sorts"][0]["propertyName"] != field.as_str()
                    {
                        problems.push(format!(
                            "{o} search: filter and sort on the update marker `{field}`"
                        ));
                    }
                    if !obj.fields.iter().any(|f| &f.name == field) {
                        problems.push(format!(
                            "{o} search: update marker `{field}` is not a field"
                        ));
                    }
                    if body["properties"] != "{fields}" {
                        problems.push(format!(
                            "{o} search: ask for every property (\"{{fields}}\")"
                        ));
                    }
                    if body["limit"].as_u64().is_none_or(|l| l > 200) {
                        problems.push(format!("{o} search: limit is at most 200"));
                    }
                    if *since_format != TimeFormat::UnixMillis {
                        problems.push(format!(
                            "{o} search: HubSpot filters times in epoch milliseconds"
                        ));
                    }
                    let resp = json_response(doc, op);
                    let after = match pagination {
                        sequin_spec::model::Pagination::ResponseCursor {
                            path,
                            in_body: true,
                            param,
                            ..
                        } => {
                            if !schema_has_path(doc, request, param) {
                                problems.push(format!(
                                    "{o} search: cursor `{param}` is not a body member"
                                ));
                            }
                            path.clone()
                        }
                        other => panic!("search pages with a body cursor, not {other:?}"),
                    };
                    for path in [records.as_str(), after.as_str()] {
                        if !resp.is_some_and(|r| schema_has_path(doc, r, path)) {
                            problems.push(format!("{o} search: response has no `{path}`"));
                        }
                    }
                }
            }
            other => problems.push(format!(
                "{o}: incremental should be a search, not {other:?}"
            )),
        }
        // Errors.
        let error = &doc["components"]["schemas"]["Error"];
        let errs = &spec.errors;
        for path in [
            Some(&errs.message),
            errs.code.as_ref(),
            errs.field.as_ref(),
            errs.request_id.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !schema_has_path(doc, error, path) {
                problems.push(format!(
                    "errors: `{path}` is not in the Error schema of {o}'s OpenAPI"
                ));
            }
        }
    }

    // Discovered properties.
    let props_doc = hubspot_openapi("v3-properties.json");
    let property = &props_doc["components"]["schemas"]["Property"];
    for obj in hubspot_crm_objects(&spec) {
        let o = obj.api_name.as_str();
        let Some(d) = &obj.discovered_fields else {
            problems.push(format!("{o}: custom properties are discovered"));
            continue;
        };
        if let Some(op) = operation(
            &props_doc,
            &d.endpoint,
            &format!("{o} properties"),
            &mut problems,
        ) && !json_response(&props_doc, op)
            .is_some_and(|r| schema_has_path(&props_doc, r, &format!("{}.0", d.records)))
        {
            problems.push(format!("{o} properties: response has no `{}`", d.records));
        }
        let f = &d.field;
        for path in [
            Some(&f.name),
            Some(&f.ty),
            f.read_only.as_ref(),
            f.createable.as_ref(),
            f.updateable.as_ref(),
            f.enum_values.as_ref(),
            d.only_if.as_ref(),
            d.only_if_not.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !schema_has_path(&props_doc, property, path) {
                problems.push(format!(
                    "{o} properties: `{path}` is not in the Property schema"
                ));
            }
        }
        if d.value_path.as_deref() != Some("properties.{name}") || !d.stringly {
            problems.push(format!(
                "{o} properties: discovered values are strings at `properties.<name>`"
            ));
        }
    }
    hubspot_schemas(&spec, &mut problems);
    report("hubspot.yaml vs OpenAPI", problems);
}

/// Custom objects: the schemas listing, each schema's name, id and
/// properties, and how a property is read, exist in `v3-schemas.json`.
fn hubspot_schemas(spec: &Connector, problems: &mut Vec<String>) {
    let doc = hubspot_openapi("v3-schemas.json");
    let doc = &doc;
    let d = spec
        .discovered_objects
        .as_ref()
        .expect("custom objects are discovered");
    let Some(op) = operation(doc, &d.endpoint, "schemas", problems) else {
        return;
    };
    check_query(doc, op, &d.endpoint, &[], "schemas", problems);
    let Some(resp) = json_response(doc, op) else {
        problems.push("schemas: no JSON response".into());
        return;
    };
    let schema = format!("{}.0", d.records);
    let fields = d.fields.as_deref().unwrap_or("(fields)");
    for path in [&d.name, &d.api_name, &format!("{fields}.0")] {
        if !schema_has_path(doc, resp, &format!("{schema}.{path}")) {
            problems.push(format!("schemas: `{path}` is not in ObjectSchema"));
        }
    }
    let property = &doc["components"]["schemas"]["Property"];
    for path in [
        Some(&d.field.name),
        Some(&d.field.ty),
        d.field.read_only.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if !schema_has_path(doc, property, path) {
            problems.push(format!("schemas: `{path}` is not in the Property schema"));
        }
    }
    if d.value_path != "properties.{name}" || !d.stringly {
        problems.push("schemas: custom object values are strings at `properties.<name>`".into());
    }
    if d.api_name != "objectTypeId" {
        problems.push(
            "schemas: custom objects are addressed by objectTypeId, which survives renames".into(),
        );
    }
}

/// A HubSpot object that is not a CRM record, with its OpenAPI file, its
/// record schema, and its create and update bodies when it is writable.
struct HubspotOther {
    table: &'static str,
    file: &'static str,
    record: &'static str,
    create: Option<&'static str>,
    update: Option<&'static str>,
}

const HUBSPOT_OTHER_OBJECTS: &[HubspotOther] = &[
    HubspotOther {
        table: "owner",
        file: "v3-owners.json",
        record: "PublicOwner",
        create: None,
        update: None,
    },
    HubspotOther {
        table: "deal_pipeline",
        file: "v3-pipelines.json",
        record: "Pipeline",
        create: Some("PipelineInput"),
        update: Some("PipelinePatchInput"),
    },
    HubspotOther {
        table: "ticket_pipeline",
        file: "v3-pipelines.json",
        record: "Pipeline",
        create: Some("PipelineInput"),
        update: Some("PipelinePatchInput"),
    },
];

/// Fields whose access deliberately differs from the request bodies:
/// (table, field, reason).
const HUBSPOT_READ_ONLY_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "deal_pipeline",
        "archived",
        "PATCH takes `archived` only to restore an archived pipeline, and an archived pipeline is no row",
    ),
    (
        "ticket_pipeline",
        "archived",
        "PATCH takes `archived` only to restore an archived pipeline, and an archived pipeline is no row",
    ),
];

/// The column type an OpenAPI property of HubSpot's maps to.
fn hubspot_type(p: &Value) -> FieldType {
    match (p["type"].as_str(), p["format"].as_str()) {
        (Some("string"), Some("date-time")) => FieldType::Timestamp,
        (Some("string"), _) => FieldType::String,
        (Some("boolean"), _) => FieldType::Boolean,
        (Some("integer"), _) => FieldType::Integer,
        (Some("number"), _) => FieldType::Decimal,
        _ => FieldType::Json,
    }
}

/// Checks fields against the record schema and request bodies: every
/// field a property of the right type, every property declared, `access`
/// and `required_on_create` as the bodies say.
fn hubspot_plain_fields(
    obj: &sequin_spec::model::Object,
    doc: &Value,
    record: &str,
    create: Option<&str>,
    update: Option<&str>,
    problems: &mut Vec<String>,
) {
    let o = obj.name.as_str();
    let schema = &doc["components"]["schemas"][record];
    let props = schema["properties"].as_object().expect("record properties");
    let required = |s: &Value| -> Vec<String> {
        s["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let body = |name: Option<&str>| name.map(|n| &doc["components"]["schemas"][n]);
    let (create, update) = (body(create), body(update));
    for f in &obj.fields {
        let name = f.name.as_str();
        let Some(p) = props.get(name) else {
            problems.push(format!("{o}.{name}: not a property of {record}"));
            continue;
        };
        if f.ty != hubspot_type(p) {
            problems.push(format!("{o}.{name}: type {:?}, {record} says {p}", f.ty));
        }
        if !f.nullable && !required(schema).iter().any(|r| r == name) {
            problems.push(format!(
                "{o}.{name}: non-nullable but not required by {record}"
            ));
        }
        let in_create = create.is_some_and(|b| b["properties"].get(name).is_some());
        let in_update = update.is_some_and(|b| b["properties"].get(name).is_some());
        let excepted = HUBSPOT_READ_ONLY_EXCEPTIONS
            .iter()
            .any(|(t, n, _)| *t == o && *n == name);
        let expected = match (in_create, in_update) {
            _ if excepted => Access::ReadOnly,
            (_, true) => Access::Writable,
            (true, false) => Access::CreateOnly,
            (false, false) => Access::ReadOnly,
        };
        if f.access != expected {
            problems.push(format!(
                "{o}.{name}: access {:?}, the request bodies say {expected:?}",
                f.access
            ));
        }
        let must = create.is_some_and(|b| required(b).iter().any(|r| r == name));
        if f.required_on_create != must {
            problems.push(format!(
                "{o}.{name}: required_on_create {}, the create body says {must}",
                f.required_on_create
            ));
        }
    }
    for name in props.keys() {
        if !obj.fields.iter().any(|f| &f.name == name) {
            problems.push(format!("{o}: {record}.{name} is not declared"));
        }
    }
}

#[test]
fn hubspot_owners_and_pipelines_agree_with_their_openapi() {
    let spec = connector("hubspot");
    let mut problems = Vec::new();
    let others: BTreeSet<&str> = spec
        .objects
        .iter()
        .filter(|o| !o.endpoints.list.path.starts_with("/crm/v3/objects/"))
        .map(|o| o.name.as_str())
        .collect();
    let known: BTreeSet<&str> = HUBSPOT_OTHER_OBJECTS.iter().map(|o| o.table).collect();
    assert_eq!(
        others, known,
        "every HubSpot object is checked against its OpenAPI"
    );
    for other in HUBSPOT_OTHER_OBJECTS {
        let HubspotOther {
            table,
            file,
            record,
            create,
            update,
        } = other;
        let obj = spec.object(table).expect("declared");
        let doc = hubspot_openapi(file);
        let doc = &doc;
        hubspot_plain_fields(obj, doc, record, *create, *update, &mut problems);
        let e = &obj.endpoints;
        let what = |s: &str| format!("{table} {s}");
        let paging = match spec.pagination_of(obj) {
            Some(sequin_spec::model::Pagination::ResponseCursor {
                param,
                path,
                common,
                ..
            }) => (param.clone(), path.clone(), common.size_param.clone()),
            other => panic!("{table} pages by response cursor, not {other:?}"),
        };
        if let Some(op) = operation(doc, &e.list, &what("list"), &mut problems) {
            // A listing without paging (pipelines) never sends a cursor.
            let resp = json_response(doc, op);
            let pages = resp.is_some_and(|r| schema_has_path(doc, r, &paging.1));
            let mut extra = Vec::new();
            if pages {
                extra.push(paging.0.as_str());
                extra.extend(paging.2.as_deref());
            } else if paging.2.is_some() {
                problems.push(format!("{table} list: no paging, so no page size"));
            }
            check_query(doc, op, &e.list, &extra, &what("list"), &mut problems);
            let records = e.list.records.as_deref().unwrap_or("");
            if !resp.is_some_and(|r| schema_has_path(doc, r, &format!("{records}.0.id"))) {
                problems.push(format!("{table} list: response has no `{records}[].id`"));
            }
        }
        for (name, ep) in [
            ("get", &e.get),
            ("create", &e.create),
            ("update", &e.update),
            ("delete", &e.delete),
        ] {
            if let Some(ep) = ep {
                operation(doc, ep, &what(name), &mut problems);
            }
        }
        if create.is_some() != e.create.is_some() || update.is_some() != e.update.is_some() {
            problems.push(format!("{table}: writable exactly where HubSpot's API is"));
        }
        let error = &doc["components"]["schemas"]["Error"];
        for path in [Some(&spec.errors.message), spec.errors.code.as_ref()]
            .into_iter()
            .flatten()
        {
            if !schema_has_path(doc, error, path) {
                problems.push(format!(
                    "errors: `{path}` is not in the Error schema of {file}"
                ));
            }
        }
    }
    report("hubspot.yaml owners and pipelines vs OpenAPI", problems);
}

/// The dot paths of an item template's values (`from.id`, `types.0.associationTypeId`).
fn template_paths(template: &Value, prefix: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match template {
        Value::Object(m) => m.iter().for_each(|(k, v)| template_paths(v, &join(k), out)),
        Value::Array(items) => items
            .iter()
            .for_each(|v| template_paths(v, &join("0"), out)),
        _ => out.push(prefix.to_string()),
    }
}

/// The link tables (associations v4): every endpoint exists with its
/// method in `v4-associations.json`, every member of each request item is
/// in the request body's schema, the batch read's answer has every path the
/// spec reads, the default create's answer the assigned type, and every
/// pair names two objects of the spec.
#[test]
fn hubspot_links_agree_with_the_v4_openapi() {
    let spec = connector("hubspot");
    let doc = hubspot_openapi("v4-associations.json");
    let doc = &doc;
    let l = spec.links.as_ref().expect("HubSpot has link tables");
    let mut problems = Vec::new();
    let writes = [
        ("create", Some(&l.create)),
        ("create_default", l.create_default.as_ref()),
        ("delete", Some(&l.delete)),
    ];
    let read = (&l.read.endpoint, &l.read.items, &l.read.item, "read");
    let bodies = writes
        .iter()
        .filter_map(|(what, w)| w.map(|w| (&w.endpoint, &w.items, &w.item, *what)))
        .chain([read]);
    for (endpoint, items, item, what) in bodies {
        let Some(op) = operation(doc, endpoint, what, &mut problems) else {
            continue;
        };
        let Some(body) = json_body(doc, op) else {
            problems.push(format!("{what}: no JSON request body"));
            continue;
        };
        let mut paths = Vec::new();
        template_paths(item, "", &mut paths);
        for p in paths {
            let full = format!("{items}.0.{p}");
            if !schema_has_path(doc, body, &full) {
                problems.push(format!("{what}: `{full}` is not in the request body"));
            }
        }
    }
    if let Some(op) = operation(doc, &l.read.endpoint, "read", &mut problems)
        && let Some(resp) = json_response(doc, op)
    {
        let records = l.read.endpoint.records.as_deref().unwrap_or_default();
        let target = format!("{records}.0.{}.0", l.read.targets);
        let kind = format!("{target}.{}.0", l.read.types);
        for path in [
            format!("{records}.0.{}", l.read.from_id),
            format!("{target}.{}", l.read.to_id),
            format!("{kind}.{}", l.read.category),
            format!("{kind}.{}", l.read.type_id),
            format!("{kind}.{}", l.read.label),
        ] {
            if !schema_has_path(doc, resp, &path) {
                problems.push(format!("read: `{path}` is not in the answer"));
            }
        }
    }
    if let Some(d) = &l.create_default
        && let Some(op) = operation(doc, &d.endpoint, "create_default", &mut problems)
        && let Some(resp) = json_response(doc, op)
    {
        for p in [&d.result_category, &d.result_type_id]
            .into_iter()
            .flatten()
        {
            if !schema_has_path(doc, resp, &format!("results.0.{p}")) {
                problems.push(format!("create_default: `{p}` is not in a result"));
            }
        }
    }
    if l.read.max_size > 1000 {
        problems.push("read: HubSpot's batch read takes at most 1000 inputs".into());
    }
    for p in &l.pairs {
        for o in [&p.from, &p.to] {
            if spec.object(o).is_none() {
                problems.push(format!("{}: `{o}` is not an object", p.name));
            }
        }
    }
    report("hubspot.yaml links vs v4-associations.json", problems);
}
