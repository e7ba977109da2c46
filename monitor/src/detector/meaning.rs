//! What a [`State`] means for an operator, decided here and nowhere else:
//! its severity (the Nagios verdict), its tone (the colour a view gives it),
//! its rank (most urgent first), whether it counts as alive for its
//! service's strength, and how it counts for uptime. Every view (dashboard,
//! status document and page, metrics, alerts, history) asks these methods;
//! none matches on the states itself to decide what they mean.

use serde::Serialize;

use super::State;

/// How a state counts for someone deciding whether to act: the Nagios plugin
/// convention, which `monitor status` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Severity {
    /// Judge a state by its code (`"up"`, `"never_seen"`, ..., and a
    /// service's `"degraded"`), as a reader of the status API or the JSON
    /// lines has it. A code this build does not know is unknown rather than
    /// silently fine.
    pub fn of(code: &str) -> Severity {
        match State::from_code(code) {
            Some(state) => state.severity(),
            // A service below its expected instances, but with some alive.
            None if code == "degraded" => Severity::Warning,
            None => Severity::Unknown,
        }
    }

    /// The Nagios plugin exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
            Severity::Unknown => "UNKNOWN",
        }
    }

    /// Which of two verdicts wins for the whole: a DOWN is news even when
    /// the rest cannot be judged; not being able to judge outweighs a warning.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Unknown => 2,
            Severity::Critical => 3,
        }
    }
}

/// The colour family a state is shown in. Views map a tone to their own
/// palette (the dashboard to terminal colours, the page to CSS classes);
/// red is for outages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// Answers on time.
    Good,
    /// Answers, but not as it should (slowly).
    Caution,
    /// Needs a look now (missed a deadline).
    Warning,
    /// An outage: gone, or expected and never heard.
    Critical,
    /// Unsteady: changes too often to be trusted either way.
    Unsteady,
    /// The monitor cannot judge.
    Blind,
    /// Nothing to do: a planned shutdown.
    Quiet,
}

impl Tone {
    /// The tone of a state code as alerts carry it: an instance's state, or
    /// a service's strength (`degraded` needs a look, `full` is good, a
    /// service's `down` is an outage like an instance's).
    pub fn of(code: &str) -> Tone {
        match State::from_code(code) {
            Some(state) => state.tone(),
            None if code == "degraded" => Tone::Warning,
            None if code == "full" => Tone::Good,
            None => Tone::Blind,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Caution => "caution",
            Tone::Warning => "warning",
            Tone::Critical => "critical",
            Tone::Unsteady => "unsteady",
            Tone::Blind => "blind",
            Tone::Quiet => "quiet",
        }
    }
}

/// How a stretch of time in a state counts for uptime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Answering: counts as up.
    Up,
    /// Judged absent: counts as down.
    Down,
    /// Not judged: left out of uptime altogether (a planned shutdown, or a
    /// spell when the monitor itself could not judge). It lowers coverage,
    /// never uptime.
    NotJudged,
}

/// Uptime over a span, with how much of the span it could be judged over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UptimeFigure {
    /// Time up out of the time judged (up or down), 0 to 1; `None` when no
    /// time was judged at all.
    pub ratio: Option<f64>,
    /// Time judged out of the time watched, 0 to 1: what LEFT and STALE
    /// spells (a planned shutdown, the monitor blind) leave out.
    pub coverage: f64,
}

/// An instance's stored uptime over 24 h, 7 d and 30 d (the history's
/// `UPTIME_WINDOWS_DAYS`), each with the share of its window judged.
pub type StoredUptimes = [Option<UptimeFigure>; 3];

impl State {
    /// The state whose [`code`](State::code) this is.
    pub fn from_code(code: &str) -> Option<State> {
        State::ALL.into_iter().find(|state| state.code() == code)
    }

    pub fn severity(self) -> Severity {
        match self {
            // A planned shutdown is not a failure; nor is one monitor's
            // deafness that the rest of its group does not share.
            State::Up | State::Left | State::Unheard => Severity::Ok,
            State::Slow | State::Suspect | State::Flapping => Severity::Warning,
            // Expected by the configuration and never answered: as absent as DOWN.
            State::Down | State::NeverSeen => Severity::Critical,
            State::Stale => Severity::Unknown,
        }
    }

    pub fn tone(self) -> Tone {
        match self {
            State::Up => Tone::Good,
            State::Slow => Tone::Caution,
            State::Suspect => Tone::Warning,
            State::Down | State::NeverSeen => Tone::Critical,
            State::Flapping => Tone::Unsteady,
            State::Stale | State::Unheard => Tone::Blind,
            State::Left => Tone::Quiet,
        }
    }

    /// Most urgent first (0): outages, then what needs a look, then what
    /// cannot be judged, then the quiet ones. Sorting by state uses this.
    pub fn rank(self) -> u8 {
        match self {
            State::Down => 0,
            State::NeverSeen => 1,
            State::Suspect => 2,
            State::Flapping => 3,
            State::Stale => 4,
            State::Unheard => 5,
            State::Slow => 6,
            State::Left => 7,
            State::Up => 8,
        }
    }

    /// Whether an instance in this state counts towards its service's
    /// strength: judged alive (answering, or a SUSPECT not yet DOWN). A
    /// FLAPPING one answers on and off, and serves: one silent for its
    /// timeout is DOWN, flapping or not. `None` for STALE: the monitor
    /// cannot judge, so the verdict from before counts, and our own
    /// blindness never degrades a service.
    pub fn counts_alive(self) -> Option<bool> {
        match self {
            // UNHEARD: the group hears it; only this monitor does not.
            State::Up | State::Slow | State::Suspect | State::Flapping | State::Unheard => {
                Some(true)
            }
            State::Down | State::NeverSeen | State::Left => Some(false),
            State::Stale => None,
        }
    }

    /// Whether an instance in this state vouches for its service to the
    /// services that depend on it: alive and not in doubt. A SUSPECT one
    /// counts alive but may be DOWN at the next check, so a dependent's
    /// alert waits on it (and goes out at once if it answers again): when
    /// a parent and its dependents fail together, the dependents' DOWN is
    /// often judged in the same check as the parent's, or just before it.
    /// `None` for STALE, as for [`counts_alive`](Self::counts_alive).
    pub fn vouches_for_dependents(self) -> Option<bool> {
        match self {
            State::Suspect => Some(false),
            other => other.counts_alive(),
        }
    }

    /// How time in this state counts for uptime: UP, SLOW (it answers) and
    /// SUSPECT (not yet judged DOWN) are up; DOWN, FLAPPING and NEVER SEEN
    /// are down; LEFT and STALE are not judged.
    pub fn availability(self) -> Availability {
        match self {
            State::Up | State::Slow | State::Suspect => Availability::Up,
            State::Down | State::NeverSeen | State::Flapping => Availability::Down,
            // This monitor could not hear it; the rest of the group could.
            State::Left | State::Stale | State::Unheard => Availability::NotJudged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_follow_the_nagios_convention() {
        let cases = [
            ("up", 0),
            ("left", 0),
            ("suspect", 1),
            ("flapping", 1),
            ("slow", 1),
            ("degraded", 1),
            ("down", 2),
            ("never_seen", 2),
            ("stale", 3),
            ("something_new", 3),
        ];
        for (state, code) in cases {
            assert_eq!(Severity::of(state).exit_code(), code, "{state}");
        }
        let worst = |states: &[&str]| {
            states
                .iter()
                .map(|s| Severity::of(s))
                .max_by_key(|s| s.rank())
                .unwrap()
        };
        assert_eq!(worst(&["up", "stale", "down"]), Severity::Critical);
        assert_eq!(worst(&["suspect", "stale"]), Severity::Unknown);
        assert_eq!(worst(&["up", "suspect", "left"]), Severity::Warning);
    }

    #[test]
    fn every_state_has_one_code_and_one_rank() {
        for state in State::ALL {
            assert_eq!(State::from_code(state.code()), Some(state));
        }
        let mut ranks: Vec<u8> = State::ALL.iter().map(|s| s.rank()).collect();
        ranks.sort_unstable();
        ranks.dedup();
        assert_eq!(ranks.len(), State::ALL.len(), "ranks are a total order");
    }

    #[test]
    fn outages_are_critical_and_red_what_answers_is_up() {
        for state in State::ALL {
            assert_eq!(
                state.tone() == Tone::Critical,
                state.severity() == Severity::Critical,
                "{state:?}"
            );
            if state.availability() == Availability::Up {
                assert_eq!(state.counts_alive(), Some(true), "{state:?}");
            }
        }
        assert_eq!(State::Stale.availability(), Availability::NotJudged);
        assert_eq!(State::Left.availability(), Availability::NotJudged);
    }

    #[test]
    fn a_code_in_an_alert_has_the_tone_of_its_state() {
        assert_eq!(Tone::of("down"), Tone::Critical);
        assert_eq!(Tone::of("up"), Tone::Good);
        assert_eq!(Tone::of("degraded"), Tone::Warning);
        assert_eq!(Tone::of("full"), Tone::Good);
        assert_eq!(Tone::of("no-such-state"), Tone::Blind);
    }

    #[test]
    fn only_a_state_alive_and_not_in_doubt_vouches_for_dependents() {
        for state in State::ALL {
            let vouches = state.vouches_for_dependents();
            match state {
                State::Suspect => assert_eq!(vouches, Some(false)),
                _ => assert_eq!(vouches, state.counts_alive(), "{state:?}"),
            }
        }
    }
}
