//! The Slack target: one incoming-webhook POST per notification, in the
//! attachment form both Slack and Mattermost render (a coloured bar, the
//! state, service, instance and reason as fields, a link to the status
//! page). A group (a storm within `group_wait`) is one message too: the
//! count in its title, one line per alert, as the webhook's group body
//! lists its events. The webhook's URL is its token: it is never printed
//! (errors go through `webhook::describe`, which drops it).

use heartbeat_config::NotifySettings;
use serde_json::{Value, json};

use super::Event;
use super::notification::{Grouped, Notification};
use super::webhook::describe;
use crate::detector::Tone;

/// A group's message lists this many alerts, then says how many more: Slack
/// cuts a message's text at 40,000 characters, and a storm's whole list is
/// on the status page.
const LISTED: usize = 100;

#[derive(Clone)]
pub struct Slack {
    client: reqwest::Client,
    url: String,
    status_page: Option<String>,
}

/// A tone as the attachment's bar colour (Slack's own green, amber and red
/// for good, warning and danger).
fn colour(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => "#2eb886",
        Tone::Caution | Tone::Warning => "#daa038",
        Tone::Critical => "#a30200",
        Tone::Unsteady => "#8e44ad",
        Tone::Blind => "#808080",
        Tone::Quiet => "#c0c0c0",
    }
}

/// `<url|text>`: a link in Slack's markup, which Mattermost reads too.
/// `<`, `>` and `&` are escaped in the text, as Slack asks.
fn link(url: &str, text: &str) -> String {
    format!("<{url}|{}>", escape(text))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Slack {
    pub fn new(client: reqwest::Client, entry: &NotifySettings) -> Self {
        Self {
            client,
            url: entry.url.clone(),
            status_page: (!entry.status_page.is_empty()).then(|| entry.status_page.clone()),
        }
    }

    /// The message for a notification.
    pub fn payload(&self, notification: &Notification) -> Value {
        match notification {
            Notification::One(event) => self.one(event),
            Notification::Group(group) => self.group(group),
        }
    }

    /// The message for a group: the count in the title, one line per alert.
    fn group(&self, group: &Grouped) -> Value {
        let headline = group.summary.clone();
        let tone = group
            .events
            .iter()
            .map(|event| Tone::of(shown_state(event)))
            .max_by_key(|tone| severity(*tone))
            .unwrap_or(Tone::Blind);
        let mut services: Vec<&str> = Vec::new();
        for event in &group.events {
            if !services.contains(&event.service.as_str()) {
                services.push(&event.service);
            }
        }
        let mut lines: Vec<String> = group
            .events
            .iter()
            .take(LISTED)
            .map(|event| format!("• {}", escape(&event.summary)))
            .collect();
        if group.events.len() > LISTED {
            lines.push(format!("… and {} more", group.events.len() - LISTED));
        }
        let mut text = lines.join("\n");
        if let Some(page) = &self.status_page {
            text.push('\n');
            text.push_str(&link(page, "Status page"));
        }
        let fleet: Vec<String> = group
            .counts
            .iter()
            .map(|(state, n)| format!("{n} {}", state.to_uppercase()))
            .collect();
        let fields = vec![
            field("Alerts", &group.count.to_string(), true),
            field("Services", &services.join(", "), true),
            field("Fleet", &fleet.join(", "), false),
        ];
        let mut attachment = json!({
            "fallback": group.summary,
            "color": colour(tone),
            "title": headline,
            "text": text,
            "fields": fields,
            "footer": format!("heartbeat monitor {}", group.monitor),
            "ts": group.at.timestamp(),
        });
        if let Some(page) = &self.status_page {
            attachment["title_link"] = json!(page);
        }
        json!({
            "text": escape(&headline),
            "attachments": [attachment],
        })
    }

    /// The message for one event.
    fn one(&self, event: &Event) -> Value {
        let state = shown_state(event);
        let headline = match event.event {
            "resolved" => format!(
                "RESOLVED: {} is {}",
                subject(event),
                event.to.to_uppercase()
            ),
            "reminder" => format!(
                "STILL {}: {}",
                event.alert_state.to_uppercase(),
                subject(event)
            ),
            "forgotten" => format!("FORGOTTEN: {}", subject(event)),
            _ => format!("{}: {}", event.alert_state.to_uppercase(), subject(event)),
        };
        let mut fields = vec![
            field("State", &state.to_uppercase(), true),
            field("Service", &event.service, true),
        ];
        if let Some(instance) = &event.instance {
            fields.push(field("Instance", instance, true));
        }
        fields.push(field("Reason", &event.reason.replace('_', " "), true));
        if let (Some(up), Some(expected)) = (event.up, event.expected) {
            fields.push(field("Alive", &format!("{up} of {expected}"), true));
        }
        if !event.dependents.is_empty() {
            fields.push(field(
                &format!("Dependents down with it ({})", event.dependents.len()),
                &event.dependents.join(", "),
                false,
            ));
        }
        let mut text = escape(&event.summary);
        if let Some(page) = &self.status_page {
            text.push('\n');
            text.push_str(&link(page, "Status page"));
        }
        let mut attachment = json!({
            "fallback": event.summary,
            "color": colour(Tone::of(state)),
            "title": headline,
            "text": text,
            "fields": fields,
            "footer": format!("heartbeat monitor {}", event.monitor),
            "ts": event.at.timestamp(),
        });
        if let Some(page) = &self.status_page {
            attachment["title_link"] = json!(page);
        }
        json!({
            "text": escape(&headline),
            "attachments": [attachment],
        })
    }

    pub async fn send(&self, notification: &Notification) -> Result<(), String> {
        let response = self
            .client
            .post(&self.url)
            .json(&self.payload(notification))
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

/// The state an event's colour follows: a resolution's is where it went
/// (UP is good), the rest the state the alert is about.
fn shown_state(event: &Event) -> &str {
    if event.event == "resolved" {
        &event.to
    } else {
        &event.alert_state
    }
}

/// Which tone a group's bar takes: its most urgent alert's.
fn severity(tone: Tone) -> u8 {
    match tone {
        Tone::Good => 0,
        Tone::Quiet => 1,
        Tone::Blind => 2,
        Tone::Caution => 3,
        Tone::Unsteady => 4,
        Tone::Warning => 5,
        Tone::Critical => 6,
    }
}

fn subject(event: &Event) -> String {
    match &event.instance {
        Some(instance) => format!("{}/{instance}", event.service),
        None => event.service.clone(),
    }
}

fn field(title: &str, value: &str, short: bool) -> Value {
    json!({"title": title, "value": value, "short": short})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_text_is_escaped_as_slack_asks() {
        assert_eq!(
            link("https://s.example.org/", "a <b> & c"),
            "<https://s.example.org/|a &lt;b&gt; &amp; c>"
        );
    }

    fn event(kind: &'static str, instance: &str, to: &str) -> Event {
        Event {
            event: kind,
            scope: "instance",
            service: "orders".into(),
            instance: Some(instance.into()),
            from: "suspect".into(),
            to: to.into(),
            reason: "timed_out",
            at: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            alert_state: "down".into(),
            alert_since: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            monitor: "mon-1".into(),
            summary: format!("orders/{instance} is DOWN <now>"),
            counts: std::collections::BTreeMap::from([("down".to_string(), 2)]),
            up: None,
            expected: None,
            dependents: Vec::new(),
        }
    }

    fn slack(status_page: &str) -> Slack {
        Slack {
            client: crate::notify::http_client(),
            url: "https://hooks.example.org/services/T/B/x".into(),
            status_page: Some(status_page.into()),
        }
    }

    #[test]
    fn a_group_is_one_message_with_the_count_in_its_title_and_a_line_per_alert() {
        let group = Notification::of(vec![
            event("resolved", "o-9", "up"),
            event("firing", "o-1", "down"),
            event("firing", "o-2", "down"),
        ]);
        let message = slack("https://s.example.org/").payload(&group);
        let attachment = &message["attachments"][0];
        assert!(
            message["text"].as_str().unwrap().starts_with("3 alerts: "),
            "{message}"
        );
        assert_eq!(attachment["title"], group_summary(&group));
        assert_eq!(attachment["color"], "#a30200", "the most urgent alert's");
        assert_eq!(
            attachment["text"],
            "• orders/o-9 is DOWN &lt;now&gt;\n• orders/o-1 is DOWN &lt;now&gt;\n\
             • orders/o-2 is DOWN &lt;now&gt;\n<https://s.example.org/|Status page>"
        );
        assert_eq!(attachment["fields"][0]["value"], "3");
        assert_eq!(attachment["fields"][1]["value"], "orders");
        assert_eq!(attachment["fields"][2]["value"], "2 DOWN");
    }

    #[test]
    fn a_large_group_lists_the_first_alerts_and_counts_the_rest() {
        let events = (0..LISTED + 5)
            .map(|i| event("firing", &format!("o-{i}"), "down"))
            .collect();
        let message = slack("https://s.example.org/").payload(&Notification::of(events));
        let text = message["attachments"][0]["text"].as_str().unwrap();
        assert_eq!(text.matches("• ").count(), LISTED);
        assert!(text.contains("\n… and 5 more\n"), "{text}");
    }

    fn group_summary(notification: &Notification) -> String {
        match notification {
            Notification::Group(group) => group.summary.clone(),
            Notification::One(_) => unreachable!("three events are a group"),
        }
    }

    #[test]
    fn colours_follow_the_tone() {
        assert_eq!(colour(Tone::of("down")), "#a30200");
        assert_eq!(colour(Tone::of("up")), "#2eb886");
        assert_eq!(colour(Tone::of("degraded")), "#daa038");
    }
}
