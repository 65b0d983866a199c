//! Incremental polls: changes since the cursor (updated-since lists,
//! searches, full refreshes) and delete detection (deleted lists, full
//! diffs; a deleted list with a window in `window.rs`).

use std::collections::HashSet;

use sequin_spec::model::{DeleteDetection, Endpoint, Incremental, Pagination, TimeFormat};
use sequin_spec::record::{Cell, encode_time, get_path};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Ctx, SyncError, decode, fallback, pk_text, window};
use crate::api::{PageCursor, Vars};
use crate::catalog::{ObjectPlan, now_us, plan};
use crate::store::Writer;

/// Overlap of updated-since polls, for records whose update time was
/// assigned before their change became visible upstream.
const OVERLAP_US: i64 = 1_000_000;

/// Where an object's incremental polls resume, stored as the object's
/// `incremental_cursor` (JSON: `{"since": .., "deletes_since": ..,
/// "diff_at": ..}`, microseconds since the epoch, each key present once
/// set). Absent times read as 0 (the beginning).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCursor {
    /// Newest update marker seen by updated-since lists and searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Where the deleted-records list resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes_since: Option<i64>,
    /// When the last full diff ran (or, for an event-driven object, its
    /// last listing: the backfill, or a re-listing while the feed is
    /// refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_at: Option<i64>,
}

impl PollCursor {
    /// The cursor a backfill starting at `started` leaves for the polls:
    /// changes and deletions from the backfill's start on.
    pub fn at_backfill_start(incremental: &Incremental, started: i64) -> PollCursor {
        let since = matches!(
            incremental,
            Incremental::UpdatedSince { .. } | Incremental::Search { .. }
        )
        .then_some(started);
        PollCursor {
            since,
            deletes_since: Some(started),
            // The backfill is the first listing of an event-driven object
            // whose feed is refused (`fallback.rs`).
            diff_at: matches!(incremental, Incremental::Events { .. }).then_some(started),
        }
    }

    /// The stored cursor (`None`: no poll yet).
    pub fn from_stored(stored: Option<Value>) -> Result<PollCursor, SyncError> {
        match stored {
            None => Ok(PollCursor::default()),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| SyncError::Decode(format!("bad stored incremental cursor: {e}"))),
        }
    }
}

/// One incremental poll (non-events strategies) plus delete detection.
pub(super) async fn poll_once(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    let state = writer.state(name, &plan.table.name).await?;
    let mut cursor = PollCursor::from_stored(state.incremental_cursor)?;
    let poll_started = now_us();
    let mut changed = poll_changes(ctx, writer, plan, &mut cursor, poll_started).await?;
    changed += detect_deletes(ctx, writer, plan, &mut cursor, poll_started).await?;
    writer.save_cursor(name, &plan.table.name, &cursor).await?;
    if changed > 0 {
        tracing::info!(connection = %name, table = %plan.table.name, changed, "incremental changes applied");
    }
    Ok(())
}

/// Applies the changes since the cursor by the object's incremental
/// strategy. Returns the rows changed.
async fn poll_changes(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    cursor: &mut PollCursor,
    poll_started: i64,
) -> Result<u64, SyncError> {
    match &*plan.incremental {
        Incremental::UpdatedSince {
            since_param,
            since_format,
            endpoint,
            ..
        } => {
            let since = cursor.since.unwrap_or(0);
            let vars = ctx
                .api
                .vars(Some(plan))
                .with("since", format_since(since - OVERLAP_US, *since_format));
            let mut ep = endpoint
                .clone()
                .unwrap_or_else(|| plan.endpoints.list.clone());
            if let (None, Some(param)) = (endpoint, since_param) {
                ep.query.insert(param.clone(), "{since}".into());
            }
            let pagination = ctx.pagination_with_size(&plan.pagination);
            let (n, max) = pull_all(ctx, writer, plan, &ep, &pagination, &vars, None).await?;
            if let Some(m) = max {
                cursor.since = Some(m.max(since));
            }
            Ok(n)
        }
        Incremental::Search {
            endpoint,
            body,
            pagination,
            since_format,
            max_results,
            ..
        } => {
            let mut since = cursor.since.unwrap_or(0);
            let mut changed = 0;
            loop {
                let vars = ctx
                    .api
                    .vars(Some(plan))
                    .with("since", format_since(since - OVERLAP_US, *since_format));
                let search = Search {
                    ep: endpoint,
                    pagination,
                    vars: &vars,
                    body,
                    max_results: *max_results,
                };
                let (n, max, capped) = pull_search(ctx, writer, plan, &search).await?;
                changed += n;
                if let Some(m) = max {
                    since = since.max(m);
                }
                // The search caps results; start again after the newest seen.
                if !capped || max.is_none() {
                    break;
                }
            }
            cursor.since = Some(since);
            Ok(changed)
        }
        Incremental::FullRefresh => refresh(ctx, writer, plan, poll_started).await,
        // The feed applies the changes, unless it was refused: then the
        // object is re-listed every fallback interval.
        Incremental::Events { .. } => match ctx.feed_refused.get() {
            Some(r) if fallback::due(ctx, r, cursor.diff_at, poll_started) => {
                let changed = refresh(ctx, writer, plan, poll_started).await?;
                cursor.diff_at = Some(poll_started);
                Ok(changed)
            }
            _ => Ok(0),
        },
    }
}

/// Re-lists the whole object, upserting, and deletes the rows it no longer
/// lists (and their children). Returns the rows deleted.
async fn refresh(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    poll_started: i64,
) -> Result<u64, SyncError> {
    let seen = full_list(ctx, writer, plan).await?;
    // Rows written since the list began (a write-through insert made after
    // the list passed its page) are not gone.
    let gone = writer.stale_keys(&plan.table, &seen, poll_started).await?;
    ctx.delete_rows(writer, plan, &gone).await
}

/// Deletes the rows the API no longer has, by the object's delete
/// detection. Returns the rows deleted.
async fn detect_deletes(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    cursor: &mut PollCursor,
    poll_started: i64,
) -> Result<u64, SyncError> {
    match plan.deletes.as_deref() {
        Some(DeleteDetection::DeletedList {
            endpoint,
            records,
            since_format,
            id,
            window: Some(window),
            ..
        }) => {
            let list = window::WindowedList {
                endpoint,
                records,
                since_format: *since_format,
                id: id.as_deref(),
                window,
            };
            window::detect(ctx, writer, plan, &list, cursor, poll_started).await
        }
        Some(DeleteDetection::DeletedList {
            endpoint,
            records,
            pagination,
            since_format,
            id,
            window: None,
        }) => {
            let since = cursor.deletes_since.unwrap_or(0);
            let vars = ctx
                .api
                .vars(Some(plan))
                .with("since", format_since(since - OVERLAP_US, *since_format));
            let mut ep = endpoint.clone();
            ep.records = Some(records.clone());
            let pagination = pagination
                .clone()
                .unwrap_or_else(|| plan.pagination.clone());
            let (ids, newest) =
                deleted_ids(ctx, plan, &ep, &pagination, &vars, id.as_deref()).await?;
            // With an update marker, the cursor follows the API's clock (the
            // newest deletion seen): our own clock running ahead of the
            // API's would skip deletions stamped within the difference.
            cursor.deletes_since = Some(match plan.marker {
                plan::Marker::Column(_) => newest.map_or(since, |m| m.max(since)),
                plan::Marker::FetchTime => poll_started,
            });
            ctx.delete_rows(writer, plan, &ids).await
        }
        Some(DeleteDetection::FullDiff { every })
            if !matches!(*plan.incremental, Incremental::FullRefresh) =>
        {
            let every_us = every.get().as_micros() as i64;
            let last = cursor.diff_at.unwrap_or(0);
            if poll_started - last < every_us {
                return Ok(0);
            }
            let seen = full_list(ctx, writer, plan).await?;
            let gone = writer.stale_keys(&plan.table, &seen, poll_started).await?;
            let deleted = ctx.delete_rows(writer, plan, &gone).await?;
            cursor.diff_at = Some(poll_started);
            Ok(deleted)
        }
        _ => Ok(0),
    }
}

/// Pages through a deleted-records list: the deleted keys, and the newest
/// deletion's update marker when the object has one.
async fn deleted_ids(
    ctx: &Ctx,
    plan: &ObjectPlan,
    ep: &Endpoint,
    pagination: &Pagination,
    vars: &Vars,
    id: Option<&str>,
) -> Result<(Vec<String>, Option<i64>), SyncError> {
    let mut ids = Vec::new();
    let mut newest: Option<i64> = None;
    let mut page_cursor: Option<PageCursor> = None;
    loop {
        let page = ctx
            .api
            .client
            .fetch_page(ep, Some(pagination), vars, page_cursor.as_ref(), None)
            .await?;
        for r in &page.records {
            if let Some(k) = super::record_id(plan, r, id) {
                ids.push(k);
            }
            if let plan::Marker::Column(i) = plan.marker {
                let col = &plan.table.columns[i];
                if let Ok(Cell::Timestamp(us)) =
                    sequin_spec::record::decode_cell(col, get_path(r, &col.path))
                {
                    newest = Some(newest.map_or(us, |n| n.max(us)));
                }
            }
        }
        match page.next {
            Some(n) => page_cursor = Some(n),
            None => return Ok((ids, newest)),
        }
    }
}

pub(super) fn format_since(us: i64, fmt: TimeFormat) -> String {
    match encode_time(us.max(0), fmt) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Lists everything of an object, upserting as it goes; returns the keys.
pub(super) async fn full_list(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
) -> Result<HashSet<String>, SyncError> {
    let mut seen = HashSet::new();
    let vars = ctx.api.vars(Some(plan));
    let pagination = ctx.pagination_with_size(&plan.pagination);
    let mut cursor: Option<PageCursor> = None;
    loop {
        let page = ctx
            .api
            .client
            .fetch_page(
                &plan.endpoints.list,
                Some(&pagination),
                &vars,
                cursor.as_ref(),
                None,
            )
            .await?;
        let fetched_at = now_us();
        let mut rows = Vec::with_capacity(page.records.len());
        for r in &page.records {
            let row = decode(plan, r, fetched_at)?;
            if let Some(k) = pk_text(&row.cells, plan.table.primary_key) {
                seen.insert(k);
            }
            rows.push(row);
        }
        writer
            .upsert(&ctx.api.config.name, &plan.table, &rows)
            .await?;
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(seen),
        }
    }
}

/// Pages through an endpoint, upserting; returns (rows, max marker).
async fn pull_all(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    ep: &Endpoint,
    pagination: &Pagination,
    vars: &Vars,
    body: Option<Value>,
) -> Result<(u64, Option<i64>), SyncError> {
    let mut cursor: Option<PageCursor> = None;
    let mut max = None;
    let mut n = 0;
    loop {
        let page = ctx
            .api
            .client
            .fetch_page(ep, Some(pagination), vars, cursor.as_ref(), body.clone())
            .await?;
        let fetched_at = now_us();
        let mut rows = Vec::with_capacity(page.records.len());
        for r in &page.records {
            let row = decode(plan, r, fetched_at)?;
            if let (plan::Marker::Column(_), Some(m)) = (&plan.marker, row.updated_at) {
                max = Some(max.map_or(m, |x: i64| x.max(m)));
            }
            rows.push(row);
        }
        n += writer
            .upsert(&ctx.api.config.name, &plan.table, &rows)
            .await?;
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok((n, max)),
        }
    }
}

/// One search request of an incremental poll.
struct Search<'a> {
    ep: &'a Endpoint,
    pagination: &'a Pagination,
    vars: &'a Vars,
    body: &'a Value,
    /// The most results the search gives for one query.
    max_results: Option<u32>,
}

/// Like [`pull_all`] for search endpoints; also says whether the search's
/// result cap was reached.
async fn pull_search(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    search: &Search<'_>,
) -> Result<(u64, Option<i64>, bool), SyncError> {
    let mut cursor: Option<PageCursor> = None;
    let mut max = None;
    let mut n = 0;
    let mut seen = 0usize;
    loop {
        let page = ctx
            .api
            .client
            .fetch_page(
                search.ep,
                Some(search.pagination),
                search.vars,
                cursor.as_ref(),
                Some(search.body.clone()),
            )
            .await?;
        let fetched_at = now_us();
        let mut rows = Vec::with_capacity(page.records.len());
        for r in &page.records {
            let row = decode(plan, r, fetched_at)?;
            if let Some(m) = row.updated_at {
                max = Some(max.map_or(m, |x: i64| x.max(m)));
            }
            rows.push(row);
        }
        seen += rows.len();
        n += writer
            .upsert(&ctx.api.config.name, &plan.table, &rows)
            .await?;
        let capped = search
            .max_results
            .is_some_and(|cap| seen + pagination_size(search.pagination) > cap as usize);
        match page.next {
            Some(_) if capped => return Ok((n, max, true)),
            Some(c) => cursor = Some(c),
            None => return Ok((n, max, false)),
        }
    }
}

fn pagination_size(p: &Pagination) -> usize {
    let common = p.common();
    common.page_size.unwrap_or(100) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cursor_stored_before_it_was_typed_reads_and_writes_back_the_same() {
        for stored in [
            json!({}),
            json!({ "deletes_since": 1_700_000_000_000_000i64 }),
            json!({ "since": 1_700_000_000_000_001i64, "deletes_since": 1_700_000_000_000_000i64 }),
            json!({ "deletes_since": 5, "diff_at": 1_700_000_000_000_002i64 }),
        ] {
            let cursor = PollCursor::from_stored(Some(stored.clone())).unwrap();
            assert_eq!(serde_json::to_value(&cursor).unwrap(), stored);
        }
        let old = PollCursor::from_stored(Some(
            json!({ "since": 7, "deletes_since": 8, "diff_at": 9 }),
        ))
        .unwrap();
        assert_eq!(
            old,
            PollCursor {
                since: Some(7),
                deletes_since: Some(8),
                diff_at: Some(9)
            }
        );
        assert_eq!(
            PollCursor::from_stored(None).unwrap(),
            PollCursor::default()
        );
    }

    #[test]
    fn a_backfill_leaves_since_only_for_strategies_that_poll_by_time() {
        let mut by_time = 0;
        let mut other = 0;
        for loaded in crate::registry::all() {
            for o in &loaded.spec.objects {
                let Some(incremental) = loaded.spec.incremental_of(o) else {
                    continue;
                };
                let cursor =
                    serde_json::to_value(PollCursor::at_backfill_start(incremental, 42)).unwrap();
                if matches!(
                    incremental,
                    Incremental::UpdatedSince { .. } | Incremental::Search { .. }
                ) {
                    by_time += 1;
                    assert_eq!(cursor, json!({ "since": 42, "deletes_since": 42 }));
                } else if matches!(incremental, Incremental::Events { .. }) {
                    other += 1;
                    assert_eq!(cursor, json!({ "deletes_since": 42, "diff_at": 42 }));
                } else {
                    other += 1;
                    assert_eq!(cursor, json!({ "deletes_since": 42 }));
                }
            }
        }
        assert!(by_time > 0 && other > 0, "{by_time} {other}");
    }

    #[test]
    fn a_malformed_stored_cursor_is_an_error_not_the_beginning() {
        let e = PollCursor::from_stored(Some(json!({ "since": "yesterday" }))).unwrap_err();
        assert!(
            e.to_string().contains("bad stored incremental cursor"),
            "{e}"
        );
    }
}
