//! `events:` and `sinks:` of `sequin.yaml`: whether changes become events,
//! how long the log keeps them, and where they go.
//!
//! A sink's keys are one flat map (`kind` says which apply), checked here so
//! that a key of another kind, or a missing one, is a one-line error naming
//! the fix.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, opt_duration};
use crate::api::Secret;
use crate::events::Op;

/// `events:`: the outbox and the log (`sequin.events`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// How long delivered events stay in `sequin.events` (default 7 days).
    /// Events a sink has not delivered yet are kept whatever their age.
    #[serde(default = "default_retention", deserialize_with = "duration")]
    pub retention: Duration,
}

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            retention: default_retention(),
        }
    }
}

fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// What kind of sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// HTTP POSTs signed as Standard Webhooks specifies.
    Webhook,
    /// NATS JetStream.
    Nats,
    /// Postgres NOTIFY on a channel of the synced database.
    Notify,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Nats => "nats",
            SinkKind::Notify => "notify",
        }
    }
}

/// Where a sink starts when it is first configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// With the events committed after it was added (the default).
    #[default]
    Now,
    /// With the oldest event `sequin.events` still holds.
    Beginning,
}

/// One secret or several (a webhook's key rotation: every request is
/// signed with each).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Secrets {
    One(Secret),
    Many(Vec<Secret>),
}

impl Secrets {
    pub fn list(&self) -> Vec<String> {
        match self {
            Secrets::One(s) => vec![s.expose().to_string()],
            Secrets::Many(v) => v.iter().map(|s| s.expose().to_string()).collect(),
        }
    }
}

/// Which events a sink takes; every list left out takes all.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Connection names.
    #[serde(default)]
    pub connections: Option<Vec<String>>,
    /// Table names, bare (`invoice`, any connection's) or qualified
    /// (`stripe.invoice`).
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// `insert`, `update`, `delete` (and `read`, a backfill's rows, which
    /// only a sink with `backfill: true` gets).
    #[serde(default)]
    pub operations: Option<Vec<Op>>,
    /// Updates only when one of these columns changed (inserts and deletes
    /// pass).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

/// One entry of `sinks:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique, kept in `sequin.sink` with the sink's cursor.
    pub name: String,
    pub kind: SinkKind,
    /// webhook: the endpoint; nats: the server (`nats://host:4222`).
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: `whsec_<base64>`, or a list of them while rotating keys.
    #[serde(default)]
    pub secret: Option<Secrets>,
    /// nats: the JetStream stream (created if missing).
    #[serde(default)]
    pub stream: Option<String>,
    /// nats: the subjects' first token (default `sequin`): events go to
    /// `<prefix>.<connection>.<table>.<partition>`.
    #[serde(default)]
    pub subject_prefix: Option<String>,
    /// nats: partitions per table (default 16); a record's events always
    /// go to the same one.
    #[serde(default)]
    pub partitions: Option<u32>,
    /// notify: the channel.
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub filter: Filter,
    /// Also deliver a backfill's rows, as `read` events (default false).
    #[serde(default)]
    pub backfill: bool,
    /// webhook: events per request (default 1; above 1 the body is a
    /// `sequin.batch` of them).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// webhook: requests in flight at once (default 8); never two events
    /// of one record.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// webhook: how long one request may take (default 10s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// The waits before each retry of an event that failed (default, as
    /// Svix: 5s, 5m, 30m, 2h, 5h, 10h, 10h: eight attempts over 27.6
    /// hours); after the last, the event is dead-lettered.
    #[serde(default, deserialize_with = "opt_durations")]
    pub retry: Option<Vec<Duration>>,
    /// Consecutive failed attempts after which the sink pauses (default
    /// 10): new events wait, the retries go on, and the first that goes
    /// through resumes it.
    #[serde(default)]
    pub pause_after: Option<u32>,
    /// How often a paused sink with no retry due tries its oldest parked
    /// event (or else its next one) (default 1m).
    #[serde(default, deserialize_with = "opt_duration")]
    pub probe_every: Option<Duration>,
    /// Where a new sink starts: `now` (default) or `beginning`.
    #[serde(default)]
    pub start: Start,
}

/// Svix's schedule after the first attempt.
pub const DEFAULT_RETRY: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

impl SinkConfig {
    pub fn retry(&self) -> Vec<Duration> {
        self.retry.clone().unwrap_or_else(|| DEFAULT_RETRY.to_vec())
    }

    pub fn pause_after(&self) -> u32 {
        self.pause_after.unwrap_or(10).max(1)
    }

    pub fn probe_every(&self) -> Duration {
        self.probe_every.unwrap_or(Duration::from_secs(60))
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(1).max(1)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.unwrap_or(8).max(1)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(10))
    }

    pub fn subject_prefix(&self) -> &str {
        self.subject_prefix.as_deref().unwrap_or("sequin")
    }

    pub fn partitions(&self) -> u32 {
        self.partitions.unwrap_or(16)
    }

    /// The keys set that `kind` does not read, and the keys it needs that
    /// are missing: `(json pointer, message)` of the first problem.
    pub fn check(&self, p: &str) -> Result<(), (String, String)> {
        let set: [(&str, bool); 9] = [
            ("url", self.url.is_some()),
            ("secret", self.secret.is_some()),
            ("stream", self.stream.is_some()),
            ("subject_prefix", self.subject_prefix.is_some()),
            ("partitions", self.partitions.is_some()),
            ("channel", self.channel.is_some()),
            ("batch_size", self.batch_size.is_some()),
            ("max_in_flight", self.max_in_flight.is_some()),
            ("timeout", self.timeout.is_some()),
        ];
        let (needs, reads): (&[&str], &[&str]) = match self.kind {
            SinkKind::Webhook => (
                &["url", "secret"],
                &["url", "secret", "batch_size", "max_in_flight", "timeout"],
            ),
            SinkKind::Nats => (
                &["url", "stream"],
                &["url", "stream", "subject_prefix", "partitions"],
            ),
            SinkKind::Notify => (&["channel"], &["channel"]),
        };
        let kind = self.kind.as_str();
        if let Some((key, _)) = set.iter().find(|(k, on)| *on && !reads.contains(k)) {
            return Err((
                format!("{p}/{key}"),
                format!(
                    "a {kind} sink has no `{key}`: remove it (a {kind} sink reads {})",
                    reads.join(", ")
                ),
            ));
        }
        if let Some(key) = needs
            .iter()
            .find(|k| !set.iter().any(|(s, on)| s == *k && *on))
        {
            let example = match *key {
                "url" if self.kind == SinkKind::Nats => "nats://127.0.0.1:4222",
                "url" => "https://example.com/hooks/sequin",
                "secret" => {
                    "\"${SEQUIN_WEBHOOK_SECRET}\" (whsec_ and base64 of 24 to 64 random bytes)"
                }
                "stream" => "SEQUIN",
                _ => "sequin_events",
            };
            return Err((
                p.to_string(),
                format!(
                    "sink `{}` ({kind}) needs `{key}`: add `{key}: {example}`",
                    self.name
                ),
            ));
        }
        if self.kind == SinkKind::Webhook
            && let Err(e) = crate::events::dispatch::webhook_of(self)
        {
            return Err((p.to_string(), format!("sink `{}`: {e}", self.name)));
        }
        if self.partitions == Some(0) {
            return Err((
                format!("{p}/partitions"),
                "partitions must be at least 1".into(),
            ));
        }
        if let Some(c) = &self.channel
            && (c.is_empty() || c.len() > 63)
        {
            return Err((
                format!("{p}/channel"),
                format!("channel `{c}` must be 1 to 63 characters (a Postgres identifier)"),
            ));
        }
        if self.retry.as_ref().is_some_and(|r| r.is_empty()) {
            return Err((
                format!("{p}/retry"),
                "retry needs at least one wait (e.g. [5s, 5m, 30m]); an event that fails is dead-lettered after the last".into(),
            ));
        }
        if let Some(ops) = &self.filter.operations
            && ops.contains(&Op::Read)
            && !self.backfill
        {
            return Err((
                format!("{p}/filter/operations"),
                format!(
                    "sink `{}` filters for `read` events but does not take a backfill's rows: add `backfill: true`",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

fn opt_durations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Duration>>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.iter()
        .map(|s| {
            super::parse_duration(s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a duration; write a list of waits such as [5s, 5m, 30m]"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
