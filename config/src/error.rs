//! The one error type: a setting that cannot be used, in one line.
//!
//! Its messages quote what the user gave (a flag, a variable, a file's
//! value), and a broker URL given to the wrong one would carry its
//! password: every message is shown through the one redaction.

use std::fmt;

/// A setting that cannot be used, said in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub(crate) String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&orchestrator_lib::plumbing::redact_credentials_in(&self.0))
    }
}

impl std::error::Error for SettingsError {}
