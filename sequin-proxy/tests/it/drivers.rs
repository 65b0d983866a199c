//! The driver matrix: real drivers against real Postgres through the proxy,
//! each running DDL, inserts, selects with parameters, a transaction with
//! rollback, a server-side error (code and message checked), COPY,
//! LISTEN/NOTIFY and a cancel of `pg_sleep`.
//!
//! psql and sqlx (prepared and unprepared) run here; psycopg 3 + SQLAlchemy
//! and node-postgres run as scripts from `tests/drivers/`, with their
//! packages installed on first use into the kit's cached directory
//! (`sequin_pgtemp::drivers`: a Python venv, an npm prefix). A driver that
//! cannot be installed fails its test. tokio-postgres is covered by `protocol.rs`.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use futures_util::TryStreamExt;
use sequin_pgtemp::drivers::{node_modules, python_env, run_script};
use sequin_pgtemp::shared;
use sqlx::{Connection, Executor, PgConnection};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

#[tokio::test]
async fn psycopg3_and_sqlalchemy() {
    let python = tokio::task::spawn_blocking(python_env).await.unwrap();
    let cluster = shared().unwrap();
    let db = database(cluster, "drv");
    let proxy = plain_proxy(cluster).await;
    let (ok, out, err) = run_script(
        tokio::process::Command::new(python)
            .arg(scripts().join("psycopg_sqlalchemy.py"))
            .arg(via(cluster, &proxy, &db)),
    )
    .await;
    assert!(ok, "psycopg/SQLAlchemy scenario failed:\n{out}\n{err}");
    assert!(out.contains("psycopg+sqlalchemy ok"), "{out}");
}

#[tokio::test]
async fn node_postgres() {
    let modules = tokio::task::spawn_blocking(node_modules).await.unwrap();
    let cluster = shared().unwrap();
    let db = database(cluster, "drv");
    let proxy = plain_proxy(cluster).await;
    let (ok, out, err) = run_script(
        tokio::process::Command::new("node")
            .env("NODE_PATH", &modules)
            .arg(scripts().join("node_pg.js"))
            .arg(via(cluster, &proxy, &db)),
    )
    .await;
    assert!(ok, "node-postgres scenario failed:\n{out}\n{err}");
    assert!(out.contains("node-postgres ok"), "{out}");
}

#[tokio::test]
async fn psql() {
    let cluster = shared().unwrap();
    let db = database(cluster, "drv");
    let proxy = plain_proxy(cluster).await;
    let url = via(cluster, &proxy, &db);
    let psql = cluster.bindir().join("psql");
    let (ok, out, err) = run_script(
        tokio::process::Command::new(&psql)
            .args(["-X", "-A", "-t", "-d", &url, "-f"])
            .arg(scripts().join("psql_scenario.sql")),
    )
    .await;
    // The script ends with a deliberate unique violation.
    assert!(ok, "psql exits 0 with ON_ERROR_STOP off:\n{out}\n{err}");
    for expected in [
        "param:two",
        "prepared:one",
        "count:2",
        "copied:10\ncopied:11",
        "Asynchronous notification \"psql_chan\" with payload \"hello from psql\" received",
        "after notify",
    ] {
        assert!(
            out.contains(expected),
            "missing {expected:?} in:\n{out}\n{err}"
        );
    }
    assert!(
        err.contains(
            "ERROR:  23505: duplicate key value violates unique constraint \"psql_item_pkey\""
        ),
        "{err}"
    );

    // Ctrl-C in psql sends a CancelRequest through the proxy.
    let child = tokio::process::Command::new(&psql)
        .args(["-X", "-d", &url, "-c", "select pg_sleep(60)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = std::time::Instant::now();
    let status = tokio::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let o = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("psql returns after the cancel")
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("canceling statement due to user request"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// The sqlx scenario, with every statement prepared (named, cached) or
/// unprepared (unnamed statement).
async fn sqlx_scenario(url: &str, prepared: bool) {
    let t = if prepared { "sx_prep" } else { "sx_unprep" };
    let mut conn = PgConnection::connect(url).await.unwrap();
    conn.execute(
        format!(
            "drop table if exists {t}; create table {t} (id int primary key, name text not null)"
        )
        .as_str(),
    )
    .await
    .unwrap();
    for i in 0..10i32 {
        sqlx::query(&format!("insert into {t} (id, name) values ($1, $2)"))
            .bind(i)
            .bind(format!("n{i}"))
            .persistent(prepared)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (name,): (String,) = sqlx::query_as(&format!("select name from {t} where id = $1"))
        .bind(3i32)
        .persistent(prepared)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(name, "n3");

    let mut tx = conn.begin().await.unwrap();
    sqlx::query(&format!("insert into {t} values ($1, 'rolled back')"))
        .bind(100i32)
        .persistent(prepared)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let (n,): (i64,) = sqlx::query_as(&format!("select count(*) from {t} where id = 100"))
        .persistent(prepared)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 0);

    let err = sqlx::query(&format!("insert into {t} values ($1, 'dup')"))
        .bind(1i32)
        .persistent(prepared)
        .execute(&mut conn)
        .await
        .unwrap_err();
    let db_err = err.as_database_error().expect("a server error");
    assert_eq!(db_err.code().as_deref(), Some("23505"));
    assert!(
        db_err.message().contains("duplicate key"),
        "{}",
        db_err.message()
    );
    assert_eq!(db_err.table(), Some(t));

    let mut copy = conn
        .copy_in_raw(&format!("copy {t} (id, name) from stdin"))
        .await
        .unwrap();
    let mut data = String::new();
    for i in 1000..6000 {
        data.push_str(&format!("{i}\tc{i}\n"));
    }
    copy.send(data.as_bytes()).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), 5000);
    let chunks: Vec<bytes::Bytes> = conn
        .copy_out_raw(&format!(
            "copy (select id from {t} where id >= 1000) to stdout"
        ))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let lines = chunks
        .iter()
        .flat_map(|c| c.iter())
        .filter(|b| **b == b'\n')
        .count();
    assert_eq!(lines, 5000);

    let mut listener = sqlx::postgres::PgListener::connect(url).await.unwrap();
    listener.listen(&format!("{t}_chan")).await.unwrap();
    conn.execute(format!("notify {t}_chan, 'hello from sqlx'").as_str())
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.payload(), "hello from sqlx");

    // sqlx has no CancelRequest API: cancel from another session with
    // pg_cancel_backend (the wire-level CancelRequest is covered by psql,
    // tokio-postgres, psycopg and node-postgres).
    let marker = format!("select pg_sleep(60) /* {t} */");
    let sleeper_url = url.to_owned();
    let sleeping = tokio::spawn(async move {
        let mut c = PgConnection::connect(&sleeper_url).await.unwrap();
        sqlx::query(&marker)
            .persistent(prepared)
            .execute(&mut c)
            .await
    });
    let mut cancelled = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (n,): (i64,) = sqlx::query_as(
            "select count(*) from pg_stat_activity, pg_cancel_backend(pid) \
             where query like $1 and pid <> pg_backend_pid()",
        )
        .bind(format!("select pg_sleep(60) /* {t} */%"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if n > 0 {
            cancelled = true;
            break;
        }
    }
    assert!(cancelled, "the sleeping statement was seen and cancelled");
    let err = sleeping.await.unwrap().unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("57014")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_prepared_and_unprepared() {
    let cluster = shared().unwrap();
    let db = database(cluster, "drv");
    let proxy = plain_proxy(cluster).await;
    let url = via(cluster, &proxy, &db);
    sqlx_scenario(&url, true).await;
    sqlx_scenario(&url, false).await;
}
