//! Loading and validating spec files.
//!
//! Three passes, all reporting by JSON Pointer and mapped to
//! `file:line:column` through [`sequin_spec::yaml::Located`]:
//! 1. JSON Schema (derived from the model, committed as `connectors/schema.json`) via `jsonschema`,
//!    which catches unknown keys, wrong types and missing members;
//! 2. serde deserialization into the model (only if pass 1 is clean),
//!    which also checks durations (`sequin_spec::duration::Duration`);
//! 3. semantic checks that a schema cannot express (references between
//!    parts of the spec, uniqueness, consistency).
//!
//! Every problem of every file is collected; nothing stops at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use jsonschema::error::ValidationErrorKind;
use sequin_spec::model::{
    Access, AsyncQuery, Auth, BatchEndpoint, Connector, DeleteDetection, DeleteWindow, Endpoint,
    Endpoints, EventsFallback, Field, FieldType, Incremental, Links, Method, Object, Pagination,
    Parent, Upsert,
};
use sequin_spec::naming::is_snake_identifier;
use sequin_spec::quota::Quota;
use sequin_spec::yaml::{self, Located, escape_segment};
use serde_json::Value;

use crate::diagnostic::{Diagnostic, Diagnostics};

/// A spec that passed every check.
#[derive(Clone, Debug)]
pub struct CheckedSpec {
    pub connector: Connector,
}

/// Validates the text of one spec file. `file` is only used in messages.
pub fn check_source(
    file: &Path,
    text: &str,
    schema: &jsonschema::Validator,
) -> Result<CheckedSpec, Diagnostics> {
    let mut out = Vec::new();
    let doc = match yaml::parse(text) {
        Ok(d) => d,
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic {
                file: file.to_path_buf(),
                span: e.span,
                message: format!("YAML syntax error: {}", e.message),
                fix: None,
            }]));
        }
    };
    let at = |pointer: &str, key: bool, message: String, fix: Option<String>| Diagnostic {
        file: file.to_path_buf(),
        span: if key {
            doc.key_span(pointer)
        } else {
            doc.span(pointer)
        },
        message,
        fix,
    };

    // Pass 1: the JSON Schema. Offending nodes are pruned from a copy so
    // passes 2 and 3 can still run on the rest and report their problems in
    // the same run.
    let mut pruned = doc.value.clone();
    let mut prune = Vec::new();
    for err in schema.iter_errors(&doc.value) {
        let pointer = err.instance_path().as_str().to_string();
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    let p = format!("{pointer}/{}", escape_segment(key));
                    out.push(at(
                        &p,
                        true,
                        format!("unknown key `{key}`"),
                        Some(format!(
                            "remove it or check its spelling; see connectors/schema.json for the keys allowed at {}",
                            if pointer.is_empty() { "the top level" } else { &pointer }
                        )),
                    ));
                    prune.push(p);
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| property.to_string());
                out.push(at(
                    &pointer,
                    false,
                    format!("missing required key `{name}`"),
                    Some(format!("add `{name}:`")),
                ));
            }
            _ => {
                let mut msg = err.to_string();
                if msg.len() > 300 {
                    msg.truncate(msg.floor_char_boundary(300));
                    msg.push_str("...");
                }
                let hint = oneof_hint(&doc, &pointer);
                out.push(at(&pointer, false, format!("invalid value: {msg}"), hint));
                prune.push(pointer);
            }
        }
    }
    let schema_failed = !out.is_empty();
    for p in &prune {
        remove_pointer(&mut pruned, p);
    }

    // Pass 2: serde (on the pruned document when pass 1 found problems).
    let connector: Connector = match yaml::deserialize(&pruned) {
        Ok(c) => c,
        Err(e) => {
            if !schema_failed {
                out.push(at(&e.pointer, false, e.message, None));
            }
            out.sort();
            out.dedup();
            return Err(Diagnostics(out));
        }
    };

    // Pass 3: semantics.
    let mut sem = Semantic {
        problems: Vec::new(),
    };
    sem.connector(&connector);
    out.extend(
        sem.problems
            .into_iter()
            .map(|(p, key, m, fix)| at(&p, key, m, fix)),
    );
    if out.is_empty() {
        Ok(CheckedSpec { connector })
    } else {
        out.sort();
        out.dedup();
        Err(Diagnostics(out))
    }
}

/// Removes the node at a JSON Pointer (no-op for the root or a missing node).
fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    match target {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a[i] = Value::Null;
            }
        }
        _ => {}
    }
}

/// For a failed tagged union (`kind:`), names the allowed kinds.
fn oneof_hint(doc: &Located, pointer: &str) -> Option<String> {
    let v = pointer_get(&doc.value, pointer)?;
    let kind = v.get("kind").or_else(|| v.get("when"))?;
    Some(format!(
        "check the members allowed for `{}` in connectors/schema.json",
        kind.as_str().unwrap_or("?")
    ))
}

fn pointer_get<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        Some(v)
    } else {
        v.pointer(pointer)
    }
}

type Problem = (String, bool, String, Option<String>);

struct Semantic {
    problems: Vec<Problem>,
}

/// Placeholders every template may use besides connection params and fields.
const BUILTIN_PLACEHOLDERS: &[&str] = &["id", "object", "fields", "since", "cursor"];

/// The placeholders an upsert endpoint's path takes: the external id field
/// (its API name) and, for a single record, its value.
const UPSERT_PLACEHOLDERS: [&str; 2] = ["external_field", "external_value"];

impl Semantic {
    fn err(&mut self, pointer: impl Into<String>, msg: impl Into<String>, fix: Option<String>) {
        self.problems.push((pointer.into(), false, msg.into(), fix));
    }

    fn connector(&mut self, c: &Connector) {
        if !is_snake_identifier(&c.name) {
            self.err(
                "/name",
                format!(
                    "connector name `{}` is not a lowercase snake_case identifier",
                    c.name
                ),
                Some(format!(
                    "use `{}`",
                    sequin_spec::naming::table_name(&c.name)
                )),
            );
        }
        if c.display_name.trim().is_empty() {
            self.err(
                "/display_name",
                "display_name is empty",
                Some("name the API as users know it, e.g. `Stripe`".into()),
            );
        }
        if !(c.base_url.starts_with("http://") || c.base_url.starts_with("https://")) {
            self.err(
                "/base_url",
                format!("base_url `{}` is not an http(s) URL", c.base_url),
                None,
            );
        }
        let params: BTreeSet<&str> = c.params.iter().map(|p| p.name.as_str()).collect();
        let mut seen = BTreeSet::new();
        for (i, p) in c.params.iter().enumerate() {
            if !seen.insert(&p.name) {
                self.err(
                    format!("/params/{i}/name"),
                    format!("parameter `{}` is declared twice", p.name),
                    None,
                );
            }
            if BUILTIN_PLACEHOLDERS.contains(&p.name.as_str()) {
                self.err(
                    format!("/params/{i}/name"),
                    format!("parameter name `{}` is reserved for the runtime", p.name),
                    Some(format!(
                        "rename it; {} are built in",
                        BUILTIN_PLACEHOLDERS.join(", ")
                    )),
                );
            }
        }
        self.auth(&c.auth, &params);
        self.rate_limit(c, &params);
        if let Some(q) = &c.quota {
            self.quota(q, &params);
        }
        self.sqlstates(c);
        if let Some(p) = &c.pagination {
            self.pagination("/pagination", p);
        }
        if let Some(inc) = &c.incremental {
            self.incremental("/incremental", inc, &params, None);
        }
        if let Some(d) = &c.deletes {
            self.deletes("/deletes", d, &params, None);
        }
        if let Some(q) = &c.async_query {
            self.async_query(c, q, &params);
        }
        let mut names = HashMap::new();
        for (i, o) in c.objects.iter().enumerate() {
            let base = format!("/objects/{i}");
            if let Some(first) = names.insert(o.name.clone(), i) {
                self.err(
                    format!("{base}/name"),
                    format!(
                        "object `{}` is declared twice (first at objects[{first}])",
                        o.name
                    ),
                    Some("give each object a unique table name".into()),
                );
            }
            self.object(c, &base, o, &params);
        }
        if let Some(d) = &c.discovered_objects {
            let base = "/discovered_objects";
            let fixed: BTreeSet<&str> = d.fixed_fields.iter().map(|f| f.name.as_str()).collect();
            if !fixed.contains(d.primary_key.as_str()) {
                self.err(
                    format!("{base}/primary_key"),
                    format!(
                        "primary key `{}` is not one of the fixed_fields",
                        d.primary_key
                    ),
                    Some(format!("declare `{}` under fixed_fields", d.primary_key)),
                );
            }
            if !d.value_path.contains("{name}") {
                self.err(
                    format!("{base}/value_path"),
                    "value_path must contain `{name}`",
                    Some("e.g. `fields.{name}`".into()),
                );
            }
            self.fields(&format!("{base}/fixed_fields"), &d.fixed_fields);
            if d.endpoints.upsert.is_some() && d.field.external_id.is_none() {
                self.err(
                    format!("{base}/endpoints/upsert"),
                    "discovered objects with an upsert endpoint need `field.external_id` (how a discovered field says it is an external id)",
                    Some("e.g. `external_id: externalId`".into()),
                );
            }
            let fields: BTreeSet<&str> = fixed.clone();
            self.endpoints(
                &format!("{base}/endpoints"),
                &d.endpoints,
                &params,
                &fields,
                true,
            );
            if let Some(p) = &d.pagination {
                self.pagination(&format!("{base}/pagination"), p);
            }
            if let Some(inc) = &d.incremental {
                self.incremental(&format!("{base}/incremental"), inc, &params, None);
            }
            if let Some(del) = &d.deletes {
                self.deletes(&format!("{base}/deletes"), del, &params, None);
            }
            self.template(
                &format!("{base}/endpoint/path"),
                &d.endpoint.path,
                &params,
                &BTreeSet::new(),
                false,
            );
            self.discovered_shape(c, d, &params);
        }
        if let Some(l) = &c.links {
            self.links(c, l, &names);
        }
        if c.objects.is_empty() && c.discovered_objects.is_none() {
            self.err(
                "/objects",
                "the connector has no objects",
                Some("declare `objects:` or `discovered_objects:`".into()),
            );
        }
    }

    /// Link tables: each pair names two objects that are no child objects,
    /// its table name is free and an identifier; the id template uses only
    /// the link columns; reads take at least one id.
    fn links(&mut self, c: &Connector, l: &Links, objects: &HashMap<String, usize>) {
        let mut seen = BTreeSet::new();
        for (i, p) in l.pairs.iter().enumerate() {
            let base = format!("/links/pairs/{i}");
            if !is_snake_identifier(&p.name) {
                self.err(
                    format!("{base}/name"),
                    format!(
                        "link table name `{}` is not a snake_case identifier",
                        p.name
                    ),
                    Some(format!(
                        "use `{}`",
                        sequin_spec::naming::table_name(&p.name)
                    )),
                );
            }
            if objects.contains_key(&p.name) || !seen.insert(p.name.as_str()) {
                self.err(
                    format!("{base}/name"),
                    format!("table `{}` is declared twice", p.name),
                    Some("give each link table a name no object or other pair has, e.g. `contact_company`".into()),
                );
            }
            for (key, object) in [("from", &p.from), ("to", &p.to)] {
                match c.object(object) {
                    Some(o) if o.parent.is_none() => {}
                    _ => self.err(
                        format!("{base}/{key}"),
                        format!("`{object}` is not an object of this connector (child objects cannot be linked)"),
                        Some("name an object of `objects:` by its table name".into()),
                    ),
                }
            }
        }
        for name in placeholders(&l.id) {
            if !sequin_spec::links::LINK_COLUMNS[1..].contains(&name.as_str()) {
                self.err(
                    "/links/id",
                    format!("unknown placeholder `{{{name}}}` in the link id"),
                    Some(
                        "use the link columns: {from_id}, {to_id}, {category}, {type_id}, {label}"
                            .into(),
                    ),
                );
            }
        }
        if let Some(d) = &l.discovered {
            if c.discovered_objects.is_none() {
                self.err(
                    "/links/discovered",
                    "links of discovered objects, but the connector discovers no objects",
                    Some("declare `discovered_objects:` or remove `links.discovered`".into()),
                );
            }
            for name in d.object_ids.keys() {
                if c.object(name).is_none_or(|o| o.parent.is_some()) {
                    self.err(
                        format!("/links/discovered/object_ids/{name}"),
                        format!("`{name}` is not an object of this connector (child objects cannot be linked)"),
                        Some("key `object_ids` by the table names of `objects:`".into()),
                    );
                }
            }
        }
        if l.read.max_size == 0 {
            self.err(
                "/links/read/max_size",
                "max_size is 0",
                Some("the most source ids one read takes, e.g. 1000".into()),
            );
        }
    }

    fn auth(&mut self, a: &Auth, params: &BTreeSet<&str>) {
        let creds: Vec<(&str, &String)> = match a {
            Auth::ApiKey { credential, .. } | Auth::Bearer { credential } => {
                vec![("credential", credential)]
            }
            Auth::Basic { username, password } => {
                let mut v = vec![("username", username)];
                if let Some(p) = password {
                    v.push(("password", p));
                }
                v
            }
            Auth::OAuth2Refresh {
                token_url,
                client_id,
                client_secret,
                refresh_token,
                ..
            } => {
                self.template(
                    "/auth/token_url",
                    token_url,
                    params,
                    &BTreeSet::new(),
                    false,
                );
                vec![
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("refresh_token", refresh_token),
                ]
            }
        };
        for (key, name) in creds {
            if !is_snake_identifier(name) {
                self.err(
                    format!("/auth/{key}"),
                    format!("credential name `{name}` is not a snake_case identifier"),
                    Some("credentials are keys of the connection's `credentials:` map, e.g. `api_key`".into()),
                );
            }
        }
    }

    fn rate_limit(&mut self, c: &Connector, params: &BTreeSet<&str>) {
        let r = &c.rate_limit;
        if r.requests == 0 {
            self.err(
                "/rate_limit/requests",
                "rate limit of 0 requests would never sync",
                None,
            );
        }
        if !(0.0..1.0).contains(&r.write_share) {
            self.err(
                "/rate_limit/write_share",
                format!("write_share {} is outside 0.0..1.0", r.write_share),
                Some("a share such as 0.2 keeps 20% of the budget for writes".into()),
            );
        }
        for (i, e) in r.endpoints.iter().enumerate() {
            if e.requests == 0 {
                self.err(
                    format!("/rate_limit/endpoints/{i}/requests"),
                    "an endpoint limit of 0 requests would never let a request through",
                    None,
                );
            }
            if !e.path.starts_with('/') {
                self.err(
                    format!("/rate_limit/endpoints/{i}/path"),
                    format!("endpoint limit path `{}` does not start with /", e.path),
                    Some("write the path as the endpoints do, `*` for any one segment: /crm/v3/objects/*/search".into()),
                );
            }
        }
        if let Some(p) = &r.per_param
            && !params.contains(p.as_str())
        {
            self.err(
                "/rate_limit/per_param",
                format!("per_param `{p}` is not a declared parameter"),
                Some(format!("declare `{p}` under params")),
            );
        }
    }

    /// The quota: a GET endpoint with connection parameters only, and
    /// counters with unique names and paths (durations are checked when
    /// parsed: never 0).
    fn quota(&mut self, q: &Quota, params: &BTreeSet<&str>) {
        if q.endpoint.method != Method::Get {
            self.err(
                "/quota/endpoint/method",
                "the quota is read with GET",
                Some("remove `method:` (GET is the default)".into()),
            );
        }
        for name in q.endpoint.placeholders() {
            if params.contains(name.as_str()) {
                continue;
            }
            let fix = if BUILTIN_PLACEHOLDERS.contains(&name.as_str()) {
                "the quota's endpoint belongs to no object: use connection parameters only, e.g. {api_version}".to_string()
            } else {
                format!("declare `{name}` under params")
            };
            self.err(
                "/quota/endpoint/path",
                format!(
                    "unknown placeholder `{{{name}}}` in the quota's endpoint `{}`",
                    q.endpoint.path
                ),
                Some(fix),
            );
        }
        if q.counters.is_empty() {
            self.err(
                "/quota/counters",
                "the quota has no counters",
                Some("name at least one, e.g. { name: DailyApiRequests, max: DailyApiRequests.Max, remaining: DailyApiRequests.Remaining, per_request: true }".into()),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, c) in q.counters.iter().enumerate() {
            let base = format!("/quota/counters/{i}");
            if c.name.trim().is_empty() || !seen.insert(c.name.as_str()) {
                self.err(
                    format!("{base}/name"),
                    format!("counter name `{}` is empty or used twice", c.name),
                    Some("name each counter once, as the API does".into()),
                );
            }
            for (key, path) in [("max", &c.max), ("remaining", &c.remaining)] {
                if path.trim().is_empty() {
                    self.err(
                        format!("{base}/{key}"),
                        format!("the path of the counter's {key} is empty"),
                        Some(format!(
                            "write where the answer holds it, e.g. `{}.{}`",
                            c.name,
                            if key == "max" { "Max" } else { "Remaining" }
                        )),
                    );
                }
            }
        }
    }

    fn sqlstates(&mut self, c: &Connector) {
        let valid = |s: &str| {
            s.len() == 5
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        };
        for (status, state) in &c.errors.status {
            if !valid(state) {
                self.err(
                    format!("/errors/status/{status}"),
                    format!("`{state}` is not a SQLSTATE"),
                    Some("SQLSTATEs are five digits or uppercase letters, e.g. 23514".into()),
                );
            }
            if !(100..600).contains(status) {
                self.problems.push((
                    format!("/errors/status/{status}"),
                    true,
                    format!("{status} is not an HTTP status"),
                    None,
                ));
            }
        }
        for (code, state) in &c.errors.codes {
            if !valid(state) {
                self.err(
                    format!("/errors/codes/{}", escape_segment(code)),
                    format!("`{state}` is not a SQLSTATE"),
                    Some("SQLSTATEs are five digits or uppercase letters, e.g. 23514".into()),
                );
            }
        }
    }

    fn pagination(&mut self, pointer: &str, p: &Pagination) {
        let common = p.common();
        if let (Some(size), Some(max)) = (common.page_size, common.max_page_size)
            && size > max
        {
            self.err(
                format!("{pointer}/page_size"),
                format!("page_size {size} exceeds max_page_size {max}"),
                Some(format!("use page_size: {max}")),
            );
        }
        if common.page_size.is_some()
            && common.size_param.is_none()
            && !matches!(p, Pagination::NextUrl { .. })
        {
            self.err(
                format!("{pointer}/page_size"),
                "page_size is set but no size_param says how to send it",
                Some("add `size_param:` (e.g. `limit`)".into()),
            );
        }
    }

    /// Where discovered objects' fields come from, their rules (deny list,
    /// default exclusions) and cursor candidates.
    fn discovered_shape(
        &mut self,
        c: &Connector,
        d: &sequin_spec::model::DiscoveredObjects,
        params: &BTreeSet<&str>,
    ) {
        let base = "/discovered_objects";
        match (&d.fields, &d.describe) {
            (Some(_), Some(_)) => self.err(
                format!("{base}/describe"),
                "`fields` and `describe` both say where the fields are",
                Some("keep `fields` when the listing carries them, else `describe`".into()),
            ),
            (None, None) => self.err(
                base,
                "discovered objects need `fields` (in the listing) or `describe` (per object)",
                Some("add `fields: <path>` or `describe: {endpoint: ..., records: ...}`".into()),
            ),
            _ => {}
        }
        if let Some(desc) = &d.describe {
            self.template(
                &format!("{base}/describe/endpoint/path"),
                &desc.endpoint.path,
                params,
                &BTreeSet::new(),
                false,
            );
            if !desc.endpoint.path.contains("{object}") {
                self.err(
                    format!("{base}/describe/endpoint/path"),
                    "the describe endpoint must name the object with `{object}`",
                    Some("e.g. `/sobjects/{object}/describe`".into()),
                );
            }
        }
        for (list, rules) in [
            ("deny", &d.deny),
            ("exclude_by_default", &d.exclude_by_default),
        ] {
            for (i, r) in rules.iter().enumerate() {
                if r.pattern.trim().is_empty() || r.why.trim().is_empty() {
                    self.err(
                        format!("{base}/{list}/{i}"),
                        "a rule needs a pattern and a reason",
                        Some("e.g. `{pattern: \"*History\", why: \"...\"}`".into()),
                    );
                }
            }
        }
        for (i, s) in c.objects.iter().enumerate() {
            if let Some(r) = d.denied(&s.api_name).or(d.excluded_by_default(&s.api_name)) {
                self.err(
                    format!("/objects/{i}/api_name"),
                    format!(
                        "static object `{}` matches the discovery rule `{}`",
                        s.api_name, r.pattern
                    ),
                    Some("narrow the rule's pattern".into()),
                );
            }
        }
        let uses_cursor = [
            d.incremental
                .as_ref()
                .map(|i| serde_json::to_string(i).unwrap_or_default()),
            d.deletes
                .as_ref()
                .map(|i| serde_json::to_string(i).unwrap_or_default()),
        ]
        .into_iter()
        .flatten()
        .any(|t| t.contains("{cursor}"));
        if uses_cursor && d.cursor_fields.is_empty() {
            self.err(
                format!("{base}/cursor_fields"),
                "`{cursor}` is used but no `cursor_fields` say which field it is",
                Some("add `cursor_fields: [<timestamp field>, ...]`".into()),
            );
        }
    }

    fn incremental(
        &mut self,
        pointer: &str,
        inc: &Incremental,
        params: &BTreeSet<&str>,
        object: Option<&Object>,
    ) {
        let fields: BTreeSet<&str> = object
            .map(|o| o.fields.iter().map(|f| f.name.as_str()).collect())
            .unwrap_or_default();
        match inc {
            Incremental::Events {
                endpoint,
                pagination,
                fallback,
                ..
            } => {
                self.template(
                    &format!("{pointer}/endpoint/path"),
                    &endpoint.path,
                    params,
                    &BTreeSet::new(),
                    false,
                );
                self.pagination(&format!("{pointer}/pagination"), pagination);
                if let Some(f) = fallback {
                    self.fallback(&format!("{pointer}/fallback"), f);
                }
            }
            Incremental::UpdatedSince {
                field,
                since_param,
                endpoint,
                ..
            } => {
                if let Some(o) = object
                    && !fields.contains(field.as_str())
                {
                    self.err(
                        format!("{pointer}/field"),
                        format!("field `{field}` is not a field of object `{}`", o.name),
                        Some(format!(
                            "declare `{field}` under the object's fields or name another field"
                        )),
                    );
                }
                match endpoint {
                    Some(e) => {
                        self.template(
                            &format!("{pointer}/endpoint/path"),
                            &e.path,
                            params,
                            &fields,
                            true,
                        );
                        if !endpoint_mentions(e, "{since}") {
                            self.err(
                                format!("{pointer}/endpoint/path"),
                                "the incremental endpoint never uses `{since}`",
                                Some("put `{since}` in its path or query".into()),
                            );
                        }
                    }
                    None if since_param.is_none() => self.err(
                        pointer.to_string(),
                        "updated_since needs `since_param` or an `endpoint` using `{since}`",
                        Some("add `since_param: since` or an endpoint template".into()),
                    ),
                    None => {}
                }
            }
            Incremental::Search {
                endpoint,
                pagination,
                field,
                body,
                ..
            } => {
                self.template(
                    &format!("{pointer}/endpoint/path"),
                    &endpoint.path,
                    params,
                    &fields,
                    true,
                );
                self.pagination(&format!("{pointer}/pagination"), pagination);
                if !body.to_string().contains("{since}") {
                    self.err(
                        format!("{pointer}/body"),
                        "the search body never uses `{since}`",
                        Some("filter on the update marker with \"{since}\"".into()),
                    );
                }
                if let Some(o) = object
                    && !fields.contains(field.as_str())
                {
                    self.err(
                        format!("{pointer}/field"),
                        format!("field `{field}` is not a field of object `{}`", o.name),
                        None,
                    );
                }
            }
            Incremental::FullRefresh => {}
        }
    }

    /// What counts as a refused feed: client errors other than a refused
    /// key (401) and rate limiting (429), which must keep their meaning.
    fn fallback(&mut self, pointer: &str, f: &EventsFallback) {
        if f.on_status.is_empty() {
            self.err(
                format!("{pointer}/on_status"),
                "on_status is empty, so the fallback never applies",
                Some("list the statuses of a refused feed, e.g. [403, 404]".into()),
            );
        }
        for (i, status) in f.on_status.iter().enumerate() {
            if !(400..500).contains(status) || *status == 401 || *status == 429 {
                self.err(
                    format!("{pointer}/on_status/{i}"),
                    format!("HTTP {status} cannot mean \"this key may not read the feed\""),
                    Some("list client errors other than 401 (a refused key) and 429 (rate limited), e.g. 403".into()),
                );
            }
        }
        if f.every.get().is_zero() {
            self.err(
                format!("{pointer}/every"),
                "a fallback re-listing every 0s would never rest",
                Some("re-list every few minutes, e.g. `every: 5m`".into()),
            );
        }
    }

    fn deletes(
        &mut self,
        pointer: &str,
        d: &DeleteDetection,
        params: &BTreeSet<&str>,
        object: Option<&Object>,
    ) {
        let fields: BTreeSet<&str> = object
            .map(|o| o.fields.iter().map(|f| f.name.as_str()).collect())
            .unwrap_or_default();
        match d {
            DeleteDetection::DeletedList {
                endpoint,
                pagination,
                window,
                ..
            } => {
                // `{until}`, the end of the span asked for, exists only here.
                let mut with_until = params.clone();
                with_until.insert("until");
                self.template(
                    &format!("{pointer}/endpoint/path"),
                    &endpoint.path,
                    &with_until,
                    &fields,
                    true,
                );
                for (k, v) in &endpoint.query {
                    self.template(
                        &format!("{pointer}/endpoint/query/{k}"),
                        v,
                        &with_until,
                        &fields,
                        true,
                    );
                }
                if let Some(p) = pagination {
                    self.pagination(&format!("{pointer}/pagination"), p);
                }
                if let Some(w) = window {
                    self.delete_window(&format!("{pointer}/window"), w, endpoint, params, &fields);
                }
            }
            // Its `every` is a duration, checked by serde (pass 2).
            DeleteDetection::FullDiff { .. } | DeleteDetection::Events | DeleteDetection::None => {}
        }
    }

    /// A deleted-records list's window: it must be able to tell a cursor
    /// outside it, and its spans must fit.
    fn delete_window(
        &mut self,
        pointer: &str,
        w: &DeleteWindow,
        endpoint: &Endpoint,
        params: &BTreeSet<&str>,
        fields: &BTreeSet<&str>,
    ) {
        if w.earliest.is_none() && w.retention.is_none() && w.expired_codes.is_empty() {
            self.err(
                pointer.to_string(),
                "a delete window that cannot tell a cursor outside it",
                Some("give `earliest` (the response's earliest covered time), `retention` or `expired_codes`".into()),
            );
        }
        let spans = w.max_span.is_some() || w.min_span.is_some() || w.covered.is_some();
        if spans && !endpoint_mentions(endpoint, "{until}") {
            self.err(
                format!("{pointer}/max_span"),
                "a window with spans needs the list to be asked for a span, but its endpoint never uses `{until}`",
                Some("pass the span's end, e.g. `query: {end: \"{until}\"}`".into()),
            );
        }
        if let (Some(min), Some(max)) = (&w.min_span, &w.max_span)
            && min.get() >= max.get()
        {
            self.err(
                format!("{pointer}/min_span"),
                format!("min_span {min} is not shorter than max_span {max}"),
                Some("make `min_span` shorter than `max_span`".into()),
            );
        }
        if let (Some(min), Some(r)) = (&w.min_span, &w.retention)
            && min.get() >= r.get()
        {
            self.err(
                format!("{pointer}/min_span"),
                format!("min_span {min} is not shorter than retention {r}"),
                Some("make `min_span` shorter than `retention`".into()),
            );
        }
        if let Some(l) = &w.full_diff {
            self.template(
                &format!("{pointer}/full_diff/endpoint/path"),
                &l.endpoint.path,
                params,
                fields,
                true,
            );
            if let Some(p) = &l.pagination {
                self.pagination(&format!("{pointer}/full_diff/pagination"), p);
            }
        }
    }

    fn object(&mut self, c: &Connector, base: &str, o: &Object, params: &BTreeSet<&str>) {
        if !is_snake_identifier(&o.name) {
            self.err(
                format!("{base}/name"),
                format!(
                    "object name `{}` is not a lowercase snake_case identifier",
                    o.name
                ),
                Some(format!(
                    "use `{}` (the singular snake_case name)",
                    sequin_spec::naming::table_name(&o.name)
                )),
            );
        }
        self.fields(&format!("{base}/fields"), &o.fields);
        match o.primary_key_field() {
            None => self.err(
                format!("{base}/primary_key"),
                format!(
                    "primary key `{}` is not a field of object `{}`",
                    o.primary_key, o.name
                ),
                Some(format!(
                    "declare a field named `{}` or name an existing one",
                    o.primary_key
                )),
            ),
            Some(f) if f.nullable => {
                let i = o.fields.iter().position(|x| x.name == f.name).unwrap_or(0);
                self.err(
                    format!("{base}/fields/{i}/nullable"),
                    format!("primary key `{}` is nullable", f.name),
                    Some("set `nullable: false`".into()),
                );
            }
            Some(_) => {}
        }
        let fields: BTreeSet<&str> = o.fields.iter().map(|f| f.name.as_str()).collect();
        // A child's endpoints also take its parent's key.
        let mut with_parent = params.clone();
        if let Some(p) = &o.parent {
            with_parent.insert(p.param.as_str());
            self.parent(c, base, o, p);
        }
        self.endpoints(
            &format!("{base}/endpoints"),
            &o.endpoints,
            &with_parent,
            &fields,
            false,
        );
        self.external_ids(base, o);
        let e = &o.endpoints;
        let can_create = e.create.is_some() || e.batch_create.is_some();
        let can_update = e.update.is_some() || e.batch_update.is_some();
        for (i, f) in o.fields.iter().enumerate() {
            let fp = format!("{base}/fields/{i}/access");
            match f.access {
                Access::Writable if !can_create && !can_update => self.err(
                    fp,
                    format!(
                        "field `{}` is writable but object `{}` has no create or update endpoint",
                        f.name, o.name
                    ),
                    Some(
                        "declare endpoints.create / endpoints.update, or make the field read_only"
                            .into(),
                    ),
                ),
                Access::CreateOnly if !can_create => self.err(
                    fp,
                    format!(
                        "field `{}` is create_only but object `{}` has no create endpoint",
                        f.name, o.name
                    ),
                    Some("declare endpoints.create, or make the field read_only".into()),
                ),
                Access::UpdateOnly if !can_update => self.err(
                    fp,
                    format!(
                        "field `{}` is update_only but object `{}` has no update endpoint",
                        f.name, o.name
                    ),
                    Some("declare endpoints.update, or make the field read_only".into()),
                ),
                _ => {}
            }
        }
        if o.max_rows_per_write == 0 {
            self.err(
                format!("{base}/max_rows_per_write"),
                "max_rows_per_write must be at least 1",
                None,
            );
        }
        if c.pagination_of(o).is_none() {
            self.err(
                format!("{base}/endpoints/list"),
                format!(
                    "object `{}` has no pagination (neither its own nor the connector's)",
                    o.name
                ),
                Some("declare `pagination:` on the object or the connector".into()),
            );
        }
        if let Some(p) = &o.pagination {
            self.pagination(&format!("{base}/pagination"), p);
        }
        if let Some(inc) = c.incremental_of(o) {
            let p = if o.incremental.is_some() {
                format!("{base}/incremental")
            } else {
                "/incremental".into()
            };
            // A child uses no strategy of its own (checked in `parent`).
            if o.parent.is_none()
                && (o.incremental.is_some() || !matches!(inc, Incremental::Events { .. }))
            {
                self.incremental(&p, inc, params, Some(o));
            }
        }
        if let Some(d) = &o.deletes {
            self.deletes(&format!("{base}/deletes"), d, params, Some(o));
        }
        if let Some(df) = &o.discovered_fields {
            self.template(
                &format!("{base}/discovered_fields/endpoint/path"),
                &df.endpoint.path,
                params,
                &fields,
                true,
            );
            if let Some(vp) = &df.value_path
                && !vp.contains("{name}")
            {
                self.err(
                    format!("{base}/discovered_fields/value_path"),
                    "value_path must contain `{name}`",
                    Some("e.g. `properties.{name}`".into()),
                );
            }
            if c.type_map.is_empty() {
                self.err(
                    format!("{base}/discovered_fields"),
                    "discovered fields need the connector's `type_map` to type their columns",
                    Some("add `type_map:` mapping the API's type names to column types".into()),
                );
            }
        }
    }

    /// A child object: its parent exists and is no child itself, the list
    /// endpoint uses the parent's key, the field holding it is a top-level
    /// field typed like that key, and nothing is asked of it that sync or
    /// write-through do not do for children.
    fn parent(&mut self, c: &Connector, base: &str, o: &Object, p: &Parent) {
        let pp = format!("{base}/parent");
        match c.object(&p.object) {
            None => {
                let known: Vec<&str> = c
                    .objects
                    .iter()
                    .filter(|x| x.parent.is_none() && x.name != o.name)
                    .map(|x| x.name.as_str())
                    .collect();
                self.err(
                    format!("{pp}/object"),
                    format!("unknown parent object `{}`", p.object),
                    Some(format!(
                        "name one of this connector's objects: {}",
                        known.join(", ")
                    )),
                );
            }
            Some(parent) if parent.name == o.name || parent.parent.is_some() => self.err(
                format!("{pp}/object"),
                format!(
                    "parent `{}` is {}",
                    p.object,
                    if parent.name == o.name {
                        "the object itself"
                    } else {
                        "itself a child object"
                    }
                ),
                Some("name an object listed on its own (one level of nesting)".into()),
            ),
            Some(parent) => {
                if let (Some(key), Some(f)) = (
                    parent.primary_key_field(),
                    o.fields.iter().find(|f| f.name == p.field),
                ) && key.ty != f.ty
                {
                    self.err(
                        format!("{pp}/field"),
                        format!(
                            "field `{}` is {:?} but the primary key of `{}` is {:?}",
                            f.name, f.ty, parent.name, key.ty
                        )
                        .to_lowercase(),
                        Some(format!(
                            "declare `{}` with the type of `{}.{}`",
                            f.name, parent.name, key.name
                        )),
                    );
                }
            }
        }
        if !endpoint_mentions(&o.endpoints.list, &format!("{{{}}}", p.param)) {
            self.err(
                format!("{pp}/param"),
                format!(
                    "the list endpoint `{}` never uses `{{{}}}`",
                    o.endpoints.list.path, p.param
                ),
                Some(format!(
                    "put `{{{}}}` where the parent's id goes, e.g. `/v1/invoices/{{{}}}/lines`",
                    p.param, p.param
                )),
            );
        }
        match o.fields.iter().find(|f| f.name == p.field) {
            None => self.err(
                format!("{pp}/field"),
                format!("field `{}` is not a field of object `{}`", p.field, o.name),
                Some(format!(
                    "declare `{}` (the parent's id) under the object's fields",
                    p.field
                )),
            ),
            Some(f) if f.path.as_deref().is_some_and(|x| x.contains('.')) => self.err(
                format!("{pp}/field"),
                format!("field `{}` is nested (`path: {}`)", f.name, f.value_path()),
                Some("hold the parent's id in a top-level field".into()),
            ),
            Some(_) => {}
        }
        if let Some(embedded) = &p.embedded {
            self.embedded(c, &pp, p, embedded);
        }
        if o.discovered_fields.is_some() {
            self.err(
                format!("{base}/discovered_fields"),
                "a child object's fields cannot be discovered at run time yet",
                Some("declare its fields, or remove `discovered_fields:`".into()),
            );
        }
        if o.incremental.is_some() {
            self.err(
                format!("{base}/incremental"),
                "a child object is kept current through its parent (and the connector's events feed, with `changes_without_parent`)",
                Some("remove `incremental:`".into()),
            );
        }
        if o.deletes.is_some() {
            self.err(
                format!("{base}/deletes"),
                "a child object's deletes are found through its parent (and the connector's events feed, with `changes_without_parent`)",
                Some("remove `deletes:`".into()),
            );
        }
        if p.changes_without_parent && !matches!(c.incremental, Some(Incremental::Events { .. })) {
            self.err(
                format!("{pp}/changes_without_parent"),
                "a child that changes without its parent needs the connector's events feed to see those changes",
                Some("remove `changes_without_parent`, or sync the connector through an events feed".into()),
            );
        }
    }

    /// `parent.embedded`: a `json` field of the parent object.
    fn embedded(&mut self, c: &Connector, pp: &str, p: &Parent, embedded: &str) {
        let Some(parent) = c.object(&p.object) else {
            return;
        };
        match parent.fields.iter().find(|f| f.name == embedded) {
            None => self.err(
                format!("{pp}/embedded"),
                format!("`{embedded}` is not a field of the parent `{}`", parent.name),
                Some(format!(
                    "name the parent's field holding the embedded list, or declare `{embedded}` (type: json) on `{}`",
                    parent.name
                )),
            ),
            Some(f) if f.ty != FieldType::Json => self.err(
                format!("{pp}/embedded"),
                format!(
                    "the parent's field `{embedded}` is {:?}, not json",
                    f.ty
                )
                .to_lowercase(),
                Some(format!("declare `{embedded}` on `{}` with `type: json`", parent.name)),
            ),
            Some(_) => {}
        }
    }

    fn fields(&mut self, base: &str, fields: &[Field]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut columns: HashMap<String, usize> = HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            let fp = format!("{base}/{i}");
            if let Some(first) = names.insert(&f.name, i) {
                self.err(
                    format!("{fp}/name"),
                    format!(
                        "field `{}` is declared twice (first at fields[{first}])",
                        f.name
                    ),
                    None,
                );
            }
            let col = f.column_name();
            if !is_snake_identifier(&col) {
                self.err(
                    format!(
                        "{fp}/{}",
                        if f.column.is_some() { "column" } else { "name" }
                    ),
                    format!("column name `{col}` is not a lowercase snake_case identifier"),
                    Some("set `column:` to a snake_case name".into()),
                );
            }
            if col.starts_with("_sequin") {
                self.err(
                    format!("{fp}/name"),
                    format!("column `{col}` uses the reserved `_sequin` prefix"),
                    Some("set another `column:`".into()),
                );
            }
            if let Some(first) = columns.insert(col.clone(), i) {
                self.err(
                    format!(
                        "{fp}/{}",
                        if f.column.is_some() { "column" } else { "name" }
                    ),
                    format!(
                        "fields `{}` and `{}` both map to column `{col}`",
                        fields[first].name, f.name
                    ),
                    Some("give one of them a distinct `column:`".into()),
                );
            }
            let stringish = matches!(f.ty, FieldType::String);
            if f.max_length.is_some() && !stringish {
                self.err(
                    format!("{fp}/max_length"),
                    format!(
                        "max_length applies to string fields, `{}` is {:?}",
                        f.name, f.ty
                    )
                    .to_lowercase(),
                    None,
                );
            }
            if f.format.is_some() && !stringish {
                self.err(
                    format!("{fp}/format"),
                    format!("format applies to string fields, `{}` is not one", f.name),
                    None,
                );
            }
            if !f.enum_values.is_empty()
                && !matches!(f.ty, FieldType::String | FieldType::StringArray)
            {
                self.err(
                    format!("{fp}/enum"),
                    format!("enum applies to string fields, `{}` is not one", f.name),
                    None,
                );
            }
            if f.time_format.is_some() && f.ty != FieldType::Timestamp {
                self.err(
                    format!("{fp}/time_format"),
                    format!(
                        "time_format applies to timestamp fields, `{}` is not one",
                        f.name
                    ),
                    Some("remove it or set `type: timestamp`".into()),
                );
            }
            if f.merge.is_some() && f.ty != FieldType::Json {
                self.err(
                    format!("{fp}/merge"),
                    format!(
                        "merge applies to json object fields, `{}` is not one",
                        f.name
                    ),
                    Some("remove it or set `type: json`".into()),
                );
            }
            if f.required_on_create && matches!(f.access, Access::ReadOnly | Access::UpdateOnly) {
                self.err(
                    format!("{fp}/required_on_create"),
                    format!(
                        "field `{}` is required on create but {}",
                        f.name,
                        if f.access == Access::ReadOnly {
                            "read_only"
                        } else {
                            "update_only"
                        }
                    ),
                    Some("set `access: writable` or `create_only`".into()),
                );
            }
            if let Some(p) = &f.pattern
                && let Err(e) = regex::Regex::new(p)
            {
                self.err(
                    format!("{fp}/pattern"),
                    format!("pattern does not compile: {e}"),
                    None,
                );
            }
        }
    }

    fn endpoints(
        &mut self,
        base: &str,
        e: &Endpoints,
        params: &BTreeSet<&str>,
        fields: &BTreeSet<&str>,
        dynamic: bool,
    ) {
        let singles: [(&str, Option<&Endpoint>); 5] = [
            ("list", Some(&e.list)),
            ("get", e.get.as_ref()),
            ("create", e.create.as_ref()),
            ("update", e.update.as_ref()),
            ("delete", e.delete.as_ref()),
        ];
        for (name, ep) in singles {
            if let Some(ep) = ep {
                self.template(
                    &format!("{base}/{name}/path"),
                    &ep.path,
                    params,
                    fields,
                    dynamic || name != "list",
                );
                for (k, v) in &ep.query {
                    self.template(
                        &format!("{base}/{name}/query/{}", escape_segment(k)),
                        v,
                        params,
                        fields,
                        true,
                    );
                }
            }
        }
        for (name, ep) in [
            ("update", e.update.as_ref()),
            ("delete", e.delete.as_ref()),
            ("get", e.get.as_ref()),
        ] {
            if let Some(ep) = ep
                && !ep.path.contains('{')
            {
                self.err(
                    format!("{base}/{name}/path"),
                    format!("the {name} endpoint `{}` does not name the record", ep.path),
                    Some("put `{id}` (or another field) in the path".into()),
                );
            }
        }
        let batches: [(&str, Option<&BatchEndpoint>); 3] = [
            ("batch_create", e.batch_create.as_ref()),
            ("batch_update", e.batch_update.as_ref()),
            ("batch_delete", e.batch_delete.as_ref()),
        ];
        for (name, b) in batches {
            if let Some(b) = b {
                self.template(
                    &format!("{base}/{name}/path"),
                    &b.endpoint.path,
                    params,
                    fields,
                    true,
                );
                if b.max_size < 2 {
                    self.err(
                        format!("{base}/{name}/max_size"),
                        format!("a batch of at most {} is not a batch", b.max_size),
                        Some("use the single-record endpoint instead".into()),
                    );
                }
            }
        }
        if let Some(u) = &e.upsert {
            self.upsert(&format!("{base}/upsert"), u, params, fields);
        }
    }

    /// An upsert endpoint: its paths name the external id field (and the
    /// single one its value), and its answer says whether a record was
    /// created.
    fn upsert(&mut self, base: &str, u: &Upsert, params: &BTreeSet<&str>, fields: &BTreeSet<&str>) {
        let mut with_external = params.clone();
        with_external.extend(UPSERT_PLACEHOLDERS);
        if u.single.is_none() && u.batch.is_none() {
            self.err(
                base.to_string(),
                "an upsert needs a `single` or a `batch` endpoint",
                Some("declare `single:` (one record) and/or `batch:` (several)".into()),
            );
        }
        if let Some(ep) = &u.single {
            self.template(
                &format!("{base}/single/path"),
                &ep.path,
                &with_external,
                fields,
                true,
            );
            for needed in UPSERT_PLACEHOLDERS {
                if !ep.path.contains(&format!("{{{needed}}}")) {
                    self.err(
                        format!("{base}/single/path"),
                        format!(
                            "the single upsert endpoint `{}` does not name `{{{needed}}}`",
                            ep.path
                        ),
                        Some("e.g. `/sobjects/{object}/{external_field}/{external_value}`".into()),
                    );
                }
            }
            if u.created.is_none() && u.created_status.is_none() {
                self.err(
                    base.to_string(),
                    "the single upsert's answer must say whether it created the record",
                    Some("declare `created:` (a boolean in the answer) or `created_status:` (e.g. 201)".into()),
                );
            }
        }
        if let Some(b) = &u.batch {
            self.template(
                &format!("{base}/batch/path"),
                &b.endpoint.path,
                &with_external,
                fields,
                true,
            );
            if b.endpoint.path.contains("{external_value}") {
                self.err(
                    format!("{base}/batch/path"),
                    "a batch upsert carries each record's external id in its item, not in the path",
                    Some("remove `{external_value}` from the batch path".into()),
                );
            }
            if b.items.is_none() {
                self.err(
                    format!("{base}/batch"),
                    "a batch upsert needs `items` (the key of the record array)",
                    Some("e.g. `items: records`".into()),
                );
            }
            if b.max_size < 2 {
                self.err(
                    format!("{base}/batch/max_size"),
                    format!("a batch of at most {} is not a batch", b.max_size),
                    Some("use the single upsert endpoint instead".into()),
                );
            }
            if u.created.is_none() {
                self.err(
                    base.to_string(),
                    "a batch upsert's results must say which records were created",
                    Some("declare `created:` (the boolean of each result, e.g. `created`)".into()),
                );
            }
        }
    }

    /// External ids: each is a string or integer field that may be set,
    /// of an object with an upsert endpoint; an upsert has an external id
    /// (declared, or discovered through `discovered_fields.field.external_id`).
    fn external_ids(&mut self, base: &str, o: &Object) {
        let discovered = o
            .discovered_fields
            .as_ref()
            .is_some_and(|d| d.field.external_id.is_some());
        let declared: Vec<(usize, &Field)> = o
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.external_id)
            .collect();
        for (i, f) in &declared {
            let fp = format!("{base}/fields/{i}/external_id");
            if o.endpoints.upsert.is_none() {
                self.err(
                    fp.clone(),
                    format!(
                        "field `{}` is an external id but object `{}` has no upsert endpoint",
                        f.name, o.name
                    ),
                    Some("declare endpoints.upsert, or remove `external_id`".into()),
                );
            }
            if !matches!(f.ty, FieldType::String | FieldType::Integer) {
                self.err(
                    fp.clone(),
                    format!("external id `{}` must be a string or integer field", f.name),
                    Some("use `type: string` or `type: integer`".into()),
                );
            }
            if matches!(f.access, Access::ReadOnly | Access::UpdateOnly) || f.name == o.primary_key
            {
                self.err(
                    fp,
                    format!("external id `{}` must be settable on create, and not the primary key", f.name),
                    Some("set `access: writable` (or `create_only`) on another field than the primary key".into()),
                );
            }
        }
        if o.endpoints.upsert.is_some() && declared.is_empty() && !discovered {
            self.err(
                format!("{base}/endpoints/upsert"),
                format!("object `{}` has an upsert endpoint but no external id field", o.name),
                Some("mark a field `external_id: true`, or set `discovered_fields.field.external_id`".into()),
            );
        }
    }

    /// Asynchronous query jobs: each template uses only its own
    /// placeholders, the create's body carries `{query}`, the states and
    /// pauses make sense, and every static object has the window's field.
    fn async_query(&mut self, c: &Connector, q: &AsyncQuery, params: &BTreeSet<&str>) {
        let base = "/async_query";
        let body = Value::Object(q.create.body.clone()).to_string();
        if q.create.method != Method::Post || !body.contains("{query}") {
            self.err(
                format!("{base}/create"),
                "the create endpoint must be a POST whose body carries `{query}`",
                Some(
                    "e.g. `method: POST` and `body: {operation: query, query: \"{query}\"}`".into(),
                ),
            );
        }
        let only = |this: &mut Self, pointer: &str, t: &str, allowed: &[&str]| {
            for name in placeholders(t) {
                if !allowed.contains(&name.as_str()) && !params.contains(name.as_str()) {
                    this.err(
                        pointer.to_string(),
                        format!("unknown placeholder `{{{name}}}` in `{t}`"),
                        Some(format!(
                            "use {} or a connection parameter",
                            allowed
                                .iter()
                                .map(|p| format!("{{{p}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
            }
        };
        only(self, &format!("{base}/create/path"), &q.create.path, &[]);
        only(
            self,
            &format!("{base}/query"),
            &q.query,
            &["fields", "object", "window"],
        );
        only(self, &format!("{base}/window"), &q.window, &["after"]);
        if !placeholders(&q.window).iter().any(|p| p == "after") {
            self.err(
                format!("{base}/window"),
                "the window must use `{after}` (the last committed record's window_field)",
                Some("e.g. ` WHERE Id > '{after}'`".into()),
            );
        }
        if !placeholders(&q.query).iter().any(|p| p == "window") {
            self.err(
                format!("{base}/query"),
                "the query must place `{window}` (where a job created again restricts it)",
                Some("e.g. `SELECT {fields} FROM {object}{window} ORDER BY Id ASC`".into()),
            );
        }
        for (pointer, e) in [
            ("status", &q.status),
            ("results/endpoint", &q.results.endpoint),
        ] {
            only(
                self,
                &format!("{base}/{pointer}/path"),
                &e.path,
                &["job", "object"],
            );
            if !e.path.contains("{job}") {
                self.err(
                    format!("{base}/{pointer}/path"),
                    format!("`{}` does not name the job: `{{job}}` is missing", e.path),
                    None,
                );
            }
        }
        only(
            self,
            &format!("{base}/count/endpoint/path"),
            &q.count.endpoint.path,
            &["object"],
        );
        for v in q.count.endpoint.query.values() {
            only(
                self,
                &format!("{base}/count/endpoint/query"),
                v,
                &["object"],
            );
        }
        if q.done.is_empty() {
            self.err(
                format!("{base}/done"),
                "no state says the results are ready",
                Some("e.g. `done: [JobComplete]`".into()),
            );
        }
        if let Some(s) = q.done.iter().find(|s| q.failed.contains(s)) {
            self.err(
                format!("{base}/failed"),
                format!("state `{s}` is both done and failed"),
                None,
            );
        }
        if q.poll_first.get() > q.poll_max.get() {
            self.err(
                format!("{base}/poll_first"),
                format!(
                    "poll_first ({}) is longer than poll_max ({})",
                    q.poll_first, q.poll_max
                ),
                Some("make poll_max the longest pause".into()),
            );
        }
        if q.results.page_size == 0 {
            self.err(
                format!("{base}/results/page_size"),
                "page_size must be at least 1",
                None,
            );
        }
        if q.threshold == 0 {
            self.err(
                format!("{base}/threshold"),
                "threshold must be at least 1",
                Some("e.g. `threshold: 100000`".into()),
            );
        }
        for (i, o) in c.objects.iter().enumerate() {
            if o.parent.is_none() && !o.fields.iter().any(|f| f.name == q.window_field) {
                self.err(
                    format!("/objects/{i}/fields"),
                    format!(
                        "object `{}` has no field `{}`, the async query's window_field",
                        o.name, q.window_field
                    ),
                    Some(format!(
                        "declare `{}` or change `async_query.window_field`",
                        q.window_field
                    )),
                );
            }
        }
    }

    /// Every `{placeholder}` of a template must be known.
    fn template(
        &mut self,
        pointer: &str,
        t: &str,
        params: &BTreeSet<&str>,
        fields: &BTreeSet<&str>,
        record_ok: bool,
    ) {
        for name in placeholders(t) {
            let known = params.contains(name.as_str())
                || BUILTIN_PLACEHOLDERS.contains(&name.as_str())
                || (record_ok && fields.contains(name.as_str()));
            if !known {
                self.err(
                    pointer.to_string(),
                    format!("unknown placeholder `{{{name}}}` in `{t}`"),
                    Some(format!(
                        "declare `{name}` under params, or use one of {}{}",
                        BUILTIN_PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if record_ok {
                            " or a field of the object"
                        } else {
                            ""
                        }
                    )),
                );
            }
        }
    }
}

fn endpoint_mentions(e: &Endpoint, s: &str) -> bool {
    e.path.contains(s)
        || e.query.values().any(|v| v.contains(s))
        || Value::Object(e.body.clone()).to_string().contains(s)
}

pub use sequin_spec::model::placeholders;

/// Checks every spec file, and cross-file rules (unique connector names).
pub fn check_files(
    files: &[(std::path::PathBuf, String)],
    schema: &jsonschema::Validator,
) -> (Vec<CheckedSpec>, Diagnostics) {
    let mut ok = Vec::new();
    let mut diags = Vec::new();
    let mut names: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
    for (path, text) in files {
        match check_source(path, text, schema) {
            Ok(spec) => {
                if let Some(first) = names.insert(spec.connector.name.clone(), path.clone()) {
                    let doc = yaml::parse(text).unwrap_or_default();
                    diags.push(Diagnostic {
                        file: path.clone(),
                        span: doc.span("/name"),
                        message: format!(
                            "connector name `{}` is already used by {}",
                            spec.connector.name,
                            first.display()
                        ),
                        fix: Some("connector names must be unique".into()),
                    });
                } else {
                    ok.push(spec);
                }
            }
            Err(d) => diags.extend(d.0),
        }
    }
    (ok, Diagnostics(diags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_durations() {
        assert_eq!(
            placeholders("/v0/{base_id}/{object}?x={since}"),
            ["base_id", "object", "since"]
        );
        assert_eq!(placeholders("{\"a\": 1}"), Vec::<String>::new());
    }

    /// The todo spec with `every: 60s` (its full diff's) replaced.
    fn todo_with_every(every: &str) -> Result<CheckedSpec, Diagnostics> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/todo.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("  every: 60s\n"));
        let text = text.replace("  every: 60s\n", &format!("  every: {every}\n"));
        check_source(Path::new("todo.yaml"), &text, &crate::current_validator())
    }

    /// The Salesforce spec with its delete window's text edited.
    fn salesforce_with(edits: &[(&str, &str)]) -> Result<CheckedSpec, Diagnostics> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors/salesforce.yaml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "{from}");
            text = text.replace(from, to);
        }
        check_source(
            Path::new("salesforce.yaml"),
            &text,
            &crate::current_validator(),
        )
    }

    fn messages(r: Result<CheckedSpec, Diagnostics>) -> Vec<String> {
        match r {
            Ok(_) => Vec::new(),
            Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_delete_window_must_tell_a_cursor_outside_it_and_fit_its_spans() {
        assert!(salesforce_with(&[]).is_ok());
        let blind = messages(salesforce_with(&[
            ("    earliest: earliestDateAvailable\n", ""),
            ("    retention: 15d\n", ""),
            ("    expired_codes: [INVALID_REPLICATION_DATE]\n", ""),
        ]));
        assert!(
            blind
                .iter()
                .any(|m| m.contains("cannot tell a cursor outside it")),
            "{blind:?}"
        );
        let no_until = messages(salesforce_with(&[(
            "query: {start: \"{since}\", end: \"{until}\"}",
            "query: {start: \"{since}\"}",
        )]));
        assert!(
            no_until.iter().any(|m| m.contains("never uses `{until}`")),
            "{no_until:?}"
        );
        let spans = messages(salesforce_with(&[(
            "    min_span: 2m\n",
            "    min_span: 31d\n",
        )]));
        assert!(
            spans
                .iter()
                .any(|m| m.contains("min_span 31d is not shorter than max_span 30d")),
            "{spans:?}"
        );
        let unknown = messages(salesforce_with(&[(
            "end: \"{until}\"",
            "end: \"{until}\", x: \"{untill}\"",
        )]));
        assert!(
            unknown
                .iter()
                .any(|m| m.contains("unknown placeholder `{untill}`")),
            "{unknown:?}"
        );
    }

    #[test]
    fn a_bad_duration_is_a_spec_error_at_its_place() {
        let good = todo_with_every("60s").expect("the todo spec is valid");
        match &good.connector.deletes {
            Some(DeleteDetection::FullDiff { every }) => {
                assert_eq!(every.get(), std::time::Duration::from_secs(60))
            }
            other => panic!("{other:?}"),
        }
        let Err(d) = todo_with_every("5 minutes") else {
            panic!("a bad duration must be rejected");
        };
        // Inside an internally tagged enum (`deletes`) serde loses the key,
        // so the place is the enclosing block.
        let got: Vec<String> = d.0.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            got,
            [
                "todo.yaml:33:7: `5 minutes` is not a duration; write a number and a unit: 500ms, 1s, 10s, 5m, 1h, 30d"
            ],
            "got:\n{}",
            got.join("\n")
        );
    }

    /// Salesforce's spec with `from` replaced by `to` (which must occur).
    fn salesforce_replacing(from: &str, to: &str) -> Result<CheckedSpec, Vec<String>> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors/salesforce.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from}");
        let text = text.replacen(from, to, 1);
        check_source(
            Path::new("salesforce.yaml"),
            &text,
            &crate::current_validator(),
        )
        .map_err(|d| d.0.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn discovered_objects_need_their_fields_their_cursor_and_rules_sparing_static_objects() {
        let describe = "  describe:\n    endpoint: {path: \"/services/data/{api_version}/sobjects/{object}/describe\"}\n    records: fields\n";
        let spec = salesforce_replacing(describe, describe).expect("salesforce.yaml is valid");
        let d = spec.connector.discovered_objects.as_ref().unwrap();
        assert!(d.denied("ContentDocumentLink").is_some());
        assert!(d.excluded_by_default("AccountHistory").is_some());
        assert!(d.excluded_by_default("Invoice__c").is_none());

        let no_fields = salesforce_replacing(describe, "").unwrap_err();
        assert!(
            no_fields
                .iter()
                .any(|e| e.contains("need `fields` (in the listing) or `describe`")),
            "{no_fields:?}"
        );
        let no_cursor =
            salesforce_replacing("  cursor_fields: [SystemModstamp, LastModifiedDate]\n", "")
                .unwrap_err();
        assert!(
            no_cursor
                .iter()
                .any(|e| e.contains("`{cursor}` is used but no `cursor_fields`")),
            "{no_cursor:?}"
        );
        let static_denied = salesforce_replacing(
            "  deny:\n",
            "  deny:\n    - {pattern: \"Acc*\", why: \"too broad\"}\n",
        )
        .unwrap_err();
        assert!(
            static_denied
                .iter()
                .any(|e| e.contains("static object `Account` matches the discovery rule `Acc*`")),
            "{static_denied:?}"
        );
        let no_reason = salesforce_replacing(
            "  deny:\n",
            "  deny:\n    - {pattern: \"Foo\", why: \" \"}\n",
        )
        .unwrap_err();
        assert!(
            no_reason
                .iter()
                .any(|e| e.contains("a rule needs a pattern and a reason")),
            "{no_reason:?}"
        );
    }

    #[test]
    fn async_query_mistakes_are_spec_errors() {
        let good = salesforce_replacing("threshold: 100000", "threshold: 100000").expect("valid");
        assert_eq!(
            good.connector.async_query.as_ref().unwrap().threshold,
            100_000
        );
        for (from, to, says) in [
            (
                "window: \" WHERE Id > '{after}'\"",
                "window: \" WHERE Id > '{last}'\"",
                "unknown placeholder `{last}`",
            ),
            (
                "window: \" WHERE Id > '{after}'\"",
                "window: \" WHERE Id > 'x'\"",
                "the window must use `{after}`",
            ),
            (
                "{object}{window} ORDER BY",
                "{object} ORDER BY",
                "the query must place `{window}`",
            ),
            (
                "jobs/query/{job}\"}",
                "jobs/query/one\"}",
                "does not name the job",
            ),
            (
                "query: \"{query}\"",
                "query: \"fixed\"",
                "whose body carries `{query}`",
            ),
            (
                "done: [JobComplete]",
                "done: [Failed]",
                "state `Failed` is both done and failed",
            ),
            (
                "poll_first: 1s",
                "poll_first: 1m",
                "poll_first (1m) is longer than poll_max (30s)",
            ),
            (
                "threshold: 100000",
                "threshold: 0",
                "threshold must be at least 1",
            ),
            (
                "window_field: Id",
                "window_field: Key",
                "has no field `Key`, the async query's window_field",
            ),
        ] {
            let Err(d) = salesforce_replacing(from, to) else {
                panic!("{to:?} must be rejected");
            };
            let got = d;
            assert!(
                got.iter().any(|g| g.contains(says)),
                "{to:?}: want {says:?}, got:\n{}",
                got.join("\n")
            );
        }
    }
}
