//! When a target is told: the per-entry rules (which states alert, the `for`
//! delay, reminders, resolved). Pure: reports and instants in, events out,
//! so every rule is tested with explicit instants.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::detector::InstanceKey;
use crate::engine::Report;

/// What a target is told about one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// It entered an alerting state and stayed there for `for`.
    Firing,
    /// Still in that state, `reminder` after the last time it was sent.
    Reminder,
    /// It left the alerting state it was reported in.
    Resolved,
}

impl EventKind {
    pub fn code(self) -> &'static str {
        match self {
            EventKind::Firing => "firing",
            EventKind::Reminder => "reminder",
            EventKind::Resolved => "resolved",
        }
    }
}

/// An event with the transition that caused it; for a resolve, also the
/// firing transition it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyEvent {
    pub kind: EventKind,
    pub report: Report,
    pub ended: Option<Report>,
}

#[derive(Debug, Clone)]
pub struct Rules {
    /// State codes whose arrival alerts.
    pub alerting: HashSet<String>,
    pub hold: Duration,
    /// Zero: no reminders.
    pub reminder: Duration,
    pub send_resolved: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    report: Report,
    since: Instant,
}

#[derive(Debug, Clone)]
struct Firing {
    report: Report,
    last_sent: Instant,
}

#[derive(Debug, Clone, Default)]
struct Instance {
    /// In an alerting state, waiting out `for`.
    pending: Option<Pending>,
    /// Sent as firing, not yet resolved.
    firing: Option<Firing>,
}

pub struct Policy {
    rules: Rules,
    instances: BTreeMap<InstanceKey, Instance>,
}

impl Policy {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            instances: BTreeMap::new(),
        }
    }

    /// A transition happened (`to_code` is its state code) at `now`.
    pub fn transition(&mut self, report: &Report, to_code: &str, now: Instant) -> Vec<PolicyEvent> {
        let key = &report.transition.key;
        let alerting = self.rules.alerting.contains(to_code);
        let mut out = Vec::new();
        let entry = self.instances.entry(key.clone()).or_default();
        if alerting {
            let same_as_firing = entry
                .firing
                .as_ref()
                .is_some_and(|f| f.report.transition.to == report.transition.to);
            if same_as_firing {
                entry.pending = None;
            } else {
                entry.pending = Some(Pending {
                    report: report.clone(),
                    since: now,
                });
            }
        } else {
            // Back before `for` ran out: a blip nobody is told about.
            entry.pending = None;
            if let Some(firing) = entry.firing.take()
                && self.rules.send_resolved
            {
                out.push(PolicyEvent {
                    kind: EventKind::Resolved,
                    report: report.clone(),
                    ended: Some(firing.report),
                });
            }
        }
        if entry.pending.is_none() && entry.firing.is_none() {
            self.instances.remove(key);
        }
        out.extend(self.tick(now));
        out
    }

    /// Time passed: pendings that held for `for` fire; reminders fall due.
    pub fn tick(&mut self, now: Instant) -> Vec<PolicyEvent> {
        let mut out = Vec::new();
        for instance in self.instances.values_mut() {
            if let Some(pending) = &instance.pending
                && now.saturating_duration_since(pending.since) >= self.rules.hold
            {
                let pending = instance.pending.take().expect("checked above");
                // Replacing another alerting state ends the old alert first.
                if let Some(old) = instance.firing.take()
                    && self.rules.send_resolved
                {
                    out.push(PolicyEvent {
                        kind: EventKind::Resolved,
                        report: pending.report.clone(),
                        ended: Some(old.report),
                    });
                }
                out.push(PolicyEvent {
                    kind: EventKind::Firing,
                    report: pending.report.clone(),
                    ended: None,
                });
                instance.firing = Some(Firing {
                    report: pending.report,
                    last_sent: now,
                });
            } else if let Some(firing) = &mut instance.firing
                && !self.rules.reminder.is_zero()
                && now.saturating_duration_since(firing.last_sent) >= self.rules.reminder
            {
                firing.last_sent = now;
                out.push(PolicyEvent {
                    kind: EventKind::Reminder,
                    report: firing.report.clone(),
                    ended: None,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Reason, State, Transition};

    fn report(to: State) -> Report {
        Report {
            at: chrono::Utc::now(),
            transition: Transition {
                key: InstanceKey::new("orders", "o-1"),
                from: if to == State::Up {
                    State::Down
                } else {
                    State::Up
                },
                to,
                reason: if to == State::Up {
                    Reason::Recovered
                } else {
                    Reason::TimedOut {
                        silent_for: Duration::from_secs(3),
                        phi: None,
                    }
                },
                rtt: None,
            },
        }
    }

    fn code(to: State) -> &'static str {
        to.code()
    }

    fn policy(hold: u64, reminder: u64, send_resolved: bool) -> Policy {
        Policy::new(Rules {
            alerting: ["down".to_string()].into(),
            hold: Duration::from_secs(hold),
            reminder: Duration::from_secs(reminder),
            send_resolved,
        })
    }

    fn kinds(events: &[PolicyEvent]) -> Vec<EventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    fn step(p: &mut Policy, to: State, at: Instant) -> Vec<EventKind> {
        kinds(&p.transition(&report(to), code(to), at))
    }

    #[test]
    fn down_then_up_without_delay_fires_and_resolves_once() {
        let t0 = Instant::now();
        let mut p = policy(0, 0, true);
        assert_eq!(step(&mut p, State::Down, t0), [EventKind::Firing]);
        assert!(p.tick(t0 + Duration::from_secs(100)).is_empty());
        let up = p.transition(&report(State::Up), "up", t0 + Duration::from_secs(101));
        assert_eq!(kinds(&up), [EventKind::Resolved]);
        assert_eq!(up[0].ended.as_ref().unwrap().transition.to, State::Down);
        assert!(p.tick(t0 + Duration::from_secs(200)).is_empty());
    }

    #[test]
    fn a_blip_shorter_than_for_sends_nothing() {
        let t0 = Instant::now();
        let mut p = policy(5, 0, true);
        assert!(step(&mut p, State::Down, t0).is_empty());
        assert!(p.tick(t0 + Duration::from_secs(4)).is_empty());
        assert!(step(&mut p, State::Up, t0 + Duration::from_millis(4900)).is_empty());
        assert!(p.tick(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn a_stay_as_long_as_for_fires_once_then_resolves() {
        let t0 = Instant::now();
        let mut p = policy(5, 0, true);
        assert!(step(&mut p, State::Down, t0).is_empty());
        assert_eq!(
            kinds(&p.tick(t0 + Duration::from_secs(5))),
            [EventKind::Firing]
        );
        assert!(p.tick(t0 + Duration::from_secs(6)).is_empty());
        assert_eq!(
            step(&mut p, State::Up, t0 + Duration::from_secs(7)),
            [EventKind::Resolved]
        );
    }

    #[test]
    fn reminders_at_the_interval_while_it_holds() {
        let t0 = Instant::now();
        let mut p = policy(0, 10, true);
        assert_eq!(step(&mut p, State::Down, t0), [EventKind::Firing]);
        assert!(p.tick(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            kinds(&p.tick(t0 + Duration::from_secs(10))),
            [EventKind::Reminder]
        );
        assert!(p.tick(t0 + Duration::from_secs(15)).is_empty());
        assert_eq!(
            kinds(&p.tick(t0 + Duration::from_secs(20))),
            [EventKind::Reminder]
        );
        assert_eq!(
            step(&mut p, State::Up, t0 + Duration::from_secs(21)),
            [EventKind::Resolved]
        );
        assert!(p.tick(t0 + Duration::from_secs(40)).is_empty());
    }

    #[test]
    fn send_resolved_off_sends_only_firing() {
        let t0 = Instant::now();
        let mut p = policy(0, 0, false);
        assert_eq!(step(&mut p, State::Down, t0), [EventKind::Firing]);
        assert!(step(&mut p, State::Up, t0 + Duration::from_secs(1)).is_empty());
        // And the next outage fires again.
        assert_eq!(
            step(&mut p, State::Down, t0 + Duration::from_secs(2)),
            [EventKind::Firing]
        );
    }

    #[test]
    fn states_not_listed_are_ignored() {
        let t0 = Instant::now();
        let mut p = policy(0, 0, true);
        let first = Report {
            transition: Transition {
                from: State::NeverSeen,
                reason: Reason::FirstSeen,
                ..report(State::Up).transition
            },
            ..report(State::Up)
        };
        assert!(p.transition(&first, "up", t0).is_empty());
    }
}
