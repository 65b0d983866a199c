//! One object's task: backfill (resumed from its checkpoint after a
//! failure), then polls and field discovery until shutdown.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Ctx, SyncError, backfill, discover, poll};
use crate::catalog::ObjectPlan;
use crate::store::{Phase, SyncState, Writer};
use sequin_spec::model::Incremental;

/// First pause before a failed backfill resumes (doubling up to the max).
const BACKFILL_RETRY_BASE: Duration = Duration::from_millis(500);
const BACKFILL_RETRY_MAX: Duration = Duration::from_secs(60);

/// Backfills one object, then keeps it current.
pub(super) async fn run_object(
    ctx: Arc<Ctx>,
    mut plan: Box<ObjectPlan>,
    live_tx: Arc<watch::Sender<BTreeSet<String>>>,
    mut discovered: watch::Receiver<Arc<Vec<ObjectPlan>>>,
) -> Result<(), SyncError> {
    let mut writer = ctx.writer();
    // The heavy steps are boxed: a task's future is as big as its biggest
    // step, and thousands of objects spend their lives asleep between polls.
    let added = Box::pin(prepare(&ctx, &mut writer, &mut plan)).await?;
    let state = Box::pin(writer.state(&ctx.api.config.name, &plan.table.name)).await?;
    // Fields added upstream while Sequin was stopped need a re-list (a
    // backfill lists them anyway).
    let pending_resync = state.phase == Phase::Live && !added.is_empty();
    // With `once`, an object re-listed whole by its incremental strategy
    // needs no poll right after a first backfill of this run listed it whole
    // (the table held nothing else): it would list every record again.
    let skip_poll = ctx.opts.once
        && matches!(*plan.incremental, Incremental::FullRefresh)
        && state.phase == Phase::Backfilling
        && state.backfill_cursor.is_none()
        && state.incremental_cursor.is_none();
    if !writer
        .as_backfill(async |w| Box::pin(backfill_until_done(&ctx, w, &plan, state)).await)
        .await?
    {
        return Ok(());
    }
    live_tx.send_modify(|live| {
        live.insert(plan.table.name.clone());
    });
    if skip_poll {
        return Ok(());
    }
    Box::pin(keep_current(
        &ctx,
        &mut writer,
        &mut plan,
        &mut discovered,
        pending_resync,
    ))
    .await
}

/// Brings the object's table up to its discovered columns (fields looked
/// up now; a discovered table created). Returns the columns added.
async fn prepare(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &mut ObjectPlan,
) -> Result<Vec<String>, SyncError> {
    let name = &ctx.api.config.name;
    let added = match discover::refresh_fields(ctx, writer, plan).await {
        Ok(added) => added,
        Err(e) => {
            // Shown by `sequin status` when the object was synced before.
            writer
                .record_error(name, &plan.table.name, &e.to_string())
                .await?;
            return Err(e);
        }
    };
    if plan.dynamic_table {
        let types = vec![String::new(); plan.table.columns.len()];
        let added = writer.ensure_table(name, &plan.table, &types).await?;
        // Link tables and child objects find changed records by it, as on
        // a static table (the generated DDL indexes it).
        writer
            .ensure_indexes(&plan.table, &["_sequin_synced_at"])
            .await?;
        return Ok(added);
    }
    Ok(added)
}

/// Runs the object's backfill until it is done (nothing to do once live).
/// A backfill that fails (the API down for longer than the client's
/// retries, a database hiccup) resumes from its last checkpoint after a
/// growing pause, rather than leaving the object half-synced while the
/// rest of the process runs on. Refused credentials stop it for good.
/// Returns false when shutting down.
async fn backfill_until_done(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    mut state: SyncState,
) -> Result<bool, SyncError> {
    let name = &ctx.api.config.name;
    let mut failures: u32 = 0;
    while state.phase == Phase::Backfilling {
        // A resumed backfill counts the records its earlier runs committed.
        let resumed = match &state.backfill_cursor {
            Some(_) => state.rows_synced.max(0) as u64,
            None => 0,
        };
        // A slot per attempt: a backfill waiting out a failure holds none.
        let slot = ctx.backfill_slot().await;
        let Err(e) = backfill::backfill(
            ctx,
            writer,
            plan,
            state.backfill_cursor.take(),
            state.incremental_cursor.is_none(),
            resumed,
        )
        .await
        else {
            break;
        };
        drop(slot);
        // Shown by `sequin status`; the committed batches stay.
        writer
            .record_error(name, &plan.table.name, &e.to_string())
            .await?;
        if ctx.opts.once || e.is_auth() {
            return Err(e);
        }
        failures += 1;
        let pause = BACKFILL_RETRY_BASE
            .saturating_mul(1u32 << failures.min(6))
            .min(BACKFILL_RETRY_MAX);
        tracing::warn!(connection = %name, table = %plan.table.name, error = %e, pause_ms = pause.as_millis() as u64, "backfill failed; resuming from the last checkpoint");
        if !ctx.sleep(pause).await {
            return Ok(false);
        }
        // The checkpoint, and the incremental cursor captured by the first
        // attempt (which must not move past changes made meanwhile).
        state = writer.state(name, &plan.table.name).await?;
    }
    Ok(true)
}

/// Polls the live object every poll interval, picking up discovered
/// columns, until shutdown (or after one poll, with `once`).
async fn keep_current(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &mut ObjectPlan,
    discovered: &mut watch::Receiver<Arc<Vec<ObjectPlan>>>,
    mut pending_resync: bool,
) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    let discovery_every = discovery_interval(ctx, plan);
    let mut last_discovery = Instant::now();
    loop {
        if !ctx.by_events(plan) {
            Box::pin(poll(ctx, writer, plan)).await?;
        }
        if ctx.opts.once || ctx.stopping() {
            return Ok(());
        }
        let refreshed = if plan.dynamic_table {
            Box::pin(discover::refresh_dynamic(ctx, writer, plan, discovered)).await
        } else if let Some(every) = discovery_every
            && last_discovery.elapsed() >= every
        {
            last_discovery = Instant::now();
            Box::pin(discover::refresh_fields(ctx, writer, plan)).await
        } else {
            Ok(Vec::new())
        };
        match refreshed {
            Ok(added) => pending_resync |= !added.is_empty(),
            Err(e) => {
                tracing::warn!(connection = %name, table = %plan.table.name, error = %e, "field discovery failed");
            }
        }
        if pending_resync {
            match Box::pin(discover::resync(ctx, writer, plan)).await {
                Ok(()) => pending_resync = false,
                Err(e) => {
                    tracing::warn!(connection = %name, table = %plan.table.name, error = %e, "re-listing for new columns failed; will retry");
                }
            }
        }
        if !ctx.sleep(ctx.api.config.poll_interval).await {
            return Ok(());
        }
    }
}

/// One poll.
async fn poll(ctx: &Ctx, writer: &mut Writer, plan: &ObjectPlan) -> Result<(), SyncError> {
    let polled = poll::poll_once(ctx, writer, plan).await;
    settle_poll(ctx, writer, &plan.table.name, polled).await
}

/// What a poll's failure does: it is recorded for `sequin status` and
/// retried at the next poll, unless it must stop the object: with `once`,
/// refused credentials, or the database session gone (a restart: the
/// connection starts again with new sessions).
pub(super) async fn settle_poll(
    ctx: &Ctx,
    writer: &mut Writer,
    table: &str,
    polled: Result<(), SyncError>,
) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    match polled {
        Ok(()) => Ok(()),
        Err(e) if ctx.opts.once || e.is_auth() => {
            writer.record_error(name, table, &e.to_string()).await?;
            Err(e)
        }
        Err(e) if e.is_session_lost() => Err(e),
        Err(e) => {
            tracing::warn!(connection = %name, table = %table, error = %e, "poll failed; will retry");
            writer.record_error(name, table, &e.to_string()).await?;
            Ok(())
        }
    }
}

fn discovery_interval(ctx: &Ctx, plan: &ObjectPlan) -> Option<Duration> {
    let spec_every = plan
        .discovered_fields
        .as_ref()
        .map(|d| d.every.get())
        .or(ctx
            .api
            .spec
            .discovered_objects
            .as_ref()
            .map(|d| d.every.get()))?;
    Some(ctx.api.config.discovery_interval.unwrap_or(spec_every))
}
