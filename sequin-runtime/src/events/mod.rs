//! Events: every committed change to a synced table, delivered to sinks.
//!
//! A trigger on each synced table writes one row per changed record into
//! `sequin.outbox`, in the transaction of the change (write-through's net
//! effect is written by `sequin.release()` instead: one event per record for
//! the client's statement and its write-back together). The sequencer moves
//! committed outbox rows into `sequin.events` under a gap-free, commit-ordered
//! `seq`; each sink reads from there with its own cursor.
//!
//! This file holds what every part shares: the [`Event`] as read from
//! `sequin.events`, its JSON payload, and the key that orders a record's
//! events.

pub mod dispatch;
mod filter;
pub mod log;
pub mod nats;
mod notify;
pub mod outbox;
pub mod webhook;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::config::{Config, SinkConfig};
use crate::metrics::Metrics;
use crate::store::{self, StoreError};

/// Runs the sequencer and every sink's dispatcher of `config` until
/// `shutdown` turns true. The schema is migrated first (as sync and the
/// proxy do; it is applied once), and the events settings and the sinks'
/// rows are written.
pub async fn run(
    config: &Config,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let url = config.database_url.expose().to_string();
    let mut admin = store::connect(&url).await?;
    store::migrate_tables(&mut admin, &crate::catalog::to_migrate(config)).await?;
    outbox::apply_settings(&admin, config, false).await?;
    outbox::register_sinks(&admin, &config.sinks).await?;
    let moved = Arc::new(Notify::new());
    let retention = config.events.clone().unwrap_or_default().retention;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(outbox::sequence(
        admin,
        retention,
        moved.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    for sink in &config.sinks {
        tasks.spawn(deliver(
            url.clone(),
            sink.clone(),
            metrics.clone(),
            moved.clone(),
            shutdown.clone(),
        ));
    }
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "events stopped");
                first_error.get_or_insert(e);
            }
            Err(e) => tracing::error!(error = %e, "an events task panicked"),
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// One sink's dispatcher, reopened after failures: a destination that
/// cannot be reached at start (a NATS server down) is tried again every
/// few seconds, and so is Postgres.
async fn deliver(
    url: String,
    sink: SinkConfig,
    metrics: Metrics,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    while !*shutdown.borrow() {
        let opened: Result<(), String> = match dispatch::Target::open(&sink).await {
            Ok(target) => match store::connect(&url).await {
                Ok(client) => {
                    let d =
                        dispatch::Dispatcher::new(sink.clone(), client, target, metrics.clone());
                    match d.run(wake.clone(), shutdown.clone()).await {
                        Ok(()) => return Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.message),
        };
        if let Err(error) = opened {
            tracing::warn!(sink = %sink.name, %error, "sink stopped; starting it again in 5s");
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    Ok(())
}

/// What happened to the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Insert,
    Update,
    Delete,
    /// A row of a backfill (emitted only to sinks that ask for them).
    Read,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "insert" => Op::Insert,
            "update" => Op::Update,
            "delete" => Op::Delete,
            "read" => Op::Read,
            _ => return None,
        })
    }
}

/// Where a change came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// `sync` (the API, through sync), `backfill` (a backfill's row),
    /// `write` (the application, through write-through) or `reconcile`
    /// (the reconciler).
    pub kind: String,
    /// The writing transaction's id (`txid_current()`): for `write`, the
    /// client's transaction.
    pub xid: i64,
    /// For `write`: the journal ids of the API requests that made the
    /// change (each is also the request's idempotency key where the API
    /// takes one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<String>,
}

/// One event, as read from `sequin.events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Gap-free, in commit order (assigned by the sequencer).
    pub seq: i64,
    /// The connection (the table's schema).
    pub connection: String,
    pub table: String,
    /// The record's primary key: `{"<column>": value}`.
    pub key: Value,
    pub op: Op,
    /// For updates: `{"<column>": {"old": .., "new": ..}}` of the columns
    /// that changed (Sequin's `_sequin_*` columns left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Value>,
    /// The whole row after the change; `None` for deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Value>,
    /// The whole row before a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    pub origin: Origin,
    /// When the sequencer saw the change committed (within one of its
    /// ticks of the commit).
    pub committed_at: DateTime<Utc>,
}

impl Event {
    /// The event's id: stable across redeliveries (a webhook's
    /// `webhook-id`, NATS's `Nats-Msg-Id`).
    pub fn id(&self) -> String {
        format!("evt_{}", self.seq)
    }

    /// `<connection>.<table>.<op>`: the event's type (a webhook payload's
    /// `type`).
    pub fn kind(&self) -> String {
        format!("{}.{}.{}", self.connection, self.table, self.op.as_str())
    }

    /// What orders this record's events: its connection, table and key.
    /// Two events with the same record key are delivered in `seq` order.
    /// The key is written as Postgres prints a `jsonb` object
    /// (`{"id": "cus_1"}`), so SQL (`sequin.replay_events`) names a record
    /// the same way.
    pub fn record_key(&self) -> String {
        format!(
            "{}.{}:{}",
            self.connection,
            self.table,
            jsonb_text(&self.key)
        )
    }

    /// The record's partition among `partitions` (stable across processes
    /// and releases: the first 8 bytes of SHA-256 of the record key).
    pub fn partition(&self, partitions: u32) -> u32 {
        partition_of(&self.record_key(), partitions)
    }

    /// The payload sinks send: Standard Webhooks' recommended shape
    /// (`type`, `timestamp`, `data`), `data` being the event.
    pub fn payload(&self) -> Value {
        serde_json::to_value(self.payload_ref()).expect("an event serializes")
    }

    /// [`payload`](Self::payload) as JSON bytes, serialized straight from
    /// the event (no `Value` tree in between: sinks send thousands a
    /// second).
    pub fn payload_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.payload_ref()).expect("an event serializes")
    }

    /// The payload borrowing the event, to serialize (alone or in a batch).
    pub(crate) fn payload_ref(&self) -> Payload<'_> {
        Payload {
            kind: self.kind(),
            timestamp: self
                .committed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data: self,
        }
    }
}

/// An event's payload, borrowing the event (see [`Event::payload`]).
#[derive(Serialize)]
pub(crate) struct Payload<'a> {
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    data: &'a Event,
}

/// The partition among `partitions` of the record whose
/// [`Event::record_key`] is `record_key`.
pub fn partition_of(record_key: &str, partitions: u32) -> u32 {
    let digest = Sha256::digest(record_key.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (n % u64::from(partitions.max(1))) as u32
}

/// `value` as Postgres's `jsonb` output writes it: `", "` between items
/// and `": "` after keys (keys in jsonb's order: shorter first, then
/// bytewise).
fn jsonb_text(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(b.0)));
            let items: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String((*k).clone()), jsonb_text(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(jsonb_text).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Why a sink did not take an event (it is retried, then dead-lettered).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// One line, for logs, `sequin status` and the dead letter's row.
    pub message: String,
}

impl SendError {
    pub fn new(message: impl Into<String>) -> SendError {
        SendError {
            message: message.into(),
        }
    }
}

#[cfg(test)]
pub(crate) fn sample(seq: i64, id: &str) -> Event {
    Event {
        seq,
        connection: "stripe".into(),
        table: "customer".into(),
        key: serde_json::json!({ "id": id }),
        op: Op::Update,
        changes: Some(serde_json::json!({"name": {"old": "A", "new": "B"}})),
        record: Some(serde_json::json!({"id": id, "name": "B"})),
        old: None,
        origin: Origin {
            kind: "sync".into(),
            xid: 7,
            request_ids: vec![],
        },
        committed_at: DateTime::from_timestamp(1_780_000_000, 0).expect("a time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_events_share_a_partition_and_the_payload_names_it() {
        let a = sample(1, "cus_1");
        let b = sample(2, "cus_1");
        let c = sample(3, "cus_2");
        assert_eq!(a.partition(16), b.partition(16));
        assert_eq!(a.record_key(), "stripe.customer:{\"id\": \"cus_1\"}");
        assert_ne!(a.record_key(), c.record_key());
        let p = a.payload();
        assert_eq!(p["type"], "stripe.customer.update");
        assert_eq!(p["timestamp"], "2026-05-28T20:26:40.000Z");
        assert_eq!(p["data"]["seq"], 1);
        assert_eq!(p["data"]["origin"]["kind"], "sync");
        assert!(p["data"].get("old").is_none());
        let back: Event = serde_json::from_value(p["data"].clone()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn payload_json_is_the_payload() {
        let mut e = sample(4, "cus_4");
        assert_eq!(e.payload_json(), serde_json::to_vec(&e.payload()).unwrap());
        e.op = Op::Delete;
        e.changes = None;
        e.old = e.record.take();
        e.origin.request_ids = vec!["req_1".into()];
        assert_eq!(e.payload_json(), serde_json::to_vec(&e.payload()).unwrap());
    }

    #[test]
    fn partitions_spread_records() {
        let used: std::collections::HashSet<u32> = (0..200)
            .map(|i| sample(i, &format!("cus_{i}")).partition(8))
            .collect();
        assert_eq!(used.len(), 8);
    }
}
