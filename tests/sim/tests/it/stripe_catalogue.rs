//! The Stripe simulator's object catalogue over real HTTP: how many objects it serves, create,
//! retrieve, update, delete and list on a sample of the objects beyond the core seven, nested
//! lists under their parents, the events of the new types, restricted keys refused with 403,
//! seeding N records of every object, and the per-account request counter.

use std::collections::HashSet;

use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Sim, SimConfig};
use serde_json::json;

use crate::stripe::{Client, assert_error, ids, sim};

fn kind(name: &str) -> Kind {
    Kind::named(name).unwrap_or_else(|| panic!("{name} is catalogued"))
}

/// Event types of the newest `n` events, newest first.
async fn event_types(c: &Client, n: usize) -> Vec<String> {
    let r = c.get(&format!("/v1/events?limit={n}")).await;
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_catalogue_serves_at_least_45_top_level_objects_and_names_what_it_leaves_out() {
    let top: Vec<&str> = Kind::top_level().map(Kind::name).collect();
    assert!(top.len() >= 45, "{} top-level objects: {top:?}", top.len());
    for name in [
        "balance_transaction",
        "refund",
        "dispute",
        "payout",
        "transfer",
        "coupon",
        "promotion_code",
        "tax_rate",
        "credit_note",
        "invoiceitem",
        "payment_method",
        "setup_intent",
        "checkout.session",
        "payment_link",
        "quote",
        "subscription_item",
        "subscription_schedule",
        "plan",
        "shipping_rate",
        "file",
        "issuing.card",
        "issuing.cardholder",
        "issuing.authorization",
        "issuing.transaction",
        "issuing.dispute",
        "terminal.reader",
        "terminal.location",
        "terminal.configuration",
    ] {
        assert!(top.contains(&name), "{name} is served: {top:?}");
    }
    let nested: Vec<(Kind, Kind)> = Kind::all()
        .filter_map(|k| k.parent().map(|p| (k, p)))
        .collect();
    for (name, parent, path) in [
        ("invoice.lines", "invoice", "/v1/invoices/{invoice}/lines"),
        (
            "customer.tax_ids",
            "customer",
            "/v1/customers/{customer}/tax_ids",
        ),
        (
            "customer.balance_transactions",
            "customer",
            "/v1/customers/{customer}/balance_transactions",
        ),
        (
            "credit_note.lines",
            "credit_note",
            "/v1/credit_notes/{credit_note}/lines",
        ),
    ] {
        let k = kind(name);
        assert!(nested.contains(&(k, kind(parent))), "{name} under {parent}");
        assert_eq!(k.path(), path);
    }
    // Every object is distinct, and the core seven keep their names.
    let all: Vec<Kind> = Kind::all().collect();
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
    for k in Kind::CORE {
        assert!(all.contains(&k), "{k:?}");
    }
    let out = Kind::left_out();
    for path in [
        "/v1/test_helpers/test_clocks",
        "/v1/country_specs",
        "/v1/exchange_rates",
    ] {
        assert!(!out[path].is_empty(), "{path} is left out with a reason");
    }
}

#[tokio::test]
async fn coupons_and_promotion_codes_list_retrieve_create_update_delete_with_events() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let r = c
        .post(
            "/v1/coupons",
            "id=SUMMER&percent_off=25&duration=once&metadata[season]=summer",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], "SUMMER");
    assert_eq!(r.body["object"], "coupon");
    assert_eq!(r.body["percent_off"], 25.0);
    assert_eq!(r.body["metadata"], json!({"season": "summer"}));
    assert_eq!(r.body["livemode"], false);
    let again = c.post("/v1/coupons", "id=SUMMER&percent_off=10").await;
    assert_error(
        &again,
        400,
        "invalid_request_error",
        Some("resource_already_exists"),
        Some("id"),
        "Coupon already exists.",
    );
    let r = c.post("/v1/coupons", "percent_off=ten").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = c.post("/v1/coupons", "color=red").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_unknown"),
        Some("color"),
        "Received unknown parameter: color",
    );
    sim.clock().advance(std::time::Duration::from_secs(1));
    let generated = c
        .post("/v1/coupons", "amount_off=500&currency=usd")
        .await
        .body;
    let gid = generated["id"].as_str().unwrap();
    assert!(gid.len() == 8 && gid != "SUMMER", "{gid}");

    let r = c.post("/v1/coupons/SUMMER", "name=Summer+sale").await;
    assert_eq!(r.body["name"], "Summer sale");
    assert_eq!(c.get("/v1/coupons/SUMMER").await.body, r.body);
    assert_eq!(
        ids(&c.get("/v1/coupons").await.body),
        [gid, "SUMMER"],
        "newest first"
    );

    // A promotion code embeds its coupon, and lists filter on the coupon's id.
    let r = c.post("/v1/promotion_codes", "code=SUN25").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        Some("coupon"),
        "Missing required param: coupon.",
    );
    let r = c
        .post("/v1/promotion_codes", "coupon=NOPE&code=SUN25")
        .await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("resource_missing"),
        Some("coupon"),
        "No such coupon: 'NOPE'",
    );
    let promo = c
        .post("/v1/promotion_codes", "coupon=SUMMER&code=SUN25")
        .await
        .body;
    assert!(promo["id"].as_str().unwrap().starts_with("promo_"));
    assert_eq!(promo["coupon"]["id"], "SUMMER");
    assert_eq!(promo["coupon"]["name"], "Summer sale");
    assert_eq!(promo["code"], "SUN25");
    let listed = c.get("/v1/promotion_codes?coupon=SUMMER").await.body;
    assert_eq!(ids(&listed), [promo["id"].as_str().unwrap()]);
    assert!(
        ids(&c
            .get(&format!("/v1/promotion_codes?coupon={gid}"))
            .await
            .body)
        .is_empty()
    );

    let r = c.delete("/v1/coupons/SUMMER").await;
    assert_eq!(
        r.body,
        json!({"id": "SUMMER", "object": "coupon", "deleted": true})
    );
    assert_eq!(c.get("/v1/coupons/SUMMER").await.status, 404);
    // Promotion codes cannot be deleted: Stripe has no such route.
    let r = c
        .delete(&format!(
            "/v1/promotion_codes/{}",
            promo["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status, 404);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Unrecognized request URL (DELETE: /v1/promotion_codes/"),
        "{}",
        r.body
    );

    assert_eq!(
        event_types(&c, 10).await,
        [
            "coupon.deleted",
            "promotion_code.created",
            "coupon.updated",
            "coupon.created",
            "coupon.created"
        ]
    );
    let updated = &c.get("/v1/events?type=coupon.updated").await.body["data"][0];
    assert_eq!(
        updated["data"]["previous_attributes"],
        json!({"name": null})
    );
}

#[tokio::test]
async fn refunds_tax_rates_and_terminal_locations_behave_like_the_core_objects() {
    let sim = sim(3).await;
    let c = Client::new(&sim);
    let charge = sim.stripe().ids(Kind::Charge)[0].clone();
    let r = c.post("/v1/refunds", "charge=ch_missing&amount=100").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("resource_missing"),
        Some("charge"),
        "No such charge: 'ch_missing'",
    );
    let refund = c
        .post_with(
            "/v1/refunds",
            &format!("charge={charge}&amount=100"),
            Some("refund-1"),
        )
        .await;
    assert_eq!(refund.status, 200, "{}", refund.body);
    let replay = c
        .post_with(
            "/v1/refunds",
            &format!("charge={charge}&amount=100"),
            Some("refund-1"),
        )
        .await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, refund.body);
    let refund = refund.body;
    let rid = refund["id"].as_str().unwrap();
    assert!(rid.starts_with("re_") && rid.len() == 27, "{rid}");
    assert_eq!(refund["charge"], charge.as_str());
    assert_eq!(refund["amount"], 100);
    assert_eq!(
        sim.stripe().len(kind("refund")),
        1,
        "the replay created nothing"
    );
    assert_eq!(
        ids(&c.get(&format!("/v1/refunds?charge={charge}")).await.body),
        [rid]
    );
    assert!(ids(&c.get("/v1/refunds?charge=ch_other").await.body).is_empty());
    let r = c
        .post(&format!("/v1/refunds/{rid}"), "metadata[reason]=late")
        .await;
    assert_eq!(r.body["metadata"], json!({"reason": "late"}));
    assert_eq!(
        event_types(&c, 2).await,
        ["refund.updated", "refund.created"]
    );

    // Required parameters, typed values and list filters come from the spec.
    let r = c
        .post("/v1/tax_rates", "display_name=VAT&inclusive=false")
        .await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        Some("percentage"),
        "Missing required param: percentage.",
    );
    let vat = c
        .post(
            "/v1/tax_rates",
            "display_name=VAT&inclusive=false&percentage=19.5&country=DE",
        )
        .await
        .body;
    assert_eq!(vat["percentage"], 19.5);
    assert_eq!(vat["inclusive"], false);
    let gst = c
        .post(
            "/v1/tax_rates",
            "display_name=GST&inclusive=true&percentage=10",
        )
        .await
        .body;
    assert_eq!(
        ids(&c.get("/v1/tax_rates?inclusive=true").await.body),
        [gst["id"].as_str().unwrap()]
    );
    let vid = vat["id"].as_str().unwrap();
    c.post(&format!("/v1/tax_rates/{vid}"), "active=false")
        .await;
    assert_eq!(
        ids(&c.get("/v1/tax_rates?active=true").await.body),
        [gst["id"].as_str().unwrap()]
    );
    let r = c.delete(&format!("/v1/tax_rates/{vid}")).await;
    assert_eq!(r.status, 404, "tax rates cannot be deleted");

    // Terminal locations: Stripe emits no events for them.
    let before = sim.stripe().event_count();
    let loc = c
        .post(
            "/v1/terminal/locations",
            "display_name=Shop&address[line1]=1+Main&address[city]=Berlin&address[country]=DE&address[postal_code]=10115",
        )
        .await;
    assert_eq!(loc.status, 200, "{}", loc.body);
    let lid = loc.body["id"].as_str().unwrap();
    assert!(lid.starts_with("tml_"));
    assert_eq!(loc.body["address"]["city"], "Berlin");
    let r = c.delete(&format!("/v1/terminal/locations/{lid}")).await;
    assert_eq!(r.body["deleted"], true);
    assert_eq!(r.body["object"], "terminal.location");
    assert_eq!(sim.stripe().event_count(), before);
}

#[tokio::test]
async fn objects_without_create_are_seeded_and_then_retrieved_updated_and_listed() {
    let sim = sim(2).await;
    let c = Client::new(&sim);
    let r = c.post("/v1/disputes", "amount=100").await;
    assert_eq!(r.status, 404, "Stripe has no POST /v1/disputes");
    assert!(sim.stripe().create(kind("dispute"), "").is_err());
    let seeded = sim.stripe().seed_objects(kind("dispute"), 3);
    assert_eq!(seeded.len(), 3);
    let list = c.get("/v1/disputes").await.body;
    assert_eq!(ids(&list), sim.stripe().ids(kind("dispute")));
    let mut listed = ids(&list);
    listed.sort();
    let mut want = seeded.clone();
    want.sort();
    assert_eq!(listed, want);
    let charges = sim.stripe().ids(Kind::Charge);
    for d in list["data"].as_array().unwrap() {
        assert!(
            charges.contains(&d["charge"].as_str().unwrap().to_owned()),
            "a seeded dispute names a seeded charge: {}",
            d["charge"]
        );
    }
    let id = &seeded[0];
    let r = c
        .post(&format!("/v1/disputes/{id}"), "metadata[case]=42")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["metadata"]["case"], "42");
    let event = &c.get("/v1/events?limit=1").await.body["data"][0];
    assert_eq!(event["type"], "charge.dispute.updated");
    assert_eq!(event["data"]["object"]["id"], id.as_str());
    assert_eq!(
        event["data"]["previous_attributes"],
        json!({"metadata": {"case": null}})
    );
    // Balance transactions can only be read.
    let txn = sim.stripe().seed_objects(kind("balance_transaction"), 1);
    let r = c.get(&format!("/v1/balance_transactions/{}", txn[0])).await;
    assert_eq!(r.body["object"], "balance_transaction");
    let r = c
        .post(
            &format!("/v1/balance_transactions/{}", txn[0]),
            "description=x",
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn nested_lists_belong_to_their_parent() {
    let sim = sim(2).await;
    let c = Client::new(&sim);
    let customers = sim.stripe().ids(Kind::Customer);
    let (ada, bob) = (&customers[0], &customers[1]);
    let path = format!("/v1/customers/{ada}/tax_ids");
    let r = c.post(&path, "type=eu_vat&value=DE123456789").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tax_id = r.body;
    let tid = tax_id["id"].as_str().unwrap();
    assert!(tid.starts_with("txi_"));
    assert_eq!(tax_id["customer"], ada.as_str());
    assert_eq!(tax_id["value"], "DE123456789");
    let r = c.post(&path, "type=martian_id&value=1").await;
    assert_eq!(r.status, 400, "{}", r.body);

    let list = c.get(&path).await.body;
    assert_eq!(ids(&list), [tid]);
    assert_eq!(list["url"], path);
    assert!(ids(&c.get(&format!("/v1/customers/{bob}/tax_ids")).await.body).is_empty());
    assert_eq!(c.get(&format!("{path}/{tid}")).await.body, tax_id);
    let r = c.get(&format!("/v1/customers/{bob}/tax_ids/{tid}")).await;
    assert_eq!(r.status, 404, "not under another customer");
    let r = c.get("/v1/customers/cus_missing/tax_ids").await;
    assert_error(
        &r,
        404,
        "invalid_request_error",
        Some("resource_missing"),
        Some("customer"),
        "No such customer: 'cus_missing'",
    );
    let r = c
        .get(&format!("/v1/customers/{bob}/tax_ids?starting_after={tid}"))
        .await;
    assert_eq!(r.status, 400, "a cursor from another parent: {}", r.body);
    assert_eq!(sim.stripe().ids_in(kind("customer.tax_ids"), ada), [tid]);
    assert_eq!(
        sim.stripe()
            .parent_of(kind("customer.tax_ids"), tid)
            .as_deref(),
        Some(ada.as_str())
    );
    let r = c.delete(&format!("{path}/{tid}")).await;
    assert_eq!(
        r.body,
        json!({"id": tid, "object": "tax_id", "deleted": true})
    );
    assert_eq!(
        event_types(&c, 2).await,
        ["customer.tax_id.deleted", "customer.tax_id.created"]
    );

    // Customer balance transactions: created and updated under their customer, no events.
    let before = sim.stripe().event_count();
    let path = format!("/v1/customers/{bob}/balance_transactions");
    let txn = c.post(&path, "amount=-500&currency=usd").await.body;
    let xid = txn["id"].as_str().unwrap();
    assert!(xid.starts_with("cbtxn_"));
    assert_eq!(txn["customer"], bob.as_str());
    let r = c.post(&format!("{path}/{xid}"), "description=Credit").await;
    assert_eq!(r.body["description"], "Credit");
    assert_eq!(sim.stripe().event_count(), before);

    // Lines of invoices and credit notes are seeded under their parents and paged per parent.
    let lines = kind("invoice.lines");
    let seeded = sim.stripe().seed_objects(lines, 5);
    assert_eq!(seeded.len(), 5);
    let invoices = sim.stripe().ids(Kind::Invoice);
    let mut seen = Vec::new();
    for invoice in &invoices {
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                None => "limit=2".to_owned(),
                Some(after) => format!("limit=2&starting_after={after}"),
            };
            let r = c.get(&format!("/v1/invoices/{invoice}/lines?{q}")).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let page = ids(&r.body);
            for id in &page {
                assert_eq!(
                    sim.stripe().parent_of(lines, id).as_deref(),
                    Some(invoice.as_str())
                );
            }
            seen.extend(page.iter().cloned());
            if r.body["has_more"] != true {
                break;
            }
            cursor = page.last().cloned();
        }
    }
    seen.sort();
    let mut expected = seeded.clone();
    expected.sort();
    assert_eq!(seen, expected, "every line once, under its invoice");
    assert_eq!(
        c.get(&format!("/v1/invoices/{}/lines", invoices[0]))
            .await
            .body["data"][0]["object"],
        "line_item"
    );
    let r = c
        .post(&format!("/v1/invoices/{}/lines", invoices[0]), "")
        .await;
    assert_eq!(r.status, 404, "invoice lines are read-only");

    let notes = sim.stripe().seed_objects(kind("credit_note"), 1);
    let note_lines = sim.stripe().seed_objects(kind("credit_note.lines"), 2);
    let list = c
        .get(&format!("/v1/credit_notes/{}/lines", notes[0]))
        .await
        .body;
    let mut got = ids(&list);
    got.sort();
    let mut want = note_lines.clone();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_restricted_key_without_the_events_permission_gets_stripes_403() {
    const RESTRICTED: &str = "rk_test_51SequinNoEventsKey0123abcdef";
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(2)
            .rate_limit(0.0)
            .restricted_key(RESTRICTED, ["rak_event_read", "rak_charge_read"]),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let rk = Client::with_key(&sim, RESTRICTED);
    let sk = Client::new(&sim);
    let r = rk.get("/v1/customers").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = rk.post("/v1/customers", "name=Allowed").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let account = sim.stripe().account_id().to_owned();
    assert!(account.starts_with("acct_"));
    let masked = format!("rk_test_{}abcdef", "*".repeat(RESTRICTED.len() - 14));
    for path in [
        "/v1/events",
        "/v1/events?type=customer.created",
        "/v1/events/evt_1",
    ] {
        let r = rk.get(path).await;
        assert_error(
            &r,
            403,
            "invalid_request_error",
            None,
            None,
            &format!(
                "The provided key '{masked}' does not have the required permissions for this endpoint on account '{account}'. Having the 'rak_event_read' permission would allow this request to continue."
            ),
        );
    }
    // Without read, no write either; other resources are unaffected; the secret key sees all.
    let r = rk.post("/v1/charges", "amount=100&currency=usd").await;
    assert_eq!(r.status, 403);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'rak_charge_write'"),
        "{}",
        r.body
    );
    assert_eq!(rk.get("/v1/refunds").await.status, 200);
    assert_eq!(
        sk.get("/v1/events").await.body["data"][0]["type"],
        "customer.created"
    );
    let wrong = Client::with_key(&sim, "rk_test_notgiven")
        .get("/v1/customers")
        .await;
    assert_eq!(wrong.status, 401);
}

/// Every object's list pages through exactly the records seeded for it.
async fn assert_every_list_holds(c: &Client, sim: &Sim, n: usize) {
    for kind in Kind::top_level() {
        assert_eq!(sim.stripe().len(kind), n, "{kind:?}");
        let r = c.get(&format!("{}?limit=100", kind.path())).await;
        if r.status == 400 && r.body["error"]["code"] == "parameter_missing" {
            continue; // a list that needs a filter (subscription_items: subscription)
        }
        assert_eq!(r.status, 200, "{kind:?}: {}", r.body);
        let mut listed = ids(&r.body);
        let mut has_more = r.body["has_more"] == true;
        while has_more {
            let after = listed.last().unwrap();
            let r = c
                .get(&format!("{}?limit=100&starting_after={after}", kind.path()))
                .await;
            listed.extend(ids(&r.body));
            has_more = r.body["has_more"] == true;
        }
        assert_eq!(listed, sim.stripe().ids(kind), "{kind:?}");
    }
}

#[tokio::test]
async fn seeds_n_records_of_every_object() {
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(30)
            .seed_every_object()
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let c = Client::new(&sim);
    let stripe = sim.stripe();
    for kind in Kind::all() {
        assert_eq!(stripe.len(kind), 30, "{kind:?}");
        let ids = stripe.ids(kind);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 30, "{kind:?}");
        let sample = stripe.get(kind, &ids[0]).unwrap();
        assert_eq!(sample["object"], kind.object(), "{kind:?}");
        if let Some(parent) = kind.parent() {
            let owner = stripe.parent_of(kind, &ids[0]).unwrap();
            assert!(stripe.get(parent, &owner).is_some(), "{kind:?}");
        }
    }
    assert_eq!(stripe.event_count(), 0, "seeded history has no events");
    // Created times are spread over history, 40 days back, with ties.
    let list = c.get("/v1/refunds?limit=100").await.body;
    let created: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["created"].as_i64().unwrap())
        .collect();
    let now = sim.clock().now_secs();
    assert!(created.iter().all(|t| now - t > 30 * 24 * 3600));
    let distinct: HashSet<_> = created.iter().collect();
    assert!(
        distinct.len() > 1 && distinct.len() < created.len(),
        "{created:?}"
    );
    assert_every_list_holds(&c, &sim, 30).await;
}

#[tokio::test]
async fn seeds_1000_records_of_every_object() {
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.stripe().seed_every_object(1000);
    for kind in Kind::all() {
        assert_eq!(sim.stripe().len(kind), 1000, "{kind:?}");
    }
    let c = Client::new(&sim);
    let r = c.get("/v1/issuing/cards?limit=100").await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 100);
    assert_eq!(r.body["has_more"], true);
}

#[tokio::test]
async fn the_account_request_counter_counts_every_request_under_the_limit() {
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(1).rate_limit(3.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let c = Client::new(&sim);
    let mut statuses = Vec::new();
    for path in [
        "/v1/customers",
        "/v1/coupons",
        "/v1/events",
        "/v1/refunds",
        "/v1/payouts",
    ] {
        statuses.push(c.get(path).await.status.as_u16());
    }
    let account = &sim.stats().rate_keys["account"];
    assert_eq!(account.requests, 5, "{account:?}");
    assert_eq!(
        account.rejected,
        statuses.iter().filter(|s| **s == 429).count() as u64
    );
    assert!(account.rejected >= 2, "{statuses:?}");
    // The control routes are not the account's requests.
    reqwest::get(format!("{}/_sim/v1/customers", sim.base_url()))
        .await
        .unwrap();
    assert_eq!(sim.stats().rate_keys["account"].requests, 5);
}

#[tokio::test]
async fn the_binary_seeds_every_object_and_accepts_a_restricted_key() {
    // Killed on drop, also when an assertion below fails.
    let sim = sequin_pgtemp::SimChild::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_sequin-sim")).args([
            "--api",
            "stripe",
            "--seed-records",
            "3",
            "--seed-every-object",
            "--rate-limit",
            "0",
            "--restricted-key",
            "rk_test_sequin=rak_event_read",
        ]),
    )
    .unwrap_or_else(|e| panic!("first line names the address: {e}"));
    let http = reqwest::Client::new();
    let get = |path: &str, key: &str| {
        http.get(format!("{}{path}", sim.url))
            .bearer_auth(key)
            .send()
    };
    let r = get("/v1/issuing/cards", "rk_test_sequin").await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    let r = get("/v1/events", "rk_test_sequin").await.unwrap();
    assert_eq!(r.status(), 403);
    let r = get("/v1/events", "sk_test_sequin").await.unwrap();
    assert_eq!(r.status(), 200);

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_sequin-sim"))
        .args([
            "--api",
            "stripe",
            "--restricted-key",
            "sk_test_x=rak_event_read",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("fix: give one starting with rk_test_"),
        "{stderr}"
    );
}
