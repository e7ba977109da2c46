//! Headless output: one JSON object per line on stdout for every transition.
//! Logs go to stderr, so stdout stays machine-readable.

use std::io::Write;

use chrono::SecondsFormat;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::detector::{Reason, State};
use crate::engine::{Report, Update};

#[derive(Serialize)]
struct Line<'a> {
    at: String,
    service: &'a str,
    instance: &'a str,
    from: State,
    to: State,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    silent_ms: Option<u64>,
}

pub fn json_line(report: &Report) -> String {
    let t = &report.transition;
    let silent_ms = match t.reason {
        Reason::TimedOut { silent_for } => Some(silent_for.as_millis() as u64),
        _ => None,
    };
    let line = Line {
        at: report.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        service: &t.key.service,
        instance: &t.key.instance,
        from: t.from,
        to: t.to,
        reason: t.reason.code(),
        rtt_ms: t.rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
        silent_ms,
    };
    serde_json::to_string(&line).expect("plain fields always serialise")
}

/// A state's code, as in the JSON lines (`up`, `down`, ...): what alerts and
/// history are written against, so new states flow through them unchanged.
pub fn state_code(state: State) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(code)) => code,
        _ => format!("{state:?}").to_lowercase(),
    }
}

/// Write transitions until the engine stops or stdout closes. A closed
/// stdout (the reader of a pipe went away, as with `| head -1`) is noticed at
/// the next write, or by `reader_gone` while there is nothing to write.
/// Returns whether stdout closed, so the caller can end the monitor.
pub async fn write_transitions(
    mut updates: mpsc::Receiver<Update>,
    mut out: impl Write,
    reader_gone: impl Future<Output = ()>,
) -> bool {
    tokio::pin!(reader_gone);
    loop {
        let update = tokio::select! {
            update = updates.recv() => update,
            () = &mut reader_gone => return true,
        };
        let Some(update) = update else { return false };
        if let Update::Transition(report) = update
            && writeln!(out, "{}", json_line(&report))
                .and_then(|()| out.flush())
                .is_err()
        {
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
    use crate::detector::{InstanceKey, Transition};
    use std::time::Duration;

    #[test]
    fn lines_carry_the_documented_fields() {
        let report = Report {
            at: "2026-11-23T10:00:01.5Z".parse().unwrap(),
            transition: Transition {
                key: InstanceKey::new("orders", "o-1"),
                from: State::Up,
                to: State::Down,
                reason: Reason::TimedOut {
                    silent_for: Duration::from_millis(3120),
                },
                rtt: None,
            },
        };
        let value: serde_json::Value = serde_json::from_str(&json_line(&report)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"at": "2026-11-23T10:00:01.500Z", "service": "orders", "instance": "o-1",
                "from": "up", "to": "down", "reason": "timed_out", "silent_ms": 3120})
        );
        let report = Report {
            transition: Transition {
                from: State::NeverSeen,
                to: State::Up,
                reason: Reason::FirstSeen,
                rtt: Some(Duration::from_micros(1234)),
                ..report.transition
            },
            ..report
        };
        let value: serde_json::Value = serde_json::from_str(&json_line(&report)).unwrap();
        assert_eq!(value["from"], "never_seen");
        assert_eq!(value["rtt_ms"], 1.234);
        assert!(value.get("silent_ms").is_none());
    }
}
