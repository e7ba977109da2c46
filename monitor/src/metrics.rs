//! Prometheus metrics, written with `prometheus-client`. Fed by the status
//! board's sink from the engine's [`Update`]s, and by the link's own counters
//! at scrape time; encoded as the Prometheus text format on `GET /metrics`.
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

use std::collections::HashMap;

use crate::detector::{InstanceKey, PhiModel, UNSEEN_INSTANCE};
use crate::engine::{EchoSeen, Update};
use crate::history::Health;
use crate::notify::TargetStats;
use crate::status::{link_code, state_code};

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
    up: Family<Labels, Gauge>,
    state: Family<Labels, Gauge>,
    /// Each instance's current state code, so the old state's series can be removed.
    current_state: Mutex<std::collections::HashMap<(String, String), String>>,
    rtt: Family<Labels, Histogram, fn() -> Histogram>,
    /// Each service's histogram handle, so an echo costs no label allocation.
    rtt_by_service: Mutex<std::collections::HashMap<String, Histogram>>,
    transitions: Family<Labels, Counter>,
    /// 1 while a service is below its expected instances.
    degraded: Family<Labels, Gauge>,
    phi: Family<Labels, FloatGauge>,
    /// Phi's view of each instance it judges, and its last echo: phi is
    /// computed for the instant of each scrape.
    phi_models: Mutex<HashMap<InstanceKey, (PhiModel, tokio::time::Instant)>>,
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
    history_written: Counter,
    history_failures: Counter,
    history_dropped: Counter,
    history_up: Gauge,
    history_waiting: Gauge,
    scrape: Mutex<()>,
}

/// Where the sinks keep their own counters: `[[notify]]` targets and the
/// history store.
#[derive(Default, Clone)]
pub struct SinkStats {
    pub notify: Vec<Arc<TargetStats>>,
    /// Transitions the notifier's queue turned away before any target saw them.
    pub notify_intake_dropped: Option<Arc<AtomicU64>>,
    pub history: Option<Arc<Health>>,
}

impl Metrics {
    pub fn new(link_stats: Arc<LinkStats>) -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            up: Family::default(),
            state: Family::default(),
            current_state: Mutex::default(),
            rtt: Family::new_with_constructor(rtt_histogram),
            rtt_by_service: Mutex::default(),
            transitions: Family::default(),
            degraded: Family::default(),
            phi: Family::default(),
            phi_models: Mutex::default(),
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
            history_written: Counter::default(),
            history_failures: Counter::default(),
            history_dropped: Counter::default(),
            history_up: Gauge::default(),
            history_waiting: Gauge::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "heartbeat_up",
            "1 when the instance is UP, 0 otherwise",
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
            "Alerts given up after every retry, by [[notify]] target",
            metrics.notify_failed.clone(),
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
        let metrics = Self {
            registry,
            ..metrics
        };
        metrics.observe(&Update::Link(
            orchestrator_lib::plumbing::LinkStatus::Connecting,
        ));
        metrics
    }

    /// Account for one update from the engine.
    pub fn observe(&self, update: &Update) {
        match update {
            Update::Transition(report) => {
                let t = &report.transition;
                let to = state_code(t.to);
                if t.key.instance != UNSEEN_INSTANCE {
                    // The expected-service placeholder gives way to a real instance.
                    self.forget(&t.key.service, UNSEEN_INSTANCE);
                }
                let labels = instance_labels(&t.key.service, &t.key.instance);
                self.up.get_or_create(&labels).set(i64::from(to == "up"));
                self.set_state(&t.key.service, &t.key.instance, &to);
                self.transitions
                    .get_or_create(&vec![("service", t.key.service.clone()), ("to", to)])
                    .inc();
            }
            Update::Echoes(echoes) => {
                self.echoes.inc_by(echoes.len() as u64);
                // Both locks once a batch, not once an echo.
                let mut models = self.phi_models.lock().unwrap_or_else(|e| e.into_inner());
                let mut by_service = self
                    .rtt_by_service
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for EchoSeen {
                    key, rtt, phi, at, ..
                } in echoes.iter()
                {
                    // Only an echo of a recent ping is a round trip, and a heartbeat for phi.
                    let Some(rtt) = rtt else { continue };
                    match phi {
                        Some(model) => match models.get_mut(key) {
                            Some(known) => *known = (*model, *at),
                            None => {
                                models.insert(key.clone(), (*model, *at));
                            }
                        },
                        // Fixed mode keeps no model: no key to hash per echo.
                        None if models.is_empty() => {}
                        None => {
                            models.remove(key);
                        }
                    }
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
            Update::Service(report) => {
                let c = &report.change;
                self.degraded
                    .get_or_create(&vec![("service", c.service.clone())])
                    .set(i64::from(c.to != crate::detector::Strength::Full));
            }
            Update::Forgotten(keys) => {
                let mut models = self.phi_models.lock().unwrap_or_else(|e| e.into_inner());
                for key in keys.iter() {
                    self.forget(&key.service, &key.instance);
                    models.remove(key);
                    self.phi
                        .remove(&instance_labels(&key.service, &key.instance));
                }
                drop(models);
                self.forget_empty_services(keys.iter().map(|k| k.service.as_str()));
            }
            Update::PingSent { .. } => {
                self.pings.inc();
            }
            Update::Stall { .. } => {
                self.stalls.inc();
            }
            Update::Link(status) => {
                let (code, _) = link_code(status);
                self.link_up.set(i64::from(code == "connected"));
                self.link_state.clear();
                self.link_state
                    .get_or_create(&vec![("state", code.to_owned())])
                    .set(1);
            }
        }
    }

    /// An instance known before any transition (an expected service).
    pub fn known(&self, service: &str, instance: &str, state: &str) {
        self.up
            .get_or_create(&instance_labels(service, instance))
            .set(i64::from(state == "up"));
        self.set_state(service, instance, state);
    }

    /// Remove an instance's series, if it has any.
    fn forget(&self, service: &str, instance: &str) {
        let mut current = self.current_state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = current.remove(&(service.to_owned(), instance.to_owned())) {
            let mut labels = instance_labels(service, instance);
            self.up.remove(&labels);
            labels.push(("state", old));
            self.state.remove(&labels);
        }
    }

    /// A service none of whose instances is known any more (all forgotten)
    /// loses its per-service series too, so made-up names leave nothing.
    fn forget_empty_services<'a>(&self, services: impl Iterator<Item = &'a str>) {
        let mut candidates: Vec<&str> = services.collect();
        candidates.sort_unstable();
        candidates.dedup();
        let empty: Vec<&str> = {
            let current = self.current_state.lock().unwrap_or_else(|e| e.into_inner());
            let known: std::collections::HashSet<&str> = current
                .keys()
                .map(|(service, _)| service.as_str())
                .collect();
            candidates.retain(|s| !known.contains(s));
            candidates
        };
        if empty.is_empty() {
            return;
        }
        let mut by_service = self
            .rtt_by_service
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for service in empty {
            let labels = vec![("service", service.to_owned())];
            by_service.remove(service);
            self.rtt.remove(&labels);
            self.degraded.remove(&labels);
            for state in crate::detector::State::ALL {
                self.transitions.remove(&vec![
                    ("service", service.to_owned()),
                    ("to", state.code().to_owned()),
                ]);
            }
        }
    }

    fn set_state(&self, service: &str, instance: &str, to: &str) {
        let mut current = self.current_state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (service.to_owned(), instance.to_owned());
        if let Some(old) = current.insert(key, to.to_owned()) {
            let mut labels = instance_labels(service, instance);
            labels.push(("state", old));
            self.state.remove(&labels);
        }
        let mut labels = instance_labels(service, instance);
        labels.push(("state", to.to_owned()));
        self.state.get_or_create(&labels).set(1);
    }

    /// Report the alert targets' and the history store's counters too.
    pub fn watch_sinks(&self, sinks: SinkStats) {
        *self.sinks.lock().unwrap_or_else(|e| e.into_inner()) = sinks;
    }

    /// An update a sink's full queue lost.
    pub fn sink_dropped(&self, sink: &'static str) {
        self.sink_dropped
            .get_or_create(&vec![("sink", sink.to_owned())])
            .inc();
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
        for target in &sinks.notify {
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
        }
        if let Some(dropped) = &sinks.notify_intake_dropped {
            let counter = self
                .sink_dropped
                .get_or_create(&vec![("sink", "notify".to_owned())]);
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
        let now = tokio::time::Instant::now();
        for (key, (model, last_echo)) in self
            .phi_models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            self.phi
                .get_or_create(&instance_labels(&key.service, &key.instance))
                .set(model.phi(now.saturating_duration_since(*last_echo)));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
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
    use crate::engine::Report;

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
        let metrics = Metrics::new(Arc::default());
        metrics.known("orders", UNSEEN_INSTANCE, "never_seen");
        assert!(metrics.encode().contains("instance=\"-\""));
        metrics.observe(&transition(State::Up));
        metrics.observe(&transition(State::Down));
        metrics.observe(&Update::Echoes(Arc::new([EchoSeen {
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
            at: tokio::time::Instant::now(),
        }])));
        metrics.observe(&Update::Link(
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
        metrics.observe(&Update::Forgotten(Arc::new([InstanceKey::new(
            "orders", "o-1",
        )])));
        let text = metrics.encode();
        assert!(
            !text.contains("service=\"orders\""),
            "a forgotten service keeps series:\n{text}"
        );
    }
}
