//! Bad input to the real `sequin` binary: an unknown connector, a missing
//! credential variable, an unreachable database, malformed YAML, a revoked
//! API token, TLS mistakes and a bad or busy `metrics.listen` each end the
//! process with a non-zero exit and ONE line on stderr (apart from log
//! lines) that names the fix, and nothing already synced is lost.
//!
//! It lives in `sequin-runtime/tests` (not `tests/e2e`) because only this
//! package's tests get the built binary (`CARGO_BIN_EXE_sequin`).

use crate::process_support;

use sequin_pgtemp::connect;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use process_support::{Output, Scratch, Sequin, run};
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};

/// How long a failing start may take: failing fast is part of the contract.
const FAIL_WITHIN: Duration = Duration::from_secs(30);

fn stripe_config(db_url: &str, base_url: &str, key: &str) -> String {
    format!(
        "database_url: {db_url}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {base_url}\n    credentials: {{ api_key: \"{key}\" }}\n    objects: [customer]\n    poll_interval: 200ms\n"
    )
}

/// `(id, name)` of every synced customer.
async fn customers(db: &tokio_postgres::Client) -> BTreeSet<(String, Option<String>)> {
    db.query("SELECT id, name FROM stripe.customer", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// `(phase, last_error)` of one object.
async fn object_state(db: &tokio_postgres::Client, object: &str) -> (String, Option<String>) {
    let r = db
        .query_one(
            "SELECT phase, last_error FROM sequin.sync_state WHERE connection = 'stripe' AND object = $1",
            &[&object],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Asserts the contract of a failed start: non-zero exit, one message line
/// starting with `error: `, containing every `needle`. Returns the line.
fn assert_one_line_failure(case: &str, out: &Output, needles: &[&str]) -> String {
    assert!(
        !out.status.success(),
        "{case}: exit status {} should be non-zero; stderr:\n{}",
        out.status,
        out.stderr
    );
    let lines = out.message_lines();
    assert_eq!(
        lines.len(),
        1,
        "{case}: exactly one message line expected; stderr:\n{}",
        out.stderr
    );
    let line = &lines[0];
    assert!(line.starts_with("error: "), "{case}: {line}");
    for n in needles {
        assert!(line.contains(n), "{case}: `{n}` missing from: {line}");
    }
    line.clone()
}

/// Runs `sequin sync` with `config` and expects a one-line failure.
fn failing_sync(case: &str, config: &Path, envs: &[(&str, &str)], needles: &[&str]) -> String {
    let started = Instant::now();
    let out = run(config, &["sync"], envs, FAIL_WITHIN);
    let line = assert_one_line_failure(case, &out, needles);
    eprintln!("{case} ({:.1}s): {line}", started.elapsed().as_secs_f64());
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_database_mistakes_fail_with_one_line_naming_the_fix() {
    let db = sequin_pgtemp::Database::create("bad_input").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.stripe().seed_customers(300);
    let scratch = Scratch::new("bad-input");
    let good = stripe_config(&db.url, &sim.base_url(), sim.token());
    let good_path = scratch.write("good.yaml", &good);

    // Something synced first.
    let out = run(
        &good_path,
        &["sync", "--once"],
        &[],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "initial sync: {}", out.stderr);
    let pgc = connect(&db.url).await;
    let before = customers(&pgc).await;
    assert_eq!(before.len(), 300);

    // An unknown connector: the position, a guess, and where the list is.
    let path = scratch.write(
        "unknown.yaml",
        &good.replace("connector: stripe", "connector: strype"),
    );
    failing_sync(
        "unknown connector",
        &path,
        &[],
        &[
            "unknown.yaml:4:16:",
            "unknown connector `strype`",
            "did you mean `stripe`?",
            "sequin connectors",
        ],
    );

    // A credential from an environment variable that is not set.
    let path = scratch.write(
        "missing_env.yaml",
        &good.replace(sim.token(), "${SEQUIN_TEST_UNSET_STRIPE_KEY}"),
    );
    failing_sync(
        "missing credential variable",
        &path,
        &[],
        &[
            "missing_env.yaml:6:",
            "`SEQUIN_TEST_UNSET_STRIPE_KEY` is not set",
            "export SEQUIN_TEST_UNSET_STRIPE_KEY=",
        ],
    );
    // The same file works once the variable is set (the message was right).
    let out = run(
        &path,
        &["sync", "--once"],
        &[("SEQUIN_TEST_UNSET_STRIPE_KEY", sim.token())],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "with the variable set: {}",
        out.stderr
    );

    // A credential missing altogether.
    let path = scratch.write(
        "no_credential.yaml",
        &good.replace(
            &format!("    credentials: {{ api_key: \"{}\" }}\n", sim.token()),
            "",
        ),
    );
    failing_sync(
        "missing credential",
        &path,
        &[],
        &["needs credential `api_key`", "under its `credentials:`"],
    );

    // A database nobody listens on.
    let port = sequin_pgtemp::free_port().unwrap();
    let dead_url = format!("postgres://postgres:secret-pw@127.0.0.1:{port}/app");
    let path = scratch.write("no_db.yaml", &good.replace(&db.url, &dead_url));
    let line = failing_sync(
        "unreachable database",
        &path,
        &[],
        &[
            &format!("cannot connect to Postgres at 127.0.0.1:{port}/app"),
            "Connection refused",
            "database_url",
        ],
    );
    assert!(
        !line.contains("secret-pw"),
        "the password is not shown: {line}"
    );
    let out = run(&path, &["status"], &[], FAIL_WITHIN);
    assert_one_line_failure("status, unreachable database", &out, &["database_url"]);

    // Malformed YAML (an unclosed flow sequence; a mis-indented key).
    let path = scratch.write(
        "malformed.yaml",
        &good.replace("objects: [customer]", "objects: [customer"),
    );
    failing_sync(
        "malformed YAML (flow)",
        &path,
        &[],
        &["malformed.yaml:", "YAML syntax error", "fix the YAML"],
    );
    let path = scratch.write(
        "malformed_indent.yaml",
        &good.replace("    connector: stripe", "   connector: stripe"),
    );
    failing_sync(
        "malformed YAML (indentation)",
        &path,
        &[],
        &[
            "malformed_indent.yaml:4:",
            "YAML syntax error",
            "fix the YAML",
        ],
    );

    // A config file that is not there.
    failing_sync(
        "missing config file",
        &scratch.path("nope.yaml"),
        &[],
        &["cannot read config", "nope.yaml", "--config"],
    );

    // Nothing synced was touched by any of it.
    assert_eq!(customers(&pgc).await, before, "synced data is intact");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_sync_with_the_error_recorded_and_data_kept() {
    const CUSTOMERS: usize = 12_000;
    let db = sequin_pgtemp::Database::create("revoked").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.stripe().seed_customers(CUSTOMERS);
    let scratch = Scratch::new("revoked");
    let good = scratch.write(
        "good.yaml",
        &stripe_config(&db.url, &sim.base_url(), sim.token()),
    );
    // The API no longer accepts this key (as after "Roll key" / revocation
    // in the Stripe dashboard): it answers 401 "Invalid API Key provided".
    let revoked_key = "sk_test_revoked51Nq2xKQ7vB";
    let revoked = scratch.write(
        "revoked.yaml",
        &stripe_config(&db.url, &sim.base_url(), revoked_key),
    );
    let pgc = connect(&db.url).await;

    // 1. Part of a backfill is committed, then the process dies.
    let mut proc = Sequin::spawn(&good, "warn", &["sync"], scratch.path("first.stderr"));
    let start = Instant::now();
    loop {
        let n: i64 = pgc
            .query_one("SELECT count(*) FROM stripe.customer", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n >= 5000 {
            break;
        }
        assert!(proc.exited().is_none(), "sync ended: {}", proc.stderr());
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no first batch: {}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proc.kill9();
    let partial = customers(&pgc).await;
    assert!(partial.len() < CUSTOMERS);
    assert_eq!(object_state(&pgc, "customer").await.0, "backfilling");

    // 2. Resuming the backfill with a revoked key: a clear stop, not retries.
    let line = failing_sync(
        "revoked key during backfill",
        &revoked,
        &[],
        &[
            "connection `stripe`",
            "Invalid API Key provided",
            "update `api_key`",
        ],
    );
    assert!(!line.contains(revoked_key), "the key is not shown: {line}");
    assert_eq!(customers(&pgc).await, partial, "committed rows are kept");
    let (phase, error) = object_state(&pgc, "customer").await;
    assert_eq!(phase, "backfilling");
    let error = error.expect("the error is recorded in sync_state");
    assert!(error.contains("Invalid API Key provided"), "{error}");
    let status = run(&revoked, &["status"], &[], FAIL_WITHIN);
    assert!(status.status.success(), "status: {}", status.stderr);
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with("stripe") && l.contains(" customer "))
        .unwrap_or_else(|| panic!("no customer line in:\n{}", status.stdout));
    assert!(
        row.contains("backfilling") && row.contains("Invalid API Key provided"),
        "status shows the error: {row}"
    );

    // 3. With the key fixed the backfill completes from where it stopped.
    let out = run(&good, &["sync", "--once"], &[], Duration::from_secs(120));
    assert!(
        out.status.success(),
        "sync with the good key: {}",
        out.stderr
    );
    let full = customers(&pgc).await;
    assert_eq!(full.len(), CUSTOMERS);
    let mut api: Vec<String> = sim.stripe().ids(Kind::Customer);
    api.sort();
    let ids: Vec<String> = full.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, api, "the table equals the API");
    assert_eq!(object_state(&pgc, "customer").await, ("live".into(), None));

    // 4. Revoked while live: the events poll is refused; the process stops.
    let changed = api[7].clone();
    sim.stripe()
        .update(Kind::Customer, &changed, "name=Not+Synced+Yet")
        .unwrap();
    failing_sync(
        "revoked key while live",
        &revoked,
        &[],
        &[
            "connection `stripe`",
            "Invalid API Key provided",
            "update `api_key`",
        ],
    );
    assert_eq!(customers(&pgc).await, full, "live data is kept");
    let (_, events_error) = object_state(&pgc, "_events").await;
    assert!(
        events_error
            .as_deref()
            .is_some_and(|e| e.contains("Invalid API Key provided")),
        "{events_error:?}"
    );
    // And the good key picks up the change made meanwhile.
    let out = run(&good, &["sync", "--once"], &[], Duration::from_secs(60));
    assert!(out.status.success(), "{}", out.stderr);
    let name: Option<String> = pgc
        .query_one(
            "SELECT name FROM stripe.customer WHERE id = $1",
            &[&changed],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name.as_deref(), Some("Not Synced Yet"));
    sim.shutdown().await;
}

/// POSTs a refresh grant to the simulator's token endpoint, as another
/// client of the same connected app would; returns the new refresh token
/// (with rotation on, the one used is revoked).
async fn refresh_out_of_band(sim: &sequin_sim::Sim, refresh_token: &str) -> String {
    use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET};
    let body = format!(
        "grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={}",
        percent_encode(refresh_token)
    );
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token in {resp}"))
        .to_string()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Salesforce refresh token revoked (rotated away by another client):
/// sync stops with a line naming the credentials to update, the data
/// stays, and a new refresh token put in the config works even though the
/// stored (rotated, now revoked) one is tried first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_salesforce_refresh_token_names_the_fix_and_a_new_one_works() {
    use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET};
    let db = sequin_pgtemp::Database::create("revoked_sf").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce)
            .seed_records(60)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    sf.set_rotate_refresh_tokens(true);
    let scratch = Scratch::new("revoked-sf");
    let config = |refresh: &str| {
        format!(
            "database_url: {db}\nconnections:\n  - name: salesforce\n    connector: salesforce\n    base_url: {base}\n    token_url: {base}/services/oauth2/token\n    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{refresh}' }}\n    objects: [account]\n    poll_interval: 200ms\n",
            db = db.url,
            base = sim.base_url()
        )
    };
    let first_refresh = sf.refresh_token();
    let first = scratch.write("first.yaml", &config(&first_refresh));
    let out = run(&first, &["sync", "--once"], &[], Duration::from_secs(120));
    assert!(out.status.success(), "first sync: {}", out.stderr);
    let pgc = connect(&db.url).await;
    let synced: Vec<(String, Option<String>)> = pgc
        .query("SELECT id, name FROM salesforce.account ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(synced.len(), sf.count("Account", false));
    // Sequin keeps the rotated refresh token; the configured one is revoked.
    let stored: String = pgc
        .query_one(
            "SELECT refresh_token FROM sequin.oauth_token WHERE connection = 'salesforce'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(stored, first_refresh, "the refresh token was rotated");

    // Another client uses (and so revokes) Sequin's stored token.
    let new_refresh = refresh_out_of_band(&sim, &stored).await;
    // And the access tokens issued so far end (as a revocation does).
    sf.expire_access_tokens();
    sf.update(
        "Account",
        &synced[0].0,
        serde_json::json!({"Name": "Renamed While Revoked"}),
    )
    .unwrap();

    // Neither the stored nor the configured token works: a clear stop.
    let line = failing_sync(
        "revoked Salesforce refresh token",
        &first,
        &[],
        &["connection `salesforce`", "update", "`refresh_token`"],
    );
    for secret in [&stored, &first_refresh, &new_refresh] {
        assert!(!line.contains(secret.as_str()), "no token in: {line}");
    }
    let kept: Vec<(String, Option<String>)> = pgc
        .query("SELECT id, name FROM salesforce.account ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(kept, synced, "synced data is kept");
    // On the object's row, or on the connection's (`_connection`) when the
    // refusal came before the object's task (discovery's describeGlobal).
    let errors: Vec<(String, String)> = pgc
        .query(
            "SELECT object, last_error FROM sequin.sync_state
              WHERE connection = 'salesforce' AND object IN ('account', '_connection')
                AND last_error IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        errors.iter().any(|(_, e)| e.contains("OAuth")),
        "the error is recorded: {errors:?}"
    );

    // The fix the message names: a new refresh token in the config.
    let fixed = scratch.write("fixed.yaml", &config(&new_refresh));
    let out = run(&fixed, &["sync", "--once"], &[], Duration::from_secs(120));
    assert!(
        out.status.success(),
        "sync with the new token: {}",
        out.stderr
    );
    let name: Option<String> = pgc
        .query_one(
            "SELECT name FROM salesforce.account WHERE id = $1",
            &[&synced[0].0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name.as_deref(), Some("Renamed While Revoked"));
    sim.shutdown().await;
}

/// TLS mistakes in `database_url` end `sequin` with one line naming the URL
/// parameter: a bad sslmode or an unreadable sslrootcert before any work
/// (when the config loads), a server without SSL under `sslmode=require`,
/// a certificate for another host under `verify-full`. And
/// `sslrootcert=system` means the system's store as OpenSSL reads it
/// (`SSL_CERT_FILE` here): `sequin migrate` gets through with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mistakes_fail_with_one_line_naming_the_parameter() {
    use sequin_pgtemp::{Auth, Cluster, Options, PASSWORD, SUPERUSER};
    let scratch = Scratch::new("bad-input-tls");
    let config = |name: &str, url: &str| {
        scratch.write(name, &format!("database_url: \"{url}\"\nconnections: []\n"))
    };
    let migrate = |path: &Path, envs: &[(&str, &str)]| run(path, &["migrate"], envs, FAIL_WITHIN);

    let path = config("mode.yaml", "postgres://u@127.0.0.1:1/app?sslmode=verify");
    let out = migrate(&path, &[]);
    assert_one_line_failure(
        "unknown sslmode",
        &out,
        &[
            "mode.yaml:1:15: database_url: sslmode=`verify` is not a libpq sslmode",
            "verify-ca, verify-full",
        ],
    );
    let path = config(
        "root.yaml",
        "postgres://u@127.0.0.1:1/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let out = migrate(&path, &[]);
    assert_one_line_failure(
        "unreadable sslrootcert",
        &out,
        &["database_url: cannot read sslrootcert `/nonexistent/ca.pem`"],
    );

    // A server without SSL (the plain shared cluster).
    let plain = sequin_pgtemp::Database::create("bad_input_tls").unwrap();
    let path = config("require.yaml", &format!("{}?sslmode=require", plain.url));
    let out = migrate(&path, &[]);
    assert_one_line_failure(
        "require without SSL",
        &out,
        &["does not accept SSL connections, and database_url has sslmode=require"],
    );

    // A TLS-only server whose certificate names localhost.
    let tls = Cluster::start_with(Options {
        auth: Auth::Scram,
        tls: true,
        ..Default::default()
    })
    .unwrap();
    let ca = tls.ca_cert().display().to_string();
    let url = |host: &str, params: &str| {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@{host}:{}/postgres?{params}",
            tls.port()
        )
    };
    let path = config(
        "host.yaml",
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
    );
    let out = migrate(&path, &[]);
    assert_one_line_failure(
        "wrong host",
        &out,
        &["not valid for host `127.0.0.1`", "sslmode=verify-ca"],
    );
    let path = config("system.yaml", &url("localhost", "sslrootcert=system"));
    let out = migrate(&path, &[("SSL_CERT_FILE", &ca)]);
    assert!(
        out.status.success(),
        "sslrootcert=system with SSL_CERT_FILE: {}",
        out.stderr
    );
    assert!(out.stdout.contains("migrated"), "{}", out.stdout);
}

/// `metrics.listen` that is not host:port fails when the config loads, and
/// a port already in use fails before any work (no migration, no sync), in
/// `sync` and `run` alike: one line naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_mistakes_fail_with_one_line_naming_the_key() {
    let db = sequin_pgtemp::Database::create("bad_input_metrics").unwrap();
    let scratch = Scratch::new("bad-input-metrics");
    // No API is needed: nothing gets that far.
    let base = stripe_config(&db.url, "http://127.0.0.1:9", "sk_test_unused");

    let path = scratch.write(
        "port_only.yaml",
        &format!("{base}metrics:\n  listen: 9464\n"),
    );
    failing_sync(
        "metrics.listen without a host",
        &path,
        &[],
        &[
            "port_only.yaml:10:11:",
            "metrics.listen `9464` is not host:port",
            "e.g. 127.0.0.1:9464",
        ],
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let path = scratch.write(
        "busy.yaml",
        &format!("{base}metrics:\n  listen: 127.0.0.1:{port}\n"),
    );
    let needles = [
        &format!("metrics.listen 127.0.0.1:{port}: cannot listen there") as &str,
        "in use",
        "set metrics.listen to a free one",
    ];
    failing_sync("metrics port in use (sync)", &path, &[], &needles);
    let proxy_port = sequin_pgtemp::free_port().unwrap();
    let path = scratch.write(
        "busy_run.yaml",
        &format!(
            "{base}proxy:\n  listen: 127.0.0.1:{proxy_port}\nmetrics:\n  listen: 127.0.0.1:{port}\n"
        ),
    );
    let out = run(&path, &["run"], &[], FAIL_WITHIN);
    assert_one_line_failure("metrics port in use (run)", &out, &needles);

    // Before any work: the database was not even migrated.
    let pgc = connect(&db.url).await;
    let migrated: bool = pgc
        .query_one("SELECT to_regclass('sequin.sync_state') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!migrated, "nothing ran before the port was refused");
    drop(busy);
}

/// Issue #10, item 7: starting again on a database that is in place says
/// nothing about it: no "already exists, skipping" NOTICE from Postgres, at
/// any log level, because nothing that is in place is created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_again_is_quiet() {
    let db = sequin_pgtemp::Database::create("migrate_quiet").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(1).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let scratch = Scratch::new("migrate_quiet");
    let config = scratch.write(
        "sequin.yaml",
        &stripe_config(&db.url, &sim.base_url(), sim.token()),
    );
    let migrate = || {
        tokio::task::block_in_place(|| {
            std::process::Command::new(process_support::SEQUIN)
                .arg("--config")
                .arg(&config)
                .args(["--log", "info", "migrate"])
                .env_remove("SEQUIN_CONFIG")
                .env_remove("SEQUIN_LOG")
                .output()
                .expect("sequin migrate runs")
        })
    };
    let first = migrate();
    assert!(first.status.success(), "{first:?}");
    let again = migrate();
    assert!(again.status.success(), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !stderr.contains("NOTICE") && !stderr.contains("skipping"),
        "a second migration logs nothing about what is in place:\n{stderr}"
    );
    let versions: i64 = connect(&db.url)
        .await
        .query_one("SELECT count(*) FROM sequin.schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        versions >= 6,
        "every migration is recorded once: {versions}"
    );
}
