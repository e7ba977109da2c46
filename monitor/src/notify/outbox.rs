//! What a webhook, command, Slack or email target has not been told yet. Every event
//! waits here until it is delivered, replaced by a later event about the
//! same alert, or older than `retry_for`; what waits goes out together,
//! as one notification, once the oldest has waited `group_wait` (so a
//! storm is a few bodies, not one request per instance). Only an event
//! already tried (its delivery failed) is replaced: within one group
//! window a firing and its resolve both go, in order. Pure: instants and
//! wall-clock milliseconds come in from the caller.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::Event;

/// Which alert an event is about: one subject in one alerting state. A
/// later event with the same key replaces an undelivered one (a resolve
/// its firing, a new firing its resolve), so what waits stays bounded by
/// the fleet, however long a receiver is away.
type Key = (String, Option<String>, String);

fn key(event: &Event) -> Key {
    (
        event.service.clone(),
        event.instance.clone(),
        event.alert_state.clone(),
    )
}

/// One event waiting.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// Unique, and in arrival order.
    pub id: u64,
    pub event: Event,
    /// When it reached the outbox (the group window counts from here).
    pub arrived: Instant,
    /// When it was first made, ms since the epoch: its age survives a restart.
    pub created_ms: i64,
    /// A delivery of it failed (or it was kept over a restart): a later
    /// event about the same alert replaces it.
    pub tried: bool,
}

/// What became of an event offered to the outbox.
#[derive(Debug, PartialEq)]
pub enum Offered {
    /// It waits under this id.
    Kept(u64),
    /// It waits under this id, in place of the undelivered event `replaced`.
    Replaced { id: u64, replaced: u64 },
    /// A reminder of an alert whose firing still waits: the firing says it.
    NotNeeded,
    /// The outbox holds `queue` events already: dropped.
    Full,
}

#[derive(Debug)]
pub struct Outbox {
    waiting: BTreeMap<u64, Waiting>,
    by_key: HashMap<Key, u64>,
    next_id: u64,
    bound: usize,
}

impl Outbox {
    pub fn new(bound: usize) -> Self {
        Self {
            waiting: BTreeMap::new(),
            by_key: HashMap::new(),
            next_id: 1,
            bound: bound.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// A new event, or one read back from the store after a restart (`tried`).
    pub fn offer(
        &mut self,
        event: Event,
        arrived: Instant,
        created_ms: i64,
        tried: bool,
    ) -> Offered {
        let key = key(&event);
        let older = self
            .by_key
            .get(&key)
            .and_then(|old| self.waiting.get(old))
            .filter(|old| old.tried)
            .map(|old| (old.id, old.event.event));
        let replaced = match older {
            Some((_, old_kind)) if event.event == "reminder" && old_kind != "reminder" => {
                return Offered::NotNeeded;
            }
            Some((old, _)) => {
                self.waiting.remove(&old);
                Some(old)
            }
            None if self.waiting.len() >= self.bound => return Offered::Full,
            None => None,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.by_key.insert(key, id);
        self.waiting.insert(
            id,
            Waiting {
                id,
                event,
                arrived,
                created_ms,
                tried,
            },
        );
        match replaced {
            Some(replaced) => Offered::Replaced { id, replaced },
            None => Offered::Kept(id),
        }
    }

    /// When the longest-waiting event was made, ms since the epoch.
    pub fn oldest_created_ms(&self) -> Option<i64> {
        self.waiting.values().next().map(|w| w.created_ms)
    }

    /// When what waits should go out: once the oldest has waited `group_wait`.
    pub fn due_at(&self, group_wait: Duration) -> Option<Instant> {
        // Ids are given in arrival order: the first waited longest.
        self.waiting.values().next().map(|w| w.arrived + group_wait)
    }

    /// The next notification's events: the oldest `max`, in arrival order.
    /// They stay until [`Outbox::delivered`].
    pub fn next_batch(&self, max: usize) -> Vec<Waiting> {
        self.waiting.values().take(max).cloned().collect()
    }

    /// These were delivered: they wait no more (any replaced since are gone already).
    pub fn delivered(&mut self, ids: &[u64]) {
        for id in ids {
            self.remove(*id);
        }
    }

    /// A delivery of these failed: a later event about the same alert replaces them.
    pub fn failed(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(w) = self.waiting.get_mut(id) {
                w.tried = true;
            }
        }
    }

    fn remove(&mut self, id: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&id)?;
        let key = key(&w.event);
        // A later event about the same alert may wait under the key now.
        if self.by_key.get(&key) == Some(&id) {
            self.by_key.remove(&key);
        }
        Some(w)
    }

    /// Events made before `oldest_ms`: given up, no longer waiting.
    pub fn expire(&mut self, oldest_ms: i64) -> Vec<Waiting> {
        let old: Vec<u64> = self
            .waiting
            .values()
            .filter(|w| w.created_ms < oldest_ms)
            .map(|w| w.id)
            .collect();
        old.into_iter().filter_map(|id| self.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn event(kind: &'static str, instance: &str, state: &str) -> Event {
        Event {
            event: kind,
            scope: "instance",
            service: "orders".into(),
            instance: Some(instance.into()),
            from: "up".into(),
            to: state.into(),
            reason: "timed_out",
            at: chrono::Utc::now(),
            alert_state: state.into(),
            alert_since: chrono::Utc::now(),
            monitor: "m".into(),
            summary: String::new(),
            counts: Map::new(),
            up: None,
            expected: None,
            dependents: Vec::new(),
        }
    }

    #[test]
    fn a_resolve_replaces_its_firing_once_tried_and_a_reminder_never_does() {
        let t0 = Instant::now();
        let mut out = Outbox::new(10);
        assert_eq!(
            out.offer(event("firing", "o-1", "down"), t0, 0, false),
            Offered::Kept(1)
        );
        // Not tried yet: both go, in order, in the same group.
        assert_eq!(
            out.offer(event("resolved", "o-1", "down"), t0, 1, false),
            Offered::Kept(2)
        );
        let batch: Vec<_> = out.next_batch(10).iter().map(|w| w.event.event).collect();
        assert_eq!(batch, ["firing", "resolved"]);
        out.delivered(&[1, 2]);
        assert!(out.is_empty());

        assert_eq!(
            out.offer(event("firing", "o-1", "down"), t0, 2, false),
            Offered::Kept(3)
        );
        out.failed(&[3]);
        assert_eq!(
            out.offer(event("reminder", "o-1", "down"), t0, 3, false),
            Offered::NotNeeded
        );
        // Another alert state of the same instance is another alert.
        assert_eq!(
            out.offer(event("firing", "o-1", "flapping"), t0, 4, false),
            Offered::Kept(4)
        );
        assert_eq!(
            out.offer(event("resolved", "o-1", "down"), t0, 5, false),
            Offered::Replaced { id: 5, replaced: 3 }
        );
        let batch: Vec<_> = out
            .next_batch(10)
            .iter()
            .map(|w| (w.id, w.event.event))
            .collect();
        assert_eq!(batch, [(4, "firing"), (5, "resolved")]);
        out.delivered(&[4, 5]);
        assert!(out.is_empty());
    }

    #[test]
    fn bounded_by_queue_but_a_replacement_always_fits() {
        let t0 = Instant::now();
        let mut out = Outbox::new(2);
        out.offer(event("firing", "o-1", "down"), t0, 0, true);
        out.offer(event("firing", "o-2", "down"), t0, 0, true);
        assert_eq!(
            out.offer(event("firing", "o-3", "down"), t0, 0, false),
            Offered::Full
        );
        assert!(matches!(
            out.offer(event("resolved", "o-1", "down"), t0, 0, false),
            Offered::Replaced { .. }
        ));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn due_once_the_oldest_has_waited_and_old_events_expire() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(3);
        let mut out = Outbox::new(10);
        assert_eq!(out.due_at(wait), None);
        out.offer(
            event("firing", "o-1", "down"),
            t0 + Duration::from_secs(1),
            1_000,
            false,
        );
        out.offer(
            event("firing", "o-2", "down"),
            t0 + Duration::from_secs(2),
            5_000,
            false,
        );
        assert_eq!(out.due_at(wait), Some(t0 + Duration::from_secs(4)));
        assert_eq!(out.next_batch(1).len(), 1);
        let gone = out.expire(2_000);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].event.instance.as_deref(), Some("o-1"));
        assert_eq!(out.due_at(wait), Some(t0 + Duration::from_secs(5)));
        assert_eq!(out.oldest_created_ms(), Some(5_000));
        // A firing again for the expired one is new, not a replacement.
        assert_eq!(
            out.offer(event("firing", "o-1", "down"), t0, 6_000, false),
            Offered::Kept(3)
        );
    }
}
