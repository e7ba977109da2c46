//! The engine's stream: what it tells the fleet model and every sink.
//! Below the engine and its sinks alike, so that neither imports the other
//! for the words they share.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use heartbeat_config::NotifySettings;
use orchestrator_lib::plumbing::LinkStatus;
use tokio::time::Instant;

use crate::budget::Cost;
use crate::detector::{InstanceId, InstanceKey, PhiModel, ServiceChange, Transition};

/// What a reload changes downstream of the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconfigured {
    /// Services newly expected, with their timeouts: a placeholder each.
    pub expect_added: Vec<(String, Duration)>,
    /// Services no longer expected.
    pub expect_removed: Vec<String>,
    /// Instances each service should have, every one of them now.
    pub expected: std::collections::HashMap<String, u32>,
    /// The `[[notify]]` entries now, when they changed.
    pub notify: Option<Vec<NotifySettings>>,
}

/// A transition stamped with wall-clock time for people and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub at: DateTime<Utc>,
    pub transition: Transition,
}

/// A service's change of strength, stamped like a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReport {
    pub at: DateTime<Utc>,
    pub change: ServiceChange,
}

/// What the engine tells its display.
#[derive(Debug, Clone)]
pub enum Update {
    Transition(Report),
    /// A service fell below its expected instances, or is back to full strength.
    Service(ServiceReport),
    /// Echoes in the order they arrived, gathered until the next check (at
    /// most the engine's check period (at most 100 ms)): one update for many, not one per echo or per
    /// batch, so that thousands of echoes a second cost the sinks a few
    /// hand-offs a second. Never overtaken: any other update goes out after
    /// the echoes taken before it. Shared, since every sink gets a copy.
    Echoes(Arc<[EchoSeen]>),
    /// Instances forgotten: DOWN or LEFT for `forget_after`. Sinks drop
    /// what they keep about them.
    Forgotten(Arc<[InstanceKey]>),
    /// Our own loop ran this late: past the detector's stall threshold, so
    /// verdicts were suspended.
    Stall {
        lag: Duration,
        at: Instant,
    },
    PingSent {
        seq: u64,
        at: Instant,
    },
    Link(LinkStatus),
    /// The configuration was reloaded: what the sinks apply (expected
    /// services and counts, alert targets), in order with the rest.
    Reconfigured(Arc<Reconfigured>),
    /// What the heartbeat costs and the interval in force, when either
    /// changed (at a ping): few, and each one the truth until the next.
    Cost(Arc<Cost>),
}

impl Update {
    /// Verdicts and what a reader needs to trust them (a link change, a
    /// stall, a forgetting): few, and no sink may lose one. Echoes and pings
    /// are figures, many, and a slow sink may lose some.
    pub fn must_arrive(&self) -> bool {
        !matches!(self, Update::Echoes(_) | Update::PingSent { .. })
    }
}

/// One echo, as the detector took it.
#[derive(Debug, Clone)]
pub struct EchoSeen {
    pub key: InstanceKey,
    /// The same instance, cheaper to look up: see [`InstanceId`].
    pub id: InstanceId,
    /// The ping it answers, so a display can count the ones that went unanswered.
    pub seq: u64,
    pub rtt: Option<Duration>,
    /// Phi's view of the instance after this echo, when phi judges it.
    pub phi: Option<PhiModel>,
    pub at: Instant,
}
