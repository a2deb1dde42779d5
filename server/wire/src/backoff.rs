//! Exponential backoff with jitter, shared by every retry loop (SDK uploads, the edge agent's
//! lanes, consumer webhooks).

use std::time::Duration;

/// Delays that double from `first` up to `max`, each drawn between half and all of its step so
/// that a fleet of clients does not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The ceiling of the `attempt`th delay (0-based), before jitter.
    pub fn step(&self, attempt: u32) -> Duration {
        self.first.saturating_mul(1u32 << attempt.min(16)).min(self.max)
    }

    /// The `attempt`th delay, jittered: in `[step / 2, step]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.step(attempt).mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_the_ceiling_and_delays_stay_within_half_to_all_of_a_step() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(backoff.step(0), Duration::from_millis(100));
        assert_eq!(backoff.step(3), Duration::from_millis(800));
        assert_eq!(backoff.step(30), Duration::from_secs(5));
        for attempt in 0..20 {
            let (step, delay) = (backoff.step(attempt), backoff.delay(attempt));
            assert!(delay >= step / 2 && delay <= step, "{attempt}: {delay:?} of {step:?}");
        }
    }
}
