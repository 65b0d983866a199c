//! `cargo xtask bench proxy`: pgbench through the Sequin proxy, directly
//! against Postgres and through PgBouncer (session mode), all in the same
//! run against the same throwaway cluster, reported as ratios.
//!
//! The proxy runs in-process on its own tokio runtime with a synced table
//! configured, so the statement pre-filter is on the measured path. PgBouncer
//! is installed with apt when missing. Rounds interleave the three targets so
//! that drift on a shared machine hits all of them alike; the median round
//! is reported.
//!
//! Instructions per transaction: after the timed rounds, the proxy (this
//! binary's hidden `--serve-proxy` mode, a process of its own) and PgBouncer
//! each run under `valgrind --tool=callgrind` while pgbench sends a fixed
//! number of transactions, twice (N and 2N per client); the difference of
//! the two totals over N transactions per client is the middleman's
//! user-space instructions per transaction, startup and connections
//! excluded. Unlike tps and CPU time, it does not move with the machine's
//! load (this machine's VM exposes no hardware counters to `perf stat`).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sequin_pgtemp::{Cluster, Options};
use sequin_proxy::{PassThrough, Proxy, ProxyConfig, SyncedTables, TableName, Upstream};

/// Arguments of `cargo xtask bench proxy`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchProxyArgs {
    /// Seconds per pgbench run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Interleaved rounds per scenario (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// pgbench scale factor.
    #[arg(long, default_value_t = 10)]
    pub scale: u32,
    /// Markdown file whose "## Proxy" section is replaced with the results.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub output: PathBuf,
    /// Print the results without writing the file.
    #[arg(long)]
    pub no_write: bool,
    /// Only run scenarios whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
    /// Proxy worker threads (default: the proxy's default, half the CPUs).
    #[arg(long)]
    pub proxy_threads: Option<usize>,
    /// Synced tables configured in the proxy (its pre-filter looks for each
    /// one's name in every statement): `stripe.customer` and N-1 more of
    /// Stripe's (an account syncs 66).
    #[arg(long, default_value_t = 1)]
    pub synced_tables: usize,
    /// Transactions per client of the smaller callgrind run (the larger
    /// runs twice as many); 0 skips the instruction counts.
    #[arg(long, default_value_t = 1000)]
    pub counted_transactions: u32,
    /// Keep callgrind's output files here (`<proxy|pgbouncer>-<scenario
    /// number>-<transactions per client>.out`, for `callgrind_annotate`)
    /// instead of deleting them.
    #[arg(long)]
    pub callgrind_dir: Option<PathBuf>,
    /// Internal: serve the proxy in front of Postgres on this port, print
    /// its port, and stop when stdin closes (the callgrind runs).
    #[arg(long, hide = true)]
    pub serve_proxy: Option<u16>,
}

/// One pgbench configuration.
struct Scenario {
    name: &'static str,
    args: &'static [&'static str],
    clients: u32,
    /// Also counted under callgrind (slow: the simple-protocol cases).
    counted: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "select-only (-S), -c 8 -j 2",
        args: &["-S", "-c", "8", "-j", "2"],
        clients: 8,
        counted: true,
    },
    Scenario {
        name: "select-only (-S), -c 1",
        args: &["-S", "-c", "1", "-j", "1"],
        clients: 1,
        counted: true,
    },
    Scenario {
        name: "select-only (-S -M prepared), -c 8 -j 2",
        args: &["-S", "-M", "prepared", "-c", "8", "-j", "2"],
        clients: 8,
        counted: true,
    },
    Scenario {
        name: "TPC-B-like (default), -c 8 -j 2",
        args: &["-c", "8", "-j", "2"],
        clients: 8,
        counted: false,
    },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Direct,
    Proxy,
    PgBouncer,
}

const TARGETS: [Target; 3] = [Target::Direct, Target::Proxy, Target::PgBouncer];

/// Result of one pgbench run.
#[derive(Clone, Copy, Debug)]
struct Run {
    tps: f64,
    latency_ms: f64,
    /// CPU time the middleman (proxy or PgBouncer) spent per transaction,
    /// in µs; a cost that, unlike latency, barely depends on machine load.
    cpu_us_per_txn: f64,
}

/// Runs the benchmark.
pub fn run(args: BenchProxyArgs) -> Result<()> {
    if let Some(upstream) = args.serve_proxy {
        return serve_proxy(upstream, args.proxy_threads, args.synced_tables);
    }
    // Before anything of the bench runs: it keeps both cores busy itself,
    // so the load at the end says nothing about other work.
    let load_before = crate::report::load_average();
    let cluster = Cluster::start_with(Options {
        config: vec![
            "max_connections = 100".into(),
            "shared_buffers = 256MB".into(),
        ],
        ..Default::default()
    })
    .context("starting a throwaway Postgres cluster")?;
    let bindir = cluster.bindir().to_path_buf();
    let pgbench = bindir.join("pgbench");
    eprintln!("initializing pgbench data (scale {})", args.scale);
    let status = Command::new(&pgbench)
        .args(["-i", "-q", "-s", &args.scale.to_string()])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            "postgres",
        ])
        .stdout(Stdio::null())
        .status()
        .context("running pgbench -i")?;
    if !status.success() {
        bail!("pgbench -i failed");
    }

    // The proxy, on its own runtime (two workers: this machine's cores).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let proxy = runtime.block_on(async {
        let mut config = ProxyConfig::new(
            "127.0.0.1:0".parse().expect("valid address"),
            Upstream::plain("127.0.0.1", cluster.port()),
        );
        // A synced table makes every Query/Parse pay the pre-filter, as in
        // production.
        config.synced = synced_tables(args.synced_tables);
        if let Some(n) = args.proxy_threads {
            config.worker_threads = n;
        }
        Proxy::bind(config, Arc::new(PassThrough)).await
    })?;
    let proxy_port = proxy.local_addr().port();
    let proxy = {
        let _guard = runtime.enter();
        proxy.spawn()
    };

    let bouncer = PgBouncer::start(cluster.port(), &[])?;

    let mut results: Vec<(&Scenario, Vec<[Run; 3]>)> = Vec::new();
    for scenario in SCENARIOS {
        if let Some(only) = &args.only
            && !scenario.name.contains(only.as_str())
        {
            continue;
        }
        let mut rounds = Vec::new();
        for round in 0..args.rounds {
            let mut runs = [Run {
                tps: 0.0,
                latency_ms: 0.0,
                cpu_us_per_txn: 0.0,
            }; 3];
            // Rotate the order each round so no target always runs first.
            for k in 0..TARGETS.len() {
                let idx = (k + round) % TARGETS.len();
                let port = match TARGETS[idx] {
                    Target::Direct => cluster.port(),
                    Target::Proxy => proxy_port,
                    Target::PgBouncer => bouncer.port,
                };
                let middleman = match TARGETS[idx] {
                    Target::Direct => None,
                    Target::Proxy => Some(std::process::id()),
                    Target::PgBouncer => bouncer.pid(),
                };
                let cpu_before = middleman.and_then(cpu_seconds);
                let mut run = pgbench_run(&pgbench, port, scenario, args.duration)?;
                if let (Some(pid), Some(before)) = (middleman, cpu_before)
                    && let Some(after) = cpu_seconds(pid)
                {
                    let txns = run.tps * args.duration as f64;
                    run.cpu_us_per_txn = (after - before) * 1e6 / txns.max(1.0);
                }
                eprintln!(
                    "{:<42} round {} {:<9?} {:>10.0} tps {:>8.3} ms {:>6.1} µs cpu/txn",
                    scenario.name,
                    round + 1,
                    TARGETS[idx],
                    run.tps,
                    run.latency_ms,
                    run.cpu_us_per_txn
                );
                runs[idx] = run;
            }
            rounds.push(runs);
        }
        results.push((scenario, rounds));
    }
    drop(bouncer);
    runtime.block_on(proxy.shutdown(Duration::from_secs(1)));

    let mut counts = Vec::new();
    if args.counted_transactions > 0 {
        for (number, scenario) in SCENARIOS.iter().enumerate().filter(|(_, s)| s.counted) {
            if let Some(only) = &args.only
                && !scenario.name.contains(only.as_str())
            {
                continue;
            }
            let count =
                Instructions::count(&pgbench, cluster.port(), (number + 1, scenario), &args)?;
            eprintln!(
                "{:<42} callgrind: proxy {:.0} instructions/txn, PgBouncer {:.0}",
                scenario.name, count.proxy, count.pgbouncer
            );
            counts.push((scenario.name, count));
        }
    }

    let report = render(&results, &counts, &args, load_before);
    println!("{report}");
    if !args.no_write {
        write_section(&args.output, &report)?;
        eprintln!("wrote the Proxy section of {}", args.output.display());
    }
    Ok(())
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn render(
    results: &[(&Scenario, Vec<[Run; 3]>)],
    counts: &[(&str, Instructions)],
    args: &BenchProxyArgs,
    load_before: Option<f64>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Proxy\n");
    let _ = writeln!(
        s,
        "Command: `cargo xtask bench proxy --duration {d} --rounds {r} --scale {sc}` \
         (same code: `cargo bench -p sequin-proxy --bench pgbench -- --duration {d} --rounds {r} --scale {sc}`). \
         pgbench from the PostgreSQL bindir against a throwaway cluster; the proxy \
         in-process (dedicated worker threads) with one synced table configured, so the \
         statement pre-filter is on the path; PgBouncer {v} in session mode; all over TCP \
         on 127.0.0.1; {r} rounds of {d} s in rotating order; tps are medians, ratios are \
         medians of the ratios within each round. CPU µs/txn is the \
         middleman's own user+system CPU time per transaction (from /proc), which depends \
         far less on machine load than tps does; the instructions per transaction below \
         (callgrind) do not depend on it at all.\n",
        d = args.duration,
        r = args.rounds,
        sc = args.scale,
        v = pgbouncer_version().unwrap_or_else(|| "?".into()),
    );
    let _ = writeln!(
        s,
        "Machine: {}. Code: {}.\n",
        crate::report::machine(load_before, "before the run"),
        crate::report::code_commit()
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    if let Some(load) = load_before
        && load > cores / 2.0
    {
        let _ = writeln!(
            s,
            "**Caution:** the machine was busy with other work when this run started (1-minute \
             load {load:.1} on {cores} cores), so tps swings between rounds and the tps ratios \
             below are not reliable; the CPU and instruction columns are. Rerun on an idle \
             machine for the ratios that count.\n"
        );
    }
    let _ = writeln!(
        s,
        "| scenario | direct tps | proxy tps | PgBouncer tps | proxy / direct | proxy / PgBouncer | PgBouncer / direct | proxy CPU µs/txn | PgBouncer CPU µs/txn |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut c1_latency = None;
    let mut c8_ratios = None;
    for (scenario, rounds) in results {
        let tps = |i: usize| median(rounds.iter().map(|r| r[i].tps).collect());
        let (d, p, b) = (tps(0), tps(1), tps(2));
        // Ratios are taken within each round (the three targets ran back to
        // back) and the median of those is reported: drift between rounds on
        // a shared machine cancels out better than in a ratio of medians.
        let ratio =
            |i: usize, j: usize| median(rounds.iter().map(|r| r[i].tps / r[j].tps).collect());
        let cpu = |i: usize| median(rounds.iter().map(|r| r[i].cpu_us_per_txn).collect());
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.2}x | {:.2}x | {:.1} | {:.1} |",
            scenario.name,
            d,
            p,
            b,
            ratio(1, 0),
            ratio(1, 2),
            ratio(2, 0),
            cpu(1),
            cpu(2)
        );
        if scenario.clients == 1 && scenario.args.contains(&"-S") {
            // One client, one statement per transaction: 1/tps is the
            // round-trip time, so the difference is the middleman's cost
            // (again paired within rounds).
            let added = |i: usize| {
                median(
                    rounds
                        .iter()
                        .map(|r| 1e6 / r[i].tps - 1e6 / r[0].tps)
                        .collect(),
                )
            };
            c1_latency = Some((added(1), added(2), 1e6 / d));
        }
        if scenario.clients == 8 && scenario.args == ["-S", "-c", "8", "-j", "2"] {
            c8_ratios = Some((ratio(1, 0), ratio(1, 2)));
        }
    }
    s.push('\n');
    if !counts.is_empty() {
        let _ = writeln!(
            s,
            "Instructions per transaction (callgrind, user space; {n} and {n2} transactions per \
             client, the difference over {n} each):\n\n\
             | scenario | proxy | PgBouncer | proxy / PgBouncer |\n|---|---:|---:|---:|",
            n = args.counted_transactions,
            n2 = 2 * args.counted_transactions,
        );
        for (name, c) in counts {
            let _ = writeln!(
                s,
                "| {name} | {:.0} | {:.0} | {:.2}x |",
                c.proxy,
                c.pgbouncer,
                c.proxy / c.pgbouncer
            );
        }
        s.push('\n');
    }
    if let Some((proxy_us, bouncer_us, direct_us)) = c1_latency {
        let _ = writeln!(
            s,
            "Round trip at -S -c 1: direct {direct_us:.1} µs; the proxy adds {proxy_us:+.1} µs, \
             PgBouncer adds {bouncer_us:+.1} µs.\n"
        );
    }
    let _ = writeln!(s, "Targets (issue #17):\n");
    if let Some((pd, pb)) = c8_ratios {
        let _ = writeln!(
            s,
            "- >= 0.8x direct at -S -c 8: measured {pd:.2}x ({}).",
            verdict(pd >= 0.8, pd / 0.8)
        );
        let _ = writeln!(
            s,
            "- >= 1.4x PgBouncer at -S -c 8: measured {pb:.2}x ({}).",
            verdict(pb >= 1.4, pb / 1.4)
        );
    }
    if let Some((proxy_us, _, _)) = c1_latency {
        let _ = writeln!(
            s,
            "- <= +15 µs per round trip at -S -c 1: measured {proxy_us:+.1} µs ({}).",
            verdict(proxy_us <= 15.0, 15.0 / proxy_us.max(0.001))
        );
    }
    s
}

fn verdict(met: bool, fraction: f64) -> String {
    if met {
        "met".into()
    } else {
        format!("not met: {:.0}% of the target", fraction * 100.0)
    }
}

/// Replaces (or appends) the "## Proxy" section, keeping the others.
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let new = match old
        .find("\n## Proxy\n")
        .map(|i| i + 1)
        .or_else(|| old.starts_with("## Proxy\n").then_some(0))
    {
        Some(start) => {
            let after = &old[start + 1..];
            let end = after
                .find("\n## ")
                .map(|i| start + 1 + i + 1)
                .unwrap_or(old.len());
            format!("{}{}\n{}", &old[..start], section.trim_end(), {
                let rest = &old[end..];
                if rest.is_empty() {
                    String::new()
                } else {
                    format!("\n{rest}")
                }
            })
        }
        None => format!("{}\n\n{}\n", old.trim_end(), section.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn pgbench_run(pgbench: &Path, port: u16, scenario: &Scenario, secs: u64) -> Result<Run> {
    pgbench_with(pgbench, port, scenario, &["-T", &secs.to_string()])
}

/// pgbench of `scenario` for `length` (`-T <secs>` or `-t <transactions>`).
fn pgbench_with(pgbench: &Path, port: u16, scenario: &Scenario, length: &[&str]) -> Result<Run> {
    let out = Command::new(pgbench)
        .args(scenario.args)
        .args(length)
        .arg("-n")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "postgres",
        ])
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench {} on port {port} failed:\n{}{}",
            scenario.name,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l[prefix.len()..].split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let tps = field("tps = ").context("pgbench printed no tps")?;
    let latency_ms = field("latency average = ").unwrap_or(0.0);
    if let Some(failed) = field("number of failed transactions: ")
        && failed > 0.0
    {
        bail!("pgbench reported {failed} failed transactions:\n{text}");
    }
    Ok(Run {
        tps,
        latency_ms,
        cpu_us_per_txn: 0.0,
    })
}

/// User plus system CPU seconds of a process so far (Linux `/proc`).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn pgbouncer_version() -> Option<String> {
    let out = Command::new(pgbouncer_binary()?)
        .arg("--version")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
}

fn pgbouncer_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A PgBouncer in session mode, run as the `postgres` user, stopped on drop.
struct PgBouncer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// The pgbouncer process id (from its pid file; the child we spawned
    /// may be `runuser`).
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts PgBouncer in front of `upstream_port`, its command line
    /// prefixed by `wrapper` (valgrind's, for the instruction counts).
    fn start(upstream_port: u16, wrapper: &[String]) -> Result<PgBouncer> {
        let binary = match pgbouncer_binary() {
            Some(b) => b,
            None => {
                eprintln!("pgbouncer missing: apt-get install -y pgbouncer");
                let ok = Command::new("apt-get")
                    .args(["install", "-y", "pgbouncer"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if !ok {
                    bail!("pgbouncer is not installed and `apt-get install -y pgbouncer` failed");
                }
                pgbouncer_binary().context("pgbouncer still missing after apt-get install")?
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("sequin-pgbouncer")
            .tempdir()?;
        let port = sequin_pgtemp::free_port()?;
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={upstream_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\npool_mode = session\n\
             max_client_conn = 200\ndefault_pool_size = 50\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), ini)?;
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n")?;
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut cmd = if as_root {
            // PgBouncer refuses to run as root.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !status.success() {
                bail!("chown of the PgBouncer dir failed");
            }
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(wrapper).arg(&binary);
            c
        } else if let Some((first, rest)) = wrapper.split_first() {
            let mut c = Command::new(first);
            c.args(rest).arg(&binary);
            c
        } else {
            Command::new(&binary)
        };
        let child = cmd
            .arg(dir.path().join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pgbouncer")?;
        let bouncer = PgBouncer { child, port, dir };
        // Up to 20 s: under valgrind PgBouncer starts slowly.
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(bouncer);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "pgbouncer did not start; log:\n{}",
            std::fs::read_to_string(bouncer.dir.path().join("pgbouncer.log")).unwrap_or_default()
        )
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // runuser forwards SIGTERM to pgbouncer.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Serves the proxy (as the timed rounds configure it) in front of Postgres
/// on `upstream`, prints its port on stdout and stops when stdin closes: the
/// process callgrind counts.
fn serve_proxy(upstream: u16, threads: Option<usize>, tables: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = ProxyConfig::new(
            "127.0.0.1:0".parse().expect("valid address"),
            Upstream::plain("127.0.0.1", upstream),
        );
        config.synced = synced_tables(tables);
        if let Some(n) = threads {
            config.worker_threads = n;
        }
        let proxy = Proxy::bind(config, Arc::new(PassThrough)).await?;
        println!("{}", proxy.local_addr().port());
        let handle = proxy.spawn();
        tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
        handle.shutdown(Duration::from_secs(1)).await;
        Ok(())
    })
}

/// A scenario's instructions per transaction in each middleman.
struct Instructions {
    proxy: f64,
    pgbouncer: f64,
}

impl Instructions {
    /// Counts `scenario` (numbered for the kept files) through the proxy
    /// and through PgBouncer, each under callgrind with `n` and `2n`
    /// transactions per client.
    fn count(
        pgbench: &Path,
        upstream: u16,
        (number, scenario): (usize, &Scenario),
        args: &BenchProxyArgs,
    ) -> Result<Instructions> {
        ensure_valgrind()?;
        let (n, threads) = (args.counted_transactions, args.proxy_threads);
        let keep = args.callgrind_dir.as_deref();
        let per_txn = |counted: &dyn Fn(u32) -> Result<f64>| -> Result<f64> {
            let (small, large) = (counted(n)?, counted(2 * n)?);
            Ok((large - small) / f64::from(n * scenario.clients))
        };
        let proxy = per_txn(&|t| {
            let out = callgrind_file(keep, &format!("proxy-{number}-{t}"))?;
            let mut child = Command::new("valgrind")
                .args(callgrind_args(&out.1))
                .arg(std::env::current_exe()?)
                .args(self_subcommand())
                .args(["--serve-proxy", &upstream.to_string()])
                .args(threads.map(|n| format!("--proxy-threads={n}")))
                .arg(format!("--synced-tables={}", args.synced_tables))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting the proxy under valgrind")?;
            let mut line = String::new();
            BufReader::new(child.stdout.take().context("the proxy's stdout")?)
                .read_line(&mut line)?;
            let port: u16 = line.trim().parse().with_context(|| {
                format!("the proxy under valgrind printed {line:?}, not its port")
            })?;
            let ran = pgbench_with(pgbench, port, scenario, &["-t", &t.to_string()]);
            drop(child.stdin.take());
            let status = child.wait()?;
            ran?;
            if !status.success() {
                bail!("the proxy under valgrind exited with {status}");
            }
            callgrind_total(&out.1)
        })?;
        let pgbouncer = per_txn(&|t| {
            let out = callgrind_file(keep, &format!("pgbouncer-{number}-{t}"))?;
            let mut valgrind = vec!["valgrind".to_string()];
            valgrind.extend(callgrind_args(&out.1));
            let bouncer = PgBouncer::start(upstream, &valgrind)?;
            let ran = pgbench_with(pgbench, bouncer.port, scenario, &["-t", &t.to_string()]);
            drop(bouncer);
            ran?;
            callgrind_total(&out.1)
        })?;
        Ok(Instructions { proxy, pgbouncer })
    }
}

/// valgrind's arguments, writing callgrind's output to `out`.
pub(crate) fn callgrind_args(out: &Path) -> Vec<String> {
    vec![
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()),
        "--".into(),
    ]
}

/// A file callgrind can write as any user (PgBouncer runs as `postgres`):
/// `<name>.out` in `keep`, or in a directory removed with the returned
/// guard.
pub(crate) fn callgrind_file(
    keep: Option<&Path>,
    name: &str,
) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let (guard, dir) = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --callgrind-dir {}", dir.display()))?;
            (None, dir.to_path_buf())
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("sequin-callgrind")
                .tempdir()?;
            let path = temp.path().to_path_buf();
            (Some(temp), path)
        }
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    Ok((guard, dir.join(format!("{name}.out"))))
}

/// The total instructions (`Ir`) of a callgrind output file.
pub(crate) fn callgrind_total(path: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading callgrind's output {}", path.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no instruction total in {}", path.display()))
}

/// valgrind, installed with apt when missing (as PgBouncer is).
pub(crate) fn ensure_valgrind() -> Result<()> {
    let present = || {
        Command::new("valgrind")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return Ok(());
    }
    eprintln!("valgrind missing: apt-get install -y valgrind");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "valgrind"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !ok || !present() {
        bail!("valgrind is not installed and `apt-get install -y valgrind` failed");
    }
    Ok(())
}

/// `stripe.customer` and `n - 1` more of Stripe's tables (the generated
/// DDL's, in its order), as the proxy's synced tables.
fn synced_tables(n: usize) -> SyncedTables {
    const STRIPE_DDL: &str = include_str!("../../../sequin-connectors/src/stripe.sql");
    let stripe = STRIPE_DDL.lines().filter_map(|l| {
        l.strip_prefix("CREATE TABLE IF NOT EXISTS :\"schema\".")
            .and_then(|rest| rest.split_whitespace().next())
    });
    SyncedTables::new(
        std::iter::once("customer")
            .chain(stripe.filter(|t| *t != "customer"))
            .take(n.max(1))
            .map(|t| TableName::new("stripe", t)),
    )
}

/// What runs this file again as the proxy to count: the devtool's
/// subcommand, or nothing for `cargo bench`'s own binary (`pgbench`).
fn self_subcommand() -> &'static [&'static str] {
    if env!("CARGO_CRATE_NAME") == "pgbench" {
        &[]
    } else {
        &["bench", "proxy"]
    }
}
