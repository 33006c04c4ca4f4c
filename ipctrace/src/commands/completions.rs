//! `ipctrace completions SHELL` and the hidden `ipctrace manpages DIR`: the command line describes
//! itself, so completions and man pages never drift from it (`cargo xtask dist` ships both).

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use std::path::PathBuf;

#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, Clone)]
pub struct ManpagesArgs {
    /// Where to write ipctrace.1 and one page per command (ipctrace-trace.1, ...).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes the completion script to stdout (`ipctrace completions bash > /etc/bash_completion.d/ipctrace`).
pub fn completions(args: CompletionsArgs) -> Result<i32> {
    let mut command = crate::cli::Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "ipctrace",
        &mut std::io::stdout().lock(),
    );
    Ok(0)
}

pub fn manpages(args: ManpagesArgs) -> Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    clap_mangen::generate_to(crate::cli::Cli::command(), &args.dir)
        .with_context(|| format!("cannot write man pages to {}", args.dir.display()))?;
    Ok(0)
}
