//! Layered settings shared by `monitor` and `mock-service`.
//!
//! Layout:
//! - `default.toml` (next to this crate's `Cargo.toml`): every setting with
//!   its default and a comment; built in, so it is the lowest layer.
//! - `settings`: [`Settings`] and its sections' types; how one service's
//!   `[services.NAME]` falls back to `[detection]`.
//! - `broker`, `notify`, `history`, `budget`: those sections' own types;
//!   `broker` also holds [`resolve_broker_url`], the broker URL's own precedence.
//! - `load`: [`Settings::load`]: that file, then an optional user file, then
//!   `MONITOR__...` environment variables. Flags are applied by each binary
//!   on the returned value, then `validate` ([`Settings::validate`]) runs.
//! - `quiet`: name patterns, `[[maintenance]]` windows, the `depends_on` cycle check.
//! - `error`: [`SettingsError`], one line.
//! - `flags`: [`parse_flags`], clap's parsing with any URL's password hidden
//!   in its errors; `generate`: `--generate man|complete-*`.

mod broker;
mod budget;
mod error;
mod flags;
mod generate;
mod history;
mod load;
mod notify;
mod quiet;
mod settings;
mod validate;

pub use broker::{
    BrokerNodes, BrokerSettings, DEFAULT_BROKER_URL, UrlSource, command_line_password_warning,
    resolve_broker_url,
};
pub use budget::BudgetSettings;
pub use error::SettingsError;
pub use flags::parse_flags;
pub use history::HistorySettings;
pub use load::{DEFAULT_TOML, ENV_PREFIX};
pub use notify::{NotifyKind, NotifySettings, STATE_CODES};
pub use quiet::{
    MaintenanceSettings, any_matches, dependency_cycle, is_pattern, parse_schedule, parse_timezone,
    pattern_matches,
};
pub use settings::{
    Detection, DetectionMode, GroupSettings, HttpSettings, ServiceSettings, Settings,
};
pub use validate::{MAX_ACCEPTABLE_PAUSE, MAX_PHI_THRESHOLD};

#[cfg(test)]
mod tests;
