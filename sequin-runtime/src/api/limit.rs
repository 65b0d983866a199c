//! The rate-limit budget of an account: Sequin never sends more requests
//! than the spec's `rate_limit` allows, and keeps a share of it for writes.
//!
//! Two rules admit a request:
//! - **Window**: at most `requests` in any window of length `per`. A slot is
//!   taken when a request is sent and freed `per` after its response has
//!   been received. Holding the slot until the response arrived is what makes
//!   the guarantee hold at the server, whatever the network delays: the
//!   server saw the old request before we got its answer, and sees the new
//!   one after we sent it, so the two arrivals are at least `per` apart. (A
//!   plain token bucket of capacity N refilling N per window admits up to
//!   2N-1 requests in one window, which APIs counting a sliding window
//!   reject.)
//! - **Burst** (only when `burst` < `requests`): a token bucket of capacity
//!   `burst` refilling `requests` per `per`, so an idle account does not
//!   fire its whole window at once.
//!
//! Requests carry a [`Priority`]: reads (sync) may only use
//! `(1 - write_share)` of either allowance, so a write-through always finds
//! room during a backfill. Among reads, a backfill's (first listings, child
//! walks) may be waiting while polls keep the read share busy (an account
//! with dozens of objects re-listed whole every poll): while one waits,
//! polls may use only half of the read share, so backfills keep moving and
//! polls do not stop ([`Lane`]). One [`Budget`] is shared by every client
//! of the same account in a process (see [`Budgets`]); across processes,
//! each process holds a lease of some of the account's slots and admits
//! requests only within it ([`Grant`], taken and renewed in chunks by
//! [`super::ledger`]).

use std::collections::{HashMap, VecDeque};
use std::pin::pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sequin_spec::model::{EndpointLimit, RateLimit};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::ledger::{Ledger, RateStore};
use super::quota::QuotaGate;

/// Who a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Sync: may use `(1 - write_share)` of the budget.
    Read,
    /// Write-through: may use all of it.
    Write,
}

/// Which share of the budget a request draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Write-through: all of it.
    Write,
    /// A backfill's read: the read share.
    Backfill,
    /// Any other read (polls, discovery): the read share, or half of it
    /// while a backfill's read waits.
    Poll,
}

impl Lane {
    fn priority(self) -> Priority {
        match self {
            Lane::Write => Priority::Write,
            Lane::Backfill | Lane::Poll => Priority::Read,
        }
    }

    /// Its rank among processes asking for slots: writes first, then
    /// polls, then backfills (0 is none).
    pub(super) fn rank(self) -> i16 {
        match self {
            Lane::Backfill => 1,
            Lane::Poll => 2,
            Lane::Write => 3,
        }
    }

    fn index(self) -> usize {
        self.rank() as usize - 1
    }

    const ALL: [Lane; 3] = [Lane::Backfill, Lane::Poll, Lane::Write];
}

/// Parses a duration as specs write them (the grammar `cargo xtask gen`
/// checks): `500ms`, `1s`, `10s`, `5m`, `24h`, `30d`.
pub use sequin_spec::duration::parse as parse_duration;

/// Why a request cannot go yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Try again at this time.
    Until(Instant),
    /// Every usable slot belongs to a request still in flight: wait for one
    /// to finish.
    Release,
    /// The slots this process holds of a shared budget are in use: wait for
    /// the ledger to take more, or for one of them to free (at this time,
    /// if one is cooling down).
    Grant(Option<Instant>),
}

/// The slots of a budget shared across processes that this process holds:
/// it admits reads while fewer than `reads` slots are in use, writes while
/// fewer than `total`, and none after `until` unless the lease was renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Grant {
    pub reads: u32,
    pub total: u32,
    pub until: Instant,
}

/// What the ledger asks of the database for one shared budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ask {
    /// Read slots it keeps of those it holds.
    pub reads: u32,
    /// Slots it keeps, reads included (never fewer than those in use).
    pub total: u32,
    /// More read slots wanted.
    pub want_reads: u32,
    /// More slots wanted for writes.
    pub want_total: u32,
    /// The highest lane waiting (0 none).
    pub wants: i16,
    /// Until when the API said the account is limited, if it did.
    pub paused_until: Option<Instant>,
    /// Requests sent since the last ask.
    pub sent: u64,
}

/// What the database answered for one shared budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Answer {
    pub reads: u32,
    pub total: u32,
    /// Processes holding slots of the account, this one included.
    pub holders: u32,
    /// The highest lane other processes have waiting (0 none).
    pub contended: i16,
    pub paused_until: Option<Instant>,
    /// Requests every process sent to the account, in all.
    pub sent: u64,
}

/// The burst bucket.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
    /// Tokens reads must leave in the bucket.
    read_reserve: f64,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        self.last = now;
    }
}

/// The budget's arithmetic, with time passed in (so it is testable).
#[derive(Debug)]
struct Core {
    window: Duration,
    capacity: u32,
    read_capacity: u32,
    in_flight: u32,
    /// When each finished request's slot frees, oldest first.
    releases: VecDeque<Instant>,
    bucket: Option<Bucket>,
    paused_until: Option<Instant>,
    /// Requests waiting for a slot now, by lane ([`Lane::index`]).
    waiting: [u32; 3],
    /// The slots held of a budget shared across processes (`None`: the
    /// budget is this process's alone).
    grant: Option<Grant>,
    /// The most slots in use at once since the ledger last asked.
    peak: u32,
    /// What the database last said of the other processes.
    holders: u32,
    contended: i16,
    /// The ledger should ask now: a request waits for slots this process
    /// does not hold, or the API paused the account.
    urgent: bool,
    /// Requests admitted since the ledger last asked.
    sent: u64,
    /// The account's count of requests sent, as last answered.
    account_sent: Option<u64>,
}

impl Core {
    fn new(limit: &RateLimit, window: Duration, now: Instant) -> Core {
        let capacity = limit.requests.max(1);
        let share = limit.write_share.clamp(0.0, 1.0);
        let read_capacity = reads_may_use(capacity, share);
        let burst = limit.burst.unwrap_or(capacity).clamp(1, capacity);
        let bucket = (burst < capacity).then(|| Bucket {
            capacity: f64::from(burst),
            tokens: f64::from(burst),
            per_sec: f64::from(capacity) / window.as_secs_f64(),
            last: now,
            read_reserve: f64::from(burst - reads_may_use(burst, share)),
        });
        Core {
            window,
            capacity,
            read_capacity,
            in_flight: 0,
            releases: VecDeque::new(),
            bucket,
            paused_until: None,
            waiting: [0; 3],
            grant: None,
            peak: 0,
            holders: 1,
            contended: 0,
            urgent: false,
            sent: 0,
            account_sent: None,
        }
    }

    /// Slots in use now (in flight or cooling down).
    fn used(&mut self, now: Instant) -> u32 {
        while self.releases.front().is_some_and(|t| *t <= now) {
            self.releases.pop_front();
        }
        self.in_flight + self.releases.len() as u32
    }

    /// Read and write caps: the account's, within what this process holds
    /// of a shared budget (nothing once its lease lapsed).
    fn caps(&self, now: Instant) -> (u32, u32) {
        match self.grant {
            None => (self.read_capacity, self.capacity),
            Some(g) if g.until <= now => (0, 0),
            Some(g) => (g.reads.min(self.read_capacity), g.total.min(self.capacity)),
        }
    }

    /// [`Core::try_acquire_in`] with a read counted as a poll's.
    #[cfg(test)]
    fn try_acquire(&mut self, now: Instant, priority: Priority) -> Result<(), Wait> {
        let lane = match priority {
            Priority::Write => Lane::Write,
            Priority::Read => Lane::Poll,
        };
        self.try_acquire_in(now, lane)
    }

    fn try_acquire_in(&mut self, now: Instant, lane: Lane) -> Result<(), Wait> {
        let priority = lane.priority();
        if let Some(p) = self.paused_until {
            if p > now {
                return Err(Wait::Until(p));
            }
            self.paused_until = None;
        }
        let used = self.used(now);
        let (own_reads, own_total) = (self.read_capacity, self.capacity);
        let (reads, total) = self.caps(now);
        let cap_of = |reads: u32, total: u32| match lane {
            Lane::Write => total,
            Lane::Backfill => reads,
            Lane::Poll if self.waiting[Lane::Backfill.index()] > 0 => (reads / 2).max(reads.min(1)),
            Lane::Poll => reads,
        };
        let cap = cap_of(reads, total);
        if used >= cap {
            // `used - cap + 1` slots must free; in-flight ones free at an
            // unknown time, finished ones in order.
            let next = self
                .releases
                .get(used.saturating_sub(cap) as usize)
                .copied();
            if used < cap_of(own_reads, own_total) {
                // The account has room this process does not hold.
                self.urgent = true;
                return Err(Wait::Grant(next));
            }
            return Err(match next {
                Some(t) => Wait::Until(t),
                None => Wait::Release,
            });
        }
        if let Some(b) = &mut self.bucket {
            b.refill(now);
            let need = 1.0
                + match priority {
                    Priority::Read => b.read_reserve,
                    Priority::Write => 0.0,
                };
            if b.tokens + 1e-9 < need {
                let secs = (need - b.tokens) / b.per_sec;
                return Err(Wait::Until(now + Duration::from_secs_f64(secs)));
            }
            b.tokens -= 1.0;
        }
        self.in_flight += 1;
        self.peak = self.peak.max(used + 1);
        self.sent += 1;
        Ok(())
    }

    /// What to ask of the database for this budget's slots now, with
    /// `chunk` more read slots asked when reads wait (writes ask for the
    /// write reserve, or half of it). Slots beyond what was in use since the
    /// last ask are given back, and under contention (others wait) those
    /// beyond a fair share, or half of it when the others' lane outranks
    /// every lane waiting here.
    fn ask(&mut self, now: Instant, chunk: u32) -> Ask {
        let used = self.used(now);
        let g = self
            .grant
            .filter(|g| g.until > now)
            .map_or((0, 0), |g| (g.reads, g.total));
        let own = Lane::ALL
            .iter()
            .filter(|l| self.waiting[l.index()] > 0)
            .map(|l| l.rank())
            .max()
            .unwrap_or(0);
        let recent = self.peak.max(used);
        let (mut reads, mut total) = if own > 0 {
            g
        } else {
            (g.0.min(recent), g.1.min(recent))
        };
        if self.contended > 0 && self.contended >= own {
            let holders = self.holders.max(1);
            let mut fair = (
                self.read_capacity.div_ceil(holders),
                self.capacity.div_ceil(holders),
            );
            if self.contended > own {
                fair = (fair.0 / 2, fair.1 / 2);
            }
            reads = reads.min(fair.0);
            total = total.min(fair.1);
        }
        // Slots in use stay counted until they cool down: of the total, and
        // of the reads as far as they may be reads (so the reads of all
        // processes never eat into the write reserve).
        let reads = reads.max(used.min(g.0));
        let total = total.max(used).max(reads);
        let read_waiters = self.waiting[Lane::Backfill.index()] + self.waiting[Lane::Poll.index()];
        let write_waiters = self.waiting[Lane::Write.index()];
        let reserve = (self.capacity - self.read_capacity).max(1);
        // What is given back is given back now: no request may take it
        // while the ask is on its way and the others already count it free.
        if let Some(g) = &mut self.grant {
            g.reads = g.reads.min(reads);
            g.total = g.total.min(total);
        }
        self.peak = used;
        self.urgent = false;
        Ask {
            sent: std::mem::take(&mut self.sent),
            reads,
            total,
            want_reads: if read_waiters > 0 { chunk.max(1) } else { 0 },
            want_total: if write_waiters > 0 {
                reserve.div_ceil(2).max(write_waiters.min(reserve))
            } else {
                0
            },
            wants: own,
            paused_until: self.paused_until.filter(|p| *p > now),
        }
    }

    /// Takes the database's answer to `ask`: the slots held until `until`.
    /// Returns how many requests the other processes sent since the last
    /// answer.
    fn answer(&mut self, ask: &Ask, answer: Answer, until: Instant) -> u64 {
        let elsewhere = self
            .account_sent
            .map_or(0, |seen| answer.sent.saturating_sub(seen + ask.sent));
        self.account_sent = Some(answer.sent);
        self.grant = Some(Grant {
            reads: answer.reads,
            total: answer.total,
            until,
        });
        self.holders = answer.holders;
        self.contended = answer.contended;
        if let Some(p) = answer.paused_until {
            self.pause_until(p);
        }
        elsewhere
    }

    /// Whether the ledger has anything to ask for this budget: slots held
    /// (to renew or give back), requests waiting, or a pause to share.
    fn active(&self, now: Instant) -> bool {
        self.grant.is_some_and(|g| g.total > 0 && g.until > now)
            || self.waiting.iter().any(|w| *w > 0)
            || self.paused_until.is_some_and(|p| p > now)
    }

    /// When the ledger should ask next for this budget, last asked at
    /// `last`: soon when something waits here, every 200 ms while other
    /// processes wait (to give back in time), else every `renew`.
    fn due(&self, now: Instant, last: Option<Instant>, renew: Duration) -> Option<Instant> {
        if !self.active(now) {
            return None;
        }
        let Some(last) = last else {
            return Some(now);
        };
        Some(if self.urgent {
            last + Duration::from_millis(50)
        } else if self.contended > 0 {
            last + Duration::from_millis(200)
        } else {
            last + renew
        })
    }

    fn release(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let free_at = now + self.window;
        let free_at = match self.releases.back() {
            Some(last) if *last > free_at => *last,
            _ => free_at,
        };
        self.releases.push_back(free_at);
    }

    fn pause_until(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
    }
}

/// Slots reads may use out of `capacity`: `floor(capacity * (1 - share))`,
/// at least one, and at least one slot left for writes when a share is set.
fn reads_may_use(capacity: u32, write_share: f64) -> u32 {
    let mut reads = ((f64::from(capacity)) * (1.0 - write_share)).floor() as u32;
    if write_share > 0.0 && capacity > 1 {
        reads = reads.min(capacity - 1);
    }
    reads.clamp(1, capacity)
}

/// The request budget of one account (or one value of `per_param`).
#[derive(Debug)]
pub struct Budget {
    core: Mutex<Core>,
    notify: Notify,
    /// What takes this process's slots of the account from the database,
    /// when the budget is shared across processes.
    ledger: Option<Arc<Ledger>>,
    /// The account's quota gate, which the other processes' requests count
    /// against too.
    quota: Mutex<Option<Weak<QuotaGate>>>,
}

/// A taken slot; dropping it (when the response has been read) starts the
/// slot's cool-down.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<Budget>,
    /// How long the request waited for the slot, if it had to.
    waited: Option<Duration>,
}

impl Permit {
    /// How long the request was held back for its slot (`None`: a slot was
    /// free at once).
    pub fn waited(&self) -> Option<Duration> {
        self.waited
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.lock().release(Instant::now());
        self.budget.notify.notify_waiters();
    }
}

impl Budget {
    /// A budget for `limit`, this process's alone.
    pub fn new(limit: &RateLimit) -> Arc<Budget> {
        Arc::new(Budget {
            core: Mutex::new(Core::new(limit, limit.per.get(), Instant::now())),
            notify: Notify::new(),
            ledger: None,
            quota: Mutex::new(None),
        })
    }

    /// A budget for `limit` shared with other processes through `ledger`
    /// under `key`: it admits nothing until the ledger took slots for it.
    fn shared(limit: &RateLimit, key: &str, ledger: &Arc<Ledger>) -> Arc<Budget> {
        let now = Instant::now();
        let mut core = Core::new(limit, limit.per.get(), now);
        core.grant = Some(Grant {
            reads: 0,
            total: 0,
            until: now,
        });
        let budget = Arc::new(Budget {
            core: Mutex::new(core),
            notify: Notify::new(),
            ledger: Some(ledger.clone()),
            quota: Mutex::new(None),
        });
        ledger.register(key, &budget, limit);
        budget
    }

    /// When the ledger should next ask for this budget (last asked at
    /// `last`, renewing every `renew`); `None` while it holds nothing and
    /// nothing waits.
    pub(super) fn due(
        &self,
        now: Instant,
        last: Option<Instant>,
        renew: Duration,
    ) -> Option<Instant> {
        self.lock().due(now, last, renew)
    }

    /// What the ledger asks of the database for this budget now.
    pub(super) fn ask(&self, chunk: u32) -> Ask {
        self.lock().ask(Instant::now(), chunk)
    }

    /// The database's answer to `ask` sent at `sent`, the slots held for
    /// `hold` from then. The other processes' requests count against the
    /// account's quota here too.
    pub(super) fn answer(&self, ask: &Ask, answer: Answer, sent: Instant, hold: Duration) {
        let elsewhere = self.lock().answer(ask, answer, sent + hold);
        self.notify.notify_waiters();
        let gate = self.quota.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(gate) = gate.and_then(|g| g.upgrade())
            && elsewhere > 0
        {
            gate.sent_elsewhere(elsewhere);
        }
    }

    /// Counts the requests other processes send to the account against
    /// `gate`, the account's quota gate.
    pub fn count_quota(&self, gate: &Arc<QuotaGate>) {
        *self.quota.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(gate));
    }

    /// The slots of the account, and those reads may use.
    pub(super) fn capacities(&self) -> (u32, u32) {
        let core = self.lock();
        (core.capacity, core.read_capacity)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        // The arithmetic never panics half-way; a poisoned lock is still consistent.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request of `priority` may be sent (a read as a poll's).
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Permit {
        self.acquire_in(match priority {
            Priority::Write => Lane::Write,
            Priority::Read => Lane::Poll,
        })
        .await
    }

    /// Waits until a request of `lane` may be sent.
    pub async fn acquire_in(self: &Arc<Self>, lane: Lane) -> Permit {
        let asked = Instant::now();
        let mut waited = false;
        // Counted among the waiting requests of its lane from its first wait
        // until it gets a slot or is dropped.
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            // Registered before looking, so a release in between is not missed.
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let outcome = self.lock().try_acquire_in(Instant::now(), lane);
            if outcome.is_err() && waiting.is_none() {
                waiting = Some(Waiting::new(self, lane));
            }
            let until = match outcome {
                Ok(()) => {
                    return Permit {
                        budget: self.clone(),
                        waited: waited.then(|| asked.elapsed()),
                    };
                }
                Err(Wait::Until(t)) => Some(t),
                Err(Wait::Release) => None,
                Err(Wait::Grant(next)) => {
                    if let Some(ledger) = &self.ledger {
                        ledger.wake();
                    }
                    // Looked at again at least every second, whatever the
                    // ledger does.
                    Some(next.unwrap_or_else(|| Instant::now() + Duration::from_secs(1)))
                }
            };
            match until {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
            waited = true;
        }
    }

    /// Holds every request back for `wait` (the API said it is limited:
    /// everyone sharing the account must wait, not just the one request).
    pub fn pause_for(&self, wait: Duration) {
        {
            let mut core = self.lock();
            core.pause_until(Instant::now() + wait);
            core.urgent = true;
        }
        if let Some(ledger) = &self.ledger {
            // The other processes hold back too, once the ledger told them.
            ledger.wake();
        }
    }

    /// How much longer every request is held back after the API said the
    /// account is limited, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .paused_until
            .filter(|p| *p > now)
            .map(|p| p - now)
    }

    /// Requests the window allows (writes may use all of them).
    pub fn capacity(&self) -> u32 {
        self.lock().capacity
    }

    /// Slots in use now (in flight or cooling down), for metrics.
    pub fn in_use(&self) -> u32 {
        self.lock().used(Instant::now())
    }
}

/// The account-like limit of an endpoint limit: its own requests and
/// window, the account's write share (so reads leave writes room there too).
pub fn endpoint_limit(account: &RateLimit, endpoint: &EndpointLimit) -> RateLimit {
    RateLimit {
        requests: endpoint.requests,
        per: endpoint.per.clone(),
        burst: None,
        write_share: account.write_share,
        per_param: None,
        retry_after_header: None,
        remaining_header: None,
        reset_header: None,
        extra_statuses: vec![],
        endpoints: vec![],
    }
}

/// A request waiting for a slot, counted in its lane while it lives.
struct Waiting<'a>(&'a Budget, Lane);

impl<'a> Waiting<'a> {
    fn new(budget: &'a Budget, lane: Lane) -> Self {
        budget.lock().waiting[lane.index()] += 1;
        Waiting(budget, lane)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut core = self.0.lock();
        let n = &mut core.waiting[self.1.index()];
        *n = n.saturating_sub(1);
    }
}

/// Budgets by account key, so every client of one account shares one (and
/// one quota gate, [`super::quota`]).
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    map: Arc<Mutex<HashMap<String, Arc<Budget>>>>,
    quotas: Arc<Mutex<HashMap<String, Arc<super::quota::QuotaGate>>>>,
    /// Shares every budget with other processes, when set.
    ledger: Option<Arc<Ledger>>,
}

impl Budgets {
    /// An empty registry of budgets of this process alone.
    pub fn new() -> Budgets {
        Budgets::default()
    }

    /// An empty registry of budgets shared with every other process that
    /// keeps its slots in `store` (see [`super::ledger`]).
    pub fn shared(store: Arc<dyn RateStore>) -> Budgets {
        Budgets {
            ledger: Some(Ledger::new(store)),
            ..Budgets::default()
        }
    }

    /// The budget of `key`, created from `limit` on first use.
    pub fn get(&self, key: &str, limit: &RateLimit) -> Arc<Budget> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(key) {
            return b.clone();
        }
        let b = match &self.ledger {
            Some(ledger) => Budget::shared(limit, key, ledger),
            None => Budget::new(limit),
        };
        map.insert(key.to_string(), b.clone());
        b
    }

    /// The quota gate of `key`, made by `make` on first use.
    pub fn quota(
        &self,
        key: &str,
        make: impl FnOnce() -> super::quota::QuotaGate,
    ) -> Arc<super::quota::QuotaGate> {
        let mut map = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.to_string())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per: &str, burst: Option<u32>, write_share: f64) -> RateLimit {
        RateLimit {
            requests,
            per: per.parse().unwrap(),
            burst,
            write_share,
            per_param: None,
            retry_after_header: None,
            remaining_header: None,
            reset_header: None,
            extra_statuses: vec![],
            endpoints: vec![],
        }
    }

    #[test]
    fn endpoint_limits_cover_their_paths_and_method() {
        let search = EndpointLimit {
            method: Some(sequin_spec::model::Method::Post),
            path: "/crm/v3/objects/*/search".into(),
            requests: 5,
            per: "1s".parse().unwrap(),
        };
        use sequin_spec::model::Method::{Get, Post};
        assert!(search.covers(Post, "/crm/v3/objects/contacts/search"));
        assert!(search.covers(Post, "/crm/v3/objects/{object_type_id}/search"));
        assert!(!search.covers(Get, "/crm/v3/objects/contacts/search"));
        assert!(!search.covers(Post, "/crm/v3/objects/contacts"));
        assert!(!search.covers(Post, "/crm/v3/objects/contacts/batch/read"));
        assert!(!search.covers(Post, "/crm/v3/objects/a/b/search"));
        let own = endpoint_limit(&limit(100, "10s", None, 0.2), &search);
        assert_eq!((own.requests, own.per.get()), (5, Duration::from_secs(1)));
        assert_eq!(own.write_share, 0.2);
        // Reads get 4 of the 5 a second, writes the fifth.
        let mut core = Core::new(&own, own.per.get(), Instant::now());
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(core.try_acquire(now, Priority::Read), Ok(()));
        }
        assert_eq!(core.try_acquire(now, Priority::Read), Err(Wait::Release));
        assert_eq!(core.try_acquire(now, Priority::Write), Ok(()));
    }

    #[test]
    fn polls_leave_half_the_read_share_to_a_waiting_backfill() {
        let now = Instant::now();
        let mut core = Core::new(&limit(10, "1s", None, 0.2), Duration::from_secs(1), now);
        // 8 read slots; no backfill waits: polls may take them all.
        for _ in 0..4 {
            assert_eq!(core.try_acquire_in(now, Lane::Poll), Ok(()));
        }
        core.waiting[Lane::Backfill.index()] = 1;
        // Half the read share is in use by polls: they wait, the backfill goes.
        assert_eq!(core.try_acquire_in(now, Lane::Poll), Err(Wait::Release));
        assert_eq!(core.try_acquire_in(now, Lane::Backfill), Ok(()));
        core.waiting[Lane::Backfill.index()] = 0;
        assert_eq!(core.try_acquire_in(now, Lane::Poll), Ok(()));
        // Writes keep their reserve whatever the reads do.
        for _ in 0..2 {
            assert_eq!(core.try_acquire_in(now, Lane::Backfill), Ok(()));
        }
        assert_eq!(core.try_acquire_in(now, Lane::Backfill), Err(Wait::Release));
        assert_eq!(core.try_acquire_in(now, Lane::Write), Ok(()));
    }

    #[tokio::test]
    async fn a_dropped_backfill_wait_is_no_longer_counted() {
        let budget = Budget::new(&limit(1, "1s", None, 0.0));
        let held = budget.acquire_in(Lane::Poll).await;
        let waiting = budget.clone();
        let task = tokio::spawn(async move { waiting.acquire_in(Lane::Backfill).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(budget.lock().waiting[Lane::Backfill.index()], 1);
        task.abort();
        let _ = task.await;
        assert_eq!(budget.lock().waiting[Lane::Backfill.index()], 0);
        drop(held);
    }

    fn grant(reads: u32, total: u32, until: Instant) -> Option<Grant> {
        Some(Grant {
            reads,
            total,
            until,
        })
    }

    #[test]
    fn a_shared_budget_admits_only_what_this_process_holds() {
        let now = Instant::now();
        let mut core = Core::new(&limit(10, "1s", None, 0.2), Duration::from_secs(1), now);
        core.grant = grant(2, 3, now + Duration::from_secs(3));
        assert_eq!(core.try_acquire_in(now, Lane::Backfill), Ok(()));
        assert_eq!(core.try_acquire_in(now, Lane::Poll), Ok(()));
        // The account has 8 read slots, this process holds 2: ask the ledger.
        assert_eq!(core.try_acquire_in(now, Lane::Poll), Err(Wait::Grant(None)));
        assert!(core.urgent);
        assert_eq!(core.try_acquire_in(now, Lane::Write), Ok(()));
        assert_eq!(
            core.try_acquire_in(now, Lane::Write),
            Err(Wait::Grant(None))
        );
        // A lease not renewed in time admits nothing, writes included.
        core.release(now);
        let later = now + Duration::from_secs(3);
        assert_eq!(
            core.try_acquire_in(later, Lane::Write),
            Err(Wait::Grant(None))
        );
        // The account's own limit still speaks first when it is the one full.
        let mut core = Core::new(&limit(2, "1s", None, 0.0), Duration::from_secs(1), now);
        core.grant = grant(2, 2, now + Duration::from_secs(3));
        core.try_acquire_in(now, Lane::Poll).unwrap();
        core.try_acquire_in(now, Lane::Poll).unwrap();
        assert_eq!(core.try_acquire_in(now, Lane::Poll), Err(Wait::Release));
    }

    #[test]
    fn asks_give_back_what_went_unused_and_yield_to_others_waiting() {
        let now = Instant::now();
        let until = now + Duration::from_secs(3);
        let mut core = Core::new(&limit(10, "1s", None, 0.2), Duration::from_secs(1), now);
        // Holds 8 of 10, used 3 at most since the last ask, nothing waits:
        // keeps the 3.
        core.grant = grant(8, 10, until);
        for _ in 0..3 {
            core.try_acquire_in(now, Lane::Poll).unwrap();
        }
        let ask = core.ask(now, 2);
        assert_eq!(
            (ask.reads, ask.total, ask.want_reads, ask.want_total),
            (3, 3, 0, 0)
        );
        assert_eq!(ask.wants, 0);
        // What it gives back is no longer its own, before the answer comes.
        assert_eq!(
            core.try_acquire_in(now, Lane::Write),
            Err(Wait::Grant(None))
        );
        core.grant = grant(8, 10, until);
        // Reads wait: it keeps all it holds and asks for a chunk more.
        core.waiting[Lane::Backfill.index()] = 1;
        let ask = core.ask(now, 2);
        assert_eq!((ask.reads, ask.total, ask.want_reads), (8, 10, 2));
        assert_eq!(ask.wants, Lane::Backfill.rank());
        // Another process's polls wait, outranking this backfill: it keeps
        // half its fair share, and no fewer than it has in use.
        let asked = core.ask(now, 2);
        core.answer(
            &asked,
            Answer {
                reads: 8,
                total: 8,
                holders: 2,
                contended: Lane::Poll.rank(),
                paused_until: None,
                sent: 3,
            },
            until,
        );
        let ask = core.ask(now, 2);
        assert_eq!((ask.reads, ask.total), (3, 3));
        // Writes wait: they ask for half the write reserve.
        core.waiting[Lane::Write.index()] = 1;
        core.contended = 0;
        let ask = core.ask(now, 2);
        assert_eq!((ask.want_total, ask.wants), (1, Lane::Write.rank()));
    }

    #[test]
    fn read_share_keeps_room_for_writes() {
        assert_eq!(reads_may_use(5, 0.2), 4);
        assert_eq!(reads_may_use(25, 0.2), 20);
        assert_eq!(reads_may_use(100_000, 0.2), 80_000);
        assert_eq!(reads_may_use(5, 0.0), 5);
        // Tiny budgets: reads get one slot, writes keep one.
        assert_eq!(reads_may_use(2, 0.2), 1);
        assert_eq!(reads_may_use(1, 0.2), 1);
        assert_eq!(reads_may_use(10, 0.05), 9);
    }

    #[test]
    fn window_never_admits_more_than_the_limit() {
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        let mut c = Core::new(&limit(5, "1s", None, 0.2), sec, t0);
        for _ in 0..4 {
            assert_eq!(c.try_acquire(t0, Priority::Read), Ok(()));
        }
        // Reads used their 4 of 5; all in flight.
        assert_eq!(c.try_acquire(t0, Priority::Read), Err(Wait::Release));
        assert_eq!(c.try_acquire(t0, Priority::Write), Ok(()));
        assert_eq!(c.try_acquire(t0, Priority::Write), Err(Wait::Release));
        // Two responses arrive 100 ms later: their slots free a second after that.
        let t1 = t0 + Duration::from_millis(100);
        c.release(t1);
        c.release(t1);
        assert_eq!(
            c.try_acquire(t1, Priority::Write),
            Err(Wait::Until(t1 + sec))
        );
        let t2 = t1 + sec;
        assert_eq!(c.try_acquire(t2, Priority::Read), Ok(()));
        // 3 in flight + 1 new = 4: reads are full again, one write slot left.
        assert_eq!(c.try_acquire(t2, Priority::Read), Err(Wait::Release));
        assert_eq!(c.try_acquire(t2, Priority::Write), Ok(()));
    }

    #[test]
    fn sustained_rate_is_exactly_the_limit() {
        // Instant responses, greedy client: count admissions per window.
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        let mut c = Core::new(&limit(5, "1s", None, 0.0), sec, t0);
        let mut now = t0;
        let mut admitted = Vec::new();
        while now < t0 + Duration::from_secs(10) {
            match c.try_acquire(now, Priority::Read) {
                Ok(()) => {
                    admitted.push(now);
                    c.release(now);
                }
                Err(Wait::Until(t)) => now = t,
                Err(Wait::Release | Wait::Grant(_)) => unreachable!("responses are instant"),
            }
        }
        assert_eq!(admitted.len(), 50);
        for (i, t) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < sec)
                .count();
            assert!(in_window <= 5, "{in_window} requests within 1s of #{i}");
        }
    }

    #[test]
    fn burst_bucket_spreads_requests() {
        // 10 per 10s with a burst of 2: refills one token per second.
        let t0 = Instant::now();
        let mut c = Core::new(&limit(10, "10s", Some(2), 0.0), Duration::from_secs(10), t0);
        assert_eq!(c.try_acquire(t0, Priority::Read), Ok(()));
        assert_eq!(c.try_acquire(t0, Priority::Read), Ok(()));
        assert_eq!(
            c.try_acquire(t0, Priority::Read),
            Err(Wait::Until(t0 + Duration::from_secs(1)))
        );
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!(c.try_acquire(t1, Priority::Read), Ok(()));
        // Half a token left: the next one is 0.5 s away.
        assert_eq!(
            c.try_acquire(t1, Priority::Read),
            Err(Wait::Until(t1 + Duration::from_millis(500)))
        );
    }

    #[test]
    fn burst_bucket_reserves_tokens_for_writes() {
        let t0 = Instant::now();
        let mut c = Core::new(
            &limit(100, "10s", Some(10), 0.2),
            Duration::from_secs(10),
            t0,
        );
        let mut reads = 0;
        while c.try_acquire(t0, Priority::Read).is_ok() {
            reads += 1;
        }
        assert_eq!(reads, 8);
        assert_eq!(c.try_acquire(t0, Priority::Write), Ok(()));
        assert_eq!(c.try_acquire(t0, Priority::Write), Ok(()));
        assert!(c.try_acquire(t0, Priority::Write).is_err());
    }

    #[test]
    fn pauses_hold_everyone() {
        let t0 = Instant::now();
        let mut c = Core::new(&limit(5, "1s", None, 0.0), Duration::from_secs(1), t0);
        let until = t0 + Duration::from_secs(3);
        c.pause_until(until);
        c.pause_until(t0 + Duration::from_secs(1));
        assert_eq!(c.try_acquire(t0, Priority::Write), Err(Wait::Until(until)));
        assert_eq!(c.try_acquire(until, Priority::Write), Ok(()));
    }

    #[tokio::test]
    async fn shared_budget_blocks_and_wakes() {
        let budgets = Budgets::new();
        let l = limit(2, "200ms", None, 0.0);
        let a = budgets.get("airtable:app1", &l);
        let b = budgets.get("airtable:app1", &l);
        assert!(Arc::ptr_eq(&a, &b));
        let other = budgets.get("airtable:app2", &l);
        assert!(!Arc::ptr_eq(&a, &other));
        let p1 = a.acquire(Priority::Read).await;
        let _p2 = b.acquire(Priority::Read).await;
        assert_eq!(a.in_use(), 2);
        let start = Instant::now();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move {
                let _p = a.acquire(Priority::Read).await;
                Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(p1);
        let admitted = waiter.await.unwrap();
        // Freed 200 ms after the release, which came 50 ms in.
        assert!(admitted.duration_since(start) >= Duration::from_millis(250));
    }
}
