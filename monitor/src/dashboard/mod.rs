//! The full-screen terminal dashboard.
//!
//! It keeps no model of the fleet: it reads the one model
//! ([`crate::fleet`]) at frame time, under a read lock held for the
//! frame's layout only (never while writing to the terminal).
//!
//! - `event`: the one [`Event`] type keys, ticks and engine updates flow into.
//! - `state`: [`App`], changed only by events; keys set flags, never exit.
//! - `table`: the table's order (sort, filters, folds; natural name order).
//! - `view`: draws an [`App`] over the model at an instant; no I/O.
//! - `help`: the help overlay's content; `layout`: screen heights;
//!   `palette`: a state's tone as a terminal colour; `text`: cutting and figures.
//!
//! This module is the I/O edge: the terminal, its input stream and the
//! redraw timer. The terminal is restored on every way out, panics included.

mod event;
mod help;
mod layout;
mod palette;
mod state;
mod table;
#[cfg(test)]
mod tests;
mod text;
mod view;

use std::io::{self, Stdout};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use orchestrator_lib::plumbing::LinkStats;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use event::{Event, Traffic};
pub use state::{App, Screen, Sort};
pub use view::draw;

use crate::demo::FleetCommand;
use crate::fleet::Shared;
use crate::history::Past;
use crate::update::Update;

/// Ages, rates and round trips are redrawn once a second, as top, htop and
/// bottom do: drawing the table is most of the dashboard's cost (about a
/// millisecond a frame at 160×45), and more frames only blur figures that
/// change once a second anyway. A key or a verdict redraws at once.
const FRAME: Duration = Duration::from_secs(1);
/// Updates taken before a frame is drawn, so a flood cannot starve the screen.
const MAX_BATCH: usize = 10_000;

/// Run the dashboard until the user quits, `shutdown` fires, or the engine
/// stops. Quitting cancels `shutdown`, which stops the monitoring too.
pub async fn run(
    mut app: App,
    fleet: Shared,
    mut updates: mpsc::Receiver<Update>,
    stats: Arc<LinkStats>,
    demo: Option<mpsc::Sender<FleetCommand>>,
    mut past: Option<mpsc::Receiver<Past>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut terminal = TerminalGuard::enter()?;
    // crossterm's stream blocks one thread of its own on the terminal until
    // a key comes; polling it with a timeout instead cost more than drawing
    // (20 wake-ups a second, 40 µs each). Dropping the stream stops it.
    let mut input = EventStream::new();
    let size = terminal.terminal.size()?;
    app.update(
        Event::Resize(size.width, size.height),
        &fleet.read(),
        Instant::now(),
    );

    let mut frames = tokio::time::interval(FRAME);
    frames.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let traffic = || Traffic {
        published: stats.published(),
        received: stats.received(),
        rejected: stats.rejected(),
    };
    let outcome = loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = frames.tick() => {
                // Of several brokers, the header names the one in use.
                if let Some(in_use) = stats.broker_in_use() {
                    app.broker = in_use;
                }
                app.misconfigured = misconfigured(&stats);
                Event::Tick(traffic())
            }
            key = input.next() => match key {
                Some(Ok(event)) => match terminal_event(event) {
                    Some(event) => event,
                    None => continue,
                },
                Some(Err(error)) => break Err(error),
                None => break Ok(()),
            },
            update = updates.recv() => match update {
                Some(update) => Event::Engine(update),
                // The engine stopped; its outcome is the caller's to report.
                None => break Ok(()),
            },
            restored = async { past.as_mut().expect("guarded").recv().await }, if past.is_some() => {
                match restored {
                    Some(restored) => app.past = restored,
                    None => past = None,
                }
                continue;
            }
        };
        let mut redraw = event.is_urgent();
        let now = Instant::now();
        app.update(event, &fleet.read(), now);
        // Whatever else is already queued only asks for the same frame.
        for _ in 0..MAX_BATCH {
            let Ok(update) = updates.try_recv() else {
                break;
            };
            redraw |= Event::Engine(update).is_urgent();
        }
        for command in app.commands.drain(..) {
            if let Some(demo) = &demo {
                let _ = demo.try_send(command);
            }
        }
        if app.quit {
            shutdown.cancel();
            break Ok(());
        }
        if redraw && let Err(error) = terminal.frame(&mut app, &fleet) {
            break Err(error);
        }
    };
    drop(input);
    drop(terminal);
    outcome
}

/// Raw mode, the alternate screen and mouse capture, undone on drop and on panic.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Lay a frame out from the model, then write it: the model is held
    /// for the layout only, never while the terminal is written to (a slow
    /// terminal must not hold up the fleet's feed).
    fn frame(&mut self, app: &mut App, fleet: &Shared) -> io::Result<()> {
        let terminal = &mut self.terminal;
        terminal.autoresize()?;
        {
            let live = fleet.read();
            app.refresh(&live);
            let now = Instant::now();
            let mut frame = terminal.get_frame();
            draw(&mut frame, app, &live, now);
        }
        terminal.flush()?;
        terminal.hide_cursor()?;
        terminal.swap_buffers();
        ratatui::backend::Backend::flush(terminal.backend_mut())?;
        Ok(())
    }

    fn enter() -> io::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(error) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
            restore_terminal();
            return Err(error);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(mut terminal) => {
                let _ = terminal.clear();
                Ok(Self { terminal })
            }
            Err(error) => {
                restore_terminal();
                Err(error)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        let _ = self.terminal.show_cursor();
    }
}

/// Safe to call more than once, and from the panic hook.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// The terminal's events the dashboard reacts to; focus and paste are not.
fn terminal_event(event: crossterm::event::Event) -> Option<Event> {
    match event {
        crossterm::event::Event::Key(key) => Some(Event::Key(key)),
        crossterm::event::Event::Mouse(mouse) => Some(Event::Mouse(mouse)),
        crossterm::event::Event::Resize(columns, rows) => Some(Event::Resize(columns, rows)),
        _ => None,
    }
}

/// The services named by unverified echoes and goodbyes, once each, in name
/// order, "others" last for those past the link's bound on names.
fn misconfigured(stats: &LinkStats) -> Vec<String> {
    use orchestrator_lib::plumbing::OTHER_SENDERS;
    let counted = stats.unverified_by_service();
    let mut names: Vec<String> = counted
        .iter()
        .filter(|(service, _, _)| service != OTHER_SENDERS)
        .map(|(service, _, _)| service.clone())
        .collect();
    names.dedup();
    if counted
        .iter()
        .any(|(service, _, _)| service == OTHER_SENDERS)
    {
        names.push("others".into());
    }
    names
}
