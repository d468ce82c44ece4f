//! Retry backoff: exponential, capped, so a flapping step does not hammer the machine.

use std::time::Duration;

/// Delay before attempt `next_attempt` (2 = first retry).
pub(crate) fn backoff(base: Duration, next_attempt: u32) -> Duration {
    let exp = next_attempt.saturating_sub(2).min(16);
    let delay = base.saturating_mul(1u32 << exp);
    delay.min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base_and_caps_at_a_minute() {
        let b = Duration::from_millis(500);
        assert_eq!(backoff(b, 2), Duration::from_millis(500));
        assert_eq!(backoff(b, 3), Duration::from_secs(1));
        assert_eq!(backoff(b, 4), Duration::from_secs(2));
        assert_eq!(backoff(b, 30), Duration::from_secs(60));
    }
}
