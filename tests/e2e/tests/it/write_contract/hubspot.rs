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

/// What write-through does with one of the other standard objects: a
/// create, an update, a value HubSpot refuses, a read-only column and, where
/// the object has one, a required property left out.
pub struct ObjectWrites {
    pub object_type: ObjectType,
    pub table: &'static str,
    /// `(column, SQL literal)` of a create; the first is checked upstream.
    pub insert: &'static [(&'static str, &'static str)],
    /// The first insert column's value as HubSpot holds it.
    pub created: &'static str,
    /// `(column, SQL literal, HubSpot's value)` of an update.
    pub update: (&'static str, &'static str, &'static str),
    /// A column HubSpot calculates from the update, not null afterwards.
    pub derived: Option<&'static str>,
    /// `(column, SQL literal)` HubSpot refuses (an option the portal lacks).
    pub refused: (&'static str, &'static str),
    /// `(column, SQL literal)` of a read-only column.
    pub read_only: (&'static str, &'static str),
    /// A property a create must set.
    pub required: Option<&'static str>,
}

const AT: &str = "'2025-03-01T10:00:00Z'";

/// Every standard object besides contacts, companies and deals.
pub const OTHER_OBJECTS: &[ObjectWrites] = &[
    ObjectWrites {
        object_type: ObjectType::Tickets,
        table: "ticket",
        insert: &[
            ("subject", "'Printer on fire'"),
            ("hs_pipeline_stage", "'1'"),
            ("hs_ticket_priority", "'HIGH'"),
        ],
        created: "Printer on fire",
        update: ("hs_pipeline_stage", "'4'", "4"),
        derived: Some("closed_date"),
        refused: ("hs_ticket_priority", "'SOMEDAY'"),
        read_only: ("closed_date", "now()"),
        required: Some("subject"),
    },
    ObjectWrites {
        object_type: ObjectType::Products,
        table: "product",
        insert: &[("name", "'Widget'"), ("price", "12.5")],
        created: "Widget",
        update: ("price", "13.75", "13.75"),
        derived: None,
        refused: ("hs_product_type", "'gadget'"),
        read_only: ("hs_object_id", "7"),
        required: Some("name"),
    },
    ObjectWrites {
        object_type: ObjectType::LineItems,
        table: "line_item",
        insert: &[("name", "'Seats'"), ("quantity", "3"), ("price", "10")],
        created: "Seats",
        update: ("quantity", "4", "4"),
        derived: Some("amount"),
        refused: ("recurringbillingfrequency", "'hourly'"),
        read_only: ("amount", "1"),
        required: None,
    },
    ObjectWrites {
        object_type: ObjectType::Quotes,
        table: "quote",
        insert: &[
            ("hs_title", "'Q-1'"),
            ("hs_expiration_date", "'2025-12-31'"),
        ],
        created: "Q-1",
        update: ("hs_status", "'APPROVED'", "APPROVED"),
        derived: Some("hs_public_url_key"),
        refused: ("hs_status", "'LOST'"),
        read_only: ("hs_quote_number", "'Q-9'"),
        required: Some("hs_title"),
    },
    ObjectWrites {
        object_type: ObjectType::Calls,
        table: "call",
        insert: &[("hs_call_title", "'Intro'"), ("hs_timestamp", AT)],
        created: "Intro",
        update: ("hs_call_direction", "'INBOUND'", "INBOUND"),
        derived: None,
        refused: ("hs_call_direction", "'SIDEWAYS'"),
        read_only: ("hs_createdate", "now()"),
        required: Some("hs_timestamp"),
    },
    ObjectWrites {
        object_type: ObjectType::Emails,
        table: "email",
        insert: &[("hs_email_subject", "'Hello'"), ("hs_timestamp", AT)],
        created: "Hello",
        update: ("hs_email_status", "'SENT'", "SENT"),
        derived: None,
        refused: ("hs_email_status", "'LOST'"),
        read_only: ("hs_object_id", "7"),
        required: Some("hs_timestamp"),
    },
    ObjectWrites {
        object_type: ObjectType::Meetings,
        table: "meeting",
        insert: &[("hs_meeting_title", "'Kickoff'"), ("hs_timestamp", AT)],
        created: "Kickoff",
        update: ("hs_meeting_outcome", "'COMPLETED'", "COMPLETED"),
        derived: None,
        refused: ("hs_meeting_outcome", "'MAYBE'"),
        read_only: ("hs_lastmodifieddate", "now()"),
        required: Some("hs_timestamp"),
    },
    ObjectWrites {
        object_type: ObjectType::Notes,
        table: "note",
        insert: &[("hs_note_body", "'Met at the fair'"), ("hs_timestamp", AT)],
        created: "Met at the fair",
        update: ("hs_note_body", "'Met twice'", "Met twice"),
        derived: None,
        // No such owner in the portal.
        refused: ("hubspot_owner_id", "'424242'"),
        read_only: ("hs_object_id", "7"),
        required: Some("hs_timestamp"),
    },
    ObjectWrites {
        object_type: ObjectType::Tasks,
        table: "task",
        insert: &[("hs_task_subject", "'Call back'"), ("hs_timestamp", AT)],
        created: "Call back",
        update: ("hs_task_status", "'COMPLETED'", "COMPLETED"),
        derived: Some("hs_task_completion_date"),
        refused: ("hs_task_priority", "'EXTREME'"),
        read_only: ("hs_task_completion_date", "now()"),
        required: Some("hs_timestamp"),
    },
];

/// The HubSpot error contract of a statement on `table`.
fn refusal<'a>(
    err: &'a tokio_postgres::Error,
    table: &str,
    code: &str,
    column: Option<&str>,
    detail_has: &[&str],
) -> &'a tokio_postgres::error::DbError {
    assert_rejection(
        err,
        &Rejection {
            code,
            prefix: "[HubSpot]: ",
            schema: "hubspot",
            table,
            column,
            message_has: &[],
            detail_has,
        },
    )
}

/// Creates, updates and deletes one object through the proxy, one row and
/// several (HubSpot's batch endpoints), and checks its refusals.
async fn write_object(t: &Setup, w: &ObjectWrites) {
    let hs = t.sim.hubspot();
    let table = format!("hubspot.{}", w.table);
    let record = |id: &str| hs.full_record(w.object_type, id);
    let live_before = hs.count(w.object_type, false);
    let columns: Vec<&str> = w.insert.iter().map(|(c, _)| *c).collect();
    let values: Vec<&str> = w.insert.iter().map(|(_, v)| *v).collect();
    let (columns, values) = (columns.join(", "), values.join(", "));
    let first = w.insert[0].0;
    // One row: HubSpot's create, the row written back under HubSpot's id.
    let sql = format!("insert into {table} ({columns}) values ({values}) returning id, {first}");
    let row = t
        .proxy
        .query_one(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let id: String = row.get(0);
    let rec = record(&id).unwrap_or_else(|| panic!("{table} {id} is in HubSpot"));
    assert_eq!(rec["properties"][first], w.created, "{table}: {rec}");
    assert_eq!(rec["properties"]["hs_object_id"], id.as_str());
    assert_eq!(row.get::<_, String>(1), w.created, "{table}: returned");
    // Several rows: one batch create (and below one batch update, one batch
    // archive), counted by the simulator per route.
    let batches = || {
        t.sim
            .stats()
            .by_route
            .get("POST /crm/v3/objects/{object}/batch/{operation}")
            .copied()
            .unwrap_or(0)
    };
    let batches_before = batches();
    let sql = format!("insert into {table} ({columns}) values ({values}), ({values}) returning id");
    let ids: Vec<String> = t
        .proxy
        .query(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|i| record(i).is_some()), "{table}: {ids:?}");
    assert_eq!(hs.count(w.object_type, false), live_before + 3, "{table}");
    // Updates: one row, then the batch of two.
    let (column, literal, api) = w.update;
    let sql = format!("update {table} set {column} = {literal} where id = $1");
    let n = t
        .proxy
        .execute(&sql, &[&id])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    assert_eq!(n, 1);
    assert_eq!(record(&id).unwrap()["properties"][column], api, "{table}");
    let sql = format!("update {table} set {column} = {literal} where id = any($1)");
    let n = t
        .proxy
        .execute(&sql, &[&ids])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    assert_eq!(n, 2);
    for i in &ids {
        assert_eq!(record(i).unwrap()["properties"][column], api, "{table} {i}");
    }
    let local = format!("select count(*) from {table} where id = $1 and {column} = {literal}");
    let matching: i64 = t.pg.query_one(&local, &[&id]).await.unwrap().get(0);
    assert_eq!(matching, 1, "{table}: the update written back");
    if let Some(derived) = w.derived {
        let sql = format!("select count(*) from {table} where id = $1 and {derived} is not null");
        let n: i64 = t.pg.query_one(&sql, &[&id]).await.unwrap().get(0);
        assert_eq!(
            n, 1,
            "{table}.{derived}: HubSpot's calculated value written back"
        );
    }
    // Refusals: by HubSpot (an option the portal lacks), then locally.
    let (column, literal) = w.refused;
    let sql = format!("update {table} set {column} = {literal} where id = $1");
    let err = expect_err(t.proxy.execute(&sql, &[&id]).await, &sql);
    refusal(&err, w.table, "23514", None, &["VALIDATION_ERROR", "400"]);
    let (column, literal) = w.read_only;
    let sql = format!("update {table} set {column} = {literal} where id = $1");
    let err = expect_err(t.proxy.execute(&sql, &[&id]).await, &sql);
    refusal(&err, w.table, "428C9", Some(column), &[]);
    if let Some(required) = w.required {
        let kept: Vec<&(&str, &str)> = w.insert.iter().filter(|(c, _)| *c != required).collect();
        let columns: Vec<&str> = kept.iter().map(|(c, _)| *c).collect();
        let values: Vec<&str> = kept.iter().map(|(_, v)| *v).collect();
        let sql = format!(
            "insert into {table} ({}) values ({})",
            columns.join(", "),
            values.join(", ")
        );
        let err = expect_err(t.proxy.execute(&sql, &[]).await, &sql);
        refusal(&err, w.table, "23502", Some(required), &[]);
    }
    assert_eq!(
        hs.count(w.object_type, false),
        live_before + 3,
        "{table}: refusals wrote nothing"
    );
    // Deletes: one row (HubSpot archives it), then the batch of two.
    let n = t
        .proxy
        .execute(&format!("delete from {table} where id = $1"), &[&id])
        .await
        .expect("a delete");
    assert_eq!(n, 1);
    assert!(record(&id).is_none(), "{table}: archived at HubSpot");
    let n = t
        .proxy
        .execute(&format!("delete from {table} where id = any($1)"), &[&ids])
        .await
        .expect("a batch delete");
    assert_eq!(n, 2);
    assert_eq!(hs.count(w.object_type, false), live_before, "{table}");
    // The two-row create, update and delete: one batch request each (a
    // single row goes to the single-record endpoints).
    assert_eq!(
        batches() - batches_before,
        3,
        "{table}: the batch endpoints, once per multi-row statement"
    );
    let sql = format!("select count(*) from {table} where id = $1 or id = any($2)");
    let left: i64 = t.pg.query_one(&sql, &[&id, &ids]).await.unwrap().get(0);
    assert_eq!(left, 0, "{table}: the rows are gone");
}

/// Write-through of every other standard object, against one simulator.
pub async fn every_other_object() {
    let tables: Vec<&str> = OTHER_OBJECTS.iter().map(|w| w.table).collect();
    let t = Setup::start(Api::Hubspot, 5, "write_hubspot_objects", |sim| {
        hubspot_connection(sim, &tables.join(", "))
    })
    .await;
    for w in OTHER_OBJECTS {
        write_object(&t, w).await;
    }
    t.finish().await;
}

/// Write-through of pipelines (create with stages, relabel, delete) and the
/// refusals of owners and pipelines.
pub async fn pipelines_and_owners() {
    let t = Setup::start(Api::Hubspot, 2, "write_hubspot_pipelines", |sim| {
        hubspot_connection(sim, "owner, deal_pipeline, ticket_pipeline")
    })
    .await;
    let hs = t.sim.hubspot();
    let stages = r#"[{"label": "Up for renewal", "displayOrder": 0, "metadata": {"probability": "0.5"}},
                     {"label": "Renewed", "displayOrder": 1, "metadata": {"probability": "1.0"}}]"#;
    // A create answers with the whole pipeline: its id and its stages' ids.
    let row = t
        .proxy
        .query_one(
            "insert into hubspot.deal_pipeline (label, display_order, stages) \
             values ('Renewals', 1, $1::text::jsonb) \
             returning id, jsonb_array_length(stages), stages->0->>'id', created_at is not null",
            &[&stages],
        )
        .await
        .expect("a pipeline created through the proxy");
    let id: String = row.get(0);
    assert_eq!(row.get::<_, i32>(1), 2);
    let stage: Option<String> = row.get(2);
    assert!(stage.is_some(), "HubSpot's stage ids written back");
    assert!(row.get::<_, bool>(3));
    let listed = |object: &str| -> Vec<(String, String)> {
        let r: Vec<(String, String)> = t
            .sim
            .hubspot()
            .pipelines(object)
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_owned(),
                    p["label"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        r
    };
    assert!(listed("deals").contains(&(id.clone(), "Renewals".into())));
    // Deals take the new pipeline and stage at once.
    let deal = hs.create(
        ObjectType::Deals,
        serde_json::json!({"dealname": "Renewal", "pipeline": id, "dealstage": stage}),
    );
    assert!(deal.is_ok(), "{deal:?}");
    // Relabelled.
    let n = t
        .proxy
        .execute(
            "update hubspot.deal_pipeline set label = 'Renewals 2025', display_order = 2 where id = $1",
            &[&id],
        )
        .await
        .expect("a relabel");
    assert_eq!(n, 1);
    assert!(listed("deals").contains(&(id.clone(), "Renewals 2025".into())));
    // Refused by HubSpot: a label another pipeline has, a deal stage without
    // its probability.
    let err = expect_err(
        t.proxy
            .execute(
                "insert into hubspot.deal_pipeline (label, display_order, stages) values ('Sales Pipeline', 3, '[]')",
                &[],
            )
            .await,
        "a duplicate label",
    );
    refusal(&err, "deal_pipeline", "23505", None, &["CONFLICT", "409"]);
    let err = expect_err(
        t.proxy
            .execute(
                "insert into hubspot.deal_pipeline (label, display_order, stages) \
                 values ('Upsell', 3, '[{\"label\": \"Open\", \"displayOrder\": 0, \"metadata\": {}}]')",
                &[],
            )
            .await,
        "a deal stage without probability",
    );
    refusal(
        &err,
        "deal_pipeline",
        "23514",
        None,
        &["VALIDATION_ERROR", "400"],
    );
    // Refused locally: stages only at create, a pipeline needs them.
    let err = expect_err(
        t.proxy
            .execute(
                "update hubspot.deal_pipeline set stages = '[]' where id = $1",
                &[&id],
            )
            .await,
        "stages changed by an update",
    );
    refusal(&err, "deal_pipeline", "428C9", Some("stages"), &[]);
    let err = expect_err(
        t.proxy
            .execute(
                "insert into hubspot.ticket_pipeline (label, display_order) values ('Escalations', 1)",
                &[],
            )
            .await,
        "a pipeline without stages",
    );
    refusal(&err, "ticket_pipeline", "23502", Some("stages"), &[]);
    // Owners are the portal's users: not written through the API.
    let owner = hs.owner_ids()[0].clone();
    for sql in [
        "insert into hubspot.owner (email) values ('new@example.com')",
        "update hubspot.owner set first_name = 'Someone' where id = $1",
        "delete from hubspot.owner where id = $1",
    ] {
        let result = if sql.contains("$1") {
            t.proxy.execute(sql, &[&owner]).await
        } else {
            t.proxy.execute(sql, &[]).await
        };
        let err = expect_err(result, sql);
        refusal(&err, "owner", "0A000", None, &[]);
    }
    assert_eq!(listed("deals").len(), 2, "nothing else was created");
    // Deleted.
    let n = t
        .proxy
        .execute("delete from hubspot.deal_pipeline where id = $1", &[&id])
        .await
        .expect("a delete");
    assert_eq!(n, 1);
    assert!(
        !listed("deals").iter().any(|(p, _)| p == &id),
        "deleted at HubSpot"
    );
    let left = count(
        &t.pg,
        &format!("select count(*) from hubspot.deal_pipeline where id = '{id}'"),
    )
    .await;
    assert_eq!(left, 0);
    t.finish().await;
}

/// Write-through of custom objects: the seeded `pets`, and `boats`,
/// defined while Sequin runs.
pub async fn custom_objects() {
    let t = Setup::start(Api::Hubspot, 4, "write_hubspot_custom", |sim| {
        format!(
            "  - name: hubspot
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [pet, boat]
    poll_interval: 1h
    discovery_interval: 1s
",
            base = sim.base_url(),
            token = sim.token(),
        )
    })
    .await;
    let hs = t.sim.hubspot();
    let pets = hs.object_type("pets").unwrap();
    let record = |id: &str| hs.full_record(pets, id);
    let row = t
        .proxy
        .query_one(
            "insert into hubspot.pet (pet_name, species, age, adopted, adopted_on) \
             values ('Argo', 'dog', 3, true, '2024-01-02') returning id, hs_object_id",
            &[],
        )
        .await
        .expect("a custom object record created through the proxy");
    let id: String = row.get(0);
    assert_eq!(
        row.get::<_, Option<i64>>(1).map(|n| n.to_string()),
        Some(id.clone())
    );
    let rec = record(&id).expect("HubSpot holds the pet");
    let props = &rec["properties"];
    assert_eq!(
        (
            &props["pet_name"],
            &props["species"],
            &props["age"],
            &props["adopted"],
            &props["adopted_on"]
        ),
        (
            &"Argo".into(),
            &"dog".into(),
            &"3".into(),
            &"true".into(),
            &"2024-01-02".into()
        ),
        "{rec}"
    );
    let ids: Vec<String> = t
        .proxy
        .query(
            "insert into hubspot.pet (pet_name, species) values ('Tom', 'cat'), ('Jerry', 'cat') returning id",
            &[],
        )
        .await
        .expect("a batch create")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 2);
    let n = t
        .proxy
        .execute(
            "update hubspot.pet set species = 'bird', age = 1.5 where id = any($1)",
            &[&ids],
        )
        .await
        .expect("a batch update");
    assert_eq!(n, 2);
    for i in &ids {
        let rec = record(i).unwrap();
        assert_eq!(
            (&rec["properties"]["species"], &rec["properties"]["age"]),
            (&"bird".into(), &"1.5".into())
        );
    }
    // Refused by HubSpot: an option the property lacks, the schema's
    // required property left out.
    let err = expect_err(
        t.proxy
            .execute(
                "update hubspot.pet set species = 'dragon' where id = $1",
                &[&id],
            )
            .await,
        "an unknown species",
    );
    refusal(&err, "pet", "23514", None, &["VALIDATION_ERROR", "400"]);
    let err = expect_err(
        t.proxy
            .execute("insert into hubspot.pet (species) values ('cat')", &[])
            .await,
        "a pet without its name",
    );
    let db = refusal(&err, "pet", "23514", None, &["VALIDATION_ERROR"]);
    assert!(db.message().contains("pet_name"), "{db:?}");
    // Refused locally: what HubSpot sets.
    for column in ["hs_object_id", "hs_lastmodifieddate"] {
        let value = if column == "hs_object_id" {
            "7"
        } else {
            "now()"
        };
        let sql = format!("update hubspot.pet set {column} = {value} where id = $1");
        let err = expect_err(t.proxy.execute(&sql, &[&id]).await, &sql);
        refusal(&err, "pet", "428C9", Some(column), &[]);
    }
    let n = t
        .proxy
        .execute(
            "delete from hubspot.pet where id = $1 or id = any($2)",
            &[&id, &ids],
        )
        .await
        .expect("a delete");
    assert_eq!(n, 3);
    assert!(record(&id).is_none() && ids.iter().all(|i| record(i).is_none()));
    assert_eq!(hs.count(pets, false), 4, "the seeded pets only");

    // A custom object defined while Sequin runs is written through as soon
    // as its table is there.
    let boats = hs
        .create_schema(serde_json::json!({
            "name": "boats",
            "labels": {"singular": "Boat", "plural": "Boats"},
            "requiredProperties": ["boat_name"],
            "properties": [
                {"name": "boat_name", "label": "Name", "type": "string", "fieldType": "text"},
                {"name": "length_m", "label": "Length", "type": "number", "fieldType": "number"}
            ]
        }))
        .unwrap();
    t.wait_objects_live("hubspot", &["boat"]).await;
    // The proxy looks its tables up again when a statement names an unknown
    // one, at most every few seconds: until then the table is refused as
    // not synced (0A000, nothing sent to HubSpot).
    let id: String = eventually(
        Duration::from_secs(20),
        "a record of the new custom object",
        || async {
            let sql = "insert into hubspot.boat (boat_name, length_m) values ('Bucintoro', 35) returning id";
            match t.proxy.query_one(sql, &[]).await {
                Ok(row) => (true, row.get::<_, String>(0)),
                Err(e) => {
                    let db = db_error(&e);
                    assert_eq!(db.code().code(), "0A000", "only an unknown table waits: {db:?}");
                    assert!(db.message().contains("not an object of a configured connection"), "{db:?}");
                    (false, String::new())
                }
            }
        },
    )
    .await;
    let rec = hs.full_record(boats, &id).expect("HubSpot holds the boat");
    assert_eq!(rec["properties"]["boat_name"], "Bucintoro");
    assert_eq!(rec["properties"]["length_m"], "35");
    t.finish().await;
}
