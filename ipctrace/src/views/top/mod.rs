//! `ipctrace top`: the live full-screen view. It feeds the object, wait and activity models
//! from the stream, refreshes a `Screen` every interval, and draws it as the `App` (keys,
//! sort, filter, detail) says, restoring the terminal on every way out.

pub mod app;
pub mod render;
pub mod screen;
pub mod sources;
pub mod terminal;
#[cfg(test)]
mod tests;

use crate::clock::{clock_ns, WallClock};
use crate::decoder::Event;
use crate::filter::Filter;
use crate::loader::KernelCounts;
use crate::model::activity::Activity;
use crate::model::objects::Objects;
use crate::model::waits::Waits;
use crate::session::{Flow, Sink};
use app::{App, Key};
use crossterm::event::{self, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use render::Theme;
use screen::{Models, Screen};
use std::collections::HashMap;
use std::io::{self, BufWriter, Stdout};
use std::time::Duration;
use terminal::TerminalGuard;

/// What `top` is told at start.
pub struct TopOptions {
    pub filter: Filter,
    pub interval: Duration,
    /// A waiter, or a queue with messages and no receive, this long is stuck.
    pub stuck: Duration,
}

type Term = Terminal<CrosstermBackend<BufWriter<Stdout>>>;

pub struct TopView {
    objects: Objects,
    waits: Waits,
    activity: Activity,
    options: TopOptions,
    users: HashMap<u32, String>,
    counts: KernelCounts,
    app: App,
    screen: Screen,
    /// Taken at the first batch, once the session's `Tracing ...` line is on the normal screen.
    terminal: Option<(Term, TerminalGuard)>,
    theme: Theme,
    clock: WallClock,
    events_since_tick: u64,
    events_per_sec: f64,
    last_tick_ns: u64,
    /// Why the terminal could not be used, if it could not.
    failed: Option<io::Error>,
    warned: bool,
    own_pid: u32,
}

impl TopView {
    pub fn new(objects: Objects, options: TopOptions, users: HashMap<u32, String>) -> TopView {
        let now = now_ns();
        let mut kinds = options.filter.kinds();
        kinds.retain(|k| *k != crate::decoder::syscalls::IpcKind::Shm);
        TopView {
            objects,
            waits: Waits::new(crate::model::waits::GroupBy::Semnum, kinds),
            activity: Activity::new(now),
            options,
            users,
            counts: KernelCounts::default(),
            app: App::default(),
            screen: Screen::empty(),
            terminal: None,
            theme: Theme::from_env(),
            clock: WallClock::now(),
            events_since_tick: 0,
            events_per_sec: 0.0,
            last_tick_ns: now,
            failed: None,
            warned: false,
            own_pid: std::process::id(),
        }
    }

    /// The terminal error that ended the view, if one did.
    pub fn failure(&mut self) -> Option<io::Error> {
        self.failed.take()
    }

    /// Gives the terminal back (also done on drop).
    pub fn close(&mut self) {
        self.terminal = None;
    }

    fn models(&self) -> Models<'_> {
        Models {
            objects: &self.objects,
            waits: &self.waits,
            activity: &self.activity,
            counts: self.counts,
            filter: &self.options.filter,
            users: &self.users,
            alive: &|pid| std::path::Path::new(&format!("/proc/{pid}")).exists(),
            stuck_ns: self.options.stuck.as_nanos() as u64,
            events_per_sec: self.events_per_sec,
        }
    }

    fn refresh(&mut self) {
        let now = now_ns();
        self.screen = screen::build(&self.models(), now, self.app.detail);
    }

    /// Reads the kernel's view, ends the activity interval and, unless paused, refreshes.
    fn tick(&mut self) {
        if let Err(e) = self
            .objects
            .reconcile_from_proc(&self.options.filter.kinds())
        {
            if !self.warned {
                eprintln!("ipctrace: not reconciled with the kernel's view: {e:#}");
                self.warned = true;
            }
        }
        let now = now_ns();
        let objects = &self.objects;
        self.activity.tick(now, |k| objects.get(k).is_some());
        let secs = now.saturating_sub(self.last_tick_ns) as f64 / 1e9;
        if secs > 0.0 {
            self.events_per_sec = self.events_since_tick as f64 / secs;
        }
        self.events_since_tick = 0;
        self.last_tick_ns = now;
        if !self.app.paused {
            self.refresh();
        }
    }

    fn draw(&mut self) -> io::Result<()> {
        if self.terminal.is_none() {
            let guard = TerminalGuard::enter()?;
            let backend = CrosstermBackend::new(BufWriter::with_capacity(1 << 16, io::stdout()));
            let mut term = Terminal::new(backend)?;
            term.clear()?;
            self.terminal = Some((term, guard));
        }
        let now = if self.screen.taken_ns == 0 {
            now_ns()
        } else {
            self.screen.taken_ns
        };
        let clock = self.clock.time_of_day(now)[..8].to_string();
        let interval = render::interval_text(self.options.interval);
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

    /// Handles the keys waiting; true if something changed on screen.
    fn read_keys(&mut self) -> io::Result<bool> {
        let mut changed = false;
        while event::poll(Duration::ZERO)? {
            match event::read()? {
                event::Event::Key(k) if k.kind != KeyEventKind::Release => {
                    if k.code == KeyCode::Char('l') && k.modifiers.contains(KeyModifiers::CONTROL) {
                        if let Some((term, _)) = self.terminal.as_mut() {
                            term.clear()?;
                        }
                    } else if let Some(key) = key_of(k) {
                        let detail = self.app.detail;
                        self.app.handle(key, &self.screen);
                        if self.app.detail.is_some() && self.app.detail != detail {
                            // Opened now: its figures at once, even when paused.
                            self.screen.detail =
                                screen::detail_of(&self.models(), now_ns(), self.app.detail);
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

    fn fail(&mut self, e: io::Error) -> Flow {
        self.failed = Some(e);
        Flow::Stop
    }
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

fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

impl Sink for TopView {
    fn event(&mut self, event: &Event) -> Flow {
        self.objects.apply(event);
        if let Event::Call(call) = event {
            self.events_since_tick += 1;
            // Our own semctl and msgctl calls (reading values each tick) are not the workload.
            if call.pid == self.own_pid {
                return Flow::Continue;
            }
            self.waits.record(call);
        }
        self.activity.apply(event);
        Flow::Continue
    }

    fn batch_done(&mut self) -> Flow {
        // At once, not at the next tick: later semops build on these values.
        self.objects.refresh_unknown_values();
        let first = self.terminal.is_none();
        if first {
            self.refresh();
        }
        let changed = match self.read_keys() {
            Ok(changed) => changed,
            Err(e) => return self.fail(e),
        };
        if self.app.quit {
            self.close();
            return Flow::Stop;
        }
        if first || changed {
            if let Err(e) = self.draw() {
                return self.fail(e);
            }
        }
        Flow::Continue
    }

    fn stopped(&mut self) {
        self.close();
    }

    fn interval(&mut self, counts: KernelCounts) -> Flow {
        self.counts = counts;
        self.tick();
        match self.draw() {
            Ok(()) => Flow::Continue,
            Err(e) => self.fail(e),
        }
    }
}
