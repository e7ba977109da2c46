//! Settings for keeping the monitor quiet when it should be: name patterns
//! (`orders`, `pay*`), `[[maintenance]]` windows, and the checks on
//! `depends_on` (a cycle is an error).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use orchestrator_lib::wire::MAX_NAME_LEN;
use serde::Deserialize;

/// True for a service name, or a glob over names: the name characters plus
/// `*` (any run) and `?` (any one).
pub fn is_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= MAX_NAME_LEN
        && pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*' | b'?'))
}

/// Whether `name` matches `pattern` (`*` any run, `?` any one character),
/// case-insensitively, as service settings are keyed.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Iterative glob with one backtrack point: linear enough for names.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Whether any of `patterns` matches `name`; an empty list matches every name.
pub fn any_matches(patterns: &[String], name: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| pattern_matches(p, name))
}

/// One `[[maintenance]]` window: the services it covers, and when. Either
/// `start` (once) or `schedule` (cron, in `timezone`), each lasting `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// Service names or glob patterns (`orders`, `pay*`).
    pub services: Vec<String>,
    /// Once: an RFC 3339 time, e.g. "2026-12-24T22:00:00Z".
    #[serde(default)]
    pub start: Option<String>,
    /// Recurring: a cron schedule, five fields ("0 3 * * SUN"), or six with seconds first.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The schedule's time zone, an IANA name ("Europe/Madrid"); UTC by default.
    #[serde(default = "utc")]
    pub timezone: String,
    /// How long each window lasts.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Shown beside the window and in the status document.
    #[serde(default)]
    pub reason: String,
}

fn utc() -> String {
    "UTC".into()
}

impl MaintenanceSettings {
    /// The checks serde cannot make: (key, why).
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.services.is_empty() {
            return Err((
                "services",
                "must name at least one service or pattern".into(),
            ));
        }
        if let Some(bad) = self.services.iter().find(|p| !is_pattern(p)) {
            return Err((
                "services",
                format!(
                    "{bad:?} is not a service name or pattern: use letters, digits, '-', '_', '.', '*' and '?'"
                ),
            ));
        }
        if self.duration.is_zero() {
            return Err(("duration", "must be greater than zero, e.g. \"30m\"".into()));
        }
        match (&self.start, &self.schedule) {
            (Some(_), Some(_)) => Err((
                "schedule",
                "give either start (once) or schedule (recurring), not both".into(),
            )),
            (None, None) => Err((
                "start",
                "give start = \"2026-12-24T22:00:00Z\" (once) or schedule = \"0 3 * * SUN\" (recurring)"
                    .into(),
            )),
            (Some(start), None) => chrono::DateTime::parse_from_rfc3339(start)
                .map(|_| ())
                .map_err(|e| {
                    (
                        "start",
                        format!("{start:?} is not an RFC 3339 time with an offset ({e})"),
                    )
                }),
            (None, Some(schedule)) => {
                parse_schedule(schedule).map_err(|why| ("schedule", why))?;
                parse_timezone(&self.timezone).map_err(|why| ("timezone", why))?;
                Ok(())
            }
        }
    }
}

/// A cron schedule, five fields (minute first) or six (seconds first).
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    croner::Cron::from_str(schedule)
        .map_err(|e| format!("{schedule:?} is not a cron schedule ({e}); e.g. \"0 3 * * SUN\""))
}

/// An IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    chrono_tz::Tz::from_str(name).map_err(|_| {
        format!("{name:?} is not a time zone: use an IANA name like \"Europe/Madrid\" or \"UTC\"")
    })
}

/// The first cycle in `depends_on`, as `a -> b -> a`, if any.
pub fn dependency_cycle(edges: &BTreeMap<String, Vec<String>>) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        node: &str,
        edges: &BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<String> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let from = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle.join(" -> "));
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Visiting);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(&next.to_lowercase(), edges, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    let nodes: BTreeSet<&String> = edges.keys().collect();
    for node in nodes {
        if let Some(cycle) = visit(node, edges, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_globs() {
        assert!(pattern_matches("orders", "orders"));
        assert!(pattern_matches("orders", "Orders"));
        assert!(!pattern_matches("orders", "orders-1"));
        assert!(pattern_matches("orders-*", "orders-1"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("o?ders", "orders"));
        assert!(pattern_matches("*-db-*", "shop-db-7"));
        assert!(!pattern_matches("*-db-*", "shop-db"));
        assert!(pattern_matches("a*b*c", "aXXbYYc"));
        assert!(!pattern_matches("a*b*c", "aXXbYY"));
        assert!(any_matches(&[], "x"));
        assert!(!any_matches(&["y*".into()], "x"));
        assert!(is_pattern("pay*") && !is_pattern("pay ments") && !is_pattern(""));
    }

    #[test]
    fn a_cycle_is_found_and_spelled_out() {
        let edges = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect()
        };
        assert_eq!(
            dependency_cycle(&edges(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])),
            None
        );
        assert_eq!(
            dependency_cycle(&edges(&[("a", &["b"]), ("b", &["a"])])).as_deref(),
            Some("a -> b -> a")
        );
        assert_eq!(
            dependency_cycle(&edges(&[("a", &["a"])])).as_deref(),
            Some("a -> a")
        );
        // A diamond is no cycle.
        assert_eq!(
            dependency_cycle(&edges(&[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"])])),
            None
        );
    }

    #[test]
    fn schedules_and_zones_parse_or_say_why() {
        assert!(parse_schedule("0 3 * * SUN").is_ok());
        assert!(parse_schedule("*/5 * * * * *").is_ok());
        assert!(
            parse_schedule("every day")
                .unwrap_err()
                .contains("not a cron schedule")
        );
        assert!(parse_timezone("Europe/Madrid").is_ok());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
