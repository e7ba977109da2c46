//! The failure detector: a pure state machine. Observations (pings sent,
//! echoes and goodbyes received, the link going down and up) and the current
//! instant go in; transitions come out. No I/O, no clock reads, no broker
//! types, so every rule here is tested with explicit instants.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Ping send times kept for round-trip measurement. An echo for an older
/// ping still proves liveness but yields no RTT.
const RTT_WINDOW: usize = 1024;

/// Placeholder instance name for an expected service that has not answered.
pub const UNSEEN_INSTANCE: &str = "-";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub service: String,
    pub instance: String,
}

impl InstanceKey {
    pub fn new(service: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            instance: instance.into(),
        }
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.instance)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Expected by configuration, never answered.
    NeverSeen,
    Up,
    Down,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::NeverSeen => "NEVER SEEN",
            State::Up => "UP",
            State::Down => "DOWN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    FirstSeen,
    Recovered,
    /// Silent for longer than its timeout; carries how long.
    TimedOut {
        silent_for: Duration,
    },
    /// Said goodbye.
    Left,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::FirstSeen => "first_seen",
            Reason::Recovered => "recovered",
            Reason::TimedOut { .. } => "timed_out",
            Reason::Left => "left",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::FirstSeen => f.write_str("first seen"),
            Reason::Recovered => f.write_str("recovered"),
            Reason::TimedOut { silent_for } => {
                write!(f, "timed out: silent for {:.1}s", silent_for.as_secs_f64())
            }
            Reason::Left => f.write_str("left (goodbye)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub key: InstanceKey,
    pub from: State,
    pub to: State,
    pub reason: Reason,
    /// The round trip of the echo that caused it, when it caused it.
    pub rtt: Option<Duration>,
}

/// What the detector knows of one instance.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub state: State,
    /// When the current state began.
    pub since: Instant,
    pub last_echo: Option<Instant>,
    /// Silence is counted from here: the last echo, or later when our own
    /// outage gave the instance no way to reach us.
    silence_from: Instant,
    pub last_rtt: Option<Duration>,
    /// Highest ping seq this instance answered.
    pub last_seq: Option<u64>,
    /// Pings sent while it was known that went unanswered.
    pub missed: u64,
    /// Echoes for pings up to this seq were sent before a goodbye; ignore them.
    ignore_through_seq: Option<u64>,
}

impl Tracked {
    fn new(state: State, now: Instant) -> Self {
        Self {
            state,
            since: now,
            last_echo: None,
            silence_from: now,
            last_rtt: None,
            last_seq: None,
            missed: 0,
            ignore_through_seq: None,
        }
    }
}

/// The result of an echo: the transition it caused, if any, and the RTT.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EchoOutcome {
    pub transition: Option<Transition>,
    pub rtt: Option<Duration>,
}

pub struct Detector {
    default_timeout: Duration,
    timeouts: HashMap<String, Duration>,
    instances: BTreeMap<InstanceKey, Tracked>,
    /// Send instants of recent pings, oldest first; `sent[0]` has seq `first_seq`.
    sent: VecDeque<Instant>,
    first_seq: u64,
    last_sent_seq: Option<u64>,
    /// Set while our own link to the broker is down: silence then is ours,
    /// not the services', and must not be held against them.
    link_down_since: Option<Instant>,
    /// Extra time after our reconnect before silence counts: services
    /// reconnect on their own backoff, up to this much later than we do.
    reconnect_grace: Duration,
}

impl Detector {
    /// `timeouts` maps lower-cased service names to their overrides.
    pub fn new(default_timeout: Duration, timeouts: HashMap<String, Duration>) -> Self {
        Self {
            default_timeout,
            timeouts,
            instances: BTreeMap::new(),
            sent: VecDeque::with_capacity(RTT_WINDOW),
            first_seq: 0,
            last_sent_seq: None,
            link_down_since: None,
            reconnect_grace: Duration::ZERO,
        }
    }

    /// How much later than us a service may reconnect after a broker outage
    /// (the services' longest reconnect delay) without being declared DOWN.
    pub fn with_reconnect_grace(mut self, grace: Duration) -> Self {
        self.reconnect_grace = grace;
        self
    }

    /// List a service the configuration expects; shown as never seen until it answers.
    pub fn expect(&mut self, service: &str, now: Instant) {
        let has_instance = self.instances.keys().any(|k| k.service == service);
        if !has_instance {
            self.instances.insert(
                InstanceKey::new(service, UNSEEN_INSTANCE),
                Tracked::new(State::NeverSeen, now),
            );
        }
    }

    pub fn timeout_for(&self, service: &str) -> Duration {
        self.timeouts
            .get(&service.to_lowercase())
            .copied()
            .unwrap_or(self.default_timeout)
    }

    pub fn instances(&self) -> &BTreeMap<InstanceKey, Tracked> {
        &self.instances
    }

    pub fn ping_sent(&mut self, seq: u64, now: Instant) {
        if let Some(previous) = self.last_sent_seq {
            // The previous ping had a full interval to be answered.
            for tracked in self.instances.values_mut() {
                let known_then = tracked.last_echo.is_some() && tracked.since <= now;
                if known_then && tracked.last_seq.is_none_or(|s| s < previous) {
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

    fn sent_at(&self, seq: u64) -> Option<Instant> {
        let index = seq.checked_sub(self.first_seq)?;
        self.sent.get(usize::try_from(index).ok()?).copied()
    }

    pub fn echo(&mut self, service: &str, instance: &str, seq: u64, now: Instant) -> EchoOutcome {
        let rtt = self
            .sent_at(seq)
            .map(|sent| now.saturating_duration_since(sent));
        let key = InstanceKey::new(service, instance);
        if !self.instances.contains_key(&key) {
            // The expected-service placeholder gives way to the real instance.
            let placeholder = InstanceKey::new(service, UNSEEN_INSTANCE);
            self.instances.remove(&placeholder);
            let mut tracked = Tracked::new(State::Up, now);
            tracked.last_echo = Some(now);
            tracked.silence_from = now;
            tracked.last_rtt = rtt;
            tracked.last_seq = Some(seq);
            self.instances.insert(key.clone(), tracked);
            return EchoOutcome {
                transition: Some(Transition {
                    key,
                    from: State::NeverSeen,
                    to: State::Up,
                    reason: Reason::FirstSeen,
                    rtt,
                }),
                rtt,
            };
        }
        let tracked = self.instances.get_mut(&key).expect("checked above");
        if tracked
            .ignore_through_seq
            .is_some_and(|through| seq <= through)
        {
            return EchoOutcome::default();
        }
        tracked.last_echo = Some(now);
        tracked.silence_from = tracked.silence_from.max(now);
        tracked.last_seq = tracked.last_seq.max(Some(seq));
        if rtt.is_some() {
            tracked.last_rtt = rtt;
        }
        let transition = (tracked.state != State::Up).then(|| {
            let from = tracked.state;
            tracked.state = State::Up;
            tracked.since = now;
            tracked.ignore_through_seq = None;
            Transition {
                key,
                from,
                to: State::Up,
                reason: Reason::Recovered,
                rtt,
            }
        });
        EchoOutcome { transition, rtt }
    }

    pub fn goodbye(&mut self, service: &str, instance: &str, now: Instant) -> Option<Transition> {
        let key = InstanceKey::new(service, instance);
        let tracked = self.instances.get_mut(&key)?;
        tracked.ignore_through_seq = self.last_sent_seq;
        if tracked.state != State::Up {
            return None;
        }
        tracked.state = State::Down;
        tracked.since = now;
        Some(Transition {
            key,
            from: State::Up,
            to: State::Down,
            reason: Reason::Left,
            rtt: None,
        })
    }

    /// Instances silent past their timeout go DOWN. Nothing is judged while
    /// our own link is down.
    pub fn check(&mut self, now: Instant) -> Vec<Transition> {
        if self.link_down_since.is_some() {
            return Vec::new();
        }
        let mut transitions = Vec::new();
        for (key, tracked) in &mut self.instances {
            if tracked.state != State::Up {
                continue;
            }
            let timeout = self
                .timeouts
                .get(&key.service.to_lowercase())
                .copied()
                .unwrap_or(self.default_timeout);
            if now.saturating_duration_since(tracked.silence_from) > timeout {
                let silent_for = tracked
                    .last_echo
                    .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
                tracked.state = State::Down;
                tracked.since = now;
                transitions.push(Transition {
                    key: key.clone(),
                    from: State::Up,
                    to: State::Down,
                    reason: Reason::TimedOut { silent_for },
                    rtt: None,
                });
            }
        }
        transitions
    }

    /// Our own connection to the broker dropped.
    pub fn link_down(&mut self, now: Instant) {
        self.link_down_since.get_or_insert(now);
    }

    /// Our connection is back: every instance that was UP gets the grace plus
    /// a full timeout from now before it can be judged, since it had no way
    /// to reach us and may still be reconnecting itself.
    pub fn link_up(&mut self, now: Instant) {
        if self.link_down_since.take().is_none() {
            return;
        }
        let judge_from = now + self.reconnect_grace;
        for tracked in self.instances.values_mut() {
            if tracked.state == State::Up {
                tracked.silence_from = tracked.silence_from.max(judge_from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(3);

    fn detector() -> (Detector, Instant) {
        let timeouts = HashMap::from([("slow".to_string(), Duration::from_secs(10))]);
        (Detector::new(T, timeouts), Instant::now())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_echo_is_first_seen_with_rtt() {
        let (mut d, t0) = detector();
        d.ping_sent(1, t0);
        let out = d.echo("orders", "a", 1, t0 + ms(12));
        let t = out.transition.unwrap();
        assert_eq!(
            (t.from, t.to, t.reason),
            (State::NeverSeen, State::Up, Reason::FirstSeen)
        );
        assert_eq!(t.key, InstanceKey::new("orders", "a"));
        assert_eq!(t.rtt, Some(ms(12)));
        assert_eq!(out.rtt, Some(ms(12)));
        // Later echoes change nothing but the RTT.
        d.ping_sent(2, t0 + ms(1000));
        let out = d.echo("orders", "a", 2, t0 + ms(1005));
        assert_eq!(
            out,
            EchoOutcome {
                transition: None,
                rtt: Some(ms(5))
            }
        );
    }

    #[test]
    fn silence_past_the_timeout_is_down_with_how_long() {
        let (mut d, t0) = detector();
        d.echo("orders", "a", 1, t0);
        assert!(
            d.check(t0 + T).is_empty(),
            "exactly the timeout is still UP"
        );
        let ts = d.check(t0 + T + ms(100));
        assert_eq!(ts.len(), 1);
        assert_eq!((ts[0].from, ts[0].to), (State::Up, State::Down));
        assert_eq!(
            ts[0].reason,
            Reason::TimedOut {
                silent_for: T + ms(100)
            }
        );
        assert!(d.check(t0 + T * 5).is_empty(), "DOWN is reported once");
    }

    #[test]
    fn per_service_timeout_overrides_the_default() {
        let (mut d, t0) = detector();
        d.echo("Slow", "a", 1, t0);
        d.echo("orders", "a", 1, t0);
        let ts = d.check(t0 + ms(5000));
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].key.service, "orders");
        assert_eq!(d.check(t0 + ms(10_001))[0].key.service, "Slow");
    }

    #[test]
    fn an_echo_after_down_is_recovered() {
        let (mut d, t0) = detector();
        d.echo("orders", "a", 1, t0);
        d.check(t0 + ms(3500));
        let t = d.echo("orders", "a", 5, t0 + ms(4000)).transition.unwrap();
        assert_eq!(
            (t.from, t.to, t.reason),
            (State::Down, State::Up, Reason::Recovered)
        );
        assert_eq!(d.instances()[&t.key].since, t0 + ms(4000));
    }

    #[test]
    fn goodbye_is_down_with_reason_left_and_late_echoes_do_not_revive() {
        let (mut d, t0) = detector();
        d.ping_sent(1, t0);
        d.echo("orders", "a", 1, t0 + ms(1));
        d.ping_sent(2, t0 + ms(1000));
        let t = d.goodbye("orders", "a", t0 + ms(1001)).unwrap();
        assert_eq!(
            (t.from, t.to, t.reason),
            (State::Up, State::Down, Reason::Left)
        );
        // An echo for ping 2, overtaken by the goodbye, is not a recovery.
        assert_eq!(
            d.echo("orders", "a", 2, t0 + ms(1002)),
            EchoOutcome::default()
        );
        assert_eq!(d.instances()[&t.key].state, State::Down);
        // A restarted instance answers a newer ping and is back.
        d.ping_sent(3, t0 + ms(2000));
        let t = d.echo("orders", "a", 3, t0 + ms(2003)).transition.unwrap();
        assert_eq!(
            (t.from, t.to, t.reason),
            (State::Down, State::Up, Reason::Recovered)
        );
        // A goodbye from a DOWN or unknown instance says nothing new.
        d.check(t0 + ms(9000));
        assert_eq!(d.goodbye("orders", "a", t0 + ms(9001)), None);
        assert_eq!(d.goodbye("ghost", "x", t0), None);
    }

    #[test]
    fn expected_services_are_never_seen_until_they_answer() {
        let (mut d, t0) = detector();
        d.expect("payments", t0);
        assert_eq!(
            d.instances()[&InstanceKey::new("payments", UNSEEN_INSTANCE)].state,
            State::NeverSeen
        );
        assert!(
            d.check(t0 + ms(60_000)).is_empty(),
            "never seen is not timed out"
        );
        let t = d
            .echo("payments", "p-1", 1, t0 + ms(60_000))
            .transition
            .unwrap();
        assert_eq!(
            (t.from, t.to, t.reason),
            (State::NeverSeen, State::Up, Reason::FirstSeen)
        );
        assert!(
            !d.instances()
                .contains_key(&InstanceKey::new("payments", UNSEEN_INSTANCE))
        );
        // Expecting a service already seen adds no placeholder.
        d.expect("payments", t0);
        assert_eq!(d.instances().len(), 1);
    }

    #[test]
    fn our_own_outage_is_not_blamed_on_the_services() {
        let (mut d, t0) = detector();
        d.echo("orders", "a", 1, t0);
        d.link_down(t0 + ms(500));
        assert!(
            d.check(t0 + ms(10_000)).is_empty(),
            "no verdicts while we are cut off"
        );
        d.link_up(t0 + ms(10_000));
        assert!(
            d.check(t0 + ms(12_000)).is_empty(),
            "a full timeout after we are back"
        );
        assert_eq!(d.check(t0 + ms(13_001)).len(), 1);
    }

    #[test]
    fn services_may_reconnect_up_to_the_grace_later_than_we_do() {
        let timeouts = HashMap::new();
        let mut d = Detector::new(T, timeouts).with_reconnect_grace(ms(5000));
        let t0 = Instant::now();
        d.echo("orders", "a", 1, t0);
        d.echo("gone", "a", 1, t0);
        d.link_down(t0 + ms(100));
        d.link_up(t0 + ms(2000));
        // orders reconnects 4 s after us and answers every second; gone never does.
        for (seq, at) in [(6, 6000), (7, 7000), (8, 8000), (9, 9000)] {
            d.echo("orders", "a", seq, t0 + ms(at));
        }
        assert!(
            d.check(t0 + ms(9999)).is_empty(),
            "grace + timeout not over yet"
        );
        let ts = d.check(t0 + ms(10_001));
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].key.service, "gone");
        // The reported silence is the truth: since its last echo, before the outage.
        assert_eq!(
            ts[0].reason,
            Reason::TimedOut {
                silent_for: ms(10_001)
            }
        );
    }

    #[test]
    fn rtt_is_measured_on_our_clock_and_old_pings_are_forgotten() {
        let (mut d, t0) = detector();
        for seq in 1..=(RTT_WINDOW as u64 + 10) {
            d.ping_sent(seq, t0 + ms(seq));
        }
        assert_eq!(
            d.echo("a", "1", 5, t0 + ms(5000)).rtt,
            None,
            "seq 5 is outside the window"
        );
        let last = RTT_WINDOW as u64 + 10;
        assert_eq!(d.echo("a", "1", last, t0 + ms(last + 7)).rtt, Some(ms(7)));
        assert_eq!(
            d.echo("a", "1", last + 100, t0).rtt,
            None,
            "a seq never sent"
        );
    }

    #[test]
    fn missed_pings_are_counted_per_instance() {
        let (mut d, t0) = detector();
        d.ping_sent(1, t0);
        d.echo("a", "1", 1, t0 + ms(1));
        d.echo("b", "1", 1, t0 + ms(1));
        for seq in 2..=4 {
            d.ping_sent(seq, t0 + ms(seq * 1000));
            d.echo("a", "1", seq, t0 + ms(seq * 1000 + 1));
        }
        d.ping_sent(5, t0 + ms(5000));
        let key = |s: &str| InstanceKey::new(s, "1");
        assert_eq!(d.instances()[&key("a")].missed, 0);
        assert_eq!(
            d.instances()[&key("b")].missed,
            3,
            "pings 2, 3 and 4 went unanswered"
        );
    }
}
