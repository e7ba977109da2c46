use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use heartbeat_config::{HistorySettings, Settings, UrlSource};
use orchestrator_lib::{BrokerUrl, Endpoint, LinkOptions, MemoryBroker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::detector::Detector;
use crate::engine::Update;
use crate::engine::{self, EngineConfig};
use crate::{dashboard, demo, headless, history, notify};

/// Where the monitor gets its services from.
#[derive(Debug, Clone)]
pub enum Source {
    Broker { url: BrokerUrl, from: UrlSource },
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
pub async fn run(
    settings: Settings,
    source: Source,
    output: Output,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
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
        ..LinkOptions::default()
    };
    let config = EngineConfig {
        monitor_id: monitor_id.clone(),
        reply_to: endpoint.queue.clone(),
        interval: settings.interval,
        ping_ttl: settings.timeout,
        expect: settings.expect.clone(),
    };
    // The label is what the dashboard shows; a URL's Display is redacted.
    let (link, fleet, broker_label) = match &source {
        Source::Broker { url, from } => {
            info!(broker = %url, from = %from, id = %monitor_id, interval = ?settings.interval, timeout = ?settings.timeout, "monitor starting");
            let link = orchestrator_lib::connect(url, endpoint, options);
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
    let detector = Detector::new(
        settings.timeout,
        settings.timeouts.clone().into_iter().collect(),
    )
    .with_reconnect_grace(settings.broker.reconnect_max);
    let (updates_tx, engine_rx) = mpsc::channel(4096);
    let stats = link.stats.clone();
    let engine = tokio::spawn(engine::run(
        link,
        detector,
        config,
        updates_tx,
        shutdown.clone(),
    ));

    // One stream out of the engine, many sinks, each behind its own bounded queue.
    let notifier = (!settings.notify.is_empty())
        .then(|| notify::spawn(&settings.notify, &monitor_id, shutdown.clone()));
    // The demo's made-up services are kept out of the history.
    let history = (settings.history.enabled() && fleet.is_none())
        .then(|| history::spawn(&settings.history, shutdown.clone()));
    let (display_tx, updates_rx) = mpsc::channel(4096);
    let fan_out = tokio::spawn(fan_out(
        engine_rx,
        display_tx,
        notifier.as_ref().map(|n| n.updates.clone()),
        history.as_ref().map(|h| h.updates.clone()),
    ));

    match output {
        Output::Headless => headless::write_transitions(updates_rx, std::io::stdout()).await,
        Output::Dashboard { log_path } => {
            let mut app = dashboard::App::new(
                broker_label,
                settings.interval,
                &settings.expect,
                tokio::time::Instant::now(),
            );
            app.demo = fleet.is_some();
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
    if let Some((_, fleet)) = fleet {
        let _ = fleet.await;
    }
    Ok(outcome?)
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
/// Every send is a `try_send`: a sink that falls behind loses updates (and
/// counts them), it never slows the engine.
async fn fan_out(
    mut engine: mpsc::Receiver<Update>,
    display: mpsc::Sender<Update>,
    notify: Option<mpsc::Sender<Update>>,
    history: Option<mpsc::Sender<Update>>,
) {
    while let Some(update) = engine.recv().await {
        let transition = matches!(update, Update::Transition(_));
        if let Some(notify) = notify.as_ref().filter(|_| transition) {
            let _ = notify.try_send(update.clone());
        }
        if let Some(history) = &history
            && !matches!(update, Update::Link(_))
            && history.try_send(update.clone()).is_err()
        {
            // Counted by the store's health; the engine goes on.
            tracing::debug!("history: queue full, an update was dropped");
        }
        let _ = display.try_send(update);
    }
}
