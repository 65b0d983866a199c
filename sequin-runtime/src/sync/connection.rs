//! One connection's life: started, announced in `sequin status`, its
//! object tasks and events feed supervised, started again after a failure
//! that waiting can cure.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sequin_spec::model::Incremental;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{ChildLink, Ctx, Options, Sessions, SyncError, child, events, fallback, links, object};
use crate::catalog::{self, ObjectPlan};
use crate::config::ConnectionConfig;
use crate::metrics::{Part, PartState};

async fn run_connection(
    sessions: Sessions,
    conn: ConnectionConfig,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let name = conn.name.clone();
    let metrics = opts.metrics.clone();
    let result = Box::pin(run_connection_inner(sessions.clone(), conn, opts, shutdown)).await;
    if let Err(e) = &result {
        metrics.part(
            Part::Connection(name.clone()),
            PartState::Failed(e.to_string()),
        );
        // Make a connection-level failure (bad credentials, unreachable API)
        // visible in `sequin status`, not only in the log.
        let w = sessions.writer();
        let recorded = async {
            if w.state(&name, CONNECTION).await.is_ok() {
                let _ = w.record_error(&name, CONNECTION, &e.to_string()).await;
            }
        };
        Box::pin(recorded).await;
    }
    result
}

/// First pause before a connection that failed transiently starts again
/// (doubling up to [`RESTART_MAX`]).
const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);

/// Runs a connection, starting it again (from its checkpoints) after a
/// failure that waiting can cure: the database restarting or unreachable,
/// the API down, timing out or limiting. Credentials, configuration and
/// spec problems stop it.
pub(super) async fn run_connection_resilient(
    sessions: Sessions,
    conn: ConnectionConfig,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let mut pause = RESTART_MIN;
    loop {
        let started = Instant::now();
        match run_connection(
            sessions.clone(),
            conn.clone(),
            opts.clone(),
            shutdown.clone(),
        )
        .await
        {
            // `--once` reports failures instead of waiting them out.
            Err(e) if e.is_transient() && !opts.once && !*shutdown.borrow() => {
                if started.elapsed() > RESTART_MAX * 2 {
                    pause = RESTART_MIN;
                }
                tracing::warn!(connection = %conn.name, error = %e, retry_in = ?pause, "connection failed; starting it again");
                let mut rx = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = async { let _ = rx.wait_for(|s| *s).await; } => return Ok(()),
                }
                pause = (pause * 2).min(RESTART_MAX);
            }
            other => return other,
        }
    }
}

/// The pseudo-object under which connection-level errors are recorded.
pub const CONNECTION: &str = "_connection";

async fn run_connection_inner(
    sessions: Sessions,
    conn: ConnectionConfig,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let api = catalog::Connection::open(&sessions.pool, &conn, &opts.metrics)?;
    // Every step is boxed: this future lives as long as the connection, and
    // is as big as its biggest step (a thousand connections hold a
    // thousand).
    let plans = Box::pin(api.plans()).await?;
    let ctx = Arc::new(Ctx {
        api,
        sessions,
        opts,
        shutdown,
        started_us: catalog::now_us(),
        feed_refused: OnceLock::new(),
        children: std::sync::RwLock::new(children(&plans)),
    });
    Box::pin(announce(&ctx, &plans)).await?;
    // The quota's level in Postgres while the connection runs.
    let _quota = ctx.api.client.quota().cloned().map(|gate| {
        let keeper = tokio::spawn(super::quota::keep(ctx.clone(), gate));
        AbortOnDrop(keeper)
    });
    let mut tasks = Tasks::new(ctx.clone(), &plans);
    Box::pin(tasks.start_events(&plans)).await?;
    for plan in plans {
        tasks.spawn_object(Box::new(plan));
    }
    Box::pin(tasks.supervise()).await
}

/// A task that ends with the scope holding it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The child objects among `plans`, by parent table; a link table is a
/// child of both of its objects (a record's links go with it).
fn children(plans: &[ObjectPlan]) -> BTreeMap<String, Vec<ChildLink>> {
    let mut out: BTreeMap<String, Vec<ChildLink>> = BTreeMap::new();
    add_children(&mut out, plans);
    out
}

/// Adds the child objects and link tables among `plans` to `out`.
fn add_children(out: &mut BTreeMap<String, Vec<ChildLink>>, plans: &[ObjectPlan]) {
    for p in plans {
        if let Some(l) = &p.link {
            for (object, column) in [(&l.pair.from, "from_id"), (&l.pair.to, "to_id")] {
                let column = p
                    .table
                    .columns
                    .iter()
                    .position(|c| &*c.name == column)
                    .expect("a link table has the link columns");
                out.entry(object.clone()).or_default().push(ChildLink {
                    table: p.table.clone(),
                    column,
                });
            }
        }
        if let Some(parent) = &p.parent {
            out.entry(parent.object.clone())
                .or_default()
                .push(ChildLink {
                    table: p.table.clone(),
                    column: parent.column,
                });
        }
    }
}

/// Says the connection runs (again): an earlier connection-level error
/// (see `run_connection`) no longer holds, and every object is in `sequin
/// status` (and backfilling) from the start, not only once its task gets
/// going.
async fn announce(ctx: &Ctx, plans: &[ObjectPlan]) -> Result<(), SyncError> {
    let w = ctx.writer();
    let _ = w.clear_state(&ctx.api.config.name, CONNECTION).await;
    for p in plans {
        w.state(&ctx.api.config.name, &p.table.name).await?;
    }
    ctx.opts.metrics.part(
        Part::Connection(ctx.api.config.name.clone()),
        PartState::Started,
    );
    Ok(())
}

/// The tasks of one connection: one per object, and the events feed's.
struct Tasks {
    ctx: Arc<Ctx>,
    set: JoinSet<Result<(), SyncError>>,
    /// The tables that are live (backfilled): the feed waits for every
    /// event-driven object, a child object for its parent.
    live_tx: Arc<watch::Sender<BTreeSet<String>>>,
    live_rx: watch::Receiver<BTreeSet<String>>,
    /// Every static object's table, for a child to find its parent's.
    tables: BTreeMap<String, crate::store::Table>,
    /// The latest discovered tables: runtime-defined objects (Airtable
    /// tables) are looked up again every discovery interval; a new table
    /// gets its own task, and the tasks of known tables pick up added
    /// fields from this channel.
    discovered_tx: watch::Sender<Arc<Vec<ObjectPlan>>>,
    discovered_rx: watch::Receiver<Arc<Vec<ObjectPlan>>>,
    /// API names of the discovered tables that have a task.
    known: HashSet<String>,
}

impl Tasks {
    fn new(ctx: Arc<Ctx>, plans: &[ObjectPlan]) -> Tasks {
        let (live_tx, live_rx) = watch::channel(BTreeSet::new());
        let dynamic: Vec<ObjectPlan> = plans.iter().filter(|p| p.dynamic_table).cloned().collect();
        let known = dynamic.iter().map(|p| p.api_name.clone()).collect();
        let (discovered_tx, discovered_rx) = watch::channel(Arc::new(dynamic));
        Tasks {
            ctx,
            set: JoinSet::new(),
            live_tx: Arc::new(live_tx),
            live_rx,
            tables: plans
                .iter()
                .map(|p| (p.table.name.clone(), p.table.clone()))
                .collect(),
            discovered_tx,
            discovered_rx,
            known,
        }
    }

    /// Starts the events feed of the event-driven objects, if any. The
    /// feed's cursor is captured before any backfill starts. A feed the
    /// key may not read leaves the objects to re-listing, when the spec
    /// says so (`fallback.rs`).
    async fn start_events(&mut self, plans: &[ObjectPlan]) -> Result<(), SyncError> {
        let event_objects: Vec<ObjectPlan> = plans
            .iter()
            .filter(|p| matches!(*p.incremental, Incremental::Events { .. }))
            .cloned()
            .collect();
        let Some(first) = event_objects.first() else {
            return Ok(());
        };
        let mut writer = self.ctx.writer();
        if let Err(e) = events::ensure_cursor(&self.ctx, &mut writer, first).await {
            let Some(f) = fallback::applies(&first.incremental, &e) else {
                return Err(e);
            };
            return fallback::fall_back(&self.ctx, &mut writer, f, &e).await;
        }
        let ctx = self.ctx.clone();
        let live_rx = self.live_rx.clone();
        self.set
            .spawn(async move { events::run(ctx, event_objects, live_rx).await });
        Ok(())
    }

    /// Spawns the task of `plan` (boxed: a plan is kilobytes of the spec,
    /// and a task's future would hold it inline, twice).
    fn spawn_object(&mut self, plan: Box<ObjectPlan>) {
        let ctx = self.ctx.clone();
        let live_tx = self.live_tx.clone();
        if let Some(l) = &plan.link {
            let table = |name: &str| {
                self.tables.get(name).cloned().unwrap_or_else(|| {
                    panic!(
                        "the config is checked: `{}`'s object `{name}` is synced",
                        plan.table.name
                    )
                })
            };
            let tables = (table(&l.pair.from), table(&l.pair.to));
            let live_rx = self.live_rx.clone();
            self.set
                .spawn(async move { links::run_link(ctx, plan, tables, (live_tx, live_rx)).await });
            return;
        }
        if let Some(p) = &plan.parent {
            let parent = self.tables.get(&p.object).cloned().unwrap_or_else(|| {
                panic!(
                    "the config is checked: `{}`'s parent `{}` is synced",
                    plan.table.name, p.object
                )
            });
            let live_rx = self.live_rx.clone();
            self.set.spawn(
                async move { child::run_child(ctx, plan, parent, (live_tx, live_rx)).await },
            );
            return;
        }
        let discovered = self.discovered_rx.clone();
        self.set
            .spawn(async move { object::run_object(ctx, plan, live_tx, discovered).await });
    }

    /// Waits for the tasks, looking for new tables every discovery
    /// interval. A transient failure of one task stops them all (the
    /// connection starts again from its checkpoints); otherwise the first
    /// error is returned once every task ended.
    async fn supervise(mut self) -> Result<(), SyncError> {
        let ctx = self.ctx.clone();
        let rediscover_every = match &ctx.api.spec.discovered_objects {
            Some(d) if !ctx.opts.once => {
                Some(ctx.api.config.discovery_interval.unwrap_or(d.every.get()))
            }
            _ => None,
        };
        let mut first_error = None;
        loop {
            let tick = async {
                match rediscover_every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                res = self.set.join_next() => match res {
                    None => break,
                    Some(Ok(Err(e))) => {
                        tracing::error!(connection = %ctx.api.config.name, error = %e, "sync task stopped");
                        // Refused credentials fail every task of the connection:
                        // stop them all (the error is recorded in sync_state).
                        if e.is_auth() {
                            self.set.abort_all();
                        }
                        // A lost database session or the like: stop every task,
                        // and the connection starts again from its checkpoints
                        // (see `run_connection_resilient`).
                        if e.is_transient() && !ctx.opts.once {
                            self.set.abort_all();
                            return Err(e);
                        }
                        first_error.get_or_insert(e);
                    }
                    Some(_) => {}
                },
                _ = tick => {
                    if !ctx.stopping() {
                        Box::pin(self.rediscover()).await;
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Looks up the runtime-defined objects again: a new table gets a task,
    /// known ones get their latest columns.
    async fn rediscover(&mut self) {
        let ctx = self.ctx.clone();
        match ctx.api.discover_objects().await {
            Ok(found) => {
                let found: Vec<ObjectPlan> = found
                    .plans
                    .into_iter()
                    .filter(|p| p.link.is_none() || ctx.api.wants(&p.table.name))
                    .collect();
                let new: Vec<ObjectPlan> = found
                    .iter()
                    .filter(|p| !self.known.contains(&p.api_name))
                    .cloned()
                    .collect();
                // A new link table finds its objects' tables, and its rows go
                // with their records, like those known at start.
                for p in &new {
                    self.tables.insert(p.table.name.clone(), p.table.clone());
                }
                add_children(
                    &mut ctx.children.write().unwrap_or_else(|e| e.into_inner()),
                    &new,
                );
                for p in new {
                    self.known.insert(p.api_name.clone());
                    tracing::info!(connection = %ctx.api.config.name, table = %p.table.name, "new table discovered");
                    // In `sequin status` from now on, as at start.
                    let _ = ctx
                        .writer()
                        .state(&ctx.api.config.name, &p.table.name)
                        .await;
                    self.spawn_object(Box::new(p));
                }
                self.discovered_tx.send_replace(Arc::new(found));
            }
            Err(e) => {
                tracing::warn!(connection = %ctx.api.config.name, error = %e, "object discovery failed");
            }
        }
    }
}
