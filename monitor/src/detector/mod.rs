//! The failure detector: pure. Observations (pings sent, echoes and goodbyes
//! received, our own link going down, blocked and up, our own loop stalling)
//! and the current instant go in; transitions come out. No I/O, no clock
//! reads, no broker types, so every rule is tested with explicit instants.
//!
//! Layout:
//! - `types`: [`InstanceKey`], [`State`] (with its wire `code` and its `label`),
//!   [`Reason`], [`Blindness`], [`Transition`]; [`Strength`] and
//!   [`ServiceChange`] for a service against its expected instances.
//! - `meaning`: what a state means for an operator ([`Severity`], [`Tone`],
//!   rank, alive, [`Availability`] for uptime): methods on [`State`], decided once.
//! - `policy`: [`Policy`] and [`Mode`]: how one service is judged.
//! - `machine`: [`Detector`] and [`Tracked`]: the state machine, hysteresis,
//!   STALE, the deadline index, and services' strength (degraded).
//! - `phi`: phi accrual: the formula, its inverse, the sample window.
//! - `flapping`: the window of recent changes behind FLAPPING.

mod flapping;
mod machine;
mod meaning;
pub mod phi;
mod policy;
mod types;

#[cfg(test)]
mod tests;

pub use machine::{Detector, EchoOutcome, Tracked};
pub use meaning::{Availability, Severity, StoredUptimes, Tone, UptimeFigure};
pub use phi::{PhiModel, PhiParams};
pub use policy::{Mode, Policy};
pub use types::{
    Blindness, InstanceId, InstanceKey, LastKnown, Reason, ServiceChange, State, Strength,
    Transition, UNSEEN_INSTANCE,
};
