use std::io::IsTerminal;
use std::process::ExitCode;

use monitor::reload;
use monitor::sdnotify::{self, Notifier, Pulse};
use monitor::{Cli, Command, Output, Source};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    orchestrator_lib::plumbing::abort_on_panic();
    let cli: Cli = match heartbeat_config::parse_flags() {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    if let Some(Command::Status(args)) = &cli.command {
        // A one-shot HTTP request: no runtime, no logs, only the verdict.
        return monitor::check::run(args);
    }
    if let Some(Command::Silence(args)) = &cli.command {
        return monitor::quiet::client::run(args);
    }
    if let Some(Command::CheckConfig(args)) = &cli.command {
        return args.run();
    }
    // Before the runtime starts any thread: it takes variables out of the environment.
    let supervisor = match Notifier::take_from_env() {
        Ok(supervisor) => supervisor,
        Err(error) => return usage_error(error),
    };
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => {
            let code = runtime.block_on(watch(cli, supervisor));
            // Whatever a store call still does on a blocking thread, the stop
            // does not wait for it: its own deadline ends it, or the exit does.
            runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            code
        }
        Err(error) => {
            eprintln!("monitor: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn watch(cli: Cli, supervisor: Option<Notifier>) -> ExitCode {
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
    let password_warning = match &source {
        Source::Broker { url, from } => heartbeat_config::command_line_password_warning(url, *from),
        Source::Demo => None,
    };
    // The key comes from the environment only, never a file or a flag.
    let keys = match orchestrator_lib::Keys::from_env() {
        Ok(keys) => keys,
        Err(error) => return usage_error(error),
    };
    // The API's tokens come from the environment or a file, never a flag.
    let quiet =
        match monitor::quiet::Quiet::from_settings(&settings, |name| std::env::var(name).ok()) {
            Ok(quiet) => quiet,
            Err(error) => return usage_error(error),
        };
    let output = if cli.headless || !std::io::stdout().is_terminal() {
        let colour = orchestrator_lib::use_colour(std::io::stderr().is_terminal());
        orchestrator_lib::init_logging(std::io::stderr, colour);
        if let Some(warning) = password_warning {
            tracing::warn!("{warning}");
        }
        Output::Headless
    } else {
        // Said on the terminal before the dashboard takes it, where it
        // stays after quitting; the log file has it too.
        if let Some(warning) = password_warning {
            eprintln!("monitor: warning: {warning}");
        }
        // The dashboard owns the screen: logs go to a file the help overlay names.
        let log_path = cli.log_file.clone().or_else(monitor::logfile::default_path);
        match log_path.as_deref().map(monitor::logfile::LogFile::open) {
            Some(Ok(file)) => {
                let path = file.path().to_owned();
                orchestrator_lib::init_logging(std::sync::Mutex::new(file), false);
                if let Some(warning) = password_warning {
                    tracing::warn!("{warning}");
                }
                Output::Dashboard {
                    log_path: Some(path),
                }
            }
            Some(Err(error)) if cli.log_file.is_some() => {
                return usage_error(orchestrator_lib::plumbing::redact_credentials_in(&format!(
                    "cannot write the log file {}: {error}",
                    log_path.unwrap_or_default().display()
                )));
            }
            // The default place: the dashboard runs without a log, and says
            // so here, on the terminal, before it takes the screen (where
            // the line stays after quitting), not only in its `?` overlay.
            Some(Err(error)) => {
                eprintln!(
                    "monitor: no log file: cannot write {}: {error}; the dashboard runs without one (choose one with --log-file)",
                    orchestrator_lib::plumbing::redact_credentials_in(
                        &log_path.unwrap_or_default().display().to_string()
                    )
                );
                Output::Dashboard { log_path: None }
            }
            None => Output::Dashboard { log_path: None },
        }
    };
    let shutdown = CancellationToken::new();
    orchestrator_lib::cancel_on_shutdown_signal(shutdown.clone());
    let (pulse, pulse_rx) = watch::channel(Pulse::new(tokio::time::Instant::now()));
    let (notices, notices_rx) = tokio::sync::mpsc::unbounded_channel();
    let supervised = supervisor.map(|notifier| {
        let timings = sdnotify::Timings {
            interval: settings.interval,
            grace: settings.timeout,
        };
        let run = sdnotify::run(notifier, pulse_rx, notices_rx, timings, shutdown.clone());
        tokio::spawn(run)
    });
    // SIGHUP reloads a headless monitor (a service's); on a terminal it
    // keeps its meaning, the terminal has gone.
    let hangups = matches!(output, Output::Headless).then(|| reload::Hangups {
        load: Box::new(move || cli.settings()),
        supervisor: supervised.is_some().then_some(notices),
    });
    let outcome = monitor::run(
        settings,
        source,
        output,
        keys,
        quiet,
        pulse,
        hangups,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some(task) = supervised {
        let _ = task.await;
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("monitor: {error:#}");
            let misconfigured = error
                .downcast_ref::<orchestrator_lib::Error>()
                .is_some_and(orchestrator_lib::Error::is_configuration);
            // A setting to fix is exit 2, like a bad flag; anything else 1.
            if misconfigured {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn usage_error(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("monitor: {error}");
    ExitCode::from(2)
}
