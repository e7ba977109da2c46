//! [`Fleet`]: everything known of the fleet, built from the engine's
//! updates in one place ([`Fleet::apply`]) and read by every view. Pure:
//! both clocks come in as arguments.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrator_lib::plumbing::LinkStatus;
use tokio::time::Instant;

use super::group::{GroupPart, Subject, Verdicts};
use super::instance::Instance;
use super::mark::Mark;
use crate::budget::Cost;
use crate::detector::StoredUptimes;
use crate::detector::{InstanceId, InstanceKey, State, Strength, UNSEEN_INSTANCE};
use crate::quiet::Quiet;
use crate::update::{EchoSeen, Report, Update};

/// Transitions kept for the event log, newest first.
pub const LOG_CAPACITY: usize = 500;

/// A service as the engine last judged it against its expected instances
/// (only services with an `instances` setting are judged so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    pub strength: Strength,
    pub up: u32,
    pub expected: u32,
}

/// One service's instances, counted by [`Instance::counts_alive`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCount {
    pub alive: usize,
    /// Of those alive, the ones not in doubt ([`Instance::vouches_for_dependents`]):
    /// none, and the services that depend on it have their alerts held.
    pub vouching: usize,
    pub all: usize,
    /// Instances it should have (`instances`), when the settings say.
    pub expected: Option<u32>,
}

impl ServiceCount {
    /// Out of how many it is counted: the expected number, or all it has.
    pub fn of(&self) -> usize {
        self.expected.map_or(self.all, |e| e as usize)
    }

    /// None alive is DOWN as a whole; fewer than [`of`](Self::of) is degraded.
    pub fn strength(&self) -> Strength {
        if self.alive == 0 {
            Strength::Down
        } else if self.alive < self.of() {
            Strength::Degraded
        } else {
            Strength::Full
        }
    }
}

/// Instances by state and by service, counted in one walk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    by_state: [usize; State::ALL.len()],
    pub services: HashMap<String, ServiceCount>,
}

impl Tally {
    pub fn count(&self, state: State) -> usize {
        self.by_state[state_index(state)]
    }
}

fn state_index(state: State) -> usize {
    State::ALL
        .iter()
        .position(|&s| s == state)
        .expect("ALL lists every state")
}

/// What is known of the fleet and of the monitor's own link.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub rows: Vec<Instance>,
    index: HashMap<InstanceKey, usize>,
    /// The same rows by the detector's id: every echo is looked up, and an
    /// id is one number to hash and compare where a key is two strings in
    /// memory the cache no longer holds.
    by_id: HashMap<InstanceId, usize>,
    /// Transitions, newest first.
    pub log: VecDeque<Report>,
    /// The latest ping's seq.
    pub seq: u64,
    pub link: LinkStatus,
    pub link_since: Instant,
    pub link_since_wall: DateTime<Utc>,
    /// The monitor's own latest stall: when it was seen, and how late its loop ran.
    pub stall: Option<(Instant, Duration)>,
    /// When the engine last showed it is alive (sent a ping), or when the link came up.
    pub engine_seen: Instant,
    /// Services the engine judged below their expected instances, by name.
    pub judged: BTreeMap<String, Judged>,
    /// Instances each service should have, from the settings.
    pub expected: HashMap<String, u32>,
    pub started: Instant,
    pub started_wall: DateTime<Utc>,
    /// Uptimes over 24 h, 7 d and 30 d from the history store, refreshed
    /// every minute while one is kept: every view shows these.
    pub stored_uptime: HashMap<InstanceKey, StoredUptimes>,
    /// What the heartbeat costs and the interval in force, from the
    /// engine's latest count (none before its first ping).
    pub cost: Option<Arc<Cost>>,
    /// Bumped by every change a view's order or counts depend on (a state,
    /// a row added or removed); not by echoes.
    version: u64,
    /// What holds alerts back (silences, maintenance windows): a shared
    /// handle, read by [`Fleet::mark`] at the wall time the view asks for.
    quiet: Quiet,
    /// The monitor group, in one: its members, leader and verdicts.
    pub group: Option<GroupPart>,
}

impl Fleet {
    /// A fleet of expected services not yet heard from: each is one
    /// placeholder row (instance `-`, NEVER SEEN) until an instance of it
    /// answers. The one rule for expected services every view shows.
    pub fn new(expect: &[String], now: Instant, wall: DateTime<Utc>) -> Self {
        let mut fleet = Self {
            rows: Vec::new(),
            index: HashMap::new(),
            by_id: HashMap::new(),
            log: VecDeque::new(),
            seq: 0,
            link: LinkStatus::Connecting,
            link_since: now,
            link_since_wall: wall,
            stall: None,
            engine_seen: now,
            judged: BTreeMap::new(),
            expected: HashMap::new(),
            started: now,
            started_wall: wall,
            stored_uptime: HashMap::new(),
            cost: None,
            version: 0,
            quiet: Quiet::default(),
            group: None,
        };
        for service in expect {
            fleet.row_index(
                &InstanceKey::new(service.clone(), UNSEEN_INSTANCE),
                now,
                wall,
            );
        }
        fleet
    }

    /// Instances each service should have (`instances` in its settings).
    pub fn with_expected(mut self, expected: HashMap<String, u32>) -> Self {
        self.expected = expected;
        self
    }

    /// Marks rows with the silences and windows `quiet` holds.
    pub fn with_quiet(mut self, quiet: Quiet) -> Self {
        self.quiet = quiet;
        self
    }

    /// A member of a monitor group: rows show the group's verdict.
    pub fn with_group(mut self, group: GroupPart) -> Self {
        self.group = Some(group);
        self
    }

    /// This monitor's own verdicts, as it shares them with its group: every
    /// instance it knows (an expected service never heard as its
    /// placeholder, NEVER SEEN), and each service below full strength.
    pub fn own_verdicts(&self) -> Verdicts {
        let mut verdicts: Verdicts = self
            .rows
            .iter()
            .map(|row| {
                let subject: Subject = (row.key.service.clone(), Some(row.key.instance.clone()));
                (subject, row.own.code().to_owned())
            })
            .collect();
        for (service, judged) in &self.judged {
            verdicts.insert((service.clone(), None), judged.strength.code().to_owned());
        }
        verdicts
    }

    /// Every row shown as the group judges it now: after the members'
    /// verdicts or who is alive changed.
    pub fn regroup(&mut self, now: Instant, wall: DateTime<Utc>) {
        for i in 0..self.rows.len() {
            self.regroup_row(i, now, wall);
        }
    }

    fn regroup_row(&mut self, i: usize, now: Instant, wall: DateTime<Utc>) {
        let Some(group) = &self.group else { return };
        let row = &self.rows[i];
        if row.is_placeholder() {
            return;
        }
        let subject = (row.key.service.clone(), Some(row.key.instance.clone()));
        let shown = group.instance_state(&subject, row.own, now);
        if shown != row.state {
            self.rows[i].reshow(shown, now, wall);
            self.version += 1;
        }
    }

    pub fn quiet(&self) -> &Quiet {
        &self.quiet
    }

    /// What holds this row's alerts back at `wall`, if anything: the one
    /// answer every view shows (states never change for it).
    pub fn mark(&self, row: &Instance, wall: DateTime<Utc>) -> Option<Mark> {
        super::mark::of(&self.quiet, row, wall)
    }

    /// Changes with every state, row added or row removed.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn row(&self, key: &InstanceKey) -> Option<&Instance> {
        self.index.get(key).map(|&i| &self.rows[i])
    }

    /// How many ids are known: one per row that has had an echo.
    #[cfg(test)]
    pub fn ids(&self) -> usize {
        self.by_id.len()
    }

    /// Where `key`'s row is, added if it has none.
    fn row_index(&mut self, key: &InstanceKey, now: Instant, wall: DateTime<Utc>) -> usize {
        match self.index.get(key) {
            Some(&i) => i,
            None => {
                self.rows.push(Instance::new(key.clone(), now, wall));
                self.index.insert(key.clone(), self.rows.len() - 1);
                self.version += 1;
                self.rows.len() - 1
            }
        }
    }

    fn remove(&mut self, key: &InstanceKey) {
        if let Some(i) = self.index.remove(key) {
            let removed = self.rows.swap_remove(i);
            if let Some(id) = removed.id {
                self.by_id.remove(&id);
            }
            if let Some(moved) = self.rows.get(i) {
                self.index.insert(moved.key.clone(), i);
                if let Some(id) = moved.id {
                    self.by_id.insert(id, i);
                }
            }
            self.version += 1;
        }
    }

    fn echo(&mut self, echo: &EchoSeen, wall: DateTime<Utc>) {
        let i = match self.by_id.get(&echo.id) {
            Some(&i) => i,
            None => {
                // First echo under this id: found by name (or new), and
                // known by id from now on. A new id for a known row (the
                // detector forgot the instance and met it again) replaces
                // the old one.
                let i = self.row_index(&echo.key, echo.at, wall);
                if let Some(old) = self.rows[i].id.replace(echo.id) {
                    self.by_id.remove(&old);
                }
                self.by_id.insert(echo.id, i);
                i
            }
        };
        self.rows[i].echo(echo);
    }

    /// Take one update from the engine. `now` and `wall` are when it is
    /// taken, on the monitor's clock and the wall's.
    pub fn apply(&mut self, update: &Update, now: Instant, wall: DateTime<Utc>) {
        match update {
            Update::Transition(report) => {
                let t = &report.transition;
                if t.key.instance != UNSEEN_INSTANCE {
                    // The expected-service placeholder gives way to a real instance.
                    self.remove(&InstanceKey::new(t.key.service.clone(), UNSEEN_INSTANCE));
                }
                let i = self.row_index(&t.key, now, wall);
                self.rows[i].transition(report, now);
                self.regroup_row(i, now, wall);
                self.log.push_front(report.clone());
                self.log.truncate(LOG_CAPACITY);
                self.version += 1;
            }
            Update::Echoes(echoes) => {
                for echo in echoes.iter() {
                    self.echo(echo, wall);
                }
            }
            Update::PingSent { seq, at } => {
                self.seq = *seq;
                self.engine_seen = *at;
                for row in &mut self.rows {
                    row.ping_sent(*seq);
                }
            }
            Update::Link(status) => {
                if *status == LinkStatus::Connected && self.link != LinkStatus::Connected {
                    // The engine pings again from now on; judge its silence from here.
                    self.engine_seen = now;
                }
                self.link = status.clone();
                self.link_since = now;
                self.link_since_wall = wall;
            }
            Update::Stall { lag, at } => {
                // After a stall the engine runs again: it was seen then.
                self.engine_seen = *at;
                self.stall = Some((*at, *lag));
            }
            Update::Service(report) => {
                let c = &report.change;
                if c.to == Strength::Full {
                    self.judged.remove(&c.service);
                } else {
                    let judged = Judged {
                        strength: c.to,
                        up: c.up,
                        expected: c.expected,
                    };
                    self.judged.insert(c.service.clone(), judged);
                }
                self.version += 1;
            }
            // A reload: newly expected services get their placeholder (as
            // the detector gives them), and every count is the new one.
            Update::Reconfigured(reconfigured) => {
                for (service, _) in &reconfigured.expect_added {
                    if !self.rows.iter().any(|row| row.key.service == *service) {
                        self.row_index(
                            &InstanceKey::new(service.clone(), UNSEEN_INSTANCE),
                            now,
                            wall,
                        );
                    }
                }
                self.expected.clone_from(&reconfigured.expected);
                self.version += 1;
            }
            Update::Cost(cost) => {
                self.cost = Some(cost.clone());
                self.version += 1;
            }
            // The engine forgot them (gone past `forget_after`): their rows
            // go too, or a flood of made-up names would stay in memory.
            Update::Forgotten(keys) => {
                for key in keys.iter() {
                    self.remove(key);
                }
                // A service with no instance left is no longer judged.
                let known: std::collections::HashSet<&str> =
                    self.rows.iter().map(|r| r.key.service.as_str()).collect();
                self.judged
                    .retain(|service, _| known.contains(service.as_str()));
            }
        }
    }

    /// Instances by state, and each service's alive and all.
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for row in &self.rows {
            tally.by_state[state_index(row.state)] += 1;
            let count = match tally.services.get_mut(&row.key.service) {
                Some(count) => count,
                None => tally
                    .services
                    .entry(row.key.service.clone())
                    .or_insert_with(|| ServiceCount {
                        expected: self.expected.get(&row.key.service).copied(),
                        ..ServiceCount::default()
                    }),
            };
            count.all += 1;
            if row.counts_alive() {
                count.alive += 1;
            }
            if row.vouches_for_dependents() {
                count.vouching += 1;
            }
        }
        tally
    }

    /// Instances by state code, for payloads that carry counts (alerts).
    pub fn counts_by_code(&self) -> BTreeMap<String, usize> {
        let tally = self.tally();
        State::ALL
            .iter()
            .filter(|&&s| tally.count(s) > 0)
            .map(|&s| (s.code().to_owned(), tally.count(s)))
            .collect()
    }
}
