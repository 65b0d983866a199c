//! `sequin-devtool`: the demo and the benchmarks.
//!
//! Run through `cargo xtask demo ...` and `cargo xtask bench ...`: xtask
//! first installs the system packages these need (this crate links
//! `sequin-proxy`, whose `pg_query` needs libclang to build, and starts
//! throwaway Postgres clusters), then runs this binary with `cargo run`,
//! passing the arguments through. They live apart from xtask so that xtask
//! itself builds on a machine that has only Rust.
//!
//! - `demo`: the main job on an embedded default (throwaway Postgres and
//!   API simulators).
//! - `bench sync|proxy|write|account|bulk|events`: benchmarks, reported as ratios against a
//!   baseline measured in the same run.

mod bench_account;
mod bench_bulk;
mod bench_events;
mod bench_proxy;
mod bench_scale;
mod bench_sync;
mod bench_write;
mod demo;
mod report;
mod sim_child;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sequin-devtool",
    // Usage lines show the command people type.
    bin_name = "cargo xtask",
    about = "Sequin's demo and benchmarks (run them with `cargo xtask demo|bench`)"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The main job: throwaway Postgres + API simulators, migrate, backfill, live sync.
    Demo(demo::DemoArgs),
    /// Benchmarks, each reported against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: BenchWhich,
    },
}

#[derive(Subcommand)]
enum BenchWhich {
    /// Backfill N Stripe customers with `sequin sync --once` (release) and
    /// compare with COPY + upsert of the same rows; peak RSS.
    Sync(bench_sync::BenchSyncArgs),
    /// pgbench through the proxy vs direct Postgres vs PgBouncer (session mode).
    Proxy(bench_proxy::BenchProxyArgs),
    /// Write-through latency (overhead beyond the API call and the Postgres
    /// write, p50/p99) and statements/s with 8 clients vs direct Postgres.
    Write(bench_write::BenchWriteArgs),
    /// `sequin sync --once` of whole seeded Stripe and HubSpot accounts (N
    /// records of every object) under the API's own rate limit: wall time
    /// against the limit's floor, peak RSS, requests and 429s.
    Account(bench_account::BenchAccountArgs),
    /// N records of one Salesforce object backfilled through the REST query
    /// and through one Bulk API 2.0 query job: records/s and API requests,
    /// side by side.
    Bulk(bench_bulk::BenchBulkArgs),
    /// Events (issue #15): events/s into NATS JetStream and a webhook
    /// receiver, p50/p99 commit-to-delivery latency at a steady rate, and
    /// the outbox's cost on a backfill (events off vs on, with and without
    /// backfill rows).
    Events(bench_events::BenchEventsArgs),
    /// Many accounts (issue #16): N Stripe connections of seven objects in
    /// one `sequin sync` against a Postgres of 50 sessions: time to every
    /// object live, Postgres sessions used, peak RSS, CPU per connection
    /// per poll.
    Scale(bench_scale::BenchScaleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo(args) => demo::run(args),
        Task::Bench { which } => match which {
            BenchWhich::Sync(args) => bench_sync::run(args),
            BenchWhich::Proxy(args) => bench_proxy::run(args),
            BenchWhich::Write(args) => bench_write::run(args),
            BenchWhich::Account(args) => bench_account::run(args),
            BenchWhich::Bulk(args) => bench_bulk::run(args),
            BenchWhich::Events(args) => bench_events::run(args),
            BenchWhich::Scale(args) => bench_scale::run(args),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (this crate lives at `tests/devtool`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("sequin-devtool is inside the workspace")
        .to_path_buf()
}
