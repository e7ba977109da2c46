//! How alerts reach webhook and command targets when many change at once
//! or when the receiver is away: the real monitor and `mock-service` fleets
//! against the real RabbitMQ, a real HTTP receiver, a real command, a real
//! Alertmanager, and the history store (SQLite, PostgreSQL) across a restart.
//!
//! - A storm is a few grouped bodies per target, nothing dropped (issue 22).
//! - An alert the receiver could not take is delivered once when it is
//!   back, also after a restart of the monitor (issue 24).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::alertmanager::Alertmanager;
use support::*;

/// A temporary directory holding `monitor.toml`.
fn config_in(dir: &TempDir, toml: &str) -> String {
    let path = dir.0.join("monitor.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_string_lossy().into_owned()
}

/// A command target's script: appends `EVENT COUNT` and then its stdin,
/// one line each, to `log`.
fn command_entry(log: &std::path::Path, services: &str) -> String {
    let script = format!(
        "printf '%s %s\\n' \"$HEARTBEAT_EVENT\" \"$HEARTBEAT_COUNT\" >> '{0}'; cat >> '{0}'",
        log.display()
    );
    format!(
        "[[notify]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nservices = [\"{services}\"]\n",
        serde_json::to_string(&script).unwrap()
    )
}

/// A monitor on `url` serving HTTP, with `config`, the interval and timeout
/// given, and the environment given (a history store, say).
fn monitor_on(
    url: &str,
    id: &str,
    config: &str,
    timing: (&str, &str),
    env: &[(&str, &str)],
) -> (Proc, String) {
    let mut command = Command::new(monitor_bin());
    command
        .env("MONITOR__DETECTION__MODE", "fixed")
        .env_remove("HEARTBEAT_KEY")
        .envs(env.iter().copied())
        .args(["--headless", "--url", url, "--id", id])
        .args(["--listen", "127.0.0.1:0", "--config", config])
        .args(["--interval", timing.0, "--timeout", timing.1]);
    let monitor = Proc::spawn(&format!("monitor {id}"), command);
    let base = monitor.listen_base();
    (monitor, base)
}

const TEST_TIMING: (&str, &str) = ("200ms", "1s");

/// Every target's `heartbeat_notify_dropped_total` and the notify sink's
/// own drops: all must be 0.
fn drops(base: &str, targets: usize) -> Vec<f64> {
    let (_, page) = http_get(&format!("{base}/metrics")).expect("metrics answer");
    let kinds = ["webhook", "command", "alertmanager"];
    let mut out: Vec<f64> = (0..targets)
        .map(|i| {
            metric_in(
                &page,
                &format!(
                    "heartbeat_notify_dropped_total{{target=\"{i}\",kind=\"{}\"}}",
                    kinds[i]
                ),
            )
            .unwrap_or_else(|| panic!("no drop counter for target {i}:\n{page}"))
        })
        .collect();
    out.push(metric_in(&page, "heartbeat_updates_dropped_total{sink=\"notify\"}").unwrap_or(0.0));
    out
}

/// The command log's notifications: (`EVENT COUNT` line, the JSON on stdin).
fn command_notifications(log: &std::path::Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter(|pair| pair.len() == 2)
        .map(|pair| {
            (
                pair[0].to_owned(),
                serde_json::from_str(pair[1]).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// The services a notification's JSON names (one event, or a group's).
fn named(json: &Value) -> Vec<String> {
    match json["events"].as_array() {
        Some(events) => events
            .iter()
            .map(|e| e["service"].as_str().unwrap_or("").to_owned())
            .collect(),
        None => vec![json["service"].as_str().unwrap_or("").to_owned()],
    }
}

#[test]
fn fifty_killed_at_once_reach_a_webhook_and_a_command_as_one_grouped_notification_each() {
    const COUNT: usize = 50;
    let dir = TempDir::new("grouped");
    let log = dir.0.join("command.log");
    let mut hook = Hook::start();
    let name = unique("storm");
    let members = format!("{name}-*");
    // Default grouping: no group_wait set.
    let config = config_in(
        &dir,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nservices = [\"{members}\"]\n\n{}",
            hook.url("/hook"),
            command_entry(&log, &members)
        ),
    );
    let (mut monitor, base) = monitor_on(BROKER, &unique("mon"), &config, TEST_TIMING, &[]);
    let mut fleet = mock(BROKER, &name, "s", &["--count", &COUNT.to_string()]);
    for i in 0..COUNT {
        monitor.wait_json(
            Duration::from_secs(20),
            "first seen",
            transition(&format!("{name}-{i}"), "up", "first_seen"),
        );
    }

    fleet.kill();
    for i in 0..COUNT {
        monitor.wait_json(
            Duration::from_secs(10),
            "timed out",
            transition(&format!("{name}-{i}"), "down", "timed_out"),
        );
    }
    let first = hook.wait(Duration::from_secs(10), "a firing", |r| {
        r.json["event"] == "firing"
    });
    let group = first.group.clone().expect("the firing came in a group");
    assert_eq!(group["count"], COUNT, "{group}");
    let mut services = named(&group);
    services.sort();
    let mut expected: Vec<String> = (0..COUNT).map(|i| format!("{name}-{i}")).collect();
    expected.sort();
    assert_eq!(services, expected, "each of the fifty, once");
    let summary = group["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("{COUNT} alerts: {COUNT} DOWN ("))
            && summary.ends_with(" and 47 more)"),
        "{summary}"
    );
    assert!(
        group["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["event"] == "firing")
    );
    // One body: every event from the same request, and no other request.
    let rest = hook.drain(Duration::from_secs(4));
    assert!(
        rest.iter().all(|r| r.request == first.request),
        "more than one body: {:?}",
        rest.iter().map(|r| r.request).collect::<Vec<_>>()
    );
    assert_eq!(rest.len(), COUNT - 1);

    // The command ran once, for all of them.
    let runs = wait_for(Duration::from_secs(10), "the command ran", || {
        let runs = command_notifications(&log);
        (!runs.is_empty()).then_some(runs)
    });
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, format!("group {COUNT}"));
    assert_eq!(runs[0].1["count"], COUNT);
    assert_eq!(named(&runs[0].1).len(), COUNT);
    assert!(drops(&base, 2).iter().all(|d| *d == 0.0));
    monitor.stop_cleanly("TERM", Duration::from_secs(8));
}

/// A vhost of our own on the shared broker, deleted on drop: the storm's
/// 500 services and queues touch nobody else's monitor.
struct Vhost(String);

impl Vhost {
    fn create() -> Self {
        let name = unique("heartbeat-storm");
        let ctl = |args: &[&str]| {
            let out = Command::new("rabbitmqctl")
                .arg("-q")
                .args(args)
                .output()
                .expect("rabbitmqctl runs");
            assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
        };
        ctl(&["add_vhost", &name]);
        ctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self(name)
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.0)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.0])
            .output();
    }
}

#[test]
fn a_storm_of_500_reaches_each_target_as_a_few_bodies_and_nothing_is_dropped() {
    const COUNT: usize = 500;
    let vhost = Vhost::create();
    let url = vhost.url();
    let dir = TempDir::new("storm");
    let log = dir.0.join("command.log");
    let mut hook = Hook::start();
    let mut forwarded = Hook::start();
    let alertmanager = Alertmanager::start(&forwarded.url("/am"));
    let name = unique("storm");
    let members = format!("{name}-*");
    let config = config_in(
        &dir,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n\n{}\n[[notify]]\nkind = \"alertmanager\"\nurl = \"{}\"\n",
            hook.url("/hook"),
            command_entry(&log, &members),
            alertmanager.url
        ),
    );
    // 2,500 echoes a second at 200 ms is the machine's limit in a debug
    // build, not the alerts': a ping a second, 5 s to DOWN.
    let (mut monitor, base) = monitor_on(&url, &unique("mon"), &config, ("1s", "5s"), &[]);
    let mut fleet = mock(&url, &name, "s", &["--count", &COUNT.to_string()]);
    for i in 0..COUNT {
        monitor.wait_json(
            Duration::from_secs(60),
            "first seen",
            transition(&format!("{name}-{i}"), "up", "first_seen"),
        );
    }

    fleet.kill();
    let killed = Instant::now();
    for i in 0..COUNT {
        monitor.wait_json(
            Duration::from_secs(30),
            "timed out",
            transition(&format!("{name}-{i}"), "down", "timed_out"),
        );
    }
    // The webhook: every instance named exactly once, in a few bodies.
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    let mut bodies = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while times.len() < COUNT {
        assert!(
            Instant::now() < deadline,
            "{} of {COUNT} named within 30 s",
            times.len()
        );
        for event in hook.drain(Duration::from_millis(500)) {
            assert_eq!(event.json["event"], "firing", "{}", event.json);
            *times
                .entry(event.json["service"].as_str().unwrap().to_owned())
                .or_default() += 1;
            bodies.insert(event.request);
        }
    }
    for event in hook.drain(Duration::from_secs(4)) {
        *times
            .entry(event.json["service"].as_str().unwrap().to_owned())
            .or_default() += 1;
        bodies.insert(event.request);
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "named more than once: {twice:?}");
    assert_eq!(times.len(), COUNT);
    assert!(
        (1..=5).contains(&bodies.len()),
        "{} bodies for {COUNT} alerts",
        bodies.len()
    );
    eprintln!(
        "storm of {COUNT}: {} webhook bodies, all named within {:?} of the kill",
        bodies.len(),
        killed.elapsed()
    );

    // The command: a few runs, which name each instance once between them.
    let runs = wait_for(Duration::from_secs(30), "the command named all", || {
        let runs = command_notifications(&log);
        let total: usize = runs.iter().map(|(_, json)| named(json).len()).sum();
        (total >= COUNT).then_some(runs)
    });
    let mut all: Vec<String> = runs.iter().flat_map(|(_, json)| named(json)).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), COUNT, "{} distinct of {COUNT}", all.len());
    assert!((1..=5).contains(&runs.len()), "{} runs", runs.len());

    // Alertmanager holds an alert for each of them.
    let alerts = wait_for(Duration::from_secs(30), "Alertmanager has them all", || {
        let (_, body) = support::alertmanager::http_get(alertmanager.port(), "/api/v2/alerts")?;
        let alerts: Value = serde_json::from_str(&body).ok()?;
        let ours = alerts
            .as_array()?
            .iter()
            .filter(|a| {
                a["labels"]["service"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&format!("{name}-")))
            })
            .count();
        (ours >= COUNT).then_some(ours)
    });
    assert_eq!(alerts, COUNT);
    drop(forwarded.drain(Duration::ZERO));

    // Nothing dropped anywhere on the way.
    assert_eq!(drops(&base, 3), vec![0.0; 4]);
    monitor.stop_cleanly("TERM", Duration::from_secs(10));
}

/// `heartbeat_notify_pending{target="0",kind="webhook"}` and the status
/// document's count for target 0.
fn pending(base: &str) -> (f64, u64) {
    let series = "heartbeat_notify_pending{target=\"0\",kind=\"webhook\"}";
    let metric = metric(base, series).unwrap_or(-1.0);
    let document = status_document(base);
    let notify = &document["monitor"]["notify"][0];
    (metric, notify["pending"].as_u64().unwrap_or(u64::MAX))
}

#[test]
fn a_receiver_away_for_a_minute_gets_the_firing_once_when_back_then_the_resolution() {
    let dir = TempDir::new("away");
    let hook = Hook::start();
    let port = hook.port;
    let name = unique("away");
    // Only this test's service: other tests' services share the broker.
    let config = config_in(
        &dir,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\ngroup_wait = \"0s\"\nservices = [\"{name}\"]\n",
            hook.url("/hook")
        ),
    );
    let (mut monitor, base) = monitor_on(BROKER, &unique("mon"), &config, TEST_TIMING, &[]);
    let mut service = mock(BROKER, &name, "a-1", &[]);
    monitor.wait_json(
        Duration::from_secs(10),
        "first seen",
        transition(&name, "up", "first_seen"),
    );

    // The receiver goes away; the incident starts.
    assert!(hook.stop().is_empty());
    let away = Instant::now();
    service.kill();
    monitor.wait_json(
        Duration::from_secs(5),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    let document = wait_for(Duration::from_secs(10), "one alert waits", || {
        (pending(&base) == (1.0, 1)).then(|| status_document(&base))
    });
    let oldest = document["monitor"]["notify"][0]["oldest_pending"]
        .as_str()
        .expect("when the waiting alert was made");
    assert!(
        chrono::DateTime::parse_from_rfc3339(oldest).is_ok(),
        "{oldest}"
    );
    // Away for a minute: tried again and again, still waiting, never given up.
    let failed = "heartbeat_notify_failed_total{target=\"0\",kind=\"webhook\"}";
    while away.elapsed() < Duration::from_secs(60) {
        assert_eq!(pending(&base), (1.0, 1), "still waiting");
        std::thread::sleep(Duration::from_secs(2));
    }
    let tries = metric(&base, failed).unwrap_or(0.0);
    assert!(tries >= 4.0, "tried {tries} times in a minute");
    let expired = "heartbeat_notify_expired_total{target=\"0\",kind=\"webhook\"}";
    assert_eq!(metric(&base, expired), Some(0.0));

    // Back: the firing, once, within the longest pause between tries.
    let mut hook = Hook::start_on(port);
    let firing = hook.wait(
        Duration::from_secs(15),
        "the firing",
        hook_event(&name, "firing"),
    );
    assert_eq!(firing.json["alert_state"], "down", "{}", firing.json);
    hook.expect_none(Duration::from_secs(3), "the firing again", |r| {
        r.json["service"] == name.as_str()
    });
    wait_for(Duration::from_secs(5), "nothing waits", || {
        (pending(&base) == (0.0, 0)).then_some(())
    });
    // Then the resolution, once.
    let _service = mock(BROKER, &name, "a-1", &[]);
    monitor.wait_json(
        Duration::from_secs(10),
        "back",
        transition(&name, "up", "recovered"),
    );
    let resolved = hook.wait(
        Duration::from_secs(5),
        "the resolution",
        hook_event(&name, "resolved"),
    );
    assert!(resolved.at > firing.at);
    hook.expect_none(Duration::from_secs(2), "another event", |r| {
        r.json["service"] == name.as_str()
    });
    monitor.stop_cleanly("TERM", Duration::from_secs(8));
}

/// Stopped while a firing waits for an absent receiver; started again
/// with the same store and id, it delivers that firing once the receiver
/// is there, then the resolution.
fn an_alert_waiting_at_a_restart_is_delivered_after_it(store: &[(&str, &str)]) {
    let dir = TempDir::new("kept");
    let port = free_port();
    let name = unique("kept");
    let config = config_in(
        &dir,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\ngroup_wait = \"0s\"\nservices = [\"{name}\"]\n"
        ),
    );
    let id = unique("mon");
    let (mut first, base) = monitor_on(BROKER, &id, &config, TEST_TIMING, store);
    let mut service = mock(BROKER, &name, "k-1", &[]);
    first.wait_json(
        Duration::from_secs(10),
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    service.kill();
    first.wait_json(
        Duration::from_secs(5),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    wait_for(Duration::from_secs(10), "the firing waits", || {
        (pending(&base) == (1.0, 1)).then_some(())
    });
    first.stop_cleanly("TERM", Duration::from_secs(10));

    // The receiver is there now; the monitor starts again.
    let mut hook = Hook::start_on(port);
    let (mut second, base) = monitor_on(BROKER, &id, &config, TEST_TIMING, store);
    second.wait_json(
        Duration::from_secs(10),
        "restored",
        transition(&name, "down", "restored"),
    );
    let firing = hook.wait(
        Duration::from_secs(10),
        "the firing kept over the restart",
        hook_event(&name, "firing"),
    );
    assert_eq!(firing.json["instance"], "k-1", "{}", firing.json);
    assert!(
        second
            .stderr()
            .contains("alerts not delivered before the restart will be"),
        "{}",
        second.stderr()
    );
    hook.expect_none(Duration::from_secs(3), "the firing again", |r| {
        r.json["service"] == name.as_str()
    });
    wait_for(Duration::from_secs(5), "nothing waits", || {
        (pending(&base) == (0.0, 0)).then_some(())
    });
    let _service = mock(BROKER, &name, "k-1", &[]);
    second.wait_json(
        Duration::from_secs(10),
        "back",
        transition(&name, "up", "recovered"),
    );
    hook.wait(
        Duration::from_secs(5),
        "the resolution",
        hook_event(&name, "resolved"),
    );
    hook.expect_none(Duration::from_secs(2), "another event", |r| {
        r.json["service"] == name.as_str()
    });
    second.stop_cleanly("TERM", Duration::from_secs(10));

    // A third start finds nothing left to deliver.
    let (mut third, _) = monitor_on(BROKER, &id, &config, TEST_TIMING, store);
    hook.expect_none(Duration::from_secs(3), "an alert told twice", |r| {
        r.json["service"] == name.as_str() && r.json["event"] == "firing"
    });
    assert!(!third.stderr().contains("will be"), "{}", third.stderr());
    third.stop_cleanly("TERM", Duration::from_secs(10));
}

#[test]
fn an_alert_waiting_at_a_restart_is_delivered_after_it_with_sqlite() {
    let dir = TempDir::new("kept-db");
    let db = dir.0.join("heartbeat.db").to_string_lossy().into_owned();
    an_alert_waiting_at_a_restart_is_delivered_after_it(&[("MONITOR__HISTORY__PATH", &db)]);
}

#[test]
fn an_alert_waiting_at_a_restart_is_delivered_after_it_with_postgresql() {
    let db = Database::create();
    an_alert_waiting_at_a_restart_is_delivered_after_it(&[("MONITOR__HISTORY__URL", &db.url())]);
}
