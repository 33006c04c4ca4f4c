//! The command line (docs/interface.md's contract): the options every command shares, the list
//! of commands, and the dispatch to each command's own file in `commands`.

use crate::commands::completions::{self, CompletionsArgs, ManpagesArgs};
use crate::commands::followed::{CommandFailed, FollowedCommand};
use crate::commands::lat::{LatArgs, LAT_EXAMPLES};
use crate::commands::objects::{ObjectsArgs, OBJECTS_EXAMPLES};
use crate::commands::trace::TraceArgs;
use crate::commands::{export, floor, lat, objects, trace};
use crate::decoder::syscalls::IpcKind;
use crate::filter::{parse_id, parse_key, parse_kind, Filter};
use crate::loader::privileges::{self, Needs, User};
use crate::views::output::Output;
use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};
use ipctrace_common as common;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// `ipctrace --version`: the release and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("IPCTRACE_COMMIT"),
    ")"
);
const ABOUT: &str =
    "Trace Linux System V IPC (shared memory, semaphores, message queues) with eBPF.";
pub use crate::commands::trace::EXAMPLES;

#[derive(Debug, Parser)]
#[command(name = "ipctrace", version = VERSION, about = ABOUT, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
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
    /// Wait-latency histograms: who waits on which semaphore (or queue), how long, released by whom.
    #[command(after_help = LAT_EXAMPLES)]
    Lat(LatArgs),
    /// Every SysV object now, with who created it, has it mapped, touched it last and waits on it.
    #[command(after_help = OBJECTS_EXAMPLES)]
    Objects(ObjectsArgs),
    /// Live full-screen view: hottest semaphores, objects, queues, processes; alerts; q quits.
    #[command(after_help = crate::commands::top::EXAMPLES)]
    Top(crate::commands::top::TopArgs),
    /// Prometheus metrics (or a node_exporter textfile) from counts kept in the kernel.
    #[command(after_help = export::EXAMPLES)]
    Export(export::ExportArgs),
    /// For benchmarks: the same syscall tracepoints with programs that do nothing.
    #[command(hide = true)]
    Floor(Common),
    /// Print a shell completion script (bash, zsh, fish).
    #[command(
        after_help = "Example:\n  ipctrace completions bash > /etc/bash_completion.d/ipctrace"
    )]
    Completions(CompletionsArgs),
    /// Write the man pages (the release tarball has them).
    #[command(hide = true)]
    Manpages(ManpagesArgs),
}

/// Options every tracing command shares.
#[derive(Debug, Args, Clone, Default)]
pub struct Common {
    /// Only this process (thread group id); repeatable, up to 8.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Only processes with this command name (first 15 bytes, as the kernel keeps it); repeatable, up to 4.
    /// -n as in bcc's tools; -c is the old spelling.
    #[arg(short = 'n', short_alias = 'c', long = "comm", value_name = "NAME", value_parser = parse_comm)]
    pub comms: Vec<String>,
    /// Only this kind of object: sem, shm or msg; repeatable (-t is the old spelling).
    #[arg(long = "type", short_alias = 't', value_name = "TYPE", value_parser = parse_kind)]
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
    /// Write what would go to stdout to FILE instead (created or truncated, mode 0600).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Once attached, run as USER (a name or uid): no root, no capabilities (as tcpdump -Z).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

impl Common {
    /// What no clap attribute can say: the limits of the kernel filter. A usage error (exit 2).
    pub fn usage_problem(&self) -> Option<String> {
        if self.pids.len() > common::MAX_FILTER_PIDS {
            return Some(format!("at most {} --pid values", common::MAX_FILTER_PIDS));
        }
        if self.comms.len() > common::MAX_FILTER_COMMS {
            return Some(format!(
                "at most {} --comm values",
                common::MAX_FILTER_COMMS
            ));
        }
        None
    }

    /// Starts `-- CMD` (`argv`; none when empty), held before its exec until
    /// `FollowedCommand::release`.
    pub fn start_command(&self, argv: &[OsString]) -> Result<Option<FollowedCommand>> {
        if argv.is_empty() {
            return Ok(None);
        }
        // With --json on stdout, CMD's own output would break the stream: it goes to stderr.
        let stdout_to_stderr = self.json && self.output.is_none();
        FollowedCommand::start(argv, stdout_to_stderr).map(Some)
    }

    pub fn filter(&self) -> Filter {
        Filter {
            pids: self.pids.clone(),
            comms: self.comms.clone(),
            kinds: self.kinds.clone(),
            ids: self.ids.clone(),
            keys: self.keys.clone(),
            ..Default::default()
        }
    }

    /// Settles, before anything loads, what the command needs: the privileges (one line naming
    /// what is missing), the user to become once attached, and the output.
    pub fn prepare(&self, tracing: bool) -> Result<Prepared> {
        let user = self.user.as_deref().map(User::lookup).transpose()?;
        privileges::check(Needs {
            tracing,
            switching_user: user.is_some(),
        })?;
        let out = Output::open(self.output.as_deref())?;
        Ok(Prepared { user, out })
    }
}

/// What a command settled before loading anything.
pub struct Prepared {
    pub user: Option<User>,
    pub out: Output,
}

impl Prepared {
    /// Called once everything privileged is done: programs attached, maps taken, /proc read.
    pub fn drop_privileges(&self) -> Result<()> {
        match &self.user {
            Some(user) => user.drop_privileges(),
            None => Ok(()),
        }
    }
}

/// How a collector that streams every call (trace, top) rides out a saturated machine.
#[derive(Debug, Args, Clone, Default)]
pub struct StarvedArgs {
    /// Run the collector at this nice value (-20..19; below 0 needs root): on a machine whose
    /// cores are saturated, the default priority can starve it and the ring buffer fills.
    #[arg(long, value_name = "NICE", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub nice: Option<i32>,
    /// Run the collector with this real-time priority (SCHED_FIFO, 1..99, as perf's
    /// --realtime; needs root): on saturated cores even a high nice value waits tens of
    /// milliseconds for the CPU after each sleep, and the ring buffer fills meanwhile. While
    /// calls come faster than it can handle, it may take a whole core from the workload (the
    /// kernel keeps 5 % of each second for others).
    #[arg(long, value_name = "PRIO", conflicts_with = "nice",
          value_parser = clap::value_parser!(i32).range(1..=99))]
    pub realtime: Option<i32>,
    /// The ring buffer the kernel hands calls over in, in bytes (a power of two, a multiple of
    /// the page size; K, M, G: KiB, MiB, GiB; default 8M): a larger one rides out longer stalls
    /// of a starved collector, and pins that much kernel memory.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,
}

impl StarvedArgs {
    /// Applies --nice or --realtime to this thread and the threads it starts later; call it
    /// before --user gives up the right to raise them.
    pub fn raise_priority(&self) -> anyhow::Result<()> {
        if let Some(nice) = self.nice {
            // SAFETY: setpriority on ourselves.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
                anyhow::bail!("--nice {nice}: {}", std::io::Error::last_os_error());
            }
        }
        if let Some(priority) = self.realtime {
            // Zeroed first: musl's sched_param has more fields than glibc's.
            // SAFETY: sched_param is plain integers, for which zero is a valid value.
            let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
            param.sched_priority = priority;
            // SAFETY: sched_setscheduler on ourselves, with a valid sched_param.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
                anyhow::bail!("--realtime {priority}: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// `-- CMD ARGS...`, the last thing on a tracing command's line (after its positionals).
#[derive(Debug, Args, Clone, Default)]
pub struct FollowArgs {
    /// Run CMD and follow it and every process it forks, from its first call, until it exits;
    /// ipctrace then exits with CMD's status.
    #[arg(last = true, value_name = "CMD", conflicts_with = "pids")]
    pub command: Vec<OsString>,
}

/// A command name to filter on: not empty.
fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("--comm needs a name".into());
    }
    Ok(s.to_string())
}

/// The kernel's largest ring buffer (its data area must fit in 32 bits with a page to spare).
const RING_SIZE_MAX: u64 = 1 << 31;

/// `--ring-size`: bytes, or KiB, MiB, GiB with K, M, G; a power of two, whole pages.
pub fn parse_ring_size(s: &str) -> Result<u32, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let scale: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return Err(format!("'{s}' is not a size (like 65536, 64K, 16M)")),
    };
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("'{s}' is not a size (like 65536, 64K, 16M)"))?;
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    if !bytes.is_power_of_two() || bytes % page != 0 || bytes > RING_SIZE_MAX {
        return Err(format!(
            "{s} is not a power of two from the page size ({page}) to 2G"
        ));
    }
    Ok(bytes as u32)
}

/// Seconds as people write them: 10, 0.5, 2.5.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{s}' is not a number of seconds > 0"))
}

impl Cli {
    /// Parses the command line; a usage error, clap's or one the commands find, exits 2.
    pub fn parse_or_exit() -> Cli {
        let cli = Cli::parse();
        if let Some((subcommand, problem)) = cli.usage_problem() {
            let mut command = Cli::command();
            command.build();
            let command = match subcommand {
                Some(name) => command.find_subcommand_mut(name).expect("a subcommand"),
                None => &mut command,
            };
            command
                .error(clap::error::ErrorKind::ValueValidation, problem)
                .exit();
        }
        cli
    }

    /// The first usage problem of the command given, with the subcommand's name.
    fn usage_problem(&self) -> Option<(Option<&'static str>, String)> {
        match &self.command {
            Some(Command::Trace(a)) => a.usage_problem().map(|p| (Some("trace"), p)),
            Some(Command::Lat(a)) => a.usage_problem().map(|p| (Some("lat"), p)),
            Some(Command::Objects(a)) => a.usage_problem().map(|p| (Some("objects"), p)),
            Some(Command::Top(a)) => a.common.usage_problem().map(|p| (Some("top"), p)),
            Some(Command::Export(a)) => a.common.usage_problem().map(|p| (Some("export"), p)),
            Some(Command::Floor(c)) => c.usage_problem().map(|p| (Some("floor"), p)),
            Some(Command::Completions(_) | Command::Manpages(_)) => None,
            None => self.trace.usage_problem().map(|p| (None, p)),
        }
    }
}

/// Runs the parsed command line; the value is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let result = match cli.command {
        Some(Command::Trace(args)) => trace::run(args),
        Some(Command::Lat(args)) => lat::run(args),
        Some(Command::Objects(args)) => objects::run(args),
        Some(Command::Top(args)) => crate::commands::top::run(args),
        Some(Command::Export(args)) => export::run(args),
        Some(Command::Floor(common)) => floor::run(common),
        Some(Command::Completions(args)) => completions::completions(args),
        Some(Command::Manpages(args)) => completions::manpages(args),
        None => trace::run(cli.trace),
    };
    let _ = std::io::stderr().flush();
    match result {
        // A reader that went away (`ipctrace | head`) ends the command, as it ends cat.
        Err(e) if is_broken_pipe(&e) => Ok(0),
        // `-- CMD` that could not run: one line, and the status a shell would give (127, 126).
        Err(e) => match e.downcast::<CommandFailed>() {
            Ok(failed) => {
                eprintln!("ipctrace: {failed}");
                Ok(failed.status)
            }
            Err(e) => Err(e),
        },
        ok => ok,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
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
            "--count",
            "3",
            "-n",
            "pgbench",
        ])
        .unwrap();
        let Some(Command::Trace(t)) = cli.command else {
            panic!()
        };
        assert_eq!(t.common.comms, vec!["postgres", "pgbench"]);
        assert_eq!(t.common.ids, vec![32768]);
        assert_eq!(t.common.duration, Some(Duration::from_millis(500)));
        assert_eq!(t.count, Some(3));
    }

    #[test]
    fn user_and_output_are_options_of_every_command() {
        for command in ["trace", "lat", "objects"] {
            let cli = parse(&[command, "--user", "nobody", "-o", "out.txt"]).unwrap();
            let common = match cli.command {
                Some(Command::Trace(a)) => a.common,
                Some(Command::Lat(a)) => a.common,
                Some(Command::Objects(a)) => a.common,
                _ => panic!("{command}"),
            };
            assert_eq!(common.user.as_deref(), Some("nobody"));
            assert_eq!(common.output, Some(PathBuf::from("out.txt")));
        }
        let cli = parse(&["--user", "65534", "--output", "x"]).unwrap();
        assert_eq!(cli.trace.common.user.as_deref(), Some("65534"));
    }

    #[test]
    fn short_flags_as_bcc_and_ipcs_users_know_them() {
        // -n filters by name as in bcc; -c and -t are the old spellings of --comm and --type.
        let t = parse(&["-n", "a", "-c", "b", "-t", "msg", "-U", "--failed"])
            .unwrap()
            .trace;
        assert_eq!(t.common.comms, ["a", "b"]);
        assert_eq!(t.common.kinds, [IpcKind::Msg]);
        assert!(t.print_uid && t.failed);
        let t = parse(&["trace", "--min-lat", "5ms", "--min-blocked", "2"]).unwrap();
        let Some(Command::Trace(t)) = t.command else {
            panic!()
        };
        assert_eq!(
            (t.min_lat, t.min_blocked),
            (
                Some(Duration::from_millis(5)),
                Some(Duration::from_millis(2))
            )
        );
        let Some(Command::Lat(l)) = parse(&["lat", "-m", "1", "5"]).unwrap().command else {
            panic!()
        };
        assert!(l.milliseconds);
        assert_eq!(
            (l.interval_pos, l.count_pos),
            (Some(Duration::from_secs(1)), Some(5))
        );
        let objects = |args: &[&str]| {
            let mut all = vec!["objects"];
            all.extend_from_slice(args);
            match parse(&all).unwrap().command {
                Some(Command::Objects(o)) => o,
                _ => panic!(),
            }
        };
        let o = objects(&["2", "5", "-s"]);
        assert_eq!(
            (o.interval_pos, o.count_pos, o.sem),
            (Some(Duration::from_secs(2)), Some(5), true)
        );
        assert_eq!(objects(&["-i", "32768"]).info, Some(32768));
        assert!(objects(&["-l"]).limits && objects(&["-u"]).limits);
        assert!(objects(&["--orphans"]).orphans);
        assert!(
            parse(&["objects", "--limits", "2"]).is_err(),
            "limits are not traced"
        );
    }

    #[test]
    fn a_command_to_follow_comes_after_two_dashes() {
        let cli = parse(&["trace", "--json", "--", "sh", "-c", "echo --pid 3"]).unwrap();
        let Some(Command::Trace(t)) = cli.command else {
            panic!()
        };
        assert_eq!(t.follow.command, ["sh", "-c", "echo --pid 3"]);
        assert!(t.common.pids.is_empty());
        for command in ["lat", "objects"] {
            assert!(parse(&[command, "--", "true"]).is_ok(), "{command}");
        }
        assert_eq!(
            parse(&["--", "true"]).unwrap().trace.follow.command,
            ["true"]
        );
        let err = parse(&["trace", "-p", "1", "--", "true"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn usage_problems_past_clap() {
        let problem = |args: &[&str]| parse(args).unwrap().usage_problem().map(|(_, p)| p);
        let nine: Vec<String> = (1..=9).flat_map(|p| ["-p".into(), p.to_string()]).collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        assert_eq!(problem(&nine).as_deref(), Some("at most 8 --pid values"));
        assert!(problem(&["lat", "--count", "2"])
            .unwrap()
            .contains("needs an interval"));
        assert_eq!(problem(&["lat", "--count", "2", "1"]), None);
        assert!(problem(&["lat", "--type", "shm"])
            .unwrap()
            .contains("never wait"));
        assert!(problem(&["objects", "--count", "2"]).is_some());
        assert_eq!(problem(&["objects", "-w", "1", "--count", "2"]), None);
        assert!(parse(&["--comm", ""]).is_err());
        Cli::command().debug_assert();
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
