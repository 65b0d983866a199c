//! Crash safety of a backfill through an asynchronous query job (Salesforce's
//! Bulk API 2.0, the spec's `async_query`): the real `sequin sync` is
//! SIGKILLed three times while it reads a 30,000-opportunity job's CSV
//! results (sets of 3,000 records chained by `Sforce-Locator`), and started
//! again each time. After every kill the committed state is a prefix of the
//! job's results (ordered by Id) with a job cursor; after the last run the
//! table equals the org exactly, and the simulator saw exactly one job: each
//! restart reused the job from its committed locator instead of asking for
//! the same window again.
//!
//! It lives here (not in `tests/e2e`, where the other Bulk tests are) because
//! only this package's tests get the built binary (`CARGO_BIN_EXE_sequin`).

use crate::process_support;

use std::time::{Duration, Instant};

use process_support::{Scratch, Sequin};
use sequin_pgtemp::connect;
use sequin_sim::salesforce::{BulkSettings, CLIENT_ID, CLIENT_SECRET};
use sequin_sim::{Api, SimConfig};
use serde_json::json;

const RECORDS: usize = 30_000;
/// Committed rows at which each kill happens (then a short delay).
const KILL_AT: [(i64, u64); 3] = [(5_000, 0), (12_000, 180), (22_000, 90)];

async fn committed(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM salesforce.opportunity", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// `(phase, the backfill cursor's kind)` of salesforce.opportunity.
async fn state(db: &tokio_postgres::Client) -> Option<(String, Option<String>)> {
    db.query_opt(
        "SELECT phase, backfill_cursor->>'kind' FROM sequin.sync_state
          WHERE connection = 'salesforce' AND object = 'opportunity'",
        &[],
    )
    .await
    .ok()
    .flatten()
    .map(|r| (r.get(0), r.get(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_bulk_backfill_reuses_the_job_and_ends_exact() {
    let started = Instant::now();
    let db = sequin_pgtemp::Database::create("crash_bulk").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    sf.seed_bulk("Opportunity", RECORDS).unwrap();
    sf.create(
        "Opportunity",
        json!({"Name": "Kill \"-9\",\nsurvivor", "StageName": "Prospecting",
               "CloseDate": "2025-05-05", "Amount": 10.5, "Description": "a,\"b\"\nc"}),
    )
    .unwrap();
    let total = RECORDS + 1;
    // Slow result sets, so the kills land while the results are read.
    sf.set_bulk_settings(BulkSettings {
        max_page_records: Some(3_000),
        results_delay_ms: 250,
        ..BulkSettings::default()
    });
    let scratch = Scratch::new("crash-bulk");
    let config = scratch.write(
        "sequin.yaml",
        &format!(
            "database_url: {db}
connections:
  - name: salesforce
    connector: salesforce
    base_url: {base}
    token_url: {base}/services/oauth2/token
    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{refresh}' }}
    objects: [opportunity]
    poll_interval: 300ms
    async_query_threshold: 1000
",
            db = db.url,
            base = sim.base_url(),
            refresh = sf.refresh_token(),
        ),
    );
    let pg = connect(&db.url).await;
    // The job's results are ordered by Id: a committed state is a prefix.
    let mut api_ids: Vec<String> = sf.ids("Opportunity");
    api_ids.sort();
    assert_eq!(api_ids.len(), total);

    let mut last = 0i64;
    for (i, (at_rows, delay_ms)) in KILL_AT.iter().enumerate() {
        let mut proc = Sequin::spawn(
            &config,
            "warn",
            &["sync"],
            scratch.path(&format!("run{i}.stderr")),
        );
        let wait_start = Instant::now();
        while committed(&pg).await < *at_rows {
            if let Some(status) = proc.exited() {
                panic!(
                    "sequin exited ({status}) before kill {i}; stderr:\n{}",
                    proc.stderr()
                );
            }
            assert!(
                wait_start.elapsed() < Duration::from_secs(60),
                "no progress to {at_rows} rows before kill {i}; stderr:\n{}",
                proc.stderr()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
        let status = proc.kill9();
        assert!(!status.success(), "kill {i}: the process had already ended");
        let (phase, kind) = state(&pg).await.expect("a sync state");
        assert_eq!(phase, "backfilling", "kill {i} happened mid-backfill");
        assert_eq!(
            kind.as_deref(),
            Some("async_job"),
            "kill {i}: a job cursor is committed"
        );
        let mut ids: Vec<String> = pg
            .query("SELECT id FROM salesforce.opportunity", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        ids.sort();
        let n = ids.len();
        assert!(n as i64 >= last, "kill {i}: committed rows went back");
        assert!(n < total, "kill {i}: {n} rows is not mid-backfill");
        assert_eq!(
            ids,
            api_ids[..n],
            "kill {i}: the committed rows are a prefix of the results"
        );
        last = n as i64;
        eprintln!(
            "kill {i} at {:.1}s: {n} rows committed",
            started.elapsed().as_secs_f64()
        );
    }

    // The last run finishes from the committed locator and goes live.
    let mut proc = Sequin::spawn(&config, "warn", &["sync"], scratch.path("final.stderr"));
    let wait_start = Instant::now();
    loop {
        if let Some(status) = proc.exited() {
            panic!("sequin exited ({status}); stderr:\n{}", proc.stderr());
        }
        if let Some((phase, kind)) = state(&pg).await
            && phase == "live"
        {
            assert_eq!(kind, None, "the backfill cursor is cleared when live");
            break;
        }
        assert!(
            wait_start.elapsed() < Duration::from_secs(60),
            "the last run did not finish the backfill; stderr:\n{}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proc.kill9();

    let jobs = sf.bulk_jobs();
    assert_eq!(jobs.len(), 1, "no second job for the same window: {jobs:?}");

    // Exactly the org's records, field by field (the columns CSV carries
    // as text, decimal, date, boolean and timestamp).
    let rows = pg
        .query(
            "SELECT id, name, description, stage_name, amount::float8, close_date::text,
                    is_private, (extract(epoch FROM system_modstamp) * 1000)::bigint
               FROM salesforce.opportunity ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), total, "row count equals the org's");
    for (r, want_id) in rows.iter().zip(&api_ids) {
        let id: String = r.get(0);
        assert_eq!(&id, want_id, "the ids are the org's");
        let api = sf.get("Opportunity", &id).expect("in the org");
        let text = |i: usize| r.get::<_, Option<String>>(i);
        assert_eq!(text(1).as_deref(), api["Name"].as_str(), "{id} name");
        assert_eq!(
            text(2).as_deref(),
            api["Description"].as_str(),
            "{id} description"
        );
        assert_eq!(text(3).as_deref(), api["StageName"].as_str(), "{id} stage");
        assert_eq!(
            r.get::<_, Option<f64>>(4),
            api["Amount"].as_f64(),
            "{id} amount"
        );
        assert_eq!(
            text(5).as_deref(),
            api["CloseDate"].as_str(),
            "{id} close date"
        );
        assert_eq!(
            r.get::<_, Option<bool>>(6),
            api["IsPrivate"].as_bool(),
            "{id} private"
        );
        let stamp = chrono::DateTime::parse_from_str(
            api["SystemModstamp"].as_str().unwrap(),
            "%Y-%m-%dT%H:%M:%S%.3f%z",
        )
        .unwrap()
        .timestamp_millis();
        assert_eq!(r.get::<_, Option<i64>>(7), Some(stamp), "{id} modstamp");
    }
    eprintln!(
        "3 kills, {total} opportunities through one job, exact; took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    sim.shutdown().await;
}
