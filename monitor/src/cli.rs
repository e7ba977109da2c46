use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use heartbeat_config::{DetectionMode, Settings, SettingsError};

/// Heartbeat failure detector for services on RabbitMQ: pings every service
/// through a fanout exchange and reports who is UP and who is DOWN.
#[derive(Debug, Parser)]
#[command(
    name = "monitor",
    version = env!("HEARTBEAT_VERSION"),
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Run with simulated services on an in-process broker; needs no RabbitMQ.
    #[arg(long)]
    pub demo: bool,

    /// Write one JSON object per transition to stdout instead of opening the
    /// dashboard. Implied when stdout is not a terminal.
    #[arg(long)]
    pub headless: bool,

    /// Broker URL, amqp:// or amqps://. Wins over CLOUDAMQP_URL, AMQP_URL and the config file.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// A TOML file with settings to apply over the built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Time between pings, e.g. 500ms or 2s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,

    /// Silence after which a service is DOWN, e.g. 3s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    /// How silence is judged: `phi` (adaptive, phi accrual) or `fixed` (the timeout).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<DetectionMode>,

    /// This monitor's id (default: <hostname>-<pid>).
    #[arg(long)]
    pub id: Option<String>,

    /// Which heartbeat on the vhost to run: ping and hear only the services
    /// started with the same scope (staging, production, ...); `default`
    /// is the names services use unless told otherwise.
    #[arg(long, value_name = "NAME")]
    pub scope: Option<String>,

    /// Where the dashboard writes its logs (default: $XDG_STATE_HOME/heartbeat/monitor.log,
    /// else ~/.local/state/heartbeat/monitor.log). Headless, logs go to stderr.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Services to expect, shown as never seen until they answer. Repeat or comma-separate.
    #[arg(long, value_name = "SERVICE", value_delimiter = ',')]
    pub expect: Vec<String>,

    /// Serve metrics, the status API and page on this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask a running monitor how its services are, print a table, and exit
    /// as a Nagios plugin does: 0 all UP, 1 warning, 2 critical, 3 unknown.
    Status(StatusArgs),
    /// Check a settings file without starting: the file over the built-in
    /// defaults, with the MONITOR__ environment on top, validated as at start
    /// (and the broker URL it resolves to). Exit 0 when the monitor would
    /// start with it, else 2 and the one line saying why.
    CheckConfig(CheckConfigArgs),
    /// Hold alerts for a while through a running monitor's API: add, list, expire.
    Silence(crate::quiet::client::SilenceArgs),
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The file to check (default: the built-in defaults and the environment only).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl CheckConfigArgs {
    /// What `monitor check-config` prints and its exit code.
    pub fn run(&self) -> ExitCode {
        let checked = Settings::load(self.config.as_deref())
            .and_then(|settings| settings.validate().map(|()| settings))
            .and_then(|settings| {
                heartbeat_config::resolve_broker_url(None, &settings, |name| {
                    std::env::var(name).ok()
                })
            });
        let what = match &self.config {
            Some(path) => path.display().to_string(),
            None => "the built-in defaults".to_owned(),
        };
        match checked {
            Ok(_) => {
                println!("{what}: ok");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("monitor: {error}");
                ExitCode::from(2)
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The monitor's HTTP endpoint (its --listen address).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,

    /// Only this service's instances.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    /// Print the status document (JSON) instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Only the monitor's own health (its /healthz: a broker link, a loop
    /// that runs), not its services': 0 when it can judge, 2 when it cannot,
    /// 3 when it cannot be reached. For a container's HEALTHCHECK.
    #[arg(long, conflicts_with_all = ["service", "json"])]
    pub healthz: bool,

    /// Give up on the monitor after this long (exit 3).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl Cli {
    /// Defaults, config file and environment, then these flags on top, validated.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(interval) = self.interval {
            settings.interval = interval;
        }
        if let Some(timeout) = self.timeout {
            settings.timeout = timeout;
        }
        if let Some(mode) = self.mode {
            settings.detection.mode = mode;
        }
        if let Some(id) = &self.id {
            settings.id.clone_from(id);
        }
        if let Some(scope) = &self.scope {
            settings.scope.clone_from(scope);
        }
        settings.expect.extend(self.expect.iter().cloned());
        if let Some(listen) = &self.listen {
            settings.http.listen.clone_from(listen);
        }
        if let Some(page) = own_status_page(&settings.http.listen) {
            for entry in &mut settings.notify {
                if entry.status_page.is_empty() {
                    entry.status_page.clone_from(&page);
                }
            }
        }
        settings.validate()?;
        Ok(settings)
    }
}

/// The status page this monitor serves, for the links Slack and email
/// targets send when their `status_page` is not set: `http://` and the
/// listen address, an unspecified one (`0.0.0.0`, `[::]`) read as this
/// host's name, which is what a person elsewhere can reach.
fn own_status_page(listen: &str) -> Option<String> {
    let (host, port) = listen.rsplit_once(':')?;
    // A port the system picks is known only once bound: no link then.
    if port == "0" {
        return None;
    }
    let host = match host {
        "0.0.0.0" | "[::]" | "" => gethostname::gethostname().into_string().ok()?,
        other => other.to_owned(),
    };
    Some(format!("http://{host}:{port}/"))
}

fn parse_mode(value: &str) -> Result<DetectionMode, String> {
    match value {
        "phi" => Ok(DetectionMode::Phi),
        "fixed" => Ok(DetectionMode::Fixed),
        other => Err(format!("{other:?} is not a mode; use phi or fixed")),
    }
}

#[cfg(test)]
mod tests {
    use super::own_status_page;

    #[test]
    fn the_own_status_page_is_the_listen_address_a_person_can_reach() {
        assert_eq!(
            own_status_page("127.0.0.1:9464").as_deref(),
            Some("http://127.0.0.1:9464/")
        );
        assert_eq!(own_status_page(""), None);
        assert_eq!(own_status_page("127.0.0.1:0"), None);
        let any = own_status_page("0.0.0.0:9464").unwrap();
        assert!(!any.contains("0.0.0.0") && any.ends_with(":9464/"), "{any}");
    }
}
