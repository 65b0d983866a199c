//! The consumer's Postgres: its tables, and one delivery applied in one
//! transaction.
//!
//! `seen` holds every `webhook-id` taken: a delivery whose id is there is a
//! duplicate (a retry of one we took) and changes nothing. `records` holds
//! the latest state of each record with the `seq` of the event that made
//! it; an event is applied only when its `seq` is greater, so a replay of
//! an older event changes nothing either. A delete leaves a tombstone
//! (`deleted`, no row) so an older insert arriving late cannot bring the
//! record back. `received` logs every event of every verified delivery,
//! duplicates included, with its `webhook-id`: what the fault tests compare
//! with `sequin.events` (an application may leave it out).

use serde::Deserialize;
use serde_json::Value;
use tokio_postgres::Client;

/// The tables, created when missing.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS seen (webhook_id text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS received (webhook_id text NOT NULL, seq bigint NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    connection text NOT NULL,
    "table" text NOT NULL,
    key jsonb NOT NULL,
    seq bigint NOT NULL,
    deleted bool NOT NULL,
    row jsonb,
    PRIMARY KEY (connection, "table", key)
);
"#;

/// A payload: one event, or a `sequin.batch` whose `data` lists payloads.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    data: Value,
}

/// What we use of an event (Sequin sends more: `changes`, `old`, `origin`,
/// `committed_at`).
#[derive(Deserialize)]
pub struct Change {
    pub seq: i64,
    pub connection: String,
    pub table: String,
    pub key: Value,
    /// `insert`, `update`, `delete`, or `read` (a backfill's row).
    pub op: String,
    /// The row after the change; absent for a delete.
    #[serde(default)]
    pub record: Option<Value>,
}

/// What one delivery did.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Its `webhook-id` was taken before: nothing was applied.
    pub duplicate: bool,
    /// Events applied (newer than what we hold).
    pub applied: u64,
    /// Events older than what we hold for their record.
    pub order_violations: u64,
}

/// The events of a request body, in order.
pub fn parse(body: &[u8]) -> Result<Vec<Change>, serde_json::Error> {
    let payload: Payload = serde_json::from_slice(body)?;
    if payload.kind != "sequin.batch" {
        return Ok(vec![serde_json::from_value(payload.data)?]);
    }
    let items: Vec<Payload> = serde_json::from_value(payload.data)?;
    items
        .into_iter()
        .map(|item| serde_json::from_value(item.data))
        .collect()
}

/// Applies one delivery: its id noted and its events applied in one
/// transaction, so a failure leaves neither and the retry applies both.
pub async fn deliver(
    db: &mut Client,
    webhook_id: &str,
    changes: &[Change],
) -> Result<Outcome, tokio_postgres::Error> {
    let tx = db.transaction().await?;
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    let new = tx
        .execute(
            "WITH logged AS (INSERT INTO received (webhook_id, seq) SELECT $1, unnest($2::bigint[]))
             INSERT INTO seen (webhook_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&webhook_id, &seqs],
        )
        .await?;
    if new == 0 {
        tx.commit().await?;
        return Ok(Outcome {
            duplicate: true,
            ..Outcome::default()
        });
    }
    let mut outcome = Outcome::default();
    for change in changes {
        let deleted = change.op == "delete";
        let row = if deleted { None } else { change.record.clone() };
        // Written only when newer; the conflicting row stays locked either
        // way, so the seq read next is the one we lost to.
        let written = tx
            .execute(
                r#"INSERT INTO records (connection, "table", key, seq, deleted, row)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (connection, "table", key) DO UPDATE
                   SET seq = EXCLUDED.seq, deleted = EXCLUDED.deleted, row = EXCLUDED.row
                   WHERE records.seq < EXCLUDED.seq"#,
                &[
                    &change.connection,
                    &change.table,
                    &change.key,
                    &change.seq,
                    &deleted,
                    &row,
                ],
            )
            .await?;
        if written == 1 {
            outcome.applied += 1;
            continue;
        }
        let stored: i64 = tx
            .query_one(
                r#"SELECT seq FROM records WHERE connection = $1 AND "table" = $2 AND key = $3"#,
                &[&change.connection, &change.table, &change.key],
            )
            .await?
            .get(0);
        // An equal seq is the same event again under another webhook-id
        // (singly and in a batch): in order, just not new.
        if stored > change.seq {
            outcome.order_violations += 1;
        }
    }
    tx.commit().await?;
    Ok(outcome)
}
