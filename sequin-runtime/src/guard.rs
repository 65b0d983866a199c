//! The writer key: what lets a session write synced tables past the guard
//! trigger (`sequin.guard()`, migration 0002).
//!
//! Each `sequin` process draws a random key at start and registers only its
//! SHA-256 digest in `sequin.writer_key`. Its own sessions (the sync engine's
//! writers, the journal) hold the key for their whole life. The proxy, which
//! works in the client's session, uses a fresh key per statement instead
//! ([`statement_key`]), registered inside the client's transaction and
//! removed before the client's next statement: a statement can read the
//! setting while it runs, but the value opens nothing afterwards.

use std::sync::OnceLock;

use rand::RngCore;
use tokio_postgres::Client;

/// The setting the guard reads.
pub const SETTING: &str = "sequin.write_key";

/// This process's key (64 hex characters).
pub fn key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(random_key)
}

/// A new key for one statement applied by the proxy.
pub fn statement_key() -> String {
    random_key()
}

fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes every session opened with `config` hold this process's key from
/// its start: `-c sequin.write_key=<key>` is added to the startup packet's
/// options (after the URL's own), which no statement log, error CONTEXT or
/// `pg_stat_activity` shows.
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

/// Registers the key's digest (once per database is enough; repeating is
/// harmless). The digest is computed here: the key itself is never a
/// parameter of a statement. Without migration 0002 applied there is no
/// guard to pass, and nothing to do.
pub async fn hold(client: &Client) -> Result<(), tokio_postgres::Error> {
    let holder = format!("pid {}", std::process::id());
    let registered = client
        .execute(
            "INSERT INTO sequin.writer_key (digest, holder) VALUES ($1, $2)
             ON CONFLICT (digest) DO NOTHING",
            &[&digest(), &holder],
        )
        .await;
    match registered {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(()),
        Err(e) => Err(e),
    }
}
