//! One sink's delivery: its cursor over `sequin.events`, its held-back
//! events (`sequin.sink_parked`), retries, dead letters and pausing.
//!
//! Each tick:
//! 1. the parked events whose retry is due are sent again (only the first
//!    undelivered event of a record is ever due, so they are independent);
//!    one that goes through lets its record's next parked event follow, one
//!    out of attempts is dead-lettered;
//! 2. the events after the cursor are sent in chunks, each in waves that
//!    hold at most one event per record: an event whose record has an
//!    earlier event parked, or failing in this chunk, is parked behind it
//!    (`blocked`), so a record's events arrive in `seq` order while other
//!    records go on;
//! 3. what happened to each chunk is committed with the new cursor in one
//!    transaction as the chunk is done.
//!
//! Delivery is at least once: a crash after a send and before that commit
//! sends the chunk's events again, with the same ids. One process dispatches a
//! sink at a time (a session advisory lock on the sink's name).
//!
//! A sink whose attempts failed `pause_after` times in a row pauses: new
//! events wait behind the cursor (nothing is parked for them), retries go
//! on as scheduled, and, when none is due, the oldest parked retry (ahead
//! of its schedule, not counted as an attempt), or else the next event, is
//! tried every `probe_every`. The first success resumes the sink and makes every
//! parked retry due at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_postgres::Client;

use futures_util::future::join_all;

use super::{Event, SendError, filter, log, nats, notify, webhook};
use crate::config::{SinkConfig, SinkKind};
use crate::metrics::Metrics;
use crate::store::{StoreError, db};

/// Events read from the log per tick.
const READ_BATCH: i64 = 5000;

/// Parked retries sent per tick.
const RETRY_BATCH: i64 = 500;

/// How long an idle dispatcher waits for the sequencer's wake-up before
/// looking anyway (another process's sequencer wakes no one here).
const IDLE: Duration = Duration::from_millis(50);

/// Where a sink's events go.
pub enum Target {
    Webhook {
        hook: webhook::Webhook,
        batch_size: usize,
        max_in_flight: usize,
    },
    /// Boxed: a NATS client is several times a webhook's size.
    Nats(Box<nats::Nats>),
    Notify {
        channel: String,
    },
}

impl Target {
    /// Connects to the sink's destination (a NATS server that cannot be
    /// reached is an error: the caller tries again).
    pub async fn open(sink: &SinkConfig) -> Result<Target, SendError> {
        let named = |e: String| SendError::new(format!("sink `{}`: {e}", sink.name));
        Ok(match sink.kind {
            SinkKind::Notify => Target::Notify {
                channel: sink.channel.clone().unwrap_or_default(),
            },
            SinkKind::Webhook => Target::Webhook {
                hook: webhook_of(sink).map_err(|e| named(e.to_string()))?,
                batch_size: sink.batch_size(),
                max_in_flight: sink.max_in_flight(),
            },
            SinkKind::Nats => Target::Nats(Box::new(
                nats::Nats::connect(
                    sink.url.as_deref().unwrap_or_default(),
                    sink.stream.as_deref().unwrap_or_default(),
                    sink.subject_prefix(),
                    sink.partitions(),
                )
                .await
                .map_err(|e| named(e.to_string()))?,
            )),
        })
    }

    /// Sends independent events (no two of one record); one result each.
    async fn send(&self, client: &Client, events: &[&Event]) -> Vec<Result<(), SendError>> {
        match self {
            Target::Notify { channel } => notify::send(client, channel, events).await,
            Target::Nats(n) => n.publish(events).await,
            Target::Webhook {
                hook,
                batch_size,
                max_in_flight,
            } => {
                let mut results = Vec::with_capacity(events.len());
                for group in events.chunks(batch_size * max_in_flight) {
                    let mut requests = Vec::new();
                    for batch in group.chunks(*batch_size) {
                        requests.push(hook.send(batch));
                    }
                    let answers = join_all(requests).await;
                    for (batch, r) in group.chunks(*batch_size).zip(answers) {
                        results.extend(batch.iter().map(|_| r.clone()));
                    }
                }
                results
            }
        }
    }

    /// Events sent per chunk (a chunk that fails whole ends the tick, so a
    /// receiver that is down costs a few attempts, not a whole read).
    fn chunk(&self) -> usize {
        match self {
            Target::Webhook {
                batch_size,
                max_in_flight,
                ..
            } => batch_size * max_in_flight,
            Target::Nats(_) | Target::Notify { .. } => 1000,
        }
    }
}

/// The webhook client of a sink (also how the config check finds a bad
/// URL or secret before anything runs).
pub fn webhook_of(sink: &SinkConfig) -> Result<webhook::Webhook, webhook::WebhookError> {
    let secrets = sink.secret.as_ref().map(|s| s.list()).unwrap_or_default();
    webhook::Webhook::new(
        sink.url.as_deref().unwrap_or_default(),
        &secrets,
        sink.timeout(),
    )
}

/// The sink's row, as a tick starts.
struct SinkRow {
    cursor: i64,
    paused: bool,
}

/// What a send of new events did, committed with the cursor.
#[derive(Default)]
struct Step {
    delivered: u64,
    /// First attempts that failed: parked to be retried.
    failed: Vec<(i64, String, String)>,
    /// Parked behind an earlier event of their record.
    blocked: Vec<(i64, String)>,
    cursor: Option<i64>,
}

/// One sink's delivery loop.
pub struct Dispatcher {
    sink: SinkConfig,
    client: Client,
    target: Target,
    metrics: Metrics,
    last_probe: Option<Instant>,
}

impl Dispatcher {
    pub fn new(sink: SinkConfig, client: Client, target: Target, metrics: Metrics) -> Dispatcher {
        Dispatcher {
            sink,
            client,
            target,
            metrics,
            last_probe: None,
        }
    }

    /// Delivers until `shutdown`, once this process holds the sink's lock.
    pub async fn run(
        mut self,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        if !self.lock(&mut shutdown).await? {
            return Ok(());
        }
        while !*shutdown.borrow() {
            let woken = wake.notified();
            if self.tick().await? {
                continue;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(IDLE) => {}
                _ = shutdown.changed() => {}
            }
        }
        Ok(())
    }

    /// Takes the sink's lock, waiting while another process holds it;
    /// `false` when shut down first.
    async fn lock(&self, shutdown: &mut watch::Receiver<bool>) -> Result<bool, StoreError> {
        let mut said = false;
        while !*shutdown.borrow() {
            let got: bool = self
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtext('sequin.sink'), hashtext($1))",
                    &[&self.sink.name],
                )
                .await
                .map_err(db("locking a sink"))?
                .get(0);
            if got {
                return Ok(true);
            }
            if !said {
                tracing::info!(sink = %self.sink.name, "another sequin process delivers this sink; standing by");
                said = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.changed() => {}
            }
        }
        Ok(false)
    }

    /// One round; `true` when it did something (so the next comes at once).
    async fn tick(&mut self) -> Result<bool, StoreError> {
        let row = self.row().await?;
        let (attempted, succeeded) = self.retry_due().await?;
        let paused = row.paused && succeeded == 0;
        let probe_due = self
            .last_probe
            .is_none_or(|t| t.elapsed() >= self.sink.probe_every());
        if paused && (attempted > 0 || !probe_due) {
            return Ok(attempted > 0);
        }
        if paused {
            self.last_probe = Some(Instant::now());
            if self.probe_parked().await? {
                return Ok(true);
            }
        }
        let sent = self.deliver_new(row.cursor, paused).await?;
        Ok(attempted > 0 || sent)
    }

    async fn row(&self) -> Result<SinkRow, StoreError> {
        let r = self
            .client
            .query_one(
                "SELECT cursor, paused_since IS NOT NULL FROM sequin.sink WHERE name = $1",
                &[&self.sink.name],
            )
            .await
            .map_err(db(format!("reading sink `{}`", self.sink.name)))?;
        Ok(SinkRow {
            cursor: r.get(0),
            paused: r.get(1),
        })
    }

    /// Sends the events after `cursor` (just one when `probing` a paused
    /// sink); `false` when there were none.
    async fn deliver_new(&mut self, cursor: i64, probing: bool) -> Result<bool, StoreError> {
        let limit = if probing { 1 } else { READ_BATCH };
        let events = log::after(&self.client, cursor, limit)
            .await
            .map_err(db("reading events"))?;
        if events.is_empty() {
            return Ok(false);
        }
        let keys: Vec<String> = events.iter().map(Event::record_key).collect();
        let mut held = self.held(&keys).await?;
        let chunk = if probing { 1 } else { self.target.chunk() };
        for (events, keys) in events.chunks(chunk).zip(keys.chunks(chunk)) {
            let mut step = Step::default();
            let (attempts, failures) = self.send_chunk(events, keys, &mut held, &mut step).await;
            step.cursor = events.last().map(|e| e.seq);
            // Each chunk is committed as it is done: what a crash sends
            // again is one chunk, not a whole read (minutes of sends to a
            // slow receiver, which restarts in a row would redo forever).
            self.commit(step).await?;
            if attempts > 0 && attempts == failures {
                break;
            }
        }
        Ok(true)
    }

    /// Sends one chunk in waves of one event per record; events of a
    /// record `held` (parked, or failed in this step) are blocked. Returns
    /// the attempts and failures.
    async fn send_chunk(
        &self,
        events: &[Event],
        keys: &[String],
        held: &mut HashSet<String>,
        step: &mut Step,
    ) -> (usize, usize) {
        let mut waiting: Vec<(&Event, &String)> = events
            .iter()
            .zip(keys)
            .filter(|(e, _)| filter::accepts(&self.sink, e))
            .collect();
        let (mut attempts, mut failures) = (0, 0);
        while !waiting.is_empty() {
            let mut in_wave = HashSet::new();
            let mut wave = Vec::new();
            let mut later = Vec::new();
            for (e, k) in waiting {
                if held.contains(k) {
                    step.blocked.push((e.seq, k.clone()));
                } else if in_wave.insert(k) {
                    wave.push((e, k));
                } else {
                    later.push((e, k));
                }
            }
            let batch: Vec<&Event> = wave.iter().map(|(e, _)| *e).collect();
            let results = self.target.send(&self.client, &batch).await;
            attempts += batch.len();
            for ((e, k), r) in wave.iter().zip(results) {
                match r {
                    Ok(()) => step.delivered += 1,
                    Err(err) => {
                        failures += 1;
                        held.insert((*k).clone());
                        step.failed.push((e.seq, (*k).clone(), err.message));
                    }
                }
            }
            waiting = later;
        }
        (attempts, failures)
    }

    /// The records among `keys` with an event parked.
    async fn held(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT DISTINCT record_key FROM sequin.sink_parked WHERE sink = $1 AND record_key = ANY($2)",
                &[&self.sink.name, &keys],
            )
            .await
            .map_err(db("reading parked events"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Commits a step: parked events, the cursor, the counters.
    async fn commit(&mut self, step: Step) -> Result<(), StoreError> {
        let name = self.sink.name.clone();
        let first_wait = self.sink.retry()[0].as_secs_f64();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(db("starting a sink's commit"))?;
        let (seqs, keys, states, waits, errors) = parked_rows(&step, first_wait);
        if !seqs.is_empty() {
            tx.execute(
                "INSERT INTO sequin.sink_parked (sink, seq, record_key, state, attempts, next_at, last_error)
                 SELECT $1, s, k, st, CASE WHEN st = 'retry' THEN 1 ELSE 0 END,
                        CASE WHEN w IS NULL THEN NULL ELSE now() + make_interval(secs => w) END, e
                   FROM unnest($2::bigint[], $3::text[], $4::text[], $5::float8[], $6::text[]) AS x(s, k, st, w, e)
                 ON CONFLICT DO NOTHING",
                &[&name, &seqs, &keys, &states, &waits, &errors],
            )
            .await
            .map_err(db("parking events"))?;
        }
        let last_error = step.failed.last().map(|f| f.2.clone());
        let resumed = record_attempts(
            &tx,
            &name,
            step.cursor,
            step.delivered,
            step.failed.len() as u64,
            last_error,
            self.sink.pause_after(),
        )
        .await?;
        tx.commit().await.map_err(db("committing a sink's step"))?;
        self.metrics.sink_events(&name, "delivered", step.delivered);
        self.metrics
            .sink_events(&name, "failed", step.failed.len() as u64);
        if resumed {
            self.resumed().await?;
        }
        Ok(())
    }

    /// Sends the parked events whose retry is due. Returns the attempts and
    /// the successes.
    async fn retry_due(&mut self) -> Result<(usize, usize), StoreError> {
        let rows = self
            .client
            .query(
                "SELECT seq, attempts FROM sequin.sink_parked
                  WHERE sink = $1 AND state = 'retry' AND next_at <= now()
                  ORDER BY seq LIMIT $2",
                &[&self.sink.name, &RETRY_BATCH],
            )
            .await
            .map_err(db("reading due retries"))?;
        if rows.is_empty() {
            return Ok((0, 0));
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let events = log::by_seq(&self.client, &seqs)
            .await
            .map_err(db("reading retried events"))?;
        // Parked events no longer kept, or no longer taken by the filter
        // (a replay of a table the filter leaves out), are done.
        let send: Vec<Event> = events
            .into_iter()
            .filter(|e| filter::accepts(&self.sink, e))
            .collect();
        let kept: HashSet<i64> = send.iter().map(|e| e.seq).collect();
        let mut done: Vec<i64> = seqs.iter().copied().filter(|s| !kept.contains(s)).collect();
        let results = self
            .target
            .send(&self.client, &send.iter().collect::<Vec<_>>())
            .await;
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for (e, r) in send.iter().zip(results) {
            match r {
                Ok(()) => done.push(e.seq),
                Err(err) => {
                    failed.push(e.seq);
                    errors.push(err.message);
                }
            }
        }
        let delivered = (done.len() - (seqs.len() - send.len())) as u64;
        self.settle_retries(&done, &failed, &errors, delivered)
            .await?;
        Ok((send.len(), delivered as usize))
    }

    /// A paused sink's probe of its oldest parked retry, ahead of its
    /// schedule and without counting an attempt: the next new event may be
    /// of a record held back, which a probe only parks behind, never sends
    /// (with every record held, a sink back up waited for the next retry,
    /// hours away late in the schedule). `false` when nothing was sent.
    async fn probe_parked(&mut self) -> Result<bool, StoreError> {
        let Some(row) = self
            .client
            .query_opt(
                "SELECT seq FROM sequin.sink_parked WHERE sink = $1 AND state = 'retry' ORDER BY seq LIMIT 1",
                &[&self.sink.name],
            )
            .await
            .map_err(db("reading the oldest parked retry"))?
        else {
            return Ok(false);
        };
        let seq: i64 = row.get(0);
        let events = log::by_seq(&self.client, &[seq])
            .await
            .map_err(db("reading a parked event"))?;
        let Some(event) = events.into_iter().find(|e| filter::accepts(&self.sink, e)) else {
            return Ok(false);
        };
        match self.target.send(&self.client, &[&event]).await.pop() {
            Some(Ok(())) => self.settle_retries(&[seq], &[], &[], 1).await?,
            Some(Err(err)) => {
                self.client
                    .execute(
                        "UPDATE sequin.sink SET last_error = $2, updated_at = now() WHERE name = $1",
                        &[&self.sink.name, &err.message],
                    )
                    .await
                    .map_err(db("recording a failed probe"))?;
            }
            None => return Ok(false),
        }
        Ok(true)
    }

    /// Commits retries: `done` leave the parking (their records' next
    /// events become due), `failed` wait longer or die.
    async fn settle_retries(
        &mut self,
        done: &[i64],
        failed: &[i64],
        errors: &[String],
        delivered: u64,
    ) -> Result<(), StoreError> {
        let name = self.sink.name.clone();
        let waits: Vec<f64> = self
            .sink
            .retry()
            .iter()
            .map(Duration::as_secs_f64)
            .collect();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(db("starting a sink's retries"))?;
        tx.execute(
            "DELETE FROM sequin.sink_parked WHERE sink = $1 AND seq = ANY($2)",
            &[&name, &done],
        )
        .await
        .map_err(db("settling retried events"))?;
        let dead: i64 = tx
            .query_one(
                "WITH f AS (SELECT * FROM unnest($2::bigint[], $3::text[]) AS x(seq, error)),
                      u AS (UPDATE sequin.sink_parked p
                               SET attempts = p.attempts + 1,
                                   state = CASE WHEN p.attempts + 1 > cardinality($4::float8[]) THEN 'dead' ELSE 'retry' END,
                                   next_at = now() + make_interval(secs => coalesce(($4::float8[])[p.attempts + 1], 0)),
                                   last_error = f.error
                              FROM f WHERE p.sink = $1 AND p.seq = f.seq
                            RETURNING p.state)
                 SELECT count(*) FILTER (WHERE state = 'dead') FROM u",
                &[&name, &failed, &errors, &waits],
            )
            .await
            .map_err(db("rescheduling failed retries"))?
            .get(0);
        if !done.is_empty() {
            tx.execute("SELECT sequin.promote_parked($1)", &[&name])
                .await
                .map_err(db("promoting parked events"))?;
        }
        let resumed = record_attempts(
            &tx,
            &name,
            None,
            delivered,
            failed.len() as u64,
            errors.last().cloned(),
            self.sink.pause_after(),
        )
        .await?;
        tx.commit()
            .await
            .map_err(db("committing a sink's retries"))?;
        self.metrics.sink_events(&name, "delivered", delivered);
        self.metrics
            .sink_events(&name, "failed", failed.len() as u64);
        self.metrics.sink_events(&name, "dead", dead as u64);
        if dead > 0 {
            tracing::warn!(sink = %name, events = dead, error = errors.last().map(String::as_str).unwrap_or(""), "events dead-lettered after their last attempt (sequin events retry --sink {name} sends them again)");
        }
        if resumed {
            self.resumed().await?;
        }
        Ok(())
    }

    /// A paused sink delivered again: every parked retry is due now.
    async fn resumed(&mut self) -> Result<(), StoreError> {
        tracing::info!(sink = %self.sink.name, "sink delivers again; resumed");
        self.last_probe = None;
        self.client
            .execute(
                "UPDATE sequin.sink_parked SET next_at = now() WHERE sink = $1 AND state = 'retry'",
                &[&self.sink.name],
            )
            .await
            .map_err(db("rescheduling parked retries"))?;
        Ok(())
    }
}

type ParkedRows = (
    Vec<i64>,
    Vec<String>,
    Vec<&'static str>,
    Vec<Option<f64>>,
    Vec<Option<String>>,
);

/// A step's parked events as the columns of one insert.
fn parked_rows(step: &Step, first_wait: f64) -> ParkedRows {
    let mut rows: ParkedRows = Default::default();
    for (seq, key, error) in &step.failed {
        rows.0.push(*seq);
        rows.1.push(key.clone());
        rows.2.push("retry");
        rows.3.push(Some(first_wait));
        rows.4.push(Some(error.clone()));
    }
    for (seq, key) in &step.blocked {
        rows.0.push(*seq);
        rows.1.push(key.clone());
        rows.2.push("blocked");
        rows.3.push(None);
        rows.4.push(None);
    }
    rows
}

/// Moves the cursor (when given) and counts the attempts: a success resets
/// the run of failures and resumes a paused sink, `pause_after` failures
/// in a row pause it. Returns whether a paused sink resumed.
async fn record_attempts(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    cursor: Option<i64>,
    delivered: u64,
    failed: u64,
    last_error: Option<String>,
    pause_after: u32,
) -> Result<bool, StoreError> {
    let was: bool = tx
        .query_opt(
            "SELECT paused_since IS NOT NULL FROM sequin.sink WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .map_err(db("reading a sink's state"))?
        .is_some_and(|r| r.get(0));
    let now: bool = tx
        .query_opt(
            "UPDATE sequin.sink SET
                cursor = greatest(cursor, coalesce($2, cursor)),
                delivered = delivered + $3,
                consecutive_failures = CASE WHEN $3 > 0 THEN $4 ELSE consecutive_failures + $4 END,
                failing_since = CASE WHEN $4 = 0 AND $3 > 0 THEN NULL ELSE coalesce(failing_since, CASE WHEN $4 > 0 THEN now() END) END,
                paused_since = CASE WHEN $3 > 0 THEN NULL
                                    WHEN consecutive_failures + $4 >= $6 THEN coalesce(paused_since, now())
                                    ELSE paused_since END,
                last_error = CASE WHEN $4 > 0 THEN $5 WHEN $3 > 0 THEN NULL ELSE last_error END,
                last_delivered_at = CASE WHEN $3 > 0 THEN now() ELSE last_delivered_at END,
                updated_at = now()
              WHERE name = $1
             RETURNING paused_since IS NOT NULL",
            &[
                &name,
                &cursor,
                &(delivered as i64),
                &(failed as i32),
                &last_error.as_deref(),
                &(pause_after as i32),
            ],
        )
        .await
        .map_err(db("recording a sink's attempts"))?
        .is_some_and(|r| r.get(0));
    if now && !was {
        tracing::warn!(
            sink = name,
            error = last_error.as_deref().unwrap_or(""),
            "sink paused after {pause_after} failed attempts in a row: new events wait, retries go on, and the first that goes through resumes it"
        );
    }
    Ok(was && !now)
}
