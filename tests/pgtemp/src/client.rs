//! Client sessions of tests: a tokio-postgres connection whose driver task
//! runs in the background, at once or retried while a server (a proxy that
//! is still starting) comes up. Plain TCP: TLS tests build their own.

use std::time::{Duration, Instant};

/// How long [`connect_when_up`] retries: a proxy starts well within it.
pub const CONNECT_RETRY_LIMIT: Duration = Duration::from_secs(30);

/// Connects to `url`, returning the client and spawning its connection task
/// on the current tokio runtime.
pub async fn try_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Connects to `url`; panics naming the URL and the error.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    try_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// [`try_connect`], retried every 100 ms for at most `limit`; the last
/// error when the server never answered.
pub async fn try_connect_when_up(
    url: &str,
    limit: Duration,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let start = Instant::now();
    loop {
        match try_connect(url).await {
            Ok(client) => return Ok(client),
            Err(e) if start.elapsed() >= limit => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Connects, retrying while the server (a proxy) is still starting, for
/// [`CONNECT_RETRY_LIMIT`]; panics naming the URL and the last error.
pub async fn connect_when_up(url: &str) -> tokio_postgres::Client {
    try_connect_when_up(url, CONNECT_RETRY_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}
