//! The dashboard's state and how every [`Event`] changes it. No I/O and no
//! clock reads: the caller passes `now`, so every rule is tested with
//! explicit instants. Keys never end the process; they set [`App::quit`] and
//! the run loop returns.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};
use orchestrator_lib::Identity;
use orchestrator_lib::plumbing::LinkStatus;
use tokio::time::Instant;

use super::event::{Event, Traffic};
use super::view;
use crate::demo::FleetCommand;
use crate::detector::{InstanceId, InstanceKey, PhiModel, State, UNSEEN_INSTANCE};
use crate::engine::{EchoSeen, Report, Update};
use crate::history::{Health, Past};

use super::window::{Rtts, Window};

/// Round trips kept per instance for the percentiles and the sparkline.
pub const RTT_SAMPLES: usize = 120;
const HISTORY_PER_INSTANCE: usize = 100;
/// Phi values kept per instance for the detail view.
pub const PHI_SAMPLES: usize = 120;
const LOG_CAPACITY: usize = 500;
/// Rates are averaged over this much of the recent past, so one burst does
/// not make the monthly projection jump.
const RATE_WINDOW: Duration = Duration::from_secs(5);
const WHEEL_STEP: isize = 3;
/// Two clicks on one row within this long open it.
const DOUBLE_CLICK: Duration = Duration::from_millis(400);
/// Orders that follow figures every echo changes (RTT, last seen) are
/// rebuilt at most this often, so rows do not jump under the reader's eyes.
pub const RESORT_EVERY: Duration = Duration::from_secs(3);

/// One service instance as the dashboard sees it.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: InstanceKey,
    /// The detector's id for it, once an echo said so.
    id: Option<InstanceId>,
    pub state: State,
    /// When the current state began.
    pub since: Instant,
    /// Since when this monitor has been watching it; uptime is measured over this.
    pub watched_since: Instant,
    /// Time spent UP before the current state began.
    up_before: Duration,
    pub last_echo: Option<Instant>,
    last_seq: Option<u64>,
    pub missed: u64,
    pub rtts: Rtts<RTT_SAMPLES>,
    /// Newest first.
    pub history: VecDeque<Report>,
    /// Phi's view after the last echo, when phi judges this instance.
    pub phi: Option<PhiModel>,
    /// Phi reached just before each echo arrived: how suspicious the gap
    /// looked. Oldest first.
    /// `f32`: the detail view draws it in hundredths.
    pub phi_history: Window<f32, PHI_SAMPLES>,
}

impl Row {
    fn new(key: InstanceKey, now: Instant) -> Self {
        Self {
            key,
            id: None,
            state: State::NeverSeen,
            since: now,
            watched_since: now,
            up_before: Duration::ZERO,
            last_echo: None,
            last_seq: None,
            missed: 0,
            rtts: Rtts::new(),
            history: VecDeque::new(),
            phi: None,
            phi_history: Window::new(),
        }
    }

    /// Phi now: how unlikely it is that a live instance stays silent this long.
    pub fn phi_at(&self, now: Instant) -> Option<f64> {
        let model = self.phi?;
        let last = self.last_echo?;
        Some(model.phi(now.saturating_duration_since(last)))
    }

    /// Answers, whatever it is shown as.
    pub fn counts_as_up(&self) -> bool {
        matches!(self.state, State::Up | State::Slow)
    }

    /// The share of the watched time spent UP, from 0 to 1.
    pub fn uptime(&self, now: Instant) -> Option<f64> {
        let watched = now.saturating_duration_since(self.watched_since);
        if watched.is_zero() {
            return None;
        }
        let current = if self.counts_as_up() {
            now.saturating_duration_since(self.since)
        } else {
            Duration::ZERO
        };
        Some(((self.up_before + current).as_secs_f64() / watched.as_secs_f64()).min(1.0))
    }

    pub fn last_rtt(&self) -> Option<Duration> {
        self.rtts.last()
    }

    /// The median of the recent round trips: steadier than the last one, so
    /// sorting by it does not reshuffle rows at every echo.
    pub fn p50(&self) -> Option<Duration> {
        self.rtts.median()
    }

    /// p50 and p99 of the recent round trips. Sorts a copy, so call it only
    /// for rows on screen.
    pub fn percentiles(&self) -> Option<(Duration, Duration)> {
        self.rtts.p50_p99()
    }

    fn is_placeholder(&self) -> bool {
        self.key.instance == UNSEEN_INSTANCE && self.state == State::NeverSeen
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// DOWN first, then never seen, then UP.
    State,
    Name,
    /// Slowest first, by the median round trip.
    Rtt,
    /// Longest silent first.
    LastSeen,
}

impl Sort {
    fn next(self) -> Self {
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
    fn follows_echoes(self) -> bool {
        matches!(self, Sort::Rtt | Sort::LastSeen)
    }
}

/// Where a row, or a service by its most telling row, falls in a [`Sort`];
/// smaller first. One sort compares one variant only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// By name alone.
    Name,
    /// DOWN, then never seen, then UP.
    State(u8),
    SlowestFirst(Reverse<Option<Duration>>),
    /// Never heard from sorts first, as `None` is smallest.
    SilentFirst(Option<Instant>),
}

impl Rank {
    fn of(sort: Sort, row: &Row) -> Self {
        match sort {
            Sort::Name => Rank::Name,
            Sort::State => Rank::State(state_rank(row.state)),
            Sort::Rtt => Rank::SlowestFirst(Reverse(row.p50())),
            Sort::LastSeen => Rank::SilentFirst(row.last_echo),
        }
    }
}

/// Most urgent first: DOWN, then what needs a look, then the quiet ones.
fn state_rank(state: State) -> u8 {
    match state {
        State::Down => 0,
        State::Suspect => 1,
        State::Flapping => 2,
        State::Stale => 3,
        State::Slow => 4,
        State::NeverSeen => 5,
        State::Left => 6,
        State::Up => 7,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    List,
    Detail,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub up: usize,
    pub down: usize,
    pub never_seen: usize,
    pub suspect: usize,
    pub flapping: usize,
    pub stale: usize,
    pub slow: usize,
    pub left: usize,
}

/// What is known of the fleet: the part `p` freezes.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub rows: Vec<Row>,
    index: HashMap<InstanceKey, usize>,
    /// The same rows by the detector's id: every echo is looked up, and an
    /// id is one number to hash and compare where a key is two strings in
    /// memory the cache no longer holds.
    by_id: HashMap<InstanceId, usize>,
    /// Newest first.
    pub log: VecDeque<Report>,
    pub seq: u64,
    pub link: LinkStatus,
    pub link_since: Instant,
    /// Messages the link has rejected so far, from the latest sample.
    pub rejected: u64,
    /// The monitor's own latest stall: when it was reported, and how late it ran.
    pub stall: Option<(Instant, Duration)>,
    /// Oldest first, spanning about [`RATE_WINDOW`].
    traffic: VecDeque<(Instant, Traffic)>,
    /// Indices into `rows`, filtered and sorted; rebuilt only when stale.
    pub order: Vec<usize>,
    /// Per service: instances UP, instances in all.
    pub groups: HashMap<String, (usize, usize)>,
    /// Per service: the slowest latest round trip of its instances, for a
    /// collapsed service's row.
    pub worst_rtt: HashMap<String, Duration>,
    pub totals: Totals,
    /// Some instance is judged by phi: the PHI column is worth its width.
    pub any_phi: bool,
    stale: bool,
}

impl Fleet {
    fn new(now: Instant) -> Self {
        Self {
            rows: Vec::new(),
            index: HashMap::new(),
            by_id: HashMap::new(),
            log: VecDeque::new(),
            seq: 0,
            link: LinkStatus::Connecting,
            link_since: now,
            rejected: 0,
            stall: None,
            traffic: VecDeque::new(),
            order: Vec::new(),
            groups: HashMap::new(),
            worst_rtt: HashMap::new(),
            totals: Totals::default(),
            any_phi: false,
            stale: true,
        }
    }

    fn row_mut(&mut self, key: &InstanceKey, now: Instant) -> &mut Row {
        let i = self.row_index(key, now);
        &mut self.rows[i]
    }

    /// Where `key`'s row is, added if it has none.
    fn row_index(&mut self, key: &InstanceKey, now: Instant) -> usize {
        match self.index.get(key) {
            Some(&i) => i,
            None => {
                self.rows.push(Row::new(key.clone(), now));
                self.index.insert(key.clone(), self.rows.len() - 1);
                self.stale = true;
                self.rows.len() - 1
            }
        }
    }

    fn remove(&mut self, key: &InstanceKey) {
        if let Some(i) = self.index.remove(key) {
            let removed = self.rows.swap_remove(i);
            if let Some(id) = removed.id {
                self.by_id.remove(&id);
            }
            if let Some(moved) = self.rows.get(i) {
                self.index.insert(moved.key.clone(), i);
                if let Some(id) = moved.id {
                    self.by_id.insert(id, i);
                }
            }
            self.stale = true;
        }
    }

    /// How many ids are known: one per row that has had an echo.
    #[cfg(test)]
    pub fn ids(&self) -> usize {
        self.by_id.len()
    }

    pub fn row(&self, key: &InstanceKey) -> Option<&Row> {
        self.index.get(key).map(|&i| &self.rows[i])
    }

    fn echo(&mut self, echo: &EchoSeen) {
        let i = match self.by_id.get(&echo.id) {
            Some(&i) => i,
            None => {
                // First echo under this id: found by name (or new), and
                // known by id from now on. A new id for a known row (the
                // detector forgot the instance and met it again) replaces
                // the old one.
                let i = self.row_index(&echo.key, echo.at);
                if let Some(old) = self.rows[i].id.replace(echo.id) {
                    self.by_id.remove(&old);
                }
                self.by_id.insert(echo.id, i);
                i
            }
        };
        let row = &mut self.rows[i];
        // Only an echo of a recent ping is a heartbeat for phi.
        if echo.rtt.is_some() {
            if let Some(before) = row.phi_at(echo.at) {
                row.phi_history.push(before as f32);
            }
            row.phi = echo.phi;
        }
        row.last_echo = Some(echo.at);
        if row.last_seq.is_none_or(|last| last < echo.seq) {
            row.last_seq = Some(echo.seq);
        }
        if let Some(rtt) = echo.rtt {
            row.rtts.push(rtt);
        }
    }

    fn apply(&mut self, update: Update, now: Instant) {
        match update {
            Update::Transition(report) => {
                let t = &report.transition;
                if t.key.instance != UNSEEN_INSTANCE {
                    // The expected-service placeholder gives way to a real instance.
                    let placeholder = InstanceKey::new(t.key.service.clone(), UNSEEN_INSTANCE);
                    if self.row(&placeholder).is_some_and(Row::is_placeholder) {
                        self.remove(&placeholder);
                    }
                }
                let row = self.row_mut(&t.key, now);
                if row.history.is_empty() && t.from == State::NeverSeen {
                    // A discovered instance is watched from its first echo,
                    // not from the moment its echo beat its transition here.
                    row.watched_since = now;
                }
                if row.counts_as_up() && !matches!(t.to, State::Up | State::Slow) {
                    row.up_before += now.saturating_duration_since(row.since);
                }
                row.state = t.to;
                row.since = now;
                row.history.push_front(report.clone());
                row.history.truncate(HISTORY_PER_INSTANCE);
                self.log.push_front(report);
                self.log.truncate(LOG_CAPACITY);
                self.stale = true;
            }
            Update::Echoes(echoes) => {
                for echo in echoes.iter() {
                    self.echo(echo);
                }
            }
            Update::PingSent { seq, .. } => {
                self.seq = seq;
                // As the detector counts: the previous ping had a full interval to be answered.
                // A goodbye is a planned shutdown: nothing is missed after it.
                for row in &mut self.rows {
                    if row.state != State::Left && row.last_seq.is_some_and(|last| last + 1 < seq) {
                        row.missed += 1;
                    }
                }
            }
            Update::Link(status) => {
                self.link = status;
                self.link_since = now;
            }
            Update::Stall { lag, .. } => self.stall = Some((now, lag)),
            // The engine forgot them (gone past `forget_after`): their rows
            // go too, or a flood of made-up names would stay on screen and in
            // memory for as long as the dashboard runs.
            Update::Forgotten(keys) => {
                for key in keys.iter() {
                    self.remove(key);
                }
            }
            // The dashboard counts each service's instances itself.
            Update::Service(_) => {}
        }
    }

    fn sample(&mut self, now: Instant, traffic: Traffic) {
        self.rejected = traffic.rejected;
        self.traffic.push_back((now, traffic));
        while self.traffic.len() > 2
            && self
                .traffic
                .get(1)
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= RATE_WINDOW)
        {
            self.traffic.pop_front();
        }
    }

    /// Messages per second in and out, once the samples span a whole
    /// [`RATE_WINDOW`]: the first second's figures are noise.
    pub fn rates(&self) -> Option<(f64, f64)> {
        let (first_at, first) = self.traffic.front()?;
        let (last_at, last) = self.traffic.back()?;
        let span = last_at.saturating_duration_since(*first_at);
        if span < RATE_WINDOW {
            return None;
        }
        let secs = span.as_secs_f64();
        let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        Some((
            per_sec(first.received, last.received),
            per_sec(first.published, last.published),
        ))
    }

    fn rebuild(&mut self, lens: &Lens) {
        let Lens { sort, reversed, .. } = *lens;
        self.groups.values_mut().for_each(|group| *group = (0, 0));
        self.worst_rtt.clear();
        self.totals = Totals::default();
        self.any_phi = self.rows.iter().any(|row| row.phi.is_some());
        for row in &self.rows {
            let group = match self.groups.get_mut(&row.key.service) {
                Some(group) => group,
                None => self.groups.entry(row.key.service.clone()).or_default(),
            };
            group.1 += 1;
            if row.counts_as_up() {
                group.0 += 1;
            }
            if let Some(rtt) = row.last_rtt() {
                let worst = self.worst_rtt.entry(row.key.service.clone()).or_default();
                *worst = (*worst).max(rtt);
            }
            let total = match row.state {
                State::Up => &mut self.totals.up,
                State::Down => &mut self.totals.down,
                State::NeverSeen => &mut self.totals.never_seen,
                State::Suspect => &mut self.totals.suspect,
                State::Flapping => &mut self.totals.flapping,
                State::Stale => &mut self.totals.stale,
                State::Slow => &mut self.totals.slow,
                State::Left => &mut self.totals.left,
            };
            *total += 1;
        }
        self.groups.retain(|_, group| group.1 > 0);

        let rows = &self.rows;
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
                    row.key.service.as_str(),
                    rank,
                    row.key.instance.as_str(),
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
                    let candidate = (state_rank(row.state), i);
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
        self.stale = false;
    }
}

/// How the fleet is looked at: what the order is built from.
struct Lens<'a> {
    sort: Sort,
    reversed: bool,
    /// The name filter, lower case.
    needle: String,
    state_filter: Option<State>,
    not_up_only: bool,
    collapsed: &'a HashSet<String>,
}

impl Lens<'_> {
    /// Whether a row passes the filters: its name contains the needle, it
    /// is in the filter's state, and it is not UP when only trouble is shown.
    fn matches(&self, row: &Row) -> bool {
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

/// Where the dashboard is and what it shows.
#[derive(Debug)]
pub struct App {
    /// The broker as shown in the header, already redacted.
    pub broker: String,
    pub interval: Duration,
    /// The timeout: for this long after a stall of its own loop the monitor
    /// does not judge, and the header says so.
    pub timeout: Duration,
    pub started: Instant,
    /// Simulated services that `x`, `c` and `r` act on.
    pub demo: bool,
    pub log_path: Option<PathBuf>,
    live: Fleet,
    /// While paused: what was on screen, and when it was frozen.
    frozen: Option<(Fleet, Instant)>,
    pub sort: Sort,
    /// The sort's own order turned around (`S`): UP first, Z to A, fastest first.
    pub reversed: bool,
    /// When an order following echoes was last rebuilt; see [`RESORT_EVERY`].
    resorted: Instant,
    pub filter: String,
    /// Only rows in this state, cycled with `f`.
    pub state_filter: Option<State>,
    /// Only rows that are not UP (`t`).
    pub not_up_only: bool,
    /// Services shown as one row each (`Space` on one, `z` for all).
    pub collapsed: HashSet<String>,
    /// The last left click: when, and on which position, for double clicks.
    last_click: Option<(Instant, usize)>,
    /// Instances each service should have, from the settings; fewer UP is degraded.
    pub expected: HashMap<String, u32>,
    pub editing_filter: bool,
    pub screen: Screen,
    pub help: bool,
    /// The first help line shown, when the help is taller than the terminal.
    pub help_scroll: usize,
    /// The terminal's columns and rows, from the last resize.
    size: (u16, u16),
    /// Position in the shown fleet's `order`.
    pub selected: usize,
    /// First row of `order` on screen.
    pub offset: usize,
    /// Follows the instance, not the position, when the order changes.
    selected_key: Option<InstanceKey>,
    /// The user picked a row (moved, clicked, opened one). Until then the
    /// selection stays on the top row, whatever arrives first.
    chosen: bool,
    /// Table rows that fit on screen, from the last resize.
    page: usize,
    pub quit: bool,
    /// Demo commands for the run loop to send.
    pub commands: Vec<FleetCommand>,
    /// From the history store: earlier runs' transitions, and uptimes.
    pub past: Past,
    /// The history store's health, when there is a store.
    pub history: Option<Arc<Health>>,
    /// Heartbeats carry an HMAC (`HEARTBEAT_KEY` is set); the header says when not.
    pub signed: bool,
    /// Draw in colour; false under `NO_COLOR`, where every state is still
    /// told by its word.
    pub colour: bool,
}

impl App {
    pub fn new(broker: String, interval: Duration, expect: &[String], now: Instant) -> Self {
        let mut live = Fleet::new(now);
        for service in expect {
            live.row_mut(&InstanceKey::new(service.clone(), UNSEEN_INSTANCE), now);
        }
        let mut app = Self {
            broker,
            interval,
            timeout: interval * 3,
            started: now,
            demo: false,
            log_path: None,
            live,
            frozen: None,
            sort: Sort::State,
            reversed: false,
            resorted: now,
            filter: String::new(),
            state_filter: None,
            not_up_only: false,
            collapsed: HashSet::new(),
            last_click: None,
            expected: HashMap::new(),
            editing_filter: false,
            screen: Screen::List,
            help: false,
            help_scroll: 0,
            size: (80, 24),
            selected: 0,
            offset: 0,
            selected_key: None,
            chosen: false,
            page: view::list_rows(24),
            quit: false,
            commands: Vec::new(),
            past: Past::default(),
            history: None,
            signed: false,
            colour: true,
        };
        app.refresh();
        app
    }

    /// The fleet on screen: the live one, or the one frozen by `p`.
    pub fn shown(&self) -> &Fleet {
        self.frozen.as_ref().map_or(&self.live, |(fleet, _)| fleet)
    }

    /// The instant the screen is drawn at: `now`, or when it was paused.
    pub fn shown_at(&self, now: Instant) -> Instant {
        self.frozen.as_ref().map_or(now, |(_, at)| *at)
    }

    pub fn paused(&self) -> bool {
        self.frozen.is_some()
    }

    pub fn selected_row(&self) -> Option<&Row> {
        let fleet = self.shown();
        fleet.order.get(self.selected).map(|&i| &fleet.rows[i])
    }

    /// Apply one event. Broker updates only mark the order stale: a burst of
    /// thousands of transitions is sorted once, by [`App::refresh`] before the
    /// next frame, not once per transition.
    pub fn update(&mut self, event: Event, now: Instant) {
        match event {
            Event::Engine(update) => {
                self.live.apply(update, now);
                return;
            }
            Event::Tick(traffic) => {
                self.live.sample(now, traffic);
                if self.sort.follows_echoes()
                    && now.saturating_duration_since(self.resorted) >= RESORT_EVERY
                {
                    self.live.stale = true;
                    self.resorted = now;
                }
                return;
            }
            _ => {}
        }
        // Keys act on the order the user sees.
        self.refresh();
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key, now),
            Event::Mouse(mouse) if self.help => {
                let step = match mouse.kind {
                    MouseEventKind::ScrollDown => WHEEL_STEP,
                    MouseEventKind::ScrollUp => -WHEEL_STEP,
                    _ => 0,
                };
                self.help_scroll = self
                    .help_scroll
                    .saturating_add_signed(step)
                    .min(self.help_max_scroll());
            }
            Event::Mouse(mouse) => match mouse.kind {
                MouseEventKind::ScrollDown => self.move_by(WHEEL_STEP),
                MouseEventKind::ScrollUp => self.move_by(-WHEEL_STEP),
                MouseEventKind::Down(MouseButton::Left) => self.click(mouse.row, now),
                _ => {}
            },
            Event::Resize(columns, rows) => {
                self.size = (columns, rows);
                self.help_scroll = self.help_scroll.min(self.help_max_scroll());
                self.page = view::list_rows(rows);
                self.follow();
            }
            _ => {}
        }
        self.refresh();
    }

    fn key(&mut self, key: KeyEvent, now: Instant) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter | KeyCode::Esc => self.editing_filter = false,
                KeyCode::Backspace => {
                    self.filter.pop();
                    self.restale();
                }
                KeyCode::Char(c) => {
                    self.filter.push(c);
                    self.restale();
                }
                _ => {}
            }
            return;
        }
        if self.help {
            // On a small terminal the help scrolls; other keys wait until it closes.
            let page = self.size.1.saturating_sub(2).max(1) as isize;
            let scroll = match key.code {
                KeyCode::Char('q') => {
                    self.quit = true;
                    return;
                }
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Enter => {
                    self.help = false;
                    return;
                }
                KeyCode::Up | KeyCode::Char('k') => -1,
                KeyCode::Down | KeyCode::Char('j') => 1,
                KeyCode::PageUp => -page,
                KeyCode::PageDown => page,
                KeyCode::Home | KeyCode::Char('g') => isize::MIN,
                KeyCode::End | KeyCode::Char('G') => isize::MAX,
                _ => return,
            };
            self.help_scroll = self
                .help_scroll
                .saturating_add_signed(scroll)
                .min(self.help_max_scroll());
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            // Esc only ever backs out, as in k9s and bottom: pressed once too
            // often, it must not end the monitor.
            KeyCode::Esc => match self.screen {
                Screen::Detail => self.screen = Screen::List,
                Screen::List if !self.filter.is_empty() || self.state_filter.is_some() => {
                    self.filter.clear();
                    self.state_filter = None;
                    self.restale();
                }
                Screen::List => {}
            },
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-(self.page.max(1) as isize)),
            KeyCode::PageDown => self.move_by(self.page.max(1) as isize),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX),
            KeyCode::Enter if self.selected_row().is_some() => {
                self.choose();
                self.screen = Screen::Detail;
            }
            KeyCode::Char('/') => {
                self.screen = Screen::List;
                self.editing_filter = true;
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.restale();
            }
            KeyCode::Char('S') => {
                self.reversed = !self.reversed;
                self.restale();
            }
            KeyCode::Char(' ') => {
                if let Some(service) = self.selected_row().map(|row| row.key.service.clone()) {
                    if !self.collapsed.remove(&service) {
                        self.collapsed.insert(service.clone());
                    }
                    self.select_service(&service);
                }
            }
            KeyCode::Char('z') => {
                let service = self.selected_row().map(|row| row.key.service.clone());
                if self.collapsed.is_empty() {
                    self.collapsed = self.shown().groups.keys().cloned().collect();
                } else {
                    self.collapsed.clear();
                }
                if let Some(service) = service {
                    self.select_service(&service);
                }
            }
            KeyCode::Char('t') => {
                self.not_up_only = !self.not_up_only;
                self.screen = Screen::List;
                self.restale();
            }
            KeyCode::Char('n') => self.next_trouble(),
            KeyCode::Char('f') => {
                // All, then each state in turn, then all again.
                self.state_filter = match self.state_filter {
                    None => Some(State::ALL[0]),
                    Some(state) => {
                        let i = State::ALL.iter().position(|&s| s == state).unwrap_or(0);
                        State::ALL.get(i + 1).copied()
                    }
                };
                self.screen = Screen::List;
                self.restale();
            }
            KeyCode::Char('p') => match self.frozen.take() {
                Some(_) => self.live.stale = true,
                None => self.frozen = Some((self.live.clone(), now)),
            },
            KeyCode::Char('?') => {
                self.help = true;
                self.help_scroll = 0;
            }
            KeyCode::Char(c @ ('x' | 'c' | 'r')) if self.demo => {
                if let Some(row) = self.selected_row().filter(|row| !row.is_placeholder()) {
                    let id = Identity::new(row.key.service.clone(), row.key.instance.clone());
                    self.commands.push(match c {
                        'x' => FleetCommand::Stop(id),
                        'c' => FleetCommand::Crash(id),
                        _ => FleetCommand::Start(id),
                    });
                }
            }
            _ => {}
        }
    }

    fn restale(&mut self) {
        self.live.stale = true;
        if let Some((fleet, _)) = &mut self.frozen {
            fleet.stale = true;
        }
    }

    fn move_by(&mut self, delta: isize) {
        let len = self.shown().order.len();
        if len == 0 {
            return;
        }
        self.selected = self.selected.saturating_add_signed(delta).min(len - 1);
        self.choose();
        self.follow();
    }

    /// The selected row is the user's choice from now on: it is followed
    /// when the order changes.
    fn choose(&mut self) {
        self.chosen = true;
        self.selected_key = self.selected_row().map(|row| row.key.clone());
    }

    /// Whether `key`'s events belong on screen: no filter is on, or its row
    /// passes it.
    pub fn shows(&self, key: &InstanceKey) -> bool {
        if !self.filtered() {
            return true;
        }
        let lens = self.lens();
        self.shown().row(key).is_some_and(|row| lens.matches(row))
    }

    fn help_max_scroll(&self) -> usize {
        view::help_max_scroll(self, self.size.0, self.size.1)
    }

    /// A name or state filter hides some rows.
    pub fn filtered(&self) -> bool {
        !self.filter.is_empty() || self.state_filter.is_some() || self.not_up_only
    }

    fn lens(&self) -> Lens<'_> {
        Lens {
            sort: self.sort,
            reversed: self.reversed,
            needle: self.filter.to_lowercase(),
            state_filter: self.state_filter,
            not_up_only: self.not_up_only,
            collapsed: &self.collapsed,
        }
    }

    /// Whether `service` is shown as one row.
    pub fn is_collapsed(&self, service: &str) -> bool {
        self.collapsed.contains(service)
    }

    /// After a service folds or unfolds: select its first row.
    fn select_service(&mut self, service: &str) {
        self.restale();
        self.refresh();
        let fleet = self.shown();
        if let Some(position) = fleet
            .order
            .iter()
            .position(|&i| fleet.rows[i].key.service == service)
        {
            self.selected = position;
            self.choose();
            self.follow();
        }
    }

    /// Select the next row that is not UP, after the selection, wrapping.
    fn next_trouble(&mut self) {
        let fleet = self.shown();
        let len = fleet.order.len();
        let found = (1..=len)
            .map(|step| (self.selected + step) % len)
            .find(|&position| fleet.rows[fleet.order[position]].state != State::Up);
        if let Some(position) = found {
            self.selected = position;
            self.choose();
            self.follow();
        }
    }

    /// A left click on a table row selects it; a second within
    /// [`DOUBLE_CLICK`] opens it.
    fn click(&mut self, y: u16, now: Instant) {
        if self.screen != Screen::List {
            return;
        }
        let Some(line) = y.checked_sub(view::TABLE_FIRST_ROW) else {
            return;
        };
        let position = self.offset + line as usize;
        if line as usize >= self.page || position >= self.shown().order.len() {
            return;
        }
        let double = self.last_click.is_some_and(|(at, was)| {
            was == position && now.saturating_duration_since(at) <= DOUBLE_CLICK
        });
        self.selected = position;
        self.choose();
        if double {
            self.screen = Screen::Detail;
            self.last_click = None;
        } else {
            self.last_click = Some((now, position));
        }
    }

    /// Rebuild the order if stale, keep the selection on its instance, and
    /// scroll so it stays visible. Call before drawing.
    pub fn refresh(&mut self) {
        if !self.shown().stale {
            return;
        }
        // Field by field, not `self.lens()`: the fleet is borrowed mutably next.
        let lens = Lens {
            sort: self.sort,
            reversed: self.reversed,
            needle: self.filter.to_lowercase(),
            state_filter: self.state_filter,
            not_up_only: self.not_up_only,
            collapsed: &self.collapsed,
        };
        let fleet = match &mut self.frozen {
            Some((fleet, _)) => fleet,
            None => &mut self.live,
        };
        fleet.rebuild(&lens);
        if !self.chosen {
            self.selected = 0;
        } else if let Some(key) = &self.selected_key {
            let at = |position: usize| &fleet.rows[fleet.order[position]].key;
            // Its row, or the one its folded service is shown as.
            if fleet.row(key).is_none() {
                // Its instance is gone (forgotten): a detail view must not
                // go on under the name of another.
                self.screen = Screen::List;
            }
            let found = (0..fleet.order.len())
                .find(|&p| at(p) == key)
                .or_else(|| (0..fleet.order.len()).find(|&p| at(p).service == key.service));
            if let Some(position) = found {
                self.selected = position;
            }
        }
        self.selected = self.selected.min(fleet.order.len().saturating_sub(1));
        self.selected_key = self.selected_row().map(|row| row.key.clone());
        if self.selected_row().is_none() {
            self.screen = Screen::List;
        }
        self.follow();
    }

    fn follow(&mut self) {
        let page = self.page.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + page {
            self.offset = self.selected + 1 - page;
        }
        self.offset = self
            .offset
            .min(self.shown().order.len().saturating_sub(page));
    }
}
