//! The Stripe simulator of the benchmarks, in a child process (this binary
//! re-run with `--serve-sim`), so its CPU is measured apart from Sequin's
//! and the benchmark's: [`serve`] is the child's side, [`start`] the
//! parent's (the kit's `SimChild`, killed on drop).

use std::io::{Read as _, Write as _};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sequin_pgtemp::SimChild;

/// The child: Stripe with no rate limit and no latency, `customers` seeded;
/// prints `listening on <url> token <token>` and serves until its stdin
/// closes (the parent exited or is done with it).
pub fn serve(customers: usize) -> Result<()> {
    let cfg = sequin_sim::SimConfig::new(sequin_sim::Api::Stripe).rate_limit(0.0);
    serve_config(cfg, |sim| {
        if customers > 0 {
            sim.stripe().seed_customers(customers);
        }
    })
}

/// The child: `cfg`'s simulator, with `seed` run on it once it listens;
/// serves as [`serve`] does.
pub fn serve_config(cfg: sequin_sim::SimConfig, seed: impl FnOnce(&sequin_sim::Sim)) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sim = sequin_sim::start(cfg, "127.0.0.1:0".parse()?).await?;
        seed(&sim);
        announce_and_wait(&sim).await?;
        sim.shutdown().await;
        anyhow::Ok(())
    })
}

/// The child's side once its simulators listen: prints `listening on <url>
/// token <token>` of `sim` (what [`start`] waits for) and returns when stdin
/// closes (the parent exited or is done with it).
pub async fn announce_and_wait(sim: &sequin_sim::Sim) -> Result<()> {
    println!("listening on {} token {}", sim.base_url(), sim.token());
    std::io::stdout().flush()?;
    // Blocks a worker thread until EOF; the simulators run on the others.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    Ok(())
}

/// The parent: runs this binary with `args` (which select [`serve`]);
/// returns the child and its API token.
pub fn start(args: &[&str]) -> Result<(SimChild, String)> {
    let exe = std::env::current_exe().context("finding the sequin-devtool binary")?;
    let sim = SimChild::spawn(std::process::Command::new(exe).args(args))?;
    let token = sim
        .token
        .clone()
        .context("the simulator child printed no token")?;
    Ok((sim, token))
}

/// One plain HTTP/1.1 request to the simulator's control routes (`/_sim/...`);
/// returns the body (the routes answer with a Content-Length and close).
pub fn control(base_url: &str, path: &str, method: &str) -> Result<String> {
    let addr = base_url
        .strip_prefix("http://")
        .context("the simulator's URL is http")?;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the simulator's answer has no body")?;
    if !head.starts_with("HTTP/1.1 2") {
        bail!("{method} {path}: {}", head.lines().next().unwrap_or(head));
    }
    Ok(body.to_string())
}
