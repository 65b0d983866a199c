//! Observing Sequin (issue #11): the endpoint of `metrics.listen` and the
//! `sequin.status` views, on a process run as the binary runs it
//! (`sequin_runtime::process::run`: sync and proxy sharing one set of
//! metrics), against a Stripe simulator and real Postgres.
//!
//! - `/metrics` passes `promtool check metrics`, and its values move: lag
//!   and records with the sync, API requests by purpose, rate-limit waits,
//!   write-through statements by outcome with their API time and overhead,
//!   compensations, journal entries, proxy sessions and statements;
//! - `/readyz` turns unready when Postgres stops and ready again when it is
//!   back, and names a connection that cannot start, with its error;
//! - `sequin.status` and `sequin.write_status` show the objects and the
//!   journal, to any role.

use crate::write_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sequin_e2e::{eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_runtime::config::Config;
use sequin_runtime::process::{self, Halves, ProcessError};
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Sim, SimConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use write_common::{connect_when_up, count, db_error, expect_err, proxy_url};

/// A `sequin` process running in the background of a test.
struct Process {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ProcessError>>,
    /// `http://127.0.0.1:<port>` of its metrics endpoint.
    endpoint: String,
}

impl Process {
    /// Runs `halves` of `config_yaml` (which must have `metrics.listen` on
    /// `metrics_port`).
    fn start(config_yaml: &str, halves: Halves, metrics_port: u16) -> Process {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("SEQUIN_TEST_LOG")
                    .map(|f| format!("sequin_runtime={f}"))
                    .unwrap_or_else(|_| "sequin_runtime=warn".into()),
            )
            .with_test_writer()
            .try_init();
        let config = Config::parse("observe.yaml", config_yaml, &|_| None).expect("a valid config");
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(async move { process::run(&config, halves, rx).await });
        Process {
            stop,
            task,
            endpoint: format!("http://127.0.0.1:{metrics_port}"),
        }
    }

    /// GETs `path` of the endpoint: status and body (`None` while it does
    /// not answer).
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = reqwest::get(format!("{}{path}", self.endpoint))
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    /// The exposition of `/metrics`.
    async fn scrape(&self) -> Metrics {
        let (status, body) = self.get("/metrics").await.expect("/metrics answers");
        assert_eq!(status, 200, "/metrics: {body}");
        Metrics(body)
    }

    /// Waits for `/readyz` to answer `status`; returns its body.
    async fn readyz(&self, status: u16, limit: Duration) -> String {
        eventually(limit, &format!("/readyz answering {status}"), || async {
            let got = self.get("/readyz").await;
            (got.as_ref().is_some_and(|(s, _)| *s == status), got)
        })
        .await
        .expect("answered")
        .1
    }

    /// Stops the process (which must still be running) and returns how it
    /// ended.
    async fn stop(self) -> Result<(), ProcessError> {
        assert!(!self.task.is_finished(), "the process is still running");
        let _ = self.stop.send(true);
        self.task.await.expect("the process does not panic")
    }
}

/// One scrape of `/metrics`.
#[derive(Debug)]
struct Metrics(String);

impl Metrics {
    /// The sum of the samples of `name` whose labels include `labels`;
    /// `None` when there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(k, v)| {
                    series_labels
                        .split(',')
                        .any(|kv| kv == format!("{k}=\"{v}\""))
                });
            if matches {
                let v: f64 = value.parse().expect("a sample value");
                found = Some(found.unwrap_or(0.0) + v);
            }
        }
        found
    }

    /// [`Metrics::value`], which must be there.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample of {name} {labels:?} in:\n{}", self.0))
    }
}

/// `promtool` from the PATH; a missing one fails the test with the command
/// that installs it.
fn promtool() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "promtool is not on the PATH: run `cargo xtask deps` (it installs Debian's `prometheus` package: apt-get install -y --no-install-recommends prometheus)"
            )
        })
}

/// `promtool check metrics` must accept the exposition as it is.
fn promtool_accepts(m: &Metrics) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(m.0.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\nexposition:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.0
    );
}

fn stripe_connection(name: &str, sim: &Sim, api_key: &str, extra: &str) -> String {
    format!(
        "  - name: {name}
    connector: stripe
    base_url: {base}
    credentials: {{ api_key: '{api_key}' }}
    objects: [customer]
{extra}",
        base = sim.base_url(),
    )
}

async fn stripe_sim(records: usize) -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(records)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the simulator starts")
}

fn port() -> u16 {
    sequin_pgtemp::free_port().expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_follow_sync_and_write_through() {
    // In a process of its own: its budget of 4 requests a second is the one of every `stripe` connection in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "metrics_pass_promtool_and_follow_sync_and_write_through",
    ) {
        return;
    }
    let db = sequin_pgtemp::Database::create("observe_metrics").unwrap();
    let sim = stripe_sim(120).await;
    let (proxy_port, metrics_port) = (port(), port());
    // A small rate limit (3 of its 4 requests a second for reads) and small
    // pages: the backfill waits for the budget.
    let connection = stripe_connection(
        "stripe",
        &sim,
        sim.token(),
        "    poll_interval: 300ms\n    page_size: 20\n    rate_limit: { requests: 4, per: 1s }\n",
    );
    let config = format!(
        "database_url: {url}\nproxy:\n  listen: 127.0.0.1:{proxy_port}\nmetrics:\n  listen: 127.0.0.1:{metrics_port}\nconnections:\n{connection}",
        url = db.url
    );
    let p = Process::start(&config, Halves::Both, metrics_port);
    let pg = connect(&db.url).await;
    p.readyz(200, Duration::from_secs(60)).await;
    wait_live(&pg, "stripe", Duration::from_secs(60)).await;
    assert_eq!(p.get("/healthz").await, Some((200, "ok\n".to_string())));

    // --- After the backfill: the sync's values.
    let customer = [("connection", "stripe"), ("object", "customer")];
    let m = p.scrape().await;
    promtool_accepts(&m);
    let synced = m.get("sequin_object_records_synced_total", &customer);
    assert!(synced >= 120.0, "records synced: {synced}");
    let lag = m.get("sequin_object_lag_seconds", &customer);
    assert!((0.0..5.0).contains(&lag), "lag: {lag}");
    assert_eq!(
        m.get(
            "sequin_object_phase",
            &[
                ("connection", "stripe"),
                ("object", "customer"),
                ("phase", "live")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "sequin_object_phase",
            &[
                ("connection", "stripe"),
                ("object", "customer"),
                ("phase", "backfilling")
            ]
        ),
        0.0
    );
    assert_eq!(m.get("sequin_object_failing", &customer), 0.0);
    assert_eq!(m.get("sequin_postgres_up", &[]), 1.0);
    assert_eq!(
        m.get("sequin_connection_running", &[("connection", "stripe")]),
        1.0
    );
    // Sync's session pool: the default size, sessions opened and open
    // within it, nothing waiting once live.
    assert_eq!(m.get("sequin_sync_sessions_max", &[]), 10.0);
    let opened = m.get("sequin_sync_sessions_opened_total", &[]);
    let open = m.get("sequin_sync_sessions", &[("state", "in_use")])
        + m.get("sequin_sync_sessions", &[("state", "idle")]);
    assert!(
        (1.0..=10.0).contains(&opened) && (1.0..=opened).contains(&open),
        "sessions opened {opened}, open {open}"
    );
    let backfill_requests = m.get(
        "sequin_api_requests_total",
        &[
            ("connection", "stripe"),
            ("connector", "stripe"),
            ("purpose", "backfill"),
            ("status", "2xx"),
        ],
    );
    assert!(
        backfill_requests >= 6.0,
        "120 records in pages of 20: {backfill_requests}"
    );
    let waits = m.get(
        "sequin_api_rate_limit_waits_total",
        &[
            ("connection", "stripe"),
            ("priority", "read"),
            ("reason", "budget"),
        ],
    );
    assert!(waits >= 1.0, "the backfill waited for the budget: {waits}");
    assert!(
        m.get(
            "sequin_api_rate_limit_wait_seconds_total",
            &[("connection", "stripe"), ("reason", "budget")]
        ) > 0.0
    );
    assert_eq!(
        m.get("sequin_api_budget_capacity", &[("connection", "stripe")]),
        4.0
    );
    let available = m.get("sequin_api_budget_available", &[("connection", "stripe")]);
    assert!((0.0..=4.0).contains(&available), "{available}");
    // The table's row estimate follows Postgres's statistics, which are
    // flushed about once a second.
    eventually(Duration::from_secs(20), "the row estimate", || async {
        let rows = p.scrape().await.value("sequin_object_rows", &customer);
        (rows.is_some_and(|r| r >= 120.0), rows)
    })
    .await;

    // --- The values move: polls keep the lag low, a record created
    // upstream is counted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = eventually(
        Duration::from_secs(10),
        "the lag reset by a poll",
        || async {
            let m = p.scrape().await;
            let lag = m.get("sequin_object_lag_seconds", &customer);
            (lag < 1.0, m)
        },
    )
    .await;
    assert!(
        later.get(
            "sequin_api_requests_total",
            &[("connection", "stripe"), ("purpose", "poll")]
        ) >= 1.0
    );
    sim.stripe()
        .create(Kind::Customer, "name=Upstream+Change")
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the upstream change counted",
        || async {
            let n = p
                .scrape()
                .await
                .value("sequin_object_records_synced_total", &customer);
            (n.is_some_and(|n| n > synced), n)
        },
    )
    .await;

    // --- Write-through: one statement applied, one refused locally, one
    // rolled back (and compensated), one read passed through.
    let proxy = connect_when_up(&proxy_url(&db.url, proxy_port)).await;
    let id: String = proxy
        .query_one(
            "insert into stripe.customer (name, email) values ('Andrea Palladio', 'andrea@palladio.example') returning id",
            &[],
        )
        .await
        .expect("insert through the proxy")
        .get(0);
    let err = expect_err(
        proxy
            .execute(
                "update stripe.customer set email = 'andrea__invalid' where id = $1",
                &[&id],
            )
            .await,
        "an invalid email",
    );
    assert_eq!(db_error(&err).code().code(), "22023");
    proxy.batch_execute("BEGIN").await.unwrap();
    proxy
        .execute(
            "insert into stripe.customer (name) values ('Rolled Back')",
            &[],
        )
        .await
        .expect("insert in a transaction");
    proxy.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        count(
            &proxy,
            "select count(*) from stripe.customer where name = 'Rolled Back'"
        )
        .await,
        0
    );
    let stripe = [("connection", "stripe")];
    let m = eventually(
        Duration::from_secs(30),
        "the rollback compensated",
        || async {
            let m = p.scrape().await;
            let done = m.value(
                "sequin_write_compensations_total",
                &[("connection", "stripe"), ("state", "compensated")],
            ) == Some(1.0);
            (done, m)
        },
    )
    .await;
    promtool_accepts(&m);
    let statements = |outcome: &str, sqlstate: &str| {
        m.get(
            "sequin_write_statements_total",
            &[
                ("connection", "stripe"),
                ("outcome", outcome),
                ("sqlstate", sqlstate),
            ],
        )
    };
    assert_eq!(
        statements("ok", "00000"),
        2.0,
        "the insert and the rolled-back insert"
    );
    assert_eq!(statements("refused", "22023"), 1.0);
    // The refusal was local: two statements called the API.
    assert_eq!(m.get("sequin_write_api_seconds_count", &stripe), 2.0);
    assert!(m.get("sequin_write_api_seconds_sum", &stripe) > 0.0);
    assert_eq!(
        m.get(
            "sequin_write_api_seconds_bucket",
            &[("connection", "stripe"), ("le", "+Inf")]
        ),
        2.0
    );
    assert_eq!(m.get("sequin_write_overhead_seconds_count", &stripe), 3.0);
    assert!(m.get("sequin_write_overhead_seconds_sum", &stripe) > 0.0);
    // Two creates, and the compensating delete.
    assert!(
        m.get(
            "sequin_api_requests_total",
            &[
                ("connection", "stripe"),
                ("purpose", "write"),
                ("status", "2xx")
            ]
        ) >= 3.0
    );
    assert_eq!(
        m.get(
            "sequin_write_journal_entries",
            &[("connection", "stripe"), ("state", "committed")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "sequin_write_journal_entries",
            &[("connection", "stripe"), ("state", "compensated")]
        ),
        1.0
    );
    assert!(m.get("sequin_proxy_sessions_open", &[]) >= 1.0);
    assert!(m.get("sequin_proxy_sessions_total", &[]) >= 1.0);
    let intercepted = m.get(
        "sequin_proxy_statements_total",
        &[("handling", "intercepted")],
    );
    assert_eq!(
        intercepted, 3.0,
        "the insert, the refused update, the rolled-back insert"
    );
    // BEGIN, ROLLBACK and the count passed through, at least.
    assert!(
        m.get(
            "sequin_proxy_statements_total",
            &[("handling", "passed_through")]
        ) >= 3.0
    );
    drop(proxy);
    eventually(Duration::from_secs(10), "the session closed", || async {
        let open = p.scrape().await.value("sequin_proxy_sessions_open", &[]);
        (open == Some(0.0), open)
    })
    .await;

    status_views(&pg, &db).await;
    p.stop().await.expect("the process stops cleanly");
    sim.shutdown().await;
}

/// `sequin.status` and `sequin.write_status` after the test above: the
/// objects with their rows, the journal by state, readable by a role with
/// no other rights.
async fn status_views(pg: &tokio_postgres::Client, db: &sequin_pgtemp::Database) {
    let r = pg
        .query_one(
            "select phase, backfill_percent, rows, lag_seconds, seconds_since_poll, last_error
               from sequin.status where connection = 'stripe' and object = 'customer'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "live");
    assert_eq!(r.get::<_, Option<i32>>(1), None);
    assert_eq!(
        r.get::<_, Option<i64>>(2),
        Some(count(pg, "select count(*) from stripe.customer").await)
    );
    assert!(r.get::<_, Option<f64>>(3).is_some_and(|l| l < 5.0));
    assert!(r.get::<_, Option<f64>>(4).is_some_and(|s| s < 5.0));
    assert_eq!(r.get::<_, Option<String>>(5), None);
    // The events feed: no table, its rows are the records it merged.
    let events: Option<i64> = pg
        .query_one(
            "select rows from sequin.status where connection = 'stripe' and object = '_events'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(events.is_some(), "the _events row has a count");
    let journal: Vec<(String, i64)> = pg
        .query(
            "select state, entries from sequin.write_status where connection = 'stripe' order by state",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        journal,
        vec![("committed".to_string(), 1), ("compensated".to_string(), 1)]
    );
    // How far a backfill is, from the rows counted and the API's total.
    let percent = |rows: Option<i64>, total: Option<i64>| async move {
        pg.query_one("select sequin.backfill_percent($1, $2)", &[&rows, &total])
            .await
            .unwrap()
            .get::<_, Option<i32>>(0)
    };
    assert_eq!(percent(Some(4200), Some(10_000)).await, Some(42));
    assert_eq!(percent(Some(0), Some(10_000)).await, Some(0));
    // Below 100 until live: records created meanwhile can overshoot.
    assert_eq!(percent(Some(10_000), Some(10_000)).await, Some(99));
    assert_eq!(percent(Some(12_000), Some(10_000)).await, Some(99));
    assert_eq!(percent(None, Some(100)).await, Some(0));
    assert_eq!(percent(Some(4200), None).await, None);
    assert_eq!(percent(Some(4200), Some(0)).await, None);

    // A role with no rights on the synced or Sequin's tables reads both.
    let role = format!("observer_{}", std::process::id());
    pg.batch_execute(&format!("create role {role} login password 'observer'"))
        .await
        .unwrap();
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
    let observer = connect(&format!("{scheme}://{role}:observer@{host}")).await;
    let objects = count(
        &observer,
        "select count(*) from sequin.status where connection = 'stripe'",
    )
    .await;
    assert!(objects >= 2, "customer and _events: {objects}");
    assert_eq!(
        count(
            &observer,
            "select sum(entries)::bigint from sequin.write_status"
        )
        .await,
        2
    );
    for closed in [
        "select count(*) from stripe.customer",
        "select count(*) from sequin.sync_state",
    ] {
        let e = expect_err(observer.query(closed, &[]).await, closed);
        assert_eq!(db_error(&e).code().code(), "42501", "{closed}");
    }
    drop(observer);
    pg.batch_execute(&format!("drop role {role}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_postgres_down_and_back() {
    let mut cluster = sequin_pgtemp::Cluster::start().expect("a throwaway cluster");
    let url = cluster.url("postgres");
    let sim = stripe_sim(20).await;
    let metrics_port = port();
    // Connection names differ between the tests of this binary: clients of
    // one name share a rate-limit budget process-wide.
    let config = format!(
        "database_url: {url}\nmetrics:\n  listen: 127.0.0.1:{metrics_port}\nconnections:\n{}",
        stripe_connection(
            "stripe_restart",
            &sim,
            sim.token(),
            "    poll_interval: 200ms\n"
        )
    );
    let p = Process::start(&config, Halves::Sync { once: false }, metrics_port);
    assert_eq!(p.readyz(200, Duration::from_secs(60)).await, "ready\n");

    cluster.stop().expect("Postgres stops");
    let body = p.readyz(503, Duration::from_secs(30)).await;
    assert!(
        body.starts_with("not ready:\n")
            && body.contains("Postgres is unreachable: cannot connect to Postgres"),
        "{body}"
    );
    // Alive all the same, and still scraped.
    assert_eq!(p.get("/healthz").await, Some((200, "ok\n".to_string())));
    let m = p.scrape().await;
    assert_eq!(m.get("sequin_postgres_up", &[]), 0.0);
    promtool_accepts(&m);

    cluster.start_again().expect("Postgres starts again");
    assert_eq!(p.readyz(200, Duration::from_secs(60)).await, "ready\n");
    assert_eq!(p.scrape().await.get("sequin_postgres_up", &[]), 1.0);
    p.stop().await.expect("the process stops cleanly");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_connection_that_cannot_start() {
    let db = sequin_pgtemp::Database::create("observe_ready").unwrap();
    let sim = stripe_sim(5).await;
    let metrics_port = port();
    let config = format!(
        "database_url: {url}\nmetrics:\n  listen: 127.0.0.1:{metrics_port}\nconnections:\n{good}{bad}",
        url = db.url,
        good = stripe_connection("stripe_ready", &sim, sim.token(), ""),
        bad = stripe_connection("stripe_revoked", &sim, "sk_test_revoked", ""),
    );
    let p = Process::start(&config, Halves::Sync { once: false }, metrics_port);
    let body = eventually(
        Duration::from_secs(60),
        "/readyz naming the revoked connection alone",
        || async {
            let body = p.get("/readyz").await.unwrap_or_default();
            let named = body.0 == 503
                && body
                    .1
                    .contains("connection `stripe_revoked` is not running: ")
                && !body.1.contains("connection `stripe_ready` ");
            (named, body)
        },
    )
    .await
    .1;
    assert_eq!(body.lines().count(), 2, "{body}");
    assert!(body.contains("[Stripe]"), "the API's refusal: {body}");
    let m = p.scrape().await;
    assert_eq!(
        m.get(
            "sequin_connection_running",
            &[("connection", "stripe_ready")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "sequin_connection_running",
            &[("connection", "stripe_revoked")]
        ),
        0.0
    );
    assert!(
        m.get(
            "sequin_api_requests_total",
            &[("connection", "stripe_revoked"), ("status", "4xx")]
        ) >= 1.0
    );
    // The engine ends with the connection's error.
    let ended = p.stop().await.expect_err("a connection failed");
    assert!(ended.to_string().contains("stripe_revoked"), "{ended}");
    sim.shutdown().await;
}
