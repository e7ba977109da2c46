//! A monitor group (`[group] name`): several monitors, each judging on its
//! own, of which exactly one, the leader, sends notifications.
//!
//! Layout:
//! - `ledger`: what the group has sent (alerts fired, not yet resolved). Pure.
//! - `members`: who is in the group, alive, leading, as heard. Pure.
//! - `message`: what members say to each other (hello, sent, ledger).
//! - here: [`spawn`], the task that joins the group through
//!   `orchestrator_lib::plumbing::group` (leadership is an exclusive queue on the
//!   broker), says hello every interval, and follows the leader's ledger;
//!   [`Group`], the handle notify's gate and the views read.

mod ledger;
mod members;
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

pub use ledger::{AlertKey, Fired, Ledger};
pub use members::Member;
use members::Members;
use message::GroupMessage;

/// The leader publishes its whole ledger this often, besides whenever a
/// member it has not heard before says hello.
const LEDGER_EVERY: Duration = Duration::from_secs(5);
/// Group messages larger than this are dropped (a ledger of some thousands
/// of firing alerts fits).
const MAX_GROUP_BODY: usize = 4 * 1024 * 1024;

/// How often a standby tries to lead and a leader re-confirms: half an
/// interval, so a dead leader's successor leads within one interval of
/// the broker freeing the leader's queue.
pub fn claim_every(interval: Duration) -> Duration {
    (interval / 2).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// What this monitor needs to join its group.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub member: String,
    pub interval: Duration,
    pub urls: BrokerUrls,
    /// The heartbeat link's options (reconnects, CA file, keys).
    pub link: LinkOptions,
}

struct Shared {
    ledger: Ledger,
    members: Members,
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
    shared: Arc<Mutex<Shared>>,
    publisher: GroupPublisher,
}

/// The group as a view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    /// The member leading, as heard (this one, when it leads).
    pub leader: Option<String>,
    pub members: Vec<Member>,
    pub leading: bool,
}

impl Group {
    /// Leading now, on a claim confirmed within the lease.
    pub fn leads(&self) -> bool {
        self.leadership.borrow().leads_within(self.lease)
    }

    /// Read or change the ledger.
    pub fn ledger<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        f(&mut self.lock().ledger)
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

    pub fn view(&self) -> GroupView {
        let leading = self.leads();
        let members = self.lock().members.list(Instant::now().into_std());
        let leader = if leading {
            Some(self.me.clone())
        } else {
            members.iter().find(|m| m.leader).map(|m| m.id.clone())
        };
        GroupView {
            name: self.name.clone(),
            leader,
            members,
            leading,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
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

/// Join the group on the broker, in the background.
pub fn spawn(config: Config, shutdown: CancellationToken) -> Running {
    let claim = claim_every(config.interval);
    let link = join_group(
        &config.urls,
        GroupOptions {
            group: config.name.clone(),
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
        lease: claim * 3,
        shared: Arc::new(Mutex::new(Shared {
            ledger: Ledger::default(),
            members: Members::new(config.interval * 3),
        })),
        publisher: link.publisher.clone(),
    };
    info!(group = %config.name, member = %config.member, "joining the monitor group");
    let task = tokio::spawn(run(link, group.clone(), config.interval, shutdown));
    Running { group, task }
}

async fn run(link: GroupLink, group: Group, interval: Duration, shutdown: CancellationToken) {
    let GroupLink {
        mut inbox,
        mut leadership,
        closer,
        ..
    } = link;
    let incarnation = chrono::Utc::now().timestamp_millis();
    let mut hellos = tokio::time::interval(interval);
    let mut ledgers = tokio::time::interval(LEDGER_EVERY);
    let mut was_leading = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
                let leading = matches!(*leadership.borrow_and_update(), Leadership::Leader { .. });
                if leading != was_leading {
                    was_leading = leading;
                    info!(group = %group.name, "{}", if leading { "this monitor leads the group" } else { "this monitor stands by" });
                    hellos.reset_immediately();
                }
            }
            _ = hellos.tick() => {
                let leader = group.leads();
                group.lock().members.hello(&group.me, leader, incarnation, Instant::now().into_std());
                let hello = GroupMessage::Hello { member: group.me.clone(), incarnation, leader };
                group.publisher.publish(hello.encode());
            }
            _ = ledgers.tick() => {
                if group.leads() {
                    group.publish_ledger();
                }
            }
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
                        let new = group.lock().members.hello(&member, leader, incarnation, Instant::now().into_std());
                        if new && group.leads() {
                            group.publish_ledger();
                        }
                    }
                    GroupMessage::Sent { alerts, .. } => {
                        let mut shared = group.lock();
                        for (key, fired) in alerts {
                            shared.ledger.apply(key, fired);
                        }
                    }
                    GroupMessage::Ledger { firing, .. } => {
                        // Ours is the truth while we lead.
                        if !group.leads() {
                            group.lock().ledger.replace(firing);
                        }
                    }
                }
            }
        }
    }
    closer.close().await;
}
