//! Alerts end to end: the real monitor and mock-service against the real
//! RabbitMQ, sending to a real HTTP receiver, a real command, and a real
//! Prometheus Alertmanager that forwards to a webhook the test listens on.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use support::alertmanager::Alertmanager;
use support::*;

const UP_WITHIN: Duration = Duration::from_secs(10);
/// A kill is DOWN within timeout + interval; then the sink has this long to deliver.
const DELIVERED_WITHIN: Duration = Duration::from_secs(5);

/// A temporary directory with `monitor.toml` holding `notify`.
struct Config {
    dir: PathBuf,
}

impl Config {
    fn new(notify: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("notify-test"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("monitor.toml"), notify).unwrap();
        Self { dir }
    }

    fn path(&self) -> String {
        self.dir.join("monitor.toml").to_string_lossy().into_owned()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn monitor_with(config: &Config) -> Proc {
    monitor(BROKER, &["--config", &config.path()])
}

fn wait_up(monitor: &mut Proc, service: &str, reason: &str) {
    monitor.wait_json(UP_WITHIN, "up", transition(service, "up", reason));
}

fn wait_down(monitor: &mut Proc, service: &str) {
    let within = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS) + Duration::from_secs(2);
    monitor.wait_json(
        within,
        "timed out",
        transition(service, "down", "timed_out"),
    );
}

#[test]
fn webhook_and_command_get_one_down_and_one_recovery_per_kill_and_restart() {
    let mut hook = Hook::start();
    let secret = "s3cret";
    let config = Config::new("");
    let log = config.file("command.log");
    // The command appends its environment's view and its stdin, one line
    // each; each event alone (group_wait 0s), as grouping is delivery.rs's.
    let script = format!(
        "printf '%s %s %s %s\\n' \"$HEARTBEAT_EVENT\" \"$HEARTBEAT_SERVICE\" \"$HEARTBEAT_TO\" \"$HEARTBEAT_REASON\" >> '{0}'; cat >> '{0}'",
        log.display()
    );
    std::fs::write(
        config.path(),
        format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{secret}\"\n\n[[notify]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\ngroup_wait = \"0s\"\n",
            hook.url("/hook"),
            serde_json::to_string(&script).unwrap()
        ),
    )
    .unwrap();
    let mut monitor = monitor_with(&config);
    let name = unique("paged");
    let mut service = mock(BROKER, &name, "p-1", &[]);
    wait_up(&mut monitor, &name, "first_seen");

    service.kill();
    wait_down(&mut monitor, &name);
    let down = hook.wait(
        DELIVERED_WITHIN,
        "a firing event",
        hook_event(&name, "firing"),
    );
    let body = &down.json;
    assert_eq!(down.path, "/hook");
    assert_eq!(down.header("content-type"), Some("application/json"));
    assert_eq!(
        (
            body["instance"].as_str(),
            body["from"].as_str(),
            body["to"].as_str(),
            body["reason"].as_str()
        ),
        (
            Some("p-1"),
            Some("suspect"),
            Some("down"),
            Some("timed_out")
        ),
        "{body}"
    );
    assert_eq!(body["alert_state"], "down");
    assert!(
        body["monitor"]
            .as_str()
            .is_some_and(|m| m.starts_with("mon-")),
        "{body}"
    );
    assert!(
        body["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&name) && s.contains("DOWN") && !s.contains("http")),
        "{body}"
    );
    assert!(
        body["counts"]["down"].as_u64().is_some_and(|n| n >= 1),
        "{body}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(body["at"].as_str().unwrap()).is_ok());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&down.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        down.header("x-heartbeat-signature"),
        Some(format!("sha256={expected}").as_str())
    );

    let _service = mock(BROKER, &name, "p-1", &[]);
    wait_up(&mut monitor, &name, "recovered");
    let up = hook.wait(
        DELIVERED_WITHIN,
        "a resolved event",
        hook_event(&name, "resolved"),
    );
    assert_eq!(
        (up.json["to"].as_str(), up.json["alert_state"].as_str()),
        (Some("up"), Some("down"))
    );
    assert!(up.at > down.at);

    // Exactly one of each, on both targets.
    hook.expect_none(Duration::from_secs(1), "a second event", |r| {
        r.json["service"] == name.as_str()
    });
    assert_eq!(
        hook.count(|r| r.json["service"] == name.as_str()),
        0,
        "matched ones are taken out"
    );
    let lines = wait_lines(&log, &name, 4, DELIVERED_WITHIN);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0], format!("firing {name} down timed_out"));
    let stdin: serde_json::Value =
        serde_json::from_str(&lines[1]).expect("the event as JSON on stdin");
    assert_eq!(
        (stdin["event"].as_str(), stdin["service"].as_str()),
        (Some("firing"), Some(name.as_str()))
    );
    assert_eq!(lines[2], format!("resolved {name} up recovered"));
    monitor.stop_cleanly("TERM", Duration::from_secs(5));
}

#[test]
fn a_blip_shorter_than_for_sends_nothing_and_a_longer_outage_sends_once() {
    let mut hook = Hook::start();
    let config = Config::new("");
    std::fs::write(
        config.path(),
        format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nfor = \"5s\"\n",
            hook.url("/")
        ),
    )
    .unwrap();
    let mut monitor = monitor_with(&config);
    let name = unique("blip");
    let mut service = mock(BROKER, &name, "b-1", &[]);
    wait_up(&mut monitor, &name, "first_seen");

    // Frozen past the timeout, then thawed: DOWN, and UP again at the next
    // ping, on the same connection. Far shorter than `for`.
    service.signal("STOP");
    let down = monitor.wait_json(
        Duration::from_millis(TIMEOUT_MS + INTERVAL_MS) + Duration::from_secs(2),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    service.signal("CONT");
    let up = monitor.wait_json(UP_WITHIN, "recovered", transition(&name, "up", "recovered"));
    // Shorter than `for` with a margin, or the test would prove nothing.
    let at = |line: &serde_json::Value| -> chrono::DateTime<chrono::Utc> {
        line["at"].as_str().unwrap().parse().unwrap()
    };
    let blip = at(&up) - at(&down);
    assert!(blip < chrono::Duration::seconds(4), "the blip took {blip}");
    hook.expect_none(Duration::from_secs(6), "an event for a blip", |r| {
        r.json["service"] == name.as_str()
    });

    // The second outage lasts: one firing event, no sooner than `for` after
    // DOWN (by the monitor's own clock: the test may read its lines late).
    service.kill();
    let down = monitor.wait_json(
        Duration::from_millis(TIMEOUT_MS + INTERVAL_MS) + Duration::from_secs(2),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    let down_at: chrono::DateTime<chrono::Utc> = down["at"].as_str().unwrap().parse().unwrap();
    let fired = hook.wait(
        Duration::from_secs(10),
        "a firing event",
        hook_event(&name, "firing"),
    );
    let after = fired.wall - down_at;
    assert!(
        after >= chrono::Duration::milliseconds(5000),
        "sent {after} after DOWN, before `for` (5s) ran out"
    );
    hook.expect_none(Duration::from_secs(1), "a second event", |r| {
        r.json["service"] == name.as_str()
    });
}

#[test]
fn reminders_come_at_the_set_interval_while_down() {
    let mut hook = Hook::start();
    let config = Config::new("");
    std::fs::write(
        config.path(),
        format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nreminder = \"1s\"\nsend_resolved = false\ngroup_wait = \"0s\"\n",
            hook.url("/")
        ),
    )
    .unwrap();
    let mut monitor = monitor_with(&config);
    let name = unique("remind");
    let mut service = mock(BROKER, &name, "r-1", &[]);
    wait_up(&mut monitor, &name, "first_seen");
    service.kill();
    let fired = hook.wait(
        Duration::from_secs(8),
        "firing",
        hook_event(&name, "firing"),
    );
    let first = hook.wait(
        Duration::from_secs(3),
        "a reminder",
        hook_event(&name, "reminder"),
    );
    let second = hook.wait(
        Duration::from_secs(3),
        "another reminder",
        hook_event(&name, "reminder"),
    );
    for (a, b) in [(fired.at, first.at), (first.at, second.at)] {
        let gap = b.duration_since(a);
        assert!(
            gap >= Duration::from_millis(900) && gap < Duration::from_millis(2500),
            "reminders {gap:?} apart, set to 1s"
        );
    }
    assert!(
        first.json["summary"]
            .as_str()
            .unwrap()
            .contains("still DOWN"),
        "{}",
        first.json
    );
    // Back UP: reminders stop, and send_resolved = false sends nothing.
    let _back = mock(BROKER, &name, "r-1", &[]);
    wait_up(&mut monitor, &name, "recovered");
    // A reminder already on its way at the moment of recovery is allowed.
    let settled = Instant::now() + Duration::from_millis(500);
    hook.expect_none(
        Duration::from_millis(2500),
        "an event after recovery",
        |r| {
            r.json["service"] == name.as_str()
                && (r.json["event"] == "resolved"
                    || (r.json["event"] == "reminder" && r.at > settled))
        },
    );
}

#[test]
fn receivers_that_are_down_or_hang_do_not_slow_detection() {
    // One port with nothing behind it, one that accepts and never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().unwrap());
    let config = Config::new("");
    std::fs::write(
        config.path(),
        format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{closed_url}\"\nretries = 1\n\n[[notify]]\nkind = \"webhook\"\nurl = \"{hanging_url}\"\ntimeout = \"30s\"\nqueue = 1\n"
        ),
    )
    .unwrap();
    let mut monitor = monitor(
        BROKER,
        &["--config", &config.path(), "--listen", "127.0.0.1:0"],
    );
    let base = monitor.listen_base();
    let names: Vec<String> = (0..3).map(|i| unique(&format!("unheard{i}"))).collect();
    let mut services: Vec<Proc> = names.iter().map(|n| mock(BROKER, n, "u-1", &[])).collect();
    for name in &names {
        wait_up(&mut monitor, name, "first_seen");
    }
    // Each kill is still DOWN within timeout + interval, as without alerts.
    for (name, service) in names.iter().zip(&mut services) {
        service.kill();
        let killed = Instant::now();
        let within = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS + 800);
        monitor.wait_json(within, "timed out", transition(name, "down", "timed_out"));
        assert!(killed.elapsed() <= within);
    }
    monitor.wait_stderr(Duration::from_secs(10), "notify[0] webhook");
    monitor.wait_stderr(Duration::from_secs(10), "notify[1] webhook: queue full");
    // Counted per target in the metrics.
    let counter = |metrics: &str, series: &str| metric_in(metrics, series).unwrap_or(0.0);
    let (status, metrics) = http_get(&format!("{base}/metrics")).expect("metrics answer");
    assert_eq!(status, 200);
    assert!(
        counter(
            &metrics,
            r#"heartbeat_notify_failed_total{target="0",kind="webhook"}"#
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        counter(
            &metrics,
            r#"heartbeat_notify_dropped_total{target="1",kind="webhook"}"#
        ) >= 1.0,
        "{metrics}"
    );
    // And it still stops promptly, with alerts left undelivered.
    let stopping = Instant::now();
    monitor.stop_cleanly("TERM", Duration::from_secs(8));
    assert!(
        stopping.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopping.elapsed()
    );
    drop(hanging);
}

#[test]
fn alertmanager_receives_forwards_and_resolves() {
    let mut hook = Hook::start();
    let alertmanager = Alertmanager::start(&hook.url("/from-alertmanager"));
    let config = Config::new("");
    std::fs::write(
        config.path(),
        format!(
            "[[notify]]\nkind = \"alertmanager\"\nurl = \"{}\"\nseverity = \"page\"\nresend = \"1s\"\n",
            alertmanager.url
        ),
    )
    .unwrap();
    let mut monitor = monitor_with(&config);
    let name = unique("managed");
    let mut service = mock(BROKER, &name, "m-1", &[]);
    wait_up(&mut monitor, &name, "first_seen");
    service.kill();
    wait_down(&mut monitor, &name);

    let about = |status: &'static str| {
        let name = name.clone();
        move |r: &Received| {
            r.json["status"] == status
                && r.json["alerts"].as_array().is_some_and(|alerts| {
                    alerts
                        .iter()
                        .any(|a| a["labels"]["service"] == name.as_str())
                })
        }
    };
    let firing = hook.wait(
        Duration::from_secs(15),
        "a firing notification",
        about("firing"),
    );
    let alert = &firing.json["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "HeartbeatDown", "{alert}");
    assert_eq!(alert["labels"]["instance"], "m-1");
    assert_eq!(alert["labels"]["severity"], "page");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("DOWN"),
        "{alert}"
    );
    // Re-sent every second while firing: Alertmanager sees its endsAt move on.
    let ends_at = || {
        let (status, body) =
            support::alertmanager::http_get(alertmanager.port(), "/api/v2/alerts?active=true")
                .unwrap();
        assert_eq!(status, 200, "{body}");
        let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
        alerts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["service"] == name.as_str())
            .map(|a| a["endsAt"].as_str().unwrap().to_owned())
    };
    let first = ends_at().expect("the alert is active in Alertmanager");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ends_at().as_deref() == Some(first.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the alert was not re-sent within 5s (resend = 1s)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let _back = mock(BROKER, &name, "m-1", &[]);
    wait_up(&mut monitor, &name, "recovered");
    let resolved = hook.wait(
        Duration::from_secs(15),
        "a resolved notification",
        about("resolved"),
    );
    assert_eq!(resolved.json["alerts"][0]["status"], "resolved");
    let _ = alertmanager.stderr();
}
