//! Salesforce deletes through the sObject Get Deleted window: a record
//! deleted upstream leaves its table within a poll or two; a record gone
//! from the window before Sequin saw it (hard-deleted, the recycle bin
//! emptied, or a sync stopped longer than the bin keeps deletions) is caught
//! by one full id diff, never left behind, and nothing else is lost.

use crate::sync_common;

use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::{Api, SimConfig};
use serde_json::json;
use sync_common::{
    SALESFORCE_OBJECTS, assert_table_matches, freshness, salesforce_config, spec_columns, within,
};

const POLL: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(1500);
const SEED: usize = 30;

const OBJECTS: [(&str, &str); 4] = SALESFORCE_OBJECTS;

async fn ids(pg: &tokio_postgres::Client, table: &str, n: i64) -> Vec<String> {
    pg.query(
        &format!("SELECT id FROM salesforce.{table} ORDER BY id LIMIT $1"),
        &[&n],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn has_row(pg: &tokio_postgres::Client, table: &str, id: &str) -> bool {
    pg.query_opt(
        &format!("SELECT 1 FROM salesforce.{table} WHERE id = $1"),
        &[&id],
    )
    .await
    .unwrap()
    .is_some()
}

/// Whether the object's poll cursor records a full id diff.
async fn diffed(pg: &tokio_postgres::Client, table: &str) -> bool {
    pg.query_one(
        "SELECT incremental_cursor ? 'diff_at' FROM sequin.sync_state
          WHERE connection = 'salesforce' AND object = $1",
        &[&table],
    )
    .await
    .unwrap()
    .get::<_, Option<bool>>(0)
    .unwrap_or(false)
}

/// Every table equals the org's live records, field by field.
async fn assert_all_tables_match(
    pg: &tokio_postgres::Client,
    sf: &sequin_sim::salesforce::Salesforce,
) {
    for (object, table) in OBJECTS {
        let cols = spec_columns("salesforce", table);
        assert_table_matches(
            pg,
            "salesforce",
            table,
            "id",
            &cols,
            sf.count(object, false),
            |id| sf.get(object, id),
        )
        .await;
    }
}

/// Requests made to the `deleted` resource so far.
fn deleted_requests(sim: &sequin_sim::Sim) -> u64 {
    sim.stats()
        .by_route
        .iter()
        .filter(|(r, _)| r.contains("/deleted"))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_upstream_leaves_the_table_within_a_poll_or_two() {
    let db = sequin_pgtemp::Database::create("sync_sf_deletes_live").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce).seed_records(SEED),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    let sync = Running::start(&salesforce_config(&db.url, &sim, ""));
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(60)).await;

    let account = ids(&pg, "account", 1).await.remove(0);
    let opportunity = ids(&pg, "opportunity", 1).await.remove(0);
    let deleted_at = Instant::now();
    sf.delete("Account", &account).unwrap();
    sf.delete("Opportunity", &opportunity).unwrap();
    within(
        deleted_at,
        freshness(POLL, SLACK),
        "deleted records leaving their tables",
        || async {
            let a = has_row(&pg, "account", &account).await;
            let o = has_row(&pg, "opportunity", &opportunity).await;
            let errors = sync_common::sync_errors(&pg, "salesforce").await;
            (!a && !o, (a, o, errors))
        },
    )
    .await;
    assert!(deleted_requests(&sim) > 0, "{:?}", sim.stats().by_route);
    // Within the window the list does it all: no full diff.
    for (_, table) in OBJECTS {
        assert!(!diffed(&pg, table).await, "{table} ran a full diff");
    }

    // A record hard-deleted (never in the recycle bin, never listed as
    // deleted) moves the window past the cursor: one full diff catches it.
    let hard = ids(&pg, "account", 1).await.remove(0);
    sf.hard_delete("Account", &hard).unwrap();
    assert_eq!(sf.count("Account", true), sf.count("Account", false) + 1);
    eventually(
        Duration::from_secs(20),
        "the hard-deleted row gone",
        || async {
            let gone = !has_row(&pg, "account", &hard).await;
            (gone && diffed(&pg, "account").await, gone)
        },
    )
    .await;
    assert!(sync_common::sync_errors(&pg, "salesforce").await.is_empty());
    assert_all_tables_match(&pg, sf).await;
    sync.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_stopped_past_the_window_catches_up_with_one_full_diff() {
    let db = sequin_pgtemp::Database::create("sync_sf_deletes_stopped").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce).seed_records(SEED),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    let cfg = salesforce_config(&db.url, &sim, "");
    let sync = Running::start(&cfg);
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(60)).await;
    sync.stop().await.unwrap();

    // While Sequin is stopped: accounts deleted and purged from the recycle
    // bin (emptied by an admin), one hard-deleted, one deleted after the
    // purge, plus an update and a create that must not be lost.
    let accounts = ids(&pg, "account", 6).await;
    let [purged_a, purged_b, hard, after_purge, updated] =
        [0, 1, 2, 3, 4].map(|i| accounts[i].clone());
    sf.delete("Account", &purged_a).unwrap();
    sf.delete("Account", &purged_b).unwrap();
    assert_eq!(sf.empty_recycle_bin(Some("Account")).unwrap(), 2);
    sf.hard_delete("Account", &hard).unwrap();
    sf.delete("Account", &after_purge).unwrap();
    sf.update(
        "Account",
        &updated,
        json!({"Name": "Renamed while stopped"}),
    )
    .unwrap();
    let created = sf
        .create("Account", json!({"Name": "Created while stopped"}))
        .unwrap();
    // A contact deleted while the sync was stopped for weeks: its cursor
    // is older than the 15 days Salesforce keeps deletions.
    let contact = ids(&pg, "contact", 1).await.remove(0);
    sf.delete("Contact", &contact).unwrap();
    let weeks_ago = chrono::Utc::now().timestamp_micros() - 20 * 24 * 3600 * 1_000_000;
    pg.execute(
        "UPDATE sequin.sync_state
            SET incremental_cursor = jsonb_set(incremental_cursor, '{deletes_since}', to_jsonb($1::bigint))
          WHERE connection = 'salesforce' AND object = 'contact'",
        &[&weeks_ago],
    )
    .await
    .unwrap();
    // A lead deleted within the window: the list alone finds it.
    let lead = ids(&pg, "lead", 1).await.remove(0);
    sf.delete("Lead", &lead).unwrap();

    let sync = Running::start(&cfg);
    eventually(Duration::from_secs(30), "the deletions applied", || async {
        let mut left = Vec::new();
        for (table, id) in [
            ("account", &purged_a),
            ("account", &purged_b),
            ("account", &hard),
            ("account", &after_purge),
            ("contact", &contact),
            ("lead", &lead),
        ] {
            if has_row(&pg, table, id).await {
                left.push((table, id.clone()));
            }
        }
        let created_there = has_row(&pg, "account", &created).await;
        (left.is_empty() && created_there, (left, created_there))
    })
    .await;
    // The purge and the old cursor each took a full diff (its cursor is
    // saved after the rows it deleted); the lead's and the opportunities'
    // windows were intact and took none.
    eventually(
        Duration::from_secs(10),
        "the full diffs recorded",
        || async {
            let (account, contact) = (diffed(&pg, "account").await, diffed(&pg, "contact").await);
            (account && contact, (account, contact))
        },
    )
    .await;
    assert!(!diffed(&pg, "lead").await, "the lead's window was intact");
    assert!(!diffed(&pg, "opportunity").await);
    // Nothing else was lost: every table equals the org.
    eventually(Duration::from_secs(10), "the update", || async {
        let name: Option<String> = pg
            .query_opt(
                "SELECT name FROM salesforce.account WHERE id = $1",
                &[&updated],
            )
            .await
            .unwrap()
            .and_then(|r| r.get(0));
        (name.as_deref() == Some("Renamed while stopped"), name)
    })
    .await;
    assert_all_tables_match(&pg, sf).await;
    assert!(sync_common::sync_errors(&pg, "salesforce").await.is_empty());
    sync.stop().await.unwrap();
}
