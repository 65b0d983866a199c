//! Fault tolerance: with 10% 5xx answers, 10% 429s and 5% truncated bodies
//! injected by the simulators from the first request on, a backfill and the
//! live sync after it still end exactly equal to the API, and the
//! simulators' counters show the spec's rate limits were never exceeded
//! (no real limit breach; at most `limit` requests attempted in any window).
//!
//! Stripe (every object, events feed) and Airtable (whose 5 requests/s per
//! base is the tightest limit, and whose 429 means a 30 s penalty).

use std::collections::BTreeSet;
use std::time::Duration;

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::airtable::DEMO_BASE_ID;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Faults, Sim, SimConfig};
use serde_json::{Value, json};

fn faults() -> Faults {
    Faults {
        p_5xx: 0.10,
        p_429: 0.10,
        p_truncate: 0.05,
        ..Faults::default()
    }
}

/// Waits until every kind of fault was injected at least `n` times (the
/// sync keeps polling meanwhile), so the run really went through them.
async fn wait_faults(sim: &Sim, n: u64) -> sequin_sim::StatsSnapshot {
    eventually(
        Duration::from_secs(90),
        "each kind of fault injected",
        || async {
            let s = sim.stats();
            let f = &s.faults;
            (
                f.http_5xx >= n && f.http_429 >= n && f.truncated >= n,
                f.clone(),
            )
        },
    )
    .await;
    sim.stats()
}

/// No real limit breach, and no window in which the client attempted more
/// than the limit.
fn assert_within_limits(api: &str, stats: &sequin_sim::StatsSnapshot, limit: u32) {
    eprintln!(
        "{api}: {} requests, faults {:?}, rate keys {:?}",
        stats.requests, stats.faults, stats.rate_keys
    );
    assert_eq!(
        stats.rate_limited, 0,
        "{api}: no request was refused for a real limit breach"
    );
    assert!(!stats.rate_keys.is_empty(), "{api}: the limit was enforced");
    for (key, k) in &stats.rate_keys {
        assert_eq!(k.limit, limit, "{api} {key}: the documented limit");
        assert!(
            k.max_attempted_in_window <= k.limit,
            "{api} {key}: {} requests attempted within {} ms (limit {})",
            k.max_attempted_in_window,
            k.window_ms,
            k.limit
        );
        assert_eq!(k.rejected, 0, "{api} {key}: nothing rejected");
    }
}

async fn ids(pg: &tokio_postgres::Client, table: &str) -> Vec<String> {
    pg.query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const STRIPE_TABLES: [(Kind, &str); 7] = [
    (Kind::Customer, "customer"),
    (Kind::Product, "product"),
    (Kind::Price, "price"),
    (Kind::Subscription, "subscription"),
    (Kind::Invoice, "invoice"),
    (Kind::PaymentIntent, "payment_intent"),
    (Kind::Charge, "charge"),
];

async fn assert_stripe_exact(pg: &tokio_postgres::Client, sim: &Sim) {
    let stripe = sim.stripe();
    for (kind, table) in STRIPE_TABLES {
        let mut api = stripe.ids(kind);
        api.sort();
        assert_eq!(
            ids(pg, &format!("stripe.{table}")).await,
            api,
            "stripe.{table}"
        );
    }
    for r in pg
        .query(
            "SELECT id, name, email, metadata, balance FROM stripe.customer",
            &[],
        )
        .await
        .unwrap()
    {
        let id: String = r.get(0);
        let api = stripe.get(Kind::Customer, &id).unwrap();
        assert_eq!(
            r.get::<_, Option<String>>(1).as_deref(),
            api["name"].as_str()
        );
        assert_eq!(
            r.get::<_, Option<String>>(2).as_deref(),
            api["email"].as_str()
        );
        assert_eq!(
            r.get::<_, Option<Value>>(3).as_ref(),
            Some(&api["metadata"])
        );
        assert_eq!(r.get::<_, Option<i64>>(4), api["balance"].as_i64());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_exact_under_faults_within_rate_limit() {
    let db = sequin_pgtemp::Database::create("faults_stripe").unwrap();
    // The simulator enforces Stripe's documented 25 requests/s (the default).
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(220)
            .faults(faults())
            .rng_seed(0xfa01),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    // The seeded objects and the children Stripe embeds in them. Not the
    // customers' other children (tax ids, balance transactions): listed one
    // request per customer, three per customer at 25 requests/s shared with
    // the polls would make this test minutes long (sync_stripe_account and
    // sync_stripe_children cover them).
    let config = format!(
        "database_url: {}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    poll_interval: 200ms\n    objects: [customer, product, price, subscription, subscription_item, invoice, invoice_line_item, payment_intent, charge]\n",
        db.url,
        sim.base_url(),
        sim.token()
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "stripe", Duration::from_secs(120)).await;
    let backfill = sim.stats();
    assert!(
        backfill.faults.http_5xx + backfill.faults.http_429 + backfill.faults.truncated > 0,
        "faults were injected during the backfill: {:?}",
        backfill.faults
    );
    assert_stripe_exact(&pg, &sim).await;

    // Live changes arrive through the faulty events feed.
    let stripe = sim.stripe();
    let customers = stripe.ids(Kind::Customer);
    let (changed, gone) = (customers[3].clone(), customers[4].clone());
    stripe
        .update(
            Kind::Customer,
            &changed,
            "name=Grace+Hopper&metadata[fault]=yes",
        )
        .unwrap();
    stripe.delete(Kind::Customer, &gone).unwrap();
    let created = stripe
        .create(Kind::Customer, "email=faulty%40example.com&name=Under+Fire")
        .unwrap();
    let new_id = created["id"].as_str().unwrap().to_string();
    let product = stripe.ids(Kind::Product)[0].clone();
    stripe
        .update(Kind::Product, &product, "name=Renamed+Under+Faults")
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "live changes under faults",
        || async {
            let name: Option<String> = pg
                .query_opt(
                    "SELECT name FROM stripe.customer WHERE id = $1",
                    &[&changed],
                )
                .await
                .unwrap()
                .and_then(|r| r.get(0));
            let product_name: Option<String> = pg
                .query_opt("SELECT name FROM stripe.product WHERE id = $1", &[&product])
                .await
                .unwrap()
                .and_then(|r| r.get(0));
            let created = pg
                .query_opt("SELECT 1 FROM stripe.customer WHERE id = $1", &[&new_id])
                .await
                .unwrap()
                .is_some();
            let deleted = pg
                .query_opt("SELECT 1 FROM stripe.customer WHERE id = $1", &[&gone])
                .await
                .unwrap()
                .is_none();
            let ok = name.as_deref() == Some("Grace Hopper")
                && product_name.as_deref() == Some("Renamed Under Faults")
                && created
                && deleted;
            (ok, (name, product_name, created, deleted))
        },
    )
    .await;

    // Keep polling until every kind of fault has hit several times, then
    // the tables are still exactly the API.
    let stats = wait_faults(&sim, 2).await;
    assert_stripe_exact(&pg, &sim).await;
    assert_within_limits("stripe", &stats, 25);
    assert!(!sync.finished(), "the sync is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

/// Airtable table name, Postgres table.
const AIRTABLE_TABLES: [(&str, &str); 3] = [
    ("Contacts", "contacts"),
    ("Deals", "deals"),
    ("Projects", "projects"),
];

/// Every table has exactly the base's records (count, and every row is a
/// record of the base with the same name and creation time).
async fn assert_airtable_exact(pg: &tokio_postgres::Client, sim: &Sim) {
    let at = sim.airtable();
    for (name, table) in AIRTABLE_TABLES {
        let rows = pg
            .query(
                &format!(
                    "SELECT id, name, to_char(created_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM airtable.{table}"
                ),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            rows.len(),
            at.count(DEMO_BASE_ID, name),
            "airtable.{table}: as many rows as records"
        );
        let mut seen = BTreeSet::new();
        for r in &rows {
            let id: String = r.get(0);
            let record = at
                .get(DEMO_BASE_ID, name, &id)
                .unwrap_or_else(|| panic!("airtable.{table} row {id} is not in the base"));
            assert_eq!(
                r.get::<_, Option<String>>(1).as_deref(),
                record["fields"]["Name"].as_str(),
                "airtable.{table} {id} Name"
            );
            assert_eq!(
                r.get::<_, Option<String>>(2).as_deref(),
                record["createdTime"].as_str(),
                "airtable.{table} {id} createdTime"
            );
            seen.insert(id);
        }
        assert_eq!(seen.len(), rows.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airtable_exact_under_faults_within_rate_limit() {
    let db = sequin_pgtemp::Database::create("faults_airtable").unwrap();
    // The simulator enforces Airtable's documented 5 requests/s per base
    // (the default), with its 30 s penalty after a breach.
    let sim = sequin_sim::start(
        SimConfig::new(Api::Airtable)
            .seed_records(120)
            .faults(faults())
            .rng_seed(0xfa02),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let config = format!(
        "database_url: {}\nconnections:\n  - name: airtable\n    connector: airtable\n    base_url: {}\n    credentials: {{ api_key: '{}' }}\n    params: {{ base_id: {DEMO_BASE_ID} }}\n    poll_interval: 1s\n",
        db.url,
        sim.base_url(),
        sim.token()
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "airtable", Duration::from_secs(120)).await;
    assert_airtable_exact(&pg, &sim).await;

    // A collaborator's changes arrive with the full refreshes under faults.
    let at = sim.airtable();
    let contact: String = pg
        .query_one("SELECT id FROM airtable.contacts ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let gone: String = pg
        .query_one("SELECT id FROM airtable.deals ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    at.update(
        DEMO_BASE_ID,
        "Contacts",
        &contact,
        json!({"Name": "Hedy Lamarr"}),
    )
    .unwrap();
    at.delete(DEMO_BASE_ID, "Deals", &gone).unwrap();
    let new_project = at
        .create(
            DEMO_BASE_ID,
            "Projects",
            json!({"Name": "Frequency hopping", "Budget": 1942}),
        )
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "live changes under faults",
        || async {
            let name: Option<String> = pg
                .query_opt(
                    "SELECT name FROM airtable.contacts WHERE id = $1",
                    &[&contact],
                )
                .await
                .unwrap()
                .and_then(|r| r.get(0));
            let deleted = pg
                .query_opt("SELECT 1 FROM airtable.deals WHERE id = $1", &[&gone])
                .await
                .unwrap()
                .is_none();
            let created = pg
                .query_opt(
                    "SELECT 1 FROM airtable.projects WHERE id = $1",
                    &[&new_project],
                )
                .await
                .unwrap()
                .is_some();
            (
                name.as_deref() == Some("Hedy Lamarr") && deleted && created,
                (name, deleted, created),
            )
        },
    )
    .await;

    let stats = wait_faults(&sim, 2).await;
    assert_airtable_exact(&pg, &sim).await;
    assert_within_limits("airtable", &stats, 5);
    assert!(!sync.finished(), "the sync is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

/// An outage longer than the client's retries (every request answered
/// 500) in the middle of a backfill: the error shows in `sync_state`, the
/// committed rows stay, and once the API is back the backfill resumes from
/// its checkpoint and ends exact, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_resumes_after_an_outage_longer_than_the_retries() {
    const CUSTOMERS: usize = 8_000;
    let db = sequin_pgtemp::Database::create("faults_outage").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rng_seed(0xfa03),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.stripe().seed_customers(CUSTOMERS);
    let config = format!(
        "database_url: {}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    objects: [customer]\n    poll_interval: 200ms\n",
        db.url,
        sim.base_url(),
        sim.token()
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    let count = || async {
        pg.query_one("SELECT count(*) FROM stripe.customer", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    // The first batch is committed; then the API goes down.
    eventually(Duration::from_secs(60), "a first batch", || async {
        let n = count().await;
        (n > 0, n)
    })
    .await;
    sim.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    let error = eventually(
        Duration::from_secs(90),
        "the backfill error in sync_state",
        || async {
            let r = pg
                .query_one(
                    "SELECT phase, last_error FROM sequin.sync_state WHERE connection = 'stripe' AND object = 'customer'",
                    &[],
                )
                .await
                .unwrap();
            let (phase, error): (String, Option<String>) = (r.get(0), r.get(1));
            (error.is_some(), (phase, error))
        },
    )
    .await;
    assert_eq!(error.0, "backfilling", "the outage hit the backfill");
    let during = count().await;
    assert!(during > 0 && (during as usize) < CUSTOMERS, "{during} rows");
    assert!(!sync.finished(), "the sync survives the outage");

    // The API is back: the backfill resumes by itself and ends exact.
    sim.set_faults(Faults::default());
    wait_live(&pg, "stripe", Duration::from_secs(120)).await;
    let mut api = sim.stripe().ids(Kind::Customer);
    api.sort();
    assert_eq!(ids(&pg, "stripe.customer").await, api);
    let state = pg
        .query_one(
            "SELECT last_error FROM sequin.sync_state WHERE connection = 'stripe' AND object = 'customer'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        state.get::<_, Option<String>>(0),
        None,
        "the error is cleared"
    );
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
