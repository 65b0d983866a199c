//! `cargo xtask bench bulk`: a backfill of N records of one Salesforce
//! object (leads) through the REST query (pages of 2,000 chained by
//! `nextRecordsUrl`) and through one Bulk API 2.0 query job (CSV sets of
//! 100,000 chained by `Sforce-Locator`), in the same invocation: records/s
//! and the API requests each path used, side by side.
//!
//! The Salesforce simulator runs in a child process (this binary re-run with
//! `--serve-sim`), seeded with N leads and no rate limit; each path runs the
//! release `sequin sync --once` (`objects: [lead]`) into a fresh database of
//! one throwaway cluster, under the measuring helper of `bench sync` (wall
//! time, peak RSS, CPU). The path is chosen with the connection's
//! `async_query_threshold`: above N for REST, 1 for Bulk. Requests are the
//! simulator's own counts (every API route, the OAuth token request
//! included; `--once` adds one incremental poll after the backfill to
//! both). The synced row count is checked, so a run that loses records
//! fails instead of looking fast, and the Bulk run must have created
//! exactly one job.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::bench_sync::sync_once_measured;
use crate::sim_child;

/// Arguments of `cargo xtask bench bulk`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchBulkArgs {
    /// Salesforce leads to backfill.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Use this `sequin` binary instead of building it (release).
    #[arg(long)]
    pub sequin: Option<std::path::PathBuf>,
    /// Internal: serve the seeded simulator (the benchmark's child process).
    #[arg(long, hide = true)]
    pub serve_sim: bool,
}

/// What one path measured.
struct Measured {
    path: &'static str,
    records: usize,
    wall_secs: f64,
    peak_rss_kb: i64,
    cpu_secs: f64,
    requests: u64,
    jobs: u64,
}

impl Measured {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.wall_secs
    }
}

/// Runs the benchmark (or, with `--serve-sim`, the simulator child).
pub fn run(args: BenchBulkArgs) -> Result<()> {
    if args.serve_sim {
        let n = args.records;
        let cfg = sequin_sim::SimConfig::new(sequin_sim::Api::Salesforce).rate_limit(0.0);
        return sim_child::serve_config(cfg, move |sim| {
            sim.salesforce()
                .seed_bulk("Lead", n)
                .expect("seeding leads");
        });
    }
    let root = crate::root();
    let sequin = match &args.sequin {
        Some(path) => path.clone(),
        None => crate::demo::sequin_binary(&root, true)?,
    };
    let n = args.records;
    eprintln!("seeding {n} Salesforce leads in the simulator (child process) ...");
    let (sim, token) =
        sim_child::start(&["bench", "bulk", "--serve-sim", "--records", &n.to_string()])?;
    eprintln!("starting a throwaway Postgres ...");
    let cluster = sequin_pgtemp::Cluster::start().context("starting Postgres")?;
    let mut results = Vec::new();
    for (path, threshold) in [("REST query", n as u64 + 1), ("Bulk API 2.0 job", 1)] {
        let m = measure(&cluster, &sequin, &sim.url, &token, path, threshold, n)?;
        println!(
            "{path}: {n} records in {:.1}s = {:.0} records/s; {} API requests ({} jobs); peak RSS {:.1} MB, CPU {:.1}s",
            m.wall_secs,
            m.records_per_sec(),
            m.requests,
            m.jobs,
            m.peak_rss_kb as f64 / 1024.0,
            m.cpu_secs
        );
        results.push(m);
    }
    drop(sim);
    let ratio = results[0].requests as f64 / results[1].requests.max(1) as f64;
    println!("\n{}", markdown(&results, n, ratio));
    if results[1].jobs != 1 {
        bail!("the Bulk run created {} jobs, not one", results[1].jobs);
    }
    if ratio < 20.0 {
        bail!(
            "the Bulk path used only {ratio:.1}x fewer requests than REST (at least 20x expected)"
        );
    }
    Ok(())
}

fn measure(
    cluster: &sequin_pgtemp::Cluster,
    sequin: &Path,
    sim_url: &str,
    token: &str,
    path: &'static str,
    threshold: u64,
    n: usize,
) -> Result<Measured> {
    let db = format!("bench_bulk_{}", if threshold == 1 { "job" } else { "rest" });
    let database_url = cluster.create_database(&db)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sequin.yaml");
    let refresh = sequin_sim::salesforce::refresh_token_for(token);
    std::fs::write(
        &config,
        format!(
            "database_url: {database_url}\nconnections:\n  - name: salesforce\n    connector: salesforce\n    \
             base_url: {sim_url}\n    token_url: {sim_url}/services/oauth2/token\n    \
             credentials: {{ client_id: '{id}', client_secret: '{secret}', refresh_token: '{refresh}' }}\n    \
             objects: [lead]\n    async_query_threshold: {threshold}\n    \
             rate_limit: {{ requests: 1000000, per: 1s }}\n",
            id = sequin_sim::salesforce::CLIENT_ID,
            secret = sequin_sim::salesforce::CLIENT_SECRET,
        ),
    )?;
    crate::bench_sync::migrate(sequin, &config)?;
    sim_child::control(sim_url, "/_sim/reset-stats", "POST")?;
    let jobs_before = jobs_created(sim_url)?;
    let log_path = dir.path().join("sync.log");
    eprintln!("{path}: running sequin sync --once ...");
    let (code, peak_rss_kb, cpu_secs, wall_secs) = sync_once_measured(sequin, &config, &log_path)?;
    let kept_log = std::env::temp_dir().join(format!("bench-bulk-{db}.log"));
    let _ = std::fs::copy(&log_path, &kept_log);
    eprintln!("sequin's log: {}", kept_log.display());
    if code != 0 {
        bail!(
            "sequin sync --once exited with {code}; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    let stats: serde_json::Value =
        serde_json::from_str(&sim_child::control(sim_url, "/_sim/stats", "GET")?)
            .context("reading the simulator's counters")?;
    let requests = stats["requests"]
        .as_u64()
        .context("the stats' request count")?;
    eprintln!("{path}: requests by route: {}", stats["by_route"]);
    let jobs = jobs_created(sim_url)? - jobs_before;
    let count = cluster.psql(&db, "SELECT count(*) FROM salesforce.lead")?;
    if count.trim() != n.to_string() {
        bail!(
            "{path}: sequin synced {} leads, the simulator has {n}",
            count.trim()
        );
    }
    cluster.psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"))?;
    Ok(Measured {
        path,
        records: n,
        wall_secs,
        peak_rss_kb,
        cpu_secs,
        requests,
        jobs,
    })
}

/// Jobs the simulator has created so far.
fn jobs_created(sim_url: &str) -> Result<u64> {
    let jobs: serde_json::Value = serde_json::from_str(&sim_child::control(
        sim_url,
        "/_sim/salesforce/bulk/jobs",
        "GET",
    )?)?;
    jobs["created"].as_u64().context("the jobs' count")
}

fn markdown(results: &[Measured], n: usize, ratio: f64) -> String {
    let mut s = format!(
        "Command: `cargo xtask bench bulk --records {n}` ({}; {} cores).\n\n\
         | path | records | wall s | records/s | API requests | jobs | peak RSS MB | CPU s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        crate::bench_sync::chrono_free_date(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for m in results {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.0} | {} | {} | {:.1} | {:.1} |\n",
            m.path,
            m.records,
            m.wall_secs,
            m.records_per_sec(),
            m.requests,
            m.jobs,
            m.peak_rss_kb as f64 / 1024.0,
            m.cpu_secs
        ));
    }
    s.push_str(&format!(
        "\nThe Bulk path used {ratio:.1}x fewer API requests.\n"
    ));
    s
}
