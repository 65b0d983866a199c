//! Write-through to Stripe through the Sequin proxy (issue #6), against the
//! Stripe simulator: INSERT ... RETURNING gets Stripe's `cus_` id and the
//! fields Stripe computes, a multi-row INSERT, an UPDATE by an arbitrary
//! WHERE, a DELETE, typed values (integers, arrays, JSON merged by Stripe)
//! read back with RETURNING *; refusals by Stripe (a product id it already
//! has, a customer deleted behind the engine's back, an unknown nested
//! parameter in the second row of a multi-row insert, whose first row is
//! then undone) and local ones (email format, enum, read-only and
//! create-only columns, a delete prices do not have, too many rows);
//! explicit transactions (a failed write aborts it; a create and an update
//! rolled back are undone upstream).
use crate::write_common;

use sequin_sim::Api;
use sequin_sim::stripe::Kind;
use write_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_write_through() {
    let t = Setup::start(Api::Stripe, 5, "write_stripe", |sim| {
        stripe_connection(sim, "customer, product, price")
    })
    .await;
    t.wait_objects_live("stripe", &["customer", "product", "price"])
        .await;
    let stripe = t.sim.stripe();
    let (pg, proxy) = (&t.pg, &t.proxy);
    let customers = || stripe.len(Kind::Customer);
    let seeded = customers();
    assert_eq!(seeded, 5);

    // --- INSERT ... RETURNING: Stripe's id and computed fields.
    let row = proxy
        .query_one(
            "insert into stripe.customer (name, email, metadata) \
             values ('Andrea Palladio', 'andrea@palladio.example', '{\"order\": \"1\"}') \
             returning id, object, created is not null, livemode, invoice_prefix",
            &[],
        )
        .await
        .expect("insert through the proxy");
    let andrea: String = row.get(0);
    assert!(
        andrea.starts_with("cus_") && andrea.len() > 10,
        "Stripe id: {andrea}"
    );
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("customer"));
    assert!(row.get::<_, bool>(2), "created is Stripe's");
    assert_eq!(row.get::<_, Option<bool>>(3), Some(false));
    let rec = stripe
        .get(Kind::Customer, &andrea)
        .expect("Stripe holds the customer");
    assert_eq!(rec["name"], "Andrea Palladio");
    assert_eq!(rec["email"], "andrea@palladio.example");
    assert_eq!(rec["metadata"]["order"], "1");
    assert_eq!(
        row.get::<_, Option<String>>(4).as_deref(),
        rec["invoice_prefix"].as_str(),
        "invoice_prefix assigned by Stripe"
    );
    let local = pg
        .query_one(
            "select name, email, metadata->>'order', extract(epoch from created)::bigint, invoice_prefix \
               from stripe.customer where id = $1",
            &[&andrea],
        )
        .await
        .expect("the row is in Postgres under Stripe's id");
    assert_eq!(
        local.get::<_, Option<String>>(0).as_deref(),
        Some("Andrea Palladio")
    );
    assert_eq!(
        local.get::<_, Option<String>>(1).as_deref(),
        Some("andrea@palladio.example")
    );
    assert_eq!(local.get::<_, Option<String>>(2).as_deref(), Some("1"));
    assert_eq!(local.get::<_, Option<i64>>(3), rec["created"].as_i64());
    assert_eq!(
        local.get::<_, Option<String>>(4).as_deref(),
        rec["invoice_prefix"].as_str()
    );
    assert_eq!(customers(), seeded + 1);
    assert_no_pending_ids(pg, "stripe.customer", "id").await;

    // --- Multi-row INSERT.
    let n = proxy
        .execute(
            "insert into stripe.customer (name, email) values \
             ('Vincenzo Scamozzi', 'vincenzo@scamozzi.example'), \
             ('Baldassare Longhena', null), \
             ('Jacopo Sansovino', 'jacopo@sansovino.example')",
            &[],
        )
        .await
        .expect("multi-row insert");
    assert_eq!(n, 3);
    assert_eq!(customers(), seeded + 4);
    for name in [
        "Vincenzo Scamozzi",
        "Baldassare Longhena",
        "Jacopo Sansovino",
    ] {
        let id: String = pg
            .query_one("select id from stripe.customer where name = $1", &[&name])
            .await
            .unwrap_or_else(|e| panic!("one {name} row: {e}"))
            .get(0);
        assert!(id.starts_with("cus_"), "{name}: {id}");
        assert_eq!(stripe.get(Kind::Customer, &id).expect(name)["name"], name);
    }
    assert_no_pending_ids(pg, "stripe.customer", "id").await;

    // --- UPDATE by an arbitrary WHERE (simple protocol).
    let where_clause = "name like 'Andrea%' or email like '%@scamozzi.example'";
    let matching: Vec<String> = pg
        .query(
            &format!("select id from stripe.customer where {where_clause}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(matching.len() >= 2, "{matching:?}");
    let n = simple_rows(
        proxy,
        &format!("update stripe.customer set description = 'Vicenza' where {where_clause}"),
    )
    .await
    .expect("update through the proxy");
    assert_eq!(n, matching.len() as u64);
    for id in &matching {
        assert_eq!(
            stripe.get(Kind::Customer, id).unwrap()["description"],
            "Vicenza"
        );
    }
    assert_eq!(
        count(
            pg,
            "select count(*) from stripe.customer where description = 'Vicenza'"
        )
        .await,
        matching.len() as i64
    );

    // --- DELETE.
    let sansovino: String = pg
        .query_one(
            "select id from stripe.customer where name = 'Jacopo Sansovino'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let n = proxy
        .execute(
            "delete from stripe.customer where email = $1",
            &[&"jacopo@sansovino.example"],
        )
        .await
        .expect("delete through the proxy");
    assert_eq!(n, 1);
    assert!(
        stripe.get(Kind::Customer, &sansovino).is_none(),
        "deleted at Stripe"
    );
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from stripe.customer where id = '{sansovino}'")
        )
        .await,
        0
    );
    let live = customers();
    assert_eq!(live, seeded + 3);

    // --- Rejections by Stripe. A product id Stripe already has: created by
    // someone else after the backfill (the engine polls hourly here, so the
    // row is not in Postgres and only Stripe can refuse it).
    let existing = "prod_VillaEmo";
    stripe
        .create(Kind::Product, &format!("id={existing}&name=Villa%20Emo"))
        .unwrap();
    let products = stripe.len(Kind::Product);
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from stripe.product where id = '{existing}'")
        )
        .await,
        0
    );
    let err = expect_err(
        proxy
            .query(
                "insert into stripe.product (id, name) values ($1, 'Villa Rotonda') returning id",
                &[&existing],
            )
            .await,
        "a product with an existing id",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "23505",
            prefix: "[Stripe]: ",
            schema: "stripe",
            table: "product",
            column: Some("id"),
            message_has: &["Product already exists"],
            detail_has: &["resource_already_exists", "400"],
        },
    );
    assert_eq!(
        stripe.len(Kind::Product),
        products,
        "Stripe holds nothing new"
    );
    assert_eq!(
        count(
            pg,
            "select count(*) from stripe.product where name = 'Villa Rotonda'"
        )
        .await,
        0
    );
    assert_eq!(
        stripe.get(Kind::Product, existing).unwrap()["name"],
        "Villa Emo"
    );
    assert_no_pending_ids(pg, "stripe.product", "id").await;

    // A customer deleted at Stripe behind the engine's back (it polls hourly
    // here): the update gets Stripe's 404, the row keeps its values.
    let longhena: String = pg
        .query_one(
            "select id from stripe.customer where name = 'Baldassare Longhena'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    stripe.delete(Kind::Customer, &longhena).unwrap();
    let err = expect_err(
        proxy
            .execute(
                "update stripe.customer set description = 'Venice' where id = $1",
                &[&longhena],
            )
            .await,
        "an update of a customer Stripe no longer has",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "P0002",
            prefix: "[Stripe]: ",
            schema: "stripe",
            table: "customer",
            column: None,
            message_has: &[&longhena],
            detail_has: &["resource_missing", "404", "request id: req_"],
        },
    );
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from stripe.customer where id = '{longhena}' and description is null")
        )
        .await,
        1
    );
    let live = customers();

    // An email Stripe refuses is caught locally first (format: email).
    let err = expect_err(
        proxy
            .execute(
                "update stripe.customer set email = 'andrea__invalid' where id = $1",
                &[&andrea],
            )
            .await,
        "an invalid email",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "22023",
            prefix: "[Stripe]: ",
            schema: "stripe",
            table: "customer",
            column: Some("email"),
            message_has: &[],
            detail_has: &[],
        },
    );
    assert_eq!(
        stripe.get(Kind::Customer, &andrea).unwrap()["email"],
        "andrea@palladio.example"
    );

    // A value outside the column's enum (23514), checked locally.
    let err = expect_err(
        proxy
            .execute(
                "update stripe.customer set tax_exempt = 'sometimes' where id = $1",
                &[&andrea],
            )
            .await,
        "a tax_exempt outside its enum",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "23514",
            prefix: "[Stripe]: ",
            schema: "stripe",
            table: "customer",
            column: Some("tax_exempt"),
            message_has: &[],
            detail_has: &[],
        },
    );
    // An operation the object does not have: prices cannot be deleted (0A000).
    let prices = stripe.len(Kind::Price);
    let price: String = pg
        .query_one("select id from stripe.price order by id limit 1", &[])
        .await
        .unwrap()
        .get(0);
    let err = expect_err(
        proxy
            .execute("delete from stripe.price where id = $1", &[&price])
            .await,
        "a delete of a price",
    );
    let db = db_error(&err);
    assert_eq!(db.code().code(), "0A000", "{db:?}");
    assert!(db.message().starts_with("[Stripe]: "), "{db:?}");
    assert_eq!(db.table(), Some("price"), "{db:?}");
    assert_eq!(stripe.len(Kind::Price), prices);
    assert!(stripe.get(Kind::Price, &price).is_some());
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from stripe.price where id = '{price}'")
        )
        .await,
        1
    );

    // --- Typed values: integers, string arrays, JSON (Stripe merges
    // metadata: a key set to null is removed), an enum, read back whole with
    // RETURNING *.
    let row = proxy
        .query_one(
            "update stripe.customer set balance = -500, preferred_locales = array['it', 'en'],                     metadata = '{\"order\": null, \"villa\": \"Rotonda\"}', tax_exempt = 'reverse',                     address = '{\"city\": \"Vicenza\", \"country\": \"IT\"}'               where id = $1 returning *",
            &[&andrea],
        )
        .await
        .expect("an update of typed values");
    let rec = stripe.get(Kind::Customer, &andrea).unwrap();
    assert_eq!(rec["balance"], -500);
    assert_eq!(rec["preferred_locales"], serde_json::json!(["it", "en"]));
    assert_eq!(rec["metadata"], serde_json::json!({"villa": "Rotonda"}));
    assert_eq!(rec["tax_exempt"], "reverse");
    assert_eq!(rec["address"]["city"], "Vicenza");
    assert_eq!(rec["address"]["country"], "IT");
    assert_eq!(row.get::<_, String>("id"), andrea);
    assert_eq!(row.get::<_, Option<i64>>("balance"), Some(-500));
    assert_eq!(
        row.get::<_, Option<Vec<String>>>("preferred_locales"),
        Some(vec!["it".to_string(), "en".to_string()])
    );
    assert_eq!(
        row.get::<_, Option<serde_json::Value>>("metadata"),
        Some(serde_json::json!({"villa": "Rotonda"})),
        "RETURNING shows Stripe's merged metadata"
    );
    assert_eq!(
        row.get::<_, Option<String>>("tax_exempt").as_deref(),
        Some("reverse")
    );

    // --- Read-only and create-only columns (428C9).
    for (sql, column) in [
        (
            "update stripe.customer set livemode = true where id = $1",
            "livemode",
        ),
        (
            "update stripe.customer set test_clock = 'clock_1' where id = $1",
            "test_clock",
        ),
        (
            "update stripe.customer set created = now() where id = $1",
            "created",
        ),
    ] {
        let err = expect_err(proxy.execute(sql, &[&andrea]).await, sql);
        assert_rejection(
            &err,
            &Rejection {
                code: "428C9",
                prefix: "[Stripe]: ",
                schema: "stripe",
                table: "customer",
                column: Some(column),
                message_has: &[],
                detail_has: &[],
            },
        );
    }
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from stripe.customer where id = '{andrea}' and livemode = false and test_clock is null")
        )
        .await,
        1
    );

    // --- Too many rows (the default max_rows_per_write: 100).
    let err = expect_err(
        proxy
            .execute(
                "insert into stripe.customer (name) select 'Bulk ' || g from generate_series(1, 101) g",
                &[],
            )
            .await,
        "101 rows in one statement",
    );
    let db = db_error(&err);
    assert_eq!(db.code().code(), "54000", "{db:?}");
    assert!(db.message().starts_with("[Stripe]: "), "{db:?}");
    assert!(db.message().contains("100"), "names the limit: {db:?}");
    assert_eq!(customers(), live);
    assert_eq!(
        count(
            pg,
            "select count(*) from stripe.customer where name like 'Bulk %'"
        )
        .await,
        0
    );

    // --- A failed write in an explicit transaction aborts it.
    let err = assert_aborts_transaction(
        proxy,
        &format!("insert into stripe.product (id, name) values ('{existing}', 'Villa Rotonda')"),
    )
    .await;
    assert_eq!(db_error(&err).code().code(), "23505");
    assert_eq!(stripe.len(Kind::Product), products);
    assert_eq!(customers(), live);

    // --- A multi-row insert (one Stripe request per row) whose second row
    // Stripe refuses: the first customer, already created, is deleted again.
    // The error names the column of the refused nested parameter.
    let err = expect_err(
        proxy
            .execute(
                "insert into stripe.customer (name, invoice_settings) values \
                 ('Ottone Calderari', null), ('Giorgio Massari', '{\"bogus\": 1}')",
                &[],
            )
            .await,
        "a second customer with an unknown nested parameter",
    );
    sequin_e2e::eventually(
        std::time::Duration::from_secs(30),
        "the first create undone at Stripe",
        || async {
            let n = customers();
            let compensated = count(
                pg,
                "select count(*) from sequin.write_journal where op = 'create' and state = 'compensated'",
            )
            .await;
            (n == live && compensated == 1, (n, compensated))
        },
    )
    .await;
    assert_eq!(
        count(
            pg,
            "select count(*) from stripe.customer where name in ('Ottone Calderari', 'Giorgio Massari')"
        )
        .await,
        0
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "42703",
            prefix: "[Stripe]: ",
            schema: "stripe",
            table: "customer",
            column: Some("invoice_settings"),
            message_has: &["invoice_settings[bogus]"],
            detail_has: &["parameter_unknown", "400"],
        },
    );

    // --- A create and an update rolled back are undone at Stripe.
    proxy.batch_execute("BEGIN").await.unwrap();
    let rolled: String = proxy
        .query_one(
            "insert into stripe.customer (name) values ('Rolled Back') returning id",
            &[],
        )
        .await
        .expect("insert in a transaction")
        .get(0);
    proxy
        .execute(
            "update stripe.customer set phone = '+39 0444 000000' where id = $1",
            &[&andrea],
        )
        .await
        .expect("update in a transaction");
    assert!(
        stripe.get(Kind::Customer, &rolled).is_some(),
        "applied when the statement ran"
    );
    proxy.batch_execute("ROLLBACK").await.unwrap();
    sequin_e2e::eventually(
        std::time::Duration::from_secs(30),
        "the rolled-back create and update undone at Stripe",
        || async {
            let created = stripe.get(Kind::Customer, &rolled).is_some();
            let phone = stripe.get(Kind::Customer, &andrea).unwrap()["phone"].clone();
            (!created && phone.is_null(), (created, phone))
        },
    )
    .await;
    assert_eq!(customers(), live);
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from stripe.customer where name = 'Rolled Back' or (id = '{andrea}' and phone is not null)")
        )
        .await,
        0
    );

    t.finish().await;
}
