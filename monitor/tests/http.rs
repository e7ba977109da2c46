//! The HTTP endpoint, end to end with the real components: the real monitor
//! and mock-service against the real RabbitMQ, `/metrics` checked by
//! Prometheus's own `promtool` and scraped by a real Prometheus, the status
//! page loaded in headless Chromium, `/healthz` and the status API through a
//! broker outage on a test-owned node, and `monitor status`'s exit codes.

mod support;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::browser::{browser_dom, page_row, require, tool_dir};
use support::*;

const UP_WITHIN: Duration = Duration::from_secs(10);

/// `monitor status` against `base`: its exit code and stdout.
fn monitor_status(base: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(monitor_bin())
        .args(["status", "--url", base])
        .args(extra)
        .output()
        .expect("monitor status runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Wait until `monitor status` exits with `code` and prints a status line
/// starting with `line`; its stdout then. The status document may be up to
/// 200 ms behind the JSON lines, so a check waits for what it expects.
fn wait_status(base: &str, extra: &[&str], code: i32, line: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (got, out) = monitor_status(base, extra);
        if got == code && out.starts_with(line) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "monitor status never exited {code} with {line:?} within {within:?}; last exit {got}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A program started for a test, killed (with its process group) and its
/// directory removed when dropped.
struct Tool {
    child: Child,
    dir: PathBuf,
}

impl Tool {
    fn spawn(mut command: Command, dir: PathBuf) -> Self {
        let log = std::fs::File::create(dir.join("output.log")).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Self { child, dir }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A real Prometheus on its own port and data directory, scraping `target`
/// (`host:port`) every second, configured as the README says: with
/// `honor_labels`, so the monitor's `instance` label (the service instance)
/// is kept rather than renamed `exported_instance`.
fn start_prometheus(target: &str) -> (Tool, String) {
    require("prometheus", "prometheus");
    let dir = tool_dir("prometheus");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: heartbeat\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut command = Command::new("prometheus");
    command
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(&dir);
    let tool = Tool::spawn(command, dir);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "Prometheus ready", || {
        http_get(&format!("{base}/-/ready")).filter(|(status, _)| *status == 200)
    });
    (tool, base)
}

/// The values of an instant query, as (labels, value) pairs.
fn prometheus_query(base: &str, query: &str) -> Vec<(Value, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let Ok(mut response) = agent
        .get(format!("{base}/api/v1/query"))
        .query("query", query)
        .call()
    else {
        return Vec::new();
    };
    let body: Value = response.body_mut().read_json().unwrap_or_default();
    body["data"]["result"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .map(|r| {
                    (
                        r["metric"].clone(),
                        r["value"][1].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn metrics_are_prometheus_text_and_a_real_prometheus_sees_a_killed_service_go_down() {
    let (mut monitor, base) = http_monitor(BROKER, &[]);
    let name = unique("scraped");
    let mut mock = mock(BROKER, &name, "m-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );

    // The exposition passes Prometheus's own checker, naming lints included.
    let (status, text) = http_get(&format!("{base}/metrics")).unwrap();
    assert_eq!(status, 200);
    require("promtool", "prometheus");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let up_line = format!("heartbeat_up{{service=\"{name}\",instance=\"m-1\"}} 1");
    assert!(text.contains(&up_line), "no {up_line:?} in:\n{text}");
    // Started without HEARTBEAT_KEY.
    assert!(text.contains("\nheartbeat_signed 0\n"), "{text}");
    for family in [
        "heartbeat_state",
        "heartbeat_rtt_seconds",
        "heartbeat_transitions_total",
        "heartbeat_echoes_received_total",
        "heartbeat_pings_sent_total",
        "heartbeat_messages_rejected_total",
        "heartbeat_broker_link_state",
        "heartbeat_event_loop_lag_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no {family} in:\n{text}"
        );
    }

    let target = base.trim_start_matches("http://");
    let (prometheus, prom) = start_prometheus(target);
    let query = format!("heartbeat_up{{service=\"{name}\"}}");
    let value_is = |want: &'static str| {
        let query = query.clone();
        let prom = prom.clone();
        move || {
            let results = prometheus_query(&prom, &query);
            results.iter().any(|(_, v)| v == want).then_some(results)
        }
    };
    let up = wait_for(
        Duration::from_secs(30),
        "Prometheus reports heartbeat_up 1",
        value_is("1"),
    );
    assert_eq!(up[0].0["instance"], "m-1", "{up:?}");

    mock.kill();
    monitor.wait_json(
        Duration::from_secs(5),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    wait_for(
        Duration::from_secs(15),
        "Prometheus reports heartbeat_up 0 after the kill",
        value_is("0"),
    );
    let scrapes = prometheus_query(&prom, "up{job=\"heartbeat\"}");
    assert!(
        scrapes.iter().all(|(_, v)| v == "1"),
        "every scrape succeeded: {scrapes:?}\n{}",
        prometheus.output()
    );
}

#[test]
fn the_status_page_in_a_real_browser_shows_a_killed_service_go_down() {
    let (mut monitor, base) = http_monitor(BROKER, &[]);
    let name = unique("paged");
    let mut mock = mock(BROKER, &name, "p-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );

    let page = format!("{base}/");
    let row = wait_for(
        Duration::from_secs(60),
        "the page shows the service UP",
        || page_row(&browser_dom(&page), &name).filter(|row| row.contains("data-state=\"up\"")),
    );
    assert!(row.contains(">UP<") && row.contains(">p-1<"), "{row}");
    assert!(row.contains(" ms<"), "an RTT is shown: {row}");
    assert!(row.contains("%<"), "an uptime is shown: {row}");
    assert!(row.contains(" ago<"), "the last echo is shown: {row}");
    assert!(
        row.contains("data-severity=\"ok\""),
        "the severity comes from the document: {row}"
    );

    mock.kill();
    monitor.wait_json(
        Duration::from_secs(5),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    let dom = wait_for(
        Duration::from_secs(60),
        "the page shows the service DOWN",
        || {
            let dom = browser_dom(&page);
            page_row(&dom, &name)
                .is_some_and(|row| row.contains("data-state=\"down\"") && row.contains(">DOWN<"))
                .then_some(dom)
        },
    );
    // Worst first: no UP row comes before the DOWN one.
    let down_at = dom.find(&format!("data-service=\"{name}\"")).unwrap();
    assert!(
        !dom[..down_at].contains("data-state=\"up\""),
        "a DOWN row is listed after an UP one"
    );
    assert!(
        dom.contains("<meta name=\"viewport\""),
        "readable on a phone"
    );
    assert!(
        dom.contains("broker link connected") && dom.contains(" since ") && dom.contains(" UTC"),
        "the link's state and UTC times are shown"
    );
}

#[test]
fn healthz_the_status_api_and_monitor_status_through_a_broker_outage() {
    let mut node = PrivateBroker::start();
    let url = node.url();
    let (a, b) = (unique("steady"), unique("doomed"));
    // Everyone retries quickly, so the outage's end is seen within seconds.
    let fast = [("MONITOR__BROKER__RECONNECT_MAX", "500ms")];
    let (mut monitor, base) = http_monitor(&url, &fast);
    let mock = |name: &str, instance: &str| {
        let mut command = Command::new(mock_bin());
        command
            .args(["--url", &url, "--name", name, "--instance", instance])
            .envs(fast);
        Proc::spawn(&format!("mock {name}"), command)
    };
    let _mock_a = mock(&a, "a-1");
    let mut mock_b = mock(&b, "b-1");
    for service in [&a, &b] {
        monitor.wait_json(
            UP_WITHIN,
            "first seen",
            transition(service, "up", "first_seen"),
        );
    }

    // Everything UP: healthy, and the check says OK.
    assert_eq!(
        http_get(&format!("{base}/healthz")),
        Some((200, "ok\n".to_owned()))
    );
    // Uptime is a share of watched time: it needs a moment of watching.
    let document = wait_for(Duration::from_secs(5), "an uptime figure", || {
        let document = status_document(&base);
        status_entry(&document, &a)?["uptime"]["since_start"].as_f64()?;
        Some(document)
    });
    assert_eq!(document["link"]["state"], "connected");
    let entry = status_entry(&document, &a).expect("a is listed");
    assert_eq!(entry["instance"], "a-1");
    assert_eq!(entry["state"], "up");
    for field in ["since", "last_echo"] {
        let at = entry[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {entry}"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "{field}: {at}"
        );
    }
    assert!(
        entry["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{entry}"
    );
    assert!(
        entry["uptime"]["since_start"]
            .as_f64()
            .is_some_and(|p| p == 100.0),
        "{entry}"
    );
    let out = wait_status(
        &base,
        &[],
        0,
        "HEARTBEAT OK - 2 up",
        Duration::from_secs(10),
    );
    assert!(out.contains(&a) && out.contains(&b), "{out}");
    let (code, json) = monitor_status(&base, &["--json", "--service", &a]);
    assert_eq!(code, 0);
    let filtered: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(filtered["services"].as_array().unwrap().len(), 1, "{json}");

    // The broker dies: the monitor cannot judge, and says so.
    node.kill();
    let (_, reason) = wait_for(Duration::from_secs(15), "/healthz turns 503", || {
        http_get(&format!("{base}/healthz")).filter(|(status, _)| *status == 503)
    });
    assert!(reason.starts_with("broker link "), "{reason}");
    assert_ne!(status_document(&base)["link"]["state"], "connected");
    let out = wait_status(&base, &[], 3, "HEARTBEAT UNKNOWN", Duration::from_secs(10));
    assert!(out.contains("cannot judge"), "{out}");

    // Back: healthy again, and nobody was declared DOWN for the broker's outage.
    node.spawn();
    wait_for(Duration::from_secs(30), "/healthz turns 200", || {
        http_get(&format!("{base}/healthz")).filter(|(status, _)| *status == 200)
    });
    wait_status(
        &base,
        &[],
        0,
        "HEARTBEAT OK - 2 up",
        Duration::from_secs(30),
    );
    monitor.expect_no_json(Duration::from_millis(100), "a DOWN", |v| v["to"] == "down");

    // A crash: critical.
    mock_b.kill();
    monitor.wait_json(
        Duration::from_secs(10),
        "timed out",
        transition(&b, "down", "timed_out"),
    );
    let out = wait_status(
        &base,
        &[],
        2,
        "HEARTBEAT CRITICAL - 1 down, 1 up",
        Duration::from_secs(5),
    );
    let table: Vec<&str> = out.lines().collect();
    assert!(table[1].starts_with("SERVICE"), "{out}");
    assert!(
        table[2].starts_with(b.as_str()) && table[2].contains("DOWN"),
        "worst first: {out}"
    );
    assert_eq!(
        monitor_status(&base, &["--service", &a]).0,
        0,
        "a alone is fine"
    );

    // The monitor itself gone: unknown.
    monitor.stop_cleanly("TERM", Duration::from_secs(5));
    let (code, out) = monitor_status(&base, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("HEARTBEAT UNKNOWN - cannot reach the monitor"),
        "{out}"
    );
}

#[test]
fn bad_requests_get_a_4xx_with_a_short_message() {
    let (_monitor, base) = http_monitor(BROKER, &[]);
    let (status, body) = http_get(&format!("{base}/nope")).unwrap();
    assert_eq!(status, 404);
    assert!(body.starts_with("no such page: /nope"), "{body}");
    let (status, body) = http_get(&format!("{base}/api/v1/status?colour=red")).unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("service=NAME") && body.lines().count() == 1,
        "{body}"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .post(format!("{base}/metrics"))
        .send("x")
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 405);
    let (status, page) = http_get(&format!("{base}/")).unwrap();
    assert_eq!(status, 200);
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
}

#[test]
fn a_bad_or_taken_listen_address_stops_the_monitor_with_one_line() {
    let bad = Command::new(monitor_bin())
        .args(["--headless", "--listen", "9464"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("monitor: invalid setting `http.listen`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = Command::new(monitor_bin())
        .args(["--headless", "--url", BROKER, "--id", &unique("mon")])
        .args(["--listen", &address])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("monitor: cannot listen on {address}")),
        "{stderr}"
    );
}

#[test]
fn rejected_messages_are_counted_by_reason_in_the_metrics() {
    let (monitor, base) = http_monitor(BROKER, &[]);
    let id = monitor.name.strip_prefix("monitor ").unwrap().to_owned();
    // Its queue exists once it is connected; before, the broker drops what is sent to it.
    monitor.wait_stderr(Duration::from_secs(10), " connected");
    let echo = |v: u32, service: &str| {
        format!(
            r#"{{"v":{v},"type":"echo","service":"{service}","instance":"i","seq":1,"at":"2026-11-23T10:00:00Z"}}"#
        )
        .into_bytes()
    };
    let bodies = [b"{not json".to_vec(), echo(2, "x"), echo(1, "")];
    let queue = format!("heartbeat.monitor.{id}");
    publish_raw(
        BROKER,
        bodies
            .iter()
            .map(|body| ("", queue.as_str(), body.as_slice())),
        None,
    );
    let wanted = [
        "heartbeat_messages_rejected_total{reason=\"not_json\"} 1",
        "heartbeat_messages_rejected_total{reason=\"unsupported_version\"} 1",
        "heartbeat_messages_rejected_total{reason=\"bad_name\"} 1",
    ];
    wait_for(
        Duration::from_secs(10),
        "one rejection of each reason",
        || {
            let (_, text) = http_get(&format!("{base}/metrics"))?;
            wanted.iter().all(|line| text.contains(line)).then_some(())
        },
    );
}

#[test]
fn a_suspect_service_is_a_warning_and_phi_is_shown() {
    // A long SUSPECT: many missed deadlines before DOWN.
    let (mut monitor, base) = http_monitor(
        BROKER,
        &[
            ("MONITOR__DETECTION__MODE", "fixed"),
            ("MONITOR__DETECTION__FAILURES_BEFORE_DOWN", "1000"),
        ],
    );
    let name = unique("wavering");
    let mock = mock(BROKER, &name, "w-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    let only = ["--service", name.as_str()];
    wait_status(
        &base,
        &only,
        0,
        "HEARTBEAT OK - 1 up",
        Duration::from_secs(10),
    );

    // Hung: connected, silent.
    mock.signal("STOP");
    let out = wait_status(
        &base,
        &only,
        1,
        "HEARTBEAT WARNING - 1 suspect",
        Duration::from_secs(10),
    );
    assert!(out.contains("SUSPECT"), "{out}");
    mock.signal("CONT");
    wait_status(
        &base,
        &only,
        0,
        "HEARTBEAT OK - 1 up",
        Duration::from_secs(10),
    );

    // Phi mode, the default: each instance's phi in the status API and the metrics.
    let (_phi_monitor, phi_base) = http_monitor(BROKER, &[("MONITOR__DETECTION__MODE", "phi")]);
    let phi = wait_for(Duration::from_secs(10), "phi in the status API", || {
        status_entry(&status_document(&phi_base), &name)?["phi"].as_f64()
    });
    assert!(phi >= 0.0, "{phi}");
    let (_, text) = http_get(&format!("{phi_base}/metrics")).unwrap();
    let series = format!("heartbeat_phi{{service=\"{name}\",instance=\"w-1\"}} ");
    assert!(text.contains(&series), "no {series:?} in:\n{text}");
}

#[test]
fn a_service_below_its_expected_instances_is_degraded_and_a_warning() {
    let (mut monitor, base) = http_monitor(BROKER, &[("MONITOR__DETECTION__INSTANCES", "2")]);
    let name = unique("degraded");
    let _first = mock(BROKER, &name, "d-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    let only = ["--service", name.as_str()];
    let out = wait_status(
        &base,
        &only,
        1,
        &format!("HEARTBEAT WARNING - 1 up; degraded: {name} 1/2"),
        Duration::from_secs(10),
    );
    assert!(out.contains(" d-1 "), "{out}");
    let degraded = wait_for(Duration::from_secs(5), "degraded in the status API", || {
        status_document(&base)["degraded"]
            .as_array()?
            .iter()
            .find(|d| d["service"] == name.as_str())
            .cloned()
    });
    assert_eq!(
        (degraded["up"].as_u64(), degraded["expected"].as_u64()),
        (Some(1), Some(2))
    );

    let _second = mock(BROKER, &name, "d-2", &[]);
    wait_status(
        &base,
        &only,
        0,
        "HEARTBEAT OK - 2 up",
        Duration::from_secs(10),
    );
}

#[test]
fn monitor_status_into_a_closed_pipe_ends_quietly_with_its_verdict() {
    let (mut monitor, base) = http_monitor(BROKER, &[]);
    let name = unique("piped");
    let _mock = mock(BROKER, &name, "p-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    let only = ["--service", name.as_str()];
    wait_status(
        &base,
        &only,
        0,
        "HEARTBEAT OK - 1 up",
        Duration::from_secs(10),
    );
    // `monitor status | true`: the reader is gone before anything is written.
    for json in [false, true] {
        let mut child = Command::new(monitor_bin())
            .args(["status", "--url", &base])
            .args(only)
            .args(json.then_some("--json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("monitor status runs");
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "--json {json}: {:?}, stderr:\n{stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "--json {json}: {stderr}");
    }
}
