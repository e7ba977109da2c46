//! The heartbeat responder: answer every ping with an echo, say goodbye on
//! the way out. `mock-service` is this plus flags; any Rust service can embed it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Error;
use crate::identity::Identity;
use crate::monitor_book::{MonitorBook, PingMark};
use crate::transport::LogLimiter;
use crate::transport::{Incoming, Link, LinkStatus};
use crate::wire::{Echo, Goodbye, Message, Ping};

/// Ways to misbehave on purpose, for demos and tests. The default is a
/// well-behaved service.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added to every answer.
    pub latency: Duration,
    /// A uniformly random extra delay of up to this much.
    pub jitter: Duration,
    /// Probability in [0, 1] of ignoring a ping.
    pub drop_rate: f64,
    /// Stop answering after this long while keeping the connection, like a hung process.
    pub hang_after: Option<Duration>,
}

impl Faults {
    pub fn validate(&self) -> Result<(), Error> {
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return Err(Error::InvalidOption(format!(
                "drop rate must be between 0 and 1, got {}",
                self.drop_rate
            )));
        }
        Ok(())
    }

    fn delay(&self, rng: &mut impl Rng) -> Duration {
        self.latency + self.jitter.mul_f64(rng.random::<f64>())
    }
}

/// What the goodbye promises: nothing (the instance is LEFT: gone on
/// purpose), or a return within a while (a planned restart, a deploy: the
/// monitor holds its alerts, and alerts only if it is not back in time).
/// Shared and changeable until the goodbye is said, so a service decides
/// at shutdown whether it is restarting or going away.
#[derive(Debug, Clone, Default)]
pub struct Farewell(Arc<Mutex<Option<Duration>>>);

impl Farewell {
    /// A goodbye promising to be back within `back_within`.
    pub fn back_within(back_within: Duration) -> Self {
        let farewell = Self::default();
        farewell.promise(Some(back_within));
        farewell
    }

    /// Change the promise; `None` for a plain goodbye.
    pub fn promise(&self, back_within: Option<Duration>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = back_within;
    }

    fn promised(&self) -> Option<Duration> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Answer pings on `link` as `me` until `shutdown`, then send a goodbye to
/// every monitor heard from and close the link. Returns an error only for a
/// failure no retry can fix, such as refused credentials.
pub async fn respond(
    link: Link,
    me: Identity,
    faults: Faults,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    respond_fleet(link, vec![me], faults, shutdown).await
}

/// [`respond`], whose goodbye says what `farewell` promises when
/// `shutdown` comes: a planned restart (`Farewell::back_within`).
pub async fn respond_with(
    link: Link,
    me: Identity,
    faults: Faults,
    farewell: Farewell,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    respond_fleet_with(link, vec![me], faults, farewell, shutdown).await
}

/// [`respond`] for many services on one link: `members[i]` answers the pings
/// that arrive on the link's endpoint `i` (see `connect_many`), each with the
/// same `faults`, and each says its own goodbye.
pub async fn respond_fleet(
    link: Link,
    members: Vec<Identity>,
    faults: Faults,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    respond_fleet_with(link, members, faults, Farewell::default(), shutdown).await
}

/// [`respond_fleet`], whose goodbyes say what `farewell` promises when
/// `shutdown` comes (`mock-service --drain 30s`).
pub async fn respond_fleet_with(
    link: Link,
    members: Vec<Identity>,
    faults: Faults,
    farewell: Farewell,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    faults.validate()?;
    let Link {
        publisher,
        mut inbox,
        mut status,
        closer,
        ..
    } = link;
    // The link verified every ping against our key: only then can a ping's
    // freshness mean anything (see `monitor_book`).
    let signed = publisher.signs();
    let started = Instant::now();
    // Per member: the monitors it answers, bounded and rate-limited.
    let mut monitors: Vec<MonitorBook> = members
        .iter()
        .map(|me| MonitorBook::new(started.into_std()).in_scope(me.scope.clone()))
        .collect();
    let refusals = LogLimiter::new(Duration::from_secs(10));
    let mut delayed = JoinSet::new();
    let mut hung_logged = false;
    // The link ends both its status and its inbox when it fails for good;
    // whichever is seen first, a failure must come out as the error it is.
    let ended = |status: &tokio::sync::watch::Receiver<LinkStatus>| match &*status.borrow() {
        LinkStatus::Failed(error) => Err(error.clone()),
        _ => Ok(()),
    };
    let outcome = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            changed = status.changed() => {
                if changed.is_err() {
                    break ended(&status);
                }
                if let LinkStatus::Failed(error) = &*status.borrow() {
                    break Err(error.clone());
                }
            }
            incoming = inbox.recv() => {
                let Some(incoming) = incoming else { break ended(&status) };
                let Incoming { message: Message::Ping(ping), reply_to: Some(reply_to), to, .. } = incoming else {
                    debug!(?incoming, "ignored: only pings with a reply_to are answered");
                    continue;
                };
                let (Some(me), Some(book)) = (members.get(to), monitors.get_mut(to)) else {
                    debug!(to, "ignored: a ping for an endpoint nobody answers for");
                    continue;
                };
                let mark = PingMark { monitor: &ping.monitor, boot: ping.boot, seq: ping.seq, signed };
                if let Err(refusal) = book.admit(&reply_to, mark, std::time::Instant::now()) {
                    if let Some(suppressed) = refusals.permit(std::time::Instant::now()) {
                        warn!(?refusal, monitor = %ping.monitor, suppressed, "a ping not answered");
                    }
                    continue;
                }
                if faults.hang_after.is_some_and(|after| started.elapsed() >= after) {
                    if !std::mem::replace(&mut hung_logged, true) {
                        warn!("hanging on purpose: pings are read but no longer answered");
                    }
                    continue;
                }
                let mut rng = rand::rng();
                if faults.drop_rate > 0.0 && rng.random_bool(faults.drop_rate) {
                    debug!(seq = ping.seq, "dropping a ping on purpose");
                    continue;
                }
                let delay = faults.delay(&mut rng);
                if delay.is_zero() {
                    answer(&publisher, me, &ping, &reply_to);
                } else {
                    let (publisher, me) = (publisher.clone(), me.clone());
                    delayed.spawn(async move {
                        tokio::time::sleep(delay).await;
                        answer(&publisher, &me, &ping, &reply_to);
                    });
                }
            }
            Some(_) = delayed.join_next(), if !delayed.is_empty() => {}
        }
    };
    // An echo still waiting out its latency must not land after the goodbye.
    delayed.abort_all();
    if outcome.is_ok() {
        let mut said = 0usize;
        let now = std::time::Instant::now();
        let back_within = farewell.promised();
        for (me, book) in members.iter().zip(&monitors) {
            for monitor in book.goodbye_list(now) {
                let latest = book.latest_ping(monitor);
                let goodbye = Message::Goodbye(Goodbye {
                    service: me.service.clone(),
                    instance: me.instance.clone(),
                    monitor: latest.map(|(id, _)| id.to_owned()),
                    seq: latest.map(|(_, seq)| seq),
                    at: Some(Utc::now()),
                    back_within,
                });
                match publisher.send_to(monitor, &goodbye) {
                    Ok(()) => said += 1,
                    Err(error) => debug!(%error, %monitor, "could not queue a goodbye"),
                }
            }
        }
        match back_within {
            Some(back) => info!(goodbyes = said, back_within = ?back, "said goodbye, back soon"),
            None => info!(goodbyes = said, "said goodbye"),
        }
    }
    closer.close().await;
    outcome
}

fn answer(publisher: &crate::transport::Publisher, me: &Identity, ping: &Ping, reply_to: &str) {
    let echo = Message::Echo(Echo {
        service: me.service.clone(),
        instance: me.instance.clone(),
        monitor: Some(ping.monitor.clone()),
        seq: ping.seq,
        at: Some(Utc::now()),
    });
    if let Err(error) = publisher.send_to(reply_to, &echo) {
        debug!(%error, seq = ping.seq, "echo not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::MemoryBroker;
    use crate::{Endpoint, LinkOptions};

    fn ping(seq: u64) -> Message {
        Message::Ping(Ping {
            monitor: "m".into(),
            seq,
            boot: Some(1),
            sent_at: Some(Utc::now()),
        })
    }

    async fn next(inbox: &mut crate::transport::Inbox) -> Message {
        tokio::time::timeout(Duration::from_secs(5), inbox.recv())
            .await
            .expect("a message within 5 s")
            .expect("link open")
            .message
    }

    #[tokio::test]
    async fn a_scope_hears_only_its_own_monitors_and_they_only_it() {
        let broker = MemoryBroker::new();
        let staging = crate::Scope::new("staging").unwrap();
        let mut staging_monitor =
            broker.connect(Endpoint::monitor_in(&staging, "m"), LinkOptions::default());
        let mut default_monitor = broker.connect(Endpoint::monitor("m"), LinkOptions::default());
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        for me in [
            Identity::new("orders", "staged")
                .unwrap()
                .in_scope(staging.clone()),
            Identity::new("orders", "plain").unwrap(),
        ] {
            let link = broker.connect(Endpoint::service(&me), LinkOptions::default());
            tasks.push(tokio::spawn(respond(
                link,
                me,
                Faults::default(),
                shutdown.clone(),
            )));
        }
        let staging_queue = Endpoint::monitor_in(&staging, "m").queue;
        for seq in 1..=2 {
            staging_monitor
                .publisher
                .broadcast(&ping(seq), &staging_queue, Duration::from_secs(1))
                .unwrap();
            let Message::Echo(echo) = next(&mut staging_monitor.inbox).await else {
                panic!("expected an echo")
            };
            assert_eq!((echo.instance.as_str(), echo.seq), ("staged", seq));
            default_monitor
                .publisher
                .broadcast(&ping(seq), "heartbeat.monitor.m", Duration::from_secs(1))
                .unwrap();
            let Message::Echo(echo) = next(&mut default_monitor.inbox).await else {
                panic!("expected an echo")
            };
            assert_eq!((echo.instance.as_str(), echo.seq), ("plain", seq));
        }
        // A default-scope ping readdressed to the staging monitor's queue
        // reaches only the default-scope service, which does not answer a
        // queue outside its scope.
        default_monitor
            .publisher
            .broadcast(&ping(3), &staging_queue, Duration::from_secs(1))
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), staging_monitor.inbox.recv())
                .await
                .is_err(),
            "nothing crosses scopes"
        );
        shutdown.cancel();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn echoes_each_ping_then_says_goodbye() {
        let broker = MemoryBroker::new();
        let mut monitor = broker.connect(Endpoint::monitor("m"), LinkOptions::default());
        let me = Identity::new("orders", "o-1").unwrap();
        let service = broker.connect(Endpoint::service(&me), LinkOptions::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(respond(service, me, Faults::default(), shutdown.clone()));

        for seq in 1..=3 {
            monitor
                .publisher
                .broadcast(&ping(seq), "heartbeat.monitor.m", Duration::from_secs(1))
                .unwrap();
            let Message::Echo(echo) = next(&mut monitor.inbox).await else {
                panic!("expected an echo")
            };
            assert_eq!(
                (echo.service.as_str(), echo.instance.as_str(), echo.seq),
                ("orders", "o-1", seq)
            );
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
        let Message::Goodbye(bye) = next(&mut monitor.inbox).await else {
            panic!("expected a goodbye")
        };
        assert_eq!(bye.instance, "o-1");
        assert!(!broker.has_queue("heartbeat.service.orders/o-1"));
    }

    #[tokio::test]
    async fn a_fleet_on_one_link_answers_as_each_member_and_each_says_goodbye() {
        let broker = MemoryBroker::new();
        let mut monitor = broker.connect(Endpoint::monitor("m"), LinkOptions::default());
        let members = vec![
            Identity::new("f-0", "h").unwrap(),
            Identity::new("f-1", "h").unwrap(),
        ];
        let endpoints = members.iter().map(Endpoint::service).collect();
        let fleet = broker.connect_many(endpoints, LinkOptions::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(respond_fleet(
            fleet,
            members,
            Faults::default(),
            shutdown.clone(),
        ));
        tokio::task::yield_now().await;
        monitor
            .publisher
            .broadcast(&ping(7), "heartbeat.monitor.m", Duration::from_secs(1))
            .unwrap();
        let mut echoed = Vec::new();
        for _ in 0..2 {
            let Message::Echo(echo) = next(&mut monitor.inbox).await else {
                panic!("expected an echo")
            };
            assert_eq!(echo.seq, 7);
            echoed.push(echo.service);
        }
        echoed.sort();
        assert_eq!(echoed, ["f-0", "f-1"]);

        shutdown.cancel();
        task.await.unwrap().unwrap();
        let mut left = Vec::new();
        for _ in 0..2 {
            let Message::Goodbye(bye) = next(&mut monitor.inbox).await else {
                panic!("expected a goodbye")
            };
            left.push(bye.service);
        }
        left.sort();
        assert_eq!(left, ["f-0", "f-1"]);
        assert!(!broker.has_queue("heartbeat.service.f-0.h"));
        assert!(!broker.has_queue("heartbeat.service.f-1.h"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_service_reads_pings_but_stays_silent() {
        let broker = MemoryBroker::new();
        let mut monitor = broker.connect(Endpoint::monitor("m"), LinkOptions::default());
        let me = Identity::new("orders", "o-1").unwrap();
        let service = broker.connect(Endpoint::service(&me), LinkOptions::default());
        let faults = Faults {
            hang_after: Some(Duration::from_secs(5)),
            ..Faults::default()
        };
        tokio::spawn(respond(service, me, faults, CancellationToken::new()));
        tokio::task::yield_now().await;
        monitor
            .publisher
            .broadcast(&ping(1), "heartbeat.monitor.m", Duration::from_secs(1))
            .unwrap();
        assert!(matches!(next(&mut monitor.inbox).await, Message::Echo(_)));
        tokio::time::advance(Duration::from_secs(6)).await;
        monitor
            .publisher
            .broadcast(&ping(2), "heartbeat.monitor.m", Duration::from_secs(1))
            .unwrap();
        let silence = tokio::time::timeout(Duration::from_secs(3), monitor.inbox.recv()).await;
        assert!(silence.is_err(), "a hung service answered: {silence:?}");
    }

    #[tokio::test]
    async fn drop_rate_outside_zero_to_one_is_refused() {
        let broker = MemoryBroker::new();
        let me = Identity::new("orders", "o-1").unwrap();
        let service = broker.connect(Endpoint::service(&me), LinkOptions::default());
        let faults = Faults {
            drop_rate: 1.5,
            ..Faults::default()
        };
        let err = respond(service, me, faults, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("drop rate"), "{err}");
    }
}
