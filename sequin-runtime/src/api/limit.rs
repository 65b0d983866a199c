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
//! of the same account (see [`Budgets`]).

use std::collections::{HashMap, VecDeque};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sequin_spec::model::{EndpointLimit, RateLimit};
use tokio::sync::Notify;
use tokio::time::Instant;

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
    /// Backfill reads waiting for a slot now.
    backfills_waiting: u32,
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
            backfills_waiting: 0,
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
        while self.releases.front().is_some_and(|t| *t <= now) {
            self.releases.pop_front();
        }
        let cap = match lane {
            Lane::Write => self.capacity,
            Lane::Backfill => self.read_capacity,
            Lane::Poll if self.backfills_waiting > 0 => (self.read_capacity / 2).max(1),
            Lane::Poll => self.read_capacity,
        };
        let used = self.in_flight + self.releases.len() as u32;
        if used >= cap {
            // `used - cap + 1` slots must free; in-flight ones free at an
            // unknown time, finished ones in order.
            let nth = (used - cap) as usize;
            return Err(match self.releases.get(nth) {
                Some(t) => Wait::Until(*t),
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
        Ok(())
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
    /// A budget for `limit`.
    pub fn new(limit: &RateLimit) -> Arc<Budget> {
        Arc::new(Budget {
            core: Mutex::new(Core::new(limit, limit.per.get(), Instant::now())),
            notify: Notify::new(),
        })
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
        // Counted among the waiting backfills from its first wait until it
        // gets a slot or is dropped.
        let mut waiting: Option<BackfillWaiting<'_>> = None;
        loop {
            // Registered before looking, so a release in between is not missed.
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let outcome = self.lock().try_acquire_in(Instant::now(), lane);
            if outcome.is_err() && lane == Lane::Backfill && waiting.is_none() {
                waiting = Some(BackfillWaiting::new(self));
            }
            match outcome {
                Ok(()) => {
                    return Permit {
                        budget: self.clone(),
                        waited: waited.then(|| asked.elapsed()),
                    };
                }
                Err(Wait::Until(t)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = notified => {}
                    }
                }
                Err(Wait::Release) => notified.await,
            }
            waited = true;
        }
    }

    /// Holds every request back for `wait` (the API said it is limited:
    /// everyone sharing the account must wait, not just the one request).
    pub fn pause_for(&self, wait: Duration) {
        self.lock().pause_until(Instant::now() + wait);
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
        let now = Instant::now();
        let mut core = self.lock();
        while core.releases.front().is_some_and(|t| *t <= now) {
            core.releases.pop_front();
        }
        core.in_flight + core.releases.len() as u32
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

/// A backfill's read waiting for a slot, counted while it lives.
struct BackfillWaiting<'a>(&'a Budget);

impl<'a> BackfillWaiting<'a> {
    fn new(budget: &'a Budget) -> Self {
        budget.lock().backfills_waiting += 1;
        BackfillWaiting(budget)
    }
}

impl Drop for BackfillWaiting<'_> {
    fn drop(&mut self) {
        let mut core = self.0.lock();
        core.backfills_waiting = core.backfills_waiting.saturating_sub(1);
    }
}

/// Budgets by account key, so every client of one account shares one (and
/// one quota gate, [`super::quota`]).
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    map: Arc<Mutex<HashMap<String, Arc<Budget>>>>,
    quotas: Arc<Mutex<HashMap<String, Arc<super::quota::QuotaGate>>>>,
}

impl Budgets {
    /// An empty registry.
    pub fn new() -> Budgets {
        Budgets::default()
    }

    /// The budget of `key`, created from `limit` on first use.
    pub fn get(&self, key: &str, limit: &RateLimit) -> Arc<Budget> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(key) {
            return b.clone();
        }
        let b = Budget::new(limit);
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
        core.backfills_waiting = 1;
        // Half the read share is in use by polls: they wait, the backfill goes.
        assert_eq!(core.try_acquire_in(now, Lane::Poll), Err(Wait::Release));
        assert_eq!(core.try_acquire_in(now, Lane::Backfill), Ok(()));
        core.backfills_waiting = 0;
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
        assert_eq!(budget.lock().backfills_waiting, 1);
        task.abort();
        let _ = task.await;
        assert_eq!(budget.lock().backfills_waiting, 0);
        drop(held);
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
                Err(Wait::Release) => unreachable!("responses are instant"),
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
