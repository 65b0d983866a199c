//! Retry policy: exponential backoff with full jitter, and the server's own
//! wait instructions (`Retry-After` in seconds or as an HTTP date, a reset
//! time in unix seconds).
//!
//! Full jitter (a uniform wait in `[0, min(cap, base * 2^n)]`) spreads the
//! retries of concurrent syncs instead of having them hit the API in lock
//! step. A wait the server asks for is honoured as is: retrying earlier only
//! earns another 429.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

/// How hard to try before giving up.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Most attempts per request (the first one included).
    pub max_attempts: u32,
    /// Give up when the next wait would end later than this after the first
    /// attempt started.
    pub max_elapsed: Duration,
    /// Upper bound of the first backoff wait.
    pub base_delay: Duration,
    /// Upper bound of any backoff wait.
    pub max_delay: Duration,
    /// Timeout of one attempt (connect, send and the whole response body).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(300),
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The cap of the backoff before attempt `retry` (1 = the first retry):
    /// `min(max_delay, base_delay * 2^(retry-1))`.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(30));
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A full-jitter backoff before retry number `retry`: uniform in
    /// `[0, backoff_cap(retry)]`.
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let cap = self.backoff_cap(retry);
        if cap.is_zero() {
            return cap;
        }
        Duration::from_nanos(rng.random_range(0..=cap.as_nanos() as u64))
    }
}

/// Parses a `Retry-After` value: delta seconds, or an HTTP date (then the
/// wait is the time from `now` until it, zero when past).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(date.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a reset header (unix seconds): the wait from `now` until then.
pub fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    let at = UNIX_EPOCH + Duration::from_secs(secs);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        let caps: Vec<u128> = (1..=7).map(|r| p.backoff_cap(r).as_millis()).collect();
        assert_eq!(caps, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(p.backoff_cap(1000), Duration::from_secs(2));
    }

    #[test]
    fn full_jitter_stays_in_range_and_spreads() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let waits: Vec<Duration> = (0..1000).map(|_| p.backoff(3, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(400)));
        // Uniform over [0, 400ms]: both halves are well populated.
        let low = waits
            .iter()
            .filter(|w| **w < Duration::from_millis(200))
            .count();
        assert!((350..650).contains(&low), "{low} of 1000 below the middle");
        let zero = RetryPolicy {
            base_delay: Duration::ZERO,
            ..p
        };
        assert_eq!(zero.backoff(1, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // Wed, 21 Oct 2015 07:27:50 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(
            parse_reset("1445412500", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_reset("1445412000", now), Some(Duration::ZERO));
        assert_eq!(parse_reset("x", now), None);
    }
}
