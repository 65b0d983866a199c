//! Authentication is relayed (Postgres decides): trust, cleartext password,
//! md5 and SCRAM-SHA-256 succeed with the right password and fail with a
//! wrong one. SSLRequest gets 'S' and a rustls handshake when a certificate
//! is configured, 'N' otherwise; GSSENCRequest gets 'N'.

use crate::common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use sequin_pgtemp::{Auth, Cluster, Options, PASSWORD, SUPERUSER};
use sequin_proxy::codec::startup::{PROTOCOL_3_0, StartupMessage, StartupPacket};
use sequin_proxy::{PassThrough, Proxy, ProxyConfig, TlsConfig, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn check_auth(auth: Auth) {
    let cluster = Cluster::start_with(Options {
        auth,
        ..Default::default()
    })
    .unwrap();
    let proxy = plain_proxy(&cluster).await;
    let url = via(&cluster, &proxy, "postgres");
    let client = connect(&url).await;
    let user: String = client
        .query_one("select current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, SUPERUSER);
    if auth != Auth::Trust {
        let bad = url.replace(PASSWORD, "wrong-password");
        let err = tokio_postgres::connect(&bad, tokio_postgres::NoTls)
            .await
            .err()
            .expect("a wrong password is refused");
        let code = err.as_db_error().map(|e| e.code().code().to_owned());
        assert_eq!(code.as_deref(), Some("28P01"), "{err}");
    }
    // sqlx speaks the same exchanges with its own implementation.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let (n,): (i32,) = sqlx::query_as("select 5").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 5);
    // psql (libpq) too.
    let out = tokio::process::Command::new(cluster.bindir().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-w",
            "-d",
            &url,
            "-c",
            "select 'libpq ok'",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "libpq ok");
}

#[tokio::test]
async fn trust_auth() {
    check_auth(Auth::Trust).await;
}

#[tokio::test]
async fn cleartext_password_auth() {
    check_auth(Auth::Cleartext).await;
}

#[tokio::test]
async fn md5_auth() {
    check_auth(Auth::Md5).await;
}

#[tokio::test]
async fn scram_sha_256_auth() {
    check_auth(Auth::Scram).await;
}

#[tokio::test]
async fn ssl_and_gssenc_requests_without_tls_get_n() {
    let cluster = sequin_pgtemp::shared().unwrap();
    let proxy = plain_proxy(cluster).await;
    for code in [80_877_103i32, 80_877_104] {
        let mut s = tokio::net::TcpStream::connect(proxy.local_addr())
            .await
            .unwrap();
        let mut pkt = 8u32.to_be_bytes().to_vec();
        pkt.extend_from_slice(&code.to_be_bytes());
        s.write_all(&pkt).await.unwrap();
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
        // The client then goes on in plain text on the same connection.
        let mut out = bytes::BytesMut::new();
        StartupPacket::Startup(StartupMessage {
            protocol: PROTOCOL_3_0,
            params: vec![("user".into(), "postgres".into())],
        })
        .encode(&mut out);
        s.write_all(&out).await.unwrap();
        let mut first = [0u8; 1];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"R", "authentication follows");
    }
    // libpq with sslmode=prefer falls back to plain text; require fails.
    let url = via(cluster, &proxy, "postgres");
    let psql = cluster.bindir().join("psql");
    let prefer = tokio::process::Command::new(&psql)
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &format!("{url}?sslmode=prefer"),
            "-c",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        prefer.status.success(),
        "{}",
        String::from_utf8_lossy(&prefer.stderr)
    );
    let require = tokio::process::Command::new(&psql)
        .args([
            "-X",
            "-d",
            &format!("{url}?sslmode=require"),
            "-c",
            "select 1",
        ])
        .output()
        .await
        .unwrap();
    assert!(!require.status.success());
    assert!(
        String::from_utf8_lossy(&require.stderr).contains("does not support SSL"),
        "{}",
        String::from_utf8_lossy(&require.stderr)
    );
}

#[tokio::test]
async fn tls_with_a_configured_certificate() {
    init_tracing();
    let cluster = Cluster::start_with(Options {
        auth: Auth::Scram,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed to make a test certificate");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut config = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Upstream::plain("127.0.0.1", cluster.port()),
    );
    config.tls = Some(TlsConfig {
        cert_chain_pem: cert.clone(),
        private_key_pem: key,
    });
    let proxy = Proxy::bind(config, Arc::new(PassThrough))
        .await
        .unwrap()
        .spawn();
    let url = via(&cluster, &proxy, "postgres");
    let psql = cluster.bindir().join("psql");
    for mode in ["require", "verify-ca"] {
        let out = tokio::process::Command::new(&psql)
            .args(["-X", "-A", "-t", "-w", "-d"])
            .arg(format!(
                "{url}?sslmode={mode}&sslrootcert={}",
                cert.display()
            ))
            .args(["-c", "select 'over tls'"])
            .args(["-c", "copy (select generate_series(1, 100000)) to stdout"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("over tls\n1\n"),
            "{}",
            &text[..50.min(text.len())]
        );
        assert!(text.trim_end().ends_with("100000"));
    }
    // Plain-text clients still work when TLS is offered.
    let client = connect(&url).await;
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}
