//! What a target is not told yet. An alert whose subject a silence, a
//! maintenance window or a planned drain covers is held, not dropped:
//! when the cover ends and the alert still fires, it goes out then. A
//! resolution of anything that was told always goes out; one of an alert
//! that was only ever held goes nowhere, since nobody was told. Pure: the
//! caller says what is covered.

use std::collections::BTreeMap;

use super::policy::{Change, EventKind, PolicyEvent};

/// One target's held alerts, by subject.
#[derive(Debug, Default)]
pub struct Hold {
    held: BTreeMap<(String, Option<String>), PolicyEvent>,
}

/// The reason code of a goodbye with a promise to be back: a planned drain.
pub const DRAINING: &str = "draining";

impl Hold {
    /// Whether `change` is covered: by what `covered` says (a silence, a
    /// window), or because it is a planned drain.
    pub fn covers(change: &Change, covered: &impl Fn(&Change) -> bool) -> bool {
        change.reason == DRAINING || covered(change)
    }

    /// The event to send now, if any.
    pub fn pass(
        &mut self,
        event: PolicyEvent,
        covered: &impl Fn(&Change) -> bool,
    ) -> Option<PolicyEvent> {
        let key = (event.change.service.clone(), event.change.instance.clone());
        match event.kind {
            EventKind::Firing => {
                if Self::covers(&event.change, covered) {
                    self.held.insert(key, event);
                    None
                } else {
                    self.held.remove(&key);
                    Some(event)
                }
            }
            // A reminder, or a firing re-asserted after a restart: not
            // while held or covered.
            EventKind::Reminder | EventKind::Restored => (!self.held.contains_key(&key)
                && !Self::covers(&event.change, covered))
            .then_some(event),
            // Nobody was told of a held alert: nothing to resolve.
            EventKind::Resolved | EventKind::Forgotten => {
                self.held.remove(&key).is_none().then_some(event)
            }
        }
    }

    /// Held alerts whose cover has ended: they still fire (a resolution
    /// would have taken them out), so they go out now.
    pub fn release(&mut self, covered: &impl Fn(&Change) -> bool) -> Vec<PolicyEvent> {
        let ended: Vec<_> = self
            .held
            .iter()
            .filter(|(_, e)| !Self::covers(&e.change, covered))
            .map(|(k, _)| k.clone())
            .collect();
        ended
            .into_iter()
            .filter_map(|k| self.held.remove(&k))
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(to: &str, reason: &'static str) -> Change {
        Change {
            at: chrono::Utc::now(),
            service: "orders".into(),
            instance: Some("o-1".into()),
            from: "up".into(),
            to: to.into(),
            reason,
            detail: String::new(),
            count: None,
        }
    }

    fn event(kind: EventKind, c: Change) -> PolicyEvent {
        PolicyEvent {
            kind,
            change: c,
            ended: None,
        }
    }

    #[test]
    fn a_covered_alert_is_held_then_sent_when_the_cover_ends() {
        let mut hold = Hold::default();
        let silenced = |_: &Change| true;
        let open = |_: &Change| false;
        let down = change("down", "timed_out");
        assert!(
            hold.pass(event(EventKind::Firing, down.clone()), &silenced)
                .is_none()
        );
        assert!(
            hold.pass(event(EventKind::Reminder, down.clone()), &silenced)
                .is_none()
        );
        assert!(hold.release(&silenced).is_empty(), "still silenced");
        let out = hold.release(&open);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, EventKind::Firing);
        assert_eq!(hold.len(), 0);
        // Told now: its resolution goes out, silenced or not.
        let up = change("up", "recovered");
        assert!(
            hold.pass(event(EventKind::Resolved, up), &silenced)
                .is_some()
        );
    }

    #[test]
    fn an_alert_that_ends_while_held_is_never_told() {
        let mut hold = Hold::default();
        let silenced = |_: &Change| true;
        assert!(
            hold.pass(
                event(EventKind::Firing, change("down", "timed_out")),
                &silenced
            )
            .is_none()
        );
        assert!(
            hold.pass(
                event(EventKind::Resolved, change("up", "recovered")),
                &silenced
            )
            .is_none()
        );
        assert!(hold.release(&|_: &Change| false).is_empty());
    }

    #[test]
    fn a_planned_drain_is_held_whatever_else_covers_it() {
        let mut hold = Hold::default();
        let open = |_: &Change| false;
        assert!(
            hold.pass(event(EventKind::Firing, change("left", DRAINING)), &open)
                .is_none()
        );
        assert!(hold.release(&open).is_empty(), "held until it ends");
        // Not back: its DOWN replaces the drain (the policy resolves LEFT first).
        assert!(
            hold.pass(
                event(EventKind::Resolved, change("down", "not_back")),
                &open
            )
            .is_none()
        );
        assert!(
            hold.pass(event(EventKind::Firing, change("down", "not_back")), &open)
                .is_some()
        );
    }
}
