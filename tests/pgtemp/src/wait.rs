//! Waiting in tests for what happens in the background (a sync engine, a
//! process of its own): [`eventually`].

use std::time::{Duration, Instant};

/// Waits until `check` holds, polling every 50 ms, or panics after `limit`
/// with `what` and the last value seen.
pub async fn eventually<T: std::fmt::Debug, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, T)>,
{
    let start = Instant::now();
    loop {
        let (ok, last) = check().await;
        if ok {
            return last;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}; last: {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
