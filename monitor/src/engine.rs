//! The monitor's engine: pings on a timer, feeds echoes and goodbyes to the
//! [`Detector`], and reports what happens as [`Update`]s. All the I/O of
//! monitoring lives here; all the judgement lives in the detector.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use orchestrator_lib::plumbing::{Incoming, LinkStatus};
use orchestrator_lib::wire::{Goodbye, Message, Ping, RejectReason};
use orchestrator_lib::{Error, Link};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::budget::{self, Cost, Plan};
use crate::detector::{
    Blindness, Detector, InstanceKey, LastKnown, Policy, ServiceChange, Transition,
};
use crate::fleet::Sink;
use crate::limited::{Limited, warn_limited};
use crate::replay::ReplayGuard;
use crate::sdnotify::Pulse;
use crate::update::{EchoSeen, Reconfigured, Report, ServiceReport, Update};

/// The finest grain at which timeouts are judged.
const MAX_CHECK_PERIOD: Duration = Duration::from_millis(100);
/// Echoes go to the sinks in one update per check (every
/// [`MAX_CHECK_PERIOD`] at most), or as soon as this many are held: a
/// display drawing a few frames a second gains nothing from one update per
/// batch, and each update wakes every sink. Each echo keeps its own instant.
const ECHO_FLUSH_AT: usize = 4096;
/// Forgetting walks the fleet: at most this often (or a quarter of
/// `forget_after`, if shorter, so it is kept to within a quarter).
const FORGET_SWEEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub monitor_id: String,
    /// Our queue; services send echoes and goodbyes to it.
    pub reply_to: String,
    pub interval: Duration,
    /// A ping unread after this long is discarded by the broker.
    pub ping_ttl: Duration,
    pub expect: Vec<String>,
    /// Heartbeats are signed (the link has a key): refuse replayed echoes.
    pub signed: bool,
    /// Most instances tracked; echoes from new ones past it are refused.
    pub max_instances: usize,
    /// Instances DOWN or LEFT this long are forgotten.
    pub forget_after: Duration,
    /// Some sink shows or keeps echoes (the dashboard, the status board, the
    /// history). Headless with neither wants transitions only, and is spared
    /// building an update per echo.
    pub echoes_wanted: bool,
    /// Where the loop shows it is alive, at every check, for a supervisor
    /// (`sdnotify`); nobody need read it.
    pub pulse: watch::Sender<Pulse>,
    /// Instances known before a restart (from the history store): DOWN,
    /// reason `restored`, until they answer.
    pub restore: Vec<LastKnown>,
    /// A hosted plan's budget (`[budget]`): the interval is chosen to keep
    /// within it, the timeouts follow. `None`: `interval` always.
    pub budget: Option<BudgetConfig>,
}

/// What the engine needs to keep within a budget: the plan, and the
/// policies as configured, which it scales when the interval changes.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    pub plan: Plan,
    pub default: Policy,
    pub services: Vec<(String, Policy)>,
    /// The plan's caps (0: not watched): warned of at 80%.
    pub connections: u64,
    pub queues: u64,
}

/// Rounds whose echoes count towards the fleet's size: the most of these,
/// so one round that lost an echo or two does not shorten the interval,
/// and a fleet that grew lengthens it at the next ping.
const ROUNDS_COUNTED: usize = 3;

/// What the heartbeat costs, and the interval that keeps it within the
/// budget: counted at every ping from the echoes of the last rounds.
struct Meter {
    configured: Duration,
    configured_ttl: Duration,
    in_force: Duration,
    echoes: u64,
    rounds: std::collections::VecDeque<u64>,
    last: Option<Arc<Cost>>,
    warned: Vec<String>,
}

impl Meter {
    fn new(interval: Duration, ping_ttl: Duration) -> Self {
        Self {
            configured: interval,
            configured_ttl: ping_ttl,
            in_force: interval,
            echoes: 0,
            rounds: std::collections::VecDeque::with_capacity(ROUNDS_COUNTED + 1),
            last: None,
            warned: Vec::new(),
        }
    }

    /// A round ended (a ping is due): its echoes join the count.
    fn round_ended(&mut self) -> u64 {
        self.rounds.push_back(std::mem::take(&mut self.echoes));
        while self.rounds.len() > ROUNDS_COUNTED {
            self.rounds.pop_front();
        }
        self.rounds.iter().copied().max().unwrap_or(0)
    }
}

/// A policy whose timeout follows the interval in force.
fn scaled_policy(policy: &Policy, interval: Duration, configured: Duration) -> Policy {
    Policy {
        timeout: budget::scaled(policy.timeout, interval, configured),
        ..policy.clone()
    }
}

/// A reloaded configuration, as the engine applies it between two of its
/// steps (see `reload`): every tracked instance is kept.
#[derive(Debug)]
pub struct Reload {
    /// The default policy, and each named service's.
    pub default: Policy,
    pub services: Vec<(String, Policy)>,
    pub expect: Vec<String>,
    pub max_instances: usize,
    pub forget_after: Duration,
    pub ping_ttl: Duration,
    /// The sinks' part, handed on in the stream where the engine applied it.
    pub sinks: Arc<Reconfigured>,
    /// Told once it is applied.
    pub applied: oneshot::Sender<()>,
}

/// The Unix time in milliseconds: a run's `boot`. A clock before 1970
/// gives 0, which a service takes only from a monitor it does not know yet
/// or has forgotten.
fn run_started_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Run until `shutdown`, or until the link fails for good.
pub async fn run(
    link: Link,
    mut detector: Detector,
    mut config: EngineConfig,
    updates: Sink,
    mut reloads: mpsc::Receiver<Reload>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let Link {
        publisher,
        mut inbox,
        mut status,
        closer,
        stats,
        ..
    } = link;
    let mut replays = ReplayGuard::default();
    // Goodbyes name the last ping they heard, often the one just echoed:
    // a guard of their own, so an echo does not use up its goodbye's seq.
    let mut farewells = ReplayGuard::default();
    let start = Instant::now();
    for service in &config.expect {
        detector.expect(service, start.into_std());
    }
    let restored: Vec<Transition> = config
        .restore
        .iter()
        .filter_map(|known| detector.restore(known, start.into_std()))
        .collect();
    let mut pings = tokio::time::interval(config.interval);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut meter = Meter::new(config.interval, config.ping_ttl);
    let mut checks = tokio::time::interval(
        MAX_CHECK_PERIOD
            .min(config.interval / 2)
            .max(Duration::from_millis(10)),
    );
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0u64;
    // This run's mark on every ping: with the seq, what makes a ping fresh
    // for a signed service (docs/PROTOCOL.md, "Fresh pings"). Wall-clock
    // milliseconds, so that a later run has a larger one.
    let boot = run_started_ms();
    let mut capped = Limited::new("instance cap".into());
    let mut sweep_every = FORGET_SWEEP.min(config.forget_after / 4);
    let mut last_sweep = start;
    // Pings go out only while the link is up and not blocked: a ping queued
    // behind a block would be answered late and poison the round trips.
    let mut connected = *status.borrow() == LinkStatus::Connected;
    if !connected {
        detector.link_down(Blindness::LinkDown, start.into_std());
    }
    let mut out = Outbox::new(updates);
    // When the first ping went out, until sections are looked at: one
    // timeout and an interval later, every live service has answered.
    let mut sections_from: Option<Instant> = None;
    let mut sections_looked = false;
    if !restored.is_empty() {
        info!(
            instances = restored.len(),
            "restored from the history store: DOWN until they answer"
        );
    }
    out.transitions(restored);

    let outcome = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            changed = status.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                let now_status = status.borrow_and_update().clone();
                let now = Instant::now().into_std();
                config.pulse.send_modify(|pulse| {
                    if now_status == LinkStatus::Connected {
                        pulse.engine_seen = now.into();
                    }
                    pulse.link = now_status.clone();
                });
                out.emit(Update::Link(now_status.clone()));
                match &now_status {
                    LinkStatus::Connected => {
                        connected = true;
                        out.transitions(detector.link_up(now));
                        // Ping at once: STALE instances turn UP on their first
                        // echo, so a broker's return shows within a round trip
                        // for services already back, not an interval later.
                        pings.reset_immediately();
                    }
                    LinkStatus::Blocked { .. } => {
                        connected = false;
                        out.transitions(detector.link_down(Blindness::Blocked, now));
                    }
                    LinkStatus::Failed(error) => break Err(error.clone()),
                    _ => {
                        connected = false;
                        out.transitions(detector.link_down(Blindness::LinkDown, now));
                    }
                }
            }
            _ = pings.tick(), if connected => {
                {
                    // The round before this ping is over (none before the first).
                    let answering = if seq > 0 { meter.round_ended() } else { 0 };
                    let now = Instant::now();
                    if let Some(interval) = cost_at(&mut meter, answering, &config, &mut out) {
                        // The next ping an interval in force from this one.
                        pings = tokio::time::interval_at(now + interval, interval);
                        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        config.ping_ttl = budget::scaled(meter.configured_ttl, interval, meter.configured);
                        config.pulse.send_modify(|pulse| pulse.interval = Some(interval));
                        detector.set_interval(interval);
                        if let Some(plan) = &config.budget {
                            let (transitions, changes) = detector.reconfigure(
                                scaled_policy(&plan.default, interval, meter.configured),
                                plan.services.iter().map(|(s, p)| (s.clone(), scaled_policy(p, interval, meter.configured))).collect(),
                                now.into_std(),
                            );
                            out.transitions(transitions);
                            for change in changes {
                                out.service_change(change);
                            }
                        }
                    }
                }
                seq += 1;
                let ping = Message::Ping(Ping { monitor: config.monitor_id.clone(), seq, boot: Some(boot), sent_at: Some(Utc::now()) });
                match publisher.broadcast(&ping, &config.reply_to, config.ping_ttl) {
                    Ok(()) => {
                        let now = Instant::now();
                        detector.ping_sent(seq, now.into_std());
                        sections_from.get_or_insert(now);
                        config.pulse.send_modify(|pulse| pulse.engine_seen = now);
                        out.emit(Update::PingSent { seq, at: now });
                    }
                    Err(error) => debug!(%error, seq, "ping not sent"),
                }
            }
            batch = inbox.recv_batch() => {
                let Some(batch) = batch else {
                    // The link ended: a fatal failure must not pass for a clean stop.
                    break match &*status.borrow() {
                        LinkStatus::Failed(error) => Err(error.clone()),
                        _ => Ok(()),
                    };
                };
                // Reported after the batch's echoes: a sink that sees an
                // instance UP has seen the echo that made it so (its RTT,
                // its phi), as when echoes went out one at a time.
                let mut transitions = Vec::new();
                let mut made_room = Vec::new();
                // Each message is timed by when the link took it, not by when
                // its batch reached us: the link may have held it (a linger)
                // and the hand-off takes a moment, neither of them the round trip's.
                for Incoming { message, received_at: now, .. } in batch {
                    match message {
                        Message::Echo(echo) => {
                            let key = InstanceKey::new(echo.service, echo.instance);
                            // The link has checked the MAC, which covers the seq.
                            // An echo signed for another monitor's ping, whose
                            // seqs may overlap ours, is refused first.
                            let ours = echo.monitor.as_deref() == Some(config.monitor_id.as_str());
                            if config.signed && !ours {
                                stats.count_rejected(RejectReason::OtherMonitor);
                                debug!(service = %key.service, instance = %key.instance, seq = echo.seq, "refused an echo signed for another monitor");
                                continue;
                            }
                            let InstanceKey { service, instance } = &key;
                            // Only an echo of one of our recent pings is news;
                            // anything else is counted, never an RTT.
                            if !detector.is_recent_ping(service, echo.seq, now.into_std()) {
                                stats.count_rejected(RejectReason::UnknownSeq);
                                debug!(%service, %instance, seq = echo.seq, "refused an echo of no recent ping of ours");
                                continue;
                            }
                            if detector.len() >= config.max_instances && detector.get(service, instance).is_none() {
                                // Room is made by forgetting a name seen once, then
                                // silent (a flood leaves those), never a real instance.
                                match detector.make_room(now.into_std()) {
                                    Some(gone) => {
                                        replays.forget(&gone);
                                        farewells.forget(&gone);
                                        made_room.push(gone);
                                    }
                                    None => {
                                        stats.count_rejected(RejectReason::InstanceCap);
                                        // Names passed wire's name rule: nothing to escape or cut;
                                        // nothing is formatted, and no service counted, unless the
                                        // line is written.
                                        warn_limited!(
                                            capped,
                                            "already tracking {} instances (max_instances), none of them a name seen once and then silent; refused {service:?}/{instance:?}; most instances: {}",
                                            detector.len(),
                                            detector.busiest_service().map_or_else(String::new, |(busiest, n)| format!("service {busiest:?} ({n})"))
                                        );
                                        continue;
                                    }
                                }
                            }
                            // What is left to refuse is the same signed echo twice.
                            // Judged last, so only instances the detector tracks
                            // (bounded by the cap, forgotten with them) get a window.
                            if config.signed && !replays.first_time(&key, echo.seq) {
                                stats.count_rejected(RejectReason::Replayed);
                                debug!(%service, %instance, seq = echo.seq, "refused a replayed echo");
                                continue;
                            }
                            let outcome = detector.echo(service, instance, echo.seq, now.into_std());
                            meter.echoes += 1;
                            if let Some(section) = &outcome.unmatched_section {
                                warn!(
                                    "[services.{section}] matches no service by that name, and {:?} is judged by [detection]: sections name one service exactly (a --count fleet's are {section}-0, {section}-1, ...)",
                                    service
                                );
                            }
                            if config.echoes_wanted {
                                out.echo(EchoSeen { key, id: outcome.id, seq: echo.seq, rtt: outcome.rtt, phi: outcome.phi, at: now });
                            }
                            transitions.extend(outcome.transitions);
                        }
                        Message::Goodbye(bye) => {
                            if config.signed
                                && let Some(reason) = stale_goodbye(&bye, &config.monitor_id, &detector, &mut farewells, now.into_std())
                            {
                                stats.count_rejected(reason);
                                debug!(service = %bye.service, instance = %bye.instance, seq = ?bye.seq, reason = reason.code(), "refused a goodbye");
                                continue;
                            }
                            // A promise to be back: a planned drain, held no longer than forget_after.
                            transitions.extend(match bye.back_within {
                                Some(back) => detector.drain(&bye.service, &bye.instance, back.min(config.forget_after), now.into_std()),
                                None => detector.goodbye(&bye.service, &bye.instance, now.into_std()),
                            });
                        }
                        Message::Ping(ping) => debug!(monitor = %ping.monitor, "ignored a ping sent to a monitor"),
                    }
                }
                out.transitions(transitions);
                if !made_room.is_empty() {
                    debug!(count = made_room.len(), "at max_instances: forgot names seen once, then silent");
                    out.emit(Update::Forgotten(made_room.into()));
                }
                if out.held() >= ECHO_FLUSH_AT {
                    out.flush_echoes();
                }
            }
            Some(reload) = reloads.recv() => {
                let now = Instant::now().into_std();
                // Under a budget the reloaded timeouts are the configured
                // ones: they follow the interval in force, as at start.
                let interval = meter.in_force;
                let (default, services) = match &mut config.budget {
                    Some(plan) => {
                        plan.default = reload.default;
                        plan.services = reload.services;
                        (
                            scaled_policy(&plan.default, interval, meter.configured),
                            plan.services.iter().map(|(s, p)| (s.clone(), scaled_policy(p, interval, meter.configured))).collect(),
                        )
                    }
                    None => (reload.default, reload.services),
                };
                let (transitions, changes) = detector.reconfigure(default, services, now);
                let before = std::mem::replace(&mut config.expect, reload.expect);
                let gone: Vec<InstanceKey> = before
                    .iter()
                    .filter(|service| !config.expect.contains(service))
                    .filter_map(|service| detector.unexpect(service))
                    .collect();
                for service in &config.expect {
                    if !before.contains(service) {
                        detector.expect(service, now);
                    }
                }
                config.max_instances = reload.max_instances;
                config.forget_after = reload.forget_after;
                meter.configured_ttl = reload.ping_ttl;
                config.ping_ttl = budget::scaled(reload.ping_ttl, interval, meter.configured);
                sweep_every = FORGET_SWEEP.min(config.forget_after / 4);
                out.emit(Update::Reconfigured(reload.sinks));
                if !gone.is_empty() {
                    out.emit(Update::Forgotten(gone.into()));
                }
                out.transitions(transitions);
                for change in changes {
                    out.service_change(change);
                }
                let _ = reload.applied.send(());
            }
            scheduled = checks.tick() => {
                let now = Instant::now();
                // The stall guard: a check that runs late means this process
                // was paused or starved, and what it knows is out of date.
                let lag = now.saturating_duration_since(scheduled);
                out.flush_echoes();
                if lag > detector.stall_threshold() {
                    out.emit(Update::Stall { lag, at: now });
                    config.pulse.send_modify(|pulse| {
                        pulse.engine_seen = now;
                        pulse.stall = Some((now, lag));
                    });
                    out.transitions(detector.stalled(lag, now.into_std()));
                }
                out.transitions(detector.check(now.into_std()));
                if !sections_looked
                    && sections_from.is_some_and(|at| now >= at + config.ping_ttl + config.interval)
                {
                    sections_looked = true;
                    for section in detector.sections_without_service() {
                        warn!(
                            "[services.{section}] matches no service heard in the first timeout, so its settings judge nobody: sections name one service exactly, case aside (a --count fleet's are {section}-0, {section}-1, ..., each needing its own)"
                        );
                    }
                }
                config.pulse.send_modify(|pulse| {
                    pulse.checked_at = now;
                    pulse.judging = connected && detector.blind().is_none();
                    pulse.tracked = detector.len();
                });
                if now.saturating_duration_since(last_sweep) >= sweep_every {
                    last_sweep = now;
                    let gone = detector.forget(config.forget_after, now.into_std());
                    for key in &gone {
                        replays.forget(key);
                        farewells.forget(key);
                    }
                    if !gone.is_empty() {
                        info!(count = gone.len(), "forgot instances DOWN or LEFT for {}", humantime::format_duration(config.forget_after));
                        out.emit(Update::Forgotten(gone.into()));
                    }
                }
            }
        }
        // Whatever changed above may have changed a service's strength.
        for change in detector.service_changes(Instant::now().into_std()) {
            out.service_change(change);
        }
    };
    out.flush_echoes();
    // Every rejection, by reason, once at the end: a flood is logged at a
    // limited rate while it lasts, so this is where its full size shows.
    let rejected: Vec<String> = RejectReason::ALL
        .iter()
        .filter_map(|&reason| {
            let count = stats.rejected_for(reason);
            (count > 0).then(|| format!("{}={count}", reason.code()))
        })
        .collect();
    let rejected = if rejected.is_empty() {
        "none".to_owned()
    } else {
        rejected.join(" ")
    };
    info!(pings = seq, %rejected, "monitor stopping");
    closer.close().await;
    outcome
}

/// What the heartbeat costs at a ping, with `answering` instances: told to
/// the sinks when it changed; the interval the budget chooses, when it is
/// not the one in force (lengthened at once as the fleet grows, shortened
/// only when 5% or more shorter, so a fleet that loses an echo does not
/// move it back and forth).
fn cost_at(
    meter: &mut Meter,
    answering: u64,
    config: &EngineConfig,
    out: &mut Outbox,
) -> Option<Duration> {
    let (choice, budget) = match &config.budget {
        Some(plan) => (plan.plan.choose(answering), Some(plan)),
        None => {
            let per_round = budget::messages_per_round(answering);
            (
                budget::Choice {
                    interval: meter.configured,
                    per_round,
                    projected: budget::per_month(per_round, meter.configured),
                    within: true,
                },
                None,
            )
        }
    };
    let changed = choice.interval > meter.in_force
        || choice.interval.as_secs_f64() <= meter.in_force.as_secs_f64() * 0.95;
    let interval = if changed {
        choice.interval
    } else {
        meter.in_force
    };
    let per_round = choice.per_round;
    let mut warnings = Vec::new();
    if let Some(plan) = budget {
        // Each instance answering holds a queue, and a connection unless
        // it shares one (a `--count` fleet); the monitor holds one of each.
        let held = answering + 1;
        warnings.extend(budget::near_cap("connections", held, plan.connections));
        warnings.extend(budget::near_cap("queues", held, plan.queues));
        if !choice.within {
            warnings.push(format!(
                "{answering} instances cost {} messages a month even at the longest interval ({}), over the budget of {}",
                choice.projected.round(),
                humantime::format_duration(interval),
                plan.plan.messages_per_month
            ));
        }
    }
    for line in &warnings {
        if !meter.warned.contains(line) {
            warn!("budget: {line}");
        }
    }
    meter.warned.clone_from(&warnings);
    let cost = Cost {
        interval,
        timeout: budget::scaled(meter.configured_ttl, interval, meter.configured),
        answering,
        per_round,
        projected: budget::per_month(per_round, interval),
        budget: budget.map(|plan| plan.plan.messages_per_month),
        within: budget
            .is_none_or(|plan| budget::fits(per_round, interval, plan.plan.messages_per_month)),
        warnings,
    };
    if meter.last.as_deref() != Some(&cost) {
        let cost = Arc::new(cost);
        meter.last = Some(cost.clone());
        out.emit(Update::Cost(cost));
    }
    if changed && interval != meter.in_force {
        info!(
            interval = %humantime::format_duration(interval),
            answering,
            per_round,
            "budget: pinging at a new interval; timeouts follow it"
        );
        meter.in_force = interval;
        return Some(interval);
    }
    None
}

/// Why a signed goodbye is not news, if it is not. It must be fresh as an
/// echo is: for us, naming a recent ping of ours, and only once, so a
/// recording played back later is refused.
fn stale_goodbye(
    bye: &Goodbye,
    monitor_id: &str,
    detector: &Detector,
    farewells: &mut ReplayGuard,
    now: std::time::Instant,
) -> Option<RejectReason> {
    let Some(seq) = bye
        .seq
        .filter(|&seq| detector.is_recent_ping(&bye.service, seq, now))
    else {
        // No seq, or none of ours still recent.
        return Some(RejectReason::UnknownSeq);
    };
    if bye.monitor.as_deref() != Some(monitor_id) {
        // Signed for another monitor's ping (seqs overlap), or for none.
        return Some(RejectReason::OtherMonitor);
    }
    // Only tracked instances get a window (the cap bounds it); the
    // detector ignores a goodbye of any other.
    let key = InstanceKey::new(bye.service.as_str(), bye.instance.as_str());
    (detector.get(&bye.service, &bye.instance).is_some() && !farewells.first_time(&key, seq))
        .then_some(RejectReason::Replayed)
}

/// The engine's side of the update stream: holds echoes back for one
/// update each check, and sends everything else after them,
/// so no sink ever sees an echo after an update that came later.
struct Outbox {
    updates: Sink,
    echoes: Vec<EchoSeen>,
}

impl Outbox {
    fn new(updates: Sink) -> Self {
        Self {
            updates,
            echoes: Vec::new(),
        }
    }

    fn echo(&mut self, echo: EchoSeen) {
        self.echoes.push(echo);
    }

    fn held(&self) -> usize {
        self.echoes.len()
    }

    fn flush_echoes(&mut self) {
        if !self.echoes.is_empty() {
            let echoes = std::mem::take(&mut self.echoes);
            self.updates.send(Update::Echoes(echoes.into()));
        }
    }

    /// Never waits: see [`Sink::send`]. A sink that has gone away must not
    /// stop the monitoring.
    fn emit(&mut self, update: Update) {
        self.flush_echoes();
        self.updates.send(update);
    }

    fn transitions(&mut self, transitions: Vec<Transition>) {
        for transition in transitions {
            let report = Report {
                at: Utc::now(),
                transition,
            };
            info!(
                service = %report.transition.key.service,
                instance = %report.transition.key.instance,
                "{} -> {}: {}",
                report.transition.from.label(),
                report.transition.to.label(),
                report.transition.reason
            );
            self.emit(Update::Transition(report));
        }
    }

    fn service_change(&mut self, change: ServiceChange) {
        info!(
            service = %change.service,
            "{} -> {}: {change}",
            change.from.label(),
            change.to.label(),
        );
        self.emit(Update::Service(ServiceReport {
            at: Utc::now(),
            change,
        }));
    }
}
