//! Sync's session pool against a real Postgres: many connections' writers
//! share a few sessions (never more than the pool's size, nor more than a
//! connection's share for one connection), every batch still lands with its
//! checkpoint, a session has one staging table for every table it loads,
//! idle sessions close, and a session Postgres closed is not lent again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use sequin_pgtemp::eventually;
use sequin_runtime::registry;
use sequin_runtime::store::{self, Checkpoint, Pool, PoolSettings, Row, Table, Writer};
use sequin_spec::record::Cell;
use serde_json::json;

/// The stripe tables this test writes, in every connection's schema.
const TABLES: &[&str] = &[
    "customer",
    "product",
    "price",
    "subscription",
    "invoice",
    "payment_intent",
    "charge",
];

fn table(schema: &str, name: &str) -> Table {
    let stripe = registry::get("stripe").unwrap();
    let cols = stripe.object_columns(name).unwrap().to_vec();
    let pk = cols.iter().position(|c| c.name == "id").unwrap();
    Table {
        schema: schema.into(),
        name: name.into(),
        columns: cols,
        primary_key: pk,
    }
}

fn rows(t: &Table, batch: usize) -> Vec<Row> {
    (0..5)
        .map(|i| {
            let mut cells = vec![Cell::Null; t.columns.len()];
            cells[t.primary_key] = Cell::Text(format!("{}_{batch}_{i}", t.name));
            Row {
                cells,
                updated_at: Some(1),
            }
        })
        .collect()
}

/// Sessions of sync's pool open now on this test's database
/// (`application_name` `sequin-sync`; other tests share the cluster).
async fn sync_sessions(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = 'sequin-sync' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Samples [`sync_sessions`] every 5 ms until stopped; the most seen.
fn sample_peak(url: String) -> (Arc<AtomicBool>, tokio::task::JoinHandle<i64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicI64::new(0));
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let admin = store::connect(&url).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(sync_sessions(&admin).await, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak.load(Ordering::Relaxed)
        }
    });
    (stop, task)
}

/// Every table of `connection`, a batch after another, all at once.
async fn write_connection(writer: Writer, connection: String, batches: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for name in TABLES {
        let writer = writer.clone();
        let connection = connection.clone();
        tasks.spawn(async move {
            let t = table(&connection, name);
            for b in 0..batches {
                let cp = Checkpoint {
                    backfill_cursor: Some(Some(json!(b))),
                    ..Default::default()
                };
                let mut w = writer.clone();
                w.apply(&connection, &t, &rows(&t, b), &[], &cp)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_share_a_bounded_pool() {
    let db = sequin_pgtemp::Database::create("pool").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    let connections: Vec<String> = (0..12).map(|i| format!("acct_{i}")).collect();
    let stripe = registry::get("stripe").unwrap();
    let migrating: Vec<(&str, _)> = connections.iter().map(|c| (c.as_str(), stripe)).collect();
    store::migrate(&mut admin, &migrating).await.unwrap();

    let settings = PoolSettings {
        size: 3,
        per_connection: 2,
        idle_timeout: Duration::from_millis(800),
    };
    let pool = Pool::new(&db.url, settings);
    let (stop, peak) = sample_peak(db.url.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for c in &connections {
        let writer = pool.writer(Some(pool.share(None)));
        tasks.spawn(write_connection(writer, c.clone(), 4));
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    // 84 tables written at once by 84 tasks, on at most 3 sessions, each
    // opened once.
    assert!(
        (1..=3).contains(&peak),
        "{peak} sync sessions at once, the pool allows 3"
    );
    let stats = pool.stats();
    assert!(
        stats.opened.load(Ordering::Relaxed) <= 3,
        "sessions were opened {} times",
        stats.opened.load(Ordering::Relaxed)
    );
    // Every batch landed with its checkpoint.
    for c in &connections {
        for name in TABLES {
            let n: i64 = admin
                .query_one(&format!("SELECT count(*) FROM {c}.{name}"), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 20, "{c}.{name}");
            let st = pool.writer(None).state(c, name).await.unwrap();
            assert_eq!((st.backfill_cursor, st.rows_synced), (Some(json!(3)), 20));
        }
    }
    // One staging table per session, whatever the number of tables loaded
    // through it (84 here).
    let staged: Vec<(String, i64)> = admin
        .query(
            "SELECT min(relname)::text, count(*) FROM pg_catalog.pg_class
              WHERE relpersistence = 't' AND relkind = 'r'
              GROUP BY relnamespace",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        (1..=3).contains(&staged.len())
            && staged
                .iter()
                .all(|(name, n)| name == "_sequin_stage" && *n == 1),
        "temp tables per session: {staged:?}"
    );
    // Idle sessions close.
    eventually(Duration::from_secs(10), "idle sessions closed", || async {
        let (sessions, open) = (
            sync_sessions(&admin).await,
            stats.open.load(Ordering::Relaxed),
        );
        (sessions == 0 && open == 0, (sessions, open))
    })
    .await;
}

/// One connection's share bounds its sessions, however many of its objects
/// write at once and however big the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_holds_at_most_its_share() {
    let db = sequin_pgtemp::Database::create("pool_share").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    store::migrate(&mut admin, &[("acct", registry::get("stripe").unwrap())])
        .await
        .unwrap();
    let pool = Pool::new(
        &db.url,
        PoolSettings {
            size: 10,
            ..PoolSettings::default()
        },
    );
    let (stop, peak) = sample_peak(db.url.clone());
    let writer = pool.writer(Some(pool.share(Some(2))));
    write_connection(writer, "acct".into(), 6).await;
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    assert!(
        (1..=2).contains(&peak),
        "{peak} sessions for one connection, its share is 2"
    );
}

/// A session Postgres closed while it sat idle in the pool (a restart, an
/// administrator's `pg_terminate_backend`) is not lent again: the next step
/// opens a new one instead of failing with "connection closed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closed_while_idle_is_not_lent() {
    let db = sequin_pgtemp::Database::create("pool_closed").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    store::migrate(&mut admin, &[("acct", registry::get("stripe").unwrap())])
        .await
        .unwrap();
    let pool = Pool::new(&db.url, PoolSettings::default());
    let writer = pool.writer(None);
    writer.state("acct", "customer").await.unwrap();
    assert_eq!(sync_sessions(&admin).await, 1);

    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'sequin-sync' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the idle session ended",
        || async {
            let n = sync_sessions(&admin).await;
            (n == 0, n)
        },
    )
    .await;
    // The client reads the server's goodbye on its own task.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let state = writer.state("acct", "customer").await;
    assert!(state.is_ok(), "the step after the restart: {state:?}");
    let stats = pool.stats();
    assert_eq!(
        (
            stats.opened.load(Ordering::Relaxed),
            stats.open.load(Ordering::Relaxed)
        ),
        (2, 1),
        "(sessions opened, sessions open)"
    );
}
