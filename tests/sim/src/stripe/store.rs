//! How records and events are kept and paged: per object a `BTreeMap` in list order (records of a
//! nested list grouped by their parent), pre-serialized JSON next to each structured value, and
//! Stripe's newest-first pages with `starting_after`/`ending_before` cursors.
//!
//! A page is a range walk over adjacent entries (no per-record hash lookups, few cache misses)
//! and its body a concatenation of the stored JSON strings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use serde_json::{Map, Value};

use super::error::StripeError;

/// A record's place in list order: `(parent id, created, id)`; the parent id is empty for
/// top-level objects. Newest first is this order reversed, ties on `created` broken by id.
pub(super) type Key = (String, i64, String);

pub(super) struct Record {
    pub obj: Map<String, Value>,
    pub json: String,
}

impl Record {
    pub fn new(obj: Map<String, Value>) -> Self {
        let json = Value::Object(obj.clone()).to_string();
        Self { obj, json }
    }

    pub fn set(&mut self, obj: Map<String, Value>) {
        self.json = Value::Object(obj.clone()).to_string();
        self.obj = obj;
    }
}

/// One object type's records.
#[derive(Default)]
pub(super) struct Collection {
    pub records: BTreeMap<Key, Record>,
    /// The key of every id stored, live or deleted: deleted ones stay so that a cursor naming a
    /// deleted object still resolves (a sync in progress must not break on a deletion).
    keys: HashMap<String, Key>,
    pub deleted: HashSet<String>,
}

impl Collection {
    pub fn key_of(&self, id: &str) -> Option<Key> {
        self.keys.get(id).cloned()
    }

    /// The parent a record (live or deleted) belongs to; empty for top-level objects.
    pub fn parent_of(&self, id: &str) -> Option<&str> {
        self.keys.get(id).map(|(parent, _, _)| parent.as_str())
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(self.keys.get(id)?)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Record> {
        let key = self.keys.get(id)?;
        self.records.get_mut(key)
    }

    pub fn insert(&mut self, parent: &str, created: i64, id: String, record: Record) {
        let key = (parent.to_owned(), created, id.clone());
        self.keys.insert(id, key.clone());
        self.records.insert(key, record);
    }

    /// Deletes a record; its id keeps resolving as a cursor.
    pub fn delete(&mut self, id: &str) -> Option<Record> {
        let record = self.records.remove(self.keys.get(id)?)?;
        self.deleted.insert(id.to_owned());
        Some(record)
    }

    /// Removes every trace of a record (used to undo a half-made create).
    pub fn forget(&mut self, id: &str) {
        if let Some(key) = self.keys.remove(id) {
            self.records.remove(&key);
        }
    }

    /// Live ids in list order (newest first), of one parent's records or of all.
    pub fn ids(&self, parent: Option<&str>) -> Vec<String> {
        self.records
            .keys()
            .rev()
            .filter(|(p, _, _)| parent.is_none_or(|want| p == want))
            .map(|(_, _, id)| id.clone())
            .collect()
    }
}

/// The keys of one parent's records (all records of a top-level object): the bounds of a walk.
pub(super) fn parent_bounds(parent: &str) -> (Bound<Key>, Bound<Key>) {
    (
        Bound::Included((parent.to_owned(), i64::MIN, String::new())),
        Bound::Excluded((parent.to_owned(), i64::MAX, String::new())),
    )
}

pub(super) struct Event {
    pub created: i64,
    pub kind: String,
    pub json: String,
}

/// The event log. Events are ordered by when they happened (`(created, sequence)`), not by id:
/// a client replaying `customer.created` then `customer.updated` from the same second must see
/// them in that order.
#[derive(Default)]
pub(super) struct Events {
    pub by_id: HashMap<String, (i64, u64)>,
    pub log: BTreeMap<(i64, u64), Event>,
}

/// A `created` (or other timestamp) filter: exact value or range.
#[derive(Default)]
pub(super) struct CreatedFilter {
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
}

impl CreatedFilter {
    pub fn from(v: Option<&Value>) -> Self {
        match v {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                Self {
                    gte: Some(n),
                    lte: Some(n),
                    ..Self::default()
                }
            }
            Some(Value::Object(m)) => {
                let get = |k: &str| m.get(k).and_then(Value::as_i64);
                Self {
                    gt: get("gt"),
                    gte: get("gte"),
                    lt: get("lt"),
                    lte: get("lte"),
                }
            }
            _ => Self::default(),
        }
    }

    pub fn matches(&self, c: i64) -> bool {
        self.gt.is_none_or(|v| c > v)
            && self.gte.is_none_or(|v| c >= v)
            && self.lt.is_none_or(|v| c < v)
            && self.lte.is_none_or(|v| c <= v)
    }
}

/// Validated paging parameters.
pub(super) struct Paging {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
}

pub(super) fn paging(q: &Map<String, Value>) -> Result<Paging, StripeError> {
    let limit = match q.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            if n < 1 {
                return Err(StripeError::invalid(
                    "limit",
                    "This value must be greater than or equal to 1.",
                ));
            }
            if n > 100 {
                return Err(StripeError::invalid(
                    "limit",
                    "This value must be less than or equal to 100.",
                ));
            }
            n as usize
        }
    };
    Ok(Paging {
        limit,
        starting_after: q
            .get("starting_after")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ending_before: q
            .get("ending_before")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Walks the entries of `order` within `bounds` newest first from the cursor (`(key, false)`:
/// after it, `(key, true)`: before it), keeping entries `keep` accepts; returns the page in list
/// order and whether more matching entries exist in that direction. The cursor key need not be
/// present (a deleted object) but must lie within `bounds`.
pub(super) fn page<'a, K: Ord, V>(
    order: &'a BTreeMap<K, V>,
    bounds: (Bound<K>, Bound<K>),
    cursor: Option<(K, bool)>,
    limit: usize,
    mut keep: impl FnMut(&K, &V) -> bool,
) -> (Vec<&'a V>, bool) {
    let mut out = Vec::with_capacity(limit);
    let mut has_more = false;
    let mut take = |it: &mut dyn Iterator<Item = (&'a K, &'a V)>| {
        for (k, v) in it {
            if keep(k, v) {
                if out.len() == limit {
                    has_more = true;
                    break;
                }
                out.push(v);
            }
        }
    };
    let (lo, hi) = bounds;
    match cursor {
        None => take(&mut order.range((lo, hi)).rev()),
        Some((key, false)) => take(&mut order.range((lo, Bound::Excluded(key))).rev()),
        Some((key, true)) => {
            take(&mut order.range((Bound::Excluded(key), hi)));
            out.reverse();
        }
    }
    (out, has_more)
}

pub(super) fn list_json<'a>(
    items: impl Iterator<Item = &'a str> + Clone,
    has_more: bool,
    url: &str,
) -> String {
    // Sized exactly up front: one allocation, no regrowth copies of a ~70 KB page.
    let url = Value::String(url.to_owned()).to_string();
    let size: usize = items.clone().map(|i| i.len() + 1).sum::<usize>() + url.len() + 64;
    let mut out = String::with_capacity(size);
    out.push_str(r#"{"object":"list","data":["#);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push_str(r#"],"has_more":"#);
    out.push_str(if has_more { "true" } else { "false" });
    out.push_str(r#","url":"#);
    out.push_str(&url);
    out.push('}');
    out
}

pub(super) fn resolve_cursor<K>(
    p: &Paging,
    key_of: impl Fn(&str) -> Option<K>,
    missing: impl Fn(&str, &str) -> StripeError,
) -> Result<Option<(K, bool)>, StripeError> {
    if let Some(id) = &p.starting_after {
        return key_of(id)
            .map(|k| Some((k, false)))
            .ok_or_else(|| missing(id, "starting_after"));
    }
    if let Some(id) = &p.ending_before {
        return key_of(id)
            .map(|k| Some((k, true)))
            .ok_or_else(|| missing(id, "ending_before"));
    }
    Ok(None)
}
