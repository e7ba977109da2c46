//! Everything the dashboard reacts to, in one type, so the state has a single
//! entry point and tests can replay any sequence of inputs.

use crossterm::event::{KeyEvent, MouseEvent};

use crate::update::Update;

/// The broker traffic counters at one instant; rates are differences of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub published: u64,
    pub received: u64,
    /// Bodies the link refused (too large, not JSON, a bad name...), in all.
    pub rejected: u64,
}

#[derive(Debug, Clone)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    /// The terminal's new size, columns then rows.
    Resize(u16, u16),
    /// The redraw timer, carrying a fresh sample of the traffic counters.
    Tick(Traffic),
    Engine(Update),
}

impl Event {
    /// Whether the screen should be drawn now: everything but the steady
    /// stream of echoes and pings, which the next tick shows.
    pub fn is_urgent(&self) -> bool {
        !matches!(
            self,
            Event::Engine(Update::Echoes(_) | Update::PingSent { .. })
        )
    }
}
