//! `sequin-sim`: runs one API simulator until killed, printing `listening on http://ADDR` as the
//! first line on stdout so that a parent process can find the port it picked.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sequin_sim::{Api, SimConfig};

/// Serve a simulated third-party API over HTTP.
///
/// Default credentials (override with --token): stripe `sk_test_sequin` (Bearer, or Basic with the
/// key as user name); salesforce `00Dsequin!sim.access.token` (Bearer); hubspot `pat-na1-sequin`
/// (Bearer); airtable `patSequin.simulator` (Bearer); github `ghp_sequin` (Bearer or `token`).
///
/// Control routes (no auth, no limits, no faults): GET /_sim/stats (counters, incl. the most
/// requests admitted and attempted per rate window per key), POST /_sim/reset-stats,
/// GET|POST /_sim/faults `{"p_5xx":0.3,"p_429":0,"p_truncate":0,"p_reset":0,"latency":0}`
/// (latency in ms), POST /_sim/rate-limit `{"requests":25,"window":1000}` or `null`, plus each
/// API's own routes under /_sim (Stripe and GitHub: the API itself, e.g. /_sim/v1/customers,
/// to change data as another user would).
#[derive(Debug, Parser)]
#[command(name = "sequin-sim", version)]
struct Cli {
    /// stripe | salesforce | hubspot | airtable | github
    #[arg(long)]
    api: Api,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Records seeded per main object.
    #[arg(long, default_value_t = 0)]
    seed_records: usize,
    /// Seed --seed-records records of every object the API serves, not only its main ones
    /// (Stripe: all 78 catalogued objects).
    #[arg(long)]
    seed_every_object: bool,
    /// Accepted credential (default: per API, see above).
    #[arg(long)]
    token: Option<String>,
    /// Stripe: also accept this restricted key, lacking the permissions after `=`
    /// (`rk_test_sequin=rak_event_read,rak_charge_read`); repeatable.
    #[arg(long, value_parser = parse_restricted_key)]
    restricted_key: Vec<(String, Vec<String>)>,
    /// Rate limit in requests per second (default: the API's documented limit; 0: none).
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Probability of answering with the API's 5xx error.
    #[arg(long, default_value_t = 0.0)]
    fault_5xx: f64,
    /// Probability of answering with an injected 429.
    #[arg(long, default_value_t = 0.0)]
    fault_429: f64,
    /// Probability of cutting a successful body short (Content-Length larger than the bytes sent).
    #[arg(long, default_value_t = 0.0)]
    fault_truncate: f64,
    /// Probability of resetting the connection instead of answering.
    #[arg(long, default_value_t = 0.0)]
    fault_reset: f64,
    /// Milliseconds added to every API request.
    #[arg(long, default_value_t = 0)]
    latency: u64,
    /// Seed of all random choices (data, ids, faults).
    #[arg(long, default_value_t = 0x5e9)]
    seed: u64,
}

/// `KEY=perm,perm` (or `KEY` alone: a restricted key lacking nothing).
fn parse_restricted_key(arg: &str) -> Result<(String, Vec<String>), String> {
    let (key, denied) = arg.split_once('=').unwrap_or((arg, ""));
    if !key.starts_with("rk_") {
        return Err(format!(
            "{key:?} is not a restricted key (fix: give one starting with rk_test_ or rk_live_)"
        ));
    }
    let denied = denied
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((key.to_owned(), denied))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = SimConfig {
        api: cli.api,
        token: cli.token,
        seed_records: cli.seed_records,
        seed_every_object: cli.seed_every_object,
        restricted_keys: cli.restricted_key,
        rate_limit: cli.rate_limit,
        fault_5xx: cli.fault_5xx,
        fault_429: cli.fault_429,
        fault_truncate: cli.fault_truncate,
        fault_reset: cli.fault_reset,
        latency: Duration::from_millis(cli.latency),
        rng_seed: cli.seed,
    };
    let sim = sequin_sim::start(cfg, cli.listen)
        .await
        .context("starting the simulator")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", sim.base_url())?;
    out.flush()?;
    drop(out);
    tokio::select! {
        () = sim.wait() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
    }
    Ok(())
}
