//! Child processes of tests and benchmarks: [`Killed`], a guard that kills
//! and reaps its child when dropped (a failing test leaves no process
//! behind), [`SimChild`], a simulator running as a child process that
//! announces its address on its first line of output, and [`alone`], which
//! runs a test in a process of its own.

use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, Stdio};

/// A child process, SIGKILLed (`Child::kill`) and reaped when dropped.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Deref for Killed {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What went wrong starting a simulator child.
#[derive(Debug, thiserror::Error)]
pub enum SimChildError {
    #[error("starting the simulator child failed: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("reading the simulator child's address failed: {0}")]
    Read(#[source] std::io::Error),
    #[error(
        "the simulator child said {0:?} instead of `listening on <url> [token <token>]` \
         (fix: print that line first, then flush stdout)"
    )]
    Address(String),
}

/// A simulator serving in a child process (the `sequin-sim` binary, or a
/// tool re-running itself in a serve-the-simulator mode), killed on drop.
#[derive(Debug)]
pub struct SimChild {
    pub child: Killed,
    /// Base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The API token, when the child printed one.
    pub token: Option<String>,
}

impl SimChild {
    /// Spawns `cmd` with stdout piped (and stdin piped, so a child that
    /// serves until its stdin closes stops with the guard), and reads its
    /// first line: `listening on <url>` optionally followed by
    /// `token <token>`.
    pub fn spawn(cmd: &mut Command) -> Result<SimChild, SimChildError> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(SimChildError::Spawn)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let child = Killed(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(SimChildError::Read)?;
        let (url, token) = parse_address(&line).ok_or(SimChildError::Address(line.clone()))?;
        Ok(SimChild { child, url, token })
    }
}

/// `listening on <url> [token <token>]` -> (url, token).
fn parse_address(line: &str) -> Option<(String, Option<String>)> {
    let rest = line.trim().strip_prefix("listening on ")?;
    let mut words = rest.split_whitespace();
    let url = words.next()?.to_string();
    match (words.next(), words.next(), words.next()) {
        (None, _, _) => Some((url, None)),
        (Some("token"), Some(token), None) => Some((url, Some(token.to_string()))),
        _ => None,
    }
}

/// Set in the child [`alone`] starts, to the name of the test it runs.
const ALONE_ENV: &str = "SEQUIN_TEST_ALONE";

/// Runs the calling test again in a child process of the test binary, as
/// the only test there, for a test that watches process-wide state (the
/// runtime shares rate-limit budgets by connection name and the writer
/// key's registration by every engine of the process, and the tests of a
/// crate share one binary). `module` is the caller's `module_path!()`,
/// `test` its function name. Returns `true` in the parent once the child
/// passed (the caller returns; the child's output is printed), `false` in
/// the child (the caller runs its body). Panics when the child fails.
pub fn alone(module: &str, test: &str) -> bool {
    // libtest names tests by their path below the crate.
    let name = match module.split_once("::") {
        Some((_, path)) => format!("{path}::{test}"),
        None => test.to_string(),
    };
    if std::env::var(ALONE_ENV).as_deref() == Ok(name.as_str()) {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([&name, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE_ENV, &name)
        .stdin(Stdio::null())
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{name} failed in its own process ({})",
        out.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{name} did not run in its own process (is `module`/`test` its path?):\n{stdout}"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_line_is_read_with_and_without_a_token() {
        assert_eq!(
            parse_address("listening on http://127.0.0.1:5 token sk_1\n"),
            Some(("http://127.0.0.1:5".into(), Some("sk_1".into())))
        );
        assert_eq!(
            parse_address("listening on http://127.0.0.1:5\n"),
            Some(("http://127.0.0.1:5".into(), None))
        );
        assert_eq!(parse_address("error: port taken\n"), None);
        assert_eq!(parse_address("listening on http://x token\n"), None);
    }

    #[test]
    fn a_killed_child_is_gone_after_the_drop() {
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        drop(Killed(child));
        // Reaped: no process (not even a zombie) has the pid any more.
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(!alive, "pid {pid} still exists");
    }
}
