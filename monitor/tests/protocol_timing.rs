//! docs/PROTOCOL.md's timing table, checked against the detector: with the
//! default settings, each mode's silence before SUSPECT and before DOWN is
//! what the page says a service author can expect.

use std::time::{Duration, Instant};

use heartbeat_config::{DetectionMode, Settings};
use monitor::detector::{Detector, Mode, Policy, State};

const PAGE: &str = include_str!("../../docs/PROTOCOL.md");

/// The default policy, as the monitor builds it from the default settings.
fn default_policy(mode: Mode) -> (Duration, Policy) {
    let settings = Settings::load_with_env(None, Some(Vec::new())).expect("the defaults load");
    let d = &settings.detection;
    assert_eq!(d.mode, DetectionMode::Phi, "phi is the default mode");
    // The monitor's own mapping, only the mode changed: the table is checked
    // against what the monitor runs, not a copy of it.
    let policy = Policy {
        mode,
        ..monitor::policy(&settings, None)
    };
    (settings.interval, policy)
}

/// Seconds of silence before SUSPECT and before DOWN, for an instance that
/// answered `answered` pings (each 2 ms after it) and then fell silent,
/// while the monitor goes on pinging and checking every 10 ms.
fn silence_before_verdicts(mode: Mode, answered: u64) -> (f64, f64) {
    let (interval, policy) = default_policy(mode);
    let mut detector = Detector::new(interval, policy);
    let t0 = Instant::now();
    let mut last_echo = t0;
    for seq in 1..=answered {
        let sent = t0 + interval * (seq as u32);
        detector.ping_sent(seq, sent);
        detector.check(sent);
        last_echo = sent + Duration::from_millis(2);
        detector.echo("svc", "a", seq, last_echo);
    }
    let (mut suspect, mut down) = (None, None);
    let mut seq = answered;
    let mut now = last_echo;
    while down.is_none() {
        now += Duration::from_millis(10);
        assert!(now - last_echo < Duration::from_secs(30), "never DOWN");
        if now >= t0 + interval * (seq as u32 + 1) {
            seq += 1;
            detector.ping_sent(seq, now);
        }
        for transition in detector.check(now) {
            let silence = (now - last_echo).as_secs_f64();
            match transition.to {
                State::Suspect => suspect = suspect.or(Some(silence)),
                State::Down => down = Some(silence),
                _ => {}
            }
        }
    }
    (suspect.expect("SUSPECT before DOWN"), down.unwrap())
}

/// The page's timing table: mode to (SUSPECT after, DOWN after), seconds.
fn page_table() -> Vec<(String, f64, f64)> {
    let seconds = |cell: &str| -> f64 {
        cell.trim()
            .strip_suffix(" s")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not seconds: {cell:?}"))
    };
    let timing = &PAGE[PAGE.find("\n## Timing").expect("a Timing section")..];
    let start = timing
        .find("| mode | SUSPECT after | DOWN after |")
        .expect("the timing table");
    timing[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            (
                cells[0].trim().to_owned(),
                seconds(cells[1]),
                seconds(cells[2]),
            )
        })
        .collect()
}

#[test]
fn the_protocol_pages_timing_table_is_the_detectors() {
    let table = page_table();
    assert_eq!(table.len(), 3, "{table:?}");
    for (mode, page_suspect, page_down) in table {
        let (suspect, down) = match mode.as_str() {
            "fixed" => silence_before_verdicts(Mode::Fixed, 30),
            "phi, a steady service" => silence_before_verdicts(Mode::Phi, 30),
            "phi, in its first seconds" => silence_before_verdicts(Mode::Phi, 1),
            other => panic!("a mode the test does not know: {other:?}"),
        };
        // The page rounds to a tenth; checks come every 10 ms here.
        for (what, page, measured) in [
            ("SUSPECT", page_suspect, suspect),
            ("DOWN", page_down, down),
        ] {
            assert!(
                (measured - page).abs() <= 0.06,
                "{mode}: {what} after {measured:.3} s of silence, the page says {page} s"
            );
        }
    }
}
