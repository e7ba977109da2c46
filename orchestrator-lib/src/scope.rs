//! A scope: which heartbeat a participant belongs to on a shared vhost.
//! Monitors and services of one scope use their own exchange and queue
//! names (`topology` spells them), so a staging monitor never pings, nor
//! hears, production's services on the same vhost. The default scope is
//! the names as they were before scopes, so nothing already running needs
//! a change. Below `identity` and `topology`, which both carry one.

use crate::Error;

/// The longest scope name: with the longest service and instance names
/// (100 bytes each) a scoped service queue,
/// `heartbeat:<scope>:service.<service>/<instance>`, still fits AMQP's
/// 255-byte short string (10 + 32 + 9 + 201 = 252).
pub const MAX_SCOPE_LEN: usize = 32;

/// The name that means the default scope, in a flag or a setting.
pub const DEFAULT_SCOPE: &str = "default";

/// The environment variable a service reads its scope from
/// ([`Scope::from_env`]), as the Python and Node.js examples do.
pub const SCOPE_VARIABLE: &str = "HEARTBEAT_SCOPE_NAME";

/// The scope rule, as error messages and docs/PROTOCOL.md state it.
pub fn scope_rule() -> String {
    format!(
        "1 to {MAX_SCOPE_LEN} letters, digits, '-', '_' or '.', or {DEFAULT_SCOPE:?} for the names without a scope"
    )
}

/// True for a scope name other than the default's: 1 to [`MAX_SCOPE_LEN`]
/// ASCII letters, digits, `-`, `_` or `.` (never `:`, the separator in
/// scoped names, so no scope's names can be another's).
pub fn is_valid_scope(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SCOPE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The default scope (today's names), or a named one. Built only through
/// [`Scope::new`] (or [`Scope::from_env`]), which holds the name to the rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Option<String>);

impl Scope {
    /// `"default"` is the default scope; any other name must follow
    /// [`scope_rule`], else `Err(Error::InvalidScope)`, one line naming the rule.
    pub fn new(name: &str) -> Result<Self, Error> {
        if name == DEFAULT_SCOPE {
            Ok(Self(None))
        } else if is_valid_scope(name) {
            Ok(Self(Some(name.to_owned())))
        } else {
            Err(Error::invalid_scope(name))
        }
    }

    /// From `HEARTBEAT_SCOPE_NAME`: unset or empty is the default scope.
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var(SCOPE_VARIABLE) {
            Ok(name) if !name.is_empty() => Self::new(&name),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid_scope("(not UTF-8)")),
        }
    }

    /// The scope's name: `"default"` for the default scope.
    pub fn name(&self) -> &str {
        self.0.as_deref().unwrap_or(DEFAULT_SCOPE)
    }

    pub fn is_default(&self) -> bool {
        self.0.is_none()
    }

    /// What every name of this scope starts with: `heartbeat.` for the
    /// default scope, `heartbeat:<scope>:` for a named one.
    pub(crate) fn prefix(&self) -> String {
        match &self.0 {
            None => "heartbeat.".to_owned(),
            Some(name) => format!("heartbeat:{name}:"),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_unscoped_names_and_a_bad_name_is_one_line_with_the_rule() {
        assert!(Scope::new("default").unwrap().is_default());
        assert_eq!(Scope::default().name(), "default");
        assert_eq!(Scope::new("staging").unwrap().name(), "staging");
        assert_eq!(
            Scope::new("staging").unwrap().prefix(),
            "heartbeat:staging:"
        );
        assert_eq!(Scope::default().prefix(), "heartbeat.");
        for bad in [
            "",
            "a:b",
            "a b",
            "x".repeat(MAX_SCOPE_LEN + 1).as_str(),
            "é",
        ] {
            let text = Scope::new(bad).unwrap_err().to_string();
            assert!(text.starts_with("invalid scope "), "{text}");
            assert!(text.contains("1 to 32 letters"), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
        assert!(Scope::new(&"x".repeat(MAX_SCOPE_LEN)).is_ok());
        let text = Scope::new("amqp://u:s3cret@h/v").unwrap_err().to_string();
        assert!(!text.contains("s3cret"), "{text}");
    }
}
