//! The proxy benchmark, runnable without xtask and sequin-devtool:
//! `cargo bench -p sequin-proxy --bench pgbench -- [--duration N ...]`.
//! The code is `tests/devtool/src/bench_proxy.rs` (also `cargo xtask bench proxy`).

#[path = "../../tests/devtool/src/bench_proxy.rs"]
mod bench_proxy;
#[path = "../../tests/devtool/src/report.rs"]
mod report;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: bench_proxy::BenchProxyArgs,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    bench_proxy::run(cli.args)
}
