//! Flap detection: an instance whose verdict changed too often within a
//! window is reported once as FLAPPING instead of as a storm of UP and DOWN.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Recent changes of one instance's verdict, oldest first, never older than the window.
#[derive(Debug, Clone, Default)]
pub struct FlapWindow {
    changes: VecDeque<Instant>,
}

impl FlapWindow {
    /// Record a change at `now`; returns how many fall within `window`.
    pub fn record(&mut self, now: Instant, window: Duration) -> u32 {
        self.changes.push_back(now);
        self.trim(now, window);
        self.changes.len() as u32
    }

    /// The latest change, if any is remembered.
    pub fn last(&self) -> Option<Instant> {
        self.changes.back().copied()
    }

    fn trim(&mut self, now: Instant, window: Duration) {
        while self
            .changes
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) > window)
        {
            self.changes.pop_front();
        }
    }

    /// Forget everything (the instance left, or settled).
    pub fn clear(&mut self) {
        self.changes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_changes_within_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = FlapWindow::default();
        assert_eq!(w.record(t0, s(60)), 1);
        assert_eq!(w.record(t0 + s(30), s(60)), 2);
        assert_eq!(
            w.record(t0 + s(60), s(60)),
            3,
            "exactly the window still counts"
        );
        assert_eq!(w.record(t0 + s(91), s(60)), 2, "t0 and t0+30 fell out");
        assert_eq!(w.last(), Some(t0 + s(91)));
        w.clear();
        assert_eq!(w.last(), None);
    }
}
