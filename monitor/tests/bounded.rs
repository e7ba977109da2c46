//! Made-up names and made-up seqs cannot grow the monitor without bound: on
//! a test-owned broker node (so that no other test's services take the
//! cap), the real monitor tracks at most `max_instances`, counts and drops
//! the rest with few warnings, forgets the ones DOWN for `forget_after`,
//! and drops echoes of no ping it sent. Counted in `/metrics`.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const CAP: usize = 20;

/// `heartbeat_messages_rejected_total{reason="..."}` in `/metrics`.
fn rejected(base: &str, reason: &str) -> f64 {
    let series = format!("heartbeat_messages_rejected_total{{reason=\"{reason}\"}}");
    metric(base, &series).unwrap_or(0.0)
}

/// The status document's rows whose service starts with `prefix`.
fn rows(base: &str, prefix: &str) -> Vec<Value> {
    status_document(base)["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["service"].as_str().is_some_and(|s| s.starts_with(prefix)))
        .cloned()
        .collect()
}

#[test]
fn tracked_instances_are_capped_forgotten_when_gone_and_unknown_seqs_dropped() {
    let node = PrivateBroker::start();
    let url = node.url();
    let id = unique("mon");
    // Alerts on DOWN, to see a forgotten instance's alert end.
    let mut hook = Hook::start();
    let config = std::env::temp_dir().join(format!("{}.toml", unique("bounded")));
    std::fs::write(
        &config,
        format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\ntransitions = [\"down\"]\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    let mut command = Command::new(monitor_bin());
    command
        .env("MONITOR__DETECTION__MODE", "fixed")
        .env("MONITOR__MAX_INSTANCES", CAP.to_string())
        .env("MONITOR__FORGET_AFTER", "2s")
        .env("MONITOR__HISTORY__PATH", "")
        .args(["--headless", "--url", &url, "--id", &id])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .args(["--interval", &format!("{INTERVAL_MS}ms")])
        .args(["--timeout", &format!("{TIMEOUT_MS}ms")]);
    let mut monitor = Proc::spawn("monitor", command);
    let base = monitor.listen_base();

    // A fleet three times the cap: the cap is tracked, the rest refused.
    let fleet = unique("crowd");
    let mut crowd = mock(&url, &fleet, "c", &["--count", &(3 * CAP).to_string()]);
    wait_for(Duration::from_secs(15), "refusals counted", || {
        (rejected(&base, "instance_cap") >= (2 * CAP) as f64).then_some(())
    });
    let tracked = rows(&base, &fleet);
    assert_eq!(tracked.len(), CAP, "{tracked:#?}");
    monitor.wait_stderr(Duration::from_secs(5), "max_instances");
    // Refusals keep coming (every ping), warnings do not.
    wait_for(Duration::from_secs(10), "more refusals", || {
        (rejected(&base, "instance_cap") >= (10 * CAP) as f64).then_some(())
    });
    let warnings = monitor.stderr().matches("max_instances").count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} warnings:\n{}",
        monitor.stderr()
    );
    // Logged as the engine's (it refuses), not as alerts' (monitor::notify),
    // naming the service with the most instances.
    let stderr = monitor.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.contains("max_instances"))
        .unwrap();
    assert!(
        warning.contains(" monitor::engine: instance cap: ")
            && warning.contains(&format!("most instances: service \"{fleet}-")),
        "{warning}"
    );
    assert_eq!(rows(&base, &fleet).len(), CAP, "still the cap");

    // Gone, then forgotten after forget_after: rows and series go.
    crowd.kill();
    wait_for(Duration::from_secs(15), "the crowd forgotten", || {
        rows(&base, &fleet).is_empty().then_some(())
    });
    let (_, metrics) = http_get(&format!("{base}/metrics")).unwrap();
    assert!(
        !metrics.contains(&format!("service=\"{fleet}")),
        "forgotten instances keep series:\n{metrics}"
    );
    // Their DOWN alerts fired, and ended when they were forgotten.
    let crowd_event = |event: &'static str| {
        let fleet = fleet.clone();
        move |r: &Received| {
            r.json["event"] == event
                && r.json["service"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&fleet))
        }
    };
    hook.wait(
        Duration::from_secs(10),
        "a DOWN alert",
        crowd_event("firing"),
    );
    let ended = hook.wait(
        Duration::from_secs(10),
        "a forgotten event",
        crowd_event("forgotten"),
    );
    assert_eq!(ended.json["alert_state"], "down", "{}", ended.json);
    let _ = std::fs::remove_file(&config);
    // The room is free again: a newcomer is tracked.
    let late = unique("late");
    let _late = mock(&url, &late, "l-1", &[]);
    monitor.wait_json(
        Duration::from_secs(10),
        "first seen",
        transition(&late, "up", "first_seen"),
    );

    // An echo of a seq this monitor never sent: counted and dropped, no row.
    let forged = unique("forged");
    let before = rejected(&base, "unknown_seq");
    let body = format!(
        r#"{{"v":1,"type":"echo","service":"{forged}","instance":"f-1","monitor":"{id}","seq":999999999}}"#
    );
    let queue = format!("heartbeat.monitor.{id}");
    publish_raw(&url, [("", queue.as_str(), body.as_bytes())], None);
    wait_for(Duration::from_secs(5), "the forged echo counted", || {
        (rejected(&base, "unknown_seq") > before).then_some(())
    });
    assert!(rows(&base, &forged).is_empty());
    monitor.expect_no_json(Duration::from_millis(500), "the forged service", |v| {
        v["service"] == forged.as_str()
    });
    monitor.stop_cleanly("TERM", Duration::from_secs(5));
}

#[test]
fn a_flood_of_names_seen_once_fills_the_cap_but_a_real_newcomer_is_still_tracked() {
    let node = PrivateBroker::start();
    let url = node.url();
    let id = unique("mon");
    let mut command = Command::new(monitor_bin());
    command
        .env("MONITOR__DETECTION__MODE", "fixed")
        .env("MONITOR__MAX_INSTANCES", CAP.to_string())
        .env("MONITOR__HISTORY__PATH", "")
        .args(["--headless", "--url", &url, "--id", &id])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--interval", &format!("{INTERVAL_MS}ms")])
        .args(["--timeout", &format!("{TIMEOUT_MS}ms")]);
    let mut monitor = Proc::spawn("monitor", command);
    let base = monitor.listen_base();
    // A seq the monitor sent, so that the made-up echoes are taken (unsigned).
    let seq = wait_for(Duration::from_secs(10), "pings sent", || {
        metric(&base, "heartbeat_pings_sent_total").filter(|&n| n >= 2.0)
    }) as u64;
    // Three times the cap of made-up instance names, each heard once.
    let flood = unique("flood");
    let queue = format!("heartbeat.monitor.{id}");
    let bodies: Vec<String> = (0..3 * CAP)
        .map(|i| {
            format!(
                r#"{{"v":1,"type":"echo","service":"{flood}","instance":"x{i}","monitor":"{id}","seq":{seq}}}"#
            )
        })
        .collect();
    publish_raw(
        &url,
        bodies.iter().map(|b| ("", queue.as_str(), b.as_bytes())),
        None,
    );
    wait_for(Duration::from_secs(10), "the cap filled", || {
        (rejected(&base, "instance_cap") >= (2 * CAP) as f64 && rows(&base, &flood).len() == CAP)
            .then_some(())
    });
    // The warning names the service that floods.
    monitor.wait_stderr(
        Duration::from_secs(5),
        &format!("most instances: service \"{flood}\" ({CAP})"),
    );
    // A real instance started afterwards is tracked: a name seen once and
    // silent since makes room for it (before, it was refused for as long
    // as forget_after).
    let real = unique("real");
    let _real = mock(&url, &real, "r-1", &[]);
    monitor.wait_json(
        Duration::from_secs(10),
        "the real newcomer first seen",
        transition(&real, "up", "first_seen"),
    );
    assert_eq!(
        rows(&base, &flood).len(),
        CAP - 1,
        "one made-up name forgotten"
    );
    monitor.stop_cleanly("TERM", Duration::from_secs(5));
}
