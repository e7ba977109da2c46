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

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use heartbeat_config::Settings;

/// What holds alerts back, shared by the HTTP API, the alerts and the views.
#[derive(Debug, Clone, Default)]
pub struct Quiet {
    pub tokens: Tokens,
    pub silences: Silences,
    /// What the configuration says: a reload replaces it for every clone.
    configured: Arc<RwLock<Configured>>,
}

/// The part of [`Quiet`] that comes from the configuration file.
#[derive(Debug, Default)]
struct Configured {
    maintenance: Arc<Maintenance>,
    /// `[services.NAME] depends_on`, by the dependent's lower-cased name:
    /// while one of these is DOWN as a whole, the dependent's alerts wait.
    depends_on: BTreeMap<String, Vec<String>>,
}

impl Configured {
    fn from_settings(settings: &Settings) -> Result<Self, String> {
        Ok(Self {
            maintenance: Arc::new(Maintenance::from_settings(&settings.maintenance)?),
            depends_on: settings
                .services
                .iter()
                .filter(|(_, s)| !s.depends_on.is_empty())
                .map(|(name, s)| (name.to_lowercase(), s.depends_on.clone()))
                .collect(),
        })
    }
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
            configured: Arc::new(RwLock::new(Configured::from_settings(settings)?)),
        })
    }

    /// A reload's new `[[maintenance]]` windows and `depends_on`, for every
    /// holder of this `Quiet` at once; on an error the old ones stay.
    pub fn reload(&self, settings: &Settings) -> Result<(), String> {
        let configured = Configured::from_settings(settings)?;
        *self.configured.write().unwrap_or_else(|e| e.into_inner()) = configured;
        Ok(())
    }

    /// The configured maintenance windows, as they are now.
    pub fn maintenance(&self) -> Arc<Maintenance> {
        self.read().maintenance.clone()
    }

    /// The services `service` depends on (`depends_on`), if any.
    pub fn parents_of(&self, service: &str) -> Option<Vec<String>> {
        self.read().depends_on.get(&service.to_lowercase()).cloned()
    }

    /// All of `depends_on`, by the dependent's lower-cased name, as it is
    /// now: whom a parent's alert names (`notify::depends`).
    pub fn depends_on(&self) -> BTreeMap<String, Vec<String>> {
        self.read().depends_on.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Configured> {
        // A panic elsewhere while holding the lock leaves whole values
        // (each write replaces the struct): keep reading them.
        self.configured.read().unwrap_or_else(|e| e.into_inner())
    }
}
pub use maintenance::Maintenance;
pub use silence::{Silence, Silences};
