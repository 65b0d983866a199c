//! Durations as specs and configs write them: a whole number and a unit
//! (`500ms`, `1s`, `10s`, `5m`, `24h`, `30d`). One grammar for the spec
//! checker, the config and the rate limiter, so what `cargo xtask gen`
//! accepts is exactly what the runtime understands.

use std::time::Duration;

/// Parses a duration; `None` for anything else, zero included.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    let idx = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(idx);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse(" 30d "), Some(Duration::from_secs(2_592_000)));
        for bad in ["0s", "2", "s", "1.5s", "5 minutes", "1 fortnight", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
