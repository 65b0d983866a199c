//! The contract against the HubSpot simulator (contacts), and what only
//! HubSpot has: the id and properties HubSpot sets on create, NULL clearing
//! a property, custom (discovered) properties; refusals by HubSpot (an
//! option the portal does not have, an email another contact has, a batch
//! reaching a contact archived behind the engine's back) and local ones
//! (email format).

use super::{Ctx, Field, Fixture, Multi, Step, Update, Val, nothing};
use crate::write_common::*;
use sequin_e2e::eventually;
use sequin_sim::hubspot::ObjectType;
use sequin_sim::{Api, Sim};
use std::time::Duration;
use tokio_postgres::Row;

const CONTACTS: ObjectType = ObjectType::Contacts;

pub static FIXTURE: Fixture = Fixture {
    api: Api::Hubspot,
    seed: 10,
    db_prefix: "write_hubspot",
    connection,
    objects_live: &[],
    table: "hubspot.contact",
    prefix: "[HubSpot]: ",
    count: |sim| sim.hubspot().count(CONTACTS, false),
    record: |sim, id| {
        sim.hubspot()
            .get(CONTACTS, id)
            .map(|r| r["properties"].clone())
    },
    is_id: |id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
    insert: &[
        Field::new("email", "email", Val::Text("andrea@palladio.example")),
        Field::new("firstname", "firstname", Val::Text("Andrea")),
        Field::new("lastname", "lastname", Val::Text("Palladio")),
        // Not among the default properties the simulator shows.
        Field::unread("lifecyclestage", Val::Text("lead")),
    ],
    returning: "hs_object_id, createdate is not null, created_at is not null",
    after_insert,
    multi: Multi {
        sql: "insert into hubspot.contact (email, firstname, lastname) values \
              ('vincenzo@scamozzi.example', 'Vincenzo', 'Scamozzi'), \
              ('baldassare@longhena.example', 'Baldassare', 'Longhena'), \
              ('jacopo@sansovino.example', 'Jacopo', 'Sansovino')",
        rows: 3,
        filter: "lastname in ('Scamozzi', 'Longhena', 'Sansovino')",
        compare: &[("lastname", "lastname")],
    },
    update: Update {
        filter: "lastname like 'Pal%' or email like '%@longhena.example'",
        set: &[Field::new("firstname", "firstname", Val::Text("Maestro"))],
        matching: 2..=usize::MAX,
    },
    delete_by: ("email", "jacopo@sansovino.example"),
    extra,
    read_only: &[("createdate", "now()"), ("hs_object_id", "7")],
    max_rows: 100,
    bulk_column: "lastname",
    aborting: |_| {
        "insert into hubspot.contact (lastname, lifecyclestage) values ('Scamozzi', 'architect')"
            .into()
    },
    aborting_code: "23514",
    before_rollback: nothing,
    rollback_insert: &[
        Field::new("lastname", "lastname", Val::Text("Rolled Back")),
        Field::new("email", "email", Val::Text("rolled@back.example")),
    ],
    rollback_update: &[Field::new(
        "firstname",
        "firstname",
        Val::Text("Rolled Back"),
    )],
};

/// The portal's custom properties, discovered at start.
fn connection(sim: &Sim) -> String {
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
}

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

/// The properties HubSpot sets, returned and stored.
fn after_insert<'a>(c: &'a Ctx<'a>, row: &'a Row) -> Step<'a> {
    Box::pin(async move {
        assert_eq!(
            row.get::<_, Option<i64>>(1).map(|n| n.to_string()),
            Some(c.id.clone()),
            "hs_object_id is HubSpot's"
        );
        assert!(row.get::<_, bool>(2), "createdate set by HubSpot");
        assert!(row.get::<_, bool>(3), "createdAt set by HubSpot");
        assert_eq!(
            c.count_where(&format!("id = '{}' and lastmodifieddate is not null", c.id))
                .await,
            1,
            "lastmodifieddate from HubSpot"
        );
    })
}

/// NULL, text and custom properties; refusals by HubSpot and local ones.
fn extra<'a>(c: &'a Ctx<'a>) -> Step<'a> {
    Box::pin(async move {
        let hs = c.t.sim.hubspot();
        let (proxy, andrea) = (c.proxy, &c.id);
        // NULL clears a property (HubSpot takes an empty string); quotes and
        // non-ASCII text arrive intact.
        let n = proxy
            .execute(
                "update hubspot.contact set lifecyclestage = null, firstname = $1 where id = $2",
                &[&"Andrea «Palladio» d'Padova ✓", andrea],
            )
            .await
            .expect("an update clearing a property");
        assert_eq!(n, 1);
        assert_eq!(
            c.record(andrea).unwrap()["firstname"],
            "Andrea «Palladio» d'Padova ✓"
        );
        assert_eq!(
            c.count_where(&format!("id = '{andrea}' and lifecyclestage is null"))
                .await,
            1
        );
        let n = proxy
            .execute(
                "update hubspot.contact set lifecyclestage = 'lead' where id = $1",
                &[andrea],
            )
            .await
            .expect("an update setting it again");
        assert_eq!(n, 1);

        // Custom properties (discovered columns), numbers sent as HubSpot's strings.
        let n = proxy
            .execute(
                "update hubspot.contact set villa_style = 'Palladian', rooms = 12.5 where id = $1",
                &[andrea],
            )
            .await
            .expect("an update of custom properties");
        assert_eq!(n, 1);
        let props = properties(c.t, andrea, "villa_style,rooms").await;
        assert_eq!(props["villa_style"], "Palladian");
        assert_eq!(
            props["rooms"].as_str().map(|r| r.parse::<f64>().unwrap()),
            Some(12.5)
        );
        assert_eq!(
            c.count_where(&format!(
                "id = '{andrea}' and villa_style = 'Palladian' and rooms = 12.5"
            ))
            .await,
            1
        );

        // Rejections by HubSpot (not checked locally: the portal edits its
        // options). An option lifecyclestage does not have.
        let before_pg = c.count_where("true").await;
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
        let db = c.rejected(
            &err,
            "23514",
            None,
            &["lifecyclestage", "architect"],
            &["VALIDATION_ERROR", "400", "request id: "],
        );
        assert!(
            matches!(db.column(), None | Some("lifecyclestage")),
            "{db:?}"
        );
        assert_eq!(c.count_where("true").await, before_pg);
        c.assert_live("HubSpot holds nothing new");
        // The same on an update: the row and the record keep their stage.
        let err = expect_err(
            proxy
                .execute(
                    "update hubspot.contact set lifecyclestage = 'architect' where id = $1",
                    &[andrea],
                )
                .await,
            "an update to an unknown lifecycle stage",
        );
        assert_eq!(db_error(&err).code().code(), "23514", "{err:?}");
        assert_eq!(
            c.count_where(&format!("id = '{andrea}' and lifecyclestage = 'lead'"))
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
        c.rejected(
            &err,
            "23505",
            None,
            &["already exists"],
            &["CONFLICT", "409"],
        );
        assert_eq!(c.count_where("lastname = 'Impostor'").await, 0);
        c.assert_live("after a refused duplicate");
        // A malformed email is caught locally (format: email), before HubSpot.
        let err = expect_err(
            proxy
                .execute(
                    "update hubspot.contact set email = 'andrea__invalid' where id = $1",
                    &[andrea],
                )
                .await,
            "a malformed email",
        );
        c.rejected(&err, "22023", Some("email"), &["`email`"], &[]);
        assert_eq!(
            c.record(andrea).unwrap()["email"],
            "andrea@palladio.example"
        );

        // A batch reaching a contact archived at HubSpot behind the engine's
        // back (HubSpot answers 207: the others updated, that one not found):
        // the statement fails as a whole and HubSpot keeps no part of it.
        let scamozzi = c.id_where("lastname = 'Scamozzi'").await;
        let longhena = c.id_where("lastname = 'Longhena'").await;
        let longhena_first = c.record(&longhena).unwrap()["firstname"].clone();
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
        c.rejected(&err, "P0002", None, &[], &["OBJECT_NOT_FOUND"]);
        eventually(
            Duration::from_secs(30),
            "HubSpot keeps no part of the refused batch",
            || async {
                let first = c.record(&longhena).unwrap()["firstname"].clone();
                (first == longhena_first, first)
            },
        )
        .await;
        assert_eq!(
            c.count_where(&format!(
                "(id = '{scamozzi}' and lastname = 'Scamozzi') \
                 or (id = '{longhena}' and lastname = 'Longhena' and firstname is distinct from 'Batch')"
            ))
            .await,
            2,
            "Postgres keeps both rows as they were"
        );
        c.set_live(c.count());
    })
}
