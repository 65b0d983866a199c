//! The ledger: this process's slots of the rate-limit budgets it shares
//! with other processes, kept in the database ([`RateStore`], migration
//! 0013), so every process syncing or writing one API account stays within
//! one budget.
//!
//! One task per process asks for all its budgets at once, never per
//! request: slots are taken in chunks when requests wait for slots the
//! process does not hold, renewed while in use, and given back when unused
//! since the last ask. A [`Budget`] admits requests only within the slots
//! held and their lease's time ([`super::limit`]), so a process that cannot
//! reach the database stops sending once its lease lapses; its lease in the
//! database outlives that by the window and a second, so the others never
//! take slots it may still have used in the window. While other processes
//! wait, each asks every 200 ms and keeps at most its fair share (half of
//! it when the lane waiting elsewhere outranks its own: writes, then polls,
//! then backfills).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use sequin_spec::model::RateLimit;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::auth::{BoxFuture, TokenStoreError};
use super::limit::{Answer, Ask, Budget};

/// One budget's ask, for the database.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountAsk {
    /// The budget's key (connector and account, or endpoint).
    pub account: String,
    /// The limit's requests per window.
    pub capacity: u32,
    /// Those reads may use.
    pub read_capacity: u32,
    /// How long the database keeps the lease if it is not renewed.
    pub ttl: Duration,
    /// Read slots kept of those held.
    pub reads: u32,
    /// Slots kept, reads included.
    pub total: u32,
    /// More read slots wanted.
    pub want_reads: u32,
    /// More slots wanted for writes.
    pub want_total: u32,
    /// The highest lane waiting here: 0 none, 1 backfill, 2 poll, 3 write.
    pub wants: i16,
    /// Until when the API said the account is limited, if it did.
    pub paused_until: Option<SystemTime>,
    /// Requests sent since the last ask.
    pub sent: u64,
}

/// The database's answer for one budget.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountAnswer {
    /// The ask's account.
    pub account: String,
    /// Read slots held now.
    pub reads: u32,
    /// Slots held now, reads included.
    pub total: u32,
    /// Processes holding slots of the account, this one included.
    pub holders: u32,
    /// The highest lane other processes have waiting (0 none).
    pub contended: i16,
    /// Until when every process holds back, if the API said so.
    pub paused_until: Option<SystemTime>,
    /// Requests every process sent to the account, in all.
    pub sent: u64,
}

/// Where the slots of shared budgets are kept. The runtime implements it
/// over Postgres (`sequin.rate_take`).
pub trait RateStore: Send + Sync {
    /// Keeps, takes and gives back `holder`'s slots of each ask's account,
    /// answering for each (asks come sorted by account).
    fn take<'a>(
        &'a self,
        holder: &'a str,
        asks: &'a [AccountAsk],
    ) -> BoxFuture<'a, Result<Vec<AccountAnswer>, TokenStoreError>>;
}

/// A budget due, with what its ask says.
struct Due {
    budget: Arc<Budget>,
    ask: Ask,
    hold: Duration,
    account: AccountAsk,
}

/// A budget the ledger asks for.
struct Entry {
    key: String,
    budget: Weak<Budget>,
    /// How long a lease serves without renewal.
    hold: Duration,
    /// The limit's requests per window, and those reads may use.
    capacity: u32,
    read_capacity: u32,
    /// Read slots asked at a time.
    chunk: u32,
    /// The limit's window.
    window: Duration,
    last: Option<Instant>,
}

impl Entry {
    fn renew(&self) -> Duration {
        self.hold / 3
    }

    /// The database keeps the lease past its hold by the window (the
    /// cool-down of the last requests sent under it) and a second.
    fn ttl(&self) -> Duration {
        self.hold + self.window + Duration::from_secs(1)
    }
}

/// The ledger of one process (and database).
pub struct Ledger {
    store: Arc<dyn RateStore>,
    /// This process, as the database knows it.
    holder: String,
    /// Sorted by key, so processes lock accounts in one order.
    entries: Mutex<Vec<Entry>>,
    wake: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger keeping its slots in `store`, as a new holder.
    pub(super) fn new(store: Arc<dyn RateStore>) -> Arc<Ledger> {
        Arc::new(Ledger {
            store,
            holder: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            entries: Mutex::new(Vec::new()),
            wake: Notify::new(),
            task: Mutex::new(None),
        })
    }

    /// Asks for `budget`'s slots from now on.
    pub(super) fn register(&self, key: &str, budget: &Arc<Budget>, limit: &RateLimit) {
        let window = limit.per.get();
        let (capacity, read_capacity) = budget.capacities();
        let entry = Entry {
            key: key.to_string(),
            budget: Arc::downgrade(budget),
            hold: (window * 3).max(Duration::from_secs(3)),
            capacity,
            read_capacity,
            chunk: read_capacity.div_ceil(4).max(1),
            window,
            last: None,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = entries.partition_point(|e| e.key < entry.key);
        entries.insert(at, entry);
    }

    /// Something waits for slots, or has news: ask soon. Starts the task
    /// on first use (and again if its runtime ended).
    pub(super) fn wake(self: &Arc<Self>) {
        {
            let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
            if task.as_ref().is_none_or(JoinHandle::is_finished)
                && let Ok(rt) = tokio::runtime::Handle::try_current()
            {
                *task = Some(rt.spawn(self.clone().run()));
            }
        }
        self.wake.notify_one();
    }

    /// The budgets due now, with their asks, and when the next one is.
    /// Renewals due within half a period go along with those due now, so
    /// one call serves many accounts.
    fn due(&self, now: Instant) -> (Vec<Due>, Option<Instant>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.budget.strong_count() > 0);
        let due: Vec<Option<Instant>> = entries
            .iter()
            .map(|e| e.budget.upgrade()?.due(now, e.last, e.renew()))
            .collect();
        if !due.iter().flatten().any(|at| *at <= now) {
            return (Vec::new(), due.into_iter().flatten().min());
        }
        let mut batch = Vec::new();
        for (e, at) in entries.iter_mut().zip(due) {
            let Some(at) = at else { continue };
            let renewal = e.last.is_some_and(|l| at == l + e.renew());
            if at > now && !(renewal && at <= now + e.renew() / 2) {
                continue;
            }
            let Some(budget) = e.budget.upgrade() else {
                continue;
            };
            let ask = budget.ask(e.chunk);
            e.last = Some(now);
            batch.push(Due {
                budget,
                ask,
                hold: e.hold,
                account: AccountAsk {
                    account: e.key.clone(),
                    capacity: e.capacity,
                    read_capacity: e.read_capacity,
                    ttl: e.ttl(),
                    reads: ask.reads,
                    total: ask.total,
                    want_reads: ask.want_reads,
                    want_total: ask.want_total,
                    wants: ask.wants,
                    paused_until: ask.paused_until.map(wall),
                    sent: ask.sent,
                },
            });
        }
        (batch, None)
    }

    /// Asks for every due budget in one call, and again whenever one is
    /// due or something wakes it.
    async fn run(self: Arc<Self>) {
        let mut failing = false;
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (batch, next) = self.due(Instant::now());
            if batch.is_empty() {
                match next {
                    Some(t) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(t) => {}
                            _ = woken => {}
                        }
                    }
                    None => woken.await,
                }
                continue;
            }
            let sent = Instant::now();
            let asks: Vec<AccountAsk> = batch.iter().map(|d| d.account.clone()).collect();
            match self.store.take(&self.holder, &asks).await {
                Ok(answers) => {
                    failing = false;
                    let by_account: HashMap<&str, &AccountAnswer> =
                        answers.iter().map(|a| (a.account.as_str(), a)).collect();
                    for d in &batch {
                        if let Some(a) = by_account.get(d.account.account.as_str()) {
                            d.budget.answer(&d.ask, answer(a), sent, d.hold);
                        }
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot take rate-limit slots from the database; API requests wait until it answers");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            // Demand arriving meanwhile is served together by the next call.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An answer as the budget takes it.
fn answer(a: &AccountAnswer) -> Answer {
    Answer {
        reads: a.reads,
        total: a.total,
        holders: a.holders,
        contended: a.contended,
        paused_until: a.paused_until.and_then(monotonic),
        sent: a.sent,
    }
}

/// A monotonic instant as wall-clock time, for other processes.
fn wall(t: Instant) -> SystemTime {
    SystemTime::now() + t.saturating_duration_since(Instant::now())
}

/// Wall-clock time as a monotonic instant, if it is still ahead.
fn monotonic(t: SystemTime) -> Option<Instant> {
    let ahead = t.duration_since(SystemTime::now()).ok()?;
    Some(Instant::now() + ahead)
}
