//! How one service is judged: the detection mode and its thresholds, the
//! hysteresis, flapping and slowness limits. Built from the settings by the
//! app; the detector only reads it.

use std::time::Duration;

use super::phi::PhiParams;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A fixed silence: `timeout` after the last echo.
    Fixed,
    /// Phi accrual: the deadline adapts to the instance's own rhythm.
    Phi,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub mode: Mode,
    /// Fixed mode's deadline; in every mode, the age past which an echo is
    /// stale (no RTT, no proof of life) and the grace after a blind spell.
    pub timeout: Duration,
    pub phi_threshold: f64,
    pub phi: PhiParams,
    /// Missed deadlines in a row before DOWN; the first one is SUSPECT. At least 1.
    pub failures_before_down: u32,
    /// Fresh echoes in a row before a DOWN instance is UP again. At least 1.
    pub successes_before_up: u32,
    /// Changes of verdict within `flapping_window` that make it FLAPPING; 0 turns it off.
    pub flapping_changes: u32,
    pub flapping_window: Duration,
    /// Round trips over this (several in a row) are SLOW; `None` turns it off.
    pub slow_limit: Option<Duration>,
    /// Instances the service should have; fewer UP is degraded.
    pub expected_instances: Option<u32>,
}

impl Policy {
    /// Fixed mode with `timeout`, the other settings at their defaults.
    pub fn fixed(timeout: Duration) -> Self {
        Self {
            mode: Mode::Fixed,
            timeout,
            phi_threshold: 8.0,
            phi: PhiParams {
                min_std_dev: Duration::from_millis(100),
                acceptable_pause: Duration::ZERO,
            },
            failures_before_down: 2,
            successes_before_up: 2,
            flapping_changes: 6,
            flapping_window: Duration::from_secs(60),
            slow_limit: None,
            expected_instances: None,
        }
    }
}
