//! The journal of API effects (`sequin.write_journal`) and the reconciler
//! that settles each effect once the client's transaction has ended.
//!
//! An effect is journalled, on a session of Sequin's own (so it survives
//! the client's transaction), with the id of the client's transaction.
//! `txid_status` then says how that transaction ended, and a marker row
//! written with the effect inside the client's transaction says whether a
//! ROLLBACK TO SAVEPOINT took it back: committed with its marker, the
//! effect stays; aborted (ROLLBACK, a failed COMMIT, a disconnect, a
//! server crash) or rolled back to a savepoint, the effect is undone at the
//! API: a created record is
//! deleted, an update is reverted. A delete cannot be undone; the local row
//! the rollback brought back is removed instead, so the table matches the
//! API again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_postgres::Client as PgClient;

use crate::api::{Priority, SendRequest, write_body};
use crate::store::{self, StoreError};

use super::Table;

/// One API effect.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: uuid::Uuid,
    pub connection: String,
    pub object: String,
    /// `create`, `update` or `delete`.
    pub op: &'static str,
    pub api_id: String,
    pub xid: i64,
    /// The capture row of the statement that made the effect: its marker
    /// (`sequin.write_mark`) says whether the effect was kept.
    pub capture_id: i64,
    pub request: Value,
    pub undo: Value,
}

/// Sequin's own session for the journal; it holds the writer key.
pub struct Journal {
    client: PgClient,
    /// The entries' INSERT, prepared once: unprepared, every write would
    /// cost the journal session three round trips (prepare, execute,
    /// close) instead of one.
    insert: tokio_postgres::Statement,
    /// Takes and ends write-through grants (`super::grant`).
    grant: tokio_postgres::Statement,
    ungrant: tokio_postgres::Statement,
    /// This session holds the reconciler lock.
    reconciler: std::sync::atomic::AtomicBool,
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
                "INSERT INTO sequin.write_journal (id, connection, object, op, api_id, xid, capture_id, request, undo)
                 SELECT id, connection, object, op, api_id, xid, capture_id, request, undo
                   FROM jsonb_to_recordset($1::text::jsonb)
                     AS x(id uuid, connection text, object text, op text, api_id text, xid bigint, capture_id bigint, request jsonb, undo jsonb)",
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

    /// Records effects (one statement, committed on its own).
    pub async fn record(&self, entries: &[Entry]) -> Result<(), tokio_postgres::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id.to_string(), "connection": e.connection, "object": e.object,
                    "op": e.op, "api_id": e.api_id, "xid": e.xid, "capture_id": e.capture_id,
                    "request": e.request, "undo": e.undo,
                })
            })
            .collect();
        let doc = Value::Array(rows).to_string();
        self.client.execute(&self.insert, &[&doc]).await?;
        Ok(())
    }
}

/// Looks up the table of a journalled effect.
pub type Lookup = Arc<dyn Fn(&str, &str) -> Option<Arc<Table>> + Send + Sync>;

/// How often settled entries older than the retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Most entries removed per statement, so pruning a long backlog never
/// holds many row locks at once.
const PRUNE_BATCH: i64 = 10_000;

/// Settles journal entries until `shutdown`: every `every`, entries whose
/// transaction ended are marked committed or undone; settled entries older
/// than `retention` are removed (checked every minute).
pub async fn reconcile(
    url: String,
    lookup: Lookup,
    every: Duration,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut journal: Option<Journal> = None;
    let mut suspects = HashSet::new();
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        if journal.is_none() {
            match Journal::connect(&url).await {
                Ok(j) => journal = Some(j),
                Err(e) => tracing::warn!(error = %e, "write journal: cannot connect"),
            }
        }
        if let Some(j) = &journal
            && let Err(e) = settle(j, &lookup, &mut suspects).await
        {
            tracing::warn!(error = %e, "write journal: reconciling failed");
            if j.client.is_closed() {
                journal = None;
            }
        }
        if let Some(j) = &journal
            && j.reconciler.load(std::sync::atomic::Ordering::Relaxed)
            && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY.min(retention.max(every)))
        {
            last_prune = Some(tokio::time::Instant::now());
            match prune(j, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "write journal: settled entries pruned"),
                Err(e) => tracing::warn!(error = %e, "write journal: pruning failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
        }
    }
}

/// Key of the session-level advisory lock that makes one reconciler per
/// database the one that settles entries (several `sequin` processes may
/// serve one database; an effect must be undone once).
const RECONCILER_LOCK: i64 = 7305002;

/// One pass over the open entries (none unless this session holds the
/// reconciler lock, which it keeps once it has it). `suspects` carries,
/// from one pass to the next, entries of committed transactions whose
/// marker was missing: they are undone only when it is still missing a pass
/// later (a commit reaches the commit log a moment before its rows become
/// visible).
pub async fn settle(
    j: &Journal,
    lookup: &Lookup,
    suspects: &mut HashSet<String>,
) -> Result<usize, tokio_postgres::Error> {
    use std::sync::atomic::Ordering;
    if !j.reconciler.load(Ordering::Relaxed) {
        let owner: bool = j
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RECONCILER_LOCK])
            .await?
            .get(0);
        if !owner {
            return Ok(0);
        }
        j.reconciler.store(true, Ordering::Relaxed);
    }
    // The common case in one statement: committed with its marker.
    let committed = j
        .client
        .execute(
            &format!(
                "WITH done AS (
                     SELECT j.id FROM sequin.write_journal j
                      WHERE j.state = 'applied' AND txid_status(j.xid) = 'committed' AND {MARKED}
                 ), m AS (DELETE FROM sequin.write_marker WHERE id IN (SELECT id FROM done))
                 UPDATE sequin.write_journal SET state = 'committed', resolved_at = now()
                  WHERE id IN (SELECT id FROM done)"
            ),
            &[],
        )
        .await?;
    let rows = j
        .client
        .query(
            &format!(
                "SELECT j.id::text, connection, object, op, api_id, undo::text, txid_status(xid), {MARKED}
               FROM sequin.write_journal j
              WHERE state = 'applied' AND txid_status(xid) IS DISTINCT FROM 'in progress'
              ORDER BY created_at LIMIT 200"
            ),
            &[],
        )
        .await?;
    // A suspect not listed any more was settled (its marker showed up).
    let listed: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    suspects.retain(|id| listed.contains(id));
    let mut settled = 0;
    for r in rows {
        let id: String = r.get(0);
        let status: Option<String> = r.get(6);
        let marked: bool = r.get(7);
        let rolled_back_to_savepoint = status.as_deref() == Some("committed") && !marked;
        if rolled_back_to_savepoint && suspects.insert(id.clone()) {
            continue;
        }
        suspects.remove(&id);
        let (state, error) = match status.as_deref() {
            Some("in progress") => continue,
            Some("committed") if marked => ("committed", None),
            Some("committed") | Some("aborted") => {
                let connection: String = r.get(1);
                let object: String = r.get(2);
                let op: String = r.get(3);
                let api_id: Option<String> = r.get(4);
                let undo: Option<String> = r.get(5);
                let undo: Value = undo
                    .and_then(|u| serde_json::from_str(&u).ok())
                    .unwrap_or(Value::Null);
                match lookup(&connection, &object) {
                    None => (
                        "compensation_failed",
                        Some(format!(
                            "connection `{connection}` object `{object}` is not configured"
                        )),
                    ),
                    Some(t) => {
                        let settled =
                            compensate(j, &t, &op, api_id.as_deref().unwrap_or_default(), &undo)
                                .await;
                        t.client.metrics().compensation(&connection, settled.0);
                        settled
                    }
                }
            }
            // Too old to know (or never assigned): say so rather than guess.
            _ => ("unknown", None),
        };
        j.client
            .execute(
                "WITH m AS (DELETE FROM sequin.write_marker WHERE id = $1::text::uuid)
                 UPDATE sequin.write_journal SET state = $2, error = $3, resolved_at = now() WHERE id = $1::text::uuid",
                &[&id, &state, &error],
            )
            .await?;
        if state != "committed" {
            tracing::info!(journal = %id, state, error = error.as_deref().unwrap_or(""), "write-through effect of an aborted transaction settled");
        }
        settled += 1;
    }
    // Marks whose effects are all settled, and capture rows of ended
    // transactions (those of running ones are not visible here).
    j.client
        .batch_execute(
            "DELETE FROM sequin.write_mark m WHERE NOT EXISTS (
                 SELECT 1 FROM sequin.write_journal j
                  WHERE j.state IN ('intent', 'applied') AND j.capture_id = m.capture_id);
             DELETE FROM sequin.capture;",
        )
        .await?;
    Ok(settled + committed as usize)
}

/// Whether journal entry `j`'s effect was kept by its (sub)transaction: its
/// statement's capture row was marked (`sequin.release`), or, for entries
/// of Sequin versions before 0006, its own marker row exists.
const MARKED: &str = "(EXISTS (SELECT 1 FROM sequin.write_mark k WHERE k.capture_id = j.capture_id)
     OR EXISTS (SELECT 1 FROM sequin.write_marker m WHERE m.id = j.id))";

/// Removes settled entries resolved more than `retention` ago (open ones
/// are never removed, whatever their age).
pub async fn prune(j: &Journal, retention: Duration) -> Result<u64, tokio_postgres::Error> {
    let secs = retention.as_secs_f64();
    let mut removed = 0;
    loop {
        let n = j
            .client
            .execute(
                "DELETE FROM sequin.write_journal WHERE id IN (
                     SELECT id FROM sequin.write_journal
                      WHERE state <> 'applied' AND resolved_at < now() - make_interval(secs => $1)
                      LIMIT $2)",
                &[&secs, &PRUNE_BATCH],
            )
            .await?;
        removed += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(removed);
        }
    }
}

/// Undoes one effect of an aborted transaction.
async fn compensate(
    j: &Journal,
    t: &Table,
    op: &str,
    api_id: &str,
    undo: &Value,
) -> (&'static str, Option<String>) {
    let vars = super::apply::vars(t).with("id", api_id.to_string());
    match op {
        "create" => {
            let Some(ep) = &t.plan.endpoints.delete else {
                return (
                    "compensation_failed",
                    Some(format!(
                        "{} records cannot be deleted through the API",
                        t.plan.api_name
                    )),
                );
            };
            let mut req = SendRequest::new(Priority::Write, ep, &vars);
            req.retry_safe = true;
            match t.client.send_request(req).await {
                Ok(_) => {}
                Err(e) if e.status == Some(404) => {}
                Err(e) => return ("compensation_failed", Some(e.to_string())),
            }
            // Sync may have brought the record in meanwhile.
            match delete_local(j, t, api_id).await {
                Ok(()) => ("compensated", None),
                Err(e) => (
                    "compensated",
                    Some(format!("removing the local row failed: {e}")),
                ),
            }
        }
        "update" => {
            let Some(ep) = &t.plan.endpoints.update else {
                return ("compensation_failed", Some("no update endpoint".into()));
            };
            let body: Map<String, Value> = undo
                .get("body")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut req = SendRequest::new(Priority::Write, ep, &vars);
            req.body = Some(write_body(&t.spec, ep, body));
            req.retry_safe = true;
            if let Err(e) = t.client.send_request(req).await {
                return ("compensation_failed", Some(e.to_string()));
            }
            // Sync may have brought the undone values in meanwhile: put the
            // record as the API now has it back in the table.
            match refresh_local(j, t, api_id).await {
                Ok(()) => ("compensated", None),
                Err(e) => (
                    "compensated",
                    Some(format!("refreshing the local row failed: {e}")),
                ),
            }
        }
        _ => {
            // The record is gone at the API; the rolled-back transaction
            // brought its row back: remove it.
            match delete_local(j, t, api_id).await {
                Ok(()) => ("irreversible", None),
                Err(e) => (
                    "irreversible",
                    Some(format!("removing the local row failed: {e}")),
                ),
            }
        }
    }
}

/// Removes a record's row (on Sequin's session, which holds the key).
async fn delete_local(j: &Journal, t: &Table, api_id: &str) -> Result<(), String> {
    let pk = super::sql::Key::of(&t.plan.table);
    let sql = format!(
        "DELETE FROM {} WHERE {} = $1::text::{}",
        t.plan.table.qualified(),
        super::sql::ident(pk.name),
        pk.ty
    );
    j.client
        .execute(&sql, &[&api_id])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads a record from the API and writes it over its row.
async fn refresh_local(j: &Journal, t: &Table, api_id: &str) -> Result<(), String> {
    let record = super::apply::fetch(t, api_id)
        .await
        .map_err(|e| e.to_string())?;
    let doc = super::canonical_doc(t, &record, api_id)?;
    let columns: Vec<String> = t
        .plan
        .table
        .columns
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    let sql = super::sql::write_back(
        &t.plan.table.qualified(),
        super::sql::Key::of(&t.plan.table),
        &columns,
    );
    let doc = Value::Array(vec![doc]).to_string();
    j.client
        .execute(&sql, &[&doc])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
