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

    #[error("the link to the broker is closed")]
    Closed,

    #[error("the outgoing queue is full ({capacity} messages); message dropped")]
    Backpressure { capacity: usize },

    #[error("invalid setting: {0}")]
    InvalidOption(String),

    #[error("timed out after {0:?} waiting for the broker")]
    Timeout(Duration),
}
