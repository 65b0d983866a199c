//! Salesforce backfills through Bulk API 2.0 query jobs (the spec's
//! `async_query`): an object at or above the connection's
//! `async_query_threshold` is read by one job whose CSV results (several
//! `Sforce-Locator` sets) end up equal to the org field by field, tricky
//! values included (commas, quotes, newlines, nulls, decimals, dates,
//! booleans, a custom field), while a smaller object goes through the REST
//! query; a job whose results expire mid-backfill is created again for the
//! records after the last committed one only; an object the Bulk API
//! refuses falls back to the REST query. The kill -9 test of a Bulk
//! backfill is `sequin-runtime/tests/it/crash_bulk.rs` (it needs the built
//! binary).

use crate::sync_common;

use std::time::Duration;

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::salesforce::{BulkSettings, FieldType as SfType};
use sequin_sim::{Api, Sim, SimConfig};
use serde_json::json;
use sync_common::{assert_table_matches, salesforce_config, spec_columns};

/// The connection: `objects` of the org, jobs from `threshold` records.
fn config(db: &str, sim: &Sim, objects: &str, threshold: u64) -> String {
    salesforce_config(
        db,
        sim,
        &format!("    objects: [{objects}]\n    async_query_threshold: {threshold}\n"),
    )
}

/// Opportunities whose values CSV must carry exactly.
fn create_tricky(sim: &Sim) -> Vec<String> {
    let sf = sim.salesforce();
    let records = [
        json!({"Name": "Comma, Inc.", "StageName": "Prospecting", "CloseDate": "2025-01-31",
               "Amount": 1234.56, "Description": "a, b, c", "IsPrivate": true}),
        json!({"Name": "The \"Quoted\" Deal", "StageName": "Closed Won", "CloseDate": "2024-02-29",
               "Amount": 0.01, "Description": "He said \"yes\", then \"\"no\"\"", "Score__c": -0.5}),
        json!({"Name": "Multi\nline", "StageName": "Qualification", "CloseDate": "1999-12-31",
               "Description": "line 1\nline 2\r\n\"line 3\",\n", "NextStep": ",", "Score__c": 99.25}),
        json!({"Name": "Nulls", "StageName": "Prospecting", "CloseDate": "2030-06-01",
               "Amount": null, "Description": null, "NextStep": null, "Score__c": null}),
        json!({"Name": "Big", "StageName": "Negotiation/Review", "CloseDate": "2025-03-01",
               "Amount": 98765432109.99, "TotalOpportunityQuantity": 3, "IsPrivate": false}),
        json!({"Name": "Ünïcödé ✓ 名前", "StageName": "Prospecting", "CloseDate": "2025-04-01",
               "Description": "emoji 🚀 and tab\there"}),
    ];
    records
        .into_iter()
        .map(|r| sf.create("Opportunity", r).expect("a valid opportunity"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_above_the_threshold_runs_as_one_job_equal_field_by_field() {
    let db = sequin_pgtemp::Database::create("sync_sf_bulk").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    sf.add_custom_field("Opportunity", "Score__c", "Score", SfType::Double, None)
        .unwrap();
    sf.seed_bulk("Opportunity", 2500).unwrap();
    create_tricky(&sim);
    // Below the threshold: the REST query.
    for i in 0..3 {
        sf.create("Account", json!({"Name": format!("Small {i}")}))
            .unwrap();
    }
    // Several results sets per job.
    sf.set_bulk_settings(BulkSettings {
        max_page_records: Some(700),
        ..BulkSettings::default()
    });
    let sync = Running::start(&config(&db.url, &sim, "account, opportunity", 1000));
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(60)).await;

    let jobs = sf.bulk_jobs();
    assert_eq!(jobs.len(), 1, "one job, for the opportunities: {jobs:?}");
    assert_eq!(jobs[0].object, "Opportunity");
    assert!(
        !jobs[0].query.contains("WHERE"),
        "the first job asks for every record: {}",
        jobs[0].query
    );
    let stats = sim.stats();
    let result_sets: u64 = stats
        .by_route
        .iter()
        .filter(|(r, _)| r.ends_with("/results"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        result_sets >= 4,
        "the results came in several locator sets: {:?}",
        stats.by_route
    );

    let mut cols = spec_columns("salesforce", "opportunity");
    cols.push(sync_common::Col {
        name: "score__c".into(),
        path: "Score__c".into(),
        ty: sequin_spec::model::FieldType::Decimal,
        stringly: false,
        time_format: sequin_spec::model::TimeFormat::Iso8601,
    });
    let n = assert_table_matches(
        &pg,
        "salesforce",
        "opportunity",
        "id",
        &cols,
        sf.count("Opportunity", false),
        |id| sf.get("Opportunity", id),
    )
    .await;
    assert_eq!(n, 2506);
    let accounts = spec_columns("salesforce", "account");
    let n = assert_table_matches(
        &pg,
        "salesforce",
        "account",
        "id",
        &accounts,
        sf.count("Account", false),
        |id| sf.get("Account", id),
    )
    .await;
    assert_eq!(n, 3, "the small object came through the REST query");

    // Incremental sync stays on the REST query: a change arrives, no job.
    let id: String = pg
        .query_one(
            "SELECT id FROM salesforce.opportunity ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    sf.update(
        "Opportunity",
        &id,
        json!({"Description": "changed, \"live\""}),
    )
    .unwrap();
    eventually(Duration::from_secs(20), "the change arrives", || async {
        let d: Option<String> = pg
            .query_one(
                "SELECT description FROM salesforce.opportunity WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        (d.as_deref() == Some("changed, \"live\""), d)
    })
    .await;
    assert_eq!(sf.bulk_jobs_created(), 1, "polls make no job");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_job_is_created_again_for_the_remaining_window_only() {
    let db = sequin_pgtemp::Database::create("sync_sf_bulk_expired").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    sf.add_custom_field("Opportunity", "Score__c", "Score", SfType::Double, None)
        .unwrap();
    sf.seed_bulk("Opportunity", 12_000).unwrap();
    create_tricky(&sim);
    // Slow sets, so the results expire in the middle of the backfill.
    sf.set_bulk_settings(BulkSettings {
        max_page_records: Some(2000),
        results_delay_ms: 400,
        ..BulkSettings::default()
    });
    let sync = Running::start(&config(&db.url, &sim, "opportunity", 1000));
    let pg = connect(&db.url).await;
    let committed = eventually(
        Duration::from_secs(60),
        "a first batch is committed",
        || async {
            let n: i64 = pg
                .query_one("SELECT count(*) FROM salesforce.opportunity", &[])
                .await
                .map(|r| r.get(0))
                .unwrap_or(0);
            (n > 0, n)
        },
    )
    .await;
    sf.expire_bulk_results();
    let last: String = pg
        .query_one("SELECT max(id) FROM salesforce.opportunity", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        (committed as usize) < 12_006,
        "the results expired mid-backfill ({committed} rows committed)"
    );
    wait_live(&pg, "salesforce", Duration::from_secs(60)).await;

    let jobs = sf.bulk_jobs();
    assert_eq!(jobs.len(), 2, "the expired job was created again: {jobs:?}");
    assert!(
        jobs[1].query.contains(&format!("WHERE Id > '{last}'")),
        "the second job asks only for the records after the last committed one ({last}): {}",
        jobs[1].query
    );
    assert_eq!(
        jobs[1].records,
        12_006 - committed as usize,
        "the second job's window is exactly what was not committed"
    );
    let cols = spec_columns("salesforce", "opportunity");
    let n = assert_table_matches(
        &pg,
        "salesforce",
        "opportunity",
        "id",
        &cols,
        sf.count("Opportunity", false),
        |id| sf.get("Opportunity", id),
    )
    .await;
    assert_eq!(n, 12_006);
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_the_bulk_api_refuses_falls_back_to_the_rest_query() {
    let db = sequin_pgtemp::Database::create("sync_sf_bulk_refused").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    sf.seed_bulk("Lead", 2100).unwrap();
    sf.refuse_bulk_object("Lead");
    let sync = Running::start(&config(&db.url, &sim, "lead", 100));
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(60)).await;
    assert_eq!(sf.bulk_jobs_created(), 0, "the refused job was not created");
    let cols = spec_columns("salesforce", "lead");
    let n = assert_table_matches(
        &pg,
        "salesforce",
        "lead",
        "id",
        &cols,
        sf.count("Lead", false),
        |id| sf.get("Lead", id),
    )
    .await;
    assert_eq!(n, 2100);
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
