//! Environments of the real drivers tests run (the proxy's driver matrix,
//! write-through's driver tests, TLS through psycopg): a Python venv with
//! psycopg 3 and SQLAlchemy 2, and node_modules with node-postgres, each
//! installed once into one cache directory under the system temp dir and
//! reused; and one way to run a driver script, with one timeout.
//!
//! An environment is built in a directory of its own and renamed into place
//! only when none is ready there yet, so tests of several binaries running
//! at once never see a half-built one. A driver that cannot be installed
//! fails the test with what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long one driver script may run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// The cache directory of every driver environment (the name predates the
/// kit; keeping it keeps existing caches).
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("sequin-proxy-drivers")
}

/// A venv with psycopg 3 and SQLAlchemy 2; returns its `python`. Blocks
/// (run it with `spawn_blocking` from async tests).
pub fn python_env() -> PathBuf {
    let dir = cache_dir().join("venv-psycopg3-sqlalchemy2");
    let python = dir.join("bin/python");
    if python_ready(&python) {
        return python;
    }
    let tmp = building_dir(&dir);
    assert!(
        run_ok(
            Command::new("python3").args(["-m", "venv"]).arg(&tmp),
            "python3 -m venv"
        ),
        "cannot create a Python venv (install python3 and python3-venv)"
    );
    assert!(
        run_ok(
            Command::new(tmp.join("bin/pip")).args([
                "install",
                "--quiet",
                "psycopg[binary]>=3.1,<4",
                "sqlalchemy>=2,<3"
            ]),
            "pip install psycopg sqlalchemy"
        ),
        "cannot install psycopg 3 and SQLAlchemy from PyPI into {}",
        tmp.display()
    );
    if !python_ready(&python) {
        move_into_place(&tmp, &dir);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        python_ready(&python),
        "the venv at {} does not import psycopg and sqlalchemy",
        dir.display()
    );
    python
}

/// node_modules with pg (node-postgres) 8 and pg-copy-streams 6; returns
/// the directory for `NODE_PATH`. Blocks.
pub fn node_modules() -> PathBuf {
    let dir = cache_dir().join("node-pg8");
    let modules = dir.join("node_modules");
    if node_ready(&modules) {
        return modules;
    }
    assert!(
        Command::new("node").arg("--version").output().is_ok(),
        "node is not installed (apt-get install -y nodejs npm)"
    );
    let tmp = building_dir(&dir);
    assert!(
        run_ok(
            Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&tmp)
                .args(["pg@8", "pg-copy-streams@6"]),
            "npm install pg pg-copy-streams"
        ),
        "cannot install node-postgres and pg-copy-streams from npm"
    );
    if !node_ready(&modules) {
        move_into_place(&tmp, &dir);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        node_ready(&modules),
        "{} lacks pg or pg-copy-streams",
        modules.display()
    );
    modules
}

/// Runs a driver script (at most [`SCRIPT_TIMEOUT`]); returns (success,
/// stdout, stderr).
pub async fn run_script(cmd: &mut tokio::process::Command) -> (bool, String, String) {
    let o = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .expect("driver script finishes in time")
        .expect("driver script runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The venv's python imports both packages.
fn python_ready(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import psycopg, sqlalchemy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Both node packages are installed.
fn node_ready(modules: &Path) -> bool {
    modules.join("pg").exists() && modules.join("pg-copy-streams").exists()
}

/// An empty directory of this process next to `dir`, to build in.
fn building_dir(dir: &Path) -> PathBuf {
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("create the driver cache directory");
    tmp
}

/// Replaces whatever (not ready) is at `dir` with the environment in `tmp`.
fn move_into_place(tmp: &Path, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    // Another process may have moved its own into place meanwhile: theirs wins.
    let _ = std::fs::rename(tmp, dir);
}

/// Runs `cmd`; prints its output when it fails.
fn run_ok(cmd: &mut Command, what: &str) -> bool {
    match cmd.output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "{what} failed:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            false
        }
        Err(e) => {
            eprintln!("{what} could not run: {e}");
            false
        }
    }
}
