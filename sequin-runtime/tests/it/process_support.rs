//! Shared by the tests that run the real `sequin` binary as a child process
//! (`crash.rs`, `bad_input.rs`, `events_crash.rs`): a child guard that kills on drop (so a
//! failing test leaves no process behind), a scratch directory for config
//! files and logs, and helpers to read what the process printed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sequin_pgtemp::Killed;

/// The binary under test, built by cargo for this package's tests.
pub const SEQUIN: &str = env!("CARGO_BIN_EXE_sequin");

/// A scratch directory removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "sequin-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Writes `text` to `file` in the directory; returns its path.
    pub fn write(&self, file: &str, text: &str) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `sequin` process, SIGKILLed (and reaped) when dropped.
pub struct Sequin {
    child: Killed,
    stderr: PathBuf,
}

impl Sequin {
    /// Starts `sequin --config <config> --log <log> <args..>` with stderr
    /// going to `stderr` (a file, so a test can read it after a kill).
    pub fn spawn(config: &Path, log: &str, args: &[&str], stderr: PathBuf) -> Sequin {
        let err = std::fs::File::create(&stderr).expect("create stderr file");
        let child = Command::new(SEQUIN)
            .arg("--config")
            .arg(config)
            .arg("--log")
            .arg(log)
            .args(args)
            .env_remove("SEQUIN_CONFIG")
            .env_remove("SEQUIN_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn the sequin binary");
        Sequin {
            child: Killed(child),
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the child")
    }

    /// SIGKILL (`Child::kill` sends SIGKILL on Unix) and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reap the child")
    }

    /// SIGTERM (a clean stop), then waits at most `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(start.elapsed() < limit, "no exit {limit:?} after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Runs `sequin --log error` to completion (at most `limit`); returns its
/// exit status, stdout and stderr. Panics when it does not end in time (the
/// child is killed first). Call it from a multi-threaded tokio test: the
/// wait blocks in place so the simulators in the test keep serving.
pub fn run(config: &Path, args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    tokio::task::block_in_place(|| run_blocking(config, args, envs, limit))
}

fn run_blocking(config: &Path, args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    let scratch_out = tempfile_in_target("stdout");
    let scratch_err = tempfile_in_target("stderr");
    let mut cmd = Command::new(SEQUIN);
    cmd.arg("--config")
        .arg(config)
        .arg("--log")
        .arg("error")
        .args(args)
        .env_remove("SEQUIN_CONFIG")
        .env_remove("SEQUIN_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&scratch_out).expect("stdout file"))
        .stderr(std::fs::File::create(&scratch_err).expect("stderr file"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn the sequin binary");
    let mut guard = Sequin {
        child: Killed(child),
        stderr: scratch_err.clone(),
    };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = guard.exited() {
            break s;
        }
        if start.elapsed() > limit {
            let err = guard.stderr();
            guard.kill9();
            panic!(
                "`sequin {}` did not exit within {limit:?}; stderr:\n{err}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: std::fs::read_to_string(&scratch_out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&scratch_err).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(&scratch_out);
    let _ = std::fs::remove_file(&scratch_err);
    out
}

fn tempfile_in_target(kind: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sequin-run-{}-{}.{kind}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// What a finished `sequin` process left.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stderr without the tracing log lines (which start with a timestamp,
    /// possibly wrapped in ANSI colour codes).
    pub fn message_lines(&self) -> Vec<String> {
        self.stderr
            .lines()
            .map(strip_ansi)
            .filter(|l| !is_log_line(l) && !l.trim().is_empty())
            .collect()
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A tracing-subscriber line: `2026-11-24T02:14:29.123456Z ERROR ...`.
fn is_log_line(l: &str) -> bool {
    let b = l.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && (l.contains(" ERROR ") || l.contains(" WARN ") || l.contains(" INFO "))
}

/// Sessions through the proxy listening on `port`, once it accepts them.
pub async fn through_proxy(db: &sequin_pgtemp::Database, port: u16) -> tokio_postgres::Client {
    let url: tokio_postgres::Config = db.url.parse().unwrap();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(url.get_user().unwrap_or("postgres"))
        .dbname(&db.name);
    let started = std::time::Instant::now();
    loop {
        if let Ok((client, conn)) = cfg.connect(tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            return client;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the proxy on port {port} did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
