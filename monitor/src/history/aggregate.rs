//! Per-minute figures per instance: echoes, misses, round-trip percentiles,
//! and the time up out of the time judged, each state counted as
//! [`State::availability`] says (LEFT and STALE are not judged). Pure:
//! wall-clock milliseconds in, closed minutes out.

use std::collections::HashMap;
use std::time::Duration;

use super::Minute;
use crate::detector::{Availability, InstanceKey, State};

pub const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Default)]
struct Acc {
    echoes: i64,
    rtts_ms: Vec<f64>,
    up_ms: i64,
    judged_ms: i64,
}

impl Acc {
    /// `span` ms spent in `state`.
    fn add(&mut self, state: State, span: i64) {
        match state.availability() {
            Availability::Up => {
                self.up_ms += span;
                self.judged_ms += span;
            }
            Availability::Down => self.judged_ms += span,
            Availability::NotJudged => {}
        }
    }
}

#[derive(Debug)]
struct Known {
    state: State,
    /// When the current state began (ms).
    since: i64,
}

pub struct Aggregator {
    minute_start: i64,
    pings: i64,
    states: HashMap<InstanceKey, Known>,
    accs: HashMap<InstanceKey, Acc>,
}

fn floor_minute(ms: i64) -> i64 {
    ms - ms.rem_euclid(MINUTE_MS)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

impl Aggregator {
    pub fn new(now_ms: i64) -> Self {
        Self {
            minute_start: floor_minute(now_ms),
            pings: 0,
            states: HashMap::new(),
            accs: HashMap::new(),
        }
    }

    pub fn ping(&mut self, now_ms: i64, out: &mut Vec<Minute>) {
        self.roll(now_ms, out);
        self.pings += 1;
    }

    pub fn echo(
        &mut self,
        key: &InstanceKey,
        rtt: Option<Duration>,
        now_ms: i64,
        out: &mut Vec<Minute>,
    ) {
        self.roll(now_ms, out);
        // Looked up before an entry is made: a clone of the key per echo is
        // two allocations for an instance that is nearly always known.
        let acc = match self.accs.get_mut(key) {
            Some(acc) => acc,
            None => self.accs.entry(key.clone()).or_default(),
        };
        acc.echoes += 1;
        if let Some(rtt) = rtt {
            acc.rtts_ms.push(rtt.as_secs_f64() * 1e3);
        }
    }

    pub fn transition(&mut self, key: &InstanceKey, to: State, now_ms: i64, out: &mut Vec<Minute>) {
        self.roll(now_ms, out);
        if let Some(known) = self.states.get(key) {
            let from = known.since.max(self.minute_start);
            let state = known.state;
            self.accs
                .entry(key.clone())
                .or_default()
                .add(state, (now_ms - from).max(0));
        }
        self.states.insert(
            key.clone(),
            Known {
                state: to,
                since: now_ms,
            },
        );
    }

    /// The monitor forgot the instance: no more minutes for it.
    pub fn forget(&mut self, key: &InstanceKey) {
        self.states.remove(key);
        self.accs.remove(key);
    }

    /// Close every minute that ended by `now_ms`.
    pub fn roll(&mut self, now_ms: i64, out: &mut Vec<Minute>) {
        while now_ms >= self.minute_start + MINUTE_MS {
            let end = self.minute_start + MINUTE_MS;
            self.close(end, out);
            self.minute_start = end;
        }
    }

    /// The minute so far, up to `now_ms`, for a last write before stopping.
    pub fn close_partial(&mut self, now_ms: i64, out: &mut Vec<Minute>) {
        self.roll(now_ms, out);
        if now_ms > self.minute_start {
            self.close(now_ms, out);
            self.minute_start = now_ms;
        }
    }

    fn close(&mut self, end: i64, out: &mut Vec<Minute>) {
        let start = self.minute_start;
        let mut accs = std::mem::take(&mut self.accs);
        for (key, known) in &self.states {
            // An expected service's placeholder has no minutes of its own.
            if known.state == State::NeverSeen {
                continue;
            }
            let mut acc = accs.remove(key).unwrap_or_default();
            let from = known.since.max(start);
            acc.add(known.state, (end - from).max(0));
            acc.rtts_ms.sort_by(f64::total_cmp);
            out.push(Minute {
                minute_ms: floor_minute(start),
                service: key.service.clone(),
                instance: key.instance.clone(),
                echoes: acc.echoes,
                misses: (self.pings - acc.echoes).max(0),
                rtt_p50_ms: percentile(&acc.rtts_ms, 50),
                rtt_p99_ms: percentile(&acc.rtts_ms, 99),
                up_ms: acc.up_ms,
                // Time judged: uptime is up out of this, never out of time
                // the instance was LEFT or the monitor could not judge.
                observed_ms: acc.judged_ms,
            });
        }
        self.pings = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000 - (1_800_000_000_000 % MINUTE_MS);

    #[test]
    fn a_minute_counts_echoes_misses_percentiles_and_time_up() {
        let key = InstanceKey::new("orders", "o-1");
        let mut out = Vec::new();
        let mut agg = Aggregator::new(T0);
        agg.transition(&key, State::Up, T0, &mut out);
        for i in 0..10 {
            agg.ping(T0 + i * 1000, &mut out);
            if i < 8 {
                agg.echo(
                    &key,
                    Some(Duration::from_millis(i as u64 + 1)),
                    T0 + i * 1000 + 1,
                    &mut out,
                );
            }
        }
        agg.transition(&key, State::Down, T0 + 45_000, &mut out);
        assert!(out.is_empty());
        agg.roll(T0 + MINUTE_MS, &mut out);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!((m.minute_ms, m.echoes, m.misses), (T0, 8, 2));
        assert_eq!((m.rtt_p50_ms, m.rtt_p99_ms), (Some(4.0), Some(8.0)));
        assert_eq!((m.up_ms, m.observed_ms), (45_000, 60_000));
        // The next minute: down all along.
        agg.roll(T0 + 2 * MINUTE_MS + 5, &mut out);
        assert_eq!(
            (out[1].up_ms, out[1].observed_ms, out[1].echoes),
            (0, 60_000, 0)
        );
    }

    #[test]
    fn an_instance_first_seen_mid_minute_is_watched_from_then() {
        let key = InstanceKey::new("orders", "o-1");
        let mut out = Vec::new();
        let mut agg = Aggregator::new(T0);
        agg.transition(&key, State::Up, T0 + 20_000, &mut out);
        agg.close_partial(T0 + 50_000, &mut out);
        assert_eq!((out[0].up_ms, out[0].observed_ms), (30_000, 30_000));
    }

    #[test]
    fn slow_is_up_and_left_and_stale_are_not_judged() {
        let key = InstanceKey::new("orders", "o-1");
        let mut out = Vec::new();
        let mut agg = Aggregator::new(T0);
        agg.transition(&key, State::Up, T0, &mut out);
        agg.transition(&key, State::Slow, T0 + 5_000, &mut out);
        agg.transition(&key, State::Up, T0 + 10_000, &mut out);
        agg.transition(&key, State::Stale, T0 + 15_000, &mut out);
        agg.transition(&key, State::Down, T0 + 25_000, &mut out);
        agg.transition(&key, State::Left, T0 + 35_000, &mut out);
        agg.roll(T0 + MINUTE_MS, &mut out);
        assert_eq!((out[0].up_ms, out[0].observed_ms), (15_000, 25_000));
    }
}
