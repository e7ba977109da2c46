//! The phi accrual failure detector (Hayashibara et al., 2004) as Akka and
//! Pekko run it: a bounded window of heartbeat inter-arrival times, their mean
//! and standard deviation (never below a minimum), an acceptable pause added
//! to the mean, and the logistic approximation of the normal distribution's
//! tail. Phi is `-log10` of the probability that a heartbeat still arrives
//! this late, so phi 3 means a one-in-a-thousand chance of a false accusation.

use std::collections::VecDeque;
use std::time::Duration;

/// Inter-arrival samples kept per instance: a few minutes at a 1 s interval,
/// a few hundred bytes per instance.
pub const MAX_SAMPLES: usize = 200;

/// The shape of an instance's heartbeats and how much slack to give it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiParams {
    pub min_std_dev: Duration,
    pub acceptable_pause: Duration,
}

/// Phi after `elapsed` since the last heartbeat, for inter-arrival times of
/// this mean and standard deviation (seconds). Akka's formula, term for term.
pub fn phi(elapsed: Duration, mean: f64, std_dev: f64, params: PhiParams) -> f64 {
    let mean = mean + params.acceptable_pause.as_secs_f64();
    let std_dev = std_dev.max(params.min_std_dev.as_secs_f64());
    let t = elapsed.as_secs_f64();
    let y = (t - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if t > mean {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

/// How long after the last heartbeat phi reaches `threshold`: the inverse of
/// [`phi`], so a deadline can be scheduled instead of phi polled. Thresholds
/// at or below log10(2) are reached at the mean.
pub fn time_to_reach(threshold: f64, mean: f64, std_dev: f64, params: PhiParams) -> Duration {
    let mean = mean + params.acceptable_pause.as_secs_f64();
    let std_dev = std_dev.max(params.min_std_dev.as_secs_f64());
    if threshold <= std::f64::consts::LOG10_2 {
        return seconds(mean);
    }
    // Beyond the mean, phi = -log10(e / (1 + e)), e = exp(-c) with
    // c = y (1.5976 + 0.070566 y²); so c = ln(10^threshold - 1). Past
    // 10^15 the `- 1` is below f64's precision, and past 10^308 the power
    // is infinite (the deadline then came out as zero): there
    // c = threshold · ln 10 exactly enough.
    let c = if threshold > 15.0 {
        threshold * std::f64::consts::LN_10
    } else {
        (10f64.powf(threshold) - 1.0).ln()
    };
    let mut y: f64 = 1.0;
    for _ in 0..50 {
        let f = y * (1.5976 + 0.070566 * y * y) - c;
        let slope = 1.5976 + 3.0 * 0.070566 * y * y;
        let step = f / slope;
        y -= step;
        if step.abs() < 1e-9 {
            break;
        }
    }
    seconds(mean + y * std_dev)
}

/// The longest deadline phi schedules: a century, far past any
/// `forget_after`, and far enough from `Instant`'s limits that adding it to
/// one never overflows.
pub const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Seconds as a duration, never negative, never past [`LONGEST`], and
/// never a panic: `NaN` is read as the longest wait, not as none.
fn seconds(s: f64) -> Duration {
    if s.is_nan() {
        return LONGEST;
    }
    Duration::try_from_secs_f64(s.max(0.0)).map_or(LONGEST, |d| d.min(LONGEST))
}

/// What a display needs to compute an instance's phi at any instant:
/// the window's statistics and the parameters, copied out of the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiModel {
    pub mean: f64,
    pub std_dev: f64,
    pub threshold: f64,
    pub params: PhiParams,
}

impl PhiModel {
    pub fn phi(&self, elapsed: Duration) -> f64 {
        phi(elapsed, self.mean, self.std_dev, self.params)
    }
}

/// A bounded window of inter-arrival times, with running sums so the mean
/// and deviation cost nothing to read.
#[derive(Debug, Clone, Default)]
pub struct PhiWindow {
    /// Microseconds, oldest first.
    samples: VecDeque<u32>,
    sum: u64,
    sum_squares: u128,
}

impl PhiWindow {
    /// A window seeded with two samples `spread` either side of the ping
    /// interval, so the first seconds are judged against the interval rather
    /// than against nothing. Akka spreads them a quarter of the interval,
    /// since its heartbeats keep their own time; ours answer our own pings,
    /// so they come at our interval, and a spread of the minimum deviation
    /// judges a newcomer as soon as one that has been up for a minute
    /// (a quarter made a kill seen about 0.8 s later for its first seconds).
    pub fn seeded(interval: Duration, spread: Duration) -> Self {
        let spread = spread.min(interval);
        let mut window = Self::default();
        window.push(interval + spread);
        window.push(interval - spread);
        window
    }

    pub fn push(&mut self, interval: Duration) {
        let micros = u32::try_from(interval.as_micros()).unwrap_or(u32::MAX);
        if self.samples.len() == MAX_SAMPLES
            && let Some(old) = self.samples.pop_front()
        {
            self.sum -= u64::from(old);
            self.sum_squares -= u128::from(old) * u128::from(old);
        }
        self.samples.push_back(micros);
        self.sum += u64::from(micros);
        self.sum_squares += u128::from(micros) * u128::from(micros);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Mean and (population) standard deviation, in seconds.
    pub fn stats(&self) -> (f64, f64) {
        if self.samples.is_empty() {
            return (0.0, 0.0);
        }
        let n = self.samples.len() as f64;
        let mean = self.sum as f64 / n;
        let variance = (self.sum_squares as f64 / n - mean * mean).max(0.0);
        (mean / 1e6, variance.sqrt() / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: PhiParams = PhiParams {
        min_std_dev: Duration::from_millis(100),
        acceptable_pause: Duration::ZERO,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Values worked by hand from the formula, not from this code:
    /// mean 1 s, deviation 0.2 s. At t = 1.2 s, y = 1:
    ///   e = exp(-(1.5976 + 0.070566)) = exp(-1.668166) = 0.188593,
    ///   phi = -log10(0.188593 / 1.188593) = -log10(0.158670) = 0.79951.
    /// At t = 1.6 s, y = 3:
    ///   e = exp(-3 (1.5976 + 0.635094)) = exp(-6.698082) = 0.0012333,
    ///   phi = -log10(0.0012333 / 1.0012333) = 2.90948.
    /// At t = 0.8 s, y = -1: e = exp(1.668166) = 5.302434,
    ///   phi = -log10(1 - 1 / 6.302434) = -log10(0.841331) = 0.07503.
    #[test]
    fn phi_matches_values_worked_by_hand() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
        let at = |t| phi(ms(t), 1.0, 0.2, PARAMS);
        assert!(close(at(1200), 0.79951), "{}", at(1200));
        assert!(close(at(1600), 2.90948), "{}", at(1600));
        assert!(close(at(800), 0.07503), "{}", at(800));
        // At the mean, half the heartbeats are later still: phi = log10(2).
        assert!(close(at(1000), std::f64::consts::LOG10_2));
    }

    #[test]
    fn the_minimum_deviation_and_the_acceptable_pause_apply() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
        // A deviation of 10 ms is raised to the 100 ms minimum: t = 1.1 s is y = 1.
        assert!(close(phi(ms(1100), 1.0, 0.01, PARAMS), 0.79951));
        let paused = PhiParams {
            acceptable_pause: ms(500),
            ..PARAMS
        };
        // The pause moves the mean: t = 1.6 s with mean 1.5 s is y = 1 again.
        assert!(close(phi(ms(1600), 1.0, 0.01, paused), 0.79951));
    }

    #[test]
    fn time_to_reach_inverts_phi() {
        for threshold in [1.0, 3.0, 8.0, 12.0] {
            let t = time_to_reach(threshold, 1.0, 0.25, PARAMS);
            let back = phi(t, 1.0, 0.25, PARAMS);
            assert!((back - threshold).abs() < 1e-6, "{threshold}: {back}");
        }
        // By hand: phi 2.90948 is reached at y = 3, 1.6 s for mean 1 s, deviation 0.2 s.
        let t = time_to_reach(2.90948, 1.0, 0.2, PARAMS);
        assert!((t.as_secs_f64() - 1.6).abs() < 1e-3, "{t:?}");
    }

    #[test]
    fn huge_thresholds_and_pauses_give_long_deadlines_never_zero_or_a_panic() {
        // From about 309 up, 10^threshold is infinite: the deadline was 0.
        let mut last = Duration::ZERO;
        for threshold in [8.0, 16.0, 100.0, 308.0, 309.0, 400.0, 1e6] {
            let t = time_to_reach(threshold, 1.0, 0.1, PARAMS);
            assert!(t > last, "{threshold}: {t:?} after {last:?}");
            last = t;
        }
        assert!(time_to_reach(f64::INFINITY, 1.0, 0.1, PARAMS) >= last);
        // Phi agrees with the inverse where f64 can still tell.
        let t = time_to_reach(30.0, 1.0, 0.1, PARAMS);
        assert!((phi(t, 1.0, 0.1, PARAMS) - 30.0).abs() < 1e-3);
        // An acceptable pause near the largest duration is a long wait, not a panic.
        let paused = PhiParams {
            acceptable_pause: Duration::MAX - ms(1),
            ..PARAMS
        };
        assert_eq!(time_to_reach(8.0, 1.0, 0.1, paused), LONGEST);
        assert_eq!(time_to_reach(0.1, 1.0, 0.1, paused), LONGEST);
    }

    #[test]
    fn the_window_is_bounded_and_its_statistics_exact() {
        let mut w = PhiWindow::default();
        for t in [900, 1100, 1000, 1000] {
            w.push(ms(t));
        }
        let (mean, std_dev) = w.stats();
        assert!((mean - 1.0).abs() < 1e-9);
        // Deviations -0.1, 0.1, 0, 0: variance 0.005.
        assert!((std_dev - 0.005f64.sqrt()).abs() < 1e-9);
        for _ in 0..MAX_SAMPLES {
            w.push(ms(2000));
        }
        assert_eq!(w.len(), MAX_SAMPLES);
        let (mean, std_dev) = w.stats();
        assert!((mean - 2.0).abs() < 1e-9 && std_dev < 1e-6);
        let seeded = PhiWindow::seeded(ms(1000), ms(100)).stats();
        assert!((seeded.0 - 1.0).abs() < 1e-9 && (seeded.1 - 0.1).abs() < 1e-9);
    }
}
