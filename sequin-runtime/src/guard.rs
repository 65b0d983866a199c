//! The process key: what lets Sequin's own sessions write synced tables past
//! the guard trigger (`sequin.guard()`, migrations 0002 and 0006).
//!
//! Each `sequin` process draws a random key at start (and a grant key, for
//! the tokens of `write::grant`). Its own sessions (the
//! sync engine's writers, the journal) carry the key in their startup
//! packet's options, so it never appears in SQL text, a bind parameter, an
//! error's CONTEXT, a statement log or `pg_stat_activity`, and it never
//! enters a client's session: the proxy lets a client's statement write
//! through a grant instead (`write::grant`). Only the key's SHA-256 digest
//! is stored, in `sequin.writer_key`, with an expiry the process renews
//! ([`keep_registered`]); the row is removed when the process stops, and a
//! key whose process died stops working within [`TTL`].

use std::sync::OnceLock;
use std::time::Duration;

use rand::RngCore;
use tokio::sync::watch;
use tokio_postgres::Client;

/// The setting the guard reads.
pub const SETTING: &str = "sequin.write_key";

/// How long a registration lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(120);

/// How often a running process renews its registration.
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// This process's key (64 hex characters).
pub fn key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Makes every session opened with `config` hold this process's key from
/// its start: `-c sequin.write_key=<key>` is added to the startup packet's
/// options (after the URL's own).
pub fn add_startup_option(config: &mut tokio_postgres::Config) {
    let own = format!("-c {SETTING}={}", key());
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} {own}"),
        _ => own,
    };
    config.options(&options);
}

/// The key's SHA-256 digest, the only form of it the database stores.
pub fn digest() -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(key().as_bytes()).to_vec()
}

/// Registers the key's digest, or renews its registration, for [`TTL`],
/// and removes registrations that expired (their processes are gone). The
/// digest is computed here: the key itself is never a statement parameter.
/// Without the `sequin` schema there is no guard to pass, and nothing to
/// do.
pub async fn hold(client: &Client) -> Result<(), tokio_postgres::Error> {
    let holder = format!("pid {} on {}", std::process::id(), hostname());
    let registered = client
        .execute(
            "WITH gone AS (DELETE FROM sequin.writer_key WHERE expires_at < now())
             INSERT INTO sequin.writer_key (digest, holder, expires_at, grant_key)
             VALUES ($1, $2, now() + make_interval(secs => $3), $4)
             ON CONFLICT (digest) DO UPDATE SET expires_at = EXCLUDED.expires_at, grant_key = EXCLUDED.grant_key",
            &[
                &digest(),
                &holder,
                &TTL.as_secs_f64(),
                &crate::write::grant::key().as_slice(),
            ],
        )
        .await;
    match registered {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes this process's registration: its key opens nothing any more.
pub async fn unregister(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM sequin.writer_key WHERE digest = $1",
            &[&digest()],
        )
        .await
        .map(|_| ())
}

/// This process's registration of its key, renewed in the background
/// until [`Registration::stop`].
pub struct Registration {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Users of the registration in this process (sync and proxy in `sequin
/// run`): the last one to stop removes it.
static USERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Registration {
    /// Registers the key on `client`'s database (so the process's first
    /// writes pass the guard) and renews it every 30 s. A failure to renew
    /// is logged and retried; if renewal fails for longer than [`TTL`],
    /// Sequin's own writes are refused by the guard until it succeeds again.
    pub async fn start(url: &str, client: &Client) -> Result<Registration, tokio_postgres::Error> {
        hold(client).await?;
        USERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (stop, mut stopped) = watch::channel(false);
        let url = url.to_string();
        let task = tokio::spawn(async move {
            let mut db: Option<Client> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RENEW_EVERY) => {}
                    _ = async { let _ = stopped.wait_for(|s| *s).await; } => break,
                }
                if db.as_ref().is_none_or(|c| c.is_closed()) {
                    db = crate::store::connect(&url).await.ok();
                }
                if let Some(c) = &db
                    && let Err(e) = hold(c).await
                {
                    tracing::warn!(error = %e, "cannot renew this process's writer key");
                }
            }
            if USERS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) > 1 {
                return;
            }
            if db.as_ref().is_none_or(|c| c.is_closed()) {
                db = crate::store::connect(&url).await.ok();
            }
            if let Some(c) = &db
                && let Err(e) = unregister(c).await
            {
                tracing::warn!(error = %e, "cannot remove this process's writer key (it expires on its own)");
            }
        });
        Ok(Registration { stop, task })
    }

    /// Stops renewing and, unless another part of the process still uses
    /// it, removes the registration.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}
