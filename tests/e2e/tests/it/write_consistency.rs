//! Write-through and sync together (issue #6, deliver 7): the sync engine,
//! polling fast, sees each write-through change (Salesforce SystemModstamp
//! polls; Stripe's events feed) and neither reverts it with older data nor
//! writes the row again; a later upstream change still arrives.

use crate::write_common;

use std::time::Duration;

use sequin_e2e::eventually;
use sequin_sim::Api;
use write_common::*;

/// The row as JSON, metadata included (`_sequin_synced_at` moves only when
/// the row is written again).
async fn row_json(pg: &tokio_postgres::Client, table: &str, id: &str) -> serde_json::Value {
    pg.query_one(
        &format!("select to_jsonb(t)::text from {table} t where id = $1"),
        &[&id],
    )
    .await
    .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
    .unwrap_or_else(|e| panic!("row {id} of {table}: {e}"))
}

/// Waits until the engine has completed `polls` polls of `object` that
/// started after this call.
async fn wait_polls(pg: &tokio_postgres::Client, connection: &str, object: &str, polls: u32) {
    let since: chrono::DateTime<chrono::Utc> =
        pg.query_one("select now()", &[]).await.unwrap().get(0);
    for _ in 0..polls {
        let mark: chrono::DateTime<chrono::Utc> =
            pg.query_one("select now()", &[]).await.unwrap().get(0);
        eventually(Duration::from_secs(20), "a poll after the write", || async {
            let last: Option<chrono::DateTime<chrono::Utc>> = pg
                .query_one(
                    "select max(last_poll_at) from sequin.sync_state where connection = $1 and object = $2",
                    &[&connection, &object],
                )
                .await
                .unwrap()
                .get(0);
            (last.is_some_and(|l| l > mark && l > since), last)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_sync_keeps_write_through_results() {
    let t = Setup::start(Api::Salesforce, 5, "write_consistency_sf", |sim| {
        salesforce_connection(sim, "contact").replace("poll_interval: 1h", "poll_interval: 200ms")
    })
    .await;
    let (pg, proxy) = (&t.pg, &t.proxy);
    let id: String = proxy
        .query_one(
            "insert into salesforce.contact (first_name, last_name) values ('Vincenzo', 'Scamozzi') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let n = proxy
        .execute(
            "update salesforce.contact set title = 'Architect' where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let written = row_json(pg, "salesforce.contact", &id).await;
    assert_eq!(written["title"], "Architect");
    assert!(
        written["system_modstamp"].is_string(),
        "canonical row: {written}"
    );
    // The engine's polls see the contact as changed since its cursor; the
    // row already holds exactly that version, so it is not written again.
    wait_polls(pg, "salesforce", "contact", 3).await;
    assert_eq!(row_json(pg, "salesforce.contact", &id).await, written);
    // An upstream change after the write still arrives.
    t.sim
        .salesforce()
        .update("Contact", &id, serde_json::json!({"Title": "Proto"}))
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the upstream change arrives",
        || async {
            let now = row_json(pg, "salesforce.contact", &id).await;
            (now["title"] == "Proto", now)
        },
    )
    .await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_events_do_not_revert_write_through_results() {
    let t = Setup::start(Api::Stripe, 5, "write_consistency_stripe", |sim| {
        stripe_connection(sim, "customer").replace("poll_interval: 1h", "poll_interval: 200ms")
    })
    .await;
    let (pg, proxy) = (&t.pg, &t.proxy);
    // Created, then renamed twice: the feed later carries a created event
    // and two updated events, all older than (or as old as) the final row.
    let id: String = proxy
        .query_one(
            "insert into stripe.customer (name, email) values ('First', 'first@example.com') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for name in ["Second", "Third"] {
        proxy
            .execute(
                "update stripe.customer set name = $1 where id = $2",
                &[&name, &id],
            )
            .await
            .unwrap();
    }
    let written = row_json(pg, "stripe.customer", &id).await;
    assert_eq!(written["name"], "Third");
    wait_polls(pg, "stripe", "_events", 3).await;
    let after = row_json(pg, "stripe.customer", &id).await;
    assert_eq!(
        after["name"], "Third",
        "no older event reverted the row: {after}"
    );
    assert_eq!(after, written, "the row was not written again");
    t.finish().await;
}

/// The journal keeps settled entries for `journal_retention`, then removes
/// them; an entry whose transaction is still open stays whatever its age,
/// and is settled and removed once the transaction ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_journal_entries_are_pruned_after_the_retention() {
    let t = Setup::start_with_proxy(
        Api::Stripe,
        2,
        "write_journal_retention",
        "  journal_retention: 2s\n",
        |sim| stripe_connection(sim, "customer"),
    )
    .await;
    let (pg, proxy) = (&t.pg, &t.proxy);
    let entries = || async {
        let rows = pg
            .query(
                "select api_id, state from sequin.write_journal order by created_at",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            // An entry's API id arrives when the reconciler folds the
            // statement's answer in (write::reconcile).
            .map(|r| {
                let id: Option<String> = r.get(0);
                (id.unwrap_or_default(), r.get::<_, String>(1))
            })
            .collect::<Vec<_>>()
    };
    let committed: String = proxy
        .query_one(
            "insert into stripe.customer (name, email) values ('Kept', 'kept@example.com') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // A second client keeps its transaction open.
    let open_client = t.proxy_client().await;
    open_client.batch_execute("begin").await.unwrap();
    let open: String = open_client
        .query_one(
            "insert into stripe.customer (name, email) values ('Open', 'open@example.com') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eventually(
        Duration::from_secs(30),
        "the committed entry settled",
        || async {
            let e = entries().await;
            (e.contains(&(committed.clone(), "committed".into())), e)
        },
    )
    .await;
    // Pruning runs every retention period (2 s here): the committed entry
    // goes, the open one stays.
    let e = eventually(
        Duration::from_secs(30),
        "the settled entry removed",
        || async {
            let e = entries().await;
            (!e.iter().any(|(id, _)| id == &committed), e)
        },
    )
    .await;
    assert_eq!(e, vec![(open.clone(), "applied".to_string())]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        entries().await,
        vec![(open.clone(), "applied".to_string())],
        "an open transaction's entry is never pruned"
    );
    open_client.batch_execute("commit").await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the last entry settled and removed",
        || async {
            let e = entries().await;
            (e.is_empty(), e)
        },
    )
    .await;
    // Pruning removes journal entries only, never the records.
    let n: i64 = pg
        .query_one(
            "select count(*) from stripe.customer where id = any($1)",
            &[&vec![committed, open]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    t.finish().await;
}
