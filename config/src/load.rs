//! The layers: the built-in `default.toml`, an optional file, then
//! `MONITOR__...` variables; a load error in one line, without the quoted
//! source line (it may hold a password), naming the variable that set it.

use std::collections::BTreeSet;
use std::path::Path;

use config::{Config, Environment, File, FileFormat};

use crate::{Settings, SettingsError};

/// The documented defaults, built into the binaries.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");
pub const ENV_PREFIX: &str = "MONITOR";

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
}

/// The variable that sets `key`: `detection.phi_threshold` is
/// `MONITOR__DETECTION__PHI_THRESHOLD`.
pub(crate) fn env_variable(key: &str) -> String {
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
