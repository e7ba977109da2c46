//! Prometheus Alertmanager, API v2: alerts are POSTed to `/api/v2/alerts`,
//! pushed again every `resend` while they fire (Alertmanager resolves an
//! alert whose `endsAt` passes without news), and ended with `endsAt` = now.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use heartbeat_config::NotifySettings;
use serde::Serialize;
use tokio::sync::mpsc;

use super::webhook::describe;
use super::{Event, TargetStats, with_retries};
use crate::group::Group;
use crate::limited::{Limited, warn_limited};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    labels: BTreeMap<&'static str, String>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    ends_at: String,
}

/// At most this many alerts in one push.
const MAX_PUSH: usize = 1000;

pub struct Alertmanager {
    client: reqwest::Client,
    endpoint: String,
    entry: NotifySettings,
    /// In a monitor group, firing alerts are re-pushed only while this
    /// member leads: a standby (an old leader that woke up) must not
    /// revive what the new leader resolved.
    group: Option<Group>,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `HeartbeatDown`, `HeartbeatFlapping`, ... from an instance's state code;
/// `HeartbeatServiceDegraded` from a service's.
fn alertname(state: &str, service_wide: bool) -> String {
    let mut name = String::from(if service_wide {
        "HeartbeatService"
    } else {
        "Heartbeat"
    });
    for word in state.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

impl Alertmanager {
    pub fn new(client: reqwest::Client, entry: &NotifySettings, group: Option<Group>) -> Self {
        Self {
            client,
            endpoint: format!("{}/api/v2/alerts", entry.url.trim_end_matches('/')),
            entry: entry.clone(),
            group,
        }
    }

    /// The alert for an event. The monitor is an annotation, not a label,
    /// so that two monitors watching the same service make one alert. A
    /// service's strength has no `instance` label: it is about them all.
    fn alert(&self, event: &Event) -> Alert {
        let mut labels = BTreeMap::from([
            (
                "alertname",
                alertname(&event.alert_state, event.instance.is_none()),
            ),
            ("service", event.service.clone()),
            ("severity", self.entry.severity.clone()),
        ]);
        if let Some(instance) = &event.instance {
            labels.insert("instance", instance.clone());
        }
        let mut annotations = BTreeMap::from([
            ("summary", event.summary.clone()),
            ("reason", event.reason.to_string()),
            ("monitor", event.monitor.clone()),
        ]);
        // Their own alerts are held while this one is down: it speaks for them.
        if !event.dependents.is_empty() {
            annotations.insert("dependents", event.dependents.join(", "));
        }
        Alert {
            labels,
            annotations,
            starts_at: stamp(event.alert_since),
            ends_at: String::new(),
        }
    }

    /// Firing alerts stay valid for a few resends, so one lost push does
    /// not resolve them, and a monitor that dies has them resolve on their own.
    fn valid_until(&self) -> String {
        stamp(Utc::now() + self.entry.resend * 4)
    }

    async fn post(&self, alerts: &[Alert]) -> Result<(), String> {
        let response = self
            .client
            .post(&self.endpoint)
            .json(alerts)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let text = response.text().await.unwrap_or_default();
            Err(format!("Alertmanager answered {status}: {}", text.trim()))
        }
    }

    /// Push `alerts`; `sent` is what a success adds to the sent count.
    async fn push(&self, alerts: &[Alert], sent: u64, stats: &TargetStats, log: &mut Limited) {
        if alerts.is_empty() {
            return;
        }
        match with_retries(self.entry.retries, self.entry.timeout, || self.post(alerts)).await {
            Ok(()) => {
                stats.sent.fetch_add(sent, Ordering::Relaxed);
            }
            Err(error) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                warn_limited!(log, "{} alert(s) not delivered: {error}", alerts.len());
            }
        }
    }

    pub async fn run(
        self,
        mut events: mpsc::Receiver<Event>,
        stats: Arc<TargetStats>,
        mut log: Limited,
    ) {
        // Firing alerts by their labels, re-pushed every `resend`.
        let mut firing: BTreeMap<Vec<String>, Alert> = BTreeMap::new();
        let mut resend = tokio::time::interval_at(
            tokio::time::Instant::now() + self.entry.resend,
            self.entry.resend.max(Duration::from_millis(100)),
        );
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    // What else waits goes in the same push: a storm is one
                    // request, and the queue empties as fast as it fills.
                    let mut batch = vec![event];
                    while batch.len() < MAX_PUSH
                        && let Ok(more) = events.try_recv()
                    {
                        batch.push(more);
                    }
                    let mut alerts = Vec::with_capacity(batch.len());
                    for event in batch {
                        let mut alert = self.alert(&event);
                        let id: Vec<String> = alert.labels.values().cloned().collect();
                        match event.event {
                            // Forgotten: nobody watches it any more; the alert ends.
                            "resolved" | "forgotten" => {
                                firing.remove(&id);
                                alert.ends_at = stamp(event.at);
                            }
                            // Restored: firing before the monitor restarted; pushed
                            // again so that Alertmanager keeps it alive.
                            "firing" | "restored" => {
                                alert.ends_at = self.valid_until();
                                firing.insert(id, alert.clone());
                            }
                            // Alertmanager repeats notifications itself (repeat_interval).
                            _ => continue,
                        }
                        alerts.push(alert);
                    }
                    let events = alerts.len() as u64;
                    self.push(&alerts, events, &stats, &mut log).await;
                }
                _ = resend.tick() => {
                    if self.group.as_ref().is_some_and(|g| !g.leads()) {
                        // A new leader pushes them; this one forgets them.
                        firing.clear();
                        continue;
                    }
                    let until = self.valid_until();
                    let alerts: Vec<Alert> = firing
                        .values()
                        .map(|a| Alert { ends_at: until.clone(), ..a.clone() })
                        .collect();
                    // One delivery of what fires, however many.
                    self.push(&alerts, 1, &stats, &mut log).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_come_from_state_codes() {
        assert_eq!(alertname("down", false), "HeartbeatDown");
        assert_eq!(alertname("never_seen", false), "HeartbeatNeverSeen");
        assert_eq!(alertname("degraded", true), "HeartbeatServiceDegraded");
    }
}
