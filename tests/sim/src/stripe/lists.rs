//! List pages of any catalogued object and of the events log: paging, the `created` range, the
//! list's own filters as the catalogue maps them onto fields, and a subscription list's default
//! of hiding canceled subscriptions.

use std::ops::Bound;

use serde_json::{Map, Value};

use super::StripeState;
use super::catalogue::Kind;
use super::error::StripeError;
use super::objects::str_param;
use super::store::{CreatedFilter, Record, list_json, page, paging, parent_bounds, resolve_cursor};

/// Events older than this are no longer listed (Stripe keeps 30 days).
pub(super) const EVENT_RETENTION_SECS: i64 = 30 * 24 * 3600;

/// A list's query, compiled against the object's filters.
struct Selection<'q> {
    created: CreatedFilter,
    equal: Vec<(&'static str, &'q Value)>,
    range: Vec<(&'static str, CreatedFilter)>,
    within: Vec<(&'static str, Vec<&'q Value>)>,
    /// Subscriptions: without `status`, every status but canceled; `all` means all.
    status: Option<&'q str>,
}

impl<'q> Selection<'q> {
    fn new(kind: Kind, q: &'q Map<String, Value>) -> Self {
        let filters = &kind.spec().filters;
        let subscriptions = kind == Kind::Subscription;
        let present = |name: &str| q.get(name).filter(|v| !v.is_null());
        Self {
            created: CreatedFilter::from(q.get("created")),
            equal: filters
                .equal
                .iter()
                .filter(|f| !(subscriptions && *f == "status"))
                .filter_map(|f| present(f).map(|v| (f.as_str(), v)))
                .collect(),
            range: filters
                .range
                .iter()
                .filter_map(|f| present(f).map(|v| (f.as_str(), CreatedFilter::from(Some(v)))))
                .collect(),
            within: filters
                .within
                .iter()
                .filter_map(|(param, field)| match present(param) {
                    Some(Value::Array(values)) => Some((field.as_str(), values.iter().collect())),
                    _ => None,
                })
                .collect(),
            status: subscriptions.then(|| str_param(q, "status").unwrap_or("not_canceled")),
        }
    }

    fn keeps(&self, created: i64, obj: &Map<String, Value>) -> bool {
        self.created.matches(created)
            && self.equal.iter().all(|(f, v)| field_is(obj.get(*f), v))
            && self.range.iter().all(|(f, r)| {
                obj.get(*f)
                    .and_then(Value::as_i64)
                    .is_some_and(|t| r.matches(t))
            })
            && self
                .within
                .iter()
                .all(|(f, vs)| vs.iter().any(|v| field_is(obj.get(*f), v)))
            && match self.status {
                None | Some("all") => true,
                Some("not_canceled") => obj["status"] != "canceled",
                Some("ended") => {
                    obj["status"] == "canceled" || obj["status"] == "incomplete_expired"
                }
                Some(s) => obj["status"] == s,
            }
    }
}

/// A field equals a filter value: the value itself, or the id of an embedded object.
fn field_is(field: Option<&Value>, want: &Value) -> bool {
    match field {
        Some(v) if v == want => true,
        Some(Value::Object(o)) => o.get("id") == Some(want),
        _ => false,
    }
}

impl StripeState {
    /// One page of a list: of a top-level object, or of one parent's records of a nested one.
    pub(super) fn list(
        &self,
        kind: Kind,
        parent: Option<&str>,
        q: &Map<String, Value>,
    ) -> Result<String, StripeError> {
        let p = paging(q)?;
        let parent = self.require_parent(kind, parent)?;
        let c = &self.collections[&kind];
        let cursor = resolve_cursor(
            &p,
            |id| c.key_of(id).filter(|(owner, _, _)| *owner == parent),
            |id, param| StripeError::no_such(kind, id, param),
        )?;
        let selection = Selection::new(kind, q);
        let (records, has_more) = page(
            &c.records,
            parent_bounds(&parent),
            cursor,
            p.limit,
            |(_, created, _), r: &Record| selection.keeps(*created, &r.obj),
        );
        let url = kind.list_url(Some(&parent));
        Ok(list_json(
            records.iter().map(|r| r.json.as_str()),
            has_more,
            &url,
        ))
    }

    pub(super) fn list_events(
        &self,
        now: i64,
        q: &Map<String, Value>,
    ) -> Result<String, StripeError> {
        let p = paging(q)?;
        let oldest = now - EVENT_RETENTION_SECS;
        let ev = &self.events;
        let missing = |id: &str, param: &str| {
            StripeError::invalid(param, format!("No such event: '{id}'"))
                .with_code("resource_missing")
        };
        let cursor = resolve_cursor(
            &p,
            |id| {
                ev.by_id
                    .get(id)
                    .copied()
                    .filter(|(created, _)| *created >= oldest)
            },
            missing,
        )?;
        let created = CreatedFilter::from(q.get("created"));
        let mut types: Vec<&str> = Vec::new();
        if let Some(t) = str_param(q, "type") {
            types.push(t);
        }
        if let Some(Value::Array(ts)) = q.get("types") {
            types.extend(ts.iter().filter_map(Value::as_str));
        }
        let type_matches = |t: &str| {
            types.is_empty()
                || types.iter().any(|pat| match pat.strip_suffix('*') {
                    Some(prefix) => t.starts_with(prefix),
                    None => t == *pat,
                })
        };
        let (events, has_more) = page(
            &ev.log,
            (Bound::Unbounded, Bound::Unbounded),
            cursor,
            p.limit,
            |(at, _), e| *at >= oldest && created.matches(*at) && type_matches(&e.kind),
        );
        Ok(list_json(
            events.iter().map(|e| e.json.as_str()),
            has_more,
            "/v1/events",
        ))
    }
}
