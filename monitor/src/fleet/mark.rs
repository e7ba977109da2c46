//! [`Mark`]: what holds an instance's alerts back right now, as every view
//! shows it beside the state it never changes: a planned drain (from the
//! instance's own reason), a silence, or an open maintenance window (from
//! the [`Quiet`] the model holds). Asked of [`Fleet::mark`], so the status
//! document, the status page and the dashboard show the same mark.
//!
//! [`Fleet::mark`]: super::Fleet::mark

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::instance::Instance;
use crate::detector::{Reason, State};
use crate::quiet::Quiet;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mark {
    /// Said goodbye with a promise to be back by `until`.
    Draining {
        #[serde(serialize_with = "rfc3339")]
        until: DateTime<Utc>,
    },
    /// A silence (`monitor silence add`) covers it until `until`.
    Silenced {
        id: String,
        #[serde(serialize_with = "rfc3339")]
        until: DateTime<Utc>,
        reason: String,
    },
    /// An open `[[maintenance]]` window covers its service until `until`.
    Maintenance {
        #[serde(serialize_with = "rfc3339")]
        until: DateTime<Utc>,
        reason: String,
    },
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Mark {
    /// As people read it (the dashboard's column, the page's badge).
    pub fn label(&self) -> &'static str {
        match self {
            Mark::Draining { .. } => "DRAINING",
            Mark::Silenced { .. } => "SILENCED",
            Mark::Maintenance { .. } => "MAINTENANCE",
        }
    }

    pub fn until(&self) -> DateTime<Utc> {
        match self {
            Mark::Draining { until }
            | Mark::Silenced { until, .. }
            | Mark::Maintenance { until, .. } => *until,
        }
    }
}

/// The mark of one row at `wall`: a drain first (the instance said so
/// itself), then the silence, then the window that ends last.
pub(super) fn of(quiet: &Quiet, row: &Instance, wall: DateTime<Utc>) -> Option<Mark> {
    if row.state == State::Left
        && let Some(Reason::Draining { back_within }) = row.reason
    {
        let until = row.since_wall + chrono::Duration::from_std(back_within).unwrap_or_default();
        return Some(Mark::Draining { until });
    }
    let key = &row.key;
    if let Some(silence) = quiet
        .silences
        .covering(&key.service, Some(&key.instance), wall)
    {
        return Some(Mark::Silenced {
            id: silence.id,
            until: silence.ends_at,
            reason: silence.reason,
        });
    }
    quiet
        .maintenance()
        .covering(&key.service, wall)
        .map(|open| Mark::Maintenance {
            until: open.ends_at,
            reason: open.reason,
        })
}
