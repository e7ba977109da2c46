//! Undelivered alerts kept in the history store, so that a monitor that
//! restarts while a receiver is away still tells it (the `notify_pending`
//! table, schema v5). Never in the way of delivery: targets record what
//! changed (an event waiting, one delivered, replaced or given up) and
//! this task writes it to the store when it can; a store that fails costs
//! the restart's memory of those alerts, never the alerts themselves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heartbeat_config::HistorySettings;
use orchestrator_lib::plumbing::Backoff;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::history::{self, StoredPending};
use crate::limited::{Limited, warn_limited};

/// Ids of rows delivered while the store was failing, kept to be deleted
/// once it works again; beyond this many the oldest are forgotten (and
/// those alerts may be told twice after a restart).
const MAX_DELETES: usize = 100_000;

#[derive(Default)]
struct Changes {
    saves: BTreeMap<String, StoredPending>,
    deletes: HashSet<String>,
}

struct Inner {
    changes: Mutex<Changes>,
    wake: Notify,
    /// Each target's rows read back at start, taken once by its delivery task.
    restored: Mutex<HashMap<String, Vec<StoredPending>>>,
    loaded: watch::Receiver<bool>,
    monitor: String,
    /// Makes this run's ids unique in the store.
    run: String,
    closing: CancellationToken,
}

/// The handle targets record their changes through.
#[derive(Clone)]
pub struct Keeper {
    inner: Arc<Inner>,
}

impl Keeper {
    /// Read this monitor's kept alerts back (those of a target no longer
    /// configured are deleted, and said so), then keep writing changes.
    pub fn spawn(
        settings: HistorySettings,
        monitor: &str,
        targets: Vec<String>,
    ) -> (Keeper, JoinHandle<()>) {
        let (loaded_tx, loaded) = watch::channel(false);
        let now = chrono::Utc::now();
        let inner = Arc::new(Inner {
            changes: Mutex::default(),
            wake: Notify::new(),
            restored: Mutex::default(),
            loaded,
            monitor: monitor.to_owned(),
            run: format!("{:x}-{:x}", now.timestamp_millis(), std::process::id()),
            closing: CancellationToken::new(),
        });
        let keeper = Keeper {
            inner: inner.clone(),
        };
        let task = tokio::spawn(run(settings, keeper.clone(), targets, loaded_tx));
        (keeper, task)
    }

    /// The store's id for this run's event number `seq`.
    pub fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.inner.run)
    }

    pub fn save(&self, target: &str, id: String, created_at_ms: i64, body: String) {
        let row = StoredPending {
            id: id.clone(),
            monitor: self.inner.monitor.clone(),
            target: target.to_owned(),
            created_at_ms,
            body,
        };
        self.lock().saves.insert(id, row);
        self.inner.wake.notify_one();
    }

    pub fn delete(&self, id: String) {
        {
            let mut changes = self.lock();
            // Never written: nothing to delete.
            if changes.saves.remove(&id).is_none() {
                if changes.deletes.len() >= MAX_DELETES {
                    return;
                }
                changes.deletes.insert(id);
            }
        }
        self.inner.wake.notify_one();
    }

    /// `target`'s kept alerts, oldest first, once they are read (or the
    /// store said it could not).
    pub async fn restored(&self, target: &str) -> Vec<StoredPending> {
        let mut loaded = self.inner.loaded.clone();
        let _ = loaded.wait_for(|done| *done).await;
        self.inner
            .restored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(target)
            .unwrap_or_default()
    }

    /// The targets are done: write what is left, then end.
    pub fn close(&self) {
        self.inner.closing.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Changes> {
        self.inner.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Put back changes a failed write took.
    fn put_back(&self, taken: Changes) {
        let mut changes = self.lock();
        for (id, row) in taken.saves {
            // Delivered meanwhile: neither write is needed.
            if !changes.deletes.remove(&id) {
                changes.saves.entry(id).or_insert(row);
            }
        }
        for id in taken.deletes {
            if changes.deletes.len() < MAX_DELETES {
                changes.deletes.insert(id);
            }
        }
    }
}

async fn run(
    settings: HistorySettings,
    keeper: Keeper,
    targets: Vec<String>,
    loaded: watch::Sender<bool>,
) {
    let monitor = keeper.inner.monitor.clone();
    match history::query(&settings, move |s| s.pending(&monitor)).await {
        Ok(rows) => {
            let mut by_target: HashMap<String, Vec<StoredPending>> = HashMap::new();
            let mut orphans = 0;
            for row in rows {
                if targets.contains(&row.target) {
                    by_target.entry(row.target.clone()).or_default().push(row);
                } else {
                    orphans += 1;
                    keeper.lock().deletes.insert(row.id);
                }
            }
            let kept: usize = by_target.values().map(Vec::len).sum();
            if kept > 0 {
                info!(
                    alerts = kept,
                    "notify: alerts not delivered before the restart will be"
                );
            }
            if orphans > 0 {
                warn!(
                    alerts = orphans,
                    "notify: alerts kept for a target no longer configured are dropped"
                );
            }
            *keeper
                .inner
                .restored
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = by_target;
        }
        Err(error) => {
            warn!("notify: cannot read undelivered alerts back: {error}");
        }
    }
    let _ = loaded.send(true);
    let mut log = Limited::new("notify: keeping undelivered alerts".into());
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let closing = keeper.inner.closing.is_cancelled();
        if !closing {
            tokio::select! {
                _ = keeper.inner.wake.notified() => {}
                _ = keeper.inner.closing.cancelled() => {}
            }
        }
        let taken = std::mem::take(&mut *keeper.lock());
        if taken.saves.is_empty() && taken.deletes.is_empty() {
            if closing {
                return;
            }
            continue;
        }
        let saves: Vec<StoredPending> = taken.saves.values().cloned().collect();
        let deletes: Vec<String> = taken.deletes.iter().cloned().collect();
        let written = history::query(&settings, move |s| {
            if !saves.is_empty() {
                s.save_pending(&saves)?;
            }
            if !deletes.is_empty() {
                s.delete_pending(&deletes)?;
            }
            Ok(())
        })
        .await;
        match written {
            Ok(()) => backoff.reset(),
            Err(error) => {
                warn_limited!(log, "{error}; tried again");
                keeper.put_back(taken);
                if closing {
                    return;
                }
                let pause = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = keeper.inner.closing.cancelled() => {}
                }
                // Wake again for what was put back.
                keeper.inner.wake.notify_one();
            }
        }
    }
}
