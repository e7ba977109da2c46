//! Reload without a restart: SIGHUP (what `systemctl reload` sends, the
//! unit's `ExecReload`) loads the configuration again, as at start (file,
//! environment, flags), and applies what can change while running:
//! detection settings (the default and each service's), per-service
//! timeouts, expected services and instance counts, `max_instances`,
//! `forget_after`, `[[maintenance]]` windows, `depends_on` and the
//! `[[notify]]` targets. Every tracked instance, its
//! phi window and its firing alerts are kept (the engine applies the new
//! policies between two of its steps; see `Detector::reconfigure` and
//! `notify::Targets::reload`; windows and dependencies through
//! `Quiet::reload`).
//!
//! A file that does not load or validate is refused with one line, and
//! the running configuration is kept. Settings that need a restart (the
//! broker, `interval`, `id`, `scope`, `[http]`, `[history]`, `[group]`, `[budget]`, and
//! `[[notify]]` in a monitor group, whose ledger is by target) are named in
//! the log line and left as they run.

use std::collections::HashMap;
use std::sync::Arc;

use heartbeat_config::{Settings, SettingsError};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::policy;
use crate::engine::Reload;
use crate::quiet::Quiet;
use crate::sdnotify::Notice;
use crate::update::Reconfigured;

/// How the configuration is loaded again: as at start, validated.
pub type Load = Box<dyn Fn() -> Result<Settings, SettingsError> + Send>;

/// What a hang-up needs: how to load, and whom to tell (the supervisor).
pub struct Hangups {
    pub load: Load,
    pub supervisor: Option<mpsc::UnboundedSender<Notice>>,
}

/// Who applies a reload: the engine (detection, expected services, the
/// sinks' part) and what holds alerts back (windows, dependencies).
pub struct Appliers {
    pub engine: mpsc::Sender<Reload>,
    pub quiet: Quiet,
}

/// What changed between two configurations, in the words of the file.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Applied at once.
    pub applied: Vec<&'static str>,
    /// Changed in the file, but only a restart applies them.
    pub need_restart: Vec<&'static str>,
}

/// Compare the running configuration with a new one.
pub fn changes(running: &Settings, new: &Settings) -> Changes {
    let mut changes = Changes::default();
    let live: [(&'static str, bool); 9] = [
        ("timeout", running.timeout != new.timeout),
        ("timeouts", running.timeouts != new.timeouts),
        ("detection", running.detection != new.detection),
        ("services", running.services != new.services),
        ("expect", running.expect != new.expect),
        ("max_instances", running.max_instances != new.max_instances),
        ("forget_after", running.forget_after != new.forget_after),
        ("maintenance", running.maintenance != new.maintenance),
        ("notify", running.notify != new.notify),
    ];
    let restart: [(&'static str, bool); 8] = [
        ("interval", running.interval != new.interval),
        ("id", running.id != new.id),
        // The monitor's queue and exchange are named by it.
        ("scope", running.scope != new.scope),
        ("broker", running.broker != new.broker),
        ("http", running.http != new.http),
        ("history", running.history != new.history),
        ("group", running.group != new.group),
        // The engine's plan is made once, with the interval it bounds.
        ("budget", running.budget != new.budget),
    ];
    changes.applied = live.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect();
    changes.need_restart = restart
        .iter()
        .filter(|(_, c)| *c)
        .map(|(n, _)| *n)
        .collect();
    changes
}

/// The running configuration with what a reload applies taken from `new`:
/// what needs a restart stays as it runs, so the next reload names it again.
fn applied(running: &Settings, new: &Settings) -> Settings {
    let mut next = running.clone();
    next.timeout = new.timeout;
    next.timeouts.clone_from(&new.timeouts);
    next.detection = new.detection.clone();
    next.services.clone_from(&new.services);
    next.expect.clone_from(&new.expect);
    next.max_instances = new.max_instances;
    next.forget_after = new.forget_after;
    next.maintenance.clone_from(&new.maintenance);
    next.notify.clone_from(&new.notify);
    next
}

/// The engine's part of a reload from `running` to `next`.
fn plan(running: &Settings, next: &Settings, applied: oneshot::Sender<()>) -> Reload {
    let expected: HashMap<String, u32> = next
        .named_services()
        .filter_map(|name| Some((name.clone(), next.detection_for(name).instances?)))
        .collect();
    let sinks = Reconfigured {
        expect_added: next
            .expect
            .iter()
            .filter(|s| !running.expect.contains(s))
            .map(|s| (s.clone(), next.timeout_for(s)))
            .collect(),
        expect_removed: running
            .expect
            .iter()
            .filter(|s| !next.expect.contains(s))
            .cloned()
            .collect(),
        expected,
        notify: (running.notify != next.notify).then(|| next.notify.clone()),
    };
    Reload {
        default: policy(next, None),
        services: next
            .named_services()
            .map(|name| (name.clone(), policy(next, Some(name))))
            .collect(),
        expect: next.expect.clone(),
        max_instances: next.max_instances,
        forget_after: next.forget_after,
        ping_ttl: next.timeout,
        sinks: Arc::new(sinks),
        applied,
    }
}

/// Listen for SIGHUP from now on (so that it no longer ends the process),
/// and apply each one until `shutdown`. `running` is the configuration the
/// monitor started with; `engine` takes what it applies.
pub fn spawn(
    hangups: Hangups,
    running: Settings,
    appliers: Appliers,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        let mut running = running;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hangup.recv() => if got.is_none() { return },
            }
            let tell = |notice| {
                if let Some(supervisor) = &hangups.supervisor {
                    let _ = supervisor.send(notice);
                }
            };
            tell(Notice::Reloading);
            match (hangups.load)() {
                Err(error) => {
                    warn!("reload refused, still running the configuration loaded before: {error}")
                }
                Ok(new) => {
                    let changes = changes(&running, &new);
                    if !changes.need_restart.is_empty() {
                        warn!(
                            "reload: {} changed, which only a restart applies; running as before there",
                            changes.need_restart.join(", ")
                        );
                    }
                    if changes.applied.is_empty() {
                        info!("reloaded: nothing to apply");
                    } else {
                        let next = applied(&running, &new);
                        if let Err(error) = appliers.quiet.reload(&next) {
                            warn!(
                                "reload refused, still running the configuration loaded before: {error}"
                            );
                            tell(Notice::Reloaded);
                            continue;
                        }
                        let (done, applied) = oneshot::channel();
                        if appliers
                            .engine
                            .send(plan(&running, &next, done))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        // The engine applies it between two steps: at once.
                        let _ = applied.await;
                        info!("reloaded: {} applied", changes.applied.join(", "));
                        running = next;
                    }
                }
            }
            tell(Notice::Reloaded);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::load_with_env(None, Some(Vec::new())).unwrap()
    }

    #[test]
    fn names_what_applies_and_what_needs_a_restart() {
        let running = settings();
        let mut new = running.clone();
        new.timeout *= 2;
        new.expect.push("ghost".into());
        new.interval *= 2;
        let seen = changes(&running, &new);
        assert_eq!(seen.applied, ["timeout", "expect"]);
        assert_eq!(seen.need_restart, ["interval"]);
        assert_eq!(changes(&running, &running), Changes::default());
    }

    #[test]
    fn what_needs_a_restart_stays_as_it_runs() {
        let running = settings();
        let mut new = running.clone();
        new.interval *= 2;
        new.max_instances += 1;
        let next = applied(&running, &new);
        assert_eq!(next.interval, running.interval);
        assert_eq!(next.max_instances, new.max_instances);
        // So the next reload names it again.
        assert_eq!(changes(&next, &new).need_restart, ["interval"]);
    }

    #[test]
    fn the_engine_hears_of_expected_services_added_and_removed() {
        let mut running = settings();
        running.expect = vec!["orders".into(), "old".into()];
        let mut next = running.clone();
        next.expect = vec!["orders".into(), "ghost".into()];
        let (done, _) = oneshot::channel();
        let reload = plan(&running, &next, done);
        assert_eq!(reload.expect, next.expect);
        assert_eq!(reload.sinks.expect_removed, ["old"]);
        assert_eq!(
            reload.sinks.expect_added,
            [("ghost".to_owned(), next.timeout_for("ghost"))]
        );
        assert_eq!(reload.sinks.notify, None);
    }
}
