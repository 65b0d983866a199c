//! Events' fault acceptance (issue #15) with a webhook sink: the engine and
//! a Stripe simulator in-process, the example consumer
//! (`sequin-example-consumer`) served over real HTTP with its own Postgres.
//! A receiver down for a minute gets everything once it is back, in order
//! per record, the sink showing paused while it was down; a receiver
//! answering 500 dead-letters the events and `sequin.retry_dead` delivers
//! them once healed; a receiver with another secret refuses every request
//! (401) and the events stay undelivered rather than counted delivered.
//! (SIGKILL of the process is `sequin-runtime/tests/it/events_crash.rs`: it
//! needs the `sequin` binary.)

use crate::write_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use sequin_e2e::eventually;
use sequin_example_consumer::{Config as ConsumerConfig, Stats};
use sequin_sim::Api;
use sequin_sim::stripe::Kind;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use write_common::*;

/// Customers seeded (and changed).
const RECORDS: usize = 5;

fn secret(byte: u8) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    )
}

/// The example consumer on a fixed loopback port, which can stop listening
/// and start again on the same port.
struct Receiver {
    _database: sequin_pgtemp::Database,
    db: tokio_postgres::Client,
    app: axum::Router,
    addr: SocketAddr,
    http: reqwest::Client,
    serving: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
}

impl Receiver {
    async fn start(secret: &str) -> Receiver {
        let database = sequin_pgtemp::Database::create("events_faults_consumer").unwrap();
        let app = sequin_example_consumer::router(&ConsumerConfig {
            secrets: vec![secret.to_string()],
            database_url: database.url.clone(),
        })
        .await
        .expect("the consumer starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut receiver = Receiver {
            db: connect(&database.url).await,
            _database: database,
            app,
            addr: listener.local_addr().unwrap(),
            http: reqwest::Client::new(),
            serving: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let served = axum::serve(listener, self.app.clone()).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        self.serving = Some((stop, tokio::spawn(async move { served.await })));
    }

    /// Stops listening: the port refuses connections, and the open ones
    /// are closed (graceful shutdown closes idle keep-alive connections).
    async fn stop(&mut self) {
        let (stop, task) = self.serving.take().expect("serving");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("the consumer stops within 15 s")
            .unwrap()
            .unwrap();
    }

    /// Listens on the same port again (the same state and counters).
    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
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

    async fn control(&self, status: u16) {
        let url = format!("http://{}/control", self.addr);
        let r = self
            .http
            .post(url)
            .json(&json!({ "status": status }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// `(deliveries of events, distinct seqs)` in `received`.
    async fn received(&self) -> (i64, i64) {
        let r = self
            .db
            .query_one("SELECT count(*), count(DISTINCT seq) FROM received", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    }

    async fn records(&self) -> i64 {
        self.db
            .query_one("SELECT count(*) FROM records", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Seqs of `sequin.events` (in `pg`) the consumer never received.
    async fn missing(&self, pg: &tokio_postgres::Client) -> Vec<i64> {
        let seqs: Vec<i64> = pg
            .query("SELECT seq FROM sequin.events ORDER BY seq", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        self.db
            .query(
                "SELECT s.seq FROM unnest($1::bigint[]) AS s(seq)
                  WHERE NOT EXISTS (SELECT 1 FROM received r WHERE r.seq = s.seq) ORDER BY 1",
                &[&seqs],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

/// One row of `sequin.sink_status`.
#[derive(Debug, Clone)]
#[allow(dead_code)] // read through Debug in failure messages
struct SinkStatus {
    state: String,
    cursor: i64,
    delivered: i64,
    retrying: i64,
    blocked: i64,
    dead: i64,
    lag_seconds: f64,
    last_error: Option<String>,
}

async fn sink_status(pg: &tokio_postgres::Client) -> SinkStatus {
    let r = pg
        .query_one(
            "SELECT state, cursor, delivered, retrying, blocked, dead, lag_seconds, last_error
               FROM sequin.sink_status WHERE sink = 'consumer'",
            &[],
        )
        .await
        .unwrap();
    SinkStatus {
        state: r.get(0),
        cursor: r.get(1),
        delivered: r.get(2),
        retrying: r.get(3),
        blocked: r.get(4),
        dead: r.get(5),
        lag_seconds: r.get(6),
        last_error: r.get(7),
    }
}

/// `(count, max seq, distinct records)` of `sequin.events`.
async fn logged(pg: &tokio_postgres::Client) -> (i64, i64, i64) {
    let r = pg
        .query_one(
            "SELECT count(*), coalesce(max(seq), 0), count(DISTINCT key) FROM sequin.events",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// The engine syncing the simulator's customers (polling its events feed
/// every 200 ms) with the webhook sink `consumer` to `url`; `sink_keys`
/// are more keys of the sink (YAML lines indented by four spaces).
async fn setup(prefix: &str, url: &str, sink_secret: &str, sink_keys: &str) -> Setup {
    let sinks = format!(
        "sinks:\n  - name: consumer\n    kind: webhook\n    url: {url}\n    secret: {sink_secret}\n{sink_keys}"
    );
    let t = Setup::start_with_proxy(Api::Stripe, RECORDS, prefix, &sinks, |sim| {
        stripe_connection(sim, "customer").replace("poll_interval: 1h", "poll_interval: 200ms")
    })
    .await;
    // Stripe's events carry whole seconds: the first change a second after
    // the backfill, so none counts as older than a backfilled row.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    t
}

/// Updates every seeded customer once (round `round`), then waits long
/// enough for a poll to take the round on its own: each record changes
/// once per round, so a record's rounds are separate events.
async fn change_all(t: &Setup, round: usize) {
    let stripe = t.sim.stripe();
    for (i, id) in stripe.ids(Kind::Customer).iter().enumerate() {
        stripe
            .update(Kind::Customer, id, &format!("name=round{round}-{i}"))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
}

/// Waits until `sequin.events` holds at least `at_least` events and no
/// more arrive for a second; returns `(count, max seq, records)`.
async fn settled(pg: &tokio_postgres::Client, at_least: i64) -> (i64, i64, i64) {
    let start = Instant::now();
    let mut last = logged(pg).await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = logged(pg).await;
        if now == last && now.0 >= at_least {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "events did not settle at {at_least} or more: {now:?}"
        );
        last = now;
    }
}

/// The consumer got every logged event, each applied once, in order per
/// record, and its records are at each record's last event.
async fn assert_all_applied_in_order(pg: &tokio_postgres::Client, receiver: &Receiver) {
    let (count, _, records) = logged(pg).await;
    assert_eq!(receiver.missing(pg).await, Vec::<i64>::new());
    let stats = receiver.stats().await;
    assert_eq!(stats.order_violations, 0, "{stats:?}");
    assert_eq!(stats.applied, count as u64, "each event applied once");
    let (_, distinct) = receiver.received().await;
    assert_eq!(distinct, count, "no event the log does not hold");
    assert_eq!(receiver.records().await, records);
    let behind: i64 = receiver
        .db
        .query_one(
            "SELECT count(*) FROM records r
               JOIN jsonb_each_text($1::jsonb) l ON l.key = r.key ->> 'id'
              WHERE r.seq <> l.value::bigint",
            &[&last_seqs(pg).await],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(behind, 0, "every record at its last event");
}

/// `{"<customer id>": <its last seq>}` of `sequin.events`.
async fn last_seqs(pg: &tokio_postgres::Client) -> serde_json::Value {
    pg.query_one(
        "SELECT coalesce(jsonb_object_agg(id, seq), '{}') FROM
           (SELECT key ->> 'id' AS id, max(seq) AS seq FROM sequin.events GROUP BY 1) x",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_minute_gets_everything_in_order_once_back() {
    let started = Instant::now();
    let mut receiver = Receiver::start(&secret(1)).await;
    // Retries at 1, 6, 16 and 46 s, then 10 minutes later: none is dead
    // after a minute, and once the receiver is back only the paused sink's
    // probe (every 5 s) can find it in time.
    let t = setup(
        "events_down",
        &receiver.url(),
        &secret(1),
        "    retry: [1s, 5s, 10s, 30s, 10m, 10m]\n    probe_every: 5s\n",
    )
    .await;
    change_all(&t, 0).await;
    let (count, ..) = settled(&t.pg, RECORDS as i64).await;
    eventually(Duration::from_secs(20), "the first round", || async {
        let (_, distinct) = receiver.received().await;
        (distinct == count, distinct)
    })
    .await;

    receiver.stop().await;
    let down = Instant::now();
    let mut round = 1;
    let mut seen_paused = None;
    while down.elapsed() < Duration::from_secs(60) {
        change_all(&t, round).await;
        round += 1;
        let s = sink_status(&t.pg).await;
        if s.state == "paused" && seen_paused.is_none() {
            seen_paused = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let while_down = sink_status(&t.pg).await;
    let paused = seen_paused.expect("the sink paused while the receiver was down");
    assert!(
        paused
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot connect")),
        "{paused:?}"
    );
    assert!(
        while_down.state == "paused" && while_down.retrying > 0 && while_down.lag_seconds > 30.0,
        "after a minute down: {while_down:?}"
    );
    assert_eq!(while_down.dead, 0, "{while_down:?}");
    let (got_before, _) = receiver.received().await;
    eprintln!("{round} rounds while down; then {while_down:?}");

    receiver.restart().await;
    let back = Instant::now();
    let (count, max_seq, _) = settled(&t.pg, count + RECORDS as i64).await;
    let status = eventually(Duration::from_secs(20), "delivery resumed", || async {
        let s = sink_status(&t.pg).await;
        let (_, distinct) = receiver.received().await;
        (
            distinct == count && s.cursor == max_seq && s.retrying + s.blocked == 0,
            (distinct, s),
        )
    })
    .await;
    eprintln!(
        "caught up {:.1}s after the receiver came back: {status:?}",
        back.elapsed().as_secs_f64()
    );
    let status = eventually(Duration::from_secs(5), "lag ~0", || async {
        let s = sink_status(&t.pg).await;
        (s.state == "delivering" && s.lag_seconds < 1.0, s)
    })
    .await;
    assert_eq!((status.dead, status.delivered), (0, count), "{status:?}");
    assert!(got_before > 0);
    assert_all_applied_in_order(&t.pg, &receiver).await;
    eprintln!("took {:.1}s", started.elapsed().as_secs_f64());
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_forever_dead_letters_and_retry_dead_delivers_once() {
    let started = Instant::now();
    let receiver = Receiver::start(&secret(2)).await;
    receiver.control(500).await;
    let t = setup(
        "events_dead",
        &receiver.url(),
        &secret(2),
        "    retry: [200ms, 200ms]\n    probe_every: 300ms\n",
    )
    .await;
    for round in 0..3 {
        change_all(&t, round).await;
    }
    let (count, max_seq, records) = settled(&t.pg, 2 * RECORDS as i64).await;
    // Each record's first event dead after three attempts, its later ones
    // blocked behind it (never sent ahead of it).
    let status = eventually(Duration::from_secs(30), "the dead letters", || async {
        let s = sink_status(&t.pg).await;
        (
            s.dead == records && s.dead + s.blocked == count && s.cursor == max_seq,
            s,
        )
    })
    .await;
    assert_eq!((status.delivered, status.retrying), (0, 0), "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("500")),
        "{status:?}"
    );
    let attempts: Vec<i32> = t
        .pg
        .query(
            "SELECT DISTINCT attempts FROM sequin.sink_parked WHERE sink = 'consumer' AND state = 'dead'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts, [3], "the first attempt and two retries");
    assert_eq!(receiver.received().await, (0, 0), "nothing taken");

    receiver.control(200).await;
    let retried: i64 =
        t.pg.query_one("SELECT sequin.retry_dead('consumer')", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(retried, records);
    let status = eventually(Duration::from_secs(30), "the retried events", || async {
        let s = sink_status(&t.pg).await;
        (
            s.retrying + s.blocked + s.dead == 0 && s.delivered == count,
            s,
        )
    })
    .await;
    assert_eq!(status.state, "delivering", "{status:?}");
    let (deliveries, distinct) = receiver.received().await;
    assert_eq!((deliveries, distinct), (count, count), "each arrived once");
    assert_eq!(receiver.stats().await.duplicates, 0);
    assert_all_applied_in_order(&t.pg, &receiver).await;
    eprintln!("took {:.1}s", started.elapsed().as_secs_f64());
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_with_another_secret_refuses_and_nothing_counts_as_delivered() {
    let started = Instant::now();
    let receiver = Receiver::start(&secret(3)).await;
    let t = setup(
        "events_secret",
        &receiver.url(),
        &secret(4),
        "    retry: [1s, 1h]\n",
    )
    .await;
    change_all(&t, 0).await;
    change_all(&t, 1).await;
    let (count, max_seq, records) = settled(&t.pg, RECORDS as i64).await;
    // Each record's first event sent, refused, retried a second later and
    // refused again; its later events wait behind it.
    let status = eventually(Duration::from_secs(30), "the refusals", || async {
        let s = sink_status(&t.pg).await;
        let stats = receiver.stats().await;
        (
            s.cursor == max_seq && stats.bad_signatures >= 2 * records as u64,
            (s, stats),
        )
    })
    .await;
    let (s, stats) = status;
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("401")),
        "{s:?}"
    );
    assert_eq!(s.delivered, 0, "{s:?}");
    assert_eq!(s.dead, 0, "{s:?}");
    assert_eq!(s.retrying + s.blocked, count, "all held back: {s:?}");
    assert_ne!(s.state, "delivering", "{s:?}");
    assert_eq!((stats.received, stats.applied), (0, 0), "{stats:?}");
    assert_eq!(receiver.received().await, (0, 0));
    assert_eq!(receiver.records().await, 0);
    eprintln!("took {:.1}s", started.elapsed().as_secs_f64());
    t.finish().await;
}
