//! The command target: runs a program per notification, with the event in
//! `HEARTBEAT_*` environment variables and its JSON on stdin; for a group,
//! `HEARTBEAT_EVENT=group`, the count, the summary, and the group's JSON.

use std::process::Stdio;

use heartbeat_config::NotifySettings;
use tokio::io::AsyncWriteExt;

use super::Event;
use super::notification::Notification;

#[derive(Clone)]
pub struct Runner {
    program: String,
    args: Vec<String>,
}

impl Runner {
    pub fn new(entry: &NotifySettings) -> Self {
        Self {
            program: entry.command[0].clone(),
            args: entry.command[1..].to_vec(),
        }
    }

    /// Run once; a non-zero exit is a failure. The caller's timeout drops
    /// this future, and `kill_on_drop` then ends the process.
    pub async fn run(&self, notification: &Notification) -> Result<(), String> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let variables = match notification {
            Notification::One(event) => one(event),
            Notification::Group(group) => vec![
                ("HEARTBEAT_EVENT", group.event.to_string()),
                ("HEARTBEAT_COUNT", group.count.to_string()),
                (
                    "HEARTBEAT_AT",
                    group
                        .at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
                ("HEARTBEAT_MONITOR", group.monitor.clone()),
                ("HEARTBEAT_SUMMARY", group.summary.clone()),
            ],
        };
        for (name, value) in variables {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", self.program))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read its stdin is fine: ignore a broken pipe.
            let _ = stdin.write_all(&notification.body()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| format!("{:?}: {e}", self.program))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or("").trim();
            Err(format!(
                "{:?} exited with {}: {last}",
                self.program, output.status
            ))
        }
    }
}

/// One event's variables.
fn one(event: &Event) -> Vec<(&'static str, String)> {
    vec![
        ("HEARTBEAT_EVENT", event.event.to_string()),
        ("HEARTBEAT_COUNT", "1".to_string()),
        ("HEARTBEAT_SCOPE", event.scope.to_string()),
        ("HEARTBEAT_SERVICE", event.service.clone()),
        // Empty for a service's strength.
        (
            "HEARTBEAT_INSTANCE",
            event.instance.clone().unwrap_or_default(),
        ),
        (
            "HEARTBEAT_UP",
            event.up.map(|n| n.to_string()).unwrap_or_default(),
        ),
        (
            "HEARTBEAT_EXPECTED",
            event.expected.map(|n| n.to_string()).unwrap_or_default(),
        ),
        ("HEARTBEAT_FROM", event.from.clone()),
        ("HEARTBEAT_TO", event.to.clone()),
        ("HEARTBEAT_REASON", event.reason.to_string()),
        (
            "HEARTBEAT_AT",
            event
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        ("HEARTBEAT_ALERT_STATE", event.alert_state.clone()),
        ("HEARTBEAT_MONITOR", event.monitor.clone()),
        ("HEARTBEAT_SUMMARY", event.summary.clone()),
        // Comma-separated; empty when no dependent is down with it.
        ("HEARTBEAT_DEPENDENTS", event.dependents.join(",")),
    ]
}
