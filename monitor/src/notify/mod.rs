//! Alerts: a sink of the engine's updates that tells people about the
//! changes they care about, through `[[notify]]` targets.
//!
//! Layout:
//! - `policy`: per entry, when to send (states, `for`, reminders, resolved). Pure.
//! - `event`: the event and its JSON payload.
//! - `webhook`, `command`, `alertmanager`, `slack`, `email`: the kinds of target.
//! - `outbox` (pure), `deliver`, `notification`: a webhook's, command's,
//!   Slack's or email's events wait until delivered (retried with backoff
//!   for `retry_for`), and what came within `group_wait` goes out as one
//!   notification.
//! - `keeper`: undelivered events kept in the history store across restarts.
//! - `gate`: in a monitor group, only the leader sends, and only what the
//!   group has not sent already.
//! - `hold`: per target, alerts held while a silence, a maintenance window or
//!   a planned drain covers them, and sent when it ends if they still fire.
//! - `depends`: `depends_on`: a dependent's alerts held while its parent is
//!   down, and named in the parent's own alert.
//!
//! One task runs the policies; each target has its own bounded queue and
//! its own delivery task, so a slow or dead receiver only ever fills its own
//! queue: events beyond it are dropped and counted, and detection never waits.
//! A delivery task reads its queue also while it delivers, so the queue
//! holds what waits to be told (undelivered events included), not a storm.

mod alertmanager;
mod command;
mod deliver;
mod depends;
mod email;
mod event;
mod gate;
mod hold;
mod keeper;
mod notification;
mod outbox;
mod policy;
mod slack;
mod webhook;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use heartbeat_config::{HistorySettings, NotifyKind, NotifySettings};
use orchestrator_lib::plumbing::Backoff;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use event::Event;
use policy::{Change, EventKind, Policy, PolicyEvent, Rules};

use crate::fleet::{Shared, Sink};
use crate::group::Group;
use crate::limited::{Limited, warn_limited};
use crate::quiet::Quiet;
use crate::update::Update;
use gate::Gate;
use hold::Hold;
use keeper::Keeper;

/// How often pending `for` delays and reminders are looked at.
const TICK: Duration = Duration::from_millis(100);
/// On shutdown, queued events get this long to go out.
const DRAIN: Duration = Duration::from_secs(3);

/// Counters for one target, read by `/metrics` and the logs.
#[derive(Debug, Default)]
pub struct TargetStats {
    /// Its kind (`webhook`, `alertmanager`, `command`, `slack`, `email`), and its index among `[[notify]]`.
    pub kind: String,
    pub index: usize,
    /// Events delivered (an Alertmanager's re-push of what fires counts one).
    pub sent: AtomicU64,
    /// Deliveries that failed after their quick retries (the events of any
    /// kind but Alertmanager then wait and are tried again).
    pub failed: AtomicU64,
    /// Events dropped because the target's queue was full.
    pub dropped: AtomicU64,
    /// All kinds but alertmanager: events waiting to be delivered now.
    pub pending: AtomicU64,
    /// When the longest-waiting of them was made, ms since the epoch; 0: none.
    pub oldest_pending_ms: AtomicI64,
    /// Events given up undelivered, older than `retry_for`.
    pub expired: AtomicU64,
    /// Events not sent because a later one about the same alert took their place.
    pub replaced: AtomicU64,
}

impl TargetStats {
    fn new(kind: NotifyKind, index: usize) -> Self {
        Self {
            kind: kind.to_string(),
            index,
            ..Self::default()
        }
    }
}

/// The running notifier: feed it updates through its sink, read its counters.
pub struct Notifier {
    /// Where the engine's updates reach the policies.
    pub sink: Sink,
    pub stats: Stats,
    tasks: JoinSet<()>,
    /// With a history store: what keeps undelivered events there.
    keeper: Option<(Keeper, JoinHandle<()>)>,
}

/// Only transitions, of instances and of services' strength, matter to alerts.
fn wanted(update: &Update) -> bool {
    matches!(
        update,
        Update::Transition(_) | Update::Service(_) | Update::Forgotten(_) | Update::Reconfigured(_)
    )
}

impl Notifier {
    /// Wait for the queues to drain (bounded by [`DRAIN`]) after the updates end.
    pub async fn finish(mut self) {
        drop(self.sink);
        let drained = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN, drained).await.is_err() {
            warn!("notify: some alerts were still queued at shutdown");
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        // The targets are done: the store gets what they changed last.
        if let Some((keeper, task)) = self.keeper {
            keeper.close();
            if tokio::time::timeout(crate::history::LAST_WRITE, task)
                .await
                .is_err()
            {
                warn!("notify: the last changes to undelivered alerts were not written");
            }
        }
    }
}

/// Counters of the targets now configured, for `/metrics`: a reload can
/// add and remove targets.
pub type Stats = Arc<std::sync::RwLock<Vec<Arc<TargetStats>>>>;

/// Start one delivery task per entry and the policy task in front of them.
/// Alerts carry the fleet's counts by state, read from `fleet` when sent.
/// A reload (`Update::Reconfigured` with new entries) changes the targets
/// in place: see [`Targets::reload`].
/// With `history`, undelivered events (all kinds but Alertmanager) are kept in
/// its store and delivered after a restart.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    entries: &[NotifySettings],
    monitor_id: &str,
    group: Option<Group>,
    fleet: Shared,
    restore_hold: Duration,
    quiet: Quiet,
    history: Option<&HistorySettings>,
    shutdown: CancellationToken,
) -> Notifier {
    let (sink, rx) = Sink::new("notify", 4096, wanted);
    let mut tasks = JoinSet::new();
    let keeper = history.map(|settings| {
        let keys = entries.iter().map(target_key).collect();
        Keeper::spawn(settings.clone(), monitor_id, keys)
    });
    let mut targets = Targets {
        list: Vec::new(),
        client: http_client(),
        group: group.clone(),
        stats: Stats::default(),
        delivering: JoinSet::new(),
        restore_hold,
        keeper: keeper.as_ref().map(|(k, _)| k.clone()),
    };
    for entry in entries {
        let target = targets.start(entry, targets.list.len());
        targets.list.push(target);
    }
    targets.publish_stats();
    let stats = targets.stats.clone();
    let gate = group.map(|group| Gate::new(group, gate_targets(entries)));
    tasks.spawn(run_policies(
        rx,
        targets,
        gate,
        monitor_id.to_owned(),
        fleet,
        quiet,
        shutdown,
    ));
    Notifier {
        sink,
        stats,
        tasks,
        keeper,
    }
}

/// The targets as a group's gate knows them: by key, with their kind.
fn gate_targets(entries: &[NotifySettings]) -> Vec<(String, heartbeat_config::NotifyKind)> {
    entries.iter().map(|e| (target_key(e), e.kind)).collect()
}

/// A target's identity in the store: its kind and where it delivers (a
/// digest, so no URL token or secret is written there). Kept alerts go
/// back to the target with the same key after a restart.
pub fn target_key(entry: &NotifySettings) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(entry.kind.to_string());
    digest.update([0]);
    digest.update(&entry.url);
    for part in &entry.command {
        digest.update([0]);
        digest.update(part);
    }
    // An email target's recipients are part of where it delivers (none
    // for the other kinds, whose keys are as they were).
    for to in &entry.to {
        digest.update([1]);
        digest.update(to);
    }
    let hex: String = digest.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}-{hex}", entry.kind)
}

/// One `[[notify]]` target: its entry, its policy's state, its queue.
struct Target {
    entry: NotifySettings,
    policy: Policy,
    queue: mpsc::Sender<Event>,
    stats: Arc<TargetStats>,
    full_log: Limited,
    /// What a silence, a window or a drain holds back from this target.
    hold: Hold,
}

/// The targets and what starts new ones.
struct Targets {
    list: Vec<Target>,
    client: reqwest::Client,
    group: Option<Group>,
    stats: Stats,
    /// Delivery tasks, awaited when the policies stop.
    delivering: JoinSet<()>,
    /// How long a restored instance's alert is held (see `policy::Rules`).
    restore_hold: Duration,
    keeper: Option<Keeper>,
}

fn rules(entry: &NotifySettings, restore_hold: Duration) -> Rules {
    Rules {
        alerting: entry.transitions.iter().cloned().collect(),
        hold: entry.for_,
        reminder: entry.reminder,
        send_resolved: entry.send_resolved,
        restore_hold,
    }
}

/// Whether two entries deliver to the same place the same way (they may
/// differ in their rules: which states, `for`, reminders, resolved, and
/// which services they hear of).
fn same_delivery(a: &NotifySettings, b: &NotifySettings) -> bool {
    let rules_aside = |e: &NotifySettings| NotifySettings {
        transitions: Vec::new(),
        for_: Duration::ZERO,
        reminder: Duration::ZERO,
        send_resolved: false,
        services: Vec::new(),
        ..e.clone()
    };
    rules_aside(a) == rules_aside(b)
}

impl Targets {
    /// Start `entry`'s delivery task, as target number `index`.
    fn start(&mut self, entry: &NotifySettings, index: usize) -> Target {
        let stat = Arc::new(TargetStats::new(entry.kind, index));
        let (tx, events) = mpsc::channel(entry.queue);
        let log = Limited::new(format!("notify[{index}] {}", entry.kind));
        let keeper = self.keeper.clone().map(|k| (k, target_key(entry)));
        let delivering = |events, log| deliver::Delivering {
            events,
            entry: entry.clone(),
            stats: stat.clone(),
            log,
            keeper,
        };
        match entry.kind {
            NotifyKind::Webhook => {
                let hook = webhook::Webhook::new(self.client.clone(), entry);
                self.delivering
                    .spawn(deliver::run(delivering(events, log), move |n| {
                        let hook = hook.clone();
                        async move { hook.send(&n).await }
                    }));
            }
            NotifyKind::Command => {
                let runner = command::Runner::new(entry);
                self.delivering
                    .spawn(deliver::run(delivering(events, log), move |n| {
                        let runner = runner.clone();
                        async move { runner.run(&n).await }
                    }));
            }
            NotifyKind::Alertmanager => {
                let am =
                    alertmanager::Alertmanager::new(self.client.clone(), entry, self.group.clone());
                self.delivering.spawn(am.run(events, stat.clone(), log));
            }
            NotifyKind::Slack => {
                let slack = slack::Slack::new(self.client.clone(), entry);
                self.delivering
                    .spawn(deliver::run(delivering(events, log), move |n| {
                        let slack = slack.clone();
                        async move { slack.send(&n).await }
                    }));
            }
            NotifyKind::Email => {
                // What validation cannot see (an address lettre refuses) is
                // said now, and again for every event it fails, as counted.
                let mailer = email::Email::new(entry).map(Arc::new);
                if let Err(why) = &mailer {
                    warn!(
                        target_index = index,
                        "notify: email target cannot send: {why}"
                    );
                }
                self.delivering
                    .spawn(deliver::run(delivering(events, log), move |n| {
                        let mailer = mailer.clone();
                        async move { mailer?.send(&n).await }
                    }));
            }
        }
        info!(target_index = index, kind = %entry.kind, "notify: target ready");
        Target {
            entry: entry.clone(),
            policy: Policy::new(rules(entry, self.restore_hold)),
            queue: tx,
            stats: stat,
            full_log: Limited::new(format!("notify[{index}]")),
            hold: Hold::default(),
        }
    }

    /// The targets of a reloaded configuration. A target that delivers to
    /// the same place the same way as one running keeps that one's queue,
    /// counters and what its policy has pending or firing (with the new
    /// rules): a firing alert is not sent again, and its resolve comes. Any
    /// other target is new and hears changes from now on; a target no
    /// longer configured is dropped once its queue is delivered.
    fn reload(&mut self, entries: &[NotifySettings]) {
        let mut old: Vec<Option<Target>> = std::mem::take(&mut self.list)
            .into_iter()
            .map(Some)
            .collect();
        let (mut kept, mut started) = (0, 0);
        for (index, entry) in entries.iter().enumerate() {
            let running = old
                .iter_mut()
                .find(|t| t.as_ref().is_some_and(|t| same_delivery(&t.entry, entry)))
                .and_then(Option::take);
            let target = match running {
                Some(mut target) => {
                    target.policy.set_rules(rules(entry, self.restore_hold));
                    target.entry = entry.clone();
                    kept += 1;
                    target
                }
                None => {
                    started += 1;
                    self.start(entry, index)
                }
            };
            self.list.push(target);
        }
        let dropped = old.iter().flatten().count();
        info!(kept, started, dropped, "notify: targets reloaded");
        self.publish_stats();
    }

    fn publish_stats(&self) {
        let now: Vec<_> = self.list.iter().map(|t| t.stats.clone()).collect();
        *self.stats.write().unwrap_or_else(|e| e.into_inner()) = now;
    }
}

/// The client every HTTP target shares. reqwest is built without a TLS
/// crypto provider of its own (one provider for the whole process, see the
/// workspace's Cargo.toml), and would panic on building a client with none
/// installed: ring is installed here unless something already has been
/// (lapin's TLS installs the same one).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("heartbeat-monitor/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

async fn run_policies(
    mut updates: mpsc::Receiver<Update>,
    mut targets: Targets,
    mut gate: Option<Gate>,
    monitor: String,
    fleet: Shared,
    quiet: Quiet,
    shutdown: CancellationToken,
) {
    // What a silence or a maintenance window covers right now.
    let covered = |change: &policy::Change| {
        let now = chrono::Utc::now();
        quiet
            .silences
            .covering(&change.service, change.instance.as_deref(), now)
            .is_some()
            || quiet.maintenance().covering(&change.service, now).is_some()
            || quiet
                .parents_of(&change.service)
                .is_some_and(|parents| depends::parent_down(&parents, &fleet.read().tally()))
    };
    let mut tick = tokio::time::interval(TICK);
    loop {
        let mut due: Vec<(usize, PolicyEvent)> = Vec::new();
        // Already admitted: a takeover's events.
        let mut squared: Vec<(usize, PolicyEvent)> = Vec::new();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            update = updates.recv() => {
                let Some(update) = update else { break };
                let change = match update {
                    Update::Transition(report) => Some(Change::of_instance(&report)),
                    Update::Service(report) => Some(Change::of_service(&report)),
                    Update::Forgotten(keys) => {
                        let at = chrono::Utc::now();
                        for key in keys.iter() {
                            if let Some(gate) = &mut gate {
                                gate.forget(&key.service, &key.instance);
                            }
                            for (i, target) in targets.list.iter_mut().enumerate() {
                                due.extend(target.policy.forget(&key.service, &key.instance, at).map(|e| (i, e)));
                            }
                        }
                        None
                    }
                    Update::Reconfigured(reconfigured) => {
                        if let Some(entries) = reconfigured.notify.as_deref() {
                            targets.reload(entries);
                            // In a group, the ledger knows targets by where
                            // they deliver: the gate follows the new list.
                            if let Some(gate) = &mut gate {
                                gate.retarget(gate_targets(entries));
                            }
                        }
                        None
                    }
                    _ => continue,
                };
                let now = Instant::now().into_std();
                if let (Some(gate), Some(change)) = (&mut gate, &change) {
                    gate.observe(change);
                }
                for (i, target) in targets.list.iter_mut().enumerate() {
                    if let Some(change) = &change {
                        due.extend(target.policy.transition(change, now).into_iter().map(|e| (i, e)));
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now().into_std();
                for (i, target) in targets.list.iter_mut().enumerate() {
                    due.extend(target.policy.tick(now).into_iter().map(|e| (i, e)));
                    // Held alerts whose silence or window has ended, still firing.
                    due.extend(target.hold.release(&covered).into_iter().map(|e| (i, e)));
                }
                if let Some(gate) = &mut gate {
                    squared = gate.check();
                }
            }
        }
        if let Some(gate) = &mut gate {
            due.retain(|(i, event)| gate.admit(*i, event));
        }
        due.extend(squared);
        if due.is_empty() {
            continue;
        }
        // The fleet as the model has it, this update included: it is
        // applied before any sink is handed it.
        let counts: BTreeMap<String, usize> = fleet.read().counts_by_code();
        // Who is down with whom, for the dependents a parent's alert names.
        let depends_on = quiet.depends_on();
        let tally = (!depends_on.is_empty()).then(|| fleet.read().tally());
        for (i, policy_event) in due {
            let Some(target) = targets.list.get_mut(i) else {
                continue;
            };
            if !heartbeat_config::any_matches(&target.entry.services, &policy_event.change.service)
            {
                continue;
            }
            let Some(policy_event) = target.hold.pass(policy_event, &covered) else {
                continue;
            };
            let mut event = Event::new(&policy_event, &monitor, counts.clone());
            if let Some(tally) = &tally
                && !matches!(
                    policy_event.kind,
                    EventKind::Resolved | EventKind::Forgotten
                )
            {
                let mut held =
                    depends::dependents_down(&depends_on, tally, &policy_event.change.service);
                held.retain(|name| heartbeat_config::any_matches(&target.entry.services, name));
                event = event.with_dependents(held);
            }
            if target.queue.try_send(event).is_err() {
                target.stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn_limited!(
                    target.full_log,
                    "queue full or closed; an alert for {} was dropped",
                    policy_event.change.subject()
                );
            }
        }
    }
    // Closing the queues lets each delivery task send what it holds and end.
    targets.list.clear();
    while targets.delivering.join_next().await.is_some() {}
}

/// One attempt, then up to `retries` more with capped exponential backoff;
/// each attempt is cut off at `timeout`.
async fn with_retries<F, Fut>(retries: u32, timeout: Duration, mut attempt: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut tries = 0;
    loop {
        let outcome = match tokio::time::timeout(timeout, attempt()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "timed out after {}",
                humantime::format_duration(timeout)
            )),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(error) if tries >= retries => return Err(error),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// reqwest brings no TLS provider of its own: building the client must
    /// not panic, and an https target fails like any unreachable one.
    #[tokio::test]
    async fn an_https_target_needs_no_provider_of_reqwests_own() {
        let client = http_client();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let sent = client
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await;
        assert!(sent.unwrap_err().is_connect());
    }
}
