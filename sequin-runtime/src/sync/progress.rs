//! Backfill progress of each object: one bar per object on a terminal
//! (`indicatif`), periodic structured log lines otherwise.
//!
//! The binary decides which (stderr is a terminal and logs are the human
//! format) and calls [`show_bars`]; its log lines then go through
//! [`LogWriter`], which takes the bars off the screen while a line is
//! written, so bars and log lines never interleave on one line.

use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of every object, once [`show_bars`] was called.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// How often an object's backfill says how far it is in the log (without
/// bars), after saying so at its first batch. Often enough to see it move,
/// rare enough not to flood the log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Shows backfill progress as bars on stderr from now on, instead of
/// progress log lines. Called by the binary when stderr is a terminal.
pub fn show_bars() {
    let _ = BARS.set(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
}

fn bars() -> Option<&'static MultiProgress> {
    BARS.get()
}

/// Log output for `tracing_subscriber` (`.with_writer(|| LogWriter)`):
/// stderr, with the progress bars suspended while a line is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match bars() {
            Some(m) => m.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Whole percent of `done` out of `total`, at most 100; `None` when the
/// total is unknown (zero or negative counts as unknown).
pub fn percent(done: i64, total: i64) -> Option<u8> {
    if total <= 0 {
        return None;
    }
    let p = (done.max(0) as i128 * 100 / total as i128).min(100);
    Some(p as u8)
}

/// The resident set size of this process in KiB (Linux), for debug logs
/// that show whether memory grows with the volume synced.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The progress of one object's backfill.
pub struct Backfill {
    connection: String,
    table: String,
    done: u64,
    total: Option<u64>,
    /// When the last progress line was logged (`None`: not yet).
    logged_at: Option<Instant>,
    bar: Option<ProgressBar>,
}

fn counting_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {spinner} {human_pos} records ({elapsed}) {msg}")
        .expect("the template is valid")
}

fn total_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {human_pos}/{human_len} {percent}% ({elapsed}, eta {eta}) {msg}",
    )
    .expect("the template is valid")
    .progress_chars("=> ")
}

impl Backfill {
    /// Starts showing an object's backfill; `done` records were committed
    /// by an earlier run it resumes.
    pub fn start(connection: &str, table: &str, done: u64) -> Backfill {
        let bar = bars().map(|m| {
            let bar = m.add(ProgressBar::no_length());
            bar.set_style(counting_style());
            bar.set_prefix(format!("{connection}.{table}"));
            bar.set_position(done);
            bar
        });
        Backfill {
            connection: connection.to_string(),
            table: table.to_string(),
            done,
            total: None,
            logged_at: None,
            bar,
        }
    }

    /// Records committed so far (resumed ones included).
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The listing's size, as the API said it.
    pub fn set_total(&mut self, total: u64) {
        if self.total == Some(total) {
            return;
        }
        self.total = Some(total);
        if let Some(bar) = &self.bar {
            // Records created during the backfill can make it pass the
            // count the API gave at the start.
            bar.set_length(total.max(self.done));
            bar.set_style(total_style());
        }
    }

    /// `records` more were committed.
    pub fn advance(&mut self, records: u64) {
        self.done += records;
        match &self.bar {
            Some(bar) => {
                if self.total.is_some_and(|t| t < self.done) {
                    bar.set_length(self.done);
                }
                bar.set_position(self.done);
            }
            None if self.logged_at.is_none_or(|t| t.elapsed() >= LOG_EVERY) => {
                self.logged_at = Some(Instant::now());
                match self.total {
                    Some(total) => tracing::info!(
                        connection = %self.connection,
                        table = %self.table,
                        records = self.done,
                        total,
                        percent = percent(self.done as i64, total as i64).unwrap_or(0),
                        "backfill progress"
                    ),
                    None => tracing::info!(
                        connection = %self.connection,
                        table = %self.table,
                        records = self.done,
                        "backfill progress"
                    ),
                }
            }
            None => {}
        }
        tracing::debug!(
            connection = %self.connection,
            table = %self.table,
            records = self.done,
            rss_kib = rss_kib().unwrap_or(0),
            "backfill batch committed"
        );
    }

    /// The backfill is complete: the bar stays, full, saying so.
    pub fn finish(mut self) {
        if let Some(bar) = self.bar.take() {
            bar.set_length(self.done);
            bar.finish_with_message("done");
        }
    }
}

impl Drop for Backfill {
    /// A backfill that stopped early (error, shutdown) takes its bar away;
    /// a retry starts a new one.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Some(m) = bars() {
                m.remove(&bar);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_a_known_total() {
        assert_eq!(percent(0, 1000), Some(0));
        assert_eq!(percent(421, 1000), Some(42));
        assert_eq!(percent(1000, 1000), Some(100));
        // Records created during the backfill pass the starting count.
        assert_eq!(percent(1010, 1000), Some(100));
        assert_eq!(percent(5, 0), None);
        assert_eq!(percent(5, -1), None);
        assert_eq!(percent(i64::MAX, i64::MAX), Some(100));
    }

    #[test]
    fn rss_is_read_from_proc() {
        let kib = rss_kib().expect("Linux has /proc/self/status");
        // A test binary is at least a few hundred KiB resident and far
        // below 16 GiB.
        assert!(kib > 100 && kib < 16 * 1024 * 1024, "{kib}");
    }

    #[test]
    fn bar_templates_parse() {
        // `expect`ed at run time: a typo would panic the first backfill.
        let _ = counting_style();
        let _ = total_style();
        // A hidden bar goes through the same calls as a shown one.
        let bar = ProgressBar::hidden();
        bar.set_style(total_style());
        bar.set_length(10);
        bar.set_position(4);
        assert_eq!(bar.position(), 4);
    }

    #[test]
    fn counts_without_bars() {
        let mut p = Backfill::start("stripe", "customer", 5000);
        p.set_total(12_000);
        p.advance(5000);
        p.advance(2000);
        assert_eq!(p.done(), 12_000);
        assert!(p.bar.is_none(), "no bars unless the binary asks for them");
        p.finish();
    }
}
