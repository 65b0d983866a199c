//! Events (issue #15): every committed change to a synced table becomes one
//! event in `sequin.events`, with its origin, in order per record; every
//! sink gets them: a webhook receiver (signatures checked as the example
//! consumer checks them), NATS JetStream (a real `nats-server -js`) and
//! NOTIFY (a listening session).

use crate::write_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};

use sequin_e2e::eventually;
use sequin_sim::Api;
use sequin_sim::stripe::Kind;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use write_common::*;

/// One row of `sequin.events`.
#[derive(Debug, Clone)]
struct Ev {
    seq: i64,
    key: String,
    op: String,
    origin: String,
    changes: Option<Value>,
    record: Option<Value>,
    old: Option<Value>,
    request_ids: Vec<String>,
}

/// The events of Stripe's customers.
async fn events(pg: &tokio_postgres::Client) -> Vec<Ev> {
    table_events(pg, "stripe", "customer").await
}

/// The events of `connection`.`table`, in `seq` order.
async fn table_events(pg: &tokio_postgres::Client, connection: &str, table: &str) -> Vec<Ev> {
    pg.query(
        "select seq, key->>'id', op, origin, changes, record, old, coalesce(request_ids, '{}')
           from sequin.events where connection = $1 and \"table\" = $2 order by seq",
        &[&connection, &table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| Ev {
        seq: r.get(0),
        key: r.get(1),
        op: r.get(2),
        origin: r.get(3),
        changes: r.get(4),
        record: r.get(5),
        old: r.get(6),
        request_ids: r.get(7),
    })
    .collect()
}

fn of<'a>(all: &'a [Ev], id: &str) -> Vec<&'a Ev> {
    all.iter().filter(|e| e.key == id).collect()
}

/// A session LISTENing on `channel`; its notifications' payloads arrive on
/// the receiver.
async fn listen(
    url: &str,
    channel: &str,
) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<Value>) {
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a listening session");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(serde_json::from_str(n.payload()).expect("a JSON payload"));
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();
    (client, rx)
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook receiver: every payload whose signature verifies (checked
/// with the example consumer's `verify`), with its `webhook-id`.
async fn receiver() -> (u16, Arc<Mutex<Vec<(String, Value)>>>) {
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let keys = vec![sequin_example_consumer::verify::decode_secret(SECRET).unwrap()];
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                let keys = keys.clone();
                async move {
                    let now = chrono::Utc::now().timestamp();
                    match sequin_example_consumer::verify::verify(&keys, &headers, &body, now) {
                        Ok(id) => {
                            let v: Value = serde_json::from_slice(&body).unwrap();
                            store.lock().unwrap().push((id, v));
                            axum::http::StatusCode::NO_CONTENT
                        }
                        Err(_) => axum::http::StatusCode::UNAUTHORIZED,
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, got)
}

/// Every event in the stream, in stream order, with its subject and
/// `Nats-Msg-Id`.
async fn nats_events(url: &str, expected: usize) -> Vec<(String, String, Value)> {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let stream = js.get_stream("SEQUIN").await.expect("the stream");
    let reader = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut messages = reader
        .batch()
        .max_messages(expected + 10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(m) = futures_util::StreamExt::next(&mut messages).await {
        let m = m.unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .unwrap()
            .to_string();
        out.push((
            m.subject.to_string(),
            id,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_one_event_with_its_origin_in_order() {
    let nats = sequin_pgtemp::NatsServer::start();
    let (hook_port, hooked) = receiver().await;
    let sinks = format!(
        "sinks:
  - name: local
    kind: notify
    channel: sequin_e2e
  - name: hook
    kind: webhook
    url: http://127.0.0.1:{hook_port}/hook
    secret: {SECRET}
    batch_size: 2
  - name: bus
    kind: nats
    url: {nats}
    stream: SEQUIN
    partitions: 4
",
        nats = nats.url()
    );
    let t = Setup::start_with_proxy(Api::Stripe, 3, "events_origin", &sinks, |sim| {
        stripe_connection(sim, "customer").replace("poll_interval: 1h", "poll_interval: 200ms")
    })
    .await;
    let (pg, proxy) = (&t.pg, &t.proxy);
    let (_listener, mut notified) = listen(&t.db.url, "sequin_e2e").await;
    let stripe = t.sim.stripe();
    let seeded = stripe.ids(Kind::Customer);
    // The backfill's rows are no events (no sink asked for them).
    assert!(events(pg).await.is_empty(), "{:?}", events(pg).await);

    // Upstream: an update, a create and a delete. (A second after the
    // backfill: Stripe's events carry whole seconds, and a backfilled row
    // marked later in the same second would count the update as older.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stripe
        .update(Kind::Customer, &seeded[0], "name=Upstream+Name")
        .unwrap();
    let created = stripe
        .create(Kind::Customer, "email=up%40example.com&name=Made+Upstream")
        .unwrap();
    let up_id = created["id"].as_str().unwrap().to_string();
    stripe.delete(Kind::Customer, &seeded[1]).unwrap();

    // Write-through: an insert, an update and a delete of one record.
    let id: String = proxy
        .query_one(
            "insert into stripe.customer (name, email) values ('Written', 'w@example.com') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    proxy
        .execute(
            "update stripe.customer set name = 'Rewritten' where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    // And one rolled back: compensated at the API, no event.
    proxy
        .batch_execute(
            "begin; insert into stripe.customer (name) values ('Rolled Back'); rollback;",
        )
        .await
        .unwrap();
    proxy
        .execute("delete from stripe.customer where id = $1", &[&id])
        .await
        .unwrap();

    // Settled: every change seen, and a record sync briefly brought back
    // (read from the feed while write-through deleted it, or the
    // rolled-back insert read before its compensation) deleted again.
    eventually(Duration::from_secs(30), "the events", || async {
        let all = events(pg).await;
        let done = of(&all, &seeded[0]).iter().any(|e| e.op == "update")
            && of(&all, &up_id).iter().any(|e| e.op == "insert")
            && of(&all, &seeded[1]).iter().any(|e| e.op == "delete")
            && of(&all, &id).iter().any(|e| e.op == "delete");
        (done, all)
    })
    .await;
    // Then settled: the rolled-back insert compensated, and nothing new for
    // two seconds (polls of the feed, which carries all these changes
    // again, add nothing).
    eventually(Duration::from_secs(30), "the compensation", || async {
        let open: i64 = pg
            .query_one(
                "select count(*) from sequin.write_journal where state in ('intent', 'applied')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (open == 0, open)
    })
    .await;
    let mut all = events(pg).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = events(pg).await;
        if now.len() == all.len() {
            break;
        }
        all = now;
    }
    let last_is_delete = |id: &str| of(&all, id).last().is_some_and(|e| e.op == "delete");
    // Upstream changes come from sync.
    let u = of(&all, &seeded[0]);
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!((u[0].op.as_str(), u[0].origin.as_str()), ("update", "sync"));
    assert_eq!(
        u[0].changes.as_ref().unwrap()["name"]["new"],
        "Upstream Name",
        "{u:?}"
    );
    assert!(
        u[0].changes
            .as_ref()
            .unwrap()
            .get("_sequin_synced_at")
            .is_none()
    );
    assert_eq!(u[0].record.as_ref().unwrap()["name"], "Upstream Name");
    let c = of(&all, &up_id);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].op.as_str(), c[0].origin.as_str()), ("insert", "sync"));
    assert_eq!(c[0].record.as_ref().unwrap()["email"], "up@example.com");
    let d = of(&all, &seeded[1]);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].op.as_str(), d[0].origin.as_str()), ("delete", "sync"));
    assert_eq!(d[0].old.as_ref().unwrap()["id"], seeded[1].as_str());
    assert!(d[0].record.is_none());

    // Write-through: exactly its three changes, under the API's id (the
    // provisional row left no event), each with its journal entry, in
    // order; the sync engine seeing the same changes in Stripe's events
    // feed adds none of its own beyond a brief return it undoes.
    let w: Vec<&Ev> = of(&all, &id)
        .into_iter()
        .filter(|e| e.origin == "write")
        .collect();
    let ops: Vec<&str> = w.iter().map(|e| e.op.as_str()).collect();
    assert_eq!(ops, ["insert", "update", "delete"], "{w:?}");
    assert_eq!(w[0].record.as_ref().unwrap()["name"], "Written");
    assert_eq!(w[0].record.as_ref().unwrap()["id"], id.as_str());
    assert_eq!(w[1].changes.as_ref().unwrap()["name"]["old"], "Written");
    assert_eq!(w[1].changes.as_ref().unwrap()["name"]["new"], "Rewritten");
    assert_eq!(w[2].old.as_ref().unwrap()["name"], "Rewritten");
    for e in &w {
        assert_eq!(e.request_ids.len(), 1, "one API request each: {e:?}");
    }
    // Any other record is the rolled-back insert, as sync read it from the
    // API before the reconciler deleted it there: its create and delete
    // (documented), never the provisional row of a write.
    for e in all
        .iter()
        .filter(|e| ![&seeded[0], &seeded[1], &up_id, &id].contains(&&e.key))
    {
        assert!(e.origin == "sync" || e.origin == "reconcile", "{e:?}");
        let row = e.record.as_ref().or(e.old.as_ref()).unwrap();
        assert_eq!(row["name"], "Rolled Back", "{e:?}");
        assert!(
            last_is_delete(&e.key),
            "the rolled-back record is gone: {all:?}"
        );
    }
    assert!(last_is_delete(&id) && last_is_delete(&seeded[1]), "{all:?}");
    assert!(all.iter().all(|e| e.op != "read"), "{all:?}");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));

    // The NOTIFY sink delivered every event, in order.
    let mut seen = Vec::new();
    while seen.len() < all.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), notified.recv())
            .await
            .expect("a notification")
            .expect("the listener runs");
        assert_eq!(n["id"], format!("evt_{}", n["seq"]));
        seen.push(n["seq"].as_i64().unwrap());
    }
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seen, seqs);
    let status = eventually(Duration::from_secs(10), "the sink caught up", || async {
        let r = pg
            .query_one(
                "select state, delivered, lag_seconds, dead from sequin.sink_status where sink = 'local'",
                &[],
            )
            .await
            .unwrap();
        let s: (String, i64, f64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        (s.1 == all.len() as i64, s)
    })
    .await;
    assert_eq!(status.0, "delivering");
    assert_eq!(status.3, 0);

    // The webhook receiver got every event once, signed, in order, with
    // the operation, changed columns and origin of its row; batches of two
    // are one request (`sequin.batch`).
    let by_seq = |seq: i64| all.iter().find(|e| e.seq == seq).unwrap();
    let check = |data: &Value| {
        let e = by_seq(data["seq"].as_i64().unwrap());
        assert_eq!(data["op"], e.op.as_str(), "{data}");
        assert_eq!(data["origin"]["kind"], e.origin.as_str(), "{data}");
        assert_eq!(data["key"]["id"], e.key.as_str(), "{data}");
        assert_eq!(data.get("changes"), e.changes.as_ref(), "{data}");
        assert_eq!(data["connection"], "stripe");
        assert_eq!(data["table"], "customer");
        data["seq"].as_i64().unwrap()
    };
    let hooked = eventually(Duration::from_secs(20), "the webhooks", || async {
        let got = hooked.lock().unwrap().clone();
        let n: usize = got
            .iter()
            .map(|(_, v)| v["data"].as_array().map_or(1, Vec::len))
            .sum();
        (n >= all.len(), got)
    })
    .await;
    let mut hooked_seqs = Vec::new();
    for (id, payload) in &hooked {
        match payload["data"].as_array() {
            Some(batch) => {
                assert_eq!(payload["type"], "sequin.batch");
                let seqs: Vec<i64> = batch.iter().map(|p| check(&p["data"])).collect();
                assert_eq!(id, &format!("evt_{}-{}", seqs[0], seqs[seqs.len() - 1]));
                hooked_seqs.extend(seqs);
            }
            None => {
                assert_eq!(id, &format!("evt_{}", payload["data"]["seq"]));
                assert_eq!(
                    payload["type"],
                    format!(
                        "stripe.customer.{}",
                        payload["data"]["op"].as_str().unwrap()
                    )
                );
                hooked_seqs.push(check(&payload["data"]));
            }
        }
    }
    let mut sorted = hooked_seqs.clone();
    sorted.sort();
    assert_eq!(sorted, seqs, "each event once");
    // In order per record (requests in flight together are of other records).
    for w in hooked_seqs.windows(2) {
        if by_seq(w[0]).key == by_seq(w[1]).key {
            assert!(w[0] < w[1], "{hooked_seqs:?}");
        }
    }
    // NATS: each event once, on its record's partition subject, with its id.
    let stored = nats_events(&nats.url(), all.len()).await;
    let mut nats_seqs = Vec::new();
    for (subject, id, payload) in &stored {
        let seq = check(&payload["data"]);
        assert_eq!(id, &format!("evt_{seq}"));
        assert!(subject.starts_with("sequin.stripe.customer."), "{subject}");
        nats_seqs.push(seq);
    }
    assert_eq!(nats_seqs, seqs, "stream order is seq order here");
    // sequin.status shows the sinks too.
    let sinks: Vec<String> = pg
        .query(
            "select object from sequin.status where connection = 'sequin' order by object",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sinks, ["sink:bus", "sink:hook", "sink:local"]);
    t.finish().await;
}

/// Salesforce's tables are events too (issue #14's): an upstream change of
/// a discovered custom object (origin `sync`), and write-through upserts by
/// external id, one creating and one updating (origin `write`, `insert`
/// then `update`), each also a notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_custom_objects_and_upserts_are_events() {
    let sinks = "sinks:\n  - name: local\n    kind: notify\n    channel: sequin_sf\n";
    let t = Setup::start_with_proxy(Api::Salesforce, 2, "events_sf", sinks, |sim| {
        sim.salesforce()
            .add_external_id_field("Account", "Ext_Id__c")
            .unwrap();
        salesforce_connection(sim, "account, Invoice__c")
            .replace("poll_interval: 1h", "poll_interval: 200ms")
    })
    .await;
    t.wait_objects_live("salesforce", &["account", "invoice__c"])
        .await;
    let (pg, proxy) = (&t.pg, &t.proxy);
    let (_listener, mut notified) = listen(&t.db.url, "sequin_sf").await;
    let sf = t.sim.salesforce();
    assert!(
        table_events(pg, "salesforce", "invoice__c")
            .await
            .is_empty()
    );

    // Upstream, a second after the backfill (as above).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let invoice = sf.ids("Invoice__c")[0].clone();
    sf.update("Invoice__c", &invoice, json!({"Amount__c": 4242.5}))
        .unwrap();
    // Through the proxy: an upsert that creates, then one that updates.
    let upsert = "insert into salesforce.account (name, ext_id__c) values ($1, 'EV-1')
                  on conflict (ext_id__c) do update set name = excluded.name returning id";
    let id: String = proxy.query_one(upsert, &[&"Evented"]).await.unwrap().get(0);
    let again: String = proxy
        .query_one(upsert, &[&"Evented Again"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, id);

    let invoices = eventually(Duration::from_secs(30), "the invoice's event", || async {
        let all = table_events(pg, "salesforce", "invoice__c").await;
        (!all.is_empty(), all)
    })
    .await;
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    let e = &invoices[0];
    assert_eq!(
        (e.key.as_str(), e.op.as_str(), e.origin.as_str()),
        (invoice.as_str(), "update", "sync")
    );
    let amount = &e.changes.as_ref().unwrap()["amount__c"];
    assert_eq!(amount["new"].as_f64(), Some(4242.5), "{e:?}");
    assert_eq!(e.record.as_ref().unwrap()["id"], invoice.as_str());

    // The upserts' events (the sequencer may not have moved the second one
    // when the invoice's arrived): the account's insert, then its rename.
    // Each is the write's, unless a poll of sync's (every 200 ms here) read
    // the API's new version in the moment between the API call and the
    // write-back: the change is then sync's, and the write-back, which
    // writes what sync already did, has no event of its own (as
    // `sequin.emit_write` documents).
    let accounts = eventually(Duration::from_secs(10), "the upserts' events", || async {
        let all = table_events(pg, "salesforce", "account").await;
        (of(&all, &id).len() >= 2, all)
    })
    .await;
    let events = of(&accounts, &id);
    let ops: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.op.as_str(), e.origin.as_str()))
        .collect();
    assert_eq!(events.len(), 2, "{ops:?}");
    assert_eq!(events[0].op, "insert", "{ops:?}");
    assert_eq!(events[0].record.as_ref().unwrap()["ext_id__c"], "EV-1");
    assert_eq!(events[0].record.as_ref().unwrap()["name"], "Evented");
    assert_eq!(events[1].op, "update", "{ops:?}");
    assert_eq!(
        events[1].changes.as_ref().unwrap()["name"]["old"],
        "Evented"
    );
    assert_eq!(
        events[1].changes.as_ref().unwrap()["name"]["new"],
        "Evented Again"
    );
    let written: Vec<&Ev> = events
        .iter()
        .copied()
        .filter(|e| e.origin == "write")
        .collect();
    for e in &events {
        assert!(e.origin == "write" || e.origin == "sync", "{ops:?}");
    }
    for e in &written {
        assert_eq!(e.request_ids.len(), 1, "one API request each: {e:?}");
    }

    // Every one of them notified, with its table.
    let mut want: Vec<i64> = invoices
        .iter()
        .chain(written.iter().copied())
        .map(|e| e.seq)
        .collect();
    want.sort();
    let mut seen = Vec::new();
    while seen.len() < want.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), notified.recv())
            .await
            .expect("a notification")
            .expect("the listener runs");
        assert_eq!(n["connection"], "salesforce");
        let seq = n["seq"].as_i64().unwrap();
        if want.contains(&seq) {
            let table = if seq == invoices[0].seq {
                "invoice__c"
            } else {
                "account"
            };
            assert_eq!(n["table"], table, "{n}");
            seen.push(seq);
        }
    }
    assert_eq!(seen, want);
    t.finish().await;
}
