//! Where things go on the screen: the heights both the drawing and the
//! state (clicks, paging) need, so neither imports the other for them.

pub const HEADER_LINES: u16 = 3;

pub const HELP_LINES: u16 = 1;

/// The screen line of the table's first row (under the header and the
/// table's titles), where a click selects the row at `offset`.
pub const TABLE_FIRST_ROW: u16 = HEADER_LINES + 1;

/// The event log pane's height, title included; none on short terminals.
pub fn log_lines(height: u16) -> u16 {
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
