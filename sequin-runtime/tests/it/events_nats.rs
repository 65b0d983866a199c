//! The NATS JetStream sink against a real `nats-server -js` (the test kit's
//! `NatsServer`), read back with a JetStream pull consumer: every event
//! stored once on its partition subject in its record's `seq` order, a
//! republished batch deduplicated by the server (`Nats-Msg-Id`), a record's
//! events after a failed one not sent, a stopped server failing publishes
//! within the ack timeout and a restarted one keeping what it had stored,
//! and the errors that name their fix.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use chrono::DateTime;
use sequin_pgtemp::NatsServer;
use sequin_runtime::events::nats::{ACK_TIMEOUT, Nats, NatsError};
use sequin_runtime::events::{Event, Op, Origin, SendError};
use serde_json::{Value, json};

const STREAM: &str = "SEQUIN_EVENTS";
const PREFIX: &str = "sequin";
const PARTITIONS: u32 = 8;

/// Event `seq` of record `cus_<record>`.
fn event(seq: i64, record: usize) -> Event {
    Event {
        seq,
        connection: "stripe".into(),
        table: "customer".into(),
        key: json!({ "id": format!("cus_{record}") }),
        op: if seq % 3 == 0 { Op::Insert } else { Op::Update },
        changes: None,
        record: Some(json!({ "id": format!("cus_{record}"), "n": seq })),
        old: None,
        origin: Origin {
            kind: "sync".into(),
            xid: seq,
            request_ids: vec![],
        },
        committed_at: DateTime::from_timestamp(1_780_000_000 + seq, 0).expect("a time"),
    }
}

/// `count` events with seqs from `first`, round-robin over `records` records.
fn events(first: i64, count: usize, records: usize) -> Vec<Event> {
    (0..count)
        .map(|i| event(first + i as i64, i % records))
        .collect()
}

fn assert_all_ok(results: &[Result<(), SendError>]) {
    let failed: Vec<&SendError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {}",
        failed.len(),
        failed[0]
    );
}

/// One stored message: its subject, `Nats-Msg-Id` and the event it carries.
struct Stored {
    subject: String,
    msg_id: String,
    event: Event,
}

async fn jetstream_of(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client)
}

async fn message_count(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream(STREAM).await.expect("the stream");
    stream.info().await.expect("stream info").state.messages
}

/// Every message of the stream in stream order, through a fresh pull
/// consumer (no acks: it only reads).
async fn read_all(js: &jetstream::Context) -> Vec<Stored> {
    let expected = message_count(js).await as usize;
    let stream = js.get_stream(STREAM).await.expect("the stream");
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a pull consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stored = Vec::with_capacity(expected);
    while stored.len() < expected {
        assert!(
            Instant::now() < deadline,
            "read {} of {expected}",
            stored.len()
        );
        let mut batch = consumer
            .batch()
            .max_messages(expected - stored.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("a batch");
        while let Some(message) = futures_util::StreamExt::next(&mut batch).await {
            let message = message.expect("a message");
            let payload: Value = serde_json::from_slice(&message.payload).expect("JSON payload");
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string())
                .expect("a Nats-Msg-Id header");
            stored.push(Stored {
                subject: message.subject.to_string(),
                msg_id,
                event: serde_json::from_value(payload["data"].clone()).expect("an event"),
            });
        }
    }
    stored
}

/// Each stored message is on its record's partition subject, carries its
/// event's id, and each subject holds its records' events in `seq` order.
fn assert_on_subjects_in_record_order(stored: &[Stored]) {
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for s in stored {
        let expected = format!("{PREFIX}.stripe.customer.{}", s.event.partition(PARTITIONS));
        assert_eq!(s.subject, expected, "{}", s.msg_id);
        assert_eq!(s.msg_id, s.event.id());
        let slot = (s.subject.clone(), s.event.record_key());
        if let Some(before) = last.insert(slot, s.event.seq) {
            assert!(
                before < s.event.seq,
                "{} after seq {before} on {}",
                s.event.id(),
                s.subject
            );
        }
    }
}

fn seqs(stored: &[Stored]) -> Vec<i64> {
    let mut seqs: Vec<i64> = stored.iter().map(|s| s.event.seq).collect();
    seqs.sort_unstable();
    seqs
}

#[tokio::test]
async fn events_land_once_in_record_order_and_a_republished_batch_is_deduplicated() {
    let server = NatsServer::start();
    let nats = Nats::connect(&server.url(), STREAM, PREFIX, PARTITIONS)
        .await
        .expect("connect");
    let batch = events(1, 1_000, 50);
    let results = nats.publish(&batch).await;
    assert_eq!(results.len(), batch.len());
    assert_all_ok(&results);

    let js = jetstream_of(&server).await;
    let stored = read_all(&js).await;
    assert_eq!(
        seqs(&stored),
        (1..=1_000).collect::<Vec<_>>(),
        "each event once"
    );
    assert_on_subjects_in_record_order(&stored);
    let subjects: BTreeSet<&str> = stored.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(
        subjects.len(),
        PARTITIONS as usize,
        "50 records spread over every partition"
    );
    let first = &stored
        .iter()
        .find(|s| s.event.seq == 1)
        .expect("seq 1")
        .event;
    assert_eq!(first, &batch[0], "the payload's data is the event");

    // Published again (a crash before the cursor moved): the server drops
    // every duplicate id, and says Ok.
    assert_all_ok(&nats.publish(&batch).await);
    assert_eq!(message_count(&js).await, 1_000);

    // A second sink on the same stream gets it, not a new one.
    let again = Nats::connect(&server.url(), STREAM, PREFIX, PARTITIONS)
        .await
        .expect("connect to the existing stream");
    assert_all_ok(&again.publish(&events(1_001, 10, 5)).await);
    assert_eq!(message_count(&js).await, 1_010);
}

#[tokio::test]
async fn a_records_many_events_in_one_batch_arrive_in_order() {
    let server = NatsServer::start();
    let nats = Nats::connect(&server.url(), STREAM, PREFIX, PARTITIONS)
        .await
        .expect("connect");
    // 300 events: two of every three are one hot record's, the rest spread
    // over 20 others, so the hot record waits on its own acks while the
    // others keep the pipeline full.
    let batch: Vec<Event> = (1..=300)
        .map(|seq| {
            event(
                seq,
                if seq % 3 == 0 {
                    1 + seq as usize % 20
                } else {
                    0
                },
            )
        })
        .collect();
    assert_all_ok(&nats.publish(&batch).await);

    let stored = read_all(&jetstream_of(&server).await).await;
    assert_eq!(seqs(&stored), (1..=300).collect::<Vec<_>>());
    assert_on_subjects_in_record_order(&stored);
    let hot: Vec<i64> = stored
        .iter()
        .filter(|s| s.event.key == json!({"id": "cus_0"}))
        .map(|s| s.event.seq)
        .collect();
    assert_eq!(hot.len(), 200);
    assert!(hot.windows(2).all(|w| w[0] < w[1]), "{hot:?}");
}

#[tokio::test]
async fn after_a_records_failed_event_its_later_events_are_not_sent() {
    let server = NatsServer::start();
    let nats = Nats::connect(&server.url(), STREAM, PREFIX, PARTITIONS)
        .await
        .expect("connect");
    // Record cus_0's event seq 4 is over the server's 1 MB max_payload: it
    // fails, its events 7 and 10 behind it are not sent, and the other
    // records' events all go.
    let mut batch = events(1, 12, 3);
    batch[3].record = Some(json!({ "id": "cus_0", "blob": "x".repeat(1_100_000) }));
    let results = nats.publish(&batch).await;
    for (event, result) in batch.iter().zip(&results) {
        match event.seq {
            4 => {
                let e = result.as_ref().expect_err("seq 4 is too large");
                assert!(e.message.contains("evt_4"), "{e}");
                assert!(!e.message.contains('\n'), "one line: {e}");
            }
            7 | 10 => {
                let e = result.as_ref().expect_err("behind the failed one");
                assert!(e.message.contains("evt_4 of the same record failed"), "{e}");
            }
            _ => assert!(result.is_ok(), "{}: {result:?}", event.id()),
        }
    }
    let stored = read_all(&jetstream_of(&server).await).await;
    assert_eq!(seqs(&stored), vec![1, 2, 3, 5, 6, 8, 9, 11, 12]);
    assert_on_subjects_in_record_order(&stored);
}

#[tokio::test]
async fn a_stopped_server_fails_publishes_in_time_and_a_restarted_one_kept_everything() {
    let mut server = NatsServer::start();
    let nats = Nats::connect(&server.url(), STREAM, PREFIX, PARTITIONS)
        .await
        .expect("connect");
    assert_all_ok(&nats.publish(&events(1, 200, 20)).await);

    server.stop();
    let later = events(201, 100, 20);
    let started = Instant::now();
    let results = nats.publish(&later).await;
    let took = started.elapsed();
    assert!(results.iter().all(Result::is_err), "{results:?}");
    assert!(
        took < ACK_TIMEOUT + Duration::from_secs(5),
        "publish to a stopped server took {took:?}"
    );
    assert!(!results[0].as_ref().unwrap_err().message.contains('\n'));

    server.restart();
    // The client reconnects on its own (backoff of at most 4 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let results = nats.publish(&later).await;
        if results.iter().all(Result::is_ok) {
            break;
        }
        assert!(Instant::now() < deadline, "no reconnect: {:?}", results[0]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = read_all(&jetstream_of(&server).await).await;
    assert_eq!(
        seqs(&stored),
        (1..=300).collect::<Vec<_>>(),
        "file storage kept the first 200, the retried 100 are stored once"
    );
    assert_on_subjects_in_record_order(&stored);
}

#[tokio::test]
async fn bad_setups_and_subjects_are_refused_naming_the_fix() {
    let nobody = format!("nats://127.0.0.1:{}", sequin_pgtemp::free_port().unwrap());
    let e = Nats::connect(&nobody, STREAM, PREFIX, 1)
        .await
        .err()
        .expect("unreachable");
    assert!(matches!(e, NatsError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("nats-server -js"), "{e}");

    let plain = NatsServer::start_without_jetstream();
    let e = Nats::connect(&plain.url(), STREAM, PREFIX, 1)
        .await
        .err()
        .expect("no JetStream");
    assert!(matches!(e, NatsError::JetStreamDisabled { .. }), "{e}");
    assert!(e.to_string().contains("`-js`"), "{e}");

    let server = NatsServer::start();
    for (prefix, partitions) in [("seq.*", 1), ("a..b", 1), ("ok", 0)] {
        let e = Nats::connect(&server.url(), STREAM, prefix, partitions)
            .await
            .err();
        assert!(
            matches!(e, Some(NatsError::Prefix(_) | NatsError::Partitions)),
            "{prefix} {partitions}: {e:?}"
        );
    }
    Nats::connect(&server.url(), STREAM, PREFIX, 1)
        .await
        .expect("connect");
    let e = Nats::connect(&server.url(), STREAM, "other", 1)
        .await
        .err()
        .expect("other subjects");
    assert!(matches!(e, NatsError::StreamSubjects { .. }), "{e}");
    // A stream made elsewhere that forgets ids sooner than redelivery needs.
    let js = jetstream_of(&server).await;
    js.create_stream(jetstream::stream::Config {
        name: "SHORT".into(),
        subjects: vec!["short.>".into()],
        duplicate_window: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .expect("a stream with a 10 s window");
    let e = Nats::connect(&server.url(), "SHORT", "short", 1)
        .await
        .err()
        .expect("short window");
    assert!(matches!(e, NatsError::DuplicateWindow { .. }), "{e}");
    assert!(e.to_string().contains("--dupe-window"), "{e}");

    let nats = Nats::connect(&server.url(), STREAM, PREFIX, 1)
        .await
        .expect("connect");
    let mut dotted = event(1, 0);
    dotted.table = "customer.balance".into();
    let mut spaced = event(2, 1);
    spaced.connection = "my stripe".into();
    let results = nats
        .publish(&[dotted.clone(), spaced, event(3, 2), dotted])
        .await;
    assert!(
        results[0]
            .as_ref()
            .unwrap_err()
            .message
            .contains("not a NATS subject token")
    );
    assert!(
        results[1]
            .as_ref()
            .unwrap_err()
            .message
            .contains("\"my stripe\"")
    );
    assert!(results[2].is_ok(), "{:?}", results[2]);
    assert!(results[3].is_err(), "the refused record's later event");
    assert_eq!(message_count(&js).await, 1);
}
