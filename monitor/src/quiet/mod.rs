//! Keeping quiet when it should: what holds alerts back without ever
//! touching detection (states, history and metrics go on regardless).
//!
//! Layout:
//! - `auth`: the HTTP API's bearer tokens (write, and optionally read),
//!   from the environment or a file, compared in constant time.
//! - `silence`: [`Silence`], the shared [`Silences`] registry, kept in the
//!   history store so silences survive a restart.
//! - `api`: `POST/GET/DELETE /api/v1/silences`.
//! - `client`: `monitor silence add|list|expire`, against a running monitor.
//! - `maintenance`: `[[maintenance]]` windows, once or on a cron schedule.

pub mod api;
pub mod auth;
pub mod client;
pub mod maintenance;
pub mod silence;

pub use auth::Tokens;

use std::sync::Arc;

use heartbeat_config::Settings;

/// What holds alerts back, shared by the HTTP API, the alerts and the views.
#[derive(Debug, Clone, Default)]
pub struct Quiet {
    pub tokens: Tokens,
    pub silences: Silences,
    pub maintenance: Arc<Maintenance>,
    /// `[services.NAME] depends_on`, by the dependent's lower-cased name:
    /// while one of these is DOWN as a whole, the dependent's alerts wait.
    pub depends_on: Arc<std::collections::BTreeMap<String, Vec<String>>>,
}

impl Quiet {
    /// Tokens from `env` or `[http]`'s files, silences kept in the history
    /// store (when there is one), the configured maintenance windows.
    pub fn from_settings(
        settings: &Settings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        Ok(Self {
            tokens: Tokens::load(&settings.http, env)?,
            silences: Silences::new(settings.history.enabled().then(|| settings.history.clone())),
            maintenance: Arc::new(Maintenance::from_settings(&settings.maintenance)?),
            depends_on: Arc::new(
                settings
                    .services
                    .iter()
                    .filter(|(_, s)| !s.depends_on.is_empty())
                    .map(|(name, s)| (name.to_lowercase(), s.depends_on.clone()))
                    .collect(),
            ),
        })
    }
}
pub use maintenance::Maintenance;
pub use silence::{Silence, Silences};
