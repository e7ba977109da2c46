//! `monitor status`: a one-shot check for scripts, cron and Nagios/Icinga.
//! Reads a running monitor's status API, prints a status line and a table
//! (or the document itself with `--json`), and exits with the Nagios plugin
//! convention. The verdict is made from each instance's state code, so a
//! state this build does not know counts as unknown, never as fine.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::StatusArgs;
use crate::status::Severity;

/// What the check concluded, and the document it read (absent when the
/// monitor could not be read).
#[derive(Debug)]
pub struct Verdict {
    pub severity: Severity,
    pub summary: String,
    pub document: Option<Value>,
}

pub fn run(args: &StatusArgs) -> ExitCode {
    let verdict = if args.healthz {
        healthz(args)
    } else {
        check(args)
    };
    let mut out = String::new();
    if args.json {
        match &verdict.document {
            Some(document) => {
                out = serde_json::to_string_pretty(document).unwrap_or_default();
                out.push('\n');
            }
            None => eprintln!("monitor: {}", verdict.summary),
        }
    } else {
        out = format!(
            "HEARTBEAT {} - {}\n",
            verdict.severity.label(),
            verdict.summary
        );
        if let Some(document) = &verdict.document {
            out.push_str(&table(document));
        }
    }
    ExitCode::from(emit(
        &mut std::io::stdout().lock(),
        &out,
        verdict.severity.exit_code(),
    ))
}

/// Write all of `text` and flush (`print!` would panic on a closed pipe);
/// the exit code: `code`, or UNKNOWN's when stdout cannot be written.
fn emit(out: &mut impl std::io::Write, text: &str, code: u8) -> u8 {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => code,
        // A reader that has seen enough (`| head -1`, `| true`) closed the
        // pipe: nothing is lost that anyone reads, and the verdict stands.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(error) => {
            eprintln!("monitor: cannot write the verdict to stdout: {error}");
            Severity::Unknown.exit_code()
        }
    }
}

pub fn check(args: &StatusArgs) -> Verdict {
    let unknown = |summary: String| Verdict {
        severity: Severity::Unknown,
        summary,
        document: None,
    };
    let base = args.url.trim_end_matches('/');
    if !base.starts_with("http://") {
        return unknown(format!(
            "--url {} is not an http:// URL, like http://127.0.0.1:9464",
            orchestrator_lib::plumbing::shown_value(base)
        ));
    }
    let url = format!("{base}/api/v1/status");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(args.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(&url);
    // A monitor with a read token wants it (the write token reads too).
    let token = [
        crate::quiet::auth::READ_TOKEN_ENV,
        crate::quiet::auth::TOKEN_ENV,
    ]
    .into_iter()
    .find_map(|name| std::env::var(name).ok().filter(|t| !t.is_empty()));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {}", token.trim()));
    }
    if let Some(service) = &args.service {
        request = request.query("service", service);
    }
    let mut response = match request.call() {
        Ok(response) => response,
        Err(error) => return unknown(format!("cannot reach the monitor at {base}: {error}")),
    };
    let status = response.status();
    let body = match response.body_mut().read_to_string() {
        Ok(body) => body,
        Err(error) => return unknown(format!("cannot read the monitor's answer: {error}")),
    };
    if !status.is_success() {
        let first = body.lines().next().unwrap_or_default();
        return unknown(format!("the monitor answered {url} with {status}: {first}"));
    }
    let document: Value = match serde_json::from_str(&body) {
        Ok(document) => document,
        Err(error) => return unknown(format!("{url} did not return a status document: {error}")),
    };
    judge(document, args.service.as_deref())
}

/// `--healthz`: the monitor's own health, from its `/healthz`.
fn healthz(args: &StatusArgs) -> Verdict {
    let verdict = |severity, summary| Verdict {
        severity,
        summary,
        document: None,
    };
    let base = args.url.trim_end_matches('/');
    if !base.starts_with("http://") {
        return verdict(
            Severity::Unknown,
            format!(
                "--url {} is not an http:// URL, like http://127.0.0.1:9464",
                orchestrator_lib::plumbing::shown_value(base)
            ),
        );
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(args.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = match agent.get(format!("{base}/healthz")).call() {
        Ok(response) => response,
        Err(error) => {
            return verdict(
                Severity::Unknown,
                format!("cannot reach the monitor at {base}: {error}"),
            );
        }
    };
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let said = body.lines().next().unwrap_or_default().to_owned();
    match status.as_u16() {
        200 => verdict(Severity::Ok, said),
        503 => verdict(Severity::Critical, said),
        other => verdict(
            Severity::Unknown,
            format!("the monitor answered /healthz with {other}: {said}"),
        ),
    }
}

/// The verdict on a status document: the worst of every instance's state and
/// of the monitor's own ability to judge.
pub fn judge(document: Value, service: Option<&str>) -> Verdict {
    let services = document["services"].as_array().cloned().unwrap_or_default();
    let mut severity = Severity::Ok;
    let mut counts: Vec<(String, usize)> = Vec::new();
    for entry in &services {
        let state = entry["state"].as_str().unwrap_or("unknown");
        severity = worse(severity, Severity::of(state));
        match counts.iter_mut().find(|(s, _)| s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state.to_owned(), 1)),
        }
    }
    counts.sort_by_key(|(state, _)| std::cmp::Reverse(Severity::of(state).rank()));
    let mut summary = counts
        .iter()
        .map(|(state, n)| format!("{n} {}", state.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ");
    if services.is_empty() {
        summary = match service {
            Some(name) => {
                severity = Severity::Unknown;
                format!("the monitor knows no service {name:?}")
            }
            None => "no services seen yet".to_owned(),
        };
    }
    let degraded: Vec<String> = document["degraded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| service.is_none_or(|name| d["service"] == name))
        .map(|d| {
            let name = d["service"].as_str().unwrap_or("?");
            format!("{name} {}/{}", d["up"], d["expected"])
        })
        .collect();
    if !degraded.is_empty() {
        severity = worse(severity, Severity::of("degraded"));
        summary.push_str(&format!("; degraded: {}", degraded.join(", ")));
    }
    // In a monitor group each instance's state is already the group's
    // (DOWN on a quorum, UNHEARD for this member's lone DOWN): say whose.
    if let Some(name) = document["group"]["name"].as_str() {
        let leader = document["group"]["leader"].as_str().unwrap_or("none");
        summary.push_str(&format!("; group {name}, leader {leader}"));
    }
    let link = document["link"]["state"].as_str().unwrap_or("unknown");
    if link != "connected" {
        // Cut off from the broker, the monitor's states are stale.
        severity = worse(severity, Severity::Unknown);
        summary.push_str(&format!("; the monitor cannot judge: broker link {link}"));
        if let Some(detail) = document["link"]["detail"].as_str() {
            summary.push_str(&format!(" ({detail})"));
        }
    }
    Verdict {
        severity,
        summary,
        document: Some(document),
    }
}

fn worse(a: Severity, b: Severity) -> Severity {
    if b.rank() > a.rank() { b } else { a }
}

/// One line per instance, worst first.
pub fn table(document: &Value) -> String {
    let now = document["generated_at"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .unwrap_or_else(Utc::now);
    let mut entries: Vec<&Value> = document["services"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let state = |e: &Value| e["state"].as_str().unwrap_or("unknown").to_owned();
    let text = |e: &Value, field: &str| e[field].as_str().unwrap_or("").to_owned();
    entries.sort_by_key(|e| {
        (
            std::cmp::Reverse(Severity::of(&state(e)).rank()),
            text(e, "service"),
            text(e, "instance"),
        )
    });
    let mut rows = vec![[
        "SERVICE".to_owned(),
        "INSTANCE".to_owned(),
        "STATE".to_owned(),
        "FOR".to_owned(),
        "RTT".to_owned(),
        "UPTIME".to_owned(),
    ]];
    for e in entries {
        let since = e["since"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            .map(|since| short_duration((now - since).num_seconds().max(0) as u64))
            .unwrap_or_else(|| "-".into());
        let rtt = e["rtt_ms"]
            .as_f64()
            .map(|ms| format!("{ms:.1}ms"))
            .unwrap_or_else(|| "-".into());
        let uptime = e["uptime"]["since_start"]
            .as_f64()
            .map(|p| format!("{p:.2}%"))
            .unwrap_or_else(|| "-".into());
        rows.push([
            text(e, "service"),
            text(e, "instance"),
            state(e).replace('_', " ").to_uppercase(),
            since,
            rtt,
            uptime,
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn short_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..172_800 => format!("{}h{}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(states: &[&str], link: &str) -> Value {
        let services: Vec<Value> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"service": format!("svc{i}"), "instance": "a", "state": s,
                       "since": "2026-11-23T10:00:00.000Z", "last_echo": null, "rtt_ms": 1.25,
                       "uptime": {"since_start": 99.5}})
            })
            .collect();
        json!({"generated_at": "2026-11-23T10:01:30.000Z", "link": {"state": link},
               "services": services})
    }

    #[test]
    fn a_degraded_service_is_a_warning() {
        let mut document = doc(&["up", "up"], "connected");
        document["degraded"] = json!([{"service": "svc0", "up": 1, "expected": 3}]);
        let verdict = judge(document.clone(), None);
        assert_eq!(verdict.severity.exit_code(), 1);
        assert!(
            verdict.summary.contains("degraded: svc0 1/3"),
            "{}",
            verdict.summary
        );
        assert_eq!(judge(document, Some("svc1")).severity.exit_code(), 0);
    }

    #[test]
    fn verdicts_follow_the_nagios_convention() {
        let code =
            |states: &[&str], link: &str| judge(doc(states, link), None).severity.exit_code();
        assert_eq!(code(&["up", "up", "left"], "connected"), 0);
        assert_eq!(code(&["up", "suspect"], "connected"), 1);
        assert_eq!(code(&["flapping", "degraded"], "connected"), 1);
        assert_eq!(code(&["up", "suspect", "down"], "connected"), 2);
        assert_eq!(code(&["stale", "suspect"], "connected"), 3);
        assert_eq!(code(&["up"], "reconnecting"), 3);
        assert_eq!(code(&["down"], "reconnecting"), 2, "a DOWN is news anyway");
        assert_eq!(code(&[], "connected"), 0);
        let missing = judge(doc(&[], "connected"), Some("payments"));
        assert_eq!(missing.severity, Severity::Unknown);
        assert!(missing.summary.contains("payments"), "{}", missing.summary);
    }

    #[test]
    fn the_summary_counts_states_worst_first_and_the_table_sorts_worst_first() {
        let verdict = judge(doc(&["up", "down", "up"], "connected"), None);
        assert_eq!(verdict.summary, "1 down, 2 up");
        let table = table(verdict.document.as_ref().unwrap());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("SERVICE"), "{table}");
        assert!(
            lines[1].starts_with("svc1") && lines[1].contains("DOWN"),
            "{table}"
        );
        assert!(
            lines[1].contains("1m30s") && lines[1].contains("1.2ms") && lines[1].contains("99.50%"),
            "{table}"
        );
    }

    #[test]
    fn an_unreachable_monitor_or_a_bad_url_is_unknown() {
        let args = |url: &str| StatusArgs {
            url: url.into(),
            service: None,
            json: false,
            healthz: false,
            timeout: std::time::Duration::from_secs(2),
        };
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let verdict = check(&args(&format!("http://127.0.0.1:{port}")));
        assert_eq!(verdict.severity, Severity::Unknown);
        assert!(
            verdict.summary.starts_with("cannot reach the monitor"),
            "{}",
            verdict.summary
        );
        assert_eq!(check(&args("127.0.0.1:9464")).severity, Severity::Unknown);
    }

    #[test]
    fn a_closed_stdout_keeps_the_verdict_and_another_failure_is_unknown() {
        struct Failing(std::io::ErrorKind);
        impl std::io::Write for Failing {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(self.0.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let text = "HEARTBEAT OK - 1 up\n";
        assert_eq!(
            emit(&mut Failing(std::io::ErrorKind::BrokenPipe), text, 2),
            2
        );
        assert_eq!(
            emit(&mut Failing(std::io::ErrorKind::StorageFull), text, 0),
            3
        );
        let mut out = Vec::new();
        assert_eq!(emit(&mut out, text, 1), 1);
        assert_eq!(out, text.as_bytes());
    }
}
