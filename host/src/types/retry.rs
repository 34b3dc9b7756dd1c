//! How a failed run is retried: aio-fluid's `RetryPolicy`.

use serde::Serialize;
use std::time::Duration;

/// Retry policy, as aio-fluid's `RetryPolicy`: `delay(n) = min(wait * backoff^(n-1), max_wait)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// The wait before the first retry.
    #[serde(serialize_with = "secs")]
    pub wait: Duration,
    /// What each later wait is multiplied by (1.0: a fixed wait).
    pub backoff: f64,
    /// The longest wait.
    #[serde(serialize_with = "secs")]
    pub max_wait: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: None, wait: Duration::from_secs(1), backoff: 1.0, max_wait: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// At most `max_attempts` retries, a second apart unless set otherwise.
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy { max_attempts: Some(max_attempts), ..Default::default() }
    }
    /// Sets the wait before the first retry.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
    /// Sets the factor between consecutive waits.
    pub fn backoff(mut self, backoff: f64) -> Self {
        self.backoff = backoff;
        self
    }
    /// Sets the longest wait.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Delay before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(i32::MAX as u32) as i32;
        let secs = self.wait.as_secs_f64() * self.backoff.powi(exp);
        let secs = if secs.is_finite() { secs } else { f64::MAX };
        Duration::from_secs_f64(secs.min(self.max_wait.as_secs_f64()).max(0.0))
    }

    /// Whether retry number `attempt` (1-based) is allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_is_fixed_exponential_and_capped() {
        let fixed = RetryPolicy::new(3).wait(Duration::from_secs(2));
        assert_eq!(fixed.delay(1), Duration::from_secs(2));
        assert_eq!(fixed.delay(3), Duration::from_secs(2));
        let exp = RetryPolicy::new(5).wait(Duration::from_secs(1)).backoff(2.0).max_wait(Duration::from_secs(5));
        let delays: Vec<u64> = (1..=5).map(|n| exp.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(RetryPolicy::new(1).backoff(1e300).delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn retry_attempts_are_bounded_unless_unlimited() {
        let p = RetryPolicy::new(2);
        assert!(p.allows(1) && p.allows(2) && !p.allows(3));
        assert!(RetryPolicy::default().allows(1_000_000));
    }
}
