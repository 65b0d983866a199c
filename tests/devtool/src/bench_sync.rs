//! `cargo xtask bench sync`: backfill throughput and memory of the real
//! `sequin sync --once` binary, against the ceiling of the same Postgres.
//!
//! Per record count N:
//! 1. the Stripe simulator runs in a child process (this binary, re-run with
//!    a hidden flag) seeded with N customers and no rate limit, so its CPU
//!    and memory are not counted as Sequin's;
//! 2. the release `sequin sync --once`, configured with `objects: [customer]`,
//!    backfills them into a throwaway cluster; wall time gives records/s and
//!    `wait4` gives the process's peak RSS and CPU time. It is started and
//!    waited for by a small helper process (this binary again, fresh from
//!    `exec`), not by this one: Linux folds the peak RSS of the address
//!    space a child execs from into the child's `ru_maxrss`, and a spawned
//!    child starts from its parent's (vfork), so spawned from here the
//!    figure would include this process's own peak (the ceiling's rows of
//!    an earlier N: 72 MB "at 1M" in `--flatness` runs, whatever sequin used);
//! 3. the ceiling, in the same run and cluster: the very rows Sequin wrote,
//!    dumped with `COPY TO` beforehand (so building them costs nothing), are
//!    loaded with `COPY` into a staging table and upserted into a fresh table
//!    of the same shape, in batches of the engine's size and in one
//!    transaction; the faster of the two is the ceiling.
//!
//! The count of synced rows is checked, so a run that loses records fails
//! instead of looking fast. The simulator's CPU time is reported beside
//! Sequin's to show it is not the bottleneck.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};

use crate::sim_child;

/// Arguments of `cargo xtask bench sync`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchSyncArgs {
    /// Stripe customers to backfill.
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// Run at 100k and at 1M records (peak RSS flatness); ignores --records.
    #[arg(long)]
    pub flatness: bool,
    /// Rows per transaction of the batched ceiling (the engine's batch size).
    #[arg(long, default_value_t = 5000)]
    pub ceiling_batch: usize,
    /// Use this `sequin` binary instead of building it (release).
    #[arg(long)]
    pub sequin: Option<PathBuf>,
    /// Internal: serve the seeded simulator (the benchmark's child process).
    #[arg(long, hide = true)]
    pub serve_sim: bool,
    /// Internal: run the command after `--`, wait for it and print its exit
    /// code, peak RSS, CPU and wall time (the measuring helper process).
    #[arg(long, hide = true)]
    pub measure: bool,
    /// The command of `--measure`.
    #[arg(last = true, hide = true)]
    pub command: Vec<String>,
}

/// What one record count measured.
struct Measured {
    records: usize,
    sync_secs: f64,
    peak_rss_kb: i64,
    sequin_cpu_secs: f64,
    sim_cpu_secs: f64,
    ceiling_batched_secs: f64,
    ceiling_one_tx_secs: f64,
}

impl Measured {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.sync_secs
    }
    fn ceiling_secs(&self) -> f64 {
        self.ceiling_batched_secs.min(self.ceiling_one_tx_secs)
    }
    fn ceiling_per_sec(&self) -> f64 {
        self.records as f64 / self.ceiling_secs()
    }
    fn ratio(&self) -> f64 {
        self.records_per_sec() / self.ceiling_per_sec()
    }
}

/// Runs the benchmark (or, with `--serve-sim`, the simulator child).
pub fn run(args: BenchSyncArgs) -> Result<()> {
    if args.serve_sim {
        return sim_child::serve(args.records);
    }
    if args.measure {
        return measure_command(&args.command);
    }
    let root = crate::root();
    let sequin = match &args.sequin {
        Some(path) => path.clone(),
        None => crate::demo::sequin_binary(&root, true)?,
    };
    let counts: Vec<usize> = if args.flatness {
        vec![100_000, 1_000_000]
    } else {
        vec![args.records]
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    eprintln!("starting a throwaway Postgres ...");
    let cluster = sequin_pgtemp::Cluster::start().context("starting Postgres")?;
    let mut results = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        let m = measure(&rt, &cluster, &sequin, n, args.ceiling_batch, i)?;
        print_one(&m);
        results.push(m);
    }
    // Markdown for the "Sync" section of BENCHMARKS.md.
    println!("\n{}", markdown(&results, &args));
    Ok(())
}

/// The measuring helper: runs `command` (stdin and stdout closed, stderr
/// inherited), waits for it, and prints `measured <exit code> <peak RSS KiB>
/// <CPU s> <wall s>`. This process is small and fresh from `exec`, so the
/// peak RSS `wait4` gives is the command's own.
fn measure_command(command: &[String]) -> Result<()> {
    let (program, args) = command.split_first().context("no command to measure")?;
    let t0 = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let (code, peak_rss_kb, cpu_secs) = wait_with_rusage(&mut child)?;
    let wall = t0.elapsed().as_secs_f64();
    println!("measured {code} {peak_rss_kb} {cpu_secs} {wall}");
    Ok(())
}

/// Runs `sequin args..` under the measuring helper; returns its exit code,
/// peak RSS (KiB), CPU seconds and wall seconds.
fn run_measured(
    sequin: &Path,
    args: &[&std::ffi::OsStr],
    log: &Path,
) -> Result<(i32, i64, f64, f64)> {
    let exe = std::env::current_exe().context("finding the sequin-devtool binary")?;
    let out = Command::new(exe)
        .args(["bench", "sync", "--measure", "--"])
        .arg(sequin)
        .args(args)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .output()
        .context("starting the measuring helper")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("measured "))
        .with_context(|| format!("the measuring helper said {text:?}"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 4 {
        bail!("the measuring helper said {line:?}");
    }
    Ok((
        fields[0].parse()?,
        fields[1].parse()?,
        fields[2].parse()?,
        fields[3].parse()?,
    ))
}

/// Runs `sequin --config <config> migrate`, failing with its stderr.
pub(crate) fn migrate(sequin: &Path, config: &Path) -> Result<()> {
    let out = Command::new(sequin)
        .arg("--config")
        .arg(config)
        .arg("migrate")
        .output()
        .context("running sequin migrate")?;
    if !out.status.success() {
        bail!(
            "sequin migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Runs `sequin --config <config> sync --once` under the measuring helper
/// ([`run_measured`]'s figures).
pub(crate) fn sync_once_measured(
    sequin: &Path,
    config: &Path,
    log: &Path,
) -> Result<(i32, i64, f64, f64)> {
    run_measured(
        sequin,
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "sync".as_ref(),
            "--once".as_ref(),
        ],
        log,
    )
}

/// CPU seconds (user + system) a live process has used so far.
pub(crate) fn proc_cpu_secs(pid: u32) -> Result<f64> {
    Ok(proc_stat(pid)?.cpu_secs)
}

/// What `/proc/PID/stat` says of a live process: its parent, and its CPU
/// seconds (user + system), its own and those of the children it has
/// waited for.
pub(crate) struct ProcStat {
    pub parent: u32,
    pub cpu_secs: f64,
    pub waited_children_cpu_secs: f64,
}

pub(crate) fn proc_stat(pid: u32) -> Result<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: the parent is the 4th
    // field of the whole line; utime, stime, cutime and cstime the 14th to
    // 17th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("parsing /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .context("parsing /proc/PID/stat")?
            .parse::<f64>()?)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ProcStat {
        parent: field(1)? as u32,
        cpu_secs: (field(11)? + field(12)?) / hz,
        waited_children_cpu_secs: (field(13)? + field(14)?) / hz,
    })
}

/// Waits for `child` and returns its exit status, peak RSS (KiB) and CPU
/// seconds, from `wait4` (the kernel's own accounting, so nothing between
/// two samples is missed).
fn wait_with_rusage(child: &mut Child) -> Result<(i32, i64, f64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((
        code,
        usage.ru_maxrss,
        secs(usage.ru_utime) + secs(usage.ru_stime),
    ))
}

fn measure(
    rt: &tokio::runtime::Runtime,
    cluster: &sequin_pgtemp::Cluster,
    sequin: &Path,
    n: usize,
    ceiling_batch: usize,
    run_no: usize,
) -> Result<Measured> {
    eprintln!("seeding {n} Stripe customers in the simulator (child process) ...");
    let (sim, token) =
        sim_child::start(&["bench", "sync", "--serve-sim", "--records", &n.to_string()])?;
    let base_url = &sim.url;
    let db = format!("bench_sync_{run_no}");
    let database_url = cluster.create_database(&db)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sequin.yaml");
    std::fs::write(
        &config,
        format!(
            "database_url: {database_url}\nconnections:\n  - name: stripe\n    connector: stripe\n    \
             base_url: {base_url}\n    credentials: {{ api_key: \"{token}\" }}\n    objects: [customer]\n    \
             rate_limit: {{ requests: 1000000, per: 1s }}\n"
        ),
    )?;
    migrate(sequin, &config)?;
    let log_path = dir.path().join("sync.log");
    let sim_cpu_before = proc_cpu_secs(sim.child.id())?;
    eprintln!("running sequin sync --once ...");
    let (code, peak_rss_kb, sequin_cpu_secs, sync_secs) =
        sync_once_measured(sequin, &config, &log_path)?;
    let sim_cpu_secs = proc_cpu_secs(sim.child.id())? - sim_cpu_before;
    drop(sim);
    // Kept for a look at what the run did (timings are in the log).
    let kept_log = std::env::temp_dir().join(format!("bench-sync-{n}.log"));
    let _ = std::fs::copy(&log_path, &kept_log);
    eprintln!("sequin's log: {}", kept_log.display());
    if code != 0 {
        bail!(
            "sequin sync --once exited with {code}; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    let (ceiling_batched_secs, ceiling_one_tx_secs) =
        rt.block_on(ceiling(&database_url, n, ceiling_batch))?;
    // Keep the disk small between runs.
    cluster.psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"))?;
    Ok(Measured {
        records: n,
        sync_secs,
        peak_rss_kb,
        sequin_cpu_secs,
        sim_cpu_secs,
        ceiling_batched_secs,
        ceiling_one_tx_secs,
    })
}

/// Checks the synced rows, then times COPY + upsert of the same rows into
/// fresh tables of the same shape. Returns (batched, one transaction) secs.
async fn ceiling(database_url: &str, n: usize, batch: usize) -> Result<(f64, f64)> {
    let client = sequin_pgtemp::client::try_connect(database_url).await?;
    let count: i64 = client
        .query_one("SELECT count(*) FROM stripe.customer", &[])
        .await?
        .get(0);
    if count != n as i64 {
        bail!("sequin synced {count} customers, the simulator has {n}");
    }
    // The columns Sequin writes (everything but the defaulted synced-at).
    let cols: Vec<String> = client
        .query(
            "SELECT quote_ident(column_name::text) FROM information_schema.columns
              WHERE table_schema = 'stripe' AND table_name = 'customer'
                AND column_name <> '_sequin_synced_at' ORDER BY ordinal_position",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let col_list = cols.join(", ");
    // Rows pre-built in COPY text format, one line each.
    let mut lines: Vec<bytes::Bytes> = Vec::with_capacity(n);
    let mut rows = Box::pin(
        client
            .copy_out(&format!(
                "COPY (SELECT {col_list} FROM stripe.customer ORDER BY created DESC, id DESC) TO STDOUT"
            ))
            .await?,
    );
    let mut pending = bytes::BytesMut::new();
    while let Some(chunk) = rows.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            lines.push(pending.split_to(pos + 1).freeze());
        }
    }
    if lines.len() != n {
        bail!("dumped {} rows, expected {n}", lines.len());
    }
    let updates: Vec<String> = cols
        .iter()
        .filter(|c| c.as_str() != "id")
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .chain(["_sequin_synced_at = now()".to_string()])
        .collect();
    let mut secs = Vec::new();
    for (label, size) in [("batched", batch.max(1)), ("one_tx", n.max(1))] {
        let table = format!("bench.customer_{label}");
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS bench;
                 DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (LIKE stripe.customer INCLUDING ALL);
                 DROP TABLE IF EXISTS pg_temp.stage;
                 CREATE TEMP TABLE stage ON COMMIT DELETE ROWS AS SELECT {col_list} FROM stripe.customer WITH NO DATA;
                 CHECKPOINT"
            ))
            .await?;
        let upsert = format!(
            "INSERT INTO {table} AS t ({col_list}) SELECT {col_list} FROM stage
             ON CONFLICT (id) DO UPDATE SET {updates}
             WHERE t._sequin_updated_at IS NULL OR EXCLUDED._sequin_updated_at IS NULL
                OR EXCLUDED._sequin_updated_at >= t._sequin_updated_at",
            updates = updates.join(", ")
        );
        let t0 = Instant::now();
        for chunk in lines.chunks(size) {
            client.batch_execute("BEGIN").await?;
            let sink = client
                .copy_in(&format!("COPY stage ({col_list}) FROM STDIN"))
                .await?;
            let mut sink = Box::pin(sink);
            let mut buf = bytes::BytesMut::with_capacity(512 * 1024);
            for line in chunk {
                buf.extend_from_slice(line);
                if buf.len() >= 512 * 1024 {
                    sink.send(buf.split().freeze()).await?;
                }
            }
            if !buf.is_empty() {
                sink.send(buf.split().freeze()).await?;
            }
            sink.as_mut().finish().await?;
            client.execute(&upsert, &[]).await?;
            client.batch_execute("COMMIT").await?;
        }
        secs.push(t0.elapsed().as_secs_f64());
        let loaded: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        if loaded != n as i64 {
            bail!("the ceiling loaded {loaded} rows, expected {n}");
        }
    }
    Ok((secs[0], secs[1]))
}

fn print_one(m: &Measured) {
    println!(
        "N={n}: sequin {rps:.0} records/s ({secs:.2}s, peak RSS {rss:.1} MB, CPU {cpu:.2}s; simulator CPU {sim:.2}s) | \
         ceiling {cps:.0} rows/s (batched {cb:.2}s, one tx {co:.2}s) | ratio {ratio:.2}",
        n = m.records,
        rps = m.records_per_sec(),
        secs = m.sync_secs,
        rss = m.peak_rss_kb as f64 / 1024.0,
        cpu = m.sequin_cpu_secs,
        sim = m.sim_cpu_secs,
        cps = m.ceiling_per_sec(),
        cb = m.ceiling_batched_secs,
        co = m.ceiling_one_tx_secs,
        ratio = m.ratio(),
    );
}

fn markdown(results: &[Measured], args: &BenchSyncArgs) -> String {
    let cmd = if args.flatness {
        "cargo xtask bench sync --flatness".to_string()
    } else {
        format!("cargo xtask bench sync --records {}", args.records)
    };
    let mut s = String::new();
    s.push_str(&format!(
        "Command: `{cmd}` ({}; {} cores).\n\n",
        chrono_free_date(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    s.push_str(
        "| N | sequin records/s | wall s | peak RSS MB | sequin CPU s | simulator CPU s | ceiling rows/s | ratio |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in results {
        s.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} | {:.0} | {:.2} |\n",
            m.records,
            m.records_per_sec(),
            m.sync_secs,
            m.peak_rss_kb as f64 / 1024.0,
            m.sequin_cpu_secs,
            m.sim_cpu_secs,
            m.ceiling_per_sec(),
            m.ratio()
        ));
    }
    s
}

/// Today's date (UTC) from `date`, to avoid a date dependency for one line.
pub(crate) fn chrono_free_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
