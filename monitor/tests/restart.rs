//! A restart does not hide an outage: the real monitor, with its history in
//! a real SQLite file, is stopped while a killed service is DOWN and its
//! alert is out; started again, it shows the service DOWN (reason
//! `restored`) in its status API, status page, `/metrics` and `monitor
//! status` before anything answers, sends nothing new about it, and
//! resolves the alert once when the service returns. The dashboard's side
//! is in `dashboard.rs`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::browser::{browser_dom, page_row};
use support::*;

const UP_WITHIN: Duration = Duration::from_secs(10);
const DOWN_WITHIN: Duration = Duration::from_secs(5);

/// A headless monitor serving HTTP, storing history in `db` and alerting the
/// webhook in `config`; the same id each run, as a supervised daemon has.
fn monitor_run(id: &str, config: &str, db: &str) -> (Proc, String) {
    let mut command = Command::new(monitor_bin());
    command
        .env("MONITOR__DETECTION__MODE", "fixed")
        .env("MONITOR__HISTORY__PATH", db)
        .env_remove("HEARTBEAT_KEY")
        .args(["--headless", "--url", BROKER, "--id", id])
        .args(["--listen", "127.0.0.1:0", "--config", config])
        .args([
            "--interval",
            &format!("{INTERVAL_MS}ms"),
            "--timeout",
            &format!("{TIMEOUT_MS}ms"),
        ]);
    let monitor = Proc::spawn(&format!("monitor {id}"), command);
    let base = monitor.listen_base();
    (monitor, base)
}

fn monitor_status(base: &str) -> (i32, String) {
    let out = Command::new(monitor_bin())
        .args(["status", "--url", base])
        .output()
        .expect("monitor status runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_service_down_when_the_monitor_stopped_is_down_after_it_starts_again_and_is_not_alerted_twice()
{
    let dir = TempDir::new("restart-test");
    let db = dir.0.join("heartbeat.db").to_string_lossy().into_owned();
    let config = dir.0.join("monitor.toml");
    let mut hook = Hook::start();
    std::fs::write(
        &config,
        format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let id = unique("mon");
    let name = unique("restored");

    let (mut first, _) = monitor_run(&id, &config, &db);
    let mut service = mock(BROKER, &name, "r-1", &[]);
    first.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    service.kill();
    first.wait_json(
        DOWN_WITHIN,
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    hook.wait(DOWN_WITHIN, "the DOWN alert", hook_event(&name, "firing"));
    first.stop_cleanly("TERM", Duration::from_secs(8));

    // Started again: DOWN at once, from the store, before anything answers.
    let (mut second, base) = monitor_run(&id, &config, &db);
    let line = second.wait_json(UP_WITHIN, "restored", transition(&name, "down", "restored"));
    assert_eq!(line["from"], "down", "{line}");
    let entry = wait_for(
        Duration::from_secs(5),
        "the status API lists it DOWN",
        || {
            let document = status_document(&base);
            status_entry(&document, &name)
                .filter(|e| e["state"] == "down")
                .cloned()
        },
    );
    assert_eq!(entry["instance"], "r-1", "{entry}");
    assert_eq!(entry["reason"], "restored", "{entry}");
    let (code, out) = monitor_status(&base);
    assert_eq!(code, 2, "monitor status says CRITICAL: {out}");
    assert!(out.contains(&name), "{out}");
    let row = wait_for(Duration::from_secs(60), "the page shows it DOWN", || {
        page_row(&browser_dom(&format!("{base}/")), &name)
            .filter(|row| row.contains("data-state=\"down\""))
    });
    assert!(row.contains(">DOWN<") && row.contains(">r-1<"), "{row}");
    let series = format!("heartbeat_up{{service=\"{name}\",instance=\"r-1\"}}");
    let up = wait_for(Duration::from_secs(5), "the metric", || {
        metric(&base, &series)
    });
    assert_eq!(up, 0.0, "{series}");

    // Not news: nothing about it is sent while it stays DOWN, well past the
    // time a live instance has to answer.
    let quiet = Duration::from_millis(3 * (TIMEOUT_MS + INTERVAL_MS));
    hook.expect_none(quiet, "an alert sent again after the restart", |r| {
        r.json["service"] == name.as_str()
    });

    // Back: UP on its first echo, and the alert from before resolved once.
    let _service = mock(BROKER, &name, "r-1", &[]);
    second.wait_json(UP_WITHIN, "back", transition(&name, "up", "recovered"));
    let resolved = hook.wait(DOWN_WITHIN, "the resolution", hook_event(&name, "resolved"));
    assert_eq!(resolved.json["alert_state"], "down", "{}", resolved.json);
    let settle = Instant::now() + Duration::from_secs(2);
    hook.expect_none(
        settle.saturating_duration_since(Instant::now()),
        "a second resolution or a new firing",
        |r| r.json["service"] == name.as_str(),
    );

    // The first run's minutes, closed when it stopped, are in the history
    // API: uptime with its coverage, per window.
    let history = || {
        let (status, body) = http_get(&format!(
            "{base}/api/v1/history?service={name}&instance=r-1"
        ))
        .expect("the history API answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let document = history();
    let windows: Vec<&str> = document["uptime"]
        .as_array()
        .expect("uptime in the history API")
        .iter()
        .map(|u| u["window"].as_str().unwrap())
        .collect();
    assert_eq!(windows, ["24h", "7d", "30d"], "{document}");
    let day = &document["uptime"][0];
    let (up, judged) = (
        day["up_ms"].as_i64().unwrap(),
        day["judged_ms"].as_i64().unwrap(),
    );
    assert!(up > 0 && judged > up, "up some, down some: {day}");
    let ratio = day["ratio"].as_f64().unwrap();
    assert!((ratio - up as f64 / judged as f64).abs() < 1e-9, "{day}");
    // Judged for seconds of a day: the coverage says how little that is.
    let coverage = day["coverage"].as_f64().unwrap();
    assert!(coverage > 0.0 && coverage < 0.01, "{day}");
    // The same stored figures in the status document and on the page,
    // read from the fleet model. The model reads the store at start and
    // every minute: a minute the second run closed in between shows in the
    // API first, and in the model at its next read.
    wait_for(
        Duration::from_secs(75),
        "the model's stored uptime = the API's",
        || {
            let ratio = history()["uptime"][0]["ratio"].as_f64()?;
            let document = status_document(&base);
            let entry = status_entry(&document, &name).expect("listed");
            let day = &entry["uptime"]["windows"][0];
            assert_eq!(day["window"], "24h", "{entry}");
            let shown = day["ratio"].as_f64().expect("a stored ratio");
            ((shown - ratio * 100.0).abs() < 0.01).then_some(())
        },
    );
    let row = page_row(&browser_dom(&format!("{base}/")), &name).expect("on the page");
    assert!(
        row.contains("24h ") && row.contains(" · 7d ") && row.contains(" · 30d "),
        "{row}"
    );
    second.stop_cleanly("TERM", Duration::from_secs(8));
}
