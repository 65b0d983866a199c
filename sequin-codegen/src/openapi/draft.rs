//! A draft connector from a surveyed document: the resources chosen, each
//! made an object, the connector's settings around them, and the comments.

use std::collections::{BTreeMap, BTreeSet};

use sequin_spec::Connector;
use sequin_spec::model::{
    BatchEndpoint, Endpoint, Endpoints, Incremental, Method, Object, Pagination, Param,
};
use serde_json::Value;

use super::Error;
use super::api;
use super::document::Document;
use super::fields::{self, Bodies};
use super::notes::Notes;
use super::resource::{Resource, Survey, singular};
use super::schema::view;

/// What to draft.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The connector's name (`stripe`).
    pub connector: String,
    /// Resources to draft, by name; empty: every top-level one.
    pub objects: Vec<String>,
    /// `$schema` of the draft (`./schema.json` beside the connectors).
    pub schema_ref: Option<String>,
}

/// A drafted spec and what the merge needs to know about it.
#[derive(Clone, Debug)]
pub struct Draft<'a> {
    pub header: Vec<String>,
    pub connector: Connector,
    pub notes: Notes,
    /// Per object (same index as `connector.objects`): its record schema.
    pub records: Vec<&'a Value>,
}

/// Drafts the connector `opts` asks for.
pub fn draft<'a>(
    doc: &'a Document,
    survey: &Survey<'a>,
    opts: &Options,
) -> Result<Draft<'a>, Error> {
    let mut chosen = choose(doc, survey, &opts.objects)?;
    let mut notes = Notes::default();
    for (i, r) in chosen.iter_mut().enumerate() {
        for text in drop_unsendable_writes(doc, r) {
            notes.review(format!("/objects/{i}/endpoints"), text);
        }
    }
    let mut objects = Vec::new();
    let mut paginations = Vec::new();
    let mut records = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    for (i, r) in chosen.iter().enumerate() {
        let (object, pagination, object_notes) = object(doc, r);
        notes.absorb(&format!("/objects/{i}"), object_notes);
        for p in r.parents.iter().chain(&r.required_query) {
            if !params.iter().any(|q| &q.name == p) {
                params.push(Param {
                    name: p.clone(),
                    description: format!("The `{p}` of {}.", r.collection),
                    required: true,
                    default: None,
                });
            }
        }
        objects.push(object);
        paginations.push(pagination);
        records.push(r.record);
    }
    let default = most_common(&paginations);
    for (i, (o, p)) in objects.iter_mut().zip(paginations).enumerate() {
        match p {
            Some(p) if Some(&p) != default.as_ref() => o.pagination = Some(p),
            Some(_) => {}
            None if default.is_some() => notes.review(
                format!("/objects/{i}/endpoints/list"),
                "the list takes no paging parameter the importer knows; the connector's pagination is assumed",
            ),
            None => {}
        }
    }
    let feed = survey
        .resources
        .iter()
        .find(|r| r.is_plain() && r.segment == "events")
        .map(|r| (r.collection.as_str(), api::event_types(doc)));
    if let Some((_, types)) = feed.as_ref().filter(|(_, t)| !t.is_empty()) {
        mark_unfollowed(&mut objects, types, &mut notes);
    }
    let connector = connector(doc, opts, &chosen, objects, params, default, &mut notes);
    full_refresh_notes(feed, &connector, &mut notes);
    if !connector.params.is_empty() {
        notes.review(
            "/params",
            "placeholders of nested list paths and required list parameters: a connection syncs the records of one parent",
        );
    }
    let header = header(doc, &connector, notes.reviews());
    Ok(Draft {
        header,
        connector,
        notes,
        records,
    })
}

/// The resources to draft: those named, or every top-level one; one per
/// table name.
fn choose<'a>(
    doc: &Document,
    survey: &Survey<'a>,
    names: &[String],
) -> Result<Vec<Resource<'a>>, Error> {
    let mut chosen: Vec<Resource> = if names.is_empty() {
        let plain: Vec<&Resource> = survey.resources.iter().filter(|r| r.is_plain()).collect();
        // One resource per record schema: a list served at two paths (an
        // old name kept beside the new) is drafted once, at the preferred.
        plain
            .iter()
            .filter(|r| {
                !plain.iter().any(|o| {
                    std::ptr::eq(doc.deref(o.record), doc.deref(r.record))
                        && o.table == r.table
                        && preference(o) < preference(r)
                })
            })
            .map(|r| (*r).clone())
            .collect()
    } else {
        let mut out = Vec::new();
        for name in names {
            let mut matches: Vec<&Resource> = survey
                .resources
                .iter()
                .filter(|r| r.answers_to(name))
                .collect();
            matches.sort_by_key(|r| (!r.is_plain(), r.parents.len(), preference(r)));
            match matches.first() {
                Some(r) => out.push((*r).clone()),
                None => return Err(unknown_object(doc, survey, name)),
            }
        }
        out
    };
    if chosen.is_empty() {
        let names: Vec<String> = survey
            .resources
            .iter()
            .take(12)
            .map(|r| format!("`{}` ({})", r.table, r.collection))
            .collect();
        return Err(Error::NoResources {
            what: "top-level list endpoint without required parameters".into(),
            file: doc.name.clone(),
            fix: format!(
                "name the resources to import with --objects; the document lists {}",
                names.join(", ")
            ),
        });
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &mut chosen {
        let n = seen.entry(r.table.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            r.table = format!("{}_{n}", r.table);
        }
    }
    Ok(chosen)
}

/// How a resource ranks among others serving the same records, lowest
/// first: not deprecated, then a path whose last segment names the object
/// (`/v1/balance_transactions` over `/v1/balance/history`).
fn preference(r: &Resource) -> (bool, bool) {
    let deprecated = r.list["deprecated"].as_bool() == Some(true);
    let named = [r.table.as_str(), r.api_name.as_str()].iter().any(|n| {
        Resource::same_name(n, &r.segment) || Resource::same_name(n, &singular(&r.segment))
    });
    (deprecated, !named)
}

/// Leaves out the create and update endpoints whose request body only
/// comes as `multipart/form-data` (file uploads), which write-through
/// cannot send (it sends JSON or form-urlencoded bodies); says why.
fn drop_unsendable_writes(doc: &Document, r: &mut Resource) -> Vec<String> {
    let multipart = |op: &Value| {
        doc.request_body(op)
            .is_some_and(|(media, _)| media.starts_with("multipart/"))
    };
    let mut out = Vec::new();
    if r.create.is_some_and(multipart) {
        r.create = None;
        out.push(format!(
            "POST {} takes only a multipart/form-data body (an upload), which write-through cannot send (it sends JSON or form-urlencoded): create is left out",
            r.collection
        ));
    }
    if r.update.is_some_and(|(_, op)| multipart(op)) {
        r.update = None;
        out.push(format!(
            "the update of {} takes only a multipart/form-data body (an upload), which write-through cannot send (it sends JSON or form-urlencoded): update is left out",
            r.collection
        ));
    }
    out
}

fn unknown_object(doc: &Document, survey: &Survey, name: &str) -> Error {
    let all: Vec<&str> = survey
        .resources
        .iter()
        .filter(|r| r.is_plain())
        .map(|r| r.table.as_str())
        .collect();
    let lower = name.to_ascii_lowercase();
    let mut near: Vec<&str> = all
        .iter()
        .copied()
        .filter(|t| t.contains(&lower) || lower.contains(*t))
        .collect();
    if near.is_empty() {
        near = all.clone();
    }
    let shown: Vec<String> = near.iter().take(12).map(|t| format!("`{t}`")).collect();
    let more = if near.len() > 12 {
        format!(
            " (and {} more; without --objects every one is drafted)",
            near.len() - 12
        )
    } else {
        String::new()
    };
    Error::UnknownObject {
        name: name.to_string(),
        file: doc.name.clone(),
        choices: format!("{}{more}", shown.join(", ")),
    }
}

/// One resource as an object, with its list's pagination and its comments
/// (pointers relative to the object).
fn object(doc: &Document, r: &Resource) -> (Object, Option<Pagination>, Notes) {
    let mut notes = Notes::default();
    let record = view(doc, r.record);
    let item_param = r.item.as_ref().map(|i| i.1.as_str());
    let (pk, pk_review) = fields::primary_key(&record, item_param, &r.table);
    if let Some(text) = pk_review {
        notes.review("/primary_key", text);
    }
    let bodies = Bodies {
        create: r
            .create
            .and_then(|op| doc.request_body(op))
            .map(|b| view(doc, b.1)),
        update: r
            .update
            .and_then(|(_, op)| doc.request_body(op))
            .map(|b| view(doc, b.1)),
    };
    let mut object_notes = Vec::new();
    let fields = fields::fields(doc, &record, &bodies, &pk, &mut notes, &mut object_notes);
    for n in object_notes {
        notes.note("/fields", n);
    }
    let (pagination, page_reviews) = api::pagination(doc, &r.collection, r.list, &r.records, &pk);
    for text in page_reviews {
        notes.review("/endpoints/list", text);
    }
    let (incremental, inc_reviews) = api::incremental(doc, &r.collection, r.list, &fields);
    for text in inc_reviews {
        notes.review("/incremental", text);
    }
    if incremental.is_none()
        && let Some(search) = &r.search
    {
        notes.review(
            "",
            format!("POST {search} exists: `incremental: {{kind: search}}` on the last-modified property would poll changes only"),
        );
    }
    let endpoints = endpoints(doc, r, &fields, &pk, &mut notes);
    let object = Object {
        name: r.table.clone(),
        api_name: r.api_name.clone(),
        description: description(doc, r),
        primary_key: pk,
        endpoints,
        pagination: None,
        incremental,
        deletes: None,
        max_rows_per_write: 100,
        fields,
        discovered_fields: None,
        parent: None,
    };
    (object, pagination, notes)
}

/// The object's endpoints; the single-record path's placeholder becomes
/// `{id}` unless it names another field.
fn endpoints(
    doc: &Document,
    r: &Resource,
    fields: &[sequin_spec::model::Field],
    pk: &str,
    notes: &mut Notes,
) -> Endpoints {
    let item_path = r.item.as_ref().map(|(path, param)| {
        let other_field = param != pk && fields.iter().any(|f| &f.name == param);
        if other_field {
            return path.clone();
        }
        let lower = param.to_ascii_lowercase();
        let idlike = lower == "id"
            || lower.ends_with("id")
            || [r.table.as_str(), r.api_name.as_str(), &singular(&r.segment)]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(param) || n.replace('_', "").eq_ignore_ascii_case(param));
        if !idlike {
            notes.review(
                "/endpoints/get",
                format!("the path names the record by `{{{param}}}`; `{{id}}` (the primary key) is assumed"),
            );
        }
        path.replace(&format!("{{{param}}}"), "{id}")
    });
    let single = |method: Method, path: &str| Endpoint {
        method,
        path: path.to_string(),
        query: BTreeMap::new(),
        records: None,
        wrap: None,
        body: serde_json::Map::new(),
        returns_id: None,
    };
    let records = (!r.records.is_empty()).then(|| r.records.clone());
    let on_item = |present: bool, method: Method| {
        item_path
            .as_ref()
            .filter(|_| present)
            .map(|p| single(method, p))
    };
    if let Some((Method::Put, _)) = r.update {
        notes.review(
            "/endpoints/update",
            "PUT usually replaces the whole record, and write-through sends only the changed fields: check that PUT merges",
        );
    }
    Endpoints {
        list: Endpoint {
            records,
            query: r
                .required_query
                .iter()
                .map(|q| (q.clone(), format!("{{{q}}}")))
                .collect(),
            ..single(Method::Get, &r.collection)
        },
        get: on_item(r.get.is_some(), Method::Get),
        create: r.create.map(|_| single(Method::Post, &r.collection)),
        update: r.update.and_then(|(m, _)| on_item(true, m)),
        delete: on_item(r.delete.is_some(), Method::Delete),
        batch_create: batch(
            doc,
            r.batch_create.as_ref(),
            false,
            "/endpoints/batch_create",
            notes,
        ),
        batch_update: batch(
            doc,
            r.batch_update.as_ref(),
            true,
            "/endpoints/batch_update",
            notes,
        ),
        batch_delete: batch(
            doc,
            r.batch_delete.as_ref(),
            true,
            "/endpoints/batch_delete",
            notes,
        ),
        upsert: None,
    }
}

/// A batch endpoint: the body's record array, the response's results, the
/// items' id key and the most records a request may carry.
fn batch(
    doc: &Document,
    found: Option<&(String, &Value)>,
    by_id: bool,
    pointer: &str,
    notes: &mut Notes,
) -> Option<BatchEndpoint> {
    let (path, op) = found?;
    let body = doc
        .request_body(op)
        .map(|b| view(doc, b.1))
        .unwrap_or_default();
    let items = body
        .properties
        .iter()
        .find(|(_, s)| view(doc, s).items.is_some())
        .map(|(n, s)| (n.to_string(), view(doc, s)));
    let item_id = items
        .as_ref()
        .and_then(|(_, v)| v.items)
        .map(|i| view(doc, i))
        .filter(|_| by_id)
        .and_then(|i| i.property("id").map(|_| "id".to_string()));
    let results = doc.success_schema(op).map(|s| view(doc, s)).and_then(|v| {
        v.properties
            .iter()
            .find(|(n, s)| *n == "results" || view(doc, s).items.is_some() && *n != "errors")
            .map(|(n, _)| n.to_string())
    });
    let max = items.as_ref().and_then(|(_, v)| v.max_items);
    if max.is_none() {
        notes.review(
            format!("{pointer}/max_size"),
            "the document states no batch limit: 100 is assumed",
        );
    }
    Some(BatchEndpoint {
        endpoint: Endpoint {
            method: Method::Post,
            path: path.clone(),
            query: BTreeMap::new(),
            records: None,
            wrap: None,
            body: serde_json::Map::new(),
            returns_id: None,
        },
        max_size: max.and_then(|m| u32::try_from(m).ok()).unwrap_or(100),
        items: items.map(|(n, _)| n),
        results: results.filter(|_| !by_id || item_id.is_some()),
        atomic: false,
        item_id,
        item_body: serde_json::Map::new(),
        ids_param: None,
    })
}

/// The first sentence of the record's (or the list operation's) description.
fn description(doc: &Document, r: &Resource) -> Option<String> {
    let record = view(doc, r.record);
    let texts = [
        record.description,
        r.list["description"].as_str(),
        r.list["summary"].as_str(),
    ];
    texts.into_iter().flatten().find_map(first_sentence)
}

fn first_sentence(text: &str) -> Option<String> {
    let tags = regex::Regex::new(r"<[^>]+>").expect("the pattern compiles");
    let links = regex::Regex::new(r"\[([^\]]*)\]\([^)]*\)").expect("the pattern compiles");
    let plain = links
        .replace_all(&tags.replace_all(text, " "), "$1")
        .to_string();
    let plain = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    let end = plain
        .match_indices(". ")
        .map(|(i, _)| i + 1)
        .find(|i| *i >= 12)
        .unwrap_or(plain.len());
    let sentence = plain[..end].trim().to_string();
    (sentence.len() >= 12 && sentence.len() <= 300).then_some(sentence)
}

/// The pagination most objects share (the first of equals wins).
fn most_common(all: &[Option<Pagination>]) -> Option<Pagination> {
    let mut counts: Vec<(&Pagination, usize)> = Vec::new();
    for p in all.iter().flatten() {
        match counts.iter_mut().find(|(q, _)| *q == p) {
            Some(c) => c.1 += 1,
            None => counts.push((p, 1)),
        }
    }
    let max = counts.iter().map(|c| c.1).max()?;
    counts.into_iter().find(|c| c.1 == max).map(|c| c.0.clone())
}

/// The connector around the objects.
fn connector(
    doc: &Document,
    opts: &Options,
    chosen: &[Resource],
    objects: Vec<Object>,
    params: Vec<Param>,
    pagination: Option<Pagination>,
    notes: &mut Notes,
) -> Connector {
    let mut ops: Vec<&Value> = Vec::new();
    let mut writes: Vec<&Value> = Vec::new();
    let mut creates: Vec<(&str, &Value)> = Vec::new();
    for r in chosen {
        ops.push(r.list);
        ops.extend(r.get);
        if let Some(c) = r.create {
            writes.push(c);
            creates.push((r.collection.as_str(), c));
        }
        writes.extend(r.update.map(|u| u.1));
        ops.extend(r.delete);
    }
    ops.extend(writes.iter().copied());
    let (base_url, reviews) = api::base_url(doc);
    reviews
        .into_iter()
        .for_each(|t| notes.review("/base_url", t));
    let (auth, reviews, plain) = api::auth(doc, &ops);
    reviews.into_iter().for_each(|t| notes.review("/auth", t));
    plain.into_iter().for_each(|t| notes.note("/auth", t));
    let (errors, reviews) = api::errors(doc, &ops);
    reviews.into_iter().for_each(|t| notes.review("/errors", t));
    let (rate_limit, reviews) = api::rate_limit(doc, &ops);
    reviews
        .into_iter()
        .for_each(|t| notes.review("/rate_limit", t));
    notes.review(
        "/display_name",
        "how users name the API; errors show it as `[<display_name>]: ...`",
    );
    Connector {
        schema: opts.schema_ref.clone(),
        name: opts.connector.clone(),
        display_name: display_name(&opts.connector),
        description: doc.root["info"]["description"]
            .as_str()
            .and_then(first_sentence)
            .or_else(|| Some(format!("Objects of {}.", doc.title()))),
        base_url,
        params,
        headers: BTreeMap::new(),
        auth,
        body: api::body_encoding(doc, &writes),
        pagination,
        rate_limit,
        quota: None,
        errors,
        idempotency: api::idempotency(doc, &creates),
        incremental: None,
        deletes: None,
        async_query: None,
        type_map: BTreeMap::new(),
        fields_under: None,
        objects,
        discovered_objects: None,
        links: None,
        left_out: Vec::new(),
    }
}

/// `hub_spot` -> `Hub Spot`.
fn display_name(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Marks `incremental: {kind: full_refresh}` the objects an events feed
/// cannot follow: those for which the document's event types (`types`)
/// hold no `<object>.created` and `<object>.updated` (the prefix may name
/// the parent when the object has no events of its own name:
/// `customer.subscription.updated`). Under a feed they are
/// re-listed at each poll; without one the marker changes nothing.
fn mark_unfollowed(objects: &mut [Object], types: &BTreeSet<String>, notes: &mut Notes) {
    for (i, o) in objects.iter_mut().enumerate() {
        if o.incremental.is_some() {
            continue;
        }
        let names = [
            o.api_name.clone(),
            o.api_name.replace('.', "_"),
            o.name.clone(),
        ];
        let split: Vec<(&str, &str)> = types.iter().filter_map(|t| t.rsplit_once('.')).collect();
        let own: Vec<(&str, &str)> = split
            .iter()
            .copied()
            .filter(|(prefix, _)| names.iter().any(|n| prefix == n))
            .collect();
        // Only when the object has no events of its own name: those named
        // under a parent (`customer.subscription.*`, `charge.dispute.*`).
        let events = if own.is_empty() {
            split
                .into_iter()
                .filter(|(prefix, _)| names.iter().any(|n| prefix.ends_with(&format!(".{n}"))))
                .collect()
        } else {
            own
        };
        // Named as the object's other events name it, if it has any.
        let prefix = events.first().map_or(o.api_name.as_str(), |e| e.0);
        let missing: Vec<String> = ["created", "updated"]
            .into_iter()
            .filter(|verb| !events.iter().any(|(_, v)| v == verb))
            .map(|verb| format!("`{prefix}.{verb}`"))
            .collect();
        if missing.is_empty() {
            continue;
        }
        o.incremental = Some(Incremental::FullRefresh);
        let others = if events.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = events
                .iter()
                .take(8)
                .map(|(p, v)| format!("`{p}.{v}`"))
                .collect();
            format!(
                " (it has {}: if these announce every new record and change, the feed can follow it)",
                names.join(", ")
            )
        };
        notes.review(
            format!("/objects/{i}/incremental"),
            format!(
                "the document's event types have no {}: an events feed would miss records or changes of this object, so each poll re-lists it{others}",
                missing.join(" nor ")
            ),
        );
    }
}

/// The objects left to full refresh (no incremental filter, or marked so
/// for the events feed), and the events feed that may serve the others.
fn full_refresh_notes(feed: Option<(&str, BTreeSet<String>)>, c: &Connector, notes: &mut Notes) {
    let full: Vec<&str> = c
        .objects
        .iter()
        .filter(|o| matches!(o.incremental, None | Some(Incremental::FullRefresh)))
        .map(|o| o.name.as_str())
        .collect();
    if full.is_empty() {
        return;
    }
    let mut text = format!(
        "no incremental filter found for {}: each poll re-lists every record (full refresh), and deletions go unseen",
        if full.len() == c.objects.len() {
            "any object".to_string()
        } else {
            full.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if let Some((path, types)) = feed {
        text.push_str(&format!(
            "; GET {path} lists events: an events feed (`incremental: {{kind: events}}`, `deletes: {{kind: events}}`) may serve instead"
        ));
        if !types.is_empty() {
            text.push_str(
                " the objects not marked `incremental: {kind: full_refresh}`, whose created and updated events the document names",
            );
        }
    }
    notes.review("/objects", text);
}

/// The file's opening comment.
fn header(doc: &Document, c: &Connector, reviews: usize) -> Vec<String> {
    let version = doc.version().map(|v| format!(" {v}")).unwrap_or_default();
    vec![
        format!(
            "{}: drafted by `cargo xtask import openapi` from {} ({}{version}).",
            c.display_name,
            doc.name,
            doc.title()
        ),
        String::new(),
        format!(
            "The {reviews} comments marked `review:` are the importer's guesses: check each against the API's documentation, then delete the marker."
        ),
        "Importing again onto this file adds only the objects and fields that are new in the document, leaving every line here as it is, and reports those that are gone; a comment `# import: omit <field>, ...` inside an object keeps the fields it names out.".into(),
    ]
}
