//! Link tables (`links:` of a spec: HubSpot's associations, one table per
//! object pair, one row per linked pair of records and association type).
//!
//! An association change touches neither record at the API (HubSpot's
//! `hs_lastmodifieddate` stays), so no modification search sees it. A link
//! table's task therefore:
//! 1. waits until both objects are backfilled, then reads the links of
//!    every source record (ids from the source's table, in key order,
//!    `read.max_size` per request), each batch committed with its position,
//!    so a crash resumes after the last batch;
//! 2. every poll, reads again the links of the records of either object
//!    whose rows were written since the last poll (`_sequin_synced_at`, the
//!    database's clock: it survives restarts): a source's links directly;
//!    for a target, the sources linked to it now (a reverse read) and those
//!    linked to it in the table. A link made or removed together with a
//!    record change arrives with it;
//! 3. every `association_interval` (the spec's `links.every` by default)
//!    reads every source record's links again and deletes the rows no longer
//!    there, and deletes links whose record is gone: that finds a link
//!    changed on its own, within that interval;
//! 4. a record deleted by sync takes its links along at once (the link
//!    tables are registered as children of both objects, `Ctx::delete_rows`).
//!
//! A link table found at run time (a discovered object's associations,
//! `links.discovered`) is created by its task, with the link columns and
//! indexes of the generated DDL, and then runs the same way.
//!
//! Reading a record's links again replaces its rows: read rows are upserted,
//! rows of the record not read (and not written since the read began) are
//! deleted, in one transaction.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::object::settle_poll;
use super::{Ctx, SyncError, decode, pk_text};
use crate::api::Priority;
use crate::catalog::{Direction, LinkPlan, ObjectPlan, now_us};
use crate::metrics::Purpose;
use crate::store::{Checkpoint, Phase, Row, Table, Writer};

/// Records written this long before the last poll are looked at again: a
/// transaction that began before the poll (its `_sequin_synced_at` is its
/// start) may have committed after it. Reading a record's links twice is
/// harmless.
const OVERLAP_US: i64 = 5_000_000;

/// First pause before a failed backfill resumes (doubling up to the max).
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A bound later than every row's write (2100-01-01): all rows.
const EVER_US: i64 = 4_102_444_800_000_000;

/// The live tables of the connection: a link table waits for both of its
/// objects', and says when it is live itself.
type Live = (
    Arc<watch::Sender<BTreeSet<String>>>,
    watch::Receiver<BTreeSet<String>>,
);

/// Where a link table's polls resume (its `incremental_cursor`; times in
/// microseconds since the epoch, the database's clock for `since`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct LinkCursor {
    /// Records written at or after this (less the overlap) are read again.
    since: i64,
    /// When every source's links were last read (the backfill or a sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    swept_at: Option<i64>,
}

impl LinkCursor {
    fn from_stored(stored: Option<Value>) -> Result<LinkCursor, SyncError> {
        match stored {
            None => Ok(LinkCursor::default()),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| SyncError::Decode(format!("bad stored cursor of a link table: {e}"))),
        }
    }
}

/// A link table with the tables of its two objects and its columns.
struct Link {
    plan: Box<ObjectPlan>,
    link: LinkPlan,
    from: Table,
    to: Table,
    from_col: usize,
    to_col: usize,
}

/// Backfills a link table once both of its objects are, then keeps it
/// current.
pub(super) async fn run_link(
    ctx: Arc<Ctx>,
    plan: Box<ObjectPlan>,
    (from, to): (Table, Table),
    (live_tx, mut live_rx): Live,
) -> Result<(), SyncError> {
    let link = plan.link.clone().expect("a link table has a link plan");
    let column = |name: &str| {
        plan.table
            .columns
            .iter()
            .position(|c| &*c.name == name)
            .expect("a link table has the link columns")
    };
    let (from_col, to_col) = (column("from_id"), column("to_id"));
    let mut writer = ctx.writer();
    if plan.dynamic_table {
        Box::pin(create_table(&ctx, &mut writer, &plan)).await?;
    }
    let l = Link {
        plan,
        link,
        from,
        to,
        from_col,
        to_col,
    };
    {
        let mut stop = ctx.shutdown.clone();
        let (a, b) = (l.from.name.clone(), l.to.name.clone());
        tokio::select! {
            r = live_rx.wait_for(|live| live.contains(&a) && live.contains(&b)) => { if r.is_err() { return Ok(()); } }
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
    if !writer
        .as_backfill(async |w| {
            let _slot = ctx.backfill_slot().await;
            Box::pin(backfill(&ctx, w, &l)).await
        })
        .await?
    {
        return Ok(());
    }
    live_tx.send_modify(|live| {
        live.insert(l.plan.table.name.clone());
    });
    loop {
        // Boxed: the task sleeps between polls with a small future.
        let polled = Box::pin(poll(&ctx, &mut writer, &l)).await;
        Box::pin(settle_poll(&ctx, &mut writer, &l.plan.table.name, polled)).await?;
        if ctx.opts.once || !ctx.sleep(ctx.api.config.poll_interval).await {
            return Ok(());
        }
    }
}

/// Creates a link table found at run time (`links.discovered`) as the
/// generated DDL creates a static one: the link columns, the write guard,
/// `from_id` and `to_id` indexed.
async fn create_table(ctx: &Ctx, writer: &mut Writer, plan: &ObjectPlan) -> Result<(), SyncError> {
    let types = vec![String::new(); plan.table.columns.len()];
    let added = writer
        .ensure_table(&ctx.api.config.name, &plan.table, &types)
        .await?;
    writer
        .ensure_indexes(&plan.table, &["from_id", "to_id"])
        .await?;
    if !added.is_empty() {
        tracing::info!(connection = %ctx.api.config.name, table = %plan.table.name, "link table created");
    }
    Ok(())
}

/// Reads every source's links unless the table is live already, resuming
/// after the last batch done when a read fails (after a growing pause), as
/// an object's backfill does. Returns false when shutting down.
async fn backfill(ctx: &Ctx, writer: &mut Writer, l: &Link) -> Result<bool, SyncError> {
    let (name, table) = (&ctx.api.config.name, &l.plan.table.name);
    let mut failures: u32 = 0;
    loop {
        let Err(e) = backfill_once(ctx, writer, l).await else {
            return Ok(!ctx.stopping());
        };
        if ctx.opts.once || e.is_auth() || e.is_session_lost() {
            return Err(e);
        }
        failures += 1;
        let pause = RETRY_BASE
            .saturating_mul(1u32 << failures.min(7))
            .min(RETRY_MAX);
        tracing::warn!(connection = %name, table = %table, error = %e, pause_ms = pause.as_millis() as u64, "backfill failed; resuming after the last batch done");
        if !ctx.sleep(pause).await {
            return Ok(false);
        }
    }
}

/// One attempt at the backfill, from its checkpoint.
async fn backfill_once(ctx: &Ctx, writer: &mut Writer, l: &Link) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    let table = &l.plan.table.name;
    let state = writer.state(name, table).await?;
    if state.phase == Phase::Live {
        return Ok(());
    }
    let mut cursor = LinkCursor::from_stored(state.incremental_cursor)?;
    if cursor.since == 0 {
        // Records written from now on are read again once live.
        cursor.since = writer.now_us().await?;
        cursor.swept_at = Some(now_us());
        writer.save_cursor(name, table, &cursor).await?;
    }
    let after = state
        .backfill_cursor
        .as_ref()
        .and_then(|c| c.get("after"))
        .and_then(Value::as_str)
        .map(str::to_string);
    tracing::info!(connection = %name, table = %table, from = %l.from.name, "backfill started (links of every source record)");
    let result = walk(ctx, writer, l, after, Purpose::Backfill).await;
    if let Err(e) = result {
        writer.record_error(name, table, &e.to_string()).await?;
        return Err(e);
    }
    if ctx.stopping() {
        return Ok(());
    }
    let live = Checkpoint {
        phase: Some(Phase::Live),
        backfill_cursor: Some(None),
        ..Default::default()
    };
    writer.checkpoint(name, table, &live).await?;
    tracing::info!(connection = %name, table = %table, "backfill done");
    Ok(())
}

/// Reads the links of every source after `after`, in key order, a batch
/// at a time; a backfill checkpoints its position with each batch.
async fn walk(
    ctx: &Ctx,
    writer: &mut Writer,
    l: &Link,
    mut after: Option<String>,
    purpose: Purpose,
) -> Result<(), SyncError> {
    let chunk = i64::from(l.link.links.read.max_size.max(1));
    loop {
        let keys = writer.keys_after(&l.from, after.as_deref(), chunk).await?;
        let Some(last) = keys.last().cloned() else {
            return Ok(());
        };
        let checkpoint = match purpose {
            Purpose::Backfill => Checkpoint {
                backfill_cursor: Some(Some(json!({ "after": last }))),
                ..Default::default()
            },
            _ => Checkpoint::default(),
        };
        reread(ctx, writer, l, &keys, &checkpoint, purpose).await?;
        if ctx.stopping() {
            return Ok(());
        }
        after = Some(last);
    }
}

/// One poll of a live link table: the links of the records written since
/// the last poll read again; every source's links read again and orphans
/// deleted when the sweep is due.
async fn poll(ctx: &Ctx, writer: &mut Writer, l: &Link) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    let table = &l.plan.table.name;
    let state = writer.state(name, table).await?;
    let mut cursor = LinkCursor::from_stored(state.incremental_cursor)?;
    let began = writer.now_us().await?;
    let bound = cursor.since - OVERLAP_US;
    let sources = changed_sources(ctx, writer, l, bound).await?;
    if !sources.is_empty() {
        let sources: Vec<String> = sources.into_iter().collect();
        reread(
            ctx,
            writer,
            l,
            &sources,
            &Checkpoint::default(),
            Purpose::Poll,
        )
        .await?;
        tracing::debug!(connection = %name, table = %table, records = sources.len(), "links of changed records read again");
    }
    cursor.since = began;
    let now = now_us();
    let every = ctx
        .api
        .config
        .association_interval
        .unwrap_or_else(|| l.link.links.every.get());
    let due = cursor
        .swept_at
        .is_none_or(|t| now - t >= every.as_micros() as i64);
    if due && !ctx.opts.once {
        sweep(ctx, writer, l).await?;
        if ctx.stopping() {
            return Ok(());
        }
        cursor.swept_at = Some(now);
    }
    writer.save_cursor(name, table, &cursor).await?;
    Ok(())
}

/// The sources whose links may have changed with a record written since
/// `bound`: the sources written, and the sources linked (at the API now,
/// or in the table) to the targets written.
async fn changed_sources(
    ctx: &Ctx,
    writer: &Writer,
    l: &Link,
    bound: i64,
) -> Result<BTreeSet<String>, SyncError> {
    let mut sources: BTreeSet<String> = writer
        .written_since(&l.from, bound)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let targets: Vec<String> = writer
        .written_since(&l.to, bound)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    if targets.is_empty() {
        return Ok(sources);
    }
    let client = ctx.api.client.with_purpose(Purpose::Poll);
    let linked = l
        .link
        .read(&client, Priority::Read, &targets, Direction::Reverse)
        .await?;
    sources.extend(
        linked
            .iter()
            .filter_map(|r| r.get("to_id").and_then(Value::as_str).map(str::to_string)),
    );
    let held = writer
        .rows_where_any(&l.plan.table, l.to_col, &targets, l.from_col, EVER_US)
        .await?;
    sources.extend(held.into_iter().map(|(_, from)| from));
    Ok(sources)
}

/// Every source's links read again (rows no longer there deleted), and
/// the links of records gone from either table deleted.
async fn sweep(ctx: &Ctx, writer: &mut Writer, l: &Link) -> Result<(), SyncError> {
    walk(ctx, writer, l, None, Purpose::Poll).await?;
    let mut gone = writer
        .delete_orphans(&l.plan.table, l.from_col, &l.from)
        .await?;
    gone += writer
        .delete_orphans(&l.plan.table, l.to_col, &l.to)
        .await?;
    if gone > 0 {
        tracing::info!(connection = %ctx.api.config.name, table = %l.plan.table.name, deleted = gone, "links of deleted records deleted");
    }
    Ok(())
}

/// Reads the links of the sources `ids`, upserts them and deletes the rows
/// of those sources not read, committed with `checkpoint`.
async fn reread(
    ctx: &Ctx,
    writer: &mut Writer,
    l: &Link,
    ids: &[String],
    checkpoint: &Checkpoint,
    purpose: Purpose,
) -> Result<u64, SyncError> {
    let table = &l.plan.table;
    let started = writer.now_us().await?;
    let client = ctx.api.client.with_purpose(purpose);
    let records = l
        .link
        .read(&client, Priority::Read, ids, Direction::Forward)
        .await?;
    let fetched_at = now_us();
    let mut rows: Vec<Row> = Vec::with_capacity(records.len());
    let mut seen = HashSet::with_capacity(records.len());
    for r in &records {
        let row = decode(&l.plan, r, fetched_at)?;
        if let Some(k) = pk_text(&row.cells, table.primary_key) {
            seen.insert(k);
        }
        rows.push(row);
    }
    // Rows written since the read began may be newer than it.
    let gone: Vec<String> = writer
        .rows_where_any(table, l.from_col, ids, table.primary_key, started)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !seen.contains(k))
        .collect();
    Ok(writer
        .apply(&ctx.api.config.name, table, &rows, &gone, checkpoint)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_cursor_round_trips_and_a_bad_one_is_an_error() {
        let c = LinkCursor {
            since: 42,
            swept_at: Some(7),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(LinkCursor::from_stored(Some(v)).unwrap(), c);
        assert_eq!(
            LinkCursor::from_stored(None).unwrap(),
            LinkCursor::default()
        );
        assert!(LinkCursor::from_stored(Some(json!({"since": "x"}))).is_err());
    }
}
