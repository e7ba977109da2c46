//! Layered settings shared by `monitor` and `mock-service`.
//!
//! Layout:
//! - `default.toml` (next to this crate's `Cargo.toml`): every setting with
//!   its default and a comment; built in, so it is the lowest layer.
//! - [`Settings::load`]: that file, then an optional user file, then
//!   `MONITOR__...` environment variables. Flags are applied by each binary
//!   on the returned value, then [`Settings::validate`] runs.
//! - [`resolve_broker_url`]: the broker URL's own precedence.
//! - [`parse_flags`]: clap's parsing, with any URL's password hidden in its errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use orchestrator_lib::BrokerUrls;
use orchestrator_lib::wire::{is_valid_name, name_rule};
use serde::Deserialize;

mod generate;

/// The documented defaults, built into the binaries.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");
pub const ENV_PREFIX: &str = "MONITOR";
/// `broker.url` in [`DEFAULT_TOML`]: the local RabbitMQ as installed.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub id: String,
    pub expect: Vec<String>,
    /// Most instances tracked at once; echoes from more are refused and counted.
    pub max_instances: usize,
    /// An instance DOWN or LEFT for this long is forgotten.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
    #[serde(default, deserialize_with = "durations_by_name")]
    pub timeouts: BTreeMap<String, Duration>,
    pub detection: Detection,
    /// Per-service overrides of `detection` (and `timeout`), by lower-cased name.
    #[serde(default, deserialize_with = "services_by_name")]
    pub services: BTreeMap<String, ServiceSettings>,
    pub broker: BrokerSettings,
    /// Where alerts go: `[[notify]]` entries, none by default.
    #[serde(default)]
    pub notify: Vec<NotifySettings>,
    pub history: HistorySettings,
    pub http: HttpSettings,
    pub group: GroupSettings,
    /// The `MONITOR__…` variables set when these settings were loaded, so
    /// that an error about a value can say where it came from.
    #[serde(skip)]
    pub from_env: BTreeSet<String>,
}

/// A monitor group: several monitors of which one, the leader, notifies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    /// Monitors with the same name form a group; empty: no group.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// `host:port` for metrics, the status API and page; empty: no HTTP endpoint.
    pub listen: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectionMode {
    /// DOWN after a fixed silence (`timeout`).
    Fixed,
    /// Phi accrual: the deadline adapts to each instance's rhythm.
    Phi,
}

/// How services are judged; every field can be overridden per service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    pub mode: DetectionMode,
    pub phi_threshold: f64,
    #[serde(with = "humantime_serde")]
    pub phi_min_std_dev: Duration,
    #[serde(with = "humantime_serde")]
    pub phi_acceptable_pause: Duration,
    pub failures_before_down: u32,
    pub successes_before_up: u32,
    pub flapping_changes: u32,
    #[serde(with = "humantime_serde")]
    pub flapping_window: Duration,
    #[serde(default, with = "humantime_serde::option")]
    pub slow_limit: Option<Duration>,
    #[serde(default)]
    pub instances: Option<u32>,
}

/// One service's overrides; anything unset falls back to `detection`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    pub mode: Option<DetectionMode>,
    pub phi_threshold: Option<f64>,
    #[serde(default, with = "humantime_serde::option")]
    pub phi_min_std_dev: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub phi_acceptable_pause: Option<Duration>,
    pub failures_before_down: Option<u32>,
    pub successes_before_up: Option<u32>,
    pub flapping_changes: Option<u32>,
    #[serde(default, with = "humantime_serde::option")]
    pub flapping_window: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub slow_limit: Option<Duration>,
    pub instances: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// One URL, or several (a TOML list, or comma-separated) tried in order:
    /// kept as one comma-separated string, as [`BrokerUrls`] parses it.
    #[serde(deserialize_with = "one_or_many_urls")]
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// A PEM file of certificate authorities to trust for `amqps://`, on top
    /// of the system's. Empty: the system's only.
    pub ca_file: String,
    /// What several URLs are: one cluster's nodes, or brokers on their own.
    pub nodes: BrokerNodes,
}

/// What several broker URLs are, and so how the monitor reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerNodes {
    /// One RabbitMQ cluster: one connection, to the first node that answers,
    /// suffices (the cluster routes between its nodes).
    Cluster,
    /// Brokers that are not one cluster (a primary and a standby): a
    /// connection to each, pinging and hearing on each, so a service is
    /// heard whichever of them it connects to.
    Independent,
}

impl BrokerSettings {
    /// `ca_file` as a path, when set.
    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        (!self.ca_file.is_empty()).then(|| self.ca_file.clone().into())
    }
}

/// The state codes a transition can go to, as in the JSON lines' `to`. A
/// `[[notify]]` entry's `transitions` must name some of these, so that a
/// typo is an error instead of an alert that never comes.
pub const STATE_CODES: &[&str] = &[
    "never_seen",
    "up",
    "down",
    "suspect",
    "left",
    "flapping",
    "stale",
    "slow",
    "degraded",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum NotifyKind {
    Webhook,
    Alertmanager,
    Command,
}

impl TryFrom<String> for NotifyKind {
    type Error = String;

    fn try_from(kind: String) -> Result<Self, String> {
        match kind.as_str() {
            "webhook" => Ok(NotifyKind::Webhook),
            "alertmanager" => Ok(NotifyKind::Alertmanager),
            "command" => Ok(NotifyKind::Command),
            _ => Err(format!(
                "{kind:?} is not a kind of notify target; use webhook, alertmanager or command"
            )),
        }
    }
}

impl fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Alertmanager => "alertmanager",
            NotifyKind::Command => "command",
        })
    }
}

/// One `[[notify]]` entry: where to send, and which changes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    pub kind: NotifyKind,
    /// webhook: the URL to POST to; alertmanager: its base URL.
    #[serde(default)]
    pub url: String,
    /// command: the program and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// webhook: signs each body with HMAC-SHA256 when not empty.
    #[serde(default)]
    pub secret: String,
    /// States whose arrival is sent (as "firing"); leaving them is "resolved".
    #[serde(default = "default_transitions")]
    pub transitions: Vec<String>,
    /// How long an instance must stay in such a state before it is sent.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// Send the alert again this often while it holds; zero: never.
    #[serde(default, with = "humantime_serde")]
    pub reminder: Duration,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// One delivery attempt's limit (request, or command run).
    #[serde(default = "default_notify_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts after the first one fails, with backoff.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Events waiting for this target; more are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// alertmanager: the `severity` label.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// alertmanager: how often firing alerts are pushed again.
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend: Duration,
}

fn default_transitions() -> Vec<String> {
    ["down", "flapping", "degraded"].map(String::from).to_vec()
}
fn yes() -> bool {
    true
}
fn default_notify_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    3
}
fn default_queue() -> usize {
    256
}
fn default_severity() -> String {
    "critical".into()
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}

/// `[history]`: where transitions and per-minute figures are kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// SQLite file; empty with an empty `url` turns history off.
    pub path: String,
    /// `postgres://...`; wins over `path` when set.
    pub url: String,
    /// Older records are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Every call to the store (connect, write, read) is given up after this long.
    #[serde(default = "default_store_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_store_timeout() -> Duration {
    Duration::from_secs(5)
}

impl HistorySettings {
    pub fn enabled(&self) -> bool {
        !self.path.trim().is_empty() || !self.url.trim().is_empty()
    }
}

/// A setting that cannot be used, said in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

impl Settings {
    /// Built-in defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_with_env(file, None)
    }

    /// As [`Settings::load`], with the environment given as pairs instead of
    /// read from the process, so tests do not race on global state.
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<Vec<(String, String)>>,
    ) -> Result<Self, SettingsError> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(SettingsError(format!(
                    "config file {} does not exist or is not a file",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        let mut environment = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("expect")
            .try_parsing(true);
        let from_env: BTreeSet<String> = match &env {
            Some(pairs) => pairs.iter().map(|(k, _)| k.to_uppercase()).collect(),
            None => std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .map(|k| k.to_uppercase())
                .collect(),
        };
        let from_env = from_env
            .into_iter()
            .filter(|k| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        if let Some(pairs) = env {
            environment = environment.source(Some(pairs.into_iter().collect()));
        }
        let mut settings: Settings = builder
            .add_source(environment)
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| {
                let message = without_quoted_source(&e.to_string());
                SettingsError(format!(
                    "invalid configuration: {}",
                    name_the_variable(&message, &from_env)
                ))
            })?;
        settings.from_env = from_env;
        Ok(settings)
    }

    /// ` (from the environment: MONITOR__…)` when the variable for `key`
    /// was set; empty otherwise.
    fn origin(&self, key: &str) -> String {
        let variable = env_variable(key);
        if self.from_env.contains(&variable) {
            format!(" (from the environment: {variable})")
        } else {
            String::new()
        }
    }

    /// The checks no type can express. Run after flags are applied.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad =
            |key: &str, why: String| Err(SettingsError(format!("invalid setting `{key}`: {why}")));
        if self.interval.is_zero() {
            return bad("interval", "must be greater than zero".into());
        }
        if self.timeout < self.interval {
            return bad(
                "timeout",
                format!(
                    "{} is shorter than the interval ({}); a service would be declared DOWN between two pings",
                    humantime::format_duration(self.timeout),
                    humantime::format_duration(self.interval)
                ),
            );
        }
        for (service, timeout) in &self.timeouts {
            if *timeout < self.interval {
                return bad(
                    &format!("timeouts.{service}"),
                    format!(
                        "{} is shorter than the interval ({})",
                        humantime::format_duration(*timeout),
                        humantime::format_duration(self.interval)
                    ),
                );
            }
        }
        if self.max_instances == 0 {
            return bad("max_instances", "must be at least 1".into());
        }
        if !self.group.name.is_empty() && !is_valid_name(&self.group.name) {
            return bad(
                "group.name",
                format!("{:?}: {}", self.group.name, name_rule()),
            );
        }
        if self.forget_after < self.timeout {
            return bad(
                "forget_after",
                format!(
                    "{} is shorter than the timeout ({}); an instance would be forgotten as it goes DOWN",
                    humantime::format_duration(self.forget_after),
                    humantime::format_duration(self.timeout)
                ),
            );
        }
        check_detection("detection", &self.detection, |k| self.origin(k))?;
        for service in self.services.keys() {
            check_detection(
                &format!("services.{service}"),
                &self.detection_for(service),
                |k| self.origin(k),
            )?;
        }
        // Names are checked by the same rule as on the wire: a name no service
        // can have would wait forever for an echo that cannot come.
        if let Some(name) = self.expect.iter().find(|n| !is_valid_name(n)) {
            return bad(
                "expect",
                format!("{} is not a service name: use {}", shown(name), name_rule()),
            );
        }
        if !self.id.is_empty() && !is_valid_name(&self.id) {
            return bad(
                "id",
                format!("{} is not a valid id: use {}", shown(&self.id), name_rule()),
            );
        }
        if let Some(name) = self.timeouts.keys().find(|n| !is_valid_name(n)) {
            return bad(
                "timeouts",
                format!("{} is not a service name: use {}", shown(name), name_rule()),
            );
        }
        if self.broker.reconnect_min.is_zero() {
            return bad("broker.reconnect_min", "must be greater than zero".into());
        }
        if let Some(ca_file) = self.broker.ca_file() {
            let pem = std::fs::read_to_string(&ca_file).map_err(|e| {
                SettingsError(format!(
                    "invalid setting `broker.ca_file`: cannot read {}: {e}",
                    ca_file.display()
                ))
            })?;
            if let Err(why) = orchestrator_lib::plumbing::check_ca_pem(&pem) {
                return bad("broker.ca_file", format!("{} {why}", ca_file.display()));
            }
        }
        if !self.http.listen.is_empty() && !is_host_and_port(&self.http.listen) {
            return bad(
                "http.listen",
                format!(
                    "{:?} is not an address with a port, like 127.0.0.1:9464 or [::]:9464",
                    self.http.listen
                ),
            );
        }
        self.broker
            .url
            .parse::<BrokerUrls>()
            .map_err(|e| SettingsError(format!("invalid setting `broker.url`: {e}")))?;
        for (i, entry) in self.notify.iter().enumerate() {
            entry.validate().map_err(|(key, why)| {
                SettingsError(format!(
                    "invalid setting `notify[{i}].{key}` ({}): {why}",
                    entry.kind
                ))
            })?;
        }
        let url = self.history.url.trim();
        if !url.is_empty() && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return bad(
                "history.url",
                "must start with postgres:// (for SQLite, set history.path instead)".into(),
            );
        }
        if self.history.enabled() && self.history.retention < Duration::from_secs(3600) {
            return bad("history.retention", "must be at least 1h".into());
        }
        if self.history.enabled()
            && !(Duration::from_millis(100)..=Duration::from_secs(300))
                .contains(&self.history.timeout)
        {
            return bad("history.timeout", "must be between 100ms and 5m".into());
        }
        Ok(())
    }

    /// The timeout for one service: `services.<name>.timeout`, then
    /// `timeouts.<name>`, then `timeout`.
    pub fn timeout_for(&self, service: &str) -> Duration {
        let name = service.to_lowercase();
        self.services
            .get(&name)
            .and_then(|s| s.timeout)
            .or_else(|| self.timeouts.get(&name).copied())
            .unwrap_or(self.timeout)
    }

    /// How one service is judged: its overrides over `detection`.
    pub fn detection_for(&self, service: &str) -> Detection {
        let d = &self.detection;
        let Some(s) = self.services.get(&service.to_lowercase()) else {
            return d.clone();
        };
        Detection {
            mode: s.mode.unwrap_or(d.mode),
            phi_threshold: s.phi_threshold.unwrap_or(d.phi_threshold),
            phi_min_std_dev: s.phi_min_std_dev.unwrap_or(d.phi_min_std_dev),
            phi_acceptable_pause: s.phi_acceptable_pause.unwrap_or(d.phi_acceptable_pause),
            failures_before_down: s.failures_before_down.unwrap_or(d.failures_before_down),
            successes_before_up: s.successes_before_up.unwrap_or(d.successes_before_up),
            flapping_changes: s.flapping_changes.unwrap_or(d.flapping_changes),
            flapping_window: s.flapping_window.unwrap_or(d.flapping_window),
            slow_limit: s.slow_limit.or(d.slow_limit),
            instances: s.instances.or(d.instances),
        }
    }

    /// Every service named in the settings (`timeouts`, `services`), lower-cased.
    pub fn named_services(&self) -> impl Iterator<Item = &String> {
        let mut names: Vec<&String> = self.timeouts.keys().chain(self.services.keys()).collect();
        names.sort();
        names.dedup();
        names.into_iter()
    }
}

/// The variable that sets `key`: `detection.phi_threshold` is
/// `MONITOR__DETECTION__PHI_THRESHOLD`.
fn env_variable(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

/// A load error about ``key `k` `` set by a variable names the variable
/// (the `config` crate says "in the environment" for some errors and
/// nothing for others).
fn name_the_variable(message: &str, from_env: &BTreeSet<String>) -> String {
    let key = message
        .split_once("for key `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key);
    match key.map(env_variable) {
        Some(variable) if from_env.contains(&variable) => format!(
            "{} (from the environment: {variable})",
            message.replace(" in the environment", "")
        ),
        _ => message.to_owned(),
    }
}

/// The largest `phi_threshold`: a chance of 10^-30 of a false alarm. Past
/// it f64 can no longer tell the probabilities apart, and a larger number
/// is a typo more often than a wish.
pub const MAX_PHI_THRESHOLD: f64 = 30.0;
/// The longest `phi_acceptable_pause`: a pause longer than an hour is no
/// heartbeat monitoring at all.
pub const MAX_ACCEPTABLE_PAUSE: Duration = Duration::from_secs(3600);

fn check_detection(
    prefix: &str,
    d: &Detection,
    origin: impl Fn(&str) -> String,
) -> Result<(), SettingsError> {
    let bad = |key: &str, why: &str| {
        let full = format!("{prefix}.{key}");
        Err(SettingsError(format!(
            "invalid setting `{full}`{}: {why}",
            origin(&full)
        )))
    };
    // Below log10(2) phi is reached before the mean interval: every beat
    // would be late. Above the maximum, see `MAX_PHI_THRESHOLD`.
    if !(d.phi_threshold.is_finite() && (0.5..=MAX_PHI_THRESHOLD).contains(&d.phi_threshold)) {
        return bad(
            "phi_threshold",
            &format!(
                "{} is not between 0.5 and {MAX_PHI_THRESHOLD} (8 is usual; each step up is ten times fewer false alarms, and a later verdict)",
                d.phi_threshold
            ),
        );
    }
    if d.phi_min_std_dev.is_zero() {
        return bad("phi_min_std_dev", "must be greater than zero");
    }
    if d.phi_acceptable_pause > MAX_ACCEPTABLE_PAUSE {
        return bad(
            "phi_acceptable_pause",
            &format!(
                "{} is longer than {}",
                humantime::format_duration(d.phi_acceptable_pause),
                humantime::format_duration(MAX_ACCEPTABLE_PAUSE)
            ),
        );
    }
    if d.failures_before_down == 0 {
        return bad("failures_before_down", "must be at least 1");
    }
    if d.successes_before_up == 0 {
        return bad("successes_before_up", "must be at least 1");
    }
    if d.flapping_changes > 0 && d.flapping_window.is_zero() {
        return bad(
            "flapping_window",
            "must be greater than zero while flapping_changes is set",
        );
    }
    if d.slow_limit.is_some_and(|l| l.is_zero()) {
        return bad(
            "slow_limit",
            "must be greater than zero (leave it out to turn it off)",
        );
    }
    if d.instances == Some(0) {
        return bad(
            "instances",
            "must be at least 1 (leave it out to expect any number)",
        );
    }
    Ok(())
}

fn services_by_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, ServiceSettings>, D::Error> {
    let raw = BTreeMap::<String, ServiceSettings>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect())
}

impl NotifySettings {
    /// The checks serde cannot make: (key, why).
    fn validate(&self) -> Result<(), (&'static str, String)> {
        match self.kind {
            NotifyKind::Webhook | NotifyKind::Alertmanager => {
                let parsed = url::Url::parse(&self.url)
                    .map_err(|e| ("url", format!("{:?}: {e}", self.url)))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(("url", format!("{:?} must be http:// or https://", self.url)));
                }
            }
            NotifyKind::Command => {
                if self.command.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err((
                        "command",
                        "needs a program, e.g. [\"/usr/local/bin/page-oncall\"]".into(),
                    ));
                }
            }
        }
        if self.transitions.is_empty() {
            return Err(("transitions", "must name at least one state".into()));
        }
        if let Some(bad) = self
            .transitions
            .iter()
            .find(|s| !STATE_CODES.contains(&s.as_str()))
        {
            return Err((
                "transitions",
                format!("{bad:?} is not a state; use {}", STATE_CODES.join(", ")),
            ));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be greater than zero".into()));
        }
        if self.queue == 0 {
            return Err(("queue", "must be at least 1".into()));
        }
        if self.kind == NotifyKind::Alertmanager && self.resend.is_zero() {
            return Err(("resend", "must be greater than zero".into()));
        }
        Ok(())
    }
}

/// How a name breaks the rule is said in words; the text is quoted with
/// control characters escaped, and cut, so a hostile value cannot paint the terminal.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(40).collect();
    let quoted = format!("{cut:?}");
    if cut.len() < name.len() {
        format!("{quoted}…")
    } else {
        quoted
    }
}

/// A TOML parse error quotes the offending line, which may hold a
/// password: keep the position and the reason, drop the quote, and make it
/// one line.
fn without_quoted_source(message: &str) -> String {
    let mut out = String::new();
    for line in message.lines().map(str::trim) {
        let quotes_source = line.starts_with('|')
            || line
                .split_once('|')
                .is_some_and(|(number, _)| number.trim().parse::<u32>().is_ok());
        if line.is_empty() || quotes_source {
            continue;
        }
        if !out.is_empty() {
            out.push_str(if line.starts_with("in ") { " " } else { ": " });
        }
        out.push_str(line);
    }
    out
}

/// Parse flags as clap does, except that clap's message for a bad argument
/// quotes it, and a URL typed without `--url` would show its password:
/// print it with credentials hidden. Exits 2 for bad flags, 0 for `--help`
/// and `--version`, as clap itself would; `--generate` writes the man page
/// or a shell completion instead (see `generate`).
pub fn parse_flags<T: clap::Parser>() -> Result<T, std::process::ExitCode> {
    if let Some(exit) = generate::from_args::<T>() {
        return Err(exit);
    }
    T::try_parse().map_err(|error| {
        let text = orchestrator_lib::plumbing::redact_credentials_in(&error.to_string());
        if error.use_stderr() {
            eprintln!("{}", one_line(&text));
            std::process::ExitCode::from(2)
        } else {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
    })
}

/// A clap error as one line, as every other bad setting is: its first
/// paragraph (the error, and the arguments it names on the lines below it),
/// joined; the usage and the tips after it are left to `--help`.
fn one_line(error: &str) -> String {
    let first = error.trim_start().split("\n\n").next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    format!("{} (see --help)", words.join(" "))
}

/// `127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`: a host (or IP) and a port.
fn is_host_and_port(address: &str) -> bool {
    if address.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    match address.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains([':', '/', ' ']) && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// Keys are lower-cased: the config crate folds keys to lower case, and
/// service names are matched the same way, so `Payments` and `payments` agree.
fn durations_by_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Duration>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(with = "humantime_serde")] Duration);
    let raw = BTreeMap::<String, Wrapped>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(k, Wrapped(d))| (k.to_lowercase(), d))
        .collect())
}

/// Where the broker URL came from, for the startup log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    Flag,
    CloudAmqpUrl,
    AmqpUrl,
    Settings,
    /// Nothing set it: the built-in `broker.url`.
    Default,
}

impl fmt::Display for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlSource::Flag => "--url",
            UrlSource::CloudAmqpUrl => "CLOUDAMQP_URL",
            UrlSource::AmqpUrl => "AMQP_URL",
            UrlSource::Settings => "configuration (broker.url)",
            UrlSource::Default => "default (broker.url)",
        })
    }
}

/// `url = "amqp://a"` or `url = ["amqp://a", "amqp://b"]`.
fn one_or_many_urls<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(url) => url,
        OneOrMany::Many(urls) => urls.join(","),
    })
}

/// The broker URL (or URLs, comma-separated, tried in order), in order: the
/// `--url` flag, `CLOUDAMQP_URL`, `AMQP_URL`, then the settings (file,
/// `MONITOR__BROKER__URL`, built-in default). Empty variables count as unset.
pub fn resolve_broker_url(
    flag: Option<&str>,
    settings: &Settings,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(BrokerUrls, UrlSource), SettingsError> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let (raw, source) = if let Some(flag) = flag {
        (flag.to_owned(), UrlSource::Flag)
    } else if let Some(url) = non_empty(env("CLOUDAMQP_URL")) {
        (url, UrlSource::CloudAmqpUrl)
    } else if let Some(url) = non_empty(env("AMQP_URL")) {
        (url, UrlSource::AmqpUrl)
    } else if settings.broker.url == DEFAULT_BROKER_URL {
        (settings.broker.url.clone(), UrlSource::Default)
    } else {
        (settings.broker.url.clone(), UrlSource::Settings)
    };
    let url = raw
        .parse::<BrokerUrls>()
        .map_err(|e| SettingsError(format!("{e} (from {source})")))?;
    Ok((url, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load_with_env(None, env(pairs)).and_then(|s| s.validate().map(|()| s))
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = load(&[]).unwrap();
        assert_eq!(s.interval, Duration::from_secs(1));
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert_eq!(s.broker.url, DEFAULT_BROKER_URL);
        assert!(s.expect.is_empty() && s.timeouts.is_empty() && s.id.is_empty());
        assert_eq!(s.http.listen, "", "no HTTP endpoint unless asked for");
        assert_eq!(s.max_instances, 10_000);
        assert_eq!(s.forget_after, Duration::from_secs(24 * 3600));
        for listen in ["127.0.0.1:9464", "[::1]:0", "localhost:9464", "0.0.0.0:80"] {
            let s = load(&[("MONITOR__HTTP__LISTEN", listen)]).unwrap();
            assert_eq!(s.http.listen, listen);
        }
    }

    #[test]
    fn environment_overrides_the_defaults() {
        let s = load(&[
            ("MONITOR__INTERVAL", "500ms"),
            ("MONITOR__TIMEOUT", "2s"),
            ("MONITOR__EXPECT", "orders,payments"),
            ("MONITOR__TIMEOUTS__PAYMENTS", "10s"),
            ("MONITOR__BROKER__URL", "amqp://u:p@rabbit:5672/%2f"),
        ])
        .unwrap();
        assert_eq!(s.interval, Duration::from_millis(500));
        assert_eq!(s.expect, ["orders", "payments"]);
        assert_eq!(s.timeout_for("payments"), Duration::from_secs(10));
        assert_eq!(s.timeout_for("Payments"), Duration::from_secs(10));
        assert_eq!(s.timeout_for("orders"), Duration::from_secs(2));
        assert_eq!(s.broker.url, "amqp://u:p@rabbit:5672/%2f");
    }

    #[test]
    fn a_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("hb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.toml");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(
            f,
            "interval = \"2s\"\ntimeout = \"9s\"\n[timeouts]\nslow = \"30s\""
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&path), env(&[("MONITOR__TIMEOUT", "7s")])).unwrap();
        assert_eq!(s.interval, Duration::from_secs(2));
        assert_eq!(s.timeout, Duration::from_secs(7));
        assert_eq!(s.timeout_for("slow"), Duration::from_secs(30));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_syntax_error_in_a_file_never_quotes_the_line() {
        let dir = std::env::temp_dir().join(format!("hb-config-syntax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.toml");
        for text in [
            "[broker]\nurl = \"amqp://u:S3cretPW@h/%2f\n",
            "[broker]\nurl = 5 S3cretPW\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Settings::load_with_env(Some(&path), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(!err.contains("S3cretPW"), "{err}");
            assert!(err.contains("line 2"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_in_the_config_follow_the_wire_rule() {
        let dir = std::env::temp_dir().join(format!("hb-config-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.toml");
        std::fs::write(&path, "[timeouts]\n\"a b\" = \"5s\"\n").unwrap();
        let err = Settings::load_with_env(Some(&path), env(&[]))
            .and_then(|s| s.validate())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid setting `timeouts`"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
        for (pairs, expected) in [
            (&[("MONITOR__EXPECT", "orders,a\u{1b}[2J")][..], "`expect`"),
            (&[("MONITOR__ID", "ops/1")][..], "`id`"),
        ] {
            let err = load(pairs).unwrap_err().to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
            assert!(
                !err.contains('\u{1b}'),
                "a raw escape reached the message: {err:?}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_setting_in_one_line() {
        let cases: [(&[(&str, &str)], &str); 10] = [
            (&[("MONITOR__HTTP__LISTEN", "9464")], "`http.listen`"),
            (
                &[("MONITOR__HTTP__LISTEN", "http://127.0.0.1:9464")],
                "`http.listen`",
            ),
            (
                &[("MONITOR__INTERVAL", "0s")],
                "`interval`: must be greater than zero",
            ),
            (
                &[("MONITOR__TIMEOUT", "500ms")],
                "`timeout`: 500ms is shorter than the interval (1s)",
            ),
            (&[("MONITOR__INTERVAL", "soon")], "interval"),
            (&[("MONITOR__INTERVALL", "1s")], "unknown field `intervall`"),
            (&[("MONITOR__BROKER__URL", "http://x")], "`broker.url`"),
            (&[("MONITOR__TIMEOUTS__SLOW", "10ms")], "`timeouts.slow`"),
            (
                &[("MONITOR__MAX_INSTANCES", "0")],
                "`max_instances`: must be at least 1",
            ),
            (
                &[("MONITOR__FORGET_AFTER", "1s")],
                "`forget_after`: 1s is shorter than the timeout (3s)",
            ),
        ];
        for (pairs, expected) in cases {
            let err = load(pairs).unwrap_err().to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
            assert!(!err.contains('\n'), "more than one line: {err}");
        }
    }

    fn load_file(text: &str) -> Result<Settings, SettingsError> {
        let dir = std::env::temp_dir().join(format!(
            "hb-config-notify-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.toml");
        std::fs::write(&path, text).unwrap();
        let loaded =
            Settings::load_with_env(Some(&path), env(&[])).and_then(|s| s.validate().map(|()| s));
        std::fs::remove_dir_all(dir).unwrap();
        loaded
    }

    #[test]
    fn the_broker_url_may_be_a_list_or_one_string() {
        let s = load_file("[broker]\nurl = [\"amqp://u:pw@a/\", \"amqp://u:pw@b/\"]\n").unwrap();
        let (urls, _) = resolve_broker_url(None, &s, |_| None).unwrap();
        assert_eq!(urls.len(), 2);
        assert_eq!(urls.to_string(), "amqp://u:****@a/, amqp://u:****@b/");
        let s = load(&[("MONITOR__BROKER__URL", "amqp://a/,amqp://b/")]).unwrap();
        assert_eq!(resolve_broker_url(None, &s, |_| None).unwrap().0.len(), 2);
        let s = load_file("[broker]\nurl = \"amqp://a/\"\n").unwrap();
        assert_eq!(resolve_broker_url(None, &s, |_| None).unwrap().0.len(), 1);
        let err = load_file("[broker]\nurl = [\"amqp://a/\", \"http://b/\"]\n").unwrap_err();
        assert!(err.to_string().contains("`broker.url`"), "{err}");
    }

    #[test]
    fn notify_entries_and_history_load_with_their_defaults() {
        let s = load_file(
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:8099/hook\"\nfor = \"30s\"\n\n\
             [[notify]]\nkind = \"command\"\ncommand = [\"/bin/true\"]\ntransitions = [\"down\", \"left\"]\n\
             send_resolved = false\n\n[history]\nurl = \"postgres://u:p@db/hb\"\n",
        )
        .unwrap();
        assert_eq!(s.notify.len(), 2);
        let hook = &s.notify[0];
        assert_eq!(
            (hook.kind, hook.for_),
            (NotifyKind::Webhook, Duration::from_secs(30))
        );
        assert_eq!(hook.transitions, ["down", "flapping", "degraded"]);
        assert!(hook.send_resolved && hook.reminder.is_zero());
        assert_eq!((hook.retries, hook.queue), (3, 256));
        assert_eq!(s.notify[1].transitions, ["down", "left"]);
        assert!(!s.notify[1].send_resolved);
        assert_eq!(s.history.path, "heartbeat.db");
        assert!(s.history.enabled());
        assert_eq!(s.history.retention, Duration::from_secs(30 * 24 * 3600));
        assert!(load(&[]).unwrap().notify.is_empty());
    }

    #[test]
    fn bad_notify_and_history_settings_name_the_entry_in_one_line() {
        let cases = [
            (
                "[[notify]]\nkind = \"sms\"\n",
                "\"sms\" is not a kind of notify target; use webhook, alertmanager or command",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\n",
                "`notify[0].url` (webhook)",
            ),
            (
                "[[notify]]\nkind = \"alertmanager\"\nurl = \"ftp://x\"\n",
                "`notify[0].url` (alertmanager): \"ftp://x\" must be http:// or https://",
            ),
            (
                "[[notify]]\nkind = \"command\"\n",
                "`notify[0].command` (command)",
            ),
            (
                "[[notify]]\nkind = \"command\"\ncommand = [\"x\"]\ntransitions = [\"dwon\"]\n",
                "`notify[0].transitions` (command): \"dwon\" is not a state",
            ),
            (
                "[[notify]]\nkind = \"command\"\ncommand = [\"x\"]\nfor = \"soon\"\n",
                "for",
            ),
            (
                "[[notify]]\nkind = \"command\"\ncommand = [\"x\"]\nurll = \"\"\n",
                "unknown field `urll`",
            ),
            (
                "[history]\nurl = \"mysql://x\"\n",
                "`history.url`: must start with postgres://",
            ),
            (
                "[history]\nretention = \"1m\"\n",
                "`history.retention`: must be at least 1h",
            ),
        ];
        for (text, expected) in cases {
            let err = load_file(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains('\n'), "more than one line: {err}");
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Settings::load_with_env(Some(Path::new("/nonexistent/monitor.toml")), env(&[]))
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/monitor.toml"),
            "{err}"
        );
    }

    #[test]
    fn broker_url_precedence() {
        let s = load(&[]).unwrap();
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = vars(&[
            ("CLOUDAMQP_URL", "amqps://c:pw@cloud/v"),
            ("AMQP_URL", "amqp://a@local/"),
        ]);
        assert_eq!(
            resolve_broker_url(Some("amqp://flag/"), &s, both)
                .unwrap()
                .1,
            UrlSource::Flag
        );
        let (url, source) = resolve_broker_url(None, &s, both).unwrap();
        assert_eq!(
            (url.to_string().as_str(), source),
            ("amqps://c:****@cloud/v", UrlSource::CloudAmqpUrl)
        );
        let (urls, _) = resolve_broker_url(Some("amqp://a/,amqp://u:pw@b/"), &s, both).unwrap();
        assert_eq!(urls.to_string(), "amqp://a/, amqp://u:****@b/");
        let amqp_only = vars(&[("CLOUDAMQP_URL", ""), ("AMQP_URL", "amqp://a@local/")]);
        assert_eq!(
            resolve_broker_url(None, &s, amqp_only).unwrap().1,
            UrlSource::AmqpUrl
        );
        assert_eq!(
            resolve_broker_url(None, &s, vars(&[])).unwrap().1,
            UrlSource::Default
        );
        let configured = load(&[("MONITOR__BROKER__URL", "amqp://u:pw@elsewhere/")]).unwrap();
        assert_eq!(
            resolve_broker_url(None, &configured, vars(&[])).unwrap().1,
            UrlSource::Settings
        );
        let err = resolve_broker_url(None, &s, vars(&[("CLOUDAMQP_URL", "nope")])).unwrap_err();
        assert!(err.to_string().ends_with("(from CLOUDAMQP_URL)"), "{err}");
    }

    #[test]
    fn phi_threshold_and_acceptable_pause_have_a_range_and_name_their_variable() {
        for threshold in ["400", "31", "0.1", "NaN", "inf"] {
            let err = load(&[("MONITOR__DETECTION__PHI_THRESHOLD", threshold)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`detection.phi_threshold` (from the environment: MONITOR__DETECTION__PHI_THRESHOLD)")
                    && err.contains("between 0.5 and 30"),
                "{threshold}: {err}"
            );
        }
        for threshold in ["0.5", "8", "30"] {
            load(&[("MONITOR__DETECTION__PHI_THRESHOLD", threshold)]).unwrap();
        }
        let err = load(&[(
            "MONITOR__SERVICES__SLOW__PHI_ACCEPTABLE_PAUSE",
            "1000000000h",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`services.slow.phi_acceptable_pause` (from the environment: MONITOR__SERVICES__SLOW__PHI_ACCEPTABLE_PAUSE)"),
            "{err}"
        );
        // From a file, no variable is blamed.
        let err = load_file("[detection]\nphi_threshold = 400.0\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("environment"), "{err}");
    }

    #[test]
    fn a_value_the_environment_cannot_parse_names_its_variable() {
        for (variable, value) in [
            ("MONITOR__INTERVAL", "soon"),
            ("MONITOR__DETECTION__PHI_THRESHOLD", "abc"),
            ("MONITOR__DETECTION__FAILURES_BEFORE_DOWN", "-1"),
        ] {
            let err = load(&[(variable, value)]).unwrap_err().to_string();
            assert!(
                err.contains(&format!("(from the environment: {variable})")),
                "{variable}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
