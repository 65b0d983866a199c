//! The proxy is transparent for a real driver (tokio-postgres): simple and
//! extended protocol, prepared statements, pipelining, transactions,
//! server errors, COPY both ways, LISTEN/NOTIFY, cancel, large results,
//! notices and parameter status.

use crate::common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use sequin_pgtemp::shared;

#[tokio::test]
async fn simple_extended_prepared_and_pipelined_queries() {
    let cluster = shared().unwrap();
    let db = database(cluster, "proto");
    let proxy = plain_proxy(cluster).await;
    let client = connect(&via(cluster, &proxy, &db)).await;

    client
        .batch_execute("create table t (id int primary key, name text); insert into t values (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    // Extended protocol, unnamed statement, parameters.
    let row = client
        .query_one("select name from t where id = $1", &[&2i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "two");
    // Named prepared statement used many times.
    let stmt = client
        .prepare("select $1::int + id from t where id = $2")
        .await
        .unwrap();
    for i in 0..50i32 {
        let r = client.query_one(&stmt, &[&i, &1i32]).await.unwrap();
        assert_eq!(r.get::<_, i32>(0), i + 1);
    }
    // Pipelining: many queries in flight on one connection.
    let futs = (0..200i32).map(|i| {
        let client = &client;
        let stmt = &stmt;
        async move {
            client
                .query_one(stmt, &[&i, &2i32])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    });
    let sums = futures_util::future::join_all(futs).await;
    assert_eq!(sums, (0..200).map(|i| i + 2).collect::<Vec<_>>());
    // Simple protocol with several statements and results.
    let msgs = client
        .simple_query("select 1; select 'a', 'b'")
        .await
        .unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["1", "a"]);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn transactions_rollback_and_server_errors_pass_through() {
    let cluster = shared().unwrap();
    let db = database(cluster, "proto");
    let proxy = plain_proxy(cluster).await;
    let mut client = connect(&via(cluster, &proxy, &db)).await;
    client
        .batch_execute("create table acct (id int primary key, balance int check (balance >= 0))")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("insert into acct values (1, 10)", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let n: i64 = client
        .query_one("select count(*) from acct", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "rolled back insert must not be visible");

    client
        .execute("insert into acct values (1, 10)", &[])
        .await
        .unwrap();
    let err = client
        .execute("insert into acct values (1, 5)", &[])
        .await
        .unwrap_err();
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(db_err.code().code(), "23505");
    assert!(
        db_err.message().contains("duplicate key"),
        "{}",
        db_err.message()
    );
    assert_eq!(db_err.table(), Some("acct"));
    let err = client
        .execute("update acct set balance = -1 where id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "23514");
    assert_eq!(
        err.as_db_error().unwrap().constraint(),
        Some("acct_balance_check")
    );

    // An error inside a transaction block aborts it; the status comes back.
    let tx = client.transaction().await.unwrap();
    assert!(tx.execute("select 1/0", &[]).await.is_err());
    let err = tx.execute("select 1", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25P02");
    tx.rollback().await.unwrap();
    // The session is still usable.
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn copy_in_and_out_and_large_results() {
    let cluster = shared().unwrap();
    let db = database(cluster, "proto");
    let proxy = plain_proxy(cluster).await;
    let client = connect(&via(cluster, &proxy, &db)).await;
    client
        .batch_execute("create table c (id int, payload text)")
        .await
        .unwrap();
    let sink = client
        .copy_in("copy c (id, payload) from stdin")
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    let big = "x".repeat(1000);
    for chunk in 0..100 {
        let mut data = String::new();
        for i in 0..1000 {
            data.push_str(&format!("{}\t{big}\n", chunk * 1000 + i));
        }
        sink.send(bytes::Bytes::from(data)).await.unwrap();
    }
    let copied = sink.finish().await.unwrap();
    assert_eq!(copied, 100_000);

    let stream = client.copy_out("copy c to stdout").await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let lines = chunks
        .iter()
        .flat_map(|c| c.iter())
        .filter(|b| **b == b'\n')
        .count();
    assert_eq!(lines, 100_000);
    assert!(
        total > 100_000_000,
        "about 100 MB went through, got {total}"
    );

    // A large result set and a single large value.
    let rows = client
        .query("select id, payload from c order by id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 100_000);
    assert_eq!(rows[99_999].get::<_, i32>(0), 99_999);
    let big: String = client
        .query_one("select repeat('y', 50 * 1024 * 1024)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 50 * 1024 * 1024);
    // A large parameter goes the other way.
    let param = "z".repeat(20 * 1024 * 1024);
    let n: i32 = client
        .query_one("select length($1::text)", &[&param])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, param.len());
}

#[tokio::test]
async fn listen_notify_notices_and_parameter_status() {
    let cluster = shared().unwrap();
    let db = database(cluster, "proto");
    let proxy = plain_proxy(cluster).await;
    let url = via(cluster, &proxy, &db);
    let (listener, mut conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            let _ = tx.send(m);
        }
    });
    listener.batch_execute("listen jobs").await.unwrap();
    let notifier = connect(&url).await;
    notifier
        .batch_execute("notify jobs, 'hello'")
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Some(tokio_postgres::AsyncMessage::Notification(n)) => return n,
                Some(_) => continue,
                None => panic!("connection closed"),
            }
        }
    })
    .await
    .expect("notification arrives");
    assert_eq!((msg.channel(), msg.payload()), ("jobs", "hello"));
    // The notifier's pid is the real backend pid, as the proxy keeps pids.
    let pid: i32 = notifier
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(msg.process_id(), pid);

    listener
        .batch_execute("do $$ begin raise notice 'careful: %', 42; end $$")
        .await
        .unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Some(tokio_postgres::AsyncMessage::Notice(n)) => return n,
                Some(_) => continue,
                None => panic!("connection closed"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(notice.message(), "careful: 42");

    // A reported parameter changes: the driver must see it (it uses
    // ParameterStatus for client_encoding / DateStyle checks).
    listener
        .batch_execute("set application_name = 'via-proxy'")
        .await
        .unwrap();
    let app: String = listener
        .query_one("show application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "via-proxy");
}

#[tokio::test]
async fn cancel_reaches_the_right_backend() {
    let cluster = shared().unwrap();
    let db = database(cluster, "proto");
    let proxy = plain_proxy(cluster).await;
    let url = via(cluster, &proxy, &db);
    let sleeper = connect(&url).await;
    let bystander = connect(&url).await;
    let token = sleeper.cancel_token();
    let started = std::time::Instant::now();
    let sleep = tokio::spawn(async move { sleeper.execute("select pg_sleep(60)", &[]).await });
    let by = tokio::spawn(async move {
        bystander
            .query_one("select pg_sleep(1.5), 7", &[])
            .await
            .map(|r| r.get::<_, i32>(1))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = sleep.await.unwrap().unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "57014");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        by.await.unwrap().unwrap(),
        7,
        "the other session is not cancelled"
    );

    // A cancel with a wrong secret is ignored.
    let victim = connect(&url).await;
    let pid: i32 = victim
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let mut raw = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut pkt = Vec::new();
    pkt.extend_from_slice(&16u32.to_be_bytes());
    pkt.extend_from_slice(&80877102i32.to_be_bytes());
    pkt.extend_from_slice(&pid.to_be_bytes());
    pkt.extend_from_slice(&12345i32.to_be_bytes());
    raw.write_all(&pkt).await.unwrap();
    drop(raw);
    let r: i32 = victim
        .query_one("select 3 from pg_sleep(1)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(r, 3);
}
