//! `Settings`: every setting, as the layers give it (see `load`), and how
//! one service's own section falls back to `[detection]`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use crate::{BrokerSettings, BudgetSettings, HistorySettings, MaintenanceSettings, NotifySettings};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub id: String,
    /// Which heartbeat on the vhost this monitor runs: `default` (the
    /// names without a scope) or a scope name; see orchestrator-lib's `Scope`.
    pub scope: String,
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
    /// A hosted plan's allowance, which the interval is chosen to keep within.
    pub budget: BudgetSettings,
    /// Windows in which alerts are held, as a silence holds them.
    #[serde(default)]
    pub maintenance: Vec<MaintenanceSettings>,
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
    /// Members that must judge a subject DOWN for the group; 0: a majority
    /// of the members alive.
    pub quorum: usize,
}

impl GroupSettings {
    /// The quorum set, or `None` for a majority of the members alive.
    pub fn quorum(&self) -> Option<usize> {
        (self.quorum > 0).then_some(self.quorum)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// `host:port` for metrics, the status API and page; empty: no HTTP endpoint.
    pub listen: String,
    /// A file holding the bearer token that write requests (silences) need;
    /// `HEARTBEAT_API_TOKEN` wins. Neither: writes are off.
    #[serde(default)]
    pub token_file: String,
    /// A file holding a token that reads need too (`HEARTBEAT_API_READ_TOKEN`
    /// wins). Neither: reads are open.
    #[serde(default)]
    pub read_token_file: String,
    /// The most connections served at once; more wait in the kernel's
    /// backlog (a flood of them must not take the broker link's descriptors).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    256
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
    /// Services this one needs: while one of them is DOWN, this one's
    /// alerts are held and reported inside that one's.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

impl Settings {
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

fn services_by_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, ServiceSettings>, D::Error> {
    let raw = BTreeMap::<String, ServiceSettings>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect())
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
