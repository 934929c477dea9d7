//! Waiting for a condition by asking again and again: the one polling loop
//! of the labs, tests and benchmarks (instead of fixed sleeps).

use anyhow::{bail, Result};
use std::time::Duration;
use tokio::time::Instant;

/// Asks `probe` every `every` until it returns `Some`, for at most
/// `timeout`; returns the value and the time waited. `Err` from the probe
/// ends the wait at once; when time runs out the error names `what`.
///
/// Time is tokio's (a paused test clock works).
///
/// `timeout` is a liveness bound (give up, something is broken), not a
/// speed claim: print the time waited, and keep speed for the benchmarks.
pub async fn poll_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<(T, Duration)> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = probe().await? {
            return Ok((v, t0.elapsed()));
        }
        if t0.elapsed() >= timeout {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn polls_until_ready_and_gives_up() {
        let mut n = 0;
        let (v, took) = poll_until(
            "three",
            Duration::from_secs(10),
            Duration::from_secs(1),
            async || {
                n += 1;
                Ok((n == 3).then_some(n))
            },
        )
        .await
        .unwrap();
        assert_eq!((v, took), (3, Duration::from_secs(2)));
        let e = poll_until(
            "never",
            Duration::from_secs(3),
            Duration::from_secs(1),
            async || Ok(None::<()>),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("never: not within 3s"), "{e}");
        let e = poll_until(
            "fails",
            Duration::from_secs(3),
            Duration::from_secs(1),
            async || bail!("broken") as Result<Option<()>>,
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "broken");
    }
}
