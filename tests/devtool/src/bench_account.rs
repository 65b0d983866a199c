//! `cargo xtask bench account`: `sequin sync --once` of whole seeded accounts
//! (every object of Stripe and of HubSpot, N records each) under the API's
//! own rate limit, with wall time, peak RSS and what the API saw.
//!
//! Per API:
//! 1. the simulator runs in a child process (this binary, re-run with a
//!    hidden flag), seeded with N records of every object it serves and
//!    enforcing the API's documented rate limit (Stripe: 25 requests per
//!    second in test mode; HubSpot: 100 per 10 s, searches 5 per second);
//! 2. the release `sequin sync --once` syncs every object of the connector,
//!    with the connector's own rate-limit budget (no override), under the
//!    measuring helper of `bench sync` (peak RSS from `wait4`);
//! 3. the simulator's counters say how many requests were made, the most
//!    that arrived within any rate window (never above the limit when Sequin
//!    keeps to it) and how many 429s the limit caused, which must be none.
//!
//! The run fails when a synced table has fewer rows than the simulator
//! seeded, so a run that loses records does not look fast. The baseline is
//! the rate limit itself: the requests made divided by the limit are the
//! least wall time any client could take.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sequin_sim::{Api, SimConfig, StatsSnapshot};

use crate::bench_sync::sync_once_measured;
use crate::demo::TableCounts;
use crate::sim_child;

/// Arguments of `cargo xtask bench account`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchAccountArgs {
    /// Records seeded per object.
    #[arg(long, default_value_t = 1000)]
    pub records: usize,
    /// The accounts to sync, comma-separated (stripe, hubspot).
    #[arg(long, value_delimiter = ',', default_value = "stripe,hubspot")]
    pub apis: Vec<Api>,
    /// Use this `sequin` binary instead of building it (release).
    #[arg(long)]
    pub sequin: Option<PathBuf>,
    /// Internal: serve this API's seeded simulator (the benchmark's child).
    #[arg(long, hide = true)]
    pub serve_sim: Option<Api>,
}

/// What one account's sync measured.
struct Measured {
    api: Api,
    tables: usize,
    rows: u64,
    wall_secs: f64,
    peak_rss_kb: i64,
    cpu_secs: f64,
    stats: StatsSnapshot,
}

impl Measured {
    /// The account's rate limit as (requests, window in seconds).
    fn limit(&self) -> (u32, f64) {
        self.stats
            .rate_keys
            .values()
            .max_by_key(|k| k.requests)
            .map_or((0, 0.0), |k| (k.limit, k.window_ms as f64 / 1000.0))
    }
    /// The most requests that arrived within one rate window.
    fn peak_in_window(&self) -> u32 {
        self.stats
            .rate_keys
            .values()
            .map(|k| k.max_attempted_in_window)
            .max()
            .unwrap_or(0)
    }
    /// The least wall time the requests made allow under the limit.
    fn floor_secs(&self) -> f64 {
        let (requests, window) = self.limit();
        if requests == 0 {
            return 0.0;
        }
        self.stats.requests as f64 / requests as f64 * window
    }
}

/// Runs the benchmark (or, with `--serve-sim`, the simulator child).
pub fn run(args: BenchAccountArgs) -> Result<()> {
    if let Some(api) = args.serve_sim {
        let cfg = SimConfig::new(api)
            .seed_records(args.records)
            .seed_every_object();
        return sim_child::serve_config(cfg, |_| {});
    }
    for api in &args.apis {
        if !matches!(api, Api::Stripe | Api::Hubspot) {
            bail!("bench account syncs stripe or hubspot, not {api} (fix: --apis stripe,hubspot)");
        }
    }
    let root = crate::root();
    let sequin = match &args.sequin {
        Some(path) => path.clone(),
        None => crate::demo::sequin_binary(&root, true)?,
    };
    eprintln!("starting a throwaway Postgres ...");
    let cluster = sequin_pgtemp::Cluster::start().context("starting Postgres")?;
    let mut results = Vec::new();
    for &api in &args.apis {
        let m = measure(&cluster, &sequin, api, args.records)?;
        print_one(&m);
        results.push(m);
    }
    println!("\n{}", markdown(&results, &args));
    Ok(())
}

fn measure(
    cluster: &sequin_pgtemp::Cluster,
    sequin: &Path,
    api: Api,
    n: usize,
) -> Result<Measured> {
    eprintln!("seeding {n} records of every {api} object in the simulator (child process) ...");
    let (sim, token) = sim_child::start(&[
        "bench",
        "account",
        "--serve-sim",
        api.name(),
        "--records",
        &n.to_string(),
    ])?;
    let db = format!("bench_account_{}", api.name());
    let database_url = cluster.create_database(&db)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sequin.yaml");
    let credentials = match api {
        Api::Stripe => format!("{{ api_key: \"{token}\" }}"),
        _ => format!("{{ access_token: \"{token}\" }}"),
    };
    std::fs::write(
        &config,
        format!(
            "database_url: {database_url}\nconnections:\n  - name: {name}\n    connector: {name}\n    \
             base_url: {url}\n    credentials: {credentials}\n",
            name = api.name(),
            url = sim.url,
        ),
    )?;
    crate::bench_sync::migrate(sequin, &config)?;
    sim_child::control(&sim.url, "/_sim/reset-stats", "POST")?;
    let log_path = dir.path().join("sync.log");
    eprintln!("running sequin sync --once (every {api} object) ...");
    let (code, peak_rss_kb, cpu_secs, wall_secs) = sync_once_measured(sequin, &config, &log_path)?;
    let stats: StatsSnapshot =
        serde_json::from_str(&sim_child::control(&sim.url, "/_sim/stats", "GET")?)
            .context("reading the simulator's counters")?;
    drop(sim);
    let mut routes: Vec<_> = stats.by_route.iter().collect();
    routes.sort_by(|a, b| b.1.cmp(a.1));
    eprintln!("most requested routes: {:?}", routes);
    let kept_log = std::env::temp_dir().join(format!("bench-account-{}.log", api.name()));
    let _ = std::fs::copy(&log_path, &kept_log);
    eprintln!("sequin's log: {}", kept_log.display());
    if code != 0 {
        bail!(
            "sequin sync --once exited with {code}; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    let counts = TableCounts::parse(&cluster.psql(&db, TableCounts::QUERY)?);
    check_counts(&counts, api, n)?;
    if stats.rate_limited > 0 {
        bail!(
            "the simulator refused {} requests over the rate limit: sequin did not keep to it",
            stats.rate_limited
        );
    }
    cluster.psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"))?;
    Ok(Measured {
        api,
        tables: counts.len(),
        rows: counts.total(),
        wall_secs,
        peak_rss_kb,
        cpu_secs,
        stats,
    })
}

/// Every table has at least `n` rows: the simulator seeds `n` records of
/// every object (children: one or more under each of `n` parents; links:
/// one or more per source record), except a HubSpot portal's few owners
/// and pipelines, which need only be there.
fn check_counts(counts: &TableCounts, api: Api, n: usize) -> Result<()> {
    let empty = counts.empty();
    if !empty.is_empty() {
        bail!("{api}: tables without rows: {}", empty.join(", "));
    }
    let short: Vec<String> = counts
        .below(n as u64)
        .into_iter()
        .filter(|t| !(api == Api::Hubspot && (t.ends_with("owner") || t.ends_with("pipeline"))))
        .collect();
    if !short.is_empty() {
        bail!("{api}: tables with fewer than the {n} records seeded: {short:?}");
    }
    Ok(())
}

fn print_one(m: &Measured) {
    let (limit, window) = m.limit();
    println!(
        "{api}: {tables} tables, {rows} rows in {wall:.1}s (peak RSS {rss:.1} MB, CPU {cpu:.1}s); \
         {requests} requests, at most {peak} in any {window}s window (limit {limit}), {refused} refused; \
         the limit alone needs {floor:.1}s",
        api = m.api,
        tables = m.tables,
        rows = m.rows,
        wall = m.wall_secs,
        rss = m.peak_rss_kb as f64 / 1024.0,
        cpu = m.cpu_secs,
        requests = m.stats.requests,
        peak = m.peak_in_window(),
        refused = m.stats.rate_limited,
        floor = m.floor_secs(),
    );
}

fn markdown(results: &[Measured], args: &BenchAccountArgs) -> String {
    let mut s = format!(
        "Command: `cargo xtask bench account --records {}` ({}; {} cores).\n\n",
        args.records,
        crate::bench_sync::chrono_free_date(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    s.push_str(
        "| account | tables | rows | wall s | rate-limit floor s | requests | most in a window / limit | 429s | peak RSS MB | CPU s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in results {
        let (limit, window) = m.limit();
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {} | {} / {} per {}s | {} | {:.1} | {:.1} |\n",
            m.api,
            m.tables,
            m.rows,
            m.wall_secs,
            m.floor_secs(),
            m.stats.requests,
            m.peak_in_window(),
            limit,
            window,
            m.stats.rate_limited,
            m.peak_rss_kb as f64 / 1024.0,
            m.cpu_secs
        ));
    }
    s
}
