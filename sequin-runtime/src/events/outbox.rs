//! The outbox's side in Postgres: whether changes become events
//! (`sequin.event_settings`), the sinks' rows, and the sequencer, which
//! moves committed outbox rows into `sequin.events` and prunes the log
//! past its retention (migration 0011 says why that order is complete).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_postgres::Client;

use crate::config::{Config, SinkConfig, Start};
use crate::store::{StoreError, db};

/// Writes whether changes become events, and whether a backfill's rows do,
/// from `config` (before the process writes any synced row, so none is
/// missed). A running process only turns them on (another process, or one
/// started with an older config, must not turn off what a sink relies on):
/// `exact`, for `sequin migrate`, writes the config as it is.
pub async fn apply_settings(
    client: &Client,
    config: &Config,
    exact: bool,
) -> Result<(), StoreError> {
    let backfill = config.sinks.iter().any(|s| s.backfill);
    let sql = if exact {
        "UPDATE sequin.event_settings SET emit = $1, backfill = $2
          WHERE emit IS DISTINCT FROM $1 OR backfill IS DISTINCT FROM $2"
    } else {
        "UPDATE sequin.event_settings SET emit = emit OR $1, backfill = backfill OR $2
          WHERE (NOT emit AND $1) OR (NOT backfill AND $2)"
    };
    client
        .execute(sql, &[&config.emits_events(), &backfill])
        .await
        .map_err(db("recording the events settings"))?;
    Ok(())
}

/// Records each configured sink (a new one starts as its `start:` says)
/// and forgets the sinks no longer configured, their cursors and dead
/// letters with them.
pub async fn register_sinks(client: &Client, sinks: &[SinkConfig]) -> Result<(), StoreError> {
    for s in sinks {
        client
            .execute(
                "INSERT INTO sequin.sink (name, kind, cursor)
                 VALUES ($1, $2, CASE WHEN $3 THEN coalesce((SELECT min(seq) FROM sequin.events), 1) - 1
                                      ELSE coalesce((SELECT max(seq) FROM sequin.events), 0) END)
                 ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind
                  WHERE sequin.sink.kind IS DISTINCT FROM EXCLUDED.kind",
                &[&s.name, &s.kind.as_str(), &(s.start == Start::Beginning)],
            )
            .await
            .map_err(db(format!("recording sink `{}`", s.name)))?;
    }
    let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
    let gone = client
        .execute("DELETE FROM sequin.sink WHERE name <> ALL($1)", &[&names])
        .await
        .map_err(db("forgetting sinks no longer configured"))?;
    if gone > 0 {
        tracing::info!(
            sinks = gone,
            "forgot sinks no longer in sequin.yaml (their cursors and dead letters)"
        );
    }
    Ok(())
}

/// How often the sequencer looks for committed changes when the last look
/// found none: the floor of commit-to-delivery latency.
const IDLE: Duration = Duration::from_millis(10);

/// How often the log is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Moves committed outbox rows into the log until `shutdown`, waking
/// `moved` after each move; prunes the log past `retention` every minute.
pub async fn sequence(
    client: Client,
    retention: Duration,
    moved: Arc<Notify>,
    metrics: crate::metrics::Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let mut pruned = Instant::now();
    while !*shutdown.borrow() {
        let n: i64 = client
            .query_one("SELECT sequin.sequence_events()", &[])
            .await
            .map_err(db("sequencing events"))?
            .get(0);
        if n > 0 {
            metrics.events_sequenced(n as u64);
            moved.notify_waiters();
            continue;
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            prune(&client, retention).await?;
            pruned = Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE) => {}
            _ = shutdown.changed() => {}
        }
    }
    Ok(())
}

/// Deletes events older than `retention` that every sink has passed and
/// none holds back.
pub async fn prune(client: &Client, retention: Duration) -> Result<u64, StoreError> {
    let n = client
        .execute(
            "DELETE FROM sequin.events
              WHERE committed_at < now() - make_interval(secs => $1)
                AND seq <= coalesce((SELECT min(cursor) FROM sequin.sink), 9223372036854775807)
                AND seq < coalesce((SELECT min(seq) FROM sequin.sink_parked), 9223372036854775807)",
            &[&retention.as_secs_f64()],
        )
        .await
        .map_err(db("pruning events past their retention"))?;
    if n > 0 {
        tracing::debug!(events = n, "pruned events past their retention");
    }
    Ok(n)
}
