//! Work shared across processes (issue #16): three `sequin sync` processes
//! of the real binary share 30 Stripe connections through leases.
//!
//! - Every object is synced by exactly one process: each account's
//!   simulator saw each object's list page once (a connection synced by
//!   two processes would list it twice), and each process holds 10.
//! - `kill -9` of one moves its connections to the two others within the
//!   failover time; changes made upstream afterwards all arrive, and every
//!   table ends equal to its account (no row lost or duplicated).
//! - The killed process, started again, takes its share back.
//! - A process stopped cleanly gives its leases back: the others take them
//!   within a heartbeat, not a failover.
//! - A lease taken over fences the process that held it: a writer with the
//!   old token commits nothing (`Fenced`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sequin_pgtemp::{connect, eventually};
use sequin_runtime::store::{self, Checkpoint, Fence, Pool, PoolSettings, StoreError};
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};
use sequin_spec::model::Incremental;

use crate::process_support::{Scratch, Sequin};

const CONNECTIONS: usize = 30;
const FAILOVER: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(300);

/// The objects synced: the seven the simulator seeds (`Kind::CORE`), each
/// one's table named like the object (`payment_intent`).
const OBJECTS: [Kind; 7] = Kind::CORE;

/// Connections held per live process, by pid (a process's id in
/// `sequin.worker` is `host:pid:random`).
async fn holders(pg: &tokio_postgres::Client) -> BTreeMap<u32, usize> {
    let rows = pg
        .query(
            "SELECT holder, count(*) FROM sequin.lease_status WHERE holder IS NOT NULL GROUP BY holder",
            &[],
        )
        .await
        .unwrap_or_default();
    rows.iter()
        .map(|r| {
            let holder: String = r.get(0);
            let pid = holder.split(':').nth(1).unwrap().parse().unwrap();
            (pid, r.get::<_, i64>(1) as usize)
        })
        .collect()
}

async fn live_objects(pg: &tokio_postgres::Client) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM sequin.sync_state
          WHERE phase = 'live' AND object NOT IN ('_events', '_connection')",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(0)
}

/// Each process holds `each` connections, and there are `processes`.
fn balanced(h: &BTreeMap<u32, usize>, processes: usize, each: usize) -> bool {
    h.len() == processes && h.values().all(|n| *n == each)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_thirty_connections_and_fail_over() {
    let db = sequin_pgtemp::Database::create("scale_out").unwrap();
    let mut sims = Vec::new();
    for i in 0..CONNECTIONS {
        let sim = sequin_sim::start(
            SimConfig::new(Api::Stripe)
                .seed_records(3)
                .rng_seed(i as u64 + 100)
                .token(format!("sk_test_share{i:02}")),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        sims.push(sim);
    }
    let mut yaml = format!(
        "database_url: {}\nsync: {{ failover: {}s }}\npool: {{ size: 4 }}\nconnections:\n",
        db.url,
        FAILOVER.as_secs()
    );
    for (i, sim) in sims.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: acct_{i}\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    poll_interval: {}ms\n    objects: [{}]\n",
            sim.base_url(),
            sim.token(),
            POLL.as_millis(),
            OBJECTS.map(Kind::name).join(", "),
        ));
    }
    let scratch = Scratch::new("scale_out");
    let config = scratch.write("sequin.yaml", &yaml);
    let spawn = |n: usize| {
        Sequin::spawn(
            &config,
            "info",
            &["sync"],
            scratch.path(&format!("sequin-{n}.log")),
        )
    };
    let started = Instant::now();
    let mut procs: Vec<Sequin> = (0..3).map(spawn).collect();
    let pg = connect(&db.url).await;

    // Every object live, ten connections per process.
    let expected = (CONNECTIONS * OBJECTS.len()) as i64;
    eventually(Duration::from_secs(90), "every object live", || async {
        let n = live_objects(&pg).await;
        (n == expected, n)
    })
    .await;
    eventually(Duration::from_secs(20), "ten connections each", || async {
        let h = holders(&pg).await;
        (balanced(&h, 3, 10), h)
    })
    .await;
    // One process per connection: an object the events feed keeps current
    // was listed once (by its backfill); one re-listed at every poll
    // (payment intents: Stripe sends no update event for them) at most
    // once per poll interval, which two processes would double.
    let stripe = sequin_runtime::registry::get("stripe").unwrap();
    let by_events = |table: &str| {
        let o = stripe
            .spec
            .objects
            .iter()
            .find(|o| o.name == table)
            .unwrap();
        let strategy = o.incremental.as_ref().or(stripe.spec.incremental.as_ref());
        matches!(strategy, Some(Incremental::Events { .. }))
    };
    let lists_once = || {
        let polls = started.elapsed().as_millis() as u64 / POLL.as_millis() as u64;
        for (i, sim) in sims.iter().enumerate() {
            let routes = sim.stats().by_route;
            for kind in OBJECTS {
                let table = kind.name();
                let n = routes
                    .get(&format!("GET {}", kind.path()))
                    .copied()
                    .unwrap_or(0);
                if by_events(table) {
                    assert_eq!(n, 1, "acct_{i}'s {table} list was fetched {n} times");
                } else {
                    assert!(
                        (1..=polls + 2).contains(&n),
                        "acct_{i}'s {table} list was fetched {n} times in {polls} poll intervals"
                    );
                }
            }
        }
    };
    lists_once();

    // kill -9 of one process: the two others take its connections over
    // within the failover time (and a heartbeat to notice).
    let killed = procs[0].pid();
    procs[0].kill9();
    let killed_at = Instant::now();
    let h = eventually(
        FAILOVER * 3,
        "the killed process's connections taken over",
        || async {
            let h = holders(&pg).await;
            (
                !h.contains_key(&killed) && h.values().sum::<usize>() == CONNECTIONS,
                h,
            )
        },
    )
    .await;
    let took = killed_at.elapsed();
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(
        took <= FAILOVER + Duration::from_secs(2),
        "taken over after {took:?}, failover is {FAILOVER:?}"
    );
    eprintln!("connections of the killed process taken over after {took:?}");

    // Changes made upstream now arrive, whoever syncs the account.
    let mut renamed = Vec::new();
    for sim in &sims {
        let stripe = sim.stripe();
        let id = stripe.ids(Kind::Customer)[0].clone();
        stripe
            .update(Kind::Customer, &id, "name=After+Failover")
            .unwrap();
        stripe.create(Kind::Product, "name=New+Product").unwrap();
        renamed.push(id);
    }
    eventually(
        Duration::from_secs(30),
        "changes after the failover",
        || async {
            let mut arrived = 0;
            for (i, id) in renamed.iter().enumerate() {
                let name: Option<String> = pg
                    .query_opt(
                        &format!("SELECT name FROM acct_{i}.customer WHERE id = $1"),
                        &[id],
                    )
                    .await
                    .unwrap()
                    .and_then(|r| r.get(0));
                arrived += usize::from(name.as_deref() == Some("After Failover"));
            }
            (arrived == CONNECTIONS, arrived)
        },
    )
    .await;
    // No row lost or duplicated: every table holds exactly its account's ids.
    let equal = || async {
        for (i, sim) in sims.iter().enumerate() {
            for kind in OBJECTS {
                let table = kind.name();
                let mut api = sim.stripe().ids(kind);
                api.sort();
                let rows: Vec<String> = pg
                    .query(&format!("SELECT id FROM acct_{i}.{table} ORDER BY id"), &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if rows != api {
                    return (false, format!("acct_{i}.{table}: {rows:?} vs {api:?}"));
                }
            }
        }
        (true, String::new())
    };
    eventually(
        Duration::from_secs(30),
        "every table equal to its account",
        equal,
    )
    .await;

    // The killed process, started again, takes a share back.
    procs[0] = spawn(3);
    eventually(FAILOVER * 5, "ten connections each again", || async {
        let h = holders(&pg).await;
        (balanced(&h, 3, 10) && h.contains_key(&procs[0].pid()), h)
    })
    .await;
    lists_once();
    for (n, p) in procs.iter_mut().enumerate() {
        assert!(p.exited().is_none(), "process {n} exited:\n{}", p.stderr());
    }

    // A process that stops cleanly (SIGTERM) gives its leases back: the
    // others take them at their next heartbeat, well before the failover.
    let stopped = procs[1].pid();
    let status = procs[1].terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", procs[1].stderr());
    let stopped_at = Instant::now();
    eventually(
        FAILOVER,
        "the stopped process's connections taken",
        || async {
            let h = holders(&pg).await;
            (!h.contains_key(&stopped) && balanced(&h, 2, 15), h)
        },
    )
    .await;
    eprintln!(
        "connections of the stopped process taken after {:?}",
        stopped_at.elapsed()
    );
    for sim in sims {
        sim.shutdown().await;
    }
}

/// A writer fenced by a lease's old token commits nothing; with the
/// current token it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_over_fences_its_old_holder() {
    let db = sequin_pgtemp::Database::create("fence").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    let stripe = sequin_runtime::registry::get("stripe").unwrap();
    store::migrate(&mut admin, &[("acct", stripe)])
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO sequin.lease (connection, holder, token, expires_at)
             VALUES ('acct', 'a', 1, now() + interval '1 minute')",
            &[],
        )
        .await
        .unwrap();
    let pool = Pool::new(&db.url, PoolSettings::default());
    let old = pool.writer(None).fenced(Some(Fence {
        connection: "acct".into(),
        token: 1,
    }));
    let cursor = |c: &str| Checkpoint {
        incremental_cursor: Some(Some(serde_json::json!(c))),
        ..Default::default()
    };
    let mut w = old.clone();
    w.checkpoint("acct", "customer", &cursor("first"))
        .await
        .unwrap();
    // Another process takes the lease over.
    admin
        .execute(
            "UPDATE sequin.lease SET holder = 'b', token = token + 1 WHERE connection = 'acct'",
            &[],
        )
        .await
        .unwrap();
    let mut w = old.clone();
    let refused = w.checkpoint("acct", "customer", &cursor("stale")).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { ref connection }) if connection == "acct"),
        "{refused:?}"
    );
    let state = pool.writer(None).state("acct", "customer").await.unwrap();
    assert_eq!(state.incremental_cursor, Some(serde_json::json!("first")));
    let mut new = pool.writer(None).fenced(Some(Fence {
        connection: "acct".into(),
        token: 2,
    }));
    new.checkpoint("acct", "customer", &cursor("second"))
        .await
        .unwrap();
    let state = pool.writer(None).state("acct", "customer").await.unwrap();
    assert_eq!(state.incremental_cursor, Some(serde_json::json!("second")));
}
