//! [`GroupPart`]: the monitor group as the fleet model knows it, for every
//! view and for the notify gate alike: the group's name, who is in it
//! (heard within three intervals: alive), who leads, each member's
//! verdicts as it shared them, and from those the group's verdict on a
//! subject (`quorum`). Written by the group task (`crate::group`), read
//! by the status document and page, `/metrics`, the dashboard and the
//! gate. Pure: instants are passed in.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use orchestrator_lib::plumbing::group::Leadership;
use tokio::time::Instant;

use crate::detector::State;

/// What a verdict is about: an instance (`Some`), or a whole service's
/// strength (`None`), as alerts name their subjects.
pub type Subject = (String, Option<String>);

/// A member's verdicts: each subject's state code. A member shares every
/// instance it knows and each service below full strength; a subject it
/// does not name it has no verdict on.
pub type Verdicts = HashMap<Subject, String>;

#[derive(Debug, Clone)]
struct Heard {
    at: Instant,
    leader: bool,
    /// When the member's process started (its incarnation): a new value
    /// means a restarted member, whose ledger starts empty.
    incarnation: i64,
    verdicts: Verdicts,
}

/// One member as shown: its id, whether it is alive, whether it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub alive: bool,
    pub leader: bool,
    /// This member itself.
    pub me: bool,
}

/// The group, as this member knows it.
#[derive(Debug, Clone)]
pub struct GroupPart {
    pub name: String,
    /// This member's id.
    pub me: String,
    /// `[group] quorum`: how many members must judge a subject DOWN for the
    /// group; `None`: a majority of the members alive.
    pub quorum: Option<usize>,
    leadership: Leadership,
    /// A claim confirmed longer ago than this is not acted on.
    lease: Duration,
    /// Silent this long: not alive.
    alive_within: Duration,
    /// The other members, by id.
    heard: BTreeMap<String, Heard>,
}

impl GroupPart {
    pub fn new(
        name: String,
        me: String,
        quorum: Option<usize>,
        lease: Duration,
        alive_within: Duration,
    ) -> Self {
        Self {
            name,
            me,
            quorum,
            leadership: Leadership::Standby,
            lease,
            alive_within,
            heard: BTreeMap::new(),
        }
    }

    pub fn set_leadership(&mut self, leadership: Leadership) {
        self.leadership = leadership;
    }

    /// Leading at `now`, on a claim confirmed within the lease.
    pub fn leads(&self, now: Instant) -> bool {
        matches!(self.leadership, Leadership::Leader { confirmed } if now.saturating_duration_since(confirmed) < self.lease)
    }

    /// Another member's hello; true when it is a member (or incarnation)
    /// not heard before. A restarted member's verdicts start afresh.
    pub fn hello(&mut self, id: &str, leader: bool, incarnation: i64, now: Instant) -> bool {
        match self.heard.get_mut(id) {
            Some(h) if h.incarnation == incarnation => {
                h.at = now;
                h.leader = leader;
                false
            }
            _ => {
                self.heard.insert(
                    id.to_owned(),
                    Heard {
                        at: now,
                        leader,
                        incarnation,
                        verdicts: Verdicts::new(),
                    },
                );
                true
            }
        }
    }

    /// Another member's verdicts: all of them (`whole`), or the ones that
    /// changed (`None`: no verdict any more). From a member not yet heard
    /// they wait for its hello (they are sent again in whole every few
    /// seconds).
    pub fn verdicts(
        &mut self,
        id: &str,
        whole: bool,
        verdicts: Vec<(Subject, Option<String>)>,
        now: Instant,
    ) {
        let Some(heard) = self.heard.get_mut(id) else {
            return;
        };
        heard.at = now;
        if whole {
            heard.verdicts.clear();
        }
        for (subject, state) in verdicts {
            match state {
                Some(state) => heard.verdicts.insert(subject, state),
                None => heard.verdicts.remove(&subject),
            };
        }
    }

    /// Members silent for ten times the alive window are dropped.
    pub fn forget_silent(&mut self, now: Instant) {
        let forget = self.alive_within * 10;
        self.heard
            .retain(|_, h| now.saturating_duration_since(h.at) < forget);
    }

    fn alive(&self, heard: &Heard, now: Instant) -> bool {
        now.saturating_duration_since(heard.at) < self.alive_within
    }

    /// Every member, this one included, by id.
    pub fn members(&self, now: Instant) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .heard
            .iter()
            .map(|(id, h)| {
                let alive = self.alive(h, now);
                Member {
                    id: id.clone(),
                    alive,
                    leader: alive && h.leader,
                    me: false,
                }
            })
            .collect();
        members.push(Member {
            id: self.me.clone(),
            alive: true,
            leader: self.leads(now),
            me: true,
        });
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members
    }

    /// The member leading, as heard (this one, when it leads).
    pub fn leader(&self, now: Instant) -> Option<String> {
        if self.leads(now) {
            return Some(self.me.clone());
        }
        self.heard
            .iter()
            .find(|(_, h)| h.leader && self.alive(h, now))
            .map(|(id, _)| id.clone())
    }

    /// Members alive, this one included.
    pub fn alive_count(&self, now: Instant) -> usize {
        1 + self.heard.values().filter(|h| self.alive(h, now)).count()
    }

    /// How many members must agree: `[group] quorum`, or a majority of
    /// those alive. Never more than are alive, never under one.
    pub fn quorum_at(&self, now: Instant) -> usize {
        let alive = self.alive_count(now);
        self.quorum.unwrap_or(alive / 2 + 1).clamp(1, alive.max(1))
    }

    /// How many members alive judge `subject` to be in `state`, this one
    /// included when `own` is that state.
    pub fn judging(
        &self,
        subject: &Subject,
        state: &str,
        own: Option<&str>,
        now: Instant,
    ) -> usize {
        usize::from(own == Some(state))
            + self
                .heard
                .values()
                .filter(|h| self.alive(h, now))
                .filter(|h| h.verdicts.get(subject).is_some_and(|s| s == state))
                .count()
    }

    /// How many members must agree on `subject`: `[group] quorum`, or a
    /// majority of the members alive that have a verdict on it (one that
    /// never heard of it, a newcomer, does not judge it and does not count).
    pub fn quorum_for(&self, subject: &Subject, own: Option<&str>, now: Instant) -> usize {
        if self.quorum.is_some() {
            return self.quorum_at(now);
        }
        let knowing = usize::from(own.is_some())
            + self
                .heard
                .values()
                .filter(|h| self.alive(h, now) && h.verdicts.contains_key(subject))
                .count();
        knowing / 2 + 1
    }

    /// Whether the group holds `subject` to be in `state`: at least the
    /// quorum of members alive judge so.
    pub fn agrees(&self, subject: &Subject, state: &str, own: Option<&str>, now: Instant) -> bool {
        self.judging(subject, state, own, now) >= self.quorum_for(subject, own, now)
    }

    /// The group's verdict on an instance this member judges `own`: DOWN
    /// when a quorum judges it DOWN (this member or not); this member's
    /// DOWN without one is its own view, [`State::Unheard`]; otherwise its
    /// own verdict.
    pub fn instance_state(&self, subject: &Subject, own: State, now: Instant) -> State {
        let down = State::Down.code();
        if self.agrees(subject, down, Some(own.code()), now) {
            State::Down
        } else if own == State::Down {
            State::Unheard
        } else {
            own
        }
    }

    /// Each member's verdict on `subject` when they are not all the same
    /// (`own` is this member's): by member id; empty when all alive agree.
    pub fn differing(
        &self,
        subject: &Subject,
        own: &str,
        now: Instant,
    ) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        all.insert(self.me.clone(), own.to_owned());
        for (id, h) in &self.heard {
            if !self.alive(h, now) {
                continue;
            }
            if let Some(state) = h.verdicts.get(subject) {
                all.insert(id.clone(), state.clone());
            }
        }
        let mut states = all.values();
        let first = states.next();
        if states.all(|s| Some(s) == first) {
            all.clear();
        }
        all
    }

    /// Per member alive, the share (0 to 1) of `mine`'s subjects on which
    /// its verdict is this member's; 1 for this member, and with nothing to
    /// compare.
    pub fn agreement(&self, mine: &Verdicts, now: Instant) -> Vec<(String, f64)> {
        let mut out = vec![(self.me.clone(), 1.0)];
        for (id, h) in &self.heard {
            if !self.alive(h, now) {
                continue;
            }
            let same = mine
                .iter()
                .filter(|(subject, state)| h.verdicts.get(*subject) == Some(*state))
                .count();
            let share = if mine.is_empty() {
                1.0
            } else {
                same as f64 / mine.len() as f64
            };
            out.push((id.clone(), share));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(instance: &str) -> Subject {
        ("orders".into(), Some(instance.into()))
    }

    #[test]
    fn members_are_alive_while_heard_and_lead_only_then() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut group = GroupPart::new("prod".into(), "c".into(), None, s(1), s(3));
        assert!(group.hello("a", true, 1, t0));
        assert!(group.hello("b", false, 1, t0));
        assert!(!group.hello("b", false, 1, t0 + s(1)), "heard before");
        assert!(group.hello("b", false, 2, t0 + s(2)), "restarted");
        let now = t0 + s(4);
        let list = group.members(now);
        let shown: Vec<(&str, bool, bool, bool)> = list
            .iter()
            .map(|m| (m.id.as_str(), m.alive, m.leader, m.me))
            .collect();
        assert_eq!(
            shown,
            [
                ("a", false, false, false),
                ("b", true, false, false),
                ("c", true, false, true)
            ]
        );
        assert_eq!(group.leader(now), None, "the leader fell silent");
        group.set_leadership(Leadership::Leader { confirmed: now });
        assert_eq!(group.leader(now).as_deref(), Some("c"));
        assert!(!group.leads(now + s(2)), "a stale claim is not acted on");
        group.forget_silent(t0 + s(60));
        assert_eq!(group.members(t0 + s(60)).len(), 1, "long gone");
    }

    #[test]
    fn down_for_the_group_takes_a_quorum_and_a_lone_down_is_unheard() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut group = GroupPart::new("prod".into(), "a".into(), None, s(1), s(3));
        group.hello("b", false, 1, t0);
        let i1 = subject("i-1");
        group.verdicts("b", true, vec![(i1.clone(), Some("up".into()))], t0);
        // Two alive: a majority is both.
        assert_eq!(group.quorum_at(t0), 2);
        assert_eq!(group.instance_state(&i1, State::Down, t0), State::Unheard);
        assert_eq!(group.instance_state(&i1, State::Up, t0), State::Up);
        assert_eq!(
            group.differing(&i1, "down", t0),
            BTreeMap::from([("a".into(), "down".into()), ("b".into(), "up".into())])
        );
        group.verdicts("b", false, vec![(i1.clone(), Some("down".into()))], t0);
        assert_eq!(group.instance_state(&i1, State::Down, t0), State::Down);
        assert!(group.differing(&i1, "down", t0).is_empty(), "they agree");
        // Alone again (b silent): a majority of one is this member.
        group.verdicts("b", false, vec![(i1.clone(), Some("up".into()))], t0);
        let later = t0 + s(5);
        assert_eq!(group.quorum_at(later), 1);
        assert_eq!(group.instance_state(&i1, State::Down, later), State::Down);
        // Three alive, two of them judge it DOWN: DOWN for the group, even
        // for the member that hears it.
        group.hello("b", false, 1, later);
        group.hello("c", false, 1, later);
        group.verdicts("b", false, vec![(i1.clone(), Some("down".into()))], later);
        group.verdicts("c", true, vec![(i1.clone(), Some("down".into()))], later);
        assert_eq!(group.instance_state(&i1, State::Up, later), State::Down);
        // A member that never heard of a subject does not count.
        let other = subject("i-2");
        assert_eq!(
            group.instance_state(&other, State::Down, later),
            State::Down
        );
        // A quorum set by hand.
        group.quorum = Some(3);
        assert_eq!(group.instance_state(&i1, State::Up, later), State::Up);
        let mine = Verdicts::from([(i1.clone(), "up".to_owned())]);
        assert_eq!(
            group.agreement(&mine, later),
            [("a".into(), 1.0), ("b".into(), 0.0), ("c".into(), 0.0)]
        );
    }
}
