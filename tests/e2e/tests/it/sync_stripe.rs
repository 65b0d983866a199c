//! Stripe end to end: backfill every object from the simulator, then live
//! changes (create, update, delete) through the events feed.

use std::time::Duration;

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_then_live_events() {
    let db = sequin_pgtemp::Database::create("sync_stripe").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(250)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let config = format!(
        "database_url: {}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    poll_interval: 200ms\n",
        db.url,
        sim.base_url(),
        sim.token()
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "stripe", Duration::from_secs(60)).await;

    // Every object's table holds exactly the API's records.
    let stripe = sim.stripe();
    for (kind, table) in [
        (Kind::Customer, "customer"),
        (Kind::Product, "product"),
        (Kind::Price, "price"),
        (Kind::Subscription, "subscription"),
        (Kind::Invoice, "invoice"),
        (Kind::PaymentIntent, "payment_intent"),
        (Kind::Charge, "charge"),
    ] {
        let mut api_ids = stripe.ids(kind);
        api_ids.sort();
        let db_ids: Vec<String> = pg
            .query(&format!("SELECT id FROM stripe.{table} ORDER BY id"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(db_ids, api_ids, "stripe.{table}");
    }
    let id = stripe.ids(Kind::Customer)[0].clone();
    let api = stripe.get(Kind::Customer, &id).unwrap();
    let row = pg
        .query_one(
            "SELECT email, name, balance, created, metadata FROM stripe.customer WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        api["email"].as_str()
    );
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        api["name"].as_str()
    );
    assert_eq!(row.get::<_, Option<i64>>(2), api["balance"].as_i64());
    assert_eq!(row.get::<_, serde_json::Value>(4), api["metadata"]);

    // Live: an update, a create and a delete made upstream show up.
    let gone = stripe.ids(Kind::Customer)[1].clone();
    assert_ne!(gone, id);
    stripe
        .update(Kind::Customer, &id, "name=Ada+Lovelace&metadata[tier]=gold")
        .unwrap();
    let created = stripe
        .create(Kind::Customer, "email=new%40example.com&name=New+One")
        .unwrap();
    let new_id = created["id"].as_str().unwrap().to_string();
    stripe.delete(Kind::Customer, &gone).unwrap();
    eventually(Duration::from_secs(5), "live changes", || async {
        let name: Option<String> = pg
            .query_one("SELECT name FROM stripe.customer WHERE id = $1", &[&id])
            .await
            .ok()
            .and_then(|r| r.get(0));
        let new = pg
            .query_opt("SELECT 1 FROM stripe.customer WHERE id = $1", &[&new_id])
            .await
            .unwrap()
            .is_some();
        let deleted = pg
            .query_opt("SELECT 1 FROM stripe.customer WHERE id = $1", &[&gone])
            .await
            .unwrap()
            .is_none();
        (
            name.as_deref() == Some("Ada Lovelace") && new && deleted,
            (name, new, deleted),
        )
    })
    .await;
    assert!(!sync.finished());
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
