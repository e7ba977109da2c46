use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use monitor::{Cli, Output, Source};
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
    let output = if cli.headless || !std::io::stdout().is_terminal() {
        init_tracing(std::io::stderr, std::io::stderr().is_terminal());
        Output::Headless
    } else {
        // The dashboard owns the screen: logs go to a file the help overlay names.
        let path = std::env::temp_dir().join(format!("monitor-{}.log", std::process::id()));
        match std::fs::File::create(&path) {
            Ok(file) => {
                init_tracing(Arc::new(file), false);
                Output::Dashboard {
                    log_path: Some(path),
                }
            }
            Err(_) => Output::Dashboard { log_path: None },
        }
    };
    let shutdown = CancellationToken::new();
    orchestrator_lib::cancel_on_shutdown_signal(shutdown.clone());
    match monitor::run(settings, source, output, shutdown).await {
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

fn init_tracing<W>(writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| QUIET_LAPIN.into()),
        )
        .init();
}
