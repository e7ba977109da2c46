//! [`Sink`]: the one way the engine's updates reach anything downstream.
//! Bounded, ordered, never waits, and counts what it drops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::update::Update;

/// Which updates a sink takes; the rest never reach its queue.
pub type Wants = fn(&Update) -> bool;

/// Every update.
pub fn everything(_: &Update) -> bool {
    true
}

/// Verdicts and what a reader needs to trust them: see [`Update::must_arrive`].
pub fn verdicts(update: &Update) -> bool {
    update.must_arrive()
}

/// A bounded queue of updates to one consumer. [`offer`](Sink::offer)
/// never waits: a full queue drops the update and counts it. A quarter of
/// the queue is kept for verdicts: figures (echoes, pings), many and
/// replaceable by the next, are dropped first, so a slow consumer loses a
/// verdict only once that reserve is full too.
#[derive(Clone)]
pub struct Sink {
    name: &'static str,
    queue: mpsc::Sender<Update>,
    wants: Wants,
    reserve: usize,
    dropped: Arc<AtomicU64>,
}

impl Sink {
    /// A sink called `name` (for its drop count) of `capacity` updates
    /// taking what `wants` says, and the consumer's end.
    pub fn new(
        name: &'static str,
        capacity: usize,
        wants: Wants,
    ) -> (Sink, mpsc::Receiver<Update>) {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let sink = Sink {
            name,
            queue,
            wants,
            reserve: capacity / 4,
            dropped: Arc::default(),
        };
        (sink, rx)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Updates this sink has dropped so far.
    pub fn dropped(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// Hand a copy of `update` on if the sink wants it; `false` if it was dropped.
    pub fn offer(&self, update: &Update) -> bool {
        if !(self.wants)(update) {
            return true;
        }
        self.push(update.clone())
    }

    /// [`offer`](Self::offer) without the copy, for the last taker of an update.
    pub fn send(&self, update: Update) -> bool {
        if !(self.wants)(&update) {
            return true;
        }
        self.push(update)
    }

    fn push(&self, update: Update) -> bool {
        if !update.must_arrive() && self.queue.capacity() <= self.reserve {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self.queue.try_send(update) {
            // A consumer that has gone away (the display quit) loses nothing it wants.
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_lib::plumbing::LinkStatus;

    #[tokio::test]
    async fn figures_give_way_first_verdicts_keep_a_reserve_and_drops_are_counted() {
        let (sink, mut rx) = Sink::new("test", 8, everything);
        let ping = |seq| Update::PingSent {
            seq,
            at: tokio::time::Instant::now(),
        };
        let mut taken = 0;
        for seq in 0..20 {
            taken += usize::from(sink.offer(&ping(seq)));
        }
        assert_eq!(taken, 6, "figures stop at the reserve (2 of 8)");
        assert!(sink.offer(&Update::Link(LinkStatus::Connected)));
        assert!(sink.offer(&Update::Link(LinkStatus::Connecting)));
        assert!(!sink.offer(&Update::Link(LinkStatus::Connected)), "full");
        assert_eq!(sink.dropped().load(Ordering::Relaxed), 15);
        // In order, as offered.
        let mut seqs = Vec::new();
        while let Ok(update) = rx.try_recv() {
            if let Update::PingSent { seq, .. } = update {
                seqs.push(seq);
            }
        }
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn what_a_sink_does_not_want_never_reaches_its_queue() {
        let (sink, mut rx) = Sink::new("test", 8, verdicts);
        assert!(sink.offer(&Update::PingSent {
            seq: 1,
            at: tokio::time::Instant::now()
        }));
        assert!(rx.try_recv().is_err());
        assert_eq!(sink.dropped().load(Ordering::Relaxed), 0);
    }
}
