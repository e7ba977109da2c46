//! A monitor group's own link ([`join_group`]): who leads, and a channel
//! every member hears. Separate from the heartbeat link, so that group
//! traffic never queues behind pings and echoes, and the library's wire
//! codec stays the heartbeat's: group bodies are opaque bytes here (the
//! monitor gives them meaning), signed and verified like heartbeats when
//! there is a key.
//!
//! Leadership is an exclusive queue, `heartbeat.group.<name>.leader`: the
//! member whose connection declared it leads; a declaration by any other
//! connection is refused (RESOURCE_LOCKED) while it lives, and the broker
//! deletes it when that connection dies (at once when the process dies,
//! after the connection's heartbeat timeout when it hangs). Standbys try
//! again every `claim_every`. The leader re-confirms it as often (a passive
//! declare: one round trip on the very connection that holds it), and
//! [`Leadership::Leader`] carries when it last did, so a leader that was
//! paused can tell its claim is stale before it acts on it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Closer, LinkOptions, LinkStatus, amqp};
use crate::{BrokerUrls, Keys, Scope};

/// Where this member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    Standby,
    /// Holding the leader's queue, as last confirmed at `confirmed` (the
    /// instant the confirming request was sent).
    Leader {
        confirmed: tokio::time::Instant,
    },
}

impl Leadership {
    /// Leading, with a confirmation younger than `within`.
    pub fn leads_within(&self, within: Duration) -> bool {
        matches!(self, Leadership::Leader { confirmed } if confirmed.elapsed() < within)
    }
}

/// What [`join_group`] needs.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The group's name (a wire name: letters, digits, `-`, `_`, `.`).
    pub group: String,
    /// The monitors' scope: groups of the same name in two scopes are two groups.
    pub scope: Scope,
    /// This member's id (the monitor's).
    pub member: String,
    /// How often a standby tries to lead, and a leader re-confirms.
    pub claim_every: Duration,
    /// Reconnect timings, connection name, CA file, keys, body limit.
    pub link: LinkOptions,
}

/// `heartbeat.group.<name>` (`heartbeat:<scope>:group.<name>` in a named
/// scope): the fanout exchange every member hears.
pub fn group_exchange(scope: &Scope, group: &str) -> String {
    format!("{}group.{group}", scope.prefix())
}

/// `heartbeat.group.<name>.leader` (in a named scope `heartbeat:<scope>:group.<name>.leader`):
/// the queue whose holder leads.
pub fn leader_queue(scope: &Scope, group: &str) -> String {
    format!("{}.leader", group_exchange(scope, group))
}

/// `heartbeat.group.<name>.member.<id>` (likewise scoped): one member's queue on the exchange.
pub fn member_queue(scope: &Scope, group: &str, member: &str) -> String {
    format!("{}.member.{member}", group_exchange(scope, group))
}

/// Publishes to every member (itself included). Never blocks: a full
/// queue or a link that is down drops the body, and says so.
#[derive(Clone)]
pub struct GroupPublisher {
    tx: mpsc::Sender<Signed>,
    keys: Option<Arc<Keys>>,
}

/// A body and its MAC, when there is a key.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub(crate) body: Vec<u8>,
    pub(crate) mac: Option<String>,
}

impl GroupPublisher {
    /// False when the body was dropped (the link's queue is full or closed).
    pub fn publish(&self, body: Vec<u8>) -> bool {
        let mac = self.keys.as_ref().map(|keys| keys.sign(&body));
        self.tx.try_send(Signed { body, mac }).is_ok()
    }
}

/// A member's link to its group. Fields are public so the halves can go
/// to different tasks.
pub struct GroupLink {
    pub publisher: GroupPublisher,
    /// Bodies every member published (this one's too), verified when there
    /// is a key; a body that fails is dropped and logged at a limited rate.
    pub inbox: mpsc::Receiver<Vec<u8>>,
    pub leadership: watch::Receiver<Leadership>,
    pub status: watch::Receiver<LinkStatus>,
    pub closer: Closer,
}

/// The back end's side of a group link.
pub(crate) struct GroupPlumbing {
    pub(crate) out_rx: mpsc::Receiver<Signed>,
    pub(crate) inbox_tx: mpsc::Sender<Vec<u8>>,
    pub(crate) leadership: watch::Sender<Leadership>,
    pub(crate) status: watch::Sender<LinkStatus>,
    pub(crate) token: CancellationToken,
    pub(crate) keys: Option<Arc<Keys>>,
}

/// Join a monitor group on the broker (the first of several that answers,
/// the next after a loss, as [`super::connect`]). Returns at once; the
/// connection, the member's queue and the claims run in the background.
pub fn join_group(urls: impl Into<BrokerUrls>, options: GroupOptions) -> GroupLink {
    let (out_tx, out_rx) = mpsc::channel(options.link.outgoing_capacity.max(1));
    let (inbox_tx, inbox) = mpsc::channel(1024);
    let (leadership_tx, leadership) = watch::channel(Leadership::Standby);
    let (status_tx, status) = watch::channel(LinkStatus::Connecting);
    let token = CancellationToken::new();
    let keys = options.link.keys.clone().map(Arc::new);
    let plumbing = GroupPlumbing {
        out_rx,
        inbox_tx,
        leadership: leadership_tx,
        status: status_tx,
        token: token.clone(),
        keys: keys.clone(),
    };
    let task = tokio::spawn(amqp::run_group(urls.into(), options, plumbing));
    GroupLink {
        publisher: GroupPublisher { tx: out_tx, keys },
        inbox,
        leadership,
        status,
        closer: Closer {
            token,
            task: Some(task),
        },
    }
}
