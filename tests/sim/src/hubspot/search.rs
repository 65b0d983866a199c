//! The search endpoint (`POST /crm/v3/objects/{objectType}/search`): filter groups (ORed) of
//! filters (ANDed) with HubSpot's operators and limits (5 groups, 6 filters each, 18 in all),
//! one sort, a free-text `query` over the object's searchable properties, `after` paging and
//! the 10,000-result cap. Repeated pages of one search reuse its ordered hits while no write
//! happened in between.

use std::cmp::Ordering;

use serde_json::Value;

use super::objects::{ObjectType, RecordTime};
use super::store::{
    HsError, ObjectStore, Portal, Record, SEARCH_LIMIT_MAX, SEARCH_RESULT_CAP, Selection,
    parse_time,
};

impl Portal {
    /// `POST /crm/v3/objects/{type}/search`: returns `(total, results, next after)`.
    pub fn search(
        &mut self,
        object_type: ObjectType,
        body: &Value,
    ) -> Result<(usize, Vec<Value>, Option<String>), HsError> {
        let request = SearchRequest::parse(self.store(object_type), body)?;
        // Paging re-runs the same search with a new `after`: reuse the ordered hits while no
        // write happened in between, so a page costs its own records, not a scan.
        let key = format!(
            "{object_type:?}|{}|{}|{}",
            body.get("filterGroups").unwrap_or(&Value::Null),
            body.get("sorts").unwrap_or(&Value::Null),
            body.get("query").unwrap_or(&Value::Null),
        );
        let cached = self
            .search_cache
            .as_ref()
            .is_some_and(|c| c.key == key && c.generation == self.generation);
        if !cached {
            let hits = self.search_hits(object_type, &request);
            self.search_cache = Some(SearchCache {
                key,
                generation: self.generation,
                hits,
            });
        }
        let hits = &self.search_cache.as_ref().expect("filled above").hits;
        let store = self.store(object_type);
        let total = hits.len();
        let selection = match &request.properties {
            Some(names) => Selection::Named(names),
            None => Selection::Default,
        };
        // Results past the cap are never returned, whatever `limit` asks for.
        let end = (request.after + request.limit)
            .min(total)
            .min(SEARCH_RESULT_CAP);
        let results = hits
            .get(request.after..end)
            .unwrap_or_default()
            .iter()
            .map(|id| self.render(object_type, *id, &store.records[id], &selection))
            .collect();
        let next = (end < total).then(|| end.to_string());
        Ok((total, results, next))
    }

    /// Ids of the live records a search matches, in its order.
    fn search_hits(&self, object_type: ObjectType, request: &SearchRequest) -> Vec<u64> {
        let store = self.store(object_type);
        let matches = |record: &Record| request.matches(record);
        // Live records in index order when sorting by the modified time; by id otherwise.
        let mut hits: Vec<(u64, &Record)> = match &request.sort {
            Some(sort) if sort.time == Some(RecordTime::Modified) => {
                let lower = request.modified_lower_bound().unwrap_or(i64::MIN);
                let iter = store
                    .by_updated
                    .range((lower, 0)..)
                    .map(|(_, id)| (*id, &store.records[id]))
                    .filter(|(_, r)| matches(r));
                if sort.descending {
                    let mut all: Vec<_> = iter.collect();
                    all.reverse();
                    all
                } else {
                    iter.collect()
                }
            }
            _ => store
                .records
                .iter()
                .filter(|(_, r)| matches(r))
                .map(|(id, r)| (*id, r))
                .collect(),
        };
        if let Some(sort) = request
            .sort
            .as_ref()
            .filter(|s| s.time != Some(RecordTime::Modified))
        {
            hits.sort_by(|(ia, a), (ib, b)| {
                let ordering = compare_values(
                    a.properties.get(&sort.property).map(String::as_str),
                    b.properties.get(&sort.property).map(String::as_str),
                )
                .then(ia.cmp(ib));
                if sort.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
        hits.into_iter().map(|(id, _)| id).collect()
    }
}

/// The ordered hits of the last search, valid while `generation` is current.
pub(super) struct SearchCache {
    key: String,
    generation: u64,
    hits: Vec<u64>,
}

struct Sort {
    property: String,
    /// Set when sorting by the created or modified time.
    time: Option<RecordTime>,
    descending: bool,
}

struct Filter {
    property: String,
    /// Set when the filter is on the created or modified time, which every record holds.
    time: Option<RecordTime>,
    operator: String,
    value: Option<String>,
    high_value: Option<String>,
    values: Vec<String>,
    /// `value`/`highValue` as epoch millis, for the record timestamps compared without
    /// parsing each record's property text.
    value_time: Option<i64>,
    high_value_time: Option<i64>,
}

struct SearchRequest {
    groups: Vec<Vec<Filter>>,
    /// Free text matched against the object's default searchable properties.
    query: Option<String>,
    searchable: Vec<String>,
    sort: Option<Sort>,
    properties: Option<Vec<String>>,
    limit: usize,
    after: usize,
}

const OPERATORS: &[&str] = &[
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];

/// A filter value as text (numbers and booleans are accepted as HubSpot does).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl SearchRequest {
    fn parse(store: &ObjectStore, body: &Value) -> Result<SearchRequest, HsError> {
        let limit = match body.get("limit") {
            None | Some(Value::Null) => 10,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| HsError::validation("limit must be an integer"))?
                as usize,
        };
        if limit > SEARCH_LIMIT_MAX {
            return Err(HsError::validation(format!(
                "Invalid input JSON: limit must be less than or equal to {SEARCH_LIMIT_MAX}, was {limit}"
            )));
        }
        let after = match body.get("after") {
            None | Some(Value::Null) => 0,
            Some(Value::String(s)) if s.is_empty() => 0,
            Some(Value::String(s)) => s
                .parse::<usize>()
                .map_err(|_| HsError::validation(format!("Invalid after value: {s}")))?,
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
            Some(_) => return Err(HsError::validation("after must be a string")),
        };
        if after >= SEARCH_RESULT_CAP {
            return Err(HsError::validation(format!(
                "Search results are limited to {SEARCH_RESULT_CAP} total results for any given query; \
                 after={after} pages beyond that"
            )));
        }
        let properties = body
            .get("properties")
            .and_then(Value::as_array)
            .and_then(|names| {
                let names: Vec<String> = names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                (!names.is_empty()).then_some(names)
            });
        let query = body
            .get("query")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        Ok(SearchRequest {
            groups: parse_groups(store, body)?,
            query,
            searchable: store.meta.searchable.clone(),
            sort: parse_sort(store, body)?,
            properties,
            limit,
            after,
        })
    }

    /// Smallest modified time any matching record can have, when every group bounds it.
    fn modified_lower_bound(&self) -> Option<i64> {
        if self.groups.is_empty() {
            return None;
        }
        self.groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .filter(|f| {
                        f.time == Some(RecordTime::Modified)
                            && matches!(f.operator.as_str(), "GT" | "GTE" | "EQ" | "BETWEEN")
                    })
                    .filter_map(|f| f.value_time)
                    .max()
            })
            .collect::<Option<Vec<i64>>>()
            .and_then(|bounds| bounds.into_iter().min())
    }

    /// Archived records never match; filter groups are ORed, filters within a group ANDed.
    fn matches(&self, record: &Record) -> bool {
        if record.archived_at.is_some() {
            return false;
        }
        if let Some(query) = &self.query {
            let found = self.searchable.iter().any(|name| {
                record
                    .properties
                    .get(name)
                    .is_some_and(|value| value.to_lowercase().contains(query.as_str()))
            });
            if !found {
                return false;
            }
        }
        self.groups.is_empty()
            || self
                .groups
                .iter()
                .any(|group| group.iter().all(|f| f.matches(record)))
    }
}

/// The name a search uses for a property: both names of the modified time are accepted on
/// every object and mean its own.
fn canonical(store: &ObjectStore, name: &str) -> String {
    match store.meta.time_of(name) {
        Some(RecordTime::Modified) => store.meta.modified_property.clone(),
        _ => name.to_owned(),
    }
}

/// `filterGroups`, within HubSpot's limits.
fn parse_groups(store: &ObjectStore, body: &Value) -> Result<Vec<Vec<Filter>>, HsError> {
    let groups_json = body
        .get("filterGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if groups_json.len() > 5 {
        return Err(HsError::validation(
            "Too many filter groups: at most 5 are allowed",
        ));
    }
    let mut groups = Vec::new();
    let mut total_filters = 0;
    for group in &groups_json {
        let filters_json = group
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if filters_json.len() > 6 {
            return Err(HsError::validation(
                "Too many filters in a group: at most 6 are allowed",
            ));
        }
        total_filters += filters_json.len();
        let filters = filters_json
            .iter()
            .map(|f| parse_filter(store, f))
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(filters);
    }
    if total_filters > 18 {
        return Err(HsError::validation(
            "Too many filters: at most 18 are allowed across all groups",
        ));
    }
    Ok(groups)
}

fn parse_filter(store: &ObjectStore, filter: &Value) -> Result<Filter, HsError> {
    let property = filter
        .get("propertyName")
        .and_then(Value::as_str)
        .ok_or_else(|| HsError::validation("Invalid input JSON: propertyName is required"))?;
    let property = canonical(store, property);
    if store.property(&property).is_none() {
        return Err(HsError::validation(format!(
            "There was a problem with the request: property {property} does not exist"
        )));
    }
    let operator = filter
        .get("operator")
        .and_then(Value::as_str)
        .ok_or_else(|| HsError::validation("Invalid input JSON: operator is required"))?
        .to_owned();
    if !OPERATORS.contains(&operator.as_str()) {
        return Err(HsError::validation(format!(
            "Invalid input JSON: unknown operator {operator}"
        )));
    }
    let value = filter.get("value").and_then(value_text);
    let needs_value = !matches!(
        operator.as_str(),
        "HAS_PROPERTY" | "NOT_HAS_PROPERTY" | "IN" | "NOT_IN"
    );
    if needs_value && value.is_none() {
        return Err(HsError::validation(format!(
            "Invalid input JSON: operator {operator} on {property} requires a value"
        )));
    }
    let high_value = filter.get("highValue").and_then(value_text);
    Ok(Filter {
        time: store.meta.time_of(&property),
        property,
        operator,
        value_time: value.as_deref().and_then(parse_time),
        high_value_time: high_value.as_deref().and_then(parse_time),
        value,
        high_value,
        values: filter
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().filter_map(value_text).collect())
            .unwrap_or_default(),
    })
}

/// At most one sort: `"name"`/`"-name"` or `{propertyName, direction}`.
fn parse_sort(store: &ObjectStore, body: &Value) -> Result<Option<Sort>, HsError> {
    let sorts = body
        .get("sorts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if sorts.len() > 1 {
        return Err(HsError::validation("Only one sort is allowed"));
    }
    let sort = |name: &str, descending: bool| Sort {
        property: canonical(store, name),
        time: store.meta.time_of(name),
        descending,
    };
    Ok(match sorts.first() {
        None => None,
        Some(Value::String(s)) => Some(match s.strip_prefix('-') {
            Some(name) => sort(name, true),
            None => sort(s, false),
        }),
        Some(object) => {
            let property = object
                .get("propertyName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    HsError::validation("Invalid input JSON: sorts[0].propertyName is required")
                })?;
            let direction = object
                .get("direction")
                .and_then(Value::as_str)
                .unwrap_or("ASCENDING");
            Some(sort(property, direction.eq_ignore_ascii_case("DESCENDING")))
        }
    })
}

/// Compares two property values: numerically, as times, or as case-insensitive text.
fn compare_text(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    if let (Some(x), Some(y)) = (parse_time(a), parse_time(b)) {
        return x.cmp(&y);
    }
    a.to_lowercase().cmp(&b.to_lowercase())
}

/// Orders values for a sort; records without the property come last.
fn compare_values(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => compare_text(a, b),
    }
}

impl Filter {
    /// The record's own timestamp when the filter is on the created or modified time (the
    /// properties always hold exactly these times).
    fn record_time(&self, record: &Record) -> Option<i64> {
        match self.time? {
            RecordTime::Created => Some(record.created),
            RecordTime::Modified => Some(record.updated),
        }
    }

    fn matches(&self, record: &Record) -> bool {
        if let (Some(time), Some(value)) = (self.record_time(record), self.value_time) {
            let high = self.high_value_time.unwrap_or(value);
            match self.operator.as_str() {
                "EQ" => return time == value,
                "NEQ" => return time != value,
                "LT" => return time < value,
                "LTE" => return time <= value,
                "GT" => return time > value,
                "GTE" => return time >= value,
                "BETWEEN" => return time >= value && time <= high,
                _ => {}
            }
        }
        let actual = record.properties.get(&self.property).map(String::as_str);
        let value = self.value.as_deref().unwrap_or("");
        match (self.operator.as_str(), actual) {
            ("HAS_PROPERTY", actual) => actual.is_some(),
            ("NOT_HAS_PROPERTY", actual) => actual.is_none(),
            ("NEQ", None) => true,
            ("NOT_IN", None) => true,
            ("NOT_CONTAINS_TOKEN", None) => true,
            (_, None) => false,
            ("EQ", Some(a)) => compare_text(a, value).is_eq(),
            ("NEQ", Some(a)) => compare_text(a, value).is_ne(),
            ("LT", Some(a)) => compare_text(a, value).is_lt(),
            ("LTE", Some(a)) => compare_text(a, value).is_le(),
            ("GT", Some(a)) => compare_text(a, value).is_gt(),
            ("GTE", Some(a)) => compare_text(a, value).is_ge(),
            ("BETWEEN", Some(a)) => {
                compare_text(a, value).is_ge()
                    && compare_text(a, self.high_value.as_deref().unwrap_or(value)).is_le()
            }
            ("IN", Some(a)) => self.values.iter().any(|v| compare_text(a, v).is_eq()),
            ("NOT_IN", Some(a)) => !self.values.iter().any(|v| compare_text(a, v).is_eq()),
            ("CONTAINS_TOKEN", Some(a)) => token_matches(a, value),
            ("NOT_CONTAINS_TOKEN", Some(a)) => !token_matches(a, value),
            _ => false,
        }
    }
}

/// `CONTAINS_TOKEN`: a whole-word match, with `*` as a wildcard.
fn token_matches(text: &str, token: &str) -> bool {
    let token = token.to_lowercase();
    let text = text.to_lowercase();
    match (token.strip_prefix('*'), token.strip_suffix('*')) {
        (Some(rest), _) if rest.ends_with('*') => text.contains(rest.trim_end_matches('*')),
        (Some(rest), _) => text
            .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
            .any(|w| w.ends_with(rest)),
        (None, Some(rest)) => text
            .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
            .any(|w| w.starts_with(rest)),
        (None, None) => text
            .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
            .any(|w| w == token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_words_and_wildcards() {
        assert!(token_matches("Ada Lovelace", "ada"));
        assert!(token_matches("ada@acme.example.com", "*@acme.example.com"));
        assert!(!token_matches("Ada Lovelace", "love"));
    }
}
