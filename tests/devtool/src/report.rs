//! What every benchmark report says about where it ran: the machine, how
//! busy it was, and the code measured. (Also compiled into `sequin-proxy`'s `pgbench` bench,
//! with `bench_proxy.rs`.)

/// The machine: its cores, its CPU, and its 1-minute load average `when`
/// ("before the run"): other work on it skews ratios of throughput.
pub fn machine(load: Option<f64>, when: &str) -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = load
        .map(|l| format!("{l:.1}"))
        .unwrap_or_else(|| "?".into());
    format!(
        "{cores} cores, {}; 1-minute load average {when}: {load}",
        cpu_model()
    )
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The CPU's model name.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The code measured: the checkout's commit, and whether files other than
/// BENCHMARKS.md (which the reports rewrite) differ from it.
pub fn code_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(sha) => match git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":(top)",
            ":(top,exclude)BENCHMARKS.md",
        ]) {
            Some(changes) if changes.is_empty() => format!("commit {sha}"),
            _ => format!("commit {sha} with uncommitted changes"),
        },
        None => "unknown (not a git checkout)".into(),
    }
}
