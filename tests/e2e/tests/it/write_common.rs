//! Shared by the `write_*` end-to-end tests of write-through (issue #6): a
//! fresh database, an API simulator, the sync engine and the Sequin proxy
//! running in-process, a direct connection (to look at Postgres as it is)
//! and one through the proxy (to write as an application would), plus
//! checks of the ErrorResponse a rejected write produces.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sequin_e2e::{Running, wait_live};
// The kit's, re-exported for the tests that glob-import these helpers.
pub use sequin_pgtemp::drivers::{node_modules, python_env, run_script};
pub use sequin_pgtemp::{connect, connect_when_up};
use sequin_sim::{Api, Sim, SimConfig};
use tokio_postgres::error::DbError;
use tokio_postgres::{Client, SimpleQueryMessage};

/// A simulator, a database, the engine with its proxy, and two clients.
pub struct Setup {
    pub sim: Sim,
    /// The engine and proxy; `None` once stopped.
    pub running: Option<Running>,
    /// Connected straight to Postgres (reads; guard checks).
    pub pg: Client,
    /// Connected through the Sequin proxy (writes).
    pub proxy: Client,
    /// `postgres://` URL of the proxy, for other drivers.
    pub proxy_url: String,
    pub db: sequin_pgtemp::Database,
}

impl Setup {
    /// Starts a simulator of `api` seeded with `seed` records per object,
    /// and the engine with its proxy for the connection `connection(&sim)`
    /// returns (the YAML list item under `connections:`); waits until every
    /// object is live and the proxy accepts connections.
    pub async fn start(
        api: Api,
        seed: usize,
        db_prefix: &str,
        connection: impl FnOnce(&Sim) -> String,
    ) -> Setup {
        Setup::start_with_proxy(api, seed, db_prefix, "", connection).await
    }

    /// [`Setup::start`] with more keys under `proxy:` (`proxy_keys`: YAML
    /// lines indented by two spaces).
    pub async fn start_with_proxy(
        api: Api,
        seed: usize,
        db_prefix: &str,
        proxy_keys: &str,
        connection: impl FnOnce(&Sim) -> String,
    ) -> Setup {
        // The engine's own log, for a test that fails: SEQUIN_TEST_LOG=info.
        if let Ok(filter) = std::env::var("SEQUIN_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(format!("sequin_runtime={filter}"))
                .with_test_writer()
                .try_init();
        }
        let db = sequin_pgtemp::Database::create(db_prefix).expect("a test database");
        let sim = sequin_sim::start(
            SimConfig::new(api).seed_records(seed).rate_limit(0.0),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("the simulator starts");
        let port = sequin_pgtemp::free_port().expect("a free port");
        let config = format!(
            "database_url: {db}\nproxy:\n  listen: 127.0.0.1:{port}\n{proxy_keys}connections:\n{conn}",
            db = db.url,
            conn = connection(&sim),
        );
        let running = Running::start(&config);
        let pg = connect(&db.url).await;
        wait_live(&pg, api.name(), Duration::from_secs(120)).await;
        if running.finished() {
            panic!("the engine stopped early: {:?}", running.stop().await);
        }
        let proxy_url = proxy_url(&db.url, port);
        let proxy = connect_when_up(&proxy_url).await;
        Setup {
            sim,
            running: Some(running),
            pg,
            proxy,
            proxy_url,
            db,
        }
    }

    /// Waits until each of `objects` of `connection` has its table and is
    /// live. `wait_live` holds once every object that has started is live;
    /// with several objects (discovered Airtable tables) one may not have
    /// started yet.
    pub async fn wait_objects_live(&self, connection: &str, objects: &[&str]) {
        let wanted: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
        sequin_e2e::eventually(Duration::from_secs(120), "the objects live", || async {
            let live: Vec<String> = self
                .pg
                .query(
                    "select s.object from sequin.sync_state s \
                      where s.connection = $1 and s.phase = 'live' and s.object = any($2) \
                        and to_regclass(format('%I.%I', s.connection, s.object)) is not null",
                    &[&connection, &wanted],
                )
                .await
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .unwrap_or_default();
            (live.len() == wanted.len(), live)
        })
        .await;
    }

    /// Another connection through the proxy.
    pub async fn proxy_client(&self) -> Client {
        connect_when_up(&self.proxy_url).await
    }

    /// Stops the engine (it must not have failed) and the simulator.
    pub async fn finish(mut self) {
        let running = self.running.take().expect("running");
        assert!(!running.finished(), "the engine is still running");
        running.stop().await.expect("the engine stops cleanly");
        self.sim.shutdown().await;
    }
}

/// The Salesforce connection (`objects` synced), polling rarely: the tests
/// change the org behind the engine's back only where they want the engine
/// not to notice.
pub fn salesforce_connection(sim: &Sim, objects: &str) -> String {
    use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET};
    let base = sim.base_url();
    format!(
        "  - name: salesforce
    connector: salesforce
    base_url: {base}
    token_url: {base}/services/oauth2/token
    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{refresh}' }}
    objects: [{objects}]
    poll_interval: 1h
    discovery_interval: 1h
",
        refresh = sim.salesforce().refresh_token(),
    )
}

pub fn stripe_connection(sim: &Sim, objects: &str) -> String {
    format!(
        "  - name: stripe
    connector: stripe
    base_url: {base}
    credentials: {{ api_key: '{token}' }}
    objects: [{objects}]
    poll_interval: 1h
",
        base = sim.base_url(),
        token = sim.token(),
    )
}

pub fn hubspot_connection(sim: &Sim, objects: &str) -> String {
    format!(
        "  - name: hubspot
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [{objects}]
    poll_interval: 1h
    discovery_interval: 1h
",
        base = sim.base_url(),
        token = sim.token(),
    )
}

pub fn airtable_connection(sim: &Sim) -> String {
    format!(
        "  - name: airtable
    connector: airtable
    base_url: {base}
    credentials: {{ api_key: '{token}' }}
    params: {{ base_id: {base_id} }}
    poll_interval: 1h
    discovery_interval: 1h
",
        base = sim.base_url(),
        token = sim.token(),
        base_id = sequin_sim::airtable::DEMO_BASE_ID,
    )
}

/// `direct` (a `postgres://user[:pw]@host:port/db[?q]` URL) with the proxy's
/// address instead of the server's: same user, password and database.
pub fn proxy_url(direct: &str, port: u16) -> String {
    let scheme_end = direct.find("://").expect("a postgres:// URL") + 3;
    let rest = &direct[scheme_end..];
    let host_start = rest.find('@').map(|i| i + 1).unwrap_or(0);
    let host_end = rest[host_start..]
        .find(['/', '?'])
        .map(|i| host_start + i)
        .unwrap_or(rest.len());
    format!(
        "{}{}127.0.0.1:{port}{}",
        &direct[..scheme_end],
        &rest[..host_start],
        &rest[host_end..]
    )
}

/// The server's error inside a client error (panics on I/O errors).
pub fn db_error(e: &tokio_postgres::Error) -> &DbError {
    e.as_db_error()
        .unwrap_or_else(|| panic!("expected an ErrorResponse, got {e:?}"))
}

/// Unwraps the error of a statement that must fail.
pub fn expect_err<T: std::fmt::Debug>(
    r: Result<T, tokio_postgres::Error>,
    what: &str,
) -> tokio_postgres::Error {
    match r {
        Ok(v) => panic!("{what} must be refused, but it succeeded: {v:?}"),
        Err(e) => e,
    }
}

/// What a rejected write's ErrorResponse must say.
pub struct Rejection<'a> {
    pub code: &'a str,
    /// `[Salesforce]: ` etc.
    pub prefix: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    /// The column the error names; `None`: not checked (the API names none).
    pub column: Option<&'a str>,
    /// Substrings of the message.
    pub message_has: &'a [&'a str],
    /// Substrings of the DETAIL.
    pub detail_has: &'a [&'a str],
}

/// Checks an ErrorResponse field by field; returns it for further checks.
pub fn assert_rejection<'e>(e: &'e tokio_postgres::Error, want: &Rejection<'_>) -> &'e DbError {
    let db = db_error(e);
    let all = format!(
        "code {} message {:?} detail {:?} schema {:?} table {:?} column {:?}",
        db.code().code(),
        db.message(),
        db.detail(),
        db.schema(),
        db.table(),
        db.column()
    );
    assert_eq!(db.code().code(), want.code, "SQLSTATE of {all}");
    assert_eq!(db.severity(), "ERROR", "{all}");
    assert!(
        db.message().starts_with(want.prefix),
        "message prefix {:?}: {all}",
        want.prefix
    );
    for s in want.message_has {
        assert!(db.message().contains(s), "message has {s:?}: {all}");
    }
    for s in want.detail_has {
        assert!(
            db.detail().is_some_and(|d| d.contains(s)),
            "detail has {s:?}: {all}"
        );
    }
    assert_eq!(db.schema(), Some(want.schema), "schema of {all}");
    assert_eq!(db.table(), Some(want.table), "table of {all}");
    if let Some(column) = want.column {
        assert_eq!(db.column(), Some(column), "column of {all}");
    }
    db
}

/// A `count(*)`-like single bigint.
pub async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Rows affected by a statement run in the simple protocol (the last
/// CommandComplete).
pub async fn simple_rows(c: &Client, sql: &str) -> Result<u64, tokio_postgres::Error> {
    let msgs = c.simple_query(sql).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .next_back()
        .expect("a CommandComplete"))
}

/// In an explicit transaction a rejected write aborts it: the next statement
/// gets 25P02 until ROLLBACK, after which the session works again. Returns
/// the write's error.
pub async fn assert_aborts_transaction(c: &Client, failing_write: &str) -> tokio_postgres::Error {
    c.batch_execute("BEGIN").await.expect("BEGIN");
    let err = expect_err(c.query(failing_write, &[]).await, failing_write);
    let next = expect_err(
        c.query("SELECT 1", &[]).await,
        "a statement after the error",
    );
    assert_eq!(
        db_error(&next).code().code(),
        "25P02",
        "in a failed transaction: {next:?}"
    );
    c.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "the session works after ROLLBACK");
    err
}

/// No row of the synced table still holds a provisional id.
pub async fn assert_no_pending_ids(pg: &Client, table: &str, id_column: &str) {
    let sql = format!("SELECT count(*) FROM {table} WHERE {id_column} LIKE '\\_pending\\_%'");
    assert_eq!(count(pg, &sql).await, 0, "{sql}");
}

/// psql of the Postgres installation the tests use.
pub fn psql() -> PathBuf {
    sequin_pgtemp::find_bindir()
        .map(|b| b.join("psql"))
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// Runs `psql` on `url` with `script` on stdin (no psqlrc, verbose errors so
/// the SQLSTATE shows, errors do not stop the script). Returns (stdout,
/// stderr).
pub async fn run_psql(url: &str, script: &str) -> (String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(psql())
        .args(["-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-d", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let o = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("psql finishes in time")
        .unwrap();
    assert!(
        o.status.success(),
        "psql exits 0 (ON_ERROR_STOP is off): {o:?}"
    );
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The driver scripts of `tests/write_drivers/`.
pub fn driver_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/write_drivers")
}

/// The JSON a driver script prints on its `RESULT ` line.
pub fn script_result(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("RESULT is JSON ({e}): {line}"))
}
