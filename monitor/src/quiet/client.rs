//! `monitor silence add|list|expire`: the silences API of a running
//! monitor, from a shell. The token comes from `HEARTBEAT_API_TOKEN` (never
//! a flag); nothing here logs, and no message quotes the token.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::auth::{READ_TOKEN_ENV, TOKEN_ENV};

#[derive(Debug, Args)]
pub struct SilenceArgs {
    /// The monitor's HTTP endpoint (its --listen address).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9464",
        global = true
    )]
    pub url: String,

    /// Give up on the monitor after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,

    #[command(subcommand)]
    pub action: SilenceAction,
}

#[derive(Debug, Subcommand)]
pub enum SilenceAction {
    /// Hold the alerts of a service (or one instance) for a while; detection goes on.
    Add {
        /// The service: a name, or a glob pattern such as 'shop-*'.
        #[arg(long, value_name = "NAME")]
        service: String,
        /// Only this instance.
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
        /// How long, e.g. 30m or 1h.
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        for_: Duration,
        /// Why, for whoever looks at the dashboard meanwhile.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// The silences in force, soonest end first.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Expire {
        /// Its id, as `add` and `list` print it.
        id: String,
    },
}

/// Run one action; 0 when the monitor did it, 1 when it refused or could
/// not be reached (with the reason on stderr).
pub fn run(args: &SilenceArgs) -> ExitCode {
    match act(args, |name| std::env::var(name).ok()) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("monitor silence: {error}");
            ExitCode::FAILURE
        }
    }
}

fn act(args: &SilenceArgs, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let base = args.url.trim_end_matches('/');
    if !base.starts_with("http://") && !base.starts_with("https://") {
        return Err(format!(
            "--url {base:?} is not an http:// URL, like http://127.0.0.1:9464"
        ));
    }
    let write_token = env(TOKEN_ENV).filter(|t| !t.is_empty());
    let read_token = env(READ_TOKEN_ENV)
        .filter(|t| !t.is_empty())
        .or_else(|| write_token.clone());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(args.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let bearer = |token: &Option<String>| token.as_ref().map(|t| format!("Bearer {}", t.trim()));
    let url = format!("{base}/api/v1/silences");
    let (status, body) = match &args.action {
        SilenceAction::Add {
            service,
            instance,
            for_,
            reason,
        } => {
            let Some(auth) = bearer(&write_token) else {
                return Err(format!("set {TOKEN_ENV} to the monitor's API token"));
            };
            let payload = serde_json::json!({
                "service": service,
                "instance": instance,
                "for": humantime::format_duration(*for_).to_string(),
                "reason": reason,
            });
            send(
                agent
                    .post(&url)
                    .header("Authorization", auth)
                    .send_json(&payload),
                base,
            )?
        }
        SilenceAction::List { .. } => {
            let mut request = agent.get(&url);
            if let Some(auth) = bearer(&read_token) {
                request = request.header("Authorization", auth);
            }
            send(request.call(), base)?
        }
        SilenceAction::Expire { id } => {
            let Some(auth) = bearer(&write_token) else {
                return Err(format!("set {TOKEN_ENV} to the monitor's API token"));
            };
            let id: String = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            send(
                agent
                    .delete(&format!("{url}/{id}"))
                    .header("Authorization", auth)
                    .call(),
                base,
            )?
        }
    };
    if !(200..300).contains(&status) {
        let first = body.lines().next().unwrap_or_default();
        return Err(format!("the monitor answered {status}: {first}"));
    }
    let value: Value = serde_json::from_str(&body)
        .map_err(|e| format!("the monitor's answer is not JSON ({e})"))?;
    Ok(match &args.action {
        SilenceAction::Add { .. } => format!(
            "{}  silenced {} until {}\n",
            value["id"].as_str().unwrap_or("?"),
            subject(&value),
            value["ends_at"].as_str().unwrap_or("?")
        ),
        SilenceAction::Expire { .. } => format!(
            "{}  expired: alerts for {} are sent again\n",
            value["id"].as_str().unwrap_or("?"),
            subject(&value)
        ),
        SilenceAction::List { json: true } => format!("{body}\n"),
        SilenceAction::List { json: false } => table(&value),
    })
}

fn send(
    outcome: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    base: &str,
) -> Result<(u16, String), String> {
    let mut response = outcome.map_err(|e| format!("cannot reach the monitor at {base}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("cannot read the monitor's answer: {e}"))?;
    Ok((status, body))
}

fn subject(silence: &Value) -> String {
    let service = silence["service"].as_str().unwrap_or("?");
    match silence["instance"].as_str() {
        Some(instance) => format!("{service}/{instance}"),
        None => service.to_owned(),
    }
}

fn table(value: &Value) -> String {
    let rows: Vec<[String; 4]> = value["silences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            [
                s["id"].as_str().unwrap_or("?").to_owned(),
                subject(s),
                s["ends_at"].as_str().unwrap_or("?").to_owned(),
                s["reason"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no silences in force\n".into();
    }
    let header = ["ID", "SILENCED", "UNTIL", "REASON"].map(String::from);
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .chain(std::iter::once(&header))
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
