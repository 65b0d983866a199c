//! `sequin status`: per connection and object, phase, rows, last poll, lag
//! and last error, read from the `sequin` schema. A backfill whose API
//! gave a record count shows how far it is (`backfilling 42%`). Below it,
//! write-through's journal: API effects per connection by outcome.

use std::fmt::Write as _;

use tokio_postgres::Client;

use crate::store::StoreError;

/// One line of the status table.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectStatus {
    pub connection: String,
    pub object: String,
    /// `live`, `backfilling`, or `backfilling 42%` when the API gave the
    /// listing's size.
    pub phase: String,
    pub rows: i64,
    pub seconds_since_poll: Option<f64>,
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
}

/// Reads the status of every object.
pub async fn read(client: &Client) -> Result<Vec<ObjectStatus>, StoreError> {
    let rows = client
        .query(
            "SELECT s.connection, s.object, s.phase, s.rows_synced,
                    extract(epoch FROM now() - s.last_poll_at)::float8,
                    extract(epoch FROM now() - s.last_success_at)::float8,
                    s.last_error, s.backfill_total
               FROM sequin.sync_state s
              ORDER BY s.connection, s.object",
            &[],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "reading sync status (has `sequin migrate` run?)".into(),
            source,
        })?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let connection: String = r.get(0);
        let object: String = r.get(1);
        // Rows in the table now (not the number of upserts so far);
        // pseudo-objects such as the events feed have no table.
        let count = if object.starts_with('_') {
            r.get(3)
        } else {
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                sequin_spec::naming::quote_ident(&connection),
                sequin_spec::naming::quote_ident(&object)
            );
            client
                .query_one(&sql, &[])
                .await
                .map(|c| c.get(0))
                .unwrap_or(-1)
        };
        let phase: String = r.get(2);
        let total: Option<i64> = r.get(7);
        out.push(ObjectStatus {
            phase: phase_text(&phase, count, total),
            connection,
            object,
            rows: count,
            seconds_since_poll: r.get(4),
            lag_seconds: r.get(5),
            last_error: r.get(6),
        });
    }
    Ok(out)
}

/// The phase as shown: a backfill with a known total says how far it is,
/// from the rows in the table (which include those of a resumed run). It
/// stays below 100% until the last batch is committed and the phase is
/// `live`: records created meanwhile can make the table reach the count
/// the API gave at the start before the listing ends.
fn phase_text(phase: &str, rows: i64, total: Option<i64>) -> String {
    match (
        phase,
        total.and_then(|t| crate::sync::progress::percent(rows, t)),
    ) {
        ("backfilling", Some(p)) => format!("backfilling {}%", p.min(99)),
        _ => phase.to_string(),
    }
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
            s.rows.to_string(),
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
    /// Transaction still open.
    pub pending: i64,
    pub committed: i64,
    /// Undone at the API after a rollback.
    pub compensated: i64,
    /// Deletes whose transaction rolled back (the local row was removed).
    pub irreversible: i64,
    /// Undoing failed, was not done because another writer changed the
    /// record meanwhile (`conflict`), or the outcome is unknown.
    pub failed: i64,
    pub last_failure: Option<String>,
}

/// Reads the journal's counts per connection (none before write-through
/// was ever used).
pub async fn read_writes(client: &Client) -> Result<Vec<WriteStatus>, StoreError> {
    let rows = client
        .query(
            "SELECT connection,
                    count(*) FILTER (WHERE state IN ('intent', 'applied')),
                    count(*) FILTER (WHERE state = 'committed'),
                    count(*) FILTER (WHERE state = 'compensated'),
                    count(*) FILTER (WHERE state = 'irreversible'),
                    count(*) FILTER (WHERE state IN ('compensation_failed', 'unknown', 'conflict')),
                    (array_agg(error ORDER BY resolved_at DESC)
                       FILTER (WHERE state IN ('compensation_failed', 'unknown', 'conflict')))[1]
               FROM sequin.write_journal
              GROUP BY connection ORDER BY connection",
            &[],
        )
        .await
        .map_err(|source| StoreError::Db {
            context: "reading the write journal".into(),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| WriteStatus {
            connection: r.get(0),
            pending: r.get(1),
            committed: r.get(2),
            compensated: r.get(3),
            irreversible: r.get(4),
            failed: r.get(5),
            last_failure: r.get(6),
        })
        .collect())
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
    fn backfill_percentages() {
        assert_eq!(
            phase_text("backfilling", 4200, Some(10_000)),
            "backfilling 42%"
        );
        assert_eq!(phase_text("backfilling", 0, Some(10_000)), "backfilling 0%");
        assert_eq!(
            phase_text("backfilling", 10_000, Some(10_000)),
            "backfilling 99%"
        );
        assert_eq!(
            phase_text("backfilling", 12_000, Some(10_000)),
            "backfilling 99%"
        );
        assert_eq!(phase_text("backfilling", 4200, None), "backfilling");
        assert_eq!(phase_text("backfilling", 4200, Some(0)), "backfilling");
        // A table that cannot be counted (-1) is not a negative percentage.
        assert_eq!(phase_text("backfilling", -1, Some(100)), "backfilling 0%");
        assert_eq!(phase_text("live", 10_000, Some(10_000)), "live");
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
    fn renders_aligned() {
        let out = render(&[ObjectStatus {
            connection: "stripe".into(),
            object: "customer".into(),
            phase: "live".into(),
            rows: 1000,
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
