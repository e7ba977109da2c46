//! What members say to each other over the group's exchange: JSON, one
//! message per body, every one naming its sender.

use serde::{Deserialize, Serialize};

use super::ledger::{AlertKey, Fired};

/// One verdict: a subject (an instance, or a whole service's strength when
/// `instance` is `None`) and its state code; `None`: no verdict any more
/// (forgotten, or a service back to full strength).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub service: String,
    pub instance: Option<String>,
    pub state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GroupMessage {
    /// Every interval: alive, and whether it leads.
    Hello {
        member: String,
        incarnation: i64,
        leader: bool,
    },
    /// Alerts just sent by the leader: `Some` fired, `None` resolved.
    Sent {
        member: String,
        alerts: Vec<(AlertKey, Option<Fired>)>,
    },
    /// This member's own verdicts: all of them (`whole`: every few seconds
    /// and to a newcomer), or those that changed since it last said.
    Verdicts {
        member: String,
        whole: bool,
        verdicts: Vec<Verdict>,
    },
    /// The leader's whole ledger, for members that start (or restart) with
    /// an empty one, and now and then in case a `Sent` was lost.
    Ledger {
        member: String,
        firing: Vec<(AlertKey, Fired)>,
    },
}

impl GroupMessage {
    pub fn member(&self) -> &str {
        match self {
            GroupMessage::Hello { member, .. }
            | GroupMessage::Sent { member, .. }
            | GroupMessage::Verdicts { member, .. }
            | GroupMessage::Ledger { member, .. } => member,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain fields always serialise")
    }

    pub fn decode(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_garbage_is_an_error() {
        let sent = GroupMessage::Sent {
            member: "m-1".into(),
            alerts: vec![(
                AlertKey {
                    target: "alertmanager-8899aabbccddeeff".into(),
                    service: "orders".into(),
                    instance: None,
                    state: "degraded".into(),
                },
                None,
            )],
        };
        assert_eq!(GroupMessage::decode(&sent.encode()).unwrap(), sent);
        assert!(GroupMessage::decode(b"{\"kind\":\"nope\"}").is_err());
        assert!(GroupMessage::decode(b"\xff").is_err());
    }
}
