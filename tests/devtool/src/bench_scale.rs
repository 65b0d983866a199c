//! `cargo xtask bench scale`: many accounts in one `sequin sync` process,
//! then the same accounts over several processes.
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
//! 4. The same in a second database with `--processes` (3) `sequin sync`
//!    processes sharing the connections by their leases: time to every
//!    object live, sessions, CPU (of all of them), each one's peak RSS, and
//!    how many connections each holds.
//!
//! The run fails when an object is not live, a sampled table differs in
//! row count from its account, sync's sessions exceed the pools, or the
//! processes do not split the connections evenly.

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
    /// `sequin sync` processes of the second run (1: no second run).
    #[arg(long, default_value_t = 3)]
    pub processes: usize,
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
    processes: usize,
    migrate_secs: f64,
    live_secs: f64,
    peak_sync_sessions: i64,
    peak_sessions: i64,
    cpu_per_poll_us: f64,
    steady_cpu_percent: f64,
    /// The most of any one process.
    peak_rss_mb: f64,
    /// Of all processes together, at the end.
    steady_rss_mb: f64,
    /// Connections held by each process at the end, most first.
    held: Vec<i64>,
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
    let runs = measure(&cluster, &sequin, &args)?;
    println!("\n{}", markdown(&runs, &args));
    for m in &runs {
        check(m, &args)?;
    }
    Ok(())
}

fn measure(
    cluster: &sequin_pgtemp::Cluster,
    sequin: &Path,
    args: &BenchScaleArgs,
) -> Result<Vec<Measured>> {
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
    let mut runs = vec![run_sync(cluster, sequin, &accounts, args, 1, dir.path())?];
    if args.processes > 1 {
        runs.push(run_sync(
            cluster,
            sequin,
            &accounts,
            args,
            args.processes,
            dir.path(),
        )?);
    }
    drop(sim);
    Ok(runs)
}

/// `processes` `sequin sync` processes of every account, in a database of
/// their own, measured.
fn run_sync(
    cluster: &sequin_pgtemp::Cluster,
    sequin: &Path,
    accounts: &[(String, String)],
    args: &BenchScaleArgs,
    processes: usize,
    dir: &Path,
) -> Result<Measured> {
    let url = cluster.create_database(&format!("bench_scale_{processes}"))?;
    let config = dir.join(format!("sequin-{processes}.yaml"));
    std::fs::write(&config, config_yaml(&url, accounts, args))?;

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
    eprintln!(
        "{processes} sequin sync process(es) of {} connections ...",
        accounts.len()
    );
    let started = Instant::now();
    let mut children = Vec::new();
    for n in 0..processes {
        let log = std::fs::File::create(dir.join(format!("sync-{processes}-{n}.log")))?;
        children.push(Killed(
            Command::new(sequin)
                .arg("--config")
                .arg(&config)
                .arg("sync")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting sequin sync")?,
        ));
    }
    let pids: Vec<u32> = children.iter().map(|c| c.0.id()).collect();
    let expected = (accounts.len() * OBJECTS.len()) as i64;
    let mut peaks = (0i64, 0i64);
    let live_secs = loop {
        let (live, sync, all) = rt.block_on(sample(&pg))?;
        peaks = (peaks.0.max(sync), peaks.1.max(all));
        if live == expected {
            break started.elapsed().as_secs_f64();
        }
        for child in &mut children {
            if let Some(status) = child.0.try_wait()? {
                bail!(
                    "sequin sync exited with {status} before every object was live; logs in {}",
                    dir.display()
                );
            }
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
    let cpu = |pids: &[u32]| -> Result<f64> { pids.iter().map(|p| proc_cpu_secs(*p)).sum() };
    let cpu_before = cpu(&pids)?;
    let steady_started = Instant::now();
    while steady_started.elapsed() < args.steady {
        let (_, sync, all) = rt.block_on(sample(&pg))?;
        peaks = (peaks.0.max(sync), peaks.1.max(all));
        std::thread::sleep(Duration::from_millis(50));
    }
    let window = steady_started.elapsed().as_secs_f64();
    let cpu = cpu(&pids)? - cpu_before;
    let mut peak_rss_kb = 0;
    let mut steady_rss_kb = 0;
    for pid in &pids {
        peak_rss_kb = peak_rss_kb.max(rss_kb(*pid, "VmHWM")?);
        steady_rss_kb += rss_kb(*pid, "VmRSS")?;
    }
    let held = rt.block_on(held(&pg))?;
    rt.block_on(check_sample(&pg, accounts, args.records))?;
    drop(children);
    let kept_logs = std::env::temp_dir().join("bench-scale-logs");
    let _ = std::fs::create_dir_all(&kept_logs);
    for n in 0..processes {
        let name = format!("sync-{processes}-{n}.log");
        let _ = std::fs::copy(dir.join(&name), kept_logs.join(&name));
    }
    eprintln!("sequin's logs: {}", kept_logs.display());
    let polls = accounts.len() as f64 * window / args.poll_interval.as_secs_f64();
    Ok(Measured {
        processes,
        migrate_secs,
        live_secs,
        peak_sync_sessions: peaks.0,
        peak_sessions: peaks.1,
        cpu_per_poll_us: cpu / polls * 1e6,
        steady_cpu_percent: cpu / window * 100.0,
        peak_rss_mb: peak_rss_kb as f64 / 1024.0,
        steady_rss_mb: steady_rss_kb as f64 / 1024.0,
        held,
    })
}

/// Connections held by each live process, most first.
async fn held(pg: &tokio_postgres::Client) -> Result<Vec<i64>> {
    let mut held: Vec<i64> = pg
        .query(
            "SELECT count(*) FROM sequin.lease_status WHERE holder IS NOT NULL GROUP BY holder",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    held.sort_unstable_by(|a, b| b.cmp(a));
    Ok(held)
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
    let pools = (args.pool * m.processes) as i64;
    if m.peak_sync_sessions > pools {
        bail!(
            "{} process(es) used {} sync sessions at once, their pools {pools}",
            m.processes,
            m.peak_sync_sessions
        );
    }
    let share = args.connections.div_ceil(m.processes) as i64;
    if m.held.len() != m.processes || m.held.iter().any(|h| *h > share) {
        bail!(
            "{} process(es) hold {:?} connections, at most {share} each",
            m.processes,
            m.held
        );
    }
    Ok(())
}

fn markdown(runs: &[Measured], args: &BenchScaleArgs) -> String {
    let target = |ok: bool| if ok { "met" } else { "**not met**" };
    let head: Vec<String> = runs
        .iter()
        .map(|m| match m.processes {
            1 => "1 process".to_string(),
            n => format!("{n} processes"),
        })
        .collect();
    let row = |name: &str, cell: &dyn Fn(&Measured) -> String, goal: &str| {
        let cells: Vec<String> = runs.iter().map(cell).collect();
        format!("| {name} | {} | {goal} |\n", cells.join(" | "))
    };
    let one = &runs[0];
    let mut out = format!(
        "Command: `cargo xtask bench scale --connections {c} --records {r} --pool {p} --processes {n}` ({date}; {cores} cores; \
         Postgres max_connections = {MAX_CONNECTIONS}; poll_interval {poll:?}).\n\n\
         | figure | {head} | target |\n|---|{aligns}---|\n",
        c = args.connections,
        r = args.records,
        p = args.pool,
        n = args.processes,
        date = chrono_free_date(),
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        poll = args.poll_interval,
        head = head.join(" | "),
        aligns = "---:|".repeat(runs.len()),
    );
    let tables = args.connections * OBJECTS.len();
    out += &row(
        &format!("`sequin migrate`, {tables} tables (first start only)"),
        &|m| format!("{:.1} s", m.migrate_secs),
        "",
    );
    out += &row(
        "`sequin sync` start to every object live",
        &|m| format!("{:.1} s", m.live_secs),
        &format!("< 60 s: {}", target(one.live_secs < 60.0)),
    );
    out += &row(
        "sync's Postgres sessions, most at once",
        &|m| m.peak_sync_sessions.to_string(),
        &format!(
            "≤ pool.size {} per process: {}",
            args.pool,
            target(
                runs.iter()
                    .all(|m| m.peak_sync_sessions <= (args.pool * m.processes) as i64)
            )
        ),
    );
    out += &row(
        "all of sequin's Postgres sessions, most at once",
        &|m| m.peak_sessions.to_string(),
        "",
    );
    out += &row(
        "connections held per process",
        &|m| {
            m.held
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(" / ")
        },
        "",
    );
    out += &row(
        "peak RSS (the largest process)",
        &|m| format!("{:.0} MB", m.peak_rss_mb),
        &format!("< 300 MB: {}", target(one.peak_rss_mb < 300.0)),
    );
    out += &row(
        "RSS at the end of the steady state (all processes)",
        &|m| format!("{:.0} MB", m.steady_rss_mb),
        "",
    );
    out += &row(
        "steady-state CPU per connection per poll",
        &|m| format!("{:.0} µs", m.cpu_per_poll_us),
        "",
    );
    out += &row(
        "steady-state CPU (one core = 100%)",
        &|m| format!("{:.0}%", m.steady_cpu_percent),
        "",
    );
    out
}
