//! Whom a service answers, and how often: its defence against pings it did
//! not ask for. Anyone who can publish to the ping exchange reaches every
//! service; without these bounds, 20,000 pings with made-up `reply_to`s made
//! each service send 20,000 echoes to queues an attacker chose, left real
//! pings waiting behind them, and filled its list of monitors so that its
//! goodbye to the real one was dropped.
//!
//! - Only queues named like a monitor's of the service's own scope
//!   (`heartbeat.monitor.<valid name>`, or `heartbeat:<scope>:monitor.<valid name>`)
//!   are answered, and only for a ping that names that monitor.
//! - Signed, a ping is answered only if it is fresh: its `(boot, seq)` is
//!   above the last one taken from that monitor (see [`Freshness`]). A
//!   recording played back is refused here, before it costs any allowance,
//!   so the allowance below can be spent only by someone who can sign as
//!   that monitor. Unsigned pings get no such check: anyone can forge a
//!   fresh one, and a forged `(boot, seq)` near the top would then shut
//!   the real monitor out with one message.
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

use crate::scope::Scope;
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
    /// `reply_to` is another monitor's queue than the one the ping names:
    /// a ping copied and readdressed.
    NotItsMonitor,
    /// Signed, but not fresh: a ping already answered, or an earlier run's,
    /// played back.
    Stale,
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
    /// When its last fresh ping came.
    last: Instant,
    bucket: Bucket,
    /// The seq of the latest ping from this queue, for the goodbye.
    latest_seq: Option<u64>,
    freshness: Freshness,
}

/// How new a monitor's signed pings must be: above the highest
/// `(boot, seq)` taken so far. A monitor's run counts its seqs from 1 under
/// a `boot` (its start time) larger than any earlier run's, so a restart is
/// fresh and a recording of this run or of an earlier one is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    /// No signed ping with a `boot` yet: anything signed is fresh, as it was
    /// before pings had a `boot` (a monitor of that version has nothing
    /// else to be judged by).
    #[default]
    Unknown,
    /// The highest `(boot, seq)` taken. From then on, only pings above it
    /// are fresh; one without a `boot` is not.
    Above(u64, u64),
}

impl Freshness {
    /// Whether a signed ping with this `boot` and `seq` is fresh.
    pub fn admits(self, boot: Option<u64>, seq: u64) -> bool {
        match (self, boot) {
            (Freshness::Unknown, _) => true,
            (Freshness::Above(..), None) => false,
            (Freshness::Above(b, s), Some(boot)) => (boot, seq) > (b, s),
        }
    }

    fn after(self, boot: Option<u64>, seq: u64) -> Self {
        match boot {
            Some(boot) => Freshness::Above(boot, seq),
            None => self,
        }
    }
}

/// What the book needs of a ping: whom it names, its place in that
/// monitor's order, and whether a key vouched for it.
#[derive(Debug, Clone, Copy)]
pub struct PingMark<'a> {
    pub monitor: &'a str,
    pub boot: Option<u64>,
    pub seq: u64,
    /// Verified against our key by the link: only then is freshness checked.
    pub signed: bool,
}

/// One service's view of the monitors pinging it.
#[derive(Debug, Clone)]
pub struct MonitorBook {
    heard: HashMap<String, Heard>,
    newcomers: Bucket,
    /// Whose monitors' queues it answers: its service's scope only.
    scope: Scope,
}

impl MonitorBook {
    pub fn new(now: Instant) -> Self {
        Self {
            heard: HashMap::new(),
            newcomers: Bucket::full(NEWCOMERS_RATE, now),
            scope: Scope::default(),
        }
    }

    /// The book of a service in `scope`: only that scope's monitor queues are answered.
    pub fn in_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Record a ping asking for an answer on `reply_to`; `Ok` when it should
    /// be answered. Checked in order: the address, then (signed) freshness,
    /// and only then the allowance, so nothing stale or misaddressed spends it.
    pub fn admit(
        &mut self,
        reply_to: &str,
        ping: PingMark<'_>,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(id) = monitor_id_of(&self.scope, reply_to) else {
            return Err(Refusal::NotAMonitor);
        };
        if id != ping.monitor {
            return Err(Refusal::NotItsMonitor);
        }
        // Silent for that long: forgotten, freshness and all (a monitor
        // restarted with its clock set back is answered again after it).
        if self
            .heard
            .get(reply_to)
            .is_some_and(|heard| now.saturating_duration_since(heard.last) >= MONITOR_MEMORY)
        {
            self.heard.remove(reply_to);
        }
        if let Some(heard) = self.heard.get_mut(reply_to) {
            if ping.signed {
                if !heard.freshness.admits(ping.boot, ping.seq) {
                    return Err(Refusal::Stale);
                }
                heard.freshness = heard.freshness.after(ping.boot, ping.seq);
            }
            heard.last = now;
            if !heard.bucket.take(PER_MONITOR_RATE, PER_MONITOR_BURST, now) {
                return Err(Refusal::TooFast);
            }
            heard.latest_seq = Some(ping.seq);
            return Ok(());
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
        let freshness = if ping.signed {
            Freshness::Unknown.after(ping.boot, ping.seq)
        } else {
            Freshness::Unknown
        };
        self.heard.insert(
            reply_to.to_owned(),
            Heard {
                last: now,
                bucket,
                latest_seq: Some(ping.seq),
                freshness,
            },
        );
        Ok(())
    }

    /// The monitor's id (its queue's name says it) and the seq of the
    /// latest ping answered from `reply_to`: a goodbye names it, so that,
    /// signed, it cannot be played back once that ping is old. The latest,
    /// not the highest: a monitor of a version without `boot`, restarted
    /// under the same id, counts from 1 again.
    pub fn latest_ping<'q>(&self, reply_to: &'q str) -> Option<(&'q str, u64)> {
        let seq = self.heard.get(reply_to)?.latest_seq?;
        Some((monitor_id_of(&self.scope, reply_to)?, seq))
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

    /// An unsigned ping from the monitor whose queue is `queue`.
    fn from(queue: &str, seq: u64) -> PingMark<'_> {
        PingMark {
            monitor: queue.strip_prefix("heartbeat.monitor.").unwrap_or("m"),
            boot: None,
            seq,
            signed: false,
        }
    }

    fn signed(queue: &str, boot: Option<u64>, seq: u64) -> PingMark<'_> {
        PingMark {
            boot,
            signed: true,
            ..from(queue, seq)
        }
    }

    #[test]
    fn a_scoped_book_answers_only_its_scopes_monitor_queues() {
        let t0 = Instant::now();
        let staging = Scope::new("staging").unwrap();
        let mut book = MonitorBook::new(t0).in_scope(staging);
        let mark = |monitor| PingMark {
            monitor,
            boot: None,
            seq: 1,
            signed: false,
        };
        assert_eq!(
            book.admit("heartbeat.monitor.m", mark("m"), t0),
            Err(Refusal::NotAMonitor)
        );
        assert_eq!(
            book.admit("heartbeat:production:monitor.m", mark("m"), t0),
            Err(Refusal::NotAMonitor)
        );
        assert_eq!(
            book.admit("heartbeat:staging:monitor.m", mark("m"), t0),
            Ok(())
        );
        assert_eq!(
            book.latest_ping("heartbeat:staging:monitor.m"),
            Some(("m", 1))
        );
    }

    #[test]
    fn only_monitor_queues_are_answered() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let ops = "heartbeat.monitor.ops-1";
        assert_eq!(book.admit(ops, from(ops, 1), t0), Ok(()));
        for bad in [
            "",
            "amq.rabbitmq.reply-to",
            "heartbeat.service.a/b",
            "heartbeat.monitor.",
            "heartbeat.monitor.a b",
            "orders",
        ] {
            let refused = book.admit(bad, from(bad, 1), t0);
            assert_eq!(refused, Err(Refusal::NotAMonitor), "{bad:?}");
        }
    }

    #[test]
    fn a_ping_readdressed_to_another_monitor_is_refused() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let copied = signed("heartbeat.monitor.ops-1", Some(1), 1);
        assert_eq!(
            book.admit("heartbeat.monitor.victim", copied, t0),
            Err(Refusal::NotItsMonitor)
        );
        assert_eq!(book.goodbye_list(t0), Vec::<&str>::new());
    }

    #[test]
    fn a_monitor_at_its_interval_is_always_answered_and_a_fast_one_is_throttled() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let (real, flood) = ("heartbeat.monitor.real", "heartbeat.monitor.flood");
        // A real monitor at 100 ms for a minute: every ping answered.
        for i in 0..600 {
            let at = t0 + ms(100 * i);
            assert_eq!(book.admit(real, from(real, i + 1), at), Ok(()), "ping {i}");
        }
        // A flooder at one ping a millisecond for a second: about the rate.
        let start = t0 + ms(60_000);
        let answered = (0..1000)
            .filter(|i| book.admit(flood, from(flood, *i), start + ms(*i)).is_ok())
            .count();
        assert!((18..=26).contains(&answered), "{answered}");
    }

    #[test]
    fn a_signed_ping_played_back_is_refused_before_it_spends_the_allowance() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let victim = "heartbeat.monitor.victim";
        let boot = Some(1_795_000_000_000);
        // The real monitor pings every 100 ms; a recording of its ping 3 is
        // played back at 40 a second (4 between two real pings), and one of
        // an earlier run's pings, of a higher seq, as often.
        for seq in 1..=100u64 {
            let at = t0 + ms(100 * seq);
            let real = book.admit(victim, signed(victim, boot, seq), at);
            assert_eq!(real, Ok(()), "real {seq}");
            if seq < 3 {
                continue;
            }
            for replay in 1..=4 {
                let at = at + ms(20 * replay);
                let recorded = book.admit(victim, signed(victim, boot, 3), at);
                assert_eq!(recorded, Err(Refusal::Stale));
                let earlier = signed(victim, Some(1_794_000_000_000), 9_999);
                assert_eq!(book.admit(victim, earlier, at), Err(Refusal::Stale));
            }
        }
        // Freshness came first: the replays never touched the allowance,
        // so a burst of real pings is still answered in full.
        let later = t0 + ms(10_100);
        for seq in 101..=104 {
            let real = book.admit(victim, signed(victim, boot, seq), later);
            assert_eq!(real, Ok(()), "burst {seq}");
        }
    }

    #[test]
    fn a_restarted_monitor_is_fresh_and_its_earlier_run_is_not() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let q = "heartbeat.monitor.m";
        let (first, second) = (Some(1_000), Some(2_000));
        book.admit(q, signed(q, first, 5_000), t0).unwrap();
        // Restarted: seqs from 1 again, under a later boot.
        assert_eq!(book.admit(q, signed(q, second, 1), t0 + ms(500)), Ok(()));
        let earlier_run = book.admit(q, signed(q, first, 5_001), t0 + ms(600));
        assert_eq!(earlier_run, Err(Refusal::Stale));
        // Without a boot (an older monitor's body) once boots were seen: stale.
        let bootless = book.admit(q, signed(q, None, 9), t0 + ms(700));
        assert_eq!(bootless, Err(Refusal::Stale));
        // Silent long enough to be forgotten: whatever comes next is taken.
        let much_later = t0 + MONITOR_MEMORY + ms(800);
        assert_eq!(book.admit(q, signed(q, first, 1), much_later), Ok(()));
    }

    #[test]
    fn a_monitor_without_boot_is_answered_as_before_even_restarted() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let q = "heartbeat.monitor.old";
        for (i, seq) in [1, 2, 3, 1, 2].into_iter().enumerate() {
            let at = t0 + ms(1000 * i as u64);
            assert_eq!(book.admit(q, signed(q, None, seq), at), Ok(()), "seq {seq}");
        }
    }

    #[test]
    fn unsigned_pings_get_no_freshness_so_one_forgery_cannot_shut_a_monitor_out() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let q = "heartbeat.monitor.m";
        let forged = PingMark {
            boot: Some(u64::MAX),
            ..from(q, u64::MAX)
        };
        book.admit(q, forged, t0).unwrap();
        assert_eq!(book.admit(q, from(q, 1), t0 + ms(1000)), Ok(()));
    }

    #[test]
    fn a_flood_of_new_names_neither_crowds_out_nor_evicts_the_real_monitor() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let mut answered_flood = 0;
        let real = "heartbeat.monitor.real";
        // 20,000 made-up monitors in 4 s, while the real one pings every 200 ms.
        for i in 0..20_000u64 {
            let now = t0 + Duration::from_micros(200 * i);
            let fake = format!("heartbeat.monitor.fake-{i}");
            if book.admit(&fake, from(&fake, 1), now).is_ok() {
                answered_flood += 1;
            }
            if i % 1000 == 0 {
                assert_eq!(book.admit(real, from(real, i), now), Ok(()), "at {i}");
            }
        }
        assert!(answered_flood <= 60, "{answered_flood} fakes answered");
        let list = book.goodbye_list(t0 + Duration::from_secs(4));
        assert!(list.len() <= MAX_MONITORS);
        assert!(list.contains(&real), "{list:?}");
    }

    #[test]
    fn goodbyes_go_to_the_most_recent_first_and_not_to_the_long_silent() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let (old, new) = ("heartbeat.monitor.old", "heartbeat.monitor.new");
        book.admit(old, from(old, 1), t0).unwrap();
        book.admit(new, from(new, 1), t0 + ms(500)).unwrap();
        assert_eq!(book.goodbye_list(t0 + ms(600)), [new, old]);
        let later = t0 + MONITOR_MEMORY + ms(100);
        assert_eq!(book.goodbye_list(later), [new]);
    }

    #[test]
    fn the_latest_ping_of_each_monitor_is_kept_for_its_goodbye() {
        let t0 = Instant::now();
        let mut book = MonitorBook::new(t0);
        let queue = "heartbeat.monitor.m";
        assert_eq!(book.latest_ping(queue), None);
        book.admit(queue, from(queue, 86_400), t0).unwrap();
        assert_eq!(book.latest_ping(queue), Some(("m", 86_400)));
        // An older monitor restarted under the same id: its seqs start
        // over, and the goodbye must name one of the new run's.
        book.admit(queue, from(queue, 1), t0 + ms(1000)).unwrap();
        assert_eq!(book.latest_ping(queue), Some(("m", 1)));
    }
}
