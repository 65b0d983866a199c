//! The interception seam: statements writing synced tables reach the
//! interceptor (simple Query and Execute of a portal classified at Parse),
//! which can run injected statements on the session's connection (inside the
//! client's transaction, replies swallowed, pipeline untouched), answer with
//! rows or errors (which the proxy renders for the protocol), or pass through. Other traffic never does.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sequin_pgtemp::shared;
use sequin_proxy::codec::error_response::field;
use sequin_proxy::codec::{DataRow, ErrorResponse, FieldDescription, RowDescription};
use sequin_proxy::{
    BoxFuture, InjectError, InjectedQuery, InterceptContext, Interceptor, Outcome, Protocol,
    QueryResult, Reply, Step, SyncedTables, TableName,
};

/// Records every interception in `public.audit` through an injected
/// statement, then decides by markers in the SQL text.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

/// Protocol, SQL text and Bind parameters of one interception.
type Seen = (Protocol, String, Vec<Option<String>>);

impl Interceptor for Recorder {
    fn intercept<'a>(
        &'a self,
        ctx: &'a mut InterceptContext<'_>,
    ) -> BoxFuture<'a, Result<Outcome, InjectError>> {
        Box::pin(async move {
            let st = ctx.statement().clone();
            let params: Vec<Option<String>> = st
                .bind
                .as_ref()
                .map(|b| {
                    b.params
                        .iter()
                        .map(|p| p.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            // The last round trip carries the client's Sync when it
            // follows: `to-sync-ok` answers with the server's result,
            // `to-sync-fail` with a failed step's error.
            let to_sync = params
                .iter()
                .flatten()
                .find(|p| p.starts_with("to-sync"))
                .cloned()
                .or_else(|| {
                    ["to-sync-ok", "to-sync-fail"]
                        .into_iter()
                        .find(|m| st.sql.contains(m))
                        .map(str::to_string)
                });
            if let Some(p) = to_sync {
                let sql = if p == "to-sync-ok" {
                    "select 'from-server'::text"
                } else {
                    "select 1/0"
                };
                let results = ctx
                    .pipeline_to_sync(&[Step::Query(InjectedQuery::new(sql))])
                    .await?;
                let reply = match results.into_iter().next() {
                    Some(Ok(r)) => Reply::Done(QueryResult {
                        command_tag: "INSERT 0 1".into(),
                        ..r
                    }),
                    Some(Err(e)) => Reply::Failed(e),
                    None => return Err(InjectError::Closed),
                };
                // Nothing more may go to the server once the Sync went.
                if ctx.query("select 1", &[]).await.is_ok() {
                    panic!("a statement after the client's Sync was allowed");
                }
                return Ok(Outcome::Respond(vec![reply]));
            }
            // Answered without a word to the server.
            if params.iter().flatten().any(|p| p.contains("at-once")) {
                return Ok(Outcome::Respond(vec![Reply::Done(QueryResult {
                    command_tag: "INSERT 0 1".into(),
                    ..QueryResult::default()
                })]));
            }
            let protocol = format!("{:?}", st.protocol);
            let tables: Vec<String> = st
                .classification
                .statements
                .iter()
                .flat_map(|s| s.writes.iter().map(|w| w.table.to_string()))
                .collect();
            let inserted = ctx
                .query(
                    "insert into public.audit (sql, protocol, tables) values ($1, $2, $3) returning id",
                    &[Some(&st.sql), Some(&protocol), Some(&tables.join(","))],
                )
                .await?;
            assert_eq!(inserted.command_tag, "INSERT 0 1");
            assert_eq!(inserted.rows.len(), 1);
            assert_eq!(inserted.columns.fields[0].name, "id");
            // An injected failure is reported, and (simple protocol) a Sync
            // recovers the connection.
            if st.sql.contains("inject-failure") {
                let err = ctx.query("select 1/0", &[]).await.unwrap_err();
                match err {
                    InjectError::Server(e) => assert_eq!(e.code(), Some("22012")),
                    other => panic!("unexpected {other}"),
                }
                assert!(ctx.server_failed());
                return Ok(Outcome::Respond(vec![Reply::Failed(ErrorResponse::new(
                    "ERROR",
                    "22012",
                    "injected failure reported",
                ))]));
            }
            self.seen
                .lock()
                .unwrap()
                .push((st.protocol, st.sql.clone(), params.clone()));
            let marker = params
                .iter()
                .flatten()
                .map(String::as_str)
                .chain([st.sql.as_str()]);
            let marker: Vec<&str> = marker.collect();
            if marker.iter().any(|m| m.contains("reject")) {
                return Ok(Outcome::Respond(vec![Reply::Failed(
                    ErrorResponse::new("ERROR", "23514", "[Stripe]: Invalid email")
                        .with(field::DETAIL, "HTTP 400, code email_invalid")
                        .with(field::SCHEMA, "stripe")
                        .with(field::TABLE, "customer")
                        .with(field::COLUMN, "email"),
                )]));
            }
            if marker.iter().any(|m| m.contains("synth")) {
                return Ok(Outcome::Respond(vec![Reply::Done(QueryResult {
                    columns: RowDescription {
                        fields: vec![FieldDescription::new("id", 25)],
                    },
                    rows: vec![DataRow::from_text([Some("cus_from_api")])],
                    command_tag: "INSERT 0 1".into(),
                    notices: Vec::new(),
                })]));
            }
            Ok(Outcome::PassThrough)
        })
    }
}

async fn setup() -> (
    &'static sequin_pgtemp::Cluster,
    String,
    Arc<Recorder>,
    sequin_proxy::ProxyHandle,
) {
    let cluster = shared().unwrap();
    let db = database(cluster, "icpt");
    cluster
        .psql(
            &db,
            "create schema stripe; \
             create table stripe.customer (id text primary key, email text); \
             create table public.audit (id serial primary key, sql text, protocol text, tables text); \
             create table public.other (id text)",
        )
        .unwrap();
    let recorder = Arc::new(Recorder::default());
    let proxy = proxy_to(
        cluster.port(),
        SyncedTables::new([TableName::new("stripe", "customer")]),
        recorder.clone(),
    )
    .await;
    (cluster, db, recorder, proxy)
}

/// Statements the proxy counted as answered by the interceptor, and as
/// passed through.
fn handled(proxy: &sequin_proxy::ProxyHandle) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = proxy.stats();
    (
        stats.statements_intercepted.load(Relaxed),
        stats.statements_passed.load(Relaxed),
    )
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("select count(*) from {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn simple_and_extended_writes_reach_the_interceptor_and_pass_through() {
    let (cluster, db, recorder, proxy) = setup().await;
    let client = connect(&via(cluster, &proxy, &db)).await;

    client
        .simple_query("insert into stripe.customer values ('c1', 'a@example.com')")
        .await
        .unwrap();
    client
        .execute(
            "insert into stripe.customer (id, email) values ($1, $2)",
            &[&"c2", &"b@example.com"],
        )
        .await
        .unwrap();
    // A data-modifying CTE is a write too.
    client
        .simple_query(
            "with u as (update stripe.customer set email = 'c@example.com' where id = 'c1' returning id) select * from u",
        )
        .await
        .unwrap();
    // Reads of synced tables and writes of other tables are not intercepted.
    client
        .query("select * from stripe.customer", &[])
        .await
        .unwrap();
    client
        .execute("insert into public.other values ($1)", &[&"x"])
        .await
        .unwrap();

    assert_eq!(count(&client, "stripe.customer").await, 2);
    let audit = client
        .query(
            "select sql, protocol, tables from public.audit order by id",
            &[],
        )
        .await
        .unwrap();
    let audit: Vec<(String, String, String)> = audit
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert_eq!(audit[0].1, "Simple");
    assert_eq!(audit[1].1, "Extended");
    assert_eq!(
        audit[1].0,
        "insert into stripe.customer (id, email) values ($1, $2)"
    );
    assert!(audit.iter().all(|a| a.2 == "stripe.customer"));
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(
        seen[1].2,
        [Some("c2".to_string()), Some("b@example.com".to_string())],
        "the interceptor sees the Bind parameters"
    );
    // Counted for metrics: the recorder passed its three back, and the four
    // other statements never reached it.
    let (intercepted, passed) = handled(&proxy);
    assert_eq!((intercepted, passed), (0, 7));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn injected_statements_run_inside_the_client_transaction() {
    let (cluster, db, _recorder, proxy) = setup().await;
    let mut client = connect(&via(cluster, &proxy, &db)).await;
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "insert into stripe.customer values ($1, $2)",
        &[&"t1", &"x"],
    )
    .await
    .unwrap();
    // The injected audit row is visible inside the transaction...
    let n: i64 = tx
        .query_one("select count(*) from public.audit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    tx.rollback().await.unwrap();
    // ...and rolled back with it: the injection joined the client's
    // transaction instead of committing on its own.
    assert_eq!(count(&client, "public.audit").await, 0);
    assert_eq!(count(&client, "stripe.customer").await, 0);

    // Committed transactions keep both.
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("insert into stripe.customer values ('t2', 'y')")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(&client, "public.audit").await, 1);
    assert_eq!(count(&client, "stripe.customer").await, 1);
}

#[tokio::test]
async fn synthesized_rows_and_errors_reach_the_client() {
    let (cluster, db, _recorder, proxy) = setup().await;
    let client = connect(&via(cluster, &proxy, &db)).await;

    // Simple protocol: synthesized RowDescription/DataRow/CommandComplete,
    // then the server's own ReadyForQuery.
    let msgs = client
        .simple_query("insert into stripe.customer values ('synth', 'x') returning id")
        .await
        .unwrap();
    let ids: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["cus_from_api"]);
    let tag = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(tag, Some(1));

    // Extended protocol: the client prepared (Describe answered by the
    // server), the interceptor answers the Execute.
    let row = client
        .query_one(
            "insert into stripe.customer (id, email) values ($1, $2) returning id",
            &[&"synth", &"y"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "cus_from_api");
    assert_eq!(
        count(&client, "stripe.customer").await,
        0,
        "synthesized, not executed"
    );

    // Errors with every field ORMs map to forms.
    for simple in [true, false] {
        let err = if simple {
            client
                .simple_query("insert into stripe.customer values ('c', 'reject')")
                .await
                .unwrap_err()
        } else {
            client
                .execute(
                    "insert into stripe.customer (id, email) values ($1, $2)",
                    &[&"c", &"reject"],
                )
                .await
                .unwrap_err()
        };
        let e = err.as_db_error().expect("server-style error");
        assert_eq!(e.code().code(), "23514");
        assert_eq!(e.message(), "[Stripe]: Invalid email");
        assert_eq!(e.detail(), Some("HTTP 400, code email_invalid"));
        assert_eq!(e.schema(), Some("stripe"));
        assert_eq!(e.table(), Some("customer"));
        assert_eq!(e.column(), Some("email"));
    }
    // The session is intact after synthesized errors, in both protocols.
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // Two answered with rows, two with errors; the count and `select 1`
    // passed through.
    assert_eq!(handled(&proxy), (4, 2));

    // An injected statement that fails: the interceptor reports it; the
    // session recovers (simple protocol: the proxy syncs).
    let err = client
        .simple_query("insert into stripe.customer values ('inject-failure', 'x')")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "22012");
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn pipelined_statements_around_an_interception_keep_their_order() {
    let (cluster, db, _recorder, proxy) = setup().await;
    let client = connect(&via(cluster, &proxy, &db)).await;
    let plain = client.prepare("select $1::int * 2").await.unwrap();
    let write = client
        .prepare("insert into stripe.customer (id, email) values ($1, $2)")
        .await
        .unwrap();
    let mut futs = Vec::new();
    for i in 0..30i32 {
        let c = &client;
        let (plain, write) = (&plain, &write);
        futs.push(async move {
            if i % 3 == 0 {
                let id = format!("p{i}");
                c.execute(write, &[&id, &"e"]).await.unwrap() as i32
            } else {
                c.query_one(plain, &[&i]).await.unwrap().get::<_, i32>(0)
            }
        });
    }
    let results = futures_util::future::join_all(futs).await;
    for (i, r) in results.into_iter().enumerate() {
        let i = i as i32;
        assert_eq!(r, if i % 3 == 0 { 1 } else { i * 2 }, "result {i}");
    }
    assert_eq!(count(&client, "stripe.customer").await, 10);
    assert_eq!(count(&client, "public.audit").await, 10);
}

#[tokio::test]
async fn the_synced_set_is_updatable_at_runtime() {
    let (cluster, db, _recorder, proxy) = setup().await;
    let client = connect(&via(cluster, &proxy, &db)).await;
    client
        .simple_query("insert into public.other values ('a')")
        .await
        .unwrap();
    assert_eq!(count(&client, "public.audit").await, 0);
    proxy.synced().insert(TableName::new("public", "other"));
    client
        .simple_query("insert into public.other values ('b')")
        .await
        .unwrap();
    assert_eq!(count(&client, "public.audit").await, 1);
    proxy.synced().replace([]);
    client
        .simple_query("insert into stripe.customer values ('z', 'z')")
        .await
        .unwrap();
    assert_eq!(count(&client, "public.audit").await, 1);
}

/// Messages up to and including the next ReadyForQuery, with their tags
/// as a string. A second ReadyForQuery for one Sync would start the next
/// exchange's tags, which the tests compare whole.
async fn exchange(raw: &mut Raw) -> (String, Vec<bytes::BytesMut>) {
    let mut tags = String::new();
    let mut msgs = Vec::new();
    loop {
        let m = raw.next().await.expect("a reply");
        tags.push(m[0] as char);
        let end = m[0] == b'Z';
        msgs.push(m);
        if end {
            return (tags, msgs);
        }
    }
}

/// [Parse,] Bind (text parameters) of `statement` into the unnamed portal,
/// Execute, Sync.
fn bind_execute_sync(
    parse: Option<(&str, &str)>,
    statement: &str,
    params: &[&str],
) -> bytes::BytesMut {
    use sequin_proxy::codec::{Bind, Execute, Message, Parse, Sync};
    let mut out = bytes::BytesMut::new();
    if let Some((name, sql)) = parse {
        Parse {
            name: name.into(),
            sql: sql.into(),
            param_types: vec![],
        }
        .encode(&mut out);
    }
    Bind {
        portal: String::new(),
        statement: statement.into(),
        param_formats: vec![],
        params: params
            .iter()
            .map(|p| Some(bytes::Bytes::copy_from_slice(p.as_bytes())))
            .collect(),
        result_formats: vec![],
    }
    .encode(&mut out);
    Execute {
        portal: String::new(),
        max_rows: 0,
    }
    .encode(&mut out);
    Sync.encode(&mut out);
    out
}

/// A simple Query message.
fn query(sql: &str) -> bytes::BytesMut {
    use sequin_proxy::codec::{Message, Query};
    let mut out = bytes::BytesMut::new();
    Query { sql: sql.into() }.encode(&mut out);
    out
}

/// A Bind (and Parse) sent in front of an intercepted Execute: the server's
/// replies to them are read in the interceptor's own round trip and reach
/// the client first, in order, whatever the interceptor does; a Bind that
/// fails reaches the client once, the Execute is skipped as Postgres would
/// skip it, and the session goes on.
#[tokio::test]
async fn replies_owed_before_an_interception_reach_the_client_in_order() {
    use sequin_proxy::codec::{DataRow, ErrorResponse, Flush, Message, Sync};
    let (cluster, db, recorder, proxy) = setup().await;
    let mut raw = Raw::connect(&proxy, &db).await;
    let insert = "insert into stripe.customer (id, email) values ($1, $2)";
    // Passed through: ParseComplete, BindComplete, then the server's own
    // CommandComplete.
    raw.send(&bind_execute_sync(Some(("w", insert)), "w", &["a1", "e"]))
        .await;
    assert_eq!(exchange(&mut raw).await.0, "12CZ");
    // Synthesized rows after the owed BindComplete.
    raw.send(&bind_execute_sync(None, "w", &["synth", "e"]))
        .await;
    assert_eq!(exchange(&mut raw).await.0, "2DCZ");
    // Without a Sync behind it (Execute, then Flush: the client waits for
    // the answer before it goes on), the answer is not held back.
    let mut out = bind_execute_sync(None, "w", &["synth", "e"]);
    out.truncate(out.len() - 5);
    Flush.encode(&mut out);
    raw.send(&out).await;
    let mut tags = String::new();
    for _ in 0..3 {
        tags.push(raw.next().await.expect("the answer before any Sync")[0] as char);
    }
    assert_eq!(tags, "2DC");
    let mut out = bytes::BytesMut::new();
    Sync.encode(&mut out);
    raw.send(&out).await;
    assert_eq!(exchange(&mut raw).await.0, "Z");
    // Answered without the server: the proxy still gets the BindComplete
    // first.
    raw.send(&bind_execute_sync(None, "w", &["at-once", "e"]))
        .await;
    assert_eq!(exchange(&mut raw).await.0, "2CZ");
    // A Bind that fails (not an integer): its error, once, then
    // ReadyForQuery; the interceptor's statement was skipped with it.
    let audited = recorder.seen.lock().unwrap().len();
    raw.send(&bind_execute_sync(
        Some((
            "f",
            "insert into stripe.customer (id, email) values ($1::int::text, $2)",
        )),
        "f",
        &["not a number", "e"],
    ))
    .await;
    let (tags, msgs) = exchange(&mut raw).await;
    assert_eq!(tags, "1EZ");
    assert_eq!(
        ErrorResponse::decode(&msgs[1]).unwrap().code(),
        Some("22P02")
    );
    assert_eq!(recorder.seen.lock().unwrap().len(), audited);
    // The session goes on, prepared statements and all.
    raw.send(&bind_execute_sync(None, "w", &["a2", "e"])).await;
    assert_eq!(exchange(&mut raw).await.0, "2CZ");
    raw.send(&query("select count(*) from stripe.customer"))
        .await;
    let (tags, msgs) = exchange(&mut raw).await;
    assert_eq!(tags, "TDCZ");
    let row = DataRow::decode(&msgs[1]).unwrap();
    assert_eq!(row.values[0].as_deref(), Some(&b"2"[..]));
    let audit: i64 = connect(&via(cluster, &proxy, &db))
        .await
        .query_one("select count(*) from public.audit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        audit, 4,
        "a1, synth twice and a2 were audited; the failed Bind was not"
    );
}

/// The interceptor's last round trip carries the client's Sync when it
/// follows the Execute: the client gets the answer and exactly one
/// ReadyForQuery, with the right transaction status, after a success and
/// after a failed step alike, and its next statements are not skipped.
#[tokio::test]
async fn the_last_round_trip_carries_the_clients_sync() {
    use sequin_proxy::codec::{DataRow, ErrorResponse, Message, ReadyForQuery};
    let (cluster, db, _recorder, proxy) = setup().await;
    let mut raw = Raw::connect(&proxy, &db).await;
    let insert = "insert into stripe.customer (id, email) values ($1, 'e')";
    raw.send(&bind_execute_sync(
        Some(("w", insert)),
        "w",
        &["to-sync-ok"],
    ))
    .await;
    let (tags, msgs) = exchange(&mut raw).await;
    assert_eq!(tags, "12DCZ");
    let row = DataRow::decode(&msgs[2]).unwrap();
    assert_eq!(row.values[0].as_deref(), Some(&b"from-server"[..]));
    assert_eq!(ReadyForQuery::decode(&msgs[4]).unwrap().status, b'I');
    // A failed step: its error, then ReadyForQuery, once.
    raw.send(&bind_execute_sync(None, "w", &["to-sync-fail"]))
        .await;
    let (tags, msgs) = exchange(&mut raw).await;
    assert_eq!(tags, "2EZ");
    let e = ErrorResponse::decode(&msgs[1]).unwrap();
    assert_eq!(e.code(), Some("22012"));
    // Inside a transaction block the status says so: `T`, then `E` after
    // the failure, and ROLLBACK recovers.
    raw.send(&query("begin")).await;
    assert_eq!(exchange(&mut raw).await.0, "CZ");
    raw.send(&bind_execute_sync(None, "w", &["to-sync-ok"]))
        .await;
    let (tags, msgs) = exchange(&mut raw).await;
    assert_eq!(tags, "2DCZ");
    assert_eq!(ReadyForQuery::decode(&msgs[3]).unwrap().status, b'T');
    raw.send(&bind_execute_sync(None, "w", &["to-sync-fail"]))
        .await;
    let (tags, msgs) = exchange(&mut raw).await;
    assert_eq!(tags, "2EZ");
    assert_eq!(ReadyForQuery::decode(&msgs[2]).unwrap().status, b'E');
    raw.send(&query("rollback")).await;
    assert_eq!(exchange(&mut raw).await.0, "CZ");
    // The session goes on: a plain pass-through write, not skipped.
    raw.send(&bind_execute_sync(None, "w", &["a9"])).await;
    assert_eq!(exchange(&mut raw).await.0, "2CZ");
    let n: i64 = connect(&via(cluster, &proxy, &db))
        .await
        .query_one("select count(*) from stripe.customer where id = 'a9'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// In the simple protocol the Sync the proxy sends after an answer goes
/// with the interceptor's last round trip: the client gets the answer and
/// the right transaction status, and the session goes on.
#[tokio::test]
async fn the_last_round_trip_carries_the_proxys_sync_in_the_simple_protocol() {
    let (cluster, db, _recorder, proxy) = setup().await;
    let client = connect(&via(cluster, &proxy, &db)).await;
    let rows = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
        msgs.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
                _ => None,
            })
            .collect()
    };
    let got = client
        .simple_query("insert into stripe.customer values ('to-sync-ok', 'x')")
        .await
        .unwrap();
    assert_eq!(rows(got), ["from-server"]);
    let err = client
        .simple_query("insert into stripe.customer values ('to-sync-fail', 'x')")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "22012");
    // In a transaction block: still in it after the answer, aborted after
    // the failure (so the next statement is refused), and ROLLBACK works.
    client.batch_execute("begin").await.unwrap();
    let got = client
        .simple_query("insert into stripe.customer values ('to-sync-ok', 'x')")
        .await
        .unwrap();
    assert_eq!(rows(got), ["from-server"]);
    // SAVEPOINT works only inside a transaction block.
    client
        .batch_execute("savepoint still_in_the_block")
        .await
        .unwrap();
    client
        .simple_query("insert into stripe.customer values ('to-sync-fail', 'x')")
        .await
        .unwrap_err();
    let err = client.simple_query("select 1").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25P02");
    client.batch_execute("rollback").await.unwrap();
    let got = client.simple_query("select 'after'").await.unwrap();
    assert_eq!(rows(got), ["after"]);
}
