//! The event a target is sent, and its JSON form: the webhook's body, the
//! command's stdin. The field names are documented in the README.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::policy::{EventKind, PolicyEvent};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// "firing", "reminder", "resolved" or "forgotten"; "restored" reaches
    /// Alertmanager only.
    pub event: &'static str,
    /// "instance", or "service" for a service's strength (`degraded`, `full`).
    pub scope: &'static str,
    pub service: String,
    /// `null` for a service's strength.
    pub instance: Option<String>,
    /// The change that caused the event (for "resolved", the way back).
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
    /// For a service's strength: its instances alive and expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u32>,
    /// Services that depend on this one (`depends_on`, directly or through
    /// another) and are down with it: their own alerts are held while it
    /// is down, so this alert speaks for them. Absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<String>,
}

/// How many dependents the summary names before it says "and N more".
const NAMED_IN_SUMMARY: usize = 10;

pub(super) fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Event {
    pub fn new(event: &PolicyEvent, monitor: &str, counts: BTreeMap<String, usize>) -> Self {
        let c = &event.change;
        let alert = event.ended.as_ref().unwrap_or(&event.change);
        let alert_state = alert.to.clone();
        let subject = c.subject();
        let summary = match event.kind {
            EventKind::Firing => {
                format!("{subject} is {} ({})", alert_state.to_uppercase(), c.detail)
            }
            EventKind::Reminder => format!(
                "{subject} is still {} (since {})",
                alert_state.to_uppercase(),
                alert.at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            EventKind::Forgotten => format!(
                "{subject} is no longer watched: {} since {}, forgotten",
                alert_state.to_uppercase(),
                alert.at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            EventKind::Restored => format!(
                "{subject} is still {} ({})",
                alert_state.to_uppercase(),
                c.detail
            ),
            EventKind::Resolved => format!(
                "{subject} is no longer {}: now {} ({})",
                alert_state.to_uppercase(),
                c.to.to_uppercase(),
                c.detail
            ),
        };
        Self {
            event: event.kind.code(),
            scope: if c.instance.is_some() {
                "instance"
            } else {
                "service"
            },
            service: c.service.clone(),
            instance: c.instance.clone(),
            from: c.from.clone(),
            to: c.to.clone(),
            reason: c.reason,
            at: c.at,
            alert_state,
            alert_since: alert.at,
            monitor: monitor.to_owned(),
            summary,
            counts,
            up: c.count.map(|(up, _)| up),
            expected: c.count.map(|(_, expected)| expected),
            dependents: Vec::new(),
        }
    }

    /// The dependents down with this subject, in the field and in the
    /// summary: "..., and 12 dependents: a, b, ... and 2 more".
    pub fn with_dependents(mut self, dependents: Vec<String>) -> Self {
        if dependents.is_empty() {
            return self;
        }
        let n = dependents.len();
        let mut names = dependents
            .iter()
            .take(NAMED_IN_SUMMARY)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if n > NAMED_IN_SUMMARY {
            names.push_str(&format!(" and {} more", n - NAMED_IN_SUMMARY));
        }
        let plural = if n == 1 { "" } else { "s" };
        self.summary = format!("{}, and {n} dependent{plural}: {names}", self.summary);
        self.dependents = dependents;
        self
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain fields always serialise")
    }

    /// An event read back from its body (kept in the history store while
    /// undelivered); `None` when the text is not one this monitor writes.
    pub fn from_body(body: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Owned {
            event: String,
            scope: String,
            service: String,
            instance: Option<String>,
            from: String,
            to: String,
            reason: String,
            at: DateTime<Utc>,
            alert_state: String,
            alert_since: DateTime<Utc>,
            monitor: String,
            summary: String,
            counts: BTreeMap<String, usize>,
            up: Option<u32>,
            expected: Option<u32>,
            #[serde(default)]
            dependents: Vec<String>,
        }
        let o: Owned = serde_json::from_str(body).ok()?;
        // The fields whose values are a fixed set are static in the payload.
        let event = EventKind::ALL
            .iter()
            .map(|k| k.code())
            .find(|code| *code == o.event)?;
        let scope = ["instance", "service"]
            .into_iter()
            .find(|scope| *scope == o.scope)?;
        Some(Self {
            event,
            scope,
            service: o.service,
            instance: o.instance,
            from: o.from,
            to: o.to,
            reason: static_reason(&o.reason),
            at: o.at,
            alert_state: o.alert_state,
            alert_since: o.alert_since,
            monitor: o.monitor,
            summary: o.summary,
            counts: o.counts,
            up: o.up,
            expected: o.expected,
            dependents: o.dependents,
        })
    }
}

/// The reason codes a payload can carry (the detector's, a service's
/// strength, `forgotten`), as the static strings the payload holds: a
/// reason read back from the store is one of these (an unknown one, from
/// another version of the monitor, is kept as `other`).
fn static_reason(code: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "first_seen",
        "recovered",
        "rejoined",
        "timed_out",
        "left",
        "draining",
        "not_back",
        "flapping",
        "stable",
        "slow",
        "link_down",
        "blocked",
        "stalled",
        "restored",
        "forgotten",
        "degraded",
        "full",
        "down",
        "",
    ];
    KNOWN
        .iter()
        .find(|known| **known == code)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{InstanceKey, Reason, ServiceChange, State, Strength, Transition};
    use crate::notify::policy::Change;
    use crate::update::{Report, ServiceReport};
    use std::time::Duration;

    /// `service/instance` UP -> DOWN, silent for 3.12 s, at a fixed time.
    fn timed_out(service: &str, instance: &str) -> Report {
        Report {
            at: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            transition: Transition {
                key: InstanceKey::new(service, instance),
                from: State::Up,
                to: State::Down,
                reason: Reason::TimedOut {
                    silent_for: Duration::from_millis(3120),
                    phi: None,
                },
                rtt: None,
            },
        }
    }

    fn firing(down: &Report) -> PolicyEvent {
        PolicyEvent {
            kind: EventKind::Firing,
            change: Change::of_instance(down),
            ended: None,
        }
    }

    #[test]
    fn the_payload_has_the_documented_fields() {
        let down = timed_out("orders", "o-1");
        let counts = BTreeMap::from([("up".to_string(), 2), ("down".to_string(), 1)]);
        let firing = firing(&down);
        let value: serde_json::Value =
            serde_json::from_slice(&Event::new(&firing, "mon-1", counts.clone()).body()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event": "firing", "scope": "instance", "service": "orders", "instance": "o-1",
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
            change: Change::of_instance(&up),
            ended: Some(Change::of_instance(&down)),
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

    #[test]
    fn an_event_read_back_from_its_body_is_the_same_event() {
        let down = timed_out("orders", "o-1");
        let firing = firing(&down);
        let event = Event::new(&firing, "mon-1", BTreeMap::from([("down".into(), 1)]))
            .with_dependents(vec!["api".into(), "web".into()]);
        let body = String::from_utf8(event.body()).unwrap();
        assert_eq!(Event::from_body(&body), Some(event));
        assert_eq!(Event::from_body("{\"event\": \"nonsense\"}"), None);
    }

    #[test]
    fn a_parents_alert_names_its_dependents() {
        let down = timed_out("db", "db-1");
        let firing = firing(&down);
        let names: Vec<String> = (0..12).map(|i| format!("api-{i:02}")).collect();
        let event = Event::new(&firing, "mon-1", BTreeMap::new()).with_dependents(names.clone());
        assert_eq!(
            event.summary,
            "db/db-1 is DOWN (timed out: silent for 3.1s), and 12 dependents: api-00, api-01, \
             api-02, api-03, api-04, api-05, api-06, api-07, api-08, api-09 and 2 more"
        );
        let value: serde_json::Value = serde_json::from_slice(&event.body()).unwrap();
        assert_eq!(value["dependents"], serde_json::json!(names));
        let one = Event::new(&firing, "mon-1", BTreeMap::new()).with_dependents(vec!["api".into()]);
        assert!(
            one.summary.ends_with(", and 1 dependent: api"),
            "{}",
            one.summary
        );
    }

    #[test]
    fn a_service_payload_has_no_instance_and_the_counts() {
        let degraded = ServiceReport {
            at: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            change: ServiceChange {
                service: "orders".into(),
                from: Strength::Full,
                to: Strength::Degraded,
                up: 1,
                expected: 3,
            },
        };
        let firing = PolicyEvent {
            kind: EventKind::Firing,
            change: Change::of_service(&degraded),
            ended: None,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&Event::new(&firing, "mon-1", BTreeMap::new()).body()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event": "firing", "scope": "service", "service": "orders", "instance": null,
                "from": "full", "to": "degraded", "reason": "degraded", "at": "2026-11-23T10:00:01.500Z",
                "alert_state": "degraded", "alert_since": "2026-11-23T10:00:01.500Z", "monitor": "mon-1",
                "summary": "orders is DEGRADED (1 of 3 instances alive)",
                "counts": {}, "up": 1, "expected": 3})
        );
    }
}
