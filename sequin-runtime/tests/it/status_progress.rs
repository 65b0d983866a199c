//! `sequin status` during a backfill: with an API that says how many records
//! the listing has (Salesforce's `totalSize`), the phase reads
//! `backfilling N%`, N being the rows in the table against that count; the
//! real binary syncs a Salesforce simulator into a real Postgres, and the
//! API goes down mid-backfill so the state can be looked at while it stays
//! put. And on a terminal (a pty from `script`) each backfill draws a bar,
//! with a percentage when the API gives the count, and log lines stay whole.
//!
//! It lives in `sequin-runtime/tests` because only this package's tests get
//! the built binary (`CARGO_BIN_EXE_sequin`).

use crate::process_support;

use sequin_pgtemp::connect;

use std::time::{Duration, Instant};

use process_support::{Scratch, Sequin, run};
use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET};
use sequin_sim::{Api, Faults, SimConfig};

/// More than three SOQL batches of 2000, so the first commit (5000 records
/// or more) leaves most of the backfill to do.
const ACCOUNTS: usize = 20_000;

async fn accounts(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM salesforce.account", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// The `(phase, rows)` columns of the account line of `sequin status`.
fn status_of_accounts(config: &std::path::Path) -> (String, i64, String) {
    let out = run(config, &["status"], &[], Duration::from_secs(30));
    assert!(out.status.success(), "status: {}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("salesforce ") && l.contains(" account "))
        .unwrap_or_else(|| panic!("no account line in:\n{}", out.stdout))
        .to_string();
    // CONNECTION OBJECT PHASE [PERCENT] ROWS ...: the phase is one or two
    // words, the rows the number after it.
    let words: Vec<&str> = line.split_whitespace().collect();
    let (phase, rows_at) = if words[3].ends_with('%') {
        (format!("{} {}", words[2], words[3]), 4)
    } else {
        (words[2].to_string(), 3)
    };
    let rows = words[rows_at]
        .parse()
        .unwrap_or_else(|_| panic!("no row count in {line:?}"));
    (phase, rows, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_backfill_percentage_from_the_apis_count() {
    let db = sequin_pgtemp::Database::create("status_pct").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce)
            .seed_records(ACCOUNTS)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    assert_eq!(sf.count("Account", false), ACCOUNTS);
    // Slow pages, so the test sees the first commit well before the end.
    sim.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    });
    let scratch = Scratch::new("status-pct");
    let config = scratch.write(
        "sequin.yaml",
        &format!(
            "database_url: {db}\nconnections:\n  - name: salesforce\n    connector: salesforce\n    base_url: {base}\n    token_url: {base}/services/oauth2/token\n    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{refresh}' }}\n    objects: [account]\n    poll_interval: 200ms\n",
            db = db.url,
            base = sim.base_url(),
            refresh = sf.refresh_token(),
        ),
    );
    let pgc = connect(&db.url).await;
    let mut sync = Sequin::spawn(&config, "info", &["sync"], scratch.path("sync.stderr"));

    // 1. The first batch is committed; then the API goes down, so the
    //    backfill stops where it is (and keeps retrying).
    let start = Instant::now();
    while accounts(&pgc).await == 0 {
        assert!(sync.exited().is_none(), "sync ended: {}", sync.stderr());
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no first batch: {}",
            sync.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    // Pages already fetched may still be committed: wait until the failed
    // backfill is recorded, after which nothing moves.
    let start = Instant::now();
    loop {
        let error: Option<String> = pgc
            .query_one(
                "SELECT last_error FROM sequin.sync_state WHERE connection = 'salesforce' AND object = 'account'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if error.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the outage was not recorded: {}",
            sync.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2. The count the API gave is recorded, and status turns it into a
    //    percentage of the rows in the table.
    let total: Option<i64> = pgc
        .query_one(
            "SELECT backfill_total FROM sequin.sync_state WHERE connection = 'salesforce' AND object = 'account'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, Some(ACCOUNTS as i64), "Salesforce's totalSize");
    let (phase, rows, line) = status_of_accounts(&config);
    assert!(rows > 0 && rows < ACCOUNTS as i64, "mid-backfill: {line}");
    assert_eq!(rows, accounts(&pgc).await, "{line}");
    let expected = rows * 100 / ACCOUNTS as i64;
    assert!(expected > 0 && expected < 100, "{line}");
    assert_eq!(phase, format!("backfilling {expected}%"), "{line}");

    // Without a terminal the progress is logged (first at the first batch).
    let log = sync.stderr();
    assert!(
        log.lines().any(|l| l.contains("backfill progress")
            && l.contains("table=account")
            && l.contains(&format!("total={ACCOUNTS}"))
            && l.contains("percent=")),
        "no progress line with the total in:\n{log}"
    );
    assert!(!log.contains('\r'), "no bar drawn without a terminal");

    // 3. The API is back: the backfill completes and the phase is `live`.
    sim.set_faults(Faults::default());
    let start = Instant::now();
    loop {
        let (phase, rows, line) = status_of_accounts(&config);
        if phase == "live" {
            assert_eq!(rows, ACCOUNTS as i64, "{line}");
            break;
        }
        assert!(
            phase.starts_with("backfilling"),
            "unexpected phase in {line}"
        );
        assert!(sync.exited().is_none(), "sync ended: {}", sync.stderr());
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "backfill did not finish: {line}\n{}",
            sync.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sync.kill9();
}

/// Drops ANSI escape sequences (colours, cursor moves, line clears) from
/// terminal output.
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_each_backfill_has_a_bar_and_log_lines_stay_whole() {
    const CUSTOMERS: usize = 12_000;
    let db = sequin_pgtemp::Database::create("bars").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.stripe().seed_customers(CUSTOMERS);
    // Salesforce gives the query's size: its bar has a length and percent.
    let sf_sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce)
            .seed_records(2500)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let scratch = Scratch::new("bars");
    let config = scratch.write(
        "sequin.yaml",
        &format!(
            "database_url: {}\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: {}\n    credentials: {{ api_key: \"{}\" }}\n    objects: [customer]\n  - name: salesforce\n    connector: salesforce\n    base_url: {sf}\n    token_url: {sf}/services/oauth2/token\n    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{refresh}' }}\n    objects: [account]\n",
            db.url,
            sim.base_url(),
            sim.token(),
            sf = sf_sim.base_url(),
            refresh = sf_sim.salesforce().refresh_token(),
        ),
    );
    // `script` gives the process a pseudo-terminal and copies what it
    // shows to its own stdout.
    let command = format!(
        "{} --config {} --log info sync --once",
        process_support::SEQUIN,
        config.display()
    );
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("script")
            .args(["-qefc", &command, "/dev/null"])
            .env_remove("SEQUIN_CONFIG")
            .env_remove("SEQUIN_LOG")
            .env("TERM", "xterm")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run `script` (util-linux)")
    });
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "sync --once failed:\n{shown}");
    let text = strip_escapes(&shown);
    // The bar, finished: the object and its record count.
    assert!(
        text.contains("stripe.customer")
            && text.contains("12,000 records")
            && text.contains(") done"),
        "no finished bar for stripe.customer in:\n{text}"
    );
    assert!(
        text.lines()
            .chain(text.split('\r'))
            .any(|l| l.contains("salesforce.account") && l.contains("2,500/2,500 100%")),
        "no finished bar with a percentage for salesforce.account in:\n{text}"
    );
    // Every log line is whole on its own line: the timestamp first and the
    // fields after the message (bars are cleared while a line is written).
    let segments: Vec<&str> = text.split(['\n', '\r']).collect();
    let done = segments
        .iter()
        .find(|l| l.contains("backfill done") && l.contains("connection=stripe"))
        .unwrap_or_else(|| panic!("no `backfill done` line in:\n{text}"));
    let stamp = done.split_whitespace().next().unwrap_or_default();
    assert!(
        stamp.len() > 20 && stamp.starts_with("20") && stamp.ends_with('Z'),
        "the line starts with its timestamp: {done:?}"
    );
    assert!(
        done.contains("connection=stripe") && done.contains(&format!("records={CUSTOMERS}")),
        "the line is whole: {done:?}"
    );
    assert!(
        !done.contains("stripe.customer"),
        "no bar inside a log line: {done:?}"
    );
}
