//! The [`Link`]: one small interface to the broker, with two back ends.
//!
//! A link is a handle to a background task that owns the connection. The
//! caller publishes through a [`Publisher`], reads decoded messages from an
//! [`Inbox`], watches [`LinkStatus`], and ends it with [`Closer::close`]. The
//! `amqp` back end talks to RabbitMQ through lapin; the `memory` back end routes
//! in-process for the demo and for deterministic tests. Both decode with the
//! same [`accept`], so a bad body is counted and dropped the same way.

mod amqp;
mod group;
mod joint;
mod memory;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::wire::{self, Message, RejectReason};
use crate::{BrokerUrls, Endpoint, Error, Keys};

pub use group::{
    GroupLink, GroupOptions, GroupPublisher, Leadership, group_exchange, join_group, leader_queue,
    member_queue,
};
pub use memory::MemoryBroker;

/// Tuning for a link. The defaults suit a monitor's link, on a local or
/// hosted broker; a service starts from [`LinkOptions::service`].
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Unacknowledged deliveries the broker may push before waiting for acks.
    pub prefetch: u16,
    /// Acknowledge deliveries, one `multiple` ack per batch handed on (a
    /// service: see [`LinkOptions::service`]). Off, the queue is consumed
    /// without acknowledgements, as the monitor's is: it is exclusive, so a
    /// message unread when the connection dies dies with it whatever was
    /// acked, and an echo is worthless after a reconnect anyway. Measured,
    /// an ack window (acks held back 50 ms, prefetch 2,048) throttled the
    /// broker's deliveries once it was busy (10,000 services: a backlog of
    /// 240,000 and every service DOWN).
    pub ack: bool,
    /// Messages waiting to be published before new ones are dropped.
    pub outgoing_capacity: usize,
    /// Shown in the broker's management UI next to the connection.
    pub connection_name: String,
    /// Bodies larger than this are rejected before they are parsed.
    pub max_body: usize,
    /// For `amqps://`: certificate authorities (PEM) to trust besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Sign everything published, and accept only bodies signed with one of
    /// these keys (unsigned and badly signed ones are rejected and counted).
    /// `None`: heartbeats are unsigned, and signatures are not looked at.
    pub keys: Option<Keys>,
    /// On the AMQP link, while messages come densely (the last batch went
    /// on less than `linger` ago), a batch waits this long for more before
    /// it is handed on. Meanwhile lapin queues what it receives without
    /// waking a thread: measured at 2,000 echoes a second, a monitor's CPU
    /// per echo fell by 10 to 25% (BENCHMARKS.md), futex wake-ups saved. The first
    /// message after a quiet spell of `linger` is never held, outgoing
    /// messages are published during the wait, and a close ends it. Each
    /// message's [`Incoming::received_at`] is when the link took it, so
    /// only one that arrived during a wait reads late, by up to `linger`
    /// (plus the timer's 1 ms granularity). Zero: never wait (a service's
    /// link, which answers each ping at once). The in-memory broker ignores it.
    pub linger: Duration,
}

/// Check a CA file's text as the TLS client will read it, at every
/// connection attempt: a file that cannot be read that way is a mistake no
/// retry mends. Returns how many certificates it holds.
pub fn check_ca_pem(pem: &str) -> Result<usize, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        certificate.map_err(|error| format!("not a readable PEM certificate ({error})"))?;
        count += 1;
    }
    if count == 0 {
        return Err("holds no PEM certificate".into());
    }
    Ok(count)
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(5),
            prefetch: 256,
            ack: false,
            outgoing_capacity: 1024,
            connection_name: "heartbeat".into(),
            max_body: wire::DEFAULT_MAX_BODY,
            ca_file: None,
            keys: None,
            linger: MONITOR_LINGER,
        }
    }
}

impl LinkOptions {
    /// For a service: the broker pushes at most one ping ahead of the one
    /// being answered, so a service that hangs and resumes finds the rest
    /// still queued, where their expiration drops them, instead of a
    /// backlog of stale pings to answer as if fresh. With so little room,
    /// every ping is acknowledged at once, or the next would not come.
    /// It does not linger: see [`LinkOptions::linger`].
    pub fn service() -> Self {
        Self {
            prefetch: SERVICE_PREFETCH,
            ack: true,
            linger: Duration::ZERO,
            ..Self::default()
        }
    }
}

/// The default [`LinkOptions::linger`]: measured at 2,000 echoes a second,
/// 1 ms saved about as much as 5 or 10 (BENCHMARKS.md, one run each), and a
/// detector that looks every 100 ms cannot tell it.
const MONITOR_LINGER: Duration = Duration::from_millis(1);

/// Unacknowledged pings a service may hold: see [`LinkOptions::service`].
pub const SERVICE_PREFETCH: u16 = 2;

/// Where the link stands; watch it through [`Link::status`].
#[derive(Debug, Clone, PartialEq)]
pub enum LinkStatus {
    /// The first attempt is under way.
    Connecting,
    Connected,
    /// The last attempt failed or the connection dropped; the next try is scheduled.
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        error: String,
    },
    /// The broker stopped reading from us (it is short of memory or disk).
    Blocked {
        reason: String,
    },
    /// A failure retrying cannot fix, such as refused credentials. The link has stopped.
    Failed(Error),
    /// Closed on request.
    Closed,
}

impl LinkStatus {
    /// The state as a stable snake_case code, as the JSON lines, the status
    /// API and the metrics spell it.
    pub fn code(&self) -> &'static str {
        match self {
            LinkStatus::Connecting => "connecting",
            LinkStatus::Connected => "connected",
            LinkStatus::Reconnecting { .. } => "reconnecting",
            LinkStatus::Blocked { .. } => "blocked",
            LinkStatus::Failed(_) => "failed",
            LinkStatus::Closed => "closed",
        }
    }
}

/// Counters a dashboard can turn into rates. `received` counts every body
/// that arrived, `rejected` the ones that did not decode, `dropped` the
/// outgoing ones lost to a full queue or a missing connection.
#[derive(Debug, Default)]
pub struct LinkStats {
    published: AtomicU64,
    received: AtomicU64,
    rejected: AtomicU64,
    /// `rejected`, by [`RejectReason::index`].
    rejected_by: [AtomicU64; RejectReason::ALL.len()],
    dropped: AtomicU64,
    /// Bodies dropped for their signature (`unsigned`, `bad_signature`),
    /// by the service their body names: read for the operator only, never
    /// trusted (see [`Plumbing::accept`]). At most [`NAMED_SENDERS`] names;
    /// the rest are counted under [`OTHER_SENDERS`].
    unverified_by_service:
        std::sync::Mutex<std::collections::BTreeMap<(String, RejectReason), u64>>,
    /// The brokers the link is connected to (redacted), while it is: one,
    /// or on a link to each of several nodes ([`connect_each`]) every one
    /// that answers, in the order they connected.
    brokers: std::sync::Mutex<Vec<String>>,
}

impl LinkStats {
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
    /// Bodies rejected for this reason.
    pub fn rejected_for(&self, reason: RejectReason) -> u64 {
        self.rejected_by[reason.index()].load(Ordering::Relaxed)
    }
    /// Bodies dropped for their signature, by the service the body names
    /// and the reason, in name order: who runs without the key, or with
    /// another one. The names are what the bodies claim (anyone may claim
    /// any), so they say where to look, nothing more.
    pub fn unverified_by_service(&self) -> Vec<(String, RejectReason, u64)> {
        let map = self
            .unverified_by_service
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|((service, reason), count)| (service.clone(), *reason, *count))
            .collect()
    }
    /// Count one under `service`'s name; true when the name is new.
    fn count_unverified(&self, service: &str, reason: RejectReason) -> bool {
        let mut map = self
            .unverified_by_service
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let named = map.keys().filter(|(s, _)| s != OTHER_SENDERS).count();
        let known = map.keys().any(|(s, _)| s == service);
        let service = if known || named < NAMED_SENDERS {
            service
        } else {
            OTHER_SENDERS
        };
        let count = map.entry((service.to_owned(), reason)).or_default();
        *count += 1;
        !known && service != OTHER_SENDERS
    }
    /// Count a message rejected after the link handed it on: the monitor's
    /// engine counts replayed echoes here, so every rejection is in one place.
    pub fn count_rejected(&self, reason: RejectReason) {
        self.reject(reason);
    }
    fn reject(&self, reason: RejectReason) {
        Self::count(&self.rejected);
        Self::count(&self.rejected_by[reason.index()]);
    }
    /// Which of the configured brokers the link is connected to (its
    /// redacted URL), while it is connected to one; on a link to each of
    /// several nodes, those connected, comma-separated.
    pub fn broker_in_use(&self) -> Option<String> {
        let brokers = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        (!brokers.is_empty()).then(|| brokers.join(", "))
    }
    pub(crate) fn broker_connected(&self, broker: &str) {
        let mut brokers = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        if !brokers.iter().any(|b| b == broker) {
            brokers.push(broker.to_owned());
        }
    }
    pub(crate) fn broker_lost(&self, broker: &str) {
        let mut brokers = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        brokers.retain(|b| b != broker);
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// To every service, through the ping fanout exchange.
    Broadcast,
    /// To one queue, through the default exchange.
    Direct(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    route: Route,
    body: Vec<u8>,
    reply_to: Option<String>,
    /// After this the broker discards the message unread.
    expires_after: Option<Duration>,
    /// The body's MAC (`signing::MAC_HEADER`), when the link has a key.
    mac: Option<String>,
}

/// The sending half of a link. Cheap to clone; never blocks: when the link
/// cannot keep up, or is down, messages are dropped and counted, because a
/// heartbeat that arrives late is worse than none.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
    stats: Arc<LinkStats>,
    capacity: usize,
    keys: Option<Arc<Keys>>,
}

impl Publisher {
    /// Publish to every service. The broker drops the message unread after
    /// `expires_after`, so a service that was away does not answer stale pings.
    pub fn broadcast(
        &self,
        message: &Message,
        reply_to: &str,
        expires_after: Duration,
    ) -> Result<(), Error> {
        self.enqueue(self.outgoing(
            Route::Broadcast,
            message,
            Some(reply_to.to_owned()),
            Some(expires_after),
        ))
    }

    /// Whether the link has a key: it signs what it publishes, and every
    /// message its inbox yields was verified against the key.
    pub fn signs(&self) -> bool {
        self.keys.is_some()
    }

    /// Publish to one queue, typically a ping's `reply_to`.
    pub fn send_to(&self, queue: &str, message: &Message) -> Result<(), Error> {
        self.enqueue(self.outgoing(Route::Direct(queue.to_owned()), message, None, None))
    }

    /// Encoded, and signed over the exact bytes sent when there is a key.
    fn outgoing(
        &self,
        route: Route,
        message: &Message,
        reply_to: Option<String>,
        expires_after: Option<Duration>,
    ) -> Outgoing {
        let body = wire::encode(message);
        let mac = self.keys.as_ref().map(|keys| keys.sign(&body));
        Outgoing {
            route,
            body,
            reply_to,
            expires_after,
            mac,
        }
    }

    fn enqueue(&self, outgoing: Outgoing) -> Result<(), Error> {
        self.tx.try_send(outgoing).map_err(|e| {
            LinkStats::count(&self.stats.dropped);
            match e {
                mpsc::error::TrySendError::Full(_) => Error::Backpressure {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => Error::Closed,
            }
        })
    }
}

/// A decoded message, the queue its sender wants answers on, which of the
/// link's endpoints it arrived on, and when the link took it.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub message: Message,
    pub reply_to: Option<String>,
    /// The index, in the endpoints the link was opened with, of the queue it
    /// came from: always 0 on a link to one endpoint.
    pub to: usize,
    /// When the link took it from the broker, before any wait for company
    /// ([`LinkOptions::linger`]) and the hand-off to the inbox's reader: the
    /// time to measure a round trip by. One that arrived during a linger
    /// reads its end, up to the linger after it arrived.
    pub received_at: tokio::time::Instant,
}

/// The receiving half of a link: decoded messages only.
///
/// Messages cross from the link's task in batches (whatever arrived
/// together), so a busy monitor pays one hand-off per batch instead of one
/// per message: the per-message wake-ups were most of its cost. Read one at
/// a time with [`Inbox::recv`] or a batch at a time with [`Inbox::recv_batch`].
pub struct Inbox {
    rx: mpsc::Receiver<Vec<Incoming>>,
    /// The rest of a batch [`Inbox::recv`] has started on.
    pending: std::vec::IntoIter<Incoming>,
}

impl Inbox {
    /// The next message; `None` once the link has ended. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            if let Some(incoming) = self.pending.next() {
                return Some(incoming);
            }
            self.pending = self.rx.recv().await?.into_iter();
        }
    }

    /// Everything that has arrived together: at least one message, at most
    /// [`MAX_BATCH`]; `None` once the link has ended. Cancel-safe.
    pub async fn recv_batch(&mut self) -> Option<Vec<Incoming>> {
        if self.pending.len() > 0 {
            return Some(self.pending.by_ref().collect());
        }
        self.rx.recv().await
    }
}

/// The most deliveries taken from the broker's stream before they are
/// handed on: enough to amortise a hand-off, few enough that the first of
/// them is not held back long.
pub const MAX_BATCH: usize = 256;

/// Batches waiting for the inbox's reader before the link stops reading from
/// the broker (which then keeps the backlog in the queue, where it shows).
const INBOX_BATCHES: usize = 64;

/// Ends a link. Dropping it ends the link too, but without waiting for
/// queued messages to go out.
pub struct Closer {
    token: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Closer {
    /// Publish what is already queued, close the connection politely, and wait.
    pub async fn close(mut self) {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A connection to the broker for one [`Endpoint`]. Fields are public so the
/// halves can go to different tasks.
pub struct Link {
    pub publisher: Publisher,
    pub inbox: Inbox,
    pub status: watch::Receiver<LinkStatus>,
    pub stats: Arc<LinkStats>,
    pub closer: Closer,
}

/// The back-end side of a link's channels.
pub(crate) struct Plumbing {
    out_rx: mpsc::Receiver<Outgoing>,
    inbox_tx: mpsc::Sender<Vec<Incoming>>,
    status_tx: watch::Sender<LinkStatus>,
    stats: Arc<LinkStats>,
    token: CancellationToken,
    max_body: usize,
    keys: Option<Arc<Keys>>,
    bad_message_log: LogLimiter,
}

/// How many services' names [`LinkStats::unverified_by_service`] keeps
/// apart: bodies can claim any name, so the labels are bounded.
pub const NAMED_SENDERS: usize = 64;
/// The name under which the rest are counted: not a valid name (the rule
/// has no `*`), so it cannot be mistaken for a service's.
pub const OTHER_SENDERS: &str = "*";

/// Who an echo or a goodbye says it is from: `(service, instance)`.
fn claimed_sender(message: &Message) -> Option<(&str, &str)> {
    match message {
        Message::Echo(echo) => Some((&echo.service, &echo.instance)),
        Message::Goodbye(goodbye) => Some((&goodbye.service, &goodbye.instance)),
        Message::Ping(_) => None,
    }
}

/// One warning a second at most for bad messages.
const BAD_MESSAGE_LOG_PERIOD: Duration = Duration::from_secs(1);

impl Plumbing {
    fn set_status(&self, status: LinkStatus) {
        self.status_tx.send_replace(status);
    }

    /// Hand a batch of accepted messages to the inbox, waiting for room: a
    /// reader that falls behind slows the link's reading, not its judgement
    /// of what it reads. Not past a close, though: an owner that has stopped
    /// reading and waits in [`Closer::close`] must not wait on us forever.
    async fn deliver(&self, batch: Vec<Incoming>) {
        if batch.is_empty() {
            return;
        }
        tokio::select! {
            // The owner may have dropped the inbox; a publish-only link is fine.
            _ = self.inbox_tx.send(batch) => {}
            _ = self.token.cancelled() => {}
        }
    }

    /// Check a body's signature (when the link has keys) and decode it. A
    /// rejected body is counted and logged at a limited rate, and goes no
    /// further. `mac` is the `signing::MAC_HEADER` value; `queue` names
    /// where it came from in the log.
    fn accept(&self, body: &[u8], mac: Option<&[u8]>, queue: &str) -> Option<Message> {
        LinkStats::count(&self.stats.received);
        // The size limit first, so an oversized body costs no hashing.
        let verified = match &self.keys {
            Some(keys) if body.len() <= self.max_body => keys.verify(body, mac),
            _ => Ok(()),
        };
        if let Err(reason) = verified {
            self.stats.reject(reason);
            // Which service is misconfigured: the broker says nothing about
            // who published a message (RabbitMQ checks `user_id` only when
            // the publisher sets it, and ours do not), so the body is read,
            // for this line and a counter only, and then dropped like any
            // other unverified body: nothing in it reaches the detector.
            // Its names pass the name rule (no spaces, quotes or newlines),
            // so they are safe in a log line and a metric label.
            let decoded = (body.len() <= self.max_body)
                .then(|| wire::decode_within(body, self.max_body).ok())
                .flatten();
            match decoded.as_ref().and_then(claimed_sender) {
                Some((service, instance)) => {
                    let first = self.stats.count_unverified(service, reason);
                    let permit = self.bad_message_log.permit(std::time::Instant::now());
                    // The first from each name is always told; then at the usual rate.
                    if first || permit.is_some() {
                        let suppressed = permit.unwrap_or_default();
                        tracing::warn!(%queue, reason = reason.code(), claims_service = %service, claims_instance = %instance, suppressed, "dropped a message not signed with our key; the service it names runs without HEARTBEAT_KEY or with another key (the name is the body's claim, not verified)");
                    }
                }
                None => {
                    if let Some(suppressed) = self.bad_message_log.permit(std::time::Instant::now())
                    {
                        tracing::warn!(%queue, reason = reason.code(), bytes = body.len(), suppressed, "dropped a message not signed with our key");
                    }
                }
            }
            return None;
        }
        match wire::decode_within(body, self.max_body) {
            Ok(message) => Some(message),
            Err(error) => {
                self.stats.reject(error.reason());
                if let Some(suppressed) = self.bad_message_log.permit(std::time::Instant::now()) {
                    tracing::warn!(%queue, %error, bytes = body.len(), suppressed, "dropped a bad message");
                }
                None
            }
        }
    }
}

/// At most one warning per period, with the count of those held back since
/// the last one: a flood of garbage is counted in full (see [`LinkStats`])
/// but cannot fill a disk with log lines.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    period: Duration,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogLimiter {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when a line may be written now.
    pub(crate) fn permit(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|last| now.duration_since(last) < self.period) {
            *suppressed += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(suppressed))
    }
}

fn plumbing(options: &LinkOptions) -> (Link, Plumbing) {
    plumbing_with(options, Arc::new(LinkStats::default()))
}

/// [`plumbing`] counting into `stats`, which the links of a joint share.
fn plumbing_with(options: &LinkOptions, stats: Arc<LinkStats>) -> (Link, Plumbing) {
    let (out_tx, out_rx) = mpsc::channel(options.outgoing_capacity.max(1));
    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_BATCHES);
    let (status_tx, status_rx) = watch::channel(LinkStatus::Connecting);
    let token = CancellationToken::new();
    let keys = options.keys.clone().map(Arc::new);
    let link = Link {
        publisher: Publisher {
            tx: out_tx,
            stats: stats.clone(),
            capacity: options.outgoing_capacity,
            keys: keys.clone(),
        },
        inbox: Inbox {
            rx: inbox_rx,
            pending: Vec::new().into_iter(),
        },
        status: status_rx,
        stats: stats.clone(),
        closer: Closer {
            token: token.clone(),
            task: None,
        },
    };
    let plumbing = Plumbing {
        out_rx,
        inbox_tx,
        status_tx,
        stats,
        token,
        max_body: options.max_body,
        keys,
        bad_message_log: LogLimiter::new(BAD_MESSAGE_LOG_PERIOD),
    };
    (link, plumbing)
}

/// Open a link to a real broker, or to the first of several that answers
/// (a `&BrokerUrl` or `&BrokerUrls`). Returns at once; the connection is
/// made, and remade after every loss (to the next broker in order, when
/// there are several), in the background. Watch `status` to know when it is
/// up, and [`LinkStats::broker_in_use`] for which. Must be called inside a
/// tokio runtime.
pub fn connect(urls: impl Into<BrokerUrls>, endpoint: Endpoint, options: LinkOptions) -> Link {
    connect_many(urls, vec![endpoint], options)
}

/// Like [`connect`], for many endpoints on one connection: every queue is
/// declared and consumed on it, and [`Incoming::to`] tells them apart. One
/// connection for a whole fleet keeps a load test from costing the broker
/// (and the machine) a connection per service. `endpoints` must not be empty.
pub fn connect_many(
    urls: impl Into<BrokerUrls>,
    endpoints: Vec<Endpoint>,
    options: LinkOptions,
) -> Link {
    let (mut link, plumbing) = plumbing(&options);
    let task = tokio::spawn(amqp::run(urls.into(), endpoints, options, plumbing));
    link.closer.task = Some(task);
    link
}

/// Like [`connect`], but to every one of several brokers at once, for nodes
/// that are *not* one cluster (a primary and a standby, each on its own):
/// one connection to each, each reconnecting to its own node only. What is
/// published goes out on every connection that is up (a ping reaches the
/// services on each node), and what arrives on any of them comes in on the
/// one inbox, so a participant is heard wherever it connects. The link is
/// `Connected` while at least one node is; [`LinkStats`] counts for them
/// all. With a single URL this is [`connect`]. On one cluster use
/// [`connect`]: the cluster routes between its nodes, and the same
/// exclusive queue cannot be declared on two of them.
pub fn connect_each(urls: impl Into<BrokerUrls>, endpoint: Endpoint, options: LinkOptions) -> Link {
    let urls = urls.into();
    if urls.len() == 1 {
        return connect(urls, endpoint, options);
    }
    let (mut link, plumbing) = plumbing(&options);
    let task = tokio::spawn(joint::run(urls, endpoint, options, plumbing));
    link.closer.task = Some(task);
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_limiter_lets_one_line_a_period_through_and_counts_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(1));
        let t0 = std::time::Instant::now();
        assert_eq!(limiter.permit(t0), Some(0));
        for i in 1..=500 {
            assert_eq!(limiter.permit(t0 + Duration::from_micros(i)), None);
        }
        assert_eq!(limiter.permit(t0 + Duration::from_secs(1)), Some(500));
        assert_eq!(limiter.permit(t0 + Duration::from_millis(1500)), None);
    }
}
