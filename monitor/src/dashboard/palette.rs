//! Colours: each state's [tone](crate::detector::Tone) as a terminal colour.
//! The only place the dashboard turns a state into a colour; what a state
//! means is decided next to the state itself.

use ratatui::style::{Color, Style};

use crate::detector::{State, Tone};

/// A state's colour: its [tone](State::tone), in terminal colours. Red is
/// for outages only: LEFT (a planned shutdown) is grey, and what needs a
/// look but is not an outage is yellow or magenta.
pub fn state_style(state: State) -> Style {
    match state.tone() {
        Tone::Good => Style::new().fg(Color::Green).bold(),
        Tone::Caution => Style::new().fg(Color::Yellow),
        Tone::Warning => Style::new().fg(Color::Yellow).bold(),
        Tone::Critical => Style::new().fg(Color::Red).bold(),
        Tone::Unsteady => Style::new().fg(Color::Magenta).bold(),
        Tone::Blind => Style::new().fg(Color::Blue).bold(),
        Tone::Quiet => Style::new().fg(Color::DarkGray),
    }
}
