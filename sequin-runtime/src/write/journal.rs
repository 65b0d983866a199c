//! The journal of API writes (`sequin.write_journal`), on a session of
//! Sequin's own: every write is journalled as an intent before it is sent
//! (with what finds its effect after a crash), and its outcome once the API
//! answered; the session also holds write-through grants (`super::grant`).
//! [`super::reconcile`] settles each entry once its transaction ended.

use serde_json::{Map, Value, json};
use tokio_postgres::Client as PgClient;

use crate::store::{self, StoreError};

/// One API write, journalled as an intent before it is sent.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: uuid::Uuid,
    pub connection: String,
    pub object: String,
    /// `create`, `update` or `delete`.
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
    },
    /// Refused, or never sent (an earlier write of the statement was
    /// refused): no effect.
    Rejected,
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
    /// Takes and ends write-through grants (`super::grant`).
    grant: tokio_postgres::Statement,
    ungrant: tokio_postgres::Statement,
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
                "SET application_name = 'sequin-write-journal'; SET synchronous_commit = off;
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
        let insert = client
            .prepare(
                "INSERT INTO sequin.write_journal
                        (id, connection, object, op, api_id, xid, capture_id, request, undo, idempotency_key, state, backend)
                 SELECT id, connection, object, op, api_id, xid, capture_id, request, undo, idempotency_key, 'intent', $2
                   FROM jsonb_to_recordset($1::text::jsonb)
                     AS x(id uuid, connection text, object text, op text, api_id text, xid bigint,
                          capture_id bigint, request jsonb, undo jsonb, idempotency_key text)",
            )
            .await
            .map_err(|source| StoreError::Db {
                context: "preparing the journal's statement".into(),
                source,
            })?;
        // An intent whose outcome arrives after the reconciler settled it
        // (its transaction ended first) keeps the reconciler's verdict.
        let outcome = client
            .prepare(
                "UPDATE sequin.write_journal j
                    SET state = x.state, api_id = coalesce(x.api_id, j.api_id),
                        undo = CASE WHEN x.written IS NULL THEN j.undo
                                    ELSE jsonb_set(coalesce(j.undo, '{}'), '{written}', x.written) END,
                        resolved_at = CASE WHEN x.state = 'rejected' THEN now() END
                   FROM jsonb_to_recordset($1::text::jsonb)
                     AS x(id uuid, state text, api_id text, written jsonb)
                  WHERE j.id = x.id AND j.state = 'intent'",
            )
            .await
            .map_err(|source| StoreError::Db {
                context: "preparing the journal's statement".into(),
                source,
            })?;
        let prepare = |sql: &'static str| {
            let client = &client;
            async move {
                client.prepare(sql).await.map_err(|source| StoreError::Db {
                    context: "preparing the journal's statements".into(),
                    source,
                })
            }
        };
        let grant = prepare("SELECT pg_try_advisory_lock($1::int4, $2::int4)").await?;
        let ungrant = prepare("SELECT pg_advisory_unlock($1::int4, $2::int4)").await?;
        Ok(Journal {
            client,
            insert,
            outcome,
            grant,
            ungrant,
            reconciler: Default::default(),
        })
    }

    /// The session is gone (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Takes the write-through grant of backend `pid` unless some session
    /// holds it (see `super::grant`).
    pub async fn try_grant(&self, pid: i32) -> Result<bool, tokio_postgres::Error> {
        let row = self
            .client
            .query_one(&self.grant, &[&super::grant::CLASS, &pid])
            .await?;
        Ok(row.get(0))
    }

    /// Ends the grant of backend `pid`.
    pub async fn ungrant(&self, pid: i32) -> Result<(), tokio_postgres::Error> {
        self.client
            .query_one(&self.ungrant, &[&super::grant::CLASS, &pid])
            .await
            .map(|_| ())
    }

    /// Records intents (one statement, committed on its own), before the
    /// API is called, for the statement of client backend `backend` (whose
    /// grant this session holds meanwhile).
    pub async fn record(
        &self,
        backend: i32,
        entries: &[Entry],
    ) -> Result<(), tokio_postgres::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id.to_string(), "connection": e.connection, "object": e.object,
                    "op": e.op, "api_id": e.api_id, "xid": e.xid, "capture_id": e.capture_id,
                    "request": e.request, "undo": e.undo, "idempotency_key": e.idempotency_key,
                })
            })
            .collect();
        let doc = Value::Array(rows).to_string();
        self.client.execute(&self.insert, &[&doc, &backend]).await?;
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
        let rows: Vec<Value> = outcomes
            .iter()
            .map(|(id, o)| match o {
                Outcome::Applied { api_id, written } => json!({
                    "id": id.to_string(), "state": "applied", "api_id": api_id, "written": written,
                }),
                Outcome::Rejected => json!({"id": id.to_string(), "state": "rejected"}),
            })
            .collect();
        let doc = Value::Array(rows).to_string();
        self.client.execute(&self.outcome, &[&doc]).await?;
        Ok(())
    }
}
