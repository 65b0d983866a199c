//! The sink operations of migration 0011, in SQL against real Postgres
//! (issue #15, "replay a table's or a time range's events to one sink,
//! retry or discard dead letters", and retention): `sequin.replay_events`
//! parks delivered events again in order per record, `sequin.discard_dead`
//! drops a dead letter and lets its record go on, and `outbox::prune`
//! removes events past retention only once every sink has passed them.

use std::time::Duration;

use sequin_runtime::events::outbox;
use tokio_postgres::Client;

/// Appends changes (connection, table, id, op) to the outbox and sequences
/// them, as a sync batch and the sequencer would.
async fn logged(c: &Client, changes: &[(&str, &str, &str, &str)]) {
    for (connection, table, id, op) in changes {
        c.execute(
            "INSERT INTO sequin.outbox (connection, \"table\", key, op, record, origin)
             VALUES ($1, $2, jsonb_build_object('id', $3::text), $4, jsonb_build_object('id', $3::text), 'sync')",
            &[connection, table, id, op],
        )
        .await
        .unwrap();
    }
    c.execute("SELECT sequin.sequence_events()", &[])
        .await
        .unwrap();
}

/// The sink's parked events: (seq, state), in seq order.
async fn parked(c: &Client) -> Vec<(i64, String)> {
    c.query(
        "SELECT seq, state FROM sequin.sink_parked WHERE sink = 'a' ORDER BY seq",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn seqs(c: &Client) -> Vec<i64> {
    c.query("SELECT seq FROM sequin.events ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn replay_discard_and_retention_follow_each_sinks_cursor() {
    let db = sequin_pgtemp::Database::create("events_ops").unwrap();
    let mut c = sequin_runtime::store::connect(&db.url).await.unwrap();
    sequin_runtime::store::migrate(&mut c, &[]).await.unwrap();
    c.execute(
        "INSERT INTO sequin.sink (name, kind, cursor) VALUES ('a', 'notify', 0)",
        &[],
    )
    .await
    .unwrap();
    logged(
        &c,
        &[
            ("stripe", "customer", "cus_1", "update"),
            ("stripe", "customer", "cus_2", "update"),
            ("stripe", "charge", "ch_1", "insert"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between: chrono::DateTime<chrono::Utc> = c
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    logged(&c, &[("stripe", "customer", "cus_1", "update")]).await;
    assert_eq!(seqs(&c).await, [1, 2, 3, 4]);
    // Delivered up to 3: a replay covers what the sink has passed only.
    c.execute("UPDATE sequin.sink SET cursor = 3", &[])
        .await
        .unwrap();
    let replay = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        replay("SELECT sequin.replay_events('a', since => now() - interval '1 hour')").await,
        3
    );
    c.execute("DELETE FROM sequin.sink_parked", &[])
        .await
        .unwrap();
    c.execute("UPDATE sequin.sink SET cursor = 4", &[])
        .await
        .unwrap();

    // A time range: only what was committed in it.
    let n: i64 = c
        .query_one("SELECT sequin.replay_events('a', $1)", &[&between])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert_eq!(parked(&c).await, [(4, "retry".to_string())]);
    c.execute("DELETE FROM sequin.sink_parked", &[])
        .await
        .unwrap();

    // A table: its events, each record's first due now and the rest behind it.
    assert_eq!(
        replay("SELECT sequin.replay_events('a', only_connection => 'stripe', only_table => 'customer')").await,
        3
    );
    assert_eq!(
        parked(&c).await,
        [
            (1, "retry".to_string()),
            (2, "retry".to_string()),
            (4, "blocked".to_string())
        ]
    );
    let unknown = c
        .query_one("SELECT sequin.replay_events('nope')", &[])
        .await
        .unwrap_err();
    assert_eq!(
        unknown.as_db_error().map(|e| e.code().code()),
        Some("42704"),
        "{unknown}"
    );

    // A dead letter discarded: its record's next event becomes due.
    c.execute(
        "UPDATE sequin.sink_parked SET state = 'dead' WHERE seq = 1",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(replay("SELECT sequin.discard_dead('a')").await, 1);
    assert_eq!(
        parked(&c).await,
        [(2, "retry".to_string()), (4, "retry".to_string())]
    );

    // Retention: nothing younger than it; past it, only what every sink
    // passed and none holds back (seq 2 is parked, so 1 alone goes).
    assert_eq!(
        outbox::prune(&c, Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(outbox::prune(&c, Duration::ZERO).await.unwrap(), 1);
    assert_eq!(seqs(&c).await, [2, 3, 4]);
    c.execute("DELETE FROM sequin.sink_parked", &[])
        .await
        .unwrap();
    c.execute("UPDATE sequin.sink SET cursor = 3", &[])
        .await
        .unwrap();
    assert_eq!(outbox::prune(&c, Duration::ZERO).await.unwrap(), 2);
    assert_eq!(seqs(&c).await, [4]);
}
