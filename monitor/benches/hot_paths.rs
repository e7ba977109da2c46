//! Speed and memory of the monitor's hot paths, without a broker:
//! `cargo bench -p monitor --bench hot_paths`. Figures go to BENCHMARKS.md.
//! Also the detector on a simulated clock (`-- simulated` for that alone).
//!
//! A plain `main` (no harness) so it needs no extra crate: each case runs
//! several rounds and the median is printed. Memory is read from a counting
//! global allocator: bytes still allocated after building the structure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use monitor::dashboard::{App, Event, Sort, Traffic, draw};
use monitor::detector::{Detector, InstanceId, InstanceKey, Mode, Policy, State};
use monitor::fleet::Fleet;
use monitor::{EchoSeen, Update};
use orchestrator_lib::wire::{self, Echo, Message};
use rand::Rng;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ROUNDS: usize = 7;
const FLEET: usize = 10_000;

/// Median time per operation over `ROUNDS` rounds of `ops` operations.
fn per_op(ops: usize, mut round: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            round();
            start.elapsed() / ops as u32
        })
        .collect();
    times.sort_unstable();
    times[ROUNDS / 2]
}

fn report(name: &str, time: Duration) {
    let ns = time.as_nanos();
    let human = if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.2} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    };
    println!("{name:<58} {human:>12}");
}

fn names(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("service-{:05}", i / 2), format!("host-{i:05}")))
        .collect()
}

fn wire_codec() {
    let echo = Message::Echo(Echo {
        service: "payments".into(),
        instance: "payments-7f9c".into(),
        monitor: Some("ops-laptop-4121".into()),
        seq: 123_456,
        at: Some(Utc::now()),
    });
    let body = wire::encode(&echo);
    println!("echo body: {} bytes", body.len());
    let n = 100_000;
    report(
        "wire: encode an echo",
        per_op(n, || {
            for _ in 0..n {
                black_box(wire::encode(black_box(&echo)));
            }
        }),
    );
    report(
        "wire: decode an echo",
        per_op(n, || {
            for _ in 0..n {
                black_box(wire::decode(black_box(&body)).unwrap());
            }
        }),
    );
    let garbage = b"{\"v\":1,\"type\":\"echo\",\"service\":12}";
    report(
        "wire: reject a malformed body",
        per_op(n, || {
            for _ in 0..n {
                black_box(wire::decode(black_box(garbage)).is_err());
            }
        }),
    );
}

fn detector() {
    let fleet = names(FLEET);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut detector = Detector::new(
        Duration::from_secs(1),
        Policy::fixed(Duration::from_secs(3)),
    );
    detector.ping_sent(1, start);
    for (service, instance) in &fleet {
        detector.echo(service, instance, 1, start + Duration::from_millis(1));
    }
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    println!(
        "detector: {} bytes per tracked instance ({FLEET} instances, {:.1} MiB)",
        bytes / FLEET as isize,
        bytes as f64 / (1 << 20) as f64
    );

    let mut seq = 1;
    report(
        &format!("detector: one echo, {FLEET} instances tracked"),
        per_op(FLEET, || {
            seq += 1;
            let now = start + Duration::from_secs(seq);
            detector.ping_sent(seq, now);
            for (service, instance) in &fleet {
                black_box(detector.echo(service, instance, seq, now));
            }
        }),
    );
    report(
        &format!("detector: check for timeouts across {FLEET} instances"),
        per_op(1, || {
            black_box(detector.check(start + Duration::from_secs(seq)));
        }),
    );
}

fn dashboard() {
    let fleet = names(FLEET);
    let start = tokio::time::Instant::now();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut app = App::new("amqp://bench".into(), Duration::from_secs(1), start);
    // The model the dashboard reads, fed as the monitor feeds it: each
    // update applied to the model first, then handed to the dashboard.
    let mut live = Fleet::new(&[], start, Utc::now());
    let mut seq = 0u64;
    let echo_all = |app: &mut App, live: &mut Fleet, seq: u64| {
        let at = start + Duration::from_secs(seq);
        let sent = Update::PingSent { seq, at };
        live.apply(&sent, at, Utc::now());
        app.update(Event::Engine(sent), live, at);
        // In batches, as the engine hands them on.
        for (b, batch) in fleet.chunks(256).enumerate() {
            let echoes: Vec<EchoSeen> = batch
                .iter()
                .enumerate()
                .map(|(i, (service, instance))| EchoSeen {
                    key: InstanceKey::new(service.as_str(), instance.as_str()),
                    id: InstanceId((b * 256 + i) as u64),
                    seq,
                    rtt: Some(Duration::from_micros(800 + seq % 400)),
                    phi: None,
                    at,
                })
                .collect();
            let echoes = Update::Echoes(echoes.into());
            live.apply(&echoes, at, Utc::now());
            app.update(Event::Engine(echoes), live, at);
        }
    };
    // A full RTT window per instance: the steady state of a long-running monitor.
    for _ in 0..120 {
        seq += 1;
        echo_all(&mut app, &mut live, seq);
    }
    app.update(Event::Resize(80, 24), &live, start);
    app.refresh(&live);
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    println!(
        "dashboard: {} bytes per instance with a full RTT window ({FLEET} instances, {:.1} MiB)",
        bytes / FLEET as isize,
        bytes as f64 / (1 << 20) as f64
    );

    report(
        &format!("dashboard: apply one echo, {FLEET} instances"),
        per_op(FLEET, || {
            seq += 1;
            echo_all(&mut app, &mut live, seq);
        }),
    );
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let now = start + Duration::from_secs(seq);
    report(
        &format!("dashboard: draw a 120x40 frame, {FLEET} instances"),
        per_op(50, || {
            for _ in 0..50 {
                terminal
                    .draw(|frame| draw(frame, &app, &live, now))
                    .unwrap();
            }
        }),
    );
    // Sort by RTT: every echo changes the order, so every tick re-sorts.
    for _ in 0..2 {
        app.update(
            Event::Key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE)),
            &live,
            now,
        );
    }
    assert_eq!(app.sort, Sort::Rtt);
    let mut tick = 0;
    // Orders that follow echoes are rebuilt at most every 3 s: each tick
    // here is 3 s after the last, so each one re-sorts.
    let resort_every = Duration::from_secs(3);
    report(
        &format!("dashboard: re-sort by RTT and draw, {FLEET} instances"),
        per_op(20, || {
            for _ in 0..20 {
                tick += 1;
                let at = now + resort_every * tick as u32;
                app.update(
                    Event::Tick(Traffic {
                        published: tick,
                        received: tick,
                        rejected: 0,
                    }),
                    &live,
                    at,
                );
                app.refresh(&live);
                terminal.draw(|frame| draw(frame, &app, &live, at)).unwrap();
            }
        }),
    );
    // What a user waits for after a key: the key, the order it changes, and
    // the next frame. Sorted by state, as the dashboard starts.
    while app.sort != Sort::State {
        app.update(
            Event::Key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE)),
            &live,
            now,
        );
    }
    for (name, code) in [
        ("j (move)", KeyCode::Char('j')),
        ("n (next not UP)", KeyCode::Char('n')),
        ("t (only what is not UP, toggled)", KeyCode::Char('t')),
        ("Space (fold a service, toggled)", KeyCode::Char(' ')),
        ("z (fold every service, toggled)", KeyCode::Char('z')),
        ("s (next sort)", KeyCode::Char('s')),
    ] {
        report(
            &format!("dashboard: key {name} to frame, {FLEET} instances"),
            per_op(10, || {
                for _ in 0..10 {
                    app.update(
                        Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
                        &live,
                        now,
                    );
                    app.refresh(&live);
                    terminal
                        .draw(|frame| draw(frame, &app, &live, now))
                        .unwrap();
                }
            }),
        );
    }
}

fn main() {
    // `cargo bench -p monitor --bench hot_paths -- simulated`: the detection figures only.
    if std::env::args().any(|a| a == "simulated") {
        simulated_detection();
        return;
    }
    println!("monitor hot paths (median of {ROUNDS} rounds)");
    wire_codec();
    detector();
    dashboard();
    simulated_detection();
}

/// The detector alone on a simulated clock: no broker, no scheduler, so the
/// figures are the algorithm's, not the machine's. Pings every second, echoes
/// delayed uniformly in `latency..latency + jitter`; `services` live ones
/// for an hour, and as many killed at random instants.
fn simulated_detection() {
    const SERVICES: usize = 200;
    const SECONDS: u64 = 3600;
    let second = Duration::from_secs(1);
    for (profile, latency, jitter) in [("200 ± 150 ms", 50, 300), ("1500 ± 1000 ms", 500, 2000)] {
        for mode in [Mode::Phi, Mode::Fixed] {
            let policy = Policy {
                mode,
                ..Policy::fixed(Duration::from_secs(3))
            };
            let mut detector = Detector::new(second, policy);
            let start = Instant::now();
            let mut rng = rand::rng();
            // (arrival ms, seq, instance); a killed instance answers nothing after its death.
            let deaths: Vec<u64> = (0..SERVICES)
                .map(|_| rng.random_range(600_000..SECONDS * 1000 - 30_000))
                .collect();
            let mut echoes = Vec::new();
            for seq in 1..=SECONDS {
                for i in 0..2 * SERVICES {
                    let sent = seq * 1000;
                    if i >= SERVICES && sent >= deaths[i - SERVICES] {
                        continue;
                    }
                    echoes.push((sent + latency + rng.random_range(0..jitter), seq, i));
                }
            }
            echoes.sort_unstable();
            let names: Vec<String> = (0..2 * SERVICES).map(|i| i.to_string()).collect();
            let mut transitions = Vec::new();
            let mut next = 0;
            for tick in 0..SECONDS * 10 {
                let now_ms = tick * 100;
                let now = start + Duration::from_millis(now_ms);
                if now_ms % 1000 == 0 && now_ms > 0 {
                    detector.ping_sent(now_ms / 1000, now);
                }
                while next < echoes.len() && echoes[next].0 <= now_ms {
                    let (at, seq, i) = echoes[next];
                    let echo =
                        detector.echo("svc", &names[i], seq, start + Duration::from_millis(at));
                    transitions.extend(echo.transitions.into_iter().map(|t| (at, t)));
                    next += 1;
                }
                transitions.extend(detector.check(now).into_iter().map(|t| (now_ms, t)));
            }
            let live = |t: &monitor::detector::Transition| {
                t.key.instance.parse::<usize>().unwrap() < SERVICES
            };
            let count = |state: State| {
                transitions
                    .iter()
                    .filter(|(_, t)| live(t) && t.to == state)
                    .count()
            };
            let hours = SERVICES as f64 * SECONDS as f64 / 3600.0;
            let after_death = |state: State| -> Vec<f64> {
                let mut times: Vec<f64> = (0..SERVICES)
                    .filter_map(|k| {
                        let name = (SERVICES + k).to_string();
                        transitions
                            .iter()
                            .find(|(at, t)| {
                                t.key.instance == name && t.to == state && *at >= deaths[k]
                            })
                            .map(|(at, _)| (at - deaths[k]) as f64 / 1000.0)
                    })
                    .collect();
                times.sort_by(f64::total_cmp);
                times
            };
            let summary = |times: &[f64]| {
                let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
                format!(
                    "median {:.2} s, p99 {:.2} s, max {:.2} s",
                    at(0.5),
                    at(0.99),
                    at(1.0)
                )
            };
            println!(
                "simulated {profile}, {mode:?}: kill -> SUSPECT {}; -> DOWN {}; false SUSPECT {:.3}/service-hour, false DOWN {:.3}/service-hour",
                summary(&after_death(State::Suspect)),
                summary(&after_death(State::Down)),
                count(State::Suspect) as f64 / hours,
                count(State::Down) as f64 / hours,
            );
        }
    }
}
