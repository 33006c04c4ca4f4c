//! The terminal while `top` runs: raw mode and the alternate screen, and what puts them back on
//! every way out (the guard's drop, a panic hook that restores first, the session's return on
//! SIGTERM or SIGHUP). stderr is held meanwhile, so a warning cannot tear the screen; what was
//! written to it is replayed once the terminal is back.

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EndSynchronizedUpdate, EnterAlternateScreen,
    LeaveAlternateScreen,
};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The real stderr, while fd 2 writes to `HELD`; -1 when not held.
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);
/// A memfd that takes what is written to stderr meanwhile.
static HELD: AtomicI32 = AtomicI32::new(-1);

/// Owns the terminal's full-screen state; dropping it restores the terminal.
pub struct TerminalGuard(());

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on a failure drops the guard, which restores.
        let guard = TerminalGuard(());
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        hold_stderr();
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, turns raw mode off, shows the cursor and gives stderr back with
/// what it held. Does nothing if the terminal is not taken; safe to call twice.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = execute!(
        io::stdout(),
        EndSynchronizedUpdate,
        LeaveAlternateScreen,
        Show
    );
    let _ = disable_raw_mode();
    release_stderr();
}

/// A panic restores the terminal before anything is printed (ipctrace's own hook prints one
/// line, which must land on a normal screen).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

fn hold_stderr() {
    // SAFETY: plain fd calls on fds we own; on any failure stderr is left as it was.
    unsafe {
        let memfd = libc::memfd_create(c"ipctrace-stderr".as_ptr(), libc::MFD_CLOEXEC);
        if memfd < 0 {
            return;
        }
        let saved = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
        if saved < 0 || libc::dup2(memfd, 2) < 0 {
            libc::close(memfd);
            if saved >= 0 {
                libc::close(saved);
            }
            return;
        }
        SAVED_STDERR.store(saved, Ordering::SeqCst);
        HELD.store(memfd, Ordering::SeqCst);
    }
}

fn release_stderr() {
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    let held = HELD.swap(-1, Ordering::SeqCst);
    if saved < 0 || held < 0 {
        return;
    }
    // SAFETY: fds we made in hold_stderr; the buffer is ours.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
        let mut buf = [0u8; 8192];
        let mut offset = 0;
        loop {
            let n = libc::pread(held, buf.as_mut_ptr().cast(), buf.len(), offset);
            if n <= 0 {
                break;
            }
            libc::write(2, buf.as_ptr().cast(), n as usize);
            offset += n as libc::off_t;
        }
        libc::close(held);
    }
}
