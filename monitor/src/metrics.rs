//! Prometheus metrics, written with `prometheus-client`. Counters and
//! histograms (transitions, round trips, echoes, pings, stalls) are fed by a
//! sink of the engine's [`Update`]s; every state, phi, strength and the link
//! are read from the fleet model at scrape time, as are the link's and the
//! sinks' own counters. Encoded as the Prometheus text format on `GET /metrics`.
//!
//! Labels are limited to `service` and `instance`, plus small closed sets
//! (a state code, a reject reason, a sink's name), so a fleet of N instances
//! costs O(N) series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_lib::plumbing::LinkStats;
use orchestrator_lib::wire::RejectReason;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use tokio::sync::mpsc;

use crate::fleet::Shared;
use crate::history::Health;
use crate::status::link_code;
use crate::update::{EchoSeen, Update};

/// The `Content-Type` of what [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn instance_labels(service: &str, instance: &str) -> Labels {
    vec![
        ("service", service.to_owned()),
        ("instance", instance.to_owned()),
    ]
}

/// 0.5 ms to 10 s in 1-2.5-5 steps: a local broker's round trip up to a
/// service answering after the timeout. Few buckets, since every service has
/// a histogram of its own.
const RTT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn rtt_histogram() -> Histogram {
    Histogram::new(RTT_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    /// The model every instance's state is read from at each scrape.
    fleet: Shared,
    up: Family<Labels, Gauge>,
    state: Family<Labels, Gauge>,
    rtt: Family<Labels, Histogram, fn() -> Histogram>,
    /// Each service's histogram handle, so an echo costs no label allocation.
    rtt_by_service: Mutex<std::collections::HashMap<String, Histogram>>,
    transitions: Family<Labels, Counter>,
    /// 1 while a service is below its expected instances.
    degraded: Family<Labels, Gauge>,
    phi: Family<Labels, FloatGauge>,
    uptime: Family<Labels, FloatGauge>,
    coverage: Family<Labels, FloatGauge>,
    stalls: Counter,
    echoes: Counter,
    pings: Counter,
    link_up: Gauge,
    /// 1 with a key (HEARTBEAT_KEY): an alert on 0 catches a monitor
    /// started without one.
    signed: Gauge,
    link_state: Family<Labels, Gauge>,
    lag: FloatGauge,
    sink_dropped: Family<Labels, Counter>,
    link_stats: Arc<LinkStats>,
    /// The link's counters, brought up to date on each scrape.
    received: Counter,
    published: Counter,
    publish_dropped: Counter,
    rejected: Family<Labels, Counter>,
    /// `unsigned` and `bad_signature`, by the service the body names.
    rejected_by_service: Family<Labels, Counter>,
    /// The alert targets' and the history store's own counters, caught up on each scrape.
    sinks: Mutex<SinkStats>,
    notify_sent: Family<Labels, Counter>,
    notify_failed: Family<Labels, Counter>,
    notify_dropped: Family<Labels, Counter>,
    notify_pending: Family<Labels, Gauge>,
    notify_expired: Family<Labels, Counter>,
    notify_replaced: Family<Labels, Counter>,
    history_written: Counter,
    history_failures: Counter,
    history_dropped: Counter,
    history_up: Gauge,
    history_waiting: Gauge,
    /// The HTTP endpoint's connections (`http::server`), caught up on each scrape.
    pub http: Arc<HttpStats>,
    http_open: Gauge,
    http_max: Gauge,
    http_accepted: Counter,
    http_at_cap: Counter,
    http_header_timeouts: Counter,
    http_accept_errors: Counter,
    /// In a monitor group: 1 on the leader, 0 elsewhere (by `group`).
    leader: Family<Labels, Gauge>,
    /// Per member alive, the share of this monitor's verdicts it shares.
    agreement: Family<Labels, FloatGauge>,
    member_alive: Family<Labels, Gauge>,
    /// The interval in force and what it costs (the model's `cost`).
    interval: FloatGauge,
    per_round: Gauge,
    projected: FloatGauge,
    budget: Gauge,
    within_budget: Gauge,
    scrape: Mutex<()>,
}

/// What the endpoint counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections served now.
    pub open: AtomicU64,
    /// The cap in force (after fitting it to the descriptor limit).
    pub max: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Times the cap was reached and new connections had to wait.
    pub at_cap: AtomicU64,
    /// Connections closed for sending no complete headers in time.
    pub header_timeouts: AtomicU64,
    /// Accepts that failed (out of descriptors, mostly).
    pub accept_errors: AtomicU64,
}

/// Where the sinks keep their own counters: `[[notify]]` targets and the
/// history store.
#[derive(Default, Clone)]
pub struct SinkStats {
    /// The targets configured now (a reload may change them).
    pub notify: crate::notify::Stats,
    /// Each sink of the engine's updates: its name, and the updates its full queue dropped.
    pub dropped: Vec<(&'static str, Arc<AtomicU64>)>,
    pub history: Option<Arc<Health>>,
}

impl Metrics {
    pub fn new(link_stats: Arc<LinkStats>, fleet: Shared) -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            fleet,
            up: Family::default(),
            state: Family::default(),
            rtt: Family::new_with_constructor(rtt_histogram),
            rtt_by_service: Mutex::default(),
            transitions: Family::default(),
            degraded: Family::default(),
            phi: Family::default(),
            uptime: Family::default(),
            coverage: Family::default(),
            stalls: Counter::default(),
            echoes: Counter::default(),
            pings: Counter::default(),
            link_up: Gauge::default(),
            signed: Gauge::default(),
            link_state: Family::default(),
            lag: FloatGauge::default(),
            sink_dropped: Family::default(),
            link_stats,
            received: Counter::default(),
            published: Counter::default(),
            publish_dropped: Counter::default(),
            rejected: Family::default(),
            rejected_by_service: Family::default(),
            sinks: Mutex::default(),
            notify_sent: Family::default(),
            notify_failed: Family::default(),
            notify_dropped: Family::default(),
            notify_pending: Family::default(),
            notify_expired: Family::default(),
            notify_replaced: Family::default(),
            history_written: Counter::default(),
            history_failures: Counter::default(),
            history_dropped: Counter::default(),
            history_up: Gauge::default(),
            history_waiting: Gauge::default(),
            http: Arc::default(),
            http_open: Gauge::default(),
            http_max: Gauge::default(),
            http_accepted: Counter::default(),
            http_at_cap: Counter::default(),
            http_header_timeouts: Counter::default(),
            http_accept_errors: Counter::default(),
            leader: Family::default(),
            agreement: Family::default(),
            member_alive: Family::default(),
            interval: FloatGauge::default(),
            per_round: Gauge::default(),
            projected: FloatGauge::default(),
            budget: Gauge::default(),
            within_budget: Gauge::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register_with_unit(
            "heartbeat_interval",
            "The ping interval in force: the configured one, or what [budget] chose",
            Unit::Seconds,
            metrics.interval.clone(),
        );
        registry.register(
            "heartbeat_messages_per_round",
            "Messages one round costs the broker: 1 ping published, and per instance answering its delivery, its echo and the echo's delivery (1 + 3N)",
            metrics.per_round.clone(),
        );
        registry.register(
            "heartbeat_messages_per_month_projected",
            "Messages a month at the interval in force and the messages per round",
            metrics.projected.clone(),
        );
        registry.register(
            "heartbeat_budget_messages_per_month",
            "[budget] messages_per_month; 0 without a budget",
            metrics.budget.clone(),
        );
        registry.register(
            "heartbeat_budget_within",
            "1 while the projection is within the budget (always without one)",
            metrics.within_budget.clone(),
        );
        registry.register(
            "heartbeat_up",
            "1 while the instance counts as alive (UP, SLOW, or SUSPECT not yet DOWN; under STALE its last verdict), 0 otherwise",
            metrics.up.clone(),
        );
        registry.register(
            "heartbeat_state",
            "The instance's current state: 1 on the series whose state label it is in",
            metrics.state.clone(),
        );
        registry.register_with_unit(
            "heartbeat_rtt",
            "Round trip from ping to echo, on the monitor's clock, per service",
            Unit::Seconds,
            metrics.rtt.clone(),
        );
        registry.register(
            "heartbeat_transitions",
            "State changes, by service and target state",
            metrics.transitions.clone(),
        );
        registry.register(
            "heartbeat_service_degraded",
            "1 while the service has fewer instances alive than it should have (its `instances` setting)",
            metrics.degraded.clone(),
        );
        registry.register(
            "heartbeat_phi",
            "Phi accrual suspicion of each instance judged by phi, at the scrape",
            metrics.phi.clone(),
        );
        registry.register(
            "heartbeat_uptime_ratio",
            "Time up out of the time judged since this monitor began watching the instance, 0 to 1; LEFT and STALE time are not judged (README: how uptime is computed)",
            metrics.uptime.clone(),
        );
        registry.register(
            "heartbeat_uptime_coverage_ratio",
            "The share of the time watched that the uptime could judge, 0 to 1",
            metrics.coverage.clone(),
        );
        registry.register(
            "heartbeat_stalls",
            "Times the monitor's own loop ran so late that it stopped judging for a while",
            metrics.stalls.clone(),
        );
        registry.register(
            "heartbeat_echoes_received",
            "Echoes received from services",
            metrics.echoes.clone(),
        );
        registry.register(
            "heartbeat_pings_sent",
            "Pings published",
            metrics.pings.clone(),
        );
        registry.register(
            "heartbeat_broker_link_up",
            "1 while the monitor's link to the broker is connected",
            metrics.link_up.clone(),
        );
        registry.register(
            "heartbeat_signed",
            "1 when heartbeats are signed (HEARTBEAT_KEY set); 0 when anyone who can publish to the broker can forge them",
            metrics.signed.clone(),
        );
        registry.register(
            "heartbeat_broker_link_state",
            "The broker link's state: 1 on the series whose state label it is in",
            metrics.link_state.clone(),
        );
        registry.register_with_unit(
            "heartbeat_event_loop_lag",
            "How late the monitor's runtime ran its latest 100 ms timer tick",
            Unit::Seconds,
            metrics.lag.clone(),
        );
        registry.register(
            "heartbeat_http_connections_open",
            "Connections the HTTP endpoint serves now",
            metrics.http_open.clone(),
        );
        registry.register(
            "heartbeat_http_connections_max",
            "The most connections the HTTP endpoint serves at once ([http] max_connections, fitted to the descriptor limit); more wait",
            metrics.http_max.clone(),
        );
        registry.register(
            "heartbeat_http_connections_accepted",
            "Connections the HTTP endpoint accepted",
            metrics.http_accepted.clone(),
        );
        registry.register(
            "heartbeat_http_connections_at_cap",
            "Times the HTTP endpoint reached its connection cap, so new connections waited",
            metrics.http_at_cap.clone(),
        );
        registry.register(
            "heartbeat_http_header_timeouts",
            "Connections closed for not sending a request's headers in time",
            metrics.http_header_timeouts.clone(),
        );
        registry.register(
            "heartbeat_http_accept_errors",
            "Connections the HTTP endpoint could not accept (out of descriptors, mostly)",
            metrics.http_accept_errors.clone(),
        );
        registry.register(
            "heartbeat_updates_dropped",
            "Engine updates a full sink queue lost, by sink",
            metrics.sink_dropped.clone(),
        );
        registry.register(
            "heartbeat_messages_received",
            "Message bodies that reached the monitor's queue",
            metrics.received.clone(),
        );
        registry.register(
            "heartbeat_messages_published",
            "Messages handed to the broker",
            metrics.published.clone(),
        );
        registry.register(
            "heartbeat_messages_publish_dropped",
            "Outgoing messages dropped because the link was down or behind",
            metrics.publish_dropped.clone(),
        );
        registry.register(
            "heartbeat_messages_rejected",
            "Message bodies rejected without requeue, by reason",
            metrics.rejected.clone(),
        );
        registry.register(
            "heartbeat_messages_rejected_by_service",
            "Echoes and goodbyes rejected for their signature (unsigned, bad_signature), \
             by the service their body names: a claim read for this count only, never trusted; \
             the 65th name on is counted as \"*\"",
            metrics.rejected_by_service.clone(),
        );
        registry.register(
            "heartbeat_notify_sent",
            "Alerts delivered, by [[notify]] target (index and kind)",
            metrics.notify_sent.clone(),
        );
        registry.register(
            "heartbeat_notify_failed",
            "Deliveries that failed after their quick retries, by [[notify]] target \
             (all but Alertmanager's alerts then wait and are tried again)",
            metrics.notify_failed.clone(),
        );
        registry.register(
            "heartbeat_notify_pending",
            "Alerts waiting to be delivered (all but alertmanager), by [[notify]] target",
            metrics.notify_pending.clone(),
        );
        registry.register(
            "heartbeat_notify_expired",
            "Alerts given up undelivered after retry_for, by [[notify]] target",
            metrics.notify_expired.clone(),
        );
        registry.register(
            "heartbeat_notify_replaced",
            "Undelivered alerts not sent because a later event about the same alert \
             took their place, by [[notify]] target",
            metrics.notify_replaced.clone(),
        );
        registry.register(
            "heartbeat_notify_dropped",
            "Alerts dropped because a target's queue was full, by [[notify]] target",
            metrics.notify_dropped.clone(),
        );
        registry.register(
            "heartbeat_history_records_written",
            "Transitions and instance-minutes written to the history store",
            metrics.history_written.clone(),
        );
        registry.register(
            "heartbeat_history_write_failures",
            "Writes to the history store that failed (each is tried again)",
            metrics.history_failures.clone(),
        );
        registry.register(
            "heartbeat_history_records_dropped",
            "History records dropped: a full queue, or a backlog over its bound",
            metrics.history_dropped.clone(),
        );
        registry.register(
            "heartbeat_history_store_up",
            "1 while the history store takes writes; 0 from a failed write, a missing file or a call past its deadline until a write succeeds",
            metrics.history_up.clone(),
        );
        registry.register(
            "heartbeat_history_records_waiting",
            "History records waiting for the store to take them (bounded; past the bound the oldest are dropped and counted)",
            metrics.history_waiting.clone(),
        );
        registry.register(
            "heartbeat_leader",
            "In a monitor group: 1 while this monitor leads (it alone sends notifications), 0 while it stands by",
            metrics.leader.clone(),
        );
        registry.register(
            "heartbeat_group_agreement",
            "In a monitor group, per member alive: the share (0 to 1) of this monitor's verdicts (each instance's state, each service below full strength) that the member shares",
            metrics.agreement.clone(),
        );
        registry.register(
            "heartbeat_group_member_alive",
            "In a monitor group, per member heard lately: 1 while it is alive (heard within three intervals)",
            metrics.member_alive.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Count one update from the engine: transitions, round trips, echoes,
    /// pings and stalls. States are not kept here: see [`Metrics::encode`].
    pub fn observe(&self, update: &Update) {
        match update {
            Update::Transition(report) => {
                let t = &report.transition;
                self.transitions
                    .get_or_create(&vec![
                        ("service", t.key.service.clone()),
                        ("to", t.to.code().to_owned()),
                    ])
                    .inc();
            }
            Update::Echoes(echoes) => {
                self.echoes.inc_by(echoes.len() as u64);
                // The lock once a batch, not once an echo.
                let mut by_service = self
                    .rtt_by_service
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for EchoSeen { key, rtt, .. } in echoes.iter() {
                    // Only an echo of a recent ping is a round trip.
                    let Some(rtt) = rtt else { continue };
                    let histogram = match by_service.get(&key.service) {
                        Some(histogram) => histogram,
                        None => by_service.entry(key.service.clone()).or_insert_with(|| {
                            self.rtt
                                .get_or_create_owned(&vec![("service", key.service.clone())])
                        }),
                    };
                    histogram.observe(rtt.as_secs_f64());
                }
            }
            Update::Forgotten(keys) => {
                self.forget_empty_services(keys.iter().map(|k| k.service.as_str()));
            }
            Update::PingSent { .. } => {
                self.pings.inc();
            }
            Update::Stall { .. } => {
                self.stalls.inc();
            }
            Update::Service(_) | Update::Link(_) | Update::Reconfigured(_) | Update::Cost(_) => {}
        }
    }

    /// A service none of whose instances is known any more (all forgotten)
    /// loses its per-service series too, so made-up names leave nothing.
    fn forget_empty_services<'a>(&self, services: impl Iterator<Item = &'a str>) {
        let mut candidates: Vec<&str> = services.collect();
        candidates.sort_unstable();
        candidates.dedup();
        {
            let fleet = self.fleet.read();
            let known: std::collections::HashSet<&str> =
                fleet.rows.iter().map(|r| r.key.service.as_str()).collect();
            candidates.retain(|s| !known.contains(s));
        }
        if candidates.is_empty() {
            return;
        }
        let mut by_service = self
            .rtt_by_service
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for service in candidates {
            let labels = vec![("service", service.to_owned())];
            by_service.remove(service);
            self.rtt.remove(&labels);
            for state in crate::detector::State::ALL {
                self.transitions.remove(&vec![
                    ("service", service.to_owned()),
                    ("to", state.code().to_owned()),
                ]);
            }
        }
    }

    /// Every instance's state, alive flag and phi, each service's strength
    /// and the link, as the fleet model has them now: the old series go, so
    /// a forgotten instance or a left state leaves nothing behind.
    fn read_fleet(&self) {
        let now = tokio::time::Instant::now();
        let fleet = self.fleet.read();
        self.up.clear();
        self.state.clear();
        self.phi.clear();
        self.uptime.clear();
        self.coverage.clear();
        self.degraded.clear();
        let tally = fleet.tally();
        for row in &fleet.rows {
            let mut labels = instance_labels(&row.key.service, &row.key.instance);
            if let Some(phi) = row.phi_at(now) {
                self.phi.get_or_create(&labels).set(phi);
            }
            if let Some(uptime) = row.uptime(now) {
                if let Some(ratio) = uptime.ratio {
                    self.uptime.get_or_create(&labels).set(ratio);
                }
                self.coverage.get_or_create(&labels).set(uptime.coverage);
            }
            self.up
                .get_or_create(&labels)
                .set(i64::from(row.counts_alive()));
            labels.push(("state", row.state.code().to_owned()));
            self.state.get_or_create(&labels).set(1);
        }
        for service in tally.services.keys() {
            self.degraded
                .get_or_create(&vec![("service", service.clone())])
                .set(i64::from(fleet.judged.contains_key(service)));
        }
        self.leader.clear();
        self.agreement.clear();
        self.member_alive.clear();
        if let Some(group) = crate::status::group_info(&fleet, now) {
            let named =
                |member: &str| vec![("group", group.name.clone()), ("member", member.to_owned())];
            self.leader
                .get_or_create(&vec![("group", group.name.clone())])
                .set(i64::from(group.leading));
            for member in &group.members {
                self.member_alive
                    .get_or_create(&named(&member.id))
                    .set(i64::from(member.alive));
                if let Some(agreement) = member.agreement {
                    self.agreement
                        .get_or_create(&named(&member.id))
                        .set(agreement);
                }
            }
        }
        if let Some(cost) = fleet.cost.as_deref() {
            self.interval.set(cost.interval.as_secs_f64());
            self.per_round
                .set(i64::try_from(cost.per_round).unwrap_or(i64::MAX));
            self.projected.set(cost.projected);
            self.budget
                .set(i64::try_from(cost.budget.unwrap_or(0)).unwrap_or(i64::MAX));
            self.within_budget.set(i64::from(cost.within));
        }
        let (code, _) = link_code(&fleet.link);
        self.link_up.set(i64::from(code == "connected"));
        self.link_state.clear();
        self.link_state
            .get_or_create(&vec![("state", code.to_owned())])
            .set(1);
    }

    /// Report the alert targets' and the history store's counters too.
    pub fn watch_sinks(&self, sinks: SinkStats) {
        *self.sinks.lock().unwrap_or_else(|e| e.into_inner()) = sinks;
    }

    pub fn set_signed(&self, signed: bool) {
        self.signed.set(i64::from(signed));
    }

    pub fn set_event_loop_lag(&self, lag: Duration) {
        self.lag.set(lag.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let catch_up = |counter: &Counter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.received, self.link_stats.received());
        let http = |n: &AtomicU64| n.load(Ordering::Relaxed);
        self.http_open
            .set(i64::try_from(http(&self.http.open)).unwrap_or(i64::MAX));
        self.http_max
            .set(i64::try_from(http(&self.http.max)).unwrap_or(i64::MAX));
        catch_up(&self.http_accepted, http(&self.http.accepted));
        catch_up(&self.http_at_cap, http(&self.http.at_cap));
        catch_up(&self.http_header_timeouts, http(&self.http.header_timeouts));
        catch_up(&self.http_accept_errors, http(&self.http.accept_errors));
        catch_up(&self.published, self.link_stats.published());
        catch_up(&self.publish_dropped, self.link_stats.dropped());
        for reason in RejectReason::ALL {
            catch_up(
                &self
                    .rejected
                    .get_or_create(&vec![("reason", reason.code().to_owned())]),
                self.link_stats.rejected_for(reason),
            );
        }
        for (service, reason, count) in self.link_stats.unverified_by_service() {
            let labels = vec![("service", service), ("reason", reason.code().to_owned())];
            catch_up(&self.rejected_by_service.get_or_create(&labels), count);
        }
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let targets = sinks
            .notify
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for target in &targets {
            let labels = vec![
                ("target", target.index.to_string()),
                ("kind", target.kind.clone()),
            ];
            catch_up(
                &self.notify_sent.get_or_create(&labels),
                target.sent.load(Ordering::Relaxed),
            );
            catch_up(
                &self.notify_failed.get_or_create(&labels),
                target.failed.load(Ordering::Relaxed),
            );
            catch_up(
                &self.notify_dropped.get_or_create(&labels),
                target.dropped.load(Ordering::Relaxed),
            );
            catch_up(
                &self.notify_expired.get_or_create(&labels),
                target.expired.load(Ordering::Relaxed),
            );
            catch_up(
                &self.notify_replaced.get_or_create(&labels),
                target.replaced.load(Ordering::Relaxed),
            );
            self.notify_pending
                .get_or_create(&labels)
                .set(i64::try_from(target.pending.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        }
        for (sink, dropped) in &sinks.dropped {
            let counter = self
                .sink_dropped
                .get_or_create(&vec![("sink", (*sink).to_owned())]);
            catch_up(&counter, dropped.load(Ordering::Relaxed));
        }
        if let Some(health) = &sinks.history {
            catch_up(
                &self.history_written,
                health.written.load(Ordering::Relaxed),
            );
            catch_up(
                &self.history_failures,
                health.failures.load(Ordering::Relaxed),
            );
            catch_up(
                &self.history_dropped,
                health.dropped.load(Ordering::Relaxed),
            );
            self.history_up
                .set(i64::from(health.reachable.load(Ordering::Relaxed)));
            self.history_waiting
                .set(i64::try_from(health.waiting.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        }
        self.read_fleet();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Count the engine's updates from a sink until its stream ends.
pub async fn run(mut updates: mpsc::Receiver<Update>, metrics: Arc<Metrics>) {
    let mut batch = Vec::new();
    while updates.recv_many(&mut batch, 256).await > 0 {
        for update in batch.drain(..) {
            metrics.observe(&update);
        }
    }
}

/// Measure how late the runtime runs a timer, until `shutdown`: a loop that
/// is kept busy or starved shows here before it shows anywhere else.
pub async fn probe_event_loop_lag(
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    const EVERY: Duration = Duration::from_millis(100);
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            due = ticks.tick() => {
                metrics.set_event_loop_lag(tokio::time::Instant::now().saturating_duration_since(due));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{InstanceKey, Reason, State, Transition};
    use crate::update::Report;

    fn transition(to: State) -> Update {
        Update::Transition(Report {
            at: chrono::Utc::now(),
            transition: Transition {
                key: InstanceKey::new("orders", "o-1"),
                from: State::Up,
                to,
                reason: Reason::Recovered,
                rtt: None,
            },
        })
    }

    #[test]
    fn exposition_follows_prometheus_naming() {
        let now = tokio::time::Instant::now();
        let fleet = Shared::new(crate::fleet::Fleet::new(
            &["orders".into()],
            now,
            chrono::Utc::now(),
        ));
        let metrics = Metrics::new(Arc::default(), fleet.clone());
        // As the fleet's feed does: the model first, then the sink.
        let feed = |update: Update| {
            fleet.write().apply(&update, now, chrono::Utc::now());
            metrics.observe(&update);
        };
        assert!(metrics.encode().contains("instance=\"-\""));
        feed(transition(State::Up));
        feed(transition(State::Down));
        feed(Update::Echoes(Arc::new([EchoSeen {
            key: InstanceKey::new("orders", "o-1"),
            id: crate::detector::InstanceId(1),
            seq: 1,
            rtt: Some(Duration::from_millis(3)),
            phi: Some(crate::detector::PhiModel {
                mean: 1.0,
                std_dev: 0.2,
                threshold: 8.0,
                params: crate::detector::PhiParams {
                    min_std_dev: Duration::from_millis(100),
                    acceptable_pause: Duration::ZERO,
                },
            }),
            at: now,
        }])));
        feed(Update::Link(
            orchestrator_lib::plumbing::LinkStatus::Connected,
        ));
        let text = metrics.encode();
        for line in [
            "heartbeat_up{service=\"orders\",instance=\"o-1\"} 0",
            "heartbeat_state{service=\"orders\",instance=\"o-1\",state=\"down\"} 1",
            "heartbeat_transitions_total{service=\"orders\",to=\"up\"} 1",
            "heartbeat_transitions_total{service=\"orders\",to=\"down\"} 1",
            "heartbeat_rtt_seconds_count{service=\"orders\"} 1",
            "heartbeat_echoes_received_total 1",
            "heartbeat_broker_link_up 1",
            "heartbeat_broker_link_state{state=\"connected\"} 1",
            "heartbeat_messages_rejected_total{reason=\"not_json\"} 0",
            "# TYPE heartbeat_event_loop_lag_seconds gauge",
            "heartbeat_phi{service=\"orders\",instance=\"o-1\"} ",
            "heartbeat_stalls_total 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("state=\"up\"} 1"),
            "the old state's series is gone:\n{text}"
        );
        assert!(
            !text.contains("instance=\"-\""),
            "the placeholder gave way to the real instance:\n{text}"
        );
        // Forgotten: the instance's series go, and with its last instance
        // the service's own.
        feed(Update::Forgotten(Arc::new([InstanceKey::new(
            "orders", "o-1",
        )])));
        let text = metrics.encode();
        assert!(
            !text.contains("service=\"orders\""),
            "a forgotten service keeps series:\n{text}"
        );
    }
}
