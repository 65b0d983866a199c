//! Many accounts on few Postgres sessions: 200 Stripe connections of seven
//! objects each (200 simulated accounts, a few records each) sync to live in
//! one process against a Postgres that allows 50 sessions. Sync's sessions
//! never exceed its pool, whatever the number of connections, and no
//! session is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually};
use sequin_pgtemp::connect;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};

use crate::sync_common::{assert_table_equals, spec_columns};
use crate::sync_stripe::api_records;

const CONNECTIONS: usize = 200;

/// The objects synced: the seven the simulator seeds (`Kind::CORE`), each
/// one's table named like the object (`payment_intent`).
const OBJECTS: [Kind; 7] = Kind::CORE;

/// Sync's pool in this test (the default is 10).
const POOL: i64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_sync_on_a_bounded_pool() {
    let cluster = sequin_pgtemp::Cluster::start_with(sequin_pgtemp::Options {
        config: vec!["max_connections = 50".into()],
        ..Default::default()
    })
    .expect("a throwaway cluster");
    let url = cluster.url("postgres");
    let mut sims = Vec::new();
    for i in 0..CONNECTIONS {
        let sim = sequin_sim::start(
            SimConfig::new(Api::Stripe)
                .seed_records(3)
                .rng_seed(i as u64 + 1)
                .token(format!("sk_test_account{i}")),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        sims.push(sim);
    }
    let mut config =
        format!("database_url: {url}\npool: {{ size: {POOL}, per_connection: 2 }}\nconnections:\n");
    for (i, sim) in sims.iter().enumerate() {
        config.push_str(&format!(
            "  - name: acct_{i}\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    poll_interval: 2s\n    objects: [{}]\n",
            sim.base_url(),
            sim.token(),
            OBJECTS.map(Kind::name).join(", "),
        ));
    }
    let pg = connect(&url).await;
    let (stop, peak) = sample_sessions(url.clone());
    let started = Instant::now();
    let sync = Running::start(&config);

    // Every object of every connection live, none with an error.
    let expected = (CONNECTIONS * OBJECTS.len()) as i64;
    eventually(Duration::from_secs(240), "every object live", || async {
        assert!(!sync.finished(), "the engine stopped");
        // Before the migration there is no sequin.sync_state.
        let Ok(r) = pg
            .query_one(
                "SELECT count(*) FILTER (WHERE phase = 'live'),
                            count(*) FILTER (WHERE last_error IS NOT NULL),
                            min(last_error)
                       FROM sequin.sync_state WHERE object NOT IN ('_events', '_connection')",
                &[],
            )
            .await
        else {
            return (false, (0, 0, None));
        };
        let live: i64 = r.get(0);
        let failed: i64 = r.get(1);
        (
            live == expected,
            (live, failed, r.get::<_, Option<String>>(2)),
        )
    })
    .await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (peak_sync, peak_all) = peak.await.unwrap();

    // Sync's sessions stayed within its pool; Postgres refused none.
    assert!(
        (1..=POOL).contains(&peak_sync),
        "{peak_sync} sync sessions at once, the pool allows {POOL}"
    );
    let errors: Vec<(String, String, String)> = pg
        .query(
            "SELECT connection, object, last_error FROM sequin.sync_state WHERE last_error IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(errors.is_empty(), "sync errors: {errors:?}");
    let log = cluster.log();
    assert!(
        !log.contains("too many clients"),
        "Postgres refused sessions:\n{log}"
    );
    eprintln!(
        "{CONNECTIONS} connections live in {took:?}: at most {peak_sync} sync sessions, {peak_all} sessions in all"
    );

    // Equality on a sample: every tenth account, each object whole.
    for i in (0..CONNECTIONS).step_by(10) {
        let stripe = sims[i].stripe();
        for kind in OBJECTS {
            let table = kind.name();
            let api = api_records(stripe, kind);
            assert!(!api.is_empty(), "account {i} has {table} records");
            assert_table_equals(
                &pg,
                &format!("acct_{i}"),
                table,
                "id",
                &spec_columns("stripe", table),
                &api,
            )
            .await;
        }
    }
    // A connection creates only the tables it syncs.
    let tables: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname LIKE 'acct\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, expected);
    sync.stop().await.unwrap();
    for sim in sims {
        sim.shutdown().await;
    }
}

/// Samples every 20 ms, until stopped, the most sessions of sync's pool
/// (`application_name` `sequin-sync`) and of every client at once.
fn sample_sessions(url: String) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(i64, i64)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let pg = connect(&url).await;
            let (sync, all) = (AtomicI64::new(0), AtomicI64::new(0));
            while !stop.load(Ordering::Relaxed) {
                let r = pg
                    .query_one(
                        "SELECT count(*) FILTER (WHERE application_name = 'sequin-sync'), count(*)
                           FROM pg_stat_activity WHERE backend_type = 'client backend'",
                        &[],
                    )
                    .await
                    .unwrap();
                sync.fetch_max(r.get(0), Ordering::Relaxed);
                all.fetch_max(r.get(1), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sync.into_inner(), all.into_inner())
        }
    });
    (stop, task)
}
