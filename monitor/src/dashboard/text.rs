//! Text cut to fit the terminal, and figures as people read them at a glance.

use std::time::Duration;

use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The items that fit in `width` when each costs its width plus `gap` and
/// gaps fall only between items: taken by priority (lowest first, and that
/// one always), returned as indices in their own order.
pub fn fit_by_priority(items: &[(usize, u8)], width: usize, gap: usize) -> Vec<usize> {
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

/// `text` in lines of at most `width` columns, broken at spaces.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
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
pub fn take_columns(text: &str, columns: usize) -> &str {
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

pub fn maybe_millis(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), millis)
}

pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

pub fn count(n: f64) -> String {
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
