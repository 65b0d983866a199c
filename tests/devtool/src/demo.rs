//! `cargo xtask demo`: the main job on an embedded default.
//!
//! Starts a throwaway Postgres from the system's binaries and the API
//! simulators with seeded data, writes a `sequin.yaml` for them, runs
//! `sequin migrate` and `sequin sync`, waits until every object is live, and
//! prints what to try next. While it runs, it changes a Stripe customer
//! upstream every few seconds so live sync can be watched. Ctrl-C (or
//! `--seconds N`) stops everything and removes the cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sequin_sim::{Api, Sim, SimConfig};

/// Options of `cargo xtask demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Records seeded per object in each simulator.
    #[arg(long, default_value_t = 1000)]
    pub records: usize,
    /// Stop after this many seconds of live sync (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Build and run `sequin` in release mode.
    #[arg(long)]
    pub release: bool,
}

struct Sims {
    stripe: Sim,
    salesforce: Sim,
    hubspot: Sim,
    airtable: Sim,
    github: Sim,
}

const ANY: &str = "127.0.0.1:0";

/// Requests per second of a live-mode Stripe account.
const STRIPE_LIVE_RATE: f64 = 100.0;

/// Builds `sequin` (the demo's debug build, or release for the benchmarks)
/// and returns its path.
pub(crate) fn sequin_binary(root: &Path, release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args([
        "build",
        "--quiet",
        "-p",
        "sequin-runtime",
        "--bin",
        "sequin",
    ]);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "building sequin{} ...",
        if release { " (release)" } else { "" }
    );
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of sequin failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("sequin"))
}

fn config_yaml(database_url: &str, proxy: SocketAddr, sims: &Sims) -> String {
    format!(
        r#"# Written by `cargo xtask demo`: the simulators stand in for the real APIs.
database_url: {database_url}
proxy:
  listen: {proxy}
connections:
  - name: stripe
    connector: stripe
    base_url: {stripe}
    credentials: {{ api_key: "{stripe_token}" }}
    # A live-mode key: Stripe allows 100 requests/s (the connector's
    # default, 25/s, is test mode's).
    rate_limit: {{ requests: 100, per: 1s }}
    poll_interval: 500ms
  - name: salesforce
    connector: salesforce
    base_url: {salesforce}
    token_url: {salesforce}/services/oauth2/token
    credentials:
      client_id: "{salesforce_client_id}"
      client_secret: "{salesforce_client_secret}"
      refresh_token: "{salesforce_refresh}"
    poll_interval: 1s
    discovery_interval: 10s
  - name: hubspot
    connector: hubspot
    base_url: {hubspot}
    credentials: {{ access_token: "{hubspot_token}" }}
    # Every CRM object searches and lists its archived records each poll,
    # within HubSpot's 100 requests per 10 s and 5 searches a second.
    poll_interval: 5s
    discovery_interval: 30s
  - name: airtable
    connector: airtable
    base_url: {airtable}
    params: {{ base_id: appSequinDemo0001 }}
    credentials: {{ api_key: "{airtable_token}" }}
    poll_interval: 2s
    discovery_interval: 10s
  - name: github
    connector: github
    base_url: {github}
    params: {{ owner: {github_owner}, repo: {github_repo} }}
    credentials: {{ token: "{github_token}" }}
    poll_interval: 1s
"#,
        stripe = sims.stripe.base_url(),
        stripe_token = sims.stripe.token(),
        salesforce = sims.salesforce.base_url(),
        salesforce_refresh = sims.salesforce.salesforce().refresh_token(),
        salesforce_client_id = sequin_sim::salesforce::CLIENT_ID,
        salesforce_client_secret = sequin_sim::salesforce::CLIENT_SECRET,
        github_owner = sequin_sim::github::Github::OWNER,
        github_repo = sequin_sim::github::Github::REPO,
        hubspot = sims.hubspot.base_url(),
        hubspot_token = sims.hubspot.token(),
        airtable = sims.airtable.base_url(),
        airtable_token = sims.airtable.token(),
        github = sims.github.base_url(),
        github_token = sims.github.token(),
    )
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    let root = crate::root();
    let sequin = sequin_binary(&root, args.release)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    eprintln!("starting a throwaway Postgres ...");
    let cluster = sequin_pgtemp::Cluster::start().context("starting Postgres")?;
    let database_url = cluster.create_database("demo")?;
    eprintln!(
        "starting the API simulators ({} records per object) ...",
        args.records
    );
    let sims = rt.block_on(async {
        let start = |api| {
            let mut cfg = SimConfig::new(api)
                .seed_records(args.records)
                .seed_every_object();
            if api == Api::Stripe {
                // A live-mode account (100 requests/s; test mode allows 25):
                // its nine child lists walked under 1000 parents each are
                // 9000 requests, six minutes at test mode's rate.
                cfg = cfg.rate_limit(STRIPE_LIVE_RATE);
            }
            sequin_sim::start(cfg, ANY.parse().unwrap())
        };
        anyhow::Ok(Sims {
            stripe: start(Api::Stripe).await?,
            salesforce: start(Api::Salesforce).await?,
            hubspot: start(Api::Hubspot).await?,
            airtable: start(Api::Airtable).await?,
            github: start(Api::Github).await?,
        })
    })?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sequin.yaml");
    let proxy: SocketAddr = format!("127.0.0.1:{}", sequin_pgtemp::free_port()?).parse()?;
    std::fs::write(&config, config_yaml(&database_url, proxy, &sims))?;
    let sequin_cmd = |sub: &str| {
        let mut c = Command::new(&sequin);
        c.arg("--config").arg(&config).arg(sub);
        c
    };
    let out = sequin_cmd("migrate").output()?;
    if !out.status.success() {
        bail!(
            "sequin migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "running `sequin sync` (logs: {}) ...",
        dir.path().join("sync.log").display()
    );
    let log = std::fs::File::create(dir.path().join("sync.log"))?;
    let mut sync = Running(
        sequin_cmd("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting sequin run")?,
    );
    let t0 = Instant::now();
    let sync_log = || std::fs::read_to_string(dir.path().join("sync.log")).unwrap_or_default();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(code) = sync.0.try_wait()? {
            bail!("sequin run exited ({code}); its log:\n{}", sync_log());
        }
        let status = sequin_cmd("status").output()?;
        let text = String::from_utf8_lossy(&status.stdout).to_string();
        // The objects' table: the header, then a line per object up to the
        // first blank line (the API quota and event sink sections follow).
        let lines: Vec<&str> = text
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| !l.contains(" _events "))
            .collect();
        if !lines.is_empty() && lines.iter().all(|l| l.contains(" live ")) {
            println!(
                "\nEverything is synced (in {:.1}s):\n\n{text}",
                t0.elapsed().as_secs_f64()
            );
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!(
                "sync did not finish within 10 minutes; status:\n{text}\nlog:\n{}",
                sync_log()
            );
        }
    }
    let psql = cluster.bindir().join("psql");
    // Exact counts of every synced table (not the planner's estimates).
    let counts = cluster.psql("demo", TableCounts::QUERY)?;
    let counts = TableCounts::parse(&counts);
    println!("{}", counts.report());
    // The simulators seed every object they serve: an empty table means an
    // object that does not sync.
    let empty = counts.empty();
    if !empty.is_empty() {
        bail!("tables without rows: {}", empty.join(", "));
    }
    let proxied_url = format!("postgres://postgres@{proxy}/demo");
    // The proxy listens once write-through has looked up every connection's
    // objects (HubSpot: its custom objects and every object's properties),
    // which may finish after the tables are live.
    let waited = Instant::now();
    while std::net::TcpStream::connect_timeout(&proxy, Duration::from_millis(200)).is_err() {
        if waited.elapsed() > Duration::from_secs(60) {
            bail!(
                "the proxy did not listen on {proxy} within 60 s; log:\n{}",
                sync_log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("Try it (through Sequin's proxy; direct: {database_url}):");
    println!("  {} '{proxied_url}'", psql.display());
    println!("  select id, email, name from stripe.customer order by created desc limit 5;");
    println!("  select first_name, last_name, email from salesforce.contact limit 5;");
    println!("  select * from sequin.status;");
    println!(
        "  {} --config {} status",
        sequin.display(),
        config.display()
    );
    // The proxy answers like Postgres.
    let via_proxy = Command::new(&psql)
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "select count(*) from stripe.customer",
        ])
        .arg(&proxied_url)
        .output()?;
    if !via_proxy.status.success() {
        bail!(
            "query through the proxy failed: {}",
            String::from_utf8_lossy(&via_proxy.stderr)
        );
    }
    println!(
        "  (checked: {} Stripe customers read through the proxy)",
        String::from_utf8_lossy(&via_proxy.stdout).trim()
    );
    // Write-through: the API first, then Postgres; a rejection is a native
    // Postgres error and changes nothing.
    let psql_proxy = |sql: &str| {
        Command::new(&psql)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(&proxied_url)
            .output()
    };
    let insert = "insert into salesforce.contact (first_name, last_name, email) \
                  values ('Andrea', 'Palladio', 'andrea@palladio.example') returning id";
    let created = psql_proxy(insert)?;
    if !created.status.success() {
        bail!(
            "write-through insert failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let id = String::from_utf8_lossy(&created.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if sims.salesforce.salesforce().get("Contact", &id).is_none() {
        bail!("write-through returned {id:?}, but the Salesforce simulator has no such contact");
    }
    println!("\nWrite through the proxy (applied to the API first, synchronously):");
    println!("  {insert};");
    println!("  -> {id}  (the Salesforce id; the simulator holds the contact)");
    let seed = "insert into salesforce.contact (first_name, last_name, email) \
                values ('Andrea','Palladio','andrea__invalid') returning id";
    let refused = psql_proxy(seed)?;
    if refused.status.success() {
        bail!("the invalid email was accepted through the proxy");
    }
    println!("  {seed};");
    println!("  -> {}", String::from_utf8_lossy(&refused.stderr).trim());
    println!("\nEvery 5s a Stripe customer is renamed upstream; watch it arrive:");
    println!(
        "  select id, name, _sequin_synced_at from stripe.customer order by _sequin_synced_at desc limit 3;\n"
    );
    let stop_at = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = ctrlc_channel(tx);
    let mut n = 0;
    loop {
        if rx
            .recv_timeout(Duration::from_secs(if n == 0 { 1 } else { 5 }))
            .is_ok()
        {
            break;
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        n += 1;
        let ids = sims.stripe.stripe().ids(sequin_sim::stripe::Kind::Customer);
        if let Some(id) = ids.first() {
            let name = format!("Renamed upstream #{n}");
            let _ = sims.stripe.stripe().update(
                sequin_sim::stripe::Kind::Customer,
                id,
                &format!("name={}", name.replace(' ', "+")),
            );
            let renamed_at = Instant::now();
            let sql = format!(
                "select count(*) from stripe.customer where id = '{id}' and name = '{name}'"
            );
            let arrived = loop {
                if cluster.psql("demo", &sql)?.trim() == "1" {
                    break Some(renamed_at.elapsed());
                }
                if renamed_at.elapsed() > Duration::from_secs(10) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            match arrived {
                Some(d) => println!(
                    "upstream: customer {id} renamed to {name:?}; in Postgres {} ms later",
                    d.as_millis()
                ),
                None => bail!(
                    "the upstream rename of {id} did not reach Postgres within 10 s; log:\n{}",
                    sync_log()
                ),
            }
        }
    }
    println!("stopping ...");
    rt.block_on(async {
        sims.stripe.shutdown().await;
        sims.salesforce.shutdown().await;
        sims.hubspot.shutdown().await;
        sims.airtable.shutdown().await;
        sims.github.shutdown().await;
    });
    drop(cluster);
    Ok(())
}

/// Sends on `tx` when SIGINT arrives (a thread polling a tokio signal would
/// need a runtime; a tiny one is enough).
/// Rows per synced table, grouped by connection (Postgres schema).
pub(crate) struct TableCounts(Vec<(String, String, u64)>);

impl TableCounts {
    /// Exact counts of every synced table (not the planner's estimates), as
    /// psql's unaligned `schema|table|count` lines.
    pub(crate) const QUERY: &str = "SELECT table_schema, table_name,
                (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text
           FROM information_schema.tables
          WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('sequin', 'pg_catalog', 'information_schema')
            AND table_schema NOT LIKE 'pg_temp%'
          ORDER BY table_schema, table_name";

    /// Reads psql's unaligned `schema|table|count` lines.
    pub(crate) fn parse(psql: &str) -> Self {
        TableCounts(
            psql.lines()
                .filter_map(|l| {
                    let mut parts = l.split('|');
                    let schema = parts.next()?.to_string();
                    let table = parts.next()?.to_string();
                    let count = parts.next()?.trim().parse().ok()?;
                    Some((schema, table, count))
                })
                .collect(),
        )
    }

    /// The tables without rows, as `schema.table`.
    pub(crate) fn empty(&self) -> Vec<String> {
        self.below(1)
    }

    /// The tables with fewer than `n` rows, as `schema.table`.
    pub(crate) fn below(&self, n: u64) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, _, c)| *c < n)
            .map(|(s, t, _)| format!("{s}.{t}"))
            .collect()
    }

    /// How many tables.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Rows in every table together.
    pub(crate) fn total(&self) -> u64 {
        self.0.iter().map(|(_, _, c)| c).sum()
    }

    /// Every table with its rows, then tables per connection and the
    /// tables that stayed empty (each should have rows: the simulators seed
    /// every object).
    fn report(&self) -> String {
        let mut out = String::from("Tables:\n");
        for (schema, table, count) in &self.0 {
            out.push_str(&format!("{schema}.{table}: {count} rows\n"));
        }
        out.push_str("\nTables per connection:\n");
        let mut schemas: Vec<&str> = self.0.iter().map(|(s, _, _)| s.as_str()).collect();
        schemas.dedup();
        for schema in schemas {
            let tables: Vec<_> = self.0.iter().filter(|(s, _, _)| s == schema).collect();
            let empty: Vec<&str> = tables
                .iter()
                .filter(|(_, _, c)| *c == 0)
                .map(|(_, t, _)| t.as_str())
                .collect();
            out.push_str(&format!("  {schema}: {} tables", tables.len()));
            if empty.is_empty() {
                out.push_str(", every one with rows\n");
            } else {
                out.push_str(&format!(
                    ", {} without rows: {}\n",
                    empty.len(),
                    empty.join(", ")
                ));
            }
        }
        out
    }
}

fn ctrlc_channel(tx: std::sync::mpsc::Sender<()>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        let _ = tx.send(());
                    }
                });
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TableCounts;

    #[test]
    fn counts_are_grouped_per_connection_and_empty_tables_named() {
        let counts = TableCounts::parse("hubspot|contact|3\nhubspot|ticket|0\nstripe|customer|5\n");
        let report = counts.report();
        assert!(report.contains("hubspot.ticket: 0 rows\n"), "{report}");
        assert!(
            report.contains("  hubspot: 2 tables, 1 without rows: ticket\n"),
            "{report}"
        );
        assert!(
            report.contains("  stripe: 1 tables, every one with rows\n"),
            "{report}"
        );
        assert_eq!(counts.empty(), ["hubspot.ticket"]);
    }
}
