use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use heartbeat_config::{BrokerNodes, Settings, UrlSource};
use orchestrator_lib::plumbing::MemoryBroker;
use orchestrator_lib::{BrokerUrls, Endpoint, Keys, LinkOptions, Scope};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::detector::{Detector, LastKnown, Mode, PhiParams, Policy};
use crate::engine::{self, EngineConfig};
use crate::fleet::{self, Fleet, Sink};
use crate::metrics::{self, Metrics};
use crate::quiet::Quiet;
use crate::sdnotify::Pulse;
use crate::status::{self, Snapshots};
use crate::{dashboard, demo, group, headless, history, http, notify, reload};
use heartbeat_config::DetectionMode;

/// Updates each sink's queue holds before it drops some (figures first).
const SINK_QUEUE: usize = 4096;

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
// Each argument is built and checked by `main` before the runtime starts
// (exit 2 on a bad one); a struct around them would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    settings: Settings,
    source: Source,
    output: Output,
    keys: Option<Keys>,
    quiet: Quiet,
    pulse: watch::Sender<Pulse>,
    hangups: Option<reload::Hangups>,
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
    // Validated with the settings: a bad name never gets this far.
    let scope = Scope::new(&settings.scope).context("invalid setting `scope`")?;
    let endpoint = Endpoint::monitor_in(&scope, &monitor_id);
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
        restore: last_known(&settings, &source, &scope).await,
        // A plan's budget means something only with a broker: the demo's
        // fleet runs in-process and costs no messages.
        budget: (settings.budget.enabled() && !matches!(source, Source::Demo)).then(|| {
            engine::BudgetConfig {
                plan: crate::budget::Plan {
                    messages_per_month: settings.budget.messages_per_month,
                    shortest: settings.interval,
                    longest: settings.budget.longest_interval,
                },
                default: policy(&settings, None),
                services: settings
                    .named_services()
                    .map(|service| (service.clone(), policy(&settings, Some(service))))
                    .collect(),
                connections: settings.budget.connections,
                queues: settings.budget.queues,
            }
        }),
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
    let (link, demo_fleet, broker_label) = match &source {
        Source::Broker { url, from } => {
            info!(broker = %url, from = %from, id = %monitor_id, scope = %scope, interval = ?settings.interval, timeout = ?settings.timeout, signed, history = %history::describe(&settings.history), "monitor starting");
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
            let demo_fleet = demo::spawn(broker, true, shutdown.clone());
            (
                link,
                Some(demo_fleet),
                "in-process demo (no broker)".to_string(),
            )
        }
    };
    if quiet.silences.persistent() {
        match quiet.silences.load(chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(count) => info!(count, "silences in force, from the history store"),
            Err(error) => warn!(%error, "cannot read the silences from the history store"),
        }
    }
    if !quiet.tokens.writes_enabled() && !settings.http.listen.is_empty() {
        info!(
            "the HTTP API is read-only: set HEARTBEAT_API_TOKEN or [http] token_file to add silences"
        );
    }
    let mut detector = Detector::new(settings.interval, policy(&settings, None))
        .with_reconnect_grace(settings.broker.reconnect_max);
    for service in settings.named_services() {
        detector = detector.with_service(service, policy(&settings, Some(service)));
    }
    // The one model of the fleet every view reads, fed in one place.
    let expected = settings
        .named_services()
        .filter_map(|name| Some((name.clone(), settings.detection_for(name).instances?)))
        .collect();
    let mut fleet = Fleet::new(
        &settings.expect,
        tokio::time::Instant::now(),
        chrono::Utc::now(),
    )
    .with_expected(expected)
    .with_quiet(quiet.clone());
    // A monitor group meets on the broker; the demo has none.
    let grouped = matches!(source, Source::Broker { .. }) && !settings.group.name.is_empty();
    if grouped {
        fleet = fleet.with_group(group::part(
            &settings.group.name,
            &monitor_id,
            settings.group.quorum(),
            settings.interval,
        ));
    }
    let model = fleet::Shared::new(fleet);
    let (to_model, engine_rx) = Sink::new("fleet", SINK_QUEUE, fleet::everything);
    let stats = link.stats.clone();
    let (reloads, engine_reloads) = mpsc::channel(1);
    let engine = tokio::spawn(engine::run(
        link,
        detector,
        config,
        to_model.clone(),
        engine_reloads,
        shutdown.clone(),
    ));

    let group = match &source {
        Source::Broker { url, .. } if grouped => Some(group::spawn(
            group::Config {
                name: settings.group.name.clone(),
                scope: scope.clone(),
                member: monitor_id.clone(),
                interval: settings.interval,
                urls: url.clone(),
                link: group_link,
            },
            model.clone(),
            shutdown.clone(),
        )),
        _ => None,
    };
    // One stream out of the engine, applied to the model, then handed to
    // each sink through its own bounded queue.
    // With reloads, a notifier even without targets: a reload may add some.
    let notifier = (!settings.notify.is_empty() || hangups.is_some()).then(|| {
        let group = group.as_ref().map(|g| g.group.clone());
        notify::spawn(
            &settings.notify,
            &monitor_id,
            group,
            model.clone(),
            restore_hold(&settings),
            quiet.clone(),
            // Undelivered alerts are kept where the history is (not the demo's).
            (settings.history.enabled() && demo_fleet.is_none()).then_some(&settings.history),
            shutdown.clone(),
        )
    });
    // The demo's made-up services are kept out of the history.
    let history = (settings.history.enabled() && demo_fleet.is_none()).then(|| {
        let by = history::WrittenBy {
            fleet: fleet_name(&source, &scope),
            monitor: monitor_id.clone(),
        };
        history::spawn(&settings.history, by, shutdown.clone())
    });
    // Headless lines are verdicts and link changes: echoes and pings, there
    // for the other sinks, would only wake it. The dashboard reads the
    // model at frame time: verdicts only wake it for a frame at once.
    let (display, updates_rx) = Sink::new("display", SINK_QUEUE, fleet::verdicts);
    let mut sinks = vec![display];
    sinks.extend(notifier.as_ref().map(|n| n.sink.clone()));
    sinks.extend(history.as_ref().map(|h| h.sink.clone()));
    if let Some(listener) = listener {
        let kept = history.as_ref().map(|h| h.reading.clone());
        let (metrics, counting) = serve_http(
            listener,
            stats.clone(),
            &settings,
            &monitor_id,
            &model,
            kept,
            notifier
                .as_ref()
                .map(|n| n.stats.clone())
                .unwrap_or_default(),
            &shutdown,
        );
        metrics.set_signed(signed);
        let mut dropped: Vec<_> = sinks.iter().map(|s| (s.name(), s.dropped())).collect();
        dropped.push((to_model.name(), to_model.dropped()));
        dropped.push((counting.name(), counting.dropped()));
        metrics.watch_sinks(metrics::SinkStats {
            notify: notifier
                .as_ref()
                .map(|n| n.stats.clone())
                .unwrap_or_default(),
            dropped,
            history: history.as_ref().map(|h| h.health.clone()),
        });
        sinks.push(counting);
    }
    drop(to_model);
    let feed = tokio::spawn(fleet::run(engine_rx, model.clone(), sinks));
    let reloading = match hangups {
        Some(hangups) => Some(
            reload::spawn(
                hangups,
                settings.clone(),
                reload::Appliers {
                    engine: reloads,
                    quiet: quiet.clone(),
                },
                shutdown.clone(),
            )
            .context("cannot listen for SIGHUP")?,
        ),
        None => None,
    };

    // The store's past: uptimes over 24 h, 7 d and 30 d into the model, for
    // every view; the earlier runs' transitions for the dashboard's log.
    let past = history
        .as_ref()
        .map(|h| spawn_past_loader(h.reading.clone(), model.clone(), shutdown.clone()));

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
            let mut app =
                dashboard::App::new(broker_label, settings.interval, tokio::time::Instant::now());
            app.demo = demo_fleet.is_some();
            app.timeout = settings.timeout;
            // The dashboard runs on a terminal; NO_COLOR is the only question.
            app.colour = orchestrator_lib::use_colour(true);
            app.signed = signed;
            app.log_path = log_path;
            app.history = history.as_ref().map(|h| h.health.clone());
            let commands = demo_fleet.as_ref().map(|(commands, _)| commands.clone());
            let shown = dashboard::run(
                app,
                model.clone(),
                updates_rx,
                stats,
                commands,
                past,
                shutdown.clone(),
            )
            .await;
            if let Err(error) = shown {
                shutdown.cancel();
                let _ = engine.await;
                return Err(error).context("the terminal failed; try --headless");
            }
        }
    }

    let outcome = engine.await.context("the monitoring task panicked")?;
    shutdown.cancel();
    let _ = feed.await;
    if let Some(reloading) = reloading {
        let _ = reloading.await;
    }
    if let Some(notifier) = notifier {
        notifier.finish().await;
    }
    if let Some(history) = history {
        history.finish().await;
    }
    if let Some(group) = group {
        group.finish().await;
    }
    if let Some((_, demo_fleet)) = demo_fleet {
        let _ = demo_fleet.await;
    }
    Ok(outcome?)
}

/// Start the HTTP server, which reads the fleet model (snapshots on
/// demand, metrics at scrape time). Returns the metrics and the sink that
/// feeds their counters.
#[allow(clippy::too_many_arguments)]
fn serve_http(
    listener: tokio::net::TcpListener,
    stats: Arc<orchestrator_lib::plumbing::LinkStats>,
    settings: &Settings,
    monitor_id: &str,
    model: &fleet::Shared,
    history: Option<history::Reading>,
    notify_stats: notify::Stats,
    shutdown: &CancellationToken,
) -> (Arc<Metrics>, Sink) {
    let metrics = Arc::new(Metrics::new(stats.clone(), model.clone()));
    let snapshots = Snapshots::new(
        model.clone(),
        status::About {
            monitor_id: monitor_id.to_owned(),
            scope: settings.scope.clone(),
            interval: settings.interval,
            grace: settings.timeout,
            link_stats: Some(stats),
            notify: notify_stats,
        },
    );
    let (counting, counts) = Sink::new("metrics", SINK_QUEUE, fleet::everything);
    tokio::spawn(metrics::run(counts, metrics.clone()));
    tokio::spawn(metrics::probe_event_loop_lag(
        metrics.clone(),
        shutdown.clone(),
    ));
    if let Ok(address) = listener.local_addr() {
        info!("serving metrics, status API and page on http://{address}/");
    }
    // The API's silences are the ones the model marks rows with.
    let quiet = model.read().quiet().clone();
    let serving = http::serve(
        listener,
        snapshots,
        metrics.clone(),
        history,
        quiet,
        settings.http.max_connections,
        shutdown.clone(),
    );
    tokio::spawn(async move {
        if let Err(error) = serving.await {
            warn!(%error, "the HTTP endpoint stopped");
        }
    });
    (metrics, counting)
}

/// How often the dashboard's uptimes are read again from the store.
const PAST_REFRESH: Duration = Duration::from_secs(60);

/// Read the store's past now, then every [`PAST_REFRESH`]: its uptimes go
/// into the model, the whole of it to the dashboard (when one reads it). A
/// store that cannot be read leaves both as they are; the writer already
/// counts and shows an unreachable store.
fn spawn_past_loader(
    reading: history::Reading,
    model: fleet::Shared,
    shutdown: CancellationToken,
) -> mpsc::Receiver<history::Past> {
    let (tx, rx) = mpsc::channel(1);
    let started_ms = chrono::Utc::now().timestamp_millis();
    tokio::spawn(async move {
        loop {
            let fleet = reading.fleet.clone();
            let loaded = history::query(&reading.settings, move |store| {
                let now_ms = chrono::Utc::now().timestamp_millis();
                history::load_past(store, &fleet, started_ms, now_ms)
            })
            .await;
            match loaded {
                Ok(past) => {
                    model.set_stored_uptime(past.uptime.clone());
                    // Headless, nobody reads the rest: dropped.
                    let _ = tx.try_send(past);
                }
                Err(error) => {
                    tracing::warn!(target: "monitor::history", %error, "history: cannot read the past for the dashboard")
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

/// What the history store knew of the fleet before this start (see
/// [`history::last_known`]): taken back DOWN until each answers. Nothing for
/// the demo or without a store; nothing, and one warning, when the store
/// cannot be read within its timeout.
async fn last_known(settings: &Settings, source: &Source, scope: &Scope) -> Vec<LastKnown> {
    if matches!(source, Source::Demo) || !settings.history.enabled() {
        return Vec::new();
    }
    let forget_after = settings.forget_after;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let fleet = fleet_name(source, scope);
    let read = history::query(&settings.history, move |store| {
        history::last_known(store, &fleet, now_ms, forget_after)
    });
    match read.await {
        Ok(known) => known,
        Err(error) => {
            warn!(%error, "history: cannot take back the fleet known before this start; watching what answers");
            Vec::new()
        }
    }
}

/// The fleet a monitor watches, as its history records it: the brokers'
/// hosts and vhost, never credentials or options, and a named scope after
/// them (` scope staging`; the default scope adds nothing, so a store kept
/// before scopes is still this fleet's). Monitors sharing a store take back
/// only their own fleet after a restart, and read back only its records.
/// Two spellings of one broker are one fleet: a missing port is the
/// scheme's, a missing vhost is the default one (`%2f`).
fn fleet_name(source: &Source, scope: &Scope) -> String {
    let Source::Broker { url, .. } = source else {
        return "demo".into();
    };
    let hosts = url
        .as_slice()
        .iter()
        .map(|url| fleet_of(url.redacted()))
        .collect::<Vec<_>>()
        .join(",");
    if scope.is_default() {
        hosts
    } else {
        format!("{hosts} scope {scope}")
    }
}

fn fleet_of(redacted_url: &str) -> String {
    let (scheme, rest) = redacted_url
        .split_once("://")
        .unwrap_or(("amqp", redacted_url));
    let rest = rest.split('?').next().unwrap_or(rest);
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, "%2f"));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    // An IPv6 literal ends in `]`; a port follows the last `:` after it.
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    let port = match (has_port, scheme) {
        (true, _) => "",
        (false, "amqps") => ":5671",
        (false, _) => ":5672",
    };
    format!("{host}{port}/{vhost}")
}

/// How long an instance taken back after a restart has to answer before
/// its DOWN alerts: the longest timeout, and an interval for the first ping.
fn restore_hold(settings: &Settings) -> Duration {
    let longest = settings
        .named_services()
        .map(|service| settings.timeout_for(service))
        .fold(settings.timeout, Duration::max);
    longest + settings.interval
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

#[cfg(test)]
mod tests {
    use super::fleet_of;

    #[test]
    fn one_broker_spelled_two_ways_is_one_fleet() {
        let fleet = "127.0.0.1:5672/%2f";
        assert_eq!(fleet_of("amqp://guest:****@127.0.0.1:5672/%2f"), fleet);
        assert_eq!(fleet_of("amqp://guest:****@127.0.0.1"), fleet);
        assert_eq!(fleet_of("amqp://127.0.0.1:5672?heartbeat=10"), fleet);
        assert_eq!(fleet_of("amqps://u:****@h.example/vh"), "h.example:5671/vh");
        assert_eq!(fleet_of("amqp://[::1]/%2f"), "[::1]:5672/%2f");
        assert_eq!(fleet_of("amqp://[::1]:5673/%2f"), "[::1]:5673/%2f");
    }
}
