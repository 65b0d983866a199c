//! Proxies side by side (issue #16): two `sequin proxy` processes of one
//! database, as behind a TCP load balancer, beside a `sequin sync`. Both
//! write through; when one is killed with a transaction open, the
//! transaction rolls back in Postgres and the other proxy's reconciler
//! (one at a time, from the shared journal) undoes at the API what the dead
//! one had created, while the other proxy's committed write stays.

use std::time::Duration;

use sequin_pgtemp::{connect, eventually};
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};

use crate::process_support::{Scratch, Sequin, through_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_mid_transaction_is_reconciled_by_another() {
    let db = sequin_pgtemp::Database::create("proxies").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(2).rng_seed(17),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let scratch = Scratch::new("proxies");
    let connection = format!(
        "connections:\n  - name: shop\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    poll_interval: 300ms\n    objects: [customer]\n",
        sim.base_url(),
        sim.token()
    );
    let ports = [
        sequin_pgtemp::free_port().unwrap(),
        sequin_pgtemp::free_port().unwrap(),
    ];
    let sync = scratch.write(
        "sync.yaml",
        &format!("database_url: {}\n{connection}", db.url),
    );
    let _sync = Sequin::spawn(&sync, "warn", &["sync"], scratch.path("sync.log"));
    let mut proxies: Vec<Sequin> = ports
        .iter()
        .map(|port| {
            let config = scratch.write(
                &format!("proxy-{port}.yaml"),
                &format!(
                    "database_url: {}\nproxy:\n  listen: 127.0.0.1:{port}\n{connection}",
                    db.url
                ),
            );
            Sequin::spawn(
                &config,
                "info",
                &["proxy"],
                scratch.path(&format!("proxy-{port}.log")),
            )
        })
        .collect();
    let pg = connect(&db.url).await;
    let seeded = sim.stripe().ids(Kind::Customer);
    eventually(Duration::from_secs(60), "the customers synced", || async {
        let n: i64 = pg
            .query_one("SELECT count(*) FROM shop.customer", &[])
            .await
            .map_or(0, |r| r.get(0));
        (n == seeded.len() as i64, n)
    })
    .await;

    // Through the first proxy, a transaction left open; through the second,
    // a write that commits.
    let doomed = through_proxy(&db, ports[0]).await;
    doomed.batch_execute("BEGIN").await.unwrap();
    let lost: String = doomed
        .query_one(
            "INSERT INTO shop.customer (email, name) VALUES ('lost@example.com', 'Lost') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let kept_client = through_proxy(&db, ports[1]).await;
    let kept: String = kept_client
        .query_one(
            "INSERT INTO shop.customer (email, name) VALUES ('kept@example.com', 'Kept') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sim.stripe().get(Kind::Customer, &lost).is_some());

    proxies[0].kill9();
    eventually(
        Duration::from_secs(30),
        "the dead proxy's write undone at the API",
        || async {
            let gone = sim.stripe().get(Kind::Customer, &lost).is_none();
            (gone, gone)
        },
    )
    .await;
    assert!(sim.stripe().get(Kind::Customer, &kept).is_some());
    let rows: Vec<String> = pg
        .query(
            "SELECT id FROM shop.customer WHERE id = ANY($1)",
            &[&vec![lost.clone(), kept.clone()]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![kept], "only the committed write has a row");
    // The surviving proxy still writes.
    kept_client
        .execute(
            "UPDATE shop.customer SET name = 'Kept Again' WHERE email = 'kept@example.com'",
            &[],
        )
        .await
        .unwrap();
    assert!(proxies[1].exited().is_none(), "{}", proxies[1].stderr());
}
