//! One rate-limit budget per account across processes, against a real
//! Postgres: several registries of shared budgets (each a process to the
//! database, with its own holder) drawing from one account's slots never
//! admit more than the limit in any window, between them or for reads; they
//! split a saturated account between them; writes find the reserve at once
//! while reads saturate it; and a pause the API announced to one process
//! holds back the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sequin_pgtemp::eventually;
use sequin_runtime::api::{Budgets, Lane};
use sequin_runtime::rates::PgRateStore;
use sequin_runtime::store;
use sequin_spec::model::RateLimit;
use tokio::time::Instant;

/// Stripe's rate limit (a fifth kept for writes), with `requests` a second.
fn limit(requests: u32) -> RateLimit {
    let mut limit = sequin_runtime::registry::get("stripe")
        .unwrap()
        .spec
        .rate_limit
        .clone();
    limit.requests = requests;
    assert_eq!(
        (limit.per.get(), limit.write_share),
        (Duration::from_secs(1), 0.2)
    );
    limit
}

/// The most of `times` within any window of `window`.
fn most_in_window(times: &mut [Instant], window: Duration) -> usize {
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_one_budget_per_account() {
    let db = sequin_pgtemp::Database::create("rates").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    store::migrate(&mut admin, &[]).await.unwrap();
    let account = "stripe:connection=acme";
    let l = limit(20);
    let processes: Vec<Budgets> = (0..3)
        .map(|_| Budgets::shared(Arc::new(PgRateStore::new(&db.url))))
        .collect();

    // Each process runs 8 greedy backfill readers for 4 s; a response takes 5 ms.
    let admitted: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(4);
    let mut tasks = tokio::task::JoinSet::new();
    for (p, budgets) in processes.iter().enumerate() {
        for _ in 0..8 {
            let budget = budgets.get(account, &l);
            let admitted = admitted.clone();
            tasks.spawn(async move {
                while Instant::now() < stop {
                    let permit = budget.acquire_in(Lane::Backfill).await;
                    admitted.lock().unwrap().push((p, Instant::now()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(permit);
                }
            });
        }
    }
    // A fourth process writes once a second while the reads saturate the account.
    let writer = Budgets::shared(Arc::new(PgRateStore::new(&db.url))).get(account, &l);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut write_waits = Vec::new();
    let mut writes = Vec::new();
    for _ in 0..2 {
        let asked = Instant::now();
        let permit = writer.acquire_in(Lane::Write).await;
        writes.push(Instant::now());
        write_waits.push(asked.elapsed());
        drop(permit);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }

    // `sequin status` shows what the processes hold, within the limit.
    let rates = sequin_runtime::status::read_rates(&admin).await.unwrap();
    assert_eq!(rates.len(), 1, "{rates:?}");
    assert!(rates[0].total <= 20 && rates[0].reads <= 16, "{rates:?}");
    assert!(rates[0].processes >= 1, "{rates:?}");
    let admitted = admitted.lock().unwrap().clone();
    let mut reads: Vec<Instant> = admitted.iter().map(|(_, t)| *t).collect();
    let per_process: Vec<usize> = (0..3)
        .map(|p| admitted.iter().filter(|(q, _)| *q == p).count())
        .collect();
    let most_reads = most_in_window(&mut reads, Duration::from_secs(1));
    let mut all = reads.clone();
    all.extend(&writes);
    let most = most_in_window(&mut all, Duration::from_secs(1));
    eprintln!(
        "reads {} by process {per_process:?}; most reads in a window {most_reads}, most requests {most}; write waits {write_waits:?}",
        reads.len()
    );
    assert!(most <= 20, "{most} requests within one window, limit 20");
    assert!(
        most_reads <= 16,
        "{most_reads} reads in a window, read share 16"
    );
    // Saturated: the read share is used (about 16 a second for 4 s, less the start).
    assert!(reads.len() >= 40, "only {} reads in 4 s", reads.len());
    for (p, n) in per_process.iter().enumerate() {
        assert!(
            *n >= reads.len() / 10,
            "process {p} got {n} of {}",
            reads.len()
        );
    }
    for w in &write_waits {
        assert!(*w < Duration::from_millis(500), "a write waited {w:?}");
    }

    // A pause one process learnt from the API holds the others back.
    let a = processes[0].get(account, &l);
    let b = processes[1].get(account, &l);
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.pause_for(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    drop(b.acquire_in(Lane::Poll).await);
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(1200),
        "the other process went after {waited:?} of a 2 s pause"
    );

    // What each holds is in sequin.rate_status; unused slots go back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held: i64 = admin
        .query_one(
            "SELECT coalesce(sum(total), 0)::bigint FROM sequin.rate_status WHERE account = $1",
            &[&account],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "idle processes gave their slots back");
}

/// A daily quota (Salesforce's) is counted once for the account: the
/// requests one process sends lower the estimate of the others too, as
/// their shared budgets learn of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_counts_every_process_requests() {
    use sequin_runtime::api::{QuotaGate, QuotaSettings};

    let db = sequin_pgtemp::Database::create("rates_quota").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    store::migrate(&mut admin, &[]).await.unwrap();
    let spec = sequin_runtime::registry::get("salesforce")
        .unwrap()
        .spec
        .quota
        .clone()
        .unwrap();
    let account = "salesforce:account=org";
    let l = limit(25);
    let level = serde_json::json!({ "DailyApiRequests": { "Max": 1000, "Remaining": 900 } });
    let processes: Vec<_> = (0..2)
        .map(|_| {
            let budgets = Budgets::shared(Arc::new(PgRateStore::new(&db.url)));
            let budget = budgets.get(account, &l);
            let gate = budgets.quota(account, || {
                QuotaGate::new("org", &spec, &QuotaSettings::default())
            });
            budget.count_quota(&gate);
            (budgets, budget, gate)
        })
        .collect();
    // Each reads the level through its budget, as the client does.
    for (_, budget, gate) in &processes {
        drop(budget.acquire_in(Lane::Poll).await);
        gate.read(&level);
    }
    let remaining = |gate: &QuotaGate| gate.state().counters[0].remaining;
    // The first process sends 30 requests, the second 5.
    for (p, n) in [(0, 30), (1, 5)] {
        let (_, budget, gate) = &processes[p];
        for _ in 0..n {
            drop(budget.acquire_in(Lane::Poll).await);
            gate.sent();
        }
    }
    // Each sees the 35 (and the other's read of the level, when it came
    // after its own) once both ledgers reported what they sent; alone, the
    // first would see 870 and the second 895.
    for (p, (_, _, gate)) in processes.iter().enumerate() {
        eventually(
            Duration::from_secs(10),
            "the others' requests counted",
            || async {
                let left = remaining(gate);
                (left.is_some_and(|l| (863..=865).contains(&l)), (p, left))
            },
        )
        .await;
    }
}

/// Issue #16's acceptance: one Stripe account served by three `sequin sync`
/// processes (three connections of the account, an object group each, one
/// per process by their leases) and two `sequin proxy` processes taking
/// writes. The simulator counts the account's requests: never more than its
/// 25 a second in any window, none refused, and writes go through while the
/// backfills saturate the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_three_syncs_two_proxies_stay_within_its_limit() {
    use sequin_sim::{Api, Faults, SimConfig};

    use crate::process_support::{Scratch, Sequin, through_proxy};

    let db = sequin_pgtemp::Database::create("rates_account").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(250)
            .rng_seed(16)
            .faults(Faults {
                latency: Duration::from_millis(20),
                ..Faults::default()
            }),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let groups = [
        ("shop_a", "customer, product"),
        ("shop_b", "price, subscription"),
        ("shop_c", "invoice, payment_intent, charge"),
    ];
    let mut connections = String::new();
    for (name, objects) in groups {
        connections.push_str(&format!(
            "  - name: {name}\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    page_size: 10\n    poll_interval: 1s\n    objects: [{objects}]\n",
            sim.base_url(),
            sim.token(),
        ));
    }
    let scratch = Scratch::new("rates_account");
    let ports = [
        sequin_pgtemp::free_port().unwrap(),
        sequin_pgtemp::free_port().unwrap(),
    ];
    let config = |proxy: Option<u16>| {
        let listen = proxy.map_or(String::new(), |p| {
            format!("proxy:\n  listen: 127.0.0.1:{p}\n")
        });
        let name = proxy.map_or("sync.yaml".into(), |p| format!("proxy-{p}.yaml"));
        scratch.write(
            &name,
            &format!(
                "database_url: {}\nsync: {{ failover: 3s }}\n{listen}connections:\n{connections}",
                db.url
            ),
        )
    };
    let sync = config(None);
    let _syncs: Vec<Sequin> = (0..3)
        .map(|n| {
            Sequin::spawn(
                &sync,
                "warn",
                &["sync"],
                scratch.path(&format!("sync-{n}.log")),
            )
        })
        .collect();
    let _proxies: Vec<Sequin> = ports
        .iter()
        .map(|p| {
            Sequin::spawn(
                &config(Some(*p)),
                "warn",
                &["proxy"],
                scratch.path(&format!("proxy-{p}.log")),
            )
        })
        .collect();
    let pg = sequin_pgtemp::connect(&db.url).await;
    let live = || async {
        pg.query_one(
            "SELECT count(*) FILTER (WHERE phase = 'live'), count(*) FROM sequin.sync_state
              WHERE object NOT IN ('_events', '_connection')",
            &[],
        )
        .await
        .map_or((0, 0), |r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
    };
    // Each sync process holds one of the three connections.
    eventually(
        Duration::from_secs(60),
        "three processes syncing",
        || async {
            let n: i64 = pg
            .query_one(
                "SELECT count(DISTINCT holder) FROM sequin.lease_status WHERE holder IS NOT NULL",
                &[],
            )
            .await
            .map_or(0, |r| r.get(0));
            (n == 3, n)
        },
    )
    .await;

    // Writes through both proxies while the backfills run.
    let mut writers = tokio::task::JoinSet::new();
    for (w, port) in ports.iter().enumerate() {
        let client = through_proxy(&db, *port).await;
        writers.spawn(async move {
            let mut took = Vec::new();
            for i in 0..8 {
                let asked = Instant::now();
                let row = client
                    .query_one(
                        "INSERT INTO shop_a.customer (email, name) VALUES ($1, 'Written') RETURNING id",
                        &[&format!("w{w}-{i}@example.com")],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("write {w}/{i}: {e:?}"));
                let id: String = row.get(0);
                assert!(id.starts_with("cus_"), "{id}");
                took.push(asked.elapsed());
            }
            took
        });
    }
    let mut took = Vec::new();
    while let Some(r) = writers.join_next().await {
        took.extend(r.unwrap());
    }
    let during = live().await;
    took.sort();
    let median = took[took.len() / 2];
    eprintln!(
        "16 writes: median {median:?}, slowest {:?}; objects live when they were done: {during:?}",
        took.last().unwrap()
    );
    assert!(
        during.0 < during.1 || during.1 == 0,
        "the backfills were over before the writes ({during:?}): they did not compete"
    );
    assert!(
        median < Duration::from_secs(1),
        "writes waited behind the backfills: median {median:?}"
    );

    eventually(Duration::from_secs(120), "every object live", || async {
        let (live, all) = live().await;
        (live == 7 && all == 7, (live, all))
    })
    .await;
    let written: i64 = pg
        .query_one(
            "SELECT count(*) FROM shop_a.customer WHERE name = 'Written'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 16);
    let stats = sim.stats();
    let account = &stats.rate_keys["account"];
    eprintln!(
        "the simulator saw {} requests, at most {} within a second (limit {}), {} refused",
        stats.requests, account.max_attempted_in_window, account.limit, stats.rate_limited
    );
    assert_eq!(account.limit, 25);
    assert!(
        account.max_attempted_in_window <= 25,
        "{} requests reached the account within one second: {stats:?}",
        account.max_attempted_in_window
    );
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    // Saturated: the backfills used the read share (20 of 25 a second).
    assert!(
        account.max_admitted_in_window >= 18,
        "the account was never busy: {stats:?}"
    );
}
