//! The heartbeat monitor.
//!
//! Layout:
//! - `cli`: flags, and how they land on top of the layered settings.
//! - `app`: [`run`], which wires a link, the engine and an output together.
//! - `engine`: the ping timer and the inbox loop around the detector; emits [`Update`]s.
//! - `budget`: what a round costs a hosted plan (1 + 3N) and the interval that keeps within `[budget]`. Pure.
//! - `update`: the engine's stream ([`Update`], [`Report`]), below the engine and every sink.
//! - `sink`: `Sink`, the one bounded, ordered, counting hand-off of updates, below them too.
//! - `fleet`: the one model of the fleet every view reads, fed by the engine's
//!   stream in one place; `Sink`, the one hand-off of updates.
//! - `detector`: the pure failure detector: observations and instants in, transitions out.
//! - `replay`: each seq accepted once per instance, when heartbeats are signed.
//! - `headless`: JSON lines on stdout, one per transition.
//! - `dashboard`: the full-screen terminal dashboard (event, state, view).
//! - `notify`: alerts to webhooks, Alertmanager, commands, Slack and email; a sink of the engine's updates.
//! - `group`: a monitor group: leadership through the broker, what the leader sent.
//! - `history`: transitions and per-minute figures in SQLite or PostgreSQL; a sink too.
//! - `demo`: simulated services on the in-process broker for `--demo`.
//! - `logfile`: the dashboard's log file: private, never through a symlink, capped.
//! - `statedir`: the monitor's state directory (log file, history database).
//! - `limited`: warnings at a limited rate.
//! - `status`: the status document, built from the fleet model on demand.
//! - `metrics`: Prometheus metrics: counters from a sink, states from the model at scrape time.
//! - `http`: the HTTP endpoint: `/metrics`, `/api/v1/status`, `/healthz`, `/`.
//! - `check`: `monitor status`, the one-shot check with Nagios exit codes.
//! - `sdnotify`: readiness, watchdog and status for systemd (`Type=notify`).
//! - `quiet`: what holds alerts back: silences, maintenance windows; the API's tokens.
//! - `reload`: SIGHUP loads the configuration again and applies it, keeping every instance.

mod app;
pub mod budget;
/// Where settings become the detector's policy (for tests that judge as the monitor does).
pub use app::policy;
pub mod check;
mod cli;
pub mod dashboard;
mod demo;
pub mod detector;
mod engine;
pub mod fleet;
pub mod group;
mod headless;
pub mod history;
mod http;
mod limited;
pub mod logfile;
mod metrics;
pub mod notify;
pub mod quiet;
pub mod reload;
mod replay;
pub mod sdnotify;
mod sink;
mod statedir;
pub mod status;
mod update;
#[cfg(test)]
mod views_agree;

pub use app::{Output, Source, run};
pub use cli::{CheckConfigArgs, Cli, Command, StatusArgs};
pub use update::{EchoSeen, Report, ServiceReport, Update};
