//! One instance as the fleet model knows it: its typed state and since
//! when, its last echo, round trips and phi, missed pings, recent
//! transitions, and its uptime accounting. Pure: every method takes `now`.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::window::{Rtts, Window};
use crate::detector::{
    Availability, InstanceId, InstanceKey, PhiModel, Reason, State, UNSEEN_INSTANCE, UptimeFigure,
};
use crate::update::{EchoSeen, Report};

/// Round trips kept per instance for the percentiles and the sparkline.
pub const RTT_SAMPLES: usize = 120;
/// Transitions kept per instance, newest first.
pub const HISTORY_PER_INSTANCE: usize = 100;
/// Phi values kept per instance for the detail view.
pub const PHI_SAMPLES: usize = 120;

/// Time up and time down before the current state began; time not judged
/// is what is left of the time watched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accrued {
    pub up: Duration,
    pub down: Duration,
}

impl Accrued {
    fn add(&mut self, availability: Availability, span: Duration) {
        match availability {
            Availability::Up => self.up += span,
            Availability::Down => self.down += span,
            Availability::NotJudged => {}
        }
    }
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub key: InstanceKey,
    /// The detector's id for it, once an echo said so.
    pub(super) id: Option<InstanceId>,
    /// The state every view shows: this monitor's own verdict, or in a
    /// monitor group the group's (see `GroupPart::instance_state`).
    pub state: State,
    /// This monitor's own verdict, as its detector judged it: what it
    /// shares with its group, and what its JSON lines and history record.
    pub own: State,
    /// Why it is in its state, when a transition said so.
    pub reason: Option<Reason>,
    /// The latest state other than STALE: while the monitor cannot judge,
    /// this verdict is what counts for the service's strength.
    pub verdict: State,
    /// When the current state began, on the monitor's clock and the wall's.
    pub since: Instant,
    pub since_wall: DateTime<Utc>,
    /// Since when this monitor has been watching it; uptime is measured over this.
    pub watched_since: Instant,
    /// Uptime before the current state began.
    pub accrued: Accrued,
    pub last_echo: Option<Instant>,
    last_seq: Option<u64>,
    /// Pings left unanswered while it was not LEFT.
    pub missed: u64,
    pub rtts: Rtts<RTT_SAMPLES>,
    /// Newest first.
    pub history: VecDeque<Report>,
    /// Phi's view after the last echo, when phi judges this instance.
    pub phi: Option<PhiModel>,
    /// Phi reached just before each echo arrived: how suspicious the gap
    /// looked. Oldest first; `f32`: the detail view draws it in hundredths.
    pub phi_history: Window<f32, PHI_SAMPLES>,
}

impl Instance {
    pub(super) fn new(key: InstanceKey, now: Instant, wall: DateTime<Utc>) -> Self {
        Self {
            key,
            id: None,
            state: State::NeverSeen,
            own: State::NeverSeen,
            reason: None,
            verdict: State::NeverSeen,
            since: now,
            since_wall: wall,
            watched_since: now,
            accrued: Accrued::default(),
            last_echo: None,
            last_seq: None,
            missed: 0,
            rtts: Rtts::new(),
            history: VecDeque::new(),
            phi: None,
            phi_history: Window::new(),
        }
    }

    /// The placeholder of an expected service that has not answered yet.
    pub fn is_placeholder(&self) -> bool {
        self.key.instance == UNSEEN_INSTANCE
    }

    /// Counts towards its service's strength: see [`State::counts_alive`].
    pub fn counts_alive(&self) -> bool {
        self.state
            .counts_alive()
            .or(self.verdict.counts_alive())
            .unwrap_or(false)
    }

    /// Vouches for its service to its dependents: see
    /// [`State::vouches_for_dependents`].
    pub fn vouches_for_dependents(&self) -> bool {
        self.state
            .vouches_for_dependents()
            .or(self.verdict.vouches_for_dependents())
            .unwrap_or(false)
    }

    /// Phi now: how unlikely it is that a live instance stays silent this
    /// long. Never below zero (just after an echo it can be a hair under),
    /// and never -0.0, which is what -log10(1) gives right after an echo
    /// and every view would print as "-0.0" (`+ 0.0` makes it +0.0).
    pub fn phi_at(&self, now: Instant) -> Option<f64> {
        let model = self.phi?;
        let last = self.last_echo?;
        Some(model.phi(now.saturating_duration_since(last)).max(0.0) + 0.0)
    }

    /// Uptime over the time watched, with its coverage; `None` before any
    /// time has passed.
    pub fn uptime(&self, now: Instant) -> Option<UptimeFigure> {
        let watched = now.saturating_duration_since(self.watched_since);
        if watched.is_zero() {
            return None;
        }
        let mut total = self.accrued;
        total.add(
            self.state.availability(),
            now.saturating_duration_since(self.since),
        );
        let judged = total.up + total.down;
        Some(UptimeFigure {
            ratio: (!judged.is_zero()).then(|| total.up.as_secs_f64() / judged.as_secs_f64()),
            coverage: (judged.as_secs_f64() / watched.as_secs_f64()).min(1.0),
        })
    }

    pub fn last_rtt(&self) -> Option<Duration> {
        self.rtts.last()
    }

    /// The median of the recent round trips: steadier than the last one, so
    /// sorting by it does not reshuffle rows at every echo.
    pub fn p50(&self) -> Option<Duration> {
        self.rtts.median()
    }

    /// p50 and p99 of the recent round trips. Sorts a copy, so call it only
    /// for rows on screen.
    pub fn percentiles(&self) -> Option<(Duration, Duration)> {
        self.rtts.p50_p99()
    }

    pub(super) fn transition(&mut self, report: &Report, now: Instant) {
        let t = &report.transition;
        if self.history.is_empty()
            && t.from == State::NeverSeen
            && self.accrued == Accrued::default()
            && !self.is_placeholder()
        {
            // A discovered instance is watched from its first transition,
            // not from the moment its first echo made the row.
            self.watched_since = now;
            self.since = now;
        }
        self.accrued.add(
            self.state.availability(),
            now.saturating_duration_since(self.since),
        );
        self.state = t.to;
        self.own = t.to;
        self.reason = Some(t.reason);
        if t.to != State::Stale {
            self.verdict = t.to;
        }
        self.since = now;
        self.since_wall = report.at;
        self.history.push_front(report.clone());
        self.history.truncate(HISTORY_PER_INSTANCE);
    }

    /// The group's verdict differs from the one shown (a quorum formed or
    /// fell apart): shown from `now`, its time so far counted as the state
    /// it was shown in.
    pub(super) fn reshow(&mut self, state: State, now: Instant, wall: DateTime<Utc>) {
        self.accrued.add(
            self.state.availability(),
            now.saturating_duration_since(self.since),
        );
        self.state = state;
        self.since = now;
        self.since_wall = wall;
    }

    pub(super) fn echo(&mut self, echo: &EchoSeen) {
        // Only an echo of a recent ping is a heartbeat for phi.
        if echo.rtt.is_some() {
            if let Some(before) = self.phi_at(echo.at) {
                self.phi_history.push(before as f32);
            }
            self.phi = echo.phi;
        }
        self.last_echo = Some(echo.at);
        if self.last_seq.is_none_or(|last| last < echo.seq) {
            self.last_seq = Some(echo.seq);
        }
        if let Some(rtt) = echo.rtt {
            self.rtts.push(rtt);
        }
    }

    /// A ping went out: the one before it had a whole interval to be
    /// answered. A goodbye is a planned shutdown: nothing is missed after it.
    pub(super) fn ping_sent(&mut self, seq: u64) {
        if self.state != State::Left && self.last_seq.is_some_and(|last| last + 1 < seq) {
            self.missed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::detector::{PhiModel, PhiParams};

    #[test]
    fn phi_right_after_an_echo_is_zero_never_minus_zero() {
        let now = Instant::now();
        let mut instance = Instance::new(InstanceKey::new("orders", "i-1"), now, Utc::now());
        // At the default minimum deviation, phi at the echo is -log10(1):
        // -0.0, which every view printed as "-0.0".
        instance.phi = Some(PhiModel {
            mean: 1.0,
            std_dev: 0.1,
            threshold: 8.0,
            params: PhiParams {
                min_std_dev: Duration::from_millis(100),
                acceptable_pause: Duration::ZERO,
            },
        });
        instance.last_echo = Some(now);
        let phi = instance.phi_at(now).unwrap();
        assert!(phi == 0.0 && phi.is_sign_positive(), "{phi:?}");
        assert_eq!(format!("{phi:.1}"), "0.0");
        assert_eq!(serde_json::to_string(&phi).unwrap(), "0.0");
    }
}
