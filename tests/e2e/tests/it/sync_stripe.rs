//! Stripe end to end: backfill every object from the simulator, then live
//! changes (create, update, delete) through the events feed; a restricted
//! key that may not read the feed, synced by re-listing; and a child object
//! (records listed under a parent record) following its parents.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_runtime::config::Config;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};
use sequin_spec::Connector;
use sequin_spec::model::{Endpoints, Parent};
use serde_json::Value;

use crate::sync_common::{assert_table_equals, spec_columns};
use crate::write_common::{db_error, expect_err, proxy_url};

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

/// A `MakeWriter` collecting everything logged on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Every live record of `kind`, by id.
pub(crate) fn api_records(
    stripe: &sequin_sim::stripe::Stripe,
    kind: Kind,
) -> BTreeMap<String, Value> {
    stripe
        .ids(kind)
        .into_iter()
        .filter_map(|id| stripe.get(kind, &id).map(|r| (id, r)))
        .collect()
}

/// Whether `schema.table` has a row with the primary key `id`.
async fn has_row(pg: &tokio_postgres::Client, table: &str, id: &str) -> bool {
    pg.query_opt(
        &format!("SELECT 1 FROM stripe.{table} WHERE id = $1"),
        &[&id],
    )
    .await
    .unwrap()
    .is_some()
}

/// A restricted key without the Events permission: `GET /v1/events`
/// answers 403. `sync --once` still syncs every object (it used to stop and
/// sync nothing), and a running sync re-lists every object each
/// `events_fallback_interval`, so an update and a delete show up; the
/// refusal is logged once per start and shown in `sequin.status`.
// On the test's own thread (current_thread runtime) and in a process of its
// own: the engine's log goes to this test's subscriber, which no other
// test's subscriber or callsites race with.
#[tokio::test]
async fn restricted_key_without_events_syncs_by_relisting() {
    if sequin_pgtemp::process::alone(
        module_path!(),
        "restricted_key_without_events_syncs_by_relisting",
    ) {
        return;
    }
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("sequin_runtime=warn")
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);
    let db = sequin_pgtemp::Database::create("sync_stripe_restricted").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(40).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let stripe = sim.stripe();
    stripe.refuse_events(true);
    let yaml = format!(
        "database_url: {}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    poll_interval: 200ms\n    events_fallback_interval: 1s\n",
        db.url,
        sim.base_url(),
        sim.token()
    );
    let config = Config::parse("test.yaml", &yaml, &|_| None).unwrap();
    let tables = [
        (Kind::Customer, "customer"),
        (Kind::Product, "product"),
        (Kind::Price, "price"),
        (Kind::Subscription, "subscription"),
        (Kind::Invoice, "invoice"),
        (Kind::PaymentIntent, "payment_intent"),
        (Kind::Charge, "charge"),
    ];

    // `sync --once`: every object backfilled, no error.
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let once = sequin_runtime::sync::Options {
        once: true,
        metrics: sequin_runtime::metrics::Metrics::new(),
        reloads: None,
    };
    sequin_runtime::sync::run(&config, once, rx)
        .await
        .expect("sync --once succeeds without the events feed");
    let pg = connect(&db.url).await;
    for (kind, table) in tables {
        let cols = spec_columns("stripe", table);
        assert_table_equals(
            &pg,
            "stripe",
            table,
            "id",
            &cols,
            &api_records(stripe, kind),
        )
        .await;
    }
    let warned = |text: &str| text.matches("events feed refused").count();
    assert_eq!(
        warned(&logs.text()),
        1,
        "one warning per run:\n{}",
        logs.text()
    );
    let log = logs.text();
    assert!(
        log.contains("rak_event_read") && log.contains("every 1s"),
        "the warning names the permission and the strategy:\n{log}"
    );
    let status: String = pg
        .query_one(
            "SELECT last_error FROM sequin.status WHERE connection = 'stripe' AND object = '_events'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        status.contains("rak_event_read") && status.contains("re-listing"),
        "{status}"
    );

    // A running sync: an update and a delete made upstream show up at the
    // next re-listing, the feed is not asked again, and the warning is
    // logged once more (this start's).
    sim.reset_stats();
    let sync = Running::start_config(config);
    wait_live(&pg, "stripe", Duration::from_secs(60)).await;
    let customers = stripe.ids(Kind::Customer);
    let (changed, gone) = (customers[0].clone(), customers[1].clone());
    stripe
        .update(Kind::Customer, &changed, "name=Restricted+Key")
        .unwrap();
    stripe.delete(Kind::Customer, &gone).unwrap();
    eventually(
        Duration::from_secs(15),
        "the change and the delete",
        || async {
            let name: Option<String> = pg
                .query_one(
                    "SELECT name FROM stripe.customer WHERE id = $1",
                    &[&changed],
                )
                .await
                .ok()
                .and_then(|r| r.get(0));
            let deleted = !has_row(&pg, "customer", &gone).await;
            (
                name.as_deref() == Some("Restricted Key") && deleted,
                (name, deleted),
            )
        },
    )
    .await;
    // Two more re-listings pass (with every Stripe object, a pass takes
    // more than the interval at 25 requests/s): still one warning for
    // this start, and the feed asked once.
    eventually(Duration::from_secs(30), "two more re-listings", || async {
        let listed = sim
            .stats()
            .by_route
            .get("GET /v1/customers")
            .copied()
            .unwrap_or(0);
        (listed >= 3, listed)
    })
    .await;
    assert!(!sync.finished(), "the engine is still running");
    assert_eq!(warned(&logs.text()), 2, "{}", logs.text());
    let stats = sim.stats();
    assert_eq!(
        stats.by_route.get("GET /v1/events").copied(),
        Some(1),
        "the feed is asked once per start: {:?}",
        stats.by_route
    );
    for (kind, table) in tables {
        let cols = spec_columns("stripe", table);
        assert_table_equals(
            &pg,
            "stripe",
            table,
            "id",
            &cols,
            &api_records(stripe, kind),
        )
        .await;
    }
    sync.stop().await.unwrap();

    // A later `sync --once` re-lists what changed while it was stopped.
    stripe
        .update(Kind::Customer, &changed, "name=While+Stopped")
        .unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let once = sequin_runtime::sync::Options {
        once: true,
        metrics: sequin_runtime::metrics::Metrics::new(),
        reloads: None,
    };
    let config = Config::parse("test.yaml", &yaml, &|_| None).unwrap();
    sequin_runtime::sync::run(&config, once, rx).await.unwrap();
    let name: Option<String> = pg
        .query_one(
            "SELECT name FROM stripe.customer WHERE id = $1",
            &[&changed],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name.as_deref(), Some("While Stopped"));
    sim.shutdown().await;
}

/// The Stripe spec with `invoice` made a child of `customer`, listed with
/// `GET /v1/invoices?customer={customer}` under each customer: a real
/// listing of Stripe's under a parent, which the simulator serves, to prove
/// child objects end to end until the connector has its own (invoice lines
/// and tax ids). Without `changes_without_parent` it is kept current
/// through its customer only, with it also by its own events.
fn invoices_under_customers(changes_without_parent: bool) -> Connector {
    let mut spec = sequin_runtime::registry::get("stripe")
        .unwrap()
        .spec
        .clone();
    let invoice = spec
        .objects
        .iter_mut()
        .find(|o| o.name == "invoice")
        .unwrap();
    invoice.parent = Some(Parent {
        object: "customer".into(),
        param: "customer".into(),
        field: "customer".into(),
        changes_without_parent,
        embedded: None,
    });
    let mut list = invoice.endpoints.list.clone();
    list.query.insert("customer".into(), "{customer}".into());
    invoice.endpoints = Endpoints {
        list,
        get: invoice.endpoints.get.clone(),
        create: None,
        update: None,
        delete: None,
        batch_create: None,
        batch_update: None,
        batch_delete: None,
        upsert: None,
    };
    spec
}

/// A child object: listed under every parent once the parent is
/// backfilled (one listing per customer), listed again under a parent whose
/// row changes (a new invoice appears, a deleted one goes) and only then,
/// its rows deleted with their parent, and refused by write-through (0A000)
/// where its spec declares no write endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_object_is_listed_under_its_parents_and_follows_them() {
    let db = sequin_pgtemp::Database::create("sync_stripe_child").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(40).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let stripe = sim.stripe();
    // The oldest customer gets two more invoices (draft).
    let customers = stripe.ids(Kind::Customer);
    let invoices_of = |c: &str| -> Vec<String> {
        api_records(stripe, Kind::Invoice)
            .into_iter()
            .filter(|(_, r)| r["customer"] == c)
            .map(|(id, _)| id)
            .collect()
    };
    let busy = customers[0].clone();
    for _ in 0..2 {
        stripe
            .create(Kind::Invoice, &format!("customer={busy}"))
            .unwrap();
    }
    assert_eq!(invoices_of(&busy).len(), 3);
    let port = sequin_pgtemp::free_port().unwrap();
    let yaml = format!(
        "database_url: {}\nproxy:\n  listen: 127.0.0.1:{port}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    objects: [customer, invoice]\n    poll_interval: 200ms\n",
        db.url,
        sim.base_url(),
        sim.token()
    );
    let mut config = Config::parse("test.yaml", &yaml, &|_| None).unwrap();
    config.connections[0].spec = Some(Arc::new(invoices_under_customers(false)));
    sim.reset_stats();
    let sync = Running::start_config(config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "stripe", Duration::from_secs(60)).await;

    // Backfill: every invoice, every column, from one listing per customer.
    let cols = spec_columns("stripe", "invoice");
    assert_table_equals(
        &pg,
        "stripe",
        "invoice",
        "id",
        &cols,
        &api_records(stripe, Kind::Invoice),
    )
    .await;
    let lists = sim
        .stats()
        .by_route
        .get("GET /v1/invoices")
        .copied()
        .unwrap_or(0);
    assert_eq!(lists, customers.len() as u64, "one listing per customer");

    // A new invoice of a customer whose row does not change is not listed.
    let quiet = customers[2].clone();
    let new = stripe
        .create(Kind::Invoice, &format!("customer={quiet}"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !has_row(&pg, "invoice", &new).await,
        "listed without a parent change"
    );
    // Its customer changes: its invoices are listed again.
    stripe
        .update(Kind::Customer, &quiet, "name=Listed+Again")
        .unwrap();
    eventually(Duration::from_secs(10), "the new invoice", || async {
        (has_row(&pg, "invoice", &new).await, ())
    })
    .await;

    // A draft invoice deleted upstream goes when its customer changes.
    let draft = invoices_of(&busy)
        .into_iter()
        .find(|id| stripe.get(Kind::Invoice, id).unwrap()["status"] == "draft")
        .unwrap();
    stripe.delete(Kind::Invoice, &draft).unwrap();
    stripe
        .update(Kind::Customer, &busy, "metadata[touched]=yes")
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the deleted invoice gone",
        || async { (!has_row(&pg, "invoice", &draft).await, ()) },
    )
    .await;
    assert_eq!(
        pg.query_one(
            "SELECT count(*) FROM stripe.invoice WHERE customer = $1",
            &[&busy]
        )
        .await
        .unwrap()
        .get::<_, i64>(0),
        2
    );

    // A deleted customer takes its invoices along.
    let leaving = customers[3].clone();
    let theirs = invoices_of(&leaving);
    assert!(!theirs.is_empty());
    stripe.delete(Kind::Customer, &leaving).unwrap();
    eventually(
        Duration::from_secs(10),
        "the customer's invoices gone",
        || async {
            let n: i64 = pg
                .query_one(
                    "SELECT count(*) FROM stripe.invoice WHERE customer = $1",
                    &[&leaving],
                )
                .await
                .unwrap()
                .get(0);
            (n == 0, n)
        },
    )
    .await;
    let mut expected = api_records(stripe, Kind::Invoice);
    expected.retain(|_, r| r["customer"] != leaving.as_str());
    assert_table_equals(&pg, "stripe", "invoice", "id", &cols, &expected).await;

    // Write-through refuses what the child's spec declares no endpoint for.
    let proxy = sequin_pgtemp::connect_when_up(&proxy_url(&db.url, port)).await;
    let err = expect_err(
        proxy
            .execute("DELETE FROM stripe.invoice WHERE id = $1", &[&new])
            .await,
        "a DELETE of a child table without a delete endpoint",
    );
    let e = db_error(&err);
    assert_eq!(e.code().code(), "0A000", "{e:?}");
    assert!(
        e.message().contains("cannot be deleted through the API"),
        "{}",
        e.message()
    );
    assert!(has_row(&pg, "invoice", &new).await);

    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

/// A child object that changes without its parent takes its own events
/// (a new invoice shows up though its customer does not change); once the
/// key loses the events permission while running, it is listed again under
/// every parent each fallback interval (a new invoice appears, a deleted one
/// goes, still without any customer changing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_changes_on_its_own_takes_its_events_then_relists_when_refused() {
    let db = sequin_pgtemp::Database::create("sync_stripe_child_events").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(20).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let stripe = sim.stripe();
    let customers = stripe.ids(Kind::Customer);
    let yaml = format!(
        "database_url: {}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: {} }}\n    objects: [customer, invoice]\n    poll_interval: 200ms\n    events_fallback_interval: 1s\n",
        db.url,
        sim.base_url(),
        sim.token()
    );
    let mut config = Config::parse("test.yaml", &yaml, &|_| None).unwrap();
    config.connections[0].spec = Some(Arc::new(invoices_under_customers(true)));
    let sync = Running::start_config(config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "stripe", Duration::from_secs(60)).await;
    let cols = spec_columns("stripe", "invoice");
    assert_table_equals(
        &pg,
        "stripe",
        "invoice",
        "id",
        &cols,
        &api_records(stripe, Kind::Invoice),
    )
    .await;

    // Its own event: no customer changes.
    let by_event = stripe
        .create(Kind::Invoice, &format!("customer={}", customers[0]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        Duration::from_secs(10),
        "the invoice from its event",
        || async { (has_row(&pg, "invoice", &by_event).await, ()) },
    )
    .await;

    // The feed refused from now on: listed again under every customer.
    stripe.refuse_events(true);
    let by_walk = stripe
        .create(Kind::Invoice, &format!("customer={}", customers[1]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    stripe.delete(Kind::Invoice, &by_event).unwrap();
    eventually(
        Duration::from_secs(15),
        "the walk's insert and delete",
        || async {
            let added = has_row(&pg, "invoice", &by_walk).await;
            let gone = !has_row(&pg, "invoice", &by_event).await;
            (added && gone, (added, gone))
        },
    )
    .await;
    let status: Option<String> = pg
        .query_one(
            "SELECT last_error FROM sequin.status WHERE connection = 'stripe' AND object = '_events'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.contains("rak_event_read")),
        "{status:?}"
    );
    assert_table_equals(
        &pg,
        "stripe",
        "invoice",
        "id",
        &cols,
        &api_records(stripe, Kind::Invoice),
    )
    .await;
    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
