//! Stripe, the whole account: every object of the spec synced from a
//! simulator seeded with records of every object, each table equal to the
//! API field by field; then live changes of each kind (create, update,
//! delete) on every object that allows them, arriving within two poll
//! intervals whether the object follows the events feed or is re-listed.
//! Child tables (records listed under a parent) too: each equals the API's
//! records under live parents, a child created or deleted at the API
//! arrives, and a deleted parent takes its children along.
use crate::sync_stripe_children::{api_view, assert_object_matches, kind_of};

use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::stripe::{Kind, Stripe};
use sequin_sim::{Api, SimConfig};
use sequin_spec::model::{Incremental, Object};

/// Records seeded per object.
const RECORDS: usize = 12;
const POLL: Duration = Duration::from_millis(500);

fn stripe_objects() -> Vec<Object> {
    sequin_runtime::registry::get("stripe")
        .expect("stripe is compiled in")
        .spec
        .objects
        .clone()
}

/// Waits until every Stripe object re-listed whole each poll has been
/// polled since this call.
async fn polled_since_now(pg: &tokio_postgres::Client) {
    let relisted: Vec<String> = stripe_objects()
        .into_iter()
        .filter(|o| matches!(o.incremental, Some(Incremental::FullRefresh)))
        .map(|o| o.name)
        .collect();
    assert!(!relisted.is_empty());
    let since: std::time::SystemTime = pg.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let started = Instant::now();
    loop {
        let behind: Vec<String> = pg
            .query(
                "SELECT object FROM sequin.sync_state
                  WHERE connection = 'stripe' AND object = ANY($2)
                    AND (last_success_at IS NULL OR last_success_at <= $1)",
                &[&since, &relisted],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not polled within 60 s: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn assert_every_table_matches(pg: &tokio_postgres::Client, stripe: &Stripe) -> usize {
    let mut rows = 0;
    for obj in stripe_objects() {
        rows += assert_object_matches(pg, stripe, &obj).await;
    }
    rows
}

/// The create forms of objects whose required parameters are simple.
const CREATES: &[(&str, &str)] = &[
    ("customer", "email=live%40example.com&name=Live"),
    ("coupon", "percent_off=10&duration=once&name=Live"),
    ("tax_rate", "display_name=VAT&percentage=20&inclusive=false"),
    ("product", "name=Live+product"),
    (
        "webhook_endpoint",
        "url=https%3A%2F%2Fexample.com%2Fhook&enabled_events[]=*",
    ),
    ("radar.value_list", "alias=live_list&name=Live+list"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_syncs_field_by_field_and_live_changes_arrive() {
    let db = sequin_pgtemp::Database::create("sync_stripe_account").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let stripe = sim.stripe();
    stripe.seed_every_object(RECORDS);
    let objects = stripe_objects();
    assert!(objects.len() >= 45, "{} Stripe objects", objects.len());
    let config = format!(
        "database_url: {}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    poll_interval: {}ms\n",
        db.url,
        sim.base_url(),
        sim.token(),
        POLL.as_millis()
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    // A spec the engine cannot set up ends it at once: say why.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if sync.finished() {
        panic!("sequin sync stopped: {:?}", sync.stop().await);
    }
    wait_live(&pg, "stripe", Duration::from_secs(120)).await;

    let rows = assert_every_table_matches(&pg, stripe).await;
    assert!(
        rows >= objects.len() * RECORDS / 2,
        "only {rows} rows over {} tables",
        objects.len()
    );
    for obj in &objects {
        let n: i64 = pg
            .query_one(&format!("SELECT count(*) FROM stripe.{}", obj.name), &[])
            .await
            .unwrap()
            .get(0);
        assert!(n > 0, "stripe.{} has no rows", obj.name);
    }

    // Live changes: an update of every updatable object that has metadata, a
    // delete of every deletable one, and the creates above.
    let mut changed = Vec::new();
    let mut deleted = 0;
    let children = child_changes(stripe);
    for obj in objects.iter().filter(|o| o.parent.is_none()) {
        let kind = kind_of(obj);
        let ids = stripe.ids(kind);
        let has_metadata = obj.fields.iter().any(|f| f.name == "metadata");
        if obj.endpoints.update.is_some() && kind.can_update() && has_metadata {
            stripe
                .update(kind, &ids[0], "metadata[live]=yes")
                .unwrap_or_else(|e| panic!("update {}: {e:?}", obj.name));
            changed.push(obj.name.clone());
        }
        if obj.endpoints.delete.is_some() && kind.can_delete() {
            // Stripe refuses some deletes (a product with prices): those
            // records stay, and the test reads the API for what it holds.
            match stripe.delete(kind, &ids[1]) {
                Ok(_) => {
                    deleted += 1;
                    changed.push(obj.name.clone());
                }
                Err(e) => eprintln!("delete {} refused by the API: {}", obj.name, e.message),
            }
        }
    }
    assert!(deleted >= 5, "only {deleted} deletes went through");
    for (name, form) in CREATES {
        let kind = Kind::named(name).unwrap();
        stripe
            .create(kind, form)
            .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
    }
    let incremental = |o: &Object| {
        o.incremental.clone().map_or("events", |i| match i {
            Incremental::FullRefresh => "full refresh",
            _ => "other",
        })
    };
    let by_strategy: Vec<(String, &str)> = objects
        .iter()
        .filter(|o| changed.contains(&o.name))
        .map(|o| (o.name.clone(), incremental(o)))
        .collect();
    assert!(
        by_strategy.iter().any(|(_, s)| *s == "events")
            && by_strategy.iter().any(|(_, s)| *s == "full refresh"),
        "changes cover both strategies: {by_strategy:?}"
    );
    // Two poll intervals, plus one pass of the re-listed objects (a poll
    // re-lists each of them once) and the test's own reading.
    let t0 = Instant::now();
    eventually(
        POLL * 2 + Duration::from_secs(10),
        "live changes",
        || async {
            let mut behind = Vec::new();
            for obj in &objects {
                let kind = kind_of(obj);
                let count: i64 = pg
                    .query_one(&format!("SELECT count(*) FROM stripe.{}", obj.name), &[])
                    .await
                    .unwrap()
                    .get(0);
                let live = api_view(stripe, obj).0.len();
                if count as usize != live {
                    behind.push(format!("{}: {count} rows, {live} records", obj.name));
                    continue;
                }
                for (table, id, present) in &children {
                    if table != &obj.name {
                        continue;
                    }
                    let n: i64 = pg
                        .query_one(
                            &format!("SELECT count(*) FROM stripe.{table} WHERE id = $1"),
                            &[id],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    if (n == 1) != *present {
                        behind.push(format!("{table} {id}: present {}", n == 1));
                    }
                }
                if obj.fields.iter().any(|f| f.name == "metadata") {
                    let live: i64 = pg
                        .query_one(
                            &format!(
                                "SELECT count(*) FROM stripe.{} WHERE metadata->>'live' = 'yes'",
                                obj.name
                            ),
                            &[],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    let want = stripe
                        .ids(kind)
                        .iter()
                        .filter(|id| {
                            stripe
                                .get(kind, id)
                                .is_some_and(|r| r["metadata"]["live"] == "yes")
                        })
                        .count();
                    if live as usize != want {
                        behind.push(format!("{}: {live} updated rows, {want} records", obj.name));
                    }
                }
            }
            (behind.is_empty(), behind)
        },
    )
    .await;
    let caught_up = t0.elapsed();
    // A change to a child also changes the list its parent embeds (a file
    // link's metadata shows in its file's `links`), and the parent, re-listed
    // whole, catches up at its next poll: wait for two polls of every table
    // (the first may have started before the change) before comparing all.
    for _ in 0..2 {
        polled_since_now(&pg).await;
    }
    assert_every_table_matches(&pg, stripe).await;
    eprintln!(
        "{} objects, {rows} rows; {} live changes caught up in {caught_up:?}",
        objects.len(),
        changed.len() + CREATES.len() + children.len()
    );
    assert!(!sync.finished());
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

/// Live changes of child tables made at the API, as another user would:
/// a tax id added to a customer (its own event), one deleted, a person
/// added to an account (its own event), a subscription item added (the
/// subscription changes), a value list item added (the value list's
/// embedded items change). Returns (table, id, whether it must be there).
fn child_changes(stripe: &Stripe) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let tax_ids = Kind::named("customer.tax_ids").unwrap();
    let customer = stripe.ids(Kind::Customer)[0].clone();
    let created = stripe
        .create_in(tax_ids, &customer, "type=eu_vat&value=DE123456789")
        .expect("a tax id is added");
    out.push((
        "tax_id".into(),
        created["id"].as_str().unwrap().into(),
        true,
    ));
    let gone = stripe.ids_in(tax_ids, &customer).last().cloned().unwrap();
    if gone != created["id"] {
        stripe.delete(tax_ids, &gone).expect("a tax id is deleted");
        out.push(("tax_id".into(), gone, false));
    }
    let persons = Kind::named("account.persons").unwrap();
    let account = stripe.ids(Kind::named("account").unwrap())[0].clone();
    let person = stripe
        .create_in(persons, &account, "first_name=Live")
        .expect("a person is added");
    out.push(("person".into(), person["id"].as_str().unwrap().into(), true));
    let subscription = stripe.ids(Kind::Subscription)[0].clone();
    let price = stripe.ids(Kind::Price)[0].clone();
    let item = stripe
        .create(
            Kind::named("subscription_item").unwrap(),
            &format!("subscription={subscription}&price={price}"),
        )
        .expect("a subscription item is added");
    out.push((
        "subscription_item".into(),
        item["id"].as_str().unwrap().into(),
        true,
    ));
    let list = stripe.ids(Kind::named("radar.value_list").unwrap())[0].clone();
    let entry = stripe
        .create(
            Kind::named("radar.value_list_item").unwrap(),
            &format!("value_list={list}&value=live%40example.com"),
        )
        .expect("a value list item is added");
    out.push((
        "radar_value_list_item".into(),
        entry["id"].as_str().unwrap().into(),
        true,
    ));
    out
}
