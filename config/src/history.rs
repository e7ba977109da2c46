//! `[history]`: where transitions and per-minute figures are kept.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// SQLite file; empty with an empty `url` turns history off.
    pub path: String,
    /// `postgres://...`; wins over `path` when set.
    pub url: String,
    /// Older records are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Every call to the store (connect, write, read) is given up after this long.
    #[serde(default = "default_store_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_store_timeout() -> Duration {
    Duration::from_secs(5)
}

impl HistorySettings {
    pub fn enabled(&self) -> bool {
        !self.path.trim().is_empty() || !self.url.trim().is_empty()
    }
}
