//! Write-through to HubSpot through the Sequin proxy (issue #6), against
//! the HubSpot simulator: INSERT ... RETURNING gets HubSpot's id and the
//! properties HubSpot sets, a multi-row INSERT (batch create), an UPDATE by
//! an arbitrary WHERE, NULL clearing a property, custom (discovered)
//! properties, a DELETE (archive); refusals by HubSpot (an option the
//! portal does not have, an email another contact has, a batch reaching a
//! contact archived behind the engine's back) and local ones (email format,
//! read-only columns, too many rows); explicit transactions (a failed write
//! aborts it; a create and an update rolled back are undone upstream).
use crate::write_common;

use sequin_sim::Api;
use sequin_sim::hubspot::ObjectType;
use write_common::*;

const CONTACTS: ObjectType = ObjectType::Contacts;

/// The named properties of a contact, read from HubSpot over HTTP.
async fn properties(t: &Setup, id: &str, names: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/crm/v3/objects/contacts/{id}?properties={names}",
            t.sim.base_url()
        ))
        .bearer_auth(t.sim.token())
        .send()
        .await
        .expect("GET from the simulator");
    assert!(resp.status().is_success(), "{}", resp.status());
    let body: serde_json::Value = resp.json().await.unwrap();
    body["properties"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_write_through() {
    let t = Setup::start(Api::Hubspot, 10, "write_hubspot", |sim| {
        // Custom properties of the portal, discovered at start.
        let hs = sim.hubspot();
        hs.create_property(
            CONTACTS,
            serde_json::json!({"name": "villa_style", "label": "Villa style", "type": "string", "fieldType": "text", "groupName": "contactinformation"}),
        )
        .unwrap();
        hs.create_property(
            CONTACTS,
            serde_json::json!({"name": "rooms", "label": "Rooms", "type": "number", "fieldType": "number", "groupName": "contactinformation"}),
        )
        .unwrap();
        hubspot_connection(sim, "contact")
    })
    .await;
    let hs = t.sim.hubspot();
    let (pg, proxy) = (&t.pg, &t.proxy);
    let contacts = || hs.count(CONTACTS, false);
    let seeded = contacts();
    assert_eq!(seeded, 10);

    // --- INSERT ... RETURNING: HubSpot's id and the properties it sets.
    let row = proxy
        .query_one(
            "insert into hubspot.contact (email, firstname, lastname, lifecyclestage) \
             values ('andrea@palladio.example', 'Andrea', 'Palladio', 'lead') \
             returning id, hs_object_id, createdate is not null, created_at is not null",
            &[],
        )
        .await
        .expect("insert through the proxy");
    let andrea: String = row.get(0);
    assert!(
        !andrea.is_empty() && andrea.bytes().all(|b| b.is_ascii_digit()),
        "HubSpot id: {andrea}"
    );
    assert_eq!(
        row.get::<_, Option<i64>>(1).map(|n| n.to_string()),
        Some(andrea.clone()),
        "hs_object_id is HubSpot's"
    );
    assert!(row.get::<_, bool>(2), "createdate set by HubSpot");
    assert!(row.get::<_, bool>(3), "createdAt set by HubSpot");
    let rec = hs
        .get(CONTACTS, &andrea)
        .expect("HubSpot holds the contact");
    assert_eq!(rec["properties"]["firstname"], "Andrea");
    assert_eq!(rec["properties"]["lastname"], "Palladio");
    assert_eq!(rec["properties"]["email"], "andrea@palladio.example");
    let local = pg
        .query_one(
            "select firstname, lastname, email, lifecyclestage, lastmodifieddate is not null \
               from hubspot.contact where id = $1",
            &[&andrea],
        )
        .await
        .expect("the row is in Postgres under HubSpot's id");
    assert_eq!(local.get::<_, Option<String>>(0).as_deref(), Some("Andrea"));
    assert_eq!(
        local.get::<_, Option<String>>(1).as_deref(),
        Some("Palladio")
    );
    assert_eq!(
        local.get::<_, Option<String>>(2).as_deref(),
        Some("andrea@palladio.example")
    );
    assert_eq!(local.get::<_, Option<String>>(3).as_deref(), Some("lead"));
    assert!(local.get::<_, bool>(4), "lastmodifieddate from HubSpot");
    assert_eq!(contacts(), seeded + 1);
    assert_no_pending_ids(pg, "hubspot.contact", "id").await;

    // --- Multi-row INSERT.
    let n = proxy
        .execute(
            "insert into hubspot.contact (email, firstname, lastname) values \
             ('vincenzo@scamozzi.example', 'Vincenzo', 'Scamozzi'), \
             ('baldassare@longhena.example', 'Baldassare', 'Longhena'), \
             ('jacopo@sansovino.example', 'Jacopo', 'Sansovino')",
            &[],
        )
        .await
        .expect("multi-row insert");
    assert_eq!(n, 3);
    assert_eq!(contacts(), seeded + 4);
    for last in ["Scamozzi", "Longhena", "Sansovino"] {
        let id: String = pg
            .query_one(
                "select id from hubspot.contact where lastname = $1",
                &[&last],
            )
            .await
            .unwrap_or_else(|e| panic!("one {last} row: {e}"))
            .get(0);
        let rec = hs
            .get(CONTACTS, &id)
            .unwrap_or_else(|| panic!("{last} at HubSpot"));
        assert_eq!(rec["properties"]["lastname"], last);
    }
    assert_no_pending_ids(pg, "hubspot.contact", "id").await;

    // --- UPDATE by an arbitrary WHERE (simple protocol).
    let where_clause = "lastname like 'Pal%' or email like '%@longhena.example'";
    let matching: Vec<String> = pg
        .query(
            &format!("select id from hubspot.contact where {where_clause}"),
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
        &format!("update hubspot.contact set firstname = 'Maestro' where {where_clause}"),
    )
    .await
    .expect("update through the proxy");
    assert_eq!(n, matching.len() as u64);
    for id in &matching {
        assert_eq!(
            hs.get(CONTACTS, id).unwrap()["properties"]["firstname"],
            "Maestro"
        );
    }
    assert_eq!(
        count(
            pg,
            "select count(*) from hubspot.contact where firstname = 'Maestro'"
        )
        .await,
        matching.len() as i64
    );

    // NULL clears a property (HubSpot takes an empty string); quotes and
    // non-ASCII text arrive intact.
    let n = proxy
        .execute(
            "update hubspot.contact set lifecyclestage = null, firstname = $1 where id = $2",
            &[&"Andrea «Palladio» d'Padova ✓", &andrea],
        )
        .await
        .expect("an update clearing a property");
    assert_eq!(n, 1);
    let rec = hs.get(CONTACTS, &andrea).unwrap();
    assert_eq!(
        rec["properties"]["firstname"],
        "Andrea «Palladio» d'Padova ✓"
    );
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from hubspot.contact where id = '{andrea}' and lifecyclestage is null")
        )
        .await,
        1
    );
    let n = proxy
        .execute(
            "update hubspot.contact set lifecyclestage = 'lead' where id = $1",
            &[&andrea],
        )
        .await
        .expect("an update setting it again");
    assert_eq!(n, 1);

    // Custom properties (discovered columns), numbers sent as HubSpot's strings.
    let n = proxy
        .execute(
            "update hubspot.contact set villa_style = 'Palladian', rooms = 12.5 where id = $1",
            &[&andrea],
        )
        .await
        .expect("an update of custom properties");
    assert_eq!(n, 1);
    let props = properties(&t, &andrea, "villa_style,rooms").await;
    assert_eq!(props["villa_style"], "Palladian");
    assert_eq!(
        props["rooms"].as_str().map(|r| r.parse::<f64>().unwrap()),
        Some(12.5)
    );
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from hubspot.contact where id = '{andrea}' and villa_style = 'Palladian' and rooms = 12.5")
        )
        .await,
        1
    );

    // --- DELETE (HubSpot archives).
    let sansovino: String = pg
        .query_one(
            "select id from hubspot.contact where lastname = 'Sansovino'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let n = proxy
        .execute(
            "delete from hubspot.contact where email = $1",
            &[&"jacopo@sansovino.example"],
        )
        .await
        .expect("delete through the proxy");
    assert_eq!(n, 1);
    assert!(
        hs.get(CONTACTS, &sansovino).is_none(),
        "archived at HubSpot"
    );
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from hubspot.contact where id = '{sansovino}'")
        )
        .await,
        0
    );
    let live = contacts();
    assert_eq!(live, seeded + 3);

    // --- Rejections by HubSpot (not checked locally: the portal edits its
    // options). An option lifecyclestage does not have.
    let before_pg = count(pg, "select count(*) from hubspot.contact").await;
    let err = expect_err(
        proxy
            .query(
                "insert into hubspot.contact (email, lastname, lifecyclestage) \
                 values ('vincenzo@scamozzi.example.org', 'Scamozzi', 'architect') returning id",
                &[],
            )
            .await,
        "an unknown lifecycle stage",
    );
    // HubSpot's answer names the property only inside its message, so the
    // column may be unknown; if one is named, it is this one.
    let db = assert_rejection(
        &err,
        &Rejection {
            code: "23514",
            prefix: "[HubSpot]: ",
            schema: "hubspot",
            table: "contact",
            column: None,
            message_has: &["lifecyclestage", "architect"],
            detail_has: &["VALIDATION_ERROR", "400", "request id: "],
        },
    );
    assert!(
        matches!(db.column(), None | Some("lifecyclestage")),
        "{db:?}"
    );
    assert_eq!(
        count(pg, "select count(*) from hubspot.contact").await,
        before_pg
    );
    assert_eq!(contacts(), live, "HubSpot holds nothing new");
    // The same on an update: the row and the record keep their stage.
    let err = expect_err(
        proxy
            .execute(
                "update hubspot.contact set lifecyclestage = 'architect' where id = $1",
                &[&andrea],
            )
            .await,
        "an update to an unknown lifecycle stage",
    );
    assert_eq!(db_error(&err).code().code(), "23514", "{err:?}");
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from hubspot.contact where id = '{andrea}' and lifecyclestage = 'lead'")
        )
        .await,
        1
    );
    // An email another contact already has (409 CONFLICT).
    let err = expect_err(
        proxy
            .execute(
                "insert into hubspot.contact (email, lastname) values ('andrea@palladio.example', 'Impostor')",
                &[],
            )
            .await,
        "a second contact with the same email",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "23505",
            prefix: "[HubSpot]: ",
            schema: "hubspot",
            table: "contact",
            column: None,
            message_has: &["already exists"],
            detail_has: &["CONFLICT", "409"],
        },
    );
    assert_eq!(
        count(
            pg,
            "select count(*) from hubspot.contact where lastname = 'Impostor'"
        )
        .await,
        0
    );
    assert_eq!(contacts(), live);
    // A malformed email is caught locally (format: email), before HubSpot.
    let err = expect_err(
        proxy
            .execute(
                "update hubspot.contact set email = 'andrea__invalid' where id = $1",
                &[&andrea],
            )
            .await,
        "a malformed email",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "22023",
            prefix: "[HubSpot]: ",
            schema: "hubspot",
            table: "contact",
            column: Some("email"),
            message_has: &["`email`"],
            detail_has: &[],
        },
    );
    assert_eq!(
        hs.get(CONTACTS, &andrea).unwrap()["properties"]["email"],
        "andrea@palladio.example"
    );

    // A batch reaching a contact archived at HubSpot behind the engine's
    // back (HubSpot answers 207: the others updated, that one not found):
    // the statement fails as a whole and HubSpot keeps no part of it.
    let scamozzi: String = pg
        .query_one(
            "select id from hubspot.contact where lastname = 'Scamozzi'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let longhena: String = pg
        .query_one(
            "select id from hubspot.contact where lastname = 'Longhena'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let longhena_first = hs.get(CONTACTS, &longhena).unwrap()["properties"]["firstname"].clone();
    hs.archive(CONTACTS, &scamozzi);
    let err = expect_err(
        proxy
            .execute(
                "update hubspot.contact set firstname = 'Batch' where id in ($1, $2)",
                &[&scamozzi, &longhena],
            )
            .await,
        "an update reaching an archived contact",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "P0002",
            prefix: "[HubSpot]: ",
            schema: "hubspot",
            table: "contact",
            column: None,
            message_has: &[],
            detail_has: &["OBJECT_NOT_FOUND"],
        },
    );
    sequin_e2e::eventually(
        std::time::Duration::from_secs(30),
        "HubSpot keeps no part of the refused batch",
        || async {
            let first = hs.get(CONTACTS, &longhena).unwrap()["properties"]["firstname"].clone();
            (first == longhena_first, first)
        },
    )
    .await;
    assert_eq!(
        count(
            pg,
            &format!(
                "select count(*) from hubspot.contact where (id = '{scamozzi}' and lastname = 'Scamozzi') \
                 or (id = '{longhena}' and lastname = 'Longhena' and firstname is distinct from 'Batch')"
            )
        )
        .await,
        2,
        "Postgres keeps both rows as they were"
    );
    let live = contacts();

    // --- Read-only columns (428C9).
    for (sql, column) in [
        (
            "update hubspot.contact set createdate = now() where id = $1",
            "createdate",
        ),
        (
            "update hubspot.contact set hs_object_id = 7 where id = $1",
            "hs_object_id",
        ),
    ] {
        let err = expect_err(proxy.execute(sql, &[&andrea]).await, sql);
        assert_rejection(
            &err,
            &Rejection {
                code: "428C9",
                prefix: "[HubSpot]: ",
                schema: "hubspot",
                table: "contact",
                column: Some(column),
                message_has: &[],
                detail_has: &[],
            },
        );
    }

    // --- Too many rows (max_rows_per_write: 100).
    let err = expect_err(
        proxy
            .execute(
                "insert into hubspot.contact (lastname) select 'Bulk ' || g from generate_series(1, 101) g",
                &[],
            )
            .await,
        "101 rows in one statement",
    );
    let db = db_error(&err);
    assert_eq!(db.code().code(), "54000", "{db:?}");
    assert!(db.message().starts_with("[HubSpot]: "), "{db:?}");
    assert!(db.message().contains("100"), "names the limit: {db:?}");
    assert_eq!(contacts(), live);
    assert_eq!(
        count(
            pg,
            "select count(*) from hubspot.contact where lastname like 'Bulk %'"
        )
        .await,
        0
    );

    // --- A failed write in an explicit transaction aborts it.
    let err = assert_aborts_transaction(
        proxy,
        "insert into hubspot.contact (lastname, lifecyclestage) values ('Scamozzi', 'architect')",
    )
    .await;
    assert_eq!(db_error(&err).code().code(), "23514");
    assert_eq!(contacts(), live);

    // --- A create and an update rolled back are undone at HubSpot.
    proxy.batch_execute("BEGIN").await.unwrap();
    let rolled: String = proxy
        .query_one(
            "insert into hubspot.contact (email, lastname) values ('rolled@back.example', 'Rolled Back') returning id",
            &[],
        )
        .await
        .expect("insert in a transaction")
        .get(0);
    proxy
        .execute(
            "update hubspot.contact set firstname = 'Rolled Back' where id = $1",
            &[&andrea],
        )
        .await
        .expect("update in a transaction");
    assert!(
        hs.get(CONTACTS, &rolled).is_some(),
        "applied when the statement ran"
    );
    proxy.batch_execute("ROLLBACK").await.unwrap();
    sequin_e2e::eventually(
        std::time::Duration::from_secs(30),
        "the rolled-back create and update undone at HubSpot",
        || async {
            let created = hs.get(CONTACTS, &rolled).is_some();
            let first = hs.get(CONTACTS, &andrea).unwrap()["properties"]["firstname"].clone();
            (!created && first != "Rolled Back", (created, first))
        },
    )
    .await;
    assert_eq!(contacts(), live);
    assert_eq!(
        count(pg, "select count(*) from hubspot.contact where lastname = 'Rolled Back' or firstname = 'Rolled Back'").await,
        0
    );

    t.finish().await;
}
