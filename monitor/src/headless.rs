//! Headless output: one JSON object per line on stdout. Each has a `kind`:
//! `transition` (an instance changed state), `service` (a service fell
//! below its expected instances, or is back to full strength), `link` (our own broker link
//! changed, and with it whether the monitor can judge), `stall` (our own loop
//! ran late, so verdicts were suspended), `expected` (the services expected
//! by configuration, first) and `unseen` (one of them has not answered
//! within its timeout of the link coming up). Logs go to stderr, so stdout
//! stays machine-readable.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use orchestrator_lib::plumbing::LinkStatus;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::detector::{Blindness, Reason, UNSEEN_INSTANCE};
use crate::update::{Report, ServiceReport, Update};

#[derive(Serialize)]
struct TransitionLine<'a> {
    at: String,
    kind: &'static str,
    service: &'a str,
    instance: &'a str,
    from: &'static str,
    to: &'static str,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    silent_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phi: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_ms: Option<u64>,
}

#[derive(Serialize)]
struct LinkLine<'a> {
    at: String,
    kind: &'static str,
    status: &'static str,
    /// False while the monitor cannot judge: nobody is declared DOWN.
    judging: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_in_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct ServiceLine<'a> {
    at: String,
    kind: &'static str,
    service: &'a str,
    from: &'static str,
    to: &'static str,
    up: u32,
    expected: u32,
}

#[derive(Serialize)]
struct ExpectedLine<'a> {
    at: String,
    kind: &'static str,
    services: Vec<&'a str>,
}

#[derive(Serialize)]
struct UnseenLine<'a> {
    at: String,
    kind: &'static str,
    service: &'a str,
    /// How long since the link came up, the service's timeout or a little more.
    waited_ms: u64,
}

#[derive(Serialize)]
struct StallLine {
    at: String,
    kind: &'static str,
    lag_ms: u64,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub fn json_line(report: &Report) -> String {
    let t = &report.transition;
    let (silent_ms, phi) = match t.reason {
        Reason::TimedOut { silent_for, phi } => (
            Some(silent_for.as_millis() as u64),
            phi.map(|p| (p.min(1e6) * 100.0).round() / 100.0),
        ),
        _ => (None, None),
    };
    let rtt = match t.reason {
        Reason::Slow { rtt } => Some(rtt),
        _ => t.rtt,
    };
    let line = TransitionLine {
        at: stamp(report.at),
        kind: "transition",
        service: &t.key.service,
        instance: &t.key.instance,
        from: t.from.code(),
        to: t.to.code(),
        reason: t.reason.code(),
        rtt_ms: rtt.map(millis),
        silent_ms,
        phi,
        changes: match t.reason {
            Reason::Flapping { changes } => Some(changes),
            _ => None,
        },
        lag_ms: match t.reason {
            Reason::Stale(Blindness::Stalled { lag }) => Some(lag.as_millis() as u64),
            _ => None,
        },
    };
    serde_json::to_string(&line).expect("plain fields always serialise")
}

/// `{"kind": "service", "from": "full", "to": "degraded", "up": 1, "expected": 3, ...}`.
pub fn service_line(report: &ServiceReport) -> String {
    let c = &report.change;
    let line = ServiceLine {
        at: stamp(report.at),
        kind: "service",
        service: &c.service,
        from: c.from.code(),
        to: c.to.code(),
        up: c.up,
        expected: c.expected,
    };
    serde_json::to_string(&line).expect("plain fields always serialise")
}

pub fn link_line(status: &LinkStatus, at: DateTime<Utc>) -> String {
    let (attempt, retry_in, detail) = match status {
        LinkStatus::Reconnecting {
            attempt,
            retry_in,
            error,
        } => (
            Some(*attempt),
            Some(retry_in.as_millis() as u64),
            Some(error.clone()),
        ),
        LinkStatus::Blocked { reason } => (None, None, Some(reason.clone())),
        LinkStatus::Failed(error) => (None, None, Some(error.to_string())),
        LinkStatus::Connecting | LinkStatus::Connected | LinkStatus::Closed => (None, None, None),
    };
    let line = LinkLine {
        at: stamp(at),
        kind: "link",
        status: status.code(),
        judging: *status == LinkStatus::Connected,
        attempt,
        retry_in_ms: retry_in,
        detail: detail.as_deref(),
    };
    serde_json::to_string(&line).expect("plain fields always serialise")
}

pub fn stall_line(lag: std::time::Duration, at: DateTime<Utc>) -> String {
    let line = StallLine {
        at: stamp(at),
        kind: "stall",
        lag_ms: lag.as_millis() as u64,
    };
    serde_json::to_string(&line).expect("plain fields always serialise")
}

pub fn expected_line(services: &[(String, Duration)], at: DateTime<Utc>) -> String {
    let line = ExpectedLine {
        at: stamp(at),
        kind: "expected",
        services: services.iter().map(|(name, _)| name.as_str()).collect(),
    };
    serde_json::to_string(&line).expect("plain fields always serialise")
}

pub fn unseen_line(service: &str, waited: Duration, at: DateTime<Utc>) -> String {
    let line = UnseenLine {
        at: stamp(at),
        kind: "unseen",
        service,
        waited_ms: waited.as_millis() as u64,
    };
    serde_json::to_string(&line).expect("plain fields always serialise")
}

/// Write transitions until the engine stops or stdout closes. A closed
/// stdout (the reader of a pipe went away, as with `| head -1`) is noticed at
/// the next write, or by `reader_gone` while there is nothing to write.
/// Returns whether stdout closed, so the caller can end the monitor.
///
/// `expect` (service, timeout) is said first; a service that has had no
/// transition a timeout after the link first came up is reported once as
/// `unseen`, so a script can alert on what never answered.
pub async fn write_transitions(
    mut updates: mpsc::Receiver<Update>,
    mut out: impl Write,
    reader_gone: impl Future<Output = ()>,
    expect: &[(String, Duration)],
) -> bool {
    tokio::pin!(reader_gone);
    let mut write = |line: String| writeln!(out, "{line}").and_then(|()| out.flush()).is_ok();
    if !expect.is_empty() && !write(expected_line(expect, Utc::now())) {
        return true;
    }
    let mut waiting: Vec<(String, Duration)> = expect.to_vec();
    // Silence only counts once the monitor could have heard anything.
    let mut connected_at: Option<Instant> = None;
    loop {
        let next = connected_at.and_then(|since| waiting.iter().map(|(_, t)| since + *t).min());
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let update = tokio::select! {
            update = updates.recv() => update,
            () = &mut reader_gone => return true,
            () = due => {
                let now = Instant::now();
                let since = connected_at.expect("a deadline needs a connection");
                let (late, rest) = waiting.into_iter().partition(|(_, t)| since + *t <= now);
                waiting = rest;
                for (service, _) in late {
                    let waited = now.saturating_duration_since(since);
                    if !write(unseen_line(&service, waited, Utc::now())) {
                        return true;
                    }
                }
                continue;
            }
        };
        let Some(update) = update else { return false };
        match &update {
            // The expected service's placeholder can change state (STALE while
            // the link is down); only a real instance has answered.
            Update::Transition(report) if report.transition.key.instance != UNSEEN_INSTANCE => {
                waiting.retain(|(service, _)| *service != report.transition.key.service);
            }
            Update::Link(LinkStatus::Connected) if connected_at.is_none() => {
                connected_at = Some(Instant::now());
            }
            // A reload's newly expected services get their timeout from now.
            Update::Reconfigured(reconfigured) => {
                let elapsed = connected_at.map_or(Duration::ZERO, |since| since.elapsed());
                waiting.retain(|(service, _)| !reconfigured.expect_removed.contains(service));
                waiting.extend(
                    reconfigured
                        .expect_added
                        .iter()
                        .map(|(service, timeout)| (service.clone(), elapsed + *timeout)),
                );
            }
            _ => {}
        }
        let line = match update {
            Update::Transition(report) => json_line(&report),
            Update::Service(report) => service_line(&report),
            Update::Link(status) => link_line(&status, Utc::now()),
            Update::Stall { lag, .. } => stall_line(lag, Utc::now()),
            // Forgetting is housekeeping: the instance's last line (DOWN,
            // LEFT) still says what it is.
            Update::Echoes(_)
            | Update::PingSent { .. }
            | Update::Forgotten(_)
            | Update::Reconfigured(_)
            | Update::Cost(_) => continue,
        };
        if !write(line) {
            return true;
        }
    }
}

/// Resolves when stdout is a pipe whose reader has gone. A quiet fleet writes
/// nothing, so a monitor under `| head -1` would otherwise ping forever.
/// Never resolves for a terminal or a file, which report no such event.
pub async fn stdout_reader_gone() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A detached thread, not spawn_blocking: the runtime's shutdown would
    // wait for a poll that may never return.
    let watcher = std::thread::Builder::new()
        .name("stdout-watch".into())
        .spawn(move || {
            if wait_for_pipe_error(libc::STDOUT_FILENO) {
                let _ = tx.send(());
            }
        });
    if watcher.is_err() || rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Block until `fd` reports an error or hang-up (Linux reports POLLERR on a
/// pipe's write end once the read end is closed). False if poll fails.
fn wait_for_pipe_error(fd: libc::c_int) -> bool {
    loop {
        // No events asked for: POLLERR and POLLHUP are always reported.
        let mut pollfd = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, its count and an infinite timeout.
        let ready = unsafe { libc::poll(&mut pollfd, 1, -1) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        if pollfd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            return true;
        }
        if pollfd.revents & libc::POLLNVAL != 0 {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{InstanceKey, State, Transition};
    use std::time::Duration;

    fn report(from: State, to: State, reason: Reason, rtt: Option<Duration>) -> Report {
        Report {
            at: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            transition: Transition {
                key: InstanceKey::new("orders", "o-1"),
                from,
                to,
                reason,
                rtt,
            },
        }
    }

    fn parse(line: &str) -> serde_json::Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn lines_carry_the_documented_fields() {
        let timed_out = Reason::TimedOut {
            silent_for: Duration::from_millis(3120),
            phi: None,
        };
        let value = parse(&json_line(&report(State::Up, State::Down, timed_out, None)));
        assert_eq!(
            value,
            serde_json::json!({"at": "2026-11-23T10:00:01.500Z", "kind": "transition",
                "service": "orders", "instance": "o-1",
                "from": "up", "to": "down", "reason": "timed_out", "silent_ms": 3120})
        );
        let first = report(
            State::NeverSeen,
            State::Up,
            Reason::FirstSeen,
            Some(Duration::from_micros(1234)),
        );
        let value = parse(&json_line(&first));
        assert_eq!(value["from"], "never_seen");
        assert_eq!(value["rtt_ms"], 1.234);
        assert!(value.get("silent_ms").is_none() && value.get("phi").is_none());
    }

    #[test]
    fn every_new_state_and_reason_reaches_the_line() {
        let phi = Reason::TimedOut {
            silent_for: Duration::from_millis(1700),
            phi: Some(8.0123),
        };
        let value = parse(&json_line(&report(State::Up, State::Suspect, phi, None)));
        assert_eq!(
            (value["to"].as_str(), value["phi"].as_f64()),
            (Some("suspect"), Some(8.01))
        );
        let flap = Reason::Flapping { changes: 6 };
        let value = parse(&json_line(&report(State::Up, State::Flapping, flap, None)));
        assert_eq!(
            (value["reason"].as_str(), value["changes"].as_u64()),
            (Some("flapping"), Some(6))
        );
        let stall = Reason::Stale(Blindness::Stalled {
            lag: Duration::from_millis(10_020),
        });
        let value = parse(&json_line(&report(State::Up, State::Stale, stall, None)));
        assert_eq!(
            (value["reason"].as_str(), value["lag_ms"].as_u64()),
            (Some("stalled"), Some(10_020))
        );
        let slow = Reason::Slow {
            rtt: Duration::from_millis(812),
        };
        let value = parse(&json_line(&report(State::Up, State::Slow, slow, None)));
        assert_eq!(
            (value["to"].as_str(), value["rtt_ms"].as_f64()),
            (Some("slow"), Some(812.0))
        );
        let value = parse(&json_line(&report(
            State::Up,
            State::Left,
            Reason::Left,
            None,
        )));
        assert_eq!(value["to"], "left");
    }

    /// A `Write` the test can read while the writer owns it.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(parse)
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expected_services_are_said_first_and_the_unseen_reported_after_their_timeout() {
        let (tx, rx) = mpsc::channel(16);
        let out = Shared::default();
        let expect = vec![
            ("orders".to_string(), Duration::from_secs(3)),
            ("billing".to_string(), Duration::from_secs(3)),
            ("slowpoke".to_string(), Duration::from_secs(10)),
        ];
        let writer = tokio::spawn({
            let out = out.clone();
            async move { write_transitions(rx, out, std::future::pending(), &expect).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let lines = out.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["kind"], "expected");
        assert_eq!(
            lines[0]["services"],
            serde_json::json!(["orders", "billing", "slowpoke"])
        );

        // Nothing is unseen before the monitor could hear anything.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(out.lines().len(), 1);
        tx.send(Update::Link(LinkStatus::Connected)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut first = report(State::NeverSeen, State::Up, Reason::FirstSeen, None);
        first.transition.key = InstanceKey::new("orders", "o-1");
        tx.send(Update::Transition(first)).await.unwrap();
        // billing's placeholder turning STALE is no answer.
        let mut stale = report(
            State::NeverSeen,
            State::Stale,
            Reason::Stale(Blindness::LinkDown),
            None,
        );
        stale.transition.key = InstanceKey::new("billing", UNSEEN_INSTANCE);
        tx.send(Update::Transition(stale)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let kinds: Vec<_> = out.lines().iter().map(|l| l["kind"].clone()).collect();
        assert_eq!(
            kinds,
            ["expected", "link", "transition", "transition", "unseen"]
        );
        let unseen = &out.lines()[4];
        assert_eq!(unseen["service"], "billing");
        assert_eq!(unseen["waited_ms"], 3000);

        tokio::time::sleep(Duration::from_secs(7)).await;
        let lines = out.lines();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            (lines[5]["kind"].as_str(), lines[5]["service"].as_str()),
            (Some("unseen"), Some("slowpoke"))
        );
        // Each once.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(out.lines().len(), 6);
        drop(tx);
        assert!(!writer.await.unwrap());
    }

    #[test]
    fn service_lines_say_the_strength_and_the_count() {
        use crate::detector::{ServiceChange, Strength};
        let report = ServiceReport {
            at: "2026-11-23T10:00:01Z".parse().unwrap(),
            change: ServiceChange {
                service: "orders".into(),
                from: Strength::Full,
                to: Strength::Degraded,
                up: 1,
                expected: 3,
            },
        };
        assert_eq!(
            parse(&service_line(&report)),
            serde_json::json!({"at": "2026-11-23T10:00:01.000Z", "kind": "service",
                "service": "orders", "from": "full", "to": "degraded", "up": 1, "expected": 3})
        );
    }

    #[test]
    fn link_and_stall_lines_say_whether_the_monitor_can_judge() {
        let at: DateTime<Utc> = "2026-11-23T10:00:01Z".parse().unwrap();
        let down = LinkStatus::Reconnecting {
            attempt: 2,
            retry_in: Duration::from_millis(500),
            error: "connection reset".into(),
        };
        assert_eq!(
            parse(&link_line(&down, at)),
            serde_json::json!({"at": "2026-11-23T10:00:01.000Z", "kind": "link",
                "status": "reconnecting", "judging": false, "attempt": 2,
                "retry_in_ms": 500, "detail": "connection reset"})
        );
        let blocked = LinkStatus::Blocked {
            reason: "low on memory".into(),
        };
        let value = parse(&link_line(&blocked, at));
        assert_eq!(
            (value["status"].as_str(), value["judging"].as_bool()),
            (Some("blocked"), Some(false))
        );
        assert_eq!(
            parse(&link_line(&LinkStatus::Connected, at))["judging"],
            true
        );
        assert_eq!(
            parse(&stall_line(Duration::from_millis(1500), at)),
            serde_json::json!({"at": "2026-11-23T10:00:01.000Z", "kind": "stall", "lag_ms": 1500})
        );
    }
}
