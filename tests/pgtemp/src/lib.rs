//! The test kit: throwaway PostgreSQL for tests, benchmarks and the demo,
//! and what every test crate needs around it, each in one place:
//! [`client`] (`connect`, `connect_when_up`), [`drivers`] (the Python venv
//! and node_modules of the real-driver tests, one way to run their
//! scripts), [`process`] ([`Killed`], a child killed on drop,
//! [`SimChild`], a simulator in a child process, and `alone`, a test in a
//! process of its own), [`nats`] ([`NatsServer`], a throwaway
//! `nats-server -js` for the NATS sink's tests), [`wait`] ([`eventually`],
//! waiting for what happens in the background).
//!
//! Postgres comes from one of two sources, in this order:
//! 1. `DATABASE_URL`, when set: an existing server; every [`Database`] is a
//!    fresh database created in it (and dropped afterwards).
//! 2. Otherwise a cluster started from the system's PostgreSQL binaries
//!    (`/usr/lib/postgresql/<newest>/bin`, or `PG_BINDIR`) in a temp dir on a
//!    free loopback port. Postgres refuses to run as root, so when we are root
//!    the cluster runs as the `postgres` system user.
//!
//! A cluster started with [`Options::tls`] speaks TLS only: `ssl = on` with
//! a certificate for `localhost` from its own test CA ([`tls::TestCa`]), and
//! a pg_hba.conf that takes TCP sessions over SSL only (`hostssl`; the unix
//! socket stays open for admin work).
//!
//! A cluster is stopped and its directory removed when its [`Cluster`] is
//! dropped, and also by a watchdog process when the owning process dies
//! without running destructors (statics, SIGKILL, a panicking test binary):
//! a test run never leaves servers behind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod client;
pub mod drivers;
pub mod nats;
pub mod process;
pub mod tls;
pub mod wait;

pub use client::{connect, connect_when_up};
pub use nats::NatsServer;
pub use process::{Killed, SimChild};
pub use wait::eventually;

/// What went wrong while getting a Postgres server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries not found (looked in PG_BINDIR and /usr/lib/postgresql/*/bin); \
         install them with `apt-get install -y postgresql` or set DATABASE_URL"
    )]
    NoBinaries,
    #[error(
        "running as root but there is no `postgres` system user to run the cluster as; \
         install the Debian package (`apt-get install -y postgresql`) or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("io error while {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("postgres did not accept connections on port {port} within {secs}s; log:\n{log}")]
    StartTimeout { port: u16, secs: u64, log: String },
}

type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// How clients authenticate to a started cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Auth {
    /// Everybody gets in (the default for tests).
    #[default]
    Trust,
    /// `md5` for TCP connections; the superuser gets password [`PASSWORD`].
    Md5,
    /// `scram-sha-256` for TCP connections; the superuser gets password [`PASSWORD`].
    Scram,
    /// `password` (cleartext) for TCP connections; the superuser gets password [`PASSWORD`].
    Cleartext,
}

/// Password of the superuser in clusters started with a password [`Auth`].
pub const PASSWORD: &str = "sequin-test-pw";

/// Options for [`Cluster::start_with`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub auth: Auth,
    /// Extra `postgresql.conf` lines, e.g. `"max_connections = 200"`.
    pub config: Vec<String>,
    /// Use this port instead of a free one (used to restart on the same port).
    pub port: Option<u16>,
    /// TLS only: `ssl = on`, a server certificate for `localhost` signed by
    /// the cluster's own CA ([`Cluster::ca_cert`]), and pg_hba.conf lines
    /// `hostssl` only (127.0.0.1 and ::1 with the [`Auth`] method; the role
    /// [`CERT_USER`] by client certificate).
    pub tls: bool,
}

/// In a TLS cluster, the role (if a test creates it) that logs in with a
/// client certificate of the cluster's CA (pg_hba `cert`) instead of a
/// password.
pub const CERT_USER: &str = "sequin_cert";

/// A running Postgres cluster owned by this process.
pub struct Cluster {
    bindir: PathBuf,
    root: PathBuf,
    port: u16,
    run_as_postgres: bool,
    auth: Auth,
    stopped: bool,
    ca: Option<tls::TestCa>,
}

/// The superuser name in clusters we start.
pub const SUPERUSER: &str = "postgres";

impl Cluster {
    /// Starts a trust-auth cluster on a free port.
    pub fn start() -> Result<Cluster> {
        Self::start_with(Options::default())
    }

    /// Starts a cluster with the given options.
    pub fn start_with(opts: Options) -> Result<Cluster> {
        let bindir = find_bindir().ok_or(Error::NoBinaries)?;
        let run_as_postgres = is_root();
        if run_as_postgres && !user_exists("postgres") {
            return Err(Error::NoPostgresUser);
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "sequin-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sock")).map_err(io("creating the cluster dir"))?;
        let mut cluster = Cluster {
            bindir,
            root,
            port: 0,
            run_as_postgres,
            auth: opts.auth,
            stopped: true,
            ca: None,
        };
        if run_as_postgres {
            cluster.sh_root(&format!(
                "chown -R postgres:postgres '{}'",
                cluster.root.display()
            ))?;
        }
        let pwfile = cluster.root.join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(io("writing the password file"))?;
        if run_as_postgres {
            cluster.sh_root(&format!("chown postgres '{}'", pwfile.display()))?;
        }
        let method = match opts.auth {
            Auth::Trust => "trust",
            Auth::Md5 => "md5",
            Auth::Scram => "scram-sha-256",
            Auth::Cleartext => "password",
        };
        let pw_enc = if opts.auth == Auth::Md5 {
            "md5"
        } else {
            "scram-sha-256"
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                &format!("--auth-host={method}"),
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        let mut conf = vec![
            "listen_addresses = '127.0.0.1'".to_string(),
            format!(
                "unix_socket_directories = '{}'",
                cluster.root.join("sock").display()
            ),
            "fsync = off".into(),
            "synchronous_commit = off".into(),
            "full_page_writes = off".into(),
            "max_connections = 200".into(),
            format!("password_encryption = '{pw_enc}'"),
        ];
        if opts.tls {
            conf.extend(cluster.set_up_tls(method)?);
        }
        conf.extend(opts.config.iter().cloned());
        let conf_path = cluster.data().join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap_or_default();
        for line in conf {
            text.push_str(&line);
            text.push('\n');
        }
        std::fs::write(&conf_path, text).map_err(io("writing postgresql.auto.conf"))?;
        spawn_watchdog(&cluster);
        cluster.start_on(opts.port)?;
        Ok(cluster)
    }

    /// Makes the CA and the server certificate, restricts pg_hba.conf to
    /// SSL sessions, and returns the `postgresql.conf` lines for TLS.
    fn set_up_tls(&mut self, method: &str) -> Result<Vec<String>> {
        let ca = tls::TestCa::new("Sequin test CA")?;
        let data = self.data();
        let (_, key) = ca.server(&["localhost"])?.write(&data, "server")?;
        std::fs::write(data.join("ca.crt"), ca.cert_pem())
            .map_err(io("writing the CA certificate"))?;
        std::fs::write(self.ca_cert(), ca.cert_pem()).map_err(io("writing the CA certificate"))?;
        let hba = format!(
            "local all all trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
             hostssl all {CERT_USER} ::1/128 cert\n\
             hostssl all all 127.0.0.1/32 {method}\n\
             hostssl all all ::1/128 {method}\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(io("writing pg_hba.conf"))?;
        if self.run_as_postgres {
            // The server reads its key only when it owns it.
            self.sh_root(&format!(
                "chown postgres:postgres '{}' '{}' '{}' '{}'",
                key.display(),
                data.join("server.crt").display(),
                data.join("ca.crt").display(),
                data.join("pg_hba.conf").display()
            ))?;
        }
        self.ca = Some(ca);
        Ok(vec![
            "ssl = on".into(),
            "ssl_cert_file = 'server.crt'".into(),
            "ssl_key_file = 'server.key'".into(),
            "ssl_ca_file = 'ca.crt'".into(),
        ])
    }

    /// The CA certificate of a TLS cluster (for `sslrootcert`).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }

    /// The CA of a TLS cluster, to issue client certificates.
    pub fn ca(&self) -> Option<&tls::TestCa> {
        self.ca.as_ref()
    }

    fn start_on(&mut self, port: Option<u16>) -> Result<()> {
        let mut last = None;
        for _ in 0..5 {
            let port = match port {
                Some(p) => p,
                None => free_port()?,
            };
            self.port = port;
            let log = self.root.join("log");
            let res = self.pg(
                "pg_ctl",
                &[
                    "-D",
                    &self.data().display().to_string(),
                    "-l",
                    &log.display().to_string(),
                    "-o",
                    &format!("-p {port}"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            match res {
                Ok(_) => {
                    self.stopped = false;
                    return self.wait_ready();
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn wait_ready(&self) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::StartTimeout {
            port: self.port,
            secs: 60,
            log: std::fs::read_to_string(self.root.join("log")).unwrap_or_default(),
        })
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (for editing `pg_hba.conf`, reading the log).
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
    }

    /// Directory holding the server's unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// Directory of the server binaries used (psql, pgbench, pg_ctl...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The authentication method of TCP connections.
    pub fn auth(&self) -> Auth {
        self.auth
    }

    /// A `postgres://` URL for `db` as the superuser (with the password when the
    /// cluster needs one).
    pub fn url(&self, db: &str) -> String {
        match self.auth {
            Auth::Trust => format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port),
            _ => format!(
                "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{}/{db}",
                self.port
            ),
        }
    }

    /// Runs SQL through `psql` over the unix socket as the superuser, returning
    /// stdout (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        self.pg(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.socket_dir().display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-c",
                sql,
            ],
        )
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url(name))
    }

    /// Stops the server fast (`-m fast`), keeping the data directory.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )?;
        self.stopped = true;
        Ok(())
    }

    /// Starts a stopped server again on its port.
    pub fn start_again(&mut self) -> Result<()> {
        self.start_on(Some(self.port))
    }

    /// Restarts the server on the same port (a server restart as clients see it).
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start_on(Some(self.port))
    }

    /// Reloads the configuration (after editing `pg_hba.conf`).
    pub fn reload(&self) -> Result<()> {
        self.pg(
            "pg_ctl",
            &["-D", &self.data().display().to_string(), "reload"],
        )
        .map(|_| ())
    }

    /// Runs a server binary from [`Self::bindir`], as `postgres` when we are root.
    /// A command running one of the server binaries as the cluster's user.
    fn command(&self, bin: &str) -> Command {
        let exe = self.bindir.join(bin);
        if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        }
    }

    fn pg(&self, bin: &str, args: &[&str]) -> Result<String> {
        let mut cmd = self.command(bin);
        cmd.args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .env_remove("PGPASSWORD")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGUSER")
            .env_remove("PGDATABASE");
        let out = cmd.output().map_err(io(format!("running {bin}")))?;
        if !out.status.success() {
            return Err(Error::Command {
                what: format!("{bin} {}", args.join(" ")),
                detail: format!(
                    "{}{}{}",
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&out.stdout),
                    self.crash_report()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A psql running `select pg_sleep(60)` in the background.
    #[cfg(test)]
    fn background_sleep(&self) -> std::process::Child {
        self.command("psql")
            .args([
                "-X",
                "-q",
                "-h",
                &self.socket_dir().display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-c",
                "select pg_sleep(60)",
            ])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn psql")
    }

    /// The server log's lines about a crash (a backend killed by a signal, a
    /// PANIC, a full disk), with the free space where the cluster lives: when
    /// a command fails because the server is restarting, the reason is in the
    /// log, not in the client's error. Empty when the log shows no crash.
    fn crash_report(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                [
                    "PANIC",
                    "terminated by signal",
                    "was terminated",
                    "No space left",
                    "out of memory",
                    "server process",
                ]
                .iter()
                .any(|k| l.contains(k))
            })
            .collect();
        if lines.is_empty() {
            return String::new();
        }
        let df = Command::new("df")
            .args(["-h", &self.root.display().to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let tail = &lines[lines.len().saturating_sub(10)..];
        format!(
            "\nthe server crashed; its log says:\n{}\nfree space:\n{df}",
            tail.join("\n")
        )
    }

    fn sh_root(&self, script: &str) -> Result<()> {
        let out = Command::new("sh")
            .args(["-c", script])
            .output()
            .map_err(io("running sh"))?;
        if !out.status.success() {
            return Err(Error::Command {
                what: script.to_string(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.pg(
                "pg_ctl",
                &[
                    "-D",
                    &self.data().display().to_string(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Stops the cluster and removes its directory once this process is gone,
/// however it went.
fn spawn_watchdog(cluster: &Cluster) {
    let pg_ctl = cluster.bindir.join("pg_ctl");
    let stop = if cluster.run_as_postgres {
        format!(
            "runuser -u postgres -- '{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            cluster.data().display()
        )
    } else {
        format!(
            "'{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            cluster.data().display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         [ -d '{root}' ] && {{ {stop} >/dev/null 2>&1; rm -rf '{root}'; }}",
        pid = std::process::id(),
        root = cluster.root.display(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A fresh database for one test, in the shared server of this process.
pub struct Database {
    pub name: String,
    /// `postgres://` URL of the database.
    pub url: String,
    admin_url: Option<String>,
}

impl Database {
    /// Creates a fresh database named `<prefix>_<n>`: in `DATABASE_URL`'s server
    /// when set, otherwise in this process's shared throwaway cluster.
    pub fn create(prefix: &str) -> Result<Database> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}_{}_{}",
            prefix.to_lowercase(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        if let Ok(admin) = std::env::var("DATABASE_URL") {
            run_psql_url(&admin, &format!("CREATE DATABASE \"{name}\""))?;
            let url = replace_db(&admin, &name);
            return Ok(Database {
                name,
                url,
                admin_url: Some(admin),
            });
        }
        let cluster = shared()?;
        let url = cluster.create_database(&name)?;
        Ok(Database {
            name,
            url,
            admin_url: None,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        match &self.admin_url {
            Some(admin) => {
                let _ = run_psql_url(admin, &sql);
            }
            None => {
                if let Ok(c) = shared() {
                    let _ = c.psql("postgres", &sql);
                }
            }
        }
    }
}

/// The process-wide throwaway cluster (started on first use; the watchdog
/// removes it when the process exits).
pub fn shared() -> Result<&'static Cluster> {
    static SHARED: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();
    match SHARED.get_or_init(|| Cluster::start().map_err(|e| e.to_string())) {
        Ok(c) => Ok(c),
        Err(e) => Err(Error::Command {
            what: "starting the shared test cluster".into(),
            detail: e.clone(),
        }),
    }
}

fn run_psql_url(url: &str, sql: &str) -> Result<()> {
    let psql = find_bindir()
        .map(|b| b.join("psql"))
        .unwrap_or_else(|| PathBuf::from("psql"));
    let out = Command::new(psql)
        .args([
            "-X",
            "-w",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(io("running psql"))?;
    if !out.status.success() {
        return Err(Error::Command {
            what: format!("psql -c {sql:?}"),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Replaces the database name in a `postgres://` URL.
fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// The newest installed PostgreSQL server's bin directory.
pub fn find_bindir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        let p = PathBuf::from(dir);
        if p.join("postgres").exists() {
            return Some(p);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_db_keeps_query_and_credentials() {
        assert_eq!(
            replace_db("postgres://u:p@h:5/app?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(replace_db("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }

    #[test]
    fn cluster_starts_serves_and_restarts() {
        let mut c = Cluster::start().expect("start cluster");
        assert_eq!(c.psql("postgres", "select 40 + 2").unwrap().trim(), "42");
        let url = c.create_database("t1").unwrap();
        assert!(url.ends_with("/t1"), "{url}");
        let port = c.port();
        c.restart().unwrap();
        assert_eq!(c.port(), port);
        assert_eq!(c.psql("t1", "select 1").unwrap().trim(), "1");
        let root = c.root.clone();
        drop(c);
        assert!(!root.exists(), "cluster dir must be removed on drop");
    }

    #[test]
    fn password_cluster_requires_the_password() {
        let c = Cluster::start_with(Options {
            auth: Auth::Scram,
            ..Default::default()
        })
        .unwrap();
        // Over TCP without a password: refused.
        let no_pw = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", c.port());
        assert!(run_psql_url(&no_pw, "select 1").is_err());
        assert!(run_psql_url(&c.url("postgres"), "select 1").is_ok());
    }

    #[test]
    fn a_crashed_backend_is_reported_from_the_log() {
        let c = Cluster::start().expect("start cluster");
        assert_eq!(c.crash_report(), "", "no crash yet");
        // A backend killed by the kernel (as the OOM killer does) makes the
        // postmaster restart every session: the report must say so.
        let mut sleeper = c.background_sleep();
        let victim = loop {
            let out = c
                .psql(
                    "postgres",
                    "select pid from pg_stat_activity where query like 'select pg_sleep(60)%'",
                )
                .unwrap();
            if let Some(p) = out.lines().next().filter(|p| !p.is_empty()) {
                break p.trim().to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let killed = Command::new("kill").args(["-9", &victim]).status().unwrap();
        assert!(killed.success());
        let _ = sleeper.wait();
        let start = Instant::now();
        let report = loop {
            let r = c.crash_report();
            if !r.is_empty() || start.elapsed() > Duration::from_secs(20) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(report.contains("terminated by signal 9"), "{report}");
        assert!(report.contains("free space"), "{report}");
    }
}
