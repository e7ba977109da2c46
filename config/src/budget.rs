//! `[budget]`: a hosted plan's allowance, which the monitor keeps within by
//! choosing its interval (see the monitor's `budget` module).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// Messages a month the plan allows; 0: no budget, the interval is `interval`.
    pub messages_per_month: u64,
    /// The longest interval the budget may choose (the shortest is `interval`).
    #[serde(with = "humantime_serde")]
    pub longest_interval: Duration,
    /// Connections the plan allows; 0: not watched. A warning at 80%.
    pub connections: u64,
    /// Queues the plan allows; 0: not watched. A warning at 80%.
    pub queues: u64,
}

impl BudgetSettings {
    pub fn enabled(&self) -> bool {
        self.messages_per_month > 0
    }
}
