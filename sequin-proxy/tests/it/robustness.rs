//! Robustness: malformed, truncated and oversized messages, clients that
//! vanish mid-query or mid-COPY, and a server restart end only the affected
//! session (its server session is cancelled/closed and rolled back); the
//! proxy keeps serving everybody else and never panics.

use crate::common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use sequin_pgtemp::{Cluster, shared};
use sequin_proxy::codec::{self, ErrorResponse, Message, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn backends_running(admin: &tokio_postgres::Client, pattern: &str) -> i64 {
    admin
        .query_one(
            "select count(*) from pg_stat_activity where query like $1 and pid <> pg_backend_pid()",
            &[&pattern],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn malformed_messages_end_only_the_offending_session() {
    let cluster = shared().unwrap();
    let db = database(cluster, "robust");
    let proxy = plain_proxy(cluster).await;
    let healthy = connect(&via(cluster, &proxy, &db)).await;

    // A length below four.
    let mut raw = Raw::connect(&proxy, &db).await;
    raw.send(&[b'Q', 0, 0, 0, 2]).await;
    let e = raw.error_then_close().await;
    assert_eq!(e.code(), Some("08P01"), "{e}");
    assert!(e.message().unwrap().contains("invalid length"), "{e}");

    // A length beyond the limit.
    let mut raw = Raw::connect(&proxy, &db).await;
    raw.send(&[b'Q', 0x7f, 0xff, 0xff, 0xff, b's']).await;
    let e = raw.error_then_close().await;
    assert_eq!(e.code(), Some("08P01"), "{e}");
    assert!(e.message().unwrap().contains("exceeds"), "{e}");

    // An unknown message type: relayed; Postgres itself rejects it.
    let mut raw = Raw::connect(&proxy, &db).await;
    raw.send(&[b'y', 0, 0, 0, 4]).await;
    let e = raw.error_then_close().await;
    assert_eq!(e.code(), Some("08P01"), "{e}");

    // A Query whose body is malformed (no terminator): relayed; Postgres
    // rejects it with an ERROR and, like Postgres, the session goes on.
    let mut raw = Raw::connect(&proxy, &db).await;
    raw.send(&[b'Q', 0, 0, 0, 7, b's', b'e', b'l']).await;
    let first = raw.next().await.unwrap();
    let e = ErrorResponse::decode(&first).unwrap();
    assert_eq!(e.code(), Some("08P01"), "{e}");
    assert_eq!(raw.next().await.unwrap()[0], b'Z');
    raw.send(
        &Query {
            sql: "select 1".into(),
        }
        .to_bytes(),
    )
    .await;
    let mut tags = Vec::new();
    loop {
        let m = raw.next().await.unwrap();
        tags.push(m[0]);
        if m[0] == b'Z' {
            break;
        }
    }
    assert_eq!(tags, b"TDCZ");
    drop(raw);

    // A truncated message, then the client leaves.
    let mut raw = Raw::connect(&proxy, &db).await;
    raw.send(&[b'Q', 0, 0, 0, 100, b's', b'e']).await;
    drop(raw);

    // A garbage startup packet.
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(&[0, 0, 0, 3]).await.unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    assert_eq!(
        reply.first(),
        Some(&b'E'),
        "a FATAL error for a bad startup packet"
    );

    // A startup packet with an unknown protocol version.
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0, 9, 0, 0]).await.unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    assert_eq!(reply.first(), Some(&b'E'));

    // The well-behaved session was never disturbed.
    let n: i64 = healthy
        .query_one("select 40 + 2::bigint", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 42);
    eventually("only the healthy session remains", async || {
        proxy
            .stats()
            .active_sessions
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
}

#[tokio::test]
async fn a_client_vanishing_mid_query_cancels_its_server_work() {
    let cluster = shared().unwrap();
    let db = database(cluster, "robust");
    let proxy = plain_proxy(cluster).await;
    let admin = connect(&cluster.url(&db)).await;

    let mut raw = Raw::connect(&proxy, &db).await;
    raw.send(
        &Query {
            sql: "select pg_sleep(120) /* vanish */".into(),
        }
        .to_bytes(),
    )
    .await;
    eventually("the sleep runs", async || {
        backends_running(&admin, "%pg_sleep(120) /* vanish */%").await == 1
    })
    .await;
    drop(raw);
    eventually("the abandoned backend is gone", async || {
        backends_running(&admin, "%pg_sleep(120) /* vanish */%").await == 0
    })
    .await;
}

#[tokio::test]
async fn a_client_vanishing_mid_copy_rolls_back() {
    let cluster = shared().unwrap();
    let db = database(cluster, "robust");
    let proxy = plain_proxy(cluster).await;
    let admin = connect(&cluster.url(&db)).await;
    admin
        .batch_execute("create table c (id int)")
        .await
        .unwrap();

    let mut raw = Raw::connect(&proxy, &db).await;
    raw.send(
        &Query {
            sql: "copy c from stdin /* vanish-copy */".into(),
        }
        .to_bytes(),
    )
    .await;
    let g = raw.next().await.unwrap();
    assert_eq!(g[0], b'G', "CopyInResponse");
    let mut out = BytesMut::new();
    for i in 0..1000 {
        codec::CopyData {
            data: bytes::Bytes::from(format!("{i}\n")),
        }
        .encode(&mut out);
    }
    raw.send(&out).await;
    drop(raw);
    eventually("the COPY backend is gone", async || {
        backends_running(&admin, "%vanish-copy%").await == 0
    })
    .await;
    let n: i64 = admin
        .query_one("select count(*) from c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the unfinished COPY is rolled back");
}

#[tokio::test]
async fn a_server_restart_ends_sessions_cleanly_and_the_proxy_keeps_serving() {
    let mut cluster = Cluster::start().unwrap();
    let proxy = plain_proxy(&cluster).await;
    let url = via(&cluster, &proxy, "postgres");
    let before = connect(&url).await;
    let sleeper = connect(&url).await;
    let sleeping = tokio::spawn(async move { sleeper.execute("select pg_sleep(60)", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    tokio::task::spawn_blocking(move || {
        cluster.restart().unwrap();
        cluster
    })
    .await
    .map(|c| {
        // The old sessions see an error, not a hang.
        let cluster = c;
        async move {
            let err = sleeping.await.unwrap().unwrap_err();
            assert!(
                err.as_db_error()
                    .map(|e| e.code().code() == "57P01")
                    .unwrap_or(true),
                "{err}"
            );
            assert!(before.query_one("select 1", &[]).await.is_err());
            // New sessions work against the restarted server.
            let after = connect(&url).await;
            let one: i32 = after.query_one("select 1", &[]).await.unwrap().get(0);
            assert_eq!(one, 1);
            drop(cluster);
        }
    })
    .unwrap()
    .await;
}
