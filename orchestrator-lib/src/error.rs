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
}

impl Error {
    /// A mistake in what the user configured, as opposed to a failure of
    /// the moment: binaries exit 2 for these, as for bad flags.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Error::InvalidUrl { .. }
                | Error::InvalidOption(_)
                | Error::Tls { .. }
                | Error::AlreadyRunning { .. }
        )
    }
}
