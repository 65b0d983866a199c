//! The sync engine outlives a Postgres restart: the connection's session is
//! lost, the engine starts the connection again from its checkpoints, and
//! records changed upstream meanwhile still arrive.

use std::time::Duration;

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::{Api, SimConfig};

/// The engine's config: Stripe customers from `sim` into `url`, polled
/// every 200 ms, plus the connection keys in `extra` (indented YAML lines).
fn stripe_config(url: &str, sim: &sequin_sim::Sim, extra: &str) -> String {
    format!(
        "database_url: {url}
connections:
  - name: stripe
    connector: stripe
    base_url: {base}
    credentials: {{ api_key: '{token}' }}
    objects: [customer]
    poll_interval: 200ms
{extra}",
        base = sim.base_url(),
        token = sim.token(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_survives_a_postgres_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("sequin_runtime=warn")
        .try_init();
    let mut cluster = sequin_pgtemp::Cluster::start().expect("a throwaway cluster");
    let url = cluster.url("postgres");
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(20).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let config = stripe_config(&url, &sim, "");
    let running = Running::start(&config);
    let pg = connect(&url).await;
    wait_live(&pg, "stripe", Duration::from_secs(60)).await;
    drop(pg);

    cluster.restart().expect("Postgres restarts");
    let created = sim
        .stripe()
        .create(sequin_sim::stripe::Kind::Customer, "name=After+Restart")
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let pg = connect(&url).await;
    eventually(
        Duration::from_secs(60),
        "the new customer arrives after the restart",
        || async {
            let n: i64 = pg
                .query_one("select count(*) from stripe.customer where id = $1", &[&id])
                .await
                .map(|r| r.get(0))
                .unwrap_or(0);
            (n == 1, n)
        },
    )
    .await;
    assert!(!running.finished(), "the engine is still running");
    running.stop().await.expect("the engine stops cleanly");
    sim.shutdown().await;
}

/// An API that fails every request when the engine starts: the connection
/// keeps starting again (it does not stop), and once the API answers it
/// backfills and goes live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_waits_out_an_api_that_is_down_at_start() {
    let db = sequin_pgtemp::Database::create("sync_api_down").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(20).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.set_faults(sequin_sim::Faults {
        p_5xx: 1.0,
        ..Default::default()
    });
    let config = stripe_config(&db.url, &sim, "    request_timeout: 1s\n");
    let running = Running::start(&config);
    let pg = connect(&db.url).await;
    // The first attempts fail (their error is visible in sync_state) and
    // the engine keeps going.
    eventually(Duration::from_secs(60), "the API's failure is recorded", || async {
        let errors: i64 = pg
            .query_one(
                "select count(*) from sequin.sync_state where connection = 'stripe' and last_error is not null",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        (errors > 0, errors)
    })
    .await;
    assert!(!running.finished(), "the engine did not stop on a down API");
    sim.set_faults(sequin_sim::Faults::default());
    wait_live(&pg, "stripe", Duration::from_secs(90)).await;
    let n: i64 = pg
        .query_one("select count(*) from stripe.customer", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20);
    assert!(!running.finished());
    running.stop().await.expect("the engine stops cleanly");
    sim.shutdown().await;
}
