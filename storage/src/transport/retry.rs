//! When to try a request again and how long to wait. Retries cover what heals by itself
//! (server errors, throttling, dropped or stalled connections); everything else is reported
//! at once, since asking again with the same bad key or signature only delays the error.

use std::time::Duration;

/// How many times to try an operation and how long to wait between attempts.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Total attempts per operation, the first included.
    pub max_attempts: u32,
    /// Upper bound of the first backoff, doubled for each further attempt.
    pub base_delay: Duration,
    /// Cap on the backoff before any one attempt.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Litestream's transport retryer: 10 attempts; the AWS SDK's capped exponential backoff.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// "Full jitter" backoff before attempt `attempt + 1`: uniform in [0, min(cap, base·2^n)],
    /// so many clients hit by the same outage do not come back in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let cap = exp.min(self.max_delay);
        let nanos = cap.as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// Something that failed and can say whether trying again may help.
pub(crate) trait Retryable: std::fmt::Display {
    fn is_retryable(&self) -> bool;
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails in a way another try will not cure, or the
    /// attempts run out, waiting [`RetryPolicy::delay`] between tries. `backend` and `target`
    /// name what is being retried in the log.
    pub(crate) async fn run<T, E, F, Fut>(
        &self,
        backend: &'static str,
        target: &str,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut failures = 0;
        loop {
            let err = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            failures += 1;
            if !err.is_retryable() || failures >= self.max_attempts {
                return Err(err);
            }
            let delay = self.delay(failures - 1);
            tracing::warn!(backend, target, error = %err, attempt = failures, ?delay, "request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            let d = p.delay(attempt);
            assert!(d <= p.max_delay);
            assert!(d <= p.base_delay * 2u32.saturating_pow(attempt.min(20)));
        }
    }
}
