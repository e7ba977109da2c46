//! Readiness, watchdog and status for a supervisor, through the
//! `sd_notify` protocol: one datagram per message to the Unix socket named
//! by `NOTIFY_SOCKET`, as systemd runs a `Type=notify` service.
//!
//! Written by hand rather than with the `sd-notify` crate: the protocol is
//! a datagram of `KEY=value` lines, a few lines of std, and the part that
//! matters here (when the monitor may say READY, and when its watchdog must
//! fall silent) is ours either way.
//!
//! - `READY=1` once: when the broker link is up and the detector can judge.
//! - `WATCHDOG=1` every third of `WATCHDOG_USEC`, only while the engine's
//!   own loop keeps running its checks on time ([`Pulse::checked_at`]): a
//!   stalled loop stops the keep-alives, and systemd restarts the monitor.
//!   A lost broker is not a stall: the loop still runs, and a restart
//!   would not bring the broker back.
//! - `STATUS=` what `/healthz` says (see [`crate::status::liveness`]), sent
//!   when it changes.
//! - `RELOADING=1` (with `MONOTONIC_USEC`) when SIGHUP starts a reload,
//!   and `READY=1` again once it is applied or refused (only if the monitor
//!   was ready before: a reload never makes it ready).
//! - `STOPPING=1` on the way out.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use orchestrator_lib::plumbing::LinkStatus;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::status::{link_code, liveness};

/// How often the status is looked at when there is no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What the engine's loop last showed about itself, kept at every check.
/// The engine writes it; the supervisor's task reads it when it wants.
#[derive(Debug, Clone)]
pub struct Pulse {
    /// When the loop last ran its check: it runs every 100 ms at most,
    /// so an old one means the loop is stuck.
    pub checked_at: Instant,
    pub link: LinkStatus,
    /// The link is up and the detector is not blind: verdicts can be trusted.
    pub judging: bool,
    /// When the engine last showed it works: a ping sent, a stall survived,
    /// the link back (as the status board counts it for `/healthz`).
    pub engine_seen: Instant,
    /// The latest stall of the loop: when, and how late.
    pub stall: Option<(Instant, Duration)>,
    /// Instances the detector tracks.
    pub tracked: usize,
    /// The interval in force when a budget chose one (else the configured one holds).
    pub interval: Option<Duration>,
}

impl Pulse {
    pub fn new(now: Instant) -> Self {
        Self {
            checked_at: now,
            link: LinkStatus::Connecting,
            judging: false,
            engine_seen: now,
            stall: None,
            tracked: 0,
            interval: None,
        }
    }
}

/// What the reload task tells the supervisor (see `reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Reloading,
    Reloaded,
}

/// The supervisor's socket, and the watchdog period it asked for.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; `Ok(None)`
    /// when no supervisor listens. The variables are taken out of the
    /// environment, as `sd_notify` does, so that commands the monitor runs
    /// (alert commands) do not speak for it.
    ///
    /// Call before any other thread starts: it changes the environment.
    pub fn take_from_env() -> Result<Option<Self>, String> {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // SAFETY: called from main before the runtime or any thread
            // starts, so nothing reads the environment meanwhile.
            unsafe { std::env::remove_var(name) };
        }
        let Some(socket) = socket.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let for_us = pid.is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let watchdog = match usec.filter(|_| for_us) {
            None => None,
            Some(usec) => match usec.trim().parse::<u64>() {
                Ok(0) | Err(_) => {
                    return Err(format!(
                        "WATCHDOG_USEC={usec:?} is not a positive number of microseconds"
                    ));
                }
                Ok(usec) => Some(Duration::from_micros(usec)),
            },
        };
        let to = address(socket.as_encoded_bytes())
            .map_err(|error| format!("NOTIFY_SOCKET {socket:?} is not usable: {error}"))?;
        let socket = UnixDatagram::unbound()
            .map_err(|error| format!("cannot open a socket for NOTIFY_SOCKET: {error}"))?;
        Ok(Some(Self {
            socket,
            to,
            watchdog,
        }))
    }

    /// For tests: a notifier sending to `path`.
    pub fn to_path(path: &std::path::Path, watchdog: Option<Duration>) -> io::Result<Self> {
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            to: SocketAddr::from_pathname(path)?,
            watchdog,
        })
    }

    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, message: &str) -> io::Result<()> {
        // A datagram socket: never blocks for long, and the supervisor reads promptly.
        self.socket
            .send_to_addr(message.as_bytes(), &self.to)
            .map(|_| ())
    }
}

/// `/run/...` or, with a leading `@`, a name in the abstract namespace.
fn address(socket: &[u8]) -> io::Result<SocketAddr> {
    match socket.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(socket))
        }
    }
}

/// What the monitor's timings are, for judging its pulse as `/healthz` does.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub interval: Duration,
    /// How long after a stall of its loop the monitor does not judge.
    pub grace: Duration,
}

/// Tell the supervisor how the monitor is, until `shutdown`; then `STOPPING=1`.
pub async fn run(
    notifier: Notifier,
    pulse: watch::Receiver<Pulse>,
    mut notices: mpsc::UnboundedReceiver<Notice>,
    timings: Timings,
    shutdown: CancellationToken,
) {
    // A third of the period: two keep-alives may come late before systemd acts.
    let every = notifier.watchdog.map_or(STATUS_EVERY, |period| period / 3);
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said = Said::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
            Some(notice) = notices.recv() => {
                let message = said.notice(notice, monotonic_usec());
                if let Some(message) = message
                    && let Err(error) = notifier.send(&message)
                {
                    said.failed(error);
                }
                continue;
            }
        }
        let now = Instant::now();
        let message = said.next(&pulse.borrow(), timings, notifier.watchdog, now);
        if let Some(message) = message {
            debug!(%message, "sd_notify");
            if let Err(error) = notifier.send(&message) {
                said.failed(error);
            }
        }
    }
    let _ = notifier.send("STOPPING=1");
}

/// What has been said so far, and so what to say next.
#[derive(Debug, Default)]
struct Said {
    ready: bool,
    status: Option<String>,
    warned: bool,
}

impl Said {
    /// The datagram for this tick, if there is anything to say.
    fn next(
        &mut self,
        pulse: &Pulse,
        timings: Timings,
        watchdog: Option<Duration>,
        now: Instant,
    ) -> Option<String> {
        let mut lines = Vec::new();
        if pulse.judging && !self.ready {
            self.ready = true;
            lines.push("READY=1".to_owned());
        }
        let status = status_line(pulse, timings, now);
        if self.status.as_deref() != Some(status.as_str()) {
            // One line: a newline would start another assignment.
            lines.push(format!("STATUS={}", status.replace('\n', " ")));
            self.status = Some(status);
        }
        if let Some(period) = watchdog
            && now.saturating_duration_since(pulse.checked_at) <= period / 3
        {
            lines.push("WATCHDOG=1".to_owned());
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// The datagram for a reload's start or end. systemd wants the
    /// monotonic clock with `RELOADING=1`, to tell this reload from older ones.
    fn notice(&mut self, notice: Notice, monotonic_usec: u64) -> Option<String> {
        match notice {
            Notice::Reloading => Some(format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")),
            Notice::Reloaded => self.ready.then(|| "READY=1".to_owned()),
        }
    }

    fn failed(&mut self, error: io::Error) {
        if !self.warned {
            self.warned = true;
            warn!(%error, "cannot reach the supervisor's NOTIFY_SOCKET");
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

/// What `/healthz` would say, and how many instances are watched.
fn status_line(pulse: &Pulse, timings: Timings, now: Instant) -> String {
    let (state, detail) = link_code(&pulse.link);
    let health = liveness(
        (state, detail.as_deref()),
        pulse.link == LinkStatus::Connected,
        pulse.engine_seen,
        pulse.interval.unwrap_or(timings.interval),
        pulse.stall,
        timings.grace,
        now,
    );
    match health {
        Ok(()) => format!("ok: {} instances tracked", pulse.tracked),
        Err(reason) => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMINGS: Timings = Timings {
        interval: Duration::from_millis(200),
        grace: Duration::from_secs(1),
    };
    const WATCHDOG: Option<Duration> = Some(Duration::from_millis(600));

    fn connected(now: Instant) -> Pulse {
        Pulse {
            link: LinkStatus::Connected,
            judging: true,
            tracked: 2,
            ..Pulse::new(now)
        }
    }

    fn said(said: &mut Said, pulse: &Pulse, now: Instant) -> Vec<String> {
        said.next(pulse, TIMINGS, WATCHDOG, now)
            .map(|message| message.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_reload_is_reloading_then_ready_again_never_ready_before_it_was() {
        let start = Instant::now();
        let mut s = Said::default();
        assert_eq!(
            s.notice(Notice::Reloading, 42).as_deref(),
            Some("RELOADING=1\nMONOTONIC_USEC=42")
        );
        assert_eq!(s.notice(Notice::Reloaded, 43), None, "not ready yet");
        said(&mut s, &connected(start), start);
        s.notice(Notice::Reloading, 44);
        assert_eq!(s.notice(Notice::Reloaded, 45).as_deref(), Some("READY=1"));
    }

    #[test]
    fn ready_once_the_monitor_can_judge_and_only_once() {
        let start = Instant::now();
        let mut s = Said::default();
        let lines = said(&mut s, &Pulse::new(start), start);
        assert_eq!(lines, ["STATUS=broker link connecting", "WATCHDOG=1"]);
        // Connected, but blind for now (a stall's grace): not ready yet.
        let blind = Pulse {
            judging: false,
            ..connected(start)
        };
        assert_eq!(
            said(&mut s, &blind, start),
            ["STATUS=ok: 2 instances tracked", "WATCHDOG=1"]
        );
        assert_eq!(
            said(&mut s, &connected(start), start),
            ["READY=1", "WATCHDOG=1"]
        );
        assert_eq!(said(&mut s, &connected(start), start), ["WATCHDOG=1"]);
        // A lost link later is a status, not a second readiness.
        let lost = Pulse {
            link: LinkStatus::Connecting,
            judging: false,
            ..connected(start)
        };
        assert_eq!(
            said(&mut s, &lost, start),
            ["STATUS=broker link connecting", "WATCHDOG=1"]
        );
        assert_eq!(
            said(&mut s, &connected(start), start)[0],
            "STATUS=ok: 2 instances tracked"
        );
    }

    #[test]
    fn a_stalled_loop_gets_no_keep_alive() {
        let start = Instant::now();
        let mut s = Said::default();
        let pulse = connected(start);
        assert!(said(&mut s, &pulse, start).contains(&"WATCHDOG=1".to_owned()));
        // The loop last checked 250 ms ago: past a third of the 600 ms watchdog.
        let late = start + Duration::from_millis(250);
        assert!(!said(&mut s, &pulse, late).contains(&"WATCHDOG=1".to_owned()));
        let later = start + Duration::from_secs(5);
        let lines = said(&mut s, &pulse, later);
        assert!(!lines.contains(&"WATCHDOG=1".to_owned()), "{lines:?}");
        // ... and the status says why, as /healthz would.
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("STATUS=monitoring loop stalled")),
            "{lines:?}"
        );
        // The loop runs again: keep-alives resume.
        let back = Pulse {
            checked_at: later,
            engine_seen: later,
            ..pulse
        };
        assert!(said(&mut s, &back, later).contains(&"WATCHDOG=1".to_owned()));
    }

    #[test]
    fn without_a_watchdog_only_readiness_and_status() {
        let start = Instant::now();
        let mut s = Said::default();
        let message = s.next(&connected(start), TIMINGS, None, start);
        assert_eq!(
            message.as_deref(),
            Some("READY=1\nSTATUS=ok: 2 instances tracked")
        );
        assert_eq!(s.next(&connected(start), TIMINGS, None, start), None);
    }

    #[test]
    fn abstract_and_path_sockets() {
        use std::os::linux::net::SocketAddrExt;
        let abstract_name = address(b"@heartbeat-test").unwrap();
        assert_eq!(
            abstract_name.as_abstract_name(),
            Some(&b"heartbeat-test"[..])
        );
        let path = address(b"/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }
}
