//! When a target is told: the per-entry rules (which states alert, the `for`
//! delay, reminders, resolved). Pure: changes and instants in, events out,
//! so every rule is tested with explicit instants. An instance's transition
//! and a service's change of strength (`degraded`, `full`) are both a
//! [`Change`] of one subject's state code, under the same rules.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::detector::Reason;
use crate::update::{Report, ServiceReport};

/// A change of one subject's state: an instance's, or a whole service's.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub at: DateTime<Utc>,
    pub service: String,
    /// `None` for the service as a whole.
    pub instance: Option<String>,
    /// State codes: an instance's (`up`, `down`, ...) or a service's (`full`, `degraded`).
    pub from: String,
    pub to: String,
    pub reason: &'static str,
    /// The reason, for people.
    pub detail: String,
    /// A service's instances alive and expected.
    pub count: Option<(u32, u32)>,
}

impl Change {
    pub fn of_instance(report: &Report) -> Self {
        let t = &report.transition;
        Self {
            at: report.at,
            service: t.key.service.clone(),
            instance: Some(t.key.instance.clone()),
            from: t.from.code().to_owned(),
            to: t.to.code().to_owned(),
            reason: t.reason.code(),
            detail: t.reason.to_string(),
            count: None,
        }
    }

    /// The reason is the new strength's code: `degraded` or `full`.
    pub fn of_service(report: &ServiceReport) -> Self {
        let c = &report.change;
        Self {
            at: report.at,
            service: c.service.clone(),
            instance: None,
            from: c.from.code().to_owned(),
            to: c.to.code().to_owned(),
            reason: c.to.code(),
            detail: c.to_string(),
            count: Some((c.up, c.expected)),
        }
    }

    /// `orders/o-1`, or `orders` for the whole service.
    pub fn subject(&self) -> String {
        match &self.instance {
            Some(instance) => format!("{}/{instance}", self.service),
            None => self.service.clone(),
        }
    }

    fn key(&self) -> (String, Option<String>) {
        (self.service.clone(), self.instance.clone())
    }
}

/// What a target is told about one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// It entered an alerting state and stayed there for `for`.
    Firing,
    /// Still in that state, `reminder` after the last time it was sent.
    Reminder,
    /// It left the alerting state it was reported in.
    Resolved,
    /// The monitor forgot it while its alert was firing (DOWN or LEFT for
    /// `forget_after`): the alert ends, since nobody watches it any more.
    Forgotten,
    /// Still in the alerting state it was in before the monitor restarted:
    /// firing again without being news. Only a target that keeps alerts
    /// alive by re-sending them (Alertmanager) is told; the others already
    /// were, before the restart.
    Restored,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Firing,
        EventKind::Reminder,
        EventKind::Resolved,
        EventKind::Forgotten,
        EventKind::Restored,
    ];

    pub fn code(self) -> &'static str {
        match self {
            EventKind::Firing => "firing",
            EventKind::Reminder => "reminder",
            EventKind::Resolved => "resolved",
            EventKind::Forgotten => "forgotten",
            EventKind::Restored => "restored",
        }
    }
}

/// An event with the change that caused it; for a resolve, also the
/// firing change it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyEvent {
    pub kind: EventKind,
    pub change: Change,
    pub ended: Option<Change>,
}

#[derive(Debug, Clone)]
pub struct Rules {
    /// State codes whose arrival alerts.
    pub alerting: HashSet<String>,
    pub hold: Duration,
    /// Zero: no reminders.
    pub reminder: Duration,
    pub send_resolved: bool,
    /// How long an instance restored after a restart, and not in an
    /// alerting state before it, has to answer before its DOWN counts (as
    /// long as a live instance needs to show itself).
    pub restore_hold: Duration,
}

#[derive(Debug, Clone)]
struct Pending {
    change: Change,
    /// When it fires if nothing changes first.
    due: Instant,
}

#[derive(Debug, Clone)]
struct Firing {
    change: Change,
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
    instances: BTreeMap<(String, Option<String>), Instance>,
}

impl Policy {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            instances: BTreeMap::new(),
        }
    }

    /// New rules from a reloaded configuration; what is pending or firing
    /// is kept, so nothing already sent is sent again.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// A change happened at `now`.
    pub fn transition(&mut self, change: &Change, now: Instant) -> Vec<PolicyEvent> {
        if change.reason == Reason::Restored.code() {
            return self.restored(change, now);
        }
        let key = change.key();
        let alerting = self.rules.alerting.contains(&change.to);
        let mut out = Vec::new();
        let entry = self.instances.entry(key.clone()).or_default();
        if alerting {
            let same_as_firing = entry
                .firing
                .as_ref()
                .is_some_and(|f| f.change.to == change.to);
            if same_as_firing {
                entry.pending = None;
            } else {
                entry.pending = Some(Pending {
                    change: change.clone(),
                    due: now + self.rules.hold,
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
                    change: change.clone(),
                    ended: Some(firing.change),
                });
            }
        }
        if entry.pending.is_none() && entry.firing.is_none() {
            self.instances.remove(&key);
        }
        out.extend(self.tick(now));
        out
    }

    /// An instance taken back after a restart (`change.from` is the state
    /// it was last known in). Known in this alerting state before: its
    /// alert went out then, so it is firing from now on without being sent
    /// again as new (resolved when it answers; re-asserted as `Restored`).
    /// Known otherwise: it alerts only if it has not answered within
    /// `restore_hold` (and `for`), as a live instance would have.
    fn restored(&mut self, change: &Change, now: Instant) -> Vec<PolicyEvent> {
        if !self.rules.alerting.contains(&change.to) {
            return Vec::new();
        }
        let entry = self.instances.entry(change.key()).or_default();
        if change.from == change.to {
            entry.pending = None;
            entry.firing = Some(Firing {
                change: change.clone(),
                last_sent: now,
            });
            return vec![PolicyEvent {
                kind: EventKind::Restored,
                change: change.clone(),
                ended: None,
            }];
        }
        entry.pending = Some(Pending {
            change: change.clone(),
            due: now + self.rules.hold.max(self.rules.restore_hold),
        });
        Vec::new()
    }

    /// The monitor forgot an instance (at `at`): what is pending for it is
    /// dropped, and a firing alert ends with a `forgotten` event (when
    /// resolved events are sent), rather than being reminded of, or re-sent
    /// to Alertmanager, forever.
    pub fn forget(
        &mut self,
        service: &str,
        instance: &str,
        at: DateTime<Utc>,
    ) -> Option<PolicyEvent> {
        let key = (service.to_owned(), Some(instance.to_owned()));
        let firing = self.instances.remove(&key)?.firing?;
        self.rules.send_resolved.then(|| PolicyEvent {
            kind: EventKind::Forgotten,
            change: Change {
                at,
                reason: "forgotten",
                detail: "no longer watched".into(),
                ..firing.change.clone()
            },
            ended: Some(firing.change),
        })
    }

    /// Time passed: pendings that held for `for` fire; reminders fall due.
    pub fn tick(&mut self, now: Instant) -> Vec<PolicyEvent> {
        let mut out = Vec::new();
        for instance in self.instances.values_mut() {
            if let Some(pending) = &instance.pending
                && now >= pending.due
            {
                let pending = instance.pending.take().expect("checked above");
                // Replacing another alerting state ends the old alert first.
                if let Some(old) = instance.firing.take()
                    && self.rules.send_resolved
                {
                    out.push(PolicyEvent {
                        kind: EventKind::Resolved,
                        change: pending.change.clone(),
                        ended: Some(old.change),
                    });
                }
                out.push(PolicyEvent {
                    kind: EventKind::Firing,
                    change: pending.change.clone(),
                    ended: None,
                });
                instance.firing = Some(Firing {
                    change: pending.change,
                    last_sent: now,
                });
            } else if let Some(firing) = &mut instance.firing
                // Moved on to another alerting state, waiting out `for`: the
                // firing one is no longer true, so no "still" about it.
                && instance.pending.is_none()
                && !self.rules.reminder.is_zero()
                && now.saturating_duration_since(firing.last_sent) >= self.rules.reminder
            {
                firing.last_sent = now;
                out.push(PolicyEvent {
                    kind: EventKind::Reminder,
                    change: firing.change.clone(),
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
    use crate::detector::{InstanceKey, State, Transition};

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

    fn policy(hold: u64, reminder: u64, send_resolved: bool) -> Policy {
        Policy::new(Rules {
            alerting: ["down".to_string()].into(),
            hold: Duration::from_secs(hold),
            reminder: Duration::from_secs(reminder),
            send_resolved,
            restore_hold: Duration::from_secs(4),
        })
    }

    fn kinds(events: &[PolicyEvent]) -> Vec<EventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    fn step(p: &mut Policy, to: State, at: Instant) -> Vec<EventKind> {
        kinds(&p.transition(&Change::of_instance(&report(to)), at))
    }

    #[test]
    fn down_then_up_without_delay_fires_and_resolves_once() {
        let t0 = Instant::now();
        let mut p = policy(0, 0, true);
        assert_eq!(step(&mut p, State::Down, t0), [EventKind::Firing]);
        assert!(p.tick(t0 + Duration::from_secs(100)).is_empty());
        let up = p.transition(
            &Change::of_instance(&report(State::Up)),
            t0 + Duration::from_secs(101),
        );
        assert_eq!(kinds(&up), [EventKind::Resolved]);
        assert_eq!(up[0].ended.as_ref().unwrap().to, "down");
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
        assert!(p.transition(&Change::of_instance(&first), t0).is_empty());
    }

    fn strength(to: crate::detector::Strength) -> Change {
        use crate::detector::{ServiceChange, Strength};
        Change::of_service(&ServiceReport {
            at: chrono::Utc::now(),
            change: ServiceChange {
                service: "orders".into(),
                from: if to == Strength::Full {
                    Strength::Degraded
                } else {
                    Strength::Full
                },
                to,
                up: if to == Strength::Full { 3 } else { 1 },
                expected: 3,
            },
        })
    }

    #[test]
    fn a_forgotten_instance_ends_its_firing_alert_and_nothing_follows() {
        let t0 = Instant::now();
        let mut p = policy(0, 10, true);
        assert_eq!(step(&mut p, State::Down, t0), [EventKind::Firing]);
        let ended = p.forget("orders", "o-1", chrono::Utc::now()).unwrap();
        assert_eq!(ended.kind, EventKind::Forgotten);
        assert_eq!(ended.ended.as_ref().unwrap().to, "down");
        assert!(
            p.tick(t0 + Duration::from_secs(60)).is_empty(),
            "no reminders"
        );
        assert!(p.forget("orders", "o-1", chrono::Utc::now()).is_none());
        // Pending only: dropped, nothing said.
        let mut p = policy(30, 0, true);
        assert!(step(&mut p, State::Down, t0).is_empty());
        assert!(p.forget("orders", "o-1", chrono::Utc::now()).is_none());
        assert!(p.tick(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn a_degraded_service_follows_for_reminders_and_resolved_like_an_instance() {
        use crate::detector::Strength;
        let t0 = Instant::now();
        let mut p = Policy::new(Rules {
            alerting: ["degraded".to_string()].into(),
            hold: Duration::from_secs(5),
            reminder: Duration::from_secs(10),
            send_resolved: true,
            restore_hold: Duration::ZERO,
        });
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Shorter than `for`: nothing.
        assert!(
            p.transition(&strength(Strength::Degraded), at(0))
                .is_empty()
        );
        assert!(p.transition(&strength(Strength::Full), at(4)).is_empty());
        assert!(p.tick(at(20)).is_empty());
        // Held: firing, a reminder, then resolved.
        assert!(
            p.transition(&strength(Strength::Degraded), at(30))
                .is_empty()
        );
        let fired = p.tick(at(35));
        assert_eq!(kinds(&fired), [EventKind::Firing]);
        assert_eq!(fired[0].change.instance, None);
        assert_eq!(fired[0].change.count, Some((1, 3)));
        assert_eq!(kinds(&p.tick(at(45))), [EventKind::Reminder]);
        let back = p.transition(&strength(Strength::Full), at(46));
        assert_eq!(kinds(&back), [EventKind::Resolved]);
        assert_eq!(back[0].ended.as_ref().unwrap().to, "degraded");
        // An instance of the same service is a subject of its own.
        assert!(
            step(&mut p, State::Down, at(47)).is_empty(),
            "down is not listed"
        );
    }

    #[test]
    fn no_reminder_of_a_state_it_has_left_for_another_alerting_one() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Policy::new(Rules {
            alerting: ["down".to_string(), "flapping".to_string()].into(),
            hold: s(2),
            reminder: s(10),
            send_resolved: true,
            restore_hold: Duration::ZERO,
        });
        assert!(step(&mut p, State::Down, t0).is_empty());
        assert_eq!(kinds(&p.tick(t0 + s(2))), [EventKind::Firing]);
        // DOWN -> FLAPPING at 11 s: FLAPPING waits out `for` until 13 s;
        // the DOWN reminder due at 12 s is not sent, DOWN being over.
        assert!(step(&mut p, State::Flapping, t0 + s(11)).is_empty());
        assert!(p.tick(t0 + s(12)).is_empty());
        assert_eq!(
            kinds(&p.tick(t0 + s(13))),
            [EventKind::Resolved, EventKind::Firing]
        );
        assert_eq!(kinds(&p.tick(t0 + s(23))), [EventKind::Reminder]);
    }

    fn restored(was: State) -> Change {
        Change::of_instance(&Report {
            at: Utc::now(),
            transition: Transition {
                key: InstanceKey::new("orders", "o-1"),
                from: was,
                to: State::Down,
                reason: Reason::Restored,
                rtt: None,
            },
        })
    }

    #[test]
    fn restored_down_is_firing_without_being_sent_again_and_resolves_once() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = policy(0, 30, true);
        assert_eq!(
            kinds(&p.transition(&restored(State::Down), at(0))),
            vec![EventKind::Restored]
        );
        // Firing: reminded on its schedule, never re-sent as new.
        assert!(kinds(&p.tick(at(29))).is_empty());
        assert_eq!(kinds(&p.tick(at(30))), vec![EventKind::Reminder]);
        assert_eq!(step(&mut p, State::Up, at(31)), vec![EventKind::Resolved]);
        assert!(p.tick(at(100)).is_empty());
    }

    #[test]
    fn restored_from_up_alerts_only_if_it_does_not_answer_within_the_hold() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Answers in time: nothing at all.
        let mut p = policy(0, 0, true);
        assert!(p.transition(&restored(State::Up), at(0)).is_empty());
        assert!(step(&mut p, State::Up, at(1)).is_empty());
        assert!(p.tick(at(10)).is_empty());
        // Silent past the hold: one firing, then one resolved.
        let mut p = policy(0, 0, true);
        assert!(p.transition(&restored(State::Up), at(0)).is_empty());
        assert!(p.tick(at(3)).is_empty());
        assert_eq!(kinds(&p.tick(at(4))), vec![EventKind::Firing]);
        assert_eq!(step(&mut p, State::Up, at(5)), vec![EventKind::Resolved]);
    }
}
