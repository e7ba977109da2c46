//! The email target: one plain-text mail per notification, through an SMTP
//! server over TLS (STARTTLS for `smtp://`, TLS from the first byte for
//! `smtps://`; never in the clear), logged in with the URL's user and
//! password. The subject says what happened; the body has the details and
//! the status page's address. A group (a storm within `group_wait`) is one
//! mail: the count in its subject, one line per alert in its body, as the
//! webhook's group body lists its events.
//!
//! lettre speaks SMTP, with rustls on ring, the process's one TLS provider
//! (no native-tls, no aws-lc-rs), and the same platform verifier the broker
//! link uses, plus `ca_file` when given. The password is read here from the
//! URL and handed to lettre only: errors are lettre's, which never quote it,
//! nor the URL.

use std::time::Duration;

use heartbeat_config::NotifySettings;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Event;
use super::notification::{Grouped, Notification};

/// How long a subject may grow (a parent's alert names its dependents).
const SUBJECT_CHARS: usize = 160;

#[derive(Clone)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    status_page: Option<String>,
}

fn percent_decoded(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "the user or password in `url` is not valid percent-encoded UTF-8".to_owned())
}

impl Email {
    /// The transport for an entry the settings' validation accepted; what
    /// can still fail (an address lettre refuses, a CA it cannot read) is
    /// said in one line that quotes no secret.
    pub fn new(entry: &NotifySettings) -> Result<Self, String> {
        let url = url::Url::parse(&entry.url).map_err(|e| format!("`url` is not a URL: {e}"))?;
        let host = url
            .host_str()
            .ok_or("`url` has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut tls = TlsParameters::builder(host.clone());
        if !entry.ca_file.is_empty() {
            let pem =
                std::fs::read(&entry.ca_file).map_err(|e| format!("cannot read `ca_file`: {e}"))?;
            let ca = Certificate::from_pem(&pem).map_err(|e| format!("`ca_file`: {e}"))?;
            tls = tls.add_root_certificate(ca);
        }
        let tls = tls.build_rustls().map_err(|e| format!("TLS: {e}"))?;
        let (tls, default_port) = match url.scheme() {
            "smtps" => (Tls::Wrapper(tls), 465),
            _ => (Tls::Required(tls), 587),
        };
        let hello = gethostname::gethostname()
            .into_string()
            .unwrap_or_else(|_| "localhost".into());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(url.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(entry.timeout.min(Duration::from_secs(60))))
            .hello_name(ClientId::Domain(hello));
        if !url.username().is_empty() {
            builder = builder.credentials(Credentials::new(
                percent_decoded(url.username())?,
                percent_decoded(url.password().unwrap_or(""))?,
            ));
        }
        let mailbox = |key: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| format!("`{key}` {text:?}: {e}"))
        };
        Ok(Self {
            transport: builder.build(),
            from: mailbox("from", &entry.from)?,
            to: entry
                .to
                .iter()
                .map(|to| mailbox("to", to))
                .collect::<Result<_, _>>()?,
            status_page: (!entry.status_page.is_empty()).then(|| entry.status_page.clone()),
        })
    }

    /// What happened, in a line: `[heartbeat] orders/o-1 is DOWN (...)`,
    /// or `[heartbeat] 50 alerts: 50 DOWN (...)` for a group.
    pub fn subject(notification: &Notification) -> String {
        let summary = match notification {
            Notification::One(event) => &event.summary,
            Notification::Group(group) => &group.summary,
        };
        let mut subject = format!("[heartbeat] {summary}");
        if subject.chars().count() > SUBJECT_CHARS {
            subject = subject.chars().take(SUBJECT_CHARS - 1).collect();
            subject.push('…');
        }
        subject
    }

    /// The plain-text body.
    pub fn body(&self, notification: &Notification) -> String {
        match notification {
            Notification::One(event) => self.one(event),
            Notification::Group(group) => self.group(group),
        }
    }

    /// A group's body: its summary, then each alert's own line.
    fn group(&self, group: &Grouped) -> String {
        let mut lines = vec![group.summary.clone(), String::new()];
        lines.extend(
            group
                .events
                .iter()
                .map(|event| format!("- {}", event.summary)),
        );
        lines.push(String::new());
        lines.push(format!("{:<11} {}", "Fleet:", fleet(&group.counts)));
        lines.push(format!("{:<11} {}", "Monitor:", group.monitor));
        if let Some(page) = &self.status_page {
            lines.push(String::new());
            lines.push(format!("Status page: {page}"));
        }
        lines.push(String::new());
        lines.join("\n")
    }

    /// One event's body.
    fn one(&self, event: &Event) -> String {
        let stamp =
            |at: &chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let mut lines = vec![event.summary.clone(), String::new()];
        let mut row = |name: &str, value: String| lines.push(format!("{name:<11} {value}"));
        row("Event:", event.event.to_owned());
        row("Service:", event.service.clone());
        if let Some(instance) = &event.instance {
            row("Instance:", instance.clone());
        }
        row(
            "State:",
            format!(
                "{} since {}",
                event.alert_state.to_uppercase(),
                stamp(&event.alert_since)
            ),
        );
        row(
            "Change:",
            format!(
                "{} -> {} ({}) at {}",
                event.from.to_uppercase(),
                event.to.to_uppercase(),
                event.reason,
                stamp(&event.at)
            ),
        );
        if let (Some(up), Some(expected)) = (event.up, event.expected) {
            row("Alive:", format!("{up} of {expected} instances"));
        }
        if !event.dependents.is_empty() {
            row(
                "Dependents:",
                format!(
                    "{} down with it, their own alerts held: {}",
                    event.dependents.len(),
                    event.dependents.join(", ")
                ),
            );
        }
        row("Fleet:", fleet(&event.counts));
        row("Monitor:", event.monitor.clone());
        if let Some(page) = &self.status_page {
            lines.push(String::new());
            lines.push(format!("Status page: {page}"));
        }
        lines.push(String::new());
        lines.join("\n")
    }

    pub async fn send(&self, notification: &Notification) -> Result<(), String> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(Self::subject(notification))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .body(self.body(notification))
            .map_err(|e| format!("cannot build the mail: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// How many instances are in each state: `2 DOWN, 8 UP`.
fn fleet(counts: &std::collections::BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(state, n)| format!("{n} {}", state.to_uppercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(instance: &str) -> Event {
        Event {
            event: "firing",
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
            counts: std::collections::BTreeMap::from([("down".to_string(), 3)]),
            up: None,
            expected: None,
            dependents: Vec::new(),
        }
    }

    #[test]
    fn a_group_is_one_mail_with_the_count_in_its_subject_and_a_line_per_alert() {
        // The process's TLS provider, as the monitor installs it first.
        let _ = crate::notify::http_client();
        let entry: NotifySettings = serde_json::from_value(serde_json::json!({
            "kind": "email",
            "url": "smtp://alerts%40example.org:pw@localhost:587",
            "from": "alerts@example.org",
            "to": ["oncall@example.org"],
            "status_page": "https://status.example.org/",
        }))
        .unwrap();
        let mailer = Email::new(&entry).unwrap();
        let group = Notification::of(vec![event("o-1"), event("o-2"), event("o-3")]);
        assert_eq!(
            Email::subject(&group),
            "[heartbeat] 3 alerts: 3 DOWN (orders/o-1, orders/o-2, orders/o-3)"
        );
        assert_eq!(
            mailer.body(&group),
            "3 alerts: 3 DOWN (orders/o-1, orders/o-2, orders/o-3)\n\n\
             - orders/o-1 is DOWN\n- orders/o-2 is DOWN\n- orders/o-3 is DOWN\n\n\
             Fleet:      3 DOWN\nMonitor:    mon-1\n\n\
             Status page: https://status.example.org/\n"
        );
    }
}
