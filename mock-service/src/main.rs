//! A stand-in microservice: answers every ping, says goodbye on Ctrl+C or
//! SIGTERM, and can misbehave on purpose. It is the library's heartbeat
//! responder plus flags. With `--count N` it is a whole fleet, `NAME-0` to
//! `NAME-(N-1)`, on one connection: how a user load-tests a monitor.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use heartbeat_config::Settings;
use orchestrator_lib::{Endpoint, Faults, Identity, LinkOptions, Scope};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "mock-service",
    version = env!("HEARTBEAT_VERSION"),
    about = "A stand-in service that answers heartbeat pings"
)]
struct Cli {
    /// The service name, shared by all its instances.
    #[arg(long)]
    name: String,

    /// This instance's id (default: the host name). Must be unique per service.
    #[arg(long)]
    instance: Option<String>,

    /// Run N services, NAME-0 to NAME-(N-1), in this one process, each with its own
    /// queue and the same faults; 500 services share a connection.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_COUNT))]
    count: Option<u32>,

    /// Broker URL, amqp:// or amqps://. Wins over CLOUDAMQP_URL, AMQP_URL and the config file.
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// Which heartbeat on the vhost to answer: only monitors started with the
    /// same scope ping it and hear it (default: the settings' `scope`,
    /// MONITOR__SCOPE, else `default`, the names without a scope).
    #[arg(long, value_name = "NAME")]
    scope: Option<String>,

    /// A TOML settings file (the same as the monitor's; only [broker] and `scope` are used).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Delay added to every answer, e.g. 50ms.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    latency: Duration,

    /// Random extra delay of up to this much, e.g. 20ms.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    jitter: Duration,

    /// Probability of ignoring a ping, from 0 to 1.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    drop_rate: f64,

    /// Stop answering after this long but stay connected, like a hung process.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    hang_after: Option<Duration>,

    /// A planned restart: on Ctrl+C or SIGTERM, the goodbye promises to be
    /// back within this long, e.g. 30s; monitors hold their alerts meanwhile.
    #[arg(long, value_name = "DURATION", value_parser = parse_drain)]
    drain: Option<Duration>,
}

fn parse_drain(text: &str) -> Result<Duration, String> {
    let drain = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if drain < Duration::from_millis(1) {
        return Err("must be at least 1ms, e.g. 30s".into());
    }
    Ok(drain)
}

/// What was seen to work on the project's 2-core machine (2026-12-07,
/// loaded by other builds): 2,000 all UP within 8.2 s. 5,000 and 10,000 had
/// every queue set up (in about 60 and 110 s) but the fleet and the monitor
/// there could not keep up (2,777 and 1,687 ever UP, the rest timing out),
/// and 100,000, the limit before, never brought one UP. A larger fleet
/// belongs in several processes (and a broker cluster).
const MAX_COUNT: i64 = 2_000;
/// Services per connection. Declaring, binding and consuming a queue is
/// three round trips, one queue after another on a connection: 10,000 on
/// one connection took over the link's setup deadline (60 s) and never came
/// UP. Spread over connections of this many, they are set up side by side
/// and each within its deadline.
const PER_CONNECTION: usize = 500;

#[tokio::main]
async fn main() -> ExitCode {
    orchestrator_lib::plumbing::abort_on_panic();
    let cli: Cli = match heartbeat_config::parse_flags() {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    let faults = Faults {
        latency: cli.latency,
        jitter: cli.jitter,
        drop_rate: cli.drop_rate,
        hang_after: cli.hang_after,
    };
    let instance = cli
        .instance
        .clone()
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    let setup = faults
        .validate()
        .map_err(|e| e.to_string())
        .and_then(|()| check_name("--name", &cli.name))
        .and_then(|()| match cli.count {
            // The longest member name must still be a valid name.
            Some(count) => check_name("--name", &format!("{}-{}", cli.name, count - 1)),
            None => Ok(()),
        })
        .and_then(|()| check_name("--instance", &instance))
        .and_then(|()| Settings::load(cli.config.as_deref()).map_err(|e| e.to_string()))
        .and_then(|settings| {
            // From the environment only: the key never sits in a file or a flag.
            let keys = orchestrator_lib::Keys::from_env().map_err(|e| e.to_string())?;
            Ok((settings, keys))
        })
        .and_then(|(settings, keys)| {
            heartbeat_config::resolve_broker_url(cli.url.as_deref(), &settings, |name| {
                std::env::var(name).ok()
            })
            .map(|(url, from)| (settings, keys, url, from))
            .map_err(|e| e.to_string())
        })
        .and_then(|(settings, keys, url, from)| {
            let scope = cli.scope.as_deref().unwrap_or(&settings.scope);
            let scope = Scope::new(scope).map_err(|e| match &cli.scope {
                Some(_) => format!("--scope: {e}"),
                None => format!("invalid setting `scope`: {e}"),
            })?;
            Ok((settings, keys, url, from, scope))
        });
    let (settings, keys, url, from, scope) = match setup {
        Ok(ok) => ok,
        Err(error) => {
            eprintln!("mock-service: {error}");
            return ExitCode::from(2);
        }
    };
    let colour = orchestrator_lib::use_colour(std::io::stderr().is_terminal());
    orchestrator_lib::init_logging(std::io::stderr, colour);
    if let Some(warning) = heartbeat_config::command_line_password_warning(&url, from) {
        warn!("{warning}");
    }

    let members: Result<Vec<Identity>, _> = match cli.count {
        None => Identity::new(&cli.name, &instance).map(|one| vec![one]),
        Some(count) => (0..count)
            .map(|i| Identity::new(format!("{}-{i}", cli.name), &instance))
            .collect(),
    };
    let members = members.map(|members| {
        members
            .into_iter()
            .map(|me| me.in_scope(scope.clone()))
            .collect::<Vec<_>>()
    });
    // The flags were checked; a member's name (`NAME-i`) can still be too long.
    let members = match members {
        Ok(members) => members,
        Err(error) => {
            eprintln!("mock-service: {error}");
            return ExitCode::from(2);
        }
    };
    let defaults = LinkOptions::service();
    let options = |part: &[Identity]| LinkOptions {
        reconnect_min: settings.broker.reconnect_min,
        reconnect_max: settings.broker.reconnect_max,
        ca_file: settings.broker.ca_file(),
        keys: keys.clone(),
        connection_name: match cli.count {
            None => format!("mock-service {}/{instance}", cli.name),
            Some(_) => format!(
                "mock-service {}..{} x{}/{instance}",
                part[0].service,
                part[part.len() - 1].service,
                part.len()
            ),
        },
        // A ping reaches every member at once, and Ctrl+C queues a goodbye per
        // member and monitor: room for a few of each, so none is dropped.
        outgoing_capacity: defaults.outgoing_capacity.max(4 * part.len()),
        ..defaults.clone()
    };
    let connections = members.len().div_ceil(PER_CONNECTION);
    info!(service = %cli.name, count = members.len(), connections, instance = %instance, scope = %scope, broker = %url, from = %from, signed = keys.is_some(), "answering pings");
    if keys.is_none() {
        // As the monitor says it: a monitor with a key will not hear us.
        warn!(
            "heartbeats are unsigned: anyone who can publish to the broker can ping as a monitor, and a monitor with a key refuses our echoes; set HEARTBEAT_KEY"
        );
    }
    let shutdown = CancellationToken::new();
    orchestrator_lib::cancel_on_shutdown_signal(shutdown.clone());
    let farewell = orchestrator_lib::Farewell::default();
    farewell.promise(cli.drain);
    // One responder per connection; the first to fail stops the others, and
    // every one is joined (each says its goodbyes on the way out).
    let mut parts = tokio::task::JoinSet::new();
    for part in members.chunks(PER_CONNECTION) {
        let endpoints = part.iter().map(Endpoint::service).collect();
        let link = orchestrator_lib::plumbing::connect_many(&url, endpoints, options(part));
        let (part, faults, shutdown) = (part.to_vec(), faults.clone(), shutdown.clone());
        let farewell = farewell.clone();
        parts.spawn(async move {
            let outcome = orchestrator_lib::plumbing::respond_fleet_with(
                link,
                part,
                faults,
                farewell,
                shutdown.clone(),
            )
            .await;
            if outcome.is_err() {
                shutdown.cancel();
            }
            outcome
        });
    }
    let mut outcome = Ok(());
    while let Some(joined) = parts.join_next().await {
        let part = joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
        if outcome.is_ok() {
            outcome = part;
        }
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mock-service: {error}");
            if error.is_configuration() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Names become queue names and dashboard rows: the wire's rule, applied to the flags.
fn check_name(flag: &str, name: &str) -> Result<(), String> {
    if orchestrator_lib::wire::is_valid_name(name) {
        return Ok(());
    }
    // Redacted, quoted and cut: a URL pasted here keeps its password, and a
    // hostile value cannot paint the terminal or flood it.
    Err(format!(
        "invalid {flag} {}: use {}",
        orchestrator_lib::plumbing::shown_value(name),
        orchestrator_lib::wire::name_rule()
    ))
}
