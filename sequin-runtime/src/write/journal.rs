//! The journal of API writes (`sequin.write_journal`), on a session of
//! Sequin's own: every write is journalled as an intent before it is sent
//! (with what finds its effect after a crash), and its outcome once the API
//! answered. Its sessions hold this process's advisory lock, which says
//! the intents it journalled are still its own to settle.
//! [`super::reconcile`] settles each entry once its transaction ended.

use serde_json::{Map, Value};
use tokio_postgres::Client as PgClient;

use crate::store::{self, StoreError};

/// One API write, journalled as an intent before it is sent.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: uuid::Uuid,
    pub connection: String,
    pub object: String,
    /// `create`, `update`, `delete` or `upsert` (which becomes a create or
    /// an update once the API said which: [`Became`]).
    pub op: &'static str,
    /// The record's id: known before the call for updates and deletes,
    /// from the API's answer for creates.
    pub api_id: Option<String>,
    pub xid: i64,
    /// The capture row of the statement that made the effect: its marker
    /// (`sequin.write_mark`) says whether the effect was kept.
    pub capture_id: i64,
    /// The body sent (what a create is found by after a crash, and what
    /// an undo checks the API still holds).
    pub request: Value,
    /// What restores the old values of an update (`{"body": ...}`).
    pub undo: Value,
    /// The idempotency key a single create was sent with, on APIs that
    /// honour them: after a crash, the create is sent again with it, which
    /// answers with the record it made (or makes it), to be undone.
    pub idempotency_key: Option<String>,
}

/// What became of a journalled intent once the API answered.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Applied: the record's id, and the values the API holds after the
    /// write for the columns it set (see `Entry::undo`).
    Applied {
        api_id: String,
        written: Option<Map<String, Value>>,
        /// What an upsert turned out to be.
        became: Option<Became>,
    },
    /// Refused, or never sent (an earlier write of the statement was
    /// refused): no effect.
    Rejected,
    /// Sent, but the answer was lost: the reconciler finds out what the
    /// API did, once the transaction ended.
    Unknown,
}

/// What an applied upsert turned out to be: a create (undone by deleting
/// the record) or an update (undone by restoring the old values), with the
/// undo that goes with it; the reconciler reads the entry as such.
#[derive(Clone, Debug)]
pub struct Became {
    /// `create` or `update`.
    pub op: &'static str,
    pub undo: Value,
}

/// Sequin's own session for the journal; it holds the writer key.
pub struct Journal {
    pub(super) client: PgClient,
    /// The entries' INSERT, prepared once: unprepared, every write would
    /// cost the journal session three round trips (prepare, execute,
    /// close) instead of one.
    insert: tokio_postgres::Statement,
    /// Records intents' outcomes.
    outcome: tokio_postgres::Statement,
    /// This session holds the reconciler lock.
    pub(super) reconciler: std::sync::atomic::AtomicBool,
}

impl Journal {
    pub async fn connect(url: &str) -> Result<Journal, StoreError> {
        let client = store::connect(url).await?;
        // Entries are written without waiting for the WAL flush: one
        // session serves every client, and a flush per write would cap
        // write-through at the disk's fsync rate. Postgres writes the WAL
        // out within a fraction of a second; an entry lost to a database
        // crash in that window only means its effect, if its transaction
        // did not commit either, is not undone at the API: sync then brings
        // the table in line with the API (a created record appears).
        // A journal write waits for a lock (a migration's DDL) for a
        // bounded time: it sits on the path of a client's answer.
        client
            .batch_execute(
                "SET application_name = 'sequin-write-journal'; SET synchronous_commit = off; SET sequin.origin = 'reconcile';
                 SET lock_timeout = '2s'; SET statement_timeout = '30s'",
            )
            .await
            .map_err(|source| StoreError::Db {
                context: "configuring the journal session".into(),
                source,
            })?;
        crate::guard::hold(&client)
            .await
            .map_err(|source| StoreError::Db {
                context: "registering the writer key".into(),
                source,
            })?;
        // Typed arrays, not a JSON document: the common single-row write
        // costs Postgres no JSON parsing of the entry itself.
        let insert = client
            .prepare(
                "INSERT INTO sequin.write_journal
                        (id, connection, object, op, api_id, xid, capture_id, request, undo, idempotency_key, state, process)
                 SELECT id::uuid, connection, object, op, api_id, xid, capture_id, request, undo, idempotency_key, 'intent', $11
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                               $7::int8[], $8::jsonb[], $9::jsonb[], $10::text[])
                     AS x(id, connection, object, op, api_id, xid, capture_id, request, undo, idempotency_key)
                   -- Waits while the reconciler undoes an earlier write of
                   -- the record (RECORD_CLASS).
                   LEFT JOIN LATERAL (
                        SELECT pg_catalog.pg_advisory_xact_lock_shared($12, pg_catalog.hashtext(x.connection || '/' || x.object || '/' || x.api_id))
                         WHERE x.api_id IS NOT NULL) AS held ON true",
            )
            .await
            .map_err(|source| StoreError::Db {
                context: "preparing the journal's statement".into(),
                source,
            })?;
        // Appended, not updated in place: the reconciler folds answers into
        // the journal (`super::reconcile`), off the client's path.
        let outcome = client
            .prepare(
                "INSERT INTO sequin.write_outcome (id, state, api_id, written, op, undo)
                 SELECT id::uuid, state, api_id, written, op, undo
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::jsonb[])
                     AS x(id, state, api_id, written, op, undo)
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(|source| StoreError::Db {
                context: "preparing the journal's statement".into(),
                source,
            })?;
        // This process's mark while it runs: its intents are its own to
        // settle (see `PROCESS_CLASS`).
        client
            .execute(
                "SELECT pg_advisory_lock_shared($1::int4, $2::int4)",
                &[&PROCESS_CLASS, &process_id()],
            )
            .await
            .map_err(|source| StoreError::Db {
                context: "marking the journal session as this process's".into(),
                source,
            })?;
        Ok(Journal {
            client,
            insert,
            outcome,
            reconciler: Default::default(),
        })
    }

    /// The session is gone (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Records intents (one statement, committed on its own), before the
    /// API is called; this process settles them (see [`process_id`]).
    pub async fn record(&self, entries: &[&Entry]) -> Result<(), tokio_postgres::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
        let connections: Vec<&str> = entries.iter().map(|e| e.connection.as_str()).collect();
        let objects: Vec<&str> = entries.iter().map(|e| e.object.as_str()).collect();
        let ops: Vec<&str> = entries.iter().map(|e| e.op).collect();
        let api_ids: Vec<Option<&str>> = entries.iter().map(|e| e.api_id.as_deref()).collect();
        let xids: Vec<i64> = entries.iter().map(|e| e.xid).collect();
        let captures: Vec<i64> = entries.iter().map(|e| e.capture_id).collect();
        let requests: Vec<&Value> = entries.iter().map(|e| &e.request).collect();
        let undos: Vec<&Value> = entries.iter().map(|e| &e.undo).collect();
        let keys: Vec<Option<&str>> = entries
            .iter()
            .map(|e| e.idempotency_key.as_deref())
            .collect();
        self.client
            .execute(
                &self.insert,
                &[
                    &ids,
                    &connections,
                    &objects,
                    &ops,
                    &api_ids,
                    &xids,
                    &captures,
                    &requests,
                    &undos,
                    &keys,
                    &process_id(),
                    &RECORD_CLASS,
                ],
            )
            .await?;
        Ok(())
    }

    /// Records what the API did with intents (one statement).
    pub async fn settle_intents(
        &self,
        outcomes: &[(uuid::Uuid, Outcome)],
    ) -> Result<(), tokio_postgres::Error> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = outcomes.iter().map(|(id, _)| id.to_string()).collect();
        let states: Vec<&str> = outcomes
            .iter()
            .map(|(_, o)| match o {
                Outcome::Applied { .. } => "applied",
                Outcome::Rejected => "rejected",
                Outcome::Unknown => "unknown",
            })
            .collect();
        let api_ids: Vec<Option<&str>> = outcomes
            .iter()
            .map(|(_, o)| match o {
                Outcome::Applied { api_id, .. } => Some(api_id.as_str()),
                Outcome::Rejected | Outcome::Unknown => None,
            })
            .collect();
        let written: Vec<Option<Value>> = outcomes
            .iter()
            .map(|(_, o)| match o {
                Outcome::Applied {
                    written: Some(w), ..
                } => Some(Value::Object(w.clone())),
                _ => None,
            })
            .collect();
        let became: Vec<Option<&Became>> = outcomes
            .iter()
            .map(|(_, o)| match o {
                Outcome::Applied { became, .. } => became.as_ref(),
                _ => None,
            })
            .collect();
        let ops: Vec<Option<&str>> = became.iter().map(|b| b.map(|b| b.op)).collect();
        let undos: Vec<Option<&Value>> = became.iter().map(|b| b.map(|b| &b.undo)).collect();
        self.client
            .execute(
                &self.outcome,
                &[&ids, &states, &api_ids, &written, &ops, &undos],
            )
            .await?;
        Ok(())
    }
}

/// The advisory lock class of one record (`hashtext` of `connection /
/// object / api id`): the reconciler holds it exclusively while it reads a
/// record at the API and writes an aborted update's old values back, and
/// journalling an intent for the record takes it shared, so a client's
/// write of the record is either journalled before (and the reconciler,
/// seeing it, leaves the record alone) or sent after the old values are.
/// ASCII `SQNR`.
pub const RECORD_CLASS: i32 = 0x5351_4E52;

/// The advisory lock class that marks the journal sessions of a running
/// Sequin process: ASCII `SQNP` (see migration 0006).
pub const PROCESS_CLASS: i32 = 0x5351_4E50;

/// This process's id among the Sequin processes sharing the database
/// (random; the journal's intents name it).
pub fn process_id() -> i32 {
    static ID: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *ID.get_or_init(|| rand::random::<i32>() & 0x7fff_ffff)
}

/// Records intents' outcomes the journal session could not take (it
/// failed, or Postgres restarted): again on fresh sessions, in the
/// background, until it works (an intent this process owns is settled by
/// nobody else while it runs).
pub fn settle_later(url: String, outcomes: Vec<(uuid::Uuid, Outcome)>, e: tokio_postgres::Error) {
    tracing::warn!(error = %e, "write journal: recording the API's answer failed; retrying on a new session");
    tokio::spawn(async move {
        let mut pause = std::time::Duration::from_millis(100);
        for _ in 0..60 {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
            let recorded = match Journal::connect(&url).await {
                Ok(j) => j.settle_intents(&outcomes).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match recorded {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "write journal: still cannot record the API's answer")
                }
            }
        }
        tracing::error!(
            "write journal: the API's answer to a write could not be recorded; its intent is settled once this process stops"
        );
    });
}
