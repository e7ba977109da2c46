//! `[[notify]]`: where alerts go and which changes, and the checks serde
//! cannot make on an entry.

use std::fmt;
use std::time::Duration;

use orchestrator_lib::plumbing::shown_value;
use serde::Deserialize;

/// The state codes a transition can go to, as in the JSON lines' `to`. A
/// `[[notify]]` entry's `transitions` must name some of these, so that a
/// typo is an error instead of an alert that never comes.
pub const STATE_CODES: &[&str] = &[
    "never_seen",
    "up",
    "down",
    "suspect",
    "left",
    "flapping",
    "stale",
    "slow",
    "degraded",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum NotifyKind {
    Webhook,
    Alertmanager,
    Command,
    /// A Slack (or Mattermost) incoming webhook.
    Slack,
    /// Mail through an SMTP server, over TLS.
    Email,
}

impl TryFrom<String> for NotifyKind {
    type Error = String;

    fn try_from(kind: String) -> Result<Self, String> {
        match kind.as_str() {
            "webhook" => Ok(NotifyKind::Webhook),
            "alertmanager" => Ok(NotifyKind::Alertmanager),
            "command" => Ok(NotifyKind::Command),
            "slack" => Ok(NotifyKind::Slack),
            "email" => Ok(NotifyKind::Email),
            _ => Err(format!(
                "{kind:?} is not a kind of notify target; use webhook, alertmanager, command, slack or email"
            )),
        }
    }
}

impl fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Alertmanager => "alertmanager",
            NotifyKind::Command => "command",
            NotifyKind::Slack => "slack",
            NotifyKind::Email => "email",
        })
    }
}

/// One `[[notify]]` entry: where to send, and which changes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    pub kind: NotifyKind,
    /// webhook, slack: the URL to POST to (a Slack webhook's path is its
    /// token); alertmanager: its base URL; email: the SMTP server,
    /// `smtp://user:password@host:587` (STARTTLS) or `smtps://` (TLS).
    #[serde(default)]
    pub url: String,
    /// command: the program and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// webhook: signs each body with HMAC-SHA256 when not empty.
    #[serde(default)]
    pub secret: String,
    /// States whose arrival is sent (as "firing"); leaving them is "resolved".
    #[serde(default = "default_transitions")]
    pub transitions: Vec<String>,
    /// How long an instance must stay in such a state before it is sent.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// Send the alert again this often while it holds; zero: never.
    #[serde(default, with = "humantime_serde")]
    pub reminder: Duration,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// One delivery attempt's limit (request, or command run).
    #[serde(default = "default_notify_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts after the first one fails, with backoff.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Events waiting for this target (undelivered ones included); more
    /// are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// webhook, command, slack, email: changes within this long of the first one waiting
    /// go out together, as one notification; zero: each as soon as it can.
    #[serde(default = "default_group_wait", with = "humantime_serde")]
    pub group_wait: Duration,
    /// webhook, command, slack, email: an event not delivered is tried again, with
    /// backoff, until it is this old (or delivered, or a later event about
    /// the same alert replaces it).
    #[serde(default = "default_retry_for", with = "humantime_serde")]
    pub retry_for: Duration,
    /// alertmanager: the `severity` label.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// alertmanager: how often firing alerts are pushed again.
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend: Duration,
    /// Only these services (names or glob patterns); empty: every service.
    #[serde(default)]
    pub services: Vec<String>,
    /// email: the sender, `alerts@example.org` or `Heartbeat <alerts@example.org>`.
    #[serde(default)]
    pub from: String,
    /// email: the recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// email: a CA certificate file (PEM) trusted besides the system's,
    /// for a mail server with a private CA.
    #[serde(default)]
    pub ca_file: String,
    /// slack, email: the status page people are sent to, `https://status.example.org/`;
    /// empty: `http://` and `[http] listen`, when the monitor serves one.
    #[serde(default)]
    pub status_page: String,
}

fn default_transitions() -> Vec<String> {
    ["down", "flapping", "degraded"].map(String::from).to_vec()
}
fn yes() -> bool {
    true
}
fn default_notify_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    3
}
fn default_queue() -> usize {
    10_000
}
fn default_group_wait() -> Duration {
    Duration::from_secs(3)
}
fn default_retry_for() -> Duration {
    Duration::from_secs(3600)
}
fn default_severity() -> String {
    "critical".into()
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}

impl NotifySettings {
    /// The checks serde cannot make: (key, why).
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        match self.kind {
            NotifyKind::Webhook | NotifyKind::Alertmanager => {
                let parsed = url::Url::parse(&self.url)
                    .map_err(|e| ("url", format!("{:?}: {e}", self.url)))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(("url", format!("{:?} must be http:// or https://", self.url)));
                }
            }
            // A Slack webhook's path is its token: the URL is never quoted.
            NotifyKind::Slack => {
                let parsed = url::Url::parse(&self.url).map_err(|e| {
                    (
                        "url",
                        format!("is not a URL ({e}); give the incoming webhook's https:// URL"),
                    )
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(("url", "must be http:// or https://".into()));
                }
            }
            NotifyKind::Email => self.validate_email()?,
            NotifyKind::Command => {
                if self.command.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err((
                        "command",
                        "needs a program, e.g. [\"/usr/local/bin/page-oncall\"]".into(),
                    ));
                }
            }
        }
        if self.transitions.is_empty() {
            return Err(("transitions", "must name at least one state".into()));
        }
        if let Some(bad) = self
            .transitions
            .iter()
            .find(|s| !STATE_CODES.contains(&s.as_str()))
        {
            return Err((
                "transitions",
                format!("{bad:?} is not a state; use {}", STATE_CODES.join(", ")),
            ));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be greater than zero".into()));
        }
        if self.queue == 0 {
            return Err(("queue", "must be at least 1".into()));
        }
        if self.retry_for.is_zero() {
            return Err(("retry_for", "must be greater than zero".into()));
        }
        if let Some(bad) = self.services.iter().find(|p| !crate::is_pattern(p)) {
            return Err((
                "services",
                format!(
                    "{bad:?} is not a service name or pattern: use letters, digits, '-', '_', '.', '*' and '?'"
                ),
            ));
        }
        if self.kind == NotifyKind::Alertmanager && self.resend.is_zero() {
            return Err(("resend", "must be greater than zero".into()));
        }
        if !self.status_page.is_empty()
            && url::Url::parse(&self.status_page)
                .map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err((
                "status_page",
                format!(
                    "{} is not an http:// or https:// URL",
                    shown_value(&self.status_page)
                ),
            ));
        }
        Ok(())
    }

    /// An email entry: a server to reach over TLS, a sender, recipients.
    fn validate_email(&self) -> Result<(), (&'static str, String)> {
        let parsed = url::Url::parse(&self.url).map_err(|e| {
            (
                "url",
                format!(
                    "{}: {e}; use smtp://user:password@host:587",
                    shown_value(&self.url)
                ),
            )
        })?;
        if !matches!(parsed.scheme(), "smtp" | "smtps") || parsed.host_str().is_none() {
            return Err((
                "url",
                format!(
                    "{} must be smtp://host:port (STARTTLS) or smtps://host:port (TLS), \
                     with user:password@ to log in",
                    shown_value(&self.url)
                ),
            ));
        }
        if parsed.password().is_some() && parsed.username().is_empty() {
            return Err(("url", "has a password but no user name".into()));
        }
        if !is_mailbox(&self.from) {
            return Err((
                "from",
                format!(
                    "{} is not an address like alerts@example.org or \"Heartbeat <alerts@example.org>\"",
                    shown_value(&self.from)
                ),
            ));
        }
        if self.to.is_empty() {
            return Err(("to", "needs at least one address".into()));
        }
        if let Some(bad) = self.to.iter().find(|a| !is_mailbox(a)) {
            return Err((
                "to",
                format!(
                    "{} is not an address like oncall@example.org",
                    shown_value(bad)
                ),
            ));
        }
        if !self.ca_file.is_empty() {
            let pem = std::fs::read_to_string(&self.ca_file).map_err(|e| {
                (
                    "ca_file",
                    format!("cannot read {}: {e}", shown_value(&self.ca_file)),
                )
            })?;
            orchestrator_lib::plumbing::check_ca_pem(&pem)
                .map_err(|why| ("ca_file", format!("{} {why}", shown_value(&self.ca_file))))?;
        }
        Ok(())
    }
}

/// `local@domain`, or `Name <local@domain>`: the shape of an address,
/// enough to catch a typo at start (the mailer parses it fully).
fn is_mailbox(text: &str) -> bool {
    let address = match (text.find('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        (None, None) => text,
        _ => return false,
    };
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.contains(char::is_whitespace)
        }
        None => false,
    }
}
