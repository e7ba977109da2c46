//! A monitor group (`[group] name`): several monitors, each judging on its
//! own, of which exactly one, the leader, sends notifications.
//!
//! Layout:
//! - `ledger`: what the group has sent (alerts fired, not yet resolved). Pure.
//! - `message`: what members say to each other (hello, verdicts, sent, ledger).
//! - here: [`spawn`], the task that joins the group through
//!   `orchestrator_lib::plumbing::group` (leadership is an exclusive queue on the
//!   broker), says hello every interval, shares this member's verdicts,
//!   writes what it hears (members, their verdicts, leadership) into the
//!   fleet model's [`GroupPart`] for every view and the gate, and follows
//!   the leader's ledger; [`Group`], the handle notify's gate uses.

mod ledger;
mod message;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_lib::plumbing::group::{
    GroupLink, GroupOptions, GroupPublisher, Leadership, join_group,
};
use orchestrator_lib::{BrokerUrls, LinkOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::fleet::{self, GroupPart, Verdicts};
pub use ledger::{AlertKey, Fired, Ledger};
use message::{GroupMessage, Verdict};

/// The leader publishes its whole ledger this often, besides whenever a
/// member it has not heard before says hello.
const LEDGER_EVERY: Duration = Duration::from_secs(5);
/// Group messages larger than this are dropped (a ledger of some thousands
/// of firing alerts fits).
const MAX_GROUP_BODY: usize = 4 * 1024 * 1024;

/// How often a standby tries to lead and a leader re-confirms: half an
/// interval, so a dead leader's successor leads within one interval of
/// the broker freeing the leader's queue. Verdicts that changed are shared
/// as often.
pub fn claim_every(interval: Duration) -> Duration {
    (interval / 2).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// A leader acts on a claim confirmed within this.
fn lease(interval: Duration) -> Duration {
    claim_every(interval) * 3
}

/// The fleet model's part for a group: empty, this member standing by.
/// A member silent for three intervals is not alive.
pub fn part(name: &str, member: &str, quorum: Option<usize>, interval: Duration) -> GroupPart {
    GroupPart::new(
        name.to_owned(),
        member.to_owned(),
        quorum,
        lease(interval),
        interval * 3,
    )
}

/// What this monitor needs to join its group.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    /// The monitor's scope: the group meets under its names.
    pub scope: orchestrator_lib::Scope,
    pub member: String,
    pub interval: Duration,
    pub urls: BrokerUrls,
    /// The heartbeat link's options (reconnects, CA file, keys).
    pub link: LinkOptions,
}

/// A member's handle on its group. Cheap to clone.
#[derive(Clone)]
pub struct Group {
    pub name: String,
    pub me: String,
    leadership: watch::Receiver<Leadership>,
    /// A leader whose claim was last confirmed longer ago than this does
    /// not act as one (a paused process waking up, a link gone quiet).
    lease: Duration,
    ledger: Arc<Mutex<Ledger>>,
    publisher: GroupPublisher,
    /// The fleet model, whose `GroupPart` this member's task writes.
    fleet: fleet::Shared,
}

impl Group {
    /// Leading now, on a claim confirmed within the lease.
    pub fn leads(&self) -> bool {
        self.leadership.borrow().leads_within(self.lease)
    }

    /// Read or change the ledger.
    pub fn ledger<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        f(&mut self.lock())
    }

    /// Tell the others what was just sent.
    pub fn publish_sent(&self, alerts: Vec<(AlertKey, Option<Fired>)>) {
        if alerts.is_empty() {
            return;
        }
        let message = GroupMessage::Sent {
            member: self.me.clone(),
            alerts,
        };
        if !self.publisher.publish(message.encode()) {
            warn!(group = %self.name, "could not tell the group what was sent (its link is down or behind)");
        }
    }

    /// Publish the whole ledger.
    pub fn publish_ledger(&self) {
        let firing = self.ledger(|l| {
            l.firing()
                .map(|(k, f)| (k.clone(), f.clone()))
                .collect::<Vec<_>>()
        });
        let message = GroupMessage::Ledger {
            member: self.me.clone(),
            firing,
        };
        self.publisher.publish(message.encode());
    }

    /// Whether the group holds `subject` in `state`: a quorum of the
    /// members alive judge so, this one by the fleet model's own verdict.
    pub fn agrees(&self, service: &str, instance: Option<&str>, state: &str) -> bool {
        let fleet = self.fleet.read();
        let Some(group) = &fleet.group else {
            return true;
        };
        let own = match instance {
            Some(instance) => fleet
                .row(&crate::detector::InstanceKey::new(service, instance))
                .map(|row| row.own.code().to_owned()),
            None => Some(
                fleet
                    .judged
                    .get(service)
                    .map_or("full", |j| j.strength.code())
                    .to_owned(),
            ),
        };
        let subject = (service.to_owned(), instance.map(str::to_owned));
        group.agrees(&subject, state, own.as_deref(), Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running group task and its handle.
pub struct Running {
    pub group: Group,
    task: JoinHandle<()>,
}

impl Running {
    /// Wait for the task, which ends on the shutdown token.
    pub async fn finish(self) {
        let _ = self.task.await;
    }
}

/// Join the group on the broker, in the background. `fleet` is the model
/// built with this group's [`part`].
pub fn spawn(config: Config, fleet: fleet::Shared, shutdown: CancellationToken) -> Running {
    let claim = claim_every(config.interval);
    let link = join_group(
        &config.urls,
        GroupOptions {
            group: config.name.clone(),
            scope: config.scope.clone(),
            member: config.member.clone(),
            claim_every: claim,
            link: LinkOptions {
                connection_name: format!("monitor {} (group {})", config.member, config.name),
                max_body: MAX_GROUP_BODY,
                ..config.link.clone()
            },
        },
    );
    let group = Group {
        name: config.name.clone(),
        me: config.member.clone(),
        leadership: link.leadership.clone(),
        lease: lease(config.interval),
        ledger: Arc::default(),
        publisher: link.publisher.clone(),
        fleet,
    };
    info!(group = %config.name, member = %config.member, "joining the monitor group");
    let task = tokio::spawn(run(link, group.clone(), config.interval, claim, shutdown));
    Running { group, task }
}

async fn run(
    link: GroupLink,
    group: Group,
    interval: Duration,
    claim: Duration,
    shutdown: CancellationToken,
) {
    let GroupLink {
        mut inbox,
        mut leadership,
        closer,
        ..
    } = link;
    let incarnation = chrono::Utc::now().timestamp_millis();
    let mut hellos = tokio::time::interval(interval);
    let mut ledgers = tokio::time::interval(LEDGER_EVERY);
    let mut shares = tokio::time::interval(claim);
    let mut sharing = Sharing::default();
    let mut was_leading = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *leadership.borrow_and_update();
                group.fleet.group(|g| g.set_leadership(now));
                let leading = matches!(now, Leadership::Leader { .. });
                if leading != was_leading {
                    was_leading = leading;
                    info!(group = %group.name, "{}", if leading { "this monitor leads the group" } else { "this monitor stands by" });
                    hellos.reset_immediately();
                }
            }
            _ = hellos.tick() => {
                let leader = group.leads();
                let hello = GroupMessage::Hello { member: group.me.clone(), incarnation, leader };
                group.publisher.publish(hello.encode());
                // Who is alive changes with time alone: the rows follow.
                group.fleet.group(|g| g.forget_silent(Instant::now()));
            }
            _ = ledgers.tick() => {
                if group.leads() {
                    group.publish_ledger();
                }
                sharing.share(&group, true);
            }
            _ = shares.tick() => sharing.share(&group, false),
            body = inbox.recv() => {
                let Some(body) = body else { break };
                let message = match GroupMessage::decode(&body) {
                    Ok(message) => message,
                    Err(error) => {
                        debug!(%error, "ignored a group message that does not decode");
                        continue;
                    }
                };
                if message.member() == group.me {
                    continue;
                }
                match message {
                    GroupMessage::Hello { member, incarnation, leader } => {
                        let new = group.fleet.group(|g| g.hello(&member, leader, incarnation, Instant::now())).unwrap_or(false);
                        if new {
                            // A newcomer (or a restarted member) hears all of it.
                            sharing.share(&group, true);
                            if group.leads() {
                                group.publish_ledger();
                            }
                        }
                    }
                    GroupMessage::Verdicts { member, whole, verdicts } => {
                        let verdicts = verdicts
                            .into_iter()
                            .map(|v| ((v.service, v.instance), v.state))
                            .collect();
                        group.fleet.group(|g| g.verdicts(&member, whole, verdicts, Instant::now()));
                    }
                    GroupMessage::Sent { alerts, .. } => {
                        let mut ledger = group.lock();
                        for (key, fired) in alerts {
                            ledger.apply(key, fired);
                        }
                    }
                    GroupMessage::Ledger { firing, .. } => {
                        // Ours is the truth while we lead.
                        if !group.leads() {
                            group.lock().replace(firing);
                        }
                    }
                }
            }
        }
    }
    closer.close().await;
}

/// What this member last told the group of its own verdicts.
#[derive(Default)]
struct Sharing {
    said: Verdicts,
    /// The model's version when they were last compared.
    version: Option<u64>,
}

impl Sharing {
    /// Publish this member's verdicts: all of them (`whole`), or those that
    /// changed since it last said (nothing when the model did not change).
    fn share(&mut self, group: &Group, whole: bool) {
        let (version, now) = {
            let fleet = group.fleet.read();
            if !whole && self.version == Some(fleet.version()) {
                return;
            }
            (fleet.version(), fleet.own_verdicts())
        };
        self.version = Some(version);
        let verdict = |(service, instance): (String, Option<String>), state| Verdict {
            service,
            instance,
            state,
        };
        let verdicts: Vec<Verdict> = if whole {
            now.iter()
                .map(|(subject, state)| verdict(subject.clone(), Some(state.clone())))
                .collect()
        } else {
            let gone = self
                .said
                .keys()
                .filter(|subject| !now.contains_key(*subject))
                .map(|subject| verdict(subject.clone(), None));
            let changed = now
                .iter()
                .filter(|(subject, state)| self.said.get(*subject) != Some(*state))
                .map(|(subject, state)| verdict(subject.clone(), Some(state.clone())));
            gone.chain(changed).collect()
        };
        self.said = now;
        if verdicts.is_empty() && !whole {
            return;
        }
        let message = GroupMessage::Verdicts {
            member: group.me.clone(),
            whole,
            verdicts,
        };
        if !group.publisher.publish(message.encode()) {
            // The next whole set, within a few seconds, makes up for it.
            debug!(group = %group.name, "could not share this member's verdicts now");
        }
    }
}
