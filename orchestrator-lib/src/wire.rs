//! The messages on the wire: versioned JSON, one object per AMQP message body.
//!
//! `docs/PROTOCOL.md` is the contract; this module is its Rust spelling. Every
//! body carries `"v": 1` and a `"type"` tag. Unknown fields are ignored so the
//! protocol can grow without breaking older participants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The protocol major version this build speaks. Bodies with another `v` are
/// rejected: a new major version means the meaning of a field changed.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest service or instance name accepted off the wire, in bytes. Names
/// become queue names and dashboard rows; a bound keeps a hostile peer from
/// inflating either.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Ping(Ping),
    Echo(Echo),
    Goodbye(Goodbye),
}

/// Sent by a monitor to every service through the ping fanout exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    /// The monitor's id; also the suffix of the queue it wants echoes on.
    pub monitor: String,
    /// Increases by one with every ping from this monitor.
    pub seq: u64,
    pub sent_at: DateTime<Utc>,
}

/// A service's answer to one ping, sent to the ping's `reply_to` queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub service: String,
    pub instance: String,
    /// The `seq` of the ping this answers.
    pub seq: u64,
    /// The service's own clock; informative only, never used to measure time.
    pub at: DateTime<Utc>,
}

/// Sent by a service that shuts down on purpose, to every monitor that pinged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goodbye {
    pub service: String,
    pub instance: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize)]
struct OutEnvelope<'a> {
    v: u32,
    #[serde(flatten)]
    message: &'a Message,
}

#[derive(Deserialize)]
struct InEnvelope {
    v: u32,
    #[serde(flatten)]
    message: Message,
}

/// Why a body was not accepted. Bad bodies are counted and dropped, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a valid message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("{field} must be 1 to {MAX_NAME_LEN} bytes long")]
    BadName { field: &'static str },
}

pub fn encode(message: &Message) -> Vec<u8> {
    let envelope = OutEnvelope {
        v: PROTOCOL_VERSION,
        message,
    };
    // Cannot fail: every field is a string, an integer or a timestamp.
    serde_json::to_vec(&envelope).expect("messages always serialise")
}

pub fn decode(body: &[u8]) -> Result<Message, DecodeError> {
    let envelope: InEnvelope = serde_json::from_slice(body)?;
    if envelope.v != PROTOCOL_VERSION {
        return Err(DecodeError::Version(envelope.v));
    }
    let names = match &envelope.message {
        Message::Ping(p) => vec![("monitor", &p.monitor)],
        Message::Echo(e) => vec![("service", &e.service), ("instance", &e.instance)],
        Message::Goodbye(g) => vec![("service", &g.service), ("instance", &g.instance)],
    };
    for (field, value) in names {
        if value.is_empty() || value.len() > MAX_NAME_LEN {
            return Err(DecodeError::BadName { field });
        }
    }
    Ok(envelope.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-11-23T10:00:00.250Z".parse().unwrap()
    }

    #[test]
    fn round_trips_every_message() {
        let messages = [
            Message::Ping(Ping {
                monitor: "mon-1".into(),
                seq: 42,
                sent_at: at(),
            }),
            Message::Echo(Echo {
                service: "orders".into(),
                instance: "orders-1".into(),
                seq: 42,
                at: at(),
            }),
            Message::Goodbye(Goodbye {
                service: "orders".into(),
                instance: "orders-1".into(),
                at: at(),
            }),
        ];
        for m in messages {
            assert_eq!(decode(&encode(&m)).unwrap(), m);
        }
    }

    #[test]
    fn encodes_the_documented_shape() {
        let body = encode(&Message::Echo(Echo {
            service: "orders".into(),
            instance: "orders-1".into(),
            seq: 42,
            at: at(),
        }));
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"v": 1, "type": "echo", "service": "orders",
                "instance": "orders-1", "seq": 42, "at": "2026-11-23T10:00:00.250Z"})
        );
    }

    #[test]
    fn ignores_unknown_fields_and_accepts_other_languages_timestamps() {
        let body = br#"{"v":1,"type":"echo","service":"py","instance":"a","seq":7,
            "at":"2026-11-23T10:00:00+01:00","load":0.3,"extra":{"x":1}}"#;
        let Message::Echo(echo) = decode(body).unwrap() else {
            panic!("expected an echo")
        };
        assert_eq!(echo.seq, 7);
        assert_eq!(
            echo.at,
            "2026-11-23T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn rejects_bad_bodies_without_panicking() {
        let long = format!(
            r#"{{"v":1,"type":"goodbye","service":"{}","instance":"i","at":"2026-11-23T10:00:00Z"}}"#,
            "x".repeat(MAX_NAME_LEN + 1)
        );
        let cases: [&[u8]; 9] = [
            b"",
            b"\xff\xfe",
            b"null",
            b"{}",
            br#"{"v":1,"type":"shout"}"#,
            br#"{"v":2,"type":"ping","monitor":"m","seq":1,"sent_at":"2026-11-23T10:00:00Z"}"#,
            br#"{"type":"ping","monitor":"m","seq":1,"sent_at":"2026-11-23T10:00:00Z"}"#,
            br#"{"v":1,"type":"echo","service":"","instance":"i","seq":1,"at":"2026-11-23T10:00:00Z"}"#,
            long.as_bytes(),
        ];
        for body in cases {
            assert!(
                decode(body).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(body)
            );
        }
    }
}
