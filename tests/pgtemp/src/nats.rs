//! A throwaway NATS server with JetStream for the NATS sink's tests:
//! [`NatsServer`] runs Debian's `nats-server -js` as a child process on a
//! free loopback port with its store in a temp dir, and can be stopped
//! (SIGKILL, a crash) and restarted on the same port and store.
//!
//! Readiness is the monitoring port's `/healthz`: on a JetStream server it
//! answers 200 only once JetStream is up, including after a restart that
//! recovers its streams from the store (accepting TCP connections alone is
//! earlier than that). `js-enabled-only` is not asked for: Debian's 2.9
//! does not know it and answers 200 without JetStream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::Killed;

/// How long a start may take before it is a failure (JetStream recovers its
/// store before it is healthy; a few streams take well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `nats-server -js`, killed (and its store removed) on drop.
pub struct NatsServer {
    /// Declared before `dir`: fields drop in order, so the server is gone
    /// before its store is removed.
    child: Option<Killed>,
    binary: PathBuf,
    port: u16,
    monitor_port: u16,
    /// Started with `-js` (false only for tests of the error naming it).
    jetstream: bool,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a JetStream server on free loopback ports, its store in a
    /// fresh temp dir. Panics when `nats-server` is missing (naming the
    /// install) or it does not become healthy in time (with its log).
    pub fn start() -> NatsServer {
        Self::start_with(true)
    }

    /// A server without JetStream (plain NATS), for the error that says to
    /// start it with `-js`.
    pub fn start_without_jetstream() -> NatsServer {
        Self::start_with(false)
    }

    fn start_with(jetstream: bool) -> NatsServer {
        let binary = find_binary().unwrap_or_else(|| {
            panic!(
                "nats-server not found (looked on PATH and in /usr/sbin): install it with \
                 `cargo xtask deps` (or `apt-get install -y nats-server`)"
            )
        });
        let port = crate::free_port().expect("a free port for nats-server");
        let monitor_port = crate::free_port().expect("a free monitoring port for nats-server");
        let dir = tempfile::Builder::new()
            .prefix("sequin-nats-")
            .tempdir()
            .expect("a temp dir for the JetStream store");
        let mut server = NatsServer {
            child: None,
            binary,
            port,
            monitor_port,
            jetstream,
            dir,
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across [`stop`](Self::stop) and
    /// [`restart`](Self::restart)).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it. What
    /// JetStream had written to its files stays (the page cache survives a
    /// process's death).
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Starts the server again on the same ports with the same store (after
    /// [`stop`](Self::stop), or killing a running one first).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the nats-server log file");
        let err = log.try_clone().expect("the nats-server log file");
        let mut command = Command::new(&self.binary);
        if self.jetstream {
            command.arg("-js");
        }
        let child = command
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("-sd")
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", self.binary.display()));
        let pid = child.id();
        self.child = Some(Killed(child));
        spawn_watchdog(pid, self.dir.path());
        self.wait_healthy();
    }

    /// Waits for `/healthz` to answer 200, or panics with the log.
    fn wait_healthy(&mut self) {
        let start = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        loop {
            if healthz_ok(addr) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > START_TIMEOUT {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                panic!(
                    "nats-server on port {} was not healthy within {}s (exit: {exited:?}); log:\n{log}",
                    self.port,
                    START_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `GET /healthz` on the monitoring port answered `200`.
fn healthz_ok(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .lines()
        .next()
        .is_some_and(|status| status.split_whitespace().nth(1) == Some("200"))
}

/// `nats-server` on PATH, else Debian's `/usr/sbin/nats-server` (not on a
/// non-root user's PATH).
fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/nats-server");
        sbin.is_file().then_some(sbin)
    })
}

/// Kills the server once this process is gone without running destructors
/// (SIGKILL, a panicking static), so a test run leaves no server behind.
/// It kills `pid` only while that pid is still a server of this store dir
/// (a pid is reused once the server was stopped and reaped).
fn spawn_watchdog(pid: u32, dir: &Path) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
         if tr '\\0' ' ' < /proc/{pid}/cmdline 2>/dev/null | grep -qF '{dir}'; then \
         kill -9 {pid}; fi; rm -rf '{dir}'",
        parent = std::process::id(),
        dir = dir.display(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server speaks the NATS protocol on its port: its first line is
    /// `INFO {...}` with JetStream on.
    fn info_line(port: u16) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to nats-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).expect("nats-server's INFO line");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_server_starts_with_jetstream_restarts_on_its_port_and_is_gone_after_drop() {
        let mut server = NatsServer::start();
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        let info = info_line(server.port());
        assert!(info.starts_with("INFO {"), "{info}");
        assert!(info.contains("\"jetstream\":true"), "{info}");
        assert!(server.store_dir().join("jetstream").is_dir());

        server.stop();
        assert!(
            TcpStream::connect(("127.0.0.1", server.port())).is_err(),
            "a stopped server must not accept connections"
        );
        server.restart();
        assert!(info_line(server.port()).contains("\"jetstream\":true"));

        let pid = server.child.as_ref().unwrap().id();
        let root = server.dir.path().to_path_buf();
        drop(server);
        assert!(!root.exists(), "the store dir must be removed on drop");
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(!alive, "nats-server {pid} still exists");
    }

    #[test]
    fn a_server_without_jetstream_says_so() {
        let server = NatsServer::start_without_jetstream();
        let info = info_line(server.port());
        assert!(info.starts_with("INFO {"), "{info}");
        assert!(!info.contains("\"jetstream\":true"), "{info}");
    }
}
