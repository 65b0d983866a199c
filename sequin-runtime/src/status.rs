//! `sequin status`: per connection and object, phase, rows, last poll, lag
//! and last error; below it the API quotas (what is left, the floors, which
//! reads are paused and why) and write-through's journal: API effects per
//! connection by outcome. They are read from the views `sequin.status`,
//! `sequin.write_status` (migration 0007) and `sequin.quota_status` (0009),
//! which applications and dashboards query too: one definition of what the
//! status is. Last, which process syncs which connection
//! (`sequin.lease_status`, 0012) and the rate-limit slots each account's
//! processes hold (`sequin.rate_status`, 0013).

use std::fmt::Write as _;

use tokio_postgres::Client;

use crate::store::StoreError;

/// One line of the status table.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectStatus {
    pub connection: String,
    pub object: String,
    /// `live`, `backfilling`, or `backfilling 42%` when the API gave the
    /// listing's size; `, paused` when the quota holds its reads back.
    pub phase: String,
    /// Rows in the table; `None` when it could not be counted.
    pub rows: Option<i64>,
    pub seconds_since_poll: Option<f64>,
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
}

/// Reads the status of every object (`sequin.status`).
pub async fn read(client: &Client) -> Result<Vec<ObjectStatus>, StoreError> {
    let rows = client
        .query(
            "SELECT connection, object, phase, backfill_percent, rows, seconds_since_poll,
                    lag_seconds, last_error, paused
               FROM sequin.status
              WHERE NOT (connection = 'sequin' AND object LIKE 'sink:%')
              ORDER BY connection, object",
            &[],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "reading sequin.status (has `sequin migrate` run?)".into(),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| ObjectStatus {
            connection: r.get(0),
            object: r.get(1),
            phase: phase_text(r.get(2), r.get(3), r.get::<_, Option<String>>(8).is_some()),
            rows: r.get(4),
            seconds_since_poll: r.get(5),
            lag_seconds: r.get(6),
            last_error: r.get(7),
        })
        .collect())
}

/// The phase as shown: a backfill with a known total says how far it is
/// (`sequin.backfill_percent`), and an object whose reads the quota holds
/// back says so (the quota section below says why).
fn phase_text(phase: &str, percent: Option<i32>, paused: bool) -> String {
    let text = match (phase, percent) {
        ("backfilling", Some(p)) => format!("backfilling {p}%"),
        _ => phase.to_string(),
    };
    if paused {
        format!("{text}, paused")
    } else {
        text
    }
}

/// One counter of a connection's API quota (`sequin.quota_status`).
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaStatus {
    pub connection: String,
    pub quota: String,
    pub max: Option<i64>,
    pub remaining: Option<i64>,
    /// Polls pause at it (None: the counter is shown only).
    pub floor: Option<i64>,
    pub backfill_floor: Option<i64>,
    /// `backfill` or `backfill, poll`, and why.
    pub paused: Option<String>,
    pub reason: Option<String>,
}

/// Reads `sequin.quota_status` (empty when no connection reads a quota).
pub async fn read_quotas(client: &Client) -> Result<Vec<QuotaStatus>, StoreError> {
    let rows = client
        .query(
            "SELECT connection, quota, max, remaining, floor, backfill_floor, paused, reason
               FROM sequin.quota_status
              ORDER BY connection, quota",
            &[],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "reading sequin.quota_status (has `sequin migrate` run?)".into(),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| QuotaStatus {
            connection: r.get(0),
            quota: r.get(1),
            max: r.get(2),
            remaining: r.get(3),
            floor: r.get(4),
            backfill_floor: r.get(5),
            paused: r.get(6),
            reason: r.get(7),
        })
        .collect())
}

/// Renders the quotas; empty when there are none.
pub fn render_quotas(items: &[QuotaStatus]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let n = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut out = String::from("\nAPI QUOTA (sequin.quota_status)\n");
    let _ = writeln!(
        out,
        "{:<12}  {:<22}  {:>10}  {:>10}  {:>8}  {:>14}  PAUSED",
        "CONNECTION", "QUOTA", "REMAINING", "MAX", "FLOOR", "BACKFILL FLOOR"
    );
    for q in items {
        let paused = match (&q.paused, &q.reason) {
            (Some(p), Some(why)) if q.floor.is_some() => format!("{p} ({why})"),
            (Some(p), None) if q.floor.is_some() => p.clone(),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<12}  {:<22}  {:>10}  {:>10}  {:>8}  {:>14}  {paused}",
            q.connection,
            q.quota,
            n(q.remaining),
            n(q.max),
            n(q.floor),
            n(q.backfill_floor),
        );
    }
    out
}

/// One sink, from `sequin.sink_status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SinkStatus {
    pub sink: String,
    pub kind: String,
    /// `delivering`, `failing` or `paused`.
    pub state: String,
    pub delivered: i64,
    pub retrying: i64,
    pub blocked: i64,
    pub dead: i64,
    /// Age of the oldest event not delivered yet (0 when caught up).
    pub lag_seconds: f64,
    pub last_error: Option<String>,
}

/// Reads `sequin.sink_status` (empty without sinks).
pub async fn read_sinks(client: &Client) -> Result<Vec<SinkStatus>, StoreError> {
    let rows = client
        .query(
            "SELECT sink, kind, state, delivered, retrying, blocked, dead, lag_seconds, last_error
               FROM sequin.sink_status ORDER BY sink",
            &[],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "reading sequin.sink_status (has `sequin migrate` run?)".into(),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| SinkStatus {
            sink: r.get(0),
            kind: r.get(1),
            state: r.get(2),
            delivered: r.get(3),
            retrying: r.get(4),
            blocked: r.get(5),
            dead: r.get(6),
            lag_seconds: r.get(7),
            last_error: r.get(8),
        })
        .collect())
}

/// Renders the sinks; empty when there are none.
pub fn render_sinks(items: &[SinkStatus]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nEVENT SINKS (sequin.sink_status)\n");
    let _ = writeln!(
        out,
        "{:<16}  {:<8}  {:<10}  {:>10}  {:>8}  {:>8}  {:>6}  {:>8}  LAST ERROR",
        "SINK", "KIND", "STATE", "DELIVERED", "RETRYING", "BLOCKED", "DEAD", "LAG"
    );
    for k in items {
        let _ = writeln!(
            out,
            "{:<16}  {:<8}  {:<10}  {:>10}  {:>8}  {:>8}  {:>6}  {:>7.1}s  {}",
            k.sink,
            k.kind,
            k.state,
            k.delivered,
            k.retrying,
            k.blocked,
            k.dead,
            k.lag_seconds,
            k.last_error.as_deref().unwrap_or("-"),
        );
    }
    out
}

/// A process of `sequin.worker` and the connections it syncs, from
/// `sequin.lease_status`; `holder` `None` gathers the connections no live
/// process holds.
#[derive(Clone, Debug, PartialEq)]
pub struct HolderStatus {
    pub holder: Option<String>,
    pub connections: Vec<String>,
    /// Seconds since the holder's last heartbeat.
    pub heartbeat_seconds: Option<f64>,
}

/// Reads which process syncs which connection (empty before any process
/// took a lease).
pub async fn read_holders(client: &Client) -> Result<Vec<HolderStatus>, StoreError> {
    let rows = client
        .query(
            "SELECT holder, array_agg(connection ORDER BY connection),
                    extract(epoch FROM now() - max(heartbeat_at))::float8
               FROM sequin.lease_status GROUP BY holder ORDER BY holder NULLS LAST",
            &[],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "reading sequin.lease_status (has `sequin migrate` run?)".into(),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| HolderStatus {
            holder: r.get(0),
            connections: r.get(1),
            heartbeat_seconds: r.get(2),
        })
        .collect())
}

/// Renders which process syncs which connection; empty when no lease
/// exists.
pub fn render_holders(items: &[HolderStatus]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nPROCESSES (sequin.lease_status)\n");
    let _ = writeln!(
        out,
        "{:<32}  {:>11}  {:<12}  CONNECTIONS",
        "PROCESS", "CONNECTIONS", "HEARTBEAT"
    );
    for h in items {
        let shown: Vec<&str> = h.connections.iter().take(8).map(String::as_str).collect();
        let more = h.connections.len().saturating_sub(shown.len());
        let _ = writeln!(
            out,
            "{:<32}  {:>11}  {:<12}  {}{}",
            h.holder.as_deref().unwrap_or("(no live process)"),
            h.connections.len(),
            h.holder
                .as_ref()
                .map_or("-".into(), |_| ago(h.heartbeat_seconds)),
            shown.join(", "),
            if more > 0 {
                format!(", ... ({more} more)")
            } else {
                String::new()
            },
        );
    }
    out
}

/// One API account's slots, from `sequin.rate_status`: what the processes
/// sharing its rate limit hold now.
#[derive(Clone, Debug, PartialEq)]
pub struct RateStatus {
    /// The budget's key: connector and a digest of the account.
    pub account: String,
    /// Processes holding slots.
    pub processes: i64,
    /// Slots held, reads included.
    pub total: i64,
    pub reads: i64,
    /// The highest lane a process waits with: backfill, poll or write.
    pub waiting: Option<String>,
    /// Seconds every process still holds back after a 429.
    pub paused_seconds: Option<f64>,
}

/// Reads what each account's processes hold (empty when none holds any).
pub async fn read_rates(client: &Client) -> Result<Vec<RateStatus>, StoreError> {
    let rows = client
        .query(
            "SELECT account, count(*), sum(total)::bigint, sum(reads)::bigint,
                    CASE max(wants) WHEN 3 THEN 'write' WHEN 2 THEN 'poll' WHEN 1 THEN 'backfill' END,
                    extract(epoch FROM max(paused_until) - now())::float8
               FROM sequin.rate_status GROUP BY account ORDER BY account",
            &[],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "reading sequin.rate_status (has `sequin migrate` run?)".into(),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| RateStatus {
            account: r.get(0),
            processes: r.get(1),
            total: r.get(2),
            reads: r.get(3),
            waiting: r.get(4),
            paused_seconds: r.get::<_, Option<f64>>(5).filter(|s| *s > 0.0),
        })
        .collect())
}

/// Renders the slots each account's processes hold; empty when none does.
pub fn render_rates(items: &[RateStatus]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nRATE LIMITS (sequin.rate_status)\n");
    let _ = writeln!(
        out,
        "{:<40}  {:>9}  {:>5}  {:>5}  {:<8}  PAUSED",
        "ACCOUNT", "PROCESSES", "SLOTS", "READS", "WAITING"
    );
    for r in items {
        let _ = writeln!(
            out,
            "{:<40}  {:>9}  {:>5}  {:>5}  {:<8}  {}",
            r.account,
            r.processes,
            r.total,
            r.reads,
            r.waiting.as_deref().unwrap_or("-"),
            r.paused_seconds
                .map_or("-".into(), |s| format!("{s:.1}s more")),
        );
    }
    out
}

fn ago(s: Option<f64>) -> String {
    match s {
        None => "never".into(),
        Some(s) if s < 120.0 => format!("{s:.1}s ago"),
        Some(s) if s < 7200.0 => format!("{:.0}m ago", s / 60.0),
        Some(s) => format!("{:.1}h ago", s / 3600.0),
    }
}

/// Renders the status as an aligned table.
pub fn render(items: &[ObjectStatus]) -> String {
    let header = [
        "CONNECTION",
        "OBJECT",
        "PHASE",
        "ROWS",
        "LAST POLL",
        "LAG",
        "LAST ERROR",
    ];
    let mut table: Vec<[String; 7]> = vec![header.map(String::from)];
    for s in items {
        table.push([
            s.connection.clone(),
            s.object.clone(),
            s.phase.clone(),
            s.rows.map_or_else(|| "-".into(), |n| n.to_string()),
            ago(s.seconds_since_poll),
            s.lag_seconds
                .map(|l| format!("{l:.1}s"))
                .unwrap_or_else(|| "-".into()),
            s.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &table {
        for (i, cell) in r.iter().enumerate() {
            if i == 6 {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    }
    out
}

/// Write-through's API effects of one connection, by journal state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteStatus {
    pub connection: String,
    /// Transaction still open (`intent`, `applied`).
    pub pending: i64,
    pub committed: i64,
    /// Undone at the API after a rollback.
    pub compensated: i64,
    /// Deletes whose transaction rolled back (the local row was removed).
    pub irreversible: i64,
    /// Undoing failed, would have overwritten another change, or the
    /// outcome is unknown.
    pub failed: i64,
    pub last_failure: Option<String>,
}

/// One row of `sequin.write_status`: a connection's journal entries in one
/// state.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalCount {
    pub connection: String,
    pub state: String,
    pub entries: i64,
    /// When the latest of them was settled (or made, if none is).
    pub last_at: chrono::DateTime<chrono::Utc>,
    /// The latest error among them.
    pub last_error: Option<String>,
}

/// Reads `sequin.write_status` (nothing before write-through was ever
/// used).
pub async fn read_journal(client: &Client) -> Result<Vec<JournalCount>, StoreError> {
    let rows = client
        .query(
            "SELECT connection, state, entries, last_at, last_error FROM sequin.write_status
              ORDER BY connection, state",
            &[],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "reading sequin.write_status".into(),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| JournalCount {
            connection: r.get(0),
            state: r.get(1),
            entries: r.get(2),
            last_at: r.get(3),
            last_error: r.get(4),
        })
        .collect())
}

/// The journal's counts per connection, grouped as `sequin status` shows
/// them.
pub async fn read_writes(client: &Client) -> Result<Vec<WriteStatus>, StoreError> {
    Ok(group_writes(&read_journal(client).await?))
}

/// Groups journal states per connection (`counts` ordered by connection).
/// A refused write (`rejected`) had no effect and is not shown.
fn group_writes(counts: &[JournalCount]) -> Vec<WriteStatus> {
    let mut out: Vec<WriteStatus> = Vec::new();
    let mut last_failure_at = None;
    for c in counts {
        if out.last().is_none_or(|w| w.connection != c.connection) {
            out.push(WriteStatus {
                connection: c.connection.clone(),
                ..Default::default()
            });
            last_failure_at = None;
        }
        let w = out.last_mut().expect("pushed above");
        match c.state.as_str() {
            "intent" | "applied" => w.pending += c.entries,
            "committed" => w.committed += c.entries,
            "compensated" => w.compensated += c.entries,
            "irreversible" => w.irreversible += c.entries,
            "compensation_failed" | "conflict" | "unknown" => {
                w.failed += c.entries;
                if c.last_error.is_some() && last_failure_at.is_none_or(|t| t < c.last_at) {
                    w.last_failure = c.last_error.clone();
                    last_failure_at = Some(c.last_at);
                }
            }
            _ => {}
        }
    }
    out
}

/// Renders the journal counts; empty when there are none.
pub fn render_writes(items: &[WriteStatus]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nWRITE-THROUGH (API effects, sequin.write_journal)\n");
    let _ = writeln!(
        out,
        "{:<12}  {:>7}  {:>9}  {:>11}  {:>12}  {:>6}  LAST FAILURE",
        "CONNECTION", "PENDING", "COMMITTED", "COMPENSATED", "IRREVERSIBLE", "FAILED"
    );
    for w in items {
        let _ = writeln!(
            out,
            "{:<12}  {:>7}  {:>9}  {:>11}  {:>12}  {:>6}  {}",
            w.connection,
            w.pending,
            w.committed,
            w.compensated,
            w.irreversible,
            w.failed,
            w.last_failure.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases() {
        assert_eq!(
            phase_text("backfilling", Some(42), false),
            "backfilling 42%"
        );
        assert_eq!(phase_text("backfilling", None, false), "backfilling");
        assert_eq!(phase_text("live", None, false), "live");
        assert_eq!(
            phase_text("backfilling", Some(7), true),
            "backfilling 7%, paused"
        );
    }

    #[test]
    fn renders_quotas() {
        assert_eq!(render_quotas(&[]), "");
        let counter = |quota: &str, floor: Option<i64>| QuotaStatus {
            connection: "sf".into(),
            quota: quota.into(),
            max: Some(15000),
            remaining: Some(2900),
            floor,
            backfill_floor: floor.map(|f| f * 2),
            paused: Some("backfill".into()),
            reason: Some("DailyApiRequests has 2900 of 15000 left".into()),
        };
        let out = render_quotas(&[
            counter("DailyApiRequests", Some(1500)),
            counter("DailyBulkV2QueryJobs", None),
        ]);
        let lines: Vec<&str> = out.trim().lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert_eq!(
            lines[2],
            "sf            DailyApiRequests              2900       15000      1500            3000  backfill (DailyApiRequests has 2900 of 15000 left)"
        );
        assert!(lines[3].ends_with("     -  -"), "shown only: {out}");
    }

    #[test]
    fn journal_states_grouped() {
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
        let count =
            |connection: &str, state: &str, entries: i64, err: Option<&str>, t: i64| JournalCount {
                connection: connection.into(),
                state: state.into(),
                entries,
                last_at: at(t),
                last_error: err.map(String::from),
            };
        let grouped = group_writes(&[
            count("hubspot", "committed", 3, None, 1),
            count("stripe", "applied", 1, None, 1),
            count(
                "stripe",
                "compensation_failed",
                2,
                Some("[Stripe]: gone"),
                5,
            ),
            count(
                "stripe",
                "conflict",
                1,
                Some("[Stripe]: changed meanwhile"),
                3,
            ),
            count("stripe", "intent", 1, None, 1),
            count("stripe", "rejected", 5, Some("[Stripe]: invalid"), 9),
            count("stripe", "unknown", 1, None, 1),
        ]);
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped[0].committed, 3);
        assert_eq!(
            grouped[1],
            WriteStatus {
                connection: "stripe".into(),
                pending: 2,
                failed: 4,
                last_failure: Some("[Stripe]: gone".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn renders_write_counts() {
        assert_eq!(render_writes(&[]), "");
        let out = render_writes(&[WriteStatus {
            connection: "salesforce".into(),
            committed: 12,
            compensated: 1,
            ..Default::default()
        }]);
        let lines: Vec<&str> = out.trim().lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].starts_with("CONNECTION    PENDING  COMMITTED"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("salesforce          0         12            1"),
            "{out}"
        );
    }

    #[test]
    fn renders_holders() {
        let out = render_holders(&[
            HolderStatus {
                holder: Some("web-1:4242:0a1b2c3d".into()),
                connections: (0..10).map(|i| format!("acct_{i}")).collect(),
                heartbeat_seconds: Some(1.25),
            },
            HolderStatus {
                holder: None,
                connections: vec!["acct_10".into()],
                heartbeat_seconds: None,
            },
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "PROCESSES (sequin.lease_status)");
        assert!(lines[3].starts_with("web-1:4242:0a1b2c3d"), "{out}");
        assert!(lines[3].contains(" 10  1.2s ago"), "{out}");
        assert!(lines[3].ends_with("acct_7, ... (2 more)"), "{out}");
        assert!(lines[4].starts_with("(no live process)"), "{out}");
        assert!(lines[4].ends_with("acct_10"), "{out}");
        assert_eq!(render_holders(&[]), "");
    }

    #[test]
    fn renders_rates() {
        assert_eq!(render_rates(&[]), "");
        let out = render_rates(&[RateStatus {
            account: "stripe:account=0a1b2c3d4e5f6071".into(),
            processes: 3,
            total: 25,
            reads: 20,
            waiting: Some("poll".into()),
            paused_seconds: Some(1.5),
        }]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "RATE LIMITS (sequin.rate_status)");
        assert!(
            lines[3].starts_with("stripe:account=0a1b2c3d4e5f6071"),
            "{out}"
        );
        assert!(lines[3].contains("3     25     20  poll"), "{out}");
        assert!(lines[3].ends_with("1.5s more"), "{out}");
    }

    #[test]
    fn renders_sinks() {
        assert_eq!(render_sinks(&[]), "");
        let out = render_sinks(&[SinkStatus {
            sink: "billing".into(),
            kind: "webhook".into(),
            state: "paused".into(),
            delivered: 40,
            retrying: 2,
            blocked: 1,
            dead: 3,
            lag_seconds: 75.0,
            last_error: Some("HTTP 500 from https://example.com/hook".into()),
        }]);
        let lines: Vec<&str> = out.trim().lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].starts_with("SINK              KIND      STATE"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("billing           webhook   paused              40         2         1       3     75.0s  HTTP 500"),
            "{out}"
        );
    }

    #[test]
    fn renders_aligned() {
        let out = render(&[ObjectStatus {
            connection: "stripe".into(),
            object: "customer".into(),
            phase: "live".into(),
            rows: Some(1000),
            seconds_since_poll: Some(0.5),
            lag_seconds: Some(0.5),
            last_error: None,
        }]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("CONNECTION  OBJECT    PHASE  ROWS"));
        assert!(
            lines[1].starts_with("stripe      customer  live   1000  0.5s ago"),
            "{out}"
        );
    }
}
