//! Reconnection against a broker that dies: this test starts its own
//! RabbitMQ node, on its own ports and data directory, and kills it. The
//! shared broker on 5672 is never touched.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Fast reconnects; and the fixed timeout, whose 2 s these tests' "no false
/// alarm" windows are sized for (phi at a 200 ms interval is far quicker).
fn with_fast_reconnect(mut command: Command) -> Command {
    command
        .env("MONITOR__BROKER__RECONNECT_MAX", "500ms")
        .env("MONITOR__DETECTION__MODE", "fixed");
    command
}

/// Both processes logged a second " connected": they reconnected on their own.
fn wait_both_reconnected(monitor: &Proc, mock: &Proc) {
    let reconnected = |p: &Proc| p.stderr().matches(" connected").count() >= 2;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(reconnected(monitor) && reconnected(mock)) {
        assert!(
            Instant::now() < deadline,
            "no reconnect.\nmonitor:\n{}\nmock:\n{}",
            monitor.stderr(),
            mock.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn services_stay_up_through_a_broker_crash_and_detection_resumes_after() {
    let mut node = PrivateBroker::start();
    let url = node.url();
    let name = unique("survivor");

    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", &url, "--id", &unique("mon")])
        .args(["--interval", "200ms", "--timeout", "2s"]);
    let mut monitor = Proc::spawn("monitor", with_fast_reconnect(command));
    let mut command = Command::new(mock_bin());
    command.args(["--url", &url, "--name", &name, "--instance", "s-1"]);
    let mut mock = Proc::spawn("mock", with_fast_reconnect(command));

    monitor.wait_json(
        Duration::from_secs(15),
        "first seen",
        transition(&name, "up", "first_seen"),
    );

    node.kill();
    monitor.wait_stderr(Duration::from_secs(10), "unreachable");
    mock.wait_stderr(Duration::from_secs(10), "unreachable");
    node.spawn();
    wait_both_reconnected(&monitor, &mock);

    // No false alarm: the outage was the broker's, and the service answered
    // again once back. Watch for longer than grace + timeout to be sure.
    monitor.expect_no_json(Duration::from_millis(3500), "a false alarm", |v| {
        false_alarm(v, &name)
    });

    // Detection works on the new connection: a crash is seen again.
    mock.kill();
    monitor.wait_json(
        Duration::from_secs(5),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
}

#[test]
fn a_connection_closed_by_the_broker_is_reopened_without_a_false_down() {
    let node = PrivateBroker::start();
    let url = node.url();
    let name = unique("closed");

    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", &url, "--id", &unique("mon")])
        .args(["--interval", "200ms", "--timeout", "2s"]);
    let mut monitor = Proc::spawn("monitor", with_fast_reconnect(command));
    let mut command = Command::new(mock_bin());
    command.args(["--url", &url, "--name", &name, "--instance", "s-1"]);
    let mock = Proc::spawn("mock", with_fast_reconnect(command));
    monitor.wait_json(
        Duration::from_secs(15),
        "first seen",
        transition(&name, "up", "first_seen"),
    );

    node.close_all_connections();
    // The monitor says it cannot judge, and shows the service STALE, not DOWN.
    let link = monitor.wait_json(Duration::from_secs(5), "a link line", |v| {
        v["kind"] == "link" && v["judging"] == false
    });
    assert_ne!(link["status"], "connected", "{link}");
    let stale = monitor.wait_json(
        Duration::from_secs(5),
        "stale",
        transition(&name, "stale", "link_down"),
    );
    assert_eq!(stale["from"], "up");
    wait_both_reconnected(&monitor, &mock);
    monitor.wait_json(Duration::from_secs(10), "judging again", |v| {
        v["kind"] == "link" && v["status"] == "connected" && v["judging"] == true
    });
    let up = monitor.wait_json(
        Duration::from_secs(10),
        "up again",
        transition(&name, "up", "recovered"),
    );
    assert_eq!(up["from"], "stale");
    // Nothing in between, or for grace + timeout after, said SUSPECT or DOWN.
    monitor.expect_no_json(Duration::from_millis(3000), "a false alarm", |v| {
        false_alarm(v, &name)
    });
}

fn false_alarm(line: &serde_json::Value, name: &str) -> bool {
    line["service"] == name && (line["to"] == "down" || line["to"] == "suspect")
}

/// `link.broker` in a monitor's status document.
fn broker_in_use(base: &str) -> Option<String> {
    status_document(base)["link"]["broker"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn with_two_brokers_the_monitor_and_services_move_to_the_second_without_a_false_down() {
    let mut first = PrivateBroker::start();
    let second = PrivateBroker::start();
    let urls = format!("{},{}", first.url(), second.url());
    let redacted = |url: String| url.replace("guest:guest@", "guest:****@");
    let name = unique("failover");

    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", &urls, "--id", &unique("mon")])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--interval", "200ms", "--timeout", "2s"]);
    let mut monitor = Proc::spawn("monitor", with_fast_reconnect(command));
    let base = monitor.listen_base();
    let mut command = Command::new(mock_bin());
    command.args(["--url", &urls, "--name", &name, "--instance", "f-1"]);
    let mock = Proc::spawn("mock", with_fast_reconnect(command));
    monitor.wait_json(
        Duration::from_secs(15),
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    // The status document is a snapshot: give it a moment to show the link.
    let in_use = wait_for(Duration::from_secs(5), "a broker named in use", || {
        broker_in_use(&base)
    });
    assert_eq!(in_use, redacted(first.url()), "{}", monitor.stderr());

    // The node in use dies: both move to the next one, by themselves.
    first.kill();
    wait_both_reconnected(&monitor, &mock);
    assert!(
        monitor
            .stderr()
            .contains(&format!("trying {}", redacted(second.url()))),
        "{}",
        monitor.stderr()
    );
    let lines = monitor.collect_json(Duration::from_secs(0));
    let up = wait_for(
        Duration::from_secs(10),
        "UP again on the second node",
        || {
            let mut lines = monitor.drain_json(Duration::from_millis(200));
            lines.retain(|v| v["service"] == name.as_str());
            assert!(
                !lines.iter().any(|v| false_alarm(v, &name)),
                "a false alarm: {lines:?}"
            );
            lines
                .into_iter()
                .find(|v| v["to"] == "up" && v["reason"] == "recovered")
        },
    );
    assert_eq!(up["from"], "stale", "{up} after {lines:?}");
    wait_for(
        Duration::from_secs(5),
        "the second node named in use",
        || (broker_in_use(&base) == Some(redacted(second.url()))).then_some(()),
    );
    // And nothing after, for longer than grace + timeout.
    monitor.expect_no_json(Duration::from_millis(3000), "a false alarm", |v| {
        false_alarm(v, &name)
    });
}

/// The wall-clock time of the last `: connected` line a process logged.
fn last_connected_at(proc: &Proc) -> chrono::DateTime<chrono::Utc> {
    let stderr = proc.stderr();
    let line = stderr
        .lines()
        .rfind(|l| l.contains(": connected"))
        .unwrap_or_else(|| panic!("{} never connected:\n{stderr}", proc.name));
    line.split_whitespace()
        .next()
        .and_then(|stamp| stamp.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp on {line:?}"))
}

#[test]
fn after_the_broker_returns_a_live_service_is_up_within_two_intervals() {
    const INTERVAL: u64 = 500;
    let mut node = PrivateBroker::start();
    let url = node.url();
    let name = unique("returns");
    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", &url, "--id", &unique("mon")])
        .args(["--interval", &format!("{INTERVAL}ms"), "--timeout", "2s"]);
    let mut monitor = Proc::spawn("monitor", with_fast_reconnect(command));
    let mut command = Command::new(mock_bin());
    command.args(["--url", &url, "--name", &name, "--instance", "r-1"]);
    let mock = Proc::spawn("mock", with_fast_reconnect(command));
    monitor.wait_json(
        Duration::from_secs(15),
        "first seen",
        transition(&name, "up", "first_seen"),
    );

    node.kill();
    monitor.wait_json(
        Duration::from_secs(10),
        "stale",
        transition(&name, "stale", "link_down"),
    );
    mock.wait_stderr(Duration::from_secs(10), "unreachable");
    node.spawn();
    let back = Instant::now();
    wait_both_reconnected(&monitor, &mock);
    let up = monitor.wait_json(
        Duration::from_secs(10),
        "up again",
        transition(&name, "up", "recovered"),
    );
    let since_listener = back.elapsed();
    // Both ends back on the broker: the later of the two is when the service
    // could be heard again; from then, UP within two intervals.
    let reconnected = last_connected_at(&monitor).max(last_connected_at(&mock));
    let up_at: chrono::DateTime<chrono::Utc> = up["at"].as_str().unwrap().parse().unwrap();
    // The service's "connected" line can trail its first answers by a hair;
    // an UP well before both ends were back would be an echo from nowhere.
    let early = (reconnected - up_at).to_std().unwrap_or_default();
    assert!(
        early <= Duration::from_millis(200),
        "UP {early:?} before both ends had reconnected"
    );
    let after = (up_at - reconnected).to_std().unwrap_or_default();
    println!(
        "UP {after:?} after both reconnected, {since_listener:?} (test's clock, at most) after the broker listened again"
    );
    assert!(
        after <= Duration::from_millis(2 * INTERVAL),
        "UP {after:?} after both reconnected, over two intervals ({INTERVAL} ms each)\nmonitor:\n{}\nmock:\n{}",
        monitor.stderr(),
        mock.stderr()
    );
}
