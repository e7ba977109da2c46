//! `[[maintenance]]` windows: services (names or globs) whose alerts are
//! held while a window is open, once (`start` + `duration`) or on a cron
//! schedule in a time zone. Pure: every question takes `now`.

use chrono::{DateTime, Utc};
use heartbeat_config::{MaintenanceSettings, parse_schedule, parse_timezone, pattern_matches};
use serde::Serialize;

/// Occurrences looked at when a schedule fires more often than its
/// windows last; the latest one that has started decides the end.
const MAX_OVERLAPS: usize = 10_000;

#[derive(Debug, Clone)]
enum When {
    Once(DateTime<Utc>),
    Cron(Box<croner::Cron>, chrono_tz::Tz),
}

#[derive(Debug, Clone)]
struct Window {
    services: Vec<String>,
    when: When,
    duration: chrono::Duration,
    reason: String,
    /// `maintenance[i]`, or the schedule, for people.
    label: String,
}

/// A window open now, as the views and alerts show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Open {
    /// What the window covers (names or patterns).
    pub services: Vec<String>,
    #[serde(serialize_with = "rfc3339")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    /// `maintenance[0]` with its schedule, when recurring.
    pub window: String,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Every configured window.
#[derive(Debug, Clone, Default)]
pub struct Maintenance {
    windows: Vec<Window>,
}

impl Maintenance {
    /// From validated settings (validation already said what is wrong;
    /// this says it again rather than panic).
    pub fn from_settings(settings: &[MaintenanceSettings]) -> Result<Self, String> {
        let mut windows = Vec::new();
        for (i, m) in settings.iter().enumerate() {
            let when = match (&m.start, &m.schedule) {
                (Some(start), _) => When::Once(
                    DateTime::parse_from_rfc3339(start)
                        .map_err(|e| format!("maintenance[{i}].start: {e}"))?
                        .with_timezone(&Utc),
                ),
                (None, Some(schedule)) => When::Cron(
                    Box::new(parse_schedule(schedule)?),
                    parse_timezone(&m.timezone)?,
                ),
                (None, None) => return Err(format!("maintenance[{i}] has no start or schedule")),
            };
            let label = match &m.schedule {
                Some(schedule) => format!("maintenance[{i}] \"{schedule}\" {}", m.timezone),
                None => format!("maintenance[{i}]"),
            };
            windows.push(Window {
                services: m.services.clone(),
                when,
                duration: chrono::Duration::from_std(m.duration).map_err(|e| e.to_string())?,
                reason: if m.reason.is_empty() {
                    "maintenance".into()
                } else {
                    m.reason.clone()
                },
                label,
            });
        }
        Ok(Self { windows })
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Windows open at `now`.
    pub fn open(&self, now: DateTime<Utc>) -> Vec<Open> {
        self.windows
            .iter()
            .filter_map(|w| {
                let starts_at = w.open_since(now)?;
                Some(Open {
                    services: w.services.clone(),
                    starts_at,
                    ends_at: starts_at + w.duration,
                    reason: w.reason.clone(),
                    window: w.label.clone(),
                })
            })
            .collect()
    }

    /// The open window covering `service` at `now` that closes last.
    pub fn covering(&self, service: &str, now: DateTime<Utc>) -> Option<Open> {
        self.open(now)
            .into_iter()
            .filter(|o| o.services.iter().any(|p| pattern_matches(p, service)))
            .max_by_key(|o| o.ends_at)
    }
}

impl Window {
    /// When the occurrence open at `now` started, if one is.
    fn open_since(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Once(start) => (*start <= now && now < *start + self.duration).then_some(*start),
            When::Cron(cron, tz) => {
                // The occurrences after now - duration that have started
                // by now: the latest of them is the one open.
                let from = (now - self.duration).with_timezone(tz);
                let mut open = None;
                let mut at = from;
                for _ in 0..MAX_OVERLAPS {
                    let Ok(next) = cron.find_next_occurrence(&at, false) else {
                        break;
                    };
                    let next_utc = next.with_timezone(&Utc);
                    if next_utc > now {
                        break;
                    }
                    open = Some(next_utc);
                    at = next;
                }
                open
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn window(start: Option<&str>, schedule: Option<&str>, tz: &str, minutes: u64) -> Maintenance {
        Maintenance::from_settings(&[MaintenanceSettings {
            services: vec!["shop-*".into(), "orders".into()],
            start: start.map(Into::into),
            schedule: schedule.map(Into::into),
            timezone: tz.into(),
            duration: Duration::from_secs(minutes * 60),
            reason: "patching".into(),
        }])
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_one_off_window_covers_its_services_from_start_for_its_duration() {
        let m = window(Some("2026-12-07T16:00:00Z"), None, "UTC", 30);
        assert!(m.covering("orders", at("2026-12-07T15:59:59Z")).is_none());
        let open = m.covering("shop-7", at("2026-12-07T16:00:00Z")).unwrap();
        assert_eq!(open.ends_at, at("2026-12-07T16:30:00Z"));
        assert_eq!(open.reason, "patching");
        assert!(m.covering("payments", at("2026-12-07T16:10:00Z")).is_none());
        assert!(m.covering("orders", at("2026-12-07T16:30:00Z")).is_none());
    }

    #[test]
    fn a_cron_window_opens_at_each_occurrence_in_its_time_zone() {
        // 03:00 in Madrid on Sundays: 02:00 UTC in winter.
        let m = window(None, Some("0 3 * * SUN"), "Europe/Madrid", 60);
        // 2026-12-06 is a Sunday.
        assert!(m.covering("orders", at("2026-12-06T01:59:00Z")).is_none());
        let open = m.covering("orders", at("2026-12-06T02:30:00Z")).unwrap();
        assert_eq!(open.starts_at, at("2026-12-06T02:00:00Z"));
        assert_eq!(open.ends_at, at("2026-12-06T03:00:00Z"));
        assert!(m.covering("orders", at("2026-12-06T03:00:00Z")).is_none());
        assert!(
            m.covering("orders", at("2026-12-07T02:30:00Z")).is_none(),
            "Monday"
        );
    }

    #[test]
    fn overlapping_occurrences_end_with_the_latest() {
        // Every 5 minutes, 30 minutes long: always open, ending 30 minutes
        // after the latest occurrence.
        let m = window(None, Some("*/5 * * * *"), "UTC", 30);
        let open = m.covering("orders", at("2026-12-07T16:07:00Z")).unwrap();
        assert_eq!(open.starts_at, at("2026-12-07T16:05:00Z"));
        assert_eq!(open.ends_at, at("2026-12-07T16:35:00Z"));
    }
}
