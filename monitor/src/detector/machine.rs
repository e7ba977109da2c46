//! The state machine: observations (pings sent, echoes, goodbyes, our own
//! link and stalls) and the current instant go in; transitions come out.
//!
//! Each instance has one deadline at a time, kept in an index ordered by
//! instant, so a check touches only the instances whose deadline passed,
//! never the whole fleet.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::flapping::FlapWindow;
use super::phi::{self, PhiModel, PhiWindow};
use super::policy::{Mode, Policy};
use super::types::{
    Blindness, InstanceId, InstanceKey, LastKnown, Reason, ServiceChange, State, Strength,
    Transition, UNSEEN_INSTANCE,
};

/// Ping send times kept for round-trip measurement. An echo for an older
/// ping is stale: no RTT, no proof of life.
const RTT_WINDOW: usize = 1024;
/// A stall of the monitor's own loop longer than this share of the shortest
/// timeout means its view of the services is out of date.
const STALL_FRACTION: u32 = 3;
const TICK: Duration = Duration::from_nanos(1);

/// What the detector knows of one instance.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub key: InstanceKey,
    pub id: InstanceId,
    /// What it is shown as.
    pub state: State,
    /// When the current state began.
    pub since: Instant,
    /// The verdict under FLAPPING, STALE and SLOW: never seen, up, suspect,
    /// down or left. The detail view shows it: whether it answers right now.
    pub health: State,
    /// The last fresh echo.
    pub last_echo: Option<Instant>,
    /// Silence is counted from here: the last fresh echo, or later when our
    /// own blindness gave the instance no way to reach us.
    silence_from: Instant,
    /// The previous heartbeat for phi; cleared after a blind spell so its
    /// gap is not learnt as the instance's rhythm.
    last_arrival: Option<Instant>,
    window: PhiWindow,
    pub last_rtt: Option<Duration>,
    /// Highest ping seq this instance answered.
    pub last_seq: Option<u64>,
    /// Pings sent while it was known that went unanswered.
    pub missed: u64,
    /// Echoes for pings up to this seq were sent before a goodbye; ignore them.
    ignore_through_seq: Option<u64>,
    /// Fresh echoes since it went DOWN.
    successes: u32,
    /// It answered a second time: a real instance, not a name seen once.
    confirmed: bool,
    slow: bool,
    slow_streak: u32,
    fast_streak: u32,
    flaps: FlapWindow,
    flapping: bool,
    /// Set while it is shown STALE.
    stale: Option<Blindness>,
    /// Restored DOWN from the history after a restart: its first echo
    /// brings it UP at once, as a newcomer's does.
    restored: bool,
    policy: usize,
    scheduled: Option<Instant>,
    /// No deadline falls before this: the grace after a blind spell.
    judge_after: Option<Instant>,
    /// A planned drain: LEFT with a promise to be back by then (and how
    /// long was promised); not back by then, it is DOWN (`not_back`).
    pub back_by: Option<(Instant, Duration)>,
}

impl Tracked {
    fn new(key: InstanceKey, id: InstanceId, health: State, policy: usize, now: Instant) -> Self {
        Self {
            key,
            id,
            state: health,
            since: now,
            health,
            last_echo: None,
            silence_from: now,
            last_arrival: None,
            window: PhiWindow::default(),
            last_rtt: None,
            last_seq: None,
            missed: 0,
            ignore_through_seq: None,
            successes: 0,
            confirmed: false,
            slow: false,
            slow_streak: 0,
            fast_streak: 0,
            flaps: FlapWindow::default(),
            flapping: false,
            stale: None,
            restored: false,
            policy,
            scheduled: None,
            judge_after: None,
            back_by: None,
        }
    }

    /// Whether it counts towards its service's strength: judged alive (a
    /// SUSPECT is not yet DOWN), flapping or not: an instance that answers
    /// serves. Under STALE its verdict from before counts, so our own
    /// blindness never degrades a service.
    fn alive(&self) -> bool {
        self.health.counts_alive() == Some(true)
    }

    fn shown(&self) -> State {
        if self.stale.is_some() {
            State::Stale
        } else if self.flapping {
            State::Flapping
        } else if self.health == State::Up && self.slow {
            State::Slow
        } else {
            self.health
        }
    }

    /// Make the shown state agree with the verdict; a transition if it changed.
    fn settle(
        &mut self,
        reason: Reason,
        rtt: Option<Duration>,
        now: Instant,
    ) -> Option<Transition> {
        let to = self.shown();
        if to == self.state {
            return None;
        }
        let from = std::mem::replace(&mut self.state, to);
        self.since = now;
        Some(Transition {
            key: self.key.clone(),
            from,
            to,
            reason,
            rtt,
        })
    }

    /// Change the verdict. Returns the flapping reason when this change
    /// started a flap, which then speaks for the transition.
    fn set_health(&mut self, health: State, policy: &Policy, now: Instant) -> Option<Reason> {
        if health == self.health {
            return None;
        }
        // LEFT counts too: goodbyes after every ping (forged, or a crash
        // loop) are a storm like any other, and damped the same way.
        let judged = |s: State| matches!(s, State::Up | State::Suspect | State::Down | State::Left);
        let counts = judged(health) && judged(self.health);
        self.health = health;
        if !counts || policy.flapping_changes == 0 {
            return None;
        }
        let changes = self.flaps.record(now, policy.flapping_window);
        if !self.flapping && changes >= policy.flapping_changes {
            self.flapping = true;
            return Some(Reason::Flapping { changes });
        }
        None
    }

    /// How long after `silence_from` the first deadline falls, and phi's
    /// mean and deviation when phi judges.
    fn allowance(&self, policy: &Policy) -> (Duration, Option<(f64, f64)>) {
        match policy.mode {
            Mode::Fixed => (policy.timeout, None),
            Mode::Phi => {
                let (mean, std_dev) = self.window.stats();
                let after = phi::time_to_reach(policy.phi_threshold, mean, std_dev, policy.phi);
                (after, Some((mean, std_dev)))
            }
        }
    }
}

/// The result of an echo: the transitions it caused, if any, and the RTT
/// when it answered a recent ping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EchoOutcome {
    /// The instance the echo was taken for.
    pub id: InstanceId,
    pub transitions: Vec<Transition>,
    pub rtt: Option<Duration>,
    /// Phi's view of the instance after this echo, when phi judges it.
    pub phi: Option<PhiModel>,
    /// A service's own section this new service's name starts with but does
    /// not match (`[services.slow]` for `slow-0`): said once per section,
    /// since names are matched exactly and the section judges nobody.
    pub unmatched_section: Option<String>,
}

pub struct Detector {
    interval: Duration,
    policies: Vec<Policy>,
    /// Lower-cased service name to its policy; absent means `policies[0]`.
    policy_by_service: HashMap<String, usize>,
    /// Instances created, oldest first, until confirmed or gone: whom
    /// [`Detector::make_room`] forgets first.
    newcomers: VecDeque<(InstanceId, InstanceKey)>,
    /// Sections already reported as matching no service by that name.
    unmatched_said: std::collections::HashSet<String>,
    slots: Vec<Tracked>,
    /// The next [`InstanceId`] to give.
    next_id: u64,
    by_name: HashMap<String, HashMap<String, usize>>,
    /// (deadline, slot), earliest first: what `check` has to look at.
    deadlines: BTreeSet<(Instant, usize)>,
    /// Send instants of recent pings, oldest first; `sent[0]` has seq `first_seq`.
    sent: VecDeque<Instant>,
    first_seq: u64,
    last_sent_seq: Option<u64>,
    /// Set while our own link is down or blocked: silence then is ours.
    blind: Option<Blindness>,
    /// Extra time after our reconnect before silence counts: services
    /// reconnect on their own backoff, up to this much later than we do.
    reconnect_grace: Duration,
    /// Services with expected instances, as last judged.
    strength: HashMap<String, Strength>,
    /// When each service with expected instances was first known: its
    /// first judgement waits a timeout after that, so that instances
    /// starting one after another are not a degraded service.
    known_since: HashMap<String, Instant>,
    /// Services with expected instances whose count may have changed since.
    recount: BTreeSet<String>,
    /// The first ping: a service is first judged a timeout after it, once
    /// its instances had their chance to answer.
    first_ping: Option<Instant>,
}

impl Detector {
    /// `interval` is the ping interval: missed deadlines after the first
    /// come one interval apart, and phi starts from it.
    pub fn new(interval: Duration, default: Policy) -> Self {
        Self {
            interval: interval.max(TICK),
            policies: vec![default],
            policy_by_service: HashMap::new(),
            unmatched_said: std::collections::HashSet::new(),
            newcomers: VecDeque::new(),
            slots: Vec::new(),
            next_id: 0,
            by_name: HashMap::new(),
            deadlines: BTreeSet::new(),
            sent: VecDeque::with_capacity(RTT_WINDOW),
            first_seq: 0,
            last_sent_seq: None,
            blind: None,
            reconnect_grace: Duration::ZERO,
            strength: HashMap::new(),
            known_since: HashMap::new(),
            recount: BTreeSet::new(),
            first_ping: None,
        }
    }

    /// A service judged by its own policy (matched case-insensitively).
    /// Call before its first echo.
    pub fn with_service(mut self, service: &str, policy: Policy) -> Self {
        self.policies.push(policy);
        self.policy_by_service
            .insert(service.to_lowercase(), self.policies.len() - 1);
        self
    }

    /// How much later than us a service may reconnect after a broker outage
    /// (the services' longest reconnect delay) without being judged.
    pub fn with_reconnect_grace(mut self, grace: Duration) -> Self {
        self.reconnect_grace = grace;
        self
    }

    /// Judge by new policies from `now` on (a reloaded configuration): the
    /// default, and each named service's. Every tracked instance keeps all
    /// it has (state, phi window, flaps, counters) and has its next
    /// deadline set again under its service's new policy, so a timeout
    /// shortened below a silence already under way is SUSPECT at once.
    /// A service counted against expected instances is counted again; one
    /// no longer counted that was below strength is said to be full, so no
    /// alert stays open on a count nobody expects any more.
    pub fn reconfigure(
        &mut self,
        default: Policy,
        services: Vec<(String, Policy)>,
        now: Instant,
    ) -> (Vec<Transition>, Vec<ServiceChange>) {
        let was_expected: HashMap<String, u32> = self
            .strength
            .keys()
            .filter_map(|s| Some((s.clone(), self.policy_for(s).expected_instances?)))
            .collect();
        self.policies = vec![default];
        self.policy_by_service.clear();
        for (service, policy) in services {
            self.policies.push(policy);
            self.policy_by_service
                .insert(service.to_lowercase(), self.policies.len() - 1);
        }
        for slot in 0..self.slots.len() {
            let policy = self.policy_index(&self.slots[slot].key.service);
            self.slots[slot].policy = policy;
        }
        let mut changes = Vec::new();
        let services: Vec<String> = self.by_name.keys().cloned().collect();
        for service in services {
            if self.policy_for(&service).expected_instances.is_some() {
                // Newly counted: judged a timeout from now, like a newcomer.
                self.known_since.entry(service.clone()).or_insert(now);
                self.recount.insert(service);
                continue;
            }
            self.known_since.remove(&service);
            self.recount.remove(&service);
            if let Some(from) = self.strength.remove(&service)
                && from != Strength::Full
            {
                let (up, _) = self.service_count(&service);
                changes.push(ServiceChange {
                    expected: was_expected.get(&service).copied().unwrap_or(up),
                    service,
                    from,
                    to: Strength::Full,
                    up,
                });
            }
        }
        let mut transitions = Vec::new();
        if self.blind.is_none() {
            for slot in 0..self.slots.len() {
                self.evaluate(slot, now, &mut transitions);
            }
        }
        (transitions, changes)
    }

    /// The ping interval changed (a hosted plan's budget chose another):
    /// missed deadlines come one new interval apart, and every instance's
    /// phi starts again from it, as a newcomer's does, since the intervals
    /// it learnt are not the rhythm it will answer at now. Call
    /// [`Detector::reconfigure`] after it with the timeouts that follow.
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval.max(TICK);
        for slot in 0..self.slots.len() {
            if self.slots[slot].window.is_empty() {
                continue;
            }
            let min_std_dev = self.policies[self.slots[slot].policy].phi.min_std_dev;
            self.slots[slot].window = PhiWindow::seeded(self.interval, min_std_dev);
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A service the configuration no longer expects: its placeholder (if
    /// it never answered) goes; instances it has stay tracked.
    pub fn unexpect(&mut self, service: &str) -> Option<InstanceKey> {
        let slot = *self.by_name.get(service)?.get(UNSEEN_INSTANCE)?;
        Some(self.remove(slot))
    }

    pub fn policy_for(&self, service: &str) -> &Policy {
        &self.policies[self.policy_index(service)]
    }

    /// A stall of our own loop longer than this makes every verdict stale.
    pub fn stall_threshold(&self) -> Duration {
        let shortest = self.policies.iter().map(|p| p.timeout).min();
        shortest.unwrap_or(Duration::from_secs(3)) / STALL_FRACTION
    }

    /// Why we cannot judge right now, if we cannot.
    pub fn blind(&self) -> Option<Blindness> {
        self.blind
    }

    pub fn instances(&self) -> impl Iterator<Item = &Tracked> {
        self.slots.iter()
    }

    pub fn get(&self, service: &str, instance: &str) -> Option<&Tracked> {
        let slot = *self.by_name.get(service)?.get(instance)?;
        Some(&self.slots[slot])
    }

    /// Phi of an instance at `now`, when its service is judged by phi.
    pub fn phi(&self, tracked: &Tracked, now: Instant) -> Option<f64> {
        let policy = &self.policies[tracked.policy];
        (policy.mode == Mode::Phi && !tracked.window.is_empty()).then(|| {
            let (mean, std_dev) = tracked.window.stats();
            phi::phi(
                now.saturating_duration_since(tracked.silence_from),
                mean,
                std_dev,
                policy.phi,
            )
        })
    }

    /// Phi's statistics for an instance, for a display to compute phi itself.
    fn phi_model_of(&self, tracked: &Tracked) -> Option<PhiModel> {
        let policy = &self.policies[tracked.policy];
        (policy.mode == Mode::Phi && !tracked.window.is_empty()).then(|| {
            let (mean, std_dev) = tracked.window.stats();
            PhiModel {
                mean,
                std_dev,
                threshold: policy.phi_threshold,
                params: policy.phi,
            }
        })
    }

    /// How many instances of `service` are alive (UP, SLOW or SUSPECT, not
    /// flapping), and how many it should have.
    pub fn service_count(&self, service: &str) -> (u32, Option<u32>) {
        let up = self.by_name.get(service).map_or(0, |instances| {
            instances
                .values()
                .filter(|&&slot| self.slots[slot].alive())
                .count() as u32
        });
        (up, self.policy_for(service).expected_instances)
    }

    /// After a change to one instance: if whether it counts for its service
    /// changed (`before` is what it was, `None` for a new one), its service
    /// is counted again at the next [`Detector::service_changes`].
    fn noted(&mut self, slot: usize, before: Option<bool>) {
        let tracked = &self.slots[slot];
        if before != Some(tracked.alive())
            && self.policies[tracked.policy].expected_instances.is_some()
        {
            let service = &tracked.key.service;
            if !self.known_since.contains_key(service) {
                self.known_since.insert(service.clone(), tracked.since);
            }
            self.recount.insert(service.clone());
        }
    }

    /// Services that fell below their expected instances (`instances` in
    /// their policy) or got back to full strength since the last call.
    /// Nothing is judged while we are blind, nor before a service's
    /// instances had a timeout to answer (after the first ping, and after
    /// the service was first known); a service first judged at full
    /// strength is no news.
    pub fn service_changes(&mut self, now: Instant) -> Vec<ServiceChange> {
        let mut out = Vec::new();
        if self.recount.is_empty() || self.blind.is_some() {
            return out;
        }
        let Some(first_ping) = self.first_ping else {
            return out;
        };
        let mut later = BTreeSet::new();
        for service in std::mem::take(&mut self.recount) {
            let policy = self.policy_for(&service);
            let (Some(expected), timeout) = (policy.expected_instances, policy.timeout) else {
                continue;
            };
            let known = self.known_since.get(&service).copied();
            let since = known.map_or(first_ping, |k| k.max(first_ping));
            if !self.strength.contains_key(&service) && now < since + timeout {
                later.insert(service);
                continue;
            }
            let (up, _) = self.service_count(&service);
            let to = if up == 0 {
                Strength::Down
            } else if up < expected {
                Strength::Degraded
            } else {
                Strength::Full
            };
            let from = self.strength.insert(service.clone(), to);
            if from.unwrap_or(Strength::Full) != to {
                out.push(ServiceChange {
                    service,
                    from: from.unwrap_or(Strength::Full),
                    to,
                    up,
                    expected,
                });
            }
        }
        self.recount = later;
        out
    }

    /// List a service the configuration expects; shown as never seen until it answers.
    pub fn expect(&mut self, service: &str, now: Instant) {
        if self.by_name.get(service).is_some_and(|m| !m.is_empty()) {
            return;
        }
        let policy = self.policy_index(service);
        let slot = self.slots.len();
        let id = self.new_id();
        self.slots.push(Tracked::new(
            InstanceKey::new(service, UNSEEN_INSTANCE),
            id,
            State::NeverSeen,
            policy,
            now,
        ));
        self.by_name
            .entry(service.to_owned())
            .or_default()
            .insert(UNSEEN_INSTANCE.to_owned(), slot);
        // Expected and never seen: a service that should have instances and
        // has none is degraded once it had its chance to answer.
        if self.policies[policy].expected_instances.is_some() {
            self.known_since.entry(service.to_owned()).or_insert(now);
            self.recount.insert(service.to_owned());
        }
    }

    /// The first time a service with no section of its own arrives whose
    /// name starts with a section's (`slow-0` and `[services.slow]`): that
    /// section. Only when a service is new, so never on the echo path.
    fn unmatched_section(&mut self, service: &str) -> Option<String> {
        if self.policy_by_service.is_empty() {
            return None;
        }
        let name = service.to_lowercase();
        if self.policy_by_service.contains_key(&name) {
            return None;
        }
        let section = self
            .policy_by_service
            .keys()
            .filter(|section| name.starts_with(section.as_str()))
            .find(|section| !self.unmatched_said.contains(*section))?
            .clone();
        self.unmatched_said.insert(section.clone());
        Some(section)
    }

    /// Sections (`[services.NAME]`) that no tracked service matches, each
    /// said once: asked once, when every live service has had time to
    /// answer, so that a section's typo is not silently ignored. (One that
    /// begins a new service's name was said when that service arrived.)
    pub fn sections_without_service(&mut self) -> Vec<String> {
        let services: Vec<String> = self.by_name.keys().map(|s| s.to_lowercase()).collect();
        let mut unmatched: Vec<String> = self
            .policy_by_service
            .keys()
            .filter(|section| {
                !self.unmatched_said.contains(*section) && !services.contains(section)
            })
            .cloned()
            .collect();
        unmatched.sort();
        self.unmatched_said.extend(unmatched.iter().cloned());
        unmatched
    }

    /// Take back an instance known before the monitor restarted: DOWN
    /// (reason `restored`, `from` the state it was last known in) until it
    /// answers, and forgotten like any DOWN one, counted from when it
    /// entered its last known state. Nothing if it is already known.
    pub fn restore(&mut self, known: &LastKnown, now: Instant) -> Option<Transition> {
        let key = &known.key;
        if key.instance == UNSEEN_INSTANCE
            || self
                .by_name
                .get(&key.service)
                .is_some_and(|m| m.contains_key(&key.instance))
        {
            return None;
        }
        let (slot, _) = self.slot_for(&key.service, &key.instance, now);
        let since = now.checked_sub(known.age).unwrap_or(now);
        let tracked = &mut self.slots[slot];
        tracked.health = State::Down;
        tracked.state = State::Down;
        tracked.since = since;
        tracked.silence_from = since;
        tracked.restored = true;
        self.noted(slot, None);
        Some(Transition {
            key: key.clone(),
            from: known.state,
            to: State::Down,
            reason: Reason::Restored,
            rtt: None,
        })
    }

    fn policy_index(&self, service: &str) -> usize {
        // Asked once per echo: no lower-cased copy when no service has its own.
        if self.policy_by_service.is_empty() {
            return 0;
        }
        self.policy_by_service
            .get(&service.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    pub fn ping_sent(&mut self, seq: u64, now: Instant) {
        self.first_ping.get_or_insert(now);
        if let Some(previous) = self.last_sent_seq {
            // The previous ping had a full interval to be answered.
            for tracked in &mut self.slots {
                let known_then = tracked.last_echo.is_some() && tracked.since <= now;
                if known_then
                    && tracked.health != State::Left
                    && tracked.last_seq.is_none_or(|s| s < previous)
                {
                    tracked.missed += 1;
                }
            }
        }
        if self.sent.is_empty() || seq != self.first_seq + self.sent.len() as u64 {
            self.sent.clear();
            self.first_seq = seq;
        }
        if self.sent.len() == RTT_WINDOW {
            self.sent.pop_front();
            self.first_seq += 1;
        }
        self.sent.push_back(now);
        self.last_sent_seq = Some(seq);
    }

    /// Whether `seq` is a ping we sent within `service`'s timeout: only an
    /// echo of one is news. Any other (never sent, long gone, made up) is
    /// for the caller to refuse and count.
    pub fn is_recent_ping(&self, service: &str, seq: u64, now: Instant) -> bool {
        let timeout = self.policy_for(service).timeout;
        self.sent_at(seq)
            .is_some_and(|at| now.saturating_duration_since(at) <= timeout)
    }

    /// Make room for a newcomer when the cap is reached: forget the oldest
    /// instance never confirmed (seen once, then silent for two intervals
    /// or more), which is what a flood of made-up names leaves, so that a
    /// real instance arriving later is still tracked. `None` when there is
    /// none: the newcomer is then refused.
    pub fn make_room(&mut self, now: Instant) -> Option<InstanceKey> {
        while let Some((id, key)) = self.newcomers.front() {
            let slot = self
                .by_name
                .get(&key.service)
                .and_then(|m| m.get(&key.instance))
                .copied()
                .filter(|&s| self.slots[s].id == *id && !self.slots[s].confirmed);
            let Some(slot) = slot else {
                self.newcomers.pop_front();
                continue;
            };
            let t = &self.slots[slot];
            let silent = now.saturating_duration_since(t.last_echo.unwrap_or(t.since));
            if silent < self.interval * 2 {
                // The oldest newcomer is recent: so are all the others.
                return None;
            }
            self.newcomers.pop_front();
            return Some(self.remove(slot));
        }
        None
    }

    /// The service with the most tracked instances, and how many: what a
    /// warning at the cap names, since a flood of made-up names is most
    /// often one service's. Walks the services: call it only to say it.
    pub fn busiest_service(&self) -> Option<(&str, usize)> {
        self.by_name
            .iter()
            .map(|(service, instances)| (service.as_str(), instances.len()))
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
    }

    /// How many instances are tracked (expected services' placeholders included).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forget the instances that have been DOWN or LEFT for `after` or
    /// longer (an expected service's placeholder stays): their memory goes,
    /// and one that answers again is new. Walks the fleet: call it rarely.
    pub fn forget(&mut self, after: Duration, now: Instant) -> Vec<InstanceKey> {
        let mut gone = Vec::new();
        let mut slot = 0;
        while slot < self.slots.len() {
            let t = &self.slots[slot];
            let forgettable = matches!(t.state, State::Down | State::Left)
                && t.key.instance != UNSEEN_INSTANCE
                && now.saturating_duration_since(t.since) >= after;
            if forgettable {
                gone.push(self.remove(slot));
                // The last slot moved here: look at this index again.
            } else {
                slot += 1;
            }
        }
        gone
    }

    /// Remove a slot: the last one takes its index, and its entries in the
    /// name map and the deadline index follow it.
    fn remove(&mut self, slot: usize) -> InstanceKey {
        self.unschedule(slot);
        let last = self.slots.len() - 1;
        if slot != last {
            if let Some(at) = self.slots[last].scheduled {
                self.deadlines.remove(&(at, last));
                self.deadlines.insert((at, slot));
            }
            let key = &self.slots[last].key;
            if let Some(index) = self
                .by_name
                .get_mut(&key.service)
                .and_then(|m| m.get_mut(&key.instance))
            {
                *index = slot;
            }
        }
        let removed = self.slots.swap_remove(slot);
        let key = removed.key;
        if let Some(instances) = self.by_name.get_mut(&key.service) {
            instances.remove(&key.instance);
            if instances.is_empty() {
                // A made-up service leaves nothing behind either.
                self.by_name.remove(&key.service);
                self.strength.remove(&key.service);
                self.known_since.remove(&key.service);
                self.recount.remove(&key.service);
            }
        }
        key
    }

    fn sent_at(&self, seq: u64) -> Option<Instant> {
        let index = seq.checked_sub(self.first_seq)?;
        self.sent.get(usize::try_from(index).ok()?).copied()
    }

    fn new_id(&mut self) -> InstanceId {
        self.next_id += 1;
        InstanceId(self.next_id)
    }

    /// The slot of an instance, created (UP, first seen) on its first echo;
    /// an expected service's placeholder gives way to its first real instance.
    fn slot_for(&mut self, service: &str, instance: &str, now: Instant) -> (usize, bool) {
        if let Some(&slot) = self.by_name.get(service).and_then(|m| m.get(instance)) {
            return (slot, false);
        }
        let policy = self.policy_index(service);
        let id = self.new_id();
        let fresh = Tracked::new(
            InstanceKey::new(service, instance),
            id,
            State::Up,
            policy,
            now,
        );
        let instances = self.by_name.entry(service.to_owned()).or_default();
        let slot = match instances.remove(UNSEEN_INSTANCE) {
            Some(placeholder) => {
                if let Some(at) = self.slots[placeholder].scheduled.take() {
                    self.deadlines.remove(&(at, placeholder));
                }
                self.slots[placeholder] = fresh;
                placeholder
            }
            None => {
                self.slots.push(fresh);
                self.slots.len() - 1
            }
        };
        instances.insert(instance.to_owned(), slot);
        self.newcomers
            .push_back((id, InstanceKey::new(service, instance)));
        if self.newcomers.len() > 2 * self.slots.len() + 64 {
            // Keep the queue as small as the fleet: drop the confirmed and the gone.
            let (by_name, slots) = (&self.by_name, &self.slots);
            self.newcomers.retain(|(id, key)| {
                by_name
                    .get(&key.service)
                    .and_then(|m| m.get(&key.instance))
                    .is_some_and(|&s| slots[s].id == *id && !slots[s].confirmed)
            });
        }
        (slot, true)
    }

    pub fn echo(&mut self, service: &str, instance: &str, seq: u64, now: Instant) -> EchoOutcome {
        // One look-up by name per echo: this runs for every echo of the fleet.
        let known = self
            .by_name
            .get(service)
            .and_then(|m| m.get(instance))
            .copied();
        let before = known.map(|slot| self.slots[slot].alive());
        let (slot, created) = match known {
            Some(slot) => (slot, false),
            None => self.slot_for(service, instance, now),
        };
        let mut outcome = self.judge_echo(slot, created, seq, now);
        if created {
            outcome.unmatched_section = self.unmatched_section(service);
        }
        self.noted(slot, before);
        outcome.phi = self.phi_model_of(&self.slots[slot]);
        outcome.id = self.slots[slot].id;
        outcome
    }

    fn judge_echo(&mut self, slot: usize, created: bool, seq: u64, now: Instant) -> EchoOutcome {
        let sent = self.sent_at(seq);
        let blind = self.blind;
        let policy = &self.policies[self.slots[slot].policy];
        let tracked = &mut self.slots[slot];
        // Only an echo of a recent ping is a round trip, or news of life.
        let rtt = sent
            .map(|at| now.saturating_duration_since(at))
            .filter(|age| *age <= policy.timeout);
        let mut out = Vec::new();
        if created {
            tracked.last_seq = Some(seq);
            tracked.last_rtt = rtt;
            // Phi starts from the ping interval, even if this first echo was stale.
            tracked.window = PhiWindow::seeded(self.interval, policy.phi.min_std_dev);
            if rtt.is_some() {
                tracked.last_echo = Some(now);
                tracked.last_arrival = Some(now);
            }
            out.push(Transition {
                key: tracked.key.clone(),
                from: State::NeverSeen,
                to: State::Up,
                reason: Reason::FirstSeen,
                rtt,
            });
            self.evaluate(slot, now, &mut out);
            return EchoOutcome {
                transitions: out,
                rtt,
                ..EchoOutcome::default()
            };
        }
        if tracked
            .ignore_through_seq
            .is_some_and(|through| seq <= through)
        {
            return EchoOutcome::default();
        }
        tracked.last_seq = tracked.last_seq.max(Some(seq));
        let Some(rtt) = rtt else {
            return EchoOutcome::default();
        };
        match tracked.last_arrival {
            // A gap that ended a DOWN was an outage, not the instance's
            // rhythm: learnt, it would teach phi that hangs of that length
            // are normal, and the next one would go unseen. (A gap that
            // only reached SUSPECT is kept: on an irregular service it is
            // the tail phi must know, or it would accuse more.)
            Some(previous) if blind.is_none() && tracked.health != State::Down => {
                tracked.window.push(now.saturating_duration_since(previous))
            }
            _ if tracked.window.is_empty() => {
                tracked.window = PhiWindow::seeded(self.interval, policy.phi.min_std_dev)
            }
            _ => {}
        }
        tracked.last_arrival = blind.is_none().then_some(now);
        tracked.last_echo = Some(now);
        tracked.confirmed = true;
        tracked.silence_from = tracked.silence_from.max(now);
        tracked.last_rtt = Some(rtt);
        if blind.is_some() {
            // Proof of life is kept, but nothing is judged while we are blind.
            return EchoOutcome {
                transitions: out,
                rtt: Some(rtt),
                ..EchoOutcome::default()
            };
        }

        let mut reason = None;
        if let Some(limit) = policy.slow_limit {
            if rtt > limit {
                tracked.slow_streak += 1;
                tracked.fast_streak = 0;
            } else {
                tracked.fast_streak += 1;
                tracked.slow_streak = 0;
            }
            if !tracked.slow && tracked.slow_streak >= policy.failures_before_down {
                tracked.slow = true;
                reason = Some(Reason::Slow { rtt });
            } else if tracked.slow && tracked.fast_streak >= policy.successes_before_up {
                tracked.slow = false;
                reason = Some(Reason::Recovered);
            }
        }
        let health = match tracked.health {
            State::Suspect | State::NeverSeen => Some((State::Up, Reason::Recovered)),
            State::Down if tracked.restored => Some((State::Up, Reason::Recovered)),
            State::Left => Some((State::Up, Reason::Rejoined)),
            State::Down => {
                tracked.successes += 1;
                (tracked.successes >= policy.successes_before_up)
                    .then_some((State::Up, Reason::Recovered))
            }
            _ => None,
        };
        if let Some((health, why)) = health {
            tracked.back_by = None;
            tracked.successes = 0;
            tracked.restored = false;
            tracked.ignore_through_seq = None;
            reason = tracked.set_health(health, policy, now).or(Some(why));
        }
        if tracked.stale.take().is_some() {
            reason.get_or_insert(Reason::Recovered);
        }
        if let Some(reason) = reason {
            out.extend(tracked.settle(reason, Some(rtt), now));
        }
        self.evaluate(slot, now, &mut out);
        EchoOutcome {
            transitions: out,
            rtt: Some(rtt),
            ..EchoOutcome::default()
        }
    }

    pub fn goodbye(&mut self, service: &str, instance: &str, now: Instant) -> Option<Transition> {
        let slot = *self.by_name.get(service)?.get(instance)?;
        let last_sent_seq = self.last_sent_seq;
        let before = self.slots[slot].alive();
        let policy = &self.policies[self.slots[slot].policy];
        let tracked = &mut self.slots[slot];
        tracked.ignore_through_seq = last_sent_seq;
        // The time away is no interval of its rhythm: learnt, it made a
        // kill right after a rejoin seen a second or more later.
        tracked.last_arrival = None;
        if matches!(tracked.health, State::Left | State::NeverSeen) {
            return None;
        }
        let flap = tracked.set_health(State::Left, policy, now);
        tracked.stale = None;
        tracked.slow = false;
        tracked.successes = 0;
        tracked.back_by = None;
        let transition = tracked.settle(flap.unwrap_or(Reason::Left), None, now);
        if !tracked.flapping {
            self.unschedule(slot);
        }
        // Else, in a LEFT/rejoined storm, a goodbye is not taken at its
        // word: its deadline stays, silence is still judged, and a real
        // crash meanwhile is seen.
        self.noted(slot, Some(before));
        transition
    }

    /// A goodbye that promises a return within `back_within` (a planned
    /// restart): LEFT (`draining`) at once; not answering again by then,
    /// the instance is DOWN (`not_back`) when [`Detector::check`] reaches
    /// its deadline.
    pub fn drain(
        &mut self,
        service: &str,
        instance: &str,
        back_within: Duration,
        now: Instant,
    ) -> Option<Transition> {
        let slot = *self.by_name.get(service)?.get(instance)?;
        let mut transition = self.goodbye(service, instance, now);
        let tracked = &mut self.slots[slot];
        if tracked.health != State::Left {
            return transition;
        }
        let due = now + back_within;
        tracked.back_by = Some((due, back_within));
        if let Some(t) = &mut transition {
            t.reason = Reason::Draining { back_within };
        }
        self.unschedule(slot);
        self.slots[slot].scheduled = Some(due);
        self.deadlines.insert((due, slot));
        transition
    }

    /// Judge the instances whose deadline has passed. Nothing is judged
    /// while we are blind.
    pub fn check(&mut self, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        if self.blind.is_some() {
            return out;
        }
        while let Some(&(at, slot)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            self.slots[slot].scheduled = None;
            self.evaluate(slot, now, &mut out);
        }
        out
    }

    fn unschedule(&mut self, slot: usize) {
        if let Some(at) = self.slots[slot].scheduled.take() {
            self.deadlines.remove(&(at, slot));
        }
    }

    /// Bring one instance up to date at `now` and schedule its next look.
    fn evaluate(&mut self, slot: usize, now: Instant, out: &mut Vec<Transition>) {
        let before = self.slots[slot].alive();
        self.judge(slot, now, out);
        self.noted(slot, Some(before));
    }

    fn judge(&mut self, slot: usize, now: Instant, out: &mut Vec<Transition>) {
        self.unschedule(slot);
        if self.blind.is_some() {
            return;
        }
        let interval = self.interval;
        let policy = &self.policies[self.slots[slot].policy];
        let tracked = &mut self.slots[slot];
        let mut next: Option<Instant> = None;

        if tracked.flapping {
            let calm_from = tracked.flaps.last().map(|at| at + policy.flapping_window);
            match calm_from {
                Some(at) if at > now => next = Some(at),
                _ => {
                    tracked.flapping = false;
                    tracked.flaps.clear();
                    out.extend(tracked.settle(Reason::Stable, None, now));
                }
            }
        }

        if tracked.health == State::Left
            && let Some((due, promised)) = tracked.back_by
        {
            if now >= due {
                tracked.back_by = None;
                tracked.health = State::Down;
                out.extend(tracked.settle(Reason::NotBack { promised }, None, now));
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }

        let watched = match tracked.health {
            State::Up | State::Suspect => true,
            State::Down => tracked.successes > 0,
            State::Left => tracked.flapping,
            _ => false,
        };
        if watched {
            let (after, phi_stats) = tracked.allowance(policy);
            let mut deadline = tracked.silence_from + after.min(phi::LONGEST);
            if let Some(grace_ends) = tracked.judge_after {
                deadline = deadline.max(grace_ends);
            }
            if now > deadline {
                let late = now - deadline - TICK;
                let failures = 1 + (late.as_nanos() / interval.as_nanos()) as u32;
                let silent_for = now
                    .saturating_duration_since(tracked.last_echo.unwrap_or(tracked.silence_from));
                let phi = phi_stats.map(|(mean, std_dev)| {
                    phi::phi(
                        now.saturating_duration_since(tracked.silence_from),
                        mean,
                        std_dev,
                        policy.phi,
                    )
                });
                let timed_out = Reason::TimedOut { silent_for, phi };
                let verdict = if tracked.health == State::Down {
                    // A recovery must be echoes in a row.
                    tracked.successes = 0;
                    None
                } else if failures >= policy.failures_before_down.max(1) {
                    Some(State::Down)
                } else {
                    Some(State::Suspect)
                };
                if let Some(verdict) = verdict {
                    let reason = tracked
                        .set_health(verdict, policy, now)
                        .unwrap_or(timed_out);
                    let was_stale = tracked.stale.take().is_some();
                    if verdict == State::Down {
                        tracked.slow = false;
                    }
                    let reason = if was_stale { timed_out } else { reason };
                    out.extend(tracked.settle(reason, None, now));
                    if verdict == State::Suspect {
                        let at = deadline + interval * failures + TICK;
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
            } else {
                let at = deadline + TICK;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }

        if tracked.flapping && tracked.health == State::Down {
            // Silence longer than the timeout is DOWN whatever came before:
            // a flap hides no death.
            let dead_from = tracked.silence_from + policy.timeout;
            if now >= dead_from {
                tracked.flapping = false;
                let silent_for = now
                    .saturating_duration_since(tracked.last_echo.unwrap_or(tracked.silence_from));
                let phi = tracked.allowance(policy).1.map(|(mean, std_dev)| {
                    phi::phi(
                        now.saturating_duration_since(tracked.silence_from),
                        mean,
                        std_dev,
                        policy.phi,
                    )
                });
                out.extend(tracked.settle(Reason::TimedOut { silent_for, phi }, None, now));
            } else {
                next = Some(next.map_or(dead_from, |n| n.min(dead_from)));
            }
        }

        if let Some(at) = next {
            tracked.scheduled = Some(at);
            self.deadlines.insert((at, slot));
        }
    }

    /// We cannot judge from now on (our link dropped or the broker blocked
    /// it): everyone judged alive is shown STALE until we can again.
    pub fn link_down(&mut self, cause: Blindness, now: Instant) -> Vec<Transition> {
        if self.blind.is_some() {
            // Already blind; a blocked link that then drops stays one spell.
            if cause == Blindness::LinkDown {
                self.blind = Some(cause);
            }
            return Vec::new();
        }
        self.blind = Some(cause);
        self.deadlines.clear();
        let mut out = Vec::new();
        for tracked in &mut self.slots {
            tracked.scheduled = None;
            if matches!(
                tracked.state,
                State::Up | State::Slow | State::Suspect | State::Flapping
            ) {
                tracked.stale = Some(cause);
                out.extend(tracked.settle(Reason::Stale(cause), None, now));
            }
        }
        out
    }

    /// We can judge again. Every instance gets a fresh start: its silence
    /// counts from now, and no deadline falls within a whole timeout (plus
    /// the reconnect grace after a lost link, since services reconnect on
    /// their own schedule), whatever phi would say. STALE ones turn UP on
    /// their next echo.
    pub fn link_up(&mut self, now: Instant) -> Vec<Transition> {
        let Some(cause) = self.blind.take() else {
            return Vec::new();
        };
        let grace = match cause {
            Blindness::LinkDown => self.reconnect_grace,
            Blindness::Blocked | Blindness::Stalled { .. } => Duration::ZERO,
        };
        let mut out = Vec::new();
        for slot in 0..self.slots.len() {
            let timeout = self.policies[self.slots[slot].policy].timeout;
            let tracked = &mut self.slots[slot];
            tracked.silence_from = tracked.silence_from.max(now);
            tracked.judge_after = Some(now + grace + timeout);
            tracked.last_arrival = None;
            self.evaluate(slot, now, &mut out);
        }
        out
    }

    /// Our own loop was late by `lag` (a paused VM, a starved process). Past
    /// the stall threshold, what we know is out of date: everyone judged
    /// alive is STALE, and gets a whole timeout from now to be heard.
    pub fn stalled(&mut self, lag: Duration, now: Instant) -> Vec<Transition> {
        if lag <= self.stall_threshold() || self.blind.is_some() {
            return Vec::new();
        }
        let mut out = self.link_down(Blindness::Stalled { lag }, now);
        out.extend(self.link_up(now));
        out
    }
}
