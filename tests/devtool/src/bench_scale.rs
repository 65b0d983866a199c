//! `cargo xtask bench scale`: many accounts in one `sequin sync` process.
//!
//! 1. A child process (this binary, re-run with a hidden flag) serves N
//!    Stripe accounts, a simulator each on a port of its own (Stripe's test
//!    mode rate limit, 25 requests/s per account), seeded with a few records
//!    of the seven core billing objects. It writes their URLs and keys to a
//!    file.
//! 2. `sequin migrate` makes the tables of the seven objects of every
//!    connection, timed: a first start pays it once.
//! 3. The release `sequin sync` runs every connection with `pool.size` P
//!    against a Postgres that allows 50 sessions: the time from its start
//!    to every object live; Postgres sessions sampled every 50 ms (the most
//!    at once of sync's pool, and of the whole process); then a steady
//!    window in which every connection polls its events feed every
//!    `poll_interval`: sequin's CPU per connection per poll (from
//!    `/proc/<pid>/stat`, the simulators' CPU is the child's), and its peak
//!    RSS (`VmHWM`).
//!
//! The run fails when an object is not live, a sampled table differs in
//! row count from its account, or sync's sessions exceed the pool.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};

use sequin_pgtemp::Killed;

use crate::bench_sync::{chrono_free_date, migrate, proc_cpu_secs};
use crate::sim_child;

/// Arguments of `cargo xtask bench scale`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchScaleArgs {
    /// Stripe accounts, one connection each.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Records seeded per object and account.
    #[arg(long, default_value_t = 3)]
    pub records: usize,
    /// Sync's pool of Postgres sessions (`pool.size`).
    #[arg(long, default_value_t = 10)]
    pub pool: usize,
    /// How often each connection polls its events feed once live.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub poll_interval: Duration,
    /// How long the steady state is measured.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub steady: Duration,
    /// Use this `sequin` binary instead of building it (release).
    #[arg(long)]
    pub sequin: Option<PathBuf>,
    /// Internal: serve this many seeded accounts, listed in this file.
    #[arg(long, hide = true, num_args = 2, value_names = ["N", "FILE"])]
    pub serve_sims: Option<Vec<String>>,
}

fn duration(s: &str) -> Result<Duration, String> {
    sequin_spec::duration::parse(s).ok_or_else(|| format!("`{s}` is not a duration (5s, 1m)"))
}

/// The seven objects each connection syncs: those the simulator seeds
/// (`Kind::CORE`), each one's table named like the object.
const OBJECTS: [Kind; 7] = Kind::CORE;

/// Postgres's `max_connections` in this benchmark: far below the
/// connections synced.
const MAX_CONNECTIONS: usize = 50;

/// What one run measured.
struct Measured {
    migrate_secs: f64,
    live_secs: f64,
    peak_sync_sessions: i64,
    peak_sessions: i64,
    cpu_per_poll_us: f64,
    steady_cpu_percent: f64,
    peak_rss_mb: f64,
    steady_rss_mb: f64,
}

pub fn run(args: BenchScaleArgs) -> Result<()> {
    if let Some(serve) = &args.serve_sims {
        let n: usize = serve[0].parse().context("--serve-sims N FILE")?;
        return serve_sims(n, args.records, Path::new(&serve[1]));
    }
    let root = crate::root();
    let sequin = match &args.sequin {
        Some(path) => path.clone(),
        None => crate::demo::sequin_binary(&root, true)?,
    };
    eprintln!("starting a throwaway Postgres (max_connections = {MAX_CONNECTIONS}) ...");
    let cluster = sequin_pgtemp::Cluster::start_with(sequin_pgtemp::Options {
        config: vec![format!("max_connections = {MAX_CONNECTIONS}")],
        ..Default::default()
    })
    .context("starting Postgres")?;
    let m = measure(&cluster, &sequin, &args)?;
    println!("\n{}", markdown(&m, &args));
    check(&m, &args)
}

fn measure(
    cluster: &sequin_pgtemp::Cluster,
    sequin: &Path,
    args: &BenchScaleArgs,
) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let accounts_file = dir.path().join("accounts");
    eprintln!(
        "starting {} Stripe accounts with {} records of 7 objects each (child process) ...",
        args.connections, args.records
    );
    let (sim, _) = sim_child::start(&[
        "bench",
        "scale",
        "--records",
        &args.records.to_string(),
        "--serve-sims",
        &args.connections.to_string(),
        &accounts_file.to_string_lossy(),
    ])?;
    let accounts = read_accounts(&accounts_file)?;
    let url = cluster.create_database("bench_scale")?;
    let config = dir.path().join("sequin.yaml");
    std::fs::write(&config, config_yaml(&url, &accounts, args))?;

    eprintln!(
        "sequin migrate ({} tables) ...",
        accounts.len() * OBJECTS.len()
    );
    let started = Instant::now();
    migrate(sequin, &config)?;
    let migrate_secs = started.elapsed().as_secs_f64();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let pg = rt.block_on(async {
        let pg = sequin_pgtemp::connect(&url).await;
        pg.batch_execute("SET application_name = 'bench-scale'")
            .await?;
        anyhow::Ok(pg)
    })?;
    let log = std::fs::File::create(dir.path().join("sync.log"))?;
    eprintln!("sequin sync of {} connections ...", accounts.len());
    let started = Instant::now();
    let mut child = Killed(
        Command::new(sequin)
            .arg("--config")
            .arg(&config)
            .arg("sync")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting sequin sync")?,
    );
    let pid = child.0.id();
    let expected = (accounts.len() * OBJECTS.len()) as i64;
    let mut peaks = (0i64, 0i64);
    let live_secs = loop {
        let (live, sync, all) = rt.block_on(sample(&pg))?;
        peaks = (peaks.0.max(sync), peaks.1.max(all));
        if live == expected {
            break started.elapsed().as_secs_f64();
        }
        if let Some(status) = child.0.try_wait()? {
            bail!(
                "sequin sync exited with {status} before every object was live; log in {}",
                dir.path().display()
            );
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{live} of {expected} objects live after 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "every object live after {live_secs:.1}s; steady state for {:?} ...",
        args.steady
    );
    let cpu_before = proc_cpu_secs(pid)?;
    let steady_started = Instant::now();
    while steady_started.elapsed() < args.steady {
        let (_, sync, all) = rt.block_on(sample(&pg))?;
        peaks = (peaks.0.max(sync), peaks.1.max(all));
        std::thread::sleep(Duration::from_millis(50));
    }
    let window = steady_started.elapsed().as_secs_f64();
    let cpu = proc_cpu_secs(pid)? - cpu_before;
    let peak_rss_mb = rss_kb(pid, "VmHWM")? as f64 / 1024.0;
    let steady_rss_mb = rss_kb(pid, "VmRSS")? as f64 / 1024.0;
    rt.block_on(check_sample(&pg, &accounts, args.records))?;
    drop(child);
    let kept_log = std::env::temp_dir().join("bench-scale-sync.log");
    let _ = std::fs::copy(dir.path().join("sync.log"), &kept_log);
    eprintln!("sequin's log: {}", kept_log.display());
    drop(sim);
    let polls = accounts.len() as f64 * window / args.poll_interval.as_secs_f64();
    Ok(Measured {
        migrate_secs,
        live_secs,
        peak_sync_sessions: peaks.0,
        peak_sessions: peaks.1,
        cpu_per_poll_us: cpu / polls * 1e6,
        steady_cpu_percent: cpu / window * 100.0,
        peak_rss_mb,
        steady_rss_mb,
    })
}

/// Objects live; sessions of sync's pool and of the whole process (every
/// client session of the database but this benchmark's own).
async fn sample(pg: &tokio_postgres::Client) -> Result<(i64, i64, i64)> {
    let live: i64 = match pg
        .query_one(
            "SELECT count(*) FROM sequin.sync_state
              WHERE phase = 'live' AND object NOT IN ('_events', '_connection')",
            &[],
        )
        .await
    {
        Ok(r) => r.get(0),
        // Before the engine's first statement.
        Err(_) => 0,
    };
    let r = pg
        .query_one(
            "SELECT count(*) FILTER (WHERE application_name = 'sequin-sync'), count(*)
               FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND datname = current_database()
                AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    Ok((live, r.get(0), r.get(1)))
}

/// Every tenth account's tables hold as many rows as it has records.
async fn check_sample(
    pg: &tokio_postgres::Client,
    accounts: &[(String, String)],
    records: usize,
) -> Result<()> {
    for i in (0..accounts.len()).step_by(10) {
        for table in OBJECTS.map(Kind::name) {
            let n: i64 = pg
                .query_one(&format!("SELECT count(*) FROM acct_{i}.{table}"), &[])
                .await?
                .get(0);
            if n != records as i64 {
                bail!("acct_{i}.{table} has {n} rows, the account {records} records");
            }
        }
    }
    Ok(())
}

/// A live process's resident set, in KiB: `VmHWM` its peak, `VmRSS` now.
fn rss_kb(pid: u32, field: &str) -> Result<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("reading {field} of /proc/{pid}/status"))
}

fn config_yaml(url: &str, accounts: &[(String, String)], args: &BenchScaleArgs) -> String {
    let objects = OBJECTS.map(Kind::name);
    let mut yaml = format!(
        "database_url: {url}\npool: {{ size: {} }}\nconnections:\n",
        args.pool
    );
    for (i, (base_url, key)) in accounts.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: acct_{i}\n    connector: stripe\n    base_url: {base_url}\n    \
             credentials: {{ api_key: \"{key}\" }}\n    poll_interval: {}ms\n    objects: [{}]\n",
            args.poll_interval.as_millis(),
            objects.join(", "),
        ));
    }
    yaml
}

/// The accounts the child serves: `url key` per line.
fn read_accounts(path: &Path) -> Result<Vec<(String, String)>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(u, k)| (u.to_string(), k.to_string()))
                .context("an account line is `url key`")
        })
        .collect()
}

/// The child: `n` seeded Stripe accounts, listed in `file` before the
/// first one is announced; serves until stdin closes.
fn serve_sims(n: usize, records: usize, file: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut sims = Vec::with_capacity(n);
        let mut lines = String::new();
        for i in 0..n {
            let sim = sequin_sim::start(
                SimConfig::new(Api::Stripe)
                    .seed_records(records)
                    .rng_seed(i as u64 + 1)
                    .token(format!("sk_test_scale{i:05}")),
                "127.0.0.1:0".parse()?,
            )
            .await?;
            lines.push_str(&format!("{} {}\n", sim.base_url(), sim.token()));
            sims.push(sim);
        }
        std::fs::write(file, lines)?;
        sim_child::announce_and_wait(&sims[0]).await?;
        for sim in sims {
            sim.shutdown().await;
        }
        anyhow::Ok(())
    })
}

fn check(m: &Measured, args: &BenchScaleArgs) -> Result<()> {
    if m.peak_sync_sessions > args.pool as i64 {
        bail!(
            "sync used {} sessions at once, its pool is {}",
            m.peak_sync_sessions,
            args.pool
        );
    }
    Ok(())
}

fn markdown(m: &Measured, args: &BenchScaleArgs) -> String {
    let target = |ok: bool| if ok { "met" } else { "**not met**" };
    format!(
        "Command: `cargo xtask bench scale --connections {c} --records {r} --pool {p}` ({date}; {cores} cores; \
         Postgres max_connections = {MAX_CONNECTIONS}; poll_interval {poll:?}).\n\n\
         | figure | value | target |\n|---|---:|---|\n\
         | `sequin migrate`, {tables} tables (first start only) | {mig:.1} s | |\n\
         | `sequin sync` start to every object live | {live:.1} s | < 60 s: {t_live} |\n\
         | sync's Postgres sessions, most at once | {ps} | ≤ pool.size {p}: {t_ps} |\n\
         | all of sequin's Postgres sessions, most at once | {pa} | |\n\
         | peak RSS | {rss:.0} MB | < 300 MB: {t_rss} |\n\
         | RSS at the end of the steady state | {srss:.0} MB | |\n\
         | steady-state CPU per connection per poll | {cpp:.0} µs | |\n\
         | steady-state CPU (one core = 100%) | {cpu:.0}% | |\n",
        c = args.connections,
        r = args.records,
        p = args.pool,
        date = chrono_free_date(),
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        poll = args.poll_interval,
        tables = args.connections * OBJECTS.len(),
        mig = m.migrate_secs,
        live = m.live_secs,
        t_live = target(m.live_secs < 60.0),
        ps = m.peak_sync_sessions,
        t_ps = target(m.peak_sync_sessions <= args.pool as i64),
        pa = m.peak_sessions,
        rss = m.peak_rss_mb,
        srss = m.steady_rss_mb,
        t_rss = target(m.peak_rss_mb < 300.0),
        cpp = m.cpu_per_poll_us,
        cpu = m.steady_cpu_percent,
    )
}
