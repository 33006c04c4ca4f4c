//! The command line (interface.md's contract): options shared by every command, one struct per
//! command, and the dispatch that wires probe, session and view together for each.

use crate::filter::{parse_id, parse_key, parse_kind, Filter};
use crate::model::shm_addresses::ShmAddressBook;
use crate::probe::{Probe, ProbeOptions};
use crate::session::{self, Schedule};
use crate::syscalls::IpcKind;
use crate::views::trace::TraceView;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::time::Duration;

const ABOUT: &str =
    "Trace Linux System V IPC (shared memory, semaphores, message queues) with eBPF.";
const EXAMPLES: &str = "\
Examples:
  ipctrace                          # every SysV IPC call, one line each, until Ctrl-C
  ipctrace trace --type sem -p 1234 # semaphore calls of process 1234
  ipctrace trace --key 0x5d00012a   # calls on the object with that key
  ipctrace trace --json --duration 10 > calls.jsonl

Needs root, or CAP_BPF and CAP_PERFMON, on a kernel with BTF (/sys/kernel/btf/vmlinux).";

#[derive(Debug, Parser)]
#[command(name = "ipctrace", version, about = ABOUT, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command, ipctrace traces (as `ipctrace trace`).
    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream every SysV IPC call as it completes (the default command).
    #[command(after_help = EXAMPLES)]
    Trace(TraceArgs),
}

/// Options every tracing command shares.
#[derive(Debug, Args, Clone, Default)]
pub struct Common {
    /// Only this process (thread group id); repeatable, up to 8.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Only processes with this command name (first 15 bytes, as the kernel keeps it); repeatable, up to 4.
    #[arg(short = 'c', long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,
    /// Only this kind of object: sem, shm or msg; repeatable.
    #[arg(short = 't', long = "type", value_name = "TYPE", value_parser = parse_kind)]
    pub kinds: Vec<IpcKind>,
    /// Only the object with this id; repeatable.
    #[arg(long = "id", value_name = "ID", value_parser = parse_id)]
    pub ids: Vec<i32>,
    /// Only the object with this key (decimal or 0x hex); repeatable.
    #[arg(short = 'k', long = "key", value_name = "KEY", value_parser = parse_key, allow_hyphen_values = true)]
    pub keys: Vec<i32>,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(short = 'd', long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// One JSON object per line on stdout, nothing else.
    #[arg(long)]
    pub json: bool,
}

impl Common {
    pub fn filter(&self) -> Filter {
        Filter {
            pids: self.pids.clone(),
            comms: self.comms.clone(),
            kinds: self.kinds.clone(),
            ids: self.ids.clone(),
            keys: self.keys.clone(),
        }
    }
}

#[derive(Debug, Args, Clone, Default)]
pub struct TraceArgs {
    #[command(flatten)]
    pub common: Common,
    /// Stop after this many calls.
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
}

/// Seconds as people write them: 10, 0.5, 2.5.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{s}' is not a number of seconds > 0"))
}

/// Runs the parsed command line; the value is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Some(Command::Trace(args)) => trace(args),
        None => trace(cli.trace),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn trace(args: TraceArgs) -> Result<i32> {
    let filter = args.common.filter();
    filter.validate()?;
    let options = ProbeOptions {
        filter: filter.clone(),
        waits: true,
        processes: true,
        ..Default::default()
    };
    let probe = Probe::attach(&options)?;
    let stdout = std::io::stdout().lock();
    let mut view = TraceView::new(
        std::io::BufWriter::with_capacity(1 << 16, stdout),
        args.common.json,
        ShmAddressBook::default(),
        args.count,
    );
    let schedule = Schedule {
        duration: args.common.duration,
        interval: None,
        what: filter.describe(),
    };
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut view))?;
    if let Err(e) = view.finish(&totals) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    let _ = std::io::stderr().flush();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ipctrace").chain(args.iter().copied()))
    }

    #[test]
    fn plain_ipctrace_traces_with_top_level_filters() {
        let cli = parse(&[
            "--pid", "12", "-p", "13", "--type", "sem", "--key", "0x10", "--json",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let f = cli.trace.common.filter();
        assert_eq!(
            (f.pids, f.kinds, f.keys),
            (vec![12, 13], vec![IpcKind::Sem], vec![0x10])
        );
        assert!(cli.trace.common.json);
    }

    #[test]
    fn trace_subcommand_takes_the_same_options() {
        let cli = parse(&[
            "trace",
            "--comm",
            "postgres",
            "--id",
            "32768",
            "--duration",
            "0.5",
            "-n",
            "3",
        ])
        .unwrap();
        let Some(Command::Trace(t)) = cli.command else {
            panic!()
        };
        assert_eq!(t.common.comms, vec!["postgres"]);
        assert_eq!(t.common.ids, vec![32768]);
        assert_eq!(t.common.duration, Some(Duration::from_millis(500)));
        assert_eq!(t.count, Some(3));
    }

    #[test]
    fn bad_values_are_clap_errors() {
        for args in [
            &["--type", "pipe"][..],
            &["--key", "zz"],
            &["--pid", "-3"],
            &["--duration", "0"],
            &["--duration", "nan"],
            &["--id", "-1"],
            &["--bogus"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        // A negative key is how /proc/sysvipc prints keys >= 0x80000000.
        assert_eq!(parse(&["--key", "-2"]).unwrap().trace.common.keys, vec![-2]);
    }
}
