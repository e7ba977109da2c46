//! The checks no type can express, run after flags are applied: each
//! failure one line naming the setting (and the `MONITOR__...` variable,
//! when one set it).

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_lib::BrokerUrls;
use orchestrator_lib::wire::{is_valid_name, name_rule};

use crate::load::env_variable;
use crate::{Detection, Settings, SettingsError, dependency_cycle};

impl Settings {
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
        if self.budget.enabled() && self.budget.longest_interval < self.interval {
            return bad(
                "budget.longest_interval",
                format!(
                    "{} is shorter than the interval ({}), the shortest a budget pings at",
                    humantime::format_duration(self.budget.longest_interval),
                    humantime::format_duration(self.interval)
                ),
            );
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
        if orchestrator_lib::Scope::new(&self.scope).is_err() {
            return bad(
                "scope",
                format!(
                    "{} is not a scope: use {}{}",
                    shown(&self.scope),
                    orchestrator_lib::plumbing::scope_rule(),
                    self.origin("scope")
                ),
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
        if self.http.max_connections == 0 {
            return bad(
                "http.max_connections",
                "0 would serve nobody; give at least 1 (the default is 256)".into(),
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
        for (i, window) in self.maintenance.iter().enumerate() {
            window.validate().map_err(|(key, why)| {
                SettingsError(format!("invalid setting `maintenance[{i}].{key}`: {why}"))
            })?;
        }
        for (service, settings) in &self.services {
            if let Some(name) = settings.depends_on.iter().find(|n| !is_valid_name(n)) {
                return bad(
                    &format!("services.{service}.depends_on"),
                    format!("{} is not a service name: use {}", shown(name), name_rule()),
                );
            }
        }
        let edges: BTreeMap<String, Vec<String>> = self
            .services
            .iter()
            .map(|(name, s)| (name.clone(), s.depends_on.clone()))
            .collect();
        if let Some(cycle) = dependency_cycle(&edges) {
            return bad(
                "depends_on",
                format!("a cycle: {cycle}; a service cannot wait on itself"),
            );
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
