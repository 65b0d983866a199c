//! The recycle bin and the sObject Get Deleted resource
//! (`GET /services/data/vXX.X/sobjects/{object}/deleted/?start=..&end=..`), written from
//! Salesforce's REST API Developer Guide ("sObject Get Deleted") and the SOAP API guide's
//! `getDeleted()` rules it refers to:
//!
//! - the answer is `{"deletedRecords": [{"id", "deletedDate"}], "earliestDateAvailable",
//!   "latestDateCovered"}`, datetimes as Salesforce renders them (`...000+0000`);
//! - the seconds of `start` and `end` are ignored (truncated to the minute, the span inclusive
//!   of its last minute), `start` must precede `end` by more than one minute, and a span of more
//!   than 30 days is refused: `INVALID_REPLICATION_DATE`;
//! - deletions are kept for a window (15 days by default) and purged after it, or earlier when
//!   the bin is emptied (a hard delete): a `start` before what is still kept
//!   (`earliestDateAvailable`) is refused with `INVALID_REPLICATION_DATE`, and the client is to
//!   resynchronise;
//! - more than 600,000 ids are refused with `EXCEEDED_ID_LIMIT`.
//!
//! Purging happens lazily, before each read of the bin or a query, by the org's clock (tests
//! move it with `Clock::advance`). A purged record is gone from `queryAll` too.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::store::{Org, SfError, format_datetime};

/// How long deleted records stay in the recycle bin by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 24 * 60 * 60);
/// The longest span one request may ask for.
const MAX_SPAN_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// `start` must precede `end` by more than this.
const MIN_SPAN_MS: i64 = 60 * 1000;
/// The most ids one answer may hold.
const ID_LIMIT: usize = 600_000;
const MINUTE_MS: i64 = 60 * 1000;

/// The recycle bin's policy and what it purged.
pub struct RecycleBin {
    window: Duration,
    /// Per object (canonical name): the newest deletion time purged so far. A span starting at
    /// or before it would have listed a record that is gone.
    purged_through: HashMap<String, i64>,
}

impl Default for RecycleBin {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            purged_through: HashMap::new(),
        }
    }
}

impl RecycleBin {
    /// How long deletions are kept from now on (takes effect at the next purge).
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Purges what has been in the bin longer than the window, in every object.
    pub fn purge_expired(&mut self, org: &mut Org) {
        let cutoff = org.clock().now_ms() - self.window.as_millis() as i64;
        let names: Vec<String> = org.object_defs().map(|d| d.name.to_owned()).collect();
        for name in names {
            self.purge(org, &name, |at| at < cutoff);
        }
    }

    /// Empties the bin now: of `object`, or of every object. Returns the records purged.
    pub fn empty(&mut self, org: &mut Org, object: Option<&str>) -> Result<usize, SfError> {
        let names: Vec<String> = match object {
            Some(o) => vec![org.recycle_bin(o)?.0],
            None => org.object_defs().map(|d| d.name.to_owned()).collect(),
        };
        Ok(names
            .iter()
            .map(|name| self.purge(org, name, |_| true))
            .sum())
    }

    /// Deletes a record for good, skipping the bin (a live record is deleted first).
    pub fn hard_delete(&mut self, org: &mut Org, object: &str, id: &str) -> Result<(), SfError> {
        if org.get(object, id, "v59.0").is_ok() {
            org.delete(object, id)?;
        }
        let at = org.erase(object, id)?;
        let name = org.recycle_bin(object)?.0;
        self.note_purged(&name, at);
        Ok(())
    }

    fn purge(&mut self, org: &mut Org, object: &str, due: impl Fn(i64) -> bool) -> usize {
        let Ok((name, held)) = org.recycle_bin(object) else {
            return 0;
        };
        let mut purged = 0;
        for (id, at) in held.into_iter().filter(|(_, at)| due(*at)) {
            if org.erase(&name, &id).is_ok() {
                self.note_purged(&name, at);
                purged += 1;
            }
        }
        purged
    }

    fn note_purged(&mut self, object: &str, at: i64) {
        let through = self.purged_through.entry(object.to_owned()).or_insert(at);
        *through = (*through).max(at);
    }

    /// The earliest time (epoch millis) from which `object`'s deletions are all still listed.
    fn earliest_available(&self, object: &str, now: i64) -> i64 {
        let kept_from = now - self.window.as_millis() as i64;
        match self.purged_through.get(object) {
            Some(at) => kept_from.max(at + 1),
            None => kept_from,
        }
    }

    /// The `deleted` resource's answer for `start`..`end` (raw query values).
    pub fn get_deleted(
        &mut self,
        org: &mut Org,
        object: &str,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<Value, SfError> {
        self.purge_expired(org);
        let (name, held) = org.recycle_bin(object)?;
        let start = parse_param("start", start)?;
        let end = parse_param("end", end)?;
        if end - start <= MIN_SPAN_MS {
            return Err(replication_date(
                "start must chronologically precede end by more than one minute",
            ));
        }
        if end - start > MAX_SPAN_MS {
            return Err(replication_date(
                "the span from start to end may not exceed 30 days",
            ));
        }
        let now = org.clock().now_ms();
        let earliest = self.earliest_available(&name, now);
        let (start_min, end_min) = (truncate(start), truncate(end));
        if start_min < earliest {
            return Err(replication_date(&format!(
                "start is before the earliest date available, {}: deleted records were purged; \
                 resynchronize the data before replicating again",
                format_datetime(earliest)
            )));
        }
        // Minutes are inclusive: the whole last minute is in the span.
        let listed: Vec<Value> = held
            .iter()
            .filter(|(_, at)| *at >= start_min && *at < end_min + MINUTE_MS)
            .map(|(id, at)| json!({"id": id, "deletedDate": format_datetime(*at)}))
            .collect();
        if listed.len() > ID_LIMIT {
            return Err(SfError::new(
                400,
                "EXCEEDED_ID_LIMIT",
                "too many ids: choose start and end dates that are closer together",
            ));
        }
        Ok(json!({
            "deletedRecords": listed,
            "earliestDateAvailable": format_datetime(earliest),
            "latestDateCovered": format_datetime(end_min.min(truncate(now))),
        }))
    }
}

fn truncate(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

fn replication_date(message: &str) -> SfError {
    SfError::new(400, "INVALID_REPLICATION_DATE", message)
}

/// A `start`/`end` value: ISO 8601 with an offset (`2013-05-05T00:00:00+00:00`, `...Z`,
/// `...000+0000`). A missing or unreadable one is a 400 (the docs name no code for it; this is
/// the code Salesforce uses for a missing parameter elsewhere).
fn parse_param(name: &str, value: Option<&str>) -> Result<i64, SfError> {
    let value = value.ok_or_else(|| {
        SfError::new(400, "MISSING_ARGUMENT", format!("{name} must be specified"))
    })?;
    chrono::DateTime::parse_from_rfc3339(value)
        .or_else(|_| chrono::DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            SfError::new(
                400,
                "INVALID_REPLICATION_DATE",
                format!("{name} is not an ISO 8601 date and time: {value}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::Clock;
    use crate::salesforce::store::OAuthSettings;
    use serde_json::Map;

    const DAY_MS: i64 = 24 * 60 * 60 * 1000;

    fn org(clock: &Clock) -> Org {
        let oauth = OAuthSettings {
            client_id: "id".into(),
            client_secret: "secret".into(),
            rotate_refresh_tokens: false,
            access_token_ttl: Duration::from_secs(60),
        };
        Org::new(clock.clone(), oauth, "token", "refresh")
    }

    fn account(org: &mut Org, name: &str) -> String {
        let mut fields = Map::new();
        fields.insert("Name".into(), json!(name));
        org.create("Account", &fields).unwrap()
    }

    fn iso(ms: i64) -> String {
        format_datetime(ms)
    }

    fn ids(answer: &Value) -> Vec<String> {
        answer["deletedRecords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn deletions_are_listed_by_minute_with_the_window_they_came_from() {
        let clock = Clock::new();
        let mut org = org(&clock);
        let mut bin = RecycleBin::default();
        let kept = account(&mut org, "kept");
        let gone = account(&mut org, "gone");
        let before = clock.now_ms();
        org.delete("Account", &gone).unwrap();
        let now = clock.now_ms();
        let answer = bin
            .get_deleted(
                &mut org,
                "Account",
                Some(&iso(before - 5 * MINUTE_MS)),
                Some(&iso(now)),
            )
            .unwrap();
        assert_eq!(ids(&answer), vec![gone.clone()]);
        assert!(!ids(&answer).contains(&kept));
        assert_eq!(
            answer["latestDateCovered"],
            json!(format_datetime(truncate(now)))
        );
        let earliest = answer["earliestDateAvailable"].as_str().unwrap();
        let earliest = chrono::DateTime::parse_from_str(earliest, "%Y-%m-%dT%H:%M:%S%.f%z")
            .unwrap()
            .timestamp_millis();
        let expected = now - DEFAULT_WINDOW.as_millis() as i64;
        assert!(
            (earliest - expected).abs() < 1000,
            "{earliest} vs {expected}"
        );
        // `Z` and `+00:00` offsets read the same.
        let z = chrono::DateTime::from_timestamp_millis(before - 5 * MINUTE_MS)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let again = bin
            .get_deleted(&mut org, "Account", Some(&z), Some(&iso(now)))
            .unwrap();
        assert_eq!(ids(&again), vec![gone]);
    }

    #[test]
    fn bad_spans_are_refused_as_the_docs_say() {
        let clock = Clock::new();
        let mut org = org(&clock);
        let mut bin = RecycleBin::default();
        let now = clock.now_ms();
        let code = |r: Result<Value, SfError>| r.unwrap_err().to_json()["errorCode"].clone();
        let mut ask =
            |s: i64, e: i64| bin.get_deleted(&mut org, "Account", Some(&iso(s)), Some(&iso(e)));
        assert_eq!(
            code(ask(now - 30_000, now)),
            json!("INVALID_REPLICATION_DATE")
        );
        assert_eq!(
            code(ask(now, now - 5 * MINUTE_MS)),
            json!("INVALID_REPLICATION_DATE")
        );
        assert_eq!(
            code(ask(now - 16 * DAY_MS, now)),
            json!("INVALID_REPLICATION_DATE")
        );
        assert_eq!(
            code(ask(now - 31 * DAY_MS, now)),
            json!("INVALID_REPLICATION_DATE")
        );
        assert!(ask(now - 14 * DAY_MS, now).is_ok());
        let missing = bin.get_deleted(&mut org, "Account", None, Some(&iso(now)));
        assert_eq!(code(missing), json!("MISSING_ARGUMENT"));
        let unknown = bin.get_deleted(
            &mut org,
            "Nope__c",
            Some(&iso(now - DAY_MS)),
            Some(&iso(now)),
        );
        assert_eq!(unknown.unwrap_err().status, 404);
    }

    #[test]
    fn the_bin_purges_after_its_window_and_a_start_before_the_purge_is_refused() {
        let clock = Clock::new();
        let mut org = org(&clock);
        let mut bin = RecycleBin::default();
        let old = account(&mut org, "old");
        let start = clock.now_ms() - 2 * MINUTE_MS;
        org.delete("Account", &old).unwrap();
        assert_eq!(org.count("Account", true), 1);
        clock.advance(Duration::from_secs(16 * 24 * 60 * 60));
        bin.purge_expired(&mut org);
        // Gone from queryAll's view (the store) as well.
        assert_eq!(org.count("Account", true), 0);
        let now = clock.now_ms();
        let refused = bin
            .get_deleted(
                &mut org,
                "Account",
                Some(&iso(start)),
                Some(&iso(start + DAY_MS)),
            )
            .unwrap_err();
        assert_eq!(
            refused.to_json()["errorCode"],
            json!("INVALID_REPLICATION_DATE")
        );
        assert!(
            bin.get_deleted(
                &mut org,
                "Account",
                Some(&iso(now - DAY_MS)),
                Some(&iso(now))
            )
            .is_ok()
        );
    }

    #[test]
    fn emptying_the_bin_moves_the_earliest_date_past_what_it_held() {
        let clock = Clock::new();
        let mut org = org(&clock);
        let mut bin = RecycleBin::default();
        let a = account(&mut org, "a");
        let b = account(&mut org, "b");
        let start = clock.now_ms() - 5 * MINUTE_MS;
        org.delete("Account", &a).unwrap();
        bin.hard_delete(&mut org, "Account", &b).unwrap();
        assert_eq!(org.count("Account", true), 1, "b skipped the bin");
        let now = clock.now_ms();
        let refused = bin.get_deleted(&mut org, "Account", Some(&iso(start)), Some(&iso(now)));
        assert_eq!(
            refused.unwrap_err().to_json()["errorCode"],
            json!("INVALID_REPLICATION_DATE")
        );
        assert_eq!(bin.empty(&mut org, Some("account")).unwrap(), 1);
        assert_eq!(org.count("Account", true), 0);
        // A span starting after the purged deletions is answered.
        clock.advance(Duration::from_secs(120));
        let later = clock.now_ms();
        let answer = bin
            .get_deleted(
                &mut org,
                "Account",
                Some(&iso(later - 61_000)),
                Some(&iso(later)),
            )
            .unwrap();
        assert!(ids(&answer).is_empty());
    }
}
