//! The contract against the Salesforce simulator (contacts; the org's custom
//! fields discovered at start), and what only Salesforce has: the computed
//! Name returned by INSERT; the seed's example refused locally (with
//! tokio-postgres and with psql); prepared and pipelined statements, UPDATE
//! ... FROM, DELETE ... USING, several statements in one Query; refusals by
//! Salesforce (a missing account, a contact deleted in the org) and by local
//! validation (length, a required field); custom fields; typed values; a
//! read-only column on insert and one repeated unchanged; 200 rows allowed,
//! an UPDATE over the limit refused; writes committed together. Then the
//! tests of Salesforce alone: a write rolled back to a savepoint, Execute
//! with a row limit, unqualified names through the client's search_path.

use super::{Ctx, Field, Fixture, Multi, Step, Update, Val, journal_states};
use crate::write_common::*;
use sequin_e2e::eventually;
use sequin_sim::salesforce::FieldType as SfType;
use sequin_sim::{Api, Sim};
use std::time::Duration;
use tokio_postgres::Row;

/// The seed's example, verbatim.
const SEED_EXAMPLE: &str = "insert into salesforce.contact (first_name, last_name, email) values ('Andrea','Palladio','andrea__invalid') returning id;";

fn is_salesforce_contact_id(id: &str) -> bool {
    id.len() == 18 && id.starts_with("003") && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A well-formed Account id (15-character form) of no account in the org:
/// the spec only knows `account_id` as an 18-character string, Salesforce
/// refuses the reference (FIELD_INTEGRITY_EXCEPTION).
const MISSING_ACCOUNT: &str = "001Dn0000009999";

pub static FIXTURE: Fixture = Fixture {
    api: Api::Salesforce,
    seed: 20,
    db_prefix: "write_sf",
    connection,
    objects_live: &[],
    table: "salesforce.contact",
    prefix: "[Salesforce]: ",
    count: |sim| sim.salesforce().count("Contact", false),
    record: |sim, id| sim.salesforce().get("Contact", id),
    is_id: is_salesforce_contact_id,
    insert: &[
        Field::new("first_name", "FirstName", Val::Text("Andrea")),
        Field::new("last_name", "LastName", Val::Text("Palladio")),
        Field::new("email", "Email", Val::Text("andrea@palladio.example")),
    ],
    returning: "name",
    after_insert,
    multi: Multi {
        sql: "insert into salesforce.contact (first_name, last_name, email) values \
              ('Vincenzo', 'Scamozzi', 'vincenzo@scamozzi.example'), \
              ('Baldassare', 'Longhena', null), \
              ('Jacopo', 'Sansovino', 'jacopo@sansovino.example')",
        rows: 3,
        filter: "last_name in ('Scamozzi', 'Longhena', 'Sansovino')",
        compare: &[("last_name", "LastName"), ("email", "Email")],
    },
    update: Update {
        filter: "last_name like 'Pal%' or last_name = 'Longhena'",
        set: &[Field::new("title", "Title", Val::Text("Architect"))],
        matching: 3..=usize::MAX,
    },
    delete_by: ("email", "jacopo@sansovino.example"),
    extra,
    read_only: &[("name", "'Somebody Else'")],
    max_rows: 200,
    bulk_column: "last_name",
    aborting: |_| {
        format!(
            "insert into salesforce.contact (last_name, account_id) values ('Scarpa', '{MISSING_ACCOUNT}')"
        )
    },
    aborting_code: "23514",
    before_rollback,
    rollback_insert: &[Field::new(
        "last_name",
        "LastName",
        Val::Text("Rolled Back"),
    )],
    rollback_update: &[
        Field::new("title", "Title", Val::Text("Rolled Back")),
        Field::new("department", "Department", Val::Text("Rolled Back")),
    ],
};

/// Custom fields of the org, discovered at start: written like any column.
fn connection(sim: &Sim) -> String {
    let sf = sim.salesforce();
    sf.add_custom_field("Contact", "Villa__c", "Villa", SfType::String, Some(40))
        .unwrap();
    sf.add_custom_field("Contact", "Rooms__c", "Rooms", SfType::Double, None)
        .unwrap();
    salesforce_connection(sim, "contact")
}

/// RETURNING shows the final values; the org's own in Postgres; the seed's
/// example refused locally, with tokio-postgres and with psql.
fn after_insert<'a>(c: &'a Ctx<'a>, row: &'a Row) -> Step<'a> {
    Box::pin(async move {
        let sf = c.t.sim.salesforce();
        let (pg, proxy, andrea) = (c.pg, c.proxy, c.id.clone());
        let contacts = || c.count();
        let seeded = c.f.seed;
        let t = c.t;
        // RETURNING shows the final (canonical) values: Name is computed by Salesforce.
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some("Andrea Palladio")
        );
        let rec = c.record(&andrea).unwrap();
        let local = pg
            .query_one(
                "select name, owner_id, created_date is not null, system_modstamp is not null, is_deleted \
                   from salesforce.contact where id = $1",
                &[&andrea],
            )
            .await
            .expect("the row is in Postgres under the Salesforce id");
        assert_eq!(
            local.get::<_, Option<String>>(0).as_deref(),
            Some("Andrea Palladio")
        );
        assert_eq!(
            local.get::<_, Option<String>>(1).as_deref(),
            rec["OwnerId"].as_str(),
            "server-assigned owner"
        );
        assert!(
            local.get::<_, bool>(2),
            "created_date filled in from the org"
        );
        assert!(
            local.get::<_, bool>(3),
            "system_modstamp filled in from the org"
        );
        assert_eq!(local.get::<_, Option<bool>>(4), Some(false));
        // --- The seed's example: refused locally (format: email), nothing written.
        let before_pg = c.count_where("true").await;
        let err = expect_err(proxy.query(SEED_EXAMPLE, &[]).await, "the seed's example");
        // Checked locally: DETAIL says no API call was made.
        c.rejected(
            &err,
            "22023",
            Some("email"),
            &["`email`", "invalid"],
            &["locally"],
        );
        assert_eq!(c.count_where("true").await, before_pg);
        assert_eq!(contacts(), seeded + 1, "the org holds nothing new");

        // The same example with psql (simple protocol), then with a valid email.
        let (out, errout) = run_psql(&t.proxy_url, &format!("{SEED_EXAMPLE}\n")).await;
        assert!(
            errout.contains("ERROR:  22023: [Salesforce]: ")
                && errout.contains("`email`")
                && errout.contains("invalid"),
            "psql shows the rejection:\n{out}\n{errout}"
        );
        assert_eq!(contacts(), seeded + 1);
        let valid = SEED_EXAMPLE.replace("andrea__invalid", "andrea@palladio.example");
        let (out, errout) = run_psql(&t.proxy_url, &format!("{valid}\n")).await;
        let psql_id = out
            .lines()
            .map(str::trim)
            .find(|l| is_salesforce_contact_id(l))
            .unwrap_or_else(|| panic!("psql prints the Salesforce id:\n{out}\n{errout}"))
            .to_owned();
        assert_ne!(psql_id, andrea);
        let rec = sf
            .get("Contact", &psql_id)
            .expect("the org holds the contact");
        assert_eq!(rec["LastName"], "Palladio");
        assert_eq!(rec["Email"], "andrea@palladio.example");
        assert_eq!(
            c.count_where(&format!(
                "id = '{psql_id}' and email = 'andrea@palladio.example'"
            ))
            .await,
            1,
            "the row is in Postgres"
        );
        assert_eq!(contacts(), seeded + 2);
        c.set_live(seeded + 2);
    })
}

/// The extended protocol, UPDATE ... FROM, DELETE ... USING, several
/// statements in one Query; refusals by Salesforce and by local checks;
/// custom fields; typed values.
fn extra<'a>(c: &'a Ctx<'a>) -> Step<'a> {
    Box::pin(async move {
        let sf = c.t.sim.salesforce();
        let (pg, proxy, andrea) = (c.pg, c.proxy, c.id.clone());
        let contacts = || c.count();
        let seeded = c.f.seed;
        // --- Extended protocol: a named prepared statement run several times,
        // and two statements pipelined on one connection.
        let ins = proxy
        .prepare(
            "insert into salesforce.contact (first_name, last_name) values ($1, $2) returning id",
        )
        .await
        .expect("prepare through the proxy");
        let mut prepared_ids = Vec::new();
        for (first, last) in [("Ottone", "Calderari"), ("Francesco", "Muttoni")] {
            let id: String = proxy
                .query_one(&ins, &[&first, &last])
                .await
                .expect("prepared insert")
                .get(0);
            assert!(is_salesforce_contact_id(&id), "{id}");
            assert_eq!(sf.get("Contact", &id).expect(last)["LastName"], last);
            prepared_ids.push(id);
        }
        let (inserted, updated) = tokio::join!(
            proxy.query_one(&ins, &[&"Giorgio", &"Massari"]),
            proxy.execute(
                "update salesforce.contact set title = 'Pipelined' where last_name = 'Calderari'",
                &[]
            ),
        );
        let massari: String = inserted.expect("pipelined insert").get(0);
        assert_eq!(updated.expect("pipelined update"), 1);
        assert_eq!(
            sf.get("Contact", &massari).expect("Massari")["LastName"],
            "Massari"
        );
        assert_eq!(
            sf.get("Contact", &prepared_ids[0]).unwrap()["Title"],
            "Pipelined"
        );
        // UPDATE ... FROM and DELETE ... USING.
        let n = proxy
            .execute(
                "update salesforce.contact c set title = v.title \
               from (values ('Muttoni', 'Proto'), ('Massari', 'Proto')) v(last_name, title) \
              where c.last_name = v.last_name",
                &[],
            )
            .await
            .expect("update ... from");
        assert_eq!(n, 2);
        assert_eq!(
            sf.get("Contact", &prepared_ids[1]).unwrap()["Title"],
            "Proto"
        );
        assert_eq!(sf.get("Contact", &massari).unwrap()["Title"], "Proto");
        let n = proxy
            .execute(
                "delete from salesforce.contact c using (values ('Massari')) v(last_name) \
              where c.last_name = v.last_name",
                &[],
            )
            .await
            .expect("delete ... using");
        assert_eq!(n, 1);
        assert!(sf.get("Contact", &massari).is_none(), "deleted in the org");
        // Several statements in one simple Query: each writes through...
        let msgs = proxy
            .simple_query(
                "insert into salesforce.contact (last_name) values ('Preti'); \
             update salesforce.contact set title = 'Two in one' where last_name = 'Preti'",
            )
            .await
            .expect("two statements in one Query");
        let tags: Vec<u64> = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(tags, [1, 1]);
        let preti = c.id_where("last_name = 'Preti'").await;
        assert_eq!(
            sf.get("Contact", &preti).expect("Preti")["Title"],
            "Two in one"
        );
        assert_eq!(contacts(), seeded + 7);
        // ... in one implicit transaction: when the second statement is refused,
        // the first one's create is undone upstream too.
        let err = expect_err(
        proxy
            .simple_query(&format!(
                "insert into salesforce.contact (last_name) values ('Selva'); \
                 insert into salesforce.contact (last_name, account_id) values ('Scarpa', '{MISSING_ACCOUNT}')"
            ))
            .await,
        "a Query whose second statement is refused",
    );
        assert_eq!(db_error(&err).code().code(), "23514", "{err:?}");
        assert_eq!(c.count_where("last_name in ('Selva', 'Scarpa')").await, 0);
        eventually(
        Duration::from_secs(30),
        "Selva's create undone in the org and compensated in the journal",
        || async {
            let n = contacts();
            let compensated = count(
                pg,
                "select count(*) from sequin.write_journal where op = 'create' and state = 'compensated'",
            )
            .await;
            (n == seeded + 7 && compensated == 1, (n, compensated))
        },
    )
    .await;

        // --- A delete reaching a contact deleted in the org behind the
        // engine's back: Salesforce refuses the whole (allOrNone) request.
        let longhena = c.id_where("last_name = 'Longhena'").await;
        let scamozzi = c.id_where("last_name = 'Scamozzi'").await;
        sf.delete("Contact", &longhena).unwrap();
        let err = expect_err(
            proxy
                .execute(
                    "delete from salesforce.contact where last_name in ('Longhena', 'Scamozzi')",
                    &[],
                )
                .await,
            "a delete reaching a contact deleted in the org",
        );
        c.rejected(&err, "P0002", None, &[], &[]);
        assert!(
            sf.get("Contact", &scamozzi).is_some(),
            "Scamozzi stays in the org"
        );
        assert_eq!(
            c.count_where("last_name in ('Longhena', 'Scamozzi')").await,
            2,
            "Postgres keeps both rows"
        );
        let live = contacts();

        // --- A rejection by Salesforce (not checked locally): the account does
        // not exist. Code from the connector's map, message, column, nothing changed.
        let before_pg = c.count_where("true").await;
        let err = expect_err(
        proxy
            .query(
                &format!(
                    "insert into salesforce.contact (last_name, account_id) values ('Scarpa', '{MISSING_ACCOUNT}') returning id"
                ),
                &[],
            )
            .await,
        "a contact of a missing account",
    );
        c.rejected(
            &err,
            "23514",
            Some("account_id"),
            &[MISSING_ACCOUNT],
            &["FIELD_INTEGRITY_EXCEPTION", "400"],
        );
        assert_eq!(c.count_where("true").await, before_pg);
        assert_eq!(contacts(), live, "the org holds nothing new");
        assert_no_pending_ids(pg, "salesforce.contact", "id").await;
        // In a multi-row insert (one allOrNone composite request) the refused
        // row is the one reported, and no row is created.
        let err = expect_err(
            proxy
                .execute(
                    &format!(
                        "insert into salesforce.contact (last_name, account_id) values \
                     ('Scarpa', null), ('Scarpa', '{MISSING_ACCOUNT}'), ('Scarpa', null)"
                    ),
                    &[],
                )
                .await,
            "a multi-row insert with one contact of a missing account",
        );
        c.rejected(
            &err,
            "23514",
            Some("account_id"),
            &[MISSING_ACCOUNT],
            &["FIELD_INTEGRITY_EXCEPTION"],
        );
        assert_eq!(contacts(), live, "the org holds nothing new");
        assert_eq!(c.count_where("last_name = 'Scarpa'").await, 0);
        // The same on an update: the row keeps its value.
        let err = expect_err(
            proxy
                .execute(
                    "update salesforce.contact set account_id = $1, title = 'Moved' where id = $2",
                    &[&MISSING_ACCOUNT, &andrea],
                )
                .await,
            "moving a contact to a missing account",
        );
        c.rejected(
            &err,
            "23514",
            Some("account_id"),
            &[],
            &["FIELD_INTEGRITY_EXCEPTION"],
        );
        let kept = pg
            .query_one(
                "select account_id, title from salesforce.contact where id = $1",
                &[&andrea],
            )
            .await
            .unwrap();
        assert_eq!(kept.get::<_, Option<String>>(0), None);
        assert_eq!(
            kept.get::<_, Option<String>>(1).as_deref(),
            Some("Architect")
        );
        assert_eq!(sf.get("Contact", &andrea).unwrap()["Title"], "Architect");

        // A value too long for Salesforce's field (max_length checked locally: 22001).
        let err = expect_err(
            proxy
                .execute(
                    "update salesforce.contact set first_name = repeat('x', 41) where id = $1",
                    &[&andrea],
                )
                .await,
            "a first name over 40 characters",
        );
        c.rejected(&err, "22001", Some("first_name"), &[], &[]);
        assert_eq!(sf.get("Contact", &andrea).unwrap()["FirstName"], "Andrea");

        // A create without the field Salesforce requires (LastName): 23502.
        let err = expect_err(
            proxy
                .execute(
                    "insert into salesforce.contact (first_name) values ('Nameless')",
                    &[],
                )
                .await,
            "a contact without a last name",
        );
        c.rejected(&err, "23502", Some("last_name"), &[], &[]);
        assert_eq!(contacts(), live);

        // --- Custom fields (discovered columns) write through too.
        let n = proxy
        .execute(
            "update salesforce.contact set villa__c = 'La Rotonda', rooms__c = 12 where id = $1",
            &[&andrea],
        )
        .await
        .expect("an update of custom columns");
        assert_eq!(n, 1);
        let rec = sf.get("Contact", &andrea).unwrap();
        assert_eq!(rec["Villa__c"], "La Rotonda");
        assert_eq!(rec["Rooms__c"].as_f64(), Some(12.0));
        let custom: String = proxy
        .query_one(
            "insert into salesforce.contact (last_name, villa__c) values ('Custom', 'Villa Emo') returning id",
            &[],
        )
        .await
        .expect("an insert with a custom column")
        .get(0);
        assert_eq!(sf.get("Contact", &custom).unwrap()["Villa__c"], "Villa Emo");
        let err = expect_err(
            proxy
                .execute(
                    "update salesforce.contact set villa__c = repeat('v', 41) where id = $1",
                    &[&custom],
                )
                .await,
            "a custom value longer than the field",
        );
        c.rejected(&err, "22001", Some("villa__c"), &[], &[]);
        assert_eq!(sf.get("Contact", &custom).unwrap()["Villa__c"], "Villa Emo");
        let n = proxy
            .execute("delete from salesforce.contact where id = $1", &[&custom])
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(contacts(), live);

        // --- Typed values travel as Salesforce expects them: dates, booleans,
        // NULL (clears the field), quotes and non-ASCII text.
        let n = proxy
            .execute(
                "update salesforce.contact set birthdate = $1, do_not_call = true, email = null, \
                    first_name = 'Andrea ''Della Gondola''', description = $2 \
              where id = $3",
                &[
                    &chrono::NaiveDate::from_ymd_opt(1508, 11, 30).unwrap(),
                    &"Architetto a Vicenza — «I quattro libri» ✓",
                    &andrea,
                ],
            )
            .await
            .expect("an update of typed values");
        assert_eq!(n, 1);
        let rec = sf.get("Contact", &andrea).unwrap();
        assert_eq!(rec["Birthdate"], "1508-11-30");
        assert_eq!(rec["DoNotCall"], true);
        assert!(rec["Email"].is_null(), "Email cleared: {}", rec["Email"]);
        assert_eq!(rec["FirstName"], "Andrea 'Della Gondola'");
        assert_eq!(
            rec["Description"],
            "Architetto a Vicenza — «I quattro libri» ✓"
        );
        assert_eq!(rec["Name"], "Andrea 'Della Gondola' Palladio");
        let local = pg
        .query_one(
            "select birthdate::text, do_not_call, email, name from salesforce.contact where id = $1",
            &[&andrea],
        )
        .await
        .unwrap();
        assert_eq!(
            local.get::<_, Option<String>>(0).as_deref(),
            Some("1508-11-30")
        );
        assert_eq!(local.get::<_, Option<bool>>(1), Some(true));
        assert_eq!(local.get::<_, Option<String>>(2), None);
        assert_eq!(
            local.get::<_, Option<String>>(3).as_deref(),
            Some("Andrea 'Della Gondola' Palladio"),
            "the row holds Salesforce's recomputed Name"
        );
        c.set_live(live);
    })
}

/// After the read-only columns, too many rows and the aborted transaction.
fn before_rollback<'a>(c: &'a Ctx<'a>) -> Step<'a> {
    Box::pin(async move {
        let sf = c.t.sim.salesforce();
        let (pg, proxy, andrea) = (c.pg, c.proxy, c.id.clone());
        let contacts = || c.count();
        let live = c.live();
        // The aborted transaction's contact is nowhere.
        assert_eq!(c.count_where("last_name = 'Scarpa'").await, 0);
        // Read-only columns on insert; the computed Name kept.
        let err = expect_err(
        proxy
            .execute(
                "insert into salesforce.contact (last_name, created_date) values ('Scarpa', now())",
                &[],
            )
            .await,
        "inserting a created_date",
    );
        c.rejected(&err, "428C9", Some("created_date"), &[], &[]);
        assert_eq!(
            sf.get("Contact", &andrea).unwrap()["Name"],
            "Andrea 'Della Gondola' Palladio"
        );
        assert_eq!(contacts(), live);

        // A read-only column set to the value it has is no change: allowed (ORMs
        // save whole rows), and the writable change goes through.
        let n = proxy
        .execute(
            "update salesforce.contact set name = name, created_date = created_date, title = 'Architetto' \
              where id = $1",
            &[&andrea],
        )
        .await
        .expect("an update repeating read-only values");
        assert_eq!(n, 1);
        assert_eq!(sf.get("Contact", &andrea).unwrap()["Title"], "Architetto");
        let n = proxy
            .execute(
                "update salesforce.contact set title = 'Architect' where id = $1",
                &[&andrea],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        // 200 is allowed.
        let n = proxy
        .execute(
            "insert into salesforce.contact (last_name) select 'Bulk ' || g from generate_series(1, 200) g",
            &[],
        )
        .await
        .expect("200 rows in one statement");
        assert_eq!(n, 200);
        assert_eq!(contacts(), live + 200);
        let live = live + 200;
        // ... and an UPDATE reaching more rows than the limit is refused too.
        let err = expect_err(
            proxy
                .execute(
                    "update salesforce.contact set department = 'Bulk' where true",
                    &[],
                )
                .await,
            "an update of every contact",
        );
        assert_eq!(db_error(&err).code().code(), "54000", "{err:?}");
        assert_eq!(c.count_where("department = 'Bulk'").await, 0);

        proxy.batch_execute("BEGIN").await.unwrap();
        let kept: String = proxy
        .query_one(
            "insert into salesforce.contact (first_name, last_name) values ('Andrea', 'Tirali') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
        proxy
            .execute(
                "update salesforce.contact set title = 'Proto' where id = $1",
                &[&kept],
            )
            .await
            .unwrap();
        proxy.batch_execute("COMMIT").await.unwrap();
        let rec = sf.get("Contact", &kept).expect("committed create upstream");
        assert_eq!(rec["Title"], "Proto");
        assert_eq!(rec["LastName"], "Tirali");
        let states = journal_states(pg, &kept).await;
        assert_eq!(
            states,
            ["committed", "committed"],
            "journal of a create and an update"
        );
        assert_eq!(contacts(), live + 1);
        c.set_live(live + 1);
    })
}

/// A write rolled back to a savepoint is undone upstream like one rolled
/// back with its transaction, while the rest of the transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_rollback_is_undone_upstream() {
    let t = Setup::start(Api::Salesforce, 5, "write_sf_savepoint", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let (pg, proxy) = (&t.pg, &t.proxy);
    let before = sf.count("Contact", false);

    proxy.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    let undone: String = proxy
        .query_one(
            "insert into salesforce.contact (last_name) values ('Savepoint') returning id",
            &[],
        )
        .await
        .expect("insert after a savepoint")
        .get(0);
    assert!(
        sf.get("Contact", &undone).is_some(),
        "applied when the statement ran"
    );
    proxy
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    let kept: String = proxy
        .query_one(
            "insert into salesforce.contact (last_name) values ('After Savepoint') returning id",
            &[],
        )
        .await
        .expect("insert after the rollback to the savepoint")
        .get(0);
    proxy.batch_execute("COMMIT").await.unwrap();

    eventually(
        Duration::from_secs(30),
        "the create rolled back to the savepoint undone in the org",
        || async {
            let rec = sf.get("Contact", &undone);
            (rec.is_none(), rec)
        },
    )
    .await;
    assert_eq!(journal_states(pg, &undone).await, ["compensated"]);
    assert_eq!(journal_states(pg, &kept).await, ["committed"]);
    assert!(
        sf.get("Contact", &kept).is_some(),
        "the committed create stays"
    );
    assert_eq!(sf.count("Contact", false), before + 1);
    assert_eq!(
        count(
            pg,
            "select count(*) from salesforce.contact where last_name in ('Savepoint', 'After Savepoint')"
        )
        .await,
        1
    );
    t.finish().await;
}

/// Extended protocol: an Execute with a row limit gets that many RETURNING
/// rows and PortalSuspended; the next Execute of the portal the rest (as
/// JDBC's fetch size and server-side cursors use it). The write itself
/// happens once, at the first Execute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_with_a_row_limit_suspends_the_portal() {
    let t = Setup::start(Api::Salesforce, 5, "write_sf_portal", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let before = sf.count("Contact", false);
    let mut client = t.proxy_client().await;
    let tx = client.transaction().await.unwrap();
    let st = tx
        .prepare(
            "insert into salesforce.contact (last_name) values ('Portal 1'), ('Portal 2'), ('Portal 3') returning id",
        )
        .await
        .unwrap();
    let portal = tx.bind(&st, &[]).await.unwrap();
    let first = tx.query_portal(&portal, 1).await.expect("first Execute");
    assert_eq!(first.len(), 1, "one row for max_rows = 1");
    assert_eq!(sf.count("Contact", false), before + 3, "all three created");
    let rest = tx.query_portal(&portal, 5).await.expect("second Execute");
    assert_eq!(rest.len(), 2, "the other two rows");
    let mut ids: Vec<String> = first.iter().chain(&rest).map(|r| r.get(0)).collect();
    tx.commit().await.unwrap();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert!(is_salesforce_contact_id(id), "{id}");
        assert!(sf.get("Contact", id).is_some(), "{id} in the org");
    }
    assert_eq!(sf.count("Contact", false), before + 3);
    t.finish().await;
}

/// A client whose search_path names the connection's schema writes
/// unqualified names through the proxy like qualified ones: set in the
/// session or given at connect time (`options=-c search_path=...`, as ORMs
/// do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unqualified_names_resolve_through_search_path() {
    let t = Setup::start(Api::Salesforce, 5, "write_sf_search_path", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let before = sf.count("Contact", false);

    let in_session = t.proxy_client().await;
    in_session
        .batch_execute("set search_path = salesforce, public")
        .await
        .unwrap();
    let at_connect = connect_when_up(&format!(
        "{}{}options=-c%20search_path%3Dsalesforce",
        t.proxy_url,
        if t.proxy_url.contains('?') { "&" } else { "?" }
    ))
    .await;
    for (client, last) in [(&in_session, "Session Path"), (&at_connect, "Startup Path")] {
        let id: String = client
            .query_one(
                "insert into contact (last_name) values ($1) returning id",
                &[&last],
            )
            .await
            .unwrap_or_else(|e| panic!("{last}: unqualified insert: {e:?}"))
            .get(0);
        assert!(is_salesforce_contact_id(&id), "{id}");
        assert_eq!(sf.get("Contact", &id).expect(last)["LastName"], last);
        let n = client
            .execute(
                "update contact set title = 'Unqualified' where id = $1",
                &[&id],
            )
            .await
            .unwrap_or_else(|e| panic!("{last}: unqualified update: {e:?}"));
        assert_eq!(n, 1);
        assert_eq!(sf.get("Contact", &id).unwrap()["Title"], "Unqualified");
        let n = client
            .execute("delete from contact where id = $1", &[&id])
            .await
            .unwrap_or_else(|e| panic!("{last}: unqualified delete: {e:?}"));
        assert_eq!(n, 1);
        assert!(sf.get("Contact", &id).is_none());
    }
    assert_eq!(sf.count("Contact", false), before);

    // A plain table of the same name earlier in the search_path is the one
    // written (Postgres' resolution decides), and nothing reaches the org.
    t.pg.batch_execute("create table public.contact (last_name text)")
        .await
        .unwrap();
    in_session
        .batch_execute("set search_path = public, salesforce")
        .await
        .unwrap();
    let n = in_session
        .execute("insert into contact (last_name) values ('Shadowed')", &[])
        .await
        .expect("an insert into the plain public.contact");
    assert_eq!(n, 1);
    assert_eq!(
        count(
            &t.pg,
            "select count(*) from public.contact where last_name = 'Shadowed'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &t.pg,
            "select count(*) from salesforce.contact where last_name = 'Shadowed'"
        )
        .await,
        0
    );
    assert_eq!(sf.count("Contact", false), before);
    // Back to the synced table first: written through again.
    in_session
        .batch_execute("set search_path = salesforce, public")
        .await
        .unwrap();
    let id: String = in_session
        .query_one(
            "insert into contact (last_name) values ('Unshadowed') returning id",
            &[],
        )
        .await
        .expect("an unqualified insert into the synced table")
        .get(0);
    assert_eq!(
        sf.get("Contact", &id).expect("in the org")["LastName"],
        "Unshadowed"
    );
    t.finish().await;
}
