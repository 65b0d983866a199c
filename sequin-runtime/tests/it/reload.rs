//! Config changes without a restart (issue #16): a running `sequin run`
//! reads its config again on SIGHUP.
//!
//! - A connection added gets its tables, is synced to live and takes writes
//!   through the proxy, answered by its own account.
//! - A file with an error is refused; the process goes on with the running
//!   config.
//! - A connection removed stops: its lease is gone, upstream changes no
//!   longer arrive, and the proxy no longer writes it through (its tables
//!   stay, read-only: the guard refuses a client's write).
//! - A SIGHUP that changes no connection rebuilds nothing.

use std::time::Duration;

use sequin_pgtemp::{connect, eventually};
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};

use crate::process_support::{Scratch, Sequin, through_proxy};

fn connection(name: &str, sim: &sequin_sim::Sim) -> String {
    format!(
        "  - name: {name}\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    poll_interval: 300ms\n    objects: [customer, product]\n",
        sim.base_url(),
        sim.token()
    )
}

fn hangup(process: &Sequin) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &process.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

async fn live(pg: &tokio_postgres::Client, connection: &str) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM sequin.sync_state WHERE connection = $1 AND phase = 'live'
            AND object NOT IN ('_events', '_connection')",
        &[&connection],
    )
    .await
    .map_or(0, |r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_connections() {
    let db = sequin_pgtemp::Database::create("reload").unwrap();
    let mut sims = Vec::new();
    for i in 0..2u64 {
        let sim = sequin_sim::start(
            SimConfig::new(Api::Stripe)
                .seed_records(3)
                .rng_seed(40 + i)
                .token(format!("sk_test_reload{i}")),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        sims.push(sim);
    }
    let port = sequin_pgtemp::free_port().unwrap();
    let head = format!(
        "database_url: {}\nproxy:\n  listen: 127.0.0.1:{port}\nconnections:\n",
        db.url
    );
    let scratch = Scratch::new("reload");
    let config = scratch.write(
        "sequin.yaml",
        &format!("{head}{}", connection("first", &sims[0])),
    );
    let mut sequin = Sequin::spawn(&config, "info", &["run"], scratch.path("sequin.log"));
    let pg = connect(&db.url).await;
    eventually(Duration::from_secs(60), "first live", || async {
        let n = live(&pg, "first").await;
        (n == 2, n)
    })
    .await;

    // Added: tables, sync, write-through.
    scratch.write(
        "sequin.yaml",
        &format!(
            "{head}{}{}",
            connection("first", &sims[0]),
            connection("second", &sims[1])
        ),
    );
    hangup(&sequin);
    eventually(Duration::from_secs(30), "second live", || async {
        let n = live(&pg, "second").await;
        (n == 2, n)
    })
    .await;
    let client = through_proxy(&db, port).await;
    // The proxy's new write-through may still be taking over; retried until it has.
    let id: String = eventually(Duration::from_secs(15), "a write to second", || async {
        match client
            .query_one(
                "INSERT INTO second.customer (email, name) VALUES ('new@example.com', 'Added') RETURNING id",
                &[],
            )
            .await
        {
            Ok(row) => (true, row.get::<_, String>(0)),
            Err(e) => (false, format!("{e:?}")),
        }
    })
    .await;
    assert!(
        sims[1].stripe().ids(Kind::Customer).contains(&id),
        "{id} was created in the second account"
    );

    // A file with an error: refused, and the process goes on.
    scratch.write("sequin.yaml", &format!("{head}  - name: broken\n"));
    hangup(&sequin);
    eventually(Duration::from_secs(10), "the refusal logged", || async {
        let log = sequin.stderr();
        (log.contains("config not reloaded"), log.len())
    })
    .await;
    assert!(sequin.exited().is_none(), "{}", sequin.stderr());

    // Removed: no lease, no sync, no write-through.
    scratch.write(
        "sequin.yaml",
        &format!("{head}{}", connection("second", &sims[1])),
    );
    hangup(&sequin);
    eventually(Duration::from_secs(15), "first's lease removed", || async {
        let n: i64 = pg
            .query_one(
                "SELECT count(*) FROM sequin.lease WHERE connection = 'first'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (n == 0, n)
    })
    .await;
    let posts_before = sims[0].stats().by_route.get("POST /v1/customers").copied();
    let write = client
        .execute(
            "INSERT INTO first.customer (id, email) VALUES ('cus_local', 'x@example.com')",
            &[],
        )
        .await;
    assert!(
        write.is_err(),
        "a removed connection's table is not writable"
    );
    assert_eq!(
        sims[0].stats().by_route.get("POST /v1/customers").copied(),
        posts_before,
        "nothing was sent to the removed connection's account"
    );
    let first_id = sims[0].stripe().ids(Kind::Customer)[0].clone();
    sims[0]
        .stripe()
        .update(Kind::Customer, &first_id, "name=Not+Synced")
        .unwrap();
    // A seeded customer (not the one written through the proxy).
    let second_id = sims[1]
        .stripe()
        .ids(Kind::Customer)
        .into_iter()
        .find(|c| *c != id)
        .unwrap();
    sims[1]
        .stripe()
        .update(Kind::Customer, &second_id, "name=Still+Synced")
        .unwrap();
    eventually(Duration::from_secs(15), "second still synced", || async {
        let name: Option<String> = pg
            .query_one(
                "SELECT name FROM second.customer WHERE id = $1",
                &[&second_id],
            )
            .await
            .unwrap()
            .get(0);
        (name.as_deref() == Some("Still Synced"), name)
    })
    .await;
    let name: Option<String> = pg
        .query_one(
            "SELECT name FROM first.customer WHERE id = $1",
            &[&first_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        name.as_deref(),
        Some("Not Synced"),
        "first is no longer synced"
    );
    let log = sequin.stderr();
    assert!(log.contains("config reloaded"), "{log}");
    assert!(sequin.exited().is_none(), "{log}");

    // A SIGHUP that changes no connection rebuilds nothing.
    let rebuilt = |log: &str| log.matches("write-through reloaded").count();
    let before = rebuilt(&log);
    hangup(&sequin);
    eventually(Duration::from_secs(10), "the unchanged reload", || async {
        let log = sequin.stderr();
        (log.contains("no connection changed"), log.len())
    })
    .await;
    // The proxy's half reads the same signal; give it the time it took above.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rebuilt(&sequin.stderr()), before, "{}", sequin.stderr());
}
