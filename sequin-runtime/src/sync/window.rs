//! Deleted-records lists that reach back only so far (the spec's
//! `deletes.window`: an API that keeps deletions in a recycle bin for some
//! days, fewer once they are purged). Deletions are read span by
//! span (`{since}`..`{until}`), and the cursor follows what the API says the
//! answer covered.
//!
//! A cursor outside the window (older than `retention`, before the list's
//! `earliest`, or refused with one of `expired_codes`: a sync stopped for
//! weeks, records purged early) is never a silent gap. It triggers one full
//! id diff: every id of the object listed once (`full_diff`, or the object's
//! list), the rows whose ids are gone deleted, a warning logged once per
//! diff; the list then resumes from the diff's start.

use std::collections::HashSet;

use sequin_spec::model::{DeleteWindow, Endpoint, IdListing, Pagination, TimeFormat};
use sequin_spec::record::{decode_time, format_iso8601, get_path};
use serde_json::Value;

use super::poll::{PollCursor, format_since, full_list};
use super::{Ctx, SyncError};
use crate::api::{ApiError, PageCursor, Priority, SendRequest, Vars};
use crate::catalog::{ObjectPlan, now_us};
use crate::store::Writer;

/// Slack for clocks: the API's and ours differ by this much at most.
const CLOCK_SLACK_US: i64 = 1_000_000;

/// A deleted-records list with a window, as the spec gives it.
pub(super) struct WindowedList<'a> {
    pub endpoint: &'a Endpoint,
    pub records: &'a str,
    pub since_format: TimeFormat,
    /// Path of a deleted record's id (default: the primary key's).
    pub id: Option<&'a str>,
    pub window: &'a DeleteWindow,
}

/// Why a cursor lies outside the window.
#[derive(Debug, PartialEq)]
enum Outside {
    /// Older than the spec's `retention`.
    Retention,
    /// The API covers deletions from `earliest` (microseconds) on only.
    Earliest(i64),
    /// The API refused the span with one of the window's codes.
    Refused(String),
}

impl std::fmt::Display for Outside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outside::Retention => write!(f, "older than the API keeps deletions"),
            Outside::Earliest(us) => write!(
                f,
                "before the earliest deletion the API still lists ({})",
                format_iso8601(*us)
            ),
            Outside::Refused(e) => write!(f, "the API refused it: {e}"),
        }
    }
}

/// What one span's answer said.
struct Span {
    ids: Vec<String>,
    earliest: Option<i64>,
    covered: Option<i64>,
}

/// Deletes the rows whose records the list says were deleted since the
/// cursor, or, with the cursor outside the window, runs the full id diff.
/// Returns the rows deleted.
pub(super) async fn detect(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    list: &WindowedList<'_>,
    cursor: &mut PollCursor,
    poll_started: i64,
) -> Result<u64, SyncError> {
    let since = cursor.deletes_since.unwrap_or(0);
    if outside_retention(list.window, since, poll_started) {
        return full_diff(ctx, writer, plan, list.window, cursor, Outside::Retention).await;
    }
    let mut deleted = 0;
    let mut start = since;
    while let Some((from, until)) = next_span(list.window, start, cursor.diff_at, poll_started) {
        let span = match read_span(ctx, plan, list, from, until).await {
            Ok(span) => span,
            Err(SyncError::Api(e)) if expired(&e, list.window) => {
                let why = Outside::Refused(e.to_string());
                return full_diff(ctx, writer, plan, list.window, cursor, why).await;
            }
            Err(e) => return Err(e),
        };
        if let Some(earliest) = span.earliest.filter(|e| *e > from) {
            let why = Outside::Earliest(earliest);
            return full_diff(ctx, writer, plan, list.window, cursor, why).await;
        }
        deleted += ctx.delete_rows(writer, plan, &span.ids).await?;
        let next = span.covered.unwrap_or(until).min(until).max(start);
        cursor.deletes_since = Some(next);
        if until >= poll_started || next <= start {
            break;
        }
        start = next;
    }
    Ok(deleted)
}

/// Whether a cursor at `since` is older than the window's fixed retention.
fn outside_retention(w: &DeleteWindow, since: i64, now: i64) -> bool {
    w.retention
        .as_ref()
        .is_some_and(|r| since < now - r.get().as_micros() as i64)
}

/// The next span to ask for, from a cursor at `start`: `(from, until)` in
/// microseconds, or `None` when the span would be shorter than the window's
/// `min_span` (the deletions wait for the next poll). `from` is moved back
/// to make `min_span`, but never before the last full diff (`diff_at`),
/// which covered everything before it.
fn next_span(w: &DeleteWindow, start: i64, diff_at: Option<i64>, now: i64) -> Option<(i64, i64)> {
    let micros = |d: &sequin_spec::duration::Duration| d.get().as_micros() as i64;
    let until = match &w.max_span {
        Some(max) => now.min(start.saturating_add(micros(max))),
        None => now,
    };
    let min = w.min_span.as_ref().map_or(0, micros);
    let mut from = start.min(until - min);
    if let Some(d) = diff_at {
        from = from.max(d - CLOCK_SLACK_US);
    }
    (until > from && until - from >= min).then_some((from, until))
}

/// Whether the API's error says the span starts outside the window.
fn expired(e: &ApiError, w: &DeleteWindow) -> bool {
    e.code
        .as_deref()
        .is_some_and(|c| w.expired_codes.iter().any(|x| x == c))
}

/// Asks the list for the deletions from `from` to `until`.
async fn read_span(
    ctx: &Ctx,
    plan: &ObjectPlan,
    list: &WindowedList<'_>,
    from: i64,
    until: i64,
) -> Result<Span, SyncError> {
    let vars = ctx
        .api
        .vars(Some(plan))
        .with("since", format_since(from, list.since_format))
        .with("until", format_since(until, list.since_format));
    let answer = ctx
        .api
        .client
        .send_request(SendRequest::new(Priority::Read, list.endpoint, &vars))
        .await?;
    let body = answer.json.unwrap_or(Value::Null);
    let Some(Value::Array(records)) = get_path(&body, list.records) else {
        return Err(SyncError::Decode(format!(
            "{}.{}: the deleted-records list has no record array at `{}`",
            plan.table.schema, plan.table.name, list.records
        )));
    };
    let time_at = |path: &Option<String>| {
        path.as_deref()
            .and_then(|p| get_path(&body, p))
            .and_then(|v| decode_time(v, list.since_format))
    };
    Ok(Span {
        ids: records
            .iter()
            .filter_map(|r| super::record_id(plan, r, list.id))
            .collect(),
        earliest: time_at(&list.window.earliest),
        covered: time_at(&list.window.covered),
    })
}

/// The full id diff: lists every id of the object once, deletes the rows
/// whose ids are gone (rows written since the listing began stay), and
/// restarts the list at the listing's start. Logged once, as a warning
/// saying why. Returns the rows deleted.
async fn full_diff(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    window: &DeleteWindow,
    cursor: &mut PollCursor,
    why: Outside,
) -> Result<u64, SyncError> {
    let name = &ctx.api.config.name;
    let started = now_us();
    let since = cursor.deletes_since.map_or("never".into(), format_iso8601);
    tracing::warn!(connection = %name, table = %plan.table.name, deletes_since = %since, reason = %why,
        "the deletions since the cursor are outside the API's window: running one full id diff (every id of the object listed once; rows whose ids are gone are deleted)");
    let seen = match &window.full_diff {
        Some(listing) => list_ids(ctx, plan, listing).await?,
        None => full_list(ctx, writer, plan).await?,
    };
    let gone = writer.stale_keys(&plan.table, &seen, started).await?;
    let deleted = ctx.delete_rows(writer, plan, &gone).await?;
    tracing::info!(connection = %name, table = %plan.table.name, ids = seen.len(), deleted, "full id diff done; deletions are read from the list again");
    cursor.deletes_since = Some(started);
    cursor.diff_at = Some(started);
    Ok(deleted)
}

/// Pages through an id listing; returns every id.
async fn list_ids(
    ctx: &Ctx,
    plan: &ObjectPlan,
    listing: &IdListing,
) -> Result<HashSet<String>, SyncError> {
    let vars: Vars = ctx.api.vars(Some(plan));
    let pagination: Pagination =
        ctx.pagination_with_size(listing.pagination.as_ref().unwrap_or(&plan.pagination));
    let mut seen = HashSet::new();
    let mut page_cursor: Option<PageCursor> = None;
    loop {
        let page = ctx
            .api
            .client
            .fetch_records_page(
                &listing.endpoint,
                &listing.records,
                Some(&pagination),
                &vars,
                page_cursor.as_ref(),
                None,
            )
            .await?;
        for r in &page.records {
            match super::record_id(plan, r, listing.id.as_deref()) {
                Some(id) => seen.insert(id),
                // A listing that loses ids would delete live rows.
                None => {
                    return Err(SyncError::Decode(format!(
                        "{}.{}: a record of the id listing has no id",
                        plan.table.schema, plan.table.name
                    )));
                }
            };
        }
        match page.next {
            Some(n) => page_cursor = Some(n),
            None => return Ok(seen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequin_spec::duration::Duration as SpecDuration;

    const MIN: i64 = 60_000_000;
    const DAY: i64 = 24 * 60 * MIN;

    fn window() -> DeleteWindow {
        DeleteWindow {
            earliest: Some("earliestDateAvailable".into()),
            covered: Some("latestDateCovered".into()),
            retention: Some("15d".parse::<SpecDuration>().unwrap()),
            max_span: Some("30d".parse::<SpecDuration>().unwrap()),
            min_span: Some("2m".parse::<SpecDuration>().unwrap()),
            expired_codes: vec!["INVALID_REPLICATION_DATE".into()],
            full_diff: None,
        }
    }

    #[test]
    fn a_span_reaches_back_to_the_minimum_but_never_before_the_last_diff() {
        let w = window();
        let now = 1_000 * DAY;
        // A cursor a few seconds old: moved back to make two minutes.
        assert_eq!(
            next_span(&w, now - 5_000_000, None, now),
            Some((now - 2 * MIN, now))
        );
        // An old cursor stays where it is.
        assert_eq!(
            next_span(&w, now - 3 * DAY, None, now),
            Some((now - 3 * DAY, now))
        );
        // A diff a minute ago covered what came before it: the span would
        // be too short, so the poll waits.
        assert_eq!(next_span(&w, now - MIN, Some(now - MIN), now), None);
        // Three minutes after the diff the span starts no earlier than it.
        let diff = now - 3 * MIN;
        assert_eq!(
            next_span(&w, now - 10_000_000, Some(diff), now),
            Some((now - 2 * MIN, now))
        );
    }

    #[test]
    fn a_span_longer_than_the_maximum_is_asked_window_after_window() {
        let mut w = window();
        w.max_span = Some("1d".parse::<SpecDuration>().unwrap());
        let now = 1_000 * DAY;
        let start = now - 3 * DAY - 5;
        assert_eq!(next_span(&w, start, None, now), Some((start, start + DAY)));
    }

    #[test]
    fn retention_puts_an_old_cursor_outside_the_window() {
        let w = window();
        let now = 1_000 * DAY;
        assert!(outside_retention(&w, now - 16 * DAY, now));
        assert!(!outside_retention(&w, now - 14 * DAY, now));
        let mut no_retention = window();
        no_retention.retention = None;
        assert!(!outside_retention(&no_retention, 0, now));
    }

    #[test]
    fn only_the_windows_codes_mean_expired() {
        let w = window();
        let mut e = ApiError::new("Api", crate::api::ErrorKind::Http, "bad date");
        e.code = Some("INVALID_REPLICATION_DATE".into());
        assert!(expired(&e, &w));
        e.code = Some("EXCEEDED_ID_LIMIT".into());
        assert!(!expired(&e, &w));
        e.code = None;
        assert!(!expired(&e, &w));
    }
}
