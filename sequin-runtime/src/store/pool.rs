//! Sync's Postgres sessions, shared by every connection and object of a
//! process: at most `size` open at once, at most `per_connection` of them
//! lent to one connection, none held between two batches, and those idle
//! for `idle_timeout` closed. So the sessions sync uses depend on this
//! configuration only, never on how many connections and objects there are.
//!
//! A [`Writer`](super::Writer) step borrows a session for one statement or
//! one transaction (a [`Lease`]) and gives it back. A session keeps what it
//! set up: its staging table and its `sequin.origin`.
//!
//! Waiting is fair: both semaphores hand out permits in the order asked,
//! so the objects of many connections take turns. A lease takes its
//! connection's permit before the pool's, and no step asks for a second
//! lease while holding one, so leases never wait on each other in a cycle.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use super::{StoreError, db};

/// How big the pool is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Sessions open at most.
    pub size: usize,
    /// Sessions lent to one connection at most.
    pub per_connection: usize,
    /// A session idle this long is closed.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> PoolSettings {
        PoolSettings {
            size: 10,
            per_connection: 4,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The pool's counters, read by the metrics at the scrape.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// The configured size.
    pub size: usize,
    /// Sessions open now (lent or idle).
    pub open: AtomicUsize,
    /// Sessions lent now.
    pub in_use: AtomicUsize,
    /// Steps waiting for a session now.
    pub waiting: AtomicUsize,
    /// Sessions opened since the start.
    pub opened: AtomicU64,
    /// Total time steps waited for a session, in microseconds.
    pub wait_us: AtomicU64,
}

/// Sync's sessions. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    application_name: &'static str,
    settings: PoolSettings,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    stats: Arc<PoolStats>,
}

struct Idle {
    session: Session,
    since: Instant,
}

/// One of the pool's sessions and what it set up.
pub(crate) struct Session {
    pub(super) client: Client,
    /// Text columns of the session's staging table (0: none yet).
    pub(super) stage_width: usize,
    /// Rows and batches staged since the staging table was last truncated.
    pub(super) staged_rows: usize,
    pub(super) staged_batches: usize,
    /// The value of `sequin.origin` in the session.
    origin: Origin,
}

/// What the outbox trigger records as the origin of a session's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Sync,
    Backfill,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Sync => "sync",
            Origin::Backfill => "backfill",
        }
    }
}

/// A connection's share of the pool: how many sessions it may hold at once.
#[derive(Clone)]
pub struct Share {
    permits: Arc<Semaphore>,
}

impl Share {
    /// A share of at most `sessions` sessions.
    pub fn new(sessions: usize) -> Share {
        Share {
            permits: Arc::new(Semaphore::new(sessions.max(1))),
        }
    }
}

/// A session lent for one step; given back when dropped (closed instead
/// when its connection is gone).
pub(crate) struct Lease {
    session: Option<Session>,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
    _share: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// The lent session.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

impl std::ops::Deref for Lease {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("held until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let stats = &self.inner.stats;
        stats.in_use.fetch_sub(1, Ordering::Relaxed);
        let Some(session) = self.session.take() else {
            return;
        };
        if session.client.is_closed() {
            stats.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        // A step cancelled inside a transaction leaves nothing behind:
        // tokio-postgres rolls back a dropped transaction (and fails a
        // dropped COPY) before the session's next statement.
        self.inner.idle().push(Idle {
            session,
            since: Instant::now(),
        });
    }
}

impl Pool {
    /// A pool of sessions to `url`; none is opened before a step needs it.
    pub fn new(url: &str, settings: PoolSettings) -> Pool {
        Pool::named(url, settings, "sequin-sync")
    }

    /// [`Pool::new`] whose sessions show as `application_name` (sync's show
    /// as `sequin-sync`).
    pub fn named(url: &str, settings: PoolSettings, application_name: &'static str) -> Pool {
        let stats = Arc::new(PoolStats {
            size: settings.size,
            ..PoolStats::default()
        });
        let inner = Arc::new(Inner {
            url: url.to_string(),
            application_name,
            settings,
            permits: Arc::new(Semaphore::new(settings.size.max(1))),
            idle: Mutex::new(Vec::new()),
            stats,
        });
        tokio::spawn(close_idle(Arc::downgrade(&inner)));
        Pool { inner }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn stats(&self) -> Arc<PoolStats> {
        self.inner.stats.clone()
    }

    /// A new connection's share, of the configured size unless `sessions`
    /// says otherwise.
    pub fn share(&self, sessions: Option<usize>) -> Share {
        Share::new(sessions.unwrap_or(self.inner.settings.per_connection))
    }

    /// Lends a session, with `origin` set, once the connection's share and
    /// the pool have room.
    pub(crate) async fn lease(
        &self,
        share: Option<&Share>,
        origin: Origin,
    ) -> Result<Lease, StoreError> {
        let stats = &self.inner.stats;
        let waiting = Waiting::start(stats);
        let closed = "the semaphores are never closed";
        let share = match share {
            Some(s) => Some(s.permits.clone().acquire_owned().await.expect(closed)),
            None => None,
        };
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect(closed);
        drop(waiting);
        let session = match self.inner.take_idle() {
            Some(s) => s,
            None => {
                let s = open(&self.inner.url, self.inner.application_name).await?;
                stats.open.fetch_add(1, Ordering::Relaxed);
                stats.opened.fetch_add(1, Ordering::Relaxed);
                s
            }
        };
        stats.in_use.fetch_add(1, Ordering::Relaxed);
        let mut lease = Lease {
            session: Some(session),
            inner: self.inner.clone(),
            _permit: permit,
            _share: share,
        };
        lease.set_origin(origin).await?;
        Ok(lease)
    }
}

/// A step waiting for a session, counted until dropped (the permits
/// taken, or the step cancelled), with the time it waited.
struct Waiting<'a> {
    stats: &'a PoolStats,
    since: Instant,
}

impl<'a> Waiting<'a> {
    fn start(stats: &'a PoolStats) -> Waiting<'a> {
        stats.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting {
            stats,
            since: Instant::now(),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
        let waited = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.wait_us.fetch_add(waited, Ordering::Relaxed);
    }
}

impl Inner {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The idle session used last (so the others age and close when the
    /// load drops). Sessions Postgres closed while they were idle (a
    /// restart, an administrator's `pg_terminate_backend`) are dropped, not
    /// lent: the step would fail on its first statement.
    fn take_idle(&self) -> Option<Session> {
        let mut idle = self.idle();
        while let Some(i) = idle.pop() {
            if !i.session.client.is_closed() {
                return Some(i.session);
            }
            self.stats.open.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    /// Closes the sessions idle for longer than the timeout.
    fn close_expired(&self) {
        let timeout = self.settings.idle_timeout;
        let closed = {
            let mut idle = self.idle();
            let before = idle.len();
            idle.retain(|i| i.since.elapsed() < timeout && !i.session.client.is_closed());
            before - idle.len()
        };
        self.stats.open.fetch_sub(closed, Ordering::Relaxed);
    }
}

/// Closes idle sessions as they expire, for as long as the pool exists.
async fn close_idle(pool: Weak<Inner>) {
    let tick = match pool.upgrade() {
        Some(p) => {
            (p.settings.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(15))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(tick).await;
        match pool.upgrade() {
            Some(p) => p.close_expired(),
            None => return,
        }
    }
}

/// Opens a sync session: Sequin's own (it holds the writer key the guard
/// asks for), which yields to applications: a batch that waits on a row a
/// client's open write-through transaction holds gives up (and is retried)
/// well before Postgres's deadlock check (1 s) could pick the client's
/// transaction as its victim.
async fn open(url: &str, application_name: &str) -> Result<Session, StoreError> {
    let client = super::connect(url).await?;
    client
        .batch_execute(&format!(
            "SET application_name = '{application_name}'; SET lock_timeout = '300ms'; SET sequin.origin = 'sync'",
        ))
        .await
        .map_err(db("configuring the sync session"))?;
    crate::guard::hold(&client)
        .await
        .map_err(db("registering the writer key"))?;
    Ok(Session {
        client,
        stage_width: 0,
        staged_rows: 0,
        staged_batches: 0,
        origin: Origin::Sync,
    })
}

impl Session {
    /// Marks the session's changes as `origin`'s (`sequin.origin`, read by
    /// the outbox trigger): a backfill's inserts become `read` events, and
    /// only when a sink asks for them.
    async fn set_origin(&mut self, origin: Origin) -> Result<(), StoreError> {
        if self.origin == origin {
            return Ok(());
        }
        self.client
            .batch_execute(&format!("SET sequin.origin = '{}'", origin.as_str()))
            .await
            .map_err(db("marking the origin of the session's changes"))?;
        self.origin = origin;
        Ok(())
    }
}
