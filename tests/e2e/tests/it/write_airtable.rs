//! Write-through to Airtable through the Sequin proxy (issue #6), against
//! the Airtable simulator: INSERT ... RETURNING gets Airtable's `rec` id
//! and its computed fields, a multi-row INSERT (batches of 10), an UPDATE
//! by an arbitrary WHERE, every kind of cell (date-time, multiple select,
//! number, checkbox), a DELETE; refusals by Airtable (records deleted by a
//! collaborator behind the engine's back, also in the last of several
//! requests, whose predecessors are then undone), computed (read-only)
//! columns, too many rows; explicit transactions (a failed write aborts it;
//! a create and an update rolled back are undone upstream).
use crate::write_common;

use sequin_sim::Api;
use sequin_sim::airtable::DEMO_BASE_ID;
use write_common::*;

const TABLE: &str = "Contacts";

fn is_record_id(id: &str) -> bool {
    id.len() == 17 && id.starts_with("rec") && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airtable_write_through() {
    let t = Setup::start(Api::Airtable, 10, "write_airtable", airtable_connection).await;
    t.wait_objects_live("airtable", &["contacts", "deals", "projects"])
        .await;
    let at = t.sim.airtable();
    let (pg, proxy) = (&t.pg, &t.proxy);
    let records = || at.count(DEMO_BASE_ID, TABLE);
    let seeded = records();
    assert_eq!(seeded, 10);

    // --- INSERT ... RETURNING: Airtable's id and computed fields.
    let row = proxy
        .query_one(
            "insert into airtable.contacts (name, email, status, subscribed) \
             values ('Andrea Palladio', 'andrea@palladio.example', 'Lead', true) \
             returning id, created_time is not null, created is not null, last_modified is not null",
            &[],
        )
        .await
        .expect("insert through the proxy");
    let andrea: String = row.get(0);
    assert!(is_record_id(&andrea), "Airtable id: {andrea}");
    assert!(row.get::<_, bool>(1), "createdTime set by Airtable");
    assert!(
        row.get::<_, bool>(2),
        "the Created field computed by Airtable"
    );
    assert!(
        row.get::<_, bool>(3),
        "the Last Modified field computed by Airtable"
    );
    let rec = at
        .get(DEMO_BASE_ID, TABLE, &andrea)
        .expect("Airtable holds the record");
    assert_eq!(rec["fields"]["Name"], "Andrea Palladio");
    assert_eq!(rec["fields"]["Email"], "andrea@palladio.example");
    assert_eq!(rec["fields"]["Status"], "Lead");
    assert_eq!(rec["fields"]["Subscribed"], true);
    let local = pg
        .query_one(
            "select name, email, status, subscribed, to_char(created_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') \
               from airtable.contacts where id = $1",
            &[&andrea],
        )
        .await
        .expect("the row is in Postgres under Airtable's id");
    assert_eq!(
        local.get::<_, Option<String>>(0).as_deref(),
        Some("Andrea Palladio")
    );
    assert_eq!(
        local.get::<_, Option<String>>(1).as_deref(),
        Some("andrea@palladio.example")
    );
    assert_eq!(local.get::<_, Option<String>>(2).as_deref(), Some("Lead"));
    assert_eq!(local.get::<_, Option<bool>>(3), Some(true));
    let created = rec["createdTime"].as_str().unwrap();
    assert_eq!(
        local.get::<_, Option<String>>(4).as_deref(),
        created.get(..19),
        "createdTime is Airtable's ({created})"
    );
    assert_eq!(records(), seeded + 1);
    assert_no_pending_ids(pg, "airtable.contacts", "id").await;

    // --- Multi-row INSERT: twelve rows, more than one Airtable batch of 10.
    let n = proxy
        .execute(
            "insert into airtable.contacts (name, company) \
             select 'Builder ' || g, case when g = 12 then 'Sansovino' else 'Scamozzi' end \
               from generate_series(1, 12) g",
            &[],
        )
        .await
        .expect("multi-row insert");
    assert_eq!(n, 12);
    assert_eq!(records(), seeded + 13);
    let builders: Vec<(String, String)> = pg
        .query(
            "select id, name from airtable.contacts where name like 'Builder %'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(builders.len(), 12);
    for (id, name) in &builders {
        assert!(is_record_id(id), "{name}: {id}");
        let rec = at
            .get(DEMO_BASE_ID, TABLE, id)
            .unwrap_or_else(|| panic!("{name} in Airtable"));
        assert_eq!(rec["fields"]["Name"], name.as_str());
    }
    assert_no_pending_ids(pg, "airtable.contacts", "id").await;

    // --- UPDATE by an arbitrary WHERE (simple protocol).
    let where_clause = "name like 'Andrea%' or (company = 'Scamozzi' and name like 'Builder 1%')";
    let matching: Vec<String> = pg
        .query(
            &format!("select id from airtable.contacts where {where_clause}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Andrea, Builder 1, 10, 11.
    assert_eq!(matching.len(), 4, "{matching:?}");
    let n = simple_rows(
        proxy,
        &format!("update airtable.contacts set notes = 'Villa Rotonda', status = 'Customer' where {where_clause}"),
    )
    .await
    .expect("update through the proxy");
    assert_eq!(n, 4);
    for id in &matching {
        let rec = at.get(DEMO_BASE_ID, TABLE, id).unwrap();
        assert_eq!(rec["fields"]["Notes"], "Villa Rotonda", "{id}");
        assert_eq!(rec["fields"]["Status"], "Customer", "{id}");
    }
    assert_eq!(
        count(
            pg,
            "select count(*) from airtable.contacts where notes = 'Villa Rotonda'"
        )
        .await,
        4
    );

    // --- Every kind of cell, on another table: a date-time, a multiple
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

    // --- DELETE.
    let sansovino: String = pg
        .query_one(
            "select id from airtable.contacts where company = 'Sansovino'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let n = proxy
        .execute(
            "delete from airtable.contacts where company = $1",
            &[&"Sansovino"],
        )
        .await
        .expect("delete through the proxy");
    assert_eq!(n, 1);
    assert!(
        at.get(DEMO_BASE_ID, TABLE, &sansovino).is_none(),
        "deleted in Airtable"
    );
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from airtable.contacts where id = '{sansovino}'")
        )
        .await,
        0
    );
    let live = records();
    assert_eq!(live, seeded + 12);

    // --- Rejections by Airtable: a record a collaborator deleted, which the
    // engine has not noticed yet (it re-lists hourly here).
    let gone = &builders.iter().find(|(_, n)| n == "Builder 2").unwrap().0;
    at.delete(DEMO_BASE_ID, TABLE, gone).unwrap();
    let err = expect_err(
        proxy
            .execute(
                "update airtable.contacts set notes = 'Villa Emo' where id = $1",
                &[gone],
            )
            .await,
        "an update of a record Airtable no longer has",
    );
    let db = assert_rejection(
        &err,
        &Rejection {
            code: "P0002",
            prefix: "[Airtable]: ",
            schema: "airtable",
            table: "contacts",
            column: None,
            message_has: &[gone.as_str()],
            detail_has: &["MODEL_ID_NOT_FOUND", "404"],
        },
    );
    // The record is missing, not a value: no column is to blame.
    assert_eq!(db.column(), None, "{db:?}");
    assert_eq!(
        count(
            pg,
            &format!(
                "select count(*) from airtable.contacts where id = '{gone}' and notes is null"
            )
        )
        .await,
        1,
        "the row keeps its values"
    );
    // A statement touching it and a live record changes neither (Airtable
    // checks every id of a request first).
    let builder3 = &builders.iter().find(|(_, n)| n == "Builder 3").unwrap().0;
    let err = expect_err(
        proxy
            .execute(
                "update airtable.contacts set notes = 'Villa Emo' where id in ($1, $2)",
                &[gone, builder3],
            )
            .await,
        "an update reaching a deleted record",
    );
    assert_eq!(db_error(&err).code().code(), "P0002", "{err:?}");
    assert!(
        at.get(DEMO_BASE_ID, TABLE, builder3).unwrap()["fields"]
            .get("Notes")
            .is_none(),
        "the live record is unchanged"
    );
    assert_eq!(
        count(
            pg,
            "select count(*) from airtable.contacts where notes = 'Villa Emo'"
        )
        .await,
        0
    );
    let live = records();

    // --- Computed fields are read-only (428C9).
    for (sql, column) in [
        (
            "update airtable.contacts set created = now() where id = $1",
            "created",
        ),
        (
            "update airtable.contacts set last_modified = now() where id = $1",
            "last_modified",
        ),
        (
            "update airtable.contacts set created_time = now() where id = $1",
            "created_time",
        ),
    ] {
        let err = expect_err(proxy.execute(sql, &[&andrea]).await, sql);
        assert_rejection(
            &err,
            &Rejection {
                code: "428C9",
                prefix: "[Airtable]: ",
                schema: "airtable",
                table: "contacts",
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
                "insert into airtable.contacts (name) select 'Bulk ' || g from generate_series(1, 101) g",
                &[],
            )
            .await,
        "101 rows in one statement",
    );
    let db = db_error(&err);
    assert_eq!(db.code().code(), "54000", "{db:?}");
    assert!(db.message().starts_with("[Airtable]: "), "{db:?}");
    assert!(db.message().contains("100"), "names the limit: {db:?}");
    assert_eq!(records(), live);
    assert_eq!(
        count(
            pg,
            "select count(*) from airtable.contacts where name like 'Bulk %'"
        )
        .await,
        0
    );

    // --- A statement spanning several Airtable requests (10 records each)
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
    let notes_of = |id: &str| {
        at.get(DEMO_BASE_ID, TABLE, id).unwrap()["fields"]
            .get("Notes")
            .cloned()
    };
    let notes_before: Vec<Option<serde_json::Value>> =
        others.iter().map(|id| notes_of(id)).collect();
    at.delete(DEMO_BASE_ID, TABLE, &last).unwrap();
    let err = expect_err(
        proxy
            .execute(
                "update airtable.contacts set notes = 'Chunk' where id <> $1",
                &[gone],
            )
            .await,
        "an update whose last request reaches a deleted record",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "P0002",
            prefix: "[Airtable]: ",
            schema: "airtable",
            table: "contacts",
            column: None,
            message_has: &[last.as_str()],
            detail_has: &["404"],
        },
    );
    sequin_e2e::eventually(
        std::time::Duration::from_secs(30),
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
    let chunk_rows = count(
        pg,
        "select count(*) from airtable.contacts where notes = 'Chunk'",
    )
    .await;
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
    assert_eq!(records(), live - 1);
    let live = records();

    // --- A failed write in an explicit transaction aborts it.
    let err = assert_aborts_transaction(
        proxy,
        &format!("delete from airtable.contacts where id = '{gone}'"),
    )
    .await;
    assert_eq!(db_error(&err).code().code(), "P0002");
    assert_eq!(records(), live);
    assert_eq!(
        count(
            pg,
            &format!("select count(*) from airtable.contacts where id = '{gone}'")
        )
        .await,
        1
    );

    // --- A create and an update rolled back are undone at Airtable.
    proxy.batch_execute("BEGIN").await.unwrap();
    let rolled: String = proxy
        .query_one(
            "insert into airtable.contacts (name) values ('Rolled Back') returning id",
            &[],
        )
        .await
        .expect("insert in a transaction")
        .get(0);
    proxy
        .execute(
            "update airtable.contacts set company = 'Rolled Back' where id = $1",
            &[&andrea],
        )
        .await
        .expect("update in a transaction");
    assert!(
        at.get(DEMO_BASE_ID, TABLE, &rolled).is_some(),
        "applied when the statement ran"
    );
    proxy.batch_execute("ROLLBACK").await.unwrap();
    sequin_e2e::eventually(
        std::time::Duration::from_secs(30),
        "the rolled-back create and update undone at Airtable",
        || async {
            let created = at.get(DEMO_BASE_ID, TABLE, &rolled).is_some();
            let company = at.get(DEMO_BASE_ID, TABLE, &andrea).unwrap()["fields"]
                .get("Company")
                .cloned();
            (!created && company.is_none(), (created, company))
        },
    )
    .await;
    assert_eq!(records(), live);
    assert_eq!(
        count(pg, "select count(*) from airtable.contacts where name = 'Rolled Back' or company = 'Rolled Back'").await,
        0
    );

    t.finish().await;
}
