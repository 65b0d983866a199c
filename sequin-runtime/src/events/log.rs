//! Reading `sequin.events`: the log the sequencer fills, in `seq` order.

use tokio_postgres::{Client, Row};

use super::{Event, Op, Origin};

/// The columns [`from_row`] reads, in its order.
const COLUMNS: &str = "seq, xid, connection, \"table\", key, op, changes, record, old, origin, request_ids, committed_at";

/// The events after `cursor`, at most `limit`, in `seq` order.
pub async fn after(
    client: &Client,
    cursor: i64,
    limit: i64,
) -> Result<Vec<Event>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM sequin.events WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&cursor, &limit],
        )
        .await?;
    Ok(rows.iter().filter_map(from_row).collect())
}

/// The events with these `seq`s (those still kept), in `seq` order.
pub async fn by_seq(client: &Client, seqs: &[i64]) -> Result<Vec<Event>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM sequin.events WHERE seq = ANY($1) ORDER BY seq"),
            &[&seqs],
        )
        .await?;
    Ok(rows.iter().filter_map(from_row).collect())
}

/// One row of `sequin.events`; `None` for an operation this version does
/// not know (a newer writer's), which is logged and skipped.
fn from_row(r: &Row) -> Option<Event> {
    let op: String = r.get(5);
    let Some(op) = Op::parse(&op) else {
        tracing::warn!(
            seq = r.get::<_, i64>(0),
            op,
            "skipping an event of an unknown operation"
        );
        return None;
    };
    Some(Event {
        seq: r.get(0),
        connection: r.get(2),
        table: r.get(3),
        key: r.get(4),
        op,
        changes: r.get(6),
        record: r.get(7),
        old: r.get(8),
        origin: Origin {
            kind: r.get(9),
            xid: r.get(1),
            request_ids: r.get::<_, Option<Vec<String>>>(10).unwrap_or_default(),
        },
        committed_at: r.get(11),
    })
}
