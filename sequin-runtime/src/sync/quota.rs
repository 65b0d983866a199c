//! Keeps `sequin.quota` (migration 0009) current with the connection's
//! quota gate (`api::quota`): what is left of each counter, the floors, and
//! which reads are paused and why, for `sequin status`, `sequin.status` and
//! `sequin.quota_status`. The gate changes with every request; the table is
//! written at most every [`SAVE_EVERY`], and only when something changed.

use std::sync::Arc;
use std::time::Duration;

use super::Ctx;
use crate::api::QuotaGate;
use crate::metrics::QuotaState;
use crate::store::{Origin, StoreError, db};

/// How often the gate is looked at.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Writes the gate's state whenever it changed, until the connection stops.
/// A failed write is logged and tried again at the next change.
pub(super) async fn keep(ctx: Arc<Ctx>, gate: Arc<QuotaGate>) {
    let connection = ctx.api.config.name.clone();
    let sessions = &ctx.sessions;
    let mut saved: Option<QuotaState> = None;
    loop {
        let state = gate.state();
        if saved.as_ref() != Some(&state) {
            let saving = async {
                let session = sessions
                    .pool
                    .lease(Some(&sessions.share), Origin::Sync)
                    .await?;
                save(session.client(), &connection, &state).await
            };
            match saving.await {
                Ok(()) => saved = Some(state),
                Err(e) => {
                    tracing::warn!(%connection, error = %e, "could not record the API's quota");
                }
            }
        }
        if !ctx.sleep(SAVE_EVERY).await {
            return;
        }
    }
}

/// Upserts one row per counter of `state`.
pub(crate) async fn save(
    client: &tokio_postgres::Client,
    connection: &str,
    state: &QuotaState,
) -> Result<(), StoreError> {
    let number = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let read_at = state.read_at.map(chrono::DateTime::<chrono::Utc>::from);
    for c in &state.counters {
        client
            .execute(
                "INSERT INTO sequin.quota AS q
                        (connection, quota, max, remaining, floor, backfill_floor, paused, reason, read_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
                 ON CONFLICT (connection, quota) DO UPDATE
                    SET max = EXCLUDED.max, remaining = EXCLUDED.remaining,
                        floor = EXCLUDED.floor, backfill_floor = EXCLUDED.backfill_floor,
                        paused = EXCLUDED.paused, reason = EXCLUDED.reason,
                        read_at = EXCLUDED.read_at, updated_at = now()",
                &[
                    &connection,
                    &c.quota,
                    &number(c.max),
                    &number(c.remaining),
                    &number(c.floor),
                    &number(c.backfill_floor),
                    &state.paused.text(),
                    &state.reason,
                    &read_at,
                ],
            )
            .await
            .map_err(db("recording the API's quota in sequin.quota"))?;
    }
    Ok(())
}
