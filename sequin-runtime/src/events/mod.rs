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

pub mod nats;
pub mod webhook;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

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
    pub fn record_key(&self) -> String {
        format!("{}.{}:{}", self.connection, self.table, self.key)
    }

    /// The record's partition among `partitions` (stable across processes
    /// and releases: the first 8 bytes of SHA-256 of the record key).
    pub fn partition(&self, partitions: u32) -> u32 {
        let digest = Sha256::digest(self.record_key().as_bytes());
        let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        (n % u64::from(partitions.max(1))) as u32
    }

    /// The payload sinks send: Standard Webhooks' recommended shape
    /// (`type`, `timestamp`, `data`), `data` being the event.
    pub fn payload(&self) -> Value {
        serde_json::json!({
            "type": self.kind(),
            "timestamp": self.committed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": self,
        })
    }

    /// [`payload`](Self::payload) as JSON bytes, serialized straight from
    /// the event (no `Value` tree in between: sinks send thousands a
    /// second).
    pub fn payload_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Payload<'a> {
            #[serde(rename = "type")]
            kind: String,
            timestamp: String,
            data: &'a Event,
        }
        serde_json::to_vec(&Payload {
            kind: self.kind(),
            timestamp: self
                .committed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data: self,
        })
        .expect("an event serializes")
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
        assert_eq!(a.record_key(), "stripe.customer:{\"id\":\"cus_1\"}");
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
