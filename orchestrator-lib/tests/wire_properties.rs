//! Properties of the wire codec over generated input: every message a
//! participant can send decodes to itself, and no sequence of bytes makes
//! decoding panic. The fuzz target in `fuzz/` searches the same space for
//! longer.

use chrono::{DateTime, TimeZone, Utc};
use orchestrator_lib::wire::{self, DEFAULT_MAX_BODY, Echo, Goodbye, MAX_NAME_LEN, Message, Ping};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9_.-]{{1,{MAX_NAME_LEN}}}")).unwrap()
}

fn timestamp() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    // Whole milliseconds: that is what is written on the wire.
    proptest::option::of(
        (0i64..4_102_444_800_000)
            .prop_map(|ms| Utc.timestamp_millis_opt(ms).single().expect("in range")),
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (name(), any::<u64>(), any::<Option<u64>>(), timestamp()).prop_map(
            |(monitor, seq, boot, sent_at)| {
                Message::Ping(Ping {
                    monitor,
                    seq,
                    boot,
                    sent_at,
                })
            }
        ),
        (name(), name(), any::<u64>(), timestamp()).prop_map(|(service, instance, seq, at)| {
            Message::Echo(Echo {
                service,
                instance,
                monitor: Some("mon-1".into()),
                seq,
                at,
            })
        }),
        (
            name(),
            name(),
            any::<Option<u64>>(),
            timestamp(),
            any::<Option<u32>>()
        )
            .prop_map(|(service, instance, seq, at, back)| {
                Message::Goodbye(Goodbye {
                    service,
                    instance,
                    monitor: seq.map(|_| "mon-1".into()),
                    seq,
                    at,
                    // Whole, positive milliseconds: what the wire carries.
                    back_within: back
                        .filter(|&ms| ms > 0)
                        .map(|ms| std::time::Duration::from_millis(u64::from(ms))),
                })
            }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(message in message()) {
        let body = wire::encode(&message);
        prop_assert!(body.len() <= DEFAULT_MAX_BODY);
        prop_assert_eq!(wire::decode(&body).unwrap(), message);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = wire::decode(&body);
    }

    /// Random bytes rarely get past the first brace; damaging a valid body
    /// reaches the deeper paths (field types, names, versions).
    #[test]
    fn damaged_messages_never_panic(
        message in message(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut body = wire::encode(&message);
        for (at, byte) in damage {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if let Ok(decoded) = wire::decode(&body) {
            // Whatever still decodes obeys the rules.
            let names: Vec<&str> = match &decoded {
                Message::Ping(p) => vec![&p.monitor],
                Message::Echo(e) => vec![&e.service, &e.instance],
                Message::Goodbye(g) => vec![&g.service, &g.instance],
            };
            prop_assert!(names.iter().all(|n| wire::is_valid_name(n)), "{:?}", decoded);
        }
    }
}
