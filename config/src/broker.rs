//! `[broker]`: where the broker is, how the link reconnects, what several
//! URLs are; and the broker URL's own precedence (flag, `CLOUDAMQP_URL`,
//! `AMQP_URL`, then the settings).

use std::fmt;
use std::time::Duration;

use orchestrator_lib::{BrokerUrl, BrokerUrls};
use serde::Deserialize;

use crate::{Settings, SettingsError};

/// `broker.url` in [`crate::DEFAULT_TOML`]: the local RabbitMQ as installed.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

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
/// The one warning for a password typed on the command line, where every
/// local user can read it (`ps`, `/proc/PID/cmdline`), naming the safer
/// places; `None` when the URL came from elsewhere or has no password.
pub fn command_line_password_warning(urls: &BrokerUrls, source: UrlSource) -> Option<&'static str> {
    (source == UrlSource::Flag && urls.as_slice().iter().any(BrokerUrl::has_password)).then_some(
        "the broker password is on the command line (--url), where every local user can read it (ps); \
         set CLOUDAMQP_URL or AMQP_URL instead, or broker.url in a config file only you can read",
    )
}

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
