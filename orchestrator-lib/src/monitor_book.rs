//! Whom a service answers, and how often: its defence against pings it did
//! not ask for. Anyone who can publish to the ping exchange reaches every
//! service; without these bounds, 20,000 pings with made-up `reply_to`s made
//! each service send 20,000 echoes to queues an attacker chose, left real
//! pings waiting behind them, and filled its list of monitors so that its
//! goodbye to the real one was dropped.
//!
//! - Only queues named like a monitor's (`heartbeat.monitor.<valid name>`)
//!   are answered.
//! - A known monitor is answered at most [`PER_MONITOR_RATE`] times a second
//!   (a burst of [`PER_MONITOR_BURST`]).
//! - A monitor not heard from before is admitted at most
//!   [`NEWCOMERS_RATE`] a second, so a flood of new names cannot crowd out
//!   the monitors that ping every interval.
//! - At most [`MAX_MONITORS`] are remembered, the least recently heard
//!   forgotten first; goodbyes go to the most recent first.
//!
//! Pure: every method takes `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::topology::monitor_id_of;

pub const MAX_MONITORS: usize = 32;
pub const PER_MONITOR_RATE: f64 = 20.0;
pub const PER_MONITOR_BURST: f64 = 4.0;
pub const NEWCOMERS_RATE: f64 = 10.0;
/// A monitor silent this long is forgotten and gets no goodbye.
pub const MONITOR_MEMORY: Duration = Duration::from_secs(600);

/// Why a ping goes unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `reply_to` is not a monitor's queue.
    NotAMonitor,
    /// This monitor pings faster than any monitor should.
    TooFast,
    /// Too many monitors never heard before, all at once.
    TooManyNewcomers,
}

/// A token bucket over explicit instants.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            at: now,
        }
    }

    fn take(&mut self, rate: f64, capacity: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone)]
struct Heard {
    last: Instant,
    bucket: Bucket,
    /// The seq of the latest ping from this queue, for the goodbye.
    latest_seq: Option<u64>,
}

/// One service's view of the monitors pinging it.
#[derive(Debug, Clone)]
pub struct MonitorBook {
    heard: HashMap<String, Heard>,
    newcomers: Bucket,
}

impl MonitorBook {
    pub fn new(now: Instant) -> Self {
        Self {
            heard: HashMap::new(),
            newcomers: Bucket::full(NEWCOMERS_RATE, now),
        }
    }

    /// Record a ping asking for an answer on `reply_to`; `Ok` when it should
    /// be answered.
    pub fn admit(&mut self, reply_to: &str, now: Instant) -> Result<(), Refusal> {
        if monitor_id_of(reply_to).is_none() {
            return Err(Refusal::NotAMonitor);
        }
        if let Some(heard) = self.heard.get_mut(reply_to) {
            heard.last = now;
            return if heard.bucket.take(PER_MONITOR_RATE, PER_MONITOR_BURST, now) {
                Ok(())
            } else {
                Err(Refusal::TooFast)
            };
        }
        if !self.newcomers.take(NEWCOMERS_RATE, NEWCOMERS_RATE, now) {
            return Err(Refusal::TooManyNewcomers);
        }
        self.heard
            .retain(|_, heard| now.saturating_duration_since(heard.last) < MONITOR_MEMORY);
        if self.heard.len() >= MAX_MONITORS
            && let Some(oldest) = self
                .heard
                .iter()
                .min_by_key(|(_, heard)| heard.last)
                .map(|(queue, _)| queue.clone())
        {
            self.heard.remove(&oldest);
        }
        let mut bucket = Bucket::full(PER_MONITOR_BURST, now);
        bucket.take(PER_MONITOR_RATE, PER_MONITOR_BURST, now);
        self.heard.insert(
            reply_to.to_owned(),
            Heard {
                last: now,
                bucket,
                latest_seq: None,
            },
        );
        Ok(())
    }

    /// Note the latest ping admitted from `reply_to`: a goodbye names it,
    /// so that, signed, it cannot be played back once that ping is old.
    /// The latest received, not the highest: a monitor restarted under the
    /// same id counts from 1 again, and a goodbye naming its previous run's
    /// seq would be refused.
    pub fn note_ping(&mut self, reply_to: &str, seq: u64) {
        if let Some(heard) = self.heard.get_mut(reply_to) {
            heard.latest_seq = Some(seq);
        }
    }

    /// The monitor's id (its queue's name says it) and the seq of the
    /// latest ping noted from `reply_to`.
    pub fn latest_ping<'q>(&self, reply_to: &'q str) -> Option<(&'q str, u64)> {
        let seq = self.heard.get(reply_to)?.latest_seq?;
        Some((monitor_id_of(reply_to)?, seq))
    }

    /// The monitors to say goodbye to, most recently heard first, forgetting
    /// those silent for longer than [`MONITOR_MEMORY`].
    pub fn goodbye_list(&self, now: Instant) -> Vec<&str> {
        let mut recent: Vec<(&str, Instant)> = self
            .heard
            .iter()
            .filter(|(_, heard)| now.saturating_duration_since(heard.last) < MONITOR_MEMORY)
            .map(|(queue, heard)| (queue.as_str(), heard.last))
            .collect();
        recent.sort_by_key(|&(_, last)| std::cmp::Reverse(last));
        recent.into_iter().map(|(queue, _)| queue).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn only_monitor_queues_are_answered() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        assert_eq!(book.admit("heartbeat.monitor.ops-1", t0), Ok(()));
        for bad in [
            "",
            "amq.rabbitmq.reply-to",
            "heartbeat.service.a/b",
            "heartbeat.monitor.",
            "heartbeat.monitor.a b",
            "orders",
        ] {
            assert_eq!(book.admit(bad, t0), Err(Refusal::NotAMonitor), "{bad:?}");
        }
    }

    #[test]
    fn a_monitor_at_its_interval_is_always_answered_and_a_fast_one_is_throttled() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        // A real monitor at 100 ms for a minute: every ping answered.
        for i in 0..600 {
            assert_eq!(
                book.admit("heartbeat.monitor.real", t0 + ms(100 * i)),
                Ok(()),
                "ping {i}"
            );
        }
        // A flooder at one ping a millisecond for a second: about the rate.
        let start = t0 + ms(60_000);
        let answered = (0..1000)
            .filter(|i| {
                book.admit("heartbeat.monitor.flood", start + ms(*i))
                    .is_ok()
            })
            .count();
        assert!((18..=26).contains(&answered), "{answered}");
    }

    #[test]
    fn a_flood_of_new_names_neither_crowds_out_nor_evicts_the_real_monitor() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let mut answered_flood = 0;
        // 20,000 made-up monitors in 4 s, while the real one pings every 200 ms.
        for i in 0..20_000u64 {
            let now = t0 + Duration::from_micros(200 * i);
            if book
                .admit(&format!("heartbeat.monitor.fake-{i}"), now)
                .is_ok()
            {
                answered_flood += 1;
            }
            if i % 1000 == 0 {
                assert_eq!(book.admit("heartbeat.monitor.real", now), Ok(()), "at {i}");
            }
        }
        assert!(answered_flood <= 60, "{answered_flood} fakes answered");
        let list = book.goodbye_list(t0 + Duration::from_secs(4));
        assert!(list.len() <= MAX_MONITORS);
        assert!(list.contains(&"heartbeat.monitor.real"), "{list:?}");
    }

    #[test]
    fn goodbyes_go_to_the_most_recent_first_and_not_to_the_long_silent() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        book.admit("heartbeat.monitor.old", t0).unwrap();
        book.admit("heartbeat.monitor.new", t0 + ms(500)).unwrap();
        assert_eq!(
            book.goodbye_list(t0 + ms(600)),
            ["heartbeat.monitor.new", "heartbeat.monitor.old"]
        );
        let later = t0 + MONITOR_MEMORY + ms(100);
        assert_eq!(book.goodbye_list(later), ["heartbeat.monitor.new"]);
    }

    #[test]
    fn the_latest_ping_of_each_monitor_is_kept_for_its_goodbye() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let queue = "heartbeat.monitor.m";
        assert_eq!(book.latest_ping(queue), None);
        book.note_ping(queue, 3);
        assert_eq!(book.latest_ping(queue), None, "never admitted");
        book.admit(queue, t0).unwrap();
        book.note_ping(queue, 86_400);
        assert_eq!(book.latest_ping(queue), Some(("m", 86_400)));
        // The monitor restarted under the same id: its seqs start over, and
        // the goodbye must name one of the new run's.
        book.note_ping(queue, 1);
        assert_eq!(book.latest_ping(queue), Some(("m", 1)));
    }
}
