use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use heartbeat_config::{BrokerNodes, HistorySettings, Settings, UrlSource};
use orchestrator_lib::plumbing::MemoryBroker;
use orchestrator_lib::{BrokerUrls, Endpoint, Keys, LinkOptions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::detector::{Detector, Mode, PhiParams, Policy, State, UNSEEN_INSTANCE};
use crate::engine::Update;
use crate::engine::{self, EngineConfig};
use crate::metrics::{self, Metrics};
use crate::sdnotify::Pulse;
use crate::status::{self, Board, state_code};
use crate::{dashboard, demo, group, headless, history, http, notify};
use heartbeat_config::DetectionMode;

/// Updates waiting for the status board before new ones are dropped.
const STATUS_QUEUE: usize = 4096;

/// Where the monitor gets its services from.
#[derive(Debug, Clone)]
pub enum Source {
    /// One broker, or several tried in order.
    Broker {
        url: BrokerUrls,
        from: UrlSource,
    },
    Demo,
}

/// Where transitions are shown.
#[derive(Debug, Clone)]
pub enum Output {
    /// JSON lines on stdout; logs on stderr.
    Headless,
    /// The full-screen dashboard; logs go to `log_path`, if anywhere.
    Dashboard { log_path: Option<PathBuf> },
}

/// Run the monitor until `shutdown`, the user quits the dashboard, or a
/// failure no retry can fix.
///
/// With `keys` (from `HEARTBEAT_KEY`), pings are signed and only signed
/// echoes and goodbyes are heard; the demo's in-process fleet stays unsigned.
/// The engine shows it is alive through `pulse` (see `sdnotify`).
pub async fn run(
    settings: Settings,
    source: Source,
    output: Output,
    keys: Option<Keys>,
    pulse: watch::Sender<Pulse>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let keys = match source {
        Source::Broker { .. } => keys,
        Source::Demo => None,
    };
    let signed = keys.is_some();
    let monitor_id = if settings.id.is_empty() {
        format!(
            "{}-{}",
            gethostname::gethostname().to_string_lossy(),
            std::process::id()
        )
    } else {
        settings.id.clone()
    };
    let endpoint = Endpoint::monitor(&monitor_id);
    let options = LinkOptions {
        reconnect_min: settings.broker.reconnect_min,
        reconnect_max: settings.broker.reconnect_max,
        connection_name: format!("monitor {monitor_id}"),
        ca_file: settings.broker.ca_file(),
        keys,
        ..LinkOptions::default()
    };
    let group_link = options.clone();
    let config = EngineConfig {
        monitor_id: monitor_id.clone(),
        reply_to: endpoint.queue.clone(),
        interval: settings.interval,
        ping_ttl: settings.timeout,
        expect: settings.expect.clone(),
        signed,
        max_instances: settings.max_instances,
        forget_after: settings.forget_after,
        echoes_wanted: matches!(output, Output::Dashboard { .. })
            || !settings.http.listen.is_empty()
            || settings.history.enabled(),
        pulse,
    };
    // Bound before anything starts, so a taken port stops the monitor at once.
    let listener = if settings.http.listen.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&settings.http.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
        Some(listener)
    };
    // The label is what the dashboard shows; a URL's Display is redacted.
    let (link, fleet, broker_label) = match &source {
        Source::Broker { url, from } => {
            info!(broker = %url, from = %from, id = %monitor_id, interval = ?settings.interval, timeout = ?settings.timeout, signed, history = %history::describe(&settings.history), "monitor starting");
            if !signed {
                warn!(
                    "heartbeats are unsigned: anyone who can publish to the broker can fake a service's echoes; set HEARTBEAT_KEY"
                );
            }
            let link = match settings.broker.nodes {
                BrokerNodes::Cluster => orchestrator_lib::connect(url, endpoint, options),
                BrokerNodes::Independent => {
                    orchestrator_lib::plumbing::connect_each(url, endpoint, options)
                }
            };
            (link, None, url.to_string())
        }
        Source::Demo => {
            info!(id = %monitor_id, "demo: simulated services on an in-process broker");
            let broker = MemoryBroker::new();
            let link = broker.connect(endpoint, options);
            let fleet = demo::spawn(broker, true, shutdown.clone());
            (link, Some(fleet), "in-process demo (no broker)".to_string())
        }
    };
    let mut detector = Detector::new(settings.interval, policy(&settings, None))
        .with_reconnect_grace(settings.broker.reconnect_max);
    for service in settings.named_services() {
        detector = detector.with_service(service, policy(&settings, Some(service)));
    }
    let (updates_tx, engine_rx) = mpsc::channel(4096);
    let stats = link.stats.clone();
    let engine = tokio::spawn(engine::run(
        link,
        detector,
        config,
        updates_tx,
        shutdown.clone(),
    ));

    // A monitor group meets on the broker; the demo has none.
    let group = match &source {
        Source::Broker { url, .. } if !settings.group.name.is_empty() => Some(group::spawn(
            group::Config {
                name: settings.group.name.clone(),
                member: monitor_id.clone(),
                interval: settings.interval,
                urls: url.clone(),
                link: group_link,
            },
            shutdown.clone(),
        )),
        _ => None,
    };
    // One stream out of the engine, many sinks, each behind its own bounded queue.
    let notifier = (!settings.notify.is_empty()).then(|| {
        let group = group.as_ref().map(|g| g.group.clone());
        notify::spawn(&settings.notify, &monitor_id, group, shutdown.clone())
    });
    // The demo's made-up services are kept out of the history.
    let history = (settings.history.enabled() && fleet.is_none())
        .then(|| history::spawn(&settings.history, shutdown.clone()));
    let status = listener.map(|listener| {
        let kept = history
            .as_ref()
            .map(|h| (settings.history.clone(), h.health.clone()));
        let (board, metrics) = serve_http(
            listener,
            stats.clone(),
            &settings,
            &monitor_id,
            kept,
            &shutdown,
        );
        metrics.set_signed(signed);
        metrics.watch_sinks(metrics::SinkStats {
            notify: notifier
                .as_ref()
                .map(|n| n.stats.clone())
                .unwrap_or_default(),
            notify_intake_dropped: notifier.as_ref().map(|n| n.dropped.clone()),
            history: history.as_ref().map(|h| h.health.clone()),
        });
        (board, metrics)
    });
    let (display_tx, updates_rx) = mpsc::channel(4096);
    // Headless lines are verdicts and link changes: echoes and pings, there
    // for the other sinks, would only wake it.
    let display_wants_traffic = !matches!(output, Output::Headless);
    let fan_out = tokio::spawn(fan_out(
        engine_rx,
        (display_tx, display_wants_traffic),
        notifier.as_ref().map(notify::Notifier::intake),
        history.as_ref().map(history::History::intake),
        status,
    ));

    match output {
        Output::Headless => {
            let out = std::io::stdout();
            let expect: Vec<(String, Duration)> = settings
                .expect
                .iter()
                .map(|service| (service.clone(), settings.timeout_for(service)))
                .collect();
            let gone = headless::stdout_reader_gone();
            if headless::write_transitions(updates_rx, out, gone, &expect).await {
                // Like any Unix filter: nobody reads any more, so stop (exit 0).
                info!("stdout closed; stopping");
                shutdown.cancel();
            }
        }
        Output::Dashboard { log_path } => {
            let mut app = dashboard::App::new(
                broker_label,
                settings.interval,
                &settings.expect,
                tokio::time::Instant::now(),
            );
            app.demo = fleet.is_some();
            app.timeout = settings.timeout;
            // The dashboard runs on a terminal; NO_COLOR is the only question.
            app.colour = orchestrator_lib::use_colour(true);
            app.signed = signed;
            app.expected = settings
                .named_services()
                .filter_map(|name| Some((name.clone(), settings.detection_for(name).instances?)))
                .collect();
            app.log_path = log_path;
            app.history = history.as_ref().map(|h| h.health.clone());
            let past = history
                .as_ref()
                .map(|_| spawn_past_loader(settings.history.clone(), shutdown.clone()));
            let commands = fleet.as_ref().map(|(commands, _)| commands.clone());
            let shown =
                dashboard::run(app, updates_rx, stats, commands, past, shutdown.clone()).await;
            if let Err(error) = shown {
                shutdown.cancel();
                let _ = engine.await;
                return Err(error).context("the terminal failed; try --headless");
            }
        }
    }

    let outcome = engine.await.context("the monitoring task panicked")?;
    shutdown.cancel();
    let _ = fan_out.await;
    if let Some(notifier) = notifier {
        notifier.finish().await;
    }
    if let Some(history) = history {
        history.finish().await;
    }
    if let Some(group) = group {
        group.finish().await;
    }
    if let Some((_, fleet)) = fleet {
        let _ = fleet.await;
    }
    Ok(outcome?)
}

/// Start the status board (a sink of the engine's updates, with the metrics)
/// and the HTTP server that reads it. Returns the board's input.
fn serve_http(
    listener: tokio::net::TcpListener,
    stats: Arc<orchestrator_lib::plumbing::LinkStats>,
    settings: &Settings,
    monitor_id: &str,
    history: Option<(HistorySettings, Arc<history::Health>)>,
    shutdown: &CancellationToken,
) -> (mpsc::Sender<Update>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new(stats.clone()));
    let now = tokio::time::Instant::now();
    let board = Board::new(
        monitor_id,
        settings.interval,
        settings.timeout,
        &settings.expect,
        now,
    )
    .with_link_stats(stats);
    for service in &settings.expect {
        metrics.known(service, UNSEEN_INSTANCE, &state_code(State::NeverSeen));
    }
    let (publisher, snapshots) = status::snapshots(board.snapshot(now));
    let (board_tx, board_rx) = mpsc::channel(STATUS_QUEUE);
    tokio::spawn(status::run(board_rx, board, metrics.clone(), publisher));
    tokio::spawn(metrics::probe_event_loop_lag(
        metrics.clone(),
        shutdown.clone(),
    ));
    if let Ok(address) = listener.local_addr() {
        info!("serving metrics, status API and page on http://{address}/");
    }
    let serving = http::serve(
        listener,
        snapshots,
        metrics.clone(),
        history,
        shutdown.clone(),
    );
    tokio::spawn(async move {
        if let Err(error) = serving.await {
            warn!(%error, "the HTTP endpoint stopped");
        }
    });
    (board_tx, metrics)
}

/// How often the dashboard's uptimes are read again from the store.
const PAST_REFRESH: Duration = Duration::from_secs(60);

/// Read the store's past for the dashboard now, then every [`PAST_REFRESH`].
/// A store that cannot be read leaves the dashboard as it is; the writer
/// already counts and shows an unreachable store.
fn spawn_past_loader(
    settings: HistorySettings,
    shutdown: CancellationToken,
) -> mpsc::Receiver<history::Past> {
    let (tx, rx) = mpsc::channel(1);
    let started_ms = chrono::Utc::now().timestamp_millis();
    tokio::spawn(async move {
        loop {
            let loaded = history::query(&settings, move |store| {
                history::load_past(store, started_ms, chrono::Utc::now().timestamp_millis())
            })
            .await;
            match loaded {
                Ok(past) => {
                    if tx.send(past).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "history: cannot read the past for the dashboard")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PAST_REFRESH) => {}
            }
        }
    });
    rx
}

/// Hand each engine update to the display and to the sinks that want it.
/// Every hand-off is a `try_send`: a sink that falls behind loses updates
/// (and counts them), it never slows the engine. The status board's lost
/// updates are counted in `heartbeat_updates_dropped_total`; neither it nor
/// the display loses a verdict (see [`engine::offer`]).
async fn fan_out(
    mut engine: mpsc::Receiver<Update>,
    (display, display_wants_traffic): (mpsc::Sender<Update>, bool),
    notify: Option<notify::Intake>,
    history: Option<history::Intake>,
    status: Option<(mpsc::Sender<Update>, Arc<Metrics>)>,
) {
    while let Some(update) = engine.recv().await {
        if let Some((board, metrics)) = &status {
            // The board's states must stay true: a verdict waits for room.
            if !engine::offer(board, update.clone()) {
                metrics.sink_dropped("status");
            }
        }
        if let Some(notify) = &notify {
            notify.offer(&update);
        }
        if let Some(history) = &history {
            history.offer(&update);
        }
        if !display_wants_traffic && !update.must_arrive() {
            continue;
        }
        // Headless, the display is the JSON lines a script reads: a verdict
        // waits for room there too.
        engine::offer(&display, update);
    }
}

/// How `service` (or, without one, any service not named) is judged.
pub fn policy(settings: &Settings, service: Option<&str>) -> Policy {
    let d = match service {
        Some(service) => settings.detection_for(service),
        None => settings.detection.clone(),
    };
    Policy {
        mode: match d.mode {
            DetectionMode::Fixed => Mode::Fixed,
            DetectionMode::Phi => Mode::Phi,
        },
        timeout: service.map_or(settings.timeout, |s| settings.timeout_for(s)),
        phi_threshold: d.phi_threshold,
        phi: PhiParams {
            min_std_dev: d.phi_min_std_dev,
            acceptable_pause: d.phi_acceptable_pause,
        },
        failures_before_down: d.failures_before_down,
        successes_before_up: d.successes_before_up,
        flapping_changes: d.flapping_changes,
        flapping_window: d.flapping_window,
        slow_limit: d.slow_limit,
        expected_instances: d.instances,
    }
}
