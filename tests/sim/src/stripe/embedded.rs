//! Lists Stripe embeds in a parent record (`invoice.lines`, `credit_note.lines`,
//! `transfer.reversals`, `application_fee.refunds`, `subscription.items`): a list object
//! `{object, data, has_more, url}` holding the first page of the children, which Stripe keeps
//! current as the children change.
//!
//! Which fields embed which children is read from the catalogue, not written per object: a
//! template field holding a list object whose `url` is a nested list of the parent
//! (`/v1/transfers/tr_x/reversals`), or a top-level list filtered by the parent's id
//! (`/v1/subscription_items?subscription=sub_x`). The list is rendered again from the
//! children's collection whenever a child is created, updated or deleted, and when a parent is
//! created (Stripe's example object carries example children).

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::StripeState;
use super::catalogue::{Change, Kind};
use super::objects::Origin;
use crate::common::SimContext;

/// How many children Stripe embeds before `has_more` (invoice lines: "the first handful").
pub(super) const EMBED_LIMIT: usize = 10;

/// One embedded list: `parent.field` holds the first page of `child`'s records under it.
pub(super) struct Embedding {
    pub parent: Kind,
    pub field: String,
    pub child: Kind,
    /// For a top-level child list filtered by the parent (`subscription` of subscription
    /// items): the child's field naming the parent. `None` for a nested list.
    pub by_field: Option<String>,
}

/// Every embedded list of the catalogue.
pub(super) static EMBEDDINGS: LazyLock<Vec<Embedding>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for parent in Kind::top_level() {
        for (field, value) in &parent.spec().template {
            let Some(url) = value
                .get("url")
                .and_then(Value::as_str)
                .filter(|_| value.get("object").and_then(Value::as_str) == Some("list"))
            else {
                continue;
            };
            if let Some(e) = embedding_of(parent, field, url) {
                out.push(e);
            }
        }
    }
    out
});

/// The children a list URL of `parent`'s example object names.
fn embedding_of(parent: Kind, field: &str, url: &str) -> Option<Embedding> {
    if let Some((path, query)) = url.split_once('?') {
        let by = query.split_once('=')?.0.to_owned();
        let child = Kind::top_level().find(|k| k.path() == path)?;
        return Some(Embedding {
            parent,
            field: field.to_owned(),
            child,
            by_field: Some(by),
        });
    }
    let segment = url.rsplit('/').next()?;
    let child = Kind::all().find(|k| k.parent() == Some(parent) && k.segment() == segment)?;
    Some(Embedding {
        parent,
        field: field.to_owned(),
        child,
        by_field: None,
    })
}

impl StripeState {
    /// Renders the lists embedding `child`'s records under the parent of `record` (a child just
    /// created, updated or deleted; `parent` is its nested list's parent, `""` if top-level).
    /// With an `origin` (an API call), a parent whose list changed gets its `updated` event, as
    /// Stripe sends `invoice.updated` when lines change.
    pub(super) fn child_changed(
        &mut self,
        ctx: &SimContext,
        child: Kind,
        record: &Value,
        parent: &str,
        origin: Option<&Origin>,
    ) {
        let targets: Vec<(usize, String)> = EMBEDDINGS
            .iter()
            .enumerate()
            .filter(|(_, e)| e.child == child)
            .filter_map(|(i, e)| {
                let pid = match &e.by_field {
                    Some(f) => record.get(f)?.as_str()?.to_owned(),
                    None => parent.to_owned(),
                };
                (!pid.is_empty()).then_some((i, pid))
            })
            .collect();
        for (i, pid) in targets {
            self.render_embedded(ctx, &EMBEDDINGS[i], &pid, origin);
        }
    }

    /// Renders every list embedded in the parent `id` of kind `parent` (one just created).
    pub(super) fn parent_created(&mut self, ctx: &SimContext, parent: Kind, id: &str) {
        for e in EMBEDDINGS.iter().filter(|e| e.parent == parent) {
            self.render_embedded(ctx, e, id, None);
        }
    }

    /// Renders every list embedding `child` in each of the parents (after seeding).
    pub(super) fn render_all(&mut self, ctx: &SimContext, kind: Kind) {
        for e in EMBEDDINGS
            .iter()
            .filter(|e| e.child == kind || e.parent == kind)
        {
            for pid in self.collections[&e.parent].ids(None) {
                self.render_embedded(ctx, e, &pid, None);
            }
        }
    }

    /// Sets `parent.field` to the first page of its children (newest first, as the nested list
    /// lists them).
    fn render_embedded(
        &mut self,
        ctx: &SimContext,
        e: &Embedding,
        pid: &str,
        origin: Option<&Origin>,
    ) {
        let children = &self.collections[&e.child];
        let ids: Vec<String> = match &e.by_field {
            None => children.ids(Some(pid)),
            Some(f) => children
                .ids(None)
                .into_iter()
                .filter(|id| {
                    children
                        .get(id)
                        .is_some_and(|r| r.obj.get(f).and_then(Value::as_str) == Some(pid))
                })
                .collect(),
        };
        let data: Vec<Value> = ids
            .iter()
            .take(EMBED_LIMIT)
            .filter_map(|id| children.get(id).map(|r| Value::Object(r.obj.clone())))
            .collect();
        let url = match &e.by_field {
            None => e.child.list_url(Some(pid)),
            Some(f) => format!("{}?{f}={pid}", e.child.path()),
        };
        let Some(record) = self
            .collections
            .get_mut(&e.parent)
            .and_then(|c| c.get_mut(pid))
        else {
            return;
        };
        let old = record.obj.get(&e.field).cloned().unwrap_or(Value::Null);
        let mut list = old.as_object().cloned().unwrap_or_else(Map::new);
        list.insert("object".into(), "list".into());
        list.insert("has_more".into(), (ids.len() > EMBED_LIMIT).into());
        if list.contains_key("total_count") {
            list.insert("total_count".into(), ids.len().into());
        }
        list.insert("url".into(), url.into());
        list.insert("data".into(), Value::Array(data));
        let new = Value::Object(list);
        if new == old {
            return;
        }
        let mut obj = record.obj.clone();
        obj.insert(e.field.clone(), new);
        record.set(obj.clone());
        if let Some(origin) = origin {
            let previous = json!({ e.field.clone(): old });
            let previous = previous.as_object().cloned();
            self.record_event(
                ctx,
                e.parent,
                Change::Updated,
                &Value::Object(obj),
                previous,
                origin,
            );
        }
    }
}
