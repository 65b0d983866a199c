//! The NOTIFY sink: `pg_notify(<channel>, <payload>)` on the synced
//! database, for applications on the same database.
//!
//! A notification's payload must stay under Postgres's 8,000 bytes, so it
//! carries the event's id, `seq`, record and operation only; the listener
//! reads the rest from `sequin.events` by `seq`. Notifications reach only
//! sessions listening at the time (NOTIFY keeps nothing for later ones):
//! a listener that starts late reads `sequin.events` from its own cursor.

use std::borrow::Borrow;

use serde_json::json;
use tokio_postgres::Client;

use super::{Event, SendError};

/// The payload of one event's notification.
pub fn payload(e: &Event) -> String {
    json!({
        "id": e.id(),
        "seq": e.seq,
        "connection": e.connection,
        "table": e.table,
        "op": e.op,
        "key": e.key,
    })
    .to_string()
}

/// Sends every event's notification in one statement (one commit: the
/// listeners get them together, in order).
pub async fn send<E: Borrow<Event>>(
    client: &Client,
    channel: &str,
    events: &[E],
) -> Vec<Result<(), SendError>> {
    let payloads: Vec<String> = events.iter().map(|e| payload(e.borrow())).collect();
    let sent = client
        .execute(
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS x(p, i) ORDER BY i",
            &[&channel, &payloads],
        )
        .await;
    match sent {
        Ok(_) => events.iter().map(|_| Ok(())).collect(),
        Err(e) => {
            let err = SendError::new(format!("NOTIFY on `{channel}` failed: {e}"));
            events.iter().map(|_| Err(err.clone())).collect()
        }
    }
}
