//! The heartbeat monitor.
//!
//! Layout:
//! - `cli`: flags, and how they land on top of the layered settings.
//! - `app`: [`run`], which wires a link, the engine and an output together.
//! - `engine`: the ping timer and the inbox loop around the detector; emits [`Update`]s.
//! - `detector`: the pure failure detector: observations and instants in, transitions out.
//! - `headless`: JSON lines on stdout, one per transition.
//! - `dashboard`: the full-screen terminal dashboard (event, state, view).
//! - `notify`: alerts to webhooks, Alertmanager and commands; a sink of the engine's updates.
//! - `history`: transitions and per-minute figures in SQLite or PostgreSQL; a sink too.
//! - `demo`: simulated services on the in-process broker for `--demo`.
//! - `logfile`: the dashboard's log file: private, never through a symlink, capped.

mod app;
mod cli;
pub mod dashboard;
mod demo;
pub mod detector;
mod engine;
mod headless;
pub mod history;
pub mod logfile;
pub mod notify;

pub use app::{Output, Source, run};
pub use cli::Cli;
pub use engine::{Report, Update};
