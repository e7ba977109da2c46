//! What the group has sent: per `[[notify]]` target, the alerts fired and
//! not yet resolved. The leader writes it as it sends, and publishes each
//! entry; standbys follow it, so whoever leads next neither repeats a
//! firing nor forgets to resolve one. Pure: no I/O, no clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One alert: a target (its key, `notify::target_key`: where it delivers,
/// the same on every member whatever the order of their `[[notify]]`
/// entries, and across a reload that keeps it), a subject (an instance, or
/// a whole service when `instance` is `None`) and the state the alert is
/// about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub target: String,
    pub service: String,
    pub instance: Option<String>,
    pub state: String,
}

/// How a firing alert was sent: enough to resolve it by someone else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired {
    /// When the subject entered the state (the sender's view).
    pub since: DateTime<Utc>,
    /// The state it came from.
    pub from: String,
    /// Who sent it.
    pub by: String,
}

/// Alerts fired and not resolved, by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    firing: BTreeMap<AlertKey, Fired>,
}

impl Ledger {
    pub fn is_firing(&self, key: &AlertKey) -> bool {
        self.firing.contains_key(key)
    }

    pub fn fire(&mut self, key: AlertKey, fired: Fired) {
        self.firing.insert(key, fired);
    }

    /// True when it was firing.
    pub fn resolve(&mut self, key: &AlertKey) -> bool {
        self.firing.remove(key).is_some()
    }

    /// An entry as another member published it: `Some` fired, `None` resolved.
    pub fn apply(&mut self, key: AlertKey, fired: Option<Fired>) {
        match fired {
            Some(fired) => self.fire(key, fired),
            None => {
                self.resolve(&key);
            }
        }
    }

    /// The leader's whole ledger replaces ours.
    pub fn replace(&mut self, firing: Vec<(AlertKey, Fired)>) {
        self.firing = firing.into_iter().collect();
    }

    pub fn firing(&self) -> impl Iterator<Item = (&AlertKey, &Fired)> {
        self.firing.iter()
    }

    pub fn len(&self) -> usize {
        self.firing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.firing.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(instance: &str) -> AlertKey {
        AlertKey {
            target: "webhook-0011223344556677".into(),
            service: "orders".into(),
            instance: Some(instance.into()),
            state: "down".into(),
        }
    }

    fn fired() -> Fired {
        Fired {
            since: Utc::now(),
            from: "up".into(),
            by: "m-1".into(),
        }
    }

    #[test]
    fn fired_until_resolved_and_a_snapshot_replaces_everything() {
        let mut ledger = Ledger::default();
        ledger.apply(key("a"), Some(fired()));
        ledger.fire(key("b"), fired());
        assert!(ledger.is_firing(&key("a")) && ledger.is_firing(&key("b")));
        ledger.apply(key("a"), None);
        assert!(!ledger.is_firing(&key("a")));
        assert!(!ledger.resolve(&key("a")), "resolved once only");
        ledger.replace(vec![(key("c"), fired())]);
        assert_eq!(ledger.len(), 1);
        assert!(ledger.is_firing(&key("c")) && !ledger.is_firing(&key("b")));
    }
}
