//! The status document (`GET /api/v1/status`) and what `/healthz` judges:
//! built on demand from the fleet model ([`crate::fleet`]), never from a
//! copy of its own. [`Snapshots`] builds one when asked and reuses it while
//! it is under [`FRESH_FOR`] old, so a monitor nobody reads builds none.
//!
//! Each instance carries what its state means (severity, tone, rank) as
//! [`State`]'s own methods decide it, so the page and scripts read the
//! meaning instead of judging state codes themselves.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use orchestrator_lib::plumbing::{LinkStats, LinkStatus};
use serde::Serialize;
use tokio::time::Instant;

pub use crate::detector::Severity;
use crate::detector::{State, Tone};
use crate::fleet::{Fleet, Instance, Mark, Shared, StoredUptimes};
use crate::history::{UPTIME_WINDOWS_DAYS, window_name};
use crate::quiet::{Silence, maintenance::Open};

/// A snapshot younger than this is served as it is; an older one is rebuilt
/// first. Snapshots are built only when asked for, so a monitor nobody reads
/// pays nothing for them.
pub const FRESH_FOR: Duration = Duration::from_millis(200);

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
    /// The state's code (`up`, `never_seen`, ...).
    pub state: &'static str,
    /// The state as people read it (`NEVER SEEN`).
    pub label: &'static str,
    /// What the state means, as [`State`] decides it.
    pub severity: Severity,
    pub tone: Tone,
    /// Most urgent first (0).
    pub rank: u8,
    /// Why it is in this state (`timed_out`, `left`, ...), once a transition said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Counts towards its service's strength.
    pub alive: bool,
    pub since: String,
    pub last_echo: Option<String>,
    pub rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phi: Option<f64>,
    pub uptime: Uptime,
    /// What holds its alerts back now (`draining`, `silenced`,
    /// `maintenance`, with `until`), as the fleet model marks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<Mark>,
    /// In a monitor group, each member's verdict (state code) by member id,
    /// when they are not all the same; absent when they agree.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub verdicts: std::collections::BTreeMap<String, String>,
}

/// The monitor group this monitor is in, as the fleet model has it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub name: String,
    /// The member leading, as heard (this one, when it leads); `null`
    /// while none does.
    pub leader: Option<String>,
    /// Whether this monitor leads.
    pub leading: bool,
    /// Members that must judge a service DOWN for the group, now: the
    /// quorum set, or a majority of those alive (of a service some members
    /// never heard of, a majority of those that did).
    pub quorum: usize,
    pub members: Vec<MemberInfo>,
}

/// One member of the group.
#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    pub id: String,
    /// Heard within three intervals (this monitor always).
    pub alive: bool,
    pub leader: bool,
    /// The share (0 to 1) of this monitor's verdicts the member shares;
    /// absent for a member not alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
}

/// Uptime percentages, 0 to 100; `null` before there is anything to measure.
#[derive(Debug, Clone, Serialize)]
pub struct Uptime {
    /// Over the time this monitor has been watching the instance: time up
    /// out of the time judged (LEFT and STALE spells left out).
    pub since_start: Option<f64>,
    /// The share of that time that could be judged, 0 to 100.
    pub coverage: Option<f64>,
    /// From the history store, over 24 h, 7 d and 30 d (absent without a
    /// store, or before its first minute is written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

/// Stored uptime over one window, as percentages: time up out of the time
/// judged, and the time judged out of the whole window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// `24h`, `7d` or `30d`.
    pub window: String,
    pub ratio: Option<f64>,
    pub coverage: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitorInfo {
    pub id: String,
    /// Which heartbeat on the vhost it runs (`default`, or a scope's name).
    pub scope: String,
    pub version: &'static str,
    pub started_at: String,
    /// The interval in force: the configured one, or what the budget chose.
    pub interval_ms: u64,
    /// Each `[[notify]]` target: what waits to be delivered, and its counts.
    pub notify: Vec<NotifyInfo>,
    /// What the heartbeat costs a hosted plan at that interval (after the first ping).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostInfo>,
}

/// [`Cost`](crate::budget::Cost), as the status document says it.
#[derive(Debug, Clone, Serialize)]
pub struct CostInfo {
    /// Instances answering (the most echoes of the last three rounds).
    pub answering: u64,
    /// 1 + 3 × answering: every publish and delivery of a round.
    pub messages_per_round: u64,
    /// Messages a month at the interval in force.
    pub projected_per_month: u64,
    /// `[budget] messages_per_month`, or null without one.
    pub budget_per_month: Option<u64>,
    pub within_budget: bool,
    /// The default timeout in force (it follows the interval).
    pub timeout_ms: u64,
    /// Caps of the plan nearly reached, or a budget no interval keeps within.
    pub warnings: Vec<String>,
}

/// One `[[notify]]` target, as its delivery task counts.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyInfo {
    /// Its index among the `[[notify]]` entries.
    pub target: usize,
    pub kind: String,
    /// Alerts waiting to be delivered (all kinds but alertmanager).
    pub pending: u64,
    /// When the longest-waiting of them was made; `null` with none.
    pub oldest_pending: Option<String>,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub expired: u64,
}

fn notify_info(stats: &crate::notify::Stats) -> Vec<NotifyInfo> {
    let targets = stats.read().unwrap_or_else(|e| e.into_inner()).clone();
    targets
        .iter()
        .map(|t| {
            let oldest = t.oldest_pending_ms.load(Ordering::Relaxed);
            NotifyInfo {
                target: t.index,
                kind: t.kind.clone(),
                pending: t.pending.load(Ordering::Relaxed),
                oldest_pending: (oldest > 0)
                    .then(|| DateTime::<Utc>::from_timestamp_millis(oldest))
                    .flatten()
                    .map(rfc3339),
                sent: t.sent.load(Ordering::Relaxed),
                failed: t.failed.load(Ordering::Relaxed),
                dropped: t.dropped.load(Ordering::Relaxed),
                expired: t.expired.load(Ordering::Relaxed),
            }
        })
        .collect()
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
    /// Instances by state code.
    pub counts: std::collections::BTreeMap<String, usize>,
    /// Services below their expected number of instances alive.
    pub degraded: Vec<DegradedService>,
    /// Silences in force, soonest end first.
    pub silences: Vec<Silence>,
    /// `[[maintenance]]` windows open now.
    pub maintenance: Vec<Open>,
    /// The monitor group, when this monitor is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupInfo>,
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

/// The status document and health of `fleet` at `now` (`wall` on the wall clock).
pub fn snapshot(fleet: &Fleet, about: &About, now: Instant, wall: DateTime<Utc>) -> Snapshot {
    // Instants become wall-clock times through one reading of both clocks.
    let wall_of = |at: Instant| {
        let ago = now.saturating_duration_since(at);
        wall - chrono::Duration::from_std(ago).unwrap_or_default()
    };
    let mut services: Vec<InstanceStatus> = fleet
        .rows
        .iter()
        .map(|row| {
            let mut status = instance_status(row, fleet.stored_uptime.get(&row.key), now, &wall_of);
            status.mark = fleet.mark(row, wall);
            if let Some(group) = &fleet.group
                && !row.is_placeholder()
            {
                let subject = (row.key.service.clone(), Some(row.key.instance.clone()));
                status.verdicts = group.differing(&subject, row.own.code(), now);
            }
            status
        })
        .collect();
    services.sort_unstable_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
    let (state, detail) = link_code(&fleet.link);
    let interval = fleet
        .cost
        .as_deref()
        .map_or(about.interval, |cost| cost.interval);
    Snapshot {
        built: now,
        document: Document {
            generated_at: rfc3339(wall),
            monitor: MonitorInfo {
                id: about.monitor_id.clone(),
                scope: about.scope.clone(),
                version: env!("CARGO_PKG_VERSION"),
                started_at: rfc3339(fleet.started_wall),
                interval_ms: interval.as_millis() as u64,
                notify: notify_info(&about.notify),
                cost: fleet.cost.as_deref().map(|cost| CostInfo {
                    answering: cost.answering,
                    messages_per_round: cost.per_round,
                    projected_per_month: cost.projected.round() as u64,
                    budget_per_month: cost.budget,
                    within_budget: cost.within,
                    timeout_ms: cost.timeout.as_millis() as u64,
                    warnings: cost.warnings.clone(),
                }),
            },
            link: LinkInfo {
                state,
                since: rfc3339(fleet.link_since_wall),
                detail,
                broker: about.link_stats.as_ref().and_then(|s| s.broker_in_use()),
            },
            services,
            counts: fleet.counts_by_code(),
            degraded: fleet
                .judged
                .iter()
                .map(|(service, judged)| DegradedService {
                    service: service.clone(),
                    up: judged.up,
                    expected: judged.expected,
                })
                .collect(),
            silences: fleet.quiet().silences.active(wall),
            maintenance: fleet.quiet().maintenance().open(wall),
            group: group_info(fleet, now),
        },
        link_connected: fleet.link == LinkStatus::Connected,
        engine_seen: fleet.engine_seen,
        interval,
        stall: fleet.stall,
        grace: about.grace,
    }
}

/// The group's part of the document: its name, leader, quorum and members
/// with how far each agrees with this monitor.
pub fn group_info(fleet: &Fleet, now: Instant) -> Option<GroupInfo> {
    let group = fleet.group.as_ref()?;
    let agreement: std::collections::HashMap<String, f64> = group
        .agreement(&fleet.own_verdicts(), now)
        .into_iter()
        .collect();
    Some(GroupInfo {
        name: group.name.clone(),
        leader: group.leader(now),
        leading: group.leads(now),
        quorum: group.quorum_at(now),
        members: group
            .members(now)
            .into_iter()
            .map(|m| MemberInfo {
                agreement: agreement.get(&m.id).map(|a| (a * 1000.0).round() / 1000.0),
                id: m.id,
                alive: m.alive,
                leader: m.leader,
            })
            .collect(),
    })
}

fn instance_status(
    row: &Instance,
    stored: Option<&StoredUptimes>,
    now: Instant,
    wall_of: &impl Fn(Instant) -> DateTime<Utc>,
) -> InstanceStatus {
    let state: State = row.state;
    let uptime = row.uptime(now);
    InstanceStatus {
        service: row.key.service.clone(),
        instance: row.key.instance.clone(),
        state: state.code(),
        label: state.label(),
        severity: state.severity(),
        tone: state.tone(),
        rank: state.rank(),
        reason: row.reason.map(|r| r.code()),
        alive: row.counts_alive(),
        since: rfc3339(row.since_wall),
        last_echo: row.last_echo.map(|at| rfc3339(wall_of(at))),
        rtt_ms: row.last_rtt().map(millis),
        phi: row.phi_at(now).map(|phi| (phi * 1000.0).round() / 1000.0),
        uptime: Uptime {
            since_start: uptime.and_then(|u| u.ratio).map(percent),
            coverage: uptime.map(|u| percent(u.coverage)),
            windows: stored
                .into_iter()
                .flat_map(|figures| UPTIME_WINDOWS_DAYS.iter().zip(figures))
                .filter_map(|(days, figure)| {
                    figure.map(|f| Window {
                        window: window_name(*days),
                        ratio: f.ratio.map(percent),
                        coverage: percent(f.coverage),
                    })
                })
                .collect(),
        },
        mark: None,
        verdicts: Default::default(),
    }
}

/// A share (0 to 1) as a percentage with three decimals.
fn percent(share: f64) -> f64 {
    (share * 100_000.0).round() / 1000.0
}

/// What a snapshot says about the monitor itself, beyond the fleet.
#[derive(Clone)]
pub struct About {
    pub monitor_id: String,
    /// The monitor's scope's name.
    pub scope: String,
    pub interval: Duration,
    /// How long after a stall of its loop the monitor does not judge (one
    /// timeout, as the detector waits).
    pub grace: Duration,
    /// Where the link says which broker it is connected to.
    pub link_stats: Option<Arc<LinkStats>>,
    /// The `[[notify]]` targets' counters (none without targets).
    pub notify: crate::notify::Stats,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Snapshots of the fleet model, built on demand and reused while fresh.
#[derive(Clone)]
pub struct Snapshots {
    fleet: Shared,
    about: About,
    latest: Arc<Mutex<Option<Arc<Snapshot>>>>,
}

impl Snapshots {
    pub fn new(fleet: Shared, about: About) -> Self {
        Self {
            fleet,
            about,
            latest: Arc::default(),
        }
    }

    /// A snapshot at most [`FRESH_FOR`] old.
    pub async fn fresh(&self) -> Arc<Snapshot> {
        let now = Instant::now();
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(snapshot) = latest.as_ref()
            && now.saturating_duration_since(snapshot.built) <= FRESH_FOR
        {
            return snapshot.clone();
        }
        let built = Arc::new(snapshot(&self.fleet.read(), &self.about, now, Utc::now()));
        *latest = Some(built.clone());
        built
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{InstanceKey, PhiModel, Reason, Strength, Transition, UNSEEN_INSTANCE};
    use crate::update::{Report, Update};

    /// The fleet model and what a snapshot says of the monitor: what the
    /// status API is built from.
    struct Board {
        fleet: Fleet,
        about: About,
    }

    impl Board {
        fn new(
            id: &str,
            interval: Duration,
            grace: Duration,
            expect: &[String],
            now: Instant,
        ) -> Self {
            Self {
                fleet: Fleet::new(expect, now, Utc::now()),
                about: About {
                    monitor_id: id.into(),
                    scope: "default".into(),
                    interval,
                    grace,
                    link_stats: None,
                    notify: Default::default(),
                },
            }
        }

        fn apply(&mut self, update: &Update, now: Instant) {
            self.fleet.apply(update, now, Utc::now());
        }

        fn snapshot(&self, now: Instant) -> Snapshot {
            snapshot(&self.fleet, &self.about, now, Utc::now())
        }
    }

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

    #[tokio::test(start_paused = true)]
    async fn a_service_is_degraded_in_the_document_as_the_engine_says() {
        use crate::detector::ServiceChange;
        use crate::update::ServiceReport;
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
            (doc.services[0].instance.as_str(), doc.services[0].state),
            (UNSEEN_INSTANCE, "never_seen")
        );
        assert_eq!(doc.services[0].severity, Severity::Critical);
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
            &Update::Echoes(std::sync::Arc::new([crate::update::EchoSeen {
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
        let fleet = Shared::new(board.fleet);
        let snapshots = Snapshots::new(fleet.clone(), board.about);
        assert_eq!(snapshots.fresh().await.built, t0);
        fleet
            .write()
            .apply(&Update::Link(LinkStatus::Connected), t0, Utc::now());
        tokio::time::advance(Duration::from_millis(100)).await;
        let reused = snapshots.fresh().await;
        assert_eq!(reused.built, t0, "fresh enough");
        assert_eq!(reused.document.link.state, "connecting");
        tokio::time::advance(Duration::from_secs(1)).await;
        let rebuilt = snapshots.fresh().await;
        assert_eq!(rebuilt.built, t0 + Duration::from_millis(1100));
        assert_eq!(rebuilt.document.link.state, "connected");
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
