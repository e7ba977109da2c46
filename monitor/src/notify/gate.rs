//! In a monitor group, what passes from the policies to the targets: only
//! the leader sends, only what the group has not sent already (its ledger,
//! which standbys follow), and a firing only once the group agrees (a
//! quorum of the members alive judge its subject in its state: see
//! `fleet::GroupPart`); until then it waits, and it is dropped if this
//! member's own view ends first. On becoming leader, a member squares its
//! own view with the ledger: it resolves what the group fired and it sees
//! ended, and fires what it sees firing, the group agrees on, and the group
//! never sent. Pure but for the group handle it reads and publishes through.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use heartbeat_config::NotifyKind;
use tracing::info;

use super::policy::{Change, EventKind, PolicyEvent};
use crate::group::{AlertKey, Fired, Group};

pub struct Gate {
    group: Group,
    /// Per target, by its index among `[[notify]]`: its key (`target_key`,
    /// where it delivers, the same on every member and across a reload that
    /// keeps it; the ledger knows targets by it) and its kind (an
    /// Alertmanager is told again of alerts it already has on a takeover:
    /// it re-pushes firing alerts, and the same labels are the same alert
    /// there).
    targets: Vec<(String, NotifyKind)>,
    /// What this member's own policies have firing now.
    mine: BTreeMap<AlertKey, PolicyEvent>,
    /// The latest state code of each subject, as this member judges it.
    current: HashMap<(String, Option<String>), String>,
    /// Firings of this member's own that the group does not agree on yet.
    waiting: BTreeSet<AlertKey>,
    leading: bool,
}

fn key(target: &str, event: &PolicyEvent) -> AlertKey {
    let alert = event.ended.as_ref().unwrap_or(&event.change);
    AlertKey {
        target: target.to_owned(),
        service: alert.service.clone(),
        instance: alert.instance.clone(),
        state: alert.to.clone(),
    }
}

fn fired(event: &PolicyEvent, by: &str) -> Fired {
    Fired {
        since: event.change.at,
        from: event.change.from.clone(),
        by: by.to_owned(),
    }
}

impl Gate {
    pub fn new(group: Group, targets: Vec<(String, NotifyKind)>) -> Self {
        Self {
            group,
            targets,
            mine: BTreeMap::new(),
            current: HashMap::new(),
            waiting: BTreeSet::new(),
            leading: false,
        }
    }

    /// The targets of a reloaded configuration. The ledger knows targets
    /// by where they deliver, so a target kept by the reload keeps what the
    /// group sent it, wherever it now stands in the list; what this member
    /// had firing or waiting for a target no longer configured is dropped.
    pub fn retarget(&mut self, targets: Vec<(String, NotifyKind)>) {
        self.targets = targets;
        let targets = &self.targets;
        let kept = |key: &AlertKey| targets.iter().any(|(k, _)| *k == key.target);
        self.mine.retain(|key, _| kept(key));
        self.waiting.retain(kept);
    }

    /// Where the target with ledger key `target` stands now, if it is configured.
    fn index_of(&self, target: &str) -> Option<usize> {
        self.targets.iter().position(|(k, _)| k == target)
    }

    /// A change this member judged.
    pub fn observe(&mut self, change: &Change) {
        self.current.insert(
            (change.service.clone(), change.instance.clone()),
            change.to.clone(),
        );
    }

    /// The monitor forgot an instance.
    pub fn forget(&mut self, service: &str, instance: &str) {
        self.current
            .remove(&(service.to_owned(), Some(instance.to_owned())));
    }

    /// Whether `event`, due for `target` by this member's policy, is sent.
    pub fn admit(&mut self, target: usize, event: &PolicyEvent) -> bool {
        let Some((target, _)) = self.targets.get(target) else {
            return false;
        };
        let key = key(target, event);
        match event.kind {
            EventKind::Firing | EventKind::Restored => {
                self.mine.insert(key.clone(), event.clone());
            }
            EventKind::Resolved | EventKind::Forgotten => {
                self.mine.remove(&key);
                self.waiting.remove(&key);
            }
            EventKind::Reminder => {}
        }
        if !self.leading_now() {
            return false;
        }
        if matches!(event.kind, EventKind::Firing | EventKind::Restored) && !self.agreed(&key) {
            // This member's own view, not yet the group's: it waits.
            self.waiting.insert(key);
            return false;
        }
        let admitted = self.group.ledger(|ledger| match event.kind {
            EventKind::Firing | EventKind::Restored if ledger.is_firing(&key) => None,
            // Restored: firing before a restart of the whole group; the
            // ledger takes it back so that its resolution goes out.
            EventKind::Firing | EventKind::Restored => {
                let fired = fired(event, &self.group.me);
                ledger.fire(key.clone(), fired.clone());
                Some(Some(fired))
            }
            EventKind::Resolved | EventKind::Forgotten => ledger.resolve(&key).then_some(None),
            EventKind::Reminder => None,
        });
        match admitted {
            Some(entry) => {
                self.group.publish_sent(vec![(key, entry)]);
                true
            }
            // A reminder goes out only for what the group has firing.
            None => event.kind == EventKind::Reminder && self.group.ledger(|l| l.is_firing(&key)),
        }
    }

    /// Looked at every tick: on becoming leader, the events that square
    /// this member's view with what the group has sent (already entered in
    /// the ledger and published).
    pub fn check(&mut self) -> Vec<(usize, PolicyEvent)> {
        let leading = self.group.leads();
        let took_over = leading && !self.leading;
        self.leading = leading;
        if took_over {
            self.take_over()
        } else if leading {
            self.agreed_since()
        } else {
            Vec::new()
        }
    }

    /// Whether the group agrees with this member on `key`'s subject and state.
    fn agreed(&self, key: &AlertKey) -> bool {
        self.group
            .agrees(&key.service, key.instance.as_deref(), &key.state)
    }

    /// The waiting firings the group now agrees on (entered in the ledger
    /// and published); those this member no longer has firing are dropped.
    fn agreed_since(&mut self) -> Vec<(usize, PolicyEvent)> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let mine = &self.mine;
        self.waiting.retain(|key| mine.contains_key(key));
        let ready: Vec<AlertKey> = self
            .waiting
            .iter()
            .filter(|key| self.agreed(key))
            .cloned()
            .collect();
        let mut out = Vec::new();
        let mut published = Vec::new();
        for key in ready {
            self.waiting.remove(&key);
            if self.group.ledger(|l| l.is_firing(&key)) {
                continue;
            }
            let event = self.mine[&key].clone();
            let fired = fired(&event, &self.group.me);
            self.group.ledger(|l| l.fire(key.clone(), fired.clone()));
            published.push((key.clone(), Some(fired)));
            out.extend(self.index_of(&key.target).map(|i| (i, event)));
        }
        self.group.publish_sent(published);
        out
    }

    fn leading_now(&mut self) -> bool {
        // A takeover's events are sent from `check`; until it has run, this
        // member does not act as leader.
        self.leading && self.group.leads()
    }

    fn take_over(&mut self) -> Vec<(usize, PolicyEvent)> {
        let me = self.group.me.clone();
        let now = Utc::now();
        let mut out = Vec::new();
        let mut published = Vec::new();
        let ledger: Vec<(AlertKey, Fired)> = self
            .group
            .ledger(|l| l.firing().map(|(k, f)| (k.clone(), f.clone())).collect());
        for (key, was) in &ledger {
            if self.mine.contains_key(key) {
                // Firing for both: an Alertmanager gets it again, to keep
                // re-pushing it; nobody else hears of it twice.
                if let Some(i) = self.index_of(&key.target)
                    && self.targets[i].1 == NotifyKind::Alertmanager
                {
                    out.push((i, self.mine[key].clone()));
                }
                continue;
            }
            // Ended, as this member sees it: resolve it. Unknown here, or
            // still in that state (its `for` not yet run out): leave it.
            let subject = (key.service.clone(), key.instance.clone());
            let Some(now_state) = self.current.get(&subject).cloned() else {
                continue;
            };
            if now_state == key.state {
                continue;
            }
            let ended = Change {
                at: was.since,
                service: key.service.clone(),
                instance: key.instance.clone(),
                from: was.from.clone(),
                to: key.state.clone(),
                reason: "",
                detail: String::new(),
                count: None,
            };
            let change = Change {
                at: now,
                from: key.state.clone(),
                reason: if now_state == "left" {
                    "left"
                } else {
                    "recovered"
                },
                detail: format!("ended while {} led", was.by),
                to: now_state,
                ..ended.clone()
            };
            self.group.ledger(|l| l.resolve(key));
            published.push((key.clone(), None));
            // A target the group fired through but no longer configured
            // here: resolved in the ledger, told to nobody.
            out.extend(self.index_of(&key.target).map(|i| {
                (
                    i,
                    PolicyEvent {
                        kind: EventKind::Resolved,
                        change,
                        ended: Some(ended),
                    },
                )
            }));
        }
        for (key, event) in &self.mine {
            if self.group.ledger(|l| l.is_firing(key)) {
                continue;
            }
            if !self.agreed(key) {
                self.waiting.insert(key.clone());
                continue;
            }
            let fired = fired(event, &me);
            self.group.ledger(|l| l.fire(key.clone(), fired.clone()));
            published.push((key.clone(), Some(fired)));
            out.extend(self.index_of(&key.target).map(|i| (i, event.clone())));
        }
        info!(
            group = %self.group.name,
            resolved = published.iter().filter(|(_, f)| f.is_none()).count(),
            fired = published.iter().filter(|(_, f)| f.is_some()).count(),
            "took over the group's alerts"
        );
        self.group.publish_sent(published);
        self.group.publish_ledger();
        out
    }
}
