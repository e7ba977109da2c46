//! The help overlay's content: every key, every state, and the log file;
//! laid out for a box of a given width. Needs nothing of the dashboard's
//! state but where the log goes and whether it is the demo.

use std::path::Path;

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::palette::state_style;
use super::text::{fit, wrap};
use crate::detector::State;

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
fn help_lines(log_path: Option<&Path>, demo: bool, inner: u16) -> Vec<Line<'static>> {
    let inner = inner as usize;
    let mut lines = Vec::new();
    match log_path {
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
    for (key, what) in keys(demo) {
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
    for (mark, what) in MARK_HELP {
        for (i, part) in wrap(what, inner.saturating_sub(15)).into_iter().enumerate() {
            let mark = if i == 0 { mark } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!(" {mark:<14}"), Style::new().dark_gray()),
                Span::raw(part),
            ]));
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
pub fn geometry(log_path: Option<&Path>, demo: bool, area: Rect) -> (Rect, Vec<Line<'static>>) {
    let width = area.width.min(HELP_WIDTH);
    let lines = help_lines(log_path, demo, width.saturating_sub(2));
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
pub fn max_scroll(log_path: Option<&Path>, demo: bool, width: u16, height: u16) -> usize {
    let (popup, lines) = geometry(log_path, demo, Rect::new(0, 0, width, height));
    lines
        .len()
        .saturating_sub(popup.height.saturating_sub(2) as usize)
}

/// The marks beside a state (the fleet model's `Mark`): alerts are held,
/// detection goes on.
pub const MARK_HELP: [(&str, &str); 3] = [
    (
        "draining",
        "said goodbye, promised to be back (no alert until it is late)",
    ),
    (
        "silenced",
        "a silence holds its alerts (monitor silence list)",
    ),
    ("maintenance", "a [[maintenance]] window holds its alerts"),
];

/// What each state means, for the help overlay.
pub const STATE_HELP: [(State, &str); 9] = [
    (State::Up, "answers on time"),
    (State::Slow, "answers, but slowly"),
    (State::Suspect, "missed a deadline"),
    (State::Down, "missed several in a row"),
    (State::Left, "said goodbye (planned)"),
    (State::Flapping, "changes state too often"),
    (State::Stale, "monitor cannot judge"),
    (State::Unheard, "DOWN here, not group"),
    (State::NeverSeen, "expected, never heard"),
];
