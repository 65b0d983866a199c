//! Incremental sync from an account-wide events feed (Stripe's
//! `/v1/events`): each event carries the object after the change.
//!
//! The feed lists newest first. The cursor is the newest event applied;
//! a poll asks for the events just newer than it (`ending_before`), applies
//! each page oldest first, and moves the cursor page by page. The cursor is
//! captured before the backfill starts and polling begins once every
//! event-driven object is backfilled, so a change made during the backfill
//! is applied after the backfilled row and nothing is missed; replaying an
//! event after a crash is harmless (upserts are idempotent and never go
//! backwards).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sequin_spec::model::{Incremental, TimeFormat};
use sequin_spec::record::{decode_time, get_path};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Ctx, SyncError, decode, fallback};
use crate::catalog::ObjectPlan;
use crate::store::{Checkpoint, Row, Writer};

/// The pseudo-object under which the feed's cursor is kept.
pub const EVENTS: &str = "_events";

struct Feed<'a> {
    endpoint: &'a sequin_spec::model::Endpoint,
    records: &'a str,
    pagination: &'a sequin_spec::model::Pagination,
    newer_param: &'a str,
    id: &'a str,
    event_type: &'a str,
    created: &'a str,
    created_format: TimeFormat,
    object: &'a str,
    object_type: &'a str,
    deleted_suffix: &'a str,
}

fn feed(plan: &ObjectPlan) -> Feed<'_> {
    let Incremental::Events {
        endpoint,
        records,
        pagination,
        newer_param,
        id,
        event_type,
        created,
        created_format,
        object,
        object_type,
        deleted_suffix,
        ..
    } = &*plan.incremental
    else {
        unreachable!("events tasks get event-driven objects only")
    };
    Feed {
        endpoint,
        records,
        pagination,
        newer_param,
        id,
        event_type,
        created,
        created_format: *created_format,
        object,
        object_type,
        deleted_suffix,
    }
}

/// Stores the newest event id as the starting cursor, unless one exists.
/// When the spec has a fallback for a refused feed, the feed is asked even
/// then, so that a refusal is known before any object polls; any other
/// failure of that extra request is left to the feed's own polls, which
/// report it as they always did.
pub async fn ensure_cursor(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
) -> Result<(), SyncError> {
    let state = writer.state(&ctx.api.config.name, EVENTS).await?;
    let stored = state.incremental_cursor.is_some();
    let f = feed(plan);
    if stored
        && !matches!(
            *plan.incremental,
            Incremental::Events {
                fallback: Some(_),
                ..
            }
        )
    {
        return Ok(());
    }
    let mut ep = f.endpoint.clone();
    ep.records = Some(f.records.to_string());
    let page = ctx
        .api
        .client
        .fetch_page(&ep, Some(f.pagination), &ctx.api.vars(None), None, None)
        .await
        .map_err(SyncError::from);
    let page = match page {
        Err(e) if stored && fallback::applies(&plan.incremental, &e).is_none() => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) if stored => return Ok(()),
        Ok(page) => page,
    };
    let newest = page
        .records
        .first()
        .and_then(|e| get_path(e, f.id))
        .cloned();
    writer
        .save_cursor(&ctx.api.config.name, EVENTS, &json!({ "event": newest }))
        .await?;
    Ok(())
}

/// Polls the feed every poll interval once all `objects` but children are
/// live. A feed refused with a status the spec's fallback lists ends the
/// task, leaving the objects to re-listing (`fallback.rs`).
pub async fn run(
    ctx: Arc<Ctx>,
    objects: Vec<ObjectPlan>,
    mut live: watch::Receiver<BTreeSet<String>>,
) -> Result<(), SyncError> {
    {
        // Children (listed under every parent, which may take long) are not
        // waited for: their own events apply to rows that never go backwards.
        let all_live = |l: &BTreeSet<String>| {
            objects
                .iter()
                .filter(|o| o.parent.is_none())
                .all(|o| l.contains(&o.table.name))
        };
        let mut stop = ctx.shutdown.clone();
        tokio::select! {
            r = live.wait_for(all_live) => { if r.is_err() { return Ok(()); } }
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
    let mut writer = ctx.writer();
    // The feed is live from now on (its cursor was taken before backfill).
    let live = Checkpoint {
        phase: Some(crate::store::Phase::Live),
        ..Default::default()
    };
    Box::pin(writer.checkpoint(&ctx.api.config.name, EVENTS, &live)).await?;
    loop {
        // Boxed: the feed's task sleeps between polls with a small future.
        match Box::pin(poll(&ctx, &mut writer, &objects)).await {
            Ok(n) if n > 0 => {
                tracing::info!(connection = %ctx.api.config.name, events = n, "events applied")
            }
            Ok(_) => {}
            Err(e) if fallback::applies(&objects[0].incremental, &e).is_some() => {
                let f = fallback::applies(&objects[0].incremental, &e).expect("just matched");
                return Box::pin(fallback::fall_back(&ctx, &mut writer, f, &e)).await;
            }
            Err(e) if ctx.opts.once || e.is_auth() => {
                Box::pin(writer.record_error(&ctx.api.config.name, EVENTS, &e.to_string())).await?;
                return Err(e);
            }
            // The database session is gone (a restart): the connection
            // starts again with new sessions.
            Err(e) if e.is_session_lost() => return Err(e),
            Err(e) => {
                tracing::warn!(connection = %ctx.api.config.name, error = %e, "events poll failed; will retry");
                Box::pin(writer.record_error(&ctx.api.config.name, EVENTS, &e.to_string())).await?;
            }
        }
        if ctx.opts.once || !ctx.sleep(ctx.api.config.poll_interval).await {
            return Ok(());
        }
    }
}

/// Applies every event newer than the cursor; returns how many.
async fn poll(ctx: &Ctx, writer: &mut Writer, objects: &[ObjectPlan]) -> Result<usize, SyncError> {
    let f = feed(&objects[0]);
    let by_type: BTreeMap<&str, &ObjectPlan> =
        objects.iter().map(|p| (p.api_name.as_str(), p)).collect();
    let state = writer.state(&ctx.api.config.name, EVENTS).await?;
    let mut cursor: Option<String> = state
        .incremental_cursor
        .as_ref()
        .and_then(|c| c.get("event"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut applied = 0;
    let mut ep = f.endpoint.clone();
    ep.records = Some(f.records.to_string());
    loop {
        // Without a cursor (the feed was empty at start), every event is new:
        // page from the newest back to the oldest, then apply oldest first.
        let mut pages: Vec<Vec<Value>> = Vec::new();
        let has_more = match &cursor {
            Some(c) => {
                let mut e = ep.clone();
                e.query.insert(f.newer_param.to_string(), c.clone());
                let page = ctx
                    .api
                    .client
                    .fetch_page(&e, Some(f.pagination), &ctx.api.vars(None), None, None)
                    .await?;
                let more = page.next.is_some();
                pages.push(page.records);
                more
            }
            None => {
                let mut next = None;
                loop {
                    let page = ctx
                        .api
                        .client
                        .fetch_page(
                            &ep,
                            Some(f.pagination),
                            &ctx.api.vars(None),
                            next.as_ref(),
                            None,
                        )
                        .await?;
                    pages.push(page.records);
                    match page.next {
                        Some(n) => next = Some(n),
                        None => break,
                    }
                }
                false
            }
        };
        let mut events: Vec<Value> = pages.into_iter().flatten().collect();
        if events.is_empty() {
            let mut polled: Vec<&str> = objects.iter().map(|p| p.table.name.as_str()).collect();
            polled.push(EVENTS);
            writer.record_poll(&ctx.api.config.name, &polled).await?;
            return Ok(applied);
        }
        // Newest first on the wire; apply oldest first.
        events.reverse();
        let newest = events
            .last()
            .and_then(|e| get_path(e, f.id))
            .and_then(Value::as_str)
            .map(str::to_string);
        apply_events(ctx, writer, &f, &by_type, &events).await?;
        applied += events.len();
        cursor = newest;
        writer
            .checkpoint(
                &ctx.api.config.name,
                EVENTS,
                &Checkpoint {
                    phase: Some(crate::store::Phase::Live),
                    incremental_cursor: Some(Some(json!({ "event": cursor }))),
                    ..Default::default()
                },
            )
            .await?;
        if !has_more {
            return Ok(applied);
        }
    }
}

/// An event's update marker: the last instant its `created` may stand for.
/// Stripe's is in whole seconds, so a change made in the same second as
/// (and after) a backfill fetched the record would otherwise look older
/// than the fetched row and be skipped for good; as the second's end it
/// replaces the row, which at worst writes the state the fetch already saw
/// (equal markers replace, the batch's last event winning).
fn event_marker(created: &Value, format: TimeFormat) -> Option<i64> {
    let at = decode_time(created, format)?;
    let whole =
        created.as_i64().is_some() || created.as_str().is_some_and(|s| s.parse::<i64>().is_ok());
    Some(match format {
        TimeFormat::UnixSeconds if whole => at + 999_999,
        TimeFormat::UnixMillis => at + 999,
        _ => at,
    })
}

async fn apply_events(
    ctx: &Ctx,
    writer: &mut Writer,
    f: &Feed<'_>,
    by_type: &BTreeMap<&str, &ObjectPlan>,
    events: &[Value],
) -> Result<(), SyncError> {
    // Group per table, keeping event order within each table.
    let mut per_table: BTreeMap<&str, (Vec<Row>, Vec<String>)> = BTreeMap::new();
    for e in events {
        let Some(obj) = get_path(e, f.object) else {
            continue;
        };
        let Some(otype) = get_path(obj, f.object_type).and_then(Value::as_str) else {
            continue;
        };
        let Some(plan) = by_type.get(otype) else {
            continue;
        };
        let created = get_path(e, f.created)
            .and_then(|v| event_marker(v, f.created_format))
            .unwrap_or_else(crate::catalog::now_us);
        let etype = get_path(e, f.event_type)
            .and_then(Value::as_str)
            .unwrap_or("");
        let entry = per_table.entry(plan.table.name.as_str()).or_default();
        let mut row = decode(plan, obj, created)?;
        row.updated_at = Some(created);
        let key = row.cells[plan.table.primary_key]
            .to_pg_text()
            .unwrap_or_default();
        if etype.ends_with(f.deleted_suffix) {
            entry
                .0
                .retain(|r| r.cells[plan.table.primary_key].to_pg_text().as_deref() != Some(&key));
            entry.1.push(key);
        } else {
            entry.1.retain(|k| k != &key);
            entry.0.push(row);
        }
    }
    for (table, (rows, deletes)) in per_table {
        let plan = by_type
            .values()
            .find(|p| p.table.name == table)
            .expect("grouped by plan");
        writer
            .apply(
                &ctx.api.config.name,
                &plan.table,
                &rows,
                &deletes,
                &Checkpoint::default(),
            )
            .await?;
        ctx.delete_children(writer, table, &deletes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stands_for_the_end_of_its_timestamps_resolution() {
        // 2026-12-05T19:43:28Z in whole seconds: any instant of that second.
        assert_eq!(
            event_marker(&json!(1_796_499_808), TimeFormat::UnixSeconds),
            Some(1_796_499_808_999_999)
        );
        assert_eq!(
            event_marker(&json!("1796499808"), TimeFormat::UnixSeconds),
            Some(1_796_499_808_999_999)
        );
        // Fractions are taken as they are.
        assert_eq!(
            event_marker(&json!(1_796_499_808.25), TimeFormat::UnixSeconds),
            Some(1_796_499_808_250_000)
        );
        assert_eq!(
            event_marker(&json!(1_796_499_808_123i64), TimeFormat::UnixMillis),
            Some(1_796_499_808_123_999)
        );
        assert_eq!(
            event_marker(&json!("2026-12-05T19:43:28.5Z"), TimeFormat::Iso8601),
            Some(1_796_499_808_500_000)
        );
    }
}
