//! The events feed refused: a key without the permission to read it
//! (Stripe's restricted keys answer 403) or an API stand-in without one
//! (404). When the spec's `fallback` lists the status, the connection syncs
//! on instead of stopping: each event-driven object is re-listed every
//! interval and diffed against its table (changes upserted, records no
//! longer listed deleted), a child that changes without its parent listed
//! again under every parent (the other children follow their parents).
//!
//! The refusal is logged once, as a warning naming the missing permission
//! and the strategy, and shown in `sequin status` as the `_events` row's
//! last error until the feed is read again (after a restart with a key that
//! may read it: the feed then resumes from its cursor, or, when it was
//! never read, from its oldest retained event).

use std::time::Duration;

use sequin_spec::model::{EventsFallback, Incremental};

use super::events::EVENTS;
use super::{Ctx, SyncError};
use crate::store::Writer;

/// Why the feed is not read, and how often objects are re-listed instead.
#[derive(Clone, Debug)]
pub(super) struct Refused {
    pub every: Duration,
}

/// The fallback `incremental` allows for `err`, if the feed's answer is
/// one it lists.
pub(super) fn applies<'a>(
    incremental: &'a Incremental,
    err: &SyncError,
) -> Option<&'a EventsFallback> {
    let Incremental::Events {
        fallback: Some(f), ..
    } = incremental
    else {
        return None;
    };
    match err {
        SyncError::Api(e) if e.status.is_some_and(|s| f.on_status.contains(&s)) => Some(f),
        _ => None,
    }
}

/// Switches the connection to re-listing: says so once (log and `sequin
/// status`), and from then on event-driven objects poll by re-listing.
pub(super) async fn fall_back(
    ctx: &Ctx,
    writer: &mut Writer,
    fallback: &EventsFallback,
    err: &SyncError,
) -> Result<(), SyncError> {
    let every = ctx
        .api
        .config
        .events_fallback_interval
        .unwrap_or(fallback.every.get());
    if ctx.feed_refused.set(Refused { every }).is_err() {
        return Ok(());
    }
    let name = &ctx.api.config.name;
    let lacks = fallback
        .permission
        .as_deref()
        .map(|p| format!("the key lacks the `{p}` permission"))
        .unwrap_or_else(|| "the key may not read it".into());
    let strategy = format!(
        "re-listing every event-driven object every {} and diffing it against its table instead (changes and deletions then show up within that interval; grant the permission and restart to use the feed)",
        humantime(every)
    );
    tracing::warn!(connection = %name, error = %err, "events feed refused: {lacks}; {strategy}");
    let state = writer.state(name, EVENTS).await?;
    if state.incremental_cursor.is_none() {
        // A feed never read has no cursor; once a key may read it (after a
        // restart), the feed is then read from its oldest retained event,
        // so the changes since the last re-listing are applied (rows never
        // go backwards: older events are ignored).
        writer
            .save_cursor(name, EVENTS, &serde_json::json!({ "event": null }))
            .await?;
    }
    writer
        .record_error(
            name,
            EVENTS,
            &format!("events feed refused ({err}): {lacks}; {strategy}"),
        )
        .await?;
    Ok(())
}

/// Whether an event-driven object last re-listed at `last` (microseconds)
/// is due at `now`: the interval passed, or a `--once` pass has not listed
/// it yet (a backfill of this run did).
pub(super) fn due(ctx: &Ctx, refused: &Refused, last: Option<i64>, now: i64) -> bool {
    last.is_none_or(|t| {
        now - t >= refused.every.as_micros() as i64 || (ctx.opts.once && t < ctx.started_us)
    })
}

/// `5m`, `90s`, `500ms`: an interval as a config would write it.
fn humantime(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        ms if ms % 3_600_000 == 0 && ms > 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 && ms > 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiError, ErrorKind};

    fn stripe_events() -> Incremental {
        crate::registry::get("stripe")
            .expect("stripe is compiled in")
            .spec
            .incremental
            .clone()
            .expect("stripe syncs through its events feed")
    }

    fn http(status: u16) -> SyncError {
        let mut e = ApiError::new("Stripe", ErrorKind::Http, "refused");
        e.status = Some(status);
        SyncError::from(e)
    }

    #[test]
    fn only_the_statuses_the_spec_lists_mean_a_refused_feed() {
        let events = stripe_events();
        assert!(applies(&events, &http(403)).is_some());
        assert!(applies(&events, &http(404)).is_some());
        for other in [400, 401, 429, 500, 503] {
            assert!(applies(&events, &http(other)).is_none(), "{other}");
        }
        assert!(applies(&events, &SyncError::Decode("garbled".into())).is_none());
        assert!(applies(&Incremental::FullRefresh, &http(403)).is_none());
    }

    #[test]
    fn intervals_read_as_written() {
        assert_eq!(humantime(Duration::from_secs(300)), "5m");
        assert_eq!(humantime(Duration::from_secs(90)), "90s");
        assert_eq!(humantime(Duration::from_millis(1500)), "1500ms");
        assert_eq!(humantime(Duration::from_secs(7200)), "2h");
    }
}
