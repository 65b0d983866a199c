//! Salesforce's daily quota end to end (issue #14, deliver 4), against the
//! simulator's decrementing `/limits` counter, with `sequin run` (sync, the
//! proxy and the metrics endpoint in one process):
//!
//! - near the floor, backfills pause (no more query requests) while a write
//!   through the proxy still goes through; `sequin.status`,
//!   `sequin.quota_status`, `sequin status` and the metrics say so; after
//!   the simulated reset the backfill resumes and the tables equal the org;
//! - a quota spent by someone else (403 `REQUEST_LIMIT_EXCEEDED`) pauses
//!   the polls instead of retrying into the refusal, and the reset resumes
//!   them.

use crate::sync_common;
use crate::write_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use sequin_e2e::{eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_runtime::config::Config;
use sequin_runtime::process::{self, Halves, ProcessError};
use sequin_runtime::status;
use sequin_sim::salesforce::limits::Allocation;
use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET};
use sequin_sim::{Api, Sim, SimConfig};
use sync_common::{assert_table_matches, spec_columns};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use write_common::{connect_when_up, proxy_url};

/// Two SOQL batches per object: a backfill needs several requests.
const SEED: usize = 2100;
const OBJECTS: [(&str, &str); 2] = [("Account", "account"), ("Contact", "contact")];

/// `sequin run` in the background, with its metrics endpoint.
struct Run {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ProcessError>>,
    metrics: String,
    proxy: String,
}

impl Run {
    /// Starts sync, proxy and metrics for the connection `name` to `sim`
    /// with `quota` (its config's `quota:` flow mapping).
    fn start(db: &sequin_pgtemp::Database, sim: &Sim, name: &str, quota: &str) -> Run {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("SEQUIN_TEST_LOG")
                    .map(|f| format!("sequin_runtime={f}"))
                    .unwrap_or_else(|_| "sequin_runtime=warn".into()),
            )
            .with_test_writer()
            .try_init();
        let free = || sequin_pgtemp::free_port().expect("a free port");
        let (proxy_port, metrics_port) = (free(), free());
        let config = format!(
            "database_url: {db}
proxy:
  listen: 127.0.0.1:{proxy_port}
metrics:
  listen: 127.0.0.1:{metrics_port}
connections:
  - name: {name}
    connector: salesforce
    base_url: {base}
    token_url: {base}/services/oauth2/token
    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{refresh}' }}
    objects: [account, contact]
    poll_interval: 300ms
    discovery_interval: 1h
    quota: {quota}
",
            db = db.url,
            base = sim.base_url(),
            refresh = sim.salesforce().refresh_token(),
        );
        let config = Config::parse("quota.yaml", &config, &|_| None).expect("a valid config");
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(async move { process::run(&config, Halves::Both, rx).await });
        Run {
            stop,
            task,
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            proxy: proxy_url(&db.url, proxy_port),
        }
    }

    /// The exposition of `/metrics`, checked by `promtool check metrics`.
    async fn scrape(&self) -> String {
        let body = eventually(Duration::from_secs(20), "/metrics answering", || async {
            let got = match reqwest::get(&self.metrics).await {
                Ok(r) if r.status() == 200 => r.text().await.ok(),
                _ => None,
            };
            (got.is_some(), got)
        })
        .await
        .expect("answered");
        promtool_accepts(&body);
        body
    }

    async fn stop(self) {
        assert!(!self.task.is_finished(), "sequin run is still running");
        let _ = self.stop.send(true);
        self.task
            .await
            .expect("no panic")
            .expect("sequin run stops cleanly");
    }
}

/// The value of the sample `name{labels}` (all of them must match).
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels.iter().all(|(k, v)| {
                    rest.trim_end_matches('}')
                        .split(',')
                        .any(|kv| kv == format!("{k}=\"{v}\""))
                })
        })
        .map(|(_, v)| v.parse().expect("a number"))
}

fn promtool_accepts(exposition: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (cargo xtask deps installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

async fn salesforce_sim() -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Salesforce)
            .seed_records(SEED)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the simulator starts")
}

/// Query requests (first pages and `nextRecordsUrl` pages) served so far.
fn queries(sim: &Sim) -> u64 {
    sim.stats()
        .by_route
        .iter()
        .filter(|(r, _)| r.contains("/query"))
        .map(|(_, n)| n)
        .sum()
}

/// `sequin.quota_status`'s row of `DailyApiRequests`: remaining, floor,
/// backfill floor, paused, reason (`None` before it is read).
async fn daily_row(
    pg: &tokio_postgres::Client,
    connection: &str,
) -> Option<(i64, i64, i64, Option<String>, Option<String>)> {
    pg.query_opt(
        "SELECT remaining, floor, backfill_floor, paused, reason FROM sequin.quota_status
          WHERE connection = $1 AND quota = 'DailyApiRequests' AND remaining IS NOT NULL",
        &[&connection],
    )
    .await
    // Not there until `sequin run` has migrated the database.
    .ok()
    .flatten()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
}

/// Every synced table equals the org.
async fn assert_tables_equal_the_org(pg: &tokio_postgres::Client, sim: &Sim, schema: &str) {
    let sf = sim.salesforce();
    for (object, table) in OBJECTS {
        let cols = spec_columns("salesforce", table);
        assert_table_matches(
            pg,
            schema,
            table,
            "id",
            &cols,
            sf.count(object, false),
            |id| sf.get(object, id),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_pauses_near_the_floor_writes_go_on_and_the_reset_resumes() {
    const NAME: &str = "sf_quota";
    let db = sequin_pgtemp::Database::create("sync_salesforce_quota").unwrap();
    let sim = salesforce_sim().await;
    let sf = sim.salesforce();
    // 1000 a day, 205 left: the backfill floor (20%) is 5 requests away, the
    // backfill needs at least 6 (two batches of each object).
    sf.limits().api_requests = Allocation {
        max: 1000,
        remaining: 205,
    };
    let run = Run::start(&db, &sim, NAME, "{ floor: 10%, paused_every: 500ms }");
    let pg = connect(&db.url).await;

    // The backfill pauses at the backfill floor, and the status view says so.
    let (remaining, floor, backfill_floor, _, reason) =
        eventually(Duration::from_secs(60), "the backfill paused", || async {
            let row = daily_row(&pg, NAME).await;
            let paused = row.as_ref().and_then(|r| r.3.clone());
            (paused.as_deref() == Some("backfill"), row)
        })
        .await
        .expect("a row");
    assert_eq!((floor, backfill_floor), (100, 200));
    assert!((100..=200).contains(&remaining), "remaining {remaining}");
    let reason = reason.expect("a reason");
    assert!(
        reason.starts_with("DailyApiRequests has ") && reason.contains("backfill floor of 200"),
        "{reason}"
    );
    let paused: Vec<(String, String, Option<String>)> = pg
        .query(
            "SELECT object, phase, paused FROM sequin.status WHERE connection = $1 ORDER BY object",
            &[&NAME],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        paused.iter().any(|(_, phase, p)| phase == "backfilling"
            && p.as_deref() == Some(&format!("backfill paused: {reason}")[..])),
        "{paused:?}"
    );

    // No more query requests while paused: only the quota is read (every
    // 500 ms), and what is left stays above the floor.
    let before = queries(&sim);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(queries(&sim), before, "no backfill reads while paused");
    let left = sf.limits().api_requests.remaining;
    assert!(left > 100, "reads stay above the floor: {left} left");

    // A write through the proxy still goes through, and takes its request.
    let proxy = connect_when_up(&run.proxy).await;
    let id: String = proxy
        .query_one(
            &format!(
                "insert into {NAME}.contact (first_name, last_name) values ('Ada', 'Quota') returning id"
            ),
            &[],
        )
        .await
        .expect("a write goes through while backfills pause")
        .get(0);
    assert!(sf.get("Contact", &id).is_some(), "created in the org");
    assert!(
        sf.limits().api_requests.remaining < left,
        "the write took its requests"
    );
    assert_eq!(queries(&sim), before, "still no backfill reads");

    // `sequin status` shows the pause and the quota.
    let objects = status::read(&pg).await.unwrap();
    let rendered = status::render(&objects);
    assert!(rendered.contains(", paused"), "{rendered}");
    let quotas = status::render_quotas(&status::read_quotas(&pg).await.unwrap());
    assert!(quotas.contains("DailyApiRequests"), "{quotas}");
    assert!(
        quotas.contains("backfill (DailyApiRequests has"),
        "{quotas}"
    );
    assert!(
        quotas.contains("DailyBulkV2QueryJobs"),
        "shown too: {quotas}"
    );

    // The metrics: what is left, the floor, and the paused lane.
    let m = run.scrape().await;
    let labels = [("connection", NAME), ("quota", "DailyApiRequests")];
    assert_eq!(sample(&m, "sequin_api_quota_max", &labels), Some(1000.0));
    assert_eq!(sample(&m, "sequin_api_quota_floor", &labels), Some(100.0));
    let gauge = sample(&m, "sequin_api_quota_remaining", &labels).expect("remaining");
    assert!((100.0..=200.0).contains(&gauge), "remaining {gauge}");
    let lane = |lane| {
        sample(
            &m,
            "sequin_api_quota_paused",
            &[("connection", NAME), ("lane", lane)],
        )
    };
    assert_eq!((lane("backfill"), lane("poll")), (Some(1.0), Some(0.0)));
    let jobs = [("connection", NAME), ("quota", "DailyBulkV2QueryJobs")];
    assert_eq!(sample(&m, "sequin_api_quota_max", &jobs), Some(10_000.0));

    // The new day: the backfill resumes and ends with the tables equal.
    sf.reset_daily_limits();
    wait_live(&pg, NAME, Duration::from_secs(120)).await;
    assert_tables_equal_the_org(&pg, &sim, NAME).await;
    let n: i64 = pg
        .query_one(
            &format!("select count(*) from {NAME}.contact where id = $1"),
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the written contact is kept");
    eventually(
        Duration::from_secs(10),
        "the pause lifted in the view",
        || async {
            let row = daily_row(&pg, NAME).await;
            (
                row.as_ref().is_some_and(|r| r.3.is_none() && r.0 > 200),
                row,
            )
        },
    )
    .await;
    let m = run.scrape().await;
    let lane = |lane| {
        sample(
            &m,
            "sequin_api_quota_paused",
            &[("connection", NAME), ("lane", lane)],
        )
    };
    assert_eq!((lane("backfill"), lane("poll")), (Some(0.0), Some(0.0)));
    run.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_quota_pauses_polls_instead_of_retrying_and_the_reset_resumes_them() {
    const NAME: &str = "sf_quota_spent";
    let db = sequin_pgtemp::Database::create("sync_salesforce_quota_spent").unwrap();
    let sim = salesforce_sim().await;
    let sf = sim.salesforce();
    let run = Run::start(&db, &sim, NAME, "{ paused_every: 1s }");
    let pg = connect(&db.url).await;
    wait_live(&pg, NAME, Duration::from_secs(120)).await;

    // Another integration spends the day's requests: the next poll is
    // refused with 403 REQUEST_LIMIT_EXCEEDED, and reads pause.
    sf.set_api_requests_remaining(0);
    let (.., reason) = eventually(Duration::from_secs(20), "the polls paused", || async {
        let row = daily_row(&pg, NAME).await;
        let paused = row.as_ref().and_then(|r| r.3.clone());
        (paused.as_deref() == Some("backfill, poll"), row)
    })
    .await
    .expect("a row");
    assert_eq!(
        reason.as_deref(),
        Some("the API answered that the quota is spent")
    );
    let view: Vec<Option<String>> = pg
        .query(
            "SELECT paused FROM sequin.status WHERE connection = $1",
            &[&NAME],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        view.iter()
            .all(|p| p.as_deref() == Some("polls paused: the API answered that the quota is spent")),
        "{view:?}"
    );
    // Not spinning: over 3 s only the quota's reads (one a second) are
    // refused, and no poll is sent.
    let refused = || sim.stats().by_status.get(&403).copied().unwrap_or(0);
    let (refused_before, queries_before) = (refused(), queries(&sim));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused_after = refused();
    assert!(
        refused_after - refused_before <= 5,
        "{} refusals in 3 s",
        refused_after - refused_before
    );
    assert_eq!(queries(&sim), queries_before, "no polls while spent");

    // A change made meanwhile arrives once the day's requests are back.
    let id = sf
        .create("Account", serde_json::json!({"Name": "Made while spent"}))
        .unwrap();
    sf.reset_daily_limits();
    eventually(
        Duration::from_secs(20),
        "the change after the reset",
        || async {
            let n: i64 = pg
                .query_one(
                    &format!("select count(*) from {NAME}.account where id = $1"),
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            (n == 1, n)
        },
    )
    .await;
    assert_tables_equal_the_org(&pg, &sim, NAME).await;
    run.stop().await;
    sim.shutdown().await;
}
