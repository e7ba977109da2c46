//! Every view tells one story: one scripted stream of updates goes through
//! the fleet's feed as in a running monitor (the model first, then each
//! sink), and the dashboard's rows, the status document, `/metrics` and the
//! history's per-minute figures must give the same uptime, counts and
//! severity.
//!
//! The script: `orders/o-1` goes UP → SLOW → UP; `payments/p-1` leaves
//! (a goodbye); `search/s-1` is SUSPECT for a second and recovers; the
//! broker goes away for 10 s (everyone judged alive is STALE), and comes
//! back; then `orders/o-2` goes DOWN and `orders` is degraded; `billing`
//! is expected and never seen. Before the one model, the dashboard gave
//! `o-1` 50% (it dropped the UP time at each UP↔SLOW change), the status
//! document 62.5% (SLOW and STALE counted as down), and the dashboard
//! showed `orders 0/2` in red during the outage while the rest said 2/2.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use orchestrator_lib::plumbing::LinkStatus;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use tokio::time::Instant;

use crate::dashboard::{App, Event, draw};
use crate::detector::{
    Blindness, InstanceKey, Reason, ServiceChange, Severity, State, Strength, Transition,
};
use crate::fleet::{Fleet, Shared};
use crate::history::Minute;
use crate::history::aggregate::{Aggregator, MINUTE_MS};
use crate::metrics::Metrics;
use crate::status::{About, snapshot};
use crate::update::{Report, ServiceReport, Update};

/// A whole minute, so the history's one minute holds the whole script.
const T0_MS: i64 = 1_800_000_000_000 - (1_800_000_000_000 % MINUTE_MS);

fn wall(at: Duration) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(T0_MS).unwrap() + at
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn transition(key: (&str, &str), from: State, to: State, reason: Reason) -> Update {
    Update::Transition(Report {
        at: wall(Duration::ZERO),
        transition: Transition {
            key: InstanceKey::new(key.0, key.1),
            from,
            to,
            reason,
            rtt: None,
        },
    })
}

/// The script, as the engine would emit it: (seconds after the start, update).
fn script() -> Vec<(u64, Update)> {
    let timed_out = Reason::TimedOut {
        silent_for: secs(3),
        phi: None,
    };
    let stale = Reason::Stale(Blindness::LinkDown);
    let mut script = vec![(0, Update::Link(LinkStatus::Connected))];
    for key in [
        ("orders", "o-1"),
        ("orders", "o-2"),
        ("payments", "p-1"),
        ("search", "s-1"),
    ] {
        script.push((
            0,
            transition(key, State::NeverSeen, State::Up, Reason::FirstSeen),
        ));
    }
    let o1 = ("orders", "o-1");
    let o2 = ("orders", "o-2");
    let s1 = ("search", "s-1");
    let slow = Reason::Slow {
        rtt: Duration::from_millis(900),
    };
    script.extend([
        (5, transition(o1, State::Up, State::Slow, slow)),
        (
            10,
            transition(o1, State::Slow, State::Up, Reason::Recovered),
        ),
        (
            10,
            transition(("payments", "p-1"), State::Up, State::Left, Reason::Left),
        ),
        (12, transition(s1, State::Up, State::Suspect, timed_out)),
        (
            13,
            transition(s1, State::Suspect, State::Up, Reason::Recovered),
        ),
        (
            20,
            Update::Link(LinkStatus::Reconnecting {
                attempt: 1,
                retry_in: secs(1),
                error: "connection refused".into(),
            }),
        ),
        (20, transition(o1, State::Up, State::Stale, stale)),
        (20, transition(o2, State::Up, State::Stale, stale)),
        (20, transition(s1, State::Up, State::Stale, stale)),
        (30, Update::Link(LinkStatus::Connected)),
        (
            30,
            transition(o1, State::Stale, State::Up, Reason::Recovered),
        ),
        (
            30,
            transition(o2, State::Stale, State::Up, Reason::Recovered),
        ),
        (
            30,
            transition(s1, State::Stale, State::Up, Reason::Recovered),
        ),
        (35, transition(o2, State::Up, State::Down, timed_out)),
        (
            35,
            Update::Service(ServiceReport {
                at: wall(secs(35)),
                change: ServiceChange {
                    service: "orders".into(),
                    from: Strength::Full,
                    to: Strength::Degraded,
                    up: 1,
                    expected: 2,
                },
            }),
        ),
    ]);
    script
}

/// Every view, fed as the fleet's feed feeds them.
struct Views {
    t0: Instant,
    fleet: Shared,
    dashboard: App,
    metrics: Metrics,
    history: Aggregator,
    minutes: Vec<Minute>,
}

impl Views {
    fn new() -> Self {
        let t0 = Instant::now();
        let mut fleet = Fleet::new(&["billing".into()], t0, wall(Duration::ZERO));
        fleet.expected.insert("orders".into(), 2);
        let fleet = Shared::new(fleet);
        let mut dashboard = App::new("amqp://127.0.0.1".into(), secs(1), t0);
        dashboard.update(Event::Resize(160, 40), &fleet.read(), t0);
        Self {
            t0,
            metrics: Metrics::new(Arc::default(), fleet.clone()),
            fleet,
            dashboard,
            history: Aggregator::new(T0_MS),
            minutes: Vec::new(),
        }
    }

    /// Play the script up to `until` seconds, each update at its instant.
    fn play(&mut self, script: &[(u64, Update)], until: u64) {
        for (at, update) in script.iter().filter(|(at, _)| *at <= until) {
            let now = self.t0 + secs(*at);
            // The model first (the feed's one write), then each sink.
            self.fleet.write().apply(update, now, wall(secs(*at)));
            self.dashboard
                .update(Event::Engine(update.clone()), &self.fleet.read(), now);
            self.metrics.observe(update);
            if let Update::Transition(report) = update {
                let t = &report.transition;
                self.history.transition(
                    &t.key,
                    t.to,
                    T0_MS + secs(*at).as_millis() as i64,
                    &mut self.minutes,
                );
            }
        }
    }

    /// The dashboard's screen at `at` seconds: the table, then the header.
    fn screen(&mut self, at: u64) -> (Vec<String>, Terminal<TestBackend>) {
        let now = self.t0 + secs(at);
        let live = self.fleet.read();
        self.dashboard.refresh(&live);
        let mut terminal = Terminal::new(TestBackend::new(160, 40)).unwrap();
        terminal
            .draw(|frame| draw(frame, &self.dashboard, &live, now))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        let lines = (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect();
        (lines, terminal)
    }

    fn document(&self, at: u64) -> serde_json::Value {
        let about = About {
            monitor_id: "mon".into(),
            scope: "default".into(),
            interval: secs(1),
            grace: secs(3),
            link_stats: None,
            notify: Default::default(),
        };
        let snap = snapshot(
            &self.fleet.read(),
            &about,
            self.t0 + secs(at),
            wall(secs(at)),
        );
        serde_json::to_value(&snap.document).unwrap()
    }
}

fn entry<'a>(doc: &'a serde_json::Value, instance: &str) -> &'a serde_json::Value {
    doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instance"] == instance)
        .unwrap_or_else(|| panic!("{instance} not in {doc}"))
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn row<'a>(screen: &'a [String], instance: &str) -> &'a str {
    screen
        .iter()
        .find(|line| line.split_whitespace().any(|word| word == instance))
        .unwrap_or_else(|| panic!("no row for {instance} in\n{}", screen.join("\n")))
}

#[tokio::test(start_paused = true)]
async fn every_view_tells_the_same_story() {
    let script = script();
    let mut views = Views::new();

    // During the outage: everyone judged alive is STALE, and still counts.
    views.play(&script, 25);
    tokio::time::advance(secs(25)).await;
    let doc = views.document(25);
    for instance in ["o-1", "o-2", "s-1"] {
        let e = entry(&doc, instance);
        assert_eq!(e["state"], "stale");
        assert_eq!(e["severity"], "unknown");
        assert_eq!(e["alive"], true, "{instance}: blindness is not an outage");
    }
    let text = views.metrics.encode();
    assert_eq!(
        metric(&text, "heartbeat_up{service=\"orders\",instance=\"o-1\"} "),
        1.0
    );
    assert_eq!(
        metric(&text, "heartbeat_up{service=\"orders\",instance=\"o-2\"} "),
        1.0
    );
    let (screen, _) = views.screen(25);
    assert!(
        row(&screen, "o-1").contains("orders 2/2") || row(&screen, "o-2").contains("orders 2/2"),
        "the dashboard counts orders at full strength:\n{}",
        screen.join("\n")
    );

    // The end: o-2 DOWN, orders degraded, billing never seen.
    views.play(
        &script
            .iter()
            .filter(|(at, _)| *at > 25)
            .cloned()
            .collect::<Vec<_>>(),
        40,
    );
    tokio::time::advance(secs(15)).await;
    let end = 40;
    let doc = views.document(end);
    let text = views.metrics.encode();
    let (screen, terminal) = views.screen(end);
    views
        .history
        .close_partial(T0_MS + secs(end).as_millis() as i64, &mut views.minutes);

    // Uptime: up out of judged; LEFT and STALE time left out (coverage).
    // o-1: UP 0-5, SLOW 5-10 (it answers: up), UP 10-20, STALE 20-30, UP 30-40.
    // o-2: UP 0-20 and 30-35, STALE 20-30, DOWN 35-40. p-1: UP 0-10, then LEFT.
    let expected = [
        ("o-1", 100.0, 75.0),
        ("o-2", 100.0 * 25.0 / 30.0, 75.0),
        ("p-1", 100.0, 25.0),
        ("s-1", 100.0, 75.0),
    ];
    for (instance, uptime, coverage) in expected {
        let e = entry(&doc, instance);
        let close = |got: f64, want: f64| (got - want).abs() < 0.01;
        let status = e["uptime"]["since_start"].as_f64().unwrap();
        assert!(
            close(status, uptime),
            "status {instance}: {status} vs {uptime}"
        );
        let covered = e["uptime"]["coverage"].as_f64().unwrap();
        assert!(close(covered, coverage), "status {instance}: {covered}");
        let service = e["service"].as_str().unwrap();
        let labels = format!("{{service=\"{service}\",instance=\"{instance}\"}} ");
        let scraped = metric(&text, &format!("heartbeat_uptime_ratio{labels}")) * 100.0;
        assert!(close(scraped, uptime), "metrics {instance}: {scraped}");
        let scraped = metric(&text, &format!("heartbeat_uptime_coverage_ratio{labels}")) * 100.0;
        assert!(close(scraped, coverage), "metrics {instance}: {scraped}");
        let shown = format!("{:.1}%", uptime);
        assert!(
            row(&screen, instance).contains(&shown),
            "dashboard {instance}: no {shown} in {:?}",
            row(&screen, instance)
        );
        let minute = views
            .minutes
            .iter()
            .find(|m| m.instance == instance)
            .expect("a minute per instance");
        let stored = 100.0 * minute.up_ms as f64 / minute.observed_ms as f64;
        assert!(close(stored, uptime), "history {instance}: {stored}");
        assert_eq!(
            minute.observed_ms as f64,
            coverage / 100.0 * 40_000.0,
            "history {instance}: time judged"
        );
    }

    // Counts: orders 1 of 2 alive, as the engine judged it, in every view.
    let o1 = row(&screen, "o-1");
    let o2 = row(&screen, "o-2");
    assert!(
        o1.contains("orders 1/2") || o2.contains("orders 1/2"),
        "{o1}\n{o2}"
    );
    assert_eq!(doc["degraded"][0]["service"], "orders");
    assert_eq!(doc["degraded"][0]["up"], 1);
    assert_eq!(
        metric(&text, "heartbeat_service_degraded{service=\"orders\"} "),
        1.0
    );
    let alive_in_doc = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["service"] == "orders" && s["alive"] == true)
        .count();
    assert_eq!(alive_in_doc, 1);
    assert_eq!(doc["counts"]["up"], 2);
    assert_eq!(doc["counts"]["down"], 1);
    assert_eq!(doc["counts"]["left"], 1);
    assert_eq!(doc["counts"]["never_seen"], 1);
    assert!(
        screen[1].contains("2 up · 1 down · 1 never seen") && screen[1].contains("1 left"),
        "{}",
        screen[1]
    );
    let up_series = text
        .lines()
        .filter(|l| l.starts_with("heartbeat_state{") && l.contains("state=\"up\"} 1"))
        .count();
    assert_eq!(up_series, 2);

    // Severity: the never-seen expected service is critical everywhere.
    let billing = entry(&doc, "-");
    assert_eq!(billing["state"], "never_seen");
    assert_eq!(billing["severity"], "critical");
    assert_eq!(billing["tone"], "critical");
    assert_eq!(
        serde_json::to_value(Severity::of("never_seen")).unwrap(),
        "critical"
    );
    assert_eq!(
        metric(
            &text,
            "heartbeat_state{service=\"billing\",instance=\"-\",state=\"never_seen\"} "
        ),
        1.0
    );
    let line = screen
        .iter()
        .position(|l| l.starts_with("billing"))
        .unwrap();
    let x = screen[line].find("NEVER SEEN").unwrap() as u16;
    // Red, as DOWN is: the dashboard maps the same tone.
    assert_eq!(terminal.backend().buffer()[(x, line as u16)].fg, Color::Red);
    let o2_line = screen.iter().position(|l| l.contains(" o-2 ")).unwrap();
    let x = screen[o2_line].find("DOWN").unwrap() as u16;
    assert_eq!(
        terminal.backend().buffer()[(x, o2_line as u16)].fg,
        Color::Red
    );
    assert_eq!(entry(&doc, "o-2")["severity"], "critical");
    assert_eq!(
        entry(&doc, "p-1")["severity"],
        "ok",
        "a goodbye is no outage"
    );
}
