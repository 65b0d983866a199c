//! pgbench's own checks pass through the proxy: initialization (which
//! loads data with COPY) and the TPC-B-like script in the simple, extended
//! and prepared protocols, with pgbench verifying every reply.

use crate::common;

use common::*;
use sequin_pgtemp::shared;

async fn pgbench(cluster: &sequin_pgtemp::Cluster, port: u16, db: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(cluster.bindir().join("pgbench"))
        .args(args)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            db,
        ])
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_checks_pass_in_every_protocol_mode() {
    let cluster = shared().unwrap();
    let db = database(cluster, "bench");
    let proxy = plain_proxy(cluster).await;
    let port = proxy.local_addr().port();
    pgbench(cluster, port, &db, &["-i", "-s", "2", "-q"]).await;
    for mode in ["simple", "extended", "prepared"] {
        let text = pgbench(
            cluster,
            port,
            &db,
            &["-n", "-M", mode, "-c", "4", "-j", "2", "-t", "250"],
        )
        .await;
        assert!(
            text.contains("number of transactions actually processed: 1000/1000"),
            "-M {mode}:\n{text}"
        );
        assert!(
            text.contains("number of failed transactions: 0 "),
            "-M {mode}:\n{text}"
        );
        let text = pgbench(
            cluster,
            port,
            &db,
            &["-n", "-S", "-M", mode, "-c", "2", "-t", "500"],
        )
        .await;
        assert!(
            text.contains("number of transactions actually processed: 1000/1000"),
            "-S -M {mode}:\n{text}"
        );
    }
    // The work really went through: history has one row per TPC-B
    // transaction (`-n` keeps pgbench from truncating it between runs).
    let direct = connect(&cluster.url(&db)).await;
    let n: i64 = direct
        .query_one("select count(*) from pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3000);
}
