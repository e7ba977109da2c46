use std::io::IsTerminal;

use anyhow::Context;
use heartbeat_config::{Settings, UrlSource};
use orchestrator_lib::{BrokerUrl, Endpoint, LinkOptions, MemoryBroker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::detector::Detector;
use crate::engine::{self, EngineConfig};
use crate::{demo, headless};

/// Where the monitor gets its services from.
#[derive(Debug, Clone)]
pub enum Source {
    Broker { url: BrokerUrl, from: UrlSource },
    Demo,
}

/// Run the monitor until `shutdown` or a failure no retry can fix.
pub async fn run(
    settings: Settings,
    source: Source,
    headless: bool,
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
        ..LinkOptions::default()
    };
    let config = EngineConfig {
        monitor_id: monitor_id.clone(),
        reply_to: endpoint.queue.clone(),
        interval: settings.interval,
        ping_ttl: settings.timeout,
        expect: settings.expect.clone(),
    };
    let (link, fleet) = match &source {
        Source::Broker { url, from } => {
            info!(broker = %url, from = %from, id = %monitor_id, interval = ?settings.interval, timeout = ?settings.timeout, "monitor starting");
            (orchestrator_lib::connect(url, endpoint, options), None)
        }
        Source::Demo => {
            info!(id = %monitor_id, "demo: simulated services on an in-process broker");
            let broker = MemoryBroker::new();
            let link = broker.connect(endpoint, options);
            (link, Some(demo::spawn(broker, true, shutdown.clone())))
        }
    };
    let detector = Detector::new(
        settings.timeout,
        settings.timeouts.clone().into_iter().collect(),
    )
    .with_reconnect_grace(settings.broker.reconnect_max);
    let (updates_tx, updates_rx) = mpsc::channel(4096);
    let engine = tokio::spawn(engine::run(
        link,
        detector,
        config,
        updates_tx,
        shutdown.clone(),
    ));

    // The dashboard arrives with its own issue; until then a terminal gets the JSON lines too.
    let _ = headless || !std::io::stdout().is_terminal();
    headless::write_transitions(updates_rx, std::io::stdout()).await;

    let outcome = engine.await.context("the monitoring task panicked")?;
    shutdown.cancel();
    if let Some((_, fleet)) = fleet {
        let _ = fleet.await;
    }
    Ok(outcome?)
}
