//! The Stripe simulator of the benchmarks, in a child process (this binary
//! re-run with `--serve-sim`), so its CPU is measured apart from Sequin's
//! and the benchmark's: [`serve`] is the child's side, [`start`] the
//! parent's (the kit's `SimChild`, killed on drop).

use std::io::Write as _;

use anyhow::{Context, Result};
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
        println!("listening on {} token {}", sim.base_url(), sim.token());
        std::io::stdout().flush()?;
        // Blocks a worker thread until EOF; the simulator runs on the others.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await?;
        sim.shutdown().await;
        anyhow::Ok(())
    })
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
