//! Events under SIGKILL (issue #15's acceptance): the real `sequin sync`
//! process, syncing a Stripe simulator whose customers change 50,000 times
//! and delivering every change to a webhook sink (the example consumer,
//! served in this test process over real HTTP with its own Postgres), is
//! SIGKILLed at 10 random points while the changes flow and restarted each
//! time. At the end every event of `sequin.events` reached the consumer at
//! least once, each record's events were applied in `seq` order (the
//! consumer's `order_violations` stays 0, and each event was applied once),
//! every redelivery carried its event's `webhook-id` (the consumer's dedupe
//! counted it as a duplicate, never as a new delivery), and the consumer's
//! records hold the API's final values.
//!
//! The changes are real row changes written by Sequin's own sync: the test
//! updates customers in the simulator (round-robin over 1,000 of them, so a
//! feed page of 100 events touches 100 distinct records and none is
//! merged), sync reads them from `/v1/events` and commits them, and the
//! capture trigger makes each an event. The sink sends one event per request
//! (`batch_size: 1`), so an event's `webhook-id` is `evt_<seq>` whatever the
//! chunking after a restart; a batch's id (`evt_<first>-<last>`) depends on
//! where a chunk starts, which a crash can move.
//!
//! The example consumer applies each delivery in one transaction on one of
//! its few sessions; on the shared 2-core test machine that, not Sequin,
//! sets the pace of one event per request.

use crate::process_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use process_support::{Scratch, Sequin};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sequin_example_consumer::{Config as ConsumerConfig, Stats};
use sequin_pgtemp::connect;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};
use serde_json::json;

const RECORDS: usize = 1_000;
const CHANGES: usize = 50_000;
/// Upstream changes per burst, one burst every [`BURST_EVERY`]: 50,000 in
/// 25 s or more, so the kills land while changes flow.
const BURST: usize = 200;
const BURST_EVERY: Duration = Duration::from_millis(100);
const KILLS: usize = 10;
/// Seed of the kill delays (printed, so a failure can be replayed).
const KILL_SEED: u64 = 0x5e9_e7e5;

/// The example consumer, served on a loopback port with its own database.
struct Receiver {
    _database: sequin_pgtemp::Database,
    db: tokio_postgres::Client,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Receiver {
    async fn start(secret: &str) -> Receiver {
        let database = sequin_pgtemp::Database::create("events_crash_consumer").unwrap();
        let app = sequin_example_consumer::router(&ConsumerConfig {
            secrets: vec![secret.to_string()],
            database_url: database.url.clone(),
        })
        .await
        .expect("the consumer starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            db: connect(&database.url).await,
            _database: database,
            addr,
            http: reqwest::Client::new(),
        }
    }

    async fn stats(&self) -> Stats {
        let url = format!("http://{}/stats", self.addr);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Distinct event seqs received.
    async fn distinct_seqs(&self) -> i64 {
        self.db
            .query_one("SELECT count(DISTINCT seq) FROM received", &[])
            .await
            .unwrap()
            .get(0)
    }
}

fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([0x5e; 32])
    )
}

async fn is_live(db: &tokio_postgres::Client) -> bool {
    db.query_opt(
        "SELECT 1 FROM sequin.sync_state
          WHERE connection = 'stripe' AND object = 'customer' AND phase = 'live'",
        &[],
    )
    .await
    .ok()
    .flatten()
    .is_some()
}

/// `(count, max seq)` of `sequin.events`.
async fn logged(db: &tokio_postgres::Client) -> (i64, i64) {
    let r = db
        .query_one(
            "SELECT count(*), coalesce(max(seq), 0) FROM sequin.events",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Updates customer `ids` round-robin, `CHANGES` times in bursts; each sets
/// a name no earlier change set, so each is a real row change.
async fn change_upstream(stripe: &sequin_sim::stripe::Stripe, ids: &[String]) {
    for burst in 0..CHANGES.div_ceil(BURST) {
        for n in burst * BURST..((burst + 1) * BURST).min(CHANGES) {
            stripe
                .update(Kind::Customer, &ids[n % ids.len()], &format!("name=c{n}"))
                .unwrap();
        }
        tokio::time::sleep(BURST_EVERY).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_events_flow_loses_none_and_keeps_each_records_order() {
    let started = Instant::now();
    let db = sequin_pgtemp::Database::create("events_crash").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let ids = sim.stripe().seed_customers(RECORDS);
    let receiver = Receiver::start(&secret()).await;
    let scratch = Scratch::new("events_crash");
    let config = scratch.write(
        "sequin.yaml",
        &format!(
            "database_url: {db}
connections:
  - name: stripe
    connector: stripe
    base_url: {base}
    credentials: {{ api_key: {token} }}
    objects: [customer]
    poll_interval: 200ms
sinks:
  - name: consumer
    kind: webhook
    url: http://{addr}/webhook
    secret: {secret}
    batch_size: 1
    max_in_flight: 16
    retry: [1s, 2s]
",
            db = db.url,
            base = sim.base_url(),
            token = sim.token(),
            addr = receiver.addr,
            secret = secret(),
        ),
    );
    let pg = connect(&db.url).await;

    let mut proc = Sequin::spawn(&config, "warn", &["sync"], scratch.path("run0.stderr"));
    let wait = Instant::now();
    while !is_live(&pg).await {
        if let Some(status) = proc.exited() {
            panic!("sequin exited ({status}); stderr:\n{}", proc.stderr());
        }
        assert!(
            wait.elapsed() < Duration::from_secs(60),
            "not live; stderr:\n{}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stripe's events carry whole seconds: the first change a second after
    // the backfill, so none counts as older than a backfilled row.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    eprintln!("live at {:.1}s", started.elapsed().as_secs_f64());

    // Kills after random delays from each start, while the changes flow.
    let mut rng = StdRng::seed_from_u64(KILL_SEED);
    let delays: Vec<Duration> = (0..KILLS)
        .map(|_| Duration::from_millis(rng.random_range(300..3500)))
        .collect();
    eprintln!("kill delays (seed {KILL_SEED:#x}): {delays:?}");
    let kill = async {
        // (events logged, events the consumer had) at each kill.
        let mut at_kills = Vec::new();
        for (i, delay) in delays.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            if let Some(status) = proc.exited() {
                panic!(
                    "sequin exited by itself ({status}) before kill {i}; stderr:\n{}",
                    proc.stderr()
                );
            }
            let status = proc.kill9();
            assert!(!status.success(), "kill {i}: sequin had ended ({status})");
            let (count, _) = logged(&pg).await;
            let had = receiver.distinct_seqs().await;
            eprintln!(
                "kill {i} at {:.1}s: {count} events logged, {had} received",
                started.elapsed().as_secs_f64()
            );
            at_kills.push((count, had));
            proc = Sequin::spawn(
                &config,
                "warn",
                &["sync"],
                scratch.path(&format!("run{}.stderr", i + 1)),
            );
        }
        at_kills
    };
    let (at_kills, ()) = tokio::join!(kill, change_upstream(sim.stripe(), &ids));
    eprintln!(
        "changes made, {KILLS} kills done at {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // Every kill hit a process with events still to deliver, and delivery
    // went on between them.
    for (i, (count, had)) in at_kills.iter().enumerate() {
        assert!(
            had < count || *count < CHANGES as i64,
            "kill {i}: nothing was flowing ({had} of {count} delivered)"
        );
    }
    assert!(
        at_kills.last().unwrap().1 > at_kills[0].1,
        "delivery progressed between the kills: {at_kills:?}"
    );

    // The last process catches up: every change synced and delivered.
    let wait = Instant::now();
    let last_names: HashMap<String, String> = ids
        .iter()
        .map(|id| {
            let c = sim.stripe().get(Kind::Customer, id).unwrap();
            (id.clone(), c["name"].as_str().unwrap().to_string())
        })
        .collect();
    loop {
        if let Some(status) = proc.exited() {
            panic!("sequin exited ({status}); stderr:\n{}", proc.stderr());
        }
        let synced: i64 = pg
            .query_one(
                "SELECT count(*) FROM stripe.customer WHERE name = (($1::jsonb) ->> id)",
                &[&json!(last_names)],
            )
            .await
            .unwrap()
            .get(0);
        let (count, _) = logged(&pg).await;
        let had = receiver.distinct_seqs().await;
        if synced == RECORDS as i64 && had == count {
            break;
        }
        assert!(
            wait.elapsed() < Duration::from_secs(300),
            "not caught up: {synced} of {RECORDS} records synced, {had} of {count} events received; stderr:\n{}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("caught up at {:.1}s", started.elapsed().as_secs_f64());

    // Every event arrived: the consumer's seqs are exactly the log's.
    let (count, max_seq) = logged(&pg).await;
    assert!(
        count >= CHANGES as i64,
        "every upstream change is at least one event: {count}"
    );
    let missing: i64 = receiver
        .db
        .query_one(
            "SELECT count(*) FROM unnest($1::bigint[]) AS s(seq)
              WHERE NOT EXISTS (SELECT 1 FROM received r WHERE r.seq = s.seq)",
            &[&pg
                .query("SELECT seq FROM sequin.events", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<i64>>()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(missing, 0, "events of sequin.events never received");
    let r = receiver
        .db
        .query_one(
            "SELECT count(*), count(DISTINCT seq), max(seq),
                    count(*) FILTER (WHERE webhook_id <> 'evt_' || seq)
               FROM received",
            &[],
        )
        .await
        .unwrap();
    let (deliveries, distinct, received_max, other_ids): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(distinct, count, "no event the log does not hold");
    assert_eq!(received_max, max_seq);
    assert_eq!(other_ids, 0, "every delivery carried its event's id");

    // In order per record and applied once each; redeliveries were known by
    // their id.
    let stats = receiver.stats().await;
    eprintln!(
        "{count} events, {deliveries} deliveries; consumer stats {stats:?}; took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(stats.order_violations, 0, "{stats:?}");
    assert_eq!(stats.applied, count as u64, "each event applied once");
    assert_eq!(
        stats.duplicates,
        (deliveries - distinct) as u64,
        "every redelivery counted as a duplicate of its id"
    );
    assert!(
        stats.duplicates > 0,
        "SIGKILL between a send and its commit redelivers: {stats:?}"
    );
    assert_eq!(stats.bad_signatures, 0);

    // The consumer's records: each at its last event, with the API's value.
    let wrong: i64 = receiver
        .db
        .query_one(
            "SELECT count(*) FROM records
              WHERE deleted OR row ->> 'name' IS DISTINCT FROM (($1::jsonb) ->> (key ->> 'id'))",
            &[&json!(last_names)],
        )
        .await
        .unwrap()
        .get(0);
    let held: i64 = receiver
        .db
        .query_one("SELECT count(*) FROM records", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (held, wrong),
        (RECORDS as i64, 0),
        "the consumer holds each record's final value"
    );
    let last_seqs: Vec<(String, i64)> = pg
        .query(
            "SELECT key ->> 'id', max(seq) FROM sequin.events GROUP BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let stored: HashMap<String, i64> = receiver
        .db
        .query("SELECT key ->> 'id', seq FROM records", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (id, seq) in &last_seqs {
        assert_eq!(stored.get(id), Some(seq), "{id} is at its last event");
    }

    // The sink is caught up and holds nothing back.
    let r = pg
        .query_one(
            "SELECT state, cursor, retrying + blocked + dead FROM sequin.sink_status WHERE sink = 'consumer'",
            &[],
        )
        .await
        .unwrap();
    let (state, cursor, held_back): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(
        (state.as_str(), cursor, held_back),
        ("delivering", max_seq, 0)
    );
    proc.kill9();
    sim.shutdown().await;
}
