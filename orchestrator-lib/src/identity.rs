//! Who a service instance is. Below both `topology` (which names its queue
//! after it) and `responder` (which answers as it), so neither imports the other.

use crate::Error;
use crate::scope::Scope;
use crate::wire::is_valid_name;

/// Who answers: a service name shared by its replicas, this replica's id,
/// and the scope it answers in (the default unless [`Identity::in_scope`]).
/// Built only through [`Identity::new`], which holds both names to the
/// name rule: a name the monitor would drop as `bad_name` is refused here,
/// at once, not after the service has run silently unseen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Identity {
    pub service: String,
    pub instance: String,
    /// Whose monitors it answers: its queue is bound to this scope's ping
    /// exchange, and it answers only this scope's monitor queues.
    pub scope: Scope,
}

impl Identity {
    /// `Err(Error::InvalidName)` when either name breaks the rule of
    /// docs/PROTOCOL.md, "Names" (1 to 100 ASCII letters, digits, `-`, `_`
    /// or `.`); the message states the rule.
    pub fn new(service: impl Into<String>, instance: impl Into<String>) -> Result<Self, Error> {
        let (service, instance) = (service.into(), instance.into());
        for (field, name) in [("service", &service), ("instance", &instance)] {
            if !is_valid_name(name) {
                return Err(Error::invalid_name(field, name));
            }
        }
        Ok(Self {
            service,
            instance,
            scope: Scope::default(),
        })
    }

    /// The same instance in `scope` (`Scope::new("staging")?`, or
    /// `Scope::from_env()?` for `HEARTBEAT_SCOPE_NAME`): only that scope's
    /// monitors ping it and hear it.
    pub fn in_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_outside_the_rule_is_refused_with_the_rule_and_never_a_secret() {
        assert!(Identity::new("orders", "orders-1").is_ok());
        let error = Identity::new("Order Service", "o-1").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("service name \"Order Service\""), "{text}");
        assert!(text.contains("1 to 100 letters, digits"), "{text}");
        assert!(error.is_configuration());
        let text = Identity::new("orders", "").unwrap_err().to_string();
        assert!(text.contains("instance name \"\""), "{text}");
        // A URL pasted in the wrong place: its password is not echoed.
        let text = Identity::new("amqp://u:s3cret@host/v", "i")
            .unwrap_err()
            .to_string();
        assert!(!text.contains("s3cret"), "{text}");
        // Nor a terminal escape, nor a page of text.
        let text = Identity::new("a\u{1b}[2J".repeat(100), "i")
            .unwrap_err()
            .to_string();
        assert!(!text.contains('\u{1b}') && text.len() < 250, "{text}");
    }
}
