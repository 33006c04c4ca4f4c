//! The ipctrace binary: parse the command line, run the command, turn any error into one line
//! on stderr and a non-zero exit.

use clap::Parser;

fn main() {
    // One malloc arena: ipctrace runs on one thread once attached, and the arenas of the threads
    // that parse the kernel's BTF at startup would otherwise keep about 10 MB resident.
    // SAFETY: mallopt only sets a glibc tunable; no thread has started yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let cli = ipctrace::cli::Cli::parse();
    match ipctrace::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ipctrace: {e:#}");
            std::process::exit(1);
        }
    }
}
