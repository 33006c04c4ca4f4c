//! The command line (interface.md's contract): options shared by every command, one struct per
//! command, and the dispatch that wires probe, session and view together for each.

use crate::filter::{parse_id, parse_key, parse_kind, Filter};
use crate::model::shm_addresses::ShmAddressBook;
use crate::model::waits::{GroupBy, Waits};
use crate::output::Output;
use crate::privileges::{self, Needs, User};
use crate::probe::{Probe, ProbeOptions};
use crate::session::{self, Schedule};
use crate::syscalls::IpcKind;
use crate::views::lat::LatView;
use crate::views::trace::TraceView;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const ABOUT: &str =
    "Trace Linux System V IPC (shared memory, semaphores, message queues) with eBPF.";
const EXAMPLES: &str = "\
Examples:
  ipctrace                          # every SysV IPC call, one line each, until Ctrl-C
  ipctrace trace --type sem -p 1234 # semaphore calls of process 1234
  ipctrace trace --key 0x5d00012a   # calls on the object with that key
  ipctrace trace --json --duration 10 > calls.jsonl
  ipctrace trace --json --user nobody -o calls.jsonl   # attach as root, then trace as nobody

Needs root, or CAP_BPF and CAP_PERFMON, on a kernel with BTF (/sys/kernel/btf/vmlinux) and
syscall tracepoints (CONFIG_FTRACE_SYSCALLS).

With --user USER it becomes USER once its programs are attached, /proc first read and its output
open (as tcpdump -Z): no capabilities in any set and no way back to root, while the ring buffer
and counters keep working. Later reads of /proc are USER's: attachments of other users'
processes, values and queue sizes of objects USER may not read come from traced calls only, and
32-bit processes of other users go unreported. --output FILE is created (or truncated) with mode
0600 by the user who started ipctrace, whatever the umask.";

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
    /// Wait-latency histograms: who waits on which semaphore (or queue), how long, released by whom.
    #[command(after_help = LAT_EXAMPLES)]
    Lat(LatArgs),
    /// Every SysV object now, with who created it, has it mapped, touched it last and waits on it.
    #[command(after_help = OBJECTS_EXAMPLES)]
    Objects(ObjectsArgs),
    /// Prometheus metrics (or a node_exporter textfile) from counts kept in the kernel.
    #[command(after_help = crate::commands::export::EXAMPLES)]
    Export(crate::commands::export::ExportArgs),
    /// For benchmarks: the same syscall tracepoints with programs that do nothing.
    #[command(hide = true)]
    Floor(Common),
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
    /// Write what would go to stdout to FILE instead (created or truncated, mode 0600).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Once attached, run as USER (a name or uid): no root, no capabilities (as tcpdump -Z).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
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

    /// Settles, before anything loads, what the command needs: the privileges (one line naming
    /// what is missing), the user to become once attached, and the output.
    pub(crate) fn prepare(&self, tracing: bool) -> Result<Prepared> {
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
pub(crate) struct Prepared {
    user: Option<User>,
    out: Output,
}

impl Prepared {
    /// Called once everything privileged is done: programs attached, maps taken, /proc read.
    pub(crate) fn drop_privileges(&self) -> Result<()> {
        match &self.user {
            Some(user) => user.drop_privileges(),
            None => Ok(()),
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

const LAT_EXAMPLES: &str = "\
Examples:
  ipctrace lat                      # semaphore waits until Ctrl-C, then histograms
  ipctrace lat 1 10                 # a histogram every second, ten times (as runqlat 1 10)
  ipctrace lat --by semnum --key 0x5d00012a
  ipctrace lat --type msg --by process   # msgsnd (queue full) and msgrcv (queue empty) waits
  ipctrace lat --user nobody -o waits.txt 1 60   # attach as root, then run as nobody

Only calls that really slept count as waits (the task switched out until another process
released it); calls that found the semaphore free are counted as calls, not waits.
On privileges, --user and --output: ipctrace --help.";

#[derive(Debug, Args, Clone, Default)]
pub struct LatArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print a histogram every SECS seconds (default: once, at the end).
    #[arg(short = 'i', long, value_name = "SECS", value_parser = parse_seconds)]
    pub interval: Option<Duration>,
    /// Stop after this many intervals.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Histogram per object, per semaphore of a set, or per waiting process.
    #[arg(long, value_enum, default_value_t = By::Object)]
    pub by: By,
    /// Interval in seconds, positional as in bcc's tools.
    #[arg(value_name = "INTERVAL", value_parser = parse_seconds, conflicts_with = "interval")]
    pub interval_pos: Option<Duration>,
    /// Number of intervals, positional as in bcc's tools.
    #[arg(value_name = "COUNT", conflicts_with = "count")]
    pub count_pos: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    #[default]
    Object,
    Semnum,
    Process,
}

const OBJECTS_EXAMPLES: &str = "\
Examples:
  ipctrace objects                  # every object now, from /proc (an ipcs -a that names names)
  ipctrace objects --duration 10    # trace for 10 s: creators, last operations, then the table
  ipctrace objects --watch 2 --type sem   # the semaphore table every 2 s, with waiters
  ipctrace objects --json --key 0x5d00012a
  ipctrace objects --watch 5 --user nobody -o objects.log   # root only to attach

Without --duration or --watch nothing is traced: creators of segments come from the kernel's
cpid, and semaphore sets and queues made before ipctrace looked show no creator.
/proc/sysvipc lists ipctrace's own IPC namespace only: objects of other namespaces (containers)
show once a traced call names them, labelled with their ipc_ns, and a note says when processes
live in other namespaces. To list one's objects: nsenter --ipc --target PID ipctrace objects.
On privileges, --user and --output: ipctrace --help.";

#[derive(Debug, Args, Clone, Default)]
pub struct ObjectsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Trace, and print the table every SECS seconds (until --duration, Ctrl-C or SIGTERM).
    #[arg(short = 'w', long, value_name = "SECS", value_parser = parse_seconds)]
    pub watch: Option<Duration>,
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
        Some(Command::Lat(args)) => lat(args),
        Some(Command::Objects(args)) => objects(args),
        Some(Command::Export(args)) => crate::commands::export::run(args),
        Some(Command::Floor(common)) => floor(common),
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
    let prepared = args.common.prepare(true)?;
    let key_ids = ids_of_keys(&filter);
    let probe = attach(&filter, key_ids.clone(), with_processes())?;
    let shm_addresses = shm_addresses_now(&filter, &key_ids);
    prepared.drop_privileges()?;
    let mut view = TraceView::new(
        std::io::BufWriter::with_capacity(1 << 16, prepared.out),
        args.common.json,
        shm_addresses,
        args.count,
    );
    if filter.filters_objects() {
        view = view.following_objects();
    }
    let schedule = Schedule {
        duration: args.common.duration,
        interval: None,
        what: filter.describe(),
        notes: Vec::new(),
        refresh: None,
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

fn lat(args: LatArgs) -> Result<i32> {
    let mut filter = args.common.filter();
    // Waits happen on semaphores, and on queues when asked; shared memory never waits.
    if filter.kinds.is_empty() {
        filter.kinds = vec![IpcKind::Sem];
    }
    filter.kinds.retain(|k| *k != IpcKind::Shm);
    if filter.kinds.is_empty() {
        anyhow::bail!("shared memory calls never wait: use --type sem or --type msg");
    }
    filter.validate()?;
    let by = match args.by {
        By::Object => GroupBy::Object,
        By::Semnum => GroupBy::Semnum,
        By::Process => GroupBy::Process,
    };
    let interval = args.interval.or(args.interval_pos);
    let count = args.count.or(args.count_pos);
    if count.is_some() && interval.is_none() {
        anyhow::bail!("--count needs --interval");
    }
    let prepared = args.common.prepare(true)?;
    // Waits need no process events, and no sembufs unless grouped by semaphore number.
    let probe = attach(
        &filter,
        ids_of_keys(&filter),
        ProbeOptions {
            skip_user_memory: !matches!(by, GroupBy::Semnum),
            ..Default::default()
        },
    )?;
    let keys = known_keys(&filter.kinds());
    prepared.drop_privileges()?;
    let mut view = LatView::new(
        prepared.out,
        args.common.json,
        Waits::new(by, filter.kinds()),
        count,
    );
    for (kind, ns, id, key) in keys {
        view.know_key(kind, ns, id, key);
    }
    let schedule = Schedule {
        duration: args.common.duration,
        interval,
        what: format!("{} waits", filter.describe()),
        notes: Vec::new(),
        refresh: None,
    };
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut view))?;
    match view.finish(&totals) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// Holds empty programs on the tracepoints until stopped: the cost floor benchmarks compare to.
fn floor(common: Common) -> Result<i32> {
    struct Nothing;
    impl session::Sink for Nothing {
        fn event(&mut self, _: &crate::event::Event) -> session::Flow {
            session::Flow::Continue
        }
    }
    let filter = common.filter();
    filter.validate()?;
    let prepared = common.prepare(true)?;
    let probe = Probe::attach(&ProbeOptions {
        filter: filter.clone(),
        floor: true,
        ..Default::default()
    })?;
    prepared.drop_privileges()?;
    let schedule = Schedule {
        duration: common.duration,
        interval: None,
        what: format!("{} with empty programs", filter.describe()),
        notes: Vec::new(),
        refresh: None,
    };
    runtime()?.block_on(session::run(probe, schedule, &mut Nothing))?;
    Ok(0)
}

fn objects(args: ObjectsArgs) -> Result<i32> {
    use crate::model::objects::Objects;
    use crate::views::objects::ObjectsView;
    let filter = args.common.filter();
    filter.validate()?;
    let kinds = filter.kinds();
    let tracing = args.common.duration.is_some() || args.watch.is_some();
    let prepared = args.common.prepare(tracing)?;
    if !tracing {
        let objects = Objects::seed_from_proc(&kinds)?;
        if let Some(note) = other_namespaces_note() {
            eprintln!("{note}");
        }
        prepared.drop_privileges()?;
        let mut view = ObjectsView::new(prepared.out, args.common.json, objects, filter);
        return match view.print() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(0),
        };
    }
    let probe = attach(&filter, ids_of_keys(&filter), with_processes())?;
    // Seeded once attached: what happens in between is in the kernel's numbers, and its events
    // (stamped before the seed) only add names.
    let mut objects = Objects::seed_from_proc(&kinds)?;
    objects.set_partial_view(!filter.pids.is_empty() || !filter.comms.is_empty());
    prepared.drop_privileges()?;
    let mut view =
        ObjectsView::new(prepared.out, args.common.json, objects, filter.clone()).stamped(true);
    let schedule = Schedule {
        duration: args.common.duration,
        interval: args.watch,
        what: format!("{} objects", filter.describe()),
        notes: other_namespaces_note().into_iter().collect(),
        refresh: None,
    };
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut view))?;
    match view.finish(Some(&totals)) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// Says so when processes live in other IPC namespaces (containers): /proc/sysvipc lists the
/// objects of ipctrace's own namespace only, so theirs are known only from their traced calls.
fn other_namespaces_note() -> Option<String> {
    let (processes, namespaces) = crate::procfs::in_other_ipc_namespaces();
    (processes > 0).then(|| {
        format!(
            "note: {processes} processes in {namespaces} other IPC namespace(s): /proc/sysvipc \
             lists ipctrace's own only, so their objects show only once a traced call names \
             them (with their ipc_ns); to list one's objects, run ipctrace in it: \
             nsenter --ipc --target PID ipctrace objects"
        )
    })
}

/// What every view attaches: the calls `filter` passes (and those on `key_ids`, the objects its
/// keys name now) and their waits; `view` adds what the view needs besides (process events, or
/// leaving user memory unread).
fn attach(filter: &Filter, key_ids: Vec<(IpcKind, i32)>, view: ProbeOptions) -> Result<Probe> {
    Probe::attach(&ProbeOptions {
        filter: filter.clone(),
        waits: true,
        key_ids,
        ..view
    })
}

/// trace and objects follow processes (shm attachments are inherited, dropped at exec and exit).
fn with_processes() -> ProbeOptions {
    ProbeOptions {
        processes: true,
        ..Default::default()
    }
}

/// The ids that objects with a `--key` have now, so calls on them pass the kernel filter too.
pub(crate) fn ids_of_keys(filter: &Filter) -> Vec<(IpcKind, i32)> {
    if filter.keys.is_empty() {
        return Vec::new();
    }
    known_keys(&filter.kinds())
        .into_iter()
        .filter(|(_, _, _, key)| filter.keys.contains(key))
        .map(|(kind, _, id, _)| (kind, id))
        .collect()
}

/// Where each process has segments attached now, so a shmdt of one names its segment. With
/// `--id`/`--key` (`key_ids`: the objects its keys name), only the segments they follow: the
/// trace view reports no other's shmdt.
fn shm_addresses_now(filter: &Filter, key_ids: &[(IpcKind, i32)]) -> ShmAddressBook {
    let followed = filter.filters_objects().then(|| {
        let by_key = key_ids.iter();
        let shm_by_key = by_key.filter_map(|&(kind, id)| (kind == IpcKind::Shm).then_some(id));
        filter
            .ids
            .iter()
            .copied()
            .chain(shm_by_key)
            .collect::<Vec<_>>()
    });
    let mut book = ShmAddressBook::default();
    if let Ok(scan) = crate::procfs::read_attachments() {
        for p in scan.processes {
            for m in p.mappings {
                if followed.as_ref().is_none_or(|ids| ids.contains(&m.shmid)) {
                    book.seed(p.pid, m.start, m.shmid);
                }
            }
        }
    }
    book
}

/// The keys of the objects that exist now, from /proc/sysvipc (this namespace).
fn known_keys(kinds: &[IpcKind]) -> Vec<(IpcKind, u32, i32, i32)> {
    let ns = crate::procfs::own_ipc_namespace().unwrap_or(0);
    let mut keys = Vec::new();
    if kinds.contains(&IpcKind::Sem) {
        if let Ok(t) = crate::procfs::read_sem() {
            keys.extend(t.objects.iter().map(|o| (IpcKind::Sem, ns, o.semid, o.key)));
        }
    }
    if kinds.contains(&IpcKind::Msg) {
        if let Ok(t) = crate::procfs::read_msg() {
            keys.extend(t.objects.iter().map(|o| (IpcKind::Msg, ns, o.msqid, o.key)));
        }
    }
    if kinds.contains(&IpcKind::Shm) {
        if let Ok(t) = crate::procfs::read_shm() {
            keys.extend(t.objects.iter().map(|o| (IpcKind::Shm, ns, o.shmid, o.key)));
        }
    }
    keys
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
