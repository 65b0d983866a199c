//! Write-through (issue #6) with real drivers through the Sequin proxy,
//! against the Salesforce simulator: the same core scenario (INSERT ...
//! RETURNING the Salesforce id, a multi-row INSERT, an UPDATE by an
//! arbitrary WHERE, a DELETE, a write refused locally and one refused by
//! Salesforce with their SQLSTATEs, a failed write aborting a transaction)
//! with psql (simple protocol), sqlx (prepared and unprepared statements),
//! psycopg 3 with the SQLAlchemy ORM (and psycopg's pipeline mode), and
//! node-postgres (named prepared statements). tokio-postgres runs the per-connector files. Each driver
//! writes its own rows; the test then checks the org and Postgres.

use crate::write_common;

use sequin_sim::Api;
use sequin_sim::salesforce::Salesforce;
use sqlx::postgres::PgDatabaseError;
use sqlx::{Connection, PgConnection, Row};
use tokio_postgres::Client;
use write_common::*;

const MISSING_ACCOUNT: &str = "001Dn0000009999";

fn is_contact_id(id: &str) -> bool {
    id.len() == 18 && id.starts_with("003") && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn salesforce() -> Setup {
    Setup::start(Api::Salesforce, 5, "write_drivers", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await
}

/// The id of the one row with `last_name`.
async fn id_of(pg: &Client, last_name: &str) -> String {
    pg.query_one(
        "select id from salesforce.contact where last_name = $1",
        &[&last_name],
    )
    .await
    .unwrap_or_else(|e| panic!("one {last_name} row: {e}"))
    .get(0)
}

/// The org holds `id` with `title` (and, when given, `last_name`).
fn assert_in_org(sf: &Salesforce, id: &str, last_name: Option<&str>, title: Option<&str>) {
    let rec = sf
        .get("Contact", id)
        .unwrap_or_else(|| panic!("the org holds {id}"));
    if let Some(last) = last_name {
        assert_eq!(rec["LastName"], last, "{id}");
    }
    assert_eq!(rec["Title"].as_str(), title, "{id}: {rec}");
}

/// Postgres and the org agree on the driver's rows: `prefix%` rows in
/// Postgres are exactly the org's, none is provisional, and the refused
/// ones are nowhere.
async fn assert_driver_rows_consistent(t: &Setup, prefix: &str, expected: usize) {
    let rows: Vec<(String, String)> =
        t.pg.query(
            "select id, last_name from salesforce.contact where last_name like $1",
            &[&format!("{prefix}%")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), expected, "{prefix} rows: {rows:?}");
    for (id, last) in &rows {
        assert!(is_contact_id(id), "{last}: {id}");
        let rec = t
            .sim
            .salesforce()
            .get("Contact", id)
            .unwrap_or_else(|| panic!("{last} ({id}) in the org"));
        assert_eq!(rec["LastName"], last.as_str());
    }
    for refused in ["Invalid", "Orphan"] {
        assert!(
            !rows.iter().any(|(_, l)| l.ends_with(refused)),
            "{prefix}{refused} was refused: {rows:?}"
        );
    }
    assert_no_pending_ids(&t.pg, "salesforce.contact", "id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_writes() {
    let t = salesforce().await;
    let sf = t.sim.salesforce();
    let in_org = sf.count("Contact", false);
    let script = std::fs::read_to_string(driver_scripts().join("psql_writes.sql")).unwrap();
    let (out, err) = run_psql(&t.proxy_url, &script).await;
    let all = format!("stdout:\n{out}\nstderr:\n{err}");

    let inserted = out
        .lines()
        .find_map(|l| l.strip_prefix("inserted:"))
        .unwrap_or_else(|| panic!("RETURNING row: {all}"));
    let (palladio, name) = inserted.split_once(':').expect("id:name");
    assert!(is_contact_id(palladio), "{all}");
    assert_eq!(
        name, "Andrea Psql-Palladio",
        "RETURNING shows Salesforce's Name"
    );
    for tag in [
        "INSERT 0 3",
        "UPDATE 3",
        "DELETE 1",
        "two-in-one:1",
        "after-rollback:3",
    ] {
        assert!(out.lines().any(|l| l == tag), "{tag:?} in {all}");
    }
    assert!(!out.contains("not reached"), "{all}");
    // The seed's rejection, Salesforce's, and the aborted transaction.
    for expected in [
        "ERROR:  22023: [Salesforce]: ",
        "ERROR:  23514: [Salesforce]: ",
        "ERROR:  25P02:",
    ] {
        assert!(err.contains(expected), "{expected:?} in {all}");
    }
    assert!(err.contains("`email`"), "{all}");
    assert_eq!(err.matches("ERROR:  23514").count(), 2, "{all}");

    assert_in_org(sf, palladio, Some("Psql-Palladio"), Some("Architect"));
    assert_eq!(
        sf.get("Contact", palladio).unwrap()["Department"],
        "Vicenza"
    );
    for last in ["Psql-Scamozzi", "Psql-Longhena"] {
        let id = id_of(&t.pg, last).await;
        assert_in_org(sf, &id, Some(last), Some("Architect"));
    }
    assert_eq!(sf.count("Contact", false), in_org + 3);
    assert_driver_rows_consistent(&t, "Psql-", 3).await;
    t.finish().await;
}

/// The sqlx scenario, every statement prepared (named, cached) or not
/// (unnamed statement).
async fn sqlx_scenario(t: &Setup, prepared: bool) {
    let sf = t.sim.salesforce();
    let p = if prepared { "Sqlx-P-" } else { "Sqlx-U-" };
    let in_org = sf.count("Contact", false);
    let mut conn = PgConnection::connect(&t.proxy_url).await.unwrap();

    let row = sqlx::query(
        "insert into salesforce.contact (first_name, last_name, email) values ($1, $2, $3) returning id, name",
    )
    .bind("Andrea")
    .bind(format!("{p}Palladio"))
    .bind("andrea@sqlx.example")
    .persistent(prepared)
    .fetch_one(&mut conn)
    .await
    .expect("insert returning");
    let palladio: String = row.get(0);
    assert!(is_contact_id(&palladio), "{palladio}");
    assert_eq!(
        row.get::<Option<String>, _>(1),
        Some(format!("Andrea {p}Palladio"))
    );

    let r = sqlx::query("insert into salesforce.contact (last_name) values ($1), ($2), ($3)")
        .bind(format!("{p}Scamozzi"))
        .bind(format!("{p}Longhena"))
        .bind(format!("{p}Sansovino"))
        .persistent(prepared)
        .execute(&mut conn)
        .await
        .expect("multi-row insert");
    assert_eq!(r.rows_affected(), 3);

    let r = sqlx::query(
        "update salesforce.contact set title = $1 where last_name like $2 and last_name <> $3",
    )
    .bind("Architect")
    .bind(format!("{p}%"))
    .bind(format!("{p}Sansovino"))
    .persistent(prepared)
    .execute(&mut conn)
    .await
    .expect("update where");
    assert_eq!(r.rows_affected(), 3);

    let sansovino = id_of(&t.pg, &format!("{p}Sansovino")).await;
    let r = sqlx::query("delete from salesforce.contact where id = $1")
        .bind(&sansovino)
        .persistent(prepared)
        .execute(&mut conn)
        .await
        .expect("delete");
    assert_eq!(r.rows_affected(), 1);
    assert!(sf.get("Contact", &sansovino).is_none());

    // Refused locally, then by Salesforce.
    let err = sqlx::query("insert into salesforce.contact (last_name, email) values ($1, $2)")
        .bind(format!("{p}Invalid"))
        .bind("andrea__invalid")
        .persistent(prepared)
        .execute(&mut conn)
        .await
        .expect_err("an invalid email");
    let db = err
        .as_database_error()
        .expect("a server error")
        .downcast_ref::<PgDatabaseError>();
    assert_eq!(db.code(), "22023", "{db:?}");
    assert!(db.message().starts_with("[Salesforce]: "), "{db:?}");
    assert!(db.message().contains("`email`"), "{db:?}");
    assert_eq!(db.column(), Some("email"), "{db:?}");
    assert_eq!(db.table(), Some("contact"), "{db:?}");
    let orphan = sqlx::query(
        "insert into salesforce.contact (last_name, account_id) values ($1, $2) returning id",
    )
    .bind(format!("{p}Orphan"))
    .bind(MISSING_ACCOUNT);
    let err = orphan
        .persistent(prepared)
        .fetch_one(&mut conn)
        .await
        .expect_err("a missing account");
    let db = err
        .as_database_error()
        .expect("a server error")
        .downcast_ref::<PgDatabaseError>();
    assert_eq!(db.code(), "23514", "{db:?}");
    assert!(db.message().starts_with("[Salesforce]: "), "{db:?}");
    assert_eq!(db.column(), Some("account_id"), "{db:?}");

    // A failed write aborts the transaction.
    let mut tx = conn.begin().await.unwrap();
    let err = sqlx::query("insert into salesforce.contact (last_name, account_id) values ($1, $2)")
        .bind(format!("{p}Orphan"))
        .bind(MISSING_ACCOUNT)
        .persistent(prepared)
        .execute(&mut *tx)
        .await
        .expect_err("a missing account in a transaction");
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("23514")
    );
    let err = sqlx::query("select 1")
        .persistent(prepared)
        .execute(&mut *tx)
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("25P02")
    );
    tx.rollback().await.unwrap();

    assert_in_org(
        sf,
        &palladio,
        Some(&format!("{p}Palladio")),
        Some("Architect"),
    );
    for last in ["Scamozzi", "Longhena"] {
        let id = id_of(&t.pg, &format!("{p}{last}")).await;
        assert_in_org(sf, &id, None, Some("Architect"));
    }
    assert_eq!(sf.count("Contact", false), in_org + 3);
    assert_driver_rows_consistent(t, p, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_prepared_and_unprepared_writes() {
    let t = salesforce().await;
    sqlx_scenario(&t, true).await;
    sqlx_scenario(&t, false).await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_and_sqlalchemy_orm_writes() {
    let python = tokio::task::spawn_blocking(python_env).await.unwrap();
    let t = salesforce().await;
    let sf = t.sim.salesforce();
    let in_org = sf.count("Contact", false);
    let (ok, out, err) = run_script(
        tokio::process::Command::new(python)
            .arg(driver_scripts().join("psycopg_sqlalchemy_writes.py"))
            .arg(&t.proxy_url),
    )
    .await;
    assert!(ok, "psycopg/SQLAlchemy scenario failed:\n{out}\n{err}");
    assert!(out.contains("psycopg+sqlalchemy writes ok"), "{out}");
    let result = script_result(&out);
    let orm = result["orm"].as_str().unwrap();
    assert_in_org(sf, orm, Some("Py-Palladio"), Some("Architect"));
    assert_eq!(
        sf.get("Contact", orm).unwrap()["FirstName"],
        "Andrea di Pietro"
    );
    let many = result["many"].as_array().unwrap();
    for (id, last) in many.iter().zip(["Py-Scamozzi", "Py-Longhena"]) {
        assert_in_org(sf, id.as_str().unwrap(), Some(last), Some("Architect"));
    }
    let deleted = result["deleted"].as_str().unwrap();
    assert_eq!(many[2].as_str(), Some(deleted));
    assert!(sf.get("Contact", deleted).is_none(), "deleted in the org");
    for id in result["prepared"].as_array().unwrap() {
        assert_in_org(sf, id.as_str().unwrap(), None, None);
    }
    for id in result["multi"].as_array().unwrap() {
        assert_in_org(sf, id.as_str().unwrap(), None, None);
    }
    for id in result["piped"].as_array().unwrap() {
        assert_in_org(sf, id.as_str().unwrap(), None, Some("Piped"));
    }
    // Palladio, Scamozzi, Longhena, two prepared, three in one statement,
    // two pipelined; the create rolled back with its pipeline is undone.
    sequin_e2e::eventually(
        std::time::Duration::from_secs(30),
        "the org holds exactly the committed contacts",
        || async {
            let n = sf.count("Contact", false);
            (n == in_org + 10, n)
        },
    )
    .await;
    assert_driver_rows_consistent(&t, "Py-", 10).await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_writes() {
    let modules = tokio::task::spawn_blocking(node_modules).await.unwrap();
    let t = salesforce().await;
    let sf = t.sim.salesforce();
    let in_org = sf.count("Contact", false);
    let (ok, out, err) = run_script(
        tokio::process::Command::new("node")
            .env("NODE_PATH", &modules)
            .arg(driver_scripts().join("node_pg_writes.js"))
            .arg(&t.proxy_url),
    )
    .await;
    assert!(ok, "node-postgres scenario failed:\n{out}\n{err}");
    assert!(out.contains("node-postgres writes ok"), "{out}");
    let result = script_result(&out);
    let inserted = result["inserted"].as_array().unwrap();
    assert_in_org(
        sf,
        inserted[0].as_str().unwrap(),
        Some("Js-Palladio"),
        Some("Architect"),
    );
    assert_in_org(
        sf,
        inserted[1].as_str().unwrap(),
        Some("Js-Scamozzi"),
        Some("Architect"),
    );
    let deleted = result["deleted"].as_str().unwrap();
    assert!(sf.get("Contact", deleted).is_none(), "deleted in the org");
    for id in result["many"].as_array().unwrap() {
        let id = id.as_str().unwrap();
        if id != deleted {
            assert_in_org(sf, id, None, Some("Architect"));
        }
    }
    // Palladio, Scamozzi, Longhena, Tirali.
    assert_eq!(sf.count("Contact", false), in_org + 4);
    assert_driver_rows_consistent(&t, "Js-", 4).await;
    t.finish().await;
}
