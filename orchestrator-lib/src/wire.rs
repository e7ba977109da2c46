//! The messages on the wire: versioned JSON, one object per AMQP message body.
//!
//! `docs/PROTOCOL.md` is the contract; this module is its Rust spelling. Every
//! body carries `"v": 1` and a `"type"` tag. Unknown fields are ignored so the
//! protocol can grow without breaking older participants.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The protocol major version this build speaks. Bodies with another `v` are
/// rejected: a new major version means the meaning of a field changed.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest service, instance or monitor name, in bytes. Names become queue
/// names (`heartbeat.service.<service>/<instance>`), consumer tags and
/// dashboard rows; at this bound every one of them fits AMQP's 255-byte
/// short strings, and a hostile peer cannot inflate a row.
pub const MAX_NAME_LEN: usize = 100;

/// Largest body accepted by default. Real messages are about 150 bytes; the
/// bound is checked before parsing, so a huge body costs nothing but its
/// delivery.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Ping(Ping),
    Echo(Echo),
    Goodbye(Goodbye),
}

/// Sent by a monitor to every service through the ping fanout exchange.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ping {
    /// The monitor's id; also the suffix of the queue it wants echoes on.
    pub monitor: String,
    /// Increases by one with every ping from this monitor's run.
    pub seq: u64,
    /// Which run of the monitor sent it: the Unix time in milliseconds at
    /// which that run started, so a later run has a larger one. With `seq`,
    /// inside the signed body, it makes a ping fresh once: a service with a
    /// key answers a ping only if `(boot, seq)` is above the last it
    /// answered from that monitor, so a recording played back is refused
    /// (docs/PROTOCOL.md, "Fresh pings"). `None` from monitors older than
    /// the field, which get no such check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<u64>,
    /// Informative only; `None` when the sender's timestamp did not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

/// A service's answer to one ping, sent to the ping's `reply_to` queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Echo {
    pub service: String,
    pub instance: String,
    /// The id of the monitor whose ping this answers, copied from the ping.
    /// Inside the signed body, it keeps a recorded echo from being played to
    /// another monitor whose seqs overlap. Optional for unsigned services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    /// The `seq` of the ping this answers.
    pub seq: u64,
    /// The service's own clock; informative only, never used to measure time,
    /// and `None` when it did not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// Sent by a service that shuts down on purpose, to every monitor that pinged it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goodbye {
    pub service: String,
    pub instance: String,
    /// The monitor it is addressed to and the last `seq` the service heard
    /// from it, as in an echo: inside the signed body they make a goodbye
    /// fresh, so a recorded one played back later is refused. Optional for
    /// unsigned services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Informative only, as in [`Echo::at`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// A planned drain: the instance promises to answer again within this
    /// long (a restart, a deploy). On the wire, `back_within` in whole
    /// milliseconds; a minor addition that older monitors ignore.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "millis")]
    pub back_within: Option<std::time::Duration>,
}

fn millis<S: serde::Serializer>(
    value: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
struct OutEnvelope<'a> {
    v: u32,
    #[serde(flatten)]
    message: &'a Message,
}

/// Every field any message may carry, all optional, strings borrowed from
/// the body where they hold no escapes. Fields we do not know are skipped
/// by serde as they are read, never buffered (unlike `#[serde(flatten)]`,
/// which kept a copy of every unknown value), so padding costs nothing.
#[derive(Deserialize)]
struct RawMessage<'a> {
    v: Option<u32>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    monitor: Option<Cow<'a, str>>,
    #[serde(borrow)]
    service: Option<Cow<'a, str>>,
    #[serde(borrow)]
    instance: Option<Cow<'a, str>>,
    seq: Option<u64>,
    boot: Option<u64>,
    /// Informative timestamps: whatever is there, a bad one is ignored.
    #[serde(default, deserialize_with = "lenient_time")]
    at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_time")]
    sent_at: Option<DateTime<Utc>>,
    /// A goodbye's promise, in milliseconds: typed as every integer field
    /// (PROTOCOL.md: "types are checked for every field this page names");
    /// `0` is no promise.
    back_within: Option<u64>,
}

/// Why a body was rejected, as counted and shown. Stable snake_case codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Larger than the configured limit; not parsed at all.
    TooLarge,
    /// Not JSON: empty, binary, invalid UTF-8, truncated, nested too deep.
    NotJson,
    /// JSON, but not a message: wrong types, missing fields, unknown `type`.
    BadShape,
    /// A `v` this build does not speak.
    UnsupportedVersion,
    /// A name outside the allowed characters or lengths.
    BadName,
    /// No MAC, on a link that has a key (see `signing`).
    Unsigned,
    /// A MAC that no accepted key produced for this body.
    BadSignature,
    /// A validly signed echo or goodbye whose seq this instance already
    /// used (or one too old to tell): a recording played back. Counted by
    /// the monitor's engine.
    Replayed,
    /// An echo of no ping this monitor sent within the service's timeout:
    /// a seq never sent, long forgotten, or made up. Counted by the monitor's engine.
    UnknownSeq,
    /// An echo from a new instance while the monitor already tracks as many
    /// as it may (`max_instances`). Counted by the monitor's engine.
    InstanceCap,
    /// A validly signed echo or goodbye naming another monitor, or none:
    /// meant for someone else (or moved there), never news here. Counted
    /// by the monitor's engine.
    OtherMonitor,
}

impl RejectReason {
    pub const ALL: [RejectReason; 11] = [
        RejectReason::TooLarge,
        RejectReason::NotJson,
        RejectReason::BadShape,
        RejectReason::UnsupportedVersion,
        RejectReason::BadName,
        RejectReason::Unsigned,
        RejectReason::BadSignature,
        RejectReason::Replayed,
        RejectReason::UnknownSeq,
        RejectReason::InstanceCap,
        RejectReason::OtherMonitor,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::NotJson => "not_json",
            RejectReason::BadShape => "bad_shape",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::BadName => "bad_name",
            RejectReason::Unsigned => "unsigned",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::Replayed => "replayed",
            RejectReason::UnknownSeq => "unknown_seq",
            RejectReason::InstanceCap => "instance_cap",
            RejectReason::OtherMonitor => "other_monitor",
        }
    }

    /// Position in [`RejectReason::ALL`], for per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a body was not accepted. Bad bodies are counted and dropped, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("not a valid message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a {kind} message needs `{field}`")]
    Missing {
        kind: &'static str,
        field: &'static str,
    },
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("{0}")]
    BadName(#[from] NameError),
}

impl DecodeError {
    pub fn reason(&self) -> RejectReason {
        match self {
            DecodeError::TooLarge { .. } => RejectReason::TooLarge,
            DecodeError::Json(error) if error.is_data() => RejectReason::BadShape,
            DecodeError::Json(_) => RejectReason::NotJson,
            DecodeError::Missing { .. } | DecodeError::UnknownType(_) => RejectReason::BadShape,
            DecodeError::Version(_) => RejectReason::UnsupportedVersion,
            DecodeError::BadName(_) => RejectReason::BadName,
        }
    }
}

/// A service, instance or monitor name that breaks the rules of
/// docs/PROTOCOL.md. Its message names the field and never echoes the value
/// raw (it may hold terminal escapes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be {}", name_rule())]
pub struct NameError {
    pub field: &'static str,
}

/// The rule for names, in words, for error messages.
pub fn name_rule() -> String {
    format!("1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'")
}

/// True for a name PROTOCOL.md allows: 1 to [`MAX_NAME_LEN`] ASCII letters,
/// digits, `-`, `_` or `.`. The one check used for the wire, flags and config.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// [`is_valid_name`], with an error that names `field`.
pub fn check_name(field: &'static str, name: &str) -> Result<(), NameError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(NameError { field })
    }
}

pub fn encode(message: &Message) -> Vec<u8> {
    let envelope = OutEnvelope {
        v: PROTOCOL_VERSION,
        message,
    };
    // Cannot fail: every field is a string, an integer or a timestamp.
    serde_json::to_vec(&envelope).expect("messages always serialise")
}

/// [`decode_within`] the default size limit.
pub fn decode(body: &[u8]) -> Result<Message, DecodeError> {
    decode_within(body, DEFAULT_MAX_BODY)
}

/// Decode one body, refusing it unread when it is over `max_body` bytes.
pub fn decode_within(body: &[u8], max_body: usize) -> Result<Message, DecodeError> {
    if body.len() > max_body {
        return Err(DecodeError::TooLarge {
            len: body.len(),
            max: max_body,
        });
    }
    let raw: RawMessage = serde_json::from_slice(body)?;
    let kind = raw.kind.as_deref().ok_or(DecodeError::Missing {
        kind: "heartbeat",
        field: "type",
    })?;
    let kind: &'static str = match kind {
        "ping" => "ping",
        "echo" => "echo",
        "goodbye" => "goodbye",
        other => {
            let mut shown: String = other.chars().take(32).collect();
            shown.retain(|c| !c.is_control());
            return Err(DecodeError::UnknownType(shown));
        }
    };
    let v = raw.v.ok_or(DecodeError::Missing { kind, field: "v" })?;
    if v != PROTOCOL_VERSION {
        return Err(DecodeError::Version(v));
    }
    let need = |value: Option<Cow<'_, str>>, field: &'static str| {
        let value = value.ok_or(DecodeError::Missing { kind, field })?;
        check_name(field, &value)?;
        Ok::<String, DecodeError>(value.into_owned())
    };
    let seq = |seq: Option<u64>| seq.ok_or(DecodeError::Missing { kind, field: "seq" });
    Ok(match kind {
        "ping" => Message::Ping(Ping {
            monitor: need(raw.monitor, "monitor")?,
            seq: seq(raw.seq)?,
            boot: raw.boot,
            sent_at: raw.sent_at,
        }),
        "echo" => Message::Echo(Echo {
            service: need(raw.service, "service")?,
            instance: need(raw.instance, "instance")?,
            monitor: match raw.monitor {
                Some(monitor) => Some(need(Some(monitor), "monitor")?),
                None => None,
            },
            seq: seq(raw.seq)?,
            at: raw.at,
        }),
        _ => Message::Goodbye(Goodbye {
            service: need(raw.service, "service")?,
            instance: need(raw.instance, "instance")?,
            monitor: match raw.monitor {
                Some(monitor) => Some(need(Some(monitor), "monitor")?),
                None => None,
            },
            seq: raw.seq,
            at: raw.at,
            back_within: raw
                .back_within
                .filter(|&ms| ms > 0)
                .map(std::time::Duration::from_millis),
        }),
    })
}

/// Read an informative timestamp without ever failing the message: RFC 3339
/// with an offset, or without one (as Python's `datetime.isoformat()` writes
/// it), taken as UTC; anything else, of any JSON type, is `None`.
fn lenient_time<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Lenient;
    impl<'de> serde::de::Visitor<'de> for Lenient {
        type Value = Option<DateTime<Utc>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a timestamp, or anything")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            if let Ok(at) = DateTime::parse_from_rfc3339(text) {
                return Ok(Some(at.with_timezone(&Utc)));
            }
            Ok(text
                .parse::<chrono::NaiveDateTime>()
                .ok()
                .map(|naive| naive.and_utc()))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    deserializer.deserialize_any(Lenient)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-11-23T10:00:00.250Z".parse().unwrap()
    }

    #[test]
    fn a_goodbye_may_promise_a_return_and_a_bad_promise_is_no_promise() {
        let body = |extra: &str| {
            format!(r#"{{"v":1,"type":"goodbye","service":"orders","instance":"o-1"{extra}}}"#)
        };
        let promise = |extra: &str| match decode(body(extra).as_bytes()).unwrap() {
            Message::Goodbye(bye) => bye.back_within,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            promise(r#","back_within":30000"#),
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(promise(""), None);
        assert_eq!(promise(r#","back_within":0"#), None);
        assert_eq!(promise(r#","back_within":null"#), None);
        for bad in [
            r#","back_within":"30s""#,
            r#","back_within":-5"#,
            r#","back_within":1.5"#,
        ] {
            let reason = decode(body(bad).as_bytes()).unwrap_err().reason();
            assert_eq!(reason, RejectReason::BadShape, "{bad}");
        }
        let encoded = encode(&Message::Goodbye(Goodbye {
            service: "orders".into(),
            instance: "o-1".into(),
            monitor: None,
            seq: None,
            at: None,
            back_within: Some(std::time::Duration::from_millis(1500)),
        }));
        assert!(
            String::from_utf8(encoded)
                .unwrap()
                .contains(r#""back_within":1500"#)
        );
    }

    #[test]
    fn round_trips_every_message() {
        let messages = [
            Message::Ping(Ping {
                monitor: "mon-1".into(),
                seq: 42,
                boot: Some(1_795_000_000_000),
                sent_at: Some(at()),
            }),
            Message::Echo(Echo {
                service: "orders".into(),
                instance: "orders-1".into(),
                monitor: Some("mon-1".into()),
                seq: 42,
                at: Some(at()),
            }),
            Message::Echo(Echo {
                service: "orders".into(),
                instance: "orders-1".into(),
                monitor: None,
                seq: 42,
                at: Some(at()),
            }),
            Message::Goodbye(Goodbye {
                service: "orders".into(),
                instance: "orders-1".into(),
                monitor: Some("mon-1".into()),
                seq: Some(41),
                at: Some(at()),
                back_within: None,
            }),
            Message::Goodbye(Goodbye {
                service: "orders".into(),
                instance: "orders-1".into(),
                monitor: Some("mon-1".into()),
                seq: Some(41),
                at: Some(at()),
                back_within: Some(std::time::Duration::from_secs(30)),
            }),
            Message::Goodbye(Goodbye {
                service: "orders".into(),
                instance: "orders-1".into(),
                monitor: None,
                seq: None,
                at: Some(at()),
                back_within: None,
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
            monitor: None,
            seq: 42,
            at: Some(at()),
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
            Some("2026-11-23T09:00:00Z".parse::<DateTime<Utc>>().unwrap())
        );
    }

    #[test]
    fn an_informative_timestamp_never_rejects_a_message() {
        let echo = |at: &str| {
            let body = format!(
                r#"{{"v":1,"type":"echo","service":"py","instance":"a","seq":7,"at":{at}}}"#
            );
            match decode(body.as_bytes()) {
                Ok(Message::Echo(echo)) => echo.at,
                other => panic!("{at} rejected the echo: {other:?}"),
            }
        };
        // Python's datetime.now().isoformat(): no offset, taken as UTC.
        assert_eq!(
            echo(r#""2026-11-23T10:00:00.123456""#),
            Some("2026-11-23T10:00:00.123456Z".parse().unwrap())
        );
        for junk in [
            r#""yesterday""#,
            "17",
            "null",
            "[1,2]",
            r#"{"a":{"b":1}}"#,
            "true",
        ] {
            assert_eq!(echo(junk), None, "{junk}");
        }
        let body = br#"{"v":1,"type":"goodbye","service":"py","instance":"a"}"#;
        assert!(matches!(
            decode(body),
            Ok(Message::Goodbye(Goodbye { at: None, .. }))
        ));
    }

    #[test]
    fn names_follow_the_protocol_page() {
        for good in ["orders", "a", "orders-1.eu_west", &"x".repeat(MAX_NAME_LEN)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "\u{1b}[31m",
            "caf\u{e9}",
            "x\ny",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        // A control character in a name is refused before it reaches a log or a screen.
        let body = br#"{"v":1,"type":"echo","service":"a\u001b[2J","instance":"i","seq":1}"#;
        assert_eq!(decode(body).unwrap_err().reason(), RejectReason::BadName);
    }

    #[test]
    fn size_is_checked_before_parsing() {
        let padded = format!(
            r#"{{"v":1,"type":"echo","service":"a","instance":"i","seq":1,"pad":"{}"}}"#,
            "x".repeat(DEFAULT_MAX_BODY)
        );
        let error = decode(padded.as_bytes()).unwrap_err();
        assert_eq!(error.reason(), RejectReason::TooLarge);
        assert!(decode_within(padded.as_bytes(), 2 * DEFAULT_MAX_BODY).is_ok());
        // Garbage over the limit is refused as too large, not parsed at all.
        let garbage = vec![b'{'; DEFAULT_MAX_BODY + 1];
        assert_eq!(
            decode(&garbage).unwrap_err().reason(),
            RejectReason::TooLarge
        );
    }

    #[test]
    fn unknown_fields_of_any_shape_are_skipped() {
        let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let body = format!(
            r#"{{"pad":{nested},"big":[{}0],"v":1,"type":"echo","service":"a","instance":"i","seq":3}}"#,
            "0,".repeat(5000)
        );
        assert!(matches!(
            decode(body.as_bytes()),
            Ok(Message::Echo(Echo { seq: 3, .. }))
        ));
        // Skipping is iterative in serde_json: deep nesting cannot overflow the stack.
        let deep = format!(
            r#"{{"v":1,"type":"echo","service":"a","instance":"i","seq":4,"pad":{}{}}}"#,
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        assert!(matches!(
            decode_within(deep.as_bytes(), deep.len()),
            Ok(Message::Echo(Echo { seq: 4, .. }))
        ));
    }

    #[test]
    fn every_reason_counts_in_its_own_slot() {
        for (i, reason) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{}", reason.code());
        }
    }

    #[test]
    fn each_rejection_has_a_reason() {
        let cases: [(&[u8], RejectReason); 7] = [
            (b"", RejectReason::NotJson),
            (b"\xff\xfe", RejectReason::NotJson),
            (b"[1]", RejectReason::BadShape),
            (br#"{"v":1,"type":"shout"}"#, RejectReason::BadShape),
            (
                br#"{"v":1,"type":"echo","service":"a","instance":"i"}"#,
                RejectReason::BadShape,
            ),
            (br#"{"v":"1","type":"echo"}"#, RejectReason::BadShape),
            (
                br#"{"v":2,"type":"ping","monitor":"m","seq":1}"#,
                RejectReason::UnsupportedVersion,
            ),
        ];
        for (body, reason) in cases {
            let error = decode(body).unwrap_err();
            assert_eq!(
                error.reason(),
                reason,
                "{:?}: {error}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn rejects_bad_bodies_without_panicking() {
        let long = format!(
            r#"{{"v":1,"type":"goodbye","service":"{}","instance":"i","at":"2026-11-23T10:00:00Z"}}"#,
            "x".repeat(MAX_NAME_LEN + 1)
        );
        let cases: [&[u8]; 10] = [
            b"",
            b"\xff\xfe",
            b"null",
            b"{}",
            br#"{"v":1,"type":"ping","monitor":"m","seq":-1}"#,
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
