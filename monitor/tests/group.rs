//! A monitor group (`[group] name`): two monitors, one pager. The leader
//! alone notifies; when it dies or hangs the standby leads, and between
//! them every notification arrives exactly once, counted at a webhook
//! receiver and at a real Alertmanager's receiver. Each test has a group
//! and services of its own on the shared broker.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::alertmanager::Alertmanager;
use support::browser::{browser_dom, page_row};
use support::*;

/// The README's example ("Two monitors, one pager"), with this test's
/// receivers and group name in place of the example's.
fn notify_config(hook: &Hook, alertmanager: &Alertmanager, group: &str) -> PathBuf {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## Two monitors, one pager")
        .expect("the README's section")..];
    let start = section.find("```toml\n").expect("its example") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let text = example
        .replace("http://127.0.0.1:8099/hook", &hook.url("/hook"))
        .replace("http://127.0.0.1:9093", &alertmanager.url)
        .replace("name = \"prod\"", &format!("name = \"{group}\""));
    assert!(
        text.contains(group)
            && text.contains(&hook.url("/hook"))
            && text.contains(&alertmanager.url),
        "the README's example changed shape:\n{example}"
    );
    let path = std::env::temp_dir().join(format!("{}.toml", unique("group")));
    std::fs::write(&path, text).unwrap();
    path
}

fn member(url: &str, config: &Path) -> Proc {
    monitor(url, &["--config", config.to_str().unwrap()])
}

const LEADS: &str = "this monitor leads the group";

fn wait_leading(monitor: &Proc, within: Duration) -> Duration {
    let start = Instant::now();
    monitor.wait_stderr(within, LEADS);
    start.elapsed()
}

/// Alertmanager's notifications about `service` with this status.
fn am_notifications(receiver: &mut Hook, service: &str, status: &str) -> usize {
    receiver.count(|r| {
        r.json["status"] == status
            && r.json["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|alert| alert["labels"]["service"] == service))
    })
}

/// Two members; the first leads. A service goes DOWN (one firing, sent by
/// the leader); the leader is killed (-9); the standby leads within two
/// intervals; the service comes back: one resolved, from the new leader.
#[test]
fn a_killed_leaders_standby_takes_over_and_resolves_exactly_once() {
    let mut hook = Hook::start();
    let mut am_receiver = Hook::start();
    let alertmanager = Alertmanager::start(&am_receiver.url("/am"));
    let group = unique("g");
    let config = notify_config(&hook, &alertmanager, &group);
    let name = unique("ha");

    let mut first = member(BROKER, &config);
    wait_leading(&first, Duration::from_secs(15));
    let mut second = member(BROKER, &config);
    second.wait_stderr(Duration::from_secs(15), "joined the monitor group");

    let mut service = mock(BROKER, &name, "i-1", &[]);
    for monitor in [&mut first, &mut second] {
        monitor.wait_json(
            Duration::from_secs(15),
            "first seen",
            transition(&name, "up", "first_seen"),
        );
    }
    service.kill();
    for monitor in [&mut first, &mut second] {
        monitor.wait_json(
            Duration::from_secs(10),
            "DOWN",
            transition(&name, "down", "timed_out"),
        );
    }
    let firing = hook.wait(
        Duration::from_secs(10),
        "the firing",
        hook_event(&name, "firing"),
    );
    assert_eq!(
        firing.json["monitor"],
        first.name.trim_start_matches("monitor ")
    );
    wait_for(
        Duration::from_secs(10),
        "Alertmanager's firing notification",
        || (am_notifications(&mut am_receiver, &name, "firing") > 0).then_some(()),
    );

    // The leader dies mid-incident.
    first.kill();
    let took = wait_leading(&second, Duration::from_secs(10));
    eprintln!("the standby led {took:?} after the kill");
    assert!(
        took <= Duration::from_millis(2 * INTERVAL_MS),
        "the standby took {took:?} to lead (2 intervals: {}ms)\n{}",
        2 * INTERVAL_MS,
        second.stderr()
    );

    // The service comes back: the new leader resolves it, once.
    let _service = mock(BROKER, &name, "i-1", &[]);
    let resolved = hook.wait(
        Duration::from_secs(15),
        "the resolved",
        hook_event(&name, "resolved"),
    );
    assert_eq!(
        resolved.json["monitor"],
        second.name.trim_start_matches("monitor ")
    );
    wait_for(
        Duration::from_secs(15),
        "Alertmanager's resolved notification",
        || (am_notifications(&mut am_receiver, &name, "resolved") > 0).then_some(()),
    );
    // Long enough for a repeat (a resend, Alertmanager's group_interval) to
    // show: nothing more about the service reaches the webhook meanwhile.
    hook.expect_none(Duration::from_secs(3), "a repeated notification", |r| {
        r.json["service"] == name.as_str()
    });
    // The waits above took one of each; nothing else came.
    assert_eq!(hook_count(&mut hook, &name, "firing"), 0);
    assert_eq!(hook_count(&mut hook, &name, "resolved"), 0);
    assert_eq!(am_notifications(&mut am_receiver, &name, "firing"), 1);
    assert_eq!(am_notifications(&mut am_receiver, &name, "resolved"), 1);
}

/// The leader hangs (SIGSTOP) past the broker's heartbeat timeout: the
/// standby leads within that timeout plus an interval; the incident ends
/// meanwhile and the new leader resolves it; the old leader, woken
/// (SIGCONT), stands by and sends nothing.
#[test]
#[ignore = "intermittent (2026-12-07, 23:12): passes alone (4 of 4), but run beside this file's other tests on a loaded machine the leader once sent no firing for the service within 10 s (it paged for other services meanwhile); not yet understood, see issue 20"]
fn a_paused_leader_is_replaced_and_sends_nothing_on_waking() {
    let mut hook = Hook::start();
    let mut am_receiver = Hook::start();
    let alertmanager = Alertmanager::start(&am_receiver.url("/am"));
    let group = unique("g");
    let config = notify_config(&hook, &alertmanager, &group);
    let name = unique("ha");
    // A short heartbeat, so the broker gives up on a hung member quickly.
    let heartbeat_s = 2;
    let url = format!("{BROKER}?heartbeat={heartbeat_s}");

    let first = member(&url, &config);
    wait_leading(&first, Duration::from_secs(15));
    let mut second = member(&url, &config);
    second.wait_stderr(Duration::from_secs(15), "joined the monitor group");
    let mut service = mock(BROKER, &name, "i-1", &[]);
    second.wait_json(
        Duration::from_secs(15),
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    service.kill();
    second.wait_json(
        Duration::from_secs(10),
        "DOWN",
        transition(&name, "down", "timed_out"),
    );
    hook.wait(
        Duration::from_secs(10),
        "the firing",
        hook_event(&name, "firing"),
    );

    first.signal("STOP");
    let took = wait_leading(&second, Duration::from_secs(30));
    eprintln!("the standby led {took:?} after the pause");
    // RabbitMQ checks for incoming data once every heartbeat period and
    // closes the connection after two checks with no change, "between 2
    // and 3 intervals after the last data has been received"
    // (rabbit_heartbeat.erl). A bound of 2 periods failed whenever the
    // pause fell early in a period (5.3 s against 5.2 s, twice, under load).
    let bound = Duration::from_secs(3 * heartbeat_s) + Duration::from_millis(INTERVAL_MS + 1000);
    assert!(
        took <= bound,
        "took {took:?}, bound {bound:?}\n{}",
        second.stderr()
    );
    let _service = mock(BROKER, &name, "i-1", &[]);
    hook.wait(
        Duration::from_secs(15),
        "the resolved",
        hook_event(&name, "resolved"),
    );
    wait_for(
        Duration::from_secs(15),
        "Alertmanager's resolved notification",
        || (am_notifications(&mut am_receiver, &name, "resolved") > 0).then_some(()),
    );

    first.signal("CONT");
    first.wait_stderr(Duration::from_secs(15), "this monitor stands by");
    hook.expect_none(
        Duration::from_secs(3),
        "anything sent after the wake",
        |r| r.json["service"] == name.as_str(),
    );
    assert_eq!(am_notifications(&mut am_receiver, &name, "firing"), 1);
    assert_eq!(am_notifications(&mut am_receiver, &name, "resolved"), 1);
}

/// Whether a member's latest word on leadership is that it leads.
fn leads_now(monitor: &Proc) -> bool {
    let stderr = monitor.stderr();
    let leads = stderr.rfind(LEADS);
    let stands = stderr.rfind("this monitor stands by");
    leads.is_some() && leads > stands
}

/// Webhook events about `service` of this kind, received so far.
fn hook_count(hook: &mut Hook, service: &str, event: &str) -> usize {
    hook.count(|r| r.json["service"] == service && r.json["event"] == event)
}

/// Poll `probe` until true or `within` passes; whether it came true.
fn came_true(within: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    probe()
}

/// `bench/failover.sh`: rounds of (a service killed with -9, the leader
/// killed with -9 during that incident, the service back, a new member in
/// the dead one's place), then every notification counted at the
/// receivers: one firing and one resolved per incident at the webhook and
/// at Alertmanager's receiver. Prints one `failover:` line.
#[test]
#[ignore = "a long series: bench/failover.sh runs it"]
fn failover_series() {
    let rounds: usize = std::env::var("FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut hook = Hook::start();
    let mut am_receiver = Hook::start();
    let alertmanager = Alertmanager::start(&am_receiver.url("/am"));
    let group = unique("g");
    let config = notify_config(&hook, &alertmanager, &group);
    let mut members = vec![member(BROKER, &config)];
    wait_leading(&members[0], Duration::from_secs(15));
    members.push(member(BROKER, &config));
    members[1].wait_stderr(Duration::from_secs(15), "joined the monitor group");
    let mut names = Vec::new();
    let mut takeovers = Vec::new();
    let mut back = Vec::new();
    for round in 0..rounds {
        let name = unique(&format!("fo{round}"));
        names.push(name.clone());
        let mut service = mock(BROKER, &name, "i-1", &[]);
        for monitor in members.iter_mut() {
            monitor.wait_json(
                Duration::from_secs(15),
                "first seen",
                transition(&name, "up", "first_seen"),
            );
        }
        service.kill();
        came_true(Duration::from_secs(15), || {
            hook_count(&mut hook, &name, "firing") > 0
        });
        let leader = members
            .iter()
            .position(leads_now)
            .unwrap_or_else(|| panic!("round {round}: no leader"));
        members[leader].kill();
        let dead = members.remove(leader);
        drop(dead);
        let start = Instant::now();
        members[0].wait_stderr(Duration::from_secs(15), LEADS);
        if !leads_now(&members[0]) {
            came_true(Duration::from_secs(15), || leads_now(&members[0]));
        }
        takeovers.push(start.elapsed());
        // Kept running to the end: dropped here it would die again, a new
        // incident at each round's end counted as a duplicate.
        back.push(mock(BROKER, &name, "i-1", &[]));
        came_true(Duration::from_secs(15), || {
            hook_count(&mut hook, &name, "resolved") > 0
        });
        members.push(member(BROKER, &config));
        let newcomer = members.last().unwrap();
        newcomer.wait_stderr(Duration::from_secs(15), "joined the monitor group");
    }
    // Late duplicates have time to show.
    std::thread::sleep(Duration::from_secs(5));
    let (mut duplicates, mut lost, mut am_duplicates, mut am_lost) = (0, 0, 0, 0);
    for (round, name) in names.iter().enumerate() {
        for event in ["firing", "resolved"] {
            let (at_hook, at_am) = (
                hook_count(&mut hook, name, event),
                am_notifications(&mut am_receiver, name, event),
            );
            if (at_hook, at_am) != (1, 1) {
                eprintln!(
                    "round {round}: {event}: {at_hook} at the webhook, {at_am} at Alertmanager"
                );
            }
            match at_hook {
                0 => lost += 1,
                n => duplicates += n - 1,
            }
            match at_am {
                0 => am_lost += 1,
                n => am_duplicates += n - 1,
            }
        }
    }
    takeovers.sort();
    let ms = |d: Duration| d.as_millis();
    println!(
        "failover: rounds={rounds} webhook_duplicates={duplicates} webhook_lost={lost} alertmanager_duplicates={am_duplicates} alertmanager_lost={am_lost} takeover_ms_median={} takeover_ms_max={}",
        ms(takeovers[takeovers.len() / 2]),
        ms(*takeovers.last().unwrap())
    );
    assert_eq!((duplicates, lost, am_duplicates, am_lost), (0, 0, 0, 0));
}

/// A member serving HTTP, with `env` (its key), the group and targets of
/// `config`, and `timeout`: its base URL beside it.
fn serving_member(config: &Path, timeout: &str, env: &[(&str, &str)]) -> (Proc, String) {
    let id = unique("mon");
    let mut command = std::process::Command::new(monitor_bin());
    command
        .env("MONITOR__DETECTION__MODE", "fixed")
        .env_remove("HEARTBEAT_KEY")
        .envs(env.iter().copied())
        .args(["--headless", "--url", BROKER, "--id", &id])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .args([
            "--interval",
            &format!("{INTERVAL_MS}ms"),
            "--timeout",
            timeout,
        ]);
    let monitor = Proc::spawn(&format!("monitor {id}"), command);
    let base = monitor.listen_base();
    (monitor, base)
}

fn id_of(monitor: &Proc) -> String {
    monitor.name.trim_start_matches("monitor ").to_owned()
}

/// `monitor status --url BASE --service NAME`: its exit code and output.
fn status_check(base: &str, service: &str) -> (i32, String) {
    let out = std::process::Command::new(monitor_bin())
        .args(["status", "--url", base, "--service", service])
        .output()
        .expect("monitor status runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Agreement, end to end. Two members; the leader alone cannot hear a
/// service: its key was rotated on the service and on the other member but
/// not on the leader, which drops the service's echoes (`bad_signature`),
/// a real way for one monitor to go deaf to one service. The leader judges
/// it DOWN on its own; the group does not (one of two), so nobody is paged,
/// and both members' status documents, pages, metrics and `monitor status`
/// show the group: who leads, who is alive, the service UNHEARD on the deaf
/// member and UP on the other, each with both verdicts. Then the service
/// dies for both: DOWN for the group, one page.
#[test]
fn one_member_deaf_to_a_service_pages_nobody_and_every_view_shows_the_group() {
    const OLD: &str = "group-agreement-key-0001";
    const NEW: &str = "group-agreement-key-0002";
    let mut hook = Hook::start();
    let mut am_receiver = Hook::start();
    let alertmanager = Alertmanager::start(&am_receiver.url("/am"));
    let group = unique("g");
    let config = notify_config(&hook, &alertmanager, &group);
    let name = unique("deaf");
    // A long timeout, so that the service's restart with its new key is no
    // outage for the member that has both keys.
    let timeout = "3s";
    let (mut deaf, deaf_base) = serving_member(&config, timeout, &[("HEARTBEAT_KEY", OLD)]);
    wait_leading(&deaf, Duration::from_secs(15));
    let (mut hears, hears_base) = serving_member(
        &config,
        timeout,
        &[("HEARTBEAT_KEY", &format!("{OLD},{NEW}"))],
    );
    hears.wait_stderr(Duration::from_secs(15), "joined the monitor group");
    let (deaf_id, hears_id) = (id_of(&deaf), id_of(&hears));

    // Seen from outside: the same group from either member.
    for base in [&deaf_base, &hears_base] {
        let doc = wait_for(Duration::from_secs(15), "both members alive", || {
            let doc = status_document(base);
            let alive = doc["group"]["members"]
                .as_array()?
                .iter()
                .filter(|m| m["alive"] == true)
                .count();
            (alive == 2).then_some(doc)
        });
        assert_eq!(doc["group"]["name"], group.as_str(), "{doc}");
        assert_eq!(doc["group"]["leader"], deaf_id.as_str(), "{doc}");
        assert_eq!(doc["group"]["quorum"], 2, "{doc}");
    }
    let leader_series = format!("heartbeat_leader{{group=\"{group}\"}}");
    assert_eq!(metric(&deaf_base, &leader_series), Some(1.0));
    assert_eq!(metric(&hears_base, &leader_series), Some(0.0));

    let mut service = mock_with_env(BROKER, &name, "i-1", &[], &[("HEARTBEAT_KEY", OLD)]);
    for monitor in [&mut deaf, &mut hears] {
        monitor.wait_json(
            Duration::from_secs(15),
            "first seen",
            transition(&name, "up", "first_seen"),
        );
    }
    // The key is rotated on the service; the leader has only the old one.
    service.kill();
    let rotated = mock_with_env(
        BROKER,
        &name,
        "i-1",
        &[],
        &[("HEARTBEAT_KEY", &format!("{NEW},{OLD}"))],
    );
    deaf.wait_json(
        Duration::from_secs(15),
        "the deaf member's own DOWN",
        transition(&name, "down", "timed_out"),
    );
    let entry_of = |base: &str| -> Option<serde_json::Value> {
        status_entry(&status_document(base), &name).cloned()
    };
    let both = serde_json::json!({ &deaf_id: "down", &hears_id: "up" });
    let deaf_entry = wait_for(
        Duration::from_secs(10),
        "UNHEARD on the deaf member",
        || entry_of(&deaf_base).filter(|e| e["state"] == "unheard" && e["verdicts"] == both),
    );
    assert_eq!(deaf_entry["severity"], "ok", "{deaf_entry}");
    let hears_entry = wait_for(
        Duration::from_secs(10),
        "UP on the other, with both verdicts",
        || entry_of(&hears_base).filter(|e| e["state"] == "up" && e["verdicts"] == both),
    );
    assert_eq!(hears_entry["severity"], "ok", "{hears_entry}");
    // The group's verdict from either member: OK, and whose group it is.
    for base in [&deaf_base, &hears_base] {
        let (code, out) = status_check(base, &name);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!("group {group}, leader {deaf_id}")),
            "{out}"
        );
    }
    let (_, out) = status_check(&deaf_base, &name);
    assert!(
        out.contains("1 unheard") && out.contains("UNHEARD"),
        "{out}"
    );
    // Per-member agreement: the other member shares none of the deaf one's
    // verdicts about this service.
    let agreement = format!("heartbeat_group_agreement{{group=\"{group}\",member=\"{hears_id}\"}}");
    let shared = wait_for(Duration::from_secs(5), "the agreement metric", || {
        metric(&deaf_base, &agreement)
    });
    assert!(shared < 1.0, "{agreement} {shared}");
    // The page says the same (Chromium runs its script).
    let row = wait_for(Duration::from_secs(60), "the page shows it UNHEARD", || {
        page_row(&browser_dom(&format!("{deaf_base}/")), &name)
            .filter(|row| row.contains("data-state=\"unheard\""))
    });
    assert!(
        row.contains(&format!("{deaf_id}: down")) && row.contains(&format!("{hears_id}: up")),
        "{row}"
    );
    let dom = browser_dom(&format!("{hears_base}/"));
    assert!(
        dom.contains(&format!("group {group} · standby, leader {deaf_id}")),
        "{dom}"
    );
    // Nobody was paged: the leader's DOWN was its own view.
    hook.expect_none(
        Duration::from_secs(3),
        "a page for one member's DOWN",
        |r| r.json["service"] == name.as_str(),
    );
    assert_eq!(am_notifications(&mut am_receiver, &name, "firing"), 0);

    // Now it dies for everyone: DOWN for the group, paged once, by the leader.
    drop(rotated);
    hears.wait_json(
        Duration::from_secs(15),
        "DOWN on the member that heard it",
        transition(&name, "down", "timed_out"),
    );
    let firing = hook.wait(
        Duration::from_secs(10),
        "the firing",
        hook_event(&name, "firing"),
    );
    assert_eq!(firing.json["monitor"], deaf_id.as_str());
    let entry = wait_for(Duration::from_secs(10), "DOWN for the group", || {
        entry_of(&deaf_base).filter(|e| e["state"] == "down")
    });
    assert!(entry.get("verdicts").is_none(), "they agree: {entry}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook_count(&mut hook, &name, "firing"), 0, "once");
}

/// A reload in a group applies new `[[notify]]` targets (issue 21): the
/// group's ledger knows each target by where it delivers, so a target kept
/// by the reload keeps what the group sent it even when the list is
/// reordered, and a new one hears changes from the reload on.
#[test]
fn a_reload_in_a_group_applies_new_targets_and_keeps_what_the_group_sent() {
    let mut kept = Hook::start();
    let mut added = Hook::start();
    let group = unique("g-reload");
    let config = std::env::temp_dir().join(format!("{}.toml", unique("group-reload")));
    let webhook = |hook: &Hook| {
        format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\ngroup_wait = \"0s\"\n\n",
            hook.url("/hook")
        )
    };
    let group_section = format!("[group]\nname = \"{group}\"\n\n");
    std::fs::write(&config, format!("{group_section}{}", webhook(&kept))).unwrap();
    let (before, after) = (unique("before"), unique("after"));

    let mut first = member(BROKER, &config);
    wait_leading(&first, Duration::from_secs(15));
    let mut second = member(BROKER, &config);
    second.wait_stderr(Duration::from_secs(15), "joined the monitor group");
    let mut before_svc = mock(BROKER, &before, "i-1", &[]);
    let mut after_svc = mock(BROKER, &after, "i-1", &[]);
    for monitor in [&mut first, &mut second] {
        for service in [&before, &after] {
            monitor.wait_json(
                Duration::from_secs(15),
                "first seen",
                transition(service, "up", "first_seen"),
            );
        }
    }
    before_svc.kill();
    kept.wait(
        Duration::from_secs(15),
        "before's firing",
        hook_event(&before, "firing"),
    );

    // The new target first: the kept one moves from index 0 to 1.
    std::fs::write(
        &config,
        format!("{group_section}{}{}", webhook(&added), webhook(&kept)),
    )
    .unwrap();
    for monitor in [&first, &second] {
        monitor.signal("HUP");
        monitor.wait_stderr(Duration::from_secs(5), "reloaded: notify applied");
    }

    after_svc.kill();
    kept.wait(
        Duration::from_secs(15),
        "after's firing, kept target",
        hook_event(&after, "firing"),
    );
    added.wait(
        Duration::from_secs(5),
        "after's firing, added target",
        hook_event(&after, "firing"),
    );
    // What the group sent the kept target before the reload is still known
    // as sent: `before` comes back, and its resolution reaches the kept
    // target once, and the added one (which never heard of it) not at all.
    let _before_back = mock(BROKER, &before, "i-1", &[]);
    kept.wait(
        Duration::from_secs(15),
        "before's resolution",
        hook_event(&before, "resolved"),
    );
    kept.expect_none(
        Duration::from_secs(2),
        "a second firing or resolution of before, or of after",
        |r| {
            r.json["service"] == before.as_str()
                || (r.json["service"] == after.as_str() && r.json["event"] == "firing")
        },
    );
    added.expect_none(Duration::ZERO, "anything about before", |r| {
        r.json["service"] == before.as_str()
    });
    let _ = std::fs::remove_file(&config);
}
