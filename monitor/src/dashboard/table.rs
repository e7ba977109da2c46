//! The table's order: which of the fleet model's instances are shown, and
//! in what order. View state only (sort, filters, folded services); the
//! instances and their counts are the model's. Pure.

use std::cmp::{Ordering, Reverse};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::detector::State;
use crate::fleet::{Fleet, Instance, Tally};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Most urgent first, by [`State::rank`].
    State,
    Name,
    /// Slowest first, by the median round trip.
    Rtt,
    /// Longest silent first.
    LastSeen,
}

impl Sort {
    pub fn next(self) -> Self {
        match self {
            Sort::State => Sort::Name,
            Sort::Name => Sort::Rtt,
            Sort::Rtt => Sort::LastSeen,
            Sort::LastSeen => Sort::State,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::State => "state",
            Sort::Name => "name",
            Sort::Rtt => "rtt",
            Sort::LastSeen => "last seen",
        }
    }

    /// Orders that depend on values every echo changes go stale between ticks.
    pub fn follows_echoes(self) -> bool {
        matches!(self, Sort::Rtt | Sort::LastSeen)
    }
}

/// Where a row, or a service by its most telling row, falls in a [`Sort`];
/// smaller first. One sort compares one variant only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// By name alone.
    Name,
    State(u8),
    SlowestFirst(Reverse<Option<Duration>>),
    /// Never heard from sorts first, as `None` is smallest.
    SilentFirst(Option<Instant>),
}

impl Rank {
    fn of(sort: Sort, row: &Instance) -> Self {
        match sort {
            Sort::Name => Rank::Name,
            Sort::State => Rank::State(row.state.rank()),
            Sort::Rtt => Rank::SlowestFirst(Reverse(row.p50())),
            Sort::LastSeen => Rank::SilentFirst(row.last_echo),
        }
    }
}

/// Names in natural order: digit runs compare as numbers, so `load-2`
/// comes before `load-10`. Ties (`a01`, `a1`) fall back to the plain order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (m, n) = (run(x), run(y));
                let (p, q) = (without_zeros(&x[..m]), without_zeros(&y[..n]));
                let by_value = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                x = &x[m..];
                y = &y[n..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// A run of digits without its leading zeros.
fn without_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

/// A name that sorts naturally ([`natural_cmp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Natural<'a>(&'a str);

impl PartialOrd for Natural<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Natural<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        natural_cmp(self.0, other.0)
    }
}

/// How the fleet is looked at: what the order is built from.
pub struct Lens<'a> {
    pub sort: Sort,
    pub reversed: bool,
    /// The name filter, lower case.
    pub needle: String,
    pub state_filter: Option<State>,
    pub not_up_only: bool,
    pub collapsed: &'a HashSet<String>,
}

impl Lens<'_> {
    /// Whether a row passes the filters: its name contains the needle, it
    /// is in the filter's state, and it is not UP when only trouble is shown.
    pub fn matches(&self, row: &Instance) -> bool {
        self.state_filter.is_none_or(|s| row.state == s)
            && (!self.not_up_only || row.state != State::Up)
            && (self.needle.is_empty()
                || contains_ignoring_case(&row.key.service, &self.needle)
                || contains_ignoring_case(&row.key.instance, &self.needle))
    }
}

/// Whether `haystack` holds `needle` (already lower case), ignoring ASCII
/// case without building a lower-cased copy per row: this runs over every
/// row at each rebuild. Names are ASCII by the wire's rule (flags and
/// config follow it too), so a needle that is not cannot match.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || (needle.is_ascii()
            && haystack
                .as_bytes()
                .windows(needle.len())
                .any(|window| window.eq_ignore_ascii_case(needle.as_bytes())))
}

/// The table as last built from a fleet: its order, and the counts the
/// header and the service rows show (the model's [`Tally`]).
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Indices into the shown fleet's `rows`, filtered and sorted.
    pub order: Vec<usize>,
    /// Instances by state and by service, from the model.
    pub tally: Tally,
    /// Per service: the slowest latest round trip of its instances, for a
    /// collapsed service's row.
    pub worst_rtt: HashMap<String, Duration>,
    /// Some instance is judged by phi: the PHI column is worth its width.
    pub any_phi: bool,
    /// Rows in the fleet it was built from.
    pub rows: usize,
    /// The model's version it was built from: see [`Fleet::version`].
    built_from: Option<u64>,
    /// Something besides the model changed what it shows (a key, a tick).
    pub stale: bool,
}

impl Table {
    /// Whether the order must be built again for `fleet`.
    pub fn outdated(&self, fleet: &Fleet) -> bool {
        self.stale || self.built_from != Some(fleet.version()) || self.rows != fleet.rows.len()
    }

    pub fn rebuild(&mut self, fleet: &Fleet, lens: &Lens) {
        let Lens { sort, reversed, .. } = *lens;
        let rows = &fleet.rows;
        self.tally = fleet.tally();
        self.rows = rows.len();
        self.built_from = Some(fleet.version());
        self.stale = false;
        self.worst_rtt.clear();
        self.any_phi = rows.iter().any(|row| row.phi.is_some());
        for row in rows {
            if let Some(rtt) = row.last_rtt() {
                match self.worst_rtt.get_mut(&row.key.service) {
                    Some(worst) => *worst = (*worst).max(rtt),
                    None => {
                        self.worst_rtt.insert(row.key.service.clone(), rtt);
                    }
                }
            }
        }

        let shown = (0..rows.len()).filter(|&i| lens.matches(&rows[i]));
        // Instances of one service stay together: services are ordered by
        // their most telling instance, then instances within each service.
        let mut by_group: HashMap<&str, Rank> = HashMap::new();
        // Each rank once per row (by RTT it takes a median).
        let shown: Vec<(usize, Rank)> = shown.map(|i| (i, Rank::of(sort, &rows[i]))).collect();
        for &(i, rank) in &shown {
            let row = &rows[i];
            by_group
                .entry(row.key.service.as_str())
                .and_modify(|group| *group = (*group).min(rank))
                .or_insert(rank);
        }
        // Each key is computed once, not once per comparison.
        let mut keyed: Vec<_> = shown
            .into_iter()
            .map(|(i, rank)| {
                let row = &rows[i];
                let group = by_group[row.key.service.as_str()];
                let key = (
                    group,
                    Natural(row.key.service.as_str()),
                    rank,
                    Natural(row.key.instance.as_str()),
                );
                (key, i)
            })
            .collect();
        keyed.sort_unstable();
        // Not `into_iter().collect()`: that would keep `keyed`'s far larger
        // allocation alive as `order`'s.
        self.order.clear();
        if lens.collapsed.is_empty() {
            self.order.extend(keyed.iter().map(|&(_, i)| i));
        } else {
            // A collapsed service is one row: its most urgent instance's,
            // which stands for the whole service.
            let mut standing: HashMap<&str, (u8, usize)> = HashMap::new();
            for &(_, i) in &keyed {
                let row = &rows[i];
                if lens.collapsed.contains(&row.key.service) {
                    let candidate = (row.state.rank(), i);
                    standing
                        .entry(row.key.service.as_str())
                        .and_modify(|best| {
                            if candidate.0 < best.0 {
                                *best = candidate;
                            }
                        })
                        .or_insert(candidate);
                }
            }
            self.order
                .extend(keyed.iter().map(|&(_, i)| i).filter(|&i| {
                    standing
                        .get(rows[i].key.service.as_str())
                        .is_none_or(|&(_, best)| best == i)
                }));
        }
        if reversed {
            self.order.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally() {
        let mut names = vec![
            "load-10", "load-2", "load-1", "load-01", "a", "load-9x", "b2c10",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "a", "b2c10", "load-01", "load-1", "load-2", "load-9x", "load-10"
            ]
        );
    }
}
