//! `cargo xtask bench write`: the cost of write-through, against the API
//! call and the Postgres write it is made of, all measured in the same run.
//!
//! Setup: a throwaway cluster, the Stripe simulator in a child process (no
//! latency, no rate limit; the connection's own limit is lifted too), and
//! the release `sequin proxy` with write-through on `stripe.customer`.
//!
//! 1. Latency, one client, statement after statement: per iteration, a
//!    single-row `INSERT ... RETURNING id` through the proxy (write-through),
//!    the same create sent straight to the simulator over HTTP/1.1 (the API
//!    call), a direct `INSERT ... RETURNING id` of the same row shape
//!    into a plain copy of the table (the Postgres write), and that plain
//!    write through the proxy (the hop alone); then an `UPDATE`
//!    by id of each. The order rotates every iteration so drift hits all
//!    four alike. Overhead = write-through - (API call + direct write), at
//!    p50 and p99, both as the difference of the quantiles and as the
//!    quantiles of the per-iteration differences.
//! 2. Throughput with N clients (default 8): single-row write-through
//!    INSERTs per second through the proxy vs direct INSERTs per second (and,
//!    for context, creates per second straight to the simulator), in rounds
//!    of rotating order; the median of the per-round ratios is reported.
//!
//! 3. CPU per statement from /proc during the throughput rounds: sequin's,
//!    and Postgres's (every process of the cluster) for a write-through
//!    INSERT and for a direct one.
//! 4. Instructions per write-through INSERT in sequin (callgrind, user
//!    space): a second `sequin proxy` under valgrind, N and then 2N INSERTs
//!    from one client, the difference over N. Unlike times, the count does
//!    not depend on the machine's load.
//!
//! The run checks what it measured: every write-through INSERT returned a
//! Stripe id, Postgres holds exactly those rows, and the simulator saw
//! exactly one create per INSERT (no retry, no duplicate), so a broken write
//! path fails the benchmark instead of looking fast.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use sequin_pgtemp::Killed;
use sequin_pgtemp::client::{try_connect, try_connect_when_up};

use crate::bench_proxy::median;
use crate::bench_sync::{proc_cpu_secs, proc_stat};
use crate::sim_child;

/// Arguments of `cargo xtask bench write`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchWriteArgs {
    /// Iterations of the latency series (each: one INSERT and one UPDATE of
    /// each kind).
    #[arg(long, default_value_t = 2000)]
    pub statements: usize,
    /// Concurrent clients of the throughput runs.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Throughput rounds (rotating order; medians reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Use this `sequin` binary instead of building it (release).
    #[arg(long)]
    pub sequin: Option<PathBuf>,
    /// Also print where Postgres spends its time: pg_stat_statements over
    /// the whole run (nested statements included), by total time.
    #[arg(long)]
    pub server_profile: bool,
    /// Configure a sink (Postgres NOTIFY), so that every write-through
    /// statement also records its events (`sequin.emit_write`).
    #[arg(long)]
    pub events: bool,
    /// Write-through INSERTs of the smaller callgrind run (the larger sends
    /// twice as many); 0 skips the instruction count.
    #[arg(long, default_value_t = 300)]
    pub counted_statements: usize,
    /// Keep callgrind's output files here (`sequin-<inserts>.out`, for
    /// `callgrind_annotate`) instead of a temporary directory.
    #[arg(long)]
    pub callgrind_dir: Option<PathBuf>,
    /// Internal: serve the simulator (the benchmark's child process).
    #[arg(long, hide = true)]
    pub serve_sim: bool,
}

/// Warm-up iterations before the latency series (connections, caches,
/// prepared statements).
const WARMUP: usize = 50;

/// Runs the benchmark (or, with `--serve-sim`, the simulator child).
pub fn run(args: BenchWriteArgs) -> Result<()> {
    if args.serve_sim {
        return sim_child::serve(0);
    }
    let root = crate::root();
    let sequin = match &args.sequin {
        Some(path) => path.clone(),
        None => crate::demo::sequin_binary(&root, true)?,
    };
    eprintln!("starting a throwaway Postgres ...");
    let cluster = if args.server_profile {
        sequin_pgtemp::Cluster::start_with(sequin_pgtemp::Options {
            config: vec![
                "shared_preload_libraries = 'pg_stat_statements'".into(),
                "pg_stat_statements.track = 'all'".into(),
                // Planning counted apart: a prepared statement whose
                // generic plan never wins is planned again at every Bind.
                "pg_stat_statements.track_planning = on".into(),
            ],
            ..Default::default()
        })
    } else {
        sequin_pgtemp::Cluster::start()
    }
    .context("starting Postgres")?;
    let db = "bench_write";
    let database_url = cluster.create_database(db)?;
    if args.server_profile {
        cluster.psql(db, "CREATE EXTENSION pg_stat_statements")?;
    }
    let (sim, token) = sim_child::start(&["bench", "write", "--serve-sim"])?;
    let base_url = &sim.url;
    let proxy_port = sequin_pgtemp::free_port()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sequin.yaml");
    // The proxy alone runs no sequencer: the events stay in the outbox.
    let sinks = if args.events {
        "sinks:\n  - name: bench\n    kind: notify\n    channel: sequin_bench\n"
    } else {
        ""
    };
    let config_at = |port: u16| {
        format!(
            "database_url: {database_url}\nproxy:\n  listen: 127.0.0.1:{port}\nconnections:\n  - name: stripe\n    \
             connector: stripe\n    base_url: {base_url}\n    credentials: {{ api_key: \"{token}\" }}\n    \
             objects: [customer]\n    rate_limit: {{ requests: 1000000, per: 1s }}\n{sinks}"
        )
    };
    std::fs::write(&config, config_at(proxy_port))?;
    crate::bench_sync::migrate(&sequin, &config)?;
    let log_path = std::env::temp_dir().join("bench-write-proxy.log");
    let proxy = Killed(
        Command::new(&sequin)
            .arg("--config")
            .arg(&config)
            .arg("proxy")
            // Logging every statement would be measured too.
            .env("SEQUIN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()
            .context("starting sequin proxy")?,
    );
    eprintln!("sequin proxy log: {}", log_path.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let target = Target {
        direct_url: database_url.clone(),
        proxy_url: format!("postgres://postgres@127.0.0.1:{proxy_port}/{db}"),
        api: ApiTarget {
            addr: base_url
                .strip_prefix("http://")
                .context("the simulator's URL is http://")?
                .to_string(),
            token: token.clone(),
        },
        sequin_pid: proxy.id(),
        sim_pid: sim.child.id(),
        pg_data: cluster.data(),
    };
    let report = rt.block_on(measure(&args, &target));
    drop(proxy);
    let report = report.and_then(|mut r| {
        if args.counted_statements > 0 {
            let port = sequin_pgtemp::free_port()?;
            let counted = dir.path().join("sequin-counted.yaml");
            std::fs::write(&counted, config_at(port))?;
            let url = format!("postgres://postgres@127.0.0.1:{port}/{db}");
            r.instructions = Some(instructions(
                &rt,
                (&sequin, &counted),
                &url,
                (args.counted_statements, args.callgrind_dir.as_deref()),
            )?);
        }
        Ok(r)
    });
    drop(sim);
    let report = report.with_context(|| {
        format!(
            "the benchmark failed; sequin proxy log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    })?;
    print_table(&report, &args);
    println!("\n{}", markdown(&report, &args));
    if args.server_profile {
        println!(
            "\nPostgres time by statement (pg_stat_statements, whole run; calls, plans, execution and planning time):"
        );
        println!(
            "{}",
            cluster.psql(
                db,
                "SELECT lpad(calls::text, 8) || lpad(plans::text, 8) || lpad(round(total_exec_time::numeric, 0)::text, 8) || ' ms'
                        || lpad(round((1000 * mean_exec_time)::numeric, 0)::text, 7) || ' us'
                        || lpad(round((1000 * total_plan_time / greatest(plans, 1))::numeric, 0)::text, 7) || ' us  '
                        || left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
                   FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 30"
            )?
        );
        // A sequential scan on the write path reads every row of a table
        // that grows with the run.
        println!("\nTables read by sequential scans (pg_stat_all_tables, whole run):");
        println!(
            "{}",
            cluster.psql(
                db,
                "SELECT lpad(seq_scan::text, 8) || ' scans' || lpad(seq_tup_read::text, 12) || ' rows  '
                        || schemaname || '.' || relname
                   FROM pg_stat_all_tables
                  WHERE seq_scan > 0 AND schemaname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                  ORDER BY seq_tup_read DESC LIMIT 15"
            )?
        );
    }
    Ok(())
}

/// Where the three kinds of writes go.
struct Target {
    direct_url: String,
    proxy_url: String,
    api: ApiTarget,
    sequin_pid: u32,
    sim_pid: u32,
    /// The cluster's data directory (its postmaster's pid).
    pg_data: PathBuf,
}

#[derive(Clone)]
struct ApiTarget {
    /// `127.0.0.1:PORT`.
    addr: String,
    token: String,
}

/// Latency samples of one statement kind, in microseconds.
#[derive(Default)]
struct Series {
    write_through: Vec<f64>,
    api: Vec<f64>,
    direct: Vec<f64>,
    /// The same plain write as `direct`, sent through the proxy (a table
    /// that is not synced): the cost of the extra hop alone.
    proxied_plain: Vec<f64>,
}

impl Series {
    /// `write_through - (api + direct)` per iteration.
    fn paired_overhead(&self) -> Vec<f64> {
        self.write_through
            .iter()
            .zip(&self.api)
            .zip(&self.direct)
            .map(|((w, a), d)| w - a - d)
            .collect()
    }

    /// The overhead as the difference of the quantiles.
    fn overhead_at(&self, q: f64) -> f64 {
        quantile(&self.write_through, q) - quantile(&self.api, q) - quantile(&self.direct, q)
    }
}

/// One throughput round: statements per second of each target.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    write_through: f64,
    direct: f64,
    api: f64,
    /// CPU per write-through INSERT (µs): sequin's and Postgres's.
    wt_sequin_cpu: f64,
    wt_postgres_cpu: f64,
    /// Postgres's CPU per direct INSERT (µs).
    direct_postgres_cpu: f64,
}

struct Report {
    insert: Series,
    update: Series,
    rounds: Vec<Round>,
    /// sequin's CPU time per write-through statement during the latency
    /// series (µs).
    sequin_cpu_us_per_stmt: f64,
    /// The simulator's CPU time per create during the same series (µs).
    sim_cpu_us_per_create: f64,
    /// Write-through INSERTs checked against Postgres and the simulator.
    checked_rows: u64,
    /// sequin's instructions per write-through INSERT (callgrind).
    instructions: Option<f64>,
}

async fn measure(args: &BenchWriteArgs, t: &Target) -> Result<Report> {
    let direct = try_connect(&t.direct_url).await?;
    direct
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS bench;
             DROP TABLE IF EXISTS bench.customer;
             CREATE TABLE bench.customer (LIKE stripe.customer INCLUDING ALL);",
        )
        .await
        .context("creating the direct table")?;
    let proxied = try_connect_when_up(&t.proxy_url, Duration::from_secs(60)).await?;
    let mut api = Http::connect(&t.api).await?;

    let wt_insert = proxied
        .prepare("INSERT INTO stripe.customer (email, name) VALUES ($1, $2) RETURNING id")
        .await
        .context("preparing the write-through INSERT")?;
    let wt_update = proxied
        .prepare("UPDATE stripe.customer SET name = $1 WHERE id = $2")
        .await?;
    let d_insert = direct
        .prepare("INSERT INTO bench.customer (email, name) VALUES ($1, $2) RETURNING id")
        .await?;
    let d_update = direct
        .prepare("UPDATE bench.customer SET name = $1 WHERE id = $2")
        .await?;
    let p_insert = proxied
        .prepare("INSERT INTO bench.customer (email, name) VALUES ($1, $2) RETURNING id")
        .await?;
    let p_update = proxied
        .prepare("UPDATE bench.customer SET name = $1 WHERE id = $2")
        .await?;

    let wt_inserts = AtomicU64::new(0);
    let mut insert = Series::default();
    let mut update = Series::default();
    let mut cpu_start = None;
    eprintln!(
        "latency: {WARMUP} warm-up + {} iterations (INSERT + UPDATE of each kind) ...",
        args.statements
    );
    for i in 0..WARMUP + args.statements {
        if i == WARMUP {
            cpu_start = Some((proc_cpu_secs(t.sequin_pid)?, proc_cpu_secs(t.sim_pid)?));
        }
        let email = format!("latency-{i}@example.com");
        let name = format!("Latency {i}");
        let mut wt_id = String::new();
        let mut api_id = String::new();
        let mut d_id = String::new();
        let mut p_id = String::new();
        let mut sample = [0.0f64; 4];
        for k in 0..4 {
            let which = (k + i) % 4;
            let t0 = Instant::now();
            match which {
                0 => {
                    let row = proxied
                        .query_one(&wt_insert, &[&email, &name])
                        .await
                        .with_context(|| format!("write-through INSERT {i}"))?;
                    wt_id = row.get(0);
                    wt_inserts.fetch_add(1, Ordering::Relaxed);
                }
                1 => api_id = api.create(&email, &name).await?,
                2 => d_id = direct.query_one(&d_insert, &[&email, &name]).await?.get(0),
                _ => p_id = proxied.query_one(&p_insert, &[&email, &name]).await?.get(0),
            }
            sample[which] = t0.elapsed().as_secs_f64() * 1e6;
        }
        if !wt_id.starts_with("cus_") {
            bail!("the write-through INSERT returned {wt_id:?}, not a Stripe id");
        }
        if i >= WARMUP {
            insert.write_through.push(sample[0]);
            insert.api.push(sample[1]);
            insert.direct.push(sample[2]);
            insert.proxied_plain.push(sample[3]);
        }
        let renamed = format!("Renamed {i}");
        for k in 0..4 {
            let which = (k + i) % 4;
            let t0 = Instant::now();
            match which {
                0 => {
                    let n = proxied.execute(&wt_update, &[&renamed, &wt_id]).await?;
                    if n != 1 {
                        bail!("the write-through UPDATE of {wt_id} changed {n} rows");
                    }
                }
                1 => api.update(&api_id, &renamed).await?,
                2 => {
                    direct.execute(&d_update, &[&renamed, &d_id]).await?;
                }
                _ => {
                    proxied.execute(&p_update, &[&renamed, &p_id]).await?;
                }
            }
            sample[which] = t0.elapsed().as_secs_f64() * 1e6;
        }
        if i >= WARMUP {
            update.write_through.push(sample[0]);
            update.api.push(sample[1]);
            update.direct.push(sample[2]);
            update.proxied_plain.push(sample[3]);
        }
    }
    let (sequin_cpu0, sim_cpu0) = cpu_start.context("no measured iteration")?;
    let statements = (2 * args.statements) as f64;
    let sequin_cpu_us_per_stmt = (proc_cpu_secs(t.sequin_pid)? - sequin_cpu0) * 1e6 / statements;
    // The simulator served both the write-through's and the baseline's calls.
    let sim_cpu_us_per_create = (proc_cpu_secs(t.sim_pid)? - sim_cpu0) * 1e6 / (2.0 * statements);

    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let mut r = Round::default();
        for k in 0..3 {
            let which = (k + round) % 3;
            let label = ["write-through", "direct", "api"][which];
            let m = throughput(args, t, which, round, &wt_inserts).await?;
            let per_sec = m.per_sec;
            eprintln!(
                "throughput round {} {label:<13} {per_sec:>8.0} statements/s ({} clients)",
                round + 1,
                args.clients
            );
            match which {
                0 => {
                    r.write_through = per_sec;
                    r.wt_sequin_cpu = m.sequin_cpu_us;
                    r.wt_postgres_cpu = m.postgres_cpu_us;
                }
                1 => {
                    r.direct = per_sec;
                    r.direct_postgres_cpu = m.postgres_cpu_us;
                }
                _ => r.api = per_sec,
            }
        }
        rounds.push(r);
    }

    let checked_rows = check(&direct, &t.api, wt_inserts.load(Ordering::Relaxed)).await?;
    Ok(Report {
        insert,
        update,
        rounds,
        sequin_cpu_us_per_stmt,
        sim_cpu_us_per_create,
        checked_rows,
        instructions: None,
    })
}

/// One throughput run: statements per second, and the CPU each statement
/// cost sequin and Postgres (µs).
struct Measured {
    per_sec: f64,
    sequin_cpu_us: f64,
    postgres_cpu_us: f64,
}

/// Statements per second of `which` (0 write-through, 1 direct, 2 API) with
/// `args.clients` connections, each writing single rows back to back for
/// `args.duration` seconds.
async fn throughput(
    args: &BenchWriteArgs,
    t: &Target,
    which: usize,
    round: usize,
    wt_inserts: &AtomicU64,
) -> Result<Measured> {
    // Connections are opened before the clock starts.
    enum Conn {
        Pg(tokio_postgres::Client, tokio_postgres::Statement),
        Api(Http),
    }
    let mut conns = Vec::new();
    for _ in 0..args.clients {
        conns.push(match which {
            0 => {
                let c = try_connect(&t.proxy_url).await?;
                let s = c
                    .prepare(
                        "INSERT INTO stripe.customer (email, name) VALUES ($1, $2) RETURNING id",
                    )
                    .await?;
                Conn::Pg(c, s)
            }
            1 => {
                let c = try_connect(&t.direct_url).await?;
                let s = c
                    .prepare(
                        "INSERT INTO bench.customer (email, name) VALUES ($1, $2) RETURNING id",
                    )
                    .await?;
                Conn::Pg(c, s)
            }
            _ => Conn::Api(Http::connect(&t.api).await?),
        });
    }
    let done = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs(args.duration);
    let cpu0 = (proc_cpu_secs(t.sequin_pid)?, postgres_cpu_secs(&t.pg_data)?);
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for (c, conn) in conns.into_iter().enumerate() {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut conn = conn;
            while tokio::time::Instant::now() < deadline {
                let email = format!("tp-{which}-{round}-{c}-{n}@example.com");
                let name = format!("Throughput {c} {n}");
                match &mut conn {
                    Conn::Pg(client, stmt) => {
                        let id: String = client.query_one(&*stmt, &[&email, &name]).await?.get(0);
                        if which == 0 && !id.starts_with("cus_") {
                            bail!("the write-through INSERT returned {id:?}");
                        }
                    }
                    Conn::Api(http) => {
                        http.create(&email, &name).await?;
                    }
                }
                n += 1;
            }
            done.fetch_add(n, Ordering::Relaxed);
            // The connection lives on until the CPU is read: a backend
            // that exits takes its CPU time out of /proc.
            anyhow::Ok((n, conn))
        }));
    }
    let (mut total, mut conns) = (0, Vec::new());
    for task in tasks {
        let (n, conn) = task.await??;
        total += n;
        conns.push(conn);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = (proc_cpu_secs(t.sequin_pid)?, postgres_cpu_secs(&t.pg_data)?);
    drop(conns);
    if which == 0 {
        wt_inserts.fetch_add(total, Ordering::Relaxed);
    }
    let per_statement = |secs: f64| secs * 1e6 / total.max(1) as f64;
    Ok(Measured {
        per_sec: total as f64 / elapsed,
        sequin_cpu_us: per_statement(cpu1.0 - cpu0.0),
        postgres_cpu_us: per_statement(cpu1.1 - cpu0.1),
    })
}

/// CPU seconds used so far by every process of the cluster in `data`: the
/// postmaster (with the children it has reaped) and its live children.
fn postgres_cpu_secs(data: &std::path::Path) -> Result<f64> {
    let pid_file = data.join("postmaster.pid");
    let postmaster: u32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("no pid in {}", pid_file.display()))?;
    let own = proc_stat(postmaster)?;
    let mut secs = own.cpu_secs + own.waited_children_cpu_secs;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process that exited meanwhile is counted by its parent.
        if let Ok(p) = proc_stat(pid)
            && p.parent == postmaster
        {
            secs += p.cpu_secs;
        }
    }
    Ok(secs)
}

/// sequin's instructions per write-through INSERT: `sequin proxy` with
/// `config` under callgrind, `n` and then `2n` INSERTs from one client
/// through it at `url` (after the same warm-up), the difference over `n`.
fn instructions(
    rt: &tokio::runtime::Runtime,
    (sequin, config): (&std::path::Path, &std::path::Path),
    url: &str,
    (n, keep): (usize, Option<&std::path::Path>),
) -> Result<f64> {
    use crate::bench_proxy::{callgrind_args, callgrind_file, callgrind_total, ensure_valgrind};
    ensure_valgrind()?;
    eprintln!(
        "callgrind: sequin proxy under valgrind, {n} and {} write-through INSERTs ...",
        2 * n
    );
    let counted = |inserts: usize| -> Result<f64> {
        let out = callgrind_file(keep, &format!("sequin-{inserts}"))?;
        let mut child = Killed(
            Command::new("valgrind")
                .args(callgrind_args(&out.1))
                .arg(sequin)
                .arg("--config")
                .arg(config)
                .arg("proxy")
                .env("SEQUIN_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting sequin proxy under valgrind")?,
        );
        rt.block_on(async {
            let c = try_connect_when_up(url, Duration::from_secs(300)).await?;
            let insert = c
                .prepare("INSERT INTO stripe.customer (email, name) VALUES ($1, $2) RETURNING id")
                .await?;
            for i in 0..WARMUP + inserts {
                let email = format!("counted-{inserts}-{i}@example.com");
                let id: String = c.query_one(&insert, &[&email, &"Counted"]).await?.get(0);
                if !id.starts_with("cus_") {
                    bail!("the write-through INSERT under callgrind returned {id:?}");
                }
            }
            anyhow::Ok(())
        })?;
        // SIGTERM: sequin shuts down and valgrind writes its counts.
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait()?;
        if !status.success() {
            bail!("sequin proxy under valgrind exited with {status}");
        }
        callgrind_total(&out.1)
    };
    let small = counted(n)?;
    let large = counted(2 * n)?;
    Ok((large - small) / n as f64)
}

/// Every write-through INSERT left exactly one row with a Stripe id in
/// Postgres and exactly one create at the simulator: returns the row count.
async fn check(direct: &tokio_postgres::Client, api: &ApiTarget, wt_inserts: u64) -> Result<u64> {
    let row = direct
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE id NOT LIKE 'cus\\_%') FROM stripe.customer",
            &[],
        )
        .await?;
    let (rows, odd): (i64, i64) = (row.get(0), row.get(1));
    if rows as u64 != wt_inserts || odd != 0 {
        bail!(
            "{wt_inserts} write-through INSERTs succeeded but stripe.customer holds {rows} rows ({odd} without a Stripe id)"
        );
    }
    // The simulator counts every create it served: the write-through's and
    // the ones this process sent straight to it. A retry or a duplicate of
    // a write-through create would show as a surplus.
    let stats = Http::connect(api).await?.get("/_sim/stats").await?;
    let served: u64 = stats
        .split("\"POST /v1/customers\":")
        .nth(1)
        .and_then(|s| {
            s.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .map(str::to_string)
        })
        .context("the simulator's stats have no POST /v1/customers count")?
        .parse()?;
    let baseline = BASELINE_CREATES.load(Ordering::Relaxed);
    if served != wt_inserts + baseline {
        bail!(
            "the simulator served {served} creates, expected {} ({wt_inserts} write-through + \
             {baseline} sent directly): a retry or a duplicate",
            wt_inserts + baseline
        );
    }
    Ok(rows as u64)
}

/// Creates this process sent straight to the simulator.
static BASELINE_CREATES: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client: the baseline API call with as little
// client overhead as possible (so none of Sequin's own HTTP stack is hidden
// in the baseline).

struct Http {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    api: ApiTarget,
}

impl Http {
    async fn connect(api: &ApiTarget) -> Result<Http> {
        let stream = tokio::net::TcpStream::connect(&api.addr)
            .await
            .with_context(|| format!("connecting to the simulator at {}", api.addr))?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream: tokio::io::BufReader::new(stream),
            api: api.clone(),
        })
    }

    /// `POST /v1/customers`; returns the new id.
    async fn create(&mut self, email: &str, name: &str) -> Result<String> {
        let body = format!("email={}&name={}", form(email), form(name));
        let json = self.request("POST", "/v1/customers", &body).await?;
        BASELINE_CREATES.fetch_add(1, Ordering::Relaxed);
        let id = json
            .split("\"id\":")
            .nth(1)
            .and_then(|s| s.split('"').nth(1))
            .context("the create's response has no id")?;
        Ok(id.to_string())
    }

    /// `POST /v1/customers/{id}`.
    async fn update(&mut self, id: &str, name: &str) -> Result<()> {
        let body = format!("name={}", form(name));
        self.request("POST", &format!("/v1/customers/{id}"), &body)
            .await
            .map(|_| ())
    }

    async fn get(&mut self, path: &str) -> Result<String> {
        self.request("GET", path, "").await
    }

    async fn request(&mut self, method: &str, path: &str, body: &str) -> Result<String> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            self.api.addr,
            self.api.token,
            body.len()
        );
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body.as_bytes());
        self.stream.get_mut().write_all(&msg).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad HTTP status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = Some(v.trim().parse::<usize>()?);
            }
        }
        let length = length.context("the simulator's response has no Content-Length")?;
        let mut buf = vec![0; length];
        self.stream.read_exact(&mut buf).await?;
        let text = String::from_utf8(buf)?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: HTTP {status}: {text}");
        }
        Ok(text)
    }
}

/// Form-encodes the few characters the benchmark's values contain.
fn form(s: &str) -> String {
    s.replace('%', "%25")
        .replace('@', "%40")
        .replace(' ', "+")
        .replace('&', "%26")
}

// ---------------------------------------------------------------------------
// Processes, connections, numbers.

/// The nearest-rank quantile of unsorted samples.
fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

// ---------------------------------------------------------------------------
// Reporting.

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

fn print_table(r: &Report, args: &BenchWriteArgs) {
    println!(
        "\nlatency, 1 client, {} iterations (ms)   p50      p99",
        args.statements
    );
    for (kind, s) in [("INSERT", &r.insert), ("UPDATE", &r.update)] {
        for (label, v) in [
            ("write-through", &s.write_through),
            ("API call", &s.api),
            ("direct Postgres", &s.direct),
            ("plain write via proxy", &s.proxied_plain),
        ] {
            println!(
                "  {kind} {label:<30} {:>8} {:>8}",
                ms(quantile(v, 0.5)),
                ms(quantile(v, 0.99))
            );
        }
        let paired = s.paired_overhead();
        println!(
            "  {kind} {:<30} {:>8} {:>8}",
            "overhead (quantile diff)",
            ms(s.overhead_at(0.5)),
            ms(s.overhead_at(0.99))
        );
        println!(
            "  {kind} {:<30} {:>8} {:>8}",
            "overhead (paired)",
            ms(quantile(&paired, 0.5)),
            ms(quantile(&paired, 0.99))
        );
    }
    let (wt, d, a, ratio) = throughput_summary(r);
    println!(
        "throughput, {} clients: write-through {wt:.0}/s, direct {d:.0}/s, API {a:.0}/s; write-through/direct {ratio:.3}",
        args.clients
    );
    println!(
        "sequin CPU {:.0} µs per write-through statement; simulator CPU {:.0} µs per request; {} rows checked",
        r.sequin_cpu_us_per_stmt, r.sim_cpu_us_per_create, r.checked_rows
    );
    let c = cpu_summary(r);
    println!(
        "throughput CPU per INSERT: write-through sequin {:.0} µs + Postgres {:.0} µs; direct Postgres {:.0} µs",
        c.wt_sequin, c.wt_postgres, c.direct_postgres
    );
    if let Some(n) = r.instructions {
        println!("callgrind: sequin {n:.0} instructions per write-through INSERT");
    }
}

/// Medians over the rounds of the CPU per INSERT (µs).
struct CpuSummary {
    wt_sequin: f64,
    wt_postgres: f64,
    direct_postgres: f64,
}

fn cpu_summary(r: &Report) -> CpuSummary {
    let of = |f: fn(&Round) -> f64| median(r.rounds.iter().map(f).collect());
    CpuSummary {
        wt_sequin: of(|x| x.wt_sequin_cpu),
        wt_postgres: of(|x| x.wt_postgres_cpu),
        direct_postgres: of(|x| x.direct_postgres_cpu),
    }
}

fn throughput_summary(r: &Report) -> (f64, f64, f64, f64) {
    let wt = median(r.rounds.iter().map(|x| x.write_through).collect());
    let d = median(r.rounds.iter().map(|x| x.direct).collect());
    let a = median(r.rounds.iter().map(|x| x.api).collect());
    let ratio = median(
        r.rounds
            .iter()
            .map(|x| x.write_through / x.direct)
            .collect(),
    );
    (wt, d, a, ratio)
}

fn markdown(r: &Report, args: &BenchWriteArgs) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Write-through\n");
    let _ = writeln!(
        s,
        "Command: `cargo xtask bench write --statements {} --clients {} --duration {} --rounds {}{}`. \
         Throwaway cluster; the Stripe simulator in a child process (no latency, no rate limit; the \
         connection's `rate_limit` lifted to 1000000/s); the release `sequin proxy` with write-through \
         on `stripe.customer`{}. Latency: one client; per iteration a single-row `INSERT ... RETURNING id` \
         through the proxy, the same create sent straight to the simulator (minimal keep-alive HTTP/1.1 \
         client) and a direct `INSERT ... RETURNING id` of the same row shape into a plain copy of the \
         table, the same direct write sent through the proxy (a table that is not synced: the extra hop \
         alone), then an `UPDATE ... WHERE id = $1` of each; the order rotates every iteration. Overhead = \
         write-through - (API call + direct write): as the difference of the quantiles, and as the \
         quantiles of the per-iteration differences (paired). Machine: {}. Code: {}.\n",
        args.statements,
        args.clients,
        args.duration,
        args.rounds,
        if args.events { " --events" } else { "" },
        if args.events {
            ", events on (a NOTIFY sink)"
        } else {
            ""
        },
        crate::report::machine(crate::report::load_average(), "at the end of the run"),
        match &args.sequin {
            Some(bin) => format!(
                "the binary {} (`--sequin`), from a checkout at {}",
                bin.display(),
                crate::report::code_commit()
            ),
            None => crate::report::code_commit(),
        }
    );
    let _ = writeln!(
        s,
        "| statement | write-through p50 / p99 ms | API call p50 / p99 ms | direct p50 / p99 ms | plain write via proxy p50 / p99 ms | overhead p50 / p99 ms (quantile diff) | overhead p50 / p99 ms (paired) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for (kind, x) in [("INSERT", &r.insert), ("UPDATE", &r.update)] {
        let paired = x.paired_overhead();
        let _ = writeln!(
            s,
            "| {kind} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
            ms(quantile(&x.write_through, 0.5)),
            ms(quantile(&x.write_through, 0.99)),
            ms(quantile(&x.api, 0.5)),
            ms(quantile(&x.api, 0.99)),
            ms(quantile(&x.direct, 0.5)),
            ms(quantile(&x.direct, 0.99)),
            ms(quantile(&x.proxied_plain, 0.5)),
            ms(quantile(&x.proxied_plain, 0.99)),
            ms(x.overhead_at(0.5)),
            ms(x.overhead_at(0.99)),
            ms(quantile(&paired, 0.5)),
            ms(quantile(&paired, 0.99)),
        );
    }
    let (wt, d, a, ratio) = throughput_summary(r);
    let vs_api = median(r.rounds.iter().map(|x| x.write_through / x.api).collect());
    let _ = writeln!(
        s,
        "\nThroughput, {} clients, single-row INSERTs, {} rounds of {} s (medians): write-through {wt:.0}/s, \
         direct Postgres {d:.0}/s, creates straight to the simulator {a:.0}/s; write-through / direct = {ratio:.3}, \
         write-through / simulator = {vs_api:.3}.\n",
        args.clients, args.rounds, args.duration
    );
    let c = cpu_summary(r);
    let _ = writeln!(
        s,
        "CPU per INSERT in the throughput rounds (medians, from /proc): write-through costs sequin {:.0} µs \
         and Postgres {:.0} µs (every process of the cluster); a direct INSERT costs Postgres {:.0} µs.\n",
        c.wt_sequin, c.wt_postgres, c.direct_postgres
    );
    if let Some(n) = r.instructions {
        let _ = writeln!(
            s,
            "Instructions (callgrind, user space, sequin only): {n:.0} per write-through INSERT \
             ({} and {} INSERTs from one client through a `sequin proxy` under valgrind, the \
             difference over {}).\n",
            args.counted_statements,
            2 * args.counted_statements,
            args.counted_statements
        );
    }
    let _ = writeln!(
        s,
        "CPU: sequin {:.0} µs per write-through statement, the simulator {:.0} µs per request. \
         Checked: {} write-through rows in Postgres, each with a Stripe id, and exactly one create per \
         INSERT at the simulator.\n",
        r.sequin_cpu_us_per_stmt, r.sim_cpu_us_per_create, r.checked_rows
    );
    let _ = writeln!(s, "Targets (issue #17):\n");
    let p50 = r.insert.overhead_at(0.5) / 1000.0;
    let p99 = r.insert.overhead_at(0.99) / 1000.0;
    let met = |ok: bool| if ok { "met" } else { "not met" };
    let _ = writeln!(
        s,
        "- INSERT overhead p50 <= 0.7 ms: measured {p50:.3} ms ({}).",
        met(p50 <= 0.7)
    );
    let _ = writeln!(
        s,
        "- INSERT overhead p99 <= 3 ms: measured {p99:.3} ms ({}).",
        met(p99 <= 3.0)
    );
    let _ = writeln!(
        s,
        "- {}-client throughput >= 0.5x the simulator alone: measured {vs_api:.3}x ({}).",
        args.clients,
        met(vs_api >= 0.5)
    );
    s
}
