//! Config changes while running: on SIGHUP a process reads its config file
//! again and, when it is valid, hands it to its halves, which add, remove
//! and restart connections without a restart of the process. Only
//! `connections:` is reloaded; a change elsewhere (database_url, pool,
//! sync, proxy, metrics, events, sinks) is named in the log and waits for
//! a restart. A file with an error is refused with its message, and the
//! running config stays.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Config, ConnectionConfig};

/// What changed among the connections, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Connections the new config has and the old did not.
    pub added: Vec<String>,
    /// Connections the old config had and the new does not.
    pub removed: Vec<String>,
    /// Connections of both whose settings differ (restarted with the new ones).
    pub changed: Vec<String>,
}

impl Changes {
    /// The connection changes from `old` to `new`.
    pub fn between(old: &Config, new: &Config) -> Changes {
        let mut changes = Changes::default();
        for c in &new.connections {
            match old.connection(&c.name) {
                None => changes.added.push(c.name.clone()),
                Some(before) if !same(before, c) => changes.changed.push(c.name.clone()),
                Some(_) => {}
            }
        }
        changes.removed = old
            .connections
            .iter()
            .filter(|c| new.connection(&c.name).is_none())
            .map(|c| c.name.clone())
            .collect();
        changes
    }

    /// Whether no connection changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The connections whose tables may be new: added or changed.
    pub fn to_migrate(&self) -> Vec<String> {
        self.added.iter().chain(&self.changed).cloned().collect()
    }
}

/// Whether two connections have the same settings (`Debug` prints secrets
/// as `***`, so the credentials are compared apart).
fn same(a: &ConnectionConfig, b: &ConnectionConfig) -> bool {
    format!("{a:?}") == format!("{b:?}") && a.credentials == b.credentials
}

/// Whether anything but `connections:` differs (which a reload leaves as
/// it was).
pub fn other_settings_differ(old: &Config, new: &Config) -> bool {
    let strip = |c: &Config| {
        let mut c = c.clone();
        c.connections.clear();
        format!("{c:?}")
    };
    strip(old) != strip(new) || old.database_url != new.database_url
}

/// The config, read again from `path` at each SIGHUP: the receiver sees
/// each valid new version (starting from `initial`).
pub fn on_sighup(path: PathBuf, initial: Config) -> watch::Receiver<Arc<Config>> {
    let (tx, rx) = watch::channel(Arc::new(initial));
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: config changes need a restart");
            return;
        };
        while hup.recv().await.is_some() {
            match Config::load(&path) {
                Ok(new) => {
                    let old = tx.borrow().clone();
                    if other_settings_differ(&old, &new) {
                        tracing::warn!(config = %path.display(), "only `connections:` changes are applied on SIGHUP; restart the process for the other changes");
                    }
                    tracing::info!(config = %path.display(), "config read again (SIGHUP)");
                    tx.send_replace(Arc::new(new));
                }
                Err(e) => {
                    tracing::error!(error = %e, "config not reloaded (fix the file and send SIGHUP again); the running config stays")
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(connections: &str) -> Config {
        let text = format!("database_url: postgres://localhost/app\nconnections:\n{connections}");
        Config::parse("s.yaml", &text, &|_| None).unwrap()
    }

    const A: &str = "  - name: a\n    connector: stripe\n    credentials: { api_key: sk_a }\n";
    const B: &str = "  - name: b\n    connector: stripe\n    credentials: { api_key: sk_b }\n";

    #[test]
    fn connections_added_removed_and_changed() {
        let old = config(&format!("{A}{B}"));
        assert!(Changes::between(&old, &old).is_empty());
        let c = "  - name: c\n    connector: stripe\n    credentials: { api_key: sk_c }\n";
        let new = config(&format!("{A}{c}"));
        let changes = Changes::between(&old, &new);
        assert_eq!(changes.added, ["c"]);
        assert_eq!(changes.removed, ["b"]);
        assert!(changes.changed.is_empty());
        // A new secret is a change, though `Debug` prints neither.
        let rotated = config(&format!("{}{B}", A.replace("sk_a", "sk_a2")));
        assert_eq!(Changes::between(&old, &rotated).changed, ["a"]);
        let polled = config(&format!("{A}{B}    poll_interval: 10s\n"));
        assert_eq!(Changes::between(&old, &polled).changed, ["b"]);
        assert_eq!(Changes::between(&old, &polled).to_migrate(), ["b"]);
        assert!(!other_settings_differ(&old, &new));
        let pooled = Config::parse(
            "s.yaml",
            &format!(
                "database_url: postgres://localhost/app\npool: {{ size: 3 }}\nconnections:\n{A}{B}"
            ),
            &|_| None,
        )
        .unwrap();
        assert!(other_settings_differ(&old, &pooled));
    }
}
