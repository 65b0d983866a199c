//! Child objects: records the API lists only under a parent record
//! (Stripe's invoice lines, `GET /v1/invoices/{invoice}/lines`).
//!
//! A child's task waits until its parent's table is backfilled, then walks
//! the parent's keys in key order and lists the children of each (the
//! parent's key fills the endpoint's `{param}`, and the child's parent
//! column when the record does not carry it), committing each parent's
//! children with the walk's position, so a crash resumes after the last
//! parent done. Once live, every poll lists again the children of each
//! parent whose row was written since the last poll (an event, a poll or a
//! write-back changed it: Sequin rewrites a row only when it changed) and
//! deletes the children no longer listed under it. The parents written
//! since are read from `_sequin_synced_at` with the database's clock, so
//! this survives restarts. A parent deleted by sync takes its children
//! along (`Ctx::delete_rows`); those of a parent deleted another way
//! (through the proxy) are swept every [`SWEEP_EVERY`]. A child that
//! changes without its parent also gets its own events from the feed
//! (`events.rs`), and while the feed is refused it is walked again under
//! every parent each fallback interval.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sequin_spec::model::{FieldType, Incremental, StopCondition};
use sequin_spec::record::{get_path, set_path};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::object::settle_poll;
use super::{Ctx, SyncError, decode, fallback, pk_text};
use crate::api::PageCursor;
use crate::catalog::{ObjectPlan, ParentPlan, now_us};
use crate::metrics::Purpose;
use crate::store::{Checkpoint, Phase, Row, Table, Writer};

/// Parents written this long before the cursor are looked at again: a
/// parent's transaction that began before the last poll (its
/// `_sequin_synced_at` is its start) may have committed after it. Not
/// before a walk's start, though (the cursor's `floor`): a walk lists the
/// children of every parent after it began, which covers every change made
/// before.
const OVERLAP_US: i64 = 5_000_000;

/// How often children whose parent row is gone are deleted.
pub const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// Parents read per query of a walk.
const WALK_CHUNK: i64 = 200;

/// First pause before a failed walk resumes (doubling up to the max).
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The live tables of the connection: a child waits for its parent's, and
/// says when it is live itself.
type Live = (
    Arc<watch::Sender<BTreeSet<String>>>,
    watch::Receiver<BTreeSet<String>>,
);

/// Where a child object's polls resume, stored as its `incremental_cursor`
/// (JSON, times in microseconds since the epoch, the database's clock for
/// `since`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ChildCursor {
    /// Parents written at or after this are listed again.
    since: i64,
    /// When the last walk under every parent began: parents written before
    /// it need no listing again.
    #[serde(default)]
    floor: i64,
    /// Parents already listed again for the write at the given time (those
    /// within [`OVERLAP_US`] before `since`), not listed twice for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recent: Vec<(String, i64)>,
    /// When orphans were last swept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    swept_at: Option<i64>,
    /// When the children were last listed under every parent (the walk
    /// of the backfill, or of the events fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    walked_at: Option<i64>,
}

impl ChildCursor {
    fn from_stored(stored: Option<Value>) -> Result<ChildCursor, SyncError> {
        match stored {
            None => Ok(ChildCursor::default()),
            Some(v) => serde_json::from_value(v).map_err(|e| {
                SyncError::Decode(format!("bad stored cursor of a child object: {e}"))
            }),
        }
    }

    /// Parents written from this time on may need listing again.
    fn lower_bound(&self) -> i64 {
        (self.since - OVERLAP_US).max(self.floor)
    }

    /// A walk under every parent begins at `at` (the database's clock).
    fn walked(&mut self, at: i64) {
        self.floor = self.floor.max(at);
        self.since = self.since.max(at);
        self.recent.retain(|(_, t)| *t >= at);
    }

    /// Whether the parent's write at `at` was listed already.
    fn done(&self, key: &str, at: i64) -> bool {
        self.recent.iter().any(|(k, t)| k == key && *t == at)
    }

    /// The cursor once the parent's write at `at` is listed.
    fn after(&self, key: &str, at: i64) -> ChildCursor {
        let mut next = self.clone();
        next.since = next.since.max(at);
        next.recent.push((key.to_string(), at));
        let bound = next.lower_bound();
        next.recent.retain(|(_, t)| *t >= bound);
        next
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("cursors serialize")
    }
}

/// A child object with its parent's table.
struct Child {
    plan: Box<ObjectPlan>,
    link: ParentPlan,
    parent: Table,
    /// The parent's column embedding the first page of the children.
    embedded: Option<usize>,
}

/// Backfills a child object once its parent is, then keeps it current.
pub(super) async fn run_child(
    ctx: Arc<Ctx>,
    plan: Box<ObjectPlan>,
    parent: Table,
    (live_tx, mut live_rx): Live,
) -> Result<(), SyncError> {
    let link = plan.parent.clone().expect("a child object has a parent");
    let embedded = link
        .embedded
        .as_deref()
        .and_then(|f| parent.columns.iter().position(|c| &*c.api_name == f));
    let child = Child {
        plan,
        link,
        parent,
        embedded,
    };
    {
        let mut stop = ctx.shutdown.clone();
        let parent = child.parent.name.clone();
        tokio::select! {
            r = live_rx.wait_for(|l| l.contains(&parent)) => { if r.is_err() { return Ok(()); } }
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
    let mut writer = ctx.writer();
    if !writer
        .as_backfill(async |w| {
            let _slot = ctx.backfill_slot().await;
            Box::pin(backfill_until_done(&ctx, w, &child)).await
        })
        .await?
    {
        return Ok(());
    }
    live_tx.send_modify(|l| {
        l.insert(child.plan.table.name.clone());
    });
    loop {
        // Boxed: the task sleeps between polls with a small future.
        let polled = Box::pin(poll(&ctx, &mut writer, &child)).await;
        Box::pin(settle_poll(
            &ctx,
            &mut writer,
            &child.plan.table.name,
            polled,
        ))
        .await?;
        if ctx.opts.once || !ctx.sleep(ctx.api.config.poll_interval).await {
            return Ok(());
        }
    }
}

/// Walks every parent until done, resuming after the last parent done
/// when a walk fails (after a growing pause), as an object's backfill does.
/// Returns false when shutting down.
async fn backfill_until_done(
    ctx: &Ctx,
    writer: &mut Writer,
    child: &Child,
) -> Result<bool, SyncError> {
    let name = &ctx.api.config.name;
    let table = &child.plan.table.name;
    let mut failures: u32 = 0;
    loop {
        let state = writer.state(name, table).await?;
        if state.phase == Phase::Live {
            return Ok(true);
        }
        let mut cursor = ChildCursor::from_stored(state.incremental_cursor)?;
        if cursor.since == 0 {
            // Parents written from now on are listed again once live.
            cursor.walked(writer.now_us().await?);
            cursor.walked_at = Some(now_us());
            writer.save_cursor(name, table, &cursor).await?;
        }
        let after = state
            .backfill_cursor
            .as_ref()
            .and_then(|c| c.get("after"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if after.is_none() {
            tracing::info!(connection = %name, table = %table, parent = %child.parent.name, "backfill started (listing under every parent)");
        }
        let Err(e) = walk(ctx, writer, child, after, Walk::Backfill).await else {
            if ctx.stopping() {
                return Ok(false);
            }
            tracing::info!(connection = %name, table = %table, "backfill done");
            return Ok(true);
        };
        writer.record_error(name, table, &e.to_string()).await?;
        if ctx.opts.once || e.is_auth() {
            return Err(e);
        }
        failures += 1;
        let pause = RETRY_BASE
            .saturating_mul(1u32 << failures.min(7))
            .min(RETRY_MAX);
        tracing::warn!(connection = %name, table = %table, error = %e, pause_ms = pause.as_millis() as u64, "backfill failed; resuming after the last parent done");
        if !ctx.sleep(pause).await {
            return Ok(false);
        }
    }
}

/// What a walk over every parent is for.
#[derive(Clone, Copy, PartialEq)]
enum Walk {
    /// The backfill: its position is checkpointed, its end makes the
    /// object live.
    Backfill,
    /// A re-listing under every parent (the events fallback).
    Refresh,
}

/// Lists the children of every parent after `after`, in key order. Stops
/// early (without error) when shutting down.
async fn walk(
    ctx: &Ctx,
    writer: &mut Writer,
    child: &Child,
    mut after: Option<String>,
    kind: Walk,
) -> Result<(), SyncError> {
    loop {
        let keys = writer
            .keys_after(&child.parent, after.as_deref(), WALK_CHUNK)
            .await?;
        let Some(last) = keys.last().cloned() else {
            if kind == Walk::Backfill {
                let live = Checkpoint {
                    phase: Some(Phase::Live),
                    backfill_cursor: Some(None),
                    ..Default::default()
                };
                writer
                    .checkpoint(&ctx.api.config.name, &child.plan.table.name, &live)
                    .await?;
            }
            return Ok(());
        };
        for key in keys {
            let checkpoint = match kind {
                Walk::Backfill => Checkpoint {
                    backfill_cursor: Some(Some(json!({ "after": key }))),
                    ..Default::default()
                },
                Walk::Refresh => Checkpoint::default(),
            };
            let purpose = match kind {
                Walk::Backfill => Purpose::Backfill,
                Walk::Refresh => Purpose::Poll,
            };
            relist(ctx, writer, child, &key, &checkpoint, purpose).await?;
            if ctx.stopping() {
                return Ok(());
            }
        }
        after = Some(last);
    }
}

/// One poll of a live child: the children of the parents written since
/// the cursor, listed again; orphans swept when due; under every parent
/// again when the feed is refused and the fallback interval passed.
async fn poll(ctx: &Ctx, writer: &mut Writer, child: &Child) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    let table = &child.plan.table.name;
    let state = writer.state(name, table).await?;
    let mut cursor = ChildCursor::from_stored(state.incremental_cursor)?;
    let written = writer
        .written_since(&child.parent, cursor.lower_bound())
        .await?;
    let mut listed = 0;
    for (key, at) in written {
        if cursor.done(&key, at) {
            continue;
        }
        let next = cursor.after(&key, at);
        let checkpoint = Checkpoint {
            incremental_cursor: Some(Some(next.to_value())),
            ..Default::default()
        };
        relist(ctx, writer, child, &key, &checkpoint, Purpose::Poll).await?;
        cursor = next;
        listed += 1;
        if ctx.stopping() {
            return Ok(());
        }
    }
    if listed > 0 {
        tracing::info!(connection = %name, table = %table, parents = listed, "children listed again under changed parents");
    }
    let now = now_us();
    let sweep_due = cursor
        .swept_at
        .is_none_or(|t| now - t >= SWEEP_EVERY.as_micros() as i64 || ctx.opts.once);
    if sweep_due {
        let gone = writer
            .delete_orphans(&child.plan.table, child.link.column, &child.parent)
            .await?;
        if gone > 0 {
            tracing::info!(connection = %name, table = %table, deleted = gone, "children of deleted parents deleted");
        }
        cursor.swept_at = Some(now);
    }
    let refused = matches!(*child.plan.incremental, Incremental::Events { .. })
        .then(|| ctx.feed_refused.get())
        .flatten();
    if let Some(r) = refused
        && fallback::due(ctx, r, cursor.walked_at, now)
    {
        let began = writer.now_us().await?;
        walk(ctx, writer, child, None, Walk::Refresh).await?;
        if ctx.stopping() {
            return Ok(());
        }
        cursor.walked(began);
        cursor.walked_at = Some(now);
    }
    writer.save_cursor(name, table, &cursor).await?;
    Ok(())
}

/// Lists the children of the parent `key`, upserts them and deletes those
/// it no longer lists, committed with `checkpoint`. A parent the API no
/// longer has (404: deleted since it was synced) has no children.
async fn relist(
    ctx: &Ctx,
    writer: &mut Writer,
    child: &Child,
    key: &str,
    checkpoint: &Checkpoint,
    purpose: Purpose,
) -> Result<u64, SyncError> {
    let name = &ctx.api.config.name;
    let table = &child.plan.table;
    let started = now_us();
    let from_parent = match child.embedded {
        Some(col) => embedded(child, writer.json_of(&child.parent, col, key).await?),
        None => None,
    };
    let listed = match from_parent {
        Some(r) => Ok(r),
        None => list(ctx, child, key, purpose).await,
    };
    let records = match listed {
        Ok(r) => r,
        Err(SyncError::Api(e)) if e.status == Some(404) => {
            tracing::warn!(connection = %name, table = %table.name, parent = %key, error = %e, "the parent's children answered 404: taking the parent as deleted upstream");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let fetched_at = now_us();
    let mut rows: Vec<Row> = Vec::with_capacity(records.len());
    let mut seen = HashSet::with_capacity(records.len());
    for mut r in records {
        with_parent(child, &mut r, key);
        let row = decode(&child.plan, &r, fetched_at)?;
        if let Some(k) = pk_text(&row.cells, table.primary_key) {
            seen.insert(k);
        }
        rows.push(row);
    }
    // Rows written since the listing began may be newer than it.
    let gone: Vec<String> = writer
        .keys_where(table, child.link.column, key, started)
        .await?
        .into_iter()
        .filter(|k| !seen.contains(k))
        .collect();
    Ok(writer.apply(name, table, &rows, &gone, checkpoint).await?)
}

/// Every child record under the parent `key`, page by page.
async fn list(
    ctx: &Ctx,
    child: &Child,
    key: &str,
    purpose: Purpose,
) -> Result<Vec<Value>, SyncError> {
    let client = ctx.api.client.with_purpose(purpose);
    let vars = ctx
        .api
        .vars(Some(&child.plan))
        .with(child.link.param.clone(), key.to_string());
    let pagination = ctx.pagination_with_size(&child.plan.pagination);
    let mut records = Vec::new();
    let mut cursor: Option<PageCursor> = None;
    loop {
        let page = client
            .fetch_page(
                &child.plan.endpoints.list,
                Some(&pagination),
                &vars,
                cursor.as_ref(),
                None,
            )
            .await?;
        records.extend(page.records);
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(records),
        }
    }
}

/// The children embedded in the parent's row (`value`, the parent's
/// embedding column), when that list is complete: its page says there is
/// no more by the child's pagination's stop flag (Stripe's `has_more:
/// false`). `None` when they must be listed: no value, more to list, or
/// no flag that could say so.
fn embedded(child: &Child, value: Option<Value>) -> Option<Vec<Value>> {
    let value = value?;
    let complete = match &child.plan.pagination.common().stop {
        Some(StopCondition::FlagFalse { path }) => get_path(&value, path)? == &Value::Bool(false),
        Some(StopCondition::FlagTrue { path }) => get_path(&value, path)? == &Value::Bool(true),
        _ => false,
    };
    if !complete {
        return None;
    }
    let records = match &child.plan.endpoints.list.records {
        Some(path) => get_path(&value, path)?,
        None => &value,
    };
    records.as_array().cloned()
}

/// Puts the parent's key into the record's parent field when the API did
/// not send it (an invoice line has no `invoice`).
fn with_parent(child: &Child, record: &mut Value, key: &str) {
    let col = &child.plan.table.columns[child.link.column];
    let missing = get_path(record, &col.path).is_none_or(Value::is_null);
    if !missing {
        return;
    }
    let value = match col.ty {
        FieldType::Integer => key.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
        _ => Value::String(key.to_string()),
    };
    if let Value::Object(m) = record {
        set_path(m, &col.path, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_lists_each_parent_write_once_and_forgets_old_ones() {
        let c = ChildCursor {
            since: 10_000_000,
            ..Default::default()
        };
        let c = c.after("in_1", 12_000_000);
        assert!(c.done("in_1", 12_000_000));
        // The same parent written again is listed again.
        assert!(!c.done("in_1", 13_000_000));
        let c = c.after("in_2", 20_000_000);
        assert_eq!(c.since, 20_000_000);
        // Writes older than the overlap before `since` are forgotten:
        // the query no longer returns them.
        assert!(!c.recent.iter().any(|(k, _)| k == "in_1"));
        assert!(c.done("in_2", 20_000_000));
        let stored = ChildCursor::from_stored(Some(c.to_value())).unwrap();
        assert_eq!(stored, c);
        assert_eq!(
            ChildCursor::from_stored(None).unwrap(),
            ChildCursor::default()
        );
        assert!(ChildCursor::from_stored(Some(json!({"since": "x"}))).is_err());
    }

    #[test]
    fn parents_written_before_a_walk_began_are_not_listed_again() {
        let mut c = ChildCursor::default();
        c.walked(50_000_000);
        // No overlap before the walk: it listed every parent after it began.
        assert_eq!(c.lower_bound(), 50_000_000);
        let c = c.after("cus_1", 52_000_000);
        assert_eq!(c.lower_bound(), 50_000_000);
        let c = c.after("cus_2", 60_000_000);
        // Past the walk, the overlap applies again.
        assert_eq!(c.lower_bound(), 60_000_000 - OVERLAP_US);
        // Below the bound the query no longer returns a write: forgotten.
        assert!(!c.done("cus_1", 52_000_000));
        assert!(c.done("cus_2", 60_000_000));
    }

    #[test]
    fn the_parent_key_fills_the_field_only_when_the_record_lacks_it() {
        let spec = crate::registry::get("stripe").unwrap().spec.clone();
        let mut o = spec.object("invoice").unwrap().clone();
        o.parent = Some(sequin_spec::model::Parent {
            object: "customer".into(),
            param: "customer".into(),
            field: "customer".into(),
            changes_without_parent: false,
            embedded: None,
        });
        let columns = o
            .fields
            .iter()
            .map(sequin_spec::record::Column::from_field)
            .collect();
        let plan = ObjectPlan::for_object(&spec, "stripe", &o, columns).unwrap();
        let customers = spec.object("customer").unwrap();
        let child = Child {
            link: plan.parent.clone().unwrap(),
            embedded: None,
            parent: Table {
                schema: "stripe".into(),
                name: "customer".into(),
                columns: customers
                    .fields
                    .iter()
                    .map(sequin_spec::record::Column::from_field)
                    .collect(),
                primary_key: 0,
            },
            plan: Box::new(plan),
        };
        let mut without = json!({"id": "in_1", "object": "invoice"});
        with_parent(&child, &mut without, "cus_A");
        assert_eq!(without["customer"], "cus_A");
        let mut with = json!({"id": "in_2", "customer": "cus_B"});
        with_parent(&child, &mut with, "cus_A");
        assert_eq!(with["customer"], "cus_B");
        let mut null = json!({"id": "in_3", "customer": null});
        with_parent(&child, &mut null, "cus_A");
        assert_eq!(null["customer"], "cus_A");
    }
}
