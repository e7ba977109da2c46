//! The status board: a sink of the engine's [`Update`]s that keeps what a
//! machine or a person asks about right now (every instance's state, since
//! when, its last echo, RTT and uptime; the broker link), and publishes it as
//! an immutable [`Snapshot`] for the HTTP server. Nothing here reads the
//! detector: the board is rebuilt from the same stream the displays see.
//!
//! States are carried as their snake_case codes (`up`, `down`, ...), the same
//! strings as in the JSON lines, so states the detector gains later flow
//! through without a change here; [`Severity::of`] is the one place that
//! judges them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use orchestrator_lib::plumbing::{LinkStats, LinkStatus};
use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::detector::{InstanceKey, PhiModel, State, Strength, UNSEEN_INSTANCE};
use crate::engine::{EchoSeen, Update};
pub use crate::headless::state_code;
use crate::metrics::Metrics;

/// A snapshot younger than this is served as it is; an older one is rebuilt
/// first. Snapshots are built only when asked for, so a monitor nobody reads
/// pays nothing for them.
pub const FRESH_FOR: Duration = Duration::from_millis(200);

/// How a state counts for someone deciding whether to act: the Nagios plugin
/// convention, which `monitor status` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Severity {
    /// Judge a state by its code. A state this build does not know is
    /// unknown rather than silently fine.
    pub fn of(state: &str) -> Severity {
        match state {
            // A planned shutdown is not a failure.
            "up" | "left" => Severity::Ok,
            "suspect" | "flapping" | "slow" | "degraded" => Severity::Warning,
            // Expected by the configuration and never answered: as absent as DOWN.
            "down" | "never_seen" => Severity::Critical,
            _ => Severity::Unknown,
        }
    }

    /// The Nagios plugin exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
            Severity::Unknown => "UNKNOWN",
        }
    }

    /// Which of two verdicts wins for the whole: a DOWN is news even when
    /// the rest cannot be judged; not being able to judge outweighs a warning.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Unknown => 2,
            Severity::Critical => 3,
        }
    }
}

/// The link's state as a code, and what to tell a person about it.
pub fn link_code(status: &LinkStatus) -> (&'static str, Option<String>) {
    let detail = match status {
        LinkStatus::Reconnecting {
            attempt,
            retry_in,
            error,
        } => Some(format!(
            "attempt {attempt}, next try in {:.1}s: {error}",
            retry_in.as_secs_f64()
        )),
        LinkStatus::Blocked { reason } => Some(reason.clone()),
        LinkStatus::Failed(error) => Some(error.to_string()),
        LinkStatus::Connecting | LinkStatus::Connected | LinkStatus::Closed => None,
    };
    (status.code(), detail)
}

/// One instance, as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub service: String,
    pub instance: String,
    pub state: String,
    pub since: String,
    pub last_echo: Option<String>,
    pub rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phi: Option<f64>,
    pub uptime: Uptime,
}

/// Uptime percentages, 0 to 100; `null` before there is anything to measure.
#[derive(Debug, Clone, Serialize)]
pub struct Uptime {
    /// Over the time this monitor has been watching the instance.
    pub since_start: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitorInfo {
    pub id: String,
    pub version: &'static str,
    pub started_at: String,
    pub interval_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    pub state: &'static str,
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The broker connected to (redacted), of the ones configured, while connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
}

/// A service with fewer instances alive than the configuration says it
/// should have (`instances`): a warning, `orders 1/3` on the dashboard. As
/// the engine judged it (its `service` updates), so the document, the JSON
/// lines and the alerts agree.
#[derive(Debug, Clone, Serialize)]
pub struct DegradedService {
    pub service: String,
    pub up: u32,
    pub expected: u32,
}

/// The status document (`GET /api/v1/status`).
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub generated_at: String,
    pub monitor: MonitorInfo,
    pub link: LinkInfo,
    pub services: Vec<InstanceStatus>,
    /// Services below their expected number of instances alive.
    pub degraded: Vec<DegradedService>,
}

/// What the HTTP server reads: the document, and what `/healthz` needs to
/// judge the watcher itself.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub built: Instant,
    pub document: Document,
    pub link_connected: bool,
    /// When the engine last showed it is alive (sent a ping), or when the link came up.
    pub engine_seen: Instant,
    pub interval: Duration,
    /// The latest stall of the engine's loop (when seen, how late), and how
    /// long after one the monitor does not judge.
    pub stall: Option<(Instant, Duration)>,
    pub grace: Duration,
}

impl Snapshot {
    /// `Ok` while the monitor can judge; otherwise why not, in one line.
    pub fn health(&self, now: Instant) -> Result<(), String> {
        let link = &self.document.link;
        liveness(
            (link.state, link.detail.as_deref()),
            self.link_connected,
            self.engine_seen,
            self.interval,
            self.stall,
            self.grace,
            now,
        )
    }
}

/// Whether the monitor can judge, from what its own loop last showed: `Ok`,
/// or why not in one line. What `/healthz` says and what a supervisor is
/// told (`STATUS=`, see `sdnotify`).
pub fn liveness(
    (state, detail): (&str, Option<&str>),
    link_connected: bool,
    engine_seen: Instant,
    interval: Duration,
    stall: Option<(Instant, Duration)>,
    grace: Duration,
    now: Instant,
) -> Result<(), String> {
    if !link_connected {
        return Err(match detail {
            Some(detail) => format!("broker link {state}: {detail}"),
            None => format!("broker link {state}"),
        });
    }
    if let Some((at, lag)) = stall {
        let ago = now.saturating_duration_since(at);
        if ago < grace {
            return Err(format!(
                "monitoring loop stalled: it ran {:.1}s late {:.1}s ago; judging again {:.1}s after",
                lag.as_secs_f64(),
                ago.as_secs_f64(),
                grace.as_secs_f64()
            ));
        }
    }
    let quiet = now.saturating_duration_since(engine_seen);
    if quiet > stall_after(interval) {
        return Err(format!(
            "monitoring loop stalled: no ping sent for {:.1}s (interval {})",
            quiet.as_secs_f64(),
            humantime::format_duration(interval)
        ));
    }
    Ok(())
}

/// A connected engine pings every interval; this much silence means its loop
/// is stuck. Generous, so a loaded machine is not called stalled.
fn stall_after(interval: Duration) -> Duration {
    interval * 3 + Duration::from_secs(1)
}

#[derive(Debug, Clone)]
struct Row {
    state: String,
    since: DateTime<Utc>,
    since_instant: Instant,
    watched_since: Instant,
    /// Time spent UP before the current state began.
    up_before: Duration,
    last_echo: Option<Instant>,
    last_rtt: Option<Duration>,
    /// Phi's view after the latest fresh echo, when phi judges the instance.
    phi: Option<PhiModel>,
}

impl Row {
    fn new(state: String, at: DateTime<Utc>, now: Instant) -> Self {
        Self {
            state,
            since: at,
            since_instant: now,
            watched_since: now,
            up_before: Duration::ZERO,
            last_echo: None,
            last_rtt: None,
            phi: None,
        }
    }

    /// Phi now: how unlikely it is that a live instance stays silent this long.
    fn phi_at(&self, now: Instant) -> Option<f64> {
        let phi = self
            .phi?
            .phi(now.saturating_duration_since(self.last_echo?));
        Some((phi * 1000.0).round() / 1000.0)
    }

    fn uptime(&self, now: Instant) -> Option<f64> {
        let watched = now.saturating_duration_since(self.watched_since);
        if watched.is_zero() {
            return None;
        }
        let current = if self.state == "up" {
            now.saturating_duration_since(self.since_instant)
        } else {
            Duration::ZERO
        };
        let share = ((self.up_before + current).as_secs_f64() / watched.as_secs_f64()).min(1.0);
        Some((share * 100_000.0).round() / 1000.0)
    }
}

/// Everything the board knows; updated by [`Board::apply`], read through [`Board::snapshot`].
pub struct Board {
    monitor: MonitorInfo,
    interval: Duration,
    rows: BTreeMap<InstanceKey, Row>,
    link: LinkStatus,
    link_since: DateTime<Utc>,
    /// Where the link says which broker it is connected to.
    link_stats: Option<Arc<LinkStats>>,
    engine_seen: Instant,
    /// The latest stall of the engine's loop: when it was seen, and how late the loop ran.
    stall: Option<(Instant, Duration)>,
    /// After a stall the detector waits this long before judging again.
    grace: Duration,
    /// Services below their expected instances, by name.
    degraded: BTreeMap<String, DegradedService>,
}

impl Board {
    /// Name the broker in use (of several, which) from the link's own stats.
    pub fn with_link_stats(mut self, stats: Arc<LinkStats>) -> Self {
        self.link_stats = Some(stats);
        self
    }

    /// `grace`: how long after a stall of its loop the monitor does not judge
    /// (one timeout, as the detector waits).
    pub fn new(
        monitor_id: &str,
        interval: Duration,
        grace: Duration,
        expect: &[String],
        now: Instant,
    ) -> Self {
        let started = Utc::now();
        let rows = expect
            .iter()
            .map(|service| {
                let key = InstanceKey::new(service.clone(), UNSEEN_INSTANCE);
                (key, Row::new(state_code(State::NeverSeen), started, now))
            })
            .collect();
        Self {
            monitor: MonitorInfo {
                id: monitor_id.to_owned(),
                version: env!("CARGO_PKG_VERSION"),
                started_at: rfc3339(started),
                interval_ms: interval.as_millis() as u64,
            },
            interval,
            rows,
            link: LinkStatus::Connecting,
            link_since: started,
            link_stats: None,
            engine_seen: now,
            stall: None,
            grace,
            degraded: BTreeMap::new(),
        }
    }

    pub fn apply(&mut self, update: &Update, now: Instant) {
        match update {
            Update::Transition(report) => {
                let t = &report.transition;
                if t.key.instance != UNSEEN_INSTANCE {
                    // The expected-service placeholder gives way to a real instance.
                    let placeholder = InstanceKey::new(t.key.service.clone(), UNSEEN_INSTANCE);
                    self.rows.remove(&placeholder);
                }
                let to = state_code(t.to);
                let row = self
                    .rows
                    .entry(t.key.clone())
                    .or_insert_with(|| Row::new(state_code(State::NeverSeen), report.at, now));
                if t.from == State::NeverSeen && row.up_before.is_zero() && row.state != "up" {
                    // A discovered instance is watched from its first echo, not
                    // from whenever its placeholder or its echo made the row.
                    row.watched_since = now;
                }
                if row.state == "up" && to != "up" {
                    row.up_before += now.saturating_duration_since(row.since_instant);
                }
                row.state = to;
                row.since = report.at;
                row.since_instant = now;
                if t.rtt.is_some() {
                    row.last_rtt = t.rtt;
                }
            }
            Update::Echoes(echoes) => {
                for EchoSeen {
                    key, rtt, phi, at, ..
                } in echoes.iter()
                {
                    // An echo can overtake the transition it caused; the row is made either way.
                    let row = match self.rows.get_mut(key) {
                        Some(row) => row,
                        None => self.rows.entry(key.clone()).or_insert_with(|| {
                            Row::new(state_code(State::NeverSeen), Utc::now(), *at)
                        }),
                    };
                    row.last_echo = Some(*at);
                    // Only an echo of a recent ping is a round trip, and a heartbeat for phi.
                    if rtt.is_some() {
                        row.last_rtt = *rtt;
                        row.phi = *phi;
                    }
                }
            }
            Update::Service(report) => {
                let c = &report.change;
                if c.to != Strength::Full {
                    let degraded = DegradedService {
                        service: c.service.clone(),
                        up: c.up,
                        expected: c.expected,
                    };
                    self.degraded.insert(c.service.clone(), degraded);
                } else {
                    self.degraded.remove(&c.service);
                }
            }
            Update::Forgotten(keys) => {
                for key in keys.iter() {
                    self.rows.remove(key);
                }
                // A service with no instance left is no longer judged.
                let rows = &self.rows;
                self.degraded.retain(|service, _| {
                    rows.range(InstanceKey::new(service.clone(), "")..)
                        .next()
                        .is_some_and(|(k, _)| &k.service == service)
                });
            }
            Update::PingSent { at, .. } => self.engine_seen = *at,
            Update::Stall { lag, at } => {
                // After a stall the engine runs again: it was seen then.
                self.engine_seen = *at;
                self.stall = Some((*at, *lag));
            }
            Update::Link(status) => {
                if *status == LinkStatus::Connected && self.link != LinkStatus::Connected {
                    // The engine pings again from now on; judge its silence from here.
                    self.engine_seen = now;
                }
                self.link = status.clone();
                self.link_since = Utc::now();
            }
        }
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let wall_now = Utc::now();
        // Instants become wall-clock times through one reading of both clocks.
        let wall = |at: Instant| {
            let ago = now.saturating_duration_since(at);
            wall_now - chrono::Duration::from_std(ago).unwrap_or_default()
        };
        let services = self
            .rows
            .iter()
            .map(|(key, row)| InstanceStatus {
                service: key.service.clone(),
                instance: key.instance.clone(),
                state: row.state.clone(),
                since: rfc3339(row.since),
                last_echo: row.last_echo.map(|at| rfc3339(wall(at))),
                rtt_ms: row.last_rtt.map(millis),
                phi: row.phi_at(now),
                uptime: Uptime {
                    since_start: row.uptime(now),
                },
            })
            .collect();
        let (state, detail) = link_code(&self.link);
        Snapshot {
            built: now,
            document: Document {
                generated_at: rfc3339(wall_now),
                monitor: self.monitor.clone(),
                link: LinkInfo {
                    state,
                    since: rfc3339(self.link_since),
                    detail,
                    broker: self.link_stats.as_ref().and_then(|s| s.broker_in_use()),
                },
                services,
                degraded: self.degraded.values().cloned().collect(),
            },
            link_connected: self.link == LinkStatus::Connected,
            engine_seen: self.engine_seen,
            interval: self.interval,
            stall: self.stall,
            grace: self.grace,
        }
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The reading side of the board: the latest snapshot, rebuilt on demand.
#[derive(Clone)]
pub struct Snapshots {
    latest: watch::Receiver<Arc<Snapshot>>,
    wanted: Arc<Notify>,
}

/// The board's side of [`Snapshots`].
pub struct Publisher {
    latest: watch::Sender<Arc<Snapshot>>,
    wanted: Arc<Notify>,
}

/// A channel for snapshots, starting with `first`.
pub fn snapshots(first: Snapshot) -> (Publisher, Snapshots) {
    let (tx, rx) = watch::channel(Arc::new(first));
    let wanted = Arc::new(Notify::new());
    (
        Publisher {
            latest: tx,
            wanted: wanted.clone(),
        },
        Snapshots { latest: rx, wanted },
    )
}

impl Snapshots {
    /// A snapshot at most [`FRESH_FOR`] old, or, if the board does not answer
    /// within a second (it is gone, or swamped), the latest there is.
    pub async fn fresh(&self) -> Arc<Snapshot> {
        let mut latest = self.latest.clone();
        let current = latest.borrow_and_update().clone();
        if current.built.elapsed() <= FRESH_FOR {
            return current;
        }
        self.wanted.notify_one();
        match tokio::time::timeout(Duration::from_secs(1), latest.changed()).await {
            Ok(Ok(())) => latest.borrow().clone(),
            _ => current,
        }
    }
}

/// Feed the board and the metrics from the engine's stream until it ends,
/// and build a snapshot whenever a reader asks for one.
pub async fn run(
    mut updates: mpsc::Receiver<Update>,
    mut board: Board,
    metrics: Arc<Metrics>,
    publisher: Publisher,
) {
    loop {
        tokio::select! {
            update = updates.recv() => {
                let Some(update) = update else { break };
                metrics.observe(&update);
                board.apply(&update, Instant::now());
            }
            _ = publisher.wanted.notified() => {
                publisher.latest.send_replace(Arc::new(board.snapshot(Instant::now())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Reason, Transition};
    use crate::engine::Report;

    fn transition(service: &str, from: State, to: State, reason: Reason) -> Update {
        Update::Transition(Report {
            at: Utc::now(),
            transition: Transition {
                key: InstanceKey::new(service, "i-1"),
                from,
                to,
                reason,
                rtt: (to == State::Up).then_some(Duration::from_micros(1500)),
            },
        })
    }

    #[test]
    fn severities_follow_the_nagios_convention() {
        let cases = [
            ("up", 0),
            ("left", 0),
            ("suspect", 1),
            ("flapping", 1),
            ("slow", 1),
            ("degraded", 1),
            ("down", 2),
            ("never_seen", 2),
            ("stale", 3),
            ("something_new", 3),
        ];
        for (state, code) in cases {
            assert_eq!(Severity::of(state).exit_code(), code, "{state}");
        }
        let worst = |states: &[&str]| {
            states
                .iter()
                .map(|s| Severity::of(s))
                .max_by_key(|s| s.rank())
                .unwrap()
        };
        assert_eq!(worst(&["up", "stale", "down"]), Severity::Critical);
        assert_eq!(worst(&["suspect", "stale"]), Severity::Unknown);
        assert_eq!(worst(&["up", "suspect", "left"]), Severity::Warning);
    }

    #[test]
    fn state_codes_are_the_json_lines_strings() {
        assert_eq!(state_code(State::NeverSeen), "never_seen");
        assert_eq!(state_code(State::Up), "up");
        assert_eq!(state_code(State::Down), "down");
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_is_degraded_in_the_document_as_the_engine_says() {
        use crate::detector::ServiceChange;
        use crate::engine::ServiceReport;
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut board = Board::new("mon", second, 3 * second, &[], t0);
        let change = |service: &str, to: Strength, up: u32| {
            Update::Service(ServiceReport {
                at: Utc::now(),
                change: ServiceChange {
                    service: service.into(),
                    from: if to == Strength::Full {
                        Strength::Degraded
                    } else {
                        Strength::Full
                    },
                    to,
                    up,
                    expected: 2,
                },
            })
        };
        board.apply(&change("orders", Strength::Degraded, 1), t0);
        board.apply(&change("billing", Strength::Degraded, 0), t0);
        let degraded = board.snapshot(t0).document.degraded;
        let seen: Vec<(&str, u32, u32)> = degraded
            .iter()
            .map(|d| (d.service.as_str(), d.up, d.expected))
            .collect();
        assert_eq!(seen, [("billing", 0, 2), ("orders", 1, 2)]);
        board.apply(&change("orders", Strength::Full, 2), t0);
        let names: Vec<String> = board
            .snapshot(t0)
            .document
            .degraded
            .into_iter()
            .map(|d| d.service)
            .collect();
        assert_eq!(names, ["billing"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_board_follows_transitions_echoes_and_the_link() {
        let t0 = Instant::now();
        let mut board = Board::new(
            "mon",
            Duration::from_secs(1),
            Duration::from_secs(3),
            &["orders".into()],
            t0,
        );
        let doc = board.snapshot(t0).document;
        assert_eq!(doc.services.len(), 1);
        assert_eq!(
            (
                doc.services[0].instance.as_str(),
                doc.services[0].state.as_str()
            ),
            (UNSEEN_INSTANCE, "never_seen")
        );
        assert_eq!(doc.link.state, "connecting");

        board.apply(&Update::Link(LinkStatus::Connected), t0);
        board.apply(
            &transition("orders", State::NeverSeen, State::Up, Reason::FirstSeen),
            t0,
        );
        let key = InstanceKey::new("orders", "i-1");
        let model = PhiModel {
            mean: 1.0,
            std_dev: 0.2,
            threshold: 8.0,
            params: crate::detector::PhiParams {
                min_std_dev: Duration::from_millis(100),
                acceptable_pause: Duration::ZERO,
            },
        };
        let t1 = t0 + Duration::from_secs(3);
        board.apply(
            &Update::Echoes(std::sync::Arc::new([crate::engine::EchoSeen {
                key: key.clone(),
                id: crate::detector::InstanceId(1),
                seq: 3,
                rtt: Some(Duration::from_micros(2250)),
                phi: Some(model),
                at: t1,
            }])),
            t1,
        );
        // Phi is read at the moment of the snapshot, from the last echo.
        let phi_then = board
            .snapshot(t1 + Duration::from_secs(1))
            .document
            .services[0]
            .phi;
        let expected = model.phi(Duration::from_secs(1));
        assert!(
            phi_then.is_some_and(|p| (p - expected).abs() < 0.001),
            "{phi_then:?} vs {expected}"
        );
        let t2 = t0 + Duration::from_secs(4);
        board.apply(
            &transition(
                "orders",
                State::Up,
                State::Down,
                Reason::TimedOut {
                    silent_for: Duration::from_secs(1),
                    phi: None,
                },
            ),
            t2,
        );
        let snap = board.snapshot(t0 + Duration::from_secs(8));
        let doc = &snap.document;
        assert_eq!(doc.services.len(), 1, "the placeholder gave way");
        let row = &doc.services[0];
        assert_eq!(row.state, "down");
        assert_eq!(row.rtt_ms, Some(2.25));
        assert_eq!(row.uptime.since_start, Some(50.0), "UP for 4 s of 8");
        assert!(row.last_echo.is_some());
        assert!(row.phi.is_some(), "phi mode: phi is shown");
        let json = serde_json::to_value(doc).unwrap();
        assert!(json["services"][0]["phi"].is_number());
        assert_eq!(json["link"]["state"], "connected");
    }

    #[tokio::test(start_paused = true)]
    async fn snapshots_are_built_when_asked_for_and_reused_while_fresh() {
        let t0 = Instant::now();
        let board = Board::new(
            "mon",
            Duration::from_secs(1),
            Duration::from_secs(3),
            &[],
            t0,
        );
        let (publisher, snapshots) = snapshots(board.snapshot(t0));
        let (updates, rx) = mpsc::channel(8);
        let sink = tokio::spawn(run(
            rx,
            board,
            Arc::new(Metrics::new(Arc::default())),
            publisher,
        ));
        assert_eq!(snapshots.fresh().await.built, t0, "fresh enough");
        updates
            .send(Update::Link(LinkStatus::Connected))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let rebuilt = snapshots.fresh().await;
        assert_eq!(rebuilt.built, t0 + Duration::from_secs(1));
        assert_eq!(rebuilt.document.link.state, "connected");
        drop(updates);
        sink.await.unwrap();
        let last = snapshots.fresh().await;
        assert_eq!(last.built, rebuilt.built, "the board is gone: the last one");
    }

    #[tokio::test(start_paused = true)]
    async fn health_is_the_link_and_a_loop_that_keeps_pinging() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(1);
        let mut board = Board::new("mon", interval, interval * 3, &[], t0);
        let err = board.snapshot(t0).health(t0).unwrap_err();
        assert_eq!(err, "broker link connecting");
        board.apply(&Update::Link(LinkStatus::Connected), t0);
        board.apply(&Update::PingSent { seq: 1, at: t0 }, t0);
        assert_eq!(board.snapshot(t0).health(t0 + interval * 2), Ok(()));
        let late = t0 + Duration::from_secs(5);
        let err = board.snapshot(late).health(late).unwrap_err();
        assert!(err.starts_with("monitoring loop stalled: no ping"), "{err}");
        // The engine's own stall guard: unhealthy for one grace period after.
        board.apply(&Update::PingSent { seq: 2, at: late }, late);
        board.apply(
            &Update::Stall {
                lag: Duration::from_secs(4),
                at: late,
            },
            late,
        );
        let err = board.snapshot(late).health(late + interval).unwrap_err();
        assert!(err.contains("ran 4.0s late"), "{err}");
        board.apply(
            &Update::PingSent {
                seq: 5,
                at: late + interval * 3,
            },
            late,
        );
        let after = late + interval * 3;
        assert_eq!(board.snapshot(after).health(after), Ok(()), "grace over");
        board.apply(
            &Update::Link(LinkStatus::Reconnecting {
                attempt: 2,
                retry_in: Duration::from_millis(500),
                error: "connection refused".into(),
            }),
            late,
        );
        let err = board.snapshot(late).health(late).unwrap_err();
        assert_eq!(
            err,
            "broker link reconnecting: attempt 2, next try in 0.5s: connection refused"
        );
    }
}
