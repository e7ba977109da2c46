use std::process::ExitCode;

use clap::Parser;
use monitor::{Cli, Source};
use tokio_util::sync::CancellationToken;

/// lapin logs every connection error at ERROR itself; the transport already
/// reports each one once, with the redacted URL and what happens next.
const QUIET_LAPIN: &str = "info,lapin=off";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(error) => return usage_error(error),
    };
    let source = if cli.demo {
        Source::Demo
    } else {
        match heartbeat_config::resolve_broker_url(cli.url.as_deref(), &settings, |name| {
            std::env::var(name).ok()
        }) {
            Ok((url, from)) => Source::Broker { url, from },
            Err(error) => return usage_error(error),
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| QUIET_LAPIN.into()),
        )
        .init();
    let shutdown = CancellationToken::new();
    orchestrator_lib::cancel_on_shutdown_signal(shutdown.clone());
    match monitor::run(settings, source, cli.headless, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("monitor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("monitor: {error}");
    ExitCode::from(2)
}
