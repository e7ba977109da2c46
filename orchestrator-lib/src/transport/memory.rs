//! The in-process back end: a broker in a `HashMap`, for the zero-setup demo
//! and for deterministic tests of the logic above the transport. It routes
//! like the AMQP topology (broadcast to service queues, direct to a named
//! queue) and decodes with the same code, but it has no network, no
//! reconnects and no message expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::{
    Incoming, Link, LinkOptions, LinkStats, LinkStatus, Outgoing, Plumbing, Route, plumbing,
};
use crate::scope::Scope;
use crate::topology::{Endpoint, Role};

/// Bodies a queue holds before new ones are dropped, like a broker's max-length.
const QUEUE_CAPACITY: usize = 1024;

struct RawDelivery {
    body: Vec<u8>,
    reply_to: Option<String>,
    /// The `x-heartbeat-mac` header, as AMQP would carry it.
    mac: Option<String>,
    /// The queue's index among its link's endpoints.
    to: usize,
}

struct Queue {
    role: Role,
    /// A broadcast reaches the service queues of its sender's scope only.
    scope: Scope,
    owner: u64,
    index: usize,
    /// Shared by all the queues of one link.
    tx: mpsc::Sender<RawDelivery>,
}

#[derive(Default)]
struct Hub {
    queues: HashMap<String, Queue>,
}

/// An in-process broker. Clones share the same queues.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    hub: Arc<Mutex<Hub>>,
    next_owner: Arc<AtomicU64>,
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Open a link whose queue lives until the link is closed or dropped.
    /// Must be called inside a tokio runtime.
    pub fn connect(&self, endpoint: Endpoint, options: LinkOptions) -> Link {
        self.connect_many(vec![endpoint], options)
    }

    /// One link for many queues, like `transport::connect_many`.
    pub fn connect_many(&self, endpoints: Vec<Endpoint>, options: LinkOptions) -> Link {
        let (mut link, plumbing) = plumbing(&options);
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY * endpoints.len().max(1));
        let owner = self.next_owner.fetch_add(1, Ordering::Relaxed);
        let mut hub = self.hub();
        for (index, endpoint) in endpoints.iter().enumerate() {
            let queue = Queue {
                role: endpoint.role,
                scope: endpoint.scope.clone(),
                owner,
                index,
                tx: tx.clone(),
            };
            hub.queues.insert(endpoint.queue.clone(), queue);
        }
        drop(hub);
        let scope = endpoints
            .first()
            .map(|e| e.scope.clone())
            .unwrap_or_default();
        let queues = endpoints.into_iter().map(|e| e.queue).collect();
        let task = tokio::spawn(self.clone().run(queues, scope, owner, rx, plumbing));
        link.closer.task = Some(task);
        link
    }

    /// Put a raw body on a queue, as a misbehaving peer would. False if no such queue.
    pub fn inject(&self, queue: &str, body: Vec<u8>, reply_to: Option<String>) -> bool {
        self.inject_signed(queue, body, reply_to, None)
    }

    /// [`MemoryBroker::inject`], with an `x-heartbeat-mac` header value.
    pub fn inject_signed(
        &self,
        queue: &str,
        body: Vec<u8>,
        reply_to: Option<String>,
        mac: Option<String>,
    ) -> bool {
        let hub = self.hub();
        hub.queues.get(queue).is_some_and(|q| {
            let raw = RawDelivery {
                body,
                reply_to,
                mac,
                to: q.index,
            };
            q.tx.try_send(raw).is_ok()
        })
    }

    /// Whether a queue currently exists (its link is open).
    pub fn has_queue(&self, queue: &str) -> bool {
        self.hub().queues.contains_key(queue)
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        // The hub holds plain data; a panic elsewhere cannot leave it half-updated.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(
        self,
        queues: Vec<String>,
        scope: Scope,
        owner: u64,
        mut rx: mpsc::Receiver<RawDelivery>,
        mut p: Plumbing,
    ) {
        p.set_status(LinkStatus::Connected);
        loop {
            tokio::select! {
                biased;
                _ = p.token.cancelled() => break,
                Some(outgoing) = p.out_rx.recv() => self.route(outgoing, &scope, &p.stats),
                Some(raw) = rx.recv() => {
                    let mac = raw.mac.as_deref().map(str::as_bytes);
                    if let Some(message) = p.accept(&raw.body, mac, &queues[raw.to]) {
                        let incoming = Incoming {
                            message,
                            reply_to: raw.reply_to,
                            to: raw.to,
                            received_at: tokio::time::Instant::now(),
                        };
                        p.deliver(vec![incoming]).await;
                    }
                }
            }
        }
        while let Ok(outgoing) = p.out_rx.try_recv() {
            self.route(outgoing, &scope, &p.stats);
        }
        let mut hub = self.hub();
        for queue in &queues {
            if hub.queues.get(queue).is_some_and(|q| q.owner == owner) {
                hub.queues.remove(queue);
            }
        }
        drop(hub);
        p.set_status(LinkStatus::Closed);
    }

    fn route(&self, outgoing: Outgoing, scope: &Scope, stats: &LinkStats) {
        let hub = self.hub();
        let deliver = |q: &Queue| {
            let raw = RawDelivery {
                body: outgoing.body.clone(),
                reply_to: outgoing.reply_to.clone(),
                mac: outgoing.mac.clone(),
                to: q.index,
            };
            // A full queue drops, as a broker queue with a length limit would.
            let _ = q.tx.try_send(raw);
        };
        match &outgoing.route {
            Route::Broadcast => hub
                .queues
                .values()
                .filter(|q| q.role == Role::Service && q.scope == *scope)
                .for_each(deliver),
            Route::Direct(name) => hub.queues.get(name).into_iter().for_each(deliver),
        }
        LinkStats::count(&stats.published);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use crate::transport::Incoming;
    use crate::wire::{Message, Ping, RejectReason};
    use std::time::Duration;

    fn ping(seq: u64) -> Message {
        Message::Ping(Ping {
            monitor: "m".into(),
            seq,
            boot: None,
            sent_at: Some(chrono::Utc::now()),
        })
    }

    #[tokio::test]
    async fn broadcast_reaches_services_only_and_carries_reply_to() {
        let broker = MemoryBroker::new();
        let monitor = broker.connect(Endpoint::monitor("m"), LinkOptions::default());
        let mut a = broker.connect(
            Endpoint::service(&Identity::new("a", "1").unwrap()),
            LinkOptions::default(),
        );
        let mut b = broker.connect(
            Endpoint::service(&Identity::new("b", "1").unwrap()),
            LinkOptions::default(),
        );
        let mut monitor_inbox = monitor.inbox;

        monitor
            .publisher
            .broadcast(&ping(1), "heartbeat.monitor.m", Duration::from_secs(1))
            .unwrap();
        for inbox in [&mut a.inbox, &mut b.inbox] {
            let got = inbox.recv().await.unwrap();
            assert_eq!(
                got,
                Incoming {
                    message: ping(1).clone_with_time(&got.message),
                    reply_to: Some("heartbeat.monitor.m".into()),
                    to: 0,
                    received_at: got.received_at,
                }
            );
        }
        // The monitor's own queue is not bound to the fanout.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), monitor_inbox.recv())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn bad_bodies_are_counted_and_dropped_and_the_stream_goes_on() {
        let broker = MemoryBroker::new();
        let mut link = broker.connect(Endpoint::monitor("m"), LinkOptions::default());
        assert!(broker.inject("heartbeat.monitor.m", b"{not json".to_vec(), None));
        assert!(broker.inject("heartbeat.monitor.m", crate::wire::encode(&ping(2)), None));
        let got = link.inbox.recv().await.unwrap();
        assert!(matches!(got.message, Message::Ping(Ping { seq: 2, .. })));
        assert_eq!(link.stats.received(), 2);
        assert_eq!(link.stats.rejected(), 1);
        assert_eq!(link.stats.rejected_for(RejectReason::NotJson), 1);
    }

    #[tokio::test]
    async fn a_keyed_link_hears_only_bodies_signed_with_its_keys_and_signs_what_it_sends() {
        let broker = MemoryBroker::new();
        let keys = crate::Keys::parse("memory-test-key-0123456789").unwrap();
        let keyed = || LinkOptions {
            keys: Some(keys.clone()),
            ..LinkOptions::default()
        };
        let mut service = broker.connect(
            Endpoint::service(&Identity::new("s", "i").unwrap()),
            keyed(),
        );
        let queue = "heartbeat.service.s/i";
        let body = crate::wire::encode(&ping(1));
        let stranger = crate::Keys::parse("a-stranger's-key-0123456789").unwrap();
        assert!(broker.inject_signed(queue, body.clone(), None, None));
        assert!(broker.inject_signed(queue, body.clone(), None, Some(stranger.sign(&body))));
        assert!(broker.inject_signed(queue, body.clone(), None, Some(keys.sign(&body))));
        let got = service.inbox.recv().await.unwrap();
        assert!(matches!(got.message, Message::Ping(Ping { seq: 1, .. })));
        assert_eq!(service.stats.rejected_for(RejectReason::Unsigned), 1);
        assert_eq!(service.stats.rejected_for(RejectReason::BadSignature), 1);
        assert_eq!(service.stats.rejected(), 2);

        // A keyed monitor's ping reaches the keyed service, signed.
        let monitor = broker.connect(Endpoint::monitor("m"), keyed());
        monitor
            .publisher
            .broadcast(&ping(2), "heartbeat.monitor.m", Duration::from_secs(1))
            .unwrap();
        let got = service.inbox.recv().await.unwrap();
        assert!(matches!(got.message, Message::Ping(Ping { seq: 2, .. })));
        assert_eq!(service.stats.rejected(), 2);
    }

    #[tokio::test]
    async fn an_unverified_echo_is_counted_under_the_service_it_names_and_goes_no_further() {
        use crate::wire::Echo;
        let broker = MemoryBroker::new();
        let keys = crate::Keys::parse("memory-test-key-0123456789").unwrap();
        let mut monitor = broker.connect(
            Endpoint::monitor("m"),
            LinkOptions {
                keys: Some(keys.clone()),
                ..LinkOptions::default()
            },
        );
        let queue = "heartbeat.monitor.m";
        let echo = |service: &str| {
            crate::wire::encode(&Message::Echo(Echo {
                service: service.into(),
                instance: "i".into(),
                monitor: Some("m".into()),
                seq: 1,
                at: None,
            }))
        };
        let stranger = crate::Keys::parse("a-stranger's-key-0123456789").unwrap();
        let wrong = echo("billing");
        assert!(broker.inject_signed(queue, echo("orders"), None, None));
        assert!(broker.inject_signed(queue, echo("orders"), None, None));
        assert!(broker.inject_signed(queue, wrong.clone(), None, Some(stranger.sign(&wrong))));
        // Garbage names nobody; a signed echo goes through.
        assert!(broker.inject_signed(queue, b"{not json".to_vec(), None, None));
        for n in 0..super::super::NAMED_SENDERS + 3 {
            assert!(broker.inject_signed(queue, echo(&format!("s{n:03}")), None, None));
        }
        let fine = echo("fine");
        assert!(broker.inject_signed(queue, fine.clone(), None, Some(keys.sign(&fine))));
        let got = monitor.inbox.recv().await.unwrap();
        assert!(
            matches!(got.message, Message::Echo(Echo { ref service, .. }) if service == "fine")
        );

        let counted = monitor.stats.unverified_by_service();
        let of = |name: &str, reason| {
            counted
                .iter()
                .find(|(s, r, _)| s == name && *r == reason)
                .map(|&(_, _, n)| n)
        };
        assert_eq!(of("orders", RejectReason::Unsigned), Some(2));
        assert_eq!(of("billing", RejectReason::BadSignature), Some(1));
        assert_eq!(of("fine", RejectReason::Unsigned), None);
        // Bounded: past the cap, the rest under one label.
        let named = counted
            .iter()
            .filter(|(s, _, _)| s != super::super::OTHER_SENDERS)
            .count();
        assert_eq!(named, super::super::NAMED_SENDERS);
        assert_eq!(
            of(super::super::OTHER_SENDERS, RejectReason::Unsigned),
            Some(5)
        );
        assert_eq!(
            monitor.stats.rejected(),
            3 + 1 + super::super::NAMED_SENDERS as u64 + 3
        );
    }

    #[tokio::test]
    async fn close_flushes_queued_messages_and_removes_the_queue() {
        let broker = MemoryBroker::new();
        let mut monitor = broker.connect(Endpoint::monitor("m"), LinkOptions::default());
        let service = broker.connect(
            Endpoint::service(&Identity::new("a", "1").unwrap()),
            LinkOptions::default(),
        );
        service
            .publisher
            .send_to("heartbeat.monitor.m", &ping(3))
            .unwrap();
        service.closer.close().await;
        assert!(!broker.has_queue("heartbeat.service.a/1"));
        assert!(matches!(
            monitor.inbox.recv().await.unwrap().message,
            Message::Ping(Ping { seq: 3, .. })
        ));
    }

    impl Message {
        /// Copy `other`'s timestamp so messages built at different instants compare.
        fn clone_with_time(&self, other: &Message) -> Message {
            match (self, other) {
                (Message::Ping(p), Message::Ping(o)) => Message::Ping(Ping {
                    sent_at: o.sent_at,
                    ..p.clone()
                }),
                _ => self.clone(),
            }
        }
    }
}
