//! History: a sink of the engine's updates that keeps every transition and
//! per-minute figures per instance in a store, so what happened survives a
//! restart of the monitor.
//!
//! Layout:
//! - [`Store`]: the one small trait both stores implement.
//! - `sqlite`: the embedded default (`[history] path`).
//! - `postgres`: a shared server (`[history] url`).
//! - `schema`: versioned migrations, shared by both.
//! - `aggregate`: per-minute figures. Pure.
//!
//! Writes leave the detection path twice over: the engine's updates reach
//! this sink through a bounded queue (full: dropped, counted), and batches
//! are written on a blocking thread. An unreachable store, a full disk, a
//! database file deleted or corrupted underneath keep the records in a
//! bounded backlog, are counted and shown (`Health`), and are tried again
//! with backoff; monitoring never waits for it. Every call to a store has a
//! deadline (`[history] timeout`): one that never answers is reported down
//! within it, and a stop waits for it at most [`LAST_WRITE`].

pub(crate) mod aggregate;
mod postgres;
mod schema;
mod sqlite;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use heartbeat_config::HistorySettings;
use orchestrator_lib::plumbing::Backoff;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::detector::{InstanceKey, LastKnown, Reason, State, UNSEEN_INSTANCE};
use crate::detector::{StoredUptimes, UptimeFigure};
use crate::sink::Sink;
use crate::update::{Report, ServiceReport, Update};
use aggregate::Aggregator;

/// Batches are written this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Records kept while the store is unreachable; older ones are dropped first.
const MAX_BACKLOG: usize = 100_000;
/// Records per write.
const BATCH: usize = 2_000;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// With nothing to write, the store is still looked at this often (the
/// SQLite file still there, the server still answering).
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// On shutdown, the last batch gets this long.
pub const LAST_WRITE: Duration = Duration::from_secs(3);
/// While the store keeps failing, its failure is logged again this often.
const RELOG_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("history store: {0}")]
    Store(String),
    #[error("history is off (set [history] path or url)")]
    Off,
}

/// One transition as stored, and as `GET /api/v1/history` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredTransition {
    pub at_ms: i64,
    pub service: String,
    pub instance: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub rtt_ms: Option<f64>,
    pub silent_ms: Option<i64>,
}

/// A service's change of strength as stored, and as `GET /api/v1/history`
/// returns it (`at_ms` there becomes `at`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredServiceChange {
    pub at_ms: i64,
    pub service: String,
    /// `full` or `degraded`.
    pub from: String,
    pub to: String,
    pub up: i64,
    pub expected: i64,
}

/// A silence as stored: `monitor silence add`, kept across restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSilence {
    pub id: String,
    /// A service name or glob pattern.
    pub service: String,
    /// One instance, or the whole service.
    pub instance: Option<String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub reason: String,
    pub created_at_ms: i64,
}

/// An alert a `[[notify]]` target has not been told yet, kept so that a
/// restart does not lose it (see `notify::outbox`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPending {
    pub id: String,
    /// The monitor's id: monitors sharing a store deliver only their own.
    pub monitor: String,
    /// The target's delivery identity (`notify::target_key`).
    pub target: String,
    pub created_at_ms: i64,
    /// The event as its JSON payload.
    pub body: String,
}

/// One instance's figures for one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    /// The minute's start, ms since the epoch.
    pub minute_ms: i64,
    pub service: String,
    pub instance: String,
    pub echoes: i64,
    pub misses: i64,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
    /// Time up, out of the time judged (`observed_ms`), within the minute:
    /// see [`crate::detector::Availability`].
    pub up_ms: i64,
    pub observed_ms: i64,
}

/// Time up out of the time judged, summed over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Uptime {
    pub service: String,
    pub instance: String,
    pub up_ms: i64,
    pub observed_ms: i64,
}

impl Uptime {
    pub fn ratio(&self) -> Option<f64> {
        (self.observed_ms > 0).then(|| self.up_ms as f64 / self.observed_ms as f64)
    }
}

/// Who wrote a batch: the fleet it is about (the broker and vhost, never
/// credentials) and the monitor's id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrittenBy {
    pub fleet: String,
    pub monitor: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Stamped on each transition.
    pub by: WrittenBy,
    pub transitions: Vec<StoredTransition>,
    pub services: Vec<StoredServiceChange>,
    pub minutes: Vec<Minute>,
}

impl Batch {
    fn len(&self) -> usize {
        self.transitions.len() + self.services.len() + self.minutes.len()
    }
}

/// Whose transitions to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who<'a> {
    Everyone,
    Service(&'a str),
    Instance(&'a str, &'a str),
}

/// Where history is kept. Implementations block; callers run them off the
/// async threads.
pub trait Store: Send {
    /// Is the store still what we write to (the file still there, the
    /// server still answering)?
    fn check(&mut self) -> Result<(), HistoryError> {
        Ok(())
    }
    fn write(&mut self, batch: &Batch) -> Result<(), HistoryError>;
    /// Newest first; everyone's, one service's, or one instance's, in
    /// `fleet` (with the records from before they said whose).
    fn transitions(
        &mut self,
        fleet: &str,
        who: Who<'_>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredTransition>, HistoryError>;
    /// One service's changes of strength, newest first.
    fn service_changes(
        &mut self,
        fleet: &str,
        service: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredServiceChange>, HistoryError>;
    /// Each instance's latest transition in `fleet` (in no particular
    /// order; ties at one millisecond may give an instance twice).
    fn last_transitions(&mut self, fleet: &str) -> Result<Vec<StoredTransition>, HistoryError>;
    /// Per instance in `fleet`, over the minutes that started at or after
    /// `since_ms` (each minute counted once, whoever wrote it).
    fn uptime(&mut self, fleet: &str, since_ms: i64) -> Result<Vec<Uptime>, HistoryError>;
    /// Delete what is older than `before_ms`; how many rows went.
    fn prune(&mut self, before_ms: i64) -> Result<u64, HistoryError>;
    /// Keep a silence, or update its end and reason (an early expiry).
    fn save_silence(&mut self, silence: &StoredSilence) -> Result<(), HistoryError>;
    /// Silences that end after `after_ms`, soonest end first.
    fn silences(&mut self, after_ms: i64) -> Result<Vec<StoredSilence>, HistoryError>;
    /// Keep alerts not yet delivered (an id kept already stays as it is).
    fn save_pending(&mut self, alerts: &[StoredPending]) -> Result<(), HistoryError>;
    /// Forget alerts delivered, replaced or given up.
    fn delete_pending(&mut self, ids: &[String]) -> Result<(), HistoryError>;
    /// One monitor's alerts not yet delivered, oldest first.
    fn pending(&mut self, monitor: &str) -> Result<Vec<StoredPending>, HistoryError>;
}

/// Open (and migrate) the configured store. Blocks, at most about
/// `settings.timeout` per step.
pub fn open(settings: &HistorySettings) -> Result<Box<dyn Store>, HistoryError> {
    if !settings.url.trim().is_empty() {
        Ok(Box::new(postgres::Postgres::connect(
            settings.url.trim(),
            settings.timeout,
        )?))
    } else if let Some(path) = sqlite_path(settings) {
        Ok(Box::new(sqlite::Sqlite::open(&path, settings.timeout)?))
    } else {
        Err(HistoryError::Off)
    }
}

/// The SQLite file: `path` as given when absolute, else in the monitor's
/// state directory (the working directory when there is none).
pub fn sqlite_path(settings: &HistorySettings) -> Option<PathBuf> {
    let path = PathBuf::from(settings.path.trim());
    if path.as_os_str().is_empty() {
        return None;
    }
    if path.is_absolute() {
        return Some(path);
    }
    Some(match crate::statedir::state_dir() {
        Some(dir) => dir.join(path),
        None => path,
    })
}

/// Which store is in use, for the startup line: the SQLite file, or the
/// PostgreSQL server and database (never the password).
pub fn describe(settings: &HistorySettings) -> String {
    let url = settings.url.trim();
    if !url.is_empty() {
        return match url.parse::<tokio_postgres::Config>() {
            Ok(config) => {
                let hosts: Vec<String> = config
                    .get_hosts()
                    .iter()
                    .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
                    .map(|(host, port)| match host {
                        tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                        tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
                    })
                    .collect();
                format!(
                    "postgres://{}{}/{}",
                    config
                        .get_user()
                        .map(|u| format!("{u}@"))
                        .unwrap_or_default(),
                    hosts.join(","),
                    config.get_dbname().unwrap_or("")
                )
            }
            Err(_) => "postgres (history.url does not parse)".into(),
        };
    }
    match sqlite_path(settings) {
        // A path is the user's text: a URL pasted there keeps no password.
        Some(path) => {
            orchestrator_lib::plumbing::redact_credentials_in(&path.display().to_string())
        }
        None => "off".into(),
    }
}

/// Run `f` against a fresh connection to the store, off the async threads,
/// within `settings.timeout` (opening and reading) or an error says so.
/// For readers: the HTTP API, the dashboard's restore.
pub async fn query<T: Send + 'static>(
    settings: &HistorySettings,
    f: impl FnOnce(&mut dyn Store) -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, HistoryError> {
    let deadline = settings.timeout;
    let settings = settings.clone();
    // The store bounds each of its own calls; this bounds them all together,
    // and a reader left behind ends on its own deadlines.
    let read = tokio::task::spawn_blocking(move || {
        let mut store = open(&settings)?;
        f(store.as_mut())
    });
    match tokio::time::timeout(deadline, read).await {
        Ok(outcome) => {
            outcome.map_err(|e| HistoryError::Store(format!("the reader panicked: {e}")))?
        }
        Err(_) => Err(HistoryError::Store(format!(
            "the store did not answer within {} (history.timeout)",
            humantime::format_duration(deadline)
        ))),
    }
}

/// Transitions the dashboard restores into its event log and detail view.
const PAST_TRANSITIONS: usize = 500;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// The uptime windows the dashboard shows: 24 h, 7 d, 30 d.
pub const UPTIME_WINDOWS_DAYS: [i64; 3] = [1, 7, 30];

/// `24h`, `7d`, `30d`: a window's name wherever one is shown.
pub fn window_name(days: i64) -> String {
    if days == 1 {
        "24h".into()
    } else {
        format!("{days}d")
    }
}

impl Uptime {
    /// Over a window of `days`: the ratio, and how much of the window was judged.
    pub fn figure(&self, days: i64) -> UptimeFigure {
        UptimeFigure {
            ratio: self.ratio(),
            coverage: (self.observed_ms as f64 / (days * DAY_MS) as f64).clamp(0.0, 1.0),
        }
    }
}

/// What the views show from the store after a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Past {
    /// From before `before_ms`, newest first, every service.
    pub transitions: Vec<StoredTransition>,
    /// Per instance; the fleet model keeps them for every view.
    pub uptime: HashMap<InstanceKey, StoredUptimes>,
}

impl Past {
    pub fn of(&self, key: &InstanceKey) -> impl Iterator<Item = &StoredTransition> {
        self.transitions
            .iter()
            .filter(move |t| t.service == key.service && t.instance == key.instance)
    }
}

/// Read what the dashboard restores: transitions from before `before_ms`
/// (this run's own are live already) and uptimes. Blocks.
pub fn load_past(
    store: &mut dyn Store,
    fleet: &str,
    before_ms: i64,
    now_ms: i64,
) -> Result<Past, HistoryError> {
    let mut transitions = store.transitions(fleet, Who::Everyone, 0, PAST_TRANSITIONS * 2)?;
    transitions.retain(|t| t.at_ms < before_ms);
    transitions.truncate(PAST_TRANSITIONS);
    let mut uptime: HashMap<InstanceKey, StoredUptimes> = HashMap::new();
    for (i, days) in UPTIME_WINDOWS_DAYS.iter().enumerate() {
        for u in store.uptime(fleet, now_ms - days * DAY_MS)? {
            uptime
                .entry(InstanceKey::new(u.service.clone(), u.instance.clone()))
                .or_default()[i] = Some(u.figure(*days));
        }
    }
    Ok(Past {
        transitions,
        uptime,
    })
}

/// The instances of `fleet` to take back after a restart, as the store last
/// recorded them: all but those that said goodbye and those DOWN for `forget_after`
/// or longer (the monitor would have forgotten them). An instance restored
/// before and not heard since keeps the state it was restored from. Blocks.
pub fn last_known(
    store: &mut dyn Store,
    fleet: &str,
    now_ms: i64,
    forget_after: Duration,
) -> Result<Vec<LastKnown>, HistoryError> {
    let mut latest: HashMap<InstanceKey, StoredTransition> = HashMap::new();
    for t in store.last_transitions(fleet)? {
        let key = InstanceKey::new(t.service.clone(), t.instance.clone());
        if latest.get(&key).is_none_or(|known| known.at_ms < t.at_ms) {
            latest.insert(key, t);
        }
    }
    let mut known: Vec<LastKnown> = latest
        .into_iter()
        .filter_map(|(key, t)| {
            let code = if t.reason == Reason::Restored.code() {
                &t.from
            } else {
                &t.to
            };
            let state = State::from_code(code)?;
            let age = Duration::from_millis(u64::try_from(now_ms - t.at_ms).unwrap_or(0));
            let forgotten = matches!(state, State::Down | State::NeverSeen) && age >= forget_after;
            let gone = state == State::Left || t.to == State::Left.code();
            (!forgotten && !gone && key.instance != UNSEEN_INSTANCE).then_some(LastKnown {
                key,
                state,
                age,
            })
        })
        .collect();
    known.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(known)
}

/// Most transitions `GET /api/v1/history` returns at once.
pub const API_MAX_LIMIT: usize = 1000;

/// One transition as `GET /api/v1/history` returns it: the JSON lines' fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiTransition {
    pub at: String,
    pub service: String,
    pub instance: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_ms: Option<i64>,
}

impl From<StoredTransition> for ApiTransition {
    fn from(t: StoredTransition) -> Self {
        let at = chrono::DateTime::from_timestamp_millis(t.at_ms).unwrap_or_default();
        Self {
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            service: t.service,
            instance: t.instance,
            from: t.from,
            to: t.to,
            reason: t.reason,
            rtt_ms: t.rtt_ms,
            silent_ms: t.silent_ms,
        }
    }
}

/// A change of strength as `GET /api/v1/history` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiServiceChange {
    pub at: String,
    pub from: String,
    pub to: String,
    pub up: i64,
    pub expected: i64,
}

impl From<StoredServiceChange> for ApiServiceChange {
    fn from(c: StoredServiceChange) -> Self {
        let at = chrono::DateTime::from_timestamp_millis(c.at_ms).unwrap_or_default();
        Self {
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            from: c.from,
            to: c.to,
            up: c.up,
            expected: c.expected,
        }
    }
}

/// A service's stored transitions, newest first, optionally one instance's,
/// at most `limit` (capped at [`API_MAX_LIMIT`]); and, for the whole
/// service, its changes of strength (as many at most).
/// One instance's stored uptime over one window, as `GET /api/v1/history`
/// returns it: time up out of the time judged (`ratio`, `null` when none was
/// judged), and `coverage`, the time judged out of the whole window (what
/// LEFT, STALE and the monitor not running leave out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiUptime {
    pub instance: String,
    /// `24h`, `7d` or `30d`.
    pub window: String,
    pub ratio: Option<f64>,
    pub coverage: f64,
    pub up_ms: i64,
    pub judged_ms: i64,
}

impl ApiUptime {
    fn of(u: &Uptime, days: i64) -> Self {
        let figure = u.figure(days);
        Self {
            instance: u.instance.clone(),
            window: window_name(days),
            ratio: figure.ratio,
            coverage: figure.coverage,
            up_ms: u.up_ms,
            judged_ms: u.observed_ms,
        }
    }
}

/// What `GET /api/v1/history` returns for a service (or one instance).
pub struct ServiceHistory {
    pub transitions: Vec<ApiTransition>,
    pub changes: Vec<ApiServiceChange>,
    /// Per instance and window of [`UPTIME_WINDOWS_DAYS`].
    pub uptime: Vec<ApiUptime>,
}

pub async fn service_history(
    settings: &HistorySettings,
    fleet: String,
    service: String,
    instance: Option<String>,
    limit: usize,
) -> Result<ServiceHistory, HistoryError> {
    let limit = limit.clamp(1, API_MAX_LIMIT);
    let now_ms = Utc::now().timestamp_millis();
    query(settings, move |store| {
        let who = match &instance {
            Some(instance) => Who::Instance(&service, instance),
            None => Who::Service(&service),
        };
        let rows = store.transitions(&fleet, who, 0, limit)?;
        let changes = match instance {
            Some(_) => Vec::new(),
            None => store.service_changes(&fleet, &service, 0, limit)?,
        };
        let mut uptime = Vec::new();
        for days in UPTIME_WINDOWS_DAYS {
            for u in store.uptime(&fleet, now_ms - days * DAY_MS)? {
                let ours =
                    u.service == service && instance.as_ref().is_none_or(|i| *i == u.instance);
                if ours {
                    uptime.push(ApiUptime::of(&u, days));
                }
            }
        }
        uptime.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(ServiceHistory {
            transitions: rows.into_iter().map(ApiTransition::from).collect(),
            changes: changes.into_iter().map(ApiServiceChange::from).collect(),
            uptime,
        })
    })
    .await
}

/// What `/metrics`, `/healthz`, the dashboard and the logs say about the store.
#[derive(Debug, Default)]
pub struct Health {
    /// Records (transitions and minutes) written.
    pub written: AtomicU64,
    /// Writes (and checks) that failed; the records are tried again.
    pub failures: AtomicU64,
    /// Records dropped: sink queue full, or backlog over its bound.
    pub dropped: AtomicU64,
    /// Records waiting to be written (at most [`MAX_BACKLOG`]).
    pub waiting: AtomicU64,
    /// False from a failed write, a failed check (the file gone, the server
    /// silent) or a call past its deadline, until a write succeeds.
    pub reachable: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl Health {
    /// `None` while the store takes writes; otherwise what is wrong, in one
    /// line, for `/healthz`.
    pub fn problem(&self) -> Option<String> {
        if self.reachable.load(Ordering::Relaxed) {
            return None;
        }
        let error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "history store failing".into());
        Some(format!(
            "{error}; {} records waiting",
            self.waiting.load(Ordering::Relaxed)
        ))
    }

    fn failed(&self, error: &HistoryError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.reachable.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    fn succeeded(&self, records: usize) {
        self.written.fetch_add(records as u64, Ordering::Relaxed);
        self.reachable.store(true, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

pub struct History {
    /// Where the engine's updates reach the history.
    pub sink: Sink,
    pub health: Arc<Health>,
    /// What `GET /api/v1/history` reads: this writer's store and fleet.
    pub reading: Reading,
    task: JoinHandle<()>,
}

/// What the HTTP API needs to read the store: where it is, whose records
/// (the fleet this monitor watches), and how its writes go.
#[derive(Clone)]
pub struct Reading {
    pub settings: HistorySettings,
    pub fleet: String,
    pub health: Arc<Health>,
}

/// Echoes, pings and transitions; link changes are not history.
fn wanted(update: &Update) -> bool {
    !matches!(update, Update::Link(_))
}

impl History {
    /// Stop taking updates and wait for the last write (bounded).
    pub async fn finish(self) {
        drop(self.sink);
        let _ = self.task.await;
    }
}

pub fn spawn(settings: &HistorySettings, by: WrittenBy, shutdown: CancellationToken) -> History {
    let (sink, rx) = Sink::new("history", 8192, wanted);
    let health = Arc::new(Health {
        reachable: AtomicBool::new(true),
        ..Health::default()
    });
    let reading = Reading {
        settings: settings.clone(),
        fleet: by.fleet.clone(),
        health: health.clone(),
    };
    let task = tokio::spawn(run(settings.clone(), by, rx, health.clone(), shutdown));
    History {
        sink,
        health,
        reading,
        task,
    }
}

fn stored_change(report: &ServiceReport) -> StoredServiceChange {
    let c = &report.change;
    StoredServiceChange {
        at_ms: report.at.timestamp_millis(),
        service: c.service.clone(),
        from: c.from.code().to_owned(),
        to: c.to.code().to_owned(),
        up: i64::from(c.up),
        expected: i64::from(c.expected),
    }
}

fn stored(report: &Report) -> StoredTransition {
    let t = &report.transition;
    StoredTransition {
        at_ms: report.at.timestamp_millis(),
        service: t.key.service.clone(),
        instance: t.key.instance.clone(),
        from: t.from.code().to_owned(),
        to: t.to.code().to_owned(),
        reason: t.reason.code().to_owned(),
        rtt_ms: t.rtt.map(|d| d.as_secs_f64() * 1e3),
        silent_ms: match t.reason {
            Reason::TimedOut { silent_for, .. } => i64::try_from(silent_for.as_millis()).ok(),
            _ => None,
        },
    }
}

type Written = (Option<Box<dyn Store>>, Result<(), HistoryError>, Batch);

struct Writer {
    settings: HistorySettings,
    store: Option<Box<dyn Store>>,
    busy: Option<JoinHandle<Written>>,
    /// When the running call started, and whether it is already reported late.
    busy_since: Instant,
    overdue: bool,
    /// Records in the running call.
    in_flight: usize,
    backoff: Backoff,
    retry_at: Instant,
    last_prune: Option<Instant>,
    last_probe: Instant,
    /// When the failure was last logged, while the store keeps failing.
    logged_at: Option<Instant>,
    by: WrittenBy,
}

impl Drop for Writer {
    /// A store may hold a runtime of its own (PostgreSQL's client): dropped
    /// on an async thread that panics ("Cannot drop a runtime in a context
    /// where blocking is not allowed"). Close it on a thread of its own.
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            let _ = std::thread::Builder::new()
                .name("history-close".into())
                .spawn(move || drop(store));
        }
    }
}

impl Writer {
    fn new(settings: HistorySettings, by: WrittenBy) -> Self {
        Self {
            settings,
            by,
            store: None,
            busy: None,
            busy_since: Instant::now(),
            overdue: false,
            in_flight: 0,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            retry_at: Instant::now(),
            last_prune: None,
            last_probe: Instant::now(),
            logged_at: None,
        }
    }

    /// Start a write of up to [`BATCH`] records from `backlog` (or, with
    /// nothing to write, a check of the store every [`PROBE_EVERY`]),
    /// unless a call is running or the store is resting after a failure.
    fn start(&mut self, backlog: &mut Backlog) {
        let now = Instant::now();
        if self.busy.is_some() || now < self.retry_at {
            return;
        }
        let probe = backlog.is_empty();
        if probe && (self.store.is_none() || now < self.last_probe + PROBE_EVERY) {
            return;
        }
        self.last_probe = now;
        let mut batch = backlog.take(BATCH);
        batch.by = self.by.clone();
        let settings = self.settings.clone();
        let store = self.store.take();
        let prune_due = !probe && self.last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if prune_due {
            self.last_prune = Some(now);
        }
        let retention = settings.retention;
        self.in_flight = batch.len();
        self.busy_since = now;
        self.overdue = false;
        self.busy = Some(tokio::task::spawn_blocking(move || {
            let mut store = match store {
                Some(store) => store,
                None => match open(&settings) {
                    Ok(store) => store,
                    Err(error) => return (None, Err(error), batch),
                },
            };
            let mut outcome = if probe {
                store.check()
            } else {
                store.write(&batch)
            };
            if outcome.is_ok() && prune_due {
                let before = Utc::now() - retention;
                outcome = store.prune(before.timestamp_millis()).map(|_| ());
            }
            match outcome {
                Ok(()) => (Some(store), Ok(()), batch),
                // The connection (or the file) may be what broke: open anew next time.
                Err(error) => (None, Err(error), batch),
            }
        }));
    }

    /// The running call is past the store's deadline: say so now, whatever it does later.
    fn overdue(&mut self, backlog: &Backlog, health: &Health) {
        self.overdue = true;
        let error = HistoryError::Store(format!(
            "no answer within {} (history.timeout)",
            humantime::format_duration(self.settings.timeout)
        ));
        self.report(&error, backlog.len() + self.in_flight, health);
    }

    /// Count a failure and log it: once when the store starts failing, then
    /// at most every [`RELOG_EVERY`] while it goes on.
    fn report(&mut self, error: &HistoryError, waiting: usize, health: &Health) {
        let was_up = health.reachable.load(Ordering::Relaxed);
        health.failed(error);
        let now = Instant::now();
        if was_up || self.logged_at.is_none_or(|at| now >= at + RELOG_EVERY) {
            warn!("history: {error}; {waiting} records waiting, retried with backoff");
            self.logged_at = Some(now);
        }
    }

    fn finished(&mut self, written: Written, backlog: &mut Backlog, health: &Health) {
        let (store, outcome, batch) = written;
        self.store = store;
        self.in_flight = 0;
        match outcome {
            Ok(()) => {
                if !health.reachable.load(Ordering::Relaxed) {
                    info!(
                        "history: the store takes writes again; {} records waiting",
                        backlog.len()
                    );
                }
                self.logged_at = None;
                health.succeeded(batch.len());
                self.backoff.reset();
            }
            Err(error) => {
                let waiting = backlog.len() + batch.len();
                // Already reported when it went past its deadline.
                if self.overdue {
                    health.failed(&error);
                } else {
                    self.report(&error, waiting, health);
                }
                backlog.put_back(batch);
                self.retry_at = Instant::now() + self.backoff.next_delay();
            }
        }
    }
}

/// Records waiting to be written, bounded.
#[derive(Default)]
struct Backlog {
    transitions: VecDeque<StoredTransition>,
    services: VecDeque<StoredServiceChange>,
    minutes: VecDeque<Minute>,
    dropped: u64,
}

impl Backlog {
    fn len(&self) -> usize {
        self.transitions.len() + self.services.len() + self.minutes.len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn bound(&mut self) {
        while self.len() > MAX_BACKLOG {
            // Minutes go first: transitions are what people look back at.
            if self.minutes.pop_front().is_none() && self.transitions.pop_front().is_none() {
                self.services.pop_front();
            }
            self.dropped += 1;
        }
    }
    fn push_transition(&mut self, t: StoredTransition) {
        self.transitions.push_back(t);
        self.bound();
    }
    fn push_service(&mut self, c: StoredServiceChange) {
        self.services.push_back(c);
        self.bound();
    }
    fn push_minutes(&mut self, minutes: Vec<Minute>) {
        self.minutes.extend(minutes);
        self.bound();
    }
    fn take(&mut self, n: usize) -> Batch {
        let t = self.transitions.len().min(n);
        let transitions: Vec<_> = self.transitions.drain(..t).collect();
        let c = self.services.len().min(n - t);
        let services: Vec<_> = self.services.drain(..c).collect();
        let m = self.minutes.len().min(n - t - c);
        let minutes = self.minutes.drain(..m).collect();
        Batch {
            by: WrittenBy::default(),
            transitions,
            services,
            minutes,
        }
    }
    fn put_back(&mut self, batch: Batch) {
        for t in batch.transitions.into_iter().rev() {
            self.transitions.push_front(t);
        }
        for c in batch.services.into_iter().rev() {
            self.services.push_front(c);
        }
        for m in batch.minutes.into_iter().rev() {
            self.minutes.push_front(m);
        }
        self.bound();
    }
}

async fn run(
    settings: HistorySettings,
    by: WrittenBy,
    mut updates: mpsc::Receiver<Update>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let deadline = settings.timeout;
    let mut aggregator = Aggregator::new(Utc::now().timestamp_millis());
    let mut backlog = Backlog::default();
    let mut minutes = Vec::new();
    let mut writer = Writer::new(settings, by);
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let late = writer.busy_since + deadline;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            update = updates.recv() => {
                let Some(update) = update else { break };
                let now = Utc::now().timestamp_millis();
                match update {
                    Update::Transition(report) => {
                        let t = stored(&report);
                        aggregator.transition(&report.transition.key, report.transition.to, now, &mut minutes);
                        backlog.push_transition(t);
                    }
                    Update::Echoes(echoes) => {
                        for echo in echoes.iter() {
                            aggregator.echo(&echo.key, echo.rtt, now, &mut minutes);
                        }
                    }
                    Update::Service(report) => backlog.push_service(stored_change(&report)),
                    Update::Forgotten(keys) => {
                        for key in keys.iter() {
                            aggregator.forget(key);
                        }
                    }
                    Update::PingSent { .. } => aggregator.ping(now, &mut minutes),
                    Update::Link(_)
                    | Update::Stall { .. }
                    | Update::Reconfigured(_)
                    | Update::Cost(_) => {}
                }
            }
            written = async { writer.busy.as_mut().expect("guarded").await }, if writer.busy.is_some() => {
                writer.busy = None;
                match written {
                    Ok(written) => writer.finished(written, &mut backlog, &health),
                    Err(error) => warn!(%error, "history: the writer panicked"),
                }
            }
            _ = tokio::time::sleep_until(late), if writer.busy.is_some() && !writer.overdue => {
                writer.overdue(&backlog, &health);
            }
            _ = flush.tick() => {
                aggregator.roll(Utc::now().timestamp_millis(), &mut minutes);
            }
        }
        if !minutes.is_empty() {
            backlog.push_minutes(std::mem::take(&mut minutes));
        }
        if backlog.dropped > 0 {
            health
                .dropped
                .fetch_add(std::mem::take(&mut backlog.dropped), Ordering::Relaxed);
        }
        writer.start(&mut backlog);
        health
            .waiting
            .store((backlog.len() + writer.in_flight) as u64, Ordering::Relaxed);
    }
    // Keep what the queue still holds, close the minute so far, and write it all once more.
    while let Ok(update) = updates.try_recv() {
        match update {
            Update::Transition(report) => backlog.push_transition(stored(&report)),
            Update::Service(report) => backlog.push_service(stored_change(&report)),
            _ => {}
        }
    }
    aggregator.close_partial(Utc::now().timestamp_millis(), &mut minutes);
    backlog.push_minutes(minutes);
    let last = async {
        if let Some(busy) = writer.busy.take()
            && let Ok(written) = busy.await
        {
            writer.finished(written, &mut backlog, &health);
        }
        writer.retry_at = Instant::now();
        while !backlog.is_empty() {
            writer.start(&mut backlog);
            let Some(busy) = writer.busy.take() else {
                break;
            };
            let Ok(written) = busy.await else { break };
            let failed = written.1.is_err();
            writer.finished(written, &mut backlog, &health);
            if failed {
                break;
            }
        }
    };
    let finished_in_time = tokio::time::timeout(LAST_WRITE, last).await.is_ok();
    // A call cut off here keeps its batch: count it as unwritten too.
    let unwritten = backlog.len() + writer.in_flight;
    if !finished_in_time || unwritten > 0 {
        let why = health
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| {
                format!(
                    "the store did not finish within {}",
                    humantime::format_duration(LAST_WRITE)
                )
            });
        warn!("history: {unwritten} records not written before stopping: {why}");
    }
}
