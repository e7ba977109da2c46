//! The delivery task of a webhook, command, Slack or email target. Events wait in the target's
//! [`Outbox`] (and, with a history store, in the store: see `keeper`);
//! once the oldest has waited `group_wait`, everything waiting goes out as
//! one notification (up to [`MAX_GROUP`] events). A notification that
//! fails after its quick retries stays waiting and is tried again with
//! backoff, until delivered, replaced by a later event about the same
//! alert, or older than `retry_for`. The queue from the policies is read
//! all the while, also while a delivery is under way, so a storm or a dead
//! receiver never fills it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use heartbeat_config::NotifySettings;
use orchestrator_lib::plumbing::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::keeper::Keeper;
use super::notification::Notification;
use super::outbox::{Offered, Outbox};
use super::policy::EventKind;
use super::{Event, TargetStats, with_retries};
use crate::limited::{Limited, warn_limited};

/// At most this many events in one notification: a larger storm is a few.
pub const MAX_GROUP: usize = 1000;
/// How often due notifications and expired events are looked for.
const TICK: Duration = Duration::from_millis(100);
/// Between failed rounds (each of `1 + retries` attempts), this backoff.
const ROUND_MIN: Duration = Duration::from_secs(1);
const ROUND_MAX: Duration = Duration::from_secs(10);

/// What a delivery task is given.
pub struct Delivering {
    pub events: mpsc::Receiver<Event>,
    pub entry: NotifySettings,
    pub stats: Arc<TargetStats>,
    pub log: Limited,
    /// With a history store: where undelivered events are kept, and this
    /// target's key there.
    pub keeper: Option<(Keeper, String)>,
}

type Round = Pin<Box<dyn Future<Output = (Vec<u64>, Result<(), String>)> + Send>>;

/// The events waiting and their rows in the store.
struct Waiting {
    outbox: Outbox,
    /// Outbox id to store id.
    stored: HashMap<u64, String>,
    keeper: Option<(Keeper, String)>,
    seq: u64,
    log: Limited,
    /// A full queue is said apart from failed deliveries.
    full_log: Limited,
}

impl Waiting {
    /// `row`: its id in the store, when it was read back from there.
    fn offer(&mut self, event: Event, created_ms: i64, row: Option<String>, stats: &TargetStats) {
        let body = self
            .keeper
            .is_some()
            .then(|| String::from_utf8_lossy(&event.body()).into_owned());
        // Kept over a restart: it was not delivered, so it counts as tried.
        let tried = row.is_some();
        let subject = format!(
            "{}{}",
            event.service,
            event
                .instance
                .as_deref()
                .map(|i| format!("/{i}"))
                .unwrap_or_default()
        );
        let offered = self
            .outbox
            .offer(event, Instant::now().into_std(), created_ms, tried);
        let (id, replaced) = match offered {
            Offered::Kept(id) => (id, None),
            Offered::Replaced { id, replaced } => (id, Some(replaced)),
            Offered::NotNeeded => {
                stats.replaced.fetch_add(1, Ordering::Relaxed);
                self.forget_row(row);
                return;
            }
            Offered::Full => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn_limited!(
                    self.full_log,
                    "queue full; an alert for {subject} was dropped"
                );
                self.forget_row(row);
                return;
            }
        };
        if let Some(replaced) = replaced {
            stats.replaced.fetch_add(1, Ordering::Relaxed);
            self.forget(replaced);
        }
        if let Some((keeper, target)) = &self.keeper {
            let row = match row {
                Some(row) => row,
                None => {
                    self.seq += 1;
                    let row = keeper.id(self.seq);
                    keeper.save(target, row.clone(), created_ms, body.unwrap_or_default());
                    row
                }
            };
            self.stored.insert(id, row);
        }
    }

    /// Event `id` waits no more: nor does its row.
    fn forget(&mut self, id: u64) {
        let row = self.stored.remove(&id);
        self.forget_row(row);
    }

    fn forget_row(&mut self, row: Option<String>) {
        if let (Some((keeper, _)), Some(row)) = (&self.keeper, row) {
            keeper.delete(row);
        }
    }

    fn publish(&self, stats: &TargetStats) {
        stats
            .pending
            .store(self.outbox.len() as u64, Ordering::Relaxed);
        stats.oldest_pending_ms.store(
            self.outbox.oldest_created_ms().unwrap_or(0),
            Ordering::Relaxed,
        );
    }
}

pub async fn run<F, Fut>(delivering: Delivering, attempt: F)
where
    F: Fn(Notification) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let Delivering {
        mut events,
        entry,
        stats,
        log,
        keeper,
    } = delivering;
    let attempt = Arc::new(attempt);
    let mut waiting = Waiting {
        outbox: Outbox::new(entry.queue),
        stored: HashMap::new(),
        keeper,
        seq: 0,
        full_log: Limited::new(log.what().to_owned()),
        log,
    };
    // What the store kept from before a restart comes first, so that a
    // later event about the same alert replaces it, never the other way.
    if let Some((keeper, target)) = waiting.keeper.clone() {
        for row in keeper.restored(&target).await {
            match Event::from_body(&row.body) {
                Some(event) => waiting.offer(event, row.created_at_ms, Some(row.id), &stats),
                None => keeper.delete(row.id),
            }
        }
        waiting.publish(&stats);
    }
    let mut in_flight: Option<Round> = None;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Backoff::new(ROUND_MIN, ROUND_MAX);
    let mut open = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = Instant::now();
    loop {
        tokio::select! {
            event = events.recv(), if open => match event {
                // Told before the monitor restarted: not news to these targets.
                Some(event) if event.event == EventKind::Restored.code() => {}
                Some(event) => {
                    let created = event_ms();
                    waiting.offer(event, created, None, &stats);
                    waiting.publish(&stats);
                }
                None => open = false,
            },
            done = async {
                match in_flight.as_mut() {
                    Some(round) => round.await,
                    None => std::future::pending().await,
                }
            } => {
                in_flight = None;
                let (ids, outcome) = done;
                match outcome {
                    Ok(()) => {
                        stats.sent.fetch_add(ids.len() as u64, Ordering::Relaxed);
                        // Those replaced while under way are gone already.
                        waiting.outbox.delivered(&ids);
                        for id in ids {
                            waiting.forget(id);
                        }
                        backoff.reset();
                        retry_at = None;
                    }
                    Err(error) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        waiting.outbox.failed(&ids);
                        let pause = backoff.next_delay();
                        retry_at = Some(Instant::now() + pause);
                        warn_limited!(
                            waiting.log,
                            "{} alert(s) not delivered after {} attempts, tried again in {}: {error}",
                            ids.len(),
                            entry.retries + 1,
                            humantime::format_duration(Duration::from_millis(pause.as_millis() as u64))
                        );
                        if !open {
                            // Stopping: what waits stays in the store for the next start.
                            break;
                        }
                    }
                }
                waiting.publish(&stats);
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if in_flight.is_none() && now.duration_since(last_expiry) >= Duration::from_secs(1) {
            last_expiry = now;
            let retry_for = i64::try_from(entry.retry_for.as_millis()).unwrap_or(i64::MAX);
            let expired = waiting.outbox.expire(event_ms().saturating_sub(retry_for));
            if !expired.is_empty() {
                stats
                    .expired
                    .fetch_add(expired.len() as u64, Ordering::Relaxed);
                warn_limited!(
                    waiting.log,
                    "{} alert(s) given up after {} undelivered (retry_for)",
                    expired.len(),
                    humantime::format_duration(entry.retry_for)
                );
                for gone in expired {
                    waiting.forget(gone.id);
                }
                waiting.publish(&stats);
            }
        }
        if in_flight.is_some() {
            continue;
        }
        if waiting.outbox.is_empty() {
            if !open {
                break;
            }
            continue;
        }
        // Stopping: what waits goes at once, one round.
        let due = !open
            || (waiting
                .outbox
                .due_at(entry.group_wait)
                .is_some_and(|at| now.into_std() >= at)
                && retry_at.is_none_or(|at| now >= at));
        if !due {
            continue;
        }
        let batch = waiting.outbox.next_batch(MAX_GROUP);
        let ids: Vec<u64> = batch.iter().map(|w| w.id).collect();
        let notification = Notification::of(batch.into_iter().map(|w| w.event).collect());
        let attempt = attempt.clone();
        let (retries, timeout) = (entry.retries, entry.timeout);
        in_flight = Some(Box::pin(async move {
            let outcome = with_retries(retries, timeout, || attempt(notification.clone())).await;
            (ids, outcome)
        }));
    }
}

/// Now, in ms since the epoch: an event's age is counted in wall-clock
/// time, since it is kept across restarts.
fn event_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
