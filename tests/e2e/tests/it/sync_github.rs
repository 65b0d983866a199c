//! GitHub end to end, the genericity check: the connector is a YAML spec
//! only (Link-header pages, `since` incremental), and the issues of the
//! simulated repository sync into `github.issue`, every issue and every
//! declared field equal to the API's, then updates and new issues arrive
//! through `since` polls that fetch only what changed.

use crate::sync_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sequin_e2e::{Running, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::github::Github;
use sequin_sim::{Api, SimConfig};
use serde_json::{Value, json};
use sync_common::{assert_table_equals, freshness, parse_time, row_equals, spec_columns, within};

const POLL: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(1500);
/// Three pages of 100.
const SEED: usize = 250;

/// Every issue of the repository, keyed by its global id.
fn api_issues(gh: &Github) -> BTreeMap<String, Value> {
    (1..=gh.issue_count() as u64)
        .filter_map(|n| gh.issue(n))
        .map(|i| (i["id"].to_string(), i))
        .collect()
}

/// `_sequin_synced_at` of every row, by id.
async fn synced_at(pg: &tokio_postgres::Client) -> BTreeMap<String, i64> {
    pg.query(
        "SELECT id::text, (extract(epoch from _sequin_synced_at) * 1000000)::bigint FROM github.issue",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_only_connector_backfill_and_since_polls() {
    let db = sequin_pgtemp::Database::create("sync_github").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Github).seed_records(SEED),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let gh = sim.github();
    let config = format!(
        "database_url: {db}
connections:
  - name: github
    connector: github
    base_url: {base}
    credentials: {{ token: '{token}' }}
    params: {{ owner: {owner}, repo: {repo} }}
    poll_interval: 300ms
",
        db = db.url,
        base = sim.base_url(),
        token = sim.token(),
        owner = Github::OWNER,
        repo = Github::REPO,
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "github", Duration::from_secs(60)).await;

    // Every issue, every declared field, typed.
    let cols = spec_columns("github", "issue");
    let api = api_issues(gh);
    assert_eq!(api.len(), SEED);
    assert_table_equals(&pg, "github", "issue", "id", &cols, &api).await;
    // The backfill paged with Link headers (three pages of 100).
    let lists: u64 = sim
        .stats()
        .by_route
        .iter()
        .filter(|(r, _)| r.starts_with("GET ") && r.ends_with("/issues"))
        .map(|(_, n)| *n)
        .sum();
    assert!(lists >= 3, "list requests: {:?}", sim.stats().by_route);

    // Let the first polls run, then remember when each row was written: a
    // poll that re-listed the repository would rewrite them all.
    tokio::time::sleep(POLL * 5).await;
    let before = synced_at(&pg).await;

    // Changes by another user arrive through `since` polls.
    let changed_at = Instant::now();
    let edited = gh
        .update_issue(
            7,
            &json!({"title": "Flaky test on CI", "state": "closed", "state_reason": "completed", "labels": ["bug"]}),
        )
        .unwrap();
    let created = gh
        .create_issue(&json!({"title": "Sync engine proves genericity", "body": "YAML only", "labels": ["enhancement"]}))
        .unwrap();
    let edited_id = edited["id"].to_string();
    let created_id = created["id"].to_string();
    let edited = gh.issue(7).unwrap();
    let created = gh.issue(created["number"].as_u64().unwrap()).unwrap();
    within(
        changed_at,
        freshness(POLL, SLACK),
        "an edited and a new issue",
        || async {
            let (a, arow) =
                row_equals(&pg, "github", "issue", "id", &edited_id, &cols, &edited).await;
            let (b, _) =
                row_equals(&pg, "github", "issue", "id", &created_id, &cols, &created).await;
            (a && b, (a, b, arow))
        },
    )
    .await;
    let fresh = changed_at.elapsed();

    // Only changed issues were fetched again: rows of issues last updated
    // well before the polls began were not rewritten.
    let after = synced_at(&pg).await;
    let cutoff = parse_time(&json!(edited["updated_at"]), Default::default()).unwrap() - 10_000_000;
    let mut old_rows = 0;
    for (id, issue) in &api {
        let updated = parse_time(&issue["updated_at"], Default::default()).unwrap();
        if updated < cutoff && id != &edited_id {
            old_rows += 1;
            assert_eq!(
                before.get(id),
                after.get(id),
                "issue {id} was fetched again"
            );
        }
    }
    assert!(old_rows > SEED / 2, "{old_rows} old issues checked");
    // The cursor follows the newest update seen.
    let since: i64 = pg
        .query_one(
            "SELECT (incremental_cursor->>'since')::bigint FROM sequin.sync_state WHERE connection = 'github' AND object = 'issue'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let newest = parse_time(&created["updated_at"], Default::default())
        .unwrap()
        .max(parse_time(&edited["updated_at"], Default::default()).unwrap());
    assert_eq!(since, newest, "incremental cursor");

    // In the end the table equals the repository.
    assert_table_equals(&pg, "github", "issue", "id", &cols, &api_issues(gh)).await;
    assert!(!sync.finished(), "the engine is still running");
    eprintln!("github: live changes visible after {fresh:?}");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
