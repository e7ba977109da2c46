//! The detector's vocabulary: who is watched, what it is judged to be, and why.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Placeholder instance name for an expected service that has not answered.
pub const UNSEEN_INSTANCE: &str = "-";

/// One instance for as long as the detector tracks it: never given to
/// another, also after it is forgotten. A sink that sees every echo keys its
/// own table by this instead of hashing and comparing two names per echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InstanceId(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub service: String,
    pub instance: String,
}

/// An instance this monitor knew before it restarted, as its history store
/// last recorded it: see [`crate::detector::Detector::restore`].
#[derive(Debug, Clone, PartialEq)]
pub struct LastKnown {
    pub key: InstanceKey,
    /// The state it was last judged in (never LEFT: a goodbye ends the watch).
    pub state: State,
    /// How long ago it entered that state.
    pub age: Duration,
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

/// What an instance is shown as. The serialised names (`code`) are an
/// interface: JSON lines, the HTTP API and notifiers use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Expected by configuration, never answered.
    NeverSeen,
    Up,
    /// Answers, but its round trips exceed the service's limit.
    Slow,
    /// Missed its deadline; the evidence is not yet strong enough for DOWN.
    Suspect,
    Down,
    /// Said goodbye: a planned shutdown, not an outage.
    Left,
    /// Changed state too often lately; one line says so instead of a storm.
    Flapping,
    /// The monitor cannot judge: its own link is down or blocked, or it stalled.
    Stale,
    /// In a monitor group: this monitor judges it DOWN, fewer than the
    /// quorum do. Its own view (its own network), not an outage. Never the
    /// detector's verdict: the fleet model shows it (`GroupPart`).
    Unheard,
}

impl State {
    pub const ALL: [State; 9] = [
        State::NeverSeen,
        State::Up,
        State::Slow,
        State::Suspect,
        State::Down,
        State::Left,
        State::Flapping,
        State::Stale,
        State::Unheard,
    ];

    /// The snake_case name used on the wire (`"never_seen"`, `"suspect"`, ...).
    pub fn code(self) -> &'static str {
        match self {
            State::NeverSeen => "never_seen",
            State::Up => "up",
            State::Slow => "slow",
            State::Suspect => "suspect",
            State::Down => "down",
            State::Left => "left",
            State::Flapping => "flapping",
            State::Stale => "stale",
            State::Unheard => "unheard",
        }
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            State::NeverSeen => "NEVER SEEN",
            State::Up => "UP",
            State::Slow => "SLOW",
            State::Suspect => "SUSPECT",
            State::Down => "DOWN",
            State::Left => "LEFT",
            State::Flapping => "FLAPPING",
            State::Stale => "STALE",
            State::Unheard => "UNHEARD",
        }
    }
}

/// Why the monitor cannot judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blindness {
    /// Our own connection to the broker is down.
    LinkDown,
    /// The broker stopped reading from us (a memory or disk alarm).
    Blocked,
    /// Our own event loop stalled for this long.
    Stalled { lag: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    FirstSeen,
    Recovered,
    /// Answered again after it had said goodbye.
    Rejoined,
    /// Missed its deadline: silent for this long; `phi` when phi accrual judged it.
    TimedOut {
        silent_for: Duration,
        phi: Option<f64>,
    },
    /// Said goodbye.
    Left,
    /// Said goodbye with a promise to be back within this long: a planned restart.
    Draining {
        back_within: Duration,
    },
    /// Drained, and not back within the promised time.
    NotBack {
        promised: Duration,
    },
    /// Changed state this many times within the flapping window.
    Flapping {
        changes: u32,
    },
    /// No change for a whole flapping window.
    Stable,
    /// Round trip over the service's limit.
    Slow {
        rtt: Duration,
    },
    /// The monitor cannot judge.
    Stale(Blindness),
    /// Known before the monitor restarted (from its history store) and not
    /// heard since: DOWN until it answers. The transition's `from` is the
    /// state it was last known in.
    Restored,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::FirstSeen => "first_seen",
            Reason::Recovered => "recovered",
            Reason::Rejoined => "rejoined",
            Reason::TimedOut { .. } => "timed_out",
            Reason::Left => "left",
            Reason::Draining { .. } => "draining",
            Reason::NotBack { .. } => "not_back",
            Reason::Flapping { .. } => "flapping",
            Reason::Stable => "stable",
            Reason::Slow { .. } => "slow",
            Reason::Stale(Blindness::LinkDown) => "link_down",
            Reason::Stale(Blindness::Blocked) => "blocked",
            Reason::Stale(Blindness::Stalled { .. }) => "stalled",
            Reason::Restored => "restored",
        }
    }

    /// The phi value at the moment of a transition that phi caused.
    pub fn phi(self) -> Option<f64> {
        match self {
            Reason::TimedOut { phi, .. } => phi,
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::FirstSeen => f.write_str("first seen"),
            Reason::Recovered => f.write_str("recovered"),
            Reason::Rejoined => f.write_str("rejoined"),
            Reason::TimedOut { silent_for, phi } => {
                write!(f, "timed out: silent for {:.1}s", silent_for.as_secs_f64())?;
                match phi {
                    Some(phi) => write!(f, ", phi {phi:.1}"),
                    None => Ok(()),
                }
            }
            Reason::Left => f.write_str("left (goodbye)"),
            Reason::Draining { back_within } => write!(
                f,
                "planned restart: back within {}",
                humantime::format_duration(*back_within)
            ),
            Reason::NotBack { promised } => write!(
                f,
                "did not come back after a planned restart (promised within {})",
                humantime::format_duration(*promised)
            ),
            Reason::Flapping { changes } => write!(f, "flapping: {changes} changes"),
            Reason::Stable => f.write_str("stable again"),
            Reason::Slow { rtt } => write!(f, "slow: round trip {:.0}ms", rtt.as_secs_f64() * 1e3),
            Reason::Stale(Blindness::LinkDown) => {
                f.write_str("cannot judge: our broker link is down")
            }
            Reason::Stale(Blindness::Blocked) => {
                f.write_str("cannot judge: the broker blocked our link")
            }
            Reason::Stale(Blindness::Stalled { lag }) => write!(
                f,
                "cannot judge: the monitor stalled for {:.1}s",
                lag.as_secs_f64()
            ),
            Reason::Restored => f.write_str("not heard since the monitor restarted"),
        }
    }
}

/// A service as a whole, against the instances it should have
/// (`instances` in its settings). The codes are an interface, like [`State`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strength {
    /// At least the expected number of instances alive.
    Full,
    /// Fewer alive than expected, but some.
    Degraded,
    /// None alive: the service is DOWN as a whole.
    Down,
}

impl Strength {
    /// `"full"`, `"degraded"` or `"down"`: the JSON lines' and alerts' string.
    pub fn code(self) -> &'static str {
        match self {
            Strength::Full => "full",
            Strength::Degraded => "degraded",
            Strength::Down => "down",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Strength::Full => "FULL",
            Strength::Degraded => "DEGRADED",
            Strength::Down => "DOWN",
        }
    }
}

/// A service fell below its expected instances (or to none), or got back to full strength.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChange {
    pub service: String,
    pub from: Strength,
    pub to: Strength,
    /// Instances alive (UP, SLOW or SUSPECT, and not flapping) at the change.
    pub up: u32,
    pub expected: u32,
}

impl fmt::Display for ServiceChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} instances alive", self.up, self.expected)
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
