//! Link tables (a spec's `links:`, [`crate::model::Links`]): each object
//! pair becomes an ordinary [`Object`] with the fixed link columns, so the
//! generator (DDL, docs, typed records) and the runtime (plans, write-through
//! checks) treat it like any table; what is link-specific (the batch read by
//! source ids, the item templates of the writes, the derived id) is here and
//! in the runtime's `catalog::links`.
//!
//! A link row travels as a flat JSON record `{id, from_id, to_id, category,
//! type_id, label}` (the columns' value paths are their names).

use serde_json::{Map, Value};

use crate::model::{
    Access, BatchEndpoint, Connector, DiscoveredLinks, Endpoint, Endpoints, Field, FieldType,
    LinkPair, LinkWrite, Links, Object,
};
use crate::record::{get_path, id_text};

/// The columns of every link table, in order; `id` is the primary key.
pub const LINK_COLUMNS: [&str; 6] = ["id", "from_id", "to_id", "category", "type_id", "label"];

/// The fields of a link table.
pub fn link_fields() -> Vec<Field> {
    let field = |name: &str, ty, access, nullable, required_on_create, description: &str| Field {
        name: name.into(),
        column: None,
        path: None,
        ty,
        nullable,
        access,
        required_on_create,
        format: None,
        max_length: None,
        enum_values: Vec::new(),
        external_id: false,
        pattern: None,
        time_format: None,
        stringly: false,
        merge: None,
        description: Some(description.into()),
    };
    use Access::{CreateOnly, ReadOnly};
    vec![
        field(
            "id",
            FieldType::String,
            ReadOnly,
            false,
            false,
            "Derived from the other columns (the spec's `links.id`).",
        ),
        field(
            "from_id",
            FieldType::String,
            CreateOnly,
            false,
            true,
            "The source record's primary key.",
        ),
        field(
            "to_id",
            FieldType::String,
            CreateOnly,
            false,
            true,
            "The target record's primary key.",
        ),
        field(
            "category",
            FieldType::String,
            CreateOnly,
            true,
            false,
            "The association type's category; null on INSERT: the pair's default type.",
        ),
        field(
            "type_id",
            FieldType::Integer,
            CreateOnly,
            true,
            false,
            "The association type's id; null on INSERT: the pair's default type.",
        ),
        field(
            "label",
            FieldType::String,
            ReadOnly,
            true,
            false,
            "The association type's label (null for an unlabeled type).",
        ),
    ]
}

/// A link endpoint's path with the pair's `{from}` and `{to}` filled in.
pub fn pair_endpoint(e: &Endpoint, from: &str, to: &str) -> Endpoint {
    let mut e = e.clone();
    e.path = e.path.replace("{from}", from).replace("{to}", to);
    e
}

fn batch(w: &LinkWrite, from: &str, to: &str) -> BatchEndpoint {
    BatchEndpoint {
        endpoint: pair_endpoint(&w.endpoint, from, to),
        max_size: w.max_size,
        items: Some(w.items.clone()),
        results: None,
        atomic: false,
        item_id: None,
        item_body: Map::new(),
        ids_param: None,
    }
}

impl Links {
    /// The object of a pair, its endpoints filled with the objects'
    /// `api_name`s (`None` when either object is unknown; specs are checked).
    pub fn object(&self, c: &Connector, p: &LinkPair) -> Option<Object> {
        let from = c.object(&p.from)?;
        let to = c.object(&p.to)?;
        Some(self.pair_object(p, &from.api_name, &to.api_name))
    }

    /// The object of a pair whose objects have the API names `f` and `t`
    /// (a discovered pair's objects are not in the spec).
    pub fn pair_object(&self, p: &LinkPair, f: &str, t: &str) -> Object {
        Object {
            name: p.name.clone(),
            api_name: p.name.clone(),
            description: Some(p.description.clone().unwrap_or_else(|| {
                format!(
                    "Links from `{}` to `{}` records: one row per linked pair and association type.",
                    p.from, p.to
                )
            })),
            primary_key: "id".into(),
            endpoints: Endpoints {
                list: pair_endpoint(&self.read.endpoint, f, t),
                get: None,
                create: None,
                update: None,
                delete: None,
                batch_create: Some(batch(&self.create, f, t)),
                batch_update: None,
                batch_delete: Some(batch(&self.delete, f, t)),
                upsert: None,
            },
            pagination: None,
            incremental: None,
            deletes: None,
            max_rows_per_write: self.max_rows_per_write,
            fields: link_fields(),
            discovered_fields: None,
            parent: None,
        }
    }
}

/// A link table found at run time ([`DiscoveredLinks`]): its pair (tables
/// by name) and the two objects' API names (`{from}`, `{to}`).
#[derive(Clone, Debug, PartialEq)]
pub struct FoundPair {
    pub pair: LinkPair,
    pub from_api: String,
    pub to_api: String,
}

/// A discovered object as [`DiscoveredLinks::pairs`] sees it: its table,
/// its API name and its definition.
pub struct DefinedObject<'a> {
    pub table: &'a str,
    pub api_name: &'a str,
    pub definition: &'a Value,
}

impl DiscoveredLinks {
    /// The table and API name of the object a definition names by `id`: a
    /// discovered object by its API name, a static one by `object_ids`,
    /// its API name or its table name (any case). `None`: not synced here.
    fn resolve<'a>(
        &self,
        c: &'a Connector,
        defined: &'a [DefinedObject<'a>],
        id: &str,
    ) -> Option<(&'a str, &'a str)> {
        if let Some(d) = defined.iter().find(|d| d.api_name == id) {
            return Some((d.table, d.api_name));
        }
        let by_id = self
            .object_ids
            .iter()
            .find(|(_, v)| v.eq_ignore_ascii_case(id))
            .map(|(k, _)| k.as_str());
        c.objects
            .iter()
            .filter(|o| o.parent.is_none())
            .find(|o| {
                Some(o.name.as_str()) == by_id
                    || o.api_name.eq_ignore_ascii_case(id)
                    || o.name.eq_ignore_ascii_case(id)
            })
            .map(|o| (o.name.as_str(), o.api_name.as_str()))
    }

    /// The link tables the definitions of `defined` declare (in order; the
    /// caller sorts them by API name), each named by the rule of
    /// [`DiscoveredLinks`]: `<object>_<other>`, else `<object>_<other>_link`,
    /// else left out. `taken` holds every other table's name (objects,
    /// static link tables, discovered tables) and gets the names given.
    /// `wanted` says whether a pair's two objects are synced.
    pub fn pairs(
        &self,
        c: &Connector,
        defined: &[DefinedObject<'_>],
        taken: &mut std::collections::BTreeSet<String>,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<FoundPair> {
        let mut out: Vec<FoundPair> = Vec::new();
        for d in defined {
            let associations = get_path(d.definition, &self.associations).and_then(Value::as_array);
            for a in associations.into_iter().flatten() {
                let Some(to) = get_path(a, &self.to).and_then(id_text) else {
                    continue;
                };
                let from = self
                    .from
                    .as_ref()
                    .and_then(|p| get_path(a, p))
                    .and_then(id_text);
                // Listed from the other side: the other object is the source.
                let other = match from {
                    Some(f) if f != d.api_name && to == d.api_name => f,
                    _ => to,
                };
                let Some((table, api)) = self.resolve(c, defined, &other) else {
                    continue;
                };
                let same = |p: &FoundPair| {
                    (p.pair.from == d.table && p.pair.to == table)
                        || (p.pair.from == table && p.pair.to == d.table)
                };
                if !wanted(d.table) || !wanted(table) || out.iter().any(same) {
                    continue;
                }
                let base = format!("{}_{table}", d.table);
                let Some(name) = [base.clone(), format!("{base}_link")]
                    .into_iter()
                    .find(|n| !taken.contains(n))
                else {
                    continue;
                };
                taken.insert(name.clone());
                out.push(FoundPair {
                    pair: LinkPair {
                        name,
                        from: d.table.to_string(),
                        to: table.to_string(),
                        description: None,
                    },
                    from_api: d.api_name.to_string(),
                    to_api: api.to_string(),
                });
            }
        }
        out
    }
}

impl Connector {
    /// The tables of `links:`, as objects.
    pub fn link_objects(&self) -> Vec<Object> {
        let Some(l) = &self.links else {
            return Vec::new();
        };
        l.pairs.iter().filter_map(|p| l.object(self, p)).collect()
    }

    /// Every table of the spec: its objects, then its link tables.
    pub fn all_objects(&self) -> Vec<Object> {
        let mut out = self.objects.clone();
        out.extend(self.link_objects());
        out
    }

    /// The link pair whose table is `table`.
    pub fn link_pair(&self, table: &str) -> Option<&LinkPair> {
        self.links.as_ref()?.pairs.iter().find(|p| p.name == table)
    }
}

/// A value as template text (`"279"`, `"HUBSPOT_DEFINED"`).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Fills `{name}` placeholders of a string with `values` as text.
pub fn fill_text(template: &str, values: &Map<String, Value>) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), &text(v));
    }
    out
}

/// Fills an item template: a string that is exactly `"{name}"` becomes
/// `values[name]` as it is (typed); other strings are filled as text.
pub fn fill(template: &Value, values: &Map<String, Value>) -> Value {
    match template {
        Value::String(s) => {
            let whole = s
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .filter(|n| !n.contains(['{', '}']));
            match whole.and_then(|n| values.get(n)) {
                Some(v) => v.clone(),
                None => Value::String(fill_text(s, values)),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| fill(i, values)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), fill(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A link row as a flat record, its `id` derived with `id_template`.
pub fn link_record(
    id_template: &str,
    from_id: &str,
    to_id: &str,
    category: Value,
    type_id: Value,
    label: Value,
) -> Value {
    let mut m = Map::new();
    m.insert("from_id".into(), Value::String(from_id.into()));
    m.insert("to_id".into(), Value::String(to_id.into()));
    m.insert("category".into(), category);
    m.insert("type_id".into(), type_id);
    m.insert("label".into(), label);
    let id = fill_text(id_template, &m);
    m.insert("id".into(), Value::String(id));
    Value::Object(m)
}

/// The link rows of a batch read's answer: one per source, target and
/// association type.
pub fn read_rows(l: &Links, answer: &Value) -> Vec<Value> {
    let r = &l.read;
    let results = match r.endpoint.records.as_deref() {
        None | Some("") => Some(answer),
        Some(p) => get_path(answer, p),
    };
    let mut out = Vec::new();
    for result in results.and_then(Value::as_array).into_iter().flatten() {
        let Some(from) = get_path(result, &r.from_id).and_then(id_text) else {
            continue;
        };
        let targets = get_path(result, &r.targets).and_then(Value::as_array);
        for target in targets.into_iter().flatten() {
            let Some(to) = get_path(target, &r.to_id).and_then(id_text) else {
                continue;
            };
            let types = get_path(target, &r.types).and_then(Value::as_array);
            for t in types.into_iter().flatten() {
                let at = |p: &str| get_path(t, p).cloned().unwrap_or(Value::Null);
                out.push(link_record(
                    &l.id,
                    &from,
                    &to,
                    at(&r.category),
                    at(&r.type_id),
                    at(&r.label),
                ));
            }
        }
    }
    out
}

/// The body of a batch read of the links of `ids`.
pub fn read_body(l: &Links, ids: &[String]) -> Value {
    let items: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut m = Map::new();
            m.insert("id".into(), Value::String(id.clone()));
            fill(&l.read.item, &m)
        })
        .collect();
    let mut body = l.read.endpoint.body.clone();
    body.insert(l.read.items.clone(), Value::Array(items));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn links() -> Links {
        serde_json::from_value(json!({
            "read": {
                "endpoint": {"method": "POST", "path": "/v4/{from}/{to}/read", "records": "results"},
                "items": "inputs", "item": {"id": "{id}"}, "max_size": 1000,
                "from_id": "from.id", "targets": "to", "to_id": "toObjectId",
                "types": "associationTypes", "category": "category", "type_id": "typeId", "label": "label"
            },
            "create": {"endpoint": {"method": "POST", "path": "/c"}, "items": "inputs", "max_size": 100,
                "item": {"from": {"id": "{from_id}"}, "types": [{"associationTypeId": "{type_id}"}], "note": "{from_id}->{to_id}"}},
            "delete": {"endpoint": {"method": "POST", "path": "/d"}, "items": "inputs", "max_size": 100, "item": {}},
            "id": "{from_id}-{to_id}-{type_id}",
            "pairs": []
        }))
        .unwrap()
    }

    #[test]
    fn a_read_answer_becomes_one_row_per_target_and_type() {
        let answer = json!({"results": [
            {"from": {"id": "1"}, "to": [
                {"toObjectId": 7, "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": 279},
                    {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"}]},
                {"toObjectId": "8", "associationTypes": [{"category": "USER_DEFINED", "typeId": 1001, "label": null}]}
            ]}
        ]});
        let rows = read_rows(&links(), &answer);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            json!({"id": "1-7-1", "from_id": "1", "to_id": "7", "category": "HUBSPOT_DEFINED", "type_id": 1, "label": "Primary"})
        );
        assert_eq!(rows[0]["label"], Value::Null);
        assert_eq!(rows[2]["id"], "1-8-1001");
        assert_eq!(
            read_body(&links(), &["1".into(), "2".into()]),
            json!({"inputs": [{"id": "1"}, {"id": "2"}]})
        );
    }

    /// A connector with the static objects `contact` (type id `0-1`),
    /// `company` and `pet_contact` (a table that takes the first name of a
    /// pet's contacts).
    fn connector() -> Connector {
        let object = |name: &str, api: &str| {
            json!({"name": name, "api_name": api, "primary_key": "id",
                "endpoints": {"list": {"path": format!("/{api}")}},
                "fields": [{"name": "id", "type": "string"}]})
        };
        serde_json::from_value(json!({
            "name": "crm", "display_name": "CRM", "base_url": "http://crm",
            "auth": {"kind": "bearer", "credential": "token"},
            "rate_limit": {"requests": 10, "per": "1s"},
            "errors": {"message": "message"},
            "objects": [object("contact", "contacts"), object("company", "companies"), object("pet_contact", "pcs")]
        }))
        .unwrap()
    }

    #[test]
    fn discovered_objects_associations_become_named_link_tables() {
        let c = connector();
        let found: DiscoveredLinks = serde_json::from_value(json!({
            "associations": "associations", "from": "fromObjectTypeId", "to": "toObjectTypeId",
            "object_ids": {"contact": "0-1"}
        }))
        .unwrap();
        let assoc = |from: &str, to: &str| json!({"fromObjectTypeId": from, "toObjectTypeId": to});
        let pet = json!({"associations": [assoc("2-1", "0-1"), assoc("2-1", "COMPANY"), assoc("2-1", "0-99")]});
        // Boats declare pets, and pets' schema lists the same pair from
        // the other side: one table.
        let boat = json!({"associations": [assoc("2-2", "2-1"), assoc("2-2", "contacts")]});
        let pet = {
            let mut p = pet;
            p["associations"]
                .as_array_mut()
                .unwrap()
                .push(assoc("2-2", "2-1"));
            p
        };
        let defined = [
            DefinedObject {
                table: "pet",
                api_name: "2-1",
                definition: &pet,
            },
            DefinedObject {
                table: "boat",
                api_name: "2-2",
                definition: &boat,
            },
        ];
        let mut taken: std::collections::BTreeSet<String> =
            ["contact", "company", "pet_contact", "pet", "boat"]
                .map(String::from)
                .into();
        let pairs = found.pairs(&c, &defined, &mut taken, |t| t != "company");
        let got: Vec<(&str, &str, &str, &str, &str)> = pairs
            .iter()
            .map(|p| {
                (
                    p.pair.name.as_str(),
                    p.pair.from.as_str(),
                    p.pair.to.as_str(),
                    p.from_api.as_str(),
                    p.to_api.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                // `pet_contact` is taken by an object.
                ("pet_contact_link", "pet", "contact", "2-1", "contacts"),
                ("pet_boat", "pet", "boat", "2-1", "2-2"),
                ("boat_contact", "boat", "contact", "2-2", "contacts"),
            ]
        );
        assert!(taken.contains("pet_contact_link") && taken.contains("boat_contact"));
    }

    #[test]
    fn an_item_template_keeps_whole_placeholders_typed() {
        let row = link_record(
            "{from_id}-{to_id}-{type_id}",
            "1",
            "7",
            json!("HUBSPOT_DEFINED"),
            json!(279),
            Value::Null,
        );
        let item = fill(&links().create.item, row.as_object().unwrap());
        assert_eq!(
            item,
            json!({"from": {"id": "1"}, "types": [{"associationTypeId": 279}], "note": "1->7"})
        );
    }
}
