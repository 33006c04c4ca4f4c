//! The ipctrace binary: parse the command line, run the command, turn any error into one line
//! on stderr and a non-zero exit.

use clap::Parser;

fn main() {
    let cli = ipctrace::cli::Cli::parse();
    match ipctrace::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ipctrace: {e:#}");
            std::process::exit(1);
        }
    }
}
