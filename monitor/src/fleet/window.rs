//! The recent samples the fleet model keeps for every instance it tracks, in
//! as little room as it needs: round trips and phi before each echo.

use std::collections::VecDeque;
use std::time::Duration;

/// The last `N` samples, oldest first; a new one pushes the oldest out.
#[derive(Debug, Clone)]
pub struct Window<T, const N: usize>(VecDeque<T>);

impl<T: Copy, const N: usize> Window<T, N> {
    /// Empty, allocated on the first push: many rows never get phi values.
    pub fn new() -> Self {
        Self(VecDeque::new())
    }

    pub fn push(&mut self, value: T) {
        if self.0.len() == N {
            self.0.pop_front();
        }
        self.0.push_back(value);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn last(&self) -> Option<T> {
        self.0.back().copied()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = T> + ExactSizeIterator + '_ {
        self.0.iter().copied()
    }
}

/// Round trips in whole microseconds: 4 bytes against a `Duration`'s 16
/// (at 120 samples, 0.5 KiB per instance instead of 1.9, 14 MiB less at
/// 10,000), still finer than anything the dashboard shows. Up to 71
/// minutes; a round trip ends at the timeout long before, and a longer one
/// would read 71 minutes.
#[derive(Debug, Clone)]
pub struct Rtts<const N: usize>(Window<u32, N>);

impl<const N: usize> Rtts<N> {
    /// Allocated whole at once: every answering row fills it.
    pub fn new() -> Self {
        Self(Window(VecDeque::with_capacity(N)))
    }

    pub fn push(&mut self, rtt: Duration) {
        self.0
            .push(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn last(&self) -> Option<Duration> {
        self.0.last().map(from_micros)
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Duration> + ExactSizeIterator + '_ {
        self.0.iter().map(from_micros)
    }

    /// Whole microseconds, oldest first (for a chart).
    pub fn micros(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.0.iter().map(u64::from)
    }

    /// The median. Selects on a copy: it runs for every row when rows are
    /// sorted by round trip.
    pub fn median(&self) -> Option<Duration> {
        let mut copy: Vec<u32> = self.0.iter().collect();
        let middle = rank(copy.len(), 0.5)?;
        Some(from_micros(*copy.select_nth_unstable(middle).1))
    }

    /// p50 and p99. Sorts a copy, so call it only for rows on screen.
    pub fn p50_p99(&self) -> Option<(Duration, Duration)> {
        let mut sorted: Vec<u32> = self.0.iter().collect();
        let len = sorted.len();
        sorted.sort_unstable();
        let at = |q| rank(len, q).map(|i| from_micros(sorted[i]));
        Some((at(0.5)?, at(0.99)?))
    }
}

/// Where quantile `q` (0 to 1) of `len` sorted samples is; `None` for none.
fn rank(len: usize, q: f64) -> Option<usize> {
    let last = len.checked_sub(1)?;
    Some((last as f64 * q).round() as usize)
}

fn from_micros(micros: u32) -> Duration {
    Duration::from_micros(u64::from(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn keeps_the_newest_in_order_and_reads_them_back_to_the_microsecond() {
        let mut rtts = Rtts::<3>::new();
        assert_eq!(rtts.last(), None);
        assert_eq!(rtts.median(), None);
        assert_eq!(rtts.p50_p99(), None);
        for rtt in [ms(5), ms(1), ms(9), Duration::from_micros(2_345)] {
            rtts.push(rtt);
        }
        assert_eq!(
            rtts.iter().collect::<Vec<_>>(),
            [ms(1), ms(9), Duration::from_micros(2_345)]
        );
        assert_eq!(rtts.last(), Some(Duration::from_micros(2_345)));
        assert_eq!(rtts.micros().collect::<Vec<_>>(), [1_000, 9_000, 2_345]);
        assert_eq!(rtts.median(), Some(Duration::from_micros(2_345)));
        assert_eq!(rtts.p50_p99(), Some((Duration::from_micros(2_345), ms(9))));
    }

    #[test]
    fn an_absurd_round_trip_saturates_instead_of_wrapping() {
        let mut rtts = Rtts::<2>::new();
        rtts.push(Duration::from_secs(10_000));
        assert_eq!(rtts.last(), Some(from_micros(u32::MAX)));
    }

    #[test]
    fn a_window_holds_the_last_n() {
        let mut phi = Window::<f32, 2>::new();
        for value in [1.0, 2.0, 3.0] {
            phi.push(value);
        }
        assert_eq!(phi.iter().collect::<Vec<_>>(), [2.0, 3.0]);
        assert_eq!((phi.len(), phi.last()), (2, Some(3.0)));
    }
}
