//! The ipctrace binary: parse the command line, run the command, turn any error into one line
//! on stderr and a non-zero exit (a panic, too: one line, exit 101, everything detached).

fn main() {
    // One malloc arena: ipctrace runs on one thread once attached (trace adds one that only
    // writes, reusing its blocks), and the arenas of the threads
    // that parse the kernel's BTF at startup would otherwise keep about 10 MB resident. (musl's
    // malloc, in the static build, has no per-thread arenas and returns freed memory itself.)
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a glibc tunable; no thread has started yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1)
    };
    // A panic unwinds main, and dropping the probe on the way detaches every program.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panic");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("ipctrace: internal error: {what}{place} (a bug: please report it)");
    }));
    let cli = ipctrace::cli::Cli::parse_or_exit();
    match ipctrace::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // An error of several lines (each kernel feature missing is one) prefixes each.
            for line in format!("{e:#}").lines() {
                eprintln!("ipctrace: {line}");
            }
            std::process::exit(1);
        }
    }
}
