//! Write-through of HubSpot link tables (associations v4) through the
//! proxy: an INSERT creates the association (with an explicit type, or the
//! pair's default type), several rows in one statement too; RETURNING shows
//! the derived id and the type's label; a DELETE removes that association
//! type only; an UPDATE is refused (0A000, with a hint); a link to a record
//! HubSpot does not have is refused with HubSpot's error mapped by the spec
//! (OBJECT_NOT_FOUND -> P0002) and Postgres keeps nothing of it; writes of
//! a rolled-back transaction are undone at HubSpot by the reconciler
//! (create <-> remove). Every effect is checked at the simulator.

use std::time::Duration;

use crate::write_common::*;
use crate::write_contract::journal_states;
use sequin_e2e::{Running, eventually, wait_live};
use sequin_sim::hubspot::ObjectType;
use sequin_sim::{Api, SimConfig};
use serde_json::Value;

/// A connection name of its own: rate-limit budgets are per name in the
/// process.
const SCHEMA: &str = "hubspot_lw";

/// The simulator, the engine with its proxy, a direct and a proxied client.
async fn start() -> Setup {
    let db = sequin_pgtemp::Database::create("write_hubspot_links").expect("a test database");
    let sim = sequin_sim::start(
        SimConfig::new(Api::Hubspot).seed_records(8).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the simulator starts");
    let port = sequin_pgtemp::free_port().expect("a free port");
    let config = format!(
        "database_url: {db}
proxy:
  listen: 127.0.0.1:{port}
connections:
  - name: {SCHEMA}
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [contact, company, deal, pet, contact_company, contact_deal, pet_contact]
    poll_interval: 1h
    association_interval: 1h
    discovery_interval: 1h
",
        db = db.url,
        base = sim.base_url(),
        token = sim.token(),
    );
    let running = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, SCHEMA, Duration::from_secs(120)).await;
    let proxy_url = proxy_url(&db.url, port);
    let proxy = connect_when_up(&proxy_url).await;
    Setup {
        sim,
        running: Some(running),
        pg,
        proxy,
        proxy_url,
        db,
    }
}

fn ids(hs: &sequin_sim::hubspot::Hubspot, t: ObjectType) -> Vec<String> {
    hs.records(t)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// The association types (`typeId`s) HubSpot holds from `from` to `to`.
fn types_at(
    hs: &sequin_sim::hubspot::Hubspot,
    (ft, from): (ObjectType, &str),
    (tt, to): (ObjectType, &str),
) -> Vec<u64> {
    hs.associations_of(ft, from, tt)
        .unwrap()
        .iter()
        .filter(|l| l["toObjectId"] == to)
        .flat_map(|l| l["associationTypes"].as_array().unwrap().clone())
        .map(|t| t["typeId"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_created_and_removed_through_the_proxy() {
    let t = start().await;
    let hs = t.sim.hubspot();
    let contacts = ids(hs, ObjectType::Contacts);
    let companies = ids(hs, ObjectType::Companies);
    let deals = ids(hs, ObjectType::Deals);
    let (c, co, d) = (
        ObjectType::Contacts,
        ObjectType::Companies,
        ObjectType::Deals,
    );

    // An explicit type: RETURNING shows the derived id and the row.
    let row = t
        .proxy
        .query_one(
            &format!(
                "insert into {SCHEMA}.contact_company (from_id, to_id, category, type_id) \
                 values ($1, $2, 'HUBSPOT_DEFINED', 279) returning id, label"
            ),
            &[&contacts[0], &companies[3]],
        )
        .await
        .expect("a link created through the proxy");
    let id: String = row.get(0);
    assert_eq!(id, format!("{}-{}-279", contacts[0], companies[3]));
    assert_eq!(row.get::<_, Option<String>>(1), None, "unlabeled");
    assert_eq!(types_at(hs, (c, &contacts[0]), (co, &companies[3])), [279]);

    // A labeled type: its label comes back.
    let label: Option<String> = t
        .proxy
        .query_one(
            &format!(
                "insert into {SCHEMA}.contact_company (from_id, to_id, category, type_id) \
                 values ($1, $2, 'HUBSPOT_DEFINED', 1) returning label"
            ),
            &[&contacts[0], &companies[3]],
        )
        .await
        .expect("a labeled link")
        .get(0);
    assert_eq!(label.as_deref(), Some("Primary"));
    assert_eq!(
        types_at(hs, (c, &contacts[0]), (co, &companies[3])),
        [1, 279]
    );

    // No type: the pair's default one (contact to deal: 4), several rows
    // in one statement.
    let rows = t
        .proxy
        .query(
            &format!(
                "insert into {SCHEMA}.contact_deal (from_id, to_id) \
                 values ($1, $2), ($3, $4), ($5, $6) returning id, category, type_id"
            ),
            &[
                &contacts[1],
                &deals[5],
                &contacts[2],
                &deals[6],
                &contacts[3],
                &deals[7],
            ],
        )
        .await
        .expect("three links in one statement");
    assert_eq!(rows.len(), 3);
    for (k, r) in rows.iter().enumerate() {
        let (from, to) = (&contacts[k + 1], &deals[k + 5]);
        assert_eq!(r.get::<_, String>(0), format!("{from}-{to}-4"));
        assert_eq!(
            r.get::<_, Option<String>>(1).as_deref(),
            Some("HUBSPOT_DEFINED")
        );
        assert_eq!(r.get::<_, Option<i64>>(2), Some(4));
        assert_eq!(types_at(hs, (c, from), (d, to)), [4]);
    }
    assert_no_pending_ids(&t.pg, &format!("{SCHEMA}.contact_deal"), "id").await;

    // DELETE removes that type only: the seeded link of contact 2 and
    // company 2 keeps its unlabeled type when its Primary one goes.
    let n = t
        .proxy
        .execute(
            &format!("delete from {SCHEMA}.contact_company where from_id = $1 and to_id = $2 and type_id = 1"),
            &[&contacts[2], &companies[2]],
        )
        .await
        .expect("a link type removed");
    assert_eq!(n, 1);
    assert_eq!(types_at(hs, (c, &contacts[2]), (co, &companies[2])), [279]);
    let n = t
        .proxy
        .execute(
            &format!("delete from {SCHEMA}.contact_company where id = $1"),
            &[&id],
        )
        .await
        .expect("a link removed");
    assert_eq!(n, 1);
    assert_eq!(types_at(hs, (c, &contacts[0]), (co, &companies[3])), [1]);
    let left = count(
        &t.pg,
        &format!("select count(*) from {SCHEMA}.contact_company where id = '{id}'"),
    )
    .await;
    assert_eq!(left, 0);
    custom_object_links(&t, &contacts).await;
    t.finish().await;
}

/// The link table of the custom object `pets` (discovered with it, from
/// its schema's associations): INSERT creates the association at HubSpot
/// (the pair's default type, and an explicit one), RETURNING its id;
/// DELETE removes it.
async fn custom_object_links(t: &Setup, contacts: &[String]) {
    let hs = t.sim.hubspot();
    let (pets, c) = (hs.object_type("pets").unwrap(), ObjectType::Contacts);
    let pet_ids = ids(hs, pets);
    let table = format!("{SCHEMA}.pet_contact");
    let row = t
        .proxy
        .query_one(
            &format!(
                "insert into {table} (from_id, to_id) values ($1, $2) returning id, category, type_id"
            ),
            &[&pet_ids[0], &contacts[5]],
        )
        .await
        .expect("a custom object's link created through the proxy");
    let type_id = row
        .get::<_, Option<i64>>(2)
        .expect("the pair's default type");
    assert_eq!(
        row.get::<_, String>(0),
        format!("{}-{}-{type_id}", pet_ids[0], contacts[5])
    );
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("USER_DEFINED")
    );
    assert_eq!(
        types_at(hs, (pets, &pet_ids[0]), (c, &contacts[5])),
        [type_id as u64]
    );
    let explicit: String = t
        .proxy
        .query_one(
            &format!(
                "insert into {table} (from_id, to_id, category, type_id) \
                 values ($1, $2, 'USER_DEFINED', $3) returning id"
            ),
            &[&pet_ids[2], &contacts[6], &type_id],
        )
        .await
        .expect("a custom object's link with its type")
        .get(0);
    assert_eq!(
        explicit,
        format!("{}-{}-{type_id}", pet_ids[2], contacts[6])
    );
    assert_eq!(
        types_at(hs, (pets, &pet_ids[2]), (c, &contacts[6])),
        [type_id as u64]
    );
    // A seeded link removed, and the one made above.
    let seeded =
        t.pg.query_one(
            &format!("select id, to_id from {table} where from_id = $1 and id <> $2 limit 1"),
            &[&pet_ids[3], &explicit],
        )
        .await
        .expect("the seed links each pet");
    let (seeded_id, seeded_to): (String, String) = (seeded.get(0), seeded.get(1));
    let n = t
        .proxy
        .execute(
            &format!("delete from {table} where id = any($1)"),
            &[&vec![seeded_id.clone(), explicit.clone()]],
        )
        .await
        .expect("custom object's links removed");
    assert_eq!(n, 2);
    assert!(types_at(hs, (pets, &pet_ids[3]), (c, &seeded_to)).is_empty());
    assert!(types_at(hs, (pets, &pet_ids[2]), (c, &contacts[6])).is_empty());
    assert_eq!(
        count(
            &t.pg,
            &format!("select count(*) from {table} where id in ('{seeded_id}', '{explicit}')")
        )
        .await,
        0,
        "their rows gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_refusals_follow_the_error_contract_and_rollbacks_are_undone() {
    let t = start().await;
    let hs = t.sim.hubspot();
    let contacts = ids(hs, ObjectType::Contacts);
    let companies = ids(hs, ObjectType::Companies);
    let (c, co) = (ObjectType::Contacts, ObjectType::Companies);
    let table = format!("{SCHEMA}.contact_company");
    let rows_before = count(&t.pg, &format!("select count(*) from {table}")).await;

    // UPDATE: 0A000, with the way to do it instead.
    let err = expect_err(
        t.proxy
            .execute(
                &format!("update {table} set to_id = $1 where from_id = $2"),
                &[&companies[4], &contacts[0]],
            )
            .await,
        "an UPDATE of a link",
    );
    let db = assert_rejection(
        &err,
        &Rejection {
            code: "0A000",
            prefix: "[HubSpot]: ",
            schema: SCHEMA,
            table: "contact_company",
            column: None,
            message_has: &["link table"],
            detail_has: &[],
        },
    );
    assert!(
        db.hint()
            .is_some_and(|h| h.contains("DELETE") && h.contains("INSERT")),
        "{db:?}"
    );

    // A link to a company HubSpot does not have: its OBJECT_NOT_FOUND,
    // mapped by the spec's errors.codes, and nothing kept in Postgres;
    // with an explicit type (batch create) and without (default).
    for (category, type_id) in [("'HUBSPOT_DEFINED'", "279"), ("null", "null")] {
        let err = expect_err(
            t.proxy
                .execute(
                    &format!(
                        "insert into {table} (from_id, to_id, category, type_id) \
                         values ($1, '999999', {category}, {type_id})"
                    ),
                    &[&contacts[0]],
                )
                .await,
            "a link to a missing company",
        );
        assert_rejection(
            &err,
            &Rejection {
                code: "P0002",
                prefix: "[HubSpot]: ",
                schema: SCHEMA,
                table: "contact_company",
                column: None,
                message_has: &[],
                detail_has: &[],
            },
        );
    }
    assert_eq!(
        count(&t.pg, &format!("select count(*) from {table}")).await,
        rows_before,
        "nothing kept"
    );
    assert_no_pending_ids(&t.pg, &table, "id").await;

    // A link created and one removed in a transaction rolled back: the
    // reconciler removes the one and makes the other again.
    t.proxy.batch_execute("BEGIN").await.unwrap();
    let rolled: String = t
        .proxy
        .query_one(
            &format!(
                "insert into {table} (from_id, to_id, category, type_id) \
                 values ($1, $2, 'HUBSPOT_DEFINED', 279) returning id"
            ),
            &[&contacts[6], &companies[1]],
        )
        .await
        .expect("a link created in a transaction")
        .get(0);
    let removed = format!("{}-{}-1", contacts[7], companies[7]);
    let n = t
        .proxy
        .execute(&format!("delete from {table} where id = $1"), &[&removed])
        .await
        .expect("a link removed in a transaction");
    assert_eq!(n, 1);
    assert_eq!(types_at(hs, (c, &contacts[6]), (co, &companies[1])), [279]);
    assert_eq!(types_at(hs, (c, &contacts[7]), (co, &companies[7])), [279]);
    t.proxy.batch_execute("ROLLBACK").await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the rolled-back link writes undone at HubSpot",
        || async {
            let made = types_at(hs, (c, &contacts[6]), (co, &companies[1]));
            let kept = types_at(hs, (c, &contacts[7]), (co, &companies[7]));
            (made.is_empty() && kept == [1, 279], (made, kept))
        },
    )
    .await;
    assert_eq!(journal_states(&t.pg, &rolled).await, ["compensated"]);
    assert_eq!(journal_states(&t.pg, &removed).await, ["compensated"]);
    let local: Vec<Value> = t
        .pg
        .query(
            &format!("select to_jsonb(l) - '_sequin_synced_at' - '_sequin_updated_at' from {table} l where id = any($1) order by id"),
            &[&vec![rolled.clone(), removed.clone()]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        local.len(),
        1,
        "the removed link's row is back, the created one's gone: {local:?}"
    );
    assert_eq!(local[0]["id"], removed.as_str());
    t.finish().await;
}
