//! TLS to Postgres everywhere Sequin connects (issue #11), against a real
//! TLS-only cluster (`ssl = on`, a test CA, a server certificate for
//! `localhost`, pg_hba.conf `hostssl` only):
//! - migrate, sync (the Stripe simulator) and write-through through the
//!   proxy work with `sslmode=require` and with `verify-full` +
//!   `sslrootcert`, and every session Sequin holds is encrypted;
//! - `verify-full` refuses a host the certificate does not name and a CA it
//!   does not trust, `disable` gets the server's refusal, `require` a
//!   server without SSL, each worded with the parameter to change; `allow`,
//!   `prefer`, `verify-ca` and client certificates connect (the `sequin`
//!   binary with `sslrootcert=system` and its exit codes are tested in
//!   `sequin-runtime/tests/it/bad_input.rs`, which has the binary);
//! - psql, tokio-postgres and psycopg connect to the proxy over TLS while
//!   its upstream is TLS; SCRAM channel binding, which the proxy cannot
//!   relay, is not offered, and a client that would insist is told what to
//!   do.

use crate::write_common;

use std::sync::OnceLock;
use std::time::Duration;

use sequin_e2e::{Running, wait_live};
use sequin_pgtemp::{Auth, CERT_USER, Cluster, Options, PASSWORD, SUPERUSER};
use sequin_runtime::store;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Sim, SimConfig};
use write_common::{connect_when_up, psql, python_env, run_script, stripe_connection};

/// One TLS-only cluster for the file's tests (each test has its own
/// database in it).
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        Cluster::start_with(Options {
            auth: Auth::Scram,
            tls: true,
            ..Default::default()
        })
        .expect("a TLS cluster starts")
    })
}

/// A fresh database in the TLS cluster.
fn database(name: &str) -> String {
    let c = cluster();
    c.psql("postgres", &format!("CREATE DATABASE {name}"))
        .expect("create the test database");
    name.to_string()
}

/// `postgres://` URL of `db` on `host` with the given query parameters.
fn url(host: &str, port: u16, db: &str, params: &str) -> String {
    format!("postgres://{SUPERUSER}:{PASSWORD}@{host}:{port}/{db}?{params}")
}

fn ca() -> String {
    cluster().ca_cert().display().to_string()
}

/// Whether the session of `client` is encrypted, as the server sees it.
async fn server_sees_ssl(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

/// The error of a connection that must fail.
async fn refused(url: &str) -> String {
    match store::connect(url).await {
        Ok(_) => panic!("{url} must be refused"),
        Err(e) => e.to_string(),
    }
}

async fn stripe_sim() -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(3).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the simulator starts")
}

/// Sync and write-through with `database_url` = `db_url`: the engine
/// migrates and syncs Stripe over TLS, and an INSERT through the proxy (a
/// plain client; the proxy's upstream is TLS) reaches Stripe.
async fn sync_and_write_through(db: &str, db_url: &str) {
    let sim = stripe_sim().await;
    let proxy_port = sequin_pgtemp::free_port().unwrap();
    let config = format!(
        "database_url: \"{db_url}\"\nproxy:\n  listen: 127.0.0.1:{proxy_port}\nconnections:\n{}",
        stripe_connection(&sim, "customer")
    );
    let running = Running::start(&config);
    let pg = store::connect(db_url).await.expect("a direct TLS session");
    assert!(server_sees_ssl(&pg).await);
    wait_live(&pg, "stripe", Duration::from_secs(120)).await;
    assert!(!running.finished(), "the engine runs");
    let synced: i64 = pg
        .query_one("SELECT count(*) FROM stripe.customer", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(synced, 3, "the seeded customers are synced");

    // The proxy's upstream speaks TLS; this client does not (SCRAM without
    // channel binding, which the proxy strips from the server's offer).
    let proxy_url =
        format!("postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{proxy_port}/{db}?sslmode=disable");
    let proxy = connect_when_up(&proxy_url).await;
    assert!(server_sees_ssl(&proxy).await, "proxy to server over TLS");
    let id: String = proxy
        .query_one(
            "INSERT INTO stripe.customer (name, email) VALUES ('Over TLS', 'tls@example.com') RETURNING id",
            &[],
        )
        .await
        .expect("write-through over TLS")
        .get(0);
    assert!(id.starts_with("cus_"), "Stripe's id: {id}");
    let upstream = sim
        .stripe()
        .get(Kind::Customer, &id)
        .expect("Stripe has it");
    assert_eq!(upstream["name"], "Over TLS");

    // Every session Sequin holds (sync, journal, the proxy's) is encrypted;
    // pg_hba.conf would have refused a plain one anyway.
    let plain: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.datname = current_database() AND a.client_addr IS NOT NULL AND NOT s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0);
    running.stop().await.expect("the engine stops cleanly");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_write_through_with_sslmode_require() {
    let db = database("tls_require");
    let port = cluster().port();
    sync_and_write_through(&db, &url("127.0.0.1", port, &db, "sslmode=require")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_write_through_with_verify_full() {
    let db = database("tls_verify_full");
    let port = cluster().port();
    let params = format!("sslmode=verify-full&sslrootcert={}", ca());
    sync_and_write_through(&db, &url("localhost", port, &db, &params)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_checks_and_sslmodes_with_worded_errors() {
    let db = database("tls_modes");
    let port = cluster().port();
    let ca = ca();

    // verify-full: the certificate names localhost, not 127.0.0.1.
    let wrong_host = refused(&url(
        "127.0.0.1",
        port,
        &db,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert_eq!(
        wrong_host,
        format!(
            "cannot connect to Postgres at 127.0.0.1:{port}/{db}: the server's certificate is not valid for host `127.0.0.1` (it names DnsName(\"localhost\")): connect by a name the certificate holds, or use sslmode=verify-ca in database_url to check the CA only"
        )
    );
    // verify-ca checks the CA only: the same host is fine.
    let ca_only = store::connect(&url(
        "127.0.0.1",
        port,
        &db,
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-ca does not check the host");
    assert!(server_sees_ssl(&ca_only).await);

    // Sequin's sessions bind SCRAM to the TLS channel (tls-server-end-point):
    // with channel_binding=require tokio-postgres accepts nothing less.
    let bound = store::connect(&url(
        "localhost",
        port,
        &db,
        &format!("sslmode=verify-full&sslrootcert={ca}&channel_binding=require"),
    ))
    .await
    .expect("SCRAM-SHA-256-PLUS with Sequin's channel binding data");
    assert!(server_sees_ssl(&bound).await);

    // A CA that did not sign the server's certificate.
    let dir = tempfile_dir("tls-unknown-ca");
    let other = sequin_pgtemp::tls::TestCa::new("Some other CA").unwrap();
    let other_ca = dir.join("other-ca.crt");
    std::fs::write(&other_ca, other.cert_pem()).unwrap();
    let unknown = refused(&url(
        "localhost",
        port,
        &db,
        &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
    ))
    .await;
    assert_eq!(
        unknown,
        format!(
            "cannot connect to Postgres at localhost:{port}/{db}: the server's certificate is not signed by a CA in sslrootcert `{}`: set sslrootcert in database_url to the CA that issued it (your provider publishes it)",
            other_ca.display()
        )
    );
    // libpq's rule: require with a root certificate checks the chain too.
    let require_with_root = refused(&url(
        "localhost",
        port,
        &db,
        &format!("sslmode=require&sslrootcert={}", other_ca.display()),
    ))
    .await;
    assert!(
        require_with_root.contains("is not signed by a CA in sslrootcert"),
        "{require_with_root}"
    );

    // disable: the server takes SSL sessions only.
    let disabled = refused(&url("127.0.0.1", port, &db, "sslmode=disable")).await;
    assert!(
        disabled.starts_with(&format!(
            "cannot connect to Postgres at 127.0.0.1:{port}/{db}: the server accepts only SSL connections (no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"{db}\", no encryption), and database_url has sslmode=disable: use sslmode=require or better"
        )),
        "{disabled}"
    );
    // allow: plain first, refused, then TLS.
    let allowed = store::connect(&url("127.0.0.1", port, &db, "sslmode=allow"))
        .await
        .expect("allow falls back to TLS");
    assert!(server_sees_ssl(&allowed).await);
    // prefer (the default): TLS when the server speaks it.
    let preferred = store::connect(&url("127.0.0.1", port, &db, ""))
        .await
        .expect("prefer uses TLS");
    assert!(server_sees_ssl(&preferred).await);

    // require against a server without SSL (the plain shared cluster).
    let plain_db = sequin_pgtemp::Database::create("tls_plain").unwrap();
    let no_ssl = refused(&format!("{}?sslmode=require", plain_db.url)).await;
    assert!(
        no_ssl.ends_with(
            "the server does not accept SSL connections, and database_url has sslmode=require: enable ssl on the server (ssl = on), or set sslmode=prefer"
        ),
        "{no_ssl}"
    );
    // prefer goes on in plain text there.
    let plain = store::connect(&plain_db.url).await.expect("prefer, no SSL");
    assert!(!server_sees_ssl(&plain).await);

    // A client certificate instead of a password (pg_hba `cert`).
    cluster()
        .psql("postgres", &format!("CREATE ROLE {CERT_USER} LOGIN"))
        .unwrap();
    let (cert, key) = cluster()
        .ca()
        .unwrap()
        .client(CERT_USER)
        .unwrap()
        .write(&dir, "client")
        .unwrap();
    let with_cert = store::connect(&format!(
        "postgres://{CERT_USER}@localhost:{port}/{db}?sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    ))
    .await
    .expect("the client certificate logs in");
    let user: String = with_cert
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, CERT_USER);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scratch directory.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sequin-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// psycopg: prints whether libpq encrypted the session, the id of a
/// customer inserted through the proxy, and whether the proxy's session to
/// the server is encrypted.
const PSYCOPG_SCRIPT: &str = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    print("client_ssl", conn.pgconn.ssl_in_use)
    row = conn.execute("insert into stripe.customer (name) values ('Psycopg TLS') returning id").fetchone()
    print("id", row[0])
    ssl = conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()[0]
    print("server_ssl", ssl)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_over_tls_to_a_proxy_whose_upstream_is_tls() {
    let python = tokio::task::spawn_blocking(python_env).await.unwrap();
    let db = database("tls_drivers");
    let (port, ca) = (cluster().port(), ca());
    let dir = tempfile_dir("tls-proxy-cert");
    let (proxy_cert, proxy_key) = cluster()
        .ca()
        .unwrap()
        .server(&["localhost"])
        .unwrap()
        .write(&dir, "proxy")
        .unwrap();
    let sim = stripe_sim().await;
    let proxy_port = sequin_pgtemp::free_port().unwrap();
    let db_url = url(
        "localhost",
        port,
        &db,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let config = format!(
        "database_url: \"{db_url}\"\nproxy:\n  listen: 127.0.0.1:{proxy_port}\n  tls_cert: {}\n  tls_key: {}\nconnections:\n{}",
        proxy_cert.display(),
        proxy_key.display(),
        stripe_connection(&sim, "customer")
    );
    let running = Running::start(&config);
    let pg = store::connect(&db_url).await.unwrap();
    wait_live(&pg, "stripe", Duration::from_secs(120)).await;
    // Clients check the proxy's certificate as they would the server's.
    let client_url = |channel_binding: &str| {
        format!(
            "postgresql://{SUPERUSER}:{PASSWORD}@localhost:{proxy_port}/{db}?sslmode=verify-full&sslrootcert={ca}&channel_binding={channel_binding}"
        )
    };

    // tokio-postgres with Sequin's rustls connector.
    let tokio_url = client_url("disable");
    let (params, rest) = sequin_proxy::SslParams::split_url(&tokio_url).unwrap();
    let tls = params.load().unwrap();
    let start = std::time::Instant::now();
    let client = loop {
        let mut config: tokio_postgres::Config = rest.parse().unwrap();
        match sequin_runtime::tls::connect(&mut config, &tls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                break client;
            }
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("tokio-postgres through the TLS proxy: {e}"),
        }
    };
    assert!(server_sees_ssl(&client).await, "the upstream is TLS");
    let id: String = client
        .query_one(
            "INSERT INTO stripe.customer (name) VALUES ('Tokio TLS') RETURNING id",
            &[],
        )
        .await
        .expect("write-through, TLS on both sides")
        .get(0);
    assert_eq!(
        sim.stripe().get(Kind::Customer, &id).expect("in Stripe")["name"],
        "Tokio TLS"
    );
    // tokio-postgres offers channel binding when it can (channel_binding=
    // prefer): the proxy says what to do instead of the server's downgrade
    // error.
    let mut config: tokio_postgres::Config = rest
        .replace("channel_binding=disable", "channel_binding=prefer")
        .parse()
        .unwrap();
    let binding = sequin_runtime::tls::connect(&mut config, &tls)
        .await
        .err()
        .expect("channel binding cannot pass the proxy");
    let binding = binding
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| binding.to_string());
    assert!(
        binding.contains(
            "the Sequin proxy cannot relay SCRAM channel binding (it holds TLS to you and to the server): connect with channel_binding=disable"
        ),
        "{binding}"
    );

    // psql.
    let run_psql = |url: String| {
        std::process::Command::new(psql())
            .args(["-X", "-q", "-A", "-t", "-d", &url])
            .args([
                "-c",
                "INSERT INTO stripe.customer (name) VALUES ('Psql TLS') RETURNING id",
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ])
            .output()
            .expect("psql runs")
    };
    let out = run_psql(client_url("disable"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("cus_"), "{stdout}");
    assert_eq!(lines[1], "t", "the upstream is TLS: {stdout}");
    assert_eq!(
        sim.stripe()
            .get(Kind::Customer, lines[0])
            .expect("in Stripe")["name"],
        "Psql TLS"
    );
    // libpq's default (channel_binding=prefer over TLS) is told what to do.
    let out = run_psql(client_url("prefer"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot relay SCRAM channel binding")
            && stderr.contains("connect with channel_binding=disable"),
        "{stderr}"
    );
    // A client that demands channel binding gets libpq's own refusal: the
    // proxy offers none.
    let out = run_psql(client_url("require"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "channel binding is required, but server did not offer an authentication method that supports channel binding"
        ),
        "{stderr}"
    );

    // psycopg 3 (libpq underneath).
    let (ok, out, err) = run_script(
        tokio::process::Command::new(&python)
            .args(["-c", PSYCOPG_SCRIPT])
            .arg(client_url("disable")),
    )
    .await;
    assert!(ok, "psycopg through the TLS proxy:\n{out}\n{err}");
    assert!(out.contains("client_ssl True"), "{out}");
    assert!(out.contains("server_ssl True"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id "))
        .unwrap_or_else(|| panic!("{out}"));
    sequin_e2e::eventually(
        Duration::from_secs(10),
        "psycopg's customer in Stripe",
        || async {
            let rec = sim.stripe().get(Kind::Customer, id);
            (rec.is_some(), rec)
        },
    )
    .await;

    running.stop().await.expect("the engine stops cleanly");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pass-through proxy (the real listener and sessions) to the TLS
/// cluster, its upstream read from `database_url` as `sequin proxy` does.
async fn proxy_to(database_url: &str) -> sequin_proxy::ProxyHandle {
    let upstream = sequin_runtime::serve::upstream(database_url).expect("a valid upstream");
    let config = sequin_proxy::ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    sequin_proxy::Proxy::bind(config, std::sync::Arc::new(sequin_proxy::PassThrough))
        .await
        .expect("the proxy binds")
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_upstream_allow_and_a_refused_certificate() {
    let db = database("tls_proxy_upstream");
    let port = cluster().port();
    let client_url = |proxy: &sequin_proxy::ProxyHandle| {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            proxy.local_addr().port()
        )
    };

    // allow: the server refuses the plain session, the proxy tries TLS.
    let allow = proxy_to(&url("127.0.0.1", port, &db, "sslmode=allow")).await;
    let (client, conn) = tokio_postgres::connect(&client_url(&allow), tokio_postgres::NoTls)
        .await
        .expect("sslmode=allow gets through over TLS");
    tokio::spawn(conn);
    assert!(server_sees_ssl(&client).await);
    allow.shutdown(Duration::from_secs(1)).await;

    // verify-full to an address the certificate does not name: the client
    // learns why the proxy cannot reach the server.
    let wrong_host = proxy_to(&url(
        "127.0.0.1",
        port,
        &db,
        &format!("sslmode=verify-full&sslrootcert={}", ca()),
    ))
    .await;
    let e = tokio_postgres::connect(&client_url(&wrong_host), tokio_postgres::NoTls)
        .await
        .err()
        .expect("the proxy cannot verify the server");
    let message = e.as_db_error().expect("a FATAL from the proxy").message();
    assert!(
        message.starts_with(&format!(
            "the proxy cannot reach the database server: TLS with the upstream server 127.0.0.1:{port}: the server's certificate is not valid for host `127.0.0.1`"
        )),
        "{message}"
    );
    wrong_host.shutdown(Duration::from_secs(1)).await;
}
