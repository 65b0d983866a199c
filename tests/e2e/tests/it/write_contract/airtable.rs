//! The contract against the Airtable simulator (the demo base's Contacts;
//! its multi-row INSERT spans two batches of 10), and what only Airtable
//! has: computed fields returned by INSERT, every kind of cell (date-time,
//! multiple select, number, checkbox) on another table; refusals by Airtable
//! (records deleted by a collaborator behind the engine's back, also in the
//! last of several requests, whose predecessors are then undone).

use super::{Ctx, Field, Fixture, Multi, Step, Update, Val};
use crate::write_common::*;
use sequin_e2e::eventually;
use sequin_sim::Api;
use sequin_sim::airtable::DEMO_BASE_ID;
use std::time::Duration;
use tokio_postgres::Row;

const TABLE: &str = "Contacts";

fn is_record_id(id: &str) -> bool {
    id.len() == 17 && id.starts_with("rec") && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub static FIXTURE: Fixture = Fixture {
    api: Api::Airtable,
    seed: 10,
    db_prefix: "write_airtable",
    connection: airtable_connection,
    objects_live: &["contacts", "deals", "projects"],
    table: "airtable.contacts",
    prefix: "[Airtable]: ",
    count: |sim| sim.airtable().count(DEMO_BASE_ID, TABLE),
    record: |sim, id| {
        sim.airtable()
            .get(DEMO_BASE_ID, TABLE, id)
            .map(|r| r["fields"].clone())
    },
    is_id: is_record_id,
    insert: &[
        Field::new("name", "Name", Val::Text("Andrea Palladio")),
        Field::new("email", "Email", Val::Text("andrea@palladio.example")),
        Field::new("status", "Status", Val::Text("Lead")),
        Field::new("subscribed", "Subscribed", Val::Bool(true)),
    ],
    returning: "created_time is not null, created is not null, last_modified is not null",
    after_insert,
    multi: Multi {
        sql: "insert into airtable.contacts (name, company) \
              select 'Builder ' || g, case when g = 12 then 'Sansovino' else 'Scamozzi' end \
                from generate_series(1, 12) g",
        rows: 12,
        filter: "name like 'Builder %'",
        compare: &[("name", "Name")],
    },
    update: Update {
        filter: "name like 'Andrea%' or (company = 'Scamozzi' and name like 'Builder 1%')",
        set: &[
            Field::new("notes", "Notes", Val::Text("Villa Rotonda")),
            Field::new("status", "Status", Val::Text("Customer")),
        ],
        // Andrea, Builder 1, 10, 11.
        matching: 4..=4,
    },
    delete_by: ("company", "Sansovino"),
    extra,
    read_only: &[
        ("created", "now()"),
        ("last_modified", "now()"),
        ("created_time", "now()"),
    ],
    max_rows: 100,
    bulk_column: "name",
    aborting: |c| {
        format!(
            "delete from airtable.contacts where id = '{}'",
            c.noted("gone")
        )
    },
    aborting_code: "P0002",
    before_rollback,
    rollback_insert: &[Field::new("name", "Name", Val::Text("Rolled Back"))],
    rollback_update: &[Field::new("company", "Company", Val::Text("Rolled Back"))],
};

/// Airtable's computed fields, returned and stored.
fn after_insert<'a>(c: &'a Ctx<'a>, row: &'a Row) -> Step<'a> {
    Box::pin(async move {
        assert!(row.get::<_, bool>(1), "createdTime set by Airtable");
        assert!(
            row.get::<_, bool>(2),
            "the Created field computed by Airtable"
        );
        assert!(
            row.get::<_, bool>(3),
            "the Last Modified field computed by Airtable"
        );
        let rec = c.t.sim.airtable().get(DEMO_BASE_ID, TABLE, &c.id).unwrap();
        let local: Option<String> =
            c.pg.query_one(
                "select to_char(created_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') \
                   from airtable.contacts where id = $1",
                &[&c.id],
            )
            .await
            .expect("the row is in Postgres under Airtable's id")
            .get(0);
        let created = rec["createdTime"].as_str().unwrap();
        assert_eq!(
            local.as_deref(),
            created.get(..19),
            "createdTime is Airtable's ({created})"
        );
    })
}

/// Every kind of cell; records deleted by a collaborator.
fn extra<'a>(c: &'a Ctx<'a>) -> Step<'a> {
    Box::pin(async move {
        let at = c.t.sim.airtable();
        let proxy = c.proxy;
        // Every kind of cell, on another table: a date-time, a multiple
        // select (text[]; typecast adds the unknown option), a number, a
        // checkbox, multi-line text.
        let row = proxy
            .query_one(
                "insert into airtable.projects (name, description, start, tags, budget, done) \
                 values ('Villa Rotonda', E'Vicenza\\nVeneto', '2026-03-01T09:30:00Z', \
                         array['client', 'palladian'], 1234.5, true) \
                 returning id, tags, budget::text",
                &[],
            )
            .await
            .expect("insert of typed cells");
        let project: String = row.get(0);
        assert!(is_record_id(&project), "{project}");
        assert_eq!(
            row.get::<_, Option<Vec<String>>>(1),
            Some(vec!["client".to_string(), "palladian".to_string()])
        );
        let rec = at
            .get(DEMO_BASE_ID, "Projects", &project)
            .expect("Airtable holds the project");
        let f = &rec["fields"];
        assert_eq!(f["Name"], "Villa Rotonda");
        assert_eq!(f["Description"], "Vicenza\nVeneto");
        assert_eq!(f["Tags"], serde_json::json!(["client", "palladian"]));
        assert_eq!(f["Budget"].as_f64(), Some(1234.5));
        assert_eq!(f["Done"], true);
        let start = f["Start"].as_str().expect("Start is set");
        assert!(start.starts_with("2026-03-01T09:30:00"), "{start}");
        let n = proxy
            .execute(
                "update airtable.projects set done = false, tags = array['urgent'], budget = null where id = $1",
                &[&project],
            )
            .await
            .expect("update of typed cells");
        assert_eq!(n, 1);
        let f = at.get(DEMO_BASE_ID, "Projects", &project).unwrap()["fields"].clone();
        // Airtable leaves empty cells and unchecked boxes out of records.
        assert!(f.get("Done").is_none_or(|v| v == false), "{f}");
        assert!(f.get("Budget").is_none(), "{f}");
        assert_eq!(f["Tags"], serde_json::json!(["urgent"]));

        // Rejections by Airtable: a record a collaborator deleted, which the
        // engine has not noticed yet (it re-lists hourly here).
        let gone = c.id_where("name = 'Builder 2'").await;
        c.note("gone", &gone);
        at.delete(DEMO_BASE_ID, TABLE, &gone).unwrap();
        let err = expect_err(
            proxy
                .execute(
                    "update airtable.contacts set notes = 'Villa Emo' where id = $1",
                    &[&gone],
                )
                .await,
            "an update of a record Airtable no longer has",
        );
        let db = c.rejected(
            &err,
            "P0002",
            None,
            &[gone.as_str()],
            &["MODEL_ID_NOT_FOUND", "404"],
        );
        // The record is missing, not a value: no column is to blame.
        assert_eq!(db.column(), None, "{db:?}");
        assert_eq!(
            c.count_where(&format!("id = '{gone}' and notes is null"))
                .await,
            1,
            "the row keeps its values"
        );
        // A statement touching it and a live record changes neither (Airtable
        // checks every id of a request first).
        let builder3 = c.id_where("name = 'Builder 3'").await;
        let err = expect_err(
            proxy
                .execute(
                    "update airtable.contacts set notes = 'Villa Emo' where id in ($1, $2)",
                    &[&gone, &builder3],
                )
                .await,
            "an update reaching a deleted record",
        );
        assert_eq!(db_error(&err).code().code(), "P0002", "{err:?}");
        assert!(
            c.record(&builder3).unwrap().get("Notes").is_none(),
            "the live record is unchanged"
        );
        assert_eq!(c.count_where("notes = 'Villa Emo'").await, 0);
        c.set_live(c.count());
    })
}

/// The aborted delete kept its row; a statement spanning several requests
/// whose last one fails.
fn before_rollback<'a>(c: &'a Ctx<'a>) -> Step<'a> {
    Box::pin(async move {
        let at = c.t.sim.airtable();
        let (pg, gone) = (c.pg, &c.noted("gone"));
        assert_eq!(c.count_where(&format!("id = '{gone}'")).await, 1);

        // A statement spanning several Airtable requests (10 records each)
        // whose last request fails: the requests already applied are undone.
        let last: String = pg
            .query_one(
                "select id from airtable.contacts where id <> $1 order by ctid desc limit 1",
                &[gone],
            )
            .await
            .unwrap()
            .get(0);
        let others: Vec<String> = pg
            .query(
                "select id from airtable.contacts where id not in ($1, $2)",
                &[gone, &last],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(others.len() > 10, "more than one request: {}", others.len());
        let notes_of = |id: &str| c.record(id).unwrap().get("Notes").cloned();
        let notes_before: Vec<Option<serde_json::Value>> =
            others.iter().map(|id| notes_of(id)).collect();
        at.delete(DEMO_BASE_ID, TABLE, &last).unwrap();
        let err = expect_err(
            c.proxy
                .execute(
                    "update airtable.contacts set notes = 'Chunk' where id <> $1",
                    &[gone],
                )
                .await,
            "an update whose last request reaches a deleted record",
        );
        c.rejected(&err, "P0002", None, &[last.as_str()], &["404"]);
        eventually(
            Duration::from_secs(30),
            "the requests already applied undone",
            || async {
                let now: Vec<Option<serde_json::Value>> =
                    others.iter().map(|id| notes_of(id)).collect();
                // At least the first request's ten updates were applied, then undone.
                let compensated = count(
                    pg,
                    "select count(*) from sequin.write_journal where op = 'update' and state = 'compensated'",
                )
                .await;
                (now == notes_before && compensated >= 10, (compensated, now))
            },
        )
        .await;
        let chunk_rows = c.count_where("notes = 'Chunk'").await;
        if chunk_rows != 0 {
            // Where did they come from: sync (its timestamps) or the statement?
            let detail: Vec<String> = pg
                .query(
                    "select format('%s synced_at=%s updated_at=%s', id, _sequin_synced_at, _sequin_updated_at) \
                       from airtable.contacts where notes = 'Chunk' \
                     union all \
                     select format('sync_state %s phase=%s last_poll_at=%s last_error=%s', object, phase, last_poll_at, last_error) \
                       from sequin.sync_state where connection = 'airtable' \
                     union all select format('now %s', clock_timestamp())",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            panic!(
                "{chunk_rows} rows keep the undone value 'Chunk' in Postgres:\n{}",
                detail.join("\n")
            );
        }
        c.set_live(c.live() - 1);
        c.assert_live("after the deleted last record");
    })
}
