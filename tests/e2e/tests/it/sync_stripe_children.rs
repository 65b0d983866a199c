//! Stripe's child tables (records listed only under a parent): the
//! simulator's object behind each, and the API's view of one (its live
//! records under live parents, with the parent's id where Stripe does not
//! send it), shared with `sync_stripe_account`; children Stripe embeds in
//! their parent taken from it without a request when the embedded page is
//! complete; and write-through of children (the parent's id filling the
//! endpoint's path or a body parameter), with its refusals.

use std::time::Duration;

use sequin_sim::Api;
use sequin_sim::stripe::{Kind, Stripe};
use sequin_spec::model::Object;
use serde_json::Value;

use crate::sync_common::{assert_table_matches, spec_columns};
use crate::write_common::{
    Rejection, Setup, assert_rejection, count, expect_err, stripe_connection,
};

/// A list path with its placeholders' names dropped
/// (`/v1/invoices/{}/lines`), to match the simulator's by shape.
fn path_shape(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push('{');
            }
            '}' => {
                inside = false;
                out.push('}');
            }
            _ if inside => {}
            c => out.push(c),
        }
    }
    out
}

/// The simulator's object behind an object of the spec: by API name for a
/// top-level one, by list path for a child (`invoice.lines`, or the
/// top-level `subscription_item` list filtered by its parent).
pub fn kind_of(obj: &Object) -> Kind {
    if obj.parent.is_none() {
        return Kind::named(&obj.api_name)
            .unwrap_or_else(|| panic!("the simulator serves no `{}`", obj.api_name));
    }
    let want = path_shape(&obj.endpoints.list.path);
    Kind::all()
        .find(|k| path_shape(k.path()) == want)
        .unwrap_or_else(|| panic!("the simulator serves no list at {want}"))
}

fn stripe_object(name: &str) -> Object {
    sequin_runtime::registry::get("stripe")
        .expect("stripe is compiled in")
        .spec
        .object(name)
        .unwrap_or_else(|| panic!("no Stripe object {name}"))
        .clone()
}

/// The parent's id of a child's record: the nested list it is under, or
/// the record's parent field (a list filtered by the parent).
fn parent_of(stripe: &Stripe, obj: &Object, kind: Kind, record: &Value) -> Option<String> {
    let link = obj.parent.as_ref()?;
    let id = record["id"].as_str()?;
    stripe
        .parent_of(kind, id)
        .filter(|p| !p.is_empty())
        .or_else(|| record[link.field.as_str()].as_str().map(str::to_owned))
}

/// What a table of the spec must hold: the ids of the API's live records
/// (of a child: those whose parent is live, as deleting a parent deletes
/// its children), and each record with a child's parent id filled in
/// where Stripe does not send it.
pub fn api_view(stripe: &Stripe, obj: &Object) -> (Vec<String>, impl Fn(&str) -> Option<Value>) {
    let kind = kind_of(obj);
    let parent = obj
        .parent
        .as_ref()
        .map(|l| (l.field.clone(), kind_of(&stripe_object(&l.object))));
    let obj = obj.clone();
    let lookup = move |id: &str| -> Option<Value> {
        let mut record = stripe.get(kind, id)?;
        if let Some((field, parent_kind)) = &parent {
            let pid = parent_of(stripe, &obj, kind, &record)?;
            stripe.get(*parent_kind, &pid)?;
            if record.get(field.as_str()).is_none_or(Value::is_null) {
                record[field.as_str()] = Value::String(pid);
            }
        }
        Some(record)
    };
    let ids = stripe
        .ids(kind)
        .into_iter()
        .filter(|id| lookup(id).is_some())
        .collect();
    (ids, lookup)
}

/// Asserts that the table of `obj` equals the API field by field; returns
/// its rows.
pub async fn assert_object_matches(
    pg: &tokio_postgres::Client,
    stripe: &Stripe,
    obj: &Object,
) -> usize {
    let (ids, lookup) = api_view(stripe, obj);
    let cols = spec_columns("stripe", &obj.name);
    assert_table_matches(
        pg,
        "stripe",
        &obj.name,
        &obj.primary_key,
        &cols,
        ids.len(),
        lookup,
    )
    .await
}

/// Requests the simulator answered on the nested list routes under
/// `parents` (`/v1/invoices/`) ending with `suffix` (`/lines`).
fn list_requests(sim: &sequin_sim::Sim, parents: &str, suffix: &str) -> u64 {
    sim.stats()
        .by_route
        .iter()
        .filter(|(route, _)| {
            route.strip_prefix("GET ").is_some_and(|path| {
                path.starts_with(parents) && path.ends_with(suffix) && path.len() > parents.len()
            })
        })
        .map(|(_, n)| n)
        .sum()
}

/// Invoices whose embedded `lines` are complete (three lines each) cost no
/// request for their lines; credit notes with more lines than Stripe embeds
/// (`has_more`) are listed, one request each. Both tables equal the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_children_are_taken_from_the_parent_when_complete() {
    let setup = Setup::start(Api::Stripe, 20, "stripe_embedded", |sim| {
        let stripe = sim.stripe();
        let invoices = stripe.len(Kind::Invoice);
        stripe.seed_objects(Kind::named("invoice.lines").unwrap(), 3 * invoices);
        let notes = stripe.seed_objects(Kind::named("credit_note").unwrap(), 4);
        stripe.seed_objects(Kind::named("credit_note.lines").unwrap(), 12 * notes.len());
        stripe_connection(
            sim,
            "customer, invoice, invoice_line_item, credit_note, credit_note_line_item",
        )
    })
    .await;
    let stripe = setup.sim.stripe();
    let invoices = stripe.len(Kind::Invoice);
    assert!(invoices >= 20, "{invoices} invoices");
    let lines = assert_object_matches(&setup.pg, stripe, &stripe_object("invoice_line_item")).await;
    assert_eq!(lines, 3 * invoices, "three lines per invoice");
    let note_lines =
        assert_object_matches(&setup.pg, stripe, &stripe_object("credit_note_line_item")).await;
    assert_eq!(note_lines, 48, "twelve lines per credit note");
    assert_eq!(
        list_requests(&setup.sim, "/v1/invoices/", "/lines"),
        0,
        "no invoice's lines were listed: {:?}",
        setup.sim.stats().by_route
    );
    assert_eq!(
        list_requests(&setup.sim, "/v1/credit_notes/", "/lines"),
        4,
        "each credit note's lines were listed once (12 > the 10 Stripe embeds): {:?}",
        setup.sim.stats().by_route
    );
    setup.finish().await;
}

/// Write-through of child tables: the parent's id fills the endpoint's
/// path (`/v1/customers/{customer}/tax_ids`, `/v1/transfers/{transfer}/reversals/{id}`)
/// or travels as a body parameter (a subscription item's `subscription`);
/// RETURNING shows the API's id; a missing parent is refused locally, a
/// Stripe rejection maps to its SQLSTATE and changes nothing, and what
/// Stripe cannot do is refused with 0A000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_tables_are_written_through() {
    let setup = Setup::start(Api::Stripe, 6, "stripe_children_write", |sim| {
        let stripe = sim.stripe();
        stripe.seed_objects(Kind::named("transfer").unwrap(), 3);
        stripe.seed_objects(Kind::named("transfer.reversals").unwrap(), 3);
        stripe.seed_objects(Kind::named("customer.tax_ids").unwrap(), 6);
        stripe_connection(
            sim,
            "customer, tax_id, product, price, subscription, subscription_item, transfer, transfer_reversal",
        )
    })
    .await;
    let stripe = setup.sim.stripe();
    let (pg, proxy) = (&setup.pg, &setup.proxy);
    let tax_ids = Kind::named("customer.tax_ids").unwrap();
    let customer = stripe.ids(Kind::Customer)[0].clone();

    // tax_id: INSERT and DELETE through /v1/customers/{customer}/tax_ids.
    let row = proxy
        .query_one(
            "INSERT INTO stripe.tax_id (customer, type, value) VALUES ($1, 'eu_vat', 'DE123456789') RETURNING id, customer, value",
            &[&customer],
        )
        .await
        .expect("a tax id is created under its customer");
    let tax_id: String = row.get(0);
    assert!(tax_id.starts_with("txi_"), "the API's id: {tax_id}");
    assert_eq!(row.get::<_, String>(1), customer);
    assert!(
        stripe.ids_in(tax_ids, &customer).contains(&tax_id),
        "Stripe holds it under the customer"
    );
    assert_eq!(
        stripe.get(tax_ids, &tax_id).unwrap()["value"],
        "DE123456789"
    );
    assert_object_matches(pg, stripe, &stripe_object("tax_id")).await;
    let deleted = proxy
        .execute("DELETE FROM stripe.tax_id WHERE id = $1", &[&tax_id])
        .await
        .expect("the tax id is deleted");
    assert_eq!(deleted, 1);
    assert!(stripe.get(tax_ids, &tax_id).is_none(), "gone at Stripe");
    assert_object_matches(pg, stripe, &stripe_object("tax_id")).await;

    // A create rolled back: the reconciler deletes it at Stripe through
    // the path its journal entry kept (`/v1/customers/{customer}/tax_ids/{id}`).
    let mut client = setup.proxy_client().await;
    let tx = client.transaction().await.unwrap();
    let rolled: String = tx
        .query_one(
            "INSERT INTO stripe.tax_id (customer, type, value) VALUES ($1, 'eu_vat', 'DE999999999') RETURNING id",
            &[&customer],
        )
        .await
        .expect("a tax id is created in a transaction")
        .get(0);
    assert!(stripe.get(tax_ids, &rolled).is_some(), "created at Stripe");
    tx.rollback().await.unwrap();
    sequin_e2e::eventually(
        Duration::from_secs(60),
        "the rolled-back tax id deleted at Stripe",
        || async { (stripe.get(tax_ids, &rolled).is_none(), ()) },
    )
    .await;

    // A missing parent: refused before anything is sent.
    let before = stripe.len(tax_ids);
    let e = expect_err(
        proxy
            .execute(
                "INSERT INTO stripe.tax_id (type, value) VALUES ('eu_vat', 'DE1')",
                &[],
            )
            .await,
        "a tax id without its customer",
    );
    assert_rejection(
        &e,
        &Rejection {
            code: "23502",
            prefix: "[Stripe]: ",
            schema: "stripe",
            table: "tax_id",
            column: Some("customer"),
            message_has: &["customer", "/v1/customers/{customer}/tax_ids"],
            detail_has: &[],
        },
    );
    // A customer Stripe does not have: its 404 (resource_missing), nothing
    // changed on either side.
    let e = expect_err(
        proxy
            .execute(
                "INSERT INTO stripe.tax_id (customer, type, value) VALUES ('cus_missing', 'eu_vat', 'DE1')",
                &[],
            )
            .await,
        "a tax id under a customer Stripe does not have",
    );
    assert_rejection(
        &e,
        &Rejection {
            code: "P0002",
            prefix: "[Stripe]: ",
            schema: "stripe",
            table: "tax_id",
            column: None,
            message_has: &["cus_missing"],
            detail_has: &[],
        },
    );
    assert_eq!(stripe.len(tax_ids), before, "nothing created at Stripe");
    assert_eq!(
        count(pg, "SELECT count(*) FROM stripe.tax_id WHERE customer = 'cus_missing' OR id LIKE '_pending_%'").await,
        0
    );
    // Stripe cannot change a tax id.
    let some_tax_id = stripe.ids(tax_ids)[0].clone();
    let e = expect_err(
        proxy
            .execute(
                "UPDATE stripe.tax_id SET value = 'x' WHERE id = $1",
                &[&some_tax_id],
            )
            .await,
        "an update of a tax id",
    );
    assert_eq!(e.as_db_error().unwrap().code().code(), "0A000", "{e:?}");

    // subscription_item: INSERT (subscription as a body parameter), UPDATE, DELETE.
    let items = Kind::named("subscription_item").unwrap();
    let subscription = stripe.ids(Kind::Subscription)[0].clone();
    let price = stripe.ids(Kind::Price)[0].clone();
    let row = proxy
        .query_one(
            "INSERT INTO stripe.subscription_item (subscription, price, quantity) VALUES ($1, to_jsonb($2::text), 2) RETURNING id, price->>'id'",
            &[&subscription, &price],
        )
        .await
        .expect("a subscription item is created");
    let item: String = row.get(0);
    assert!(item.starts_with("si_"), "the API's id: {item}");
    assert_eq!(
        row.get::<_, String>(1),
        price,
        "the row holds Stripe's price object"
    );
    assert_eq!(
        stripe.get(items, &item).unwrap()["subscription"],
        subscription.as_str()
    );
    proxy
        .execute(
            "UPDATE stripe.subscription_item SET quantity = 5, metadata = '{\"k\":\"v\"}' WHERE id = $1",
            &[&item],
        )
        .await
        .expect("the item is updated");
    let at_stripe = stripe.get(items, &item).unwrap();
    assert_eq!(at_stripe["quantity"], 5);
    assert_eq!(at_stripe["metadata"]["k"], "v");
    assert_object_matches(pg, stripe, &stripe_object("subscription_item")).await;
    // Moving an item to another subscription: Stripe takes `subscription`
    // on create only.
    let e = expect_err(
        proxy
            .execute(
                "UPDATE stripe.subscription_item SET subscription = 'sub_other' WHERE id = $1",
                &[&item],
            )
            .await,
        "moving a subscription item",
    );
    assert_eq!(e.as_db_error().unwrap().code().code(), "428C9", "{e:?}");
    let gone = proxy
        .execute(
            "DELETE FROM stripe.subscription_item WHERE id = $1",
            &[&item],
        )
        .await
        .expect("the item is deleted");
    assert_eq!(gone, 1);
    assert!(stripe.get(items, &item).is_none(), "gone at Stripe");
    assert_object_matches(pg, stripe, &stripe_object("subscription_item")).await;

    // transfer_reversal: INSERT and UPDATE through /v1/transfers/{transfer}/reversals.
    let reversals = Kind::named("transfer.reversals").unwrap();
    let transfer = stripe.ids(Kind::named("transfer").unwrap())[0].clone();
    let row = proxy
        .query_one(
            "INSERT INTO stripe.transfer_reversal (transfer, amount, metadata) VALUES ($1, 100, '{\"why\":\"test\"}') RETURNING id, transfer",
            &[&transfer],
        )
        .await
        .expect("a reversal is created under its transfer");
    let reversal: String = row.get(0);
    assert!(reversal.starts_with("trr_"), "the API's id: {reversal}");
    assert_eq!(row.get::<_, String>(1), transfer);
    assert_eq!(
        stripe.parent_of(reversals, &reversal).as_deref(),
        Some(transfer.as_str())
    );
    proxy
        .execute(
            "UPDATE stripe.transfer_reversal SET metadata = '{\"why\":\"changed\"}' WHERE id = $1",
            &[&reversal],
        )
        .await
        .expect("the reversal is updated through its transfer's path");
    assert_eq!(
        stripe.get(reversals, &reversal).unwrap()["metadata"]["why"],
        "changed"
    );
    assert_object_matches(pg, stripe, &stripe_object("transfer_reversal")).await;
    let e = expect_err(
        proxy
            .execute(
                "DELETE FROM stripe.transfer_reversal WHERE id = $1",
                &[&reversal],
            )
            .await,
        "a delete of a reversal",
    );
    assert_eq!(e.as_db_error().unwrap().code().code(), "0A000", "{e:?}");
    assert!(stripe.get(reversals, &reversal).is_some());
    setup.finish().await;
}
