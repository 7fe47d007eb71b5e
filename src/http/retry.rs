//! When to try again, and how long to wait: Google's retry guidance for its
//! OAuth2 and IAM endpoints (<https://cloud.google.com/storage/docs/retry-strategy>,
//! the policy google-auth and google-cloud-rust apply): connection errors,
//! timeouts, 408, 429 and 5xx are retried with exponential backoff and
//! jitter; other 4xx are answers, not accidents.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Worth another attempt.
pub fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Exponential backoff with jitter: ~100 ms, 200 ms, 400 ms… capped at 3 s,
/// each scaled by a random factor in [0.5, 1.0).
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << attempt.saturating_sub(1).min(10));
    let base = base.min(Duration::from_secs(3));
    let r = RandomState::new().build_hasher().finish();
    let factor = 0.5 + (r % 1000) as f64 / 2000.0;
    base.mul_f64(factor)
}

/// `Retry-After` in seconds (the form Google uses), capped at 10 s.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(10)))
}

/// The time attempt `attempt` (1-based) of `max_attempts` may take out of
/// `remaining`: each but the last gets its share (at least a second), so one
/// stalled request cannot use up the whole budget and leave nothing to retry
/// with: 30 s and 3 attempts give 10 s each.
pub fn attempt_budget(attempt: u32, max_attempts: u32, remaining: Duration) -> Duration {
    if attempt >= max_attempts {
        return remaining;
    }
    let share = remaining / (max_attempts - attempt + 1);
    remaining.min(share.max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) < Duration::from_millis(100));
        assert!(backoff(1) >= Duration::from_millis(50));
        assert!(backoff(20) <= Duration::from_secs(3));
    }

    #[test]
    fn each_attempt_but_the_last_gets_its_share() {
        let b = attempt_budget(1, 3, Duration::from_secs(30));
        assert_eq!(b, Duration::from_secs(10));
        assert_eq!(
            attempt_budget(3, 3, Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        assert_eq!(
            attempt_budget(1, 3, Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }
}
