//! Who is in the group, as heard: each member says hello every interval,
//! with whether it leads. Pure: instants are passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Heard {
    at: Instant,
    leader: bool,
    /// When the member's process started (its incarnation): a new value
    /// means a restarted member, whose ledger starts empty.
    incarnation: i64,
}

/// One member as shown: its id, whether it is alive, whether it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub alive: bool,
    pub leader: bool,
}

#[derive(Debug, Clone)]
pub struct Members {
    /// Silent this long: not alive.
    alive_within: Duration,
    heard: BTreeMap<String, Heard>,
}

impl Members {
    pub fn new(alive_within: Duration) -> Self {
        Self {
            alive_within,
            heard: BTreeMap::new(),
        }
    }

    /// A hello; true when it is a member (or incarnation) not heard before.
    pub fn hello(&mut self, id: &str, leader: bool, incarnation: i64, now: Instant) -> bool {
        let new = self
            .heard
            .get(id)
            .is_none_or(|h| h.incarnation != incarnation);
        self.heard.insert(
            id.to_owned(),
            Heard {
                at: now,
                leader,
                incarnation,
            },
        );
        new
    }

    /// Every member heard, by id; a member silent for ten times the alive
    /// window is dropped.
    pub fn list(&mut self, now: Instant) -> Vec<Member> {
        let forget = self.alive_within * 10;
        self.heard
            .retain(|_, h| now.saturating_duration_since(h.at) < forget);
        self.heard
            .iter()
            .map(|(id, h)| {
                let alive = now.saturating_duration_since(h.at) < self.alive_within;
                Member {
                    id: id.clone(),
                    alive,
                    leader: alive && h.leader,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_alive_while_heard_and_lead_only_then() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut members = Members::new(s(3));
        assert!(members.hello("a", true, 1, t0));
        assert!(members.hello("b", false, 1, t0));
        assert!(!members.hello("b", false, 1, t0 + s(1)), "heard before");
        assert!(members.hello("b", false, 2, t0 + s(2)), "restarted");
        let list = members.list(t0 + s(4));
        assert_eq!(
            list,
            vec![
                Member {
                    id: "a".into(),
                    alive: false,
                    leader: false
                },
                Member {
                    id: "b".into(),
                    alive: true,
                    leader: false
                },
            ]
        );
        assert!(members.list(t0 + s(60)).is_empty(), "long gone");
    }
}
