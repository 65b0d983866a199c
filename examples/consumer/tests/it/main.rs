//! The example consumer, served in-process on a throwaway Postgres, fed by
//! Sequin's real webhook sink (`sequin_runtime::events::webhook::Webhook`)
//! over real HTTP: what it applies, refuses, dedupes and counts.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::DateTime;
use sequin_example_consumer::{Config, Stats};
use sequin_runtime::events::webhook::{Webhook, sign};
use sequin_runtime::events::{Event, Op, Origin};
use serde_json::{Value, json};

fn secret(byte: u8) -> String {
    format!("whsec_{}", BASE64.encode([byte; 32]))
}

/// One consumer with its own database.
struct Consumer {
    _database: sequin_pgtemp::Database,
    db: tokio_postgres::Client,
    base: String,
    http: reqwest::Client,
}

impl Consumer {
    async fn start(secrets: &[String]) -> Consumer {
        let database = sequin_pgtemp::Database::create("consumer").expect("a database");
        let config = Config {
            secrets: secrets.to_vec(),
            database_url: database.url.clone(),
        };
        let app = sequin_example_consumer::router(&config)
            .await
            .expect("the consumer starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Consumer {
            db: sequin_pgtemp::connect(&database.url).await,
            _database: database,
            base,
            http: reqwest::Client::new(),
        }
    }

    fn sender(&self, secrets: &[String]) -> Webhook {
        Webhook::new(
            &format!("{}/webhook", self.base),
            secrets,
            Duration::from_secs(10),
        )
        .unwrap()
    }

    async fn stats(&self) -> Stats {
        let response = self
            .http
            .get(format!("{}/stats", self.base))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn control(&self, status: u16) {
        let response = self
            .http
            .post(format!("{}/control", self.base))
            .json(&json!({ "status": status }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// `(seq, deleted, row)` of customer `id`.
    async fn record(&self, id: &str) -> Option<(i64, bool, Option<Value>)> {
        let row = self
            .db
            .query_opt(
                r#"SELECT seq, deleted, row FROM records
                   WHERE connection = 'stripe' AND "table" = 'customer' AND key = $1"#,
                &[&json!({ "id": id })],
            )
            .await
            .unwrap()?;
        Some((row.get(0), row.get(1), row.get(2)))
    }

    async fn count(&self, table: &str) -> i64 {
        self.db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// Customer `id`'s event `seq`: `name` written (`op` insert or update) or
/// the record deleted.
fn event(seq: i64, id: &str, op: Op, name: &str) -> Event {
    let row = json!({ "id": id, "name": name });
    Event {
        seq,
        connection: "stripe".into(),
        table: "customer".into(),
        key: json!({ "id": id }),
        op,
        changes: None,
        record: (op != Op::Delete).then(|| row.clone()),
        old: (op == Op::Delete).then_some(row),
        origin: Origin {
            kind: "sync".into(),
            xid: 100 + seq,
            request_ids: vec![],
        },
        committed_at: DateTime::from_timestamp(1_780_000_000 + seq, 0).unwrap(),
    }
}

#[tokio::test]
async fn signed_single_and_batch_deliveries_are_applied() {
    let key = secret(1);
    let consumer = Consumer::start(std::slice::from_ref(&key)).await;
    let sender = consumer.sender(&[key]);

    sender
        .send(&[event(1, "cus_1", Op::Insert, "v1")])
        .await
        .unwrap();
    sender
        .send(&[
            event(2, "cus_2", Op::Insert, "v2"),
            event(3, "cus_1", Op::Update, "v3"),
            event(4, "cus_2", Op::Delete, "v2"),
        ])
        .await
        .unwrap();

    assert_eq!(
        consumer.record("cus_1").await,
        Some((3, false, Some(json!({ "id": "cus_1", "name": "v3" }))))
    );
    assert_eq!(
        consumer.record("cus_2").await,
        Some((4, true, None)),
        "a tombstone"
    );
    let seen: Vec<String> = consumer
        .db
        .query("SELECT webhook_id FROM seen ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, ["evt_1", "evt_2-4"]);
    assert_eq!(
        consumer.stats().await,
        Stats {
            received: 2,
            applied: 4,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn a_wrong_secret_or_a_stale_timestamp_is_refused_and_counted() {
    let consumer = Consumer::start(&[secret(1)]).await;

    let error = consumer
        .sender(&[secret(2)])
        .send(&[event(1, "cus_1", Op::Insert, "v1")])
        .await
        .unwrap_err();
    assert!(error.message.contains("answered 401"), "{error}");

    // The right key, but signed ten minutes ago.
    let body = serde_json::to_vec(&event(2, "cus_1", Op::Insert, "v2").payload()).unwrap();
    let stale = chrono::Utc::now().timestamp() - 600;
    let response = consumer
        .http
        .post(format!("{}/webhook", consumer.base))
        .header("webhook-id", "evt_2")
        .header("webhook-timestamp", stale.to_string())
        .header("webhook-signature", sign(&[1u8; 32], "evt_2", stale, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("5 minutes"));

    assert_eq!(consumer.count("records").await, 0);
    assert_eq!(consumer.count("seen").await, 0);
    assert_eq!(
        consumer.stats().await,
        Stats {
            bad_signatures: 2,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn a_duplicate_webhook_id_changes_nothing() {
    let key = secret(1);
    let consumer = Consumer::start(std::slice::from_ref(&key)).await;
    let sender = consumer.sender(&[key]);

    sender
        .send(&[event(5, "cus_1", Op::Insert, "first")])
        .await
        .unwrap();
    // Same seq, so the same webhook-id: taken (200) and dropped.
    sender
        .send(&[event(5, "cus_1", Op::Insert, "second")])
        .await
        .unwrap();

    assert_eq!(
        consumer.record("cus_1").await,
        Some((5, false, Some(json!({ "id": "cus_1", "name": "first" }))))
    );
    assert_eq!(consumer.count("seen").await, 1);
    assert_eq!(
        consumer.stats().await,
        Stats {
            received: 2,
            duplicates: 1,
            applied: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn an_older_seq_changes_nothing_and_is_an_order_violation_unless_a_duplicate() {
    let key = secret(1);
    let consumer = Consumer::start(std::slice::from_ref(&key)).await;
    let sender = consumer.sender(&[key]);
    let newest = Some((7, false, Some(json!({ "id": "cus_1", "name": "new" }))));

    sender
        .send(&[event(7, "cus_1", Op::Update, "new")])
        .await
        .unwrap();
    // An older event under its own id: out of order.
    sender
        .send(&[event(6, "cus_1", Op::Update, "old")])
        .await
        .unwrap();
    assert_eq!(consumer.record("cus_1").await, newest);
    assert_eq!(consumer.stats().await.order_violations, 1);

    // The same older event again: a duplicate, not another violation.
    sender
        .send(&[event(6, "cus_1", Op::Update, "old")])
        .await
        .unwrap();
    // Event 7 again inside a batch (another id): in order, not new; 8 applies.
    sender
        .send(&[
            event(7, "cus_1", Op::Update, "new"),
            event(8, "cus_2", Op::Insert, "b"),
        ])
        .await
        .unwrap();
    // An insert older than a delete does not bring the record back.
    sender
        .send(&[event(9, "cus_2", Op::Delete, "b")])
        .await
        .unwrap();
    sender
        .send(&[
            event(8, "cus_2", Op::Insert, "b"),
            event(10, "cus_3", Op::Insert, "c"),
        ])
        .await
        .unwrap();

    assert_eq!(consumer.record("cus_1").await, newest);
    assert_eq!(consumer.record("cus_2").await, Some((9, true, None)));
    assert_eq!(
        consumer.stats().await,
        Stats {
            received: 6,
            duplicates: 1,
            applied: 4,
            order_violations: 2,
            bad_signatures: 0,
        }
    );
}

#[tokio::test]
async fn a_rotated_secret_pair_is_accepted() {
    let (old, new) = (secret(1), secret(2));

    // The consumer knows both while Sequin moves from old to new.
    let both = Consumer::start(&[old.clone(), new.clone()]).await;
    both.sender(std::slice::from_ref(&old))
        .send(&[event(1, "cus_1", Op::Insert, "a")])
        .await
        .unwrap();
    both.sender(std::slice::from_ref(&new))
        .send(&[event(2, "cus_1", Op::Update, "b")])
        .await
        .unwrap();
    assert_eq!(both.stats().await.applied, 2);

    // Sequin signs with both while the consumer moves: either key suffices.
    let only_new = Consumer::start(std::slice::from_ref(&new)).await;
    let pair = only_new.sender(&[old.clone(), new]);
    pair.send(&[event(1, "cus_1", Op::Insert, "a")])
        .await
        .unwrap();
    let error = only_new
        .sender(&[old])
        .send(&[event(2, "cus_1", Op::Update, "b")])
        .await
        .unwrap_err();
    assert!(error.message.contains("answered 401"), "{error}");
    assert_eq!(
        only_new.stats().await,
        Stats {
            received: 1,
            applied: 1,
            bad_signatures: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn the_control_route_makes_the_sender_see_the_forced_status() {
    let key = secret(1);
    let consumer = Consumer::start(std::slice::from_ref(&key)).await;
    let sender = consumer.sender(&[key]);

    consumer.control(500).await;
    let error = sender
        .send(&[event(1, "cus_1", Op::Insert, "a")])
        .await
        .unwrap_err();
    assert!(
        error.message.contains("answered 500 Internal Server Error"),
        "{error}"
    );
    assert_eq!(consumer.count("records").await, 0);

    consumer.control(200).await;
    sender
        .send(&[event(1, "cus_1", Op::Insert, "a")])
        .await
        .unwrap();
    assert_eq!(consumer.record("cus_1").await.map(|r| r.0), Some(1));
    assert_eq!(
        consumer.stats().await,
        Stats {
            received: 1,
            applied: 1,
            ..Stats::default()
        }
    );
}
