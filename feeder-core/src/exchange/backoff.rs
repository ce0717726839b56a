//! Exponential backoff with jitter.

use std::time::Duration;

/// Exponential backoff with full jitter between half and all of the current step.
///
/// Each [`next_delay`](Backoff::next_delay) doubles the step up to `max`;
/// [`reset`](Backoff::reset) after a success starts again from `initial`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    jitter: bool,
}

impl Backoff {
    /// Backoff from `initial` doubling to at most `max`, with jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            current: initial,
            jitter: true,
        }
    }

    /// The same without jitter (for deterministic tests).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        if self.jitter {
            // Between half and the whole step, so that many clients spread out.
            let half = step / 2;
            half + step.mul_f64(fastrand::f64() * 0.5)
        } else {
            step
        }
    }

    /// The longest delay it waits.
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// Starts again from the initial delay.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5)).without_jitter();
        let got: Vec<_> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_to_full_step() {
        let mut b = Backoff::new(Duration::from_secs(8), Duration::from_secs(8));
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }
}
