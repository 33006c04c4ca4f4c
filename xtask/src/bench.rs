//! `cargo xtask bench`: placeholder until the benchmarks exist.
use std::process::ExitCode;

use anyhow::Result;

pub fn run(_args: &[String]) -> Result<ExitCode> {
    eprintln!("bench: not implemented yet");
    Ok(ExitCode::FAILURE)
}
