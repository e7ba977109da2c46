//! The detector over explicit time: every state, every reason, hysteresis,
//! flapping, phi, STALE with its grace period, and the stall guard.

use std::time::{Duration, Instant};

use super::*;

const T: Duration = Duration::from_secs(3);
const I: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Phi with its default threshold and failures before DOWN.
fn phi_detector() -> (Detector, Instant) {
    let phi = Policy {
        mode: Mode::Phi,
        ..Policy::fixed(T)
    };
    (Detector::new(I, phi), Instant::now())
}

fn detector() -> (Detector, Instant) {
    let slow = Policy {
        timeout: Duration::from_secs(10),
        ..Policy::fixed(T)
    };
    (
        Detector::new(I, Policy::fixed(T)).with_service("slow", slow),
        Instant::now(),
    )
}

fn moves(ts: &[Transition]) -> Vec<(State, State, &'static str)> {
    ts.iter().map(|t| (t.from, t.to, t.reason.code())).collect()
}

fn state(d: &Detector, service: &str) -> State {
    d.instances()
        .find(|t| t.key.service == service)
        .map(|t| t.state)
        .unwrap()
}

/// Ping every second from `from` to `to` (seconds), answered after 5 ms by `services`.
fn beat(d: &mut Detector, t0: Instant, from: u64, to: u64, services: &[&str]) -> Vec<Transition> {
    let mut out = Vec::new();
    for s in from..=to {
        d.ping_sent(s, t0 + ms(s * 1000));
        out.extend(d.check(t0 + ms(s * 1000)));
        for service in services {
            out.extend(d.echo(service, "a", s, t0 + ms(s * 1000 + 5)).transitions);
        }
    }
    out
}

#[test]
fn first_echo_is_first_seen_with_rtt() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    let out = d.echo("orders", "a", 1, t0 + ms(12));
    assert_eq!(
        moves(&out.transitions),
        [(State::NeverSeen, State::Up, "first_seen")]
    );
    assert_eq!(out.transitions[0].key, InstanceKey::new("orders", "a"));
    assert_eq!(out.transitions[0].rtt, Some(ms(12)));
    assert_eq!(out.rtt, Some(ms(12)));
    d.ping_sent(2, t0 + ms(1000));
    let out = d.echo("orders", "a", 2, t0 + ms(1005));
    assert_eq!(
        out,
        EchoOutcome {
            id: out.id,
            transitions: vec![],
            rtt: Some(ms(5)),
            phi: None,
            unmatched_section: None,
        }
    );
}

#[test]
fn fixed_mode_is_suspect_at_the_timeout_and_down_one_interval_later() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    d.echo("orders", "a", 1, t0);
    assert!(
        d.check(t0 + T).is_empty(),
        "exactly the timeout is still UP"
    );
    let ts = d.check(t0 + T + ms(100));
    assert_eq!(moves(&ts), [(State::Up, State::Suspect, "timed_out")]);
    assert_eq!(
        ts[0].reason,
        Reason::TimedOut {
            silent_for: T + ms(100),
            phi: None
        }
    );
    assert!(
        d.check(t0 + T + I).is_empty(),
        "one missed deadline is not enough"
    );
    let ts = d.check(t0 + T + I + ms(50));
    assert_eq!(moves(&ts), [(State::Suspect, State::Down, "timed_out")]);
    assert_eq!(
        ts[0].reason,
        Reason::TimedOut {
            silent_for: T + I + ms(50),
            phi: None
        }
    );
    assert!(d.check(t0 + T * 5).is_empty(), "DOWN is reported once");
}

#[test]
fn one_failure_before_down_skips_suspect() {
    let mut d = Detector::new(
        I,
        Policy {
            failures_before_down: 1,
            ..Policy::fixed(T)
        },
    );
    let t0 = Instant::now();
    d.ping_sent(1, t0);
    d.echo("orders", "a", 1, t0);
    assert_eq!(
        moves(&d.check(t0 + T + ms(1))),
        [(State::Up, State::Down, "timed_out")]
    );
}

#[test]
fn per_service_policy_overrides_the_default() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    d.echo("Slow", "a", 1, t0);
    d.echo("orders", "a", 1, t0);
    // Judged late enough, two deadlines have passed at once: straight to DOWN.
    let ts = d.check(t0 + ms(5000));
    assert_eq!(moves(&ts), [(State::Up, State::Down, "timed_out")]);
    assert_eq!(ts[0].key.service, "orders");
    assert_eq!(d.check(t0 + ms(10_001))[0].key.service, "Slow");
}

#[test]
fn one_echo_clears_suspect_but_down_needs_successes_in_a_row() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    d.echo("orders", "a", 1, t0);
    d.check(t0 + ms(3100));
    d.ping_sent(4, t0 + ms(3500));
    let out = d.echo("orders", "a", 4, t0 + ms(3510));
    assert_eq!(
        moves(&out.transitions),
        [(State::Suspect, State::Up, "recovered")]
    );

    // Down, then one lucky echo: still DOWN.
    d.check(t0 + ms(8000));
    assert_eq!(state(&d, "orders"), State::Down);
    d.ping_sent(9, t0 + ms(9000));
    assert!(
        d.echo("orders", "a", 9, t0 + ms(9005))
            .transitions
            .is_empty()
    );
    // Silent again past a deadline: the count starts over.
    assert!(d.check(t0 + ms(12_100)).is_empty());
    d.ping_sent(13, t0 + ms(13_000));
    assert!(
        d.echo("orders", "a", 13, t0 + ms(13_005))
            .transitions
            .is_empty()
    );
    d.ping_sent(14, t0 + ms(14_000));
    let out = d.echo("orders", "a", 14, t0 + ms(14_005));
    assert_eq!(
        moves(&out.transitions),
        [(State::Down, State::Up, "recovered")]
    );
    assert_eq!(d.get("orders", "a").unwrap().since, t0 + ms(14_005));
}

#[test]
fn an_echo_of_an_old_ping_is_no_round_trip_and_no_proof_of_life() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    d.echo("orders", "a", 1, t0 + ms(2));
    d.ping_sent(2, t0 + ms(1000));
    d.check(t0 + ms(5000));
    assert_eq!(state(&d, "orders"), State::Down);
    // A service resumed after a pause answers ping 2, sent 10 s ago.
    let out = d.echo("orders", "a", 2, t0 + ms(11_000));
    assert_eq!(
        out,
        EchoOutcome {
            id: out.id,
            ..Default::default()
        }
    );
    assert_eq!(d.get("orders", "a").unwrap().last_rtt, Some(ms(2)));
    assert_eq!(d.get("orders", "a").unwrap().last_seq, Some(2));
}

#[test]
fn goodbye_is_left_late_echoes_do_not_revive_and_a_return_is_rejoined() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    d.echo("orders", "a", 1, t0 + ms(1));
    d.ping_sent(2, t0 + ms(1000));
    let t = d.goodbye("orders", "a", t0 + ms(1001)).unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (State::Up, State::Left, Reason::Left)
    );
    let late = d.echo("orders", "a", 2, t0 + ms(1002));
    assert_eq!(
        late,
        EchoOutcome {
            id: late.id,
            ..Default::default()
        }
    );
    assert!(
        d.check(t0 + ms(60_000)).is_empty(),
        "LEFT is never timed out"
    );
    assert_eq!(state(&d, "orders"), State::Left);
    d.ping_sent(61, t0 + ms(61_000));
    let out = d.echo("orders", "a", 61, t0 + ms(61_003));
    assert_eq!(
        moves(&out.transitions),
        [(State::Left, State::Up, "rejoined")]
    );
    assert_eq!(d.goodbye("ghost", "x", t0), None);
    // A DOWN instance that says goodbye is LEFT: a planned end after all.
    d.check(t0 + ms(70_000));
    let t = d.goodbye("orders", "a", t0 + ms(70_001)).unwrap();
    assert_eq!((t.from, t.to), (State::Down, State::Left));
    assert_eq!(d.goodbye("orders", "a", t0 + ms(70_002)), None, "said once");
}

#[test]
fn expected_services_are_never_seen_until_they_answer() {
    let (mut d, t0) = detector();
    d.expect("payments", t0);
    assert_eq!(
        d.get("payments", UNSEEN_INSTANCE).unwrap().state,
        State::NeverSeen
    );
    assert!(
        d.check(t0 + ms(60_000)).is_empty(),
        "never seen is not timed out"
    );
    d.ping_sent(60, t0 + ms(60_000));
    let out = d.echo("payments", "p-1", 60, t0 + ms(60_001));
    assert_eq!(
        moves(&out.transitions),
        [(State::NeverSeen, State::Up, "first_seen")]
    );
    assert!(d.get("payments", UNSEEN_INSTANCE).is_none());
    d.expect("payments", t0);
    assert_eq!(d.instances().count(), 1);
}

#[test]
fn a_lost_link_is_stale_not_down_and_a_whole_timeout_of_grace_follows() {
    let (mut d, t0) = detector();
    let d_ = std::mem::replace(&mut d, Detector::new(I, Policy::fixed(T)));
    let mut d = d_.with_reconnect_grace(ms(2000));
    beat(&mut d, t0, 1, 2, &["orders", "gone"]);
    let ts = d.link_down(Blindness::LinkDown, t0 + ms(2500));
    assert_eq!(
        moves(&ts),
        [
            (State::Up, State::Stale, "link_down"),
            (State::Up, State::Stale, "link_down")
        ]
    );
    assert_eq!(d.blind(), Some(Blindness::LinkDown));
    assert!(
        d.check(t0 + ms(30_000)).is_empty(),
        "no verdicts while cut off"
    );
    assert!(
        d.link_up(t0 + ms(30_000)).is_empty(),
        "still STALE until heard"
    );
    // orders answers soon after; gone never does.
    d.ping_sent(31, t0 + ms(31_000));
    let out = d.echo("orders", "a", 31, t0 + ms(31_004));
    assert_eq!(
        moves(&out.transitions),
        [(State::Stale, State::Up, "recovered")]
    );
    for s in 32..=35 {
        d.ping_sent(s, t0 + ms(s * 1000));
        d.echo("orders", "a", s, t0 + ms(s * 1000 + 4));
    }
    // Grace (2 s) plus a timeout (3 s) from the reconnect at 30 s.
    assert!(d.check(t0 + ms(35_000)).is_empty());
    let ts = d.check(t0 + ms(35_001));
    assert_eq!(moves(&ts), [(State::Stale, State::Suspect, "timed_out")]);
    assert_eq!(ts[0].key.service, "gone");
    // The reported silence is the truth: since its last echo, before the outage.
    assert_eq!(
        ts[0].reason,
        Reason::TimedOut {
            silent_for: ms(35_001 - 2005),
            phi: None
        }
    );
}

#[test]
fn a_blocked_link_is_stale_and_echoes_meanwhile_judge_nothing() {
    let (mut d, t0) = detector();
    beat(&mut d, t0, 1, 2, &["orders"]);
    let ts = d.link_down(Blindness::Blocked, t0 + ms(2100));
    assert_eq!(moves(&ts), [(State::Up, State::Stale, "blocked")]);
    assert_eq!(
        ts[0].reason.to_string(),
        "cannot judge: the broker blocked our link"
    );
    // A late echo arrives while blocked: proof of life, no verdict.
    let out = d.echo("orders", "a", 2, t0 + ms(2200));
    assert!(out.transitions.is_empty());
    assert!(
        d.link_down(Blindness::LinkDown, t0 + ms(2300)).is_empty(),
        "one spell"
    );
    d.link_up(t0 + ms(20_000));
    assert_eq!(state(&d, "orders"), State::Stale);
    beat(&mut d, t0, 21, 21, &["orders"]);
    assert_eq!(state(&d, "orders"), State::Up);
}

#[test]
fn a_stall_of_our_own_loop_is_stale_then_judged_afresh() {
    let (mut d, t0) = detector();
    beat(&mut d, t0, 1, 2, &["orders", "dead"]);
    assert_eq!(d.stall_threshold(), ms(1000));
    assert!(
        d.stalled(ms(900), t0 + ms(2900)).is_empty(),
        "a short lag is nothing"
    );
    // Paused for 10 s: on resume nobody is DOWN; everyone is STALE.
    let now = t0 + ms(12_500);
    let ts = d.stalled(ms(10_000), now);
    assert_eq!(
        moves(&ts),
        [
            (State::Up, State::Stale, "stalled"),
            (State::Up, State::Stale, "stalled")
        ]
    );
    assert!(d.check(now).is_empty());
    assert_eq!(d.blind(), None, "a stall is over once noticed");
    d.ping_sent(13, t0 + ms(13_000));
    let out = d.echo("orders", "a", 13, t0 + ms(13_005));
    assert_eq!(
        moves(&out.transitions),
        [(State::Stale, State::Up, "recovered")]
    );
    // The dead one gets a whole timeout from the resume.
    assert!(d.check(now + T).is_empty());
    let ts = d.check(now + T + ms(1));
    assert_eq!(moves(&ts), [(State::Stale, State::Suspect, "timed_out")]);
}

#[test]
fn a_service_that_keeps_hanging_is_flapping_once_then_stable() {
    // Hangs that stay SUSPECT (a hang reaching DOWN past the timeout is
    // DOWN whatever came before: see the next tests).
    let patient = Policy {
        failures_before_down: 100,
        ..Policy::fixed(T)
    };
    let (mut d, t0) = (Detector::new(I, patient), Instant::now());
    let mut all = beat(&mut d, t0, 1, 1, &["orders"]);
    // Hang 4 s, answer 2 s, four times: SUSPECT/UP pairs.
    let mut at = 1;
    for _ in 0..4 {
        for s in at + 1..=at + 4 {
            d.ping_sent(s, t0 + ms(s * 1000));
            all.extend(d.check(t0 + ms(s * 1000 + 100)));
        }
        at += 4;
        all.extend(beat(&mut d, t0, at + 1, at + 2, &["orders"]));
        at += 2;
    }
    let codes: Vec<_> = all.iter().map(|t| (t.to, t.reason.code())).collect();
    let flapping = codes
        .iter()
        .position(|c| *c == (State::Flapping, "flapping"))
        .unwrap();
    assert_eq!(
        codes.iter().filter(|c| c.0 == State::Flapping).count(),
        1,
        "one line says it: {codes:?}"
    );
    assert!(
        codes[flapping + 1..].is_empty(),
        "no storm after it: {codes:?}"
    );
    assert!(matches!(
        all[flapping].reason,
        Reason::Flapping { changes: 6 }
    ));
    // The verdict underneath is still visible: it answers right now.
    let tracked = d.get("orders", "a").unwrap();
    assert_eq!(
        (tracked.state, tracked.health),
        (State::Flapping, State::Up)
    );
    // Stable for a whole window: back to its verdict.
    let quiet_from = at;
    let ts = beat(&mut d, t0, at + 1, at + 61, &["orders"]);
    assert_eq!(moves(&ts), [(State::Flapping, State::Up, "stable")]);
    assert!(ts[0].key.service == "orders" && quiet_from > 0);
}

#[test]
fn phi_sees_every_hang_of_the_same_length_and_calls_it_flapping() {
    // The defaults: phi, threshold 8, DOWN on the second missed deadline;
    // a timeout longer than the hangs, which then stay damped while flapping.
    let phi = Policy {
        mode: Mode::Phi,
        ..Policy::fixed(Duration::from_secs(10))
    };
    let (mut d, t0) = (Detector::new(I, phi), Instant::now());
    let mut all = beat(&mut d, t0, 1, 20, &["orders"]);
    // Hung 6 s, then answering 6 s, five times in a minute. Were each hang's
    // gap learnt as an interval, phi would take the second one as normal.
    let mut at = 20;
    let mut downs = Vec::new();
    for _ in 0..5 {
        for s in at + 1..=at + 6 {
            d.ping_sent(s, t0 + ms(s * 1000));
            for tenth in 0..10 {
                all.extend(d.check(t0 + ms(s * 1000 + tenth * 100)));
            }
        }
        downs.push(all.iter().filter(|t| t.to == State::Down).count());
        at += 6;
        all.extend(beat(&mut d, t0, at + 1, at + 6, &["orders"]));
        at += 6;
    }
    let codes: Vec<_> = all.iter().map(|t| (t.to, t.reason.code())).collect();
    // Each hang before FLAPPING is a DOWN; then one FLAPPING line.
    assert_eq!(downs[..2], [1, 2], "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| c.0 == State::Flapping).count(),
        1,
        "{codes:?}"
    );
}

#[test]
fn phi_mode_adapts_to_the_rhythm_and_says_phi() {
    let policy = Policy {
        mode: Mode::Phi,
        phi_threshold: 3.0,
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, policy.clone());
    let t0 = Instant::now();
    beat(&mut d, t0, 1, 30, &["orders"]);
    let last = t0 + ms(30_005);
    let tracked = d.get("orders", "a").unwrap();
    // Regular 1 s beats: deviation under the 100 ms floor, so phi 3 comes
    // at the y that solves y(1.5976 + 0.070566 y²) = ln(999), y = 3.05894
    // (worked out separately): 1 s + 0.30589 s after the last beat.
    let phi_now = d.phi(tracked, last + ms(1305)).unwrap();
    assert!(phi_now < 3.0, "{phi_now}");
    assert!(d.check(last + ms(1305)).is_empty());
    let ts = d.check(last + ms(1307));
    assert_eq!(moves(&ts), [(State::Up, State::Suspect, "timed_out")]);
    let phi = ts[0].reason.phi().unwrap();
    assert!((phi - 3.0).abs() < 0.05, "{phi}");
    // DOWN one interval later, still with phi.
    let ts = d.check(last + ms(2307));
    assert_eq!(moves(&ts), [(State::Suspect, State::Down, "timed_out")]);
    assert!(ts[0].reason.phi().unwrap() > 10.0);
}

#[test]
fn slow_round_trips_are_slow_not_down() {
    let policy = Policy {
        slow_limit: Some(ms(500)),
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, policy);
    let t0 = Instant::now();
    let mut all = Vec::new();
    for s in 1..=4u64 {
        d.ping_sent(s, t0 + ms(s * 1000));
        let rtt = if s <= 3 { 800 } else { 10 };
        all.extend(
            d.echo("orders", "a", s, t0 + ms(s * 1000 + rtt))
                .transitions,
        );
    }
    assert_eq!(
        moves(&all),
        [
            (State::NeverSeen, State::Up, "first_seen"),
            (State::Up, State::Slow, "slow")
        ]
    );
    d.ping_sent(5, t0 + ms(5000));
    let out = d.echo("orders", "a", 5, t0 + ms(5010));
    assert_eq!(
        moves(&out.transitions),
        [(State::Slow, State::Up, "recovered")]
    );
}

#[test]
fn a_service_counts_its_live_instances_against_the_expected() {
    let policy = Policy {
        expected_instances: Some(3),
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, Policy::fixed(T)).with_service("orders", policy);
    let t0 = Instant::now();
    d.ping_sent(1, t0);
    d.echo("orders", "a", 1, t0);
    d.echo("orders", "b", 1, t0);
    assert_eq!(d.service_count("orders"), (2, Some(3)));
    assert_eq!(d.service_count("other"), (0, None));
}

fn strengths(changes: &[ServiceChange]) -> Vec<(&str, Strength, Strength, u32)> {
    changes
        .iter()
        .map(|c| (c.service.as_str(), c.from, c.to, c.up))
        .collect()
}

#[test]
fn a_service_below_its_expected_instances_is_degraded_once_and_full_again_once() {
    let policy = Policy {
        expected_instances: Some(2),
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, Policy::fixed(T)).with_service("orders", policy);
    let t0 = Instant::now();
    // Instances arrive one by one at start: nobody is judged within the
    // first timeout, and full strength at the first judgement is no news.
    d.ping_sent(1, t0);
    d.echo("orders", "a", 1, t0 + ms(5));
    assert!(
        d.service_changes(t0 + ms(5)).is_empty(),
        "too early to judge"
    );
    d.echo("orders", "b", 1, t0 + ms(900));
    d.echo("other", "x", 1, t0 + ms(900));
    for s in 2..=4u64 {
        d.ping_sent(s, t0 + ms(s * 1000));
        for i in ["a", "b"] {
            d.echo("orders", i, s, t0 + ms(s * 1000 + 5));
        }
    }
    assert!(d.service_changes(t0 + ms(4010)).is_empty());
    // "b" answers on, "a" dies: SUSPECT still counts, DOWN does not.
    let mut all = Vec::new();
    for s in 5..=12u64 {
        let at = t0 + ms(s * 1000);
        d.ping_sent(s, at);
        d.check(at);
        all.extend(d.service_changes(at));
        d.echo("orders", "b", s, at + ms(5));
        if state(&d, "orders") == State::Suspect {
            assert!(d.service_changes(at + ms(5)).is_empty(), "suspect counts");
        }
        all.extend(d.service_changes(at + ms(5)));
    }
    assert_eq!(d.get("orders", "a").unwrap().state, State::Down);
    assert_eq!(
        strengths(&all),
        [("orders", Strength::Full, Strength::Degraded, 1)]
    );
    assert_eq!(all[0].expected, 2);
    // It comes back (two echoes for UP): full again, once.
    let mut all = Vec::new();
    for s in 13..=16u64 {
        let at = t0 + ms(s * 1000);
        d.ping_sent(s, at);
        for i in ["a", "b"] {
            d.echo("orders", i, s, at + ms(5));
        }
        all.extend(d.service_changes(at + ms(5)));
    }
    assert_eq!(
        strengths(&all),
        [("orders", Strength::Degraded, Strength::Full, 2)]
    );
    // A goodbye is one fewer too.
    d.goodbye("orders", "b", t0 + ms(16_500));
    assert_eq!(
        strengths(&d.service_changes(t0 + ms(16_500))),
        [("orders", Strength::Full, Strength::Degraded, 1)]
    );
    // None alive: DOWN as a whole.
    d.goodbye("orders", "a", t0 + ms(16_600));
    assert_eq!(
        strengths(&d.service_changes(t0 + ms(16_600))),
        [("orders", Strength::Degraded, Strength::Down, 0)]
    );
}

#[test]
fn our_own_blindness_never_degrades_a_service() {
    let policy = Policy {
        expected_instances: Some(1),
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, policy);
    let t0 = Instant::now();
    beat(&mut d, t0, 1, 5, &["orders"]);
    assert!(d.service_changes(t0 + ms(5010)).is_empty());
    let ts = d.link_down(Blindness::LinkDown, t0 + ms(5500));
    assert_eq!(moves(&ts), [(State::Up, State::Stale, "link_down")]);
    assert!(d.service_changes(t0 + ms(5500)).is_empty());
    d.link_up(t0 + ms(60_000));
    assert!(
        d.service_changes(t0 + ms(60_000)).is_empty(),
        "STALE counts as it was"
    );
    // After the grace, still silent: DOWN, and now the service is degraded.
    let mut all = Vec::new();
    for s in 61..=70u64 {
        d.check(t0 + ms(s * 1000));
        all.extend(d.service_changes(t0 + ms(s * 1000)));
    }
    assert_eq!(
        strengths(&all),
        [("orders", Strength::Full, Strength::Down, 0)]
    );
}

#[test]
fn an_expected_service_that_never_answers_is_degraded_after_its_timeout() {
    let policy = Policy {
        expected_instances: Some(3),
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, policy);
    let t0 = Instant::now();
    d.expect("orders", t0);
    d.ping_sent(1, t0);
    assert!(d.service_changes(t0 + ms(2999)).is_empty());
    assert_eq!(
        strengths(&d.service_changes(t0 + T)),
        [("orders", Strength::Full, Strength::Down, 0)]
    );
    assert!(d.service_changes(t0 + T * 2).is_empty(), "said once");
}

#[test]
fn a_service_that_starts_late_has_a_timeout_for_all_its_instances_to_arrive() {
    let policy = Policy {
        expected_instances: Some(2),
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, Policy::fixed(T)).with_service("orders", policy);
    let t0 = Instant::now();
    beat(&mut d, t0, 1, 30, &["other"]);
    // Long after the monitor started, a service's instances arrive 2 s apart.
    d.ping_sent(31, t0 + ms(31_000));
    d.echo("orders", "a", 31, t0 + ms(31_005));
    assert!(d.service_changes(t0 + ms(31_005)).is_empty());
    d.ping_sent(33, t0 + ms(33_000));
    d.echo("orders", "a", 33, t0 + ms(33_005));
    d.echo("orders", "b", 33, t0 + ms(33_005));
    assert!(
        d.service_changes(t0 + ms(34_100)).is_empty(),
        "full when judged"
    );
}

#[test]
fn rtt_is_measured_on_our_clock_and_old_pings_are_forgotten() {
    let (mut d, t0) = detector();
    for seq in 1..=1034u64 {
        d.ping_sent(seq, t0 + ms(seq));
    }
    assert_eq!(
        d.echo("a", "1", 5, t0 + ms(1040)).rtt,
        None,
        "seq 5 is outside the window"
    );
    assert_eq!(d.echo("a", "1", 1034, t0 + ms(1041)).rtt, Some(ms(7)));
    assert_eq!(
        d.echo("a", "1", 2000, t0 + ms(1042)).rtt,
        None,
        "a seq never sent"
    );
}

#[test]
fn missed_pings_are_counted_per_instance() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    d.echo("a", "1", 1, t0 + ms(1));
    d.echo("b", "1", 1, t0 + ms(1));
    for seq in 2..=4 {
        d.ping_sent(seq, t0 + ms(seq * 1000));
        d.echo("a", "1", seq, t0 + ms(seq * 1000 + 1));
    }
    d.ping_sent(5, t0 + ms(5000));
    assert_eq!(d.get("a", "1").unwrap().missed, 0);
    assert_eq!(
        d.get("b", "1").unwrap().missed,
        3,
        "pings 2, 3 and 4 went unanswered"
    );
}

#[test]
fn a_check_looks_only_at_instances_whose_deadline_passed() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    for i in 0..1000 {
        d.echo("fleet", &i.to_string(), 1, t0 + ms(1));
    }
    // 1000 deadlines, none due: a check is a single peek.
    assert!(d.check(t0 + ms(2000)).is_empty());
    d.ping_sent(2, t0 + ms(1000));
    d.echo("fleet", "7", 2, t0 + ms(1001));
    let ts = d.check(t0 + ms(3002));
    assert_eq!(ts.len(), 999, "all but the one that answered");
}

#[test]
fn after_a_blind_spell_phi_waits_a_whole_timeout_too() {
    let (mut d, t0) = phi_detector();
    beat(&mut d, t0, 1, 20, &["orders"]);
    // Phi alone would suspect it about 1.5 s after its last beat.
    let now = t0 + ms(20_500);
    d.stalled(ms(5000), now);
    assert!(d.check(now + T).is_empty(), "the grace is a whole timeout");
    let ts = d.check(now + T + ms(1));
    assert_eq!(moves(&ts), [(State::Stale, State::Suspect, "timed_out")]);
}

#[test]
fn only_a_ping_sent_within_the_timeout_is_recent() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    d.ping_sent(2, t0 + ms(1000));
    assert!(d.is_recent_ping("a", 2, t0 + ms(1500)));
    assert!(d.is_recent_ping("a", 1, t0 + T), "exactly the timeout");
    assert!(!d.is_recent_ping("a", 1, t0 + T + ms(1)), "older");
    assert!(
        d.is_recent_ping("slow", 1, t0 + ms(9000)),
        "its own timeout"
    );
    assert!(!d.is_recent_ping("a", 3, t0 + ms(1500)), "never sent");
    assert!(!d.is_recent_ping("a", u64::MAX, t0 + ms(1500)), "made up");
}

#[test]
fn instances_down_or_left_long_enough_are_forgotten_and_the_rest_still_judged() {
    let (mut d, t0) = detector();
    d.expect("never", t0);
    d.ping_sent(1, t0);
    let ids_before: Vec<_> = (0..6)
        .map(|i| d.echo("fleet", &i.to_string(), 1, t0 + ms(5)).id)
        .collect();
    // One id each, kept while the instance is tracked.
    assert!((1..6).all(|i| !ids_before[..i].contains(&ids_before[i])));
    assert_eq!(d.echo("fleet", "3", 1, t0 + ms(6)).id, ids_before[3]);
    // 0, 2 and 4 go silent; 1 says goodbye; 3 and 5 keep answering.
    let mut down = Vec::new();
    for s in 2..=4u64 {
        let at = t0 + ms(s * 1000);
        d.ping_sent(s, at);
        down.extend(d.check(at));
        for i in ["3", "5"] {
            d.echo("fleet", i, s, at + ms(5));
        }
    }
    d.goodbye("fleet", "1", t0 + ms(4500));
    for s in 5..=6u64 {
        let at = t0 + ms(s * 1000);
        d.ping_sent(s, at);
        down.extend(d.check(at));
        for i in ["3", "5"] {
            d.echo("fleet", i, s, at + ms(5));
        }
    }
    assert_eq!(d.len(), 7);
    let forget_after = ms(3000);
    // Not yet: DOWN for less than forget_after.
    assert!(d.forget(forget_after, t0 + ms(5000)).is_empty());
    let mut gone: Vec<String> = d
        .forget(forget_after, t0 + ms(8100))
        .into_iter()
        .map(|k| k.instance)
        .collect();
    gone.sort();
    assert_eq!(gone, ["0", "1", "2", "4"]);
    assert_eq!(d.len(), 3, "the two alive and the expected placeholder");
    assert!(d.get("fleet", "0").is_none());
    assert!(d.get("never", UNSEEN_INSTANCE).is_some());
    // The survivors moved slots; their deadlines followed them.
    let ts = d.check(t0 + ms(12_000));
    let mut late: Vec<&str> = ts.iter().map(|t| t.key.instance.as_str()).collect();
    late.sort();
    assert_eq!(late, ["3", "5"]);
    // A forgotten one that answers again is new.
    d.ping_sent(13, t0 + ms(13_000));
    let back = d.echo("fleet", "0", 13, t0 + ms(13_005));
    assert_eq!(
        moves(&back.transitions),
        [(State::NeverSeen, State::Up, "first_seen")]
    );
    // Under an id of its own: a sink that kept the old one is not misled.
    assert_ne!(back.id, d.echo("fleet", "3", 13, t0 + ms(13_006)).id);
    assert!(ids_before.iter().all(|&id| id != back.id));
}

/// Flap `service` (fixed mode, `T`): four hangs of 4 s from second 2, each
/// UP -> SUSPECT -> DOWN -> UP, until FLAPPING. The second it ends answering.
fn flap(d: &mut Detector, t0: Instant, service: &str) -> (Vec<Transition>, u64) {
    let mut all = beat(d, t0, 1, 1, &[service]);
    let mut at = 1;
    while !all.iter().any(|t| t.to == State::Flapping) {
        assert!(at < 60, "never flapping: {:?}", moves(&all));
        for s in at + 1..=at + 4 {
            d.ping_sent(s, t0 + ms(s * 1000));
            all.extend(d.check(t0 + ms(s * 1000 + 100)));
        }
        at += 4;
        all.extend(beat(d, t0, at + 1, at + 2, &[service]));
        at += 2;
    }
    (all, at)
}

#[test]
fn a_flapping_instance_silent_past_the_timeout_is_down_at_once() {
    let (mut d, t0) = detector();
    let (_, at) = flap(&mut d, t0, "orders");
    assert_eq!(state(&d, "orders"), State::Flapping);
    // It dies: SUSPECT and DOWN underneath, and once silent for the
    // timeout, DOWN is shown, not when the flapping window has passed.
    let last = t0 + ms(at * 1000 + 5);
    let mut ts = Vec::new();
    for tenth in 1..=80 {
        ts.extend(d.check(last + ms(tenth * 100)));
    }
    assert_eq!(moves(&ts), [(State::Flapping, State::Down, "timed_out")]);
    let silent = d.get("orders", "a").unwrap().since - last;
    assert!((T..=T + ms(1100)).contains(&silent), "{silent:?}");
}

#[test]
fn an_instance_that_answers_counts_for_its_service_even_when_flapping() {
    let policy = Policy {
        expected_instances: Some(2),
        failures_before_down: 100,
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, policy);
    let t0 = Instant::now();
    let (_, at) = flap(&mut d, t0, "orders");
    let all = beat(&mut d, t0, at + 1, at + 5, &["orders"]);
    assert_eq!(state(&d, "orders"), State::Flapping);
    d.echo("orders", "b", at + 5, t0 + ms((at + 5) * 1000 + 6));
    assert!(all.is_empty(), "{:?}", moves(&all));
    assert_eq!(d.service_count("orders"), (2, Some(2)));
}

#[test]
fn goodbyes_after_every_ping_are_flapping_and_hide_no_crash() {
    let (mut d, t0) = detector();
    let mut all = beat(&mut d, t0, 1, 1, &["orders"]);
    // A forged goodbye after every echo: LEFT, rejoined, LEFT, ...
    let mut s = 2;
    while s < 12 {
        all.extend(d.goodbye("orders", "a", t0 + ms((s - 1) * 1000 + 10)));
        all.extend(beat(&mut d, t0, s, s, &["orders"]));
        s += 1;
    }
    let codes: Vec<_> = all.iter().map(|t| (t.to, t.reason.code())).collect();
    assert_eq!(
        codes.iter().filter(|c| c.0 == State::Flapping).count(),
        1,
        "damped: {codes:?}"
    );
    let flapping = codes.iter().position(|c| c.0 == State::Flapping).unwrap();
    assert!(
        codes[..flapping]
            .iter()
            .filter(|c| c.0 == State::Left)
            .count()
            <= 3,
        "{codes:?}"
    );
    assert!(
        codes[flapping + 1..].is_empty(),
        "no storm after it: {codes:?}"
    );
    // The last forged goodbye, then a real crash: DOWN once silent for the timeout.
    let last = t0 + ms((s - 1) * 1000 + 5);
    assert!(
        d.goodbye("orders", "a", last + ms(5)).is_none(),
        "still flapping"
    );
    let mut ts = Vec::new();
    for tenth in 1..=60 {
        ts.extend(d.check(last + ms(tenth * 100)));
    }
    assert_eq!(moves(&ts), [(State::Flapping, State::Down, "timed_out")]);
}

/// When a kill of an instance whose last echo came at `last` is SUSPECT.
fn suspect_after(d: &mut Detector, last: Instant) -> Duration {
    for tenth in 1..=100 {
        let at = last + ms(tenth * 50);
        if d.check(at).iter().any(|t| t.to == State::Suspect) {
            return at - last;
        }
    }
    panic!("never suspect");
}

#[test]
fn a_kill_right_after_a_rejoin_or_a_first_echo_is_seen_as_soon_as_after_a_minute() {
    // Up a minute, killed: the reference.
    let (mut d, t0) = phi_detector();
    beat(&mut d, t0, 1, 60, &["orders"]);
    let steady = suspect_after(&mut d, t0 + ms(60_005));
    assert!(steady <= ms(1550), "{steady:?}");
    // Up 10 s, away 5 s (goodbye, restart), back 2 s, killed.
    let (mut d, t0) = phi_detector();
    beat(&mut d, t0, 1, 10, &["orders"]);
    d.goodbye("orders", "a", t0 + ms(10_500));
    for s in 11..=15 {
        d.ping_sent(s, t0 + ms(s * 1000));
    }
    let back = beat(&mut d, t0, 16, 17, &["orders"]);
    assert_eq!(moves(&back), [(State::Left, State::Up, "rejoined")]);
    let rejoined = suspect_after(&mut d, t0 + ms(17_005));
    assert!(rejoined <= steady + ms(100), "{rejoined:?} vs {steady:?}");
    // First seen 2 s ago, killed.
    let (mut d, t0) = phi_detector();
    beat(&mut d, t0, 1, 3, &["orders"]);
    let newcomer = suspect_after(&mut d, t0 + ms(3005));
    assert!(newcomer <= steady + ms(100), "{newcomer:?} vs {steady:?}");
}

#[test]
fn a_section_that_matches_only_the_start_of_new_names_is_said_once() {
    let slow = Policy {
        timeout: Duration::from_secs(10),
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, Policy::fixed(T)).with_service("slow", slow);
    let t0 = Instant::now();
    d.ping_sent(1, t0);
    let said = |d: &mut Detector, service: &str, instance: &str| {
        d.echo(service, instance, 1, t0 + ms(5)).unmatched_section
    };
    assert_eq!(said(&mut d, "slow-0", "a"), Some("slow".to_owned()));
    assert_eq!(said(&mut d, "slow-1", "a"), None, "once");
    assert_eq!(said(&mut d, "slow", "a"), None, "its own");
    assert_eq!(said(&mut d, "orders", "a"), None);
    assert_eq!(d.policy_for("slow-0").timeout, T, "names are exact");
}

#[test]
fn a_section_no_service_matches_is_said_once_with_a_name_it_begins() {
    let own = Policy {
        timeout: Duration::from_secs(10),
        ..Policy::fixed(T)
    };
    let mut d = Detector::new(I, Policy::fixed(T))
        .with_service("slow", own.clone())
        .with_service("ordrs", own.clone())
        .with_service("Payments", own.clone());
    let t0 = Instant::now();
    d.ping_sent(1, t0);
    for service in ["slow-1", "slow-0", "payments", "orders"] {
        d.echo(service, "a", 1, t0 + ms(5));
    }
    // `slow` was said when slow-1 arrived (it begins its name): not again.
    assert_eq!(
        d.sections_without_service(),
        ["ordrs"],
        "a typo matches nothing; Payments is payments, case aside"
    );
    assert!(d.sections_without_service().is_empty(), "once");

    let mut d = Detector::new(I, Policy::fixed(T)).with_service("slow", own.clone());
    assert_eq!(d.sections_without_service(), ["slow"], "nothing heard yet");
    let mut d = Detector::new(I, Policy::fixed(T)).with_service("slow", own.clone());
    d.expect("slow", t0);
    assert!(
        d.sections_without_service().is_empty(),
        "expected: shown as never seen"
    );
}

#[test]
fn at_the_cap_a_name_seen_once_then_silent_makes_room_and_a_real_one_stays() {
    let (mut d, t0) = detector();
    d.ping_sent(1, t0);
    // A real instance answering every second, and 100 names seen once.
    d.echo("orders", "real", 1, t0 + ms(5));
    for i in 0..100 {
        d.echo("flood", &format!("x{i}"), 1, t0 + ms(10));
    }
    assert_eq!(d.make_room(t0 + ms(500)), None, "too recent to tell");
    assert_eq!(
        d.busiest_service(),
        Some(("flood", 100)),
        "named at the cap"
    );
    let mut s = 2;
    for _ in 0..3 {
        d.ping_sent(s, t0 + ms(s * 1000));
        d.echo("orders", "real", s, t0 + ms(s * 1000 + 5));
        s += 1;
    }
    let now = t0 + ms(s * 1000);
    let mut forgotten = Vec::new();
    while let Some(key) = d.make_room(now) {
        forgotten.push(key);
    }
    assert_eq!(forgotten.len(), 100);
    assert!(forgotten.iter().all(|k| k.service == "flood"));
    assert_eq!(forgotten[0].instance, "x0", "oldest first");
    assert!(d.get("orders", "real").is_some());
    // A newcomer that answered twice is confirmed: never made room for.
    d.echo("payments", "p", s - 1, now);
    d.ping_sent(s, now);
    d.echo("payments", "p", s, now + ms(5));
    assert_eq!(d.make_room(now + ms(60_000)), None);
}

fn known(service: &str, instance: &str, state: State, age: Duration) -> LastKnown {
    LastKnown {
        key: InstanceKey::new(service, instance),
        state,
        age,
    }
}

#[test]
fn a_restored_instance_is_down_until_its_first_echo_brings_it_up() {
    let (mut d, t0) = detector();
    let was_down = d.restore(&known("api", "a", State::Down, ms(60_000)), t0);
    assert_eq!(
        moves(&was_down.into_iter().collect::<Vec<_>>()),
        vec![(State::Down, State::Down, "restored")]
    );
    let was_up = d.restore(&known("web", "a", State::Up, ms(5_000)), t0);
    assert_eq!(
        moves(&was_up.into_iter().collect::<Vec<_>>()),
        vec![(State::Up, State::Down, "restored")]
    );
    // Known already: nothing twice.
    assert!(
        d.restore(&known("api", "a", State::Up, ms(1)), t0)
            .is_none()
    );
    // Silence keeps it DOWN, with no transition of its own.
    assert!(d.check(t0 + ms(30_000)).is_empty());
    assert_eq!(state(&d, "api"), State::Down);
    // One echo, as for a newcomer: UP at once, not after `successes_before_up`.
    let back = beat(&mut d, t0, 31, 31, &["api"]);
    assert_eq!(moves(&back), vec![(State::Down, State::Up, "recovered")]);
    assert_eq!(state(&d, "web"), State::Down);
}

#[test]
fn a_restored_instance_is_forgotten_counting_from_when_it_was_last_judged() {
    let (mut d, t0) = detector();
    d.restore(&known("api", "old", State::Down, ms(50_000)), t0);
    d.restore(&known("api", "new", State::Down, ms(1_000)), t0);
    let gone = d.forget(ms(55_000), t0 + ms(10_000));
    assert_eq!(gone, vec![InstanceKey::new("api", "old")]);
    assert_eq!(d.len(), 1);
}

#[test]
fn a_restored_instance_takes_the_place_of_its_services_placeholder() {
    let (mut d, t0) = detector();
    d.expect("api", t0);
    d.restore(&known("api", "a", State::Down, ms(1_000)), t0);
    let keys: Vec<_> = d.instances().map(|t| t.key.instance.clone()).collect();
    assert_eq!(keys, vec!["a".to_string()]);
}

#[test]
fn a_reload_keeps_every_instance_and_judges_it_by_its_new_policy_at_once() {
    let (mut d, t0) = phi_detector();
    beat(&mut d, t0, 1, 20, &["orders", "payments"]);
    let before = d.get("orders", "a").unwrap().clone();
    let phi_before = d.phi(&before, t0 + ms(20_500));
    // One second after the last echo: a fixed 500 ms for orders is already past.
    let orders = Policy {
        timeout: ms(500),
        ..Policy::fixed(ms(500))
    };
    let phi = Policy {
        mode: Mode::Phi,
        ..Policy::fixed(T)
    };
    let (ts, changes) = d.reconfigure(phi, vec![("Orders".into(), orders)], t0 + ms(21_005));
    assert_eq!(moves(&ts), [(State::Up, State::Suspect, "timed_out")]);
    assert_eq!(ts[0].key, InstanceKey::new("orders", "a"));
    assert!(changes.is_empty());
    let after = d.get("orders", "a").unwrap();
    assert_eq!(after.id, before.id, "the same instance, not a new one");
    assert_eq!(after.last_echo, before.last_echo);
    assert_eq!(d.policy_for("orders").timeout, ms(500));
    // payments keeps its phi window: the same phi at the same instant.
    let payments = d.get("payments", "a").unwrap();
    assert_eq!(state(&d, "payments"), State::Up);
    assert!(d.phi(payments, t0 + ms(20_500)).is_some());
    assert_eq!(
        phi_before.is_some(),
        d.phi(payments, t0 + ms(20_500)).is_some()
    );
}

#[test]
fn a_reload_counts_services_against_their_new_expected_instances() {
    let (mut d, t0) = detector();
    beat(&mut d, t0, 1, 10, &["orders"]);
    assert!(d.service_changes(t0 + ms(10_010)).is_empty());
    let three = Policy {
        expected_instances: Some(3),
        ..Policy::fixed(T)
    };
    let (ts, _) = d.reconfigure(
        Policy::fixed(T),
        vec![("orders".into(), three)],
        t0 + ms(10_100),
    );
    assert!(ts.is_empty());
    // Newly counted: judged a timeout after the reload, then degraded.
    assert!(d.service_changes(t0 + ms(10_200)).is_empty());
    beat(&mut d, t0, 11, 14, &["orders"]);
    let changes = d.service_changes(t0 + ms(14_100));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (changes[0].to, changes[0].up, changes[0].expected),
        (Strength::Degraded, 1, 3)
    );
    // No longer counted: full again, so its alert can end.
    let (_, changes) = d.reconfigure(Policy::fixed(T), vec![], t0 + ms(14_200));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (changes[0].from, changes[0].to),
        (Strength::Degraded, Strength::Full)
    );
    assert!(d.service_changes(t0 + ms(20_000)).is_empty());
}

#[test]
fn a_service_no_longer_expected_loses_its_placeholder_not_its_instances() {
    let (mut d, t0) = detector();
    d.expect("ghost", t0);
    d.expect("orders", t0);
    beat(&mut d, t0, 1, 2, &["orders"]);
    assert_eq!(d.len(), 2);
    assert_eq!(
        d.unexpect("ghost"),
        Some(InstanceKey::new("ghost", UNSEEN_INSTANCE))
    );
    assert_eq!(d.unexpect("orders"), None, "orders has a real instance");
    assert_eq!(d.len(), 1);
    assert!(d.get("orders", "a").is_some());
}

/// A budget lengthens the interval: phi starts afresh from the new one, so
/// the first long gap is no silence, and silence is still judged after it.
#[test]
fn a_new_interval_starts_phi_afresh_so_a_longer_one_is_no_silence() {
    let (mut d, t0) = phi_detector();
    beat(&mut d, t0, 1, 30, &["orders"]);
    d.set_interval(Duration::from_secs(10));
    assert_eq!(d.interval(), Duration::from_secs(10));
    let phi = Policy {
        mode: Mode::Phi,
        ..Policy::fixed(T * 10)
    };
    let (moved, _) = d.reconfigure(phi, Vec::new(), t0 + ms(30_005));
    assert!(moved.is_empty(), "{:?}", moves(&moved));
    for s in 31..40 {
        let seen = d.check(t0 + ms(s * 1000));
        assert!(seen.is_empty(), "at {s}s: {:?}", moves(&seen));
    }
    d.ping_sent(31, t0 + ms(40_000));
    assert!(
        d.echo("orders", "a", 31, t0 + ms(40_005))
            .transitions
            .is_empty()
    );
    assert_eq!(state(&d, "orders"), State::Up);
    let mut seen = Vec::new();
    for s in 41..=100 {
        seen.extend(d.check(t0 + ms(s * 1000)));
    }
    assert!(
        seen.iter().any(|t| t.to == State::Suspect),
        "{:?}",
        moves(&seen)
    );
}
