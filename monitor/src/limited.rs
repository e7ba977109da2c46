//! A warning logged at a limited rate: a flood of one kind of failure is one
//! line every [`LOG_EVERY`], saying how many like it were held back. Below
//! every task that warns (the engine, alerts, history), so none imports
//! another for it. The line is written by [`warn_limited!`] where it is
//! called, so its log target is the caller's module (`monitor::engine` for
//! the instance cap, `monitor::notify` for alerts), never this one's.

use std::time::Duration;

use tokio::time::Instant;

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

    /// What every line begins with.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Whether a line may be written now, and if so how many were held
    /// back since the last one; otherwise this one is counted as held.
    pub fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// `warn_limited!(limited, "format", args…)`: a warning through a
/// [`Limited`], logged under the calling module's target; the arguments
/// are evaluated only when a line is written, so they may cost a walk.
macro_rules! warn_limited {
    ($limited:expr, $($arg:tt)+) => {
        if let Some(held) = $limited.due() {
            let what = $limited.what();
            if held > 0 {
                tracing::warn!(
                    "{what}: {} ({held} more like it not logged)",
                    format_args!($($arg)+)
                );
            } else {
                tracing::warn!("{what}: {}", format_args!($($arg)+));
            }
        }
    };
}
pub(crate) use warn_limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_period_with_the_count_held_back() {
        let mut limited = Limited::new("instance cap".into());
        assert_eq!(limited.due(), Some(0));
        assert_eq!(limited.due(), None);
        assert_eq!(limited.due(), None);
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(limited.due(), Some(2));
        assert_eq!(limited.what(), "instance cap");
    }
}
