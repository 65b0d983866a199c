//! Crash safety of the real `sequin` binary: `sequin sync` is SIGKILLed at
//! random moments of a 50,000-customer Stripe backfill and restarted each
//! time; the table must end exactly equal to the API (same ids, no
//! duplicates, no gaps, same field values). And `sequin run` is SIGKILLed
//! in the middle of write-through transactions: after restart and
//! reconciliation no effect of a transaction that did not commit survives
//! at the API, and every committed one does.
//!
//! It lives in `sequin-runtime/tests` (not `tests/e2e`) because only this
//! package's tests get the built binary (`CARGO_BIN_EXE_sequin`).
//!
//! After every kill the committed state is checked too: the phase is still
//! `backfilling` (so the kill really hit the backfill) and the rows are
//! exactly the first N customers in the API's list order — a prefix, which
//! is what "no gap" means for a paged backfill.

use crate::process_support;

use sequin_pgtemp::connect;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use process_support::{Scratch, Sequin};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Faults, SimConfig};
use serde_json::Value;

const CUSTOMERS: usize = 50_000;
const KILLS: usize = 6;
/// Seed of the kill schedule (printed, so a failure can be replayed).
const SCHEDULE_SEED: u64 = 0x5e9_c4a5;

/// Committed customers (0 before the first migration created the table).
async fn committed(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM stripe.customer", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// `(phase, backfill cursor present)` of stripe.customer.
async fn state(db: &tokio_postgres::Client) -> Option<(String, bool, i64)> {
    db.query_opt(
        "SELECT phase, backfill_cursor IS NOT NULL, rows_synced FROM sequin.sync_state
          WHERE connection = 'stripe' AND object = 'customer'",
        &[],
    )
    .await
    .ok()
    .flatten()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_of_a_50k_backfill_loses_nothing() {
    let started = Instant::now();
    let db = sequin_pgtemp::Database::create("crash").unwrap();
    // No server-side limit: the client's own budget (25 req/s for Stripe)
    // paces the backfill, and every restart starts a fresh budget.
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let seeded = sim.stripe().seed_customers(CUSTOMERS);
    assert_eq!(seeded.len(), CUSTOMERS);
    eprintln!("seeded in {:.1}s", started.elapsed().as_secs_f64());
    // The order `GET /v1/customers` pages them in (newest first).
    let order = sim.stripe().ids(Kind::Customer);
    assert_eq!(order.len(), CUSTOMERS, "the API lists every customer once");

    let scratch = Scratch::new("crash");
    let config = scratch.write(
        "sequin.yaml",
        &format!(
            "database_url: {}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    objects: [customer]\n    poll_interval: 200ms\n",
            db.url,
            sim.base_url(),
            sim.token()
        ),
    );
    let db_client = connect(&db.url).await;

    // Kill points: one per equal slice of the first 90% of the backfill (so
    // they are spread), at a random committed-row count within the slice,
    // then a random delay within the time one batch takes (so the kill lands
    // anywhere in fetching, COPY or commit of the next batch).
    let mut rng = StdRng::seed_from_u64(SCHEDULE_SEED);
    let slice = CUSTOMERS as f64 * 0.9 / KILLS as f64;
    let schedule: Vec<(i64, Duration)> = (0..KILLS)
        .map(|i| {
            let at = slice * i as f64 + rng.random_range(0.0..slice);
            let delay = Duration::from_millis(rng.random_range(0..1500));
            (at as i64, delay)
        })
        .collect();
    eprintln!("kill schedule (seed {SCHEDULE_SEED:#x}): {schedule:?}");

    let mut last_committed = 0i64;
    let mut kills = Vec::new();
    for (i, (at_rows, delay)) in schedule.iter().enumerate() {
        let mut proc = Sequin::spawn(
            &config,
            "warn",
            &["sync"],
            scratch.path(&format!("run{i}.stderr")),
        );
        let wait_start = Instant::now();
        loop {
            if let Some(status) = proc.exited() {
                panic!(
                    "sequin exited by itself ({status}) before kill {i}; stderr:\n{}",
                    proc.stderr()
                );
            }
            if committed(&db_client).await >= *at_rows {
                break;
            }
            assert!(
                wait_start.elapsed() < Duration::from_secs(120),
                "no progress to {at_rows} rows before kill {i}; stderr:\n{}",
                proc.stderr()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(*delay).await;
        let status = proc.kill9();
        assert!(
            !status.success(),
            "kill {i}: the process had already ended ({status})"
        );

        // The kill hit the backfill, and what is committed is a prefix of
        // the API's order: no gap, no duplicate, no foreign row.
        let (phase, has_cursor, _) = state(&db_client).await.expect("sync state exists");
        assert_eq!(phase, "backfilling", "kill {i} happened mid-backfill");
        assert!(has_cursor, "kill {i}: a backfill cursor is committed");
        let ids: Vec<String> = db_client
            .query("SELECT id FROM stripe.customer", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let n = ids.len();
        assert!(
            n as i64 >= last_committed,
            "kill {i}: committed rows went back"
        );
        assert!(
            n > 0 && n < CUSTOMERS,
            "kill {i}: {n} rows is not mid-backfill"
        );
        let have: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let want: HashSet<&str> = order[..n].iter().map(String::as_str).collect();
        assert!(
            have == want,
            "kill {i}: the {n} committed rows are not the API's first {n} customers"
        );
        eprintln!(
            "kill {i} at {:.1}s: {n} rows committed",
            started.elapsed().as_secs_f64()
        );
        kills.push((n, *delay));
        last_committed = n as i64;
    }
    eprintln!("committed rows at each kill: {kills:?}");
    let distinct: HashSet<usize> = kills.iter().map(|k| k.0).collect();
    assert!(
        distinct.len() >= 3,
        "kills spread over the backfill: {kills:?}"
    );

    // The last run finishes the backfill and goes live.
    let mut proc = Sequin::spawn(&config, "warn", &["sync"], scratch.path("final.stderr"));
    let wait_start = Instant::now();
    loop {
        if let Some(status) = proc.exited() {
            panic!("sequin exited ({status}); stderr:\n{}", proc.stderr());
        }
        if let Some((phase, cursor, _)) = state(&db_client).await
            && phase == "live"
        {
            assert!(!cursor, "the backfill cursor is cleared when live");
            break;
        }
        assert!(
            wait_start.elapsed() < Duration::from_secs(120),
            "the last run did not finish the backfill; stderr:\n{}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("live at {:.1}s", started.elapsed().as_secs_f64());
    // A live change still arrives after all the crashes (the events cursor
    // taken before the first backfill survived them).
    let changed = order[CUSTOMERS / 2].clone();
    sim.stripe()
        .update(Kind::Customer, &changed, "name=Crash+Survivor")
        .unwrap();
    let wait_start = Instant::now();
    loop {
        let name: Option<String> = db_client
            .query_one(
                "SELECT name FROM stripe.customer WHERE id = $1",
                &[&changed],
            )
            .await
            .unwrap()
            .get(0);
        if name.as_deref() == Some("Crash Survivor") {
            break;
        }
        assert!(
            wait_start.elapsed() < Duration::from_secs(20),
            "live update after the crashes; stderr:\n{}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proc.kill9();

    // Exactly the API's customers: count and set.
    let (count, distinct_ids): (i64, i64) = {
        let r = db_client
            .query_one(
                "SELECT count(*), count(DISTINCT id) FROM stripe.customer",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(count, CUSTOMERS as i64, "row count equals the API's");
    assert_eq!(distinct_ids, count, "no duplicate ids");
    let mut db_ids: Vec<String> = db_client
        .query("SELECT id FROM stripe.customer", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    db_ids.sort();
    let mut api_ids = sim.stripe().ids(Kind::Customer);
    api_ids.sort();
    assert_eq!(db_ids, api_ids, "the table's ids are the API's ids");

    // Field values of 1,000 random rows (and the changed one) equal the API's.
    let mut sample: Vec<String> = (0..1000)
        .map(|_| api_ids[rng.random_range(0..api_ids.len())].clone())
        .collect();
    sample.push(changed);
    let rows = db_client
        .query(
            "SELECT id, name, email, phone, description, address, metadata,
                    extract(epoch FROM created)::bigint, balance, livemode
               FROM stripe.customer WHERE id = ANY($1)",
            &[&sample],
        )
        .await
        .unwrap();
    let unique: HashSet<&String> = sample.iter().collect();
    assert_eq!(rows.len(), unique.len());
    for r in &rows {
        let id: String = r.get(0);
        let api = sim.stripe().get(Kind::Customer, &id).expect("in the API");
        let text = |i: usize| r.get::<_, Option<String>>(i);
        assert_eq!(text(1).as_deref(), api["name"].as_str(), "{id} name");
        assert_eq!(text(2).as_deref(), api["email"].as_str(), "{id} email");
        assert_eq!(text(3).as_deref(), api["phone"].as_str(), "{id} phone");
        assert_eq!(
            text(4).as_deref(),
            api["description"].as_str(),
            "{id} description"
        );
        assert_eq!(r.get::<_, Option<Value>>(5).as_ref(), Some(&api["address"]));
        assert_eq!(
            r.get::<_, Option<Value>>(6).as_ref(),
            Some(&api["metadata"])
        );
        assert_eq!(
            r.get::<_, Option<i64>>(7),
            api["created"].as_i64(),
            "{id} created"
        );
        assert_eq!(
            r.get::<_, Option<i64>>(8),
            api["balance"].as_i64(),
            "{id} balance"
        );
        assert_eq!(
            r.get::<_, Option<bool>>(9),
            api["livemode"].as_bool(),
            "{id} livemode"
        );
    }
    eprintln!(
        "{KILLS} kills, {} customers, exact; took {:.1}s",
        CUSTOMERS,
        started.elapsed().as_secs_f64()
    );
    sim.shutdown().await;
}

/// Rounds of the write-through kill test.
const WRITE_KILLS: usize = 10;
/// Seed of its kill delays (printed, so a failure can be replayed).
const WRITE_SEED: u64 = 0x5e9_0010;
/// Added to every Stripe request: the kills land inside API calls.
const API_LATENCY: Duration = Duration::from_millis(150);

/// Issue #10, item 5: `sequin run` SIGKILLed at random points of multi-row
/// writes inside transactions (creates and updates, each an API call of
/// 150 ms). Every round first commits a transaction of its own (its
/// effects must stay), then starts one that never commits and kills
/// `sequin` while it runs. After a last restart and reconciliation, the
/// API and Postgres are equal, nothing the uncommitted transactions
/// created exists, and none of their updates is left at the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_write_through_transactions_leaves_no_uncommitted_effect() {
    let db = sequin_pgtemp::Database::create("crash_writes").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(5)
            .rate_limit(0.0)
            .faults(Faults {
                latency: API_LATENCY,
                ..Faults::default()
            }),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let stripe = sim.stripe();
    let seeded = stripe.ids(Kind::Customer);
    let port = sequin_pgtemp::free_port().unwrap();
    let scratch = Scratch::new("crash_writes");
    let config = scratch.write(
        "sequin.yaml",
        &format!(
            "database_url: {}\nproxy:\n  listen: 127.0.0.1:{port}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    objects: [customer]\n    poll_interval: 500ms\n",
            db.url,
            sim.base_url(),
            sim.token()
        ),
    );
    let user = db
        .url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .get_user()
        .unwrap_or("postgres")
        .to_string();
    let dbname = db.name.clone();
    let db_client = connect(&db.url).await;
    let mut rng = StdRng::seed_from_u64(WRITE_SEED);
    let mut kept_names: std::collections::HashMap<String, String> = Default::default();
    eprintln!("write kill seed {WRITE_SEED:#x}");
    for round in 0..WRITE_KILLS {
        let mut proc = Sequin::spawn(
            &config,
            "warn",
            &["run"],
            scratch.path(&format!("write{round}.stderr")),
        );
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1").port(port).user(&user).dbname(&dbname);
        let client = {
            let start = Instant::now();
            loop {
                if let Ok((client, conn)) = cfg.connect(tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    break client;
                }
                if let Some(status) = proc.exited() {
                    panic!("sequin exited ({status}); stderr:\n{}", proc.stderr());
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the proxy did not start; stderr:\n{}",
                    proc.stderr()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        // The seeded customers are synced before they are written (an
        // UPDATE of a row sync has not brought in yet changes nothing).
        let start = Instant::now();
        while db_client
            .query_one(
                "SELECT count(*) FROM stripe.customer WHERE id = ANY($1)",
                &[&seeded],
            )
            .await
            .map_or(0, |r| r.get::<_, i64>(0))
            < seeded.len() as i64
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the seeded customers were not synced"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A transaction that commits.
        let kept_id = &seeded[round % seeded.len()];
        let kept_name = format!("Kept {round}");
        client.batch_execute("BEGIN").await.unwrap();
        for k in 0..2 {
            client
                .execute(
                    "INSERT INTO stripe.customer (email, name) VALUES ($1, 'Kept')",
                    &[&format!("round-{round}-kept-{k}@example.com")],
                )
                .await
                .unwrap_or_else(|e| panic!("round {round}: a committed insert: {e:?}"));
        }
        client
            .execute(
                "UPDATE stripe.customer SET name = $2 WHERE id = $1",
                &[kept_id, &kept_name],
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: a committed update: {e:?}"));
        client.batch_execute("COMMIT").await.unwrap();
        kept_names.insert(kept_id.clone(), kept_name);
        // One that never commits, killed in flight.
        let lost_id = seeded[(round + 1) % seeded.len()].clone();
        let uncommitted = tokio::spawn(async move {
            client.batch_execute("BEGIN").await?;
            client
                .execute(
                    "INSERT INTO stripe.customer (email, name) VALUES ($1, 'Lost'), ($2, 'Lost'), ($3, 'Lost')",
                    &[
                        &format!("round-{round}-lost-0@example.com"),
                        &format!("round-{round}-lost-1@example.com"),
                        &format!("round-{round}-lost-2@example.com"),
                    ],
                )
                .await?;
            client
                .execute(
                    "UPDATE stripe.customer SET name = 'Lost' WHERE id = $1",
                    &[&lost_id],
                )
                .await?;
            client
                .execute(
                    "INSERT INTO stripe.customer (email, name) VALUES ($1, 'Lost'), ($2, 'Lost')",
                    &[
                        &format!("round-{round}-lost-3@example.com"),
                        &format!("round-{round}-lost-4@example.com"),
                    ],
                )
                .await?;
            // Held open until the kill ends it.
            client.simple_query("SELECT pg_sleep(30)").await?;
            Ok::<_, tokio_postgres::Error>(())
        });
        let delay = Duration::from_millis(rng.random_range(0..1300));
        tokio::time::sleep(delay).await;
        let status = proc.kill9();
        assert!(
            !status.success(),
            "round {round}: sequin had ended ({status})"
        );
        let ended = tokio::time::timeout(Duration::from_secs(10), uncommitted)
            .await
            .expect("the client sees the proxy die");
        assert!(
            matches!(ended, Ok(Err(_))),
            "round {round}: the uncommitted transaction ended with an error: {ended:?}"
        );
        eprintln!("round {round}: killed after {delay:?}");
    }

    // A last run reconciles what the killed ones left.
    let mut proc = Sequin::spawn(&config, "warn", &["run"], scratch.path("final.stderr"));
    let start = Instant::now();
    loop {
        if let Some(status) = proc.exited() {
            panic!("sequin exited ({status}); stderr:\n{}", proc.stderr());
        }
        let open: i64 = db_client
            .query_one(
                "SELECT count(*) FROM sequin.write_journal WHERE state IN ('intent', 'applied')",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(-1);
        let api: HashSet<String> = stripe.ids(Kind::Customer).into_iter().collect();
        let local: HashSet<String> = db_client
            .query("SELECT id FROM stripe.customer", &[])
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        if open == 0 && api == local {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not reconciled: {open} open journal entries, {} API records, {} rows; stderr:\n{}",
            api.len(),
            local.len(),
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let records: Vec<Value> = stripe
        .ids(Kind::Customer)
        .iter()
        .filter_map(|id| stripe.get(Kind::Customer, id))
        .collect();
    let emails: Vec<&str> = records.iter().filter_map(|r| r["email"].as_str()).collect();
    assert!(
        !emails.iter().any(|e| e.contains("-lost-")),
        "a create of an uncommitted transaction survives: {emails:?}"
    );
    for round in 0..WRITE_KILLS {
        for k in 0..2 {
            let email = format!("round-{round}-kept-{k}@example.com");
            assert_eq!(
                emails.iter().filter(|e| **e == email).count(),
                1,
                "the committed create {email} exists once"
            );
        }
    }
    assert!(
        !records.iter().any(|r| r["name"] == "Lost"),
        "an update of an uncommitted transaction survives"
    );
    for (id, name) in &kept_names {
        let last_kept = stripe.get(Kind::Customer, id).unwrap()["name"].clone();
        assert!(
            last_kept.as_str().is_some_and(|n| n.starts_with("Kept ")),
            "{id}: a committed update stays ({name} or a later one): {last_kept}"
        );
    }
    let journal: Vec<(String, i64)> = db_client
        .query(
            "SELECT state, count(*) FROM sequin.write_journal GROUP BY state ORDER BY state",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    eprintln!("journal after reconciliation: {journal:?}");
    drop(proc);
}
