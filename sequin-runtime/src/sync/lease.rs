//! Work shared across processes: every `sequin sync` / `sequin run`
//! process pointed at one database syncs the connections it holds a lease
//! on (`sequin.lease`, migration 0012), and only those.
//!
//! - A process is a row of `sequin.worker`, heartbeated every
//!   `failover / 3`; its leases expire `failover` after its last
//!   heartbeat.
//! - At each heartbeat a process renews its leases, works out its share
//!   (the configured connections divided by the live processes, rounded
//!   up), gives back what it holds beyond it (after stopping those
//!   connections) and takes free or expired leases up to it, with `FOR
//!   UPDATE SKIP LOCKED`, so two processes never take one lease.
//! - Each take increments the lease's fencing token. Every batch a
//!   connection commits first locks its lease row `FOR SHARE` where the
//!   token is the one it was started with (`store::Fence`): a process that
//!   lost its lease (stalled past `failover`, its lease taken over) cannot
//!   commit, and a takeover waits for a batch in flight to end.
//! - A new process registers, then waits a moment ([`SETTLE`]) before its
//!   first take, so that processes started together see each other and
//!   split the work at once rather than after one of them has started
//!   everything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Engine, SyncError, ended};
use crate::config::Config;
use crate::config::reload::Changes;
use crate::metrics::Part;
use crate::store::{self, Fence, Origin, StoreError, db};

/// This process in `sequin.worker`.
pub(super) struct Worker {
    pub(super) id: String,
    failover: Duration,
    pool: store::Pool,
}

/// What a heartbeat found.
#[derive(Debug, Default)]
pub(super) struct Beat {
    /// Leases held and renewed, with their tokens.
    pub(super) held: BTreeMap<String, i64>,
    /// Leases to give back (beyond this process's share), most recent
    /// names first; their connections are stopped before [`Worker::release`].
    pub(super) surplus: Vec<String>,
    /// Leases taken by this heartbeat, with their new tokens.
    pub(super) taken: Vec<(String, i64)>,
}

impl Worker {
    /// This process, not registered yet.
    pub(super) fn new(pool: store::Pool, failover: Duration) -> Worker {
        let id = format!(
            "{}:{}:{:08x}",
            crate::guard::hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        Worker { id, failover, pool }
    }

    /// How often this process heartbeats.
    pub(super) fn heartbeat(&self) -> Duration {
        self.failover / 3
    }

    /// Registers or renews this process in `sequin.worker` (counted live
    /// for `failover`).
    async fn touch(&self, c: &tokio_postgres::Client) -> Result<(), StoreError> {
        c.execute(
            "INSERT INTO sequin.worker (id, heartbeat_at, expires_at)
             VALUES ($1, now(), now() + make_interval(secs => $2))
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at",
            &[&self.id, &self.failover.as_secs_f64()],
        )
        .await
        .map_err(db("heartbeating this process in sequin.worker"))?;
        Ok(())
    }

    /// Counts this process live while `work` runs (its start-up: creating
    /// the connections' tables can take longer than `failover`), so the
    /// processes started with it leave it its share rather than taking
    /// everything while it is busy. Heartbeat failures are left to the
    /// first real heartbeat.
    pub(super) async fn live_during<T>(&self, work: impl Future<Output = T>) -> T {
        let beats = async {
            loop {
                if let Ok(session) = self.pool.lease(None, Origin::Sync).await {
                    let _ = self.touch(session.client()).await;
                }
                tokio::time::sleep(self.heartbeat()).await;
            }
        };
        tokio::select! {
            done = work => done,
            never = beats => never,
        }
    }

    /// The `first` heartbeat registers this process and a lease row for
    /// each of the `configured` connections; the others renew it and the
    /// leases it holds, work out its share of `configured` and take free
    /// leases up to it.
    pub(super) async fn beat(
        &self,
        configured: &[String],
        first: bool,
    ) -> Result<Beat, StoreError> {
        let session = self.pool.lease(None, Origin::Sync).await?;
        let c = session.client();
        let failover = self.failover.as_secs_f64();
        self.touch(c).await?;
        if first {
            record_leases(c, configured).await?;
        }
        let held: BTreeMap<String, i64> = c
            .query(
                "UPDATE sequin.lease SET expires_at = now() + make_interval(secs => $2)
                  WHERE holder = $1 RETURNING connection, token",
                &[&self.id, &failover],
            )
            .await
            .map_err(db("renewing this process's leases"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut beat = Beat {
            held,
            ..Beat::default()
        };
        if first {
            return Ok(beat);
        }
        let workers: i64 = c
            .query_one(
                "SELECT count(*) FROM sequin.worker WHERE expires_at > now()",
                &[],
            )
            .await
            .map_err(db("counting the live processes"))?
            .get(0);
        let share = configured
            .len()
            .div_ceil(usize::try_from(workers.max(1)).unwrap_or(1));
        let held = beat.held.len();
        if held > share {
            beat.surplus = beat.held.keys().rev().take(held - share).cloned().collect();
            return Ok(beat);
        }
        let wanted = i64::try_from(share - held).unwrap_or(0);
        if wanted > 0 {
            beat.taken = c
                .query(
                    "UPDATE sequin.lease l
                        SET holder = $1, token = l.token + 1, taken_at = now(),
                            expires_at = now() + make_interval(secs => $2)
                      WHERE l.connection IN (
                            SELECT connection FROM sequin.lease
                             WHERE connection = ANY($3) AND (holder IS NULL OR expires_at < now())
                             ORDER BY connection LIMIT $4 FOR UPDATE SKIP LOCKED)
                      RETURNING connection, token",
                    &[&self.id, &failover, &configured, &wanted],
                )
                .await
                .map_err(db("taking leases"))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        }
        Ok(beat)
    }

    /// Records a lease row for each of `connections` (added to the config).
    pub(super) async fn register(&self, connections: &[String]) -> Result<(), StoreError> {
        let session = self.pool.lease(None, Origin::Sync).await?;
        record_leases(session.client(), connections).await
    }

    /// Removes the lease rows of `connections` (removed from the config),
    /// so no process takes them again.
    pub(super) async fn forget(&self, connections: &[String]) -> Result<(), StoreError> {
        let session = self.pool.lease(None, Origin::Sync).await?;
        session
            .client()
            .execute(
                "DELETE FROM sequin.lease WHERE connection = ANY($1)",
                &[&connections],
            )
            .await
            .map_err(db("removing the leases of removed connections"))?;
        Ok(())
    }

    /// Gives back the lease of `connection` (its tasks have stopped).
    pub(super) async fn release(&self, connections: &[String]) -> Result<(), StoreError> {
        if connections.is_empty() {
            return Ok(());
        }
        let session = self.pool.lease(None, Origin::Sync).await?;
        session
            .client()
            .execute(
                "UPDATE sequin.lease SET holder = NULL, expires_at = NULL
                  WHERE connection = ANY($1) AND holder = $2",
                &[&connections, &self.id],
            )
            .await
            .map_err(db("giving back leases"))?;
        Ok(())
    }

    /// Gives back every lease and leaves `sequin.worker` (shutting down).
    pub(super) async fn leave(&self) -> Result<(), StoreError> {
        let session = self.pool.lease(None, Origin::Sync).await?;
        let c = session.client();
        c.execute(
            "UPDATE sequin.lease SET holder = NULL, expires_at = NULL WHERE holder = $1",
            &[&self.id],
        )
        .await
        .map_err(db("giving back leases"))?;
        c.execute("DELETE FROM sequin.worker WHERE id = $1", &[&self.id])
            .await
            .map_err(db("leaving sequin.worker"))?;
        Ok(())
    }
}

/// A lease row for each of `connections` that has none.
async fn record_leases(
    c: &tokio_postgres::Client,
    connections: &[String],
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO sequin.lease (connection) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        &[&connections],
    )
    .await
    .map_err(db("recording the connections' leases"))?;
    Ok(())
}

/// How long a new process waits between registering and taking leases.
const SETTLE: Duration = Duration::from_secs(1);

/// How often, between heartbeats, the connections' tasks are looked at.
const TICK: Duration = Duration::from_millis(250);

/// Whether this process holds every configured connection and each one's
/// task has ended (failed for good).
fn all_ended(held: &BTreeMap<String, Held>, configured: usize) -> bool {
    !held.is_empty() && held.len() == configured && held.values().all(|h| h.task.is_finished())
}

/// A connection this process runs under its lease.
struct Held {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), SyncError>>,
}

/// Runs the connections this process holds leases on, taking and giving
/// them back as processes come and go, until `shutdown`, or until every
/// configured connection is held here and has stopped. Either way it
/// returns the first error of the connections it ran last (so one process
/// alone keeps `sequin sync`'s exit status: it fails when a connection
/// did).
pub(super) async fn run_leased(
    config: &Config,
    engine: &Engine,
    worker: Worker,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let mut config = Arc::new(config.clone());
    let mut reloads = engine.opts.reloads.clone();
    let mut configured = names(&config);
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    // A heartbeat has registered this process; one has taken leases.
    let (mut registered, mut taken) = (false, false);
    let mut last_beat = Instant::now();
    'beats: loop {
        if let Some(new) = reloads.as_mut().and_then(newer)
            && reload(&worker, engine, &mut held, &config, &new).await
        {
            config = new;
            configured = names(&config);
        }
        let taking = registered;
        match worker.beat(&configured, !taking).await {
            Ok(beat) => {
                last_beat = Instant::now();
                follow(&worker, beat, &mut held, &config, engine).await;
                if taking && !taken {
                    forget_unheld(engine, &configured, &held);
                }
                (registered, taken) = (true, taking);
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; retrying");
                if last_beat.elapsed() > config.sync.failover {
                    // The leases have expired: other processes may run
                    // these connections now.
                    let all: Vec<String> = held.keys().cloned().collect();
                    stop(&mut held, &all, engine).await;
                }
            }
        }
        // The first heartbeat registers; the next, a moment later, takes
        // (processes started together see each other by then).
        let next = Instant::now()
            + if taking {
                worker.heartbeat()
            } else {
                worker.heartbeat().min(SETTLE)
            };
        while Instant::now() < next {
            if all_ended(&held, configured.len()) {
                let result = first_error(held).await;
                let _ = worker.leave().await;
                return result;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK.min(next - Instant::now())) => {}
                _ = shutdown.wait_for(|s| *s) => break 'beats,
                // A new config is applied, then a heartbeat follows it.
                _ = changed(&mut reloads) => continue 'beats,
            }
        }
    }
    // Shutting down: the engine ends with the first connection's error, as
    // when it runs every connection itself.
    for h in held.values() {
        let _ = h.stop.send(true);
    }
    let result = first_error(held).await;
    if let Err(e) = worker.leave().await {
        tracing::warn!(error = %e, "could not give back this process's leases (they expire on their own)");
    }
    result
}

/// Follows a heartbeat: stops the connections whose leases were lost,
/// gives back the surplus once stopped, starts the ones taken (and any
/// held but not running, after a heartbeat outage stopped them).
async fn follow(
    worker: &Worker,
    beat: Beat,
    held: &mut BTreeMap<String, Held>,
    config: &Config,
    engine: &Engine,
) {
    let lost: Vec<String> = held
        .keys()
        .filter(|c| !beat.held.contains_key(*c))
        .cloned()
        .collect();
    for c in &lost {
        tracing::warn!(connection = %c, "this process lost the lease of the connection (it expired and another process took it); stopping it here");
    }
    stop(held, &lost, engine).await;
    if !beat.surplus.is_empty() {
        stop(held, &beat.surplus, engine).await;
        match worker.release(&beat.surplus).await {
            Ok(()) => {
                tracing::info!(connections = ?beat.surplus, "gave back leases for another process to take")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not give back leases (they expire on their own)")
            }
        }
    }
    let start: Vec<(String, i64)> = beat
        .held
        .into_iter()
        .filter(|(c, _)| !held.contains_key(c) && !beat.surplus.contains(c))
        .chain(beat.taken)
        .collect();
    for (name, token) in start {
        let Some(conn) = config.connection(&name) else {
            continue;
        };
        tracing::info!(connection = %name, token, "syncing the connection under its lease");
        let (stop, rx) = watch::channel(false);
        let fence = Fence {
            connection: name.clone(),
            token,
        };
        let task = engine.start(conn, Some(fence), rx);
        held.insert(name, Held { stop, task });
    }
}

/// The names of `config`'s connections.
fn names(config: &Config) -> Vec<String> {
    config.connections.iter().map(|c| c.name.clone()).collect()
}

/// The newest config, if it changed since last looked at.
fn newer(reloads: &mut watch::Receiver<Arc<Config>>) -> Option<Arc<Config>> {
    reloads
        .has_changed()
        .unwrap_or(false)
        .then(|| reloads.borrow_and_update().clone())
}

/// Waits for a new config (forever without reloads, or once they ended).
async fn changed(reloads: &mut Option<watch::Receiver<Arc<Config>>>) {
    let Some(r) = reloads else {
        return std::future::pending().await;
    };
    match r.changed().await {
        // Seen again (and applied) by `newer` at the loop's top.
        Ok(()) => r.mark_changed(),
        Err(_) => std::future::pending().await,
    }
}

/// Applies a new config's connections: an added one gets its tables and a
/// lease (any process may take it at its next heartbeat), a removed one is
/// stopped here and its lease removed, a changed one is stopped and
/// started again under the same lease with its new settings at the next
/// heartbeat. Returns whether the new config now runs: when the tables of
/// the new or changed connections cannot be created, nothing changes (it is
/// logged) and the next SIGHUP tries again.
async fn reload(
    worker: &Worker,
    engine: &Engine,
    held: &mut BTreeMap<String, Held>,
    old: &Config,
    new: &Config,
) -> bool {
    let changes = Changes::between(old, new);
    if changes.is_empty() {
        tracing::info!("config reloaded: no connection changed");
        return true;
    }
    if let Err(e) =
        crate::catalog::migrate_connections(engine.pool.url(), new, &changes.to_migrate()).await
    {
        tracing::error!(error = %e, connections = ?changes.to_migrate(), "config not reloaded: cannot create the tables of the new or changed connections; fix it and send SIGHUP again");
        return false;
    }
    if let Err(e) = worker.register(&changes.added).await {
        tracing::error!(error = %e, "cannot record the added connections' leases; send SIGHUP again");
    }
    let stopping: Vec<String> = changes
        .removed
        .iter()
        .chain(&changes.changed)
        .cloned()
        .collect();
    stop(held, &stopping, engine).await;
    if !changes.removed.is_empty() {
        if let Err(e) = worker.forget(&changes.removed).await {
            tracing::warn!(error = %e, "cannot remove the removed connections' leases (they expire, and a process whose config still names them may take them)");
        }
        for c in &changes.removed {
            engine.opts.metrics.forget(&Part::Connection(c.clone()));
        }
    }
    tracing::info!(added = ?changes.added, removed = ?changes.removed, changed = ?changes.changed, "config reloaded");
    true
}

/// How long a stopping connection may take before its task is aborted.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Stops `names` among `held` and waits for their tasks.
async fn stop(held: &mut BTreeMap<String, Held>, names: &[String], engine: &Engine) {
    let stopping: Vec<(String, Held)> = names
        .iter()
        .filter_map(|n| held.remove(n).map(|h| (n.clone(), h)))
        .collect();
    for (_, h) in &stopping {
        let _ = h.stop.send(true);
    }
    for (name, mut h) in stopping {
        if tokio::time::timeout(STOP_WAIT, &mut h.task).await.is_err() {
            h.task.abort();
        }
        engine.opts.metrics.forget(&Part::Connection(name));
    }
}

/// After the first heartbeat that took leases: the connections other
/// processes sync are not this process's to be ready for (`/readyz`).
fn forget_unheld(engine: &Engine, configured: &[String], held: &BTreeMap<String, Held>) {
    for c in configured.iter().filter(|c| !held.contains_key(*c)) {
        engine.opts.metrics.forget(&Part::Connection(c.clone()));
    }
}

/// The first error of the (ended) connection tasks.
async fn first_error(held: BTreeMap<String, Held>) -> Result<(), SyncError> {
    let mut first = None;
    for (_, h) in held {
        if let Err(e) = ended(h.task.await) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
