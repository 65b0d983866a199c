//! The contract against the Stripe simulator (customers), and what only
//! Stripe has: computed fields returned by INSERT (`object`, `created`,
//! `invoice_prefix`); refusals by Stripe (a product id it already has, a
//! customer deleted behind the engine's back, an unknown nested parameter in
//! the second row of a multi-row insert, whose first row is then undone) and
//! local ones (email format, enum, a delete prices do not have); typed values
//! (integers, arrays, JSON merged by Stripe) read back with RETURNING *.

use super::{Ctx, Field, Fixture, Multi, Step, Update, Val};
use crate::write_common::*;
use sequin_e2e::eventually;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Sim};
use std::time::Duration;
use tokio_postgres::Row;

pub static FIXTURE: Fixture = Fixture {
    api: Api::Stripe,
    seed: 5,
    db_prefix: "write_stripe",
    connection,
    objects_live: &["customer", "product", "price"],
    table: "stripe.customer",
    prefix: "[Stripe]: ",
    count: |sim| sim.stripe().len(Kind::Customer),
    record: |sim, id| sim.stripe().get(Kind::Customer, id),
    is_id: |id| id.starts_with("cus_") && id.len() > 10,
    insert: &[
        Field::new("name", "name", Val::Text("Andrea Palladio")),
        Field::new("email", "email", Val::Text("andrea@palladio.example")),
        Field::new("metadata", "metadata", Val::Json(r#"{"order": "1"}"#)),
    ],
    returning: "object, created is not null, livemode, invoice_prefix",
    after_insert,
    multi: Multi {
        sql: "insert into stripe.customer (name, email) values \
              ('Vincenzo Scamozzi', 'vincenzo@scamozzi.example'), \
              ('Baldassare Longhena', null), \
              ('Jacopo Sansovino', 'jacopo@sansovino.example')",
        rows: 3,
        filter: "name in ('Vincenzo Scamozzi', 'Baldassare Longhena', 'Jacopo Sansovino')",
        compare: &[("name", "name")],
    },
    update: Update {
        filter: "name like 'Andrea%' or email like '%@scamozzi.example'",
        set: &[Field::new(
            "description",
            "description",
            Val::Text("Vicenza"),
        )],
        matching: 2..=usize::MAX,
    },
    delete_by: ("email", "jacopo@sansovino.example"),
    extra,
    read_only: &[
        ("livemode", "true"),
        ("test_clock", "'clock_1'"),
        ("created", "now()"),
    ],
    max_rows: 100,
    bulk_column: "name",
    aborting: |_| {
        format!("insert into stripe.product (id, name) values ('{EXISTING}', 'Villa Rotonda')")
    },
    aborting_code: "23505",
    before_rollback,
    rollback_insert: &[Field::new("name", "name", Val::Text("Rolled Back"))],
    rollback_update: &[Field::new("phone", "phone", Val::Text("+39 0444 000000"))],
};

/// A product id created at Stripe behind the engine's back.
const EXISTING: &str = "prod_VillaEmo";

fn connection(sim: &Sim) -> String {
    stripe_connection(sim, "customer, product, price")
}

/// Stripe's computed fields, returned and stored.
fn after_insert<'a>(c: &'a Ctx<'a>, row: &'a Row) -> Step<'a> {
    Box::pin(async move {
        let rec = c.record(&c.id).unwrap();
        assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("customer"));
        assert!(row.get::<_, bool>(2), "created is Stripe's");
        assert_eq!(row.get::<_, Option<bool>>(3), Some(false));
        assert_eq!(
            row.get::<_, Option<String>>(4).as_deref(),
            rec["invoice_prefix"].as_str(),
            "invoice_prefix assigned by Stripe"
        );
        let local =
            c.pg.query_one(
                "select extract(epoch from created)::bigint, invoice_prefix \
                   from stripe.customer where id = $1",
                &[&c.id],
            )
            .await
            .expect("the row is in Postgres under Stripe's id");
        assert_eq!(local.get::<_, Option<i64>>(0), rec["created"].as_i64());
        assert_eq!(
            local.get::<_, Option<String>>(1).as_deref(),
            rec["invoice_prefix"].as_str()
        );
    })
}

/// Refusals by Stripe and by local checks; typed values.
fn extra<'a>(c: &'a Ctx<'a>) -> Step<'a> {
    Box::pin(async move {
        let stripe = c.t.sim.stripe();
        let (pg, proxy, andrea) = (c.pg, c.proxy, &c.id);
        // A product id Stripe already has: created by someone else after the
        // backfill (the engine polls hourly here, so the row is not in
        // Postgres and only Stripe can refuse it).
        stripe
            .create(Kind::Product, &format!("id={EXISTING}&name=Villa%20Emo"))
            .unwrap();
        let products = stripe.len(Kind::Product);
        c.note("products", products);
        assert_eq!(
            count(
                pg,
                &format!("select count(*) from stripe.product where id = '{EXISTING}'")
            )
            .await,
            0
        );
        let err = expect_err(
            proxy
                .query(
                    "insert into stripe.product (id, name) values ($1, 'Villa Rotonda') returning id",
                    &[&EXISTING],
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
            stripe.get(Kind::Product, EXISTING).unwrap()["name"],
            "Villa Emo"
        );
        assert_no_pending_ids(pg, "stripe.product", "id").await;

        // A customer deleted at Stripe behind the engine's back (it polls
        // hourly here): the update gets Stripe's 404, the row keeps its values.
        let longhena = c.id_where("name = 'Baldassare Longhena'").await;
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
        c.rejected(
            &err,
            "P0002",
            None,
            &[&longhena],
            &["resource_missing", "404", "request id: req_"],
        );
        assert_eq!(
            c.count_where(&format!("id = '{longhena}' and description is null"))
                .await,
            1
        );
        c.set_live(c.count());

        // An email Stripe refuses is caught locally first (format: email).
        let err = expect_err(
            proxy
                .execute(
                    "update stripe.customer set email = 'andrea__invalid' where id = $1",
                    &[andrea],
                )
                .await,
            "an invalid email",
        );
        c.rejected(&err, "22023", Some("email"), &[], &[]);
        assert_eq!(
            c.record(andrea).unwrap()["email"],
            "andrea@palladio.example"
        );

        // A value outside the column's enum (23514), checked locally.
        let err = expect_err(
            proxy
                .execute(
                    "update stripe.customer set tax_exempt = 'sometimes' where id = $1",
                    &[andrea],
                )
                .await,
            "a tax_exempt outside its enum",
        );
        c.rejected(&err, "23514", Some("tax_exempt"), &[], &[]);

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

        // Typed values: integers, string arrays, JSON (Stripe merges
        // metadata: a key set to null is removed), an enum, read back whole
        // with RETURNING *.
        let row = proxy
            .query_one(
                "update stripe.customer set balance = -500, preferred_locales = array['it', 'en'], \
                        metadata = '{\"order\": null, \"villa\": \"Rotonda\"}', tax_exempt = 'reverse', \
                        address = '{\"city\": \"Vicenza\", \"country\": \"IT\"}' \
                  where id = $1 returning *",
                &[andrea],
            )
            .await
            .expect("an update of typed values");
        let rec = c.record(andrea).unwrap();
        assert_eq!(rec["balance"], -500);
        assert_eq!(rec["preferred_locales"], serde_json::json!(["it", "en"]));
        assert_eq!(rec["metadata"], serde_json::json!({"villa": "Rotonda"}));
        assert_eq!(rec["tax_exempt"], "reverse");
        assert_eq!(rec["address"]["city"], "Vicenza");
        assert_eq!(rec["address"]["country"], "IT");
        assert_eq!(&row.get::<_, String>("id"), andrea);
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
    })
}

/// After the read-only columns and the aborted transaction; a compensated
/// create counted in the journal before the rollback step adds one.
fn before_rollback<'a>(c: &'a Ctx<'a>) -> Step<'a> {
    Box::pin(async move {
        let stripe = c.t.sim.stripe();
        // The read-only columns kept their values.
        assert_eq!(
            c.count_where(&format!(
                "id = '{}' and livemode = false and test_clock is null",
                c.id
            ))
            .await,
            1
        );
        // The aborted transaction's product is not at Stripe.
        assert_eq!(stripe.len(Kind::Product).to_string(), c.noted("products"));

        // A multi-row insert (one Stripe request per row) whose second row
        // Stripe refuses: the first customer, already created, is deleted
        // again. The error names the column of the refused nested parameter.
        let err = expect_err(
            c.proxy
                .execute(
                    "insert into stripe.customer (name, invoice_settings) values \
                     ('Ottone Calderari', null), ('Giorgio Massari', '{\"bogus\": 1}')",
                    &[],
                )
                .await,
            "a second customer with an unknown nested parameter",
        );
        eventually(
            Duration::from_secs(30),
            "the first create undone at Stripe",
            || async {
                let n = c.count();
                let compensated = count(
                    c.pg,
                    "select count(*) from sequin.write_journal where op = 'create' and state = 'compensated'",
                )
                .await;
                (n == c.live() && compensated == 1, (n, compensated))
            },
        )
        .await;
        assert_eq!(
            c.count_where("name in ('Ottone Calderari', 'Giorgio Massari')")
                .await,
            0
        );
        c.rejected(
            &err,
            "42703",
            Some("invoice_settings"),
            &["invoice_settings[bogus]"],
            &["parameter_unknown", "400"],
        );
    })
}
