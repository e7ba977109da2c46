//! Each ping's seq is answered once per instance: a signed echo recorded
//! off the broker and played back is refused. Pure: no I/O, no clock.
//!
//! A sliding window per instance (as IPsec's anti-replay window): the
//! highest seq seen and a bitmap of the [`WINDOW`] seqs below it. A seq
//! older than the window cannot be told apart from a replay, and answers a
//! ping long past any timeout anyway, so it is refused too.

use std::collections::HashMap;

use crate::detector::InstanceKey;

/// Seqs below an instance's highest that are still judged one by one.
pub const WINDOW: u64 = 64;

#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<InstanceKey, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    highest: u64,
    /// Bit `i` set: `highest - i` was seen. Bit 0 is `highest` itself.
    bits: u64,
}

impl ReplayGuard {
    /// The monitor forgot the instance: its window goes too.
    pub fn forget(&mut self, key: &InstanceKey) {
        self.seen.remove(key);
    }

    /// True the first time `seq` is heard from `key`; false for a replay,
    /// or a seq too old to judge. Only signed echoes reach this, so only
    /// holders of the key can add instances (16 bytes each) to it.
    pub fn first_time(&mut self, key: &InstanceKey, seq: u64) -> bool {
        let Some(window) = self.seen.get_mut(key) else {
            self.seen.insert(
                key.clone(),
                Window {
                    highest: seq,
                    bits: 1,
                },
            );
            return true;
        };
        if seq > window.highest {
            let shift = seq - window.highest;
            window.bits = if shift >= WINDOW {
                0
            } else {
                window.bits << shift
            };
            window.bits |= 1;
            window.highest = seq;
            return true;
        }
        let age = window.highest - seq;
        if age >= WINDOW {
            return false;
        }
        let bit = 1u64 << age;
        let fresh = window.bits & bit == 0;
        window.bits |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: &str) -> InstanceKey {
        InstanceKey::new("svc".to_string(), i.to_string())
    }

    #[test]
    fn each_seq_is_accepted_once_per_instance() {
        let mut guard = ReplayGuard::default();
        assert!(guard.first_time(&key("a"), 5));
        assert!(!guard.first_time(&key("a"), 5), "a replay");
        // Another instance answering the same ping is no replay.
        assert!(guard.first_time(&key("b"), 5));
        assert!(guard.first_time(&key("a"), 6));
        assert!(!guard.first_time(&key("a"), 6));
        assert!(!guard.first_time(&key("a"), 5));
    }

    #[test]
    fn late_echoes_within_the_window_count_once_and_older_ones_never() {
        let mut guard = ReplayGuard::default();
        let a = key("a");
        assert!(guard.first_time(&a, 100));
        // Out of order, not yet seen: accepted once.
        assert!(guard.first_time(&a, 98));
        assert!(!guard.first_time(&a, 98));
        assert!(guard.first_time(&a, 100 - WINDOW + 1));
        // At or past the window's edge: refused, seen or not.
        assert!(!guard.first_time(&a, 100 - WINDOW));
        assert!(!guard.first_time(&a, 1));
        // A jump past the whole window clears it.
        assert!(guard.first_time(&a, 100 + 10 * WINDOW));
        assert!(!guard.first_time(&a, 100));
        assert!(guard.first_time(&a, 100 + 10 * WINDOW - 1));
    }
}
