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
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Sparkline, Table as TableWidget,
};
use tokio::time::Instant;

use super::help;
use super::layout::{HEADER_LINES, HELP_LINES, log_lines};
use super::palette::state_style;
use super::state::{App, Screen, Sort};
use super::table::Table;
use super::text::{
    count, ellipsize, ellipsize_middle, fit, fit_by_priority, maybe_millis, millis, short,
};
use crate::detector::{InstanceKey, State, Strength, UNSEEN_INSTANCE};
use crate::fleet::{Fleet, Instance, Mark, StoredUptimes, UptimeFigure};
use crate::history::{Past, StoredTransition, UPTIME_WINDOWS_DAYS, window_name};
use crate::update::Report;

/// Hosted plans such as CloudAMQP's free one cap messages per month here.
pub const MONTHLY_CAP: f64 = 1_000_000.0;
const SPARK_BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Draw `app` over the fleet model `live` (held by the caller for the
/// frame's layout only) at `now`.
pub fn draw(frame: &mut Frame, app: &App, live: &Fleet, now: Instant) {
    let area = frame.area();
    let [header, body, log, help] = Layout::vertical([
        Constraint::Length(HEADER_LINES),
        Constraint::Min(0),
        Constraint::Length(log_lines(area.height)),
        Constraint::Length(HELP_LINES),
    ])
    .areas(area);
    let at = app.shown_at(now);
    let fleet = app.shown(live);
    draw_header(frame, header, app, fleet, at, now);
    match app.screen {
        Screen::List => {
            draw_table(frame, body, app, fleet, at);
            draw_log(frame, log, app, fleet);
        }
        Screen::Detail => match app.selected_row(live) {
            Some(row) => draw_detail(
                frame,
                body.union(log),
                row,
                &app.past,
                live.stored_uptime.get(&row.key),
                live.mark(row, chrono::Utc::now()),
                at,
            ),
            None => draw_table(frame, body, app, fleet, at),
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

fn draw_header(frame: &mut Frame, area: Rect, app: &App, fleet: &Fleet, at: Instant, now: Instant) {
    // What matters most comes first: a narrow terminal cuts the broker's URL,
    // never the news that the link is down or the display paused.
    let mut first = vec![
        Span::styled(" heartbeat ", Style::new().bold().reversed()),
        Span::raw(" "),
    ];
    first.extend(link_spans(fleet, at));
    // In a monitor group: whether this monitor is the one that pages.
    if let Some(group) = crate::status::group_info(fleet, at) {
        let alive = group.members.iter().filter(|m| m.alive).count();
        if group.leading {
            first.push(Span::styled(
                format!("  group {}: leader", group.name),
                Style::new().fg(Color::Green).bold(),
            ));
        } else {
            let leader = group.leader.as_deref().unwrap_or("none");
            first.push(Span::styled(
                format!("  group {}: standby (leader {leader})", group.name),
                Style::new().fg(Color::Cyan),
            ));
        }
        first.push(Span::raw(format!(
            ", {alive} of {} alive",
            group.members.len()
        )));
    }
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

    let table = &app.table;
    let tally = &table.tally;
    let mut second = vec![Span::raw(" ")];
    // Where the selection is, as k9s says it: "20 of 64".
    if !table.order.is_empty() {
        second.push(Span::raw(format!(
            "{} of {} · ",
            app.selected + 1,
            table.order.len()
        )));
    }
    // A filter must never hide rows silently.
    if app.filtered() {
        second.push(Span::styled(
            format!("showing {} of {}", table.order.len(), fleet.rows.len()),
            Style::new().fg(Color::Yellow).bold(),
        ));
        second.push(Span::raw(" · "));
    }
    let down = tally.count(State::Down);
    second.extend([
        Span::styled(
            format!("{} up", tally.count(State::Up)),
            Style::new().fg(Color::Green),
        ),
        Span::raw(" · "),
        Span::styled(
            format!("{down} down"),
            if down > 0 {
                state_style(State::Down)
            } else {
                Style::new()
            },
        ),
    ]);
    for state in [
        State::NeverSeen,
        State::Suspect,
        State::Flapping,
        State::Stale,
        State::Unheard,
        State::Slow,
        State::Left,
    ] {
        let n = tally.count(state);
        if n > 0 {
            second.push(Span::raw(" · "));
            second.push(Span::styled(
                format!("{n} {}", state.label().to_lowercase()),
                state_style(state),
            ));
        }
    }
    // The interval in force: what a budget chose, else the configured one.
    let interval = fleet
        .cost
        .as_deref()
        .map_or(app.interval, |cost| cost.interval);
    second.push(Span::raw(format!(
        " · ping every {} · seq {} · monitor up {}",
        short(interval),
        fleet.seq,
        short(now.saturating_duration_since(app.started))
    )));
    let mut third = vec![];
    match app.rates() {
        Some((inbound, outbound)) => third.push(Span::raw(format!(
            " msg/s in {inbound:.1} out {outbound:.1}"
        ))),
        None => third.push(Span::raw(" msg/s measuring…").dark_gray()),
    }
    // The month is projected from what a round costs at the interval in
    // force (the engine's count), not from a few seconds of traffic: at a
    // long interval a short window holds a ping or none.
    if let Some(cost) = fleet.cost.as_deref() {
        third.push(Span::raw(format!(
            " · ~{}/month ({} a round)",
            count(cost.projected),
            cost.per_round
        )));
        let yellow = Style::new().fg(Color::Yellow);
        match cost.budget {
            Some(budget) => {
                third.push(Span::raw(format!(" · budget {}", count(budget as f64))));
                if !cost.within {
                    third.push(Span::styled(" (over it)", yellow));
                }
            }
            // A hosted plan's cap means something only with a broker:
            // the demo's fleet runs in-process and costs no messages.
            None if cost.projected > MONTHLY_CAP && !app.demo => {
                third.push(Span::styled(" (over a 1M/month plan cap)", yellow));
            }
            None => {}
        }
        if let Some(warning) = cost.warnings.first() {
            third.push(Span::styled(format!(" · {warning}"), yellow));
        }
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
    if app.rejected > 0 {
        third.push(Span::styled(
            format!(" · {} rejected", app.rejected),
            Style::new().fg(Color::Yellow),
        ));
    }
    // A service without our key never comes UP; its name (as its echoes
    // give it) tells the operator where to look.
    if !app.misconfigured.is_empty() {
        const SHOWN: usize = 3;
        let mut names = app.misconfigured[..app.misconfigured.len().min(SHOWN)].join(", ");
        if app.misconfigured.len() > SHOWN {
            names.push_str(&format!(" +{}", app.misconfigured.len() - SHOWN));
        }
        third.push(Span::styled(
            format!(" · not signed with our key: {names}"),
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

/// Which columns fit in `width`, in display order, each with its width.
/// The PHI column only when some instance is judged by phi. With
/// `need_instance` (some service has several instances) INSTANCE stays,
/// since without it their rows look the same: when SERVICE, INSTANCE and
/// STATE do not fit whole, the two names share what STATE leaves. STATE
/// is `state` wide (wider than its own width when a row on screen has a
/// mark beside its state, `DOWN silenced`).
fn visible_columns(
    width: u16,
    with_phi: bool,
    need_instance: bool,
    state: u16,
) -> Vec<(&'static Column, u16)> {
    let columns: Vec<&'static Column> = COLUMNS
        .iter()
        .filter(|c| with_phi || c.col != Col::Phi)
        .collect();
    let width_of = |c: &Column| {
        if c.col == Col::State {
            state.max(c.width)
        } else {
            c.width
        }
    };
    let essential = |c: &Column| matches!(c.col, Col::Service | Col::Instance | Col::State);
    if need_instance {
        let needed: u16 = columns
            .iter()
            .filter(|c| essential(c))
            .map(|c| width_of(c) + 1)
            .sum::<u16>()
            - 1;
        if needed > width {
            let state = COLUMNS
                .iter()
                .find(|c| c.col == Col::State)
                .expect("listed");
            let names = width.saturating_sub(width_of(state) + 2);
            let instance = names / 2;
            return columns
                .into_iter()
                .filter(|c| essential(c))
                .map(|c| match c.col {
                    Col::Service => (c, names - instance),
                    Col::Instance => (c, instance),
                    _ => (c, width_of(c)),
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
            (width_of(c) as usize, priority)
        })
        .collect();
    fit_by_priority(&items, width as usize, 1)
        .into_iter()
        .map(|i| (columns[i], width_of(columns[i])))
        .collect()
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App, fleet: &Fleet, at: Instant) {
    let table = &app.table;
    let need_instance = table.tally.services.values().any(|count| count.all > 1);
    let rows_on_screen = area.height.saturating_sub(1) as usize;
    let end = (app.offset + rows_on_screen).min(table.order.len());
    // Marks (silenced, maintenance, draining) are read at one wall time a
    // frame, for the rows on screen, before the layout: STATE widens to
    // show them whole.
    let wall = chrono::Utc::now();
    let marks: Vec<Option<&'static str>> = (app.offset..end)
        .map(|position| {
            let row = &fleet.rows[table.order[position]];
            fleet.mark(row, wall).map(|m| m.label())
        })
        .collect();
    let state_width = (app.offset..end)
        .zip(&marks)
        .filter_map(|(position, mark)| {
            let label = fleet.rows[table.order[position]].state.label();
            mark.map(|mark| (label.len() + 1 + mark.len()) as u16)
        })
        .max()
        .unwrap_or(0);
    let columns = visible_columns(area.width, table.any_phi, need_instance, state_width);
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
    if table.order.is_empty() {
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
            TableWidget::new(Vec::<TableRow>::new(), widths).header(header),
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
    let shows_percentiles = columns
        .iter()
        .any(|(c, _)| matches!(c.col, Col::P50 | Col::P99));
    let rows = (app.offset..end).map(|position| {
        let index = table.order[position];
        let row = &fleet.rows[index];
        let mark = marks[position - app.offset];
        // The service name and its count only on the first row of its group.
        let first_of_group =
            position == 0 || fleet.rows[table.order[position - 1]].key.service != row.key.service;
        // Sorting the RTT window is the costliest part of a row: once, and only if shown.
        let percentiles = shows_percentiles.then(|| row.percentiles()).flatten();
        let cells = columns
            .iter()
            .map(|&(c, width)| {
                cell(
                    (c, width as usize),
                    row,
                    percentiles,
                    table,
                    (first_of_group, app.is_collapsed(&row.key.service)),
                    mark,
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
    frame.render_widget(TableWidget::new(rows, widths).header(header), area);
}

fn sort_arrow(app: &App) -> &'static str {
    if app.reversed { "↑" } else { "↓" }
}

/// Phi as a short number; `-` in fixed mode, `>99` past any sane threshold.
fn phi_text(phi: Option<f64>) -> String {
    match phi {
        None => "-".to_string(),
        Some(p) if p > 99.0 => ">99".to_string(),
        // Phi just after an echo can be a hair below zero, and one that
        // rounds to zero from below prints as "-0.0": never show either.
        Some(p) => format!("{:.1}", p.max(0.0) + 0.0),
    }
}

fn cell<'a>(
    (column, width): (&Column, usize),
    row: &'a Instance,
    percentiles: Option<(Duration, Duration)>,
    table: &Table,
    (first, collapsed): (bool, bool),
    mark: Option<&'static str>,
    at: Instant,
) -> Cell<'a> {
    match column.col {
        Col::Service if first => {
            let counted = table
                .tally
                .services
                .get(&row.key.service)
                .copied()
                .unwrap_or_default();
            let of = counted.of();
            if of > 1 || counted.expected.is_some() || collapsed {
                // Alive as the model counts it (State::counts_alive): fewer
                // than it should have is degraded; none is DOWN as a whole.
                let style = match counted.strength() {
                    Strength::Down => Style::new().fg(Color::Red).bold().reversed(),
                    Strength::Degraded => Style::new().fg(Color::Yellow).bold().reversed(),
                    Strength::Full => Style::new(),
                };
                // A long name gives way; the count stays whole.
                let count = format!("{}/{of}", counted.alive);
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
            let all = table
                .tally
                .services
                .get(&row.key.service)
                .map_or(1, |count| count.all);
            let noun = if all == 1 { "instance" } else { "instances" };
            Cell::from(ellipsize(&format!("▸ {all} {noun}"), width)).dark_gray()
        }
        Col::Rtt if collapsed => {
            Cell::from(maybe_millis(table.worst_rtt.get(&row.key.service).copied()))
        }
        Col::Instance if row.key.instance == UNSEEN_INSTANCE => Cell::from("-").dark_gray(),
        Col::Instance => Cell::from(ellipsize_middle(&row.key.instance, width)),
        // Alerts held (the help names the marks); the state is unchanged.
        Col::State => match mark {
            Some(mark) => Cell::from(Line::from(vec![
                Span::styled(row.state.label(), state_style(row.state)),
                Span::raw(" "),
                Span::raw(mark.to_lowercase()).dark_gray(),
            ])),
            None => Cell::from(row.state.label()).style(state_style(row.state)),
        },
        Col::For => Cell::from(short(at.saturating_duration_since(row.since))),
        Col::LastEcho => Cell::from(last_echo(row, at)),
        Col::Rtt => Cell::from(maybe_millis(row.last_rtt())),
        Col::Phi => {
            // Phi means something while the instance is judged alive.
            let phi = row.phi_at(at).filter(|_| row.counts_alive());
            let over = phi.zip(row.phi).is_some_and(|(p, m)| p >= m.threshold);
            let text = Cell::from(phi_text(phi));
            if over { text.yellow() } else { text }
        }
        Col::P50 => Cell::from(maybe_millis(percentiles.map(|p| p.0))),
        Col::P99 => Cell::from(maybe_millis(percentiles.map(|p| p.1))),
        Col::Trend => Cell::from(spark_text(row, width)).cyan(),
        Col::Uptime => Cell::from(
            row.uptime(at)
                .and_then(|u| u.ratio)
                .map_or("-".to_string(), |u| format!("{:.1}%", u * 100.0)),
        ),
        Col::Missed => Cell::from(row.missed.to_string()),
    }
}

/// The latest round trips as block characters, scaled to the row's own range.
fn spark_text(row: &Instance, width: usize) -> String {
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

/// ` · 24h 99.90% (4% judged) · 7d 99.99% · 30d -` from the store (as the
/// fleet model keeps it), or nothing without one.
fn stored_uptimes(stored: Option<&StoredUptimes>) -> String {
    let Some(figures) = stored else {
        return String::new();
    };
    let mut text = String::new();
    for (days, figure) in UPTIME_WINDOWS_DAYS.iter().zip(figures) {
        text.push_str(&format!(
            " · {} {}",
            window_name(*days),
            uptime_text(*figure)
        ));
    }
    text
}

/// The latest transitions; under a filter, only those of the rows it shows.
fn draw_log(frame: &mut Frame, area: Rect, app: &App, fleet: &Fleet) {
    if area.height == 0 {
        return;
    }
    let rows = area.height.saturating_sub(1) as usize;
    let width = area.width as usize;
    let lines: Vec<Line> = fleet
        .log
        .iter()
        .filter(|report| app.shows(&report.transition.key, fleet))
        .map(|report| log_line(report, true))
        .chain(
            app.past
                .transitions
                .iter()
                .filter(|t| {
                    app.shows(
                        &InstanceKey::new(t.service.as_str(), t.instance.as_str()),
                        fleet,
                    )
                })
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

fn draw_detail(
    frame: &mut Frame,
    area: Rect,
    row: &Instance,
    past: &Past,
    stored: Option<&StoredUptimes>,
    mark: Option<Mark>,
    at: Instant,
) {
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
            // What holds its alerts back, and until when (the state is unchanged).
            Span::raw(mark.map_or(String::new(), |mark| mark_text(&mark))).dark_gray(),
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
            uptime_text(row.uptime(at)),
            stored_uptimes(stored),
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

/// Uptime with its coverage: `99.50% of 80% judged`; just the figure when
/// the whole time was judged.
fn uptime_text(uptime: Option<UptimeFigure>) -> String {
    match uptime {
        Some(UptimeFigure {
            ratio: Some(ratio),
            coverage,
        }) if coverage < 0.9995 => {
            format!("{:.2}% ({:.0}% judged)", ratio * 100.0, coverage * 100.0)
        }
        Some(UptimeFigure {
            ratio: Some(ratio), ..
        }) => format!("{:.2}%", ratio * 100.0),
        Some(_) => "- (nothing judged yet)".to_string(),
        None => "-".to_string(),
    }
}

/// Under FLAPPING or STALE the shown state hides the present: say whether
/// it answers right now, judged by the last echo against the ping interval.
/// ` · silenced until 22:14:05 UTC: deploy`, as the detail view says it.
fn mark_text(mark: &Mark) -> String {
    let why = match mark {
        Mark::Draining { .. } => "",
        Mark::Silenced { reason, .. } | Mark::Maintenance { reason, .. } => reason,
    };
    format!(
        " · {} until {} UTC{}{why}",
        mark.label().to_lowercase(),
        mark.until().format("%H:%M:%S"),
        if why.is_empty() { "" } else { ": " }
    )
}

fn answering_now(row: &Instance, at: Instant) -> Line<'static> {
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

fn draw_help_overlay(frame: &mut Frame, area: Rect, app: &App) {
    let (popup, lines) = help::geometry(app.log_path.as_deref(), app.demo, area);
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

fn last_echo(row: &Instance, at: Instant) -> String {
    row.last_echo.map_or("never".to_string(), |t| {
        format!("{} ago", short(at.saturating_duration_since(t)))
    })
}

#[cfg(test)]
mod tests {
    use super::phi_text;

    #[test]
    fn phi_never_prints_minus_zero() {
        // -log10(1.0) is -0.0: phi right after an echo, in the demo's rows.
        for phi in [-0.0, -0.04, -1e-12, 0.0, 0.04] {
            assert_eq!(phi_text(Some(phi)), "0.0", "{phi:?}");
        }
        assert_eq!(phi_text(Some(0.06)), "0.1");
        assert_eq!(phi_text(Some(120.0)), ">99");
        assert_eq!(phi_text(None), "-");
    }
}
