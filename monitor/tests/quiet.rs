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

#[test]
fn a_cli_silence_holds_the_alert_until_it_ends_and_then_it_goes_out_once() {
    let dir = state_dir("quiet-silence");
    let mut hook = Hook::start();
    // A real Alertmanager too, with a receiver of its own.
    let mut relayed = Hook::start();
    let alertmanager = support::alertmanager::Alertmanager::start(&relayed.url("/am"));
    let config = webhook_config(
        &dir,
        &hook,
        &format!(
            "[[notify]]\nkind = \"alertmanager\"\nurl = \"{}\"\nresend = \"1s\"\n",
            alertmanager.url
        ),
    );
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
    let firing_at_am = |r: &Received| {
        r.json["alerts"].as_array().is_some_and(|alerts| {
            alerts
                .iter()
                .any(|a| a["labels"]["service"] == service.as_str() && a["status"] == "firing")
        })
    };
    assert_eq!(
        relayed.count(firing_at_am),
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
    let mut relayed = Hook::start();
    let alertmanager = support::alertmanager::Alertmanager::start(&relayed.url("/am"));
    let config = webhook_config(
        &dir,
        &hook,
        &format!(
            "[[notify]]\nkind = \"alertmanager\"\nurl = \"{}\"\nresend = \"1s\"\n",
            alertmanager.url
        ),
    );
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
    let names = |service: &str, r: &Received| {
        r.json["alerts"].as_array().is_some_and(|alerts| {
            alerts
                .iter()
                .any(|a| a["labels"]["service"] == service && a["status"] == "firing")
        })
    };
    let relayed_firing = relayed.wait(
        Duration::from_secs(15),
        "Alertmanager's notification of the one not back",
        |r| names(&lost, r),
    );
    assert_eq!(relayed_firing.json["status"], "firing");
    relayed.expect_none(
        Duration::from_secs(2),
        "an Alertmanager notification about the deploy",
        |r| names(&deployed, r),
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
