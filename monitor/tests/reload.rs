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
