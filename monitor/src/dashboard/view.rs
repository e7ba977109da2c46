//! Drawing the dashboard from [`App`] and an instant, and nothing else: no
//! clock reads, no I/O, so every screen is tested in a `TestBackend`.
//!
//! Only the rows on screen are laid out, so ten thousand services cost what a
//! screenful does. Columns are dropped by priority when the terminal is narrow.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Sparkline, Table};
use tokio::time::Instant;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::state::{App, Fleet, Row, Screen, Sort};
use std::collections::HashMap;

use crate::detector::{InstanceKey, State, UNSEEN_INSTANCE};
use crate::engine::Report;
use crate::history::{Past, StoredTransition, UPTIME_WINDOWS_DAYS};

const HEADER_LINES: u16 = 3;
const HELP_LINES: u16 = 1;
/// The screen line of the table's first row (under the header and the
/// table's titles), where a click selects the row at `offset`.
pub const TABLE_FIRST_ROW: u16 = HEADER_LINES + 1;
/// Hosted plans such as CloudAMQP's free one cap messages per month here.
pub const MONTHLY_CAP: f64 = 1_000_000.0;
const SECONDS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;
const SPARK_BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The event log pane's height, title included; none on short terminals.
fn log_lines(height: u16) -> u16 {
    if height < 16 {
        0
    } else {
        (height / 4).clamp(4, 10)
    }
}

/// How many service rows fit in the table at this terminal height.
pub fn list_rows(height: u16) -> usize {
    // The table's own header line is the 1.
    height.saturating_sub(HEADER_LINES + 1 + log_lines(height) + HELP_LINES) as usize
}

pub fn draw(frame: &mut Frame, app: &App, now: Instant) {
    let area = frame.area();
    let [header, body, log, help] = Layout::vertical([
        Constraint::Length(HEADER_LINES),
        Constraint::Min(0),
        Constraint::Length(log_lines(area.height)),
        Constraint::Length(HELP_LINES),
    ])
    .areas(area);
    let at = app.shown_at(now);
    draw_header(frame, header, app, at, now);
    match app.screen {
        Screen::List => {
            draw_table(frame, body, app, at);
            draw_log(frame, log, app);
        }
        Screen::Detail => match app.selected_row() {
            Some(row) => draw_detail(frame, body.union(log), row, &app.past, at),
            None => draw_table(frame, body, app, at),
        },
    }
    draw_help_line(frame, help, app);
    if app.help {
        draw_help_overlay(frame, area, app);
    }
    if !app.colour {
        // NO_COLOR: colours go, emphasis (bold, reversed selection) stays.
        for cell in frame.buffer_mut().content.iter_mut() {
            cell.set_fg(Color::Reset).set_bg(Color::Reset);
        }
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App, at: Instant, now: Instant) {
    let fleet = app.shown();
    // What matters most comes first: a narrow terminal cuts the broker's URL,
    // never the news that the link is down or the display paused.
    let mut first = vec![
        Span::styled(" heartbeat ", Style::new().bold().reversed()),
        Span::raw(" "),
    ];
    first.extend(link_spans(fleet, at));
    if app.paused() {
        first.push(Span::styled(
            "  ⏸ PAUSED (p resumes)",
            Style::new().fg(Color::Yellow).bold(),
        ));
    }
    // For a timeout after its own loop stalled, the monitor judges nobody.
    if let Some((stalled_at, lag)) = fleet.stall
        && at.saturating_duration_since(stalled_at) < app.timeout
    {
        first.push(Span::styled(
            format!(
                "  ⚠ monitor stalled {:.1}s; judging paused",
                lag.as_secs_f64()
            ),
            Style::new().fg(Color::Yellow).bold(),
        ));
    }
    first.push(Span::raw(format!("  {}", app.broker)));

    let totals = fleet.totals;
    let mut second = vec![Span::raw(" ")];
    // A filter must never hide rows silently.
    if app.filtered() {
        second.push(Span::styled(
            format!("showing {} of {}", fleet.order.len(), fleet.rows.len()),
            Style::new().fg(Color::Yellow).bold(),
        ));
        second.push(Span::raw(" · "));
    }
    second.extend([
        Span::styled(format!("{} up", totals.up), Style::new().fg(Color::Green)),
        Span::raw(" · "),
        Span::styled(
            format!("{} down", totals.down),
            if totals.down > 0 {
                Style::new().fg(Color::Red).bold()
            } else {
                Style::new()
            },
        ),
    ]);
    for (n, state) in [
        (totals.suspect, State::Suspect),
        (totals.flapping, State::Flapping),
        (totals.stale, State::Stale),
        (totals.slow, State::Slow),
        (totals.left, State::Left),
        (totals.never_seen, State::NeverSeen),
    ] {
        if n > 0 {
            second.push(Span::raw(" · "));
            second.push(Span::styled(
                format!("{n} {}", state.label().to_lowercase()),
                state_style(state),
            ));
        }
    }
    second.push(Span::raw(format!(
        " · ping every {} · seq {} · monitor up {}",
        short(app.interval),
        fleet.seq,
        short(now.saturating_duration_since(app.started))
    )));
    let mut third = vec![];
    match fleet.rates() {
        Some((inbound, outbound)) => {
            let monthly = (inbound + outbound) * SECONDS_PER_MONTH;
            third.push(Span::raw(format!(
                " msg/s in {inbound:.1} out {outbound:.1} · ~{}/month",
                count(monthly)
            )));
            if monthly > MONTHLY_CAP {
                third.push(Span::styled(
                    " (over a 1M/month plan cap)",
                    Style::new().fg(Color::Yellow),
                ));
            }
        }
        None => third.push(Span::raw(" msg/s measuring…").dark_gray()),
    }
    if app
        .history
        .as_ref()
        .is_some_and(|h| !h.reachable.load(std::sync::atomic::Ordering::Relaxed))
    {
        third.push(Span::styled(
            " · history store unreachable",
            Style::new().fg(Color::Red).bold(),
        ));
    }
    // Bad bodies are dropped and counted; a climbing count is worth a look.
    if fleet.rejected > 0 {
        third.push(Span::styled(
            format!(" · {} rejected", fleet.rejected),
            Style::new().fg(Color::Yellow),
        ));
    }
    // Without a key anyone who can publish to the broker can fake an echo:
    // the operator should know that what is shown is taken on trust.
    if !app.signed && !app.demo {
        third.push(Span::styled(
            " · heartbeats unsigned (set HEARTBEAT_KEY)",
            Style::new().fg(Color::Yellow),
        ));
    }
    // Cut lines end with `…`, so a narrow terminal never passes a cut word for a whole one.
    let width = area.width as usize;
    frame.render_widget(
        Paragraph::new(vec![
            fit(Line::from(first), width),
            fit(Line::from(second), width),
            fit(Line::from(third), width),
        ]),
        area,
    );
}

fn link_spans(fleet: &Fleet, at: Instant) -> Vec<Span<'static>> {
    use orchestrator_lib::plumbing::LinkStatus::*;
    match &fleet.link {
        Connecting => vec![Span::styled(
            "◌ connecting…",
            Style::new().fg(Color::Yellow),
        )],
        Connected => vec![Span::styled("● connected", Style::new().fg(Color::Green))],
        Reconnecting {
            attempt,
            retry_in,
            error,
        } => {
            let left = retry_in.saturating_sub(at.saturating_duration_since(fleet.link_since));
            vec![Span::styled(
                format!(
                    "◌ reconnecting ({}), attempt {attempt}, next try in {:.1}s",
                    short_error(error),
                    left.as_secs_f64()
                ),
                Style::new().fg(Color::Yellow).bold(),
            )]
        }
        Blocked { reason } => vec![Span::styled(
            format!("■ blocked by the broker: {reason}"),
            Style::new().fg(Color::Red).bold(),
        )],
        Failed(error) => vec![Span::styled(
            format!("✖ {error}"),
            Style::new().fg(Color::Red).bold(),
        )],
        Closed => vec![Span::raw("closed")],
    }
}

/// Why the last attempt failed, in a few words for the header; the log
/// file has the whole message.
pub fn short_error(error: &str) -> String {
    let lower = error.to_lowercase();
    let known = [
        ("connection refused", "refused"),
        ("failed to lookup address", "unknown host"),
        ("name or service not known", "unknown host"),
        ("no address associated", "unknown host"),
        ("temporary failure in name resolution", "unknown host"),
        ("tls", "TLS failed"),
        ("certificate", "TLS failed"),
        ("no answer within", "no answer"),
        ("timed out", "timed out"),
        ("connection reset", "connection reset"),
        ("broken pipe", "connection lost"),
        (
            "held by another connection",
            "queue held by another process",
        ),
        ("access_refused", "login refused"),
        ("network is unreachable", "network unreachable"),
        ("no route to host", "no route to host"),
    ];
    match known.iter().find(|(needle, _)| lower.contains(needle)) {
        Some((_, short)) => short.to_string(),
        None => ellipsize(error.trim_start_matches("IO error: "), 32),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Service,
    Instance,
    State,
    For,
    LastEcho,
    Rtt,
    Phi,
    P50,
    P99,
    Trend,
    Uptime,
    Missed,
}

/// A table column: what it shows, its title and width, and its priority
/// (lower stays longer as the terminal narrows).
struct Column {
    col: Col,
    title: &'static str,
    width: u16,
    priority: u8,
}

const fn column(col: Col, title: &'static str, width: u16, priority: u8) -> Column {
    Column {
        col,
        title,
        width,
        priority,
    }
}

const COLUMNS: [Column; 12] = [
    column(Col::Service, "SERVICE", 16, 0),
    column(Col::Instance, "INSTANCE", 14, 1),
    column(Col::State, "STATE", 10, 0),
    column(Col::For, "FOR", 7, 2),
    column(Col::LastEcho, "LAST ECHO", 10, 3),
    column(Col::Rtt, "RTT", 8, 4),
    column(Col::Phi, "PHI", 5, 6),
    column(Col::P50, "P50", 8, 7),
    column(Col::P99, "P99", 8, 6),
    column(Col::Trend, "TREND", 10, 9),
    column(Col::Uptime, "UPTIME", 7, 5),
    column(Col::Missed, "MISSED", 6, 8),
];

/// The items that fit in `width` when each costs its width plus `gap` and
/// gaps fall only between items: taken by priority (lowest first, and that
/// one always), returned as indices in their own order.
fn fit_by_priority(items: &[(usize, u8)], width: usize, gap: usize) -> Vec<usize> {
    let mut by_priority: Vec<usize> = (0..items.len()).collect();
    by_priority.sort_by_key(|&i| items[i].1);
    let mut used = 0;
    let mut shown = Vec::new();
    for i in by_priority {
        let cost = items[i].0 + gap;
        if used + cost <= width + gap || shown.is_empty() {
            used += cost;
            shown.push(i);
        }
    }
    shown.sort_unstable();
    shown
}

/// Which columns fit in `width`, in display order, each with its width.
/// The PHI column only when some instance is judged by phi. With
/// `need_instance` (some service has several instances) INSTANCE stays,
/// since without it their rows look the same: when SERVICE, INSTANCE and
/// STATE do not fit whole, the two names share what STATE leaves.
fn visible_columns(width: u16, with_phi: bool, need_instance: bool) -> Vec<(&'static Column, u16)> {
    let columns: Vec<&'static Column> = COLUMNS
        .iter()
        .filter(|c| with_phi || c.col != Col::Phi)
        .collect();
    let essential = |c: &Column| matches!(c.col, Col::Service | Col::Instance | Col::State);
    if need_instance {
        let needed: u16 = columns
            .iter()
            .filter(|c| essential(c))
            .map(|c| c.width + 1)
            .sum::<u16>()
            - 1;
        if needed > width {
            let state = COLUMNS
                .iter()
                .find(|c| c.col == Col::State)
                .expect("listed");
            let names = width.saturating_sub(state.width + 2);
            let instance = names / 2;
            return columns
                .into_iter()
                .filter(|c| essential(c))
                .map(|c| match c.col {
                    Col::Service => (c, names - instance),
                    Col::Instance => (c, instance),
                    _ => (c, c.width),
                })
                .collect();
        }
    }
    let items: Vec<(usize, u8)> = columns
        .iter()
        .map(|c| {
            let priority = if need_instance && c.col == Col::Instance {
                0
            } else {
                c.priority
            };
            (c.width as usize, priority)
        })
        .collect();
    fit_by_priority(&items, width as usize, 1)
        .into_iter()
        .map(|i| (columns[i], columns[i].width))
        .collect()
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App, at: Instant) {
    let fleet = app.shown();
    let need_instance = fleet.groups.values().any(|&(_, all)| all > 1);
    let columns = visible_columns(area.width, fleet.any_phi, need_instance);
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|&(_, width)| Constraint::Length(width))
        .collect();
    // The sorted column says so, and which way: ↓ the sort's own order, ↑ reversed.
    let sorted = match app.sort {
        Sort::State => Col::State,
        Sort::Name => Col::Service,
        Sort::Rtt => Col::Rtt,
        Sort::LastSeen => Col::LastEcho,
    };
    let header = TableRow::new(columns.iter().map(|&(c, width)| {
        let title = if c.col == sorted {
            format!("{}{}", c.title, sort_arrow(app))
        } else {
            c.title.to_string()
        };
        ellipsize(&title, width as usize)
    }))
    .style(Style::new().bold().underlined());
    let rows_on_screen = area.height.saturating_sub(1) as usize;
    if fleet.order.is_empty() {
        let text = if !app.filter.is_empty() {
            format!(
                "  nothing matches the filter \"{}\" (Esc clears it)",
                app.filter
            )
        } else if let Some(state) = app.state_filter.filter(|_| !fleet.rows.is_empty()) {
            format!(
                "  nothing is {} now (f shows the next state)",
                state.label()
            )
        } else if app.not_up_only && !fleet.rows.is_empty() {
            "  everything is UP (t shows every row)".to_string()
        } else if fleet.link == orchestrator_lib::plumbing::LinkStatus::Connected {
            "  waiting for the first echo… services appear here as they answer pings".to_string()
        } else {
            "  no link to the broker yet (see above); services appear once there is".to_string()
        };
        frame.render_widget(
            Table::new(Vec::<TableRow>::new(), widths).header(header),
            area,
        );
        let below_header = Rect {
            y: area.y + 1,
            height: area.height.saturating_sub(1),
            ..area
        };
        frame.render_widget(
            fit(Line::from(text), area.width as usize).dark_gray(),
            below_header,
        );
        return;
    }
    let end = (app.offset + rows_on_screen).min(fleet.order.len());
    let shows_percentiles = columns
        .iter()
        .any(|(c, _)| matches!(c.col, Col::P50 | Col::P99));
    let rows = (app.offset..end).map(|position| {
        let index = fleet.order[position];
        let row = &fleet.rows[index];
        // The service name and its count only on the first row of its group.
        let first_of_group =
            position == 0 || fleet.rows[fleet.order[position - 1]].key.service != row.key.service;
        // Sorting the RTT window is the costliest part of a row: once, and only if shown.
        let percentiles = shows_percentiles.then(|| row.percentiles()).flatten();
        let cells = columns
            .iter()
            .map(|&(c, width)| {
                cell(
                    (c, width as usize),
                    row,
                    percentiles,
                    (fleet, &app.expected),
                    (first_of_group, app.is_collapsed(&row.key.service)),
                    at,
                )
            })
            .collect::<Vec<_>>();
        let mut table_row = TableRow::new(cells);
        if position == app.selected {
            table_row = table_row.style(Style::new().add_modifier(Modifier::REVERSED));
        }
        table_row
    });
    frame.render_widget(Table::new(rows, widths).header(header), area);
}

fn sort_arrow(app: &App) -> &'static str {
    if app.reversed { "↑" } else { "↓" }
}

/// Red is for outages only: LEFT (a planned shutdown) is grey, and what
/// needs a look but is not an outage is yellow or magenta.
pub fn state_style(state: State) -> Style {
    match state {
        State::Up => Style::new().fg(Color::Green).bold(),
        State::Slow => Style::new().fg(Color::Yellow),
        State::Suspect => Style::new().fg(Color::Yellow).bold(),
        State::Down => Style::new().fg(Color::Red).bold(),
        State::Flapping => Style::new().fg(Color::Magenta).bold(),
        State::Stale => Style::new().fg(Color::Blue).bold(),
        State::Left | State::NeverSeen => Style::new().fg(Color::DarkGray),
    }
}

/// Phi as a short number; `-` in fixed mode, `>99` past any sane threshold.
fn phi_text(phi: Option<f64>) -> String {
    match phi {
        None => "-".to_string(),
        Some(p) if p > 99.0 => ">99".to_string(),
        // Phi just after an echo can be a hair below zero: never "-0.0".
        Some(p) => format!("{:.1}", p.max(0.0)),
    }
}

fn cell<'a>(
    (column, width): (&Column, usize),
    row: &'a Row,
    percentiles: Option<(Duration, Duration)>,
    (fleet, expected): (&Fleet, &HashMap<String, u32>),
    (first, collapsed): (bool, bool),
    at: Instant,
) -> Cell<'a> {
    match column.col {
        Col::Service if first => {
            let (up, all) = fleet
                .groups
                .get(&row.key.service)
                .copied()
                .unwrap_or((0, 1));
            let expected = expected.get(&row.key.service).copied();
            let of = expected.map_or(all, |e| e as usize);
            if of > 1 || expected.is_some() || collapsed {
                // Degraded: fewer UP than it should have; none UP is DOWN as a whole.
                let style = if up == 0 {
                    Style::new().fg(Color::Red).bold().reversed()
                } else if up < of {
                    Style::new().fg(Color::Yellow).bold().reversed()
                } else {
                    Style::new()
                };
                // A long name gives way; the count stays whole.
                let count = format!("{up}/{of}");
                let name = ellipsize(&row.key.service, width.saturating_sub(count.len() + 1));
                Cell::from(Line::from(vec![
                    Span::raw(format!("{name} ")),
                    Span::styled(count, style),
                ]))
            } else {
                Cell::from(ellipsize(&row.key.service, width))
            }
        }
        Col::Service => Cell::from("  ·"),
        // A collapsed service: its row is its most urgent instance's.
        Col::Instance if collapsed => {
            let (_, all) = fleet
                .groups
                .get(&row.key.service)
                .copied()
                .unwrap_or((0, 1));
            let noun = if all == 1 { "instance" } else { "instances" };
            Cell::from(ellipsize(&format!("▸ {all} {noun}"), width)).dark_gray()
        }
        Col::Rtt if collapsed => {
            Cell::from(maybe_millis(fleet.worst_rtt.get(&row.key.service).copied()))
        }
        Col::Instance if row.key.instance == UNSEEN_INSTANCE => Cell::from("-").dark_gray(),
        Col::Instance => Cell::from(ellipsize_middle(&row.key.instance, width)),
        Col::State => Cell::from(row.state.label()).style(state_style(row.state)),
        Col::For => Cell::from(short(at.saturating_duration_since(row.since))),
        Col::LastEcho => Cell::from(last_echo(row, at)),
        Col::Rtt => Cell::from(maybe_millis(row.last_rtt())),
        Col::Phi => {
            let phi = row
                .phi_at(at)
                .filter(|_| row.counts_as_up() || row.state == State::Suspect);
            let over = phi.zip(row.phi).is_some_and(|(p, m)| p >= m.threshold);
            let text = Cell::from(phi_text(phi));
            if over { text.yellow() } else { text }
        }
        Col::P50 => Cell::from(maybe_millis(percentiles.map(|p| p.0))),
        Col::P99 => Cell::from(maybe_millis(percentiles.map(|p| p.1))),
        Col::Trend => Cell::from(spark_text(row, width)).cyan(),
        Col::Uptime => Cell::from(
            row.uptime(at)
                .map_or("-".to_string(), |u| format!("{:.1}%", u * 100.0)),
        ),
        Col::Missed => Cell::from(row.missed.to_string()),
    }
}

/// The latest round trips as block characters, scaled to the row's own range.
fn spark_text(row: &Row, width: usize) -> String {
    let recent: Vec<Duration> = row.rtts.iter().rev().take(width).rev().collect();
    let Some(&max) = recent.iter().max() else {
        return String::new();
    };
    let min = recent.iter().min().copied().unwrap_or(max);
    let span = (max - min).as_secs_f64();
    recent
        .iter()
        .map(|rtt| {
            let level = if span > 0.0 {
                ((*rtt - min).as_secs_f64() / span * 7.0).round() as usize
            } else {
                0
            };
            SPARK_BARS[level.min(7)]
        })
        .collect()
}

fn log_line(report: &Report, with_name: bool) -> Line<'static> {
    let t = &report.transition;
    let mut spans = vec![Span::raw(format!(
        " {} ",
        report.at.format("%H:%M:%S%.3fZ")
    ))];
    if with_name {
        spans.push(Span::raw(format!("{} ", t.key)));
    }
    spans.push(Span::styled(t.from.label(), state_style(t.from)));
    spans.push(Span::raw(" → "));
    spans.push(Span::styled(t.to.label(), state_style(t.to)));
    spans.push(Span::raw(format!("  {}", t.reason)));
    if let Some(rtt) = t.rtt {
        spans.push(Span::raw(format!(" (rtt {})", millis(rtt))).dark_gray());
    }
    Line::from(spans)
}

/// A transition from the history store: an earlier run's, shown dimmed
/// below this run's own.
fn past_line(t: &StoredTransition, with_name: bool) -> Line<'static> {
    let label = |code: &str| code.replace('_', " ").to_uppercase();
    // Stored as codes: coloured as the live states are.
    let style = |code: &str| {
        State::ALL
            .iter()
            .find(|s| s.code() == code)
            .map_or(Style::new().fg(Color::Red), |s| state_style(*s))
    };
    let at = chrono::DateTime::from_timestamp_millis(t.at_ms).unwrap_or_default();
    let mut spans = vec![Span::raw(format!(" {} ", at.format("%m-%d %H:%M:%SZ"))).dark_gray()];
    if with_name {
        spans.push(Span::raw(format!("{}/{} ", t.service, t.instance)).dark_gray());
    }
    spans.push(Span::styled(label(&t.from), style(&t.from)));
    spans.push(Span::raw(" → ").dark_gray());
    spans.push(Span::styled(label(&t.to), style(&t.to)));
    spans.push(Span::raw(format!("  {} (earlier run)", t.reason.replace('_', " "))).dark_gray());
    Line::from(spans)
}

/// ` · 24h 99.90% · 7d 99.99% · 30d -` from the store, or nothing without one.
fn stored_uptimes(past: &Past, key: &crate::detector::InstanceKey) -> String {
    let Some(ratios) = past.uptime.get(key) else {
        return String::new();
    };
    let mut text = String::new();
    for (days, ratio) in UPTIME_WINDOWS_DAYS.iter().zip(ratios) {
        let window = if *days == 1 {
            "24h".to_string()
        } else {
            format!("{days}d")
        };
        let value = ratio.map_or("-".to_string(), |r| format!("{:.2}%", r * 100.0));
        text.push_str(&format!(" · {window} {value}"));
    }
    text
}

/// The latest transitions; under a filter, only those of the rows it shows.
fn draw_log(frame: &mut Frame, area: Rect, app: &App) {
    if area.height == 0 {
        return;
    }
    let rows = area.height.saturating_sub(1) as usize;
    let width = area.width as usize;
    let lines: Vec<Line> = app
        .shown()
        .log
        .iter()
        .filter(|report| app.shows(&report.transition.key))
        .map(|report| log_line(report, true))
        .chain(
            app.past
                .transitions
                .iter()
                .filter(|t| app.shows(&InstanceKey::new(t.service.as_str(), t.instance.as_str())))
                .map(|t| past_line(t, true)),
        )
        .take(rows)
        .map(|line| fit(line, width))
        .collect();
    let title = if app.filtered() {
        " events of the rows shown, newest first "
    } else {
        " events, newest first "
    };
    let block = Block::new().borders(Borders::TOP).title(title);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_detail(frame: &mut Frame, area: Rect, row: &Row, past: &Past, at: Instant) {
    let tall = area.height >= 18;
    let [summary, chart, phi_chart, history] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(if area.height >= 14 { 6 } else { 4 }),
        Constraint::Length(if tall && row.phi.is_some() { 5 } else { 0 }),
        Constraint::Min(0),
    ])
    .areas(area);
    let percentiles = row.percentiles();
    let lines = vec![
        Line::from(vec![
            Span::styled(format!(" {} ", row.key), Style::new().bold()),
            Span::styled(row.state.label(), state_style(row.state)),
            Span::raw(format!(
                " for {}",
                short(at.saturating_duration_since(row.since))
            )),
        ]),
        Line::from(format!(
            " last echo {} · rtt {} · p50 {} · p99 {}",
            last_echo(row, at),
            maybe_millis(row.last_rtt()),
            maybe_millis(percentiles.map(|p| p.0)),
            maybe_millis(percentiles.map(|p| p.1)),
        )),
        Line::from(format!(
            " uptime {}{} · missed pings {} · watched for {}{}",
            row.uptime(at)
                .map_or("-".to_string(), |u| format!("{:.2}%", u * 100.0)),
            stored_uptimes(past, &row.key),
            row.missed,
            short(at.saturating_duration_since(row.watched_since)),
            row.phi.map_or(String::new(), |m| format!(
                " · phi {} (threshold {:.1})",
                phi_text(row.phi_at(at)),
                m.threshold
            )),
        )),
        answering_now(row, at),
    ];
    let lines: Vec<Line> = lines
        .into_iter()
        .map(|line| fit(line, summary.width as usize))
        .collect();
    frame.render_widget(Paragraph::new(lines), summary);

    let data: Vec<u64> = row.rtts.micros().collect();
    let max = row.rtts.iter().max();
    let block = Block::new().borders(Borders::TOP).title(format!(
        " round trip, last {} echoes (top {}) ",
        row.rtts.len(),
        maybe_millis(max)
    ));
    // The newest samples on the right, as many as fit.
    let bars = chart.width as usize;
    let skip = data.len().saturating_sub(bars);
    frame.render_widget(
        Sparkline::default()
            .block(block)
            .data(&data[skip..])
            .style(Style::new().fg(Color::Cyan)),
        chart,
    );

    if phi_chart.height > 0 {
        // Hundredths, so the sparkline's integer bars keep the shape.
        let data: Vec<u64> = row
            .phi_history
            .iter()
            .map(|p| (p.clamp(0.0, 99.0) * 100.0) as u64)
            .collect();
        let top = f64::from(row.phi_history.iter().fold(0.0f32, f32::max));
        let block = Block::new().borders(Borders::TOP).title(format!(
            " phi before each echo, last {} (top {}) ",
            row.phi_history.len(),
            phi_text(Some(top))
        ));
        let skip = data.len().saturating_sub(phi_chart.width as usize);
        frame.render_widget(
            Sparkline::default()
                .block(block)
                .data(&data[skip..])
                .style(Style::new().fg(Color::Magenta)),
            phi_chart,
        );
    }

    let mut earlier = past.of(&row.key).peekable();
    let lines: Vec<Line> = if row.history.is_empty() && earlier.peek().is_none() {
        vec![Line::from("  no transitions yet").dark_gray()]
    } else {
        row.history
            .iter()
            .map(|report| log_line(report, false))
            .chain(earlier.map(|t| past_line(t, false)))
            .take(history.height.saturating_sub(1) as usize)
            .map(|line| fit(line, history.width as usize))
            .collect()
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .title(" transitions, newest first ");
    frame.render_widget(Paragraph::new(lines).block(block), history);
}

/// Under FLAPPING or STALE the shown state hides the present: say whether
/// it answers right now, judged by the last echo against the ping interval.
fn answering_now(row: &Row, at: Instant) -> Line<'static> {
    match row.last_echo {
        None => Line::from(" answering now: never heard from").dark_gray(),
        Some(last) => {
            let ago = at.saturating_duration_since(last);
            let recent = !row.rtts.is_empty() && ago <= ANSWERING_WITHIN;
            if recent {
                Line::from(format!(" answering now: yes, last echo {} ago", short(ago))).green()
            } else {
                Line::from(format!(" answering now: no, silent for {}", short(ago))).yellow()
            }
        }
    }
}

/// An echo this recent means the instance is answering.
const ANSWERING_WITHIN: Duration = Duration::from_secs(3);

fn draw_help_line(frame: &mut Frame, area: Rect, app: &App) {
    let line = if app.editing_filter {
        let line = Line::from(vec![
            Span::styled(" filter: ", Style::new().bold()),
            Span::raw(app.filter.clone()),
            Span::raw("▏"),
            Span::raw("  Enter or Esc keeps it · Backspace erases").dark_gray(),
        ]);
        fit(line, area.width as usize)
    } else {
        Line::from(help_text(app, area.width)).reversed()
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The key hints that fit, most useful first, shown in a fixed order.
fn help_text(app: &App, width: u16) -> String {
    let filter = if app.filter.is_empty() {
        "/ filter".to_string()
    } else {
        format!("/ filter [{}]", app.filter)
    };
    let sort = format!("s sort:{}{}", app.sort.label(), sort_arrow(app));
    let state_filter = match app.state_filter {
        None => "f state".to_string(),
        Some(state) => format!("f state:{}", state.label()),
    };
    let demo = if app.demo {
        "x stop c crash r revive"
    } else {
        ""
    };
    // (text, priority): lower priorities survive narrower terminals.
    let hints: Vec<(&str, u8)> = [
        ("q quit", 0),
        ("↑↓ move", 6),
        ("⏎ detail", 3),
        (filter.as_str(), 4),
        (sort.as_str(), 5),
        (state_filter.as_str(), 6),
        (if app.paused() { "p resume" } else { "p pause" }, 7),
        (demo, 2),
        ("n next trouble", 8),
        ("? help", 1),
    ]
    .into_iter()
    .filter(|(text, _)| !text.is_empty())
    .collect();
    let costs: Vec<(usize, u8)> = hints
        .iter()
        .map(|(text, priority)| (text.chars().count(), *priority))
        .collect();
    // One leading space, two between hints.
    let shown = fit_by_priority(&costs, (width as usize).saturating_sub(1), 2);
    let text: Vec<&str> = shown.iter().map(|&i| hints[i].0).collect();
    format!(" {}", text.join("  "))
}

/// Every key, with what it does. The demo's own keys only in the demo:
/// elsewhere they do nothing, and a help that lists them misleads.
pub fn keys(demo: bool) -> Vec<(&'static str, &'static str)> {
    let mut keys = vec![
        ("q  Ctrl+C", "quit and restore the terminal"),
        (
            "Esc",
            "back: leave the detail view, the filter or this help",
        ),
        ("↑ ↓  j k", "move the selection"),
        ("PgUp PgDn", "move a page"),
        ("g G  Home End", "first or last row"),
        ("mouse", "wheel scrolls, click selects, double click opens"),
        ("n", "jump to the next row that is not UP"),
        ("Enter", "details of the selected instance"),
        ("/", "filter by service or instance name"),
        ("s", "sort: state (DOWN first), name, rtt p50, last seen"),
        ("S", "reverse the sort (↓ its own order, ↑ reversed)"),
        ("f", "show one state only: each in turn, then all"),
        ("t", "show only what is not UP, or every row again"),
        ("Space", "fold the service into one row, or unfold it"),
        ("z", "fold every service, or unfold them all"),
        ("p", "pause the display (monitoring goes on); p resumes"),
    ];
    if demo {
        keys.push(("x c r", "stop, crash, revive the selected service"));
    }
    keys.push(("?", "this help; Esc or ? closes it"));
    keys
}

/// The help box's widest: two states a line fit in it.
const HELP_WIDTH: u16 = 72;

/// The help's lines for a box `inner` columns wide: the log file first, so
/// that it is seen without scrolling, then the keys, then the states. On a
/// narrow terminal a key's description goes on a line of its own.
fn help_lines(app: &App, inner: u16) -> Vec<Line<'static>> {
    let inner = inner as usize;
    let mut lines = Vec::new();
    match &app.log_path {
        Some(path) => {
            // Wrapped, not cut: the path is worth reading whole.
            let text: Vec<char> = format!(" logs: {}", path.display()).chars().collect();
            for chunk in text.chunks(inner.max(1)) {
                lines.push(Line::from(chunk.iter().collect::<String>()));
            }
        }
        None => lines.push(Line::from(" logs: off (the log file could not be created)")),
    }
    lines.push(Line::from(""));
    let wide = inner >= 50;
    for (key, what) in keys(app.demo) {
        if wide {
            // The description wraps under itself, past the keys' column.
            for (i, part) in wrap(what, inner.saturating_sub(15)).into_iter().enumerate() {
                let key = if i == 0 { key } else { "" };
                lines.push(Line::from(vec![
                    Span::styled(format!(" {key:<14}"), Style::new().bold()),
                    Span::raw(part),
                ]));
            }
        } else {
            lines.push(Line::from(Span::styled(
                format!(" {key}"),
                Style::new().bold(),
            )));
            for part in wrap(what, inner.saturating_sub(4)) {
                lines.push(Line::from(format!("    {part}")));
            }
        }
    }
    lines.push(Line::from(""));
    let per_line = if inner >= 70 { 2 } else { 1 };
    for group in STATE_HELP.chunks(per_line) {
        let mut spans = Vec::new();
        for (i, (state, what)) in group.iter().enumerate() {
            spans.push(Span::styled(
                format!(" {:<10} ", state.label()),
                state_style(*state),
            ));
            // Two to a line fill the 70 columns exactly: 12 + 23 + 12 + 23.
            let last = i + 1 == group.len();
            spans.push(Span::raw(if last {
                what.to_string()
            } else {
                format!("{what:<23}")
            }));
        }
        lines.push(Line::from(spans));
    }
    lines.into_iter().map(|line| fit(line, inner)).collect()
}

/// Where the help box goes on a terminal of `area`, and how many lines it has.
fn help_geometry(app: &App, area: Rect) -> (Rect, Vec<Line<'static>>) {
    let width = area.width.min(HELP_WIDTH);
    let lines = help_lines(app, width.saturating_sub(2));
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    (popup, lines)
}

/// How far the help can scroll on a terminal this size: 0 when it fits.
pub fn help_max_scroll(app: &App, width: u16, height: u16) -> usize {
    let (popup, lines) = help_geometry(app, Rect::new(0, 0, width, height));
    lines
        .len()
        .saturating_sub(popup.height.saturating_sub(2) as usize)
}

fn draw_help_overlay(frame: &mut Frame, area: Rect, app: &App) {
    let (popup, lines) = help_geometry(app, area);
    let max = lines
        .len()
        .saturating_sub(popup.height.saturating_sub(2) as usize);
    let scroll = app.help_scroll.min(max);
    // On a small terminal the box scrolls, and says so.
    let title = if max == 0 {
        " keys ".to_string()
    } else {
        format!(" keys ↑↓ {}/{} ", scroll + 1, max + 1)
    };
    let title = fit(Line::from(title), popup.width.saturating_sub(2) as usize);
    let shown: Vec<Line> = lines.into_iter().skip(scroll).collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(shown).block(Block::bordered().title(title)),
        popup,
    );
}

/// `text` in lines of at most `width` columns, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if line.width() + 1 + word.width() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// `line` cut to `width` columns; when something is cut, its last column
/// becomes `…`, so a reader knows there was more.
pub fn fit(line: Line<'static>, width: usize) -> Line<'static> {
    if line.width() <= width {
        return line;
    }
    let mut spans = Vec::new();
    let mut used = 0;
    for span in line.spans {
        let w = span.width();
        if used + w < width {
            used += w;
            spans.push(span);
            continue;
        }
        // This span crosses the edge: keep what fits before a `…`.
        let room = width.saturating_sub(used + 1);
        spans.push(Span::styled(
            format!("{}…", take_columns(&span.content, room)),
            span.style,
        ));
        break;
    }
    Line::from(spans).style(line.style)
}

/// The longest start of `text` at most `columns` wide.
fn take_columns(text: &str, columns: usize) -> &str {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        let w = c.width().unwrap_or(0);
        if used + w > columns {
            return &text[..i];
        }
        used += w;
    }
    text
}

/// `text` in `width` columns, its end replaced by `…` when cut.
pub fn ellipsize(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    format!("{}…", take_columns(text, width.saturating_sub(1)))
}

/// `text` in `width` columns, its middle replaced by `…` when cut: instance
/// ids differ at their ends as often as at their starts (`orders-1`, `orders-2`).
pub fn ellipsize_middle(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    if width < 3 {
        return ellipsize(text, width);
    }
    let tail_columns = (width - 1) / 2;
    let head = take_columns(text, width - 1 - tail_columns);
    // The tail: the shortest end of `text` at most `tail_columns` wide.
    let mut used = 0;
    let mut from = text.len();
    for (i, c) in text.char_indices().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > tail_columns {
            break;
        }
        used += w;
        from = i;
    }
    format!("{head}…{}", &text[from..])
}

/// What each state means, for the help overlay.
pub const STATE_HELP: [(State, &str); 8] = [
    (State::Up, "answers on time"),
    (State::Slow, "answers, but slowly"),
    (State::Suspect, "missed a deadline"),
    (State::Down, "missed several in a row"),
    (State::Left, "said goodbye (planned)"),
    (State::Flapping, "changes state too often"),
    (State::Stale, "monitor cannot judge"),
    (State::NeverSeen, "expected, never heard"),
];

/// A duration as people read it at a glance: `850ms`, `12s`, `4m05s`, `3h12m`, `2d04h`.
pub fn short(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn last_echo(row: &Row, at: Instant) -> String {
    row.last_echo.map_or("never".to_string(), |t| {
        format!("{} ago", short(at.saturating_duration_since(t)))
    })
}

fn maybe_millis(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), millis)
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

fn count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}
