//! The fleet model: the one picture of the fleet every view reads. It is
//! fed by the engine's stream in one place (`feed`) and read, never
//! rebuilt, by the dashboard at frame time, the status document and page
//! on demand, `/metrics` at scrape time, and the alerts and the history
//! for counts. What a state means comes from [`State`]'s own methods
//! (`detector::meaning`), not from here.
//!
//! Layout:
//! - `model`: [`Fleet`] (every instance, the link, services' strength;
//!   [`Fleet::apply`], [`Fleet::tally`]). Pure: both clocks are arguments.
//! - `instance`: [`Instance`]: typed state, since when, last echo, round
//!   trips, phi, missed pings, recent transitions, uptime with coverage.
//! - `mark`: [`Mark`], what holds a row's alerts back (drain, silence,
//!   maintenance window), shown beside its state by every view.
//! - `window`: the compact windows of round trips and phi values.
//! - `feed`: the task that applies the engine's stream, then hands it on.
//! - `group`: [`GroupPart`], the monitor group as this member knows it
//!   (members, leader, their verdicts, the quorum): written by the group
//!   task through [`Shared::group`], read by every view and the notify gate.
//!
//! [`State`]: crate::detector::State

mod feed;
mod group;
mod instance;
mod mark;
mod model;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::time::Instant;

use crate::detector::InstanceKey;

pub use crate::detector::{StoredUptimes, UptimeFigure};
pub use crate::sink::{Sink, Wants, everything, verdicts};
pub use feed::run;
pub use group::{GroupPart, Member, Subject, Verdicts};
pub use instance::{Accrued, Instance, PHI_SAMPLES, RTT_SAMPLES};
pub use mark::Mark;
pub use model::{Fleet, Judged, ServiceCount, Tally};

/// The one model, shared: written by [`run`] (and, for the stored uptimes
/// only, by the history loader through [`Shared::set_stored_uptime`]; for
/// the group's part only, by the group task through [`Shared::group`]),
/// read by every view.
/// Readers hold it briefly (a frame's layout, a snapshot, a scrape), never
/// across I/O.
#[derive(Clone)]
pub struct Shared(Arc<RwLock<Fleet>>);

impl Shared {
    pub fn new(fleet: Fleet) -> Self {
        Self(Arc::new(RwLock::new(fleet)))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Fleet> {
        // A reader that panicked cannot have left the model half-changed.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Fleet> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the group's part (members heard, their verdicts, leadership)
    /// and show every row as the group now judges it. `None` outside a group.
    pub fn group<R>(&self, f: impl FnOnce(&mut GroupPart) -> R) -> Option<R> {
        let mut fleet = self.write();
        let out = f(fleet.group.as_mut()?);
        fleet.regroup(Instant::now(), chrono::Utc::now());
        Some(out)
    }

    /// The history store's uptimes over 24 h, 7 d and 30 d, read again.
    pub fn set_stored_uptime(&self, uptime: HashMap<InstanceKey, StoredUptimes>) {
        self.write().stored_uptime = uptime;
    }
}
