//! The RabbitMQ back end. The only module that knows lapin exists.
//!
//! Recovery is ours, not lapin's (its auto-recovery is marked experimental):
//! on any loss we drop the whole connection, back off, reconnect, redeclare
//! the topology and resubscribe. Declarations are idempotent, so this is
//! also how the topology comes back after a broker restart. With several
//! brokers, each new attempt after a failure or a loss goes to the next
//! one in order, round and round, with the same backoff.

use std::pin::Pin;
use std::time::Duration;

use futures_util::future;
use futures_util::stream::{self, SelectAll};
use futures_util::{FutureExt, Stream, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind, Event, ExchangeKind,
};
use tracing::{debug, info, warn};

use super::group::{
    GroupOptions, GroupPlumbing, Leadership, group_exchange, leader_queue, member_queue,
};
use super::{Incoming, LinkOptions, LinkStats, LinkStatus, MAX_BATCH, Outgoing, Plumbing, Route};
use crate::backoff::Backoff;
use crate::signing::MAC_HEADER;
use crate::topology::{Role, ping_exchange};
use crate::{BrokerUrl, BrokerUrls, Endpoint, Error};

/// A TCP connect to an address that never answers must not hang the link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A polite close that gets no answer is abandoned after this.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// RabbitMQ's default of 60 s would take minutes to notice a dead network path.
const DEFAULT_HEARTBEAT_SECS: u16 = 10;
/// A queue held by another connection may be our own previous run's, still
/// closing (a restart race): retried this long before it is a duplicate.
const LOCKED_GRACE: Duration = Duration::from_secs(3);
/// The same, after a connection of our own ended with its queues declared:
/// the broker releases them when it has closed that connection.
const OWN_LOCK_GRACE: Duration = Duration::from_secs(30);
/// RabbitMQ's own default, asked for out loud: lapin sizes its buffers (32
/// frames each way) from the URL's value up front, and when it only learns
/// the size from the broker it grows them by writing 8 MiB of zeros, which
/// all stays resident. Asked for, the buffers are allocated untouched and a
/// service's RSS goes from about 14.5 MB to 7 MB (BENCHMARKS.md).
const DEFAULT_FRAME_MAX: u32 = 131_072;
/// Non-persistent: a heartbeat message has no value after a broker restart.
const TRANSIENT: u8 = 1;

pub(super) async fn run(
    urls: BrokerUrls,
    endpoints: Vec<Endpoint>,
    options: LinkOptions,
    mut p: Plumbing,
) {
    keep_big_buffers_in_their_own_mappings();
    let mut backoff = Backoff::new(options.reconnect_min, options.reconnect_max);
    // Which broker this attempt goes to.
    let mut at = 0;
    // Since when our queue has been held by another connection, attempt after attempt.
    let mut locked_since: Option<std::time::Instant> = None;
    // Whether an earlier connection of ours ended after declaring queues (a
    // setup that failed half-way, a lost session): the broker may still
    // hold those queues for it, and a lock is then our own, not another
    // process's.
    let mut ours_may_linger = false;
    let connect_to: Vec<String> = urls
        .as_slice()
        .iter()
        .map(|url| with_defaults(url.expose_secret()))
        .collect();
    loop {
        let url = &urls.as_slice()[at];
        let connect_to = &connect_to[at];
        let opened = tokio::select! {
            biased;
            _ = p.token.cancelled() => break,
            // Each round trip has its deadline (`within`), not the whole
            // setup: a big fleet's declarations take as long as they take.
            opened = Session::open(connect_to, &endpoints, &options) => opened,
        };
        let error = match opened {
            Err(error) => match fatal(&error, url, options.ca_file.is_some())
                .or_else(|| held_elsewhere(&error, &endpoints, &mut locked_since, ours_may_linger))
            {
                Some(fatal) => {
                    warn!(%fatal, "giving up on the broker");
                    p.set_status(LinkStatus::Failed(fatal));
                    return;
                }
                None => {
                    if locked(&error).is_none() {
                        ours_may_linger = true;
                    }
                    let why = describe(&error, &endpoints);
                    match url.connect_hint() {
                        Some(hint) => format!("{why}; {hint}"),
                        None => why,
                    }
                }
            },
            Ok(mut session) => {
                backoff.reset();
                locked_since = None;
                info!(broker = %url, queue = %endpoints[0].queue, queues = endpoints.len(), "connected");
                p.stats.broker_connected(url.redacted());
                p.set_status(LinkStatus::Connected);
                let served = session.serve(&mut p).await;
                p.stats.broker_lost(url.redacted());
                match served {
                    Ok(()) => {
                        session.shut_down(&mut p).await;
                        break;
                    }
                    Err(error) => match refused_publish(&error, url) {
                        // Reconnecting cannot grant a permission: it only
                        // repeated the refusal at every ping or echo.
                        Some(fatal) => {
                            warn!(%fatal, "giving up on the broker");
                            p.set_status(LinkStatus::Failed(fatal));
                            return;
                        }
                        None => {
                            ours_may_linger = true;
                            describe(&error, &endpoints)
                        }
                    },
                }
            }
        };
        let retry_in = backoff.next_delay();
        let attempt = backoff.attempt();
        at = (at + 1) % urls.len();
        if urls.len() > 1 {
            let next = &urls.as_slice()[at];
            warn!(
                "broker at {url} unreachable: {error}; trying {next} in {retry_in:.1?} (attempt {attempt})"
            );
        } else {
            warn!(
                "broker at {url} unreachable: {error}; retrying in {retry_in:.1?} (attempt {attempt})"
            );
        }
        p.set_status(LinkStatus::Reconnecting {
            attempt,
            retry_in,
            error,
        });
        if !wait_dropping_outgoing(&mut p, retry_in).await {
            break;
        }
    }
    p.set_status(LinkStatus::Closed);
}

/// lapin gives each connection two buffers of 32 frames (4 MiB at our
/// `frame_max`), resident once traffic has gone round them. glibc maps
/// such blocks on their own and unmaps them when freed, but the first
/// unmapped block raises its threshold to that size, so from then on every
/// connection's buffers come from the heap and stay there after it closes:
/// a monitor's RSS climbed at reconnects from 15 to 33 MiB over the first
/// twenty, then stayed (BENCHMARKS.md, "Memory across reconnects"). Setting
/// the threshold, at glibc's own starting value, turns that raise off;
/// with it the same thirty reconnects left RSS at 12-13 MiB. Process-wide
/// and harmless to repeat: every link calls it.
fn keep_big_buffers_in_their_own_mappings() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets one of glibc's tunables; no pointer is involved.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Sleep before the next attempt. Whatever is published meanwhile is
/// dropped: a queued ping would be stale by the time it went out.
/// Returns false if the link was closed while waiting.
async fn wait_dropping_outgoing(p: &mut Plumbing, delay: Duration) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            _ = p.token.cancelled() => return false,
            Some(_) = p.out_rx.recv() => LinkStats::count(&p.stats.dropped),
        }
    }
}

/// Every queue's deliveries in one stream, tagged with the endpoint's index.
/// A consumer's stream ends with a `None`, so that losing one queue's
/// consumer is noticed instead of silently shrinking the merge.
type Deliveries =
    SelectAll<Pin<Box<dyn Stream<Item = (usize, Option<lapin::Result<Delivery>>)> + Send + Sync>>>;

/// The connection's events (blocked, unblocked, errors).
type EventStream = Pin<Box<dyn Stream<Item = Event> + Send + Sync>>;

struct Session {
    connection: Connection,
    channel: Channel,
    deliveries: Deliveries,
    events: EventStream,
    queues: Vec<String>,
    /// Where a broadcast goes: the first endpoint's scope's ping exchange
    /// (a monitor's link has one endpoint).
    ping_exchange: String,
    /// `None` on a link consumed without acks.
    acks: Option<PendingAcks>,
    /// See [`LinkOptions::linger`].
    linger: Duration,
    /// When the last batch was handed on: a stream of messages is dense
    /// enough to linger on while batches follow each other within `linger`.
    last_batch: Option<tokio::time::Instant>,
}

/// Acknowledgements not yet sent. One `basic.ack` with `multiple` settles
/// every delivery up to a tag, so a batch costs one frame, not one each.
///
/// Every delivery is acknowledged, a bad one too: it has been counted and
/// logged here, and a reject would only differ for a dead-letter exchange
/// nobody declares. Acking everything is also what makes `multiple` safe:
/// a reject of a tag a `multiple` ack already settled would close the
/// channel.
#[derive(Debug, Default)]
struct PendingAcks {
    /// Tags are per channel and increase in the order the broker sends.
    highest: Option<u64>,
    /// The highest tag already acknowledged: a `multiple` ack has settled
    /// everything below it, including deliveries that the merged stream of
    /// several consumers yields out of order (acking one of those again
    /// would close the channel).
    settled: u64,
}

impl PendingAcks {
    fn add(&mut self, tag: u64) {
        if tag > self.settled {
            self.highest = Some(self.highest.map_or(tag, |h| h.max(tag)));
        }
    }

    /// The tag to acknowledge with `multiple` now, if any is unsettled.
    fn take(&mut self) -> Option<u64> {
        let tag = self.highest.take()?;
        self.settled = tag;
        Some(tag)
    }
}

impl Session {
    async fn open(url: &str, endpoints: &[Endpoint], options: &LinkOptions) -> lapin::Result<Self> {
        let connection = within(open_connection(url, options)).await?;
        match Self::set_up(connection, endpoints, options).await {
            Ok(session) => Ok(session),
            Err((connection, error)) => {
                // Our exclusive queues live as long as this connection:
                // closed now, not whenever the broker notices, so that the
                // retry does not find them held and take itself for a
                // second process.
                let close = connection.close(200, "setup failed".into());
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
                Err(error)
            }
        }
    }

    /// Declare, bind and consume on `connection`; on failure, the connection
    /// back with the error, to be closed.
    async fn set_up(
        connection: Connection,
        endpoints: &[Endpoint],
        options: &LinkOptions,
    ) -> Result<Self, (Connection, lapin::Error)> {
        match Self::declare(&connection, endpoints, options).await {
            Ok((events, channel, deliveries)) => Ok(Self {
                connection,
                channel,
                deliveries,
                events,
                queues: endpoints.iter().map(|e| e.queue.clone()).collect(),
                ping_exchange: ping_exchange(&endpoints[0].scope),
                acks: options.ack.then(PendingAcks::default),
                linger: options.linger,
                last_batch: None,
            }),
            Err(error) => Err((connection, error)),
        }
    }

    async fn declare(
        connection: &Connection,
        endpoints: &[Endpoint],
        options: &LinkOptions,
    ) -> lapin::Result<(EventStream, Channel, Deliveries)> {
        let events: EventStream = Box::pin(connection.events_listener());
        let channel = within(connection.create_channel()).await?;
        // Each scope's exchange once (a fleet's endpoints share one, as a rule).
        let mut exchanges: Vec<String> =
            endpoints.iter().map(|e| ping_exchange(&e.scope)).collect();
        exchanges.dedup();
        for exchange in &exchanges {
            within(channel.exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ))
            .await?;
        }
        // Per consumer, so each queue of a fleet gets the same allowance.
        within(channel.basic_qos(options.prefetch, BasicQosOptions::default())).await?;
        let mut deliveries = SelectAll::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
            // Exclusive: the queue lives exactly as long as this connection, so a
            // killed process leaves nothing behind, and a second process claiming
            // the same identity is refused instead of stealing half the pings.
            within(channel.queue_declare(
                endpoint.queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                queue_arguments(endpoint.role),
            ))
            .await?;
            if endpoint.role == Role::Service {
                within(channel.queue_bind(
                    endpoint.queue.as_str().into(),
                    ping_exchange(&endpoint.scope).as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ))
                .await?;
            }
            // Consumer tags must be unique on a channel.
            let tag = if index == 0 {
                options.connection_name.clone()
            } else {
                format!("{} #{index}", options.connection_name)
            };
            let consumer = within(channel.basic_consume(
                endpoint.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions {
                    no_ack: !options.ack,
                    ..Default::default()
                },
                FieldTable::default(),
            ))
            .await?;
            let tagged = consumer
                .map(move |delivery| (index, Some(delivery)))
                .chain(stream::once(future::ready((index, None))));
            deliveries.push(Box::pin(tagged) as Pin<Box<dyn Stream<Item = _> + Send + Sync>>);
        }
        Ok((events, channel, deliveries))
    }

    /// Pump messages both ways until the link is closed (`Ok`) or lost (`Err`).
    async fn serve(&mut self, p: &mut Plumbing) -> lapin::Result<()> {
        loop {
            tokio::select! {
                biased;
                _ = p.token.cancelled() => return Ok(()),
                event = self.events.next() => match event {
                    Some(Event::ConnectionBlocked(reason)) => {
                        warn!(%reason, "the broker blocked this connection");
                        p.set_status(LinkStatus::Blocked { reason });
                    }
                    Some(Event::ConnectionUnblocked) => {
                        info!("the broker unblocked this connection");
                        p.set_status(LinkStatus::Connected);
                    }
                    Some(Event::Error(error)) => return Err(error),
                    Some(_) => {}
                    None => return Err(lost("the connection's event stream ended")),
                },
                delivery = self.deliveries.next() => {
                    self.take_batch(delivery, p).await?;
                    if let Some(tag) = self.acks.as_mut().and_then(PendingAcks::take) {
                        self.channel.basic_ack(tag, BasicAckOptions { multiple: true }).await?;
                    }
                }
                Some(outgoing) = p.out_rx.recv() => self.publish(outgoing, &p.stats).await?,
            }
        }
    }

    /// Take `first` and whatever else has already arrived (up to
    /// [`MAX_BATCH`]), and, while messages come densely, whatever arrives
    /// within [`LinkOptions::linger`] more; hand it on to the inbox as one batch.
    async fn take_batch(
        &mut self,
        first: Option<(usize, Option<lapin::Result<Delivery>>)>,
        p: &mut Plumbing,
    ) -> lapin::Result<()> {
        let mut batch = Vec::new();
        let mut next = first;
        let mut taken = 0;
        // Dense: the last batch went on less than a linger ago. The first
        // message after a quiet spell is never held.
        let mut may_linger =
            !self.linger.is_zero() && self.last_batch.is_some_and(|at| at.elapsed() < self.linger);
        let mut taken_at = tokio::time::Instant::now();
        let outcome = loop {
            match next {
                Some((to, Some(Ok(delivery)))) => {
                    // Without keys the MAC is never read (ARCHITECTURE's invariant).
                    let mac = p
                        .keys
                        .as_ref()
                        .and_then(|_| mac_header(&delivery.properties));
                    if let Some(message) = p.accept(&delivery.data, mac, &self.queues[to]) {
                        batch.push(Incoming {
                            message,
                            reply_to: delivery
                                .properties
                                .reply_to()
                                .as_ref()
                                .map(ToString::to_string),
                            to,
                            received_at: taken_at,
                        });
                    }
                    if let Some(acks) = &mut self.acks {
                        acks.add(delivery.delivery_tag);
                    }
                }
                Some((_, Some(Err(error)))) => break Err(error),
                Some((_, None)) | None => break Err(lost("the broker cancelled our consumer")),
            }
            taken += 1;
            if taken == MAX_BATCH {
                break Ok(());
            }
            // What is already here; then, once, what comes within the
            // linger. `now_or_never` leaves the merged stream a waker that
            // wakes nobody, which is the point: what lapin receives during
            // the linger is queued for us without waking a thread.
            next = match self.deliveries.next().now_or_never() {
                Some(delivery) => delivery,
                None if may_linger => {
                    may_linger = false;
                    if let Err(error) = self.linger(p).await {
                        break Err(error);
                    }
                    taken_at = tokio::time::Instant::now();
                    match self.deliveries.next().now_or_never() {
                        Some(delivery) => delivery,
                        None => break Ok(()),
                    }
                }
                None => break Ok(()),
            };
        };
        // What arrived before a failure is handed on all the same: a
        // goodbye in it is still a goodbye.
        p.deliver(batch).await;
        self.last_batch = Some(tokio::time::Instant::now());
        outcome
    }

    /// Wait out [`LinkOptions::linger`], publishing whatever is queued
    /// meanwhile (a ping must not wait behind a batch: its round trip is
    /// timed from when it was queued), and ending early on a close.
    async fn linger(&self, p: &mut Plumbing) -> lapin::Result<()> {
        let end = tokio::time::sleep(self.linger);
        tokio::pin!(end);
        loop {
            tokio::select! {
                biased;
                _ = p.token.cancelled() => return Ok(()),
                _ = &mut end => return Ok(()),
                Some(outgoing) = p.out_rx.recv() => self.publish(outgoing, &p.stats).await?,
            }
        }
    }

    async fn publish(&self, outgoing: Outgoing, stats: &LinkStats) -> lapin::Result<()> {
        let (exchange, routing_key) = match &outgoing.route {
            Route::Broadcast => (self.ping_exchange.as_str(), ""),
            Route::Direct(queue) => ("", queue.as_str()),
        };
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(TRANSIENT);
        if let Some(reply_to) = outgoing.reply_to {
            properties = properties.with_reply_to(reply_to.into());
        }
        if let Some(ttl) = outgoing.expires_after {
            properties = properties.with_expiration(ttl.as_millis().max(1).to_string().into());
        }
        if let Some(mac) = outgoing.mac {
            let mut headers = FieldTable::default();
            headers.insert(MAC_HEADER.into(), AMQPValue::LongString(mac.into()));
            properties = properties.with_headers(headers);
        }
        // No publisher confirms: a lost heartbeat is handled by the timeout,
        // and waiting for a confirm per ping would add a round trip per ping.
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &outgoing.body,
                properties,
            )
            .await?;
        // Without confirm mode this resolves at once; there is nothing to wait for.
        drop(confirm);
        LinkStats::count(&stats.published);
        Ok(())
    }

    /// Send what is still queued (a goodbye, typically), then close politely.
    async fn shut_down(self, p: &mut Plumbing) {
        while let Ok(outgoing) = p.out_rx.try_recv() {
            if let Err(error) = self.publish(outgoing, &p.stats).await {
                debug!(%error, "could not flush a message while closing");
                break;
            }
        }
        let close = self.connection.close(200, "closing".into());
        if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
            debug!("the broker did not acknowledge the close in time");
        }
    }
}

/// One round trip of a link's setup, within [`CONNECT_TIMEOUT`]: each
/// step has the deadline, not the whole setup, so a fleet's connection
/// declaring hundreds of queues on a busy broker is not given up half-way
/// (which left its queues held by the abandoned connection, and the retry
/// refused), while a broker that stops answering is still noticed.
async fn within<T>(step: impl Future<Output = lapin::Result<T>>) -> lapin::Result<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, step)
        .await
        .unwrap_or_else(|_| Err(lost(&format!("no answer within {CONNECT_TIMEOUT:?}"))))
}

/// A connection with the link's name and, for `amqps://`, its CA file.
async fn open_connection(url: &str, options: &LinkOptions) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_connection_name(options.connection_name.clone().into());
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: match &options.ca_file {
            Some(path) => Some(std::fs::read_to_string(path)?),
            None => None,
        },
    };
    Connection::connect_with_config(url, properties, tls, lapin::runtime::default_runtime()?).await
}

/// A service's queue holds at most this many messages; past it the
/// oldest are dropped. A ping is worth something for one interval, and a
/// service reads its queue as fast as pings come, so a real queue holds a
/// few at most; without a bound, 20,000 pings published in a burst stood
/// in front of the real ones for seconds after the burst ended, and
/// services looked DOWN to every monitor. Bounded, a burst leaves at most
/// this many behind it (milliseconds of reading).
pub const SERVICE_QUEUE_MAX_LENGTH: i64 = 64;
/// And at most this many bytes (64 bodies at the 64 KiB limit would be 4 MiB).
pub const SERVICE_QUEUE_MAX_BYTES: i64 = 256 * 1024;

/// `x-max-length`, `x-max-length-bytes` and `x-overflow` = `drop-head`
/// (RabbitMQ's default overflow, said out loud) for a service's queue;
/// none for a monitor's, whose one queue takes an echo per service per interval.
fn queue_arguments(role: Role) -> FieldTable {
    let mut arguments = FieldTable::default();
    if role == Role::Service {
        arguments.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(SERVICE_QUEUE_MAX_LENGTH),
        );
        arguments.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(SERVICE_QUEUE_MAX_BYTES),
        );
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
    }
    arguments
}

/// The `x-heartbeat-mac` header's bytes: a long string as most clients
/// write a `str` header, or a byte array.
fn mac_header(properties: &BasicProperties) -> Option<&[u8]> {
    match properties.headers().as_ref()?.inner().get(MAC_HEADER)? {
        AMQPValue::LongString(text) => Some(text.as_bytes()),
        AMQPValue::ByteArray(bytes) => Some(bytes.as_slice()),
        _ => None,
    }
}

fn lost(why: &str) -> lapin::Error {
    lapin::Error::from(std::io::Error::other(why.to_owned()))
}

/// Errors no retry can fix. Everything else is worth another attempt.
fn fatal(error: &lapin::Error, url: &BrokerUrl, ca_file_set: bool) -> Option<Error> {
    if let Some(tls) = tls_failure(error) {
        return Some(Error::Tls {
            url: url.redacted().to_owned(),
            detail: explain_tls(tls, ca_file_set),
        });
    }
    let ErrorKind::ProtocolError(amqp) = error.kind() else {
        return None;
    };
    let detail = amqp.get_message().to_string();
    let url = url.redacted().to_owned();
    match amqp.kind() {
        // RabbitMQ says "Login was refused" for a bad user or password;
        // anything else refused is a permission the user lacks.
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            if detail.contains("Login was refused") =>
        {
            Some(Error::AccessRefused { url, detail })
        }
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
        | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
            Some(Error::PermissionDenied { url, detail })
        }
        _ => None,
    }
}

/// A session that was set up and then refused: what it does once connected
/// that needs a permission is publishing (a ping to `heartbeat.ping`, an
/// echo or a goodbye through `amq.default`), so the refusal names that
/// permission. The broker's own message says which exchange but not which
/// kind of access.
fn refused_publish(error: &lapin::Error, url: &BrokerUrl) -> Option<Error> {
    let ErrorKind::ProtocolError(amqp) = error.kind() else {
        return None;
    };
    matches!(
        amqp.kind(),
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
    )
    .then(|| Error::PermissionDenied {
        url: url.redacted().to_owned(),
        detail: format!(
            "{}; publishing there needs the write permission",
            amqp.get_message()
        ),
    })
}

/// The TLS library's own verdict, when that is what failed. A network
/// failure during the handshake is an I/O error of its own, not this, and is
/// retried as usual.
fn tls_failure(error: &lapin::Error) -> Option<&rustls::Error> {
    let ErrorKind::IOError(io) = error.kind() else {
        return None;
    };
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

fn explain_tls(error: &rustls::Error, ca_file_set: bool) -> String {
    use rustls::{CertificateError, Error as E};
    let hint = match error {
        E::InvalidCertificate(CertificateError::UnknownIssuer) if ca_file_set => {
            "; is broker.ca_file the CA that signed the broker's certificate?"
        }
        E::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "; if the broker uses a private CA, set broker.ca_file"
        }
        E::InvalidCertificate(CertificateError::NotValidForName)
        | E::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "; use the host name the certificate names"
        }
        E::InvalidMessage(_) => "; is this port TLS? amqps:// usually listens on 5671",
        _ => "",
    };
    format!("{error}{hint}")
}

/// Our exclusive queue held by another connection for longer than a
/// restart takes: another process runs this identity, and no retry will
/// change that. Within the grace, `None`: retried as usual.
fn held_elsewhere(
    error: &lapin::Error,
    endpoints: &[Endpoint],
    since: &mut Option<std::time::Instant>,
    ours_may_linger: bool,
) -> Option<Error> {
    let Some(message) = locked(error) else {
        *since = None;
        return None;
    };
    let first = *since.get_or_insert_with(std::time::Instant::now);
    // Our own earlier connection's queues go when the broker has closed it,
    // which a busy broker takes its time over: waited for longer, and never
    // blamed on another process.
    let grace = if ours_may_linger {
        OWN_LOCK_GRACE
    } else {
        LOCKED_GRACE
    };
    if first.elapsed() < grace {
        return None;
    }
    // The broker names the queue (`... locked queue 'NAME' in vhost ...`);
    // with one endpoint we know it already.
    let queue = match endpoints {
        [one] => one.queue.clone(),
        _ => message
            .split('\'')
            .nth(1)
            .unwrap_or("one of its queues")
            .to_owned(),
    };
    let owner = crate::topology::owner_of(&queue);
    Some(if ours_may_linger {
        Error::OwnQueueHeld {
            owner,
            queue,
            waited: grace,
        }
    } else {
        Error::AlreadyRunning { owner, queue }
    })
}

/// The broker's message when `error` is RESOURCE_LOCKED: an exclusive
/// queue of ours is held by another connection.
fn locked(error: &lapin::Error) -> Option<String> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp)
            if matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)
            ) =>
        {
            Some(amqp.get_message().to_string())
        }
        _ => None,
    }
}

/// A one-line, actionable account of a retryable error.
fn describe(error: &lapin::Error, endpoints: &[Endpoint]) -> String {
    if let ErrorKind::ProtocolError(amqp) = error.kind()
        && matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)
        )
    {
        // The broker names the queue; with one endpoint we know it already.
        let queue = match endpoints {
            [one] => format!("queue {}", one.queue),
            _ => format!("a queue ({})", amqp.get_message()),
        };
        return format!(
            "{queue} is held by another connection; is another process running with the same name and instance?"
        );
    }
    error.to_string()
}

/// Add `heartbeat=` and `frame_max=` to the query unless it sets its own.
/// Only the query is looked at (a password may say anything), and a
/// fragment stays last, where it cannot swallow what is added.
fn with_defaults(url: &str) -> String {
    let (url, fragment) = match url.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (url, None),
    };
    let mut url = url.to_owned();
    for (option, value) in [
        ("heartbeat", DEFAULT_HEARTBEAT_SECS.to_string()),
        ("frame_max", DEFAULT_FRAME_MAX.to_string()),
    ] {
        let query = url.split_once('?').map_or("", |(_, query)| query);
        let given = query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(option));
        if !given {
            let separator = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{separator}{option}={value}");
        }
    }
    match fragment {
        Some(fragment) => format!("{url}#{fragment}"),
        None => url,
    }
}

/// A monitor group's link (see `transport::group`): the reconnect loop
/// around a [`GroupSession`], to the next broker after each failure.
pub(super) async fn run_group(urls: BrokerUrls, options: GroupOptions, mut p: GroupPlumbing) {
    keep_big_buffers_in_their_own_mappings();
    let mut backoff = Backoff::new(options.link.reconnect_min, options.link.reconnect_max);
    let mut at = 0;
    let connect_to: Vec<String> = urls
        .as_slice()
        .iter()
        .map(|url| with_defaults(url.expose_secret()))
        .collect();
    let bad_bodies = super::LogLimiter::new(super::BAD_MESSAGE_LOG_PERIOD);
    loop {
        let url = &urls.as_slice()[at];
        let opened = tokio::select! {
            biased;
            _ = p.token.cancelled() => break,
            opened = tokio::time::timeout(CONNECT_TIMEOUT, GroupSession::open(&connect_to[at], &options)) => opened,
        };
        let error = match opened {
            Err(_elapsed) => format!("no answer within {CONNECT_TIMEOUT:?}"),
            Ok(Err(error)) => match fatal(&error, url, options.link.ca_file.is_some()) {
                Some(fatal) => {
                    warn!(%fatal, "giving up on the monitor group's link");
                    p.status.send_replace(LinkStatus::Failed(fatal));
                    p.leadership.send_replace(Leadership::Standby);
                    return;
                }
                None => error.to_string(),
            },
            Ok(Ok(mut session)) => {
                backoff.reset();
                info!(broker = %url, group = %options.group, member = %options.member, "joined the monitor group");
                p.status.send_replace(LinkStatus::Connected);
                let served = session.serve(&mut p, &options, &bad_bodies).await;
                p.leadership.send_replace(Leadership::Standby);
                match served {
                    Ok(()) => {
                        let close = session.connection.close(200, "closing".into());
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
                        break;
                    }
                    Err(error) => error.to_string(),
                }
            }
        };
        p.leadership.send_replace(Leadership::Standby);
        let retry_in = backoff.next_delay();
        let attempt = backoff.attempt();
        at = (at + 1) % urls.len();
        warn!(group = %options.group, "monitor group link to {url} lost: {error}; retrying in {retry_in:.1?} (attempt {attempt})");
        p.status.send_replace(LinkStatus::Reconnecting {
            attempt,
            retry_in,
            error,
        });
        let sleep = tokio::time::sleep(retry_in);
        tokio::pin!(sleep);
        let cancelled = loop {
            tokio::select! {
                _ = &mut sleep => break false,
                _ = p.token.cancelled() => break true,
                Some(_) = p.out_rx.recv() => {}
            }
        };
        if cancelled {
            break;
        }
    }
    p.leadership.send_replace(Leadership::Standby);
    p.status.send_replace(LinkStatus::Closed);
}

/// One connection of a group member: its queue on the group's exchange,
/// and the channel that holds (or keeps trying for) the leader's queue.
struct GroupSession {
    connection: Connection,
    channel: Channel,
    deliveries: lapin::Consumer,
    events: Pin<Box<dyn Stream<Item = Event> + Send + Sync>>,
    /// The channel that declared the leader's queue, while we hold it.
    claim: Option<Channel>,
    exchange: String,
    leader_queue: String,
}

impl GroupSession {
    async fn open(url: &str, options: &GroupOptions) -> lapin::Result<Self> {
        let connection = open_connection(url, &options.link).await?;
        let events = Box::pin(connection.events_listener());
        let channel = connection.create_channel().await?;
        let exchange = group_exchange(&options.scope, &options.group);
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let queue = member_queue(&options.scope, &options.group, &options.member);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                options.link.connection_name.as_str().into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            connection,
            channel,
            deliveries,
            events,
            claim: None,
            exchange,
            leader_queue: leader_queue(&options.scope, &options.group),
        })
    }

    async fn serve(
        &mut self,
        p: &mut GroupPlumbing,
        options: &GroupOptions,
        bad_bodies: &super::LogLimiter,
    ) -> lapin::Result<()> {
        let mut claims = tokio::time::interval(options.claim_every);
        claims.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A claim that gets no answer within this is a connection lost.
        let answer_within = options.claim_every.max(Duration::from_secs(1)) * 2;
        loop {
            tokio::select! {
                biased;
                _ = p.token.cancelled() => return Ok(()),
                event = self.events.next() => match event {
                    // A standby's refused claim: the broker closed that one
                    // channel (`claim` saw the refusal), not the connection.
                    // Taken for a lost link, it made every standby reconnect
                    // at each claim, dropping what the group said meanwhile.
                    Some(Event::Error(error)) if locked(&error).is_some() => {}
                    Some(Event::Error(error)) => return Err(error),
                    Some(_) => {}
                    None => return Err(lost("the connection's event stream ended")),
                },
                _ = claims.tick() => {
                    match tokio::time::timeout(answer_within, self.claim(p, &options.group)).await {
                        Ok(outcome) => outcome?,
                        Err(_) => return Err(lost("the broker did not answer a leadership claim")),
                    }
                }
                delivery = self.deliveries.next() => match delivery {
                    Some(Ok(delivery)) => {
                        let mac = p.keys.as_ref().and_then(|_| mac_header(&delivery.properties));
                        let verified = if delivery.data.len() > options.link.max_body {
                            Err("too large")
                        } else {
                            match &p.keys {
                                Some(keys) => keys.verify(&delivery.data, mac).map_err(|r| r.code()),
                                None => Ok(()),
                            }
                        };
                        match verified {
                            // A reader that falls behind loses bodies, not the link.
                            Ok(()) => { let _ = p.inbox_tx.try_send(delivery.data); }
                            Err(why) => {
                                if let Some(suppressed) = bad_bodies.permit(std::time::Instant::now()) {
                                    warn!(group = %options.group, why, suppressed, "dropped a group message");
                                }
                            }
                        }
                    }
                    Some(Err(error)) => return Err(error),
                    None => return Err(lost("the broker cancelled our group consumer")),
                },
                Some(signed) = p.out_rx.recv() => {
                    let mut properties = BasicProperties::default()
                        .with_content_type("application/json".into())
                        .with_delivery_mode(TRANSIENT);
                    if let Some(mac) = signed.mac {
                        let mut headers = FieldTable::default();
                        headers.insert(MAC_HEADER.into(), AMQPValue::LongString(mac.into()));
                        properties = properties.with_headers(headers);
                    }
                    let confirm = self
                        .channel
                        .basic_publish(
                            self.exchange.as_str().into(),
                            "".into(),
                            BasicPublishOptions::default(),
                            &signed.body,
                            properties,
                        )
                        .await?;
                    drop(confirm);
                }
            }
        }
    }

    /// A standby declares the leader's queue, exclusively: refused while
    /// another connection holds it. A leader declares it passively on the
    /// channel that holds it: the round trip confirms the claim.
    async fn claim(&mut self, p: &GroupPlumbing, group: &str) -> lapin::Result<()> {
        let sent = tokio::time::Instant::now();
        if let Some(claim) = &self.claim {
            claim
                .queue_declare(
                    self.leader_queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            p.leadership
                .send_replace(Leadership::Leader { confirmed: sent });
            return Ok(());
        }
        let channel = self.connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                self.leader_queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(_) => {
                info!(%group, "leading the monitor group");
                self.claim = Some(channel);
                p.leadership
                    .send_replace(Leadership::Leader { confirmed: sent });
                Ok(())
            }
            // Another member leads; the broker closed that channel.
            Err(error) if locked(&error).is_some() => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multiple_ack_never_names_a_settled_tag_again() {
        let mut acks = PendingAcks::default();
        assert_eq!(acks.take(), None);
        // The merged stream of several consumers yields 1 and 3 first...
        acks.add(1);
        acks.add(3);
        assert_eq!(acks.take(), Some(3));
        // ...then 2, which the ack of 3 already settled.
        acks.add(2);
        assert_eq!(acks.take(), None);
        acks.add(5);
        acks.add(4);
        assert_eq!(acks.take(), Some(5));
    }

    #[test]
    fn heartbeat_and_frame_max_are_added_once() {
        assert_eq!(
            with_defaults("amqp://h/%2f"),
            "amqp://h/%2f?heartbeat=10&frame_max=131072"
        );
        assert_eq!(
            with_defaults("amqp://h/v?frame_max=8192"),
            "amqp://h/v?frame_max=8192&heartbeat=10"
        );
        assert_eq!(
            with_defaults("amqp://h/v?heartbeat=30"),
            "amqp://h/v?heartbeat=30&frame_max=131072"
        );
        // A password is not the query; a fragment stays last.
        assert_eq!(
            with_defaults("amqp://u:heartbeat=1@h/v#x"),
            "amqp://u:heartbeat=1@h/v?heartbeat=10&frame_max=131072#x"
        );
    }
}
