//! The user's story, end to end: real `monitor` and `mock-service` binaries
//! against the real RabbitMQ on 127.0.0.1:5672. Every name is unique, so
//! these tests share the broker with each other and with anything else.

mod support;

use std::time::{Duration, Instant};

use support::*;

const UP_WITHIN: Duration = Duration::from_secs(10);

#[test]
fn two_mocks_up_then_ctrl_c_is_left_kill_is_timed_out_and_restart_recovers() {
    let mut monitor = monitor(BROKER, &[]);
    let (a, b) = (unique("alpha"), unique("beta"));
    let mut mock_a = mock(BROKER, &a, "a-1", &[]);
    let mut mock_b = mock(BROKER, &b, "b-1", &[]);

    for service in [&a, &b] {
        let up = monitor.wait_json(
            UP_WITHIN,
            "first seen",
            transition(service, "up", "first_seen"),
        );
        assert_well_formed(&up);
        assert_eq!(up["from"], "never_seen");
        assert!(up["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{up}");
    }

    // Ctrl+C: the mock says goodbye, exits 0, and is LEFT within a second.
    let sent = Instant::now();
    mock_a.signal("INT");
    let left = monitor.wait_json(
        Duration::from_secs(1),
        "left",
        transition(&a, "left", "left"),
    );
    assert_well_formed(&left);
    assert_eq!(
        (left["from"].as_str(), left["instance"].as_str()),
        (Some("up"), Some("a-1"))
    );
    assert!(mock_a.wait_exit(Duration::from_secs(1)).success());
    assert!(sent.elapsed() < Duration::from_secs(2));

    // SIGKILL: no goodbye; SUSPECT at the timeout, DOWN (timed out) one
    // interval later: within timeout + interval, plus a margin.
    mock_b.kill();
    let margin = Duration::from_millis(800);
    let within = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS) + margin;
    let timed_out = monitor.wait_json(within, "timed out", transition(&b, "down", "timed_out"));
    assert_well_formed(&timed_out);
    let silent = timed_out["silent_ms"]
        .as_u64()
        .expect("silent_ms on a timeout");
    assert!(
        silent > TIMEOUT_MS,
        "silent for {silent} ms, timeout is {TIMEOUT_MS} ms"
    );

    // Restarted with the same identity, it comes back UP.
    let _mock_a = mock(BROKER, &a, "a-1", &[]);
    let back = monitor.wait_json(UP_WITHIN, "rejoined", transition(&a, "up", "rejoined"));
    assert_eq!(back["from"], "left");

    monitor.stop_cleanly("INT", Duration::from_secs(3));
}

#[test]
fn sigterm_also_says_goodbye_and_exits_zero() {
    let mut monitor = monitor(BROKER, &[]);
    let name = unique("term");
    let mut mock = mock(BROKER, &name, "t-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    mock.signal("TERM");
    monitor.wait_json(
        Duration::from_secs(1),
        "left",
        transition(&name, "left", "left"),
    );
    assert!(
        mock.wait_exit(Duration::from_secs(1)).success(),
        "{}",
        mock.stderr()
    );
}

#[test]
fn a_hung_service_that_stays_connected_times_out() {
    let mut monitor = monitor(BROKER, &[]);
    let name = unique("hung");
    let _mock = mock(BROKER, &name, "h-1", &["--hang-after", "1s"]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    monitor.wait_json(
        Duration::from_secs(5),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
}

#[test]
fn latency_shows_in_the_round_trip_time() {
    let mut monitor = monitor(BROKER, &[]);
    let name = unique("slow");
    let _mock = mock(BROKER, &name, "s-1", &["--latency", "150ms"]);
    let up = monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    let rtt = up["rtt_ms"].as_f64().unwrap();
    assert!(rtt >= 150.0, "rtt {rtt} ms with 150 ms of added latency");
}

#[test]
fn expected_services_and_per_service_timeouts_come_from_the_environment() {
    // Underscores only: the name must be spellable in an environment variable.
    let name = unique("expected").replace('-', "_");
    let mut command = std::process::Command::new(monitor_bin());
    command
        .args(["--headless", "--url", BROKER, "--id", &unique("mon")])
        .args(["--interval", "200ms", "--timeout", "1s"])
        .env("MONITOR__DETECTION__MODE", "fixed")
        .env("MONITOR__EXPECT", &name)
        .env(format!("MONITOR__TIMEOUTS__{}", name.to_uppercase()), "3s");
    let mut monitor = Proc::spawn("monitor", command);
    let mut mock = mock(BROKER, &name, "e-1", &[]);
    let up = monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    assert_eq!(up["from"], "never_seen");
    mock.kill();
    let down = monitor.wait_json(
        Duration::from_secs(6),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    let silent = down["silent_ms"].as_u64().unwrap();
    assert!(
        silent > 3000,
        "the 3 s override should apply, not the 1 s default: {down}"
    );
}

#[test]
fn two_monitors_side_by_side_each_see_every_service() {
    let mut first = monitor(BROKER, &[]);
    // No --headless: a piped stdout alone must give JSON lines, not a dashboard.
    let mut command = std::process::Command::new(monitor_bin());
    command
        .args(["--url", BROKER, "--id", &unique("mon")])
        .args(["--interval", "200ms", "--timeout", "1s"]);
    let mut second = Proc::spawn("monitor without --headless", command);
    let name = unique("shared");
    let mock = mock(BROKER, &name, "s-1", &[]);
    for m in [&mut first, &mut second] {
        m.wait_json(
            UP_WITHIN,
            "first seen",
            transition(&name, "up", "first_seen"),
        );
    }
    mock.signal("INT");
    for m in [&mut first, &mut second] {
        m.wait_json(
            Duration::from_secs(1),
            "left",
            transition(&name, "left", "left"),
        );
    }
}

#[test]
fn a_fleet_of_fifty_in_one_process_is_all_up_then_all_leave_on_ctrl_c() {
    const COUNT: usize = 50;
    let mut monitor = monitor(BROKER, &[]);
    let name = unique("fleet");
    let mut fleet = mock(BROKER, &name, "f-1", &["--count", &COUNT.to_string()]);
    let member = |v: &serde_json::Value, i: usize| v["service"] == format!("{name}-{i}");

    for i in 0..COUNT {
        let up = monitor.wait_json(UP_WITHIN, &format!("{name}-{i} first seen"), |v| {
            member(v, i) && v["to"] == "up" && v["reason"] == "first_seen"
        });
        assert_eq!(up["instance"], "f-1", "{up}");
    }
    // One connection for a fleet of up to 500: every member's exclusive
    // queue has the same owner, the connection that declared it.
    let owners = queue_owners(&format!("heartbeat.service.{name}-"));
    assert_eq!(owners.len(), COUNT, "{owners:?}");
    assert!(
        owners.iter().all(|(_, owner)| owner == &owners[0].1),
        "{owners:?}"
    );

    fleet.signal("INT");
    for i in 0..COUNT {
        monitor.wait_json(Duration::from_secs(2), &format!("{name}-{i} left"), |v| {
            member(v, i) && v["to"] == "left" && v["reason"] == "left"
        });
    }
    assert!(
        fleet.wait_exit(Duration::from_secs(2)).success(),
        "{}",
        fleet.stderr()
    );
}

/// Past 500 services, a fleet spreads over connections of 500 (one
/// connection declaring 10,000 queues never finished within its setup
/// deadline, and no service came UP): 1,100 services, three connections,
/// every one UP.
#[test]
fn a_fleet_of_1100_spreads_over_three_connections_and_is_all_up() {
    const COUNT: usize = 1_100;
    // A ping a second, a timeout of 10 s: 1,100 answers a second is what a
    // debug build on a shared machine keeps up with; the usual 200 ms would
    // test the machine, not the spreading.
    let mut command = std::process::Command::new(monitor_bin());
    command
        .env("MONITOR__DETECTION__MODE", "fixed")
        .env_remove("HEARTBEAT_KEY")
        .args(["--headless", "--url", BROKER, "--id", &unique("mon")])
        .args(["--interval", "1s", "--timeout", "10s"]);
    let mut monitor = Proc::spawn("monitor of the wide fleet", command);
    let name = unique("wide");
    let mut fleet = mock(BROKER, &name, "w-1", &["--count", &COUNT.to_string()]);
    let prefix = format!("{name}-");
    let mut seen = std::collections::HashSet::new();
    while seen.len() < COUNT {
        let up = monitor.wait_json(Duration::from_secs(60), "the fleet first seen", |v| {
            v["service"]
                .as_str()
                .is_some_and(|s| s.starts_with(&prefix))
                && v["to"] == "up"
                && v["reason"] == "first_seen"
        });
        seen.insert(up["service"].as_str().unwrap().to_owned());
    }
    let owners = queue_owners(&format!("heartbeat.service.{prefix}"));
    assert_eq!(owners.len(), COUNT);
    let mut per_owner = std::collections::HashMap::<&str, usize>::new();
    for (_, owner) in &owners {
        *per_owner.entry(owner.as_str()).or_default() += 1;
    }
    let mut sizes: Vec<usize> = per_owner.into_values().collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [100, 500, 500], "queues per connection");
    fleet.signal("INT");
    assert!(
        fleet.wait_exit(Duration::from_secs(10)).success(),
        "{}",
        fleet.stderr()
    );
}

/// The shared broker's queues whose name starts with `prefix`, with the
/// connection process that owns each. Reads only; it changes nothing.
fn queue_owners(prefix: &str) -> Vec<(String, String)> {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "owner_pid",
        ])
        .output()
        .expect("rabbitmqctl runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, owner)| (name.to_owned(), owner.trim().to_owned()))
        .collect()
}

/// `monitor --headless | head -1`: once the reader of stdout has gone, the
/// monitor stops with exit 0, as every Unix filter does, whether or not it
/// has another line to write.
#[test]
fn a_closed_stdout_ends_a_headless_monitor_with_exit_0() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    /// Kills the monitor if an assertion fails before it exits.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let service = unique("head");
    let _mock = mock(BROKER, &service, "h-1", &[]);
    let mut monitor = Reaped(
        Command::new(monitor_bin())
            .args(["--headless", "--url", BROKER, "--id", &unique("mon")])
            .args(["--interval", &format!("{INTERVAL_MS}ms")])
            .args(["--timeout", &format!("{TIMEOUT_MS}ms")])
            .env("MONITOR__HISTORY__PATH", "")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("monitor starts"),
    );
    // Read one line on a thread, so a silent monitor fails the test at a deadline.
    let stdout = monitor.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        let _ = reader.read_line(&mut first);
        let _ = tx.send(first);
        // The reader, and with it the pipe's read end, is dropped here.
    });
    let first = rx.recv_timeout(UP_WITHIN).expect("a first JSON line");
    assert!(
        serde_json::from_str::<serde_json::Value>(&first).is_ok(),
        "{first}"
    );

    let status = wait_for(Duration::from_secs(5), "the monitor to exit", || {
        monitor.0.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
}

#[test]
fn headless_says_which_services_it_expects_and_reports_the_ones_that_never_answer() {
    let (ghost, present) = (unique("ghost"), unique("present"));
    let _mock = mock(BROKER, &present, "p-1", &[]);
    let mut monitor = monitor(BROKER, &["--expect", &format!("{ghost},{present}")]);
    let expected = monitor.wait_json(Duration::from_secs(5), "expected", |v| {
        v["kind"] == "expected"
    });
    assert_eq!(expected["services"], serde_json::json!([ghost, present]));
    assert!(expected["at"].is_string(), "{expected}");
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&present, "up", "first_seen"),
    );
    // The unit tests show a service that answered is never reported; here,
    // that the one that never does is, a timeout after the link came up.
    let unseen = monitor.wait_json(
        Duration::from_millis(TIMEOUT_MS) + UP_WITHIN,
        "the ghost unseen",
        |v| v["kind"] == "unseen" && v["service"] == ghost.as_str(),
    );
    assert!(
        unseen["waited_ms"].as_u64().unwrap() >= TIMEOUT_MS,
        "{unseen}"
    );
    assert!(unseen["at"].is_string(), "{unseen}");
}

#[test]
fn a_restart_racing_its_previous_run_takes_over_within_the_grace() {
    let name = unique("race");
    let mut monitor = monitor(BROKER, &[]);
    let first = mock(BROKER, &name, "r-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    // The new run starts while the old one still holds the queue...
    let mut second = mock(BROKER, &name, "r-1", &[]);
    second.wait_stderr(Duration::from_secs(5), "held by another connection");
    // ...which lets go within the grace: the new run takes over, not exits.
    let mut first = first;
    first.signal("INT");
    assert!(first.wait_exit(Duration::from_secs(5)).success());
    monitor.wait_json(
        Duration::from_secs(2),
        "left",
        transition(&name, "left", "left"),
    );
    monitor.wait_json(UP_WITHIN, "rejoined", transition(&name, "up", "rejoined"));
    second.signal("INT");
    assert!(second.wait_exit(Duration::from_secs(5)).success());
}
