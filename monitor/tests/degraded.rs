//! A service below its expected instances, end to end: the real monitor and
//! mock-services against the real RabbitMQ. The `service` JSON line, the
//! webhook, the command and a real Alertmanager are told once when it falls
//! below and once when it is back to full strength; the status document,
//! `/metrics` and the history follow.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::alertmanager::Alertmanager;
use support::*;

const UP_WITHIN: Duration = Duration::from_secs(10);
const DELIVERED_WITHIN: Duration = Duration::from_secs(10);

fn service_line<'a>(service: &'a str, to: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["kind"] == "service" && v["service"] == service && v["to"] == to
}

#[test]
fn a_service_below_its_instances_is_degraded_everywhere_then_full_again() {
    let name = unique("fleet");
    let dir = std::env::temp_dir().join(unique("degraded-test"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("command.log");
    let mut hook = Hook::start();
    let alertmanager = Alertmanager::start(&hook.url("/from-alertmanager"));
    let script = format!(
        "printf '%s %s %s [%s] %s/%s\\n' \"$HEARTBEAT_EVENT\" \"$HEARTBEAT_SCOPE\" \"$HEARTBEAT_SERVICE\" \"$HEARTBEAT_INSTANCE\" \"$HEARTBEAT_UP\" \"$HEARTBEAT_EXPECTED\" >> '{}'",
        log.display()
    );
    let config = dir.join("monitor.toml");
    std::fs::write(
        &config,
        format!(
            "[services.{name}]\ninstances = 2\n\n\
             [[notify]]\nkind = \"webhook\"\nurl = \"{hook}\"\ntransitions = [\"degraded\"]\nreminder = \"1s\"\ngroup_wait = \"0s\"\n\n\
             [[notify]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {script}]\ntransitions = [\"degraded\"]\n\n\
             [[notify]]\nkind = \"alertmanager\"\nurl = \"{am}\"\nresend = \"1s\"\n",
            hook = hook.url("/hook"),
            script = serde_json::to_string(&script).unwrap(),
            am = alertmanager.url,
        ),
    )
    .unwrap();
    let db = dir.join("history.db");
    let mut monitor = monitor_with_env(
        BROKER,
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("MONITOR__HISTORY__PATH", db.to_str().unwrap())],
    );
    let base = monitor.listen_base();

    let mut first = mock(BROKER, &name, "d-1", &[]);
    let mut second = mock(BROKER, &name, "d-2", &[]);
    for instance in ["d-1", "d-2"] {
        monitor.wait_json(UP_WITHIN, "first seen", |v| {
            transition(&name, "up", "first_seen")(v) && v["instance"] == instance
        });
    }
    // At full strength from the start: no news, even though the two
    // instances were first seen one after the other.
    monitor.expect_no_json(
        Duration::from_millis(TIMEOUT_MS * 2),
        "a service line at full strength",
        |v| v["kind"] == "service" && v["service"] == name.as_str(),
    );

    first.kill();
    let degraded = monitor.wait_json(
        Duration::from_millis(TIMEOUT_MS + INTERVAL_MS) + Duration::from_secs(3),
        "degraded",
        service_line(&name, "degraded"),
    );
    assert_eq!(
        (
            degraded["from"].as_str(),
            degraded["up"].as_u64(),
            degraded["expected"].as_u64()
        ),
        (Some("full"), Some(1), Some(2)),
        "{degraded}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(degraded["at"].as_str().unwrap()).is_ok());

    // The webhook: a service-wide event, with the counts; then a reminder.
    let fired = hook.wait(DELIVERED_WITHIN, "a firing event", |r| {
        r.path == "/hook" && hook_event(&name, "firing")(r)
    });
    let body = &fired.json;
    assert_eq!(
        (
            body["scope"].as_str(),
            body["to"].as_str(),
            body["alert_state"].as_str(),
            body["up"].as_u64(),
            body["expected"].as_u64()
        ),
        (
            Some("service"),
            Some("degraded"),
            Some("degraded"),
            Some(1),
            Some(2)
        ),
        "{body}"
    );
    assert!(body["instance"].is_null(), "{body}");
    assert!(
        body["summary"]
            .as_str()
            .is_some_and(|s| s.contains("DEGRADED") && s.contains("1 of 2")),
        "{body}"
    );
    hook.wait(DELIVERED_WITHIN, "a reminder", |r| {
        r.path == "/hook" && hook_event(&name, "reminder")(r)
    });
    // The command.
    let lines = wait_lines(&log, &name, 1, DELIVERED_WITHIN);
    assert_eq!(lines[0], format!("firing service {name} [] 1/2"));
    // Alertmanager: one alert for the service, without an instance label.
    let about = |status: &'static str| {
        let name = name.clone();
        move |r: &Received| {
            r.path == "/from-alertmanager"
                && r.json["status"] == status
                && r.json["alerts"].as_array().is_some_and(|alerts| {
                    alerts.iter().any(|a| {
                        a["labels"]["service"] == name.as_str()
                            && a["labels"]["alertname"] == "HeartbeatServiceDegraded"
                    })
                })
        }
    };
    let forwarded = hook.wait(
        Duration::from_secs(15),
        "HeartbeatServiceDegraded from Alertmanager",
        about("firing"),
    );
    let alert = forwarded.json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "HeartbeatServiceDegraded")
        .unwrap();
    assert!(alert["labels"].get("instance").is_none(), "{alert}");
    // The status document and the metrics.
    let document = status_document(&base);
    let listed: Vec<&Value> = document["degraded"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["service"] == name.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{document}");
    assert_eq!(
        (listed[0]["up"].as_u64(), listed[0]["expected"].as_u64()),
        (Some(1), Some(2))
    );
    let series = format!("heartbeat_service_degraded{{service=\"{name}\"}} 1");
    let (_, metrics) = http_get(&format!("{base}/metrics")).expect("metrics answer");
    assert!(metrics.contains(&series), "no {series} in:\n{metrics}");

    // Back to full strength: one line, resolved everywhere.
    let mut again = mock(BROKER, &name, "d-1", &[]);
    let full = monitor.wait_json(UP_WITHIN, "full again", service_line(&name, "full"));
    assert_eq!(
        (full["from"].as_str(), full["up"].as_u64()),
        (Some("degraded"), Some(2)),
        "{full}"
    );
    let resolved = hook.wait(DELIVERED_WITHIN, "a resolved event", |r| {
        r.path == "/hook" && hook_event(&name, "resolved")(r)
    });
    assert_eq!(
        (
            resolved.json["to"].as_str(),
            resolved.json["alert_state"].as_str()
        ),
        (Some("full"), Some("degraded"))
    );
    let lines = wait_lines(&log, &name, 2, DELIVERED_WITHIN);
    assert_eq!(lines[1], format!("resolved service {name} [] 2/2"));
    hook.wait(
        Duration::from_secs(15),
        "resolved from Alertmanager",
        about("resolved"),
    );
    assert!(
        status_document(&base)["degraded"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["service"] != name.as_str())
    );
    // Said once each way.
    monitor.expect_no_json(Duration::from_secs(1), "another service line", |v| {
        v["kind"] == "service" && v["service"] == name.as_str()
    });

    // None alive: the service is DOWN as a whole, and Alertmanager (which
    // alerts on `down` by default) hears of it as a service.
    again.kill();
    second.kill();
    let down = monitor.wait_json(
        Duration::from_millis(TIMEOUT_MS + INTERVAL_MS) + Duration::from_secs(3),
        "down as a whole",
        service_line(&name, "down"),
    );
    assert_eq!(
        (down["up"].as_u64(), down["expected"].as_u64()),
        (Some(0), Some(2)),
        "{down}"
    );
    hook.wait(
        Duration::from_secs(15),
        "HeartbeatServiceDown from Alertmanager",
        |r| {
            r.path == "/from-alertmanager"
                && r.json["status"] == "firing"
                && r.json["alerts"].as_array().is_some_and(|alerts| {
                    alerts.iter().any(|a| {
                        a["labels"]["service"] == name.as_str()
                            && a["labels"]["alertname"] == "HeartbeatServiceDown"
                    })
                })
        },
    );

    // The history keeps every change.
    let changes = wait_for(DELIVERED_WITHIN, "the changes in the history", || {
        let (status, body) =
            http_get(&format!("{base}/api/v1/history?service={name}")).expect("history answers");
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let changes = body["service_changes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (changes.len() >= 3).then_some(changes)
    });
    let tos: Vec<&str> = changes.iter().filter_map(|c| c["to"].as_str()).collect();
    // Newest first; the two kills may land in one check or in two (a
    // `degraded` between `full` and `down`).
    assert_eq!(tos[0], "down", "{changes:?}");
    assert_eq!(tos[tos.len() - 2..], ["full", "degraded"], "{changes:?}");
    assert_eq!(changes[tos.len() - 1]["up"], 1);
    monitor.stop_cleanly("TERM", Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}
