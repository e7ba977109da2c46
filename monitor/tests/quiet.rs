//! Keeping quiet, end to end with the real binaries: the write API's
//! token (none, wrong, right; never in a log at any level), silences
//! through `monitor silence` kept across a restart, a planned drain, and
//! the configuration errors of `depends_on` and `[[maintenance]]`.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const TOKEN: &str = "quiet-test-token-5f1e2d3c4b5a6978";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// POST a JSON body with an optional bearer token: status and body.
fn post(url: &str, token: Option<&str>, body: &Value) -> (u16, String) {
    let mut request = agent().post(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.send_json(body).expect("the monitor answers");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = agent().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().expect("the monitor answers");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// `monitor silence ...` with `env`: exit code, stdout, stderr.
fn silence(base: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(monitor_bin())
        .arg("silence")
        .args(args)
        .args(["--url", base])
        .env_remove("HEARTBEAT_API_TOKEN")
        .env_remove("HEARTBEAT_API_READ_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("monitor silence runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn state_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn writes_are_off_without_a_token_and_say_how_to_turn_them_on() {
    let dir = state_dir("quiet-off");
    let db = dir.join("h.db").display().to_string();
    let (_monitor, base) = http_monitor(BROKER, &[("MONITOR__HISTORY__PATH", db.as_str())]);
    let body = serde_json::json!({"service": "orders", "for": "1h", "reason": "deploy"});
    let (status, text) = post(&format!("{base}/api/v1/silences"), Some(TOKEN), &body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("HEARTBEAT_API_TOKEN"), "{text}");
    // Reads stay open.
    let (status, text) = get(&format!("{base}/api/v1/silences"), None);
    assert_eq!((status, text.trim()), (200, r#"{"silences":[]}"#));
    // The command line needs the token before it even asks.
    let (code, _, err) = silence(
        &base,
        &["add", "--service", "orders", "--for", "1h", "--reason", "x"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("HEARTBEAT_API_TOKEN"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_token_guards_writes_and_never_reaches_a_log() {
    let dir = state_dir("quiet-token");
    let db = dir.join("h.db").display().to_string();
    let env = [
        ("MONITOR__HISTORY__PATH", db.as_str()),
        ("HEARTBEAT_API_TOKEN", TOKEN),
        ("RUST_LOG", "trace"),
    ];
    let (mut monitor, base) = http_monitor(BROKER, &env);
    let url = format!("{base}/api/v1/silences");
    let body = serde_json::json!({"service": "orders", "for": "1h", "reason": "deploy"});
    let (status, text) = post(&url, None, &body);
    assert_eq!(status, 401, "no token: {text}");
    let (status, text) = post(&url, Some("not-the-token-0000000000"), &body);
    assert_eq!(status, 401, "wrong token: {text}");
    let (status, text) = post(&url, Some(TOKEN), &body);
    assert_eq!(status, 201, "right token: {text}");
    let added: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(added["service"], "orders");
    // A bad request says what to fix, in one line.
    let (status, text) = post(
        &url,
        Some(TOKEN),
        &serde_json::json!({"service": "bad name", "for": "1h", "reason": "x"}),
    );
    assert_eq!(status, 400, "{text}");
    assert_eq!(text.trim().lines().count(), 1, "{text}");

    // The command line, logging at every level, reads the same variable.
    let cli_env = [("HEARTBEAT_API_TOKEN", TOKEN), ("RUST_LOG", "trace")];
    let (code, out, err) = silence(
        &base,
        &[
            "add",
            "--service",
            "pay*",
            "--instance",
            "p-1",
            "--for",
            "30m",
            "--reason",
            "rolling restart",
        ],
        &cli_env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("silenced pay*/p-1 until"), "{out}");
    let (code, listed, err) = silence(&base, &["list"], &cli_env);
    assert_eq!(code, 0, "{err}");
    assert!(
        listed.contains("orders") && listed.contains("rolling restart"),
        "{listed}"
    );
    let id = out.split_whitespace().next().unwrap().to_owned();
    let (code, out, err) = silence(
        &base,
        &["expire", &id],
        &[("HEARTBEAT_API_TOKEN", "wrong-token-0000000000")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("401"), "{err}");
    let (code, out, _) = silence(&base, &["expire", &id], &cli_env);
    assert_eq!(code, 0, "{out}");
    for text in [&out, &listed, &err] {
        assert!(!text.contains(TOKEN), "the token was printed: {text}");
    }
    monitor.stop_cleanly("TERM", Duration::from_secs(10));
    let logs = monitor.stderr();
    assert!(
        logs.contains("silence added"),
        "trace logs were on: {logs:.2000}"
    );
    assert!(!logs.contains(TOKEN), "the token is in the monitor's log");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_read_token_guards_reads_but_not_the_health_check() {
    let reader = "reader-token-0123456789abcdef";
    let (_monitor, base) = http_monitor(
        BROKER,
        &[
            ("HEARTBEAT_API_READ_TOKEN", reader),
            ("MONITOR__HISTORY__PATH", ""),
        ],
    );
    let (status, _) = get(&format!("{base}/api/v1/status"), None);
    assert_eq!(status, 401);
    let (status, _) = get(&format!("{base}/metrics"), Some("wrong-0000000000000000"));
    assert_eq!(status, 401);
    let (status, text) = get(&format!("{base}/api/v1/status"), Some(reader));
    assert_eq!(status, 200, "{text}");
    wait_for(
        Duration::from_secs(10),
        "/healthz open without a token",
        || (get(&format!("{base}/healthz"), None).0 == 200).then_some(()),
    );
    // `monitor status` sends the read token from the environment.
    let out = Command::new(monitor_bin())
        .args(["status", "--url", &base, "--json"])
        .env("HEARTBEAT_API_READ_TOKEN", reader)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"monitor\""), "{text}");
}

#[test]
fn silences_are_kept_across_a_restart_and_shown_with_their_end() {
    let dir = state_dir("quiet-restart");
    let db = dir.join("h.db").display().to_string();
    let env = [
        ("MONITOR__HISTORY__PATH", db.as_str()),
        ("HEARTBEAT_API_TOKEN", TOKEN),
    ];
    let cli_env = [("HEARTBEAT_API_TOKEN", TOKEN)];
    let (mut first, base) = http_monitor(BROKER, &env);
    let (code, out, err) = silence(
        &base,
        &[
            "add",
            "--service",
            "orders",
            "--for",
            "1h",
            "--reason",
            "db upgrade",
        ],
        &cli_env,
    );
    assert_eq!(code, 0, "{err}");
    let id = out.split_whitespace().next().unwrap().to_owned();
    first.stop_cleanly("TERM", Duration::from_secs(10));

    let (_second, base) = http_monitor(BROKER, &env);
    let (code, listed, err) = silence(&base, &["list", "--json"], &cli_env);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let kept = &listed["silences"][0];
    assert_eq!(kept["id"], id.as_str(), "{listed}");
    assert_eq!(kept["reason"], "db upgrade");
    // The status document shows it, with its end.
    let document = status_document(&base);
    assert_eq!(document["silences"][0]["id"], id.as_str(), "{document}");
    assert!(document["silences"][0]["ends_at"].is_string());
    let (code, _, _) = silence(&base, &["expire", &id], &cli_env);
    assert_eq!(code, 0);
    let (_, listed, _) = silence(&base, &["list"], &cli_env);
    assert_eq!(listed.trim(), "no silences in force");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_drain_is_left_while_promised_and_down_when_not_back_in_time() {
    let service = unique("drain");
    let mut monitor = monitor(BROKER, &[]);
    let mut mock = mock(BROKER, &service, "d-1", &["--drain", "2s"]);
    monitor.wait_json(
        Duration::from_secs(15),
        "up",
        transition(&service, "up", "first_seen"),
    );
    mock.stop_cleanly("INT", Duration::from_secs(10));
    monitor.wait_json(
        Duration::from_secs(5),
        "draining",
        transition(&service, "left", "draining"),
    );
    let down = monitor.wait_json(
        Duration::from_secs(6),
        "not back",
        transition(&service, "down", "not_back"),
    );
    assert_eq!(down["from"], "left");

    // One that comes back in time is simply UP again.
    let back = unique("drain-back");
    let mut mock = support::mock(BROKER, &back, "d-2", &["--drain", "20s"]);
    monitor.wait_json(
        Duration::from_secs(15),
        "up",
        transition(&back, "up", "first_seen"),
    );
    mock.stop_cleanly("INT", Duration::from_secs(10));
    monitor.wait_json(
        Duration::from_secs(5),
        "draining",
        transition(&back, "left", "draining"),
    );
    let _again = support::mock(BROKER, &back, "d-2", &[]);
    monitor.wait_json(
        Duration::from_secs(15),
        "rejoined",
        transition(&back, "up", "rejoined"),
    );
}

#[test]
fn a_dependency_cycle_and_a_bad_maintenance_window_are_one_line_errors() {
    let dir = state_dir("quiet-config");
    for (toml, says) in [
        (
            "[services.a]\ndepends_on = [\"b\"]\n[services.b]\ndepends_on = [\"a\"]\n",
            "a cycle: a -> b -> a",
        ),
        (
            "[[maintenance]]\nservices = [\"orders\"]\nschedule = \"every sunday\"\nduration = \"1h\"\n",
            "maintenance[0].schedule",
        ),
        (
            "[[maintenance]]\nservices = [\"orders\"]\nschedule = \"0 3 * * SUN\"\ntimezone = \"Mars/Olympus\"\nduration = \"1h\"\n",
            "maintenance[0].timezone",
        ),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, toml).unwrap();
        let out = Command::new(monitor_bin())
            .args(["--headless", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A config file with one webhook target, in `dir`.
fn webhook_config(dir: &std::path::Path, hook: &Hook, extra: &str) -> String {
    let file = dir.join("monitor.toml");
    std::fs::write(
        &file,
        format!(
            "[history]\npath = \"{}\"\n\n[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n\n{extra}",
            dir.join("h.db").display(),
            hook.url("/hook")
        ),
    )
    .unwrap();
    file.display().to_string()
}

/// [`webhook_config`] with a real Alertmanager as a second target
/// (`resend = "1s"`), and the receiver Alertmanager notifies.
fn with_alertmanager(
    dir: &std::path::Path,
    hook: &Hook,
    extra: &str,
) -> (String, Hook, support::alertmanager::Alertmanager) {
    let relayed = Hook::start();
    let alertmanager = support::alertmanager::Alertmanager::start(&relayed.url("/am"));
    let config = webhook_config(
        dir,
        hook,
        &format!(
            "[[notify]]\nkind = \"alertmanager\"\nurl = \"{}\"\nresend = \"1s\"\n\n{extra}",
            alertmanager.url
        ),
    );
    (config, relayed, alertmanager)
}

/// An Alertmanager notification with `service`'s alert firing in it.
fn relays_firing(service: &str) -> impl Fn(&Received) -> bool + '_ {
    move |r| {
        r.json["alerts"].as_array().is_some_and(|alerts| {
            alerts
                .iter()
                .any(|a| a["labels"]["service"] == service && a["status"] == "firing")
        })
    }
}

#[test]
fn a_cli_silence_holds_the_alert_until_it_ends_and_then_it_goes_out_once() {
    let dir = state_dir("quiet-silence");
    let mut hook = Hook::start();
    // A real Alertmanager too, with a receiver of its own.
    let (config, mut relayed, alertmanager) = with_alertmanager(&dir, &hook, "");
    let service = unique("hushed");
    let mut monitor = monitor_with_env(
        BROKER,
        &["--config", &config, "--listen", "127.0.0.1:0"],
        &[("HEARTBEAT_API_TOKEN", TOKEN)],
    );
    let base = monitor.listen_base();
    let mut mock = mock(BROKER, &service, "h-1", &[]);
    monitor.wait_json(
        Duration::from_secs(15),
        "up",
        transition(&service, "up", "first_seen"),
    );
    let (code, out, err) = silence(
        &base,
        &[
            "add",
            "--service",
            &service,
            "--for",
            "5s",
            "--reason",
            "deploy",
        ],
        &[("HEARTBEAT_API_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{err}");
    let added = chrono::Utc::now();
    mock.kill();
    monitor.wait_json(
        Duration::from_secs(10),
        "down",
        transition(&service, "down", "timed_out"),
    );
    // Detection went on, and the fleet model marks the row: the status
    // document shows the silence beside the state it does not change.
    let document = status_document(&base);
    let entry = status_entry(&document, &service).expect("the service is in the document");
    assert_eq!(entry["state"], "down", "{entry}");
    assert_eq!(entry["mark"]["kind"], "silenced", "{entry}");
    assert_eq!(entry["mark"]["reason"], "deploy", "{entry}");
    assert!(entry["mark"]["until"].is_string(), "{entry}");
    // The alert waits for the silence's end.
    let until = added + chrono::Duration::seconds(4);
    let quiet_for = (until - chrono::Utc::now()).to_std().unwrap_or_default();
    hook.expect_none(
        quiet_for,
        "an alert while silenced",
        hook_event(&service, "firing"),
    );
    let firing_at_am = relays_firing(&service);
    assert_eq!(
        relayed.count(&firing_at_am),
        0,
        "Alertmanager relayed an alert while silenced"
    );
    let firing = hook.wait(
        Duration::from_secs(10),
        "the alert once the silence ended",
        hook_event(&service, "firing"),
    );
    assert!(
        firing.wall >= added + chrono::Duration::seconds(5),
        "sent at {} though silenced until {out}",
        firing.wall
    );
    assert_eq!(firing.json["to"], "down");
    relayed.wait(
        Duration::from_secs(15),
        "Alertmanager's notification once the silence ended",
        firing_at_am,
    );
    hook.expect_none(
        Duration::from_secs(2),
        "a second alert",
        hook_event(&service, "firing"),
    );
    let _ = alertmanager.stderr();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_deploy_with_a_drain_alerts_nobody_and_one_not_back_alerts_once() {
    let dir = state_dir("quiet-drain-hook");
    let mut hook = Hook::start();
    // A real Alertmanager too, with a receiver of its own.
    let (config, mut relayed, alertmanager) = with_alertmanager(&dir, &hook, "");
    let mut monitor = monitor(BROKER, &["--config", &config]);
    let deployed = unique("deployed");
    let lost = unique("lost");
    let mut a = mock(BROKER, &deployed, "a-1", &["--drain", "20s"]);
    let mut b = mock(BROKER, &lost, "b-1", &["--drain", "2s"]);
    for service in [&deployed, &lost] {
        monitor.wait_json(
            Duration::from_secs(15),
            "up",
            transition(service, "up", "first_seen"),
        );
    }
    a.stop_cleanly("INT", Duration::from_secs(10));
    b.stop_cleanly("INT", Duration::from_secs(10));
    let _a_again = mock(BROKER, &deployed, "a-1", &[]);
    monitor.wait_json(
        Duration::from_secs(15),
        "back after the deploy",
        transition(&deployed, "up", "rejoined"),
    );
    let firing = hook.wait(
        Duration::from_secs(10),
        "not back",
        hook_event(&lost, "firing"),
    );
    assert_eq!(firing.json["reason"], "not_back");
    assert!(
        firing.json["summary"]
            .as_str()
            .unwrap()
            .contains("did not come back after a planned restart"),
        "{}",
        firing.json
    );
    hook.expect_none(Duration::from_secs(2), "an alert about the deploy", |r| {
        r.json["service"] == deployed.as_str()
    });
    assert_eq!(hook.count(hook_event(&lost, "firing")), 0, "one alert only");
    // Through Alertmanager: the one not back fires, the deploy never.
    let relayed_firing = relayed.wait(
        Duration::from_secs(15),
        "Alertmanager's notification of the one not back",
        relays_firing(&lost),
    );
    assert_eq!(relayed_firing.json["status"], "firing");
    relayed.expect_none(
        Duration::from_secs(2),
        "an Alertmanager notification about the deploy",
        relays_firing(&deployed),
    );
    let _ = alertmanager.stderr();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_cron_maintenance_window_that_opens_during_the_test_holds_the_alert_until_it_closes() {
    let dir = state_dir("quiet-cron");
    let mut hook = Hook::start();
    let service = unique("patched");
    // Every 20 seconds, open for 8: the test waits for a window to open
    // after the service is UP, whatever the start-up took on a busy machine.
    let schedule = "*/20 * * * * *";
    let config = webhook_config(
        &dir,
        &hook,
        &format!(
            "[[maintenance]]\nservices = [\"{service}\"]\nschedule = \"{schedule}\"\ntimezone = \"UTC\"\nduration = \"8s\"\nreason = \"kernel patch\"\n"
        ),
    );
    let mut monitor = monitor(BROKER, &["--config", &config, "--listen", "127.0.0.1:0"]);
    let base = monitor.listen_base();
    let mut mock = mock(BROKER, &service, "m-1", &[]);
    monitor.wait_json(
        Duration::from_secs(15),
        "up",
        transition(&service, "up", "first_seen"),
    );
    // The opening itself, not a window caught near its end.
    let window = wait_for(Duration::from_secs(60), "a window opens", || {
        let document = status_document(&base);
        let open = document["maintenance"].get(0).cloned()?;
        let starts: chrono::DateTime<chrono::Utc> = open["starts_at"].as_str()?.parse().ok()?;
        (chrono::Utc::now() - starts < chrono::Duration::milliseconds(1500)).then_some(open)
    });
    assert_eq!(window["reason"], "kernel patch");
    let ends: chrono::DateTime<chrono::Utc> = window["ends_at"].as_str().unwrap().parse().unwrap();
    mock.kill();
    monitor.wait_json(
        Duration::from_secs(10),
        "down",
        transition(&service, "down", "timed_out"),
    );
    let open_for = (ends - chrono::Utc::now()).to_std().unwrap_or_default();
    hook.expect_none(
        open_for,
        "an alert inside the window",
        hook_event(&service, "firing"),
    );
    let firing = hook.wait(
        Duration::from_secs(10),
        "the alert once the window closed",
        hook_event(&service, "firing"),
    );
    assert!(
        firing.wall >= ends,
        "sent at {} inside the window ending {ends}",
        firing.wall
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_dependents_alerts_wait_while_its_parent_is_down_and_go_out_if_it_is_still_down_after() {
    let dir = state_dir("quiet-depends");
    let mut hook = Hook::start();
    let parent = unique("parent");
    let child = unique("child");
    let config = webhook_config(
        &dir,
        &hook,
        &format!("[services.\"{child}\"]\ndepends_on = [\"{parent}\"]\n"),
    );
    let mut monitor = monitor(BROKER, &["--config", &config]);
    let mut p = mock(BROKER, &parent, "p-1", &[]);
    let mut c = mock(BROKER, &child, "c-1", &[]);
    for service in [&parent, &child] {
        monitor.wait_json(
            Duration::from_secs(15),
            "up",
            transition(service, "up", "first_seen"),
        );
    }
    p.kill();
    c.kill();
    for service in [&parent, &child] {
        monitor.wait_json(
            Duration::from_secs(10),
            "down",
            transition(service, "down", "timed_out"),
        );
    }
    hook.wait(
        Duration::from_secs(10),
        "the parent's alert",
        hook_event(&parent, "firing"),
    );
    hook.expect_none(
        Duration::from_secs(2),
        "the dependent's alert while its parent is DOWN",
        hook_event(&child, "firing"),
    );
    // The parent is back, the dependent is not: its alert goes out now.
    let _p_again = mock(BROKER, &parent, "p-1", &[]);
    monitor.wait_json(
        Duration::from_secs(15),
        "parent back",
        transition(&parent, "up", "recovered"),
    );
    let held = hook.wait(
        Duration::from_secs(10),
        "the dependent's alert once the parent is back",
        hook_event(&child, "firing"),
    );
    assert_eq!(held.json["to"], "down");
    // And the parent's resolution was never held.
    hook.wait(
        Duration::from_secs(10),
        "the parent's resolution",
        hook_event(&parent, "resolved"),
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_parent_down_with_ten_dependents_down_is_one_notification_naming_eleven() {
    let dir = state_dir("quiet-family");
    let mut hook = Hook::start();
    // One mock-service for all eleven (`--count`: FAMILY-0 to FAMILY-10),
    // so they fail at one instant, as the services of one host do.
    let family = unique("family");
    let parent = format!("{family}-0");
    let mut dependents: Vec<String> = (1..=10).map(|i| format!("{family}-{i}")).collect();
    dependents.sort();
    let sections: String = dependents
        .iter()
        .map(|d| format!("[services.\"{d}\"]\ndepends_on = [\"{parent}\"]\n"))
        .collect();
    let (config, mut relayed, alertmanager) = with_alertmanager(&dir, &hook, &sections);
    let mut monitor = monitor(BROKER, &["--config", &config]);
    let mut fleet = mock(BROKER, &family, "f-1", &["--count", "11"]);
    for service in std::iter::once(&parent).chain(&dependents) {
        monitor.wait_json(
            Duration::from_secs(20),
            "up",
            transition(service, "up", "first_seen"),
        );
    }
    fleet.kill();
    for service in std::iter::once(&parent).chain(&dependents) {
        monitor.wait_json(
            Duration::from_secs(10),
            "down",
            transition(service, "down", "timed_out"),
        );
    }
    let ours = |r: &Received| {
        r.json["service"]
            .as_str()
            .is_some_and(|s| s.starts_with(&family))
    };
    let firing = hook.wait(
        Duration::from_secs(10),
        "the parent's alert",
        hook_event(&parent, "firing"),
    );
    let named: Vec<&str> = firing.json["dependents"]
        .as_array()
        .unwrap_or_else(|| panic!("no dependents in {}", firing.json))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(named, dependents, "{}", firing.json);
    let summary = firing.json["summary"].as_str().unwrap();
    assert!(summary.contains("and 10 dependents: "), "{summary}");
    // The dependents' own alerts are held while the parent is DOWN.
    hook.expect_none(Duration::from_secs(3), "a second notification", ours);
    assert_eq!(hook.count(ours), 0, "one webhook notification in all");

    // Alertmanager: the parent's alert, its annotation naming the ten, and
    // nothing about them on their own.
    let relayed_firing = relayed.wait(
        Duration::from_secs(15),
        "Alertmanager's notification of the parent",
        relays_firing(&parent),
    );
    let alerts = relayed_firing.json["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{}", relayed_firing.json);
    assert_eq!(
        alerts[0]["annotations"]["dependents"],
        dependents.join(", ").as_str()
    );
    relayed.expect_none(
        Duration::from_secs(3),
        "an Alertmanager notification about a dependent",
        |r| dependents.iter().any(|d| relays_firing(d)(r)),
    );
    // Other tests' services share the broker: only ours count.
    let about_ours = |r: &Received| {
        r.json["alerts"].as_array().is_some_and(|alerts| {
            alerts.iter().any(|a| {
                a["labels"]["service"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&family))
            })
        })
    };
    assert_eq!(
        relayed.count(about_ours),
        0,
        "one Alertmanager notification in all"
    );
    let _ = alertmanager.stderr();
    let _ = std::fs::remove_dir_all(dir);
}

/// The page's text for a mark the status document gives `entry`:
/// `SILENCED until 22:14:05 UTC`.
fn page_mark(entry: &Value) -> String {
    let mark = &entry["mark"];
    let until = mark["until"].as_str().expect("a mark with its end");
    format!(
        "{} until {} UTC",
        mark["kind"].as_str().unwrap().to_uppercase(),
        &until[11..19]
    )
}

#[test]
fn the_status_page_shows_each_mark_with_its_end_and_drops_it_when_it_ends() {
    use support::browser::{browser_dom, page_row};
    let dir = state_dir("quiet-page");
    let silenced = unique("pg-silenced");
    let patched = unique("pg-patched");
    let drained = unique("pg-drained");
    // Built first: the window below opens now.
    mock_bin();
    // A window open from now for 30 s: long enough to see it, short enough to see it close.
    let start = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let file = dir.join("monitor.toml");
    std::fs::write(
        &file,
        format!(
            "[history]\npath = \"{}\"\n\n[[maintenance]]\nservices = [\"{patched}\"]\nstart = \"{start}\"\nduration = \"30s\"\nreason = \"kernel patch\"\n",
            dir.join("h.db").display()
        ),
    )
    .unwrap();
    let config = file.display().to_string();
    let mut monitor = monitor_with_env(
        BROKER,
        &["--config", &config, "--listen", "127.0.0.1:0"],
        &[("HEARTBEAT_API_TOKEN", TOKEN)],
    );
    let base = monitor.listen_base();
    let _s = mock(BROKER, &silenced, "s-1", &[]);
    let _p = mock(BROKER, &patched, "p-1", &[]);
    let mut d = mock(BROKER, &drained, "d-1", &["--drain", "6s"]);
    for service in [&silenced, &patched, &drained] {
        monitor.wait_json(
            Duration::from_secs(15),
            "up",
            transition(service, "up", "first_seen"),
        );
    }
    let (code, out, err) = silence(
        &base,
        &[
            "add",
            "--service",
            &silenced,
            "--for",
            "10m",
            "--reason",
            "deploy",
        ],
        &[("HEARTBEAT_API_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{err}");
    let id = out.split_whitespace().next().unwrap().to_owned();
    d.stop_cleanly("INT", Duration::from_secs(10));
    monitor.wait_json(
        Duration::from_secs(5),
        "draining",
        transition(&drained, "left", "draining"),
    );

    // Each row carries its mark and when it ends, as the status document has them.
    let document = status_document(&base);
    let dom = browser_dom(&format!("{base}/"));
    for (service, kind) in [
        (&silenced, "silenced"),
        (&patched, "maintenance"),
        (&drained, "draining"),
    ] {
        let entry = status_entry(&document, service).expect("in the document");
        assert_eq!(entry["mark"]["kind"], kind, "{entry}");
        let row = page_row(&dom, service).unwrap_or_else(|| panic!("{service} on the page"));
        assert!(row.contains(&format!("data-mark=\"{kind}\"")), "{row}");
        assert!(
            row.contains(&page_mark(entry)),
            "{} in {row}",
            page_mark(entry)
        );
    }

    // Ended: the silence expired, the window closed, the drain not kept.
    let (code, _, err) = silence(&base, &["expire", &id], &[("HEARTBEAT_API_TOKEN", TOKEN)]);
    assert_eq!(code, 0, "{err}");
    monitor.wait_json(
        Duration::from_secs(10),
        "not back",
        transition(&drained, "down", "not_back"),
    );
    wait_for(Duration::from_secs(40), "every mark ended", || {
        let document = status_document(&base);
        [&silenced, &patched, &drained]
            .iter()
            .all(|s| status_entry(&document, s).is_some_and(|e| e["mark"].is_null()))
            .then_some(())
    });
    let dom = browser_dom(&format!("{base}/"));
    for service in [&silenced, &patched, &drained] {
        let row = page_row(&dom, service).unwrap_or_else(|| panic!("{service} on the page"));
        assert!(!row.contains("data-mark"), "{row}");
        assert!(!row.contains(" until "), "{row}");
    }
    assert!(
        page_row(&dom, &drained)
            .unwrap()
            .contains("data-state=\"down\""),
        "the drain not kept is DOWN"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The README's "Keeping it quiet", as a reader copies it: every TOML
/// example is a configuration the monitor accepts, and every `monitor
/// silence` line runs against a monitor (the id of the one to expire is
/// the one the first line added).
#[test]
fn the_readmes_examples_of_keeping_quiet_work_as_given() {
    let readme = include_str!("../../README.md");
    let start = readme.find("## Keeping it quiet").expect("the section");
    let end = readme[start + 1..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + 1 + i);
    let section = &readme[start..end];
    let blocks = |fence: &str| -> Vec<&str> {
        section
            .split(fence)
            .skip(1)
            .map(|block| &block[..block.find("```").unwrap()])
            .collect()
    };
    let dir = state_dir("quiet-readme");
    let tomls = blocks("```toml\n");
    for kind in [
        "[[maintenance]]",
        "services = [",
        "kind = \"slack\"",
        "kind = \"email\"",
        "depends_on",
    ] {
        assert!(
            tomls.iter().any(|t| t.contains(kind)),
            "no example with {kind}"
        );
    }
    for (i, toml) in tomls.iter().enumerate() {
        let file = dir.join(format!("example-{i}.toml"));
        std::fs::write(&file, toml).unwrap();
        let out = Command::new(monitor_bin())
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{toml}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let (_monitor, base) = http_monitor(
        BROKER,
        &[
            ("HEARTBEAT_API_TOKEN", TOKEN),
            ("MONITOR__HISTORY__PATH", ""),
        ],
    );
    let env = [("HEARTBEAT_API_TOKEN", TOKEN)];
    let mut first_id = None;
    let mut ran = 0;
    for line in blocks("```sh\n").iter().flat_map(|b| b.lines()) {
        let command = line.split("  #").next().unwrap().trim();
        let Some(rest) = command.strip_prefix("monitor silence ") else {
            continue;
        };
        let mut args = shell_words(rest);
        if args[0] == "expire" {
            args[1] = first_id.clone().expect("an add before the expire");
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = silence(&base, &args, &env);
        assert_eq!(code, 0, "{line}: {err}");
        if args[0] == "add" && first_id.is_none() {
            first_id = out.split_whitespace().next().map(str::to_owned);
        }
        ran += 1;
    }
    assert!(ran >= 4, "the README's silence lines: {ran} run");
    let _ = std::fs::remove_dir_all(dir);
}

/// Words as a POSIX shell splits this simple a line: blanks, and quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => word.push(c),
        }
    }
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}
