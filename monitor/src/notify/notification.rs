//! What one delivery to a webhook, command, Slack or email target carries: one event, as its
//! own payload (as before grouping), or several that came within one
//! `group_wait`, as one grouped payload that lists them all with the
//! count in its summary.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Event;
use super::event::rfc3339;

/// The subjects a grouped summary names before "and N more".
const NAMED: usize = 3;

/// Several events in one body. The field names are documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grouped {
    /// Always "group".
    pub event: &'static str,
    /// How many events `events` holds.
    pub count: usize,
    pub monitor: String,
    /// The latest event's time.
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// One line for a person: the count, by kind and state, and the first subjects.
    pub summary: String,
    /// How many instances are in each state, as the latest event says.
    pub counts: BTreeMap<String, usize>,
    /// Each event, in the order they happened, as its own payload.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    One(Event),
    Group(Grouped),
}

impl Notification {
    /// One event alone, or a group of them (`events` is not empty).
    pub fn of(mut events: Vec<Event>) -> Self {
        if events.len() == 1 {
            return Notification::One(events.remove(0));
        }
        let last = events.last().expect("a notification has an event");
        Notification::Group(Grouped {
            event: "group",
            count: events.len(),
            monitor: last.monitor.clone(),
            at: last.at,
            summary: summary(&events),
            counts: last.counts.clone(),
            events,
        })
    }

    pub fn body(&self) -> Vec<u8> {
        match self {
            Notification::One(event) => event.body(),
            Notification::Group(group) => {
                serde_json::to_vec(group).expect("plain fields always serialise")
            }
        }
    }

    #[cfg(test)]
    pub fn events(&self) -> usize {
        match self {
            Notification::One(_) => 1,
            Notification::Group(group) => group.count,
        }
    }
}

/// `50 alerts: 48 DOWN, 2 no longer DOWN (orders/o-1, orders/o-2,
/// orders/o-3 and 47 more)`.
fn summary(events: &[Event]) -> String {
    let mut tally: Vec<(String, usize)> = Vec::new();
    for event in events {
        let state = event.alert_state.to_uppercase();
        let what = match event.event {
            "reminder" => format!("still {state}"),
            "resolved" => format!("no longer {state}"),
            "forgotten" => format!("{state} and forgotten"),
            _ => state,
        };
        match tally.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => tally.push((what, 1)),
        }
    }
    let parts: Vec<String> = tally
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    let mut subjects: Vec<String> = Vec::new();
    for event in events {
        let subject = match &event.instance {
            Some(instance) => format!("{}/{instance}", event.service),
            None => event.service.clone(),
        };
        if !subjects.contains(&subject) {
            subjects.push(subject);
        }
    }
    let more = subjects.len().saturating_sub(NAMED);
    subjects.truncate(NAMED);
    let mut named = subjects.join(", ");
    if more > 0 {
        named.push_str(&format!(" and {more} more"));
    }
    format!("{} alerts: {} ({named})", events.len(), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &'static str, instance: &str) -> Event {
        Event {
            event: kind,
            scope: "instance",
            service: "orders".into(),
            instance: Some(instance.into()),
            from: "suspect".into(),
            to: "down".into(),
            reason: "timed_out",
            at: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            alert_state: "down".into(),
            alert_since: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            monitor: "mon-1".into(),
            summary: format!("orders/{instance} is DOWN"),
            counts: BTreeMap::from([("down".to_string(), 5)]),
            up: None,
            expected: None,
            dependents: Vec::new(),
        }
    }

    #[test]
    fn one_event_is_its_own_payload() {
        let one = Notification::of(vec![event("firing", "o-1")]);
        assert_eq!(one.body(), event("firing", "o-1").body());
        assert_eq!(one.events(), 1);
    }

    #[test]
    fn several_are_one_body_with_the_count_in_the_summary() {
        let mut events: Vec<Event> = (1..=5)
            .map(|i| event("firing", &format!("o-{i}")))
            .collect();
        events.push(event("resolved", "o-9"));
        let group = Notification::of(events);
        assert_eq!(group.events(), 6);
        let value: serde_json::Value = serde_json::from_slice(&group.body()).unwrap();
        assert_eq!(value["event"], "group");
        assert_eq!(value["count"], 6);
        assert_eq!(value["monitor"], "mon-1");
        assert_eq!(value["counts"]["down"], 5);
        assert_eq!(value["events"].as_array().unwrap().len(), 6);
        assert_eq!(value["events"][0]["instance"], "o-1");
        assert_eq!(
            value["summary"],
            "6 alerts: 5 DOWN, 1 no longer DOWN (orders/o-1, orders/o-2, orders/o-3 and 3 more)"
        );
    }
}
