//! `sequin-example-consumer`: the example webhook consumer as a program
//! (flags and environment to [`sequin_example_consumer::Config`], then
//! serve). Errors are one line on stderr and exit status 1.

use std::process::ExitCode;

use clap::Parser;

/// Receives Sequin's webhook events, verifies and applies them into its own
/// Postgres.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where to listen (host:port); Sequin's webhook sink posts to
    /// http://<this>/webhook.
    #[arg(long, env = "CONSUMER_LISTEN", default_value = "127.0.0.1:8088")]
    listen: String,
    /// A whsec_ secret Sequin signs with; repeat it (or separate with
    /// commas) while a secret rotates.
    #[arg(
        long = "secret",
        env = "WEBHOOK_SECRETS",
        value_delimiter = ',',
        required = true
    )]
    secrets: Vec<String>,
    /// The consumer's own Postgres (its tables seen and records are created
    /// when missing).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listen = sequin_example_consumer::parse_listen(&args.listen).map_err(anyhow::Error::msg)?;
    let config = sequin_example_consumer::Config {
        secrets: args.secrets,
        database_url: args.database_url,
    };
    let app = sequin_example_consumer::router(&config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {listen}: {e} (fix: pick a free port)"))?;
    eprintln!("sequin-example-consumer: listening on http://{listen}/webhook");
    axum::serve(listener, app).await?;
    Ok(())
}
