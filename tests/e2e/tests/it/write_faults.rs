//! Write-through under faults (issue #6): the API timing out, failing with a
//! 5xx, resetting the connection or losing its response in the middle of a
//! write; the client disconnecting mid-write; Postgres restarting mid-write;
//! and a ROLLBACK after writes the API already applied.
//!
//! What must hold every time: no duplicate in the API, no row in Postgres
//! that the API does not have (once the dust settles the two agree, record
//! for record), and the client, if it is still there, gets an error that
//! says what happened. Stripe honours `Idempotency-Key`, so a create is
//! retried through an ambiguous failure and still happens once; Salesforce
//! has no idempotency, so its create is not retried, the error says the
//! record may exist and will arrive through sync, and sync brings it in once.
//! Updates and deletes are idempotent and retried. An API that fails every
//! attempt ends in 58030 naming the API. A transaction that does not commit
//! (ROLLBACK, disconnect, Postgres restart) has its API effects compensated
//! (`compensated` in `sequin.write_journal`), except deletes
//! (`irreversible`: the local row goes too).
//!
//! A fault hits exactly one request: it is armed just before the statement
//! and cleared as soon as the simulator has counted the request on the
//! route of interest. The simulator reads its fault settings when a request
//! arrives, so the request in flight keeps the fault and the retry, if any,
//! sees none.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Faults, Sim, SimConfig};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;

/// The per-connection key of the per-attempt API timeout in `sequin.yaml`
/// (the default of 60 s would make a timeout test take minutes).
const TIMEOUT_KEY: &str = "request_timeout";
/// The API timeout the timeout scenarios configure.
const API_TIMEOUT: &str = "1s";
/// Latency injected to make the API time out (above [`API_TIMEOUT`]).
const TIMEOUT_LATENCY: Duration = Duration::from_millis(2000);
/// Latency injected to keep a write in flight while the client or Postgres
/// goes away (below the default timeout, so the API call itself succeeds).
const IN_FLIGHT_LATENCY: Duration = Duration::from_millis(1500);
/// Journal states after which nothing more happens to an entry.
/// (`unknown`: the transaction's fate could not be read; checked apart.)
const FINAL_STATES: [&str; 7] = [
    "committed",
    "compensated",
    "irreversible",
    "compensation_failed",
    "unknown",
    "rejected",
    "conflict",
];

// ---------------------------------------------------------------------------
// The stack: a database, a simulator, `sequin` (sync + proxy) in-process.

/// Which API a stack runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Stripe,
    Salesforce,
}

impl Which {
    /// The connection (and Postgres schema) name.
    fn connection(self) -> &'static str {
        match self {
            Which::Stripe => "stripe",
            Which::Salesforce => "salesforce",
        }
    }

    /// The table the tests write.
    fn table(self) -> &'static str {
        match self {
            Which::Stripe => "stripe.customer",
            Which::Salesforce => "salesforce.contact",
        }
    }
}

/// A running simulator and `sequin` with its proxy, against one database.
struct Stack {
    which: Which,
    sim: Sim,
    running: Option<Running>,
    yaml: String,
    db_url: String,
    proxy_port: u16,
    /// A direct connection (reads only; writes are refused by the guard).
    pg: tokio_postgres::Client,
}

impl Stack {
    /// Starts a simulator seeded with a few records, and `sequin` syncing
    /// one object of it into `db_url` with the proxy on a free port; waits
    /// until the object is live.
    async fn start(which: Which, db_url: &str, timeout: Option<&str>) -> Stack {
        let api = match which {
            Which::Stripe => Api::Stripe,
            Which::Salesforce => Api::Salesforce,
        };
        let sim = sequin_sim::start(
            SimConfig::new(api).seed_records(3).rate_limit(0.0),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let proxy_port = sequin_pgtemp::free_port().unwrap();
        let base = sim.base_url();
        let connection = match which {
            Which::Stripe => format!(
                "  - name: stripe\n    connector: stripe\n    base_url: {base}\n    credentials: {{ api_key: '{}' }}\n    objects: [customer]\n",
                sim.token()
            ),
            Which::Salesforce => format!(
                "  - name: salesforce\n    connector: salesforce\n    base_url: {base}\n    token_url: {base}/services/oauth2/token\n    credentials: {{ client_id: '{}', client_secret: '{}', refresh_token: '{}' }}\n    objects: [contact]\n",
                sequin_sim::salesforce::CLIENT_ID,
                sequin_sim::salesforce::CLIENT_SECRET,
                sim.salesforce().refresh_token()
            ),
        };
        let mut yaml = format!(
            "database_url: {db_url}\nproxy:\n  listen: 127.0.0.1:{proxy_port}\nconnections:\n{connection}    poll_interval: 100ms\n    rate_limit: {{ requests: 1000000, per: 1s }}\n"
        );
        if let Some(t) = timeout {
            yaml.push_str(&format!("    {TIMEOUT_KEY}: {t}\n"));
        }
        let running = Running::start(&yaml);
        let pg = connect(db_url).await;
        wait_live(&pg, which.connection(), Duration::from_secs(120)).await;
        Stack {
            which,
            sim,
            running: Some(running),
            yaml,
            db_url: db_url.to_string(),
            proxy_port,
            pg,
        }
    }

    /// A client connected through the proxy, and the task driving its
    /// socket (abort it to drop the connection without a Terminate).
    async fn client(&self) -> (tokio_postgres::Client, JoinHandle<()>) {
        let direct: tokio_postgres::Config = self.db_url.parse().unwrap();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1").port(self.proxy_port);
        if let Some(user) = direct.get_user() {
            cfg.user(user);
        }
        if let Some(password) = direct.get_password() {
            cfg.password(password);
        }
        if let Some(db) = direct.get_dbname() {
            cfg.dbname(db);
        }
        let start = Instant::now();
        loop {
            match cfg.connect(tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    let task = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    return (client, task);
                }
                // The proxy starts listening once the engine has migrated.
                Err(_) if start.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect through the proxy: {e}"),
            }
        }
    }

    /// Requests the simulator has counted on the create route of the table.
    fn creates(&self) -> u64 {
        self.sent(Op::Create)
    }

    /// Requests the simulator has counted on the route of `op`.
    fn sent(&self, op: Op) -> u64 {
        requests(self.which, op, &self.sim.stats())
    }

    /// Arms `faults` and returns a future that clears them as soon as the
    /// simulator has counted one more create request than now.
    fn fault_next_create(&self, faults: Faults) -> impl std::future::Future<Output = ()> + '_ {
        self.fault_next(Op::Create, faults)
    }

    /// Arms `faults` and returns a future that clears them as soon as the
    /// simulator has counted one more request of `op` than now.
    fn fault_next(&self, op: Op, faults: Faults) -> impl std::future::Future<Output = ()> + '_ {
        let before = self.sent(op);
        self.sim.set_faults(faults);
        async move {
            let start = Instant::now();
            while self.sent(op) == before && start.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            self.sim.set_faults(Faults::default());
        }
    }

    /// Ids of the API's records with `email`.
    async fn api_ids_with_email(&self, email: &str) -> Vec<String> {
        match self.which {
            Which::Stripe => {
                let stripe = self.sim.stripe();
                let mut ids: Vec<String> = stripe
                    .ids(Kind::Customer)
                    .into_iter()
                    .filter(|id| {
                        stripe
                            .get(Kind::Customer, id)
                            .is_some_and(|c| c["email"].as_str() == Some(email))
                    })
                    .collect();
                ids.sort();
                ids
            }
            Which::Salesforce => {
                salesforce_query(
                    &self.sim,
                    &format!("SELECT Id FROM Contact WHERE Email = '{email}'"),
                )
                .await
            }
        }
    }

    /// Ids of every live record of the API's object.
    async fn api_ids(&self) -> BTreeSet<String> {
        match self.which {
            Which::Stripe => self.sim.stripe().ids(Kind::Customer).into_iter().collect(),
            Which::Salesforce => salesforce_query(&self.sim, "SELECT Id FROM Contact")
                .await
                .into_iter()
                .collect(),
        }
    }

    async fn pg_ids(&self) -> BTreeSet<String> {
        self.pg
            .query(&format!("SELECT id FROM {}", self.which.table()), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn pg_ids_with_email(&self, email: &str) -> Vec<String> {
        self.pg
            .query(
                &format!(
                    "SELECT id FROM {} WHERE email = $1 ORDER BY id",
                    self.which.table()
                ),
                &[&email],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Journal entries of this connection: (api_id, state, op).
    async fn journal(&self) -> Vec<(Option<String>, String, String)> {
        journal(&self.pg, self.which.connection()).await
    }

    /// Waits until Postgres and the API hold the same records (the whole
    /// object, and those with `email` in particular) and no journal entry is
    /// still in flight; then checks that this lasts over several sync polls.
    /// Returns the ids with `email` (at most one: no duplicate).
    async fn settle(&self, email: &str) -> Vec<String> {
        let state = || async {
            let api = self.api_ids().await;
            let pg = self.pg_ids().await;
            let api_email = self.api_ids_with_email(email).await;
            let pg_email = self.pg_ids_with_email(email).await;
            let in_flight: Vec<_> = self
                .journal()
                .await
                .into_iter()
                .filter(|(_, state, _)| !FINAL_STATES.contains(&state.as_str()))
                .collect();
            let agreed = api == pg && api_email == pg_email && in_flight.is_empty();
            (agreed, (api_email, pg_email, api, pg, in_flight))
        };
        let (api_email, ..) = eventually(
            Duration::from_secs(60),
            "Postgres and the API agree and the journal is settled",
            state,
        )
        .await;
        // Sync polls every 100 ms: a late upsert or a late compensation
        // would show within a second.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let (still, last) = state().await;
        assert!(still, "agreement did not last: {last:?}");
        assert!(
            api_email.len() <= 1,
            "no duplicate in the API for {email}: {api_email:?}"
        );
        let journal = self.journal().await;
        assert!(
            journal
                .iter()
                .all(|(_, s, _)| s != "compensation_failed" && s != "unknown"),
            "no failed compensation, no transaction of unknown fate: {journal:?}"
        );
        api_email
    }

    /// Waits until the journal entries of `api_id` are all in `state` (and
    /// there is at least one); returns them.
    async fn wait_journal(
        &self,
        api_id: &str,
        state: &str,
    ) -> Vec<(Option<String>, String, String)> {
        eventually(
            Duration::from_secs(30),
            &format!("journal entries of {api_id} {state}"),
            || async {
                let mine: Vec<_> = self
                    .journal()
                    .await
                    .into_iter()
                    .filter(|(id, _, _)| id.as_deref() == Some(api_id))
                    .collect();
                (
                    !mine.is_empty() && mine.iter().all(|(_, s, _)| s == state),
                    mine,
                )
            },
        )
        .await
    }

    /// Stops `sequin` (and its proxy).
    async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop().await;
        }
    }
}

/// The kinds of API write, by the route the simulator counts them under.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Create,
    Update,
    Delete,
}

fn create_requests(which: Which, stats: &sequin_sim::StatsSnapshot) -> u64 {
    requests(which, Op::Create, stats)
}

/// Requests of `op` on the stack's object, as the simulator counts them (by
/// route pattern; Salesforce's collection endpoints too).
fn requests(which: Which, op: Op, stats: &sequin_sim::StatsSnapshot) -> u64 {
    let (method, single, collection) = match (which, op) {
        (Which::Stripe, Op::Create) => ("POST", "/v1/customers", None),
        (Which::Stripe, Op::Update) => ("POST", "/v1/customers/{id}", None),
        (Which::Stripe, Op::Delete) => ("DELETE", "/v1/customers/{id}", None),
        (Which::Salesforce, Op::Create) => {
            ("POST", "/sobjects/{object}", Some("/composite/sobjects"))
        }
        (Which::Salesforce, Op::Update) => (
            "PATCH",
            "/sobjects/{object}/{id}",
            Some("/composite/sobjects"),
        ),
        (Which::Salesforce, Op::Delete) => (
            "DELETE",
            "/sobjects/{object}/{id}",
            Some("/composite/sobjects"),
        ),
    };
    stats
        .by_route
        .iter()
        .filter(|(route, _)| {
            let Some(path) = route.strip_prefix(method).and_then(|r| r.strip_prefix(' ')) else {
                return false;
            };
            match which {
                Which::Stripe => path == single,
                Which::Salesforce => {
                    path.ends_with(single) || collection.is_some_and(|c| path.ends_with(c))
                }
            }
        })
        .map(|(_, n)| n)
        .sum()
}

/// Ids returned by a SOQL query over the simulator's REST API.
async fn salesforce_query(sim: &Sim, soql: &str) -> Vec<String> {
    let body: Value = reqwest::Client::new()
        .get(format!("{}/services/data/v59.0/query", sim.base_url()))
        .query(&[("q", soql)])
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = body["records"]
        .as_array()
        .unwrap_or_else(|| panic!("a query result: {body}"))
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Journal entries of `connection`: (api_id, state, op).
async fn journal(
    pg: &tokio_postgres::Client,
    connection: &str,
) -> Vec<(Option<String>, String, String)> {
    pg.query(
        "SELECT api_id::text, state::text, op::text FROM sequin.write_journal WHERE connection = $1",
        &[&connection],
    )
    .await
    .expect("reading sequin.write_journal")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// The ErrorResponse of a failed statement: (SQLSTATE, message, detail).
fn db_error(e: &tokio_postgres::Error) -> (String, String, Option<String>) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("an ErrorResponse, not a connection failure: {e:?}"));
    (
        db.code().code().to_string(),
        db.message().to_string(),
        db.detail().map(str::to_string),
    )
}

/// The faults one scenario injects into one create, by name.
fn create_faults() -> [(&'static str, Faults); 4] {
    [
        (
            "5xx",
            Faults {
                p_5xx: 1.0,
                ..Faults::default()
            },
        ),
        (
            "reset",
            Faults {
                p_reset: 1.0,
                ..Faults::default()
            },
        ),
        (
            "lost-response",
            Faults {
                p_truncate: 1.0,
                ..Faults::default()
            },
        ),
        (
            "timeout",
            Faults {
                latency: TIMEOUT_LATENCY,
                ..Faults::default()
            },
        ),
    ]
}

const STRIPE_INSERT: &str =
    "insert into stripe.customer (email, name) values ($1, $2) returning id";
const SALESFORCE_INSERT: &str = "insert into salesforce.contact (first_name, last_name, email) values ('Ada', $2, $1) returning id";

// ---------------------------------------------------------------------------
// The API failing mid-write.

/// Stripe: a create that fails ambiguously (a 5xx, a reset connection, a
/// response lost after Stripe created the customer, a timeout) is retried
/// with its Idempotency-Key and succeeds; Stripe holds the customer once,
/// and Postgres holds the same row under the id the client got back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_create_is_retried_with_its_idempotency_key_and_happens_once() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "stripe_create_is_retried_with_its_idempotency_key_and_happens_once",
    ) {
        return;
    }
    let db = sequin_pgtemp::Database::create("write_faults_stripe").unwrap();
    let stack = Stack::start(Which::Stripe, &db.url, Some(API_TIMEOUT)).await;
    let (client, _conn) = stack.client().await;
    // A lost response is repeated: the sync engine, polling Stripe's events
    // meanwhile, may store the customer before the retry's answer comes
    // back, and the write-back has to cope with that.
    let lost = create_faults()[2];
    let cases = create_faults().into_iter().chain([
        ("lost-response-again", lost.1),
        ("lost-response-3", lost.1),
        ("lost-response-4", lost.1),
    ]);
    for (name, faults) in cases {
        let email = format!("retried-{name}@example.com");
        let before = stack.sim.stats();
        let label = format!("Retried {name}");
        let params: [&(dyn ToSql + Sync); 2] = [&email, &label];
        let (result, ()) = tokio::join!(
            client.query_one(STRIPE_INSERT, &params),
            stack.fault_next_create(faults)
        );
        let after = stack.sim.stats();
        let row = result.unwrap_or_else(|e| panic!("{name}: the retried create succeeds: {e:?}"));
        let id: String = row.get(0);
        assert!(id.starts_with("cus_"), "{name}: the Stripe id: {id}");
        let attempts =
            create_requests(Which::Stripe, &after) - create_requests(Which::Stripe, &before);
        assert!(
            attempts >= 2,
            "{name}: the create was retried ({attempts} requests; routes {:?})",
            after.by_route
        );
        let injected = match name {
            "5xx" => after.faults.http_5xx - before.faults.http_5xx,
            "reset" => after.faults.reset - before.faults.reset,
            n if n.starts_with("lost-response") => after.faults.truncated - before.faults.truncated,
            _ => 1,
        };
        assert!(
            injected >= 1,
            "{name}: the fault was injected: {:?}",
            after.faults
        );
        assert_eq!(
            stack.api_ids_with_email(&email).await,
            vec![id.clone()],
            "{name}: Stripe holds the customer once, under the id returned"
        );
        assert_eq!(
            stack.pg_ids_with_email(&email).await,
            vec![id.clone()],
            "{name}: Postgres holds the same row"
        );
        stack.wait_journal(&id, "committed").await;
        assert_eq!(stack.settle(&email).await, vec![id]);
    }
    // Without faults, creates back to back while the events feed is polled
    // every 100 ms: now and then sync stores a customer while its write-back
    // is running, and the statement must still succeed.
    for n in 0..40 {
        let email = format!("back-to-back-{n}@example.com");
        let id: String = client
            .query_one(STRIPE_INSERT, &[&email, &"Back To Back"])
            .await
            .unwrap_or_else(|e| panic!("create {n} racing the sync of its record: {e:?}"))
            .get(0);
        assert!(id.starts_with("cus_"), "the Stripe id: {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.settle("back-to-back-0@example.com").await;
}

/// Salesforce: a create that fails ambiguously is not retried (a second
/// POST could create a duplicate); the client gets 58030 saying the record
/// may exist and will be deleted again; nothing is left in Postgres by the
/// statement, and afterwards Postgres and the org agree: the contact the
/// org did create (lost response) is found by its values and deleted (the
/// statement failed: issue #10), the ones it did not create (5xx, reset)
/// exist nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_create_is_not_retried_after_an_ambiguous_failure() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "salesforce_create_is_not_retried_after_an_ambiguous_failure",
    ) {
        return;
    }
    let db = sequin_pgtemp::Database::create("write_faults_sf").unwrap();
    let stack = Stack::start(Which::Salesforce, &db.url, Some(API_TIMEOUT)).await;
    let (client, _conn) = stack.client().await;
    for (name, faults) in create_faults() {
        let email = format!("ambiguous-{name}@example.com");
        let before = stack.creates();
        let label = format!("Ambiguous {name}");
        let params: [&(dyn ToSql + Sync); 2] = [&email, &label];
        let (result, ()) = tokio::join!(
            client.query_one(SALESFORCE_INSERT, &params),
            stack.fault_next_create(faults)
        );
        let e = match result {
            Ok(row) => panic!(
                "{name}: an ambiguous create must fail, got id {}",
                row.get::<_, String>(0)
            ),
            Err(e) => e,
        };
        let (code, message, detail) = db_error(&e);
        eprintln!("{name}: {code} {message} / {detail:?}");
        assert_eq!(code, "58030", "{name}: API unavailable/timeout: {message}");
        assert!(
            message.starts_with("[Salesforce]: "),
            "{name}: the API is named: {message}"
        );
        let text = format!("{message} {}", detail.unwrap_or_default()).to_lowercase();
        assert!(
            text.contains("may") && text.contains("deletes it"),
            "{name}: the error says the record may exist and will be deleted again: {text}"
        );
        assert_eq!(
            stack.creates() - before,
            1,
            "{name}: the create was sent once, not retried"
        );
        // The aborted statement left nothing behind, not even a provisional
        // row (a contact the org did create may already have arrived
        // through sync, under its real id: `settle` checks that).
        let pending: i64 = stack
            .pg
            .query_one(
                "SELECT count(*) FROM salesforce.contact WHERE id LIKE '\\_pending\\_%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(pending, 0, "{name}: no row from the failed statement");
        // The connection is usable after the error (autocommit: nothing to roll back).
        client.simple_query("SELECT 1").await.unwrap();
        // A timed-out request may still be handled by the org after the
        // client gave up: let that happen before judging.
        if name == "timeout" {
            tokio::time::sleep(TIMEOUT_LATENCY).await;
        }
        let settled = stack.settle(&email).await;
        match name {
            // The org created the contact, but the statement failed: the
            // reconciler finds the contact by its values and deletes it.
            "lost-response" => assert!(
                settled.is_empty(),
                "the contact the failed statement made is gone again: {settled:?}"
            ),
            "5xx" | "reset" => assert!(
                settled.is_empty(),
                "the org never created the contact: {settled:?}"
            ),
            _ => eprintln!("timeout: the org holds {} contact(s)", settled.len()),
        }
    }
}

/// Stripe failing every attempt: the create is retried (idempotently) until
/// Sequin gives up, and the client gets 58030 naming Stripe and its error;
/// Stripe holds nothing new and Postgres no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_create_failing_every_attempt_reports_the_api_error() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "stripe_create_failing_every_attempt_reports_the_api_error",
    ) {
        return;
    }
    let db = sequin_pgtemp::Database::create("write_faults_stripe_down").unwrap();
    let stack = Stack::start(Which::Stripe, &db.url, Some(API_TIMEOUT)).await;
    let (client, _conn) = stack.client().await;
    let email = "never-created@example.com";
    let before = stack.creates();
    stack.sim.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    let started = Instant::now();
    let result = client
        .query_one(STRIPE_INSERT, &[&email, &"Never Created"])
        .await;
    stack.sim.set_faults(Faults::default());
    let e = match result {
        Ok(row) => panic!(
            "every attempt failed, yet the INSERT returned {}",
            row.get::<_, String>(0)
        ),
        Err(e) => e,
    };
    let (code, message, detail) = db_error(&e);
    eprintln!(
        "after {:?} and {} attempts: {code} {message} / {detail:?}",
        started.elapsed(),
        stack.creates() - before
    );
    assert_eq!(code, "58030", "API unavailable: {message}");
    assert!(
        message.starts_with("[Stripe]: "),
        "names the API: {message}"
    );
    assert!(
        detail.as_deref().is_some_and(|d| d.contains("500")),
        "the DETAIL carries the HTTP status: {detail:?}"
    );
    assert!(
        stack.creates() - before >= 2,
        "an idempotent create is retried before giving up"
    );
    // The connection is usable again (autocommit: nothing to roll back).
    client.simple_query("SELECT 1").await.unwrap();
    assert!(stack.settle(email).await.is_empty());
}

/// A write whose intent the journal cannot record is never sent: the
/// client gets 58030 saying so, and the API sees no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_journal_cannot_record_is_never_sent() {
    let db = sequin_pgtemp::Database::create("write_faults_journal").unwrap();
    let stack = Stack::start(Which::Stripe, &db.url, Some(API_TIMEOUT)).await;
    let (client, _conn) = stack.client().await;
    let id: String = client
        .query_one(STRIPE_INSERT, &[&"journalled@example.com", &"Journalled"])
        .await
        .unwrap()
        .get(0);
    // The journal refuses every new entry.
    stack
        .pg
        .batch_execute(
            "ALTER TABLE sequin.write_journal ADD CONSTRAINT sequin_test_refuse CHECK (false) NOT VALID",
        )
        .await
        .unwrap();
    let (creates, updates) = (stack.sent(Op::Create), stack.sent(Op::Update));
    let refused = [
        client
            .query_one(
                STRIPE_INSERT,
                &[&"unjournalled@example.com", &"Unjournalled"],
            )
            .await
            .map(|_| ()),
        client
            .execute(
                "update stripe.customer set name = 'Unjournalled' where id = $1",
                &[&id],
            )
            .await
            .map(|_| ()),
    ];
    for result in refused {
        let e = result.expect_err("the journal refused the intent");
        let (code, message, _) = db_error(&e);
        assert_eq!(code, "58030", "{message}");
        assert!(
            message.contains("write journal cannot record the write, so nothing was sent"),
            "{message}"
        );
    }
    assert_eq!(stack.sent(Op::Create), creates, "no create reached the API");
    assert_eq!(stack.sent(Op::Update), updates, "no update reached the API");
    assert!(
        stack
            .api_ids_with_email("unjournalled@example.com")
            .await
            .is_empty()
    );
    // Journalled again, writes go through.
    stack
        .pg
        .batch_execute("ALTER TABLE sequin.write_journal DROP CONSTRAINT sequin_test_refuse")
        .await
        .unwrap();
    client
        .execute(
            "update stripe.customer set name = 'Journalled again' where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(stack.sent(Op::Update), updates + 1);
}

/// Salesforce updates and deletes are idempotent, so they are retried
/// through a 5xx, a reset connection or (updates) a timeout and succeed; a rolled-back
/// update is reverted in the org.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_updates_and_deletes_are_retried_and_rolled_back_updates_reverted() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "salesforce_updates_and_deletes_are_retried_and_rolled_back_updates_reverted",
    ) {
        return;
    }
    let db = sequin_pgtemp::Database::create("write_faults_sf_upd").unwrap();
    let stack = Stack::start(Which::Salesforce, &db.url, Some(API_TIMEOUT)).await;
    let sf = stack.sim.salesforce();
    let ids: Vec<String> = stack
        .pg
        .query("SELECT id FROM salesforce.contact ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 3, "the seeded contacts: {ids:?}");
    let (client, _conn) = stack.client().await;
    let five_xx = Faults {
        p_5xx: 1.0,
        ..Faults::default()
    };
    let reset = Faults {
        p_reset: 1.0,
        ..Faults::default()
    };

    let timeout = Faults {
        latency: TIMEOUT_LATENCY,
        ..Faults::default()
    };
    for (name, faults) in [("5xx", five_xx), ("reset", reset), ("timeout", timeout)] {
        let title = format!("Retried through {name}");
        let before = stack.sent(Op::Update);
        let params: [&(dyn ToSql + Sync); 2] = [&title, &ids[0]];
        let (result, ()) = tokio::join!(
            client.execute(
                "update salesforce.contact set title = $1 where id = $2",
                &params
            ),
            stack.fault_next(Op::Update, faults)
        );
        assert_eq!(
            result.unwrap_or_else(|e| panic!("{name}: the retried update succeeds: {e:?}")),
            1
        );
        assert!(
            stack.sent(Op::Update) - before >= 2,
            "{name}: the update was retried"
        );
        assert_eq!(sf.get("Contact", &ids[0]).unwrap()["Title"], title.as_str());
        let local: Option<String> = stack
            .pg
            .query_one(
                "SELECT title FROM salesforce.contact WHERE id = $1",
                &[&ids[0]],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(local.as_deref(), Some(title.as_str()), "{name}: Postgres");
    }

    for (name, faults, id) in [("5xx", five_xx, &ids[1]), ("reset", reset, &ids[2])] {
        let before = stack.sent(Op::Delete);
        let params: [&(dyn ToSql + Sync); 1] = [id];
        let (result, ()) = tokio::join!(
            client.execute("delete from salesforce.contact where id = $1", &params),
            stack.fault_next(Op::Delete, faults)
        );
        assert_eq!(
            result.unwrap_or_else(|e| panic!("{name}: the retried delete succeeds: {e:?}")),
            1
        );
        assert!(
            stack.sent(Op::Delete) - before >= 2,
            "{name}: the delete was retried"
        );
        assert!(sf.get("Contact", id).is_none(), "{name}: gone from the org");
    }

    // A rolled-back update is put back in the org.
    let original = sf.get("Contact", &ids[0]).unwrap()["Title"].clone();
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "update salesforce.contact set title = 'Never Committed' where id = $1",
            &[&ids[0]],
        )
        .await
        .unwrap();
    assert_eq!(
        sf.get("Contact", &ids[0]).unwrap()["Title"],
        "Never Committed"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the rolled-back update reverted in the org",
        || async {
            let title = sf.get("Contact", &ids[0]).unwrap()["Title"].clone();
            (title == original, title)
        },
    )
    .await;
    // Three committed updates and the compensated one.
    eventually(
        Duration::from_secs(30),
        "the journal: the rolled-back update compensated, the others committed",
        || async {
            let mut states: Vec<String> = stack
                .journal()
                .await
                .into_iter()
                .filter(|(id, _, op)| id.as_deref() == Some(ids[0].as_str()) && op == "update")
                .map(|(_, state, _)| state)
                .collect();
            states.sort();
            (
                states == ["committed", "committed", "committed", "compensated"],
                states,
            )
        },
    )
    .await;
    assert!(stack.settle("nobody@example.com").await.is_empty());
}

// ---------------------------------------------------------------------------
// The client going away mid-write.

/// A client that disconnects while its INSERT is at the API (autocommit),
/// and one that disconnects inside BEGIN after a successful INSERT, or while
/// the INSERT is at the API: in the end Postgres and Stripe agree, the
/// customer exists once or not at all, and the journal is settled. The
/// transaction that never committed is compensated: its customer is deleted
/// from Stripe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_write_leaves_postgres_and_the_api_agreeing() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "client_disconnecting_mid_write_leaves_postgres_and_the_api_agreeing",
    ) {
        return;
    }
    disconnect_mid_write(Which::Stripe).await;
}

/// The same with Salesforce, whose creates are never repeated: the
/// uncommitted contact is deleted from the org again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_write_salesforce() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(module_path!(), "client_disconnecting_mid_write_salesforce") {
        return;
    }
    disconnect_mid_write(Which::Salesforce).await;
}

async fn disconnect_mid_write(which: Which) {
    let db = sequin_pgtemp::Database::create("write_faults_disconnect").unwrap();
    let stack = Stack::start(which, &db.url, None).await;
    let (sql, id_prefix) = match which {
        Which::Stripe => (STRIPE_INSERT, "cus_"),
        Which::Salesforce => (SALESFORCE_INSERT, "003"),
    };

    // 1. An INSERT (autocommit, then inside BEGIN); the client drops its
    //    socket while the API call is in flight.
    for in_transaction in [false, true] {
        let email = format!("gone-mid-call-{in_transaction}@example.com");
        let (client, conn) = stack.client().await;
        if in_transaction {
            client.batch_execute("BEGIN").await.unwrap();
        }
        let before = stack.creates();
        let insert = {
            let email = email.clone();
            tokio::spawn(async move {
                client
                    .query_one(sql, &[&email, &"Gone Mid Call"])
                    .await
                    .map(|r| r.get::<_, String>(0))
            })
        };
        let slow = Faults {
            latency: IN_FLIGHT_LATENCY,
            ..Faults::default()
        };
        stack.fault_next_create(slow).await;
        assert_eq!(stack.creates(), before + 1, "the create reached the API");
        conn.abort();
        insert.abort();
        // Let the API call finish and the proxy notice.
        tokio::time::sleep(IN_FLIGHT_LATENCY).await;
        let settled = stack.settle(&email).await;
        eprintln!(
            "{which:?}: disconnect mid-call (in transaction: {in_transaction}): the record exists {} time(s)",
            settled.len()
        );
        if in_transaction {
            assert!(
                settled.is_empty(),
                "{which:?}: an uncommitted transaction's create is compensated: {settled:?}"
            );
        }
    }

    // 2. BEGIN, a successful INSERT, then the client vanishes before COMMIT.
    let email = "gone-before-commit@example.com";
    let (client, conn) = stack.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    let id: String = client
        .query_one(sql, &[&email, &"Gone Before Commit"])
        .await
        .unwrap()
        .get(0);
    assert!(id.starts_with(id_prefix), "{which:?}: the API's id: {id}");
    assert_eq!(
        stack.api_ids_with_email(email).await,
        vec![id.clone()],
        "{which:?}: the create reached the API when the statement ran"
    );
    conn.abort();
    drop(client);
    stack.wait_journal(&id, "compensated").await;
    assert!(
        stack.api_ids_with_email(email).await.is_empty(),
        "{which:?}: the compensation deleted the record from the API"
    );
    assert!(stack.settle(email).await.is_empty());
}

// ---------------------------------------------------------------------------
// Postgres restarting mid-write.

/// Postgres restarts while an INSERT is at Stripe: the client gets an
/// error (its session is gone), and in the end Postgres and Stripe agree:
/// the customer Stripe created is either in both (it arrives through sync)
/// or in neither (compensated), and exists once at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_mid_write_leaves_postgres_and_the_api_agreeing() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "postgres_restarting_mid_write_leaves_postgres_and_the_api_agreeing",
    ) {
        return;
    }
    restart_mid_write(Which::Stripe).await;
}

/// The same with Salesforce, whose create cannot be retried: the contact
/// the org created is in Postgres too (through sync) or deleted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_mid_write_salesforce() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(module_path!(), "postgres_restarting_mid_write_salesforce") {
        return;
    }
    restart_mid_write(Which::Salesforce).await;
}

async fn restart_mid_write(which: Which) {
    let cluster = sequin_pgtemp::Cluster::start().unwrap();
    let db_url = cluster.create_database("write_restart").unwrap();
    let mut stack = Stack::start(which, &db_url, None).await;
    let email = "restart-mid-call@example.com";
    let sql = match which {
        Which::Stripe => STRIPE_INSERT,
        Which::Salesforce => SALESFORCE_INSERT,
    };
    let (client, _conn) = stack.client().await;
    let insert = tokio::spawn(async move {
        client
            .query_one(sql, &[&email, &"Restart Mid Call"])
            .await
            .map(|r| r.get::<_, String>(0))
    });
    stack
        .fault_next_create(Faults {
            latency: IN_FLIGHT_LATENCY,
            ..Faults::default()
        })
        .await;
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.restart().expect("Postgres restarts");
        cluster
    })
    .await
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), insert)
        .await
        .expect("the client gets an answer")
        .unwrap();
    match &result {
        Ok(id) => panic!("the INSERT cannot succeed when Postgres restarted under it; got {id}"),
        // Postgres's own "terminating connection due to administrator
        // command" (57P01), relayed by the proxy, or the closed connection.
        Err(e) => {
            eprintln!("{which:?}: the client got: {e:?}");
            let code = e.as_db_error().map(|d| d.code().code().to_string());
            assert!(
                e.is_closed()
                    || matches!(
                        code.as_deref(),
                        Some("57P01" | "57P02" | "57P03" | "08006" | "58030")
                    ),
                "{which:?}: the error says the server went away: {e:?}"
            );
        }
    }
    // Direct connections died with the server.
    stack.pg = connect(&db_url).await;
    // A supervisor restarts `sequin` if the restart stopped it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if stack.running.as_ref().is_some_and(Running::finished) {
        let stopped = stack.running.take().unwrap().stop().await;
        eprintln!(
            "{which:?}: sequin stopped with the Postgres restart ({stopped:?}); starting it again"
        );
        stack.running = Some(Running::start(&stack.yaml));
    }
    wait_live(&stack.pg, which.connection(), Duration::from_secs(60)).await;
    let settled = stack.settle(email).await;
    eprintln!(
        "{which:?}: after the restart the record exists {} time(s); journal {:?}",
        settled.len(),
        stack.journal().await
    );
    stack.stop().await;
    drop(cluster);
}

// ---------------------------------------------------------------------------
// ROLLBACK after writes the API applied.

/// Inside BEGIN, an INSERT and an UPDATE reach Stripe when they run; a
/// ROLLBACK compensates both (the customer is deleted, the name is put
/// back) and the journal says `compensated`. A COMMIT of the same keeps the
/// write (`committed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_compensates_creates_and_updates() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(module_path!(), "rollback_compensates_creates_and_updates") {
        return;
    }
    let db = sequin_pgtemp::Database::create("write_faults_rollback").unwrap();
    let stack = Stack::start(Which::Stripe, &db.url, None).await;
    let stripe = stack.sim.stripe();
    let existing = stripe.ids(Kind::Customer)[0].clone();
    let original_name = stripe.get(Kind::Customer, &existing).unwrap()["name"].clone();
    let (client, _conn) = stack.client().await;

    client.batch_execute("BEGIN").await.unwrap();
    let created: String = client
        .query_one(STRIPE_INSERT, &[&"rolled-back@example.com", &"Rolled Back"])
        .await
        .unwrap()
        .get(0);
    assert!(
        stripe.get(Kind::Customer, &created).is_some(),
        "the create reached Stripe when it ran"
    );
    let updated = client
        .execute(
            "update stripe.customer set name = 'Temporary Name' where id = $1",
            &[&existing],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);
    assert_eq!(
        stripe.get(Kind::Customer, &existing).unwrap()["name"],
        "Temporary Name",
        "the update reached Stripe when it ran"
    );
    client.batch_execute("ROLLBACK").await.unwrap();

    stack.wait_journal(&created, "compensated").await;
    stack.wait_journal(&existing, "compensated").await;
    assert!(
        stripe.get(Kind::Customer, &created).is_none(),
        "the rolled-back create was deleted from Stripe"
    );
    assert_eq!(
        stripe.get(Kind::Customer, &existing).unwrap()["name"],
        original_name,
        "the rolled-back update was reverted in Stripe"
    );
    assert!(stack.settle("rolled-back@example.com").await.is_empty());
    let name: Option<String> = stack
        .pg
        .query_one(
            "SELECT name FROM stripe.customer WHERE id = $1",
            &[&existing],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name.as_deref(), original_name.as_str());

    // The same statements committed stay.
    client.batch_execute("BEGIN").await.unwrap();
    let kept: String = client
        .query_one(STRIPE_INSERT, &[&"committed@example.com", &"Committed"])
        .await
        .unwrap()
        .get(0);
    client.batch_execute("COMMIT").await.unwrap();
    stack.wait_journal(&kept, "committed").await;
    assert_eq!(stack.settle("committed@example.com").await, vec![kept]);
}

/// A DELETE cannot be undone upstream: after DELETE + ROLLBACK the journal
/// says `irreversible`, the customer is gone from Stripe, and the local row
/// is removed too so that Postgres matches the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_rollback_is_irreversible_and_postgres_follows_the_api() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "delete_then_rollback_is_irreversible_and_postgres_follows_the_api",
    ) {
        return;
    }
    let db = sequin_pgtemp::Database::create("write_faults_delete").unwrap();
    let stack = Stack::start(Which::Stripe, &db.url, None).await;
    let stripe = stack.sim.stripe();
    let victim = stripe.ids(Kind::Customer)[1].clone();
    let email = stripe.get(Kind::Customer, &victim).unwrap()["email"]
        .as_str()
        .unwrap()
        .to_string();
    let (client, _conn) = stack.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    let deleted = client
        .execute("delete from stripe.customer where id = $1", &[&victim])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(
        stripe.get(Kind::Customer, &victim).is_none(),
        "the delete reached Stripe when it ran"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    let entries = stack.wait_journal(&victim, "irreversible").await;
    eprintln!("journal: {entries:?}");
    eventually(
        Duration::from_secs(30),
        "the local row removed after the irreversible delete",
        || async {
            let n = stack.pg_ids_with_email(&email).await.len();
            (n == 0, n)
        },
    )
    .await;
    assert!(stack.settle(&email).await.is_empty());
}

/// Issue #10, item 6: a rollback leaves the API holding exactly what it
/// held before the transaction, under the API's merge rules (a metadata
/// key the transaction added is unset, not left behind; a list that was
/// empty is emptied again), and an undo never overwrites what another
/// writer changed meanwhile (`conflict`, their value kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_exactly_the_state_before_the_transaction() {
    // In a process of its own: its rate limit (a million requests a second)
    // is the budget of every connection of its name in the process.
    if sequin_pgtemp::process::alone(
        module_path!(),
        "rollback_restores_exactly_the_state_before_the_transaction",
    ) {
        return;
    }
    let db = sequin_pgtemp::Database::create("write_faults_exact_undo").unwrap();
    let stack = Stack::start(Which::Stripe, &db.url, None).await;
    let stripe = stack.sim.stripe();
    let ids = stripe.ids(Kind::Customer);
    let (merged, listed, contested) = (&ids[0], &ids[1], &ids[2]);
    stripe
        .update(Kind::Customer, listed, "preferred_locales=")
        .unwrap();
    let metadata = |id: &str| stripe.get(Kind::Customer, id).unwrap()["metadata"].clone();
    let locales = |id: &str| stripe.get(Kind::Customer, id).unwrap()["preferred_locales"].clone();
    let metadata_before = metadata(merged);
    assert!(
        metadata_before
            .as_object()
            .is_some_and(|m| !m.is_empty() && !m.contains_key("added")),
        "seeded metadata: {metadata_before}"
    );
    let before_name = stripe.get(Kind::Customer, contested).unwrap()["name"].clone();
    let (client, _conn) = stack.client().await;

    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            r#"update stripe.customer set metadata = metadata || '{"added": "yes"}' where id = $1"#,
            &[merged],
        )
        .await
        .expect("a metadata key added");
    let mut with_added = metadata_before.clone();
    with_added["added"] = "yes".into();
    assert_eq!(metadata(merged), with_added);
    client
        .execute(
            "update stripe.customer set preferred_locales = '{en,fr}' where id = $1",
            &[listed],
        )
        .await
        .expect("locales set on a customer without any");
    assert_eq!(locales(listed), serde_json::json!(["en", "fr"]));
    client
        .execute(
            "update stripe.customer set name = 'Ours' where id = $1",
            &[contested],
        )
        .await
        .expect("a name set");
    // Another writer changes the same field at Stripe before the rollback.
    stripe
        .update(Kind::Customer, contested, "name=Theirs")
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();

    stack.wait_journal(merged, "compensated").await;
    stack.wait_journal(listed, "compensated").await;
    stack.wait_journal(contested, "conflict").await;
    let why: Option<String> = stack
        .pg
        .query_one(
            "SELECT error FROM sequin.write_journal WHERE api_id = $1 AND state = 'conflict'",
            &[contested],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        why.as_deref().is_some_and(|w| w.contains("name")),
        "the conflict names the field: {why:?}"
    );
    assert_eq!(
        metadata(merged),
        metadata_before,
        "the added key is gone, the others stay"
    );
    assert_eq!(
        locales(listed),
        serde_json::json!([]),
        "the list is empty again"
    );
    assert_eq!(
        stripe.get(Kind::Customer, contested).unwrap()["name"],
        "Theirs",
        "the other writer's change is kept (it was {before_name})"
    );
    // A JSON array is no metadata: refused before any API call.
    let err = client
        .execute(
            r#"update stripe.customer set metadata = '["a", "b"]' where id = $1"#,
            &[merged],
        )
        .await
        .expect_err("an array written to metadata");
    assert_eq!(err.code().unwrap().code(), "22023", "{err:?}");
    assert_eq!(metadata(merged), metadata_before);
    // A NULL inside a text[] is no locale: refused too.
    let err = client
        .execute(
            "update stripe.customer set preferred_locales = '{en,NULL}' where id = $1",
            &[listed],
        )
        .await
        .expect_err("a NULL locale");
    assert_eq!(err.code().unwrap().code(), "22004", "{err:?}");
    assert_eq!(locales(listed), serde_json::json!([]));
}
