//! The dashboard without a terminal: events go into [`App`], frames are drawn
//! into a `TestBackend` at fixed sizes, all at explicit instants.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use orchestrator_lib::Identity;
use orchestrator_lib::plumbing::LinkStatus;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use tokio::time::Instant;

use super::{Event, Screen, Sort, Traffic, draw};
use crate::demo::FleetCommand;
use crate::detector::{InstanceId, InstanceKey, Reason, State, Transition};
use crate::fleet::Fleet;
use crate::update::{Report, Update};

/// The dashboard as the run loop drives it: its [`super::App`] over the
/// fleet model, which takes each engine update first (as the fleet's feed
/// does) before the dashboard hears of it.
struct App {
    app: super::App,
    fleet: Fleet,
}

impl std::ops::Deref for App {
    type Target = super::App;
    fn deref(&self) -> &super::App {
        &self.app
    }
}

impl std::ops::DerefMut for App {
    fn deref_mut(&mut self) -> &mut super::App {
        &mut self.app
    }
}

impl App {
    fn update(&mut self, event: Event, now: Instant) {
        if let Event::Engine(update) = &event {
            self.fleet.apply(update, now, wall_at(now));
        }
        self.app.update(event, &self.fleet, now);
    }

    fn refresh(&mut self) {
        self.app.refresh(&self.fleet);
    }

    fn shown(&self) -> &Fleet {
        self.app.shown(&self.fleet)
    }

    fn selected_row(&self) -> Option<&crate::fleet::Instance> {
        self.app.selected_row(&self.fleet)
    }

    /// Keys in the order on screen.
    fn order(&mut self) -> Vec<String> {
        self.refresh();
        let fleet = self.shown();
        self.app
            .table
            .order
            .iter()
            .map(|&i| fleet.rows[i].key.to_string())
            .collect()
    }
}

/// The wall-clock time of a test instant: only the log's stamps use it.
fn wall_at(_: Instant) -> DateTime<Utc> {
    wall(Duration::ZERO)
}

const BROKER: &str = "amqp://guest:***@127.0.0.1:5672/%2f";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn wall(offset: Duration) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap() + offset
}

/// A fixed origin: every instant in a test is an offset from it.
struct Clock {
    start: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }
}

fn new_app(clock: &Clock, expect: &[&str]) -> App {
    let expect: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    let start = clock.at(Duration::ZERO);
    App {
        app: super::App::new(BROKER.into(), secs(1), start),
        fleet: Fleet::new(&expect, start, wall(Duration::ZERO)),
    }
}

fn transition(
    app: &mut App,
    clock: &Clock,
    at: Duration,
    key: (&str, &str),
    from: State,
    to: State,
    reason: Reason,
) {
    let report = Report {
        at: wall(at),
        transition: Transition {
            key: InstanceKey::new(key.0, key.1),
            from,
            to,
            reason,
            rtt: None,
        },
    };
    app.update(Event::Engine(Update::Transition(report)), clock.at(at));
}

/// One id per name, as the detector gives while it tracks an instance.
fn id_of(key: &InstanceKey) -> InstanceId {
    use std::hash::BuildHasher;
    InstanceId(std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(key))
}

fn echo(app: &mut App, clock: &Clock, at: Duration, key: (&str, &str), seq: u64, rtt: Duration) {
    echo_as(app, clock, at, key, None, seq, rtt);
}

/// An echo under a given id (`None`: the name's usual one).
fn echo_as(
    app: &mut App,
    clock: &Clock,
    at: Duration,
    key: (&str, &str),
    id: Option<u64>,
    seq: u64,
    rtt: Duration,
) {
    let key = InstanceKey::new(key.0, key.1);
    app.update(
        Event::Engine(Update::Echoes(std::sync::Arc::new([
            crate::update::EchoSeen {
                id: id.map_or_else(|| id_of(&key), InstanceId),
                key,
                seq,
                rtt: Some(rtt),
                phi: None,
                at: clock.at(at),
            },
        ]))),
        clock.at(at),
    );
}

fn ping(app: &mut App, clock: &Clock, at: Duration, seq: u64) {
    app.update(
        Event::Engine(Update::PingSent {
            seq,
            at: clock.at(at),
        }),
        clock.at(at),
    );
}

fn up(app: &mut App, clock: &Clock, at: Duration, key: (&str, &str)) {
    transition(
        app,
        clock,
        at,
        key,
        State::NeverSeen,
        State::Up,
        Reason::FirstSeen,
    );
}

fn press(app: &mut App, clock: &Clock, at: Duration, code: KeyCode) {
    app.update(
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
        clock.at(at),
    );
}

fn type_text(app: &mut App, clock: &Clock, at: Duration, text: &str) {
    for c in text.chars() {
        press(app, clock, at, KeyCode::Char(c));
    }
}

fn render(app: &mut App, now: Instant, width: u16, height: u16) -> Terminal<TestBackend> {
    app.update(Event::Resize(width, height), now);
    app.refresh();
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| draw(frame, &app.app, &app.fleet, now))
        .unwrap();
    terminal
}

fn lines(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
}

fn screen(app: &mut App, now: Instant, width: u16, height: u16) -> Vec<String> {
    lines(&render(app, now, width, height))
}

fn line_with<'a>(screen: &'a [String], needle: &str) -> &'a str {
    screen
        .iter()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line has {needle:?} in\n{}", screen.join("\n")))
}

fn order(app: &mut App) -> Vec<String> {
    app.order()
}

/// orders ×2 (one DOWN by timeout), payments left, search UP and slow,
/// billing expected but never seen; 30 s after the start.
fn fleet_mix(clock: &Clock) -> App {
    let mut app = new_app(clock, &["billing"]);
    app.update(
        Event::Engine(Update::Link(LinkStatus::Connected)),
        clock.at(ms(100)),
    );
    for key in [
        ("orders", "orders-1"),
        ("orders", "orders-2"),
        ("payments", "payments-1"),
        ("search", "search-1"),
    ] {
        up(&mut app, clock, secs(1), key);
    }
    for seq in 1..=30u64 {
        let at = secs(seq);
        ping(&mut app, clock, at, seq);
        echo(
            &mut app,
            clock,
            at + ms(2),
            ("orders", "orders-1"),
            seq,
            ms(2 + seq % 3),
        );
        if seq <= 20 {
            echo(
                &mut app,
                clock,
                at + ms(3),
                ("orders", "orders-2"),
                seq,
                ms(3),
            );
        }
        if seq <= 10 {
            echo(
                &mut app,
                clock,
                at + ms(4),
                ("payments", "payments-1"),
                seq,
                ms(4),
            );
        }
        echo(
            &mut app,
            clock,
            at + ms(250),
            ("search", "search-1"),
            seq,
            ms(200 + 10 * (seq % 5)),
        );
        app.update(
            Event::Tick(Traffic {
                published: seq,
                received: seq * 4,
                rejected: 0,
            }),
            clock.at(at),
        );
    }
    transition(
        &mut app,
        clock,
        secs(11),
        ("payments", "payments-1"),
        State::Up,
        State::Down,
        Reason::Left,
    );
    transition(
        &mut app,
        clock,
        secs(24),
        ("orders", "orders-2"),
        State::Up,
        State::Down,
        Reason::TimedOut {
            silent_for: ms(3100),
            phi: None,
        },
    );
    // Start from the top, as a user who just looked would.
    press(&mut app, clock, secs(30), KeyCode::Home);
    app
}

// ---- views ----

#[test]
fn empty_dashboard_says_it_is_waiting_and_shows_the_redacted_broker() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    let screen = screen(&mut app, clock.at(secs(2)), 80, 24);
    assert_eq!(
        screen[0],
        " heartbeat  ◌ connecting…  amqp://guest:***@127.0.0.1:5672/%2f"
    );
    assert_eq!(
        screen[1],
        " 0 up · 0 down · ping every 1s · seq 0 · monitor up 2s"
    );
    assert_eq!(
        screen[2],
        " msg/s measuring… · heartbeats unsigned (set HEARTBEAT_KEY)"
    );
    assert!(screen[3].starts_with("SERVICE          INSTANCE       STATE↓     FOR"));
    assert_eq!(
        screen[4],
        "  no link to the broker yet (see above); services appear once there is"
    );
    assert!(screen.iter().any(|l| l.contains("events, newest first")));
    assert_eq!(
        screen[23],
        " q quit  ↑↓ move  ⏎ detail  / filter  s sort:state↓  f state  p pause  ? help"
    );
    assert!(!screen.join("\n").contains("guest:guest"));
}

#[test]
fn a_mix_of_states_groups_instances_puts_down_first_and_colours_states() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let now = clock.at(secs(30) + ms(500));
    let terminal = render(&mut app, now, 120, 24);
    let screen = lines(&terminal);
    assert_eq!(
        screen[1],
        " 1 of 5 · 2 up · 2 down · 1 never seen · ping every 1s · seq 30 · monitor up 30s"
    );
    assert_eq!(
        screen[2],
        " msg/s in 4.0 out 1.0 · heartbeats unsigned (set HEARTBEAT_KEY)"
    );
    // DOWN services first (orders, with one instance down, then payments),
    // then never seen, then UP; instances of a service stay together.
    let table: Vec<&str> = screen[4..10].iter().map(String::as_str).collect();
    assert_eq!(
        table,
        [
            "orders 1/2       orders-2       DOWN       6s      10s ago    3.0ms    3.0ms    3.0ms    ▁▁▁▁▁▁▁▁▁▁ 78.0%   9",
            "  ·              orders-1       UP         29s     498ms ago  2.0ms    3.0ms    4.0ms    ▁▅█▁▅█▁▅█▁ 100.0%  0",
            "payments         payments-1     DOWN       19s     20s ago    4.0ms    4.0ms    4.0ms    ▁▁▁▁▁▁▁▁▁▁ 33.9%   19",
            "billing          -              NEVER SEEN 30s     never      -        -        -                   0.0%    0",
            "search           search-1       UP         29s     250ms ago  200ms    220ms    240ms    ▃▅▆█▁▃▅▆█▁ 100.0%  0",
            "",
        ]
    );
    let buffer = terminal.backend().buffer();
    let colour_of = |row: u16, word: &str| {
        let x = screen[row as usize].find(word).unwrap() as u16;
        buffer[(x, row)].fg
    };
    // The selected (first) row is drawn reversed; compare on the others.
    assert_eq!(colour_of(5, "UP"), Color::Green);
    assert_eq!(colour_of(6, "DOWN"), Color::Red);
    // Expected and never heard from is an outage, as in every view.
    assert_eq!(colour_of(7, "NEVER SEEN"), Color::Red);

    // Newest first, with the wall-clock time and the reason.
    let log = line_with(&screen, "events, newest first");
    let at = screen.iter().position(|l| l == log).unwrap();
    assert_eq!(
        screen[at + 1],
        " 12:00:24.000Z orders/orders-2 UP → DOWN  timed out: silent for 3.1s"
    );
    assert_eq!(
        screen[at + 2],
        " 12:00:11.000Z payments/payments-1 UP → DOWN  left (goodbye)"
    );
}

#[test]
fn the_detail_view_shows_the_history_and_an_rtt_chart() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let now = clock.at(secs(30) + ms(500));
    press(&mut app, &clock, secs(30), KeyCode::Enter);
    assert_eq!(app.screen, Screen::Detail);
    let screen = screen(&mut app, now, 80, 24);
    assert_eq!(screen[3], " orders/orders-2 DOWN for 6s");
    assert_eq!(
        screen[4],
        " last echo 10s ago · rtt 3.0ms · p50 3.0ms · p99 3.0ms"
    );
    assert_eq!(
        screen[5],
        " uptime 77.97% · missed pings 9 · watched for 29s"
    );
    // Under FLAPPING or STALE the state hides the present; this line does not.
    assert_eq!(screen[6], " answering now: no, silent for 10s");
    assert!(screen[7].starts_with(" round trip, last 20 echoes (top 3.0ms) ─"));
    assert!(screen[8..13].iter().any(|l| l.contains('█')), "{screen:#?}");
    let history = screen
        .iter()
        .position(|l| l.starts_with(" transitions, newest first"))
        .unwrap();
    assert_eq!(
        screen[history + 1],
        " 12:00:24.000Z UP → DOWN  timed out: silent for 3.1s"
    );
    assert_eq!(
        screen[history + 2],
        " 12:00:01.000Z NEVER SEEN → UP  first seen"
    );
}

#[test]
fn the_help_overlay_lists_every_key_and_the_log_file() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    app.log_path = Some("/tmp/monitor-42.log".into());
    press(&mut app, &clock, secs(30), KeyCode::Char('?'));
    assert!(app.help);
    let text = screen(&mut app, clock.at(secs(30)), 100, 50).join("\n");
    for (keys, what) in super::help::keys(false) {
        assert!(text.contains(keys), "{keys} missing from\n{text}");
        assert!(text.contains(what), "{what} missing from\n{text}");
    }
    assert!(text.contains("logs: /tmp/monitor-42.log"));
    assert!(text.contains("┌ keys "));
    // Outside the demo its keys do nothing, so the help does not offer them.
    assert!(!text.contains("x c r"), "{text}");
    assert!(!text.contains("crash"), "{text}");
    assert!(!text.contains("or quit"), "Esc never quits:\n{text}");

    app.demo = true;
    let text = screen(&mut app, clock.at(secs(30)), 80, 30).join("\n");
    assert!(text.contains("x c r"), "{text}");
    assert!(text.contains("stop, crash, revive the selected service"));
}

#[test]
fn narrow_terminals_drop_the_least_useful_columns_first() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let now = clock.at(secs(30) + ms(500));

    let wide = screen(&mut app, now, 120, 24);
    assert_eq!(
        wide[3],
        "SERVICE          INSTANCE       STATE↓     FOR     LAST ECHO  RTT      P50      P99      TREND      UPTIME  MISSED"
    );
    let standard = screen(&mut app, now, 80, 24);
    assert_eq!(
        standard[3],
        "SERVICE          INSTANCE       STATE↓     FOR     LAST ECHO  RTT      UPTIME"
    );
    let narrow = screen(&mut app, now, 50, 24);
    assert_eq!(narrow[3], "SERVICE          INSTANCE       STATE↓     FOR");
    assert!(narrow[4].starts_with("orders 1/2       orders-2       DOWN"));
    // orders has two instances: INSTANCE stays, the names share the width.
    let tiny = screen(&mut app, now, 30, 10);
    assert_eq!(tiny[3], "SERVICE   INSTANCE  STATE↓");
    assert_eq!(tiny[4], "orde… 1/2 orders-2  DOWN");
    assert_eq!(tiny[5], "  ·       orders-1  UP");
    // Too short for the event log: rows get the space.
    assert!(!tiny.iter().any(|l| l.contains("events")));
    assert_eq!(tiny[9], " q quit  ⏎ detail  ? help");

    // With one instance per service, INSTANCE is the first to go.
    let mut single = new_app(&clock, &[]);
    up(&mut single, &clock, secs(1), ("orders", "orders-1"));
    up(&mut single, &clock, secs(1), ("search", "search-1"));
    let tiny = screen(&mut single, clock.at(secs(2)), 30, 10);
    assert_eq!(tiny[3], "SERVICE          STATE↓");
}

#[test]
fn ten_thousand_services_scrolled_to_the_middle_show_only_the_rows_around_the_selection() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    for i in 0..10_000 {
        let name = format!("svc-{i:05}");
        up(&mut app, &clock, secs(1), (&name, "a"));
        echo(&mut app, &clock, secs(1), (&name, "a"), 1, ms(5));
    }
    press(&mut app, &clock, secs(2), KeyCode::Char('s')); // sort by name
    app.update(Event::Resize(80, 24), clock.at(secs(2)));
    for _ in 0..5_000 {
        press(&mut app, &clock, secs(2), KeyCode::Char('j'));
    }
    assert_eq!(app.selected, 5_000);
    let page = super::layout::list_rows(24);
    assert_eq!(app.offset, 5_000 + 1 - page);
    let terminal = render(&mut app, clock.at(secs(3)), 80, 24);
    let screen = lines(&terminal);
    assert_eq!(
        screen[1], " 5001 of 10000 · 10000 up · 0 down · ping every 1s · seq 0 · monitor up 3s",
        "the position says where the selection is"
    );
    assert!(screen[4].starts_with(&format!("svc-{:05}", 5_001 - page)));
    let last = 4 + page - 1;
    assert!(screen[last].starts_with("svc-05000        a              UP"));
    assert!(!screen.iter().any(|l| l.contains("svc-05001")));
    // The selection is the highlighted row.
    let buffer = terminal.backend().buffer();
    assert!(
        buffer[(0, last as u16)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
    assert!(
        !buffer[(0, last as u16 - 1)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
}

#[test]
fn reconnecting_and_blocked_links_are_spelled_out_in_the_header() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    app.update(
        Event::Engine(Update::Link(LinkStatus::Reconnecting {
            attempt: 3,
            retry_in: secs(2),
            error: "IO error: Connection refused (os error 111)".into(),
        })),
        clock.at(secs(10)),
    );
    let screen = screen(&mut app, clock.at(secs(10) + ms(500)), 100, 24);
    assert!(
        screen[0].starts_with(
            " heartbeat  ◌ reconnecting (refused), attempt 3, next try in 1.5s  amqp://"
        ),
        "{}",
        screen[0]
    );
    app.update(
        Event::Engine(Update::Link(LinkStatus::Blocked {
            reason: "low on memory".into(),
        })),
        clock.at(secs(11)),
    );
    let screen = self::screen(&mut app, clock.at(secs(11)), 100, 24);
    assert!(screen[0].starts_with(" heartbeat  ■ blocked by the broker: low on memory  amqp://"));

    app.update(
        Event::Engine(Update::Link(LinkStatus::Connected)),
        clock.at(secs(12)),
    );
    let screen = self::screen(&mut app, clock.at(secs(12)), 100, 24);
    assert!(screen[0].starts_with(" heartbeat  ● connected  amqp://"));
    assert!(screen[4].contains("waiting for the first echo"));
}

#[test]
fn rates_wait_for_a_whole_window() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    // One ping a second, one echo back: ticks every 250 ms (the run loop's
    // are a second apart; the rule is about the window, not the tick).
    let tick = |app: &mut App, at: Duration| {
        let n = at.as_millis() as u64 / 1000;
        app.update(
            Event::Tick(Traffic {
                published: n,
                received: n,
                rejected: 0,
            }),
            clock.at(at),
        );
    };
    let mut at = Duration::ZERO;
    while at < ms(4750) {
        tick(&mut app, at);
        at += ms(250);
        let shown = screen(&mut app, clock.at(at), 100, 24);
        assert!(
            shown[2].starts_with(" msg/s measuring…"),
            "at {at:?}: {}",
            shown[2]
        );
    }
    tick(&mut app, ms(5000));
    let shown = screen(&mut app, clock.at(ms(5000)), 100, 24);
    assert!(
        shown[2].starts_with(" msg/s in 1.0 out 1.0"),
        "{}",
        shown[2]
    );
}

/// The month is what a round costs at the interval in force, whatever a
/// few seconds of traffic held: at 10 s a 5 s window holds a ping or none,
/// and the projection flipped between ~0 and 1.6M (issue 23).
#[test]
fn the_month_is_projected_from_a_rounds_cost_at_a_long_interval() {
    use crate::budget::{Cost, per_month};
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    app.update(
        Event::Engine(Update::Link(LinkStatus::Connected)),
        clock.at(ms(100)),
    );
    let cost = |interval: Duration, answering: u64, budget: Option<u64>| {
        let per_round = 1 + 3 * answering;
        let projected = per_month(per_round, interval);
        Update::Cost(std::sync::Arc::new(Cost {
            interval,
            timeout: interval * 3,
            answering,
            per_round,
            projected,
            budget,
            within: budget.is_none_or(|b| crate::budget::fits(per_round, interval, b)),
            warnings: Vec::new(),
        }))
    };
    app.update(Event::Engine(cost(secs(10), 1, None)), clock.at(secs(1)));
    // A ping every 10 s, its echo back: the window sees one round, or none.
    for second in 1..=40u64 {
        let rounds = second / 10;
        app.update(
            Event::Tick(Traffic {
                published: rounds,
                received: rounds,
                rejected: 0,
            }),
            clock.at(secs(second)),
        );
        let shown = screen(&mut app, clock.at(secs(second)), 120, 24);
        assert!(
            shown[2].contains(" · ~1.0M/month (4 a round) (over a 1M/month plan cap)"),
            "at {second}s: {}",
            shown[2]
        );
        assert!(shown[1].contains("ping every 10s"), "{}", shown[1]);
    }
    // Under a budget: the interval it chose, and the budget beside the month.
    app.update(
        Event::Engine(cost(ms(18_144), 2, Some(1_000_000))),
        clock.at(secs(41)),
    );
    let shown = screen(&mut app, clock.at(secs(41)), 120, 24);
    assert!(
        shown[2].contains(" · ~1.0M/month (7 a round) · budget 1.0M"),
        "{}",
        shown[2]
    );
    assert!(!shown[2].contains("over"), "{}", shown[2]);
    assert!(shown[1].contains("ping every 18"), "{}", shown[1]);
}

#[test]
fn the_last_reconnect_error_is_said_in_a_few_words() {
    use super::view::short_error;
    for (error, short) in [
        ("IO error: Connection refused (os error 111)", "refused"),
        (
            "IO error: failed to lookup address information: Name or service not known",
            "unknown host",
        ),
        ("no answer within 10s", "no answer"),
        (
            "IO error: Connection reset by peer (os error 104)",
            "connection reset",
        ),
        (
            "queue hb.svc.a.b is held by another connection; is another process running with the same name and instance?",
            "queue held by another process",
        ),
        (
            "IO error: received corrupt message of type InvalidContentType (TLS)",
            "TLS failed",
        ),
        (
            "IO error: something nobody foresaw happened to the socket today",
            "something nobody foresaw happen…",
        ),
    ] {
        assert_eq!(short_error(error), short, "{error}");
    }
}

#[test]
fn a_stall_of_the_monitor_and_rejected_messages_are_in_the_header() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    app.timeout = secs(3);
    app.update(
        Event::Engine(Update::Link(LinkStatus::Connected)),
        clock.at(secs(1)),
    );
    let calm = screen(&mut app, clock.at(secs(2)), 120, 24);
    assert!(!calm.join("\n").contains("stalled"));
    assert!(!calm.join("\n").contains("rejected"));
    app.update(
        Event::Engine(Update::Stall {
            lag: ms(10_020),
            at: clock.at(secs(12)),
        }),
        clock.at(secs(12)),
    );
    app.update(
        Event::Tick(Traffic {
            published: 10,
            received: 12,
            rejected: 7,
        }),
        clock.at(secs(12)),
    );
    let stalled = screen(&mut app, clock.at(secs(13)), 120, 24);
    assert!(
        stalled[0].contains("● connected  ⚠ monitor stalled 10.0s; judging paused"),
        "{}",
        stalled[0]
    );
    assert!(stalled[2].contains(" · 7 rejected"), "{}", stalled[2]);
    // A timeout later it judges again, and the header stops saying otherwise.
    let later = screen(&mut app, clock.at(secs(15)), 120, 24);
    assert!(!later[0].contains("stalled"), "{}", later[0]);
}

#[test]
fn the_header_names_the_services_whose_echoes_are_not_signed_with_our_key() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    app.signed = true;
    let shown = screen(&mut app, clock.at(secs(1)), 160, 24);
    assert!(
        !shown.join("\n").contains("not signed"),
        "{}",
        shown.join("\n")
    );
    app.misconfigured = vec!["billing".into(), "orders".into()];
    let shown = screen(&mut app, clock.at(secs(2)), 160, 24);
    line_with(&shown, " · not signed with our key: billing, orders");
    app.misconfigured = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let shown = screen(&mut app, clock.at(secs(3)), 160, 24);
    line_with(&shown, " · not signed with our key: a, b, c +2");
}

#[test]
fn the_header_says_when_heartbeats_are_unsigned() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    let shown = screen(&mut app, clock.at(secs(1)), 120, 24);
    line_with(&shown, "heartbeats unsigned (set HEARTBEAT_KEY)");
    app.signed = true;
    let shown = screen(&mut app, clock.at(secs(2)), 120, 24);
    assert!(
        !shown.iter().any(|line| line.contains("unsigned")),
        "{}",
        shown.join("\n")
    );
}

#[test]
fn pausing_freezes_the_screen_but_not_the_monitoring() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    press(&mut app, &clock, secs(30), KeyCode::Char('p'));
    assert!(app.paused());
    transition(
        &mut app,
        &clock,
        secs(31),
        ("search", "search-1"),
        State::Up,
        State::Down,
        Reason::Left,
    );
    let frozen = screen(&mut app, clock.at(secs(40)), 80, 24);
    assert!(frozen[0].contains("PAUSED"));
    // The hint says what p does now.
    assert!(frozen[23].contains("p resume"), "{}", frozen[23]);
    assert!(!frozen[23].contains("p pause"), "{}", frozen[23]);
    // Ages are frozen at the moment of the pause, too.
    assert!(frozen[1].contains("2 up · 2 down") && frozen[1].ends_with("monitor up 40s"));
    assert!(line_with(&frozen, "search-1").contains("UP         29s"));

    press(&mut app, &clock, secs(40), KeyCode::Char('p'));
    let live = screen(&mut app, clock.at(secs(40)), 80, 24);
    assert!(!live[0].contains("PAUSED"));
    assert!(live[23].contains("p pause"), "{}", live[23]);
    assert!(
        live[1].starts_with(" 1 of 5 · 1 up · 3 down"),
        "{}",
        live[1]
    );
    assert!(line_with(&live, "search-1").contains("DOWN       9s"));
}

// ---- keys ----

fn key(app: &mut App, code: KeyCode, modifiers: KeyModifiers) {
    app.update(Event::Key(KeyEvent::new(code, modifiers)), Instant::now());
}

#[test]
fn q_and_ctrl_c_quit_but_esc_never_does() {
    let clock = Clock::new();
    for (code, modifiers) in [
        (KeyCode::Char('q'), KeyModifiers::NONE),
        (KeyCode::Char('c'), KeyModifiers::CONTROL),
    ] {
        let mut app = fleet_mix(&clock);
        assert!(!app.quit);
        key(&mut app, code, modifiers);
        assert!(app.quit, "{code:?} with {modifiers:?} should quit");
    }
    // Esc on the bare list, however often: nothing to back out of, no quitting.
    let mut app = fleet_mix(&clock);
    for _ in 0..3 {
        key(&mut app, KeyCode::Esc, KeyModifiers::NONE);
    }
    assert!(!app.quit);
    assert_eq!(app.screen, Screen::List);
}

#[test]
fn esc_backs_out_of_the_detail_view_the_filter_and_the_help_and_never_quits() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    press(&mut app, &clock, secs(30), KeyCode::Enter);
    assert_eq!(app.screen, Screen::Detail);
    press(&mut app, &clock, secs(30), KeyCode::Esc);
    assert_eq!(app.screen, Screen::List);
    assert!(!app.quit);
    // The second Esc of a habit: still there.
    press(&mut app, &clock, secs(30), KeyCode::Esc);
    assert!(!app.quit);

    press(&mut app, &clock, secs(30), KeyCode::Char('/'));
    type_text(&mut app, &clock, secs(30), "pay");
    press(&mut app, &clock, secs(30), KeyCode::Enter);
    assert_eq!(app.filter, "pay");
    press(&mut app, &clock, secs(30), KeyCode::Esc);
    assert_eq!(app.filter, "");
    assert!(!app.quit);
    press(&mut app, &clock, secs(30), KeyCode::Char('?'));
    press(&mut app, &clock, secs(30), KeyCode::Esc);
    assert!(!app.help);
    press(&mut app, &clock, secs(30), KeyCode::Esc);
    assert!(!app.quit);
}

#[test]
fn arrows_and_j_k_move_within_bounds_and_the_selection_follows_its_instance() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let selected = |app: &App| app.selected_row().unwrap().key.to_string();
    assert_eq!(selected(&app), "orders/orders-2");
    press(&mut app, &clock, secs(30), KeyCode::Char('k'));
    assert_eq!(selected(&app), "orders/orders-2");
    press(&mut app, &clock, secs(30), KeyCode::Down);
    press(&mut app, &clock, secs(30), KeyCode::Char('j'));
    assert_eq!(selected(&app), "payments/payments-1");
    press(&mut app, &clock, secs(30), KeyCode::Up);
    assert_eq!(selected(&app), "orders/orders-1");
    for _ in 0..10 {
        press(&mut app, &clock, secs(30), KeyCode::Down);
    }
    assert_eq!(selected(&app), "search/search-1");

    // search goes DOWN and moves up the list; the selection goes with it.
    transition(
        &mut app,
        &clock,
        secs(31),
        ("search", "search-1"),
        State::Up,
        State::Down,
        Reason::Left,
    );
    app.refresh();
    assert_eq!(selected(&app), "search/search-1");
    assert_eq!(app.selected, 3);

    let mut wheel = |kind| {
        app.update(
            Event::Mouse(MouseEvent {
                kind,
                column: 0,
                row: 5,
                modifiers: KeyModifiers::NONE,
            }),
            clock.at(secs(31)),
        );
        app.selected
    };
    assert_eq!(wheel(MouseEventKind::ScrollUp), 0);
    assert_eq!(wheel(MouseEventKind::ScrollDown), 3);
}

#[test]
fn slash_filters_by_name_and_typed_letters_are_not_commands() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    press(&mut app, &clock, secs(30), KeyCode::Char('/'));
    assert!(app.editing_filter);
    type_text(&mut app, &clock, secs(30), "qsp");
    assert!(!app.quit, "q while typing a filter is a letter");
    assert_eq!(app.sort, Sort::State);
    assert!(!app.paused());
    press(&mut app, &clock, secs(30), KeyCode::Backspace);
    press(&mut app, &clock, secs(30), KeyCode::Backspace);
    press(&mut app, &clock, secs(30), KeyCode::Backspace);
    type_text(&mut app, &clock, secs(30), "ORDERS-1");
    assert_eq!(order(&mut app), ["orders/orders-1"]);
    press(&mut app, &clock, secs(30), KeyCode::Enter);
    assert!(!app.editing_filter);
    assert_eq!(app.filter, "ORDERS-1");
    press(&mut app, &clock, secs(30), KeyCode::Char('/'));
    for _ in 0..8 {
        press(&mut app, &clock, secs(30), KeyCode::Backspace);
    }
    type_text(&mut app, &clock, secs(30), "nothing-like-it");
    press(&mut app, &clock, secs(30), KeyCode::Enter);
    assert!(order(&mut app).is_empty());
    let screen = screen(&mut app, clock.at(secs(30)), 80, 24);
    assert!(line_with(&screen, "nothing matches").contains("\"nothing-like-it\""));
}

#[test]
fn s_cycles_the_sort_state_name_rtt_last_seen() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    assert_eq!(
        order(&mut app),
        [
            "orders/orders-2",
            "orders/orders-1",
            "payments/payments-1",
            "billing/-",
            "search/search-1"
        ]
    );
    press(&mut app, &clock, secs(30), KeyCode::Char('s'));
    assert_eq!(app.sort, Sort::Name);
    assert_eq!(
        order(&mut app),
        [
            "billing/-",
            "orders/orders-1",
            "orders/orders-2",
            "payments/payments-1",
            "search/search-1"
        ]
    );
    press(&mut app, &clock, secs(30), KeyCode::Char('s'));
    assert_eq!(app.sort, Sort::Rtt);
    assert_eq!(order(&mut app)[0], "search/search-1", "slowest first");
    press(&mut app, &clock, secs(30), KeyCode::Char('s'));
    assert_eq!(app.sort, Sort::LastSeen);
    assert_eq!(
        order(&mut app)[..3],
        ["billing/-", "payments/payments-1", "orders/orders-2"],
        "longest silent first"
    );
    press(&mut app, &clock, secs(30), KeyCode::Char('s'));
    assert_eq!(app.sort, Sort::State);
}

#[test]
fn help_opens_with_question_mark_and_closes_without_quitting() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    press(&mut app, &clock, secs(30), KeyCode::Char('?'));
    assert!(app.help);
    press(&mut app, &clock, secs(30), KeyCode::Char('j'));
    assert_eq!(
        app.selected, 0,
        "keys other than closing ones are ignored under help"
    );
    press(&mut app, &clock, secs(30), KeyCode::Esc);
    assert!(!app.help);
    assert!(!app.quit);
}

#[test]
fn demo_keys_stop_crash_and_revive_the_selected_service_only_in_the_demo() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    press(&mut app, &clock, secs(30), KeyCode::Char('x'));
    assert!(app.commands.is_empty(), "not a demo");

    app.demo = true;
    let id = Identity::new("orders", "orders-2").unwrap();
    for (letter, command) in [
        ('x', FleetCommand::Stop(id.clone())),
        ('c', FleetCommand::Crash(id.clone())),
        ('r', FleetCommand::Start(id.clone())),
    ] {
        press(&mut app, &clock, secs(30), KeyCode::Char(letter));
        assert_eq!(app.commands.drain(..).collect::<Vec<_>>(), [command]);
    }
    // The placeholder of a never-seen service has nothing to act on.
    press(&mut app, &clock, secs(30), KeyCode::Char('j'));
    press(&mut app, &clock, secs(30), KeyCode::Char('j'));
    press(&mut app, &clock, secs(30), KeyCode::Char('j'));
    assert_eq!(app.selected_row().unwrap().key.to_string(), "billing/-");
    press(&mut app, &clock, secs(30), KeyCode::Char('x'));
    assert!(app.commands.is_empty());
}

#[test]
fn an_expected_service_placeholder_gives_way_to_its_first_instance() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &["billing"]);
    app.refresh();
    assert_eq!(order(&mut app), ["billing/-"]);
    up(&mut app, &clock, secs(2), ("billing", "billing-7"));
    app.refresh();
    assert_eq!(order(&mut app), ["billing/billing-7"]);
}

#[test]
fn echoes_find_their_row_by_id_after_rows_move_and_ids_change() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        echo_as(
            &mut app,
            &clock,
            secs(1),
            ("orders", name),
            Some(i as u64),
            1,
            ms(1),
        );
    }
    let rtt = |app: &App, name: &str| {
        app.shown()
            .row(&InstanceKey::new("orders", name))
            .and_then(|row| row.last_rtt())
    };
    // Forgetting a moves c into its place: c's id must follow it.
    app.update(
        Event::Engine(Update::Forgotten(std::sync::Arc::new([InstanceKey::new(
            "orders", "a",
        )]))),
        clock.at(secs(2)),
    );
    echo_as(
        &mut app,
        &clock,
        secs(3),
        ("orders", "c"),
        Some(2),
        2,
        ms(7),
    );
    assert_eq!(rtt(&app, "c"), Some(ms(7)));
    assert_eq!(rtt(&app, "b"), Some(ms(1)));
    // a met again under a new id: a row of its own, b and c untouched.
    echo_as(
        &mut app,
        &clock,
        secs(4),
        ("orders", "a"),
        Some(9),
        3,
        ms(5),
    );
    assert_eq!(rtt(&app, "a"), Some(ms(5)));
    // b under a new id (the detector forgot it while we still showed it):
    // the same row, and the old id is let go.
    echo_as(
        &mut app,
        &clock,
        secs(5),
        ("orders", "b"),
        Some(10),
        4,
        ms(8),
    );
    assert_eq!(rtt(&app, "b"), Some(ms(8)));
    assert_eq!(app.shown().rows.len(), 3);
    assert_eq!(app.shown().ids(), 3);
}

#[test]
fn forgotten_instances_leave_the_table_and_the_selection_moves_on() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    up(&mut app, &clock, secs(1), ("orders", "a"));
    up(&mut app, &clock, secs(1), ("orders", "b"));
    up(&mut app, &clock, secs(1), ("search", "c"));
    // The detail view is open on orders/b when the engine forgets it.
    press(&mut app, &clock, secs(2), KeyCode::Down);
    assert_eq!(app.selected_row().unwrap().key.to_string(), "orders/b");
    press(&mut app, &clock, secs(2), KeyCode::Enter);
    assert_eq!(app.screen, Screen::Detail);
    app.update(
        Event::Engine(Update::Forgotten(std::sync::Arc::new([
            InstanceKey::new("orders", "b"),
            InstanceKey::new("search", "c"),
        ]))),
        clock.at(secs(3)),
    );
    assert_eq!(order(&mut app), ["orders/a"]);
    assert_eq!(
        app.shown()
            .row(&InstanceKey::new("orders", "b"))
            .map(|row| row.state),
        None
    );
    // The selection moves to what is left of its service, and the detail
    // view, whose instance is gone, gives way to the list.
    assert_eq!(app.selected_row().unwrap().key.to_string(), "orders/a");
    assert_eq!(app.screen, Screen::List);
    // No row for it; the event log (bounded) still tells what happened.
    let shown = screen(&mut app, clock.at(secs(3)), 100, 20);
    assert!(
        !shown.iter().any(|line| line.starts_with("search")),
        "{}",
        shown.join("\n")
    );
}

#[test]
fn a_state_filter_that_matches_nothing_says_so() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    up(&mut app, &clock, secs(1), ("orders", "a"));
    for _ in 0..10 {
        if app.state_filter == Some(State::Down) {
            break;
        }
        press(&mut app, &clock, secs(2), KeyCode::Char('f'));
    }
    assert_eq!(app.state_filter, Some(State::Down));
    let shown = screen(&mut app, clock.at(secs(2)), 100, 20);
    line_with(&shown, "nothing is DOWN now (f shows the next state)");
    assert!(
        !shown
            .iter()
            .any(|line| line.contains("waiting for the first echo"))
    );
}

#[test]
fn missed_pings_count_the_pings_left_unanswered() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    up(&mut app, &clock, secs(1), ("a", "a-1"));
    for seq in 1..=10 {
        ping(&mut app, &clock, secs(seq), seq);
        // Answers 1..=5 and 8, drops 6, 7, 9 and 10.
        if seq <= 5 || seq == 8 {
            echo(
                &mut app,
                &clock,
                secs(seq) + ms(1),
                ("a", "a-1"),
                seq,
                ms(1),
            );
        }
    }
    let key = InstanceKey::new("a", "a-1");
    // 6, 7 and 9 each had a full interval and went unanswered; 10 is still in flight.
    assert_eq!(app.shown().row(&key).unwrap().missed, 3);
}

#[test]
fn missed_pings_stop_counting_after_a_goodbye_and_resume_after_a_rejoin() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    up(&mut app, &clock, secs(1), ("a", "a-1"));
    for seq in 1..=3 {
        ping(&mut app, &clock, secs(seq), seq);
        echo(
            &mut app,
            &clock,
            secs(seq) + ms(1),
            ("a", "a-1"),
            seq,
            ms(1),
        );
    }
    transition(
        &mut app,
        &clock,
        secs(3) + ms(500),
        ("a", "a-1"),
        State::Up,
        State::Left,
        Reason::Left,
    );
    for seq in 4..=10 {
        ping(&mut app, &clock, secs(seq), seq);
    }
    let key = InstanceKey::new("a", "a-1");
    assert_eq!(
        app.shown().row(&key).unwrap().missed,
        0,
        "a planned shutdown misses nothing"
    );
    // Back: the engine sends the echo just before the transition it causes.
    echo(&mut app, &clock, secs(10) + ms(1), ("a", "a-1"), 10, ms(1));
    transition(
        &mut app,
        &clock,
        secs(10) + ms(1),
        ("a", "a-1"),
        State::Left,
        State::Up,
        Reason::Rejoined,
    );
    for seq in 11..=13 {
        ping(&mut app, &clock, secs(seq), seq);
    }
    // 11 and 12 went unanswered with a full interval each; 13 is in flight.
    assert_eq!(app.shown().row(&key).unwrap().missed, 2);
}

#[test]
fn uptime_of_a_discovered_instance_counts_from_its_first_echo() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    // The engine sends the echo just before the transition it causes.
    echo(&mut app, &clock, secs(1), ("a", "a-1"), 1, ms(1));
    up(&mut app, &clock, secs(1) + ms(5), ("a", "a-1"));
    transition(
        &mut app,
        &clock,
        secs(7) + ms(5),
        ("a", "a-1"),
        State::Up,
        State::Down,
        Reason::Left,
    );
    let row = app.shown().row(&InstanceKey::new("a", "a-1")).unwrap();
    let uptime = row.uptime(clock.at(secs(9) + ms(5))).unwrap();
    let ratio = uptime.ratio.unwrap();
    assert!((ratio - 0.75).abs() < 1e-9, "{uptime:?}");
    assert_eq!(uptime.coverage, 1.0, "{uptime:?}");
}

#[test]
fn an_earlier_runs_history_shows_below_this_runs_with_stored_uptimes() {
    use crate::history::{Health, Past, StoredTransition};
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    up(&mut app, &clock, secs(1), ("orders", "o-1"));
    let earlier = |minute: u32, from: &str, to: &str, reason: &str| StoredTransition {
        at_ms: Utc
            .with_ymd_and_hms(2026, 11, 22, 9, minute, 0)
            .unwrap()
            .timestamp_millis(),
        service: "orders".into(),
        instance: "o-1".into(),
        from: from.into(),
        to: to.into(),
        reason: reason.into(),
        rtt_ms: None,
        silent_ms: None,
    };
    app.past = Past {
        transitions: vec![
            earlier(5, "down", "up", "recovered"),
            earlier(4, "up", "down", "timed_out"),
        ],
        uptime: Default::default(),
    };
    // The store's uptimes, as the loader puts them into the model.
    let figure = |ratio, coverage| {
        Some(crate::fleet::UptimeFigure {
            ratio: Some(ratio),
            coverage,
        })
    };
    app.fleet.stored_uptime = [(
        InstanceKey::new("orders", "o-1"),
        [figure(0.999, 1.0), figure(0.5, 0.25), None],
    )]
    .into();
    let health = std::sync::Arc::new(Health::default());
    app.history = Some(health.clone());
    let now = clock.at(secs(2));
    let list = screen(&mut app, now, 80, 24);
    let log = list
        .iter()
        .position(|l| l.starts_with(" events, newest first"))
        .unwrap();
    assert!(
        list[log + 1].contains("orders/o-1 NEVER SEEN → UP"),
        "{list:#?}"
    );
    assert_eq!(
        list[log + 2],
        " 11-22 09:05:00Z orders/o-1 DOWN → UP  recovered (earlier run)"
    );
    assert_eq!(
        list[log + 3],
        " 11-22 09:04:00Z orders/o-1 UP → DOWN  timed out (earlier run)"
    );
    // A store that cannot be written is said in the header.
    assert!(line_with(&list, "history store unreachable").starts_with(" msg/s"));

    press(&mut app, &clock, secs(2), KeyCode::Enter);
    let detail = screen(&mut app, now, 100, 24);
    assert!(
        detail[5].starts_with(
            " uptime 100.00% · 24h 99.90% · 7d 50.00% (25% judged) · 30d - · missed pings 0"
        ),
        "{}",
        detail[5]
    );
    let history = detail
        .iter()
        .position(|l| l.starts_with(" transitions, newest first"))
        .unwrap();
    assert!(detail[history + 1].contains("NEVER SEEN → UP  first seen"));
    assert!(detail[history + 2].ends_with("DOWN → UP  recovered (earlier run)"));

    health
        .reachable
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let list = screen(&mut app, now, 80, 24);
    assert!(!list.join("\n").contains("unreachable"));
}

fn phi_echo(app: &mut App, clock: &Clock, at: Duration, key: (&str, &str), seq: u64) {
    let model = crate::detector::PhiModel {
        mean: 1.0,
        std_dev: 0.2,
        threshold: 8.0,
        params: crate::detector::PhiParams {
            min_std_dev: ms(100),
            acceptable_pause: Duration::ZERO,
        },
    };
    app.update(
        Event::Engine(Update::Echoes(std::sync::Arc::new([
            crate::update::EchoSeen {
                key: InstanceKey::new(key.0, key.1),
                id: id_of(&InstanceKey::new(key.0, key.1)),
                seq,
                rtt: Some(ms(2)),
                phi: Some(model),
                at: clock.at(at),
            },
        ]))),
        clock.at(at),
    );
}

#[test]
fn new_states_are_coloured_filtered_by_f_and_phi_has_a_column_and_a_history() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    app.fleet.expected.insert("orders".into(), 3);
    for (i, name) in ["orders", "flappy", "stale", "gone"]
        .into_iter()
        .enumerate()
    {
        up(&mut app, &clock, secs(1), (name, "a"));
        phi_echo(&mut app, &clock, secs(1) + ms(i as u64), (name, "a"), 1);
        phi_echo(&mut app, &clock, secs(2), (name, "a"), 2);
    }
    // Echoes 1.0 s apart, then one 1.6 s later: phi just before it was
    // phi(1.6 s; mean 1 s, deviation 0.2 s) = 2.91 (worked by hand in phi.rs).
    phi_echo(&mut app, &clock, ms(3600), ("orders", "a"), 3);
    let change = |app: &mut App, name, from, to, reason| {
        transition(app, &clock, secs(4), (name, "a"), from, to, reason)
    };
    change(
        &mut app,
        "flappy",
        State::Up,
        State::Flapping,
        Reason::Flapping { changes: 6 },
    );
    change(
        &mut app,
        "stale",
        State::Up,
        State::Stale,
        Reason::Stale(crate::detector::Blindness::LinkDown),
    );
    change(&mut app, "gone", State::Up, State::Left, Reason::Left);

    let now = clock.at(ms(4100));
    let list = screen(&mut app, now, 120, 24);
    assert!(list[3].contains(" PHI "), "{}", list[3]);
    // Needing a look first, then a planned exit, then UP; one of three is degraded.
    let table: Vec<&str> = list[4..8].iter().map(|l| &l[..40]).collect();
    assert_eq!(
        table,
        [
            "flappy           a              FLAPPING",
            "stale            a              STALE   ",
            "gone             a              LEFT    ",
            "orders 1/3       a              UP      ",
        ]
    );
    assert!(
        list[1].contains("1 flapping · 1 stale · 1 left"),
        "{}",
        list[1]
    );

    // f: one state at a time, in State::ALL's order; Esc shows all again.
    for _ in 0..7 {
        press(&mut app, &clock, secs(4), KeyCode::Char('f'));
    }
    assert_eq!(app.state_filter, Some(State::Flapping));
    let filtered = screen(&mut app, now, 120, 24);
    assert!(
        filtered[4].starts_with("flappy") && filtered[5].is_empty(),
        "{filtered:#?}"
    );
    press(&mut app, &clock, secs(4), KeyCode::Esc);
    assert_eq!(app.state_filter, None);

    // The detail view: phi now, its threshold, and phi before each echo.
    press(&mut app, &clock, secs(4), KeyCode::End);
    press(&mut app, &clock, secs(4), KeyCode::Enter);
    let row = app.selected_row().unwrap();
    assert_eq!(row.key.service, "orders");
    assert_eq!(row.phi_history.len(), 2);
    assert!(
        (row.phi_history.last().unwrap() - 2.909).abs() < 0.01,
        "{:?}",
        row.phi_history
    );
    let detail = screen(&mut app, now, 80, 30);
    assert!(detail[5].contains("(threshold 8.0)"), "{detail:#?}");
    assert!(
        detail
            .iter()
            .any(|l| l.contains("phi before each echo, last 2")),
        "{detail:#?}"
    );
}

// ---- filters, selection and sorting ----

#[test]
fn a_filter_says_how_many_rows_it_shows_and_the_log_keeps_to_them() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let now = clock.at(secs(30) + ms(500));
    let unfiltered = screen(&mut app, now, 100, 24);
    assert!(!unfiltered[1].contains("showing"), "{}", unfiltered[1]);
    line_with(&unfiltered, " events, newest first ");
    line_with(&unfiltered, "payments/payments-1 UP → DOWN");

    press(&mut app, &clock, secs(30), KeyCode::Char('/'));
    type_text(&mut app, &clock, secs(30), "orders");
    press(&mut app, &clock, secs(30), KeyCode::Enter);
    let filtered = screen(&mut app, now, 100, 24);
    assert!(
        filtered[1].starts_with(" 1 of 2 · showing 2 of 5 · 2 up · 2 down"),
        "{}",
        filtered[1]
    );
    let title = line_with(&filtered, "events of the rows shown, newest first");
    let at = filtered.iter().position(|l| l == title).unwrap();
    assert_eq!(
        filtered[at + 1],
        " 12:00:24.000Z orders/orders-2 UP → DOWN  timed out: silent for 3.1s"
    );
    assert!(
        !filtered.join("\n").contains("payments/payments-1"),
        "{filtered:#?}"
    );

    // A state filter counts the same way.
    press(&mut app, &clock, secs(30), KeyCode::Esc);
    while app.state_filter != Some(State::Down) {
        press(&mut app, &clock, secs(30), KeyCode::Char('f'));
    }
    let by_state = screen(&mut app, now, 100, 24);
    assert!(
        by_state[1].starts_with(" 1 of 2 · showing 2 of 5 ·"),
        "{}",
        by_state[1]
    );
    line_with(&by_state, "payments/payments-1 UP → DOWN");
    assert!(!by_state.join("\n").contains("search/search-1"));
}

#[test]
fn the_selection_starts_on_the_top_row_until_the_user_moves_it() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    let selected = |app: &App| app.selected_row().unwrap().key.to_string();
    // The first to answer sorts below the ones after it.
    up(&mut app, &clock, secs(1), ("zeta", "z-1"));
    app.refresh();
    assert_eq!(selected(&app), "zeta/z-1");
    up(&mut app, &clock, secs(1), ("alpha", "a-1"));
    app.refresh();
    assert_eq!(app.selected, 0);
    assert_eq!(selected(&app), "alpha/a-1");

    // Once the user has chosen, the selection follows its instance.
    press(&mut app, &clock, secs(2), KeyCode::Char('j'));
    assert_eq!(selected(&app), "zeta/z-1");
    up(&mut app, &clock, secs(3), ("beta", "b-1"));
    app.refresh();
    assert_eq!(selected(&app), "zeta/z-1");
    assert_eq!(app.selected, 2);
}

#[test]
fn sorting_by_rtt_uses_the_median_and_reorders_at_most_every_few_seconds() {
    let clock = Clock::new();
    let mut app = new_app(&clock, &[]);
    up(&mut app, &clock, secs(1), ("steady", "s-1"));
    up(&mut app, &clock, secs(1), ("jumpy", "j-1"));
    let tick = |app: &mut App, at: Duration| {
        app.update(Event::Tick(Traffic::default()), clock.at(at));
        app.refresh();
    };
    let mut at = secs(1);
    for seq in 1..=20u64 {
        at += ms(250);
        // jumpy's last round trip is above or below steady's by turns; its median is below.
        let jumpy = if seq % 3 == 0 { 9 } else { 1 };
        echo(&mut app, &clock, at, ("jumpy", "j-1"), seq, ms(jumpy));
        echo(&mut app, &clock, at, ("steady", "s-1"), seq, ms(5));
        tick(&mut app, at);
    }
    while app.sort != Sort::Rtt {
        press(&mut app, &clock, at, KeyCode::Char('s'));
    }
    assert_eq!(
        order(&mut app),
        ["steady/s-1", "jumpy/j-1"],
        "slowest p50 first"
    );
    // Every frame for a while: the last round trip flips, the order does not.
    for seq in 21..=32u64 {
        at += ms(250);
        let jumpy = if seq % 2 == 0 { 9 } else { 1 };
        echo(&mut app, &clock, at, ("jumpy", "j-1"), seq, ms(jumpy));
        echo(&mut app, &clock, at, ("steady", "s-1"), seq, ms(5));
        tick(&mut app, at);
        assert_eq!(order(&mut app), ["steady/s-1", "jumpy/j-1"], "at seq {seq}");
    }
    // jumpy turns slow for good: its median overtakes, and the order follows
    // at the next re-sort, not at the first echo.
    let mut changed_at = None;
    for seq in 33..=80u64 {
        at += ms(250);
        echo(&mut app, &clock, at, ("jumpy", "j-1"), seq, ms(20));
        echo(&mut app, &clock, at, ("steady", "s-1"), seq, ms(5));
        tick(&mut app, at);
        if changed_at.is_none() && order(&mut app)[0] == "jumpy/j-1" {
            changed_at = Some(seq);
        }
    }
    let changed_at = changed_at.expect("the order follows a lasting change");
    // The median turns after about half the window of 120 samples, and
    // the order follows within one re-sort interval of that.
    let seqs = |d: Duration| d.as_millis() as u64 / 250;
    let window_half = app
        .shown()
        .row(&InstanceKey::new("jumpy", "j-1"))
        .unwrap()
        .rtts
        .len() as u64
        / 2;
    assert!(
        changed_at > 32 && changed_at <= 32 + window_half + seqs(super::state::RESORT_EVERY) + 1,
        "changed at {changed_at}"
    );
}

#[test]
fn the_sorted_column_shows_its_direction_and_capital_s_reverses_it() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let now = clock.at(secs(30) + ms(500));
    let shown = screen(&mut app, now, 80, 24);
    assert!(shown[3].contains("STATE↓"), "{}", shown[3]);
    assert!(shown[23].contains("s sort:state↓"), "{}", shown[23]);
    press(&mut app, &clock, secs(30), KeyCode::Char('S'));
    assert!(app.reversed);
    let shown = screen(&mut app, now, 80, 24);
    assert!(shown[3].contains("STATE↑"), "{}", shown[3]);
    assert_eq!(
        order(&mut app),
        [
            "search/search-1",
            "billing/-",
            "payments/payments-1",
            "orders/orders-1",
            "orders/orders-2"
        ]
    );
    press(&mut app, &clock, secs(30), KeyCode::Char('s'));
    let shown = screen(&mut app, now, 80, 24);
    assert!(shown[3].starts_with("SERVICE↑"), "{}", shown[3]);
    assert_eq!(order(&mut app)[0], "search/search-1", "Z to A");
    press(&mut app, &clock, secs(30), KeyCode::Char('S'));
    assert_eq!(order(&mut app)[0], "billing/-", "A to Z");
}

// ---- small and large terminals ----

#[test]
fn at_40_by_10_cut_text_ends_with_an_ellipsis_and_instances_stay_apart() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let now = clock.at(secs(30) + ms(500));
    let shown = screen(&mut app, now, 40, 10);
    // Every header line is too long for 40 columns: each says it was cut.
    for line in &shown[..3] {
        assert_eq!(line.chars().count(), 40, "{line:?}");
        assert!(line.ends_with('…'), "{line:?}");
    }
    assert!(shown[0].starts_with(" heartbeat  ● connected  amqp://"));
    // orders has two instances: INSTANCE stays, and the names share the width.
    assert_eq!(shown[3], "SERVICE        INSTANCE       STATE↓");
    assert_eq!(shown[4], "orders 1/2     orders-2       DOWN");
    assert_eq!(shown[5], "  ·            orders-1       UP");
    assert_eq!(shown[9], " q quit  ⏎ detail  / filter  ? help");

    // Long names are cut with `…`: a service at its end (the count stays
    // whole), an instance in its middle, where ids tend to differ.
    let mut app = new_app(&clock, &[]);
    for instance in ["checkout-7f9c8d6b5-x2x9q", "checkout-7f9c8d6b5-k8m2p"] {
        up(
            &mut app,
            &clock,
            secs(1),
            ("payments-gateway-eu-west", instance),
        );
    }
    let shown = screen(&mut app, clock.at(secs(2)), 40, 10);
    assert_eq!(shown[4], "payments-… 2/2 checkou…-k8m2p UP");
    assert_eq!(shown[5], "  ·            checkou…-x2x9q UP");
}

#[test]
fn at_40_by_10_the_help_shows_the_log_file_first_and_scrolls() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    app.log_path = Some("/home/someone/.local/state/heartbeat/monitor.log".into());
    press(&mut app, &clock, secs(30), KeyCode::Char('?'));
    let now = clock.at(secs(30));
    let top = screen(&mut app, now, 40, 10);
    let text = top.join("\n");
    // The whole path, wrapped inside the box rather than cut by the screen.
    assert!(top[0].starts_with("┌ keys ↑↓ 1/"), "{text}");
    assert!(
        top[1].contains(" logs: /home/someone/.local/state/hear"),
        "{text}"
    );
    assert!(top[2].contains("tbeat/monitor.log"), "{text}");
    // Descriptions wrap rather than lose their ends.
    assert!(!text.contains('…'), "{text}");
    assert!(top.iter().all(|l| l.chars().count() <= 40));
    assert_eq!(top[9].chars().next(), Some('└'), "{text}");

    // Scrolling down reaches the states at the end, and no further.
    press(&mut app, &clock, secs(30), KeyCode::End);
    let bottom = screen(&mut app, now, 40, 10);
    assert!(bottom[8].contains("NEVER SEEN"), "{}", bottom.join("\n"));
    let end = app.help_scroll;
    press(&mut app, &clock, secs(30), KeyCode::Down);
    assert_eq!(app.help_scroll, end);
    press(&mut app, &clock, secs(30), KeyCode::Up);
    assert_eq!(app.help_scroll, end - 1);
    // Every key is in it somewhere.
    let mut seen = String::new();
    press(&mut app, &clock, secs(30), KeyCode::Home);
    for _ in 0..=end {
        seen.push_str(&screen(&mut app, now, 40, 10).join("\n"));
        press(&mut app, &clock, secs(30), KeyCode::Down);
    }
    for (keys, _) in super::help::keys(false) {
        assert!(seen.contains(keys), "{keys} missing");
    }
    assert!(!app.quit && app.help);
}

#[test]
fn at_160_by_45_every_column_the_log_and_the_whole_help_fit() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    app.log_path = Some("/tmp/state/heartbeat/monitor.log".into());
    let now = clock.at(secs(30) + ms(500));
    let shown = screen(&mut app, now, 160, 45);
    assert_eq!(
        shown[3],
        "SERVICE          INSTANCE       STATE↓     FOR     LAST ECHO  RTT      P50      P99      TREND      UPTIME  MISSED"
    );
    assert!(!shown.iter().any(|l| l.contains('…')), "{shown:#?}");
    let log = shown
        .iter()
        .position(|l| l.starts_with(" events, newest first"))
        .unwrap();
    // The log's most at this height: nine lines under its title.
    assert_eq!(shown.len() - 1 - log - 1, 9);
    press(&mut app, &clock, secs(30), KeyCode::Char('?'));
    let help = screen(&mut app, now, 160, 45);
    let top = help.iter().find(|l| l.contains("┌ keys")).unwrap();
    assert!(top.contains("┌ keys ─"), "no scrolling needed: {top}");
    line_with(&help, "logs: /tmp/state/heartbeat/monitor.log");
    // Every state's description whole, none cut.
    for (_, what) in super::help::STATE_HELP {
        line_with(&help, what);
    }
}

// ---- fleets ----

fn mouse(app: &mut App, clock: &Clock, at: Duration, kind: MouseEventKind, row: u16) {
    app.update(
        Event::Mouse(MouseEvent {
            kind,
            column: 10,
            row,
            modifiers: KeyModifiers::NONE,
        }),
        clock.at(at),
    );
}

#[test]
fn space_folds_a_service_into_one_row_and_z_folds_them_all() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let now = clock.at(secs(30) + ms(500));
    press(&mut app, &clock, secs(30), KeyCode::Char(' '));
    assert!(app.is_collapsed("orders"));
    assert_eq!(
        order(&mut app),
        [
            "orders/orders-2",
            "payments/payments-1",
            "billing/-",
            "search/search-1"
        ]
    );
    let shown = screen(&mut app, now, 120, 24);
    // The whole service: its worst state, how many are UP, its worst round trip.
    assert!(
        shown[4].starts_with("orders 1/2       ▸ 2 instances  DOWN       6s      10s ago    3.0ms"),
        "{}",
        shown[4]
    );
    assert!(
        shown[5].starts_with("payments         payments-1"),
        "{}",
        shown[5]
    );
    assert_eq!(app.selected_row().unwrap().key.service, "orders");
    press(&mut app, &clock, secs(30), KeyCode::Char(' '));
    assert_eq!(order(&mut app).len(), 5);

    // z folds every service; a service of one says so too.
    press(&mut app, &clock, secs(30), KeyCode::Char('z'));
    let shown = screen(&mut app, now, 120, 24);
    assert!(
        shown[5].starts_with("payments 0/1     ▸ 1 instance   DOWN"),
        "{}",
        shown[5]
    );
    assert!(
        shown[7].starts_with("search 1/1       ▸ 1 instance   UP"),
        "{}",
        shown[7]
    );
    press(&mut app, &clock, secs(30), KeyCode::Char('z'));
    assert!(app.collapsed.is_empty());
    assert_eq!(order(&mut app).len(), 5);
}

#[test]
fn t_shows_only_what_is_not_up_and_n_jumps_to_the_next_trouble() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    let selected = |app: &App| app.selected_row().unwrap().key.to_string();
    // n from the top: the next row that is not UP, wrapping around.
    for expected in [
        "payments/payments-1",
        "billing/-",
        "orders/orders-2",
        "payments/payments-1",
    ] {
        press(&mut app, &clock, secs(30), KeyCode::Char('n'));
        assert_eq!(selected(&app), expected);
    }

    press(&mut app, &clock, secs(30), KeyCode::Char('t'));
    assert_eq!(
        order(&mut app),
        ["orders/orders-2", "payments/payments-1", "billing/-"]
    );
    let shown = screen(&mut app, clock.at(secs(30)), 100, 24);
    assert!(
        shown[1].starts_with(" 2 of 3 · showing 3 of 5 ·"),
        "{}",
        shown[1]
    );
    press(&mut app, &clock, secs(30), KeyCode::Char('t'));
    assert_eq!(order(&mut app).len(), 5);

    // With everything UP there is nothing to show, and it says why.
    let mut calm = new_app(&clock, &[]);
    up(&mut calm, &clock, secs(1), ("a", "a-1"));
    press(&mut calm, &clock, secs(2), KeyCode::Char('t'));
    press(&mut calm, &clock, secs(2), KeyCode::Char('n'));
    let shown = screen(&mut calm, clock.at(secs(2)), 80, 24);
    line_with(&shown, "everything is UP (t shows every row)");
}

#[test]
fn a_click_selects_a_row_and_a_double_click_opens_it() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    app.update(Event::Resize(80, 24), clock.at(secs(30)));
    let first = super::layout::TABLE_FIRST_ROW;
    mouse(
        &mut app,
        &clock,
        secs(30),
        MouseEventKind::Down(MouseButton::Left),
        first + 2,
    );
    assert_eq!(
        app.selected_row().unwrap().key.to_string(),
        "payments/payments-1"
    );
    assert_eq!(app.screen, Screen::List);
    // A second click, too late to be a double one: still the list.
    mouse(
        &mut app,
        &clock,
        secs(31),
        MouseEventKind::Down(MouseButton::Left),
        first + 2,
    );
    assert_eq!(app.screen, Screen::List);
    mouse(
        &mut app,
        &clock,
        secs(31) + ms(250),
        MouseEventKind::Down(MouseButton::Left),
        first + 2,
    );
    assert_eq!(app.screen, Screen::Detail);
    assert_eq!(
        app.selected_row().unwrap().key.to_string(),
        "payments/payments-1"
    );
    // Clicks on the header or below the rows select nothing.
    press(&mut app, &clock, secs(32), KeyCode::Esc);
    mouse(
        &mut app,
        &clock,
        secs(33),
        MouseEventKind::Down(MouseButton::Left),
        1,
    );
    mouse(
        &mut app,
        &clock,
        secs(34),
        MouseEventKind::Down(MouseButton::Left),
        first + 12,
    );
    assert_eq!(
        app.selected_row().unwrap().key.to_string(),
        "payments/payments-1"
    );
    // Two clicks on different rows are no double click.
    mouse(
        &mut app,
        &clock,
        secs(35),
        MouseEventKind::Down(MouseButton::Left),
        first,
    );
    mouse(
        &mut app,
        &clock,
        secs(35) + ms(100),
        MouseEventKind::Down(MouseButton::Left),
        first + 1,
    );
    assert_eq!(app.screen, Screen::List);
    assert_eq!(
        app.selected_row().unwrap().key.to_string(),
        "orders/orders-1"
    );
}

#[test]
fn without_colour_nothing_is_coloured_and_every_state_is_still_a_word() {
    let clock = Clock::new();
    let mut app = fleet_mix(&clock);
    app.colour = false;
    let terminal = render(&mut app, clock.at(secs(30) + ms(500)), 120, 24);
    let buffer = terminal.backend().buffer();
    assert!(
        buffer
            .content
            .iter()
            .all(|cell| cell.fg == Color::Reset && cell.bg == Color::Reset)
    );
    // Emphasis is not colour: the selection still stands out.
    assert!(
        buffer[(0, 4)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
    let screen = lines(&terminal);
    assert!(line_with(&screen, "orders-2").contains(" DOWN "));
    assert!(line_with(&screen, "search-1").contains(" UP "));
    assert!(line_with(&screen, "billing").contains(" NEVER SEEN "));
}
