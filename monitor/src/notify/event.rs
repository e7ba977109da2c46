//! The event a target is sent, and its JSON form: the webhook's body, the
//! command's stdin. The field names are documented in the README.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::policy::{EventKind, PolicyEvent};
use crate::detector::Reason;
use crate::headless::state_code;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// "firing", "reminder" or "resolved".
    pub event: &'static str,
    pub service: String,
    pub instance: String,
    /// The transition that caused the event (for "resolved", the way back).
    pub from: String,
    pub to: String,
    pub reason: &'static str,
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// The state the alert is about, and when the instance entered it.
    pub alert_state: String,
    #[serde(serialize_with = "rfc3339")]
    pub alert_since: DateTime<Utc>,
    pub monitor: String,
    /// One line for a person, no links.
    pub summary: String,
    /// How many instances are in each state, right now.
    pub counts: BTreeMap<String, usize>,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Event {
    pub fn new(event: &PolicyEvent, monitor: &str, counts: BTreeMap<String, usize>) -> Self {
        let t = &event.report.transition;
        let alert = event.ended.as_ref().unwrap_or(&event.report);
        let alert_state = state_code(alert.transition.to);
        let summary = match event.kind {
            EventKind::Firing => {
                format!("{} is {} ({})", t.key, alert_state.to_uppercase(), t.reason)
            }
            EventKind::Reminder => format!(
                "{} is still {} (since {})",
                t.key,
                alert_state.to_uppercase(),
                alert.at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            EventKind::Resolved => format!(
                "{} is no longer {}: now {} ({})",
                t.key,
                alert_state.to_uppercase(),
                state_code(t.to).to_uppercase(),
                reason_text(t.reason)
            ),
        };
        Self {
            event: event.kind.code(),
            service: t.key.service.clone(),
            instance: t.key.instance.clone(),
            from: state_code(t.from),
            to: state_code(t.to),
            reason: t.reason.code(),
            at: event.report.at,
            alert_state,
            alert_since: alert.at,
            monitor: monitor.to_owned(),
            summary,
            counts,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain fields always serialise")
    }
}

fn reason_text(reason: Reason) -> String {
    reason.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{InstanceKey, State, Transition};
    use crate::engine::Report;
    use std::time::Duration;

    #[test]
    fn the_payload_has_the_documented_fields() {
        let down = Report {
            at: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            transition: Transition {
                key: InstanceKey::new("orders", "o-1"),
                from: State::Up,
                to: State::Down,
                reason: Reason::TimedOut {
                    silent_for: Duration::from_millis(3120),
                    phi: None,
                },
                rtt: None,
            },
        };
        let counts = BTreeMap::from([("up".to_string(), 2), ("down".to_string(), 1)]);
        let firing = PolicyEvent {
            kind: EventKind::Firing,
            report: down.clone(),
            ended: None,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&Event::new(&firing, "mon-1", counts.clone()).body()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event": "firing", "service": "orders", "instance": "o-1",
                "from": "up", "to": "down", "reason": "timed_out", "at": "2026-11-23T10:00:01.500Z",
                "alert_state": "down", "alert_since": "2026-11-23T10:00:01.500Z", "monitor": "mon-1",
                "summary": "orders/o-1 is DOWN (timed out: silent for 3.1s)",
                "counts": {"up": 2, "down": 1}})
        );
        let up = Report {
            at: "2026-11-23T10:01:00Z".parse().unwrap(),
            transition: Transition {
                from: State::Down,
                to: State::Up,
                reason: Reason::Recovered,
                ..down.transition.clone()
            },
        };
        let resolved = PolicyEvent {
            kind: EventKind::Resolved,
            report: up,
            ended: Some(down),
        };
        let event = Event::new(&resolved, "mon-1", counts);
        assert_eq!(
            (event.event, event.to.as_str(), event.alert_state.as_str()),
            ("resolved", "up", "down")
        );
        assert_eq!(
            event.summary,
            "orders/o-1 is no longer DOWN: now UP (recovered)"
        );
    }
}
