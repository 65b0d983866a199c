//! The backfill: the object's whole list, page by page, each batch
//! committed with the cursor of the page after it, so a crash resumes
//! where it stopped. A task of its own fetches and encodes pages while the
//! backfill writes them.

use std::time::Instant;

use sequin_spec::model::Pagination;
use serde_json::Value;
use tokio::sync::watch;

use super::progress;
use super::{Ctx, PollCursor, SyncError, decode, job};
use crate::api::{self, Client, PageCursor, Vars};
use crate::catalog::{ObjectPlan, now_us};
use crate::metrics::Purpose;
use crate::store::{Checkpoint, CopyBatch, Phase, Writer};

/// Records per transaction during backfill (several pages per commit).
pub(super) const BATCH_RECORDS: usize = 5000;

/// COPY batches of one backfill: one being filled by the fetcher, one
/// waiting in the channel, one being written. They go back to the fetcher
/// once written, so their buffers are allocated once per backfill, not
/// once per batch (allocating ~3 MB buffers per batch on one thread and
/// freeing them on another left the allocator's heaps growing with the
/// volume synced).
const BATCHES_IN_FLIGHT: usize = 3;

/// Pages through the list endpoint from the checkpointed cursor, committing
/// every batch with the cursor that follows it. `resumed`: records earlier
/// runs of this backfill committed (for progress).
pub(super) async fn backfill(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
    cursor: Option<Value>,
    capture_incremental: bool,
    resumed: u64,
) -> Result<(), SyncError> {
    let name = &ctx.api.config.name;
    let started = now_us();
    // Where incremental polling will start once the backfill is done.
    if capture_incremental {
        let cursor = PollCursor::at_backfill_start(&plan.incremental, started);
        writer.save_cursor(name, &plan.table.name, &cursor).await?;
    }
    tracing::info!(connection = %name, table = %plan.table.name, "backfill started");
    let mut run = Run {
        t0: Instant::now(),
        progress: progress::Backfill::start(name, &plan.table.name, resumed),
        written: 0,
        recorded_total: None,
    };
    // A large object (or one resumed inside a job) goes through the
    // connector's asynchronous query jobs; a refused job falls back here.
    let cursor = match job::choose(ctx, plan, cursor).await? {
        job::Choice::Job { start, total } => {
            match job::backfill(ctx, writer, plan, start, total, &mut run).await? {
                Drained::Done => {
                    run.finish(name, plan);
                    return Ok(());
                }
                Drained::Stopped => return Ok(()),
                Drained::Refused => None,
            }
        }
        job::Choice::List(cursor) => stored_page_cursor(cursor)?,
    };
    let fetcher = Fetcher::start(ctx, plan, cursor);
    match run.drain(ctx, writer, plan, fetcher).await? {
        Drained::Done => run.finish(name, plan),
        Drained::Stopped | Drained::Refused => {}
    }
    Ok(())
}

/// How a backfill's batches ended.
pub(super) enum Drained {
    /// Everything is written; the object is live.
    Done,
    /// Shutting down (or the fetcher stopped early).
    Stopped,
    /// The API refused the asynchronous query job (the list endpoint takes
    /// over).
    Refused,
}

/// The page cursor a backfill resumes from, as checkpointed.
fn stored_page_cursor(cursor: Option<Value>) -> Result<Option<PageCursor>, SyncError> {
    match cursor {
        Some(v) => {
            Ok(Some(serde_json::from_value(v).map_err(|e| {
                SyncError::Decode(format!("bad stored cursor: {e}"))
            })?))
        }
        None => Ok(None),
    }
}

/// One backfill's progress.
pub(super) struct Run {
    t0: Instant,
    progress: progress::Backfill,
    written: usize,
    /// The listing's size last recorded for `sequin status`.
    recorded_total: Option<u64>,
}

impl Run {
    /// Writes the fetcher's batches as they come, each committed with its
    /// cursor, until the last one (or shutdown, or an error).
    pub(super) async fn drain(
        &mut self,
        ctx: &Ctx,
        writer: &mut Writer,
        plan: &ObjectPlan,
        mut fetcher: Fetcher,
    ) -> Result<Drained, SyncError> {
        // Where a batch's time goes (debug log): waiting for the fetcher (API
        // and decoding) or writing (Postgres).
        let mut waiting_since = Instant::now();
        while let Some(encoded) = fetcher.ready.recv().await {
            let waited = waiting_since.elapsed();
            let encoded = encoded?;
            let done = encoded.next.is_none();
            let batch = self.write(ctx, writer, plan, encoded, waited).await?;
            // Back to the fetcher for refilling (it is gone when it finished).
            let _ = fetcher.spare.try_send(batch);
            waiting_since = Instant::now();
            if done {
                return Ok(Drained::Done);
            }
            if ctx.stopping() {
                return Ok(Drained::Stopped);
            }
        }
        // The fetcher stopped early: shutting down.
        Ok(Drained::Stopped)
    }

    /// Commits one batch with the cursor of the page after it (or, for the
    /// last, the object's switch to live). Returns the batch, emptied.
    async fn write(
        &mut self,
        ctx: &Ctx,
        writer: &mut Writer,
        plan: &ObjectPlan,
        encoded: Encoded,
        waited: std::time::Duration,
    ) -> Result<CopyBatch, SyncError> {
        let name = &ctx.api.config.name;
        let Encoded {
            mut batch,
            next,
            total,
        } = encoded;
        if let Some(t) = total
            && self.recorded_total != Some(t)
        {
            // For `sequin status`'s percentage; the bar gets it at once.
            self.progress.set_total(t);
            writer
                .record_backfill_total(name, &plan.table.name, t)
                .await?;
            self.recorded_total = Some(t);
        }
        let checkpoint = match &next {
            None => Checkpoint {
                phase: Some(Phase::Live),
                backfill_cursor: Some(None),
                ..Default::default()
            },
            Some(next) => Checkpoint {
                backfill_cursor: Some(Some(next.clone())),
                ..Default::default()
            },
        };
        let records = batch.len();
        let writing = Instant::now();
        writer
            .apply_batch(name, &plan.table, &mut batch, &[], &checkpoint)
            .await?;
        let wrote = writing.elapsed();
        batch.clear();
        self.written += records;
        tracing::debug!(
            connection = %name,
            table = %plan.table.name,
            records,
            wait_ms = waited.as_millis() as u64,
            write_ms = wrote.as_millis() as u64,
            "backfill batch written"
        );
        self.progress.advance(records as u64);
        Ok(batch)
    }

    /// Says the backfill is done.
    pub(super) fn finish(self, name: &str, plan: &ObjectPlan) {
        let secs = self.t0.elapsed().as_secs_f64();
        tracing::info!(
            connection = %name,
            table = %plan.table.name,
            records = self.written,
            per_sec = (self.written as f64 / secs.max(1e-9)) as u64,
            "backfill done"
        );
        self.progress.finish();
    }
}

/// The backfill's fetching task, and its two channels: encoded batches
/// ready to write, and written batches going back to be refilled.
pub(super) struct Fetcher {
    ready: tokio::sync::mpsc::Receiver<Result<Encoded, SyncError>>,
    spare: tokio::sync::mpsc::Sender<CopyBatch>,
    _task: AbortOnDrop<()>,
}

impl Fetcher {
    /// Starts fetching from `cursor`. A task of its own fetches and encodes
    /// pages while the backfill writes, so the API, Sequin and Postgres work
    /// at the same time. The channel holds one batch; written batches go
    /// back to the fetcher to be refilled.
    fn start(ctx: &Ctx, plan: &ObjectPlan, cursor: Option<PageCursor>) -> Fetcher {
        let source = BatchSource {
            client: ctx.api.client.with_purpose(Purpose::Backfill),
            plan: plan.clone(),
            pagination: ctx.pagination_with_size(&plan.pagination),
            vars: ctx.api.vars(Some(plan)),
            stop: ctx.shutdown.clone(),
        };
        Fetcher::spawn(plan, move |out, spare| {
            fetch_batches(source, cursor, out, spare)
        })
    }

    /// Spawns `fetch` with the two channels: encoded batches out, written
    /// batches (allocated here, [`BATCHES_IN_FLIGHT`]) back in.
    pub(super) fn spawn<F, Fut>(plan: &ObjectPlan, fetch: F) -> Fetcher
    where
        F: FnOnce(
            tokio::sync::mpsc::Sender<Result<Encoded, SyncError>>,
            tokio::sync::mpsc::Receiver<CopyBatch>,
        ) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (batches, ready) = tokio::sync::mpsc::channel(1);
        let (spare_tx, spare) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
        for _ in 0..BATCHES_IN_FLIGHT {
            spare_tx
                .try_send(CopyBatch::new(plan.table.primary_key))
                .expect("the channel holds every batch");
        }
        let task = AbortOnDrop(tokio::spawn(fetch(batches, spare)));
        Fetcher {
            ready,
            spare: spare_tx,
            _task: task,
        }
    }
}

/// A spawned task that is aborted when its handle is dropped (an early
/// return of its owner must not leave it running).
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the backfill's fetching task needs (owned: it runs on its own).
struct BatchSource {
    client: Client,
    plan: ObjectPlan,
    pagination: Pagination,
    vars: Vars,
    stop: watch::Receiver<bool>,
}

impl BatchSource {
    /// Starts fetching the page at `cursor`.
    fn fetch(&self, cursor: Option<PageCursor>) -> AbortOnDrop<Result<api::Page, api::ApiError>> {
        let client = self.client.clone();
        let endpoint = self.plan.endpoints.list.clone();
        let pagination = self.pagination.clone();
        let vars = self.vars.clone();
        AbortOnDrop(tokio::spawn(async move {
            client
                .fetch_page(&endpoint, Some(&pagination), &vars, cursor.as_ref(), None)
                .await
        }))
    }
}

/// A batch of encoded rows, the checkpointed cursor that follows it
/// (`None`: the last batch) and the listing's size if the API gives it.
pub(super) struct Encoded {
    pub(super) batch: CopyBatch,
    pub(super) next: Option<Value>,
    pub(super) total: Option<u64>,
}

/// Pages through the list from `cursor`, encoding records into batches of
/// [`BATCH_RECORDS`] and sending each with the cursor that follows it. The
/// next page is requested before the current one is decoded. Batches to
/// fill come from `spare` (the writer returns them once written).
async fn fetch_batches(
    source: BatchSource,
    cursor: Option<PageCursor>,
    out: tokio::sync::mpsc::Sender<Result<Encoded, SyncError>>,
    mut spare: tokio::sync::mpsc::Receiver<CopyBatch>,
) {
    let run = async {
        let mut in_flight = source.fetch(cursor);
        let Some(mut batch) = spare.recv().await else {
            return Ok(());
        };
        let mut total = None;
        loop {
            let page = (&mut in_flight.0)
                .await
                .map_err(|e| SyncError::Decode(format!("page fetch task failed: {e}")))??;
            let fetched_at = now_us();
            let next = page.next.clone();
            if let Some(n) = &next {
                in_flight = source.fetch(Some(n.clone()));
            }
            total = page.total.or(total);
            for r in &page.records {
                batch.push(&decode(&source.plan, r, fetched_at)?);
            }
            // The page's records are dropped here, on the thread that
            // decoded them, before waiting for anything.
            drop(page);
            if batch.len() >= BATCH_RECORDS || next.is_none() {
                let Some(empty) = spare.recv().await else {
                    // The writer stopped (error or shutdown).
                    return Ok(());
                };
                let full = std::mem::replace(&mut batch, empty);
                let encoded = Encoded {
                    batch: full,
                    next: next
                        .as_ref()
                        .map(|n| serde_json::to_value(n).expect("cursors serialize")),
                    total,
                };
                if out.send(Ok(encoded)).await.is_err() {
                    return Ok(());
                }
            }
            if next.is_none() || *source.stop.borrow() {
                return Ok(());
            }
        }
    };
    if let Err(e) = run.await {
        let _ = out.send(Err(e)).await;
    }
}
