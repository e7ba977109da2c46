//! A warning logged at a limited rate: a flood of one kind of failure is one
//! line every [`LOG_EVERY`], saying how many like it were held back. Below
//! every task that warns (the engine, alerts, history), so none imports
//! another for it.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

/// At most one line per [`Limited`] this often; the rest are counted.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A warning at most every [`LOG_EVERY`], saying how many were held back.
pub struct Limited {
    what: String,
    last: Option<Instant>,
    held: u64,
}

impl Limited {
    pub fn new(what: String) -> Self {
        Self {
            what,
            last: None,
            held: 0,
        }
    }

    pub fn warn(&mut self, message: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            self.held += 1;
            return;
        }
        if self.held > 0 {
            warn!(
                "{}: {message} ({} more like it not logged)",
                self.what, self.held
            );
        } else {
            warn!("{}: {message}", self.what);
        }
        self.last = Some(now);
        self.held = 0;
    }
}
