//! The journal's reconciler against a real Postgres: the order in which a
//! statement's answer and its transaction's commit reach it.

use std::collections::HashSet;
use std::sync::Arc;

use sequin_runtime::registry;
use sequin_runtime::store;
use sequin_runtime::write::journal::{Entry, Journal, Outcome};
use sequin_runtime::write::reconcile::{self, Lookup};
use serde_json::{Value, json};

/// A create's intent whose transaction committed, with its statement's
/// mark, before the statement recorded the API's answer (it records it
/// while the write-back runs): the reconciler waits for the answer and
/// settles the entry with the record's id, never without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_committed_before_its_answer_is_settled_with_its_id() {
    let db = sequin_pgtemp::Database::create("reconcile_order").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    store::migrate(&mut admin, &[("stripe", registry::get("stripe").unwrap())])
        .await
        .unwrap();
    let journal = Journal::connect(&db.url).await.unwrap();
    // The client's transaction, committed, and its statement's mark.
    let xid: i64 = admin
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    admin
        .execute(
            "INSERT INTO sequin.write_mark (capture_id) VALUES (4242)",
            &[],
        )
        .await
        .unwrap();
    let entry = Entry {
        id: uuid::Uuid::new_v4(),
        connection: "stripe".into(),
        object: "customer".into(),
        op: "create",
        api_id: None,
        xid,
        capture_id: 4242,
        request: json!({"email": "first@example.com"}),
        undo: Value::Null,
        idempotency_key: None,
    };
    journal.record(&[&entry]).await.unwrap();
    let lookup: Lookup = Arc::new(|_: &str, _: &str| None);
    let mut suspects = HashSet::new();
    let state = || async {
        let r = admin
            .query_one(
                "SELECT state, api_id FROM sequin.write_journal WHERE id = $1::text::uuid",
                &[&entry.id.to_string()],
            )
            .await
            .unwrap();
        (r.get::<_, String>(0), r.get::<_, Option<String>>(1))
    };

    reconcile::settle(&journal, &lookup, &mut suspects)
        .await
        .unwrap();
    assert_eq!(
        state().await,
        ("intent".to_string(), None),
        "the intent waits for its answer while its process runs"
    );

    journal
        .settle_intents(&[(
            entry.id,
            Outcome::Applied {
                api_id: "cus_first".into(),
                written: None,
                became: None,
            },
        )])
        .await
        .unwrap();
    let settled = reconcile::settle(&journal, &lookup, &mut suspects)
        .await
        .unwrap();
    assert_eq!(settled, 1);
    assert_eq!(
        state().await,
        ("committed".to_string(), Some("cus_first".to_string()))
    );
}
