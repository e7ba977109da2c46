use std::time::Duration;

/// Everything the library can report to its caller. Messages are one line and
/// say what to do; URLs in them are always redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid broker URL {url}: {why}")]
    InvalidUrl { url: String, why: String },

    #[error(
        "the broker at {url} refused the login ({detail}); check the user name and password in the URL"
    )]
    AccessRefused { url: String, detail: String },

    /// Logged in, then refused an exchange, a queue or the vhost: the
    /// user's permissions, not its password.
    #[error(
        "the broker at {url} denied this user access ({detail}); give it the permissions in the README's \"Least privilege\" on the URL's vhost"
    )]
    PermissionDenied { url: String, detail: String },

    /// TLS could not be set up: a certificate that does not verify, a host
    /// name it does not name, or a port that does not speak TLS. Retrying
    /// cannot fix it, and falling back to plain text must never happen.
    #[error("TLS with the broker at {url} failed: {detail}")]
    Tls { url: String, detail: String },

    /// A service or instance name outside docs/PROTOCOL.md's rule. `shown`
    /// is the value as [`Error::invalid_name`] makes it safe to print.
    #[error("invalid {field} name {shown}: use {}", crate::wire::name_rule())]
    InvalidName { field: &'static str, shown: String },

    /// A scope name outside [`scope_rule`](crate::scope::scope_rule).
    /// `shown` is the value as [`Error::invalid_scope`] makes it safe to print.
    #[error("invalid scope {shown}: use {}", crate::scope::scope_rule())]
    InvalidScope { shown: String },

    #[error("the link to the broker is closed")]
    Closed,

    #[error("the outgoing queue is full ({capacity} messages); message dropped")]
    Backpressure { capacity: usize },

    #[error("invalid setting: {0}")]
    InvalidOption(String),

    #[error("timed out after {0:?} waiting for the broker")]
    Timeout(Duration),

    /// Another connection holds the exclusive queue of this identity, past
    /// the grace a restart gets: two processes claim the same name.
    #[error(
        "another process already runs {owner} (its queue {queue} is held by another connection); stop it, or give this one another --instance"
    )]
    AlreadyRunning { owner: String, queue: String },

    /// Our exclusive queue still held, past a long wait, after a connection
    /// of our own ended with it declared: the broker has not closed that
    /// connection of ours. Not another process.
    #[error(
        "the broker still holds queue {queue} ({owner}) for an earlier connection of this process, {waited:?} after it ended; the broker is too slow for this load: run fewer services per process, or try again when it has closed that connection"
    )]
    OwnQueueHeld {
        owner: String,
        queue: String,
        waited: Duration,
    },
}

impl Error {
    /// [`Error::InvalidName`] for `value`, shown safely: any URL's password
    /// hidden (the one redaction), quoted with escapes (no terminal control
    /// characters), and cut to 40 characters.
    pub fn invalid_name(field: &'static str, value: &str) -> Self {
        Error::InvalidName {
            field,
            shown: shown_value(value),
        }
    }

    /// [`Error::InvalidScope`] for `value`, shown as [`Error::invalid_name`] shows a name.
    pub fn invalid_scope(value: &str) -> Self {
        Error::InvalidScope {
            shown: shown_value(value),
        }
    }

    /// A mistake in what the user configured, as opposed to a failure of
    /// the moment: binaries exit 2 for these, as for bad flags.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Error::InvalidUrl { .. }
                | Error::InvalidOption(_)
                | Error::InvalidName { .. }
                | Error::InvalidScope { .. }
                | Error::Tls { .. }
                | Error::AlreadyRunning { .. }
        )
    }
}

/// A value a user gave, for an error message: credentials redacted,
/// Debug-quoted, at most 40 characters of it.
pub fn shown_value(value: &str) -> String {
    let redacted = crate::broker_url::redact_credentials_in(value);
    let mut cut: String = redacted.chars().take(40).collect();
    if cut.len() < redacted.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}
