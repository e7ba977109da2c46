//! History end to end: the real monitor writes to a real SQLite file and a
//! real PostgreSQL server (127.0.0.1:5432, a database of its own per test),
//! and what one run wrote is there for the next.

mod support;

use std::process::Command;
use std::time::Duration;

use heartbeat_config::HistorySettings;
use monitor::detector::{InstanceKey, State};
use monitor::history::{
    self, Batch, Minute, StoredServiceChange, StoredTransition, Who, WrittenBy,
};
use support::*;

const UP_WITHIN: Duration = Duration::from_secs(10);
fn settings(path: &str, url: &str) -> HistorySettings {
    HistorySettings {
        path: path.into(),
        url: url.into(),
        retention: Duration::from_secs(30 * 24 * 3600),
        timeout: Duration::from_secs(5),
    }
}

fn transition_at(at_ms: i64, service: &str, to: &str) -> StoredTransition {
    StoredTransition {
        at_ms,
        service: service.into(),
        instance: "i-1".into(),
        from: if to == "up" { "down" } else { "up" }.into(),
        to: to.into(),
        reason: if to == "up" { "recovered" } else { "timed_out" }.into(),
        rtt_ms: (to == "up").then_some(1.5),
        silent_ms: (to != "up").then_some(3000),
    }
}

fn minute(minute_ms: i64, service: &str, up_ms: i64) -> Minute {
    Minute {
        minute_ms,
        service: service.into(),
        instance: "i-1".into(),
        echoes: 60,
        misses: 0,
        rtt_p50_ms: Some(1.0),
        rtt_p99_ms: Some(2.0),
        up_ms,
        observed_ms: 60_000,
    }
}

fn service_change(at_ms: i64, service: &str, to: &str) -> StoredServiceChange {
    StoredServiceChange {
        at_ms,
        service: service.into(),
        from: if to == "full" { "degraded" } else { "full" }.into(),
        to: to.into(),
        up: if to == "full" { 3 } else { 1 },
        expected: 3,
    }
}

fn prod(monitor: &str) -> WrittenBy {
    WrittenBy {
        fleet: "broker-a/prod".into(),
        monitor: monitor.into(),
    }
}

/// What every store must do, through the trait alone.
fn store_contract(settings: &HistorySettings) {
    let now = chrono::Utc::now().timestamp_millis();
    let minute0 = now - now.rem_euclid(60_000) - 10 * 60_000;
    let day = 24 * 3600 * 1000;
    {
        let mut store = history::open(settings).expect("opens and migrates");
        store
            .write(&Batch {
                by: prod("m-1"),
                transitions: vec![
                    transition_at(now - 40 * day, "orders", "down"),
                    transition_at(now - 2000, "orders", "down"),
                    transition_at(now - 1000, "orders", "up"),
                    transition_at(now - 1500, "payments", "down"),
                ],
                services: vec![
                    service_change(now - 40 * day, "orders", "degraded"),
                    service_change(now - 1800, "orders", "degraded"),
                    service_change(now - 900, "orders", "full"),
                ],
                minutes: vec![
                    minute(minute0, "orders", 60_000),
                    // Its first 40 s, 30 of them up.
                    Minute {
                        observed_ms: 40_000,
                        ..minute(minute0 + 60_000, "orders", 30_000)
                    },
                    minute(minute0 - 40 * day, "orders", 0),
                ],
            })
            .unwrap();
        // The same minute again by the same monitor (a restart within it)
        // adds up.
        store
            .write(&Batch {
                by: prod("m-1"),
                transitions: vec![],
                services: vec![],
                // Its last 20 s, none of them up.
                minutes: vec![Minute {
                    observed_ms: 20_000,
                    ..minute(minute0 + 60_000, "orders", 0)
                }],
            })
            .unwrap();
        // The same minute by another monitor of the fleet (a group sharing
        // the store): a minute counts for a minute, the two views put
        // together (60 s up of 60, and 30 s of 60: 45 s of 60).
        store
            .write(&Batch {
                by: prod("m-2"),
                minutes: vec![minute(minute0, "orders", 30_000)],
                ..Batch::default()
            })
            .unwrap();
        // Another fleet's records are not this fleet's.
        store
            .write(&Batch {
                by: WrittenBy {
                    fleet: "broker-b/staging".into(),
                    monitor: "m-3".into(),
                },
                transitions: vec![transition_at(now - 1200, "orders", "down")],
                services: vec![service_change(now - 1200, "orders", "degraded")],
                minutes: vec![minute(minute0, "orders", 0)],
            })
            .unwrap();
        // Records from before they said whose are every fleet's.
        store
            .write(&Batch {
                by: WrittenBy::default(),
                transitions: vec![transition_at(now - 1200, "ledger", "down")],
                ..Batch::default()
            })
            .unwrap();
    }
    let prod_fleet = "broker-a/prod";
    // A new connection, as after a restart; migrations run again as no-ops.
    let mut store = history::open(settings).expect("opens again");
    let orders = store
        .transitions(prod_fleet, Who::Service("orders"), now - day, 10)
        .unwrap();
    assert_eq!(
        orders
            .iter()
            .map(|t| (t.at_ms, t.to.as_str()))
            .collect::<Vec<_>>(),
        [(now - 1000, "up"), (now - 2000, "down")],
        "newest first, only this service, only since"
    );
    assert_eq!(orders[0], transition_at(now - 1000, "orders", "up"));
    assert_eq!(
        store
            .transitions(prod_fleet, Who::Everyone, now - day, 10)
            .unwrap()
            .len(),
        4,
        "orders twice, payments, and the ledger's from before fleets"
    );
    let ledger = store.transitions("broker-b/staging", Who::Service("ledger"), 0, 10);
    assert_eq!(ledger.unwrap().len(), 1, "a record from before fleets");
    let mut one = |instance| {
        store
            .transitions(prod_fleet, Who::Instance("orders", instance), now - day, 10)
            .unwrap()
    };
    assert_eq!(one("i-1"), orders);
    assert!(one("i-9").is_empty());
    let newest = store.transitions(prod_fleet, Who::Service("orders"), now - day, 1);
    assert_eq!(newest.unwrap().len(), 1);
    let uptime = store.uptime(prod_fleet, now - day).unwrap();
    assert_eq!(uptime.len(), 1, "{uptime:?}");
    // minute0: 45 s of 60 (two monitors side by side); the next: 30 s of
    // 40 + 20 (one monitor, restarted).
    assert_eq!((uptime[0].up_ms, uptime[0].observed_ms), (75_000, 120_000));
    let changes = store
        .service_changes(prod_fleet, "orders", now - day, 10)
        .unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.at_ms, c.to.as_str()))
            .collect::<Vec<_>>(),
        [(now - 900, "full"), (now - 1800, "degraded")],
        "newest first, only since"
    );
    assert_eq!(changes[0], service_change(now - 900, "orders", "full"));
    assert!(
        store
            .service_changes(prod_fleet, "payments", 0, 10)
            .unwrap()
            .is_empty()
    );
    let staging = store.service_changes("broker-b/staging", "orders", 0, 10);
    assert_eq!(staging.unwrap().len(), 1, "the other fleet's own change");
    let staging = store.uptime("broker-b/staging", now - day).unwrap();
    assert_eq!(
        (staging[0].up_ms, staging[0].observed_ms),
        (0, 60_000),
        "the other fleet's own minute"
    );
    // What a restart takes back: each instance's last state in this fleet.
    store
        .write(&Batch {
            by: WrittenBy {
                fleet: "broker-a/prod".into(),
                monitor: "m-2".into(),
            },
            transitions: vec![
                // Taken back before and not heard since: its state from before.
                StoredTransition {
                    from: "up".into(),
                    reason: "restored".into(),
                    ..transition_at(now - 500, "billing", "down")
                },
                StoredTransition {
                    reason: "left".into(),
                    ..transition_at(now - 500, "gone", "left")
                },
                // DOWN for longer than forget_after: forgotten.
                transition_at(now - 2 * day, "old", "down"),
            ],
            ..Batch::default()
        })
        .unwrap();
    store
        .write(&Batch {
            by: WrittenBy {
                fleet: "broker-b/staging".into(),
                monitor: "m-3".into(),
            },
            transitions: vec![transition_at(now - 100, "elsewhere", "down")],
            ..Batch::default()
        })
        .unwrap();
    let known = history::last_known(
        store.as_mut(),
        "broker-a/prod",
        now,
        Duration::from_secs(24 * 3600),
    )
    .unwrap();
    assert_eq!(
        known
            .iter()
            .map(|k| (k.key.clone(), k.state, k.age.as_millis()))
            .collect::<Vec<_>>(),
        [
            (InstanceKey::new("billing", "i-1"), State::Up, 500),
            (InstanceKey::new("orders", "i-1"), State::Up, 1000),
            (InstanceKey::new("payments", "i-1"), State::Down, 1500),
        ],
        "{known:#?}"
    );
    let staging = history::last_known(
        store.as_mut(),
        "broker-b/staging",
        now,
        Duration::from_secs(24 * 3600),
    )
    .unwrap();
    assert_eq!(
        staging.len(),
        2,
        "elsewhere and its own orders: {staging:#?}"
    );
    // Retention: what is older goes.
    assert_eq!(store.prune(now - 30 * day).unwrap(), 3);
    assert_eq!(
        store
            .transitions(prod_fleet, Who::Service("orders"), 0, 10)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn the_sqlite_store_keeps_transitions_and_minutes_across_connections() {
    let dir = TempDir::new("history-test");
    let path = dir.0.join("heartbeat.db");
    store_contract(&settings(&path.to_string_lossy(), ""));
}

#[test]
fn the_postgresql_store_keeps_transitions_and_minutes_across_connections() {
    let db = Database::create();
    store_contract(&settings("", &db.url()));
}

/// A headless monitor whose history goes to `env` (MONITOR__HISTORY__...).
fn monitor_storing(env: (&str, &str)) -> Proc {
    let id = unique("mon");
    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", BROKER, "--id", &id])
        .args([
            "--interval",
            &format!("{INTERVAL_MS}ms"),
            "--timeout",
            &format!("{TIMEOUT_MS}ms"),
        ])
        .env("MONITOR__DETECTION__MODE", "fixed")
        .env(env.0, env.1);
    Proc::spawn(&format!("monitor {id}"), command)
}

/// Two runs of the monitor on one store: the second run's store holds both.
fn history_survives_a_restart(env: (&str, &str), settings: &HistorySettings) {
    let name = unique("kept");
    let mut first = monitor_storing(env);
    let mut service = mock(BROKER, &name, "k-1", &[]);
    first.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    service.kill();
    first.wait_json(
        Duration::from_secs(4),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
    first.stop_cleanly("TERM", Duration::from_secs(8));

    // The second run takes the instance back as it left it: DOWN, until it
    // answers again.
    let mut second = monitor_storing(env);
    second.wait_json(
        UP_WITHIN,
        "restored DOWN",
        transition(&name, "down", "restored"),
    );
    let _service = mock(BROKER, &name, "k-1", &[]);
    second.wait_json(
        UP_WITHIN,
        "back UP on its first echo",
        transition(&name, "up", "recovered"),
    );
    second.stop_cleanly("TERM", Duration::from_secs(8));
    // The startup line names the store; the server's NOTICEs about tables
    // that already exist stay out of the log.
    let stderr = second.stderr();
    let named = if settings.url.is_empty() {
        format!("history={}", settings.path)
    } else {
        format!("history={}", settings.url)
    };
    assert!(stderr.contains(&named), "{named} in {stderr}");
    assert!(!stderr.contains("skipping"), "{stderr}");

    let mut store = history::open(settings).unwrap();
    let kept = store
        .transitions(FLEET, Who::Service(&name), 0, 10)
        .unwrap();
    assert_eq!(
        kept.iter()
            .map(|t| (t.from.as_str(), t.to.as_str(), t.reason.as_str()))
            .collect::<Vec<_>>(),
        [
            ("down", "up", "recovered"),
            ("down", "down", "restored"),
            ("suspect", "down", "timed_out"),
            ("up", "suspect", "timed_out"),
            ("never_seen", "up", "first_seen")
        ],
        "newest first: {kept:#?}"
    );
    assert!(kept[2].silent_ms.is_some_and(|ms| ms > TIMEOUT_MS as i64));
    assert!(kept[4].rtt_ms.is_some());
    // The minutes each run watched, closed when it stopped.
    let uptime = store.uptime(FLEET, 0).unwrap();
    let ours = uptime
        .iter()
        .find(|u| u.service == name)
        .expect("minute figures for the service");
    assert!(
        ours.observed_ms > 0 && ours.up_ms > 0 && ours.up_ms <= ours.observed_ms,
        "{ours:?}"
    );
}

#[test]
fn history_survives_a_monitor_restart_with_sqlite() {
    let dir = TempDir::new("history-test");
    let path = dir.0.join("heartbeat.db");
    let path = path.to_string_lossy();
    history_survives_a_restart(("MONITOR__HISTORY__PATH", &path), &settings(&path, ""));
}

#[test]
fn history_survives_a_monitor_restart_with_postgresql() {
    let db = Database::create();
    let url = db.url();
    history_survives_a_restart(("MONITOR__HISTORY__URL", &url), &settings("", &url));
}

#[test]
fn an_unreachable_store_is_reported_and_does_not_slow_detection() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut monitor = monitor_storing((
        "MONITOR__HISTORY__URL",
        &format!("postgres://u:secret@127.0.0.1:{port}/x"),
    ));
    let name = unique("unstored");
    let mut service = mock(BROKER, &name, "s-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    monitor.wait_stderr(Duration::from_secs(5), "history store: PostgreSQL");
    service.kill();
    let within = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS + 800);
    monitor.wait_json(within, "timed out", transition(&name, "down", "timed_out"));
    assert!(!monitor.stderr().contains("secret"), "{}", monitor.stderr());
    monitor.stop_cleanly("TERM", Duration::from_secs(8));
}

#[test]
fn the_history_api_returns_a_services_stored_transitions_and_metrics_count_the_writes() {
    let dir = TempDir::new("history-test");
    let path = dir.0.join("heartbeat.db");
    let (mut monitor, base) = http_monitor(
        BROKER,
        &[("MONITOR__HISTORY__PATH", &path.to_string_lossy())],
    );
    let name = unique("api");
    let mut service = mock(BROKER, &name, "a-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    service.kill();
    monitor.wait_json(
        Duration::from_secs(4),
        "timed out",
        transition(&name, "down", "timed_out"),
    );

    // Written in batches once a second: poll until all three (first seen,
    // SUSPECT, DOWN) are there.
    let url = format!("{base}/api/v1/history?service={name}");
    let document = wait_for(
        Duration::from_secs(5),
        "all three transitions stored",
        || {
            let (status, body) = http_get(&url).expect("the history API answers");
            assert_eq!(status, 200, "{body}");
            let document: serde_json::Value = serde_json::from_str(&body).unwrap();
            let stored = document["transitions"].as_array().map(Vec::len);
            (stored == Some(3)).then_some(document)
        },
    );
    assert_eq!(document["service"], name.as_str());
    let newest = &document["transitions"][0];
    assert_eq!(
        (
            newest["instance"].as_str(),
            newest["from"].as_str(),
            newest["to"].as_str(),
            newest["reason"].as_str()
        ),
        (
            Some("a-1"),
            Some("suspect"),
            Some("down"),
            Some("timed_out")
        ),
        "{document}"
    );
    assert!(
        newest["silent_ms"]
            .as_i64()
            .is_some_and(|ms| ms > TIMEOUT_MS as i64)
    );
    assert!(chrono::DateTime::parse_from_rfc3339(newest["at"].as_str().unwrap()).is_ok());
    assert_eq!(document["transitions"][1]["to"], "suspect");
    assert_eq!(document["transitions"][2]["reason"], "first_seen");

    let (_, one) = http_get(&format!("{url}&instance=a-1&limit=1")).unwrap();
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["transitions"].as_array().unwrap().len(), 1);
    assert_eq!(one["transitions"][0]["reason"], "timed_out");
    let (_, none) = http_get(&format!("{url}&instance=nobody")).unwrap();
    assert!(none.contains("\"transitions\":[]"), "{none}");
    for bad in [
        "/api/v1/history",
        "/api/v1/history?service=",
        "/api/v1/history?service=x&colour=red",
    ] {
        let (status, body) = http_get(&format!("{base}{bad}")).unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body.trim_end().lines().count(), 1, "{bad}: {body}");
    }

    let (_, metrics) = http_get(&format!("{base}/metrics")).unwrap();
    assert!(
        metrics.contains("heartbeat_history_store_up 1"),
        "{metrics}"
    );
    let written = metric_in(&metrics, "heartbeat_history_records_written_total")
        .expect("records written in the metrics");
    assert!(written >= 2.0, "{written}");
    assert!(
        metrics.contains("heartbeat_history_write_failures_total 0"),
        "{metrics}"
    );
}

#[test]
fn without_history_the_api_says_so() {
    let (_monitor, base) = http_monitor(BROKER, &[]);
    let (status, body) = http_get(&format!("{base}/api/v1/history?service=x")).unwrap();
    assert_eq!(
        (status, body.trim_end()),
        (404, "no history is kept: set [history] path or url")
    );
}

/// By default the database is `heartbeat.db` in the state directory,
/// readable by its user only, and never in the working directory.
#[test]
fn the_default_history_database_is_private_in_the_state_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("history-test");
    let work = dir.0.join("work");
    let state = dir.0.join("state");
    std::fs::create_dir_all(&work).unwrap();
    for (variable, expected) in [
        ("XDG_STATE_HOME", state.join("heartbeat/heartbeat.db")),
        ("STATE_DIRECTORY", state.join("heartbeat.db")),
    ] {
        let id = unique("mon");
        let mut command = Command::new(monitor_bin());
        command
            .current_dir(&work)
            .args(["--headless", "--url", BROKER, "--id", &id])
            .env_remove("STATE_DIRECTORY")
            .env_remove("XDG_STATE_HOME")
            .env("MONITOR__HISTORY__PATH", "heartbeat.db")
            .env(variable, &state);
        let mut monitor = Proc::spawn(&format!("monitor {id}"), command);
        monitor.wait_stderr(
            UP_WITHIN,
            &format!("history={}", expected.to_string_lossy()),
        );
        // The file comes with the first write: a service seen is one, even
        // on a broker where nothing else runs.
        let _service = mock(BROKER, &unique("private"), "p-1", &[]);
        wait_for(Duration::from_secs(10), "the database created", || {
            expected.exists().then_some(())
        });
        let mode = std::fs::metadata(&expected).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{variable}: {}", expected.display());
        assert!(!work.join("heartbeat.db").exists());
        monitor.stop_cleanly("TERM", Duration::from_secs(8));
        std::fs::remove_dir_all(&state).unwrap();
    }
}
