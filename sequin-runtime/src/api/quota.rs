//! The quota gate: what is left of an API's allowance over a long period
//! (the spec's `quota:`, Salesforce's daily API requests), and which reads
//! may still go.
//!
//! The level is read from the spec's endpoint (by [`super::Client`], which
//! owns the HTTP side) every `every`, and every request sent in between is
//! counted against the counters each request takes one of, so the estimate
//! stays current without a read per request. The connection's floors
//! ([`QuotaSettings`]) decide which reads go:
//!
//! - backfills pause when a counted quota's estimate falls to the backfill
//!   floor (twice the floor unless configured);
//! - polls (and discovery) pause when it falls to the floor;
//! - writes never wait for the quota: the floor is kept for them and for the
//!   org's other integrations.
//!
//! An API answer that the quota is spent (Salesforce's 403
//! `REQUEST_LIMIT_EXCEEDED`, SQLSTATE 53400 without a Retry-After) closes
//! the gate for reads until a read of the level shows room again. While any
//! read is paused the level is read every `paused_every`: that is how the
//! quota's reset is noticed. Each change of what is paused is logged once,
//! with why, never per request.
//!
//! One gate per account, shared like the rate-limit budget (see
//! [`super::Budgets`]), so sync and write-through count together; the
//! requests other processes send to the account are counted too, as their
//! shared budget learns of them ([`QuotaGate::sent_elsewhere`]).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sequin_spec::quota::Quota;
use sequin_spec::record::get_path;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Lane;
use crate::metrics::{QuotaLevel, QuotaPaused, QuotaState};

/// A floor: a share of a quota's allowance, or a number of requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Floor {
    /// A share of the allowance (`10%` is 0.1).
    Share(f64),
    /// A number of requests.
    Requests(u64),
}

impl Floor {
    /// The floor of an allowance of `max`, in requests (never above `max`).
    pub fn of(self, max: u64) -> u64 {
        match self {
            Floor::Share(s) => ((max as f64) * s.clamp(0.0, 1.0)).ceil() as u64,
            Floor::Requests(n) => n.min(max),
        }
    }

    /// Parses `10%` (a share, 0 to 100) or `1500` (requests).
    pub fn parse(text: &str) -> Option<Floor> {
        let text = text.trim();
        match text.strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(|p| Floor::Share(p / 100.0)),
            None => text.parse::<u64>().ok().map(Floor::Requests),
        }
    }

    /// Twice this floor (the default backfill floor).
    fn doubled(self) -> Floor {
        match self {
            Floor::Share(s) => Floor::Share((s * 2.0).min(1.0)),
            Floor::Requests(n) => Floor::Requests(n.saturating_mul(2)),
        }
    }
}

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Floor::Share(s) => write!(f, "{}%", s * 100.0),
            Floor::Requests(n) => write!(f, "{n}"),
        }
    }
}

/// What a connection keeps of its quota (its config's `quota:`).
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaSettings {
    /// Polls pause when a counted quota falls to this (default 10%).
    pub floor: Floor,
    /// Backfills pause when it falls to this (default twice the floor).
    pub backfill_floor: Option<Floor>,
    /// Replaces the spec's `every`.
    pub every: Option<Duration>,
    /// Replaces the spec's `paused_every`.
    pub paused_every: Option<Duration>,
}

impl Default for QuotaSettings {
    fn default() -> QuotaSettings {
        QuotaSettings {
            floor: Floor::Share(0.10),
            backfill_floor: None,
            every: None,
            paused_every: None,
        }
    }
}

impl QuotaSettings {
    /// The backfill floor: as configured, else twice the floor (never
    /// below the floor, so backfills always pause first).
    pub fn backfill_floor(&self) -> Floor {
        self.backfill_floor.unwrap_or_else(|| self.floor.doubled())
    }
}

/// One counter's level as last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Level {
    max: u64,
    remaining: u64,
}

/// The gate's arithmetic, with time passed in (so it is testable).
#[derive(Debug)]
struct Core {
    names: Vec<String>,
    per_request: Vec<bool>,
    levels: Vec<Option<Level>>,
    floor: Floor,
    backfill_floor: Floor,
    every: Duration,
    paused_every: Duration,
    /// Requests sent since the last read.
    sent: u64,
    /// The API answered that the quota is spent, after the last read.
    spent: bool,
    read_at: Option<Instant>,
    read_wall: Option<SystemTime>,
    /// The last read failed (its failures are logged once in a row).
    read_failing: bool,
    /// What was paused when last looked at (for logging transitions).
    paused: QuotaPaused,
}

impl Core {
    fn new(spec: &Quota, settings: &QuotaSettings) -> Core {
        Core {
            names: spec.counters.iter().map(|c| c.name.clone()).collect(),
            per_request: spec.counters.iter().map(|c| c.per_request).collect(),
            levels: vec![None; spec.counters.len()],
            floor: settings.floor,
            backfill_floor: settings.backfill_floor(),
            every: settings.every.unwrap_or(spec.every.get()),
            paused_every: settings.paused_every.unwrap_or(spec.paused_every.get()),
            sent: 0,
            spent: false,
            read_at: None,
            read_wall: None,
            read_failing: false,
            paused: QuotaPaused::default(),
        }
    }

    /// Counter `i`'s estimate: its last level less the requests sent since
    /// (0 once the API said it is spent), for counters requests take.
    fn estimate(&self, i: usize) -> Option<u64> {
        let level = self.levels[i]?;
        Some(match (self.per_request[i], self.spent) {
            (false, _) => level.remaining,
            (true, true) => 0,
            (true, false) => level.remaining.saturating_sub(self.sent),
        })
    }

    /// The floors of backfills and polls for an allowance of `max`, the
    /// backfill's never below the poll's.
    fn floors(&self, max: u64) -> (u64, u64) {
        let poll = self.floor.of(max);
        (self.backfill_floor.of(max).max(poll), poll)
    }

    /// What is paused now, and why.
    fn paused_now(&self) -> (QuotaPaused, Option<String>) {
        if self.spent {
            let why = "the API answered that the quota is spent".to_string();
            return (QuotaPaused::BOTH, Some(why));
        }
        let mut paused = QuotaPaused::default();
        let mut why = None;
        for (i, level) in self.levels.iter().enumerate() {
            let (Some(level), true) = (level, self.per_request[i]) else {
                continue;
            };
            let left = self.estimate(i).unwrap_or(level.remaining);
            let (backfill_floor, poll_floor) = self.floors(level.max);
            let name = &self.names[i];
            if left <= poll_floor && !paused.poll {
                paused = QuotaPaused::BOTH;
                why = Some(format!(
                    "{name} has {left} of {} left, at or below the floor of {poll_floor}",
                    level.max
                ));
            } else if left <= backfill_floor && !paused.backfill {
                paused.backfill = true;
                why = Some(format!(
                    "{name} has {left} of {} left, at or below the backfill floor of {backfill_floor}",
                    level.max
                ));
            }
        }
        (paused, why)
    }

    fn is_open(&self, lane: Lane) -> bool {
        let (paused, _) = self.paused_now();
        match lane {
            Lane::Write => true,
            Lane::Backfill => !paused.backfill,
            Lane::Poll => !paused.poll,
        }
    }

    /// When the level is to be read next: at once if never read, else
    /// `every` after the last read, or `paused_every` while reads pause.
    fn next_read(&self, now: Instant) -> Instant {
        match self.read_at {
            None => now,
            Some(t) if self.paused_now().0.backfill => t + self.paused_every,
            Some(t) => t + self.every,
        }
    }

    /// The levels of an answer of the quota's endpoint; counters it lacks
    /// keep their last level. Errors name the first missing path.
    fn note_read(
        &mut self,
        paths: &[(String, String)],
        body: &Value,
        now: Instant,
    ) -> Result<(), String> {
        let number = |path: &str| get_path(body, path).and_then(Value::as_u64);
        let mut missing = None;
        for (i, (max, remaining)) in paths.iter().enumerate() {
            match (number(max), number(remaining)) {
                (Some(max), Some(remaining)) => self.levels[i] = Some(Level { max, remaining }),
                _ => {
                    missing.get_or_insert_with(|| {
                        format!("the quota's answer has no numbers at `{max}` and `{remaining}`")
                    });
                }
            }
        }
        self.sent = 0;
        self.spent = false;
        self.read_failing = false;
        self.read_at = Some(now);
        self.read_wall = Some(SystemTime::now());
        missing.map_or(Ok(()), Err)
    }

    /// A read failed: try again after the usual interval, keeping what is
    /// known (a spent quota stays spent). Returns whether the reads were
    /// going well until now.
    fn note_failed_read(&mut self, now: Instant) -> bool {
        self.read_at = Some(now);
        !std::mem::replace(&mut self.read_failing, true)
    }

    /// What is paused now, if that changed since last looked at.
    fn transition(&mut self) -> Option<(QuotaPaused, QuotaPaused, Option<String>)> {
        let (now, why) = self.paused_now();
        if now == self.paused {
            return None;
        }
        let before = std::mem::replace(&mut self.paused, now);
        Some((before, now, why))
    }

    fn state(&self) -> QuotaState {
        let (paused, reason) = self.paused_now();
        QuotaState {
            counters: (0..self.names.len())
                .map(|i| {
                    let max = self.levels[i].map(|l| l.max);
                    let floors = max.filter(|_| self.per_request[i]).map(|m| self.floors(m));
                    QuotaLevel {
                        quota: self.names[i].clone(),
                        max,
                        remaining: self.estimate(i),
                        floor: floors.map(|f| f.1),
                        backfill_floor: floors.map(|f| f.0),
                    }
                })
                .collect(),
            paused,
            reason,
            read_at: self.read_wall,
        }
    }
}

/// The quota gate of one account.
#[derive(Debug)]
pub struct QuotaGate {
    connection: String,
    /// The spec's quota (the endpoint the client reads).
    pub(crate) spec: Quota,
    paths: Vec<(String, String)>,
    core: Mutex<Core>,
    /// Woken after each read of the level.
    pub(crate) notify: Notify,
    /// Held by the one request reading the level; the others go on with
    /// the estimate, or wait for the answer if their lane is closed.
    pub(crate) reading: tokio::sync::Mutex<()>,
}

impl QuotaGate {
    /// A gate for `spec` with `settings`, for the log lines of `connection`.
    pub fn new(connection: &str, spec: &Quota, settings: &QuotaSettings) -> QuotaGate {
        QuotaGate {
            connection: connection.to_string(),
            spec: spec.clone(),
            paths: spec
                .counters
                .iter()
                .map(|c| (c.max.clone(), c.remaining.clone()))
                .collect(),
            core: Mutex::new(Core::new(spec, settings)),
            notify: Notify::new(),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        // Every update is a few assignments: a poisoned lock is consistent.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request of `lane` may go now.
    pub fn is_open(&self, lane: Lane) -> bool {
        self.lock().is_open(lane)
    }

    /// Whether the level is due to be read.
    pub fn read_due(&self) -> bool {
        let now = Instant::now();
        self.lock().next_read(now) <= now
    }

    /// When the level is to be read next.
    pub fn next_read(&self) -> Instant {
        self.lock().next_read(Instant::now())
    }

    /// One request was sent: it takes one of each counted quota.
    pub fn sent(&self) {
        let change = {
            let mut core = self.lock();
            core.sent += 1;
            core.transition()
        };
        self.log(change);
    }

    /// Other processes sent `n` requests to the account (learnt through
    /// the shared rate-limit budget): they take from the quota too.
    pub fn sent_elsewhere(&self, n: u64) {
        let change = {
            let mut core = self.lock();
            core.sent += n;
            core.transition()
        };
        self.log(change);
    }

    /// The API answered that the quota is spent: reads wait for a read of
    /// the level that shows room.
    pub fn spent(&self) {
        let change = {
            let mut core = self.lock();
            core.spent = true;
            core.transition()
        };
        self.log(change);
    }

    /// An answer of the quota's endpoint.
    pub fn read(&self, body: &Value) {
        let (result, change) = {
            let mut core = self.lock();
            let result = core.note_read(&self.paths, body, Instant::now());
            (result, core.transition())
        };
        if let Err(problem) = result {
            tracing::warn!(connection = %self.connection, %problem, "reading the API's quota");
        }
        self.log(change);
        self.notify.notify_waiters();
    }

    /// Reading the level failed (`why`): tried again after the interval.
    /// Logged once until a read succeeds; a read the API refuses because
    /// the quota is spent is expected, and not warned about.
    pub fn read_failed(&self, why: &str) {
        let (first, spent) = {
            let mut core = self.lock();
            (core.note_failed_read(Instant::now()), core.spent)
        };
        let connection = &self.connection;
        if first && !spent {
            tracing::warn!(%connection, error = %why, "could not read the API's quota; reads go on by the last estimate, and it is read again later");
        } else {
            tracing::debug!(%connection, error = %why, "could not read the API's quota");
        }
        self.notify.notify_waiters();
    }

    /// The levels, floors and what is paused, for status and metrics.
    pub fn state(&self) -> QuotaState {
        self.lock().state()
    }

    /// Logs a change of what is paused, once.
    fn log(&self, change: Option<(QuotaPaused, QuotaPaused, Option<String>)>) {
        let Some((before, now, why)) = change else {
            return;
        };
        let why = why.unwrap_or_default();
        let every = self.lock().paused_every;
        let connection = &self.connection;
        match (before, now) {
            (_, QuotaPaused { poll: true, .. }) => tracing::warn!(
                %connection, reason = %why, recheck = ?every,
                "quota low: backfills and polls paused (writes go on); they resume when the quota has room again"
            ),
            (_, QuotaPaused { backfill: true, .. }) => tracing::warn!(
                %connection, reason = %why, recheck = ?every,
                "quota low: backfills paused (polls and writes go on); they resume when the quota has room again"
            ),
            _ => tracing::info!(%connection, "quota has room again: backfills and polls resume"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Quota {
        serde_json::from_value(json!({
            "endpoint": {"path": "/limits"},
            "every": "5m",
            "paused_every": "1m",
            "counters": [
                {"name": "Daily", "max": "Daily.Max", "remaining": "Daily.Remaining", "per_request": true},
                {"name": "Jobs", "max": "Jobs.Max", "remaining": "Jobs.Remaining"}
            ]
        }))
        .unwrap()
    }

    fn answer(daily: u64, jobs: u64) -> Value {
        json!({"Daily": {"Max": 1000, "Remaining": daily}, "Jobs": {"Max": 50, "Remaining": jobs}})
    }

    fn core(settings: &QuotaSettings) -> (Core, Vec<(String, String)>) {
        let s = spec();
        let paths = s
            .counters
            .iter()
            .map(|c| (c.max.clone(), c.remaining.clone()))
            .collect();
        (Core::new(&s, settings), paths)
    }

    #[test]
    fn floors_parse_and_apply() {
        assert_eq!(Floor::parse("10%"), Some(Floor::Share(0.1)));
        assert_eq!(Floor::parse(" 1500 "), Some(Floor::Requests(1500)));
        assert_eq!(Floor::parse("120%"), None);
        assert_eq!(Floor::parse("ten"), None);
        assert_eq!(Floor::Share(0.1).of(15_000), 1500);
        assert_eq!(Floor::Requests(2000).of(1000), 1000);
        let default = QuotaSettings::default();
        assert_eq!(default.backfill_floor().of(1000), 200);
    }

    #[test]
    fn backfills_pause_first_then_polls_and_writes_never() {
        let (mut c, paths) = core(&QuotaSettings::default());
        let t0 = Instant::now();
        // Never read: open, and due at once.
        assert!(c.is_open(Lane::Backfill));
        assert_eq!(c.next_read(t0), t0);
        c.note_read(&paths, &answer(205, 50), t0).unwrap();
        assert!(c.is_open(Lane::Backfill));
        assert_eq!(c.next_read(t0), t0 + Duration::from_secs(300));
        // 200 of 1000 left: the backfill floor (20%).
        for _ in 0..5 {
            c.sent += 1;
        }
        assert!(!c.is_open(Lane::Backfill));
        assert!(c.is_open(Lane::Poll));
        assert!(c.is_open(Lane::Write));
        let (paused, why) = c.paused_now();
        assert_eq!(
            paused,
            QuotaPaused {
                backfill: true,
                poll: false
            }
        );
        assert_eq!(
            why.as_deref(),
            Some("Daily has 200 of 1000 left, at or below the backfill floor of 200")
        );
        // Paused: the level is read every minute.
        assert_eq!(c.next_read(t0), t0 + Duration::from_secs(60));
        // 100 left: the floor (10%); polls pause too, writes still go.
        c.sent += 100;
        assert!(!c.is_open(Lane::Poll));
        assert!(c.is_open(Lane::Write));
        // The reset: the next read shows room, and everything goes.
        c.note_read(&paths, &answer(1000, 50), t0 + Duration::from_secs(60))
            .unwrap();
        assert!(c.is_open(Lane::Backfill) && c.is_open(Lane::Poll));
    }

    #[test]
    fn a_spent_answer_closes_reads_until_a_read_shows_room() {
        let (mut c, paths) = core(&QuotaSettings::default());
        let t0 = Instant::now();
        c.note_read(&paths, &answer(900, 50), t0).unwrap();
        c.spent = true;
        assert!(!c.is_open(Lane::Backfill) && !c.is_open(Lane::Poll));
        assert!(c.is_open(Lane::Write));
        assert_eq!(c.state().counters[0].remaining, Some(0));
        // A failed read (the API refuses that too) keeps it closed; only
        // the first failure in a row is news.
        assert!(c.note_failed_read(t0 + Duration::from_secs(60)));
        assert!(!c.is_open(Lane::Poll));
        assert_eq!(c.next_read(t0), t0 + Duration::from_secs(120));
        assert!(!c.note_failed_read(t0 + Duration::from_secs(120)));
        assert_eq!(c.next_read(t0), t0 + Duration::from_secs(180));
        c.note_read(&paths, &answer(1000, 50), t0 + Duration::from_secs(120))
            .unwrap();
        assert!(c.is_open(Lane::Backfill));
    }

    #[test]
    fn transitions_are_reported_once() {
        let (mut c, paths) = core(&QuotaSettings {
            floor: Floor::Requests(10),
            backfill_floor: Some(Floor::Requests(20)),
            ..QuotaSettings::default()
        });
        c.note_read(&paths, &answer(22, 50), Instant::now())
            .unwrap();
        assert!(c.transition().is_none());
        c.sent = 1;
        assert!(c.transition().is_none());
        c.sent = 2;
        let (before, now, _) = c.transition().expect("backfills pause");
        assert_eq!(
            (before, now),
            (
                QuotaPaused::default(),
                QuotaPaused {
                    backfill: true,
                    poll: false
                }
            )
        );
        c.sent = 3;
        assert!(c.transition().is_none(), "not once per request");
        c.sent = 12;
        assert_eq!(c.transition().unwrap().1, QuotaPaused::BOTH);
        c.note_read(&paths, &answer(1000, 50), Instant::now())
            .unwrap();
        assert_eq!(c.transition().unwrap().1, QuotaPaused::default());
    }

    #[test]
    fn shown_counters_are_not_counted_and_missing_paths_are_named() {
        let (mut c, paths) = core(&QuotaSettings::default());
        c.note_read(&paths, &answer(1000, 3), Instant::now())
            .unwrap();
        c.sent = 999;
        let state = c.state();
        assert_eq!(state.counters[0].remaining, Some(1));
        assert_eq!(state.counters[1].remaining, Some(3));
        assert_eq!(state.counters[1].floor, None, "Jobs is shown only");
        assert_eq!(state.counters[0].floor, Some(100));
        // Shown counters never pause anything, even when empty.
        c.note_read(&paths, &answer(1000, 0), Instant::now())
            .unwrap();
        assert!(c.is_open(Lane::Backfill));
        let err = c
            .note_read(
                &paths,
                &json!({"Daily": {"Max": 1000, "Remaining": 10}}),
                Instant::now(),
            )
            .unwrap_err();
        assert_eq!(
            err,
            "the quota's answer has no numbers at `Jobs.Max` and `Jobs.Remaining`"
        );
        assert!(!c.is_open(Lane::Poll), "the counter it had is applied");
    }
}
