use std::time::Duration;

use rand::Rng;

/// Capped exponential backoff with "equal jitter": each delay is half the
/// exponential step plus a random share of the other half, so a fleet that lost
/// the broker together does not hammer it together when it comes back.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// Attempts made since the last `reset`.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    pub fn next_delay_with(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self
            .min
            .saturating_mul(2u32.saturating_pow(self.attempt.min(20)))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(rng.random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_caps() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let expected_steps = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for step in expected_steps {
            let d = b.next_delay_with(&mut rng).as_millis() as u64;
            assert!(
                d >= step / 2 && d <= step,
                "delay {d} outside [{}, {step}]",
                step / 2
            );
        }
        assert_eq!(b.attempt(), expected_steps.len() as u32);
        b.reset();
        assert!(b.next_delay_with(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..10_000 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
    }
}
