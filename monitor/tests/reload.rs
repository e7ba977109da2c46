//! Reload without a restart, end to end: the real monitor and mock-service
//! against the real RabbitMQ, a real webhook receiver, a configuration
//! file changed under the running monitor and SIGHUP (what `systemctl
//! reload` sends). A new per-service timeout, a newly expected service and
//! a new webhook target apply at once; a live instance stays tracked and
//! a firing alert is not sent again; a bad file is refused with one line
//! and the running configuration kept.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::*;

const UP_WITHIN: Duration = Duration::from_secs(10);
const DELIVERED_WITHIN: Duration = Duration::from_secs(5);

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn webhook(url: &str) -> String {
    format!("[[notify]]\nkind = \"webhook\"\nurl = \"{url}\"\n\n")
}

fn firing_for(service: &str) -> impl Fn(&Received) -> bool + '_ {
    move |r| r.json["event"] == "firing" && r.json["service"] == service
}

#[test]
fn sighup_applies_timeouts_expected_services_and_targets_keeping_every_instance() {
    let dir = Dir(std::env::temp_dir().join(unique("reload")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("monitor.toml");
    let (steady, slow, gone, ghost) = (
        unique("steady"),
        unique("slow"),
        unique("gone"),
        unique("ghost"),
    );
    let mut first = Hook::start();
    let mut second = Hook::start();
    // Before: `slow` has 10 s; one webhook.
    std::fs::write(
        &file,
        format!(
            "{}[timeouts]\n\"{slow}\" = \"10s\"\n",
            webhook(&first.url("/first"))
        ),
    )
    .unwrap();
    let mut monitor = monitor(BROKER, &["--config", file.to_str().unwrap()]);
    let _steady = mock(BROKER, &steady, "s-1", &[]);
    let mut slow_svc = mock(BROKER, &slow, "w-1", &[]);
    let mut gone_svc = mock(BROKER, &gone, "g-1", &[]);
    for service in [&steady, &slow, &gone] {
        monitor.wait_json(
            UP_WITHIN,
            "first seen",
            transition(service, "up", "first_seen"),
        );
    }
    gone_svc.kill();
    first.wait(DELIVERED_WITHIN, "gone's firing", firing_for(&gone));

    // After: `slow` has the default 1 s, `ghost` is expected, a second webhook.
    std::fs::write(
        &file,
        format!(
            "expect = [\"{ghost}\"]\n{}{}",
            webhook(&first.url("/first")),
            webhook(&second.url("/second"))
        ),
    )
    .unwrap();
    monitor.signal("HUP");
    monitor.wait_stderr(Duration::from_secs(5), "reloaded: ");
    let said = monitor.stderr();
    assert!(
        said.contains("timeouts, expect, notify applied"),
        "the reload line names what changed: {said}"
    );

    // The newly expected service is waited for from the reload on.
    monitor.wait_json(Duration::from_secs(5), "ghost unseen", |v| {
        v["kind"] == "unseen" && v["service"] == ghost.as_str()
    });
    // `slow` is judged by its new timeout: DOWN well within the old 10 s.
    slow_svc.kill();
    monitor.wait_json(
        Duration::from_secs(5),
        "slow DOWN by its new timeout",
        transition(&slow, "down", "timed_out"),
    );
    // The new target takes effect; the kept one hears it too.
    second.wait(
        DELIVERED_WITHIN,
        "slow's firing, new target",
        firing_for(&slow),
    );
    first.wait(
        DELIVERED_WITHIN,
        "slow's firing, kept target",
        firing_for(&slow),
    );
    // The kept target's firing alert for `gone` was not sent again, and
    // nothing about the reload reached the new one for it either.
    first.expect_none(
        Duration::from_millis(500),
        "gone's firing again",
        firing_for(&gone),
    );
    second.expect_none(Duration::ZERO, "gone's firing", firing_for(&gone));
    // The live instance stayed tracked: never seen for the first time again.
    let lines = monitor.collect_json(Duration::from_millis(300));
    assert!(
        !lines
            .iter()
            .any(|v| v["service"] == steady.as_str() && v["reason"] == "first_seen"),
        "steady was tracked anew: {lines:?}"
    );

    // A bad file: refused in one line, the running configuration kept.
    std::fs::write(&file, "interval = \"soon\"\n").unwrap();
    monitor.signal("HUP");
    monitor.wait_stderr(Duration::from_secs(5), "reload refused");
    let refused: Vec<String> = monitor
        .stderr()
        .lines()
        .filter(|l| l.contains("reload refused"))
        .map(str::to_owned)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("interval"), "{}", refused[0]);
    // Still both targets: a new kill reaches the second one.
    let late = unique("late");
    let mut late_svc = mock(BROKER, &late, "l-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "late first seen",
        transition(&late, "up", "first_seen"),
    );
    late_svc.kill();
    second.wait(
        DELIVERED_WITHIN,
        "late's firing after a refused reload",
        firing_for(&late),
    );
    monitor.stop_cleanly("TERM", Duration::from_secs(10));
}

/// A `[[maintenance]]` window and a `depends_on` added to the file apply at
/// SIGHUP: the window shows in the status document and holds its service's
/// alert, the dependent's alert waits for its parent, and a service that
/// neither covers still pages (so the target is known to work).
#[test]
fn sighup_applies_maintenance_windows_and_dependencies() {
    let dir = Dir(std::env::temp_dir().join(unique("reload-quiet")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("monitor.toml");
    let (held, parent, child, other) = (
        unique("held"),
        unique("parent"),
        unique("child"),
        unique("other"),
    );
    let mut hook = Hook::start();
    std::fs::write(&file, webhook(&hook.url("/hook"))).unwrap();
    let mut monitor = monitor(
        BROKER,
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let base = monitor.listen_base();
    let services: Vec<_> = [&held, &parent, &child, &other]
        .iter()
        .map(|name| mock(BROKER, name, "i-1", &[]))
        .collect();
    for service in [&held, &parent, &child, &other] {
        monitor.wait_json(
            UP_WITHIN,
            "first seen",
            transition(service, "up", "first_seen"),
        );
    }
    assert_eq!(status_document(&base)["maintenance"], serde_json::json!([]));

    let start = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(
        &file,
        format!(
            "{}[[maintenance]]\nservices = [\"{held}\"]\nstart = \"{start}\"\nduration = \"1h\"\nreason = \"reloaded window\"\n\n[services.\"{child}\"]\ndepends_on = [\"{parent}\"]\n",
            webhook(&hook.url("/hook"))
        ),
    )
    .unwrap();
    monitor.signal("HUP");
    monitor.wait_stderr(Duration::from_secs(5), "reloaded: ");
    let said = monitor.stderr();
    assert!(
        said.contains("services, maintenance applied"),
        "the reload line names what changed: {said}"
    );
    // The status document is rebuilt a moment later, not on the request.
    wait_for(
        Duration::from_secs(5),
        "the reloaded window in the status",
        || (status_document(&base)["maintenance"][0]["reason"] == "reloaded window").then_some(()),
    );

    // The parent dies first and is DOWN before the others die: held (its
    // window) and child (its parent is DOWN) do not page; parent and other
    // (covered by nothing) do.
    let mut services = services.into_iter();
    let (mut held_svc, mut parent_svc, mut child_svc, mut other_svc) = (
        services.next().unwrap(),
        services.next().unwrap(),
        services.next().unwrap(),
        services.next().unwrap(),
    );
    parent_svc.kill();
    monitor.wait_json(
        Duration::from_secs(10),
        "parent down",
        transition(&parent, "down", "timed_out"),
    );
    for service in [&mut held_svc, &mut child_svc, &mut other_svc] {
        service.kill();
    }
    for service in [&held, &child, &other] {
        monitor.wait_json(
            Duration::from_secs(10),
            "down",
            transition(service, "down", "timed_out"),
        );
    }
    hook.wait(DELIVERED_WITHIN, "other's firing", firing_for(&other));
    hook.wait(DELIVERED_WITHIN, "parent's firing", firing_for(&parent));
    hook.expect_none(
        Duration::from_secs(2),
        "a firing held by the reloaded window",
        firing_for(&held),
    );
    hook.expect_none(
        Duration::ZERO,
        "a dependent's own firing while its parent is DOWN",
        firing_for(&child),
    );
    monitor.stop_cleanly("TERM", Duration::from_secs(10));
}
