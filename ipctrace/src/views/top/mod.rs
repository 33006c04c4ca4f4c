//! `ipctrace top`: the live full-screen view. Handed the object, wait and activity models, it
//! refreshes a `Screen` every interval and draws it as the `App` (keys, sort, filter, detail)
//! says, restoring the terminal on every way out.

pub mod app;
pub mod render;
pub mod screen;
pub mod terminal;
#[cfg(test)]
mod tests;

use crate::clock::WallClock;
use app::{App, Key};
use crossterm::event::{self, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use render::Theme;
use screen::{Models, Screen};
use std::io::{self, BufWriter, Stdout};
use std::time::Duration;
use terminal::TerminalGuard;

type Term = Terminal<CrosstermBackend<BufWriter<Stdout>>>;

/// The screen and the person at it: it is handed the models to show, never owns them.
pub struct TopView {
    interval: Duration,
    app: App,
    screen: Screen,
    /// Taken at the first draw, once the session's `Tracing ...` line is on the normal screen.
    terminal: Option<(Term, TerminalGuard)>,
    theme: Theme,
    clock: WallClock,
}

impl TopView {
    pub fn new(interval: Duration) -> TopView {
        TopView {
            interval,
            app: App::default(),
            screen: Screen::empty(),
            terminal: None,
            theme: Theme::from_env(),
            clock: WallClock::now(),
        }
    }

    /// Whether the screen was ever drawn (the terminal taken).
    pub fn started(&self) -> bool {
        self.terminal.is_some()
    }

    /// Whether the person asked to quit.
    pub fn quit(&self) -> bool {
        self.app.quit
    }

    /// Gives the terminal back (also done on drop).
    pub fn close(&mut self) {
        self.terminal = None;
    }

    /// A new refresh from `models` at `now_ns`, unless paused.
    pub fn refresh(&mut self, models: &Models, now_ns: u64) {
        if !self.app.paused {
            self.screen = screen::build(models, now_ns, self.app.detail);
        }
    }

    /// Takes the terminal if not yet, and draws the screen.
    pub fn draw(&mut self) -> io::Result<()> {
        if self.terminal.is_none() {
            let guard = TerminalGuard::enter()?;
            self.terminal = Some((blank_terminal()?, guard));
        }
        let clock = self.clock.time_of_day(self.screen.taken_ns)[..8].to_string();
        let interval = render::interval_text(self.interval);
        let (app, screen, theme) = (&mut self.app, &self.screen, self.theme);
        let (term, _) = self.terminal.as_mut().expect("just made");
        // One update the terminal shows at once (where it can): no flicker on a full redraw.
        crossterm::queue!(
            term.backend_mut(),
            crossterm::terminal::BeginSynchronizedUpdate
        )?;
        term.draw(|f| render::draw(f, app, screen, &clock, &interval, theme))?;
        crossterm::execute!(
            term.backend_mut(),
            crossterm::terminal::EndSynchronizedUpdate
        )?;
        Ok(())
    }

    /// Handles the keys waiting; true if the screen should be drawn again. A detail opened
    /// now gets its figures from `models` at once, even when paused.
    pub fn read_keys(&mut self, models: &Models, now_ns: u64) -> io::Result<bool> {
        terminal_still_there()?;
        let mut changed = false;
        while event::poll(Duration::ZERO)? {
            match event::read()? {
                event::Event::Key(k) if k.kind != KeyEventKind::Release => {
                    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl && k.code == KeyCode::Char('l') {
                        // Ctrl-L: everything drawn again on a blank screen.
                        if let Some((term, _)) = self.terminal.as_mut() {
                            *term = blank_terminal()?;
                        }
                    } else if let Some(key) = key_of(k) {
                        let detail = self.app.detail;
                        self.app.handle(key, &self.screen);
                        if self.app.detail.is_some() && self.app.detail != detail {
                            self.screen.detail = screen::detail_of(models, now_ns, self.app.detail);
                        }
                    }
                    changed = true;
                }
                event::Event::Resize(..) => changed = true,
                _ => {}
            }
        }
        Ok(changed)
    }
}

/// Fails once the terminal is gone (its pty closed: a killed tmux or ssh session). Reading it
/// would then return end-of-file forever, which crossterm's reader retries without end, so top
/// must end (and detach) instead of spinning.
fn terminal_still_there() -> io::Result<()> {
    let mut stdin = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, no wait.
    let ready = unsafe { libc::poll(&mut stdin, 1, 0) };
    if ready > 0 && stdin.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the terminal went away (hung up)",
        ));
    }
    Ok(())
}

/// A blank screen and a terminal that knows it, so its first draw writes every cell. Not
/// ratatui's `clear`, which asks the terminal where its cursor is: a pty with nothing behind
/// it (or a slow serial line) never answers.
fn blank_terminal() -> io::Result<Term> {
    let mut backend = CrosstermBackend::new(BufWriter::with_capacity(1 << 16, io::stdout()));
    crossterm::execute!(
        backend,
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
    )?;
    Terminal::new(backend)
}

fn key_of(k: KeyEvent) -> Option<Key> {
    if k.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(k.code, KeyCode::Char('c') | KeyCode::Char('d')).then_some(Key::Interrupt);
    }
    Some(match k.code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}
