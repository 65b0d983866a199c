//! The `sequin` binary: sync APIs into Postgres, and write back through the
//! Postgres proxy.
//!
//! Errors end the process with one line saying what is wrong and how to fix
//! it, and a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sequin_runtime::config::{Config, reload};
use sequin_runtime::process::{self, Halves};
use sequin_runtime::{registry, status, store, sync};

#[derive(Parser)]
#[command(
    name = "sequin",
    version,
    about = "Sync API accounts (Stripe, Salesforce, HubSpot, Airtable, ...) into Postgres tables, \
             and write back to the APIs with plain SQL through Sequin's Postgres proxy.",
    after_help = "Configuration: see sequin.example.yaml (every key is documented there). \
                  Secrets can come from the environment with ${VAR}."
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "sequin.yaml",
        env = "SEQUIN_CONFIG"
    )]
    config: PathBuf,
    /// Log filter (tracing syntax), e.g. `info`, `sequin_runtime=debug`.
    #[arg(long, global = true, default_value = "info", env = "SEQUIN_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the `sequin` schema and the tables of every connection.
    Migrate,
    /// Backfill every configured object, then keep it current.
    Sync {
        /// Backfill and poll once, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Run the Postgres proxy applications connect to (`proxy.listen`).
    Proxy,
    /// Sync and proxy together.
    Run,
    /// Show, per connection and object: phase, rows, last poll, lag, last error.
    Status,
    /// List the compiled-in connectors and their objects.
    Connectors,
    /// Operate a sink's events: retry or discard dead letters, replay.
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
}

/// `sequin events ...`: each calls the SQL function of the same job
/// (`sequin.retry_dead`, `sequin.discard_dead`, `sequin.replay_events`).
#[derive(Subcommand)]
enum EventsAction {
    /// Send a sink's dead-lettered events again (and resume it if paused).
    Retry {
        #[arg(long)]
        sink: String,
        /// Only this event (its `seq`).
        #[arg(long)]
        seq: Option<i64>,
    },
    /// Drop a sink's dead-lettered events (their records' later events go on).
    Discard {
        #[arg(long)]
        sink: String,
        /// Only this event (its `seq`).
        #[arg(long)]
        seq: Option<i64>,
    },
    /// Deliver events the sink has passed again, in order per record.
    Replay {
        #[arg(long)]
        sink: String,
        /// Events committed at or after this time (RFC 3339, e.g. 2026-12-05T10:00:00Z).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Events committed before this time.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this connection's events.
        #[arg(long)]
        connection: Option<String>,
        /// Only this table's events.
        #[arg(long)]
        table: Option<String>,
    },
}

impl EventsAction {
    /// Runs the action; returns what it did and how many events.
    async fn run(&self, client: &tokio_postgres::Client) -> Result<(&'static str, i64)> {
        let row = match self {
            EventsAction::Retry { sink, seq } => (
                "sent again",
                client
                    .query_one("SELECT sequin.retry_dead($1, $2)", &[sink, seq])
                    .await,
            ),
            EventsAction::Discard { sink, seq } => (
                "discarded",
                client
                    .query_one("SELECT sequin.discard_dead($1, $2)", &[sink, seq])
                    .await,
            ),
            EventsAction::Replay {
                sink,
                since,
                until,
                connection,
                table,
            } => (
                "replaying",
                client
                    .query_one(
                        "SELECT sequin.replay_events($1, coalesce($2::timestamptz, '-infinity'), coalesce($3::timestamptz, 'infinity'), $4, $5)",
                        &[sink, since, until, connection, table],
                    )
                    .await,
            ),
        };
        let n = row.1.map_err(|e| match e.as_db_error() {
            Some(d) => anyhow::anyhow!(
                "{}{}",
                d.message(),
                d.hint().map(|h| format!(" ({h})")).unwrap_or_default()
            ),
            None => anyhow::anyhow!("{e}"),
        })?;
        Ok((row.0, n.get(0)))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if terminal && matches!(cli.command, Command::Sync { .. } | Command::Run) {
        // A bar per object during backfill; otherwise (logs to a file or a
        // collector) the backfill logs its progress as structured lines.
        sync::progress::show_bars();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Takes the bars off the screen while a log line is written.
        .with_writer(|| sync::progress::LogWriter)
        .with_ansi(terminal)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Many of our errors already quote
/// their cause in their message (to put the fix after it), so a cause whose
/// text is already there is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A shutdown signal that turns true on Ctrl-C or SIGTERM.
fn stop_on_ctrl_c() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("stopping");
        let _ = tx.send(true);
    });
    rx
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Connectors = cli.command {
        for c in registry::all() {
            let objects: Vec<&str> = c.spec.objects.iter().map(|o| o.name.as_str()).collect();
            let objects = match (objects.is_empty(), c.spec.discovered_objects.is_some()) {
                (true, _) => "(discovered at run time)".to_string(),
                (false, true) => {
                    format!("{}, and tables discovered at run time", objects.join(", "))
                }
                (false, false) => objects.join(", "),
            };
            println!(
                "{:<12} {:<12} {}",
                c.spec.name, c.spec.display_name, objects
            );
        }
        return Ok(());
    }
    let config = Config::load(&cli.config)?;
    let url = config.database_url.expose().to_string();
    match cli.command {
        Command::Migrate => {
            let mut client = store::connect(&url).await?;
            let conns = sequin_runtime::catalog::to_migrate(&config);
            store::migrate_tables(&mut client, &conns).await?;
            sequin_runtime::events::outbox::apply_settings(&client, &config, true).await?;
            println!("migrated: sequin schema and {} connection(s)", conns.len());
        }
        Command::Sync { once: true } => {
            process::run(&config, Halves::Sync { once: true }, stop_on_ctrl_c()).await?;
        }
        Command::Sync { once: false } | Command::Proxy | Command::Run => {
            let halves = match cli.command {
                Command::Proxy => Halves::Proxy,
                Command::Run => Halves::Both,
                _ => Halves::Sync { once: false },
            };
            // SIGHUP reads the config again: connections added, removed or
            // changed are applied without a restart.
            let reloads = reload::on_sighup(cli.config.clone(), config.clone());
            process::run_reloading(&config, halves, stop_on_ctrl_c(), Some(reloads)).await?;
        }
        Command::Status => {
            let client = store::connect(&url).await?;
            print!("{}", status::render(&status::read(&client).await?));
            print!(
                "{}",
                status::render_quotas(&status::read_quotas(&client).await?)
            );
            print!(
                "{}",
                status::render_writes(&status::read_writes(&client).await?)
            );
            print!(
                "{}",
                status::render_sinks(&status::read_sinks(&client).await?)
            );
            print!(
                "{}",
                status::render_holders(&status::read_holders(&client).await?)
            );
            print!(
                "{}",
                status::render_rates(&status::read_rates(&client).await?)
            );
        }
        Command::Events { action } => {
            let client = store::connect(&url).await?;
            let (what, n) = action.run(&client).await?;
            println!("{what}: {n} event(s)");
        }
        Command::Connectors => unreachable!("handled above"),
    }
    Ok(())
}
