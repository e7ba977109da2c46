//! What the heartbeat costs a hosted plan, and the interval that keeps it
//! within one (`[budget]`). Pure: the engine counts a round's echoes and
//! asks [`Plan::choose`] for the interval; every view shows the [`Cost`]
//! the model keeps.
//!
//! What is counted, per round (one ping), with N instances answering:
//! the monitor publishes 1 ping; the broker delivers it to N service
//! queues' consumers (N); the services publish N echoes; the broker
//! delivers N echoes to the monitor. 1 + 3N messages: every publish and
//! every delivery, as RabbitMQ's own `publish` and `deliver_get` counters
//! see them. A plan that counts only publishes (1 + N) or only deliveries
//! (2N) counts less, so a month kept within the budget by this count is
//! within it by theirs. Goodbyes, and a hung service's undelivered
//! answers, are left out: a goodbye is one message per instance's life,
//! and a hung service costs its ping delivery only (counted as an answer
//! while its echoes came, never once they stop: less than one round's
//! worth per hang).

use std::time::Duration;

/// The month a plan's allowance is for: 30 days.
pub const SECONDS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;

/// Messages one round costs with `answering` instances: 1 + 3N.
pub fn messages_per_round(answering: u64) -> u64 {
    1 + 3 * answering
}

/// Messages a month at `per_round` messages every `interval`.
pub fn per_month(per_round: u64, interval: Duration) -> f64 {
    per_round as f64 * SECONDS_PER_MONTH / interval.as_secs_f64().max(1e-9)
}

/// Whether `per_round` messages every `interval` fit `budget` a month, in
/// whole numbers: a month's rounds times a round's messages, no float to
/// round a projection of exactly the budget over it.
pub fn fits(per_round: u64, interval: Duration, budget: u64) -> bool {
    let month_ms = SECONDS_PER_MONTH as u128 * 1000;
    u128::from(per_round) * month_ms <= u128::from(budget) * interval.as_millis()
}

/// A plan's allowance and the bounds the interval is chosen within.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub messages_per_month: u64,
    /// The interval the monitor pings at when the budget allows: the
    /// configured `interval`.
    pub shortest: Duration,
    /// The interval it never goes past, budget or not.
    pub longest: Duration,
}

/// The interval chosen for a fleet, and what it costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub interval: Duration,
    pub per_round: u64,
    /// Messages a month at that interval.
    pub projected: f64,
    /// False when even the longest interval spends more than the budget.
    pub within: bool,
}

impl Plan {
    /// The shortest interval, in whole milliseconds, at which `answering`
    /// instances cost no more than the budget a month, within the bounds:
    /// `ceil(per_round × month / budget)`.
    pub fn choose(&self, answering: u64) -> Choice {
        let per_round = messages_per_round(answering);
        let month_ms = SECONDS_PER_MONTH as u128 * 1000;
        let budget = u128::from(self.messages_per_month.max(1));
        let needed_ms = (u128::from(per_round) * month_ms).div_ceil(budget);
        let needed = Duration::from_millis(u64::try_from(needed_ms).unwrap_or(u64::MAX));
        let interval = needed.clamp(self.shortest, self.longest.max(self.shortest));
        let projected = per_month(per_round, interval);
        Choice {
            interval,
            per_round,
            projected,
            within: fits(per_round, interval, self.messages_per_month),
        }
    }
}

/// What the heartbeat costs now, as the engine counted it at its latest
/// ping: the one figure every view shows (dashboard, status API, metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// The interval in force: the configured one, or the budget's choice.
    pub interval: Duration,
    /// The default timeout in force: the configured one, scaled as the interval is.
    pub timeout: Duration,
    /// Instances answering: the most echoes any of the last few rounds brought.
    pub answering: u64,
    /// 1 + 3 × answering.
    pub per_round: u64,
    /// Messages a month at this interval.
    pub projected: f64,
    /// `[budget] messages_per_month`, when one is set.
    pub budget: Option<u64>,
    /// The projection is within the budget (always, without one).
    pub within: bool,
    /// Caps of the plan 80% reached or more, one line each.
    pub warnings: Vec<String>,
}

/// A duration scaled as the interval is: the timeouts follow the interval
/// in force, so a service is given as many rounds to answer as configured.
pub fn scaled(configured: Duration, interval: Duration, configured_interval: Duration) -> Duration {
    let factor = interval.as_secs_f64() / configured_interval.as_secs_f64().max(1e-9);
    Duration::from_secs_f64(configured.as_secs_f64() * factor.max(1.0))
}

/// How close to a cap warns: at 80% of it.
pub const CAP_WARNING: f64 = 0.8;

/// A cap's use: `None` when it is not near, else the line to warn with.
pub fn near_cap(what: &str, used: u64, cap: u64) -> Option<String> {
    if cap == 0 || (used as f64) < CAP_WARNING * cap as f64 {
        return None;
    }
    Some(format!(
        "{used} of the plan's {cap} {what} in use (about: one per instance answering, and the monitor's own)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            messages_per_month: 1_000_000,
            shortest: Duration::from_secs(1),
            longest: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_million_a_month_for_2_20_and_200_services_is_the_formula() {
        // ceil((1 + 3N) × 2,592,000,000 ms / 1,000,000).
        for (n, ms) in [(2, 18_144), (20, 158_112), (200, 1_557_792)] {
            let choice = plan().choose(n);
            assert_eq!(choice.per_round, 1 + 3 * n);
            assert_eq!(choice.interval, Duration::from_millis(ms), "{n} services");
            assert!(choice.within, "{n}: {choice:?}");
            assert!((choice.projected - 1_000_000.0).abs() < 1_000_000.0 * 1e-6);
        }
    }

    #[test]
    fn the_bounds_hold_and_say_when_the_budget_cannot() {
        // Nobody answering: one ping a round, the shortest interval is cheap.
        let idle = plan().choose(0);
        assert_eq!(idle.interval, Duration::from_millis(2_592));
        let roomy = Plan {
            messages_per_month: 100_000_000,
            ..plan()
        };
        assert_eq!(roomy.choose(2).interval, Duration::from_secs(1));
        let tight = Plan {
            longest: Duration::from_secs(60),
            ..plan()
        };
        let over = tight.choose(200);
        assert_eq!(over.interval, Duration::from_secs(60));
        assert!(!over.within);
        assert!((over.projected - 601.0 * 43_200.0).abs() < 1.0);
    }

    #[test]
    fn a_month_at_an_interval_and_timeouts_that_follow_it() {
        // The defect: at 10 s, one service is 4 messages a round, 259,200 rounds.
        assert_eq!(per_month(4, Duration::from_secs(10)), 1_036_800.0);
        assert_eq!(
            scaled(
                Duration::from_secs(3),
                Duration::from_secs(18),
                Duration::from_secs(1)
            ),
            Duration::from_secs(54)
        );
        // Never shorter than configured.
        assert_eq!(
            scaled(
                Duration::from_secs(3),
                Duration::from_millis(500),
                Duration::from_secs(1)
            ),
            Duration::from_secs(3)
        );
        assert_eq!(near_cap("queues", 79, 100), None);
        assert!(
            near_cap("queues", 80, 100)
                .unwrap()
                .starts_with("80 of the plan's 100 queues")
        );
        assert_eq!(near_cap("queues", 1000, 0), None);
    }
}
