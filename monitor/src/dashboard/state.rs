//! The dashboard's state and how every [`Event`] changes it. No I/O and no
//! clock reads: the caller passes `now`, and the fleet model (the live
//! [`Fleet`], held by the caller for the frame), so every rule is tested
//! with explicit instants. The dashboard keeps no model of its own: only
//! what the user chose (sort, filters, selection, folds, a paused copy).
//! Keys never end the process; they set [`App::quit`] and the run loop returns.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};
use orchestrator_lib::Identity;
use tokio::time::Instant;

use super::event::{Event, Traffic};
pub use super::table::Sort;
use super::table::{Lens, Table};
use super::{help, layout};
use crate::demo::FleetCommand;
use crate::detector::{InstanceKey, State};
use crate::fleet::{Fleet, Instance};
use crate::history::{Health, Past};

/// Rates are averaged over this much of the recent past, so one burst does
/// not make the monthly projection jump.
const RATE_WINDOW: Duration = Duration::from_secs(5);
const WHEEL_STEP: isize = 3;
/// Two clicks on one row within this long open it.
const DOUBLE_CLICK: Duration = Duration::from_millis(400);
/// Orders that follow figures every echo changes (RTT, last seen) are
/// rebuilt at most this often, so rows do not jump under the reader's eyes.
pub const RESORT_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    List,
    Detail,
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
    /// While paused: a copy of the model as it was, and when it was frozen.
    frozen: Option<(Fleet, Instant)>,
    /// The order and counts on screen, built from the shown fleet.
    pub table: Table,
    /// Traffic samples, oldest first, spanning about [`RATE_WINDOW`].
    traffic: VecDeque<(Instant, Traffic)>,
    /// Messages the link has rejected so far, from the latest sample.
    pub rejected: u64,
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
    /// Services whose echoes or goodbyes came unsigned or signed with
    /// another key, by the name their bodies give (a claim, for the
    /// operator: see `LinkStats::unverified_by_service`), in name order.
    pub misconfigured: Vec<String>,
    /// Draw in colour; false under `NO_COLOR`, where every state is still
    /// told by its word.
    pub colour: bool,
}

impl App {
    pub fn new(broker: String, interval: Duration, now: Instant) -> Self {
        Self {
            broker,
            interval,
            timeout: interval * 3,
            started: now,
            demo: false,
            log_path: None,
            frozen: None,
            table: Table::default(),
            traffic: VecDeque::new(),
            rejected: 0,
            sort: Sort::State,
            reversed: false,
            resorted: now,
            filter: String::new(),
            state_filter: None,
            not_up_only: false,
            collapsed: HashSet::new(),
            last_click: None,
            editing_filter: false,
            screen: Screen::List,
            help: false,
            help_scroll: 0,
            size: (80, 24),
            selected: 0,
            offset: 0,
            selected_key: None,
            chosen: false,
            page: layout::list_rows(24),
            quit: false,
            commands: Vec::new(),
            past: Past::default(),
            history: None,
            signed: false,
            misconfigured: Vec::new(),
            colour: true,
        }
    }

    /// The fleet on screen: the live model, or the copy frozen by `p`.
    pub fn shown<'a>(&'a self, live: &'a Fleet) -> &'a Fleet {
        self.frozen.as_ref().map_or(live, |(fleet, _)| fleet)
    }

    /// The instant the screen is drawn at: `now`, or when it was paused.
    pub fn shown_at(&self, now: Instant) -> Instant {
        self.frozen.as_ref().map_or(now, |(_, at)| *at)
    }

    pub fn paused(&self) -> bool {
        self.frozen.is_some()
    }

    pub fn selected_row<'a>(&'a self, live: &'a Fleet) -> Option<&'a Instance> {
        let fleet = self.shown(live);
        self.table
            .order
            .get(self.selected)
            .and_then(|&i| fleet.rows.get(i))
    }

    /// Take one event. The model has already taken an engine update (the
    /// fleet's feed applies it before any view hears of it); here it only
    /// wakes the screen, and the order is rebuilt at most once a frame, by
    /// [`App::refresh`], however many updates came.
    pub fn update(&mut self, event: Event, live: &Fleet, now: Instant) {
        match event {
            Event::Engine(_) => return,
            Event::Tick(traffic) => {
                self.sample(now, traffic);
                if self.sort.follows_echoes()
                    && now.saturating_duration_since(self.resorted) >= RESORT_EVERY
                {
                    self.table.stale = true;
                    self.resorted = now;
                }
                return;
            }
            _ => {}
        }
        // Keys act on the order the user sees.
        self.refresh(live);
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key, live, now),
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
                MouseEventKind::ScrollDown => self.move_by(WHEEL_STEP, live),
                MouseEventKind::ScrollUp => self.move_by(-WHEEL_STEP, live),
                MouseEventKind::Down(MouseButton::Left) => self.click(mouse.row, live, now),
                _ => {}
            },
            Event::Resize(columns, rows) => {
                self.size = (columns, rows);
                self.help_scroll = self.help_scroll.min(self.help_max_scroll());
                self.page = layout::list_rows(rows);
                self.follow();
            }
            _ => {}
        }
        self.refresh(live);
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

    fn key(&mut self, key: KeyEvent, live: &Fleet, now: Instant) {
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
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1, live),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1, live),
            KeyCode::PageUp => self.move_by(-(self.page.max(1) as isize), live),
            KeyCode::PageDown => self.move_by(self.page.max(1) as isize, live),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN, live),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX, live),
            KeyCode::Enter if self.selected_row(live).is_some() => {
                self.choose(live);
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
                if let Some(service) = self.selected_row(live).map(|row| row.key.service.clone()) {
                    if !self.collapsed.remove(&service) {
                        self.collapsed.insert(service.clone());
                    }
                    self.select_service(&service, live);
                }
            }
            KeyCode::Char('z') => {
                let service = self.selected_row(live).map(|row| row.key.service.clone());
                if self.collapsed.is_empty() {
                    self.collapsed = self.table.tally.services.keys().cloned().collect();
                } else {
                    self.collapsed.clear();
                }
                if let Some(service) = service {
                    self.select_service(&service, live);
                }
            }
            KeyCode::Char('t') => {
                self.not_up_only = !self.not_up_only;
                self.screen = Screen::List;
                self.restale();
            }
            KeyCode::Char('n') => self.next_trouble(live),
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
            KeyCode::Char('p') => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => Some((live.clone(), now)),
                };
                self.table.stale = true;
            }
            KeyCode::Char('?') => {
                self.help = true;
                self.help_scroll = 0;
            }
            KeyCode::Char(c @ ('x' | 'c' | 'r')) if self.demo => {
                // A row's names came through the wire's name rule: always `Ok`.
                if let Some(row) = self.selected_row(live).filter(|row| !row.is_placeholder())
                    && let Ok(id) = Identity::new(row.key.service.clone(), row.key.instance.clone())
                {
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
        self.table.stale = true;
    }

    fn move_by(&mut self, delta: isize, live: &Fleet) {
        let len = self.table.order.len();
        if len == 0 {
            return;
        }
        self.selected = self.selected.saturating_add_signed(delta).min(len - 1);
        self.choose(live);
        self.follow();
    }

    /// The selected row is the user's choice from now on: it is followed
    /// when the order changes.
    fn choose(&mut self, live: &Fleet) {
        self.chosen = true;
        self.selected_key = self.selected_row(live).map(|row| row.key.clone());
    }

    /// Whether `key`'s events belong on screen: no filter is on, or its row
    /// passes it.
    pub fn shows(&self, key: &InstanceKey, live: &Fleet) -> bool {
        if !self.filtered() {
            return true;
        }
        let lens = self.lens();
        self.shown(live)
            .row(key)
            .is_some_and(|row| lens.matches(row))
    }

    fn help_max_scroll(&self) -> usize {
        help::max_scroll(
            self.log_path.as_deref(),
            self.demo,
            self.size.0,
            self.size.1,
        )
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
    fn select_service(&mut self, service: &str, live: &Fleet) {
        self.restale();
        self.refresh(live);
        let fleet = self.shown(live);
        if let Some(position) = self
            .table
            .order
            .iter()
            .position(|&i| fleet.rows[i].key.service == service)
        {
            self.selected = position;
            self.choose(live);
            self.follow();
        }
    }

    /// Select the next row that is not UP, after the selection, wrapping.
    fn next_trouble(&mut self, live: &Fleet) {
        let fleet = self.shown(live);
        let order = &self.table.order;
        let len = order.len();
        let found = (1..=len)
            .map(|step| (self.selected + step) % len)
            .find(|&position| fleet.rows[order[position]].state != State::Up);
        if let Some(position) = found {
            self.selected = position;
            self.choose(live);
            self.follow();
        }
    }

    /// A left click on a table row selects it; a second within
    /// [`DOUBLE_CLICK`] opens it.
    fn click(&mut self, y: u16, live: &Fleet, now: Instant) {
        if self.screen != Screen::List {
            return;
        }
        let Some(line) = y.checked_sub(layout::TABLE_FIRST_ROW) else {
            return;
        };
        let position = self.offset + line as usize;
        if line as usize >= self.page || position >= self.table.order.len() {
            return;
        }
        let double = self.last_click.is_some_and(|(at, was)| {
            was == position && now.saturating_duration_since(at) <= DOUBLE_CLICK
        });
        self.selected = position;
        self.choose(live);
        if double {
            self.screen = Screen::Detail;
            self.last_click = None;
        } else {
            self.last_click = Some((now, position));
        }
    }

    /// Rebuild the order if the shown fleet or the view changed, keep the
    /// selection on its instance, and scroll so it stays visible. Call
    /// before drawing, with the model held for the frame.
    pub fn refresh(&mut self, live: &Fleet) {
        if !self.table.outdated(self.shown(live)) {
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
        let fleet = self.frozen.as_ref().map_or(live, |(fleet, _)| fleet);
        self.table.rebuild(fleet, &lens);
        let order = &self.table.order;
        if !self.chosen {
            self.selected = 0;
        } else if let Some(key) = &self.selected_key {
            let at = |position: usize| &fleet.rows[order[position]].key;
            // Its row, or the one its folded service is shown as.
            if fleet.row(key).is_none() {
                // Its instance is gone (forgotten): a detail view must not
                // go on under the name of another.
                self.screen = Screen::List;
            }
            let found = (0..order.len())
                .find(|&p| at(p) == key)
                .or_else(|| (0..order.len()).find(|&p| at(p).service == key.service));
            if let Some(position) = found {
                self.selected = position;
            }
        }
        self.selected = self.selected.min(order.len().saturating_sub(1));
        self.selected_key = self.selected_row(live).map(|row| row.key.clone());
        if self.selected_row(live).is_none() {
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
        self.offset = self.offset.min(self.table.order.len().saturating_sub(page));
    }
}
