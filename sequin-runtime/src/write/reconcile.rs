//! The reconciler: settles each journalled write once the client's
//! transaction has ended (`txid_status`), in one process at a time (an
//! advisory lock).
//!
//! - Committed, with its statement's mark (`sequin.write_mark`): the effect
//!   stays (`committed`).
//! - Aborted (ROLLBACK, a failed COMMIT, a disconnect, a crash of Postgres
//!   or of Sequin), or committed without its mark (rolled back to a
//!   savepoint): the effect is undone at the API, and only while the API
//!   still holds what the write put there:
//!   - a created record is deleted (`compensated`); one whose id never
//!     came back (Sequin died during the call) is found first: by sending
//!     the create again with its idempotency key (the API answers with the
//!     record it made), or by the values it was created with;
//!   - an update is reverted with the old values, the API's merge rules
//!     respected (`compensated`); if a field no longer holds the value
//!     written, another writer changed it, and nothing is sent
//!     (`conflict`);
//!   - a delete cannot be undone (`irreversible`): the row the rollback
//!     brought back is removed, so the table matches the API;
//!   - a write the API never applied needs nothing (`rejected`).
//! - An intent (the API's answer not journalled yet) is left alone while
//!   the Sequin process applying its statement runs (its journal sessions
//!   hold that process's advisory lock, `journal::PROCESS_CLASS`): the
//!   statement records the answer itself, and hands an intent over when
//!   the answer was lost. Once the process is gone, the intent is settled
//!   here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sequin_spec::model::BodyEncoding;
use sequin_spec::record::{Body, Cell, Column, decode_row, get_path, id_text};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::api::{ApiError, Priority, SendRequest, write_body};

use super::journal::{Journal, PROCESS_CLASS, RECORD_CLASS};
use super::path::PathVars;
use super::rows::{cell_from_pg, cell_to_pg};
use super::table::Table;

/// Looks up the table of a journalled write.
pub type Lookup = Arc<dyn Fn(&str, &str) -> Option<Arc<Table>> + Send + Sync>;

/// How often settled entries older than the retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Most entries removed per statement, so pruning a long backlog never
/// holds many row locks at once.
const PRUNE_BATCH: i64 = 10_000;

/// Most pages of a listing read to find a record created by a write whose
/// answer was lost.
const FIND_PAGES: usize = 50;

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

/// Whether journal entry `j`'s effect was kept by its (sub)transaction: its
/// statement's capture row was marked (`sequin.release`), or, for entries
/// of Sequin versions before 0006, its own marker row exists.
const MARKED: &str = "(EXISTS (SELECT 1 FROM sequin.write_mark k WHERE k.capture_id = j.capture_id)
     OR EXISTS (SELECT 1 FROM sequin.write_marker m WHERE m.id = j.id))";

/// An entry to settle.
struct Pending {
    id: String,
    connection: String,
    object: String,
    op: String,
    api_id: Option<String>,
    request: Value,
    undo: Value,
    idempotency_key: Option<String>,
    /// Still an intent: the API's answer was never journalled.
    intent: bool,
    /// `txid_status` of its transaction.
    status: Option<String>,
    marked: bool,
}

/// How an entry was settled: its state, and why (for the journal's
/// `error` column).
type Settled = (&'static str, Option<String>);

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
    let kept = fold_answers(j).await?;
    let committed = settle_committed(j).await?;
    let pending = pending(j).await?;
    // A suspect not listed any more was settled (its marker showed up).
    let listed: HashSet<&str> = pending.iter().map(|p| p.id.as_str()).collect();
    suspects.retain(|id| listed.contains(id.as_str()));
    // Records found for lost creates in this pass: one record settles one
    // intent.
    let mut claimed = HashSet::new();
    let mut settled = 0;
    for p in &pending {
        let rolled_back_to_savepoint = p.status.as_deref() == Some("committed") && !p.marked;
        if rolled_back_to_savepoint && suspects.insert(p.id.clone()) {
            continue;
        }
        suspects.remove(&p.id);
        let mut compensated = None;
        let (state, error) = match p.status.as_deref() {
            Some("in progress") => continue,
            Some("committed") if p.marked => ("committed", None),
            Some("committed") | Some("aborted") => match lookup(&p.connection, &p.object) {
                None => (
                    "compensation_failed",
                    Some(format!(
                        "connection `{}` object `{}` is not configured",
                        p.connection, p.object
                    )),
                ),
                Some(t) => {
                    let settled = undo(j, &t, p, &mut claimed).await;
                    compensated = Some(t);
                    settled
                }
            },
            // Too old to know (or never assigned): say so rather than guess.
            _ => ("unknown", None),
        };
        j.client
            .execute(
                "WITH m AS (DELETE FROM sequin.write_marker WHERE id = $1::text::uuid)
                 UPDATE sequin.write_journal SET state = $2, error = $3, resolved_at = now() WHERE id = $1::text::uuid",
                &[&p.id, &state, &error],
            )
            .await?;
        // Counted once the journal says so: a scrape never sees the
        // compensation before its journal entry.
        if let Some(t) = compensated {
            t.client.metrics().compensation(&p.connection, state);
        }
        if state != "committed" {
            tracing::info!(journal = %p.id, state, error = error.as_deref().unwrap_or(""), "write-through effect of an aborted transaction settled");
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
    Ok(settled + kept + committed as usize)
}

/// The API's answers the statements appended, into the journal (an
/// answer to an entry settled meanwhile is dropped with it). An applied
/// write whose transaction committed with its mark, the common case, is
/// settled by the same update: each journal row is rewritten once, not
/// twice (every rewrite moves it in each of the journal's indexes).
/// Only the statement's mark (`write_mark`) counts here: an entry marked
/// the older way (`write_marker`, a proxy of an earlier version) is
/// settled by [`settle_committed`], which deletes its marker.
/// Returns how many it settled as committed.
async fn fold_answers(j: &Journal) -> Result<usize, tokio_postgres::Error> {
    let kept = j
        .client
        .query(
            "WITH o AS (DELETE FROM sequin.write_outcome RETURNING *),
                      a AS (SELECT o.*, o.state = 'applied' AND txid_status(j.xid) = 'committed'
                                        AND EXISTS (SELECT 1 FROM sequin.write_mark k WHERE k.capture_id = j.capture_id) AS kept
                              FROM o JOIN sequin.write_journal j ON j.id = o.id)
                 UPDATE sequin.write_journal j
                    SET state = CASE WHEN a.kept THEN 'committed' WHEN a.state = 'unknown' THEN j.state ELSE a.state END,
                        api_id = coalesce(a.api_id, j.api_id), written = coalesce(a.written, j.written),
                        op = coalesce(a.op, j.op), undo = coalesce(a.undo, j.undo),
                        process = NULL,
                        resolved_at = CASE WHEN a.state = 'rejected' OR a.kept THEN now() END
                   FROM a
                  WHERE j.id = a.id AND j.state = 'intent'
              RETURNING a.kept",
            &[],
        )
        .await?
        .iter()
        .filter(|r| r.get::<_, Option<bool>>(0) == Some(true))
        .count();
    Ok(kept)
}

/// The common case in one statement: committed with its marker. An
/// intent that does not name its record yet (a create's, an upsert's)
/// waits for its answer, which its statement records while the
/// write-back runs and [`fold_answers`] settles; once its process handed
/// it over or is gone, `pending` settles it. Returns how many it settled.
async fn settle_committed(j: &Journal) -> Result<u64, tokio_postgres::Error> {
    j.client
        .execute(
            &format!(
                "WITH done AS (
                     SELECT j.id FROM sequin.write_journal j
                      WHERE (j.state = 'applied' OR (j.state = 'intent' AND j.api_id IS NOT NULL))
                        AND txid_status(j.xid) = 'committed' AND {MARKED}
                 ), m AS (DELETE FROM sequin.write_marker WHERE id IN (SELECT id FROM done))
                 UPDATE sequin.write_journal SET state = 'committed', resolved_at = now()
                  WHERE id IN (SELECT id FROM done)"
            ),
            &[],
        )
        .await
}

/// The open entries whose transaction ended, oldest first: intents only
/// once no statement is applying them (see the module docs).
async fn pending(j: &Journal) -> Result<Vec<Pending>, tokio_postgres::Error> {
    let rows = j
        .client
        .query(
            &format!(
                "SELECT j.id::text, connection, object, op, api_id, request::text,
                        (CASE WHEN j.written IS NULL THEN j.undo
                              ELSE jsonb_set(coalesce(j.undo, '{{}}'), '{{written}}', j.written) END)::text,
                        idempotency_key, state = 'intent', txid_status(xid), {MARKED}
                   FROM sequin.write_journal j
                  WHERE state IN ('applied', 'intent') AND txid_status(xid) IS DISTINCT FROM 'in progress'
                    AND (state = 'applied' OR process IS NULL OR NOT EXISTS (
                         SELECT 1 FROM pg_locks l
                          WHERE l.locktype = 'advisory' AND l.classid = $1::int4::oid
                            AND l.objid = j.process::oid AND l.objsubid = 2 AND l.granted
                            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())))
                  ORDER BY created_at LIMIT 200"
            ),
            &[&PROCESS_CLASS],
        )
        .await?;
    let json = |t: Option<String>| {
        t.and_then(|u| serde_json::from_str(&u).ok())
            .unwrap_or(Value::Null)
    };
    Ok(rows
        .iter()
        .map(|r| Pending {
            id: r.get(0),
            connection: r.get(1),
            object: r.get(2),
            op: r.get(3),
            api_id: r.get(4),
            request: json(r.get(5)),
            undo: json(r.get(6)),
            idempotency_key: r.get(7),
            intent: r.get(8),
            status: r.get(9),
            marked: r.get(10),
        })
        .collect())
}

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
                      WHERE state NOT IN ('intent', 'applied') AND resolved_at < now() - make_interval(secs => $1)
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

/// Undoes one write of a transaction that did not keep it.
async fn undo(j: &Journal, t: &Table, p: &Pending, claimed: &mut HashSet<String>) -> Settled {
    if t.plan.link.is_some() {
        let (settled, local) = super::link::undo(t, &p.op, p.api_id.as_deref(), &p.request).await;
        if local && let Some(id) = &p.api_id {
            // Sync may have brought the link in meanwhile.
            if let Err(e) = delete_local(j, t, id).await {
                return (
                    settled.0,
                    Some(format!("removing the local row failed: {e}")),
                );
            }
        }
        return settled;
    }
    match p.op.as_str() {
        "create" => undo_create(j, t, p, claimed).await,
        "update" => undo_update(j, t, p).await,
        // Still an upsert: its answer was lost, or it updated a record
        // whose earlier values Sequin never had (not synced yet).
        "upsert" => (
            "compensation_failed",
            Some(if p.intent {
                "the upsert's answer was lost: whether it created or updated a record is unknown, so it is not undone; sync brings the table in line with the API".into()
            } else {
                "the upsert updated a record whose earlier values Sequin never had (it was not synced yet), so they cannot be restored; sync brings the table in line with the API".into()
            }),
        ),
        _ => undo_delete(j, t, p).await,
    }
}

/// Deletes a created record (found first when its id never came back).
async fn undo_create(
    j: &Journal,
    t: &Table,
    p: &Pending,
    claimed: &mut HashSet<String>,
) -> Settled {
    let api_id = match &p.api_id {
        Some(id) => id.clone(),
        None => match created_by(t, p, claimed).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return (
                    "rejected",
                    Some("no record at the API holds the values of this create: it never reached the API".into()),
                );
            }
            Err(e) => {
                return (
                    "compensation_failed",
                    Some(format!("finding the created record: {e}")),
                );
            }
        },
    };
    claimed.insert(api_id.clone());
    let Some(ep) = &t.plan.endpoints.delete else {
        return (
            "compensation_failed",
            Some(format!(
                "{} records cannot be deleted through the API",
                t.plan.api_name
            )),
        );
    };
    let vars = super::apply::vars_at(t, &path_of(p)).with("id", api_id.clone());
    let mut req = SendRequest::new(Priority::Write, ep, &vars);
    req.retry_safe = true;
    match t.client.send_request(req).await {
        Ok(_) => {}
        Err(e) if e.status == Some(404) => {}
        Err(e) => return ("compensation_failed", Some(e.to_string())),
    }
    // Sync may have brought the record in meanwhile.
    match delete_local(j, t, &api_id).await {
        Ok(()) => ("compensated", None),
        Err(e) => (
            "compensated",
            Some(format!("removing the local row failed: {e}")),
        ),
    }
}

/// The record a create whose answer was lost made, if any: sent again
/// with its idempotency key (the API answers with what the first request
/// made, or makes it now), or else looked for by its values in the
/// listing.
async fn created_by(
    t: &Table,
    p: &Pending,
    claimed: &HashSet<String>,
) -> Result<Option<String>, ApiError> {
    if let (Some(key), Some(ep)) = (&p.idempotency_key, &t.plan.endpoints.create) {
        let vars = super::apply::vars_at(t, &path_of(p));
        let body = p.request.as_object().cloned().unwrap_or_default();
        let mut req = SendRequest::new(Priority::Write, ep, &vars);
        // The very bytes first sent (the journal's JSON does not keep the
        // order of the body's keys).
        req.body = Some(match p.undo.get("replay").and_then(Value::as_str) {
            Some(sent) => match t.spec.body {
                BodyEncoding::Form => Body::Form(sent.to_string()),
                BodyEncoding::Json => {
                    Body::Json(serde_json::from_str(sent).unwrap_or(Value::Object(body)))
                }
            },
            None => write_body(&t.spec, ep, body),
        });
        req.idempotency_key = Some(key);
        return match t.client.send_request(req).await {
            Ok(resp) => {
                let path = ep
                    .returns_id
                    .as_deref()
                    .unwrap_or(&t.plan.table.columns[t.plan.table.primary_key].path);
                Ok(resp
                    .json
                    .as_ref()
                    .and_then(|j| get_path(j, path))
                    .and_then(id_text))
            }
            // Refused again: the first request was refused too.
            Err(e) if e.status.is_some_and(|s| (400..500).contains(&s)) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let Some(written) = p.undo.get("written").and_then(Value::as_object) else {
        return Ok(None);
    };
    let pk = &t.plan.table.columns[t.plan.table.primary_key];
    let vars = super::apply::vars_at(t, &path_of(p));
    let mut cursor = None;
    for _ in 0..FIND_PAGES {
        let page = t
            .client
            .fetch_page(
                &t.plan.endpoints.list,
                Some(&t.plan.pagination),
                &vars,
                cursor.as_ref(),
                None,
            )
            .await?;
        for record in &page.records {
            let Some(id) = get_path(record, &pk.path).and_then(id_text) else {
                continue;
            };
            if !claimed.contains(&id) && differing(t, record, written).is_empty() {
                return Ok(Some(id));
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// The placeholders the write filled from its row (a child's parent),
/// as its intent kept them.
fn path_of(p: &Pending) -> PathVars {
    p.undo
        .get("path")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Reverts an update, only where the API still holds what it wrote.
async fn undo_update(j: &Journal, t: &Table, p: &Pending) -> Settled {
    let Some(api_id) = &p.api_id else {
        return (
            "compensation_failed",
            Some("the journal has no record id".into()),
        );
    };
    // No client write of the record is journalled while its old values
    // are read and written back (`RECORD_CLASS`).
    let key = format!("{}/{}/{api_id}", p.connection, p.object);
    if let Err(e) = record_lock(j, "pg_advisory_lock", &key).await {
        return (
            "compensation_failed",
            Some(format!("locking the record: {e}")),
        );
    }
    let settled = undo_update_locked(j, t, p, api_id).await;
    if let Err(e) = record_lock(j, "pg_advisory_unlock", &key).await {
        tracing::warn!(error = %e, "unlocking a record after undoing an update");
    }
    settled
}

/// Takes or gives back the reconciler's lock of one record.
async fn record_lock(j: &Journal, function: &str, key: &str) -> Result<(), tokio_postgres::Error> {
    j.client
        .execute(
            &format!("SELECT pg_catalog.{function}($1, pg_catalog.hashtext($2))"),
            &[&RECORD_CLASS, &key],
        )
        .await
        .map(|_| ())
}

/// [`undo_update`] under the record's lock: nothing is sent when another
/// transaction wrote the record after this one (its value stays).
async fn undo_update_locked(j: &Journal, t: &Table, p: &Pending, api_id: &str) -> Settled {
    let later: Result<bool, _> = j
        .client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM sequin.write_journal l, sequin.write_journal e
                             WHERE e.id = $1::text::uuid AND l.connection = e.connection AND l.object = e.object
                               AND l.api_id = e.api_id AND l.xid IS DISTINCT FROM e.xid
                               AND l.created_at > e.created_at AND l.state <> 'rejected')",
            &[&p.id],
        )
        .await
        .map(|r| r.get(0));
    match later {
        Ok(true) => {
            return (
                "conflict",
                Some(
                    "another transaction wrote the record since this write; its change is kept"
                        .into(),
                ),
            );
        }
        Ok(false) => {}
        Err(e) => {
            return (
                "compensation_failed",
                Some(format!("reading the journal: {e}")),
            );
        }
    }
    let Some(ep) = &t.plan.endpoints.update else {
        return ("compensation_failed", Some("no update endpoint".into()));
    };
    let empty = Map::new();
    let field = |k: &str| p.undo.get(k).and_then(Value::as_object).unwrap_or(&empty);
    let current = match super::apply::fetch(t, api_id, &path_of(p)).await {
        Ok(r) => r,
        Err(e) if e.status == Some(404) => {
            return (
                "conflict",
                Some("the record was deleted at the API meanwhile; nothing to restore".into()),
            );
        }
        Err(e) => {
            return (
                "compensation_failed",
                Some(format!("reading the record: {e}")),
            );
        }
    };
    let changed_since = differing(t, &current, field("written"));
    if !changed_since.is_empty() {
        if differing(t, &current, field("previous")).is_empty() {
            // The API holds the old values: the write never happened, or
            // was taken back already.
            let state = if p.intent { "rejected" } else { "compensated" };
            return (state, None);
        }
        return (
            "conflict",
            Some(format!(
                "another writer changed {} at the API since this write; its change is kept",
                changed_since.join(", ")
            )),
        );
    }
    let vars = super::apply::vars_at(t, &path_of(p)).with("id", api_id.to_string());
    let mut req = SendRequest::new(Priority::Write, ep, &vars);
    req.body = Some(write_body(&t.spec, ep, field("body").clone()));
    req.retry_safe = true;
    if let Err(e) = t.client.send_request(req).await {
        return ("compensation_failed", Some(e.to_string()));
    }
    // Sync may have brought the undone values in meanwhile: put the record
    // as the API now has it back in the table.
    match refresh_local(j, t, api_id, &path_of(p)).await {
        Ok(()) => ("compensated", None),
        Err(e) => (
            "compensated",
            Some(format!("refreshing the local row failed: {e}")),
        ),
    }
}

/// A delete cannot be undone: the row the rollback brought back goes, so
/// the table matches the API. A delete whose answer was lost that the API
/// never applied needs nothing.
async fn undo_delete(j: &Journal, t: &Table, p: &Pending) -> Settled {
    let Some(api_id) = &p.api_id else {
        return (
            "compensation_failed",
            Some("the journal has no record id".into()),
        );
    };
    if p.intent {
        match super::apply::fetch(t, api_id, &path_of(p)).await {
            Ok(_) => return ("rejected", None),
            Err(e) if e.status == Some(404) => {}
            Err(e) => {
                return (
                    "compensation_failed",
                    Some(format!("reading the record: {e}")),
                );
            }
        }
    }
    match delete_local(j, t, api_id).await {
        Ok(()) => ("irreversible", None),
        Err(e) => (
            "irreversible",
            Some(format!("removing the local row failed: {e}")),
        ),
    }
}

/// The columns of `expected` (values as `to_jsonb` shows them) whose value
/// in the API's `record` is another. An object the API merges by key is
/// compared on the keys expected only (other writers' keys may come and
/// go).
fn differing(t: &Table, record: &Value, expected: &Map<String, Value>) -> Vec<String> {
    let columns = &t.plan.table.columns;
    let Ok(cells) = decode_row(columns, record) else {
        return expected.keys().cloned().collect();
    };
    let mut out = Vec::new();
    for (name, want) in expected {
        let Some(i) = columns.iter().position(|c| &*c.name == name) else {
            continue;
        };
        let col = &columns[i];
        if !same(col, &cells[i], want) {
            out.push(name.clone());
        }
    }
    out
}

/// Whether the API's `cell` holds `want`.
fn same(col: &Column, cell: &Cell, want: &Value) -> bool {
    if col.merge_keys {
        let have = match cell {
            Cell::Json(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        return match want {
            Value::Object(w) => w
                .iter()
                .all(|(k, v)| have.get(k).unwrap_or(&Value::Null) == v),
            _ => have.is_empty(),
        };
    }
    let Ok(want) = cell_from_pg(col, Some(want)) else {
        return false;
    };
    match (cell, &want) {
        (Cell::Decimal(a), Cell::Decimal(b)) => {
            a == b || a.parse::<f64>().ok() == b.parse::<f64>().ok()
        }
        (Cell::Float(a), Cell::Float(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(1.0),
        (a, b) => a == b || cell_to_pg(a) == cell_to_pg(b),
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
async fn refresh_local(
    j: &Journal,
    t: &Table,
    api_id: &str,
    path: &PathVars,
) -> Result<(), String> {
    let record = super::apply::fetch(t, api_id, path)
        .await
        .map_err(|e| e.to_string())?;
    let mut docs = super::back::Docs::default();
    docs.push(t, &record, api_id)?;
    let doc = docs.into_json();
    let columns: Vec<String> = t
        .plan
        .table
        .columns
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    let sql = super::sql::write_back_if_newer(
        &t.plan.table.qualified(),
        super::sql::Key::of(&t.plan.table),
        &columns,
    );
    j.client
        .execute(&sql, &[&doc])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
