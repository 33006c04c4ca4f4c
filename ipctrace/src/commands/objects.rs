//! `ipctrace objects`: every SysV object with who created it, has it mapped, touched it last and
//! waits on it; at once from /proc, or traced for a while. Its options, help and wiring.

use super::followed::FollowedCommand;
use super::hangs::{HangArgs, HangSources};
use super::live::LiveObjects;
use super::{
    attach, exit_code, ids_of_keys, other_namespaces_note, runtime, seed_scan, with_processes,
};
use crate::cli::{parse_seconds, Common, FollowArgs};
use crate::clock::monotonic_ns;
use crate::decoder::syscalls::IpcKind;
use crate::decoder::Event;
use crate::filter::parse_id;
use crate::kernel_view::limits::IpcLimits;
use crate::kernel_view::snapshot::KernelSnapshot;
use crate::loader::ProbeOptions;
use crate::session::{self, Flow, Schedule, Sink};
use crate::views::objects::ObjectsView;
use crate::views::objects::{know_user_names, limits::render_limits, orphans::render_orphans};
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::time::Duration;

pub const OBJECTS_EXAMPLES: &str = "\
Examples:
  ipctrace objects                  # every object now, from /proc (an ipcs -a that names names)
  ipctrace objects --duration 10    # trace for 10 s: creators, last operations, then the table
  ipctrace objects 2 --type sem     # the semaphore table every 2 s, with waiters (-w 2 too)
  ipctrace objects -s 5 3           # ipcs -s, traced: every 5 s, three times
  ipctrace objects -i 229405        # one object in detail, as ipcs -i (per semaphore, per process)
  ipctrace objects --limits         # each limit with what uses it now (ipcs -l and -u)
  ipctrace objects --orphans        # segments nothing maps whose creator is gone (ipcrm them)
  ipctrace objects -- ./app         # run app, then the objects as it left them
  ipctrace objects --json --key 0x5d00012a
  ipctrace objects --watch 5 --user nobody -o objects.log   # root only to attach

-m, -s and -q choose shared memory, semaphores and queues as ipcs does (--type too).
Without --duration, an interval or -- CMD nothing is traced: creators of segments come from the kernel's
cpid, and semaphore sets and queues made before ipctrace looked show no creator.
/proc/sysvipc lists ipctrace's own IPC namespace only: objects of other namespaces (containers)
show once a traced call names them, labelled with their ipc_ns, and a note says when processes
live in other namespaces. To list one's objects: nsenter --ipc --target PID ipctrace objects.
On a terminal, ATTACHED and WAITERS give the count and as many names as fit the width (then
+N for the rest); with --wide, or when the output is a pipe or a file, every name.
On privileges, --user and --output: ipctrace --help.";

#[derive(Debug, Args, Clone, Default)]
pub struct ObjectsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Trace, and print the table every SECS seconds (until --duration, --count, Ctrl-C or SIGTERM).
    #[arg(short = 'w', long, value_name = "SECS", value_parser = parse_seconds, conflicts_with = "interval_pos")]
    pub watch: Option<Duration>,
    #[command(flatten)]
    pub hangs: HangArgs,
    /// Cut nothing: every attached process and waiter, however wide the lines (as when the
    /// output is not a terminal).
    #[arg(long)]
    pub wide: bool,
    /// Stop after this many tables (needs an interval).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Interval in seconds, positional as in bcc's tools and vmstat (as --watch).
    #[arg(value_name = "INTERVAL", value_parser = parse_seconds)]
    pub interval_pos: Option<Duration>,
    /// Number of tables, positional (as --count).
    #[arg(value_name = "COUNT", conflicts_with = "count")]
    pub count_pos: Option<u64>,
    /// One object in detail, as ipcs -i: per semaphore its value, last pid, ncount, zcount,
    /// waiters and holders; a queue's counts and waiters; a segment's attachments with their
    /// addresses.
    #[arg(short = 'i', long = "info", value_name = "ID", value_parser = parse_id)]
    pub info: Option<i32>,
    /// Each SysV IPC limit with what uses it now (ipcs -l and -u together); -u too.
    #[arg(short = 'l', long, short_alias = 'u', conflicts_with_all = ["watch", "interval_pos", "info", "orphans", "duration", "command"])]
    pub limits: bool,
    /// Segments nothing has mapped whose creator is gone, with age, size and owner.
    #[arg(long, conflicts_with_all = ["watch", "interval_pos", "info", "duration", "command"])]
    pub orphans: bool,
    /// Shared memory only (as ipcs -m; --type shm).
    #[arg(short = 'm', long = "shm")]
    pub shm: bool,
    /// Semaphores only (as ipcs -s; --type sem).
    #[arg(short = 's', long = "sem")]
    pub sem: bool,
    /// Message queues only (as ipcs -q; --type msg).
    #[arg(short = 'q', long = "msg")]
    pub msg: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
}

impl ObjectsArgs {
    /// A usage error clap cannot see (exit 2).
    pub fn usage_problem(&self) -> Option<String> {
        if self.count.is_some() && self.interval().is_none() {
            return Some("--count needs an interval (--watch SECS, or INTERVAL)".into());
        }
        self.common.usage_problem()
    }

    fn interval(&self) -> Option<Duration> {
        self.watch.or(self.interval_pos)
    }

    /// --type and ipcs's -m, -s, -q together.
    fn kinds(&self) -> Vec<IpcKind> {
        let mut kinds = self.common.kinds.clone();
        for (asked, kind) in [
            (self.shm, IpcKind::Shm),
            (self.sem, IpcKind::Sem),
            (self.msg, IpcKind::Msg),
        ] {
            if asked && !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds
    }
}

/// Runs `ipctrace objects`; the value is the exit code.
pub fn run(args: ObjectsArgs) -> Result<i32> {
    let mut filter = args.common.filter();
    filter.kinds = args.kinds();
    if let Some(id) = args.info {
        filter.ids = vec![id];
    }
    filter.validate()?;
    let kinds = filter.kinds();
    if args.limits || args.orphans {
        return kernel_tables(&args, &kinds);
    }
    let interval = args.interval();
    let tracing =
        args.common.duration.is_some() || interval.is_some() || !args.follow.command.is_empty();
    let prepared = args.common.prepare(tracing)?;
    if !tracing {
        let (mut live, scan) = LiveObjects::seed_with(&kinds, seed_scan(false))?;
        if kinds.contains(&IpcKind::Sem) {
            live = live.with_hangs(HangSources::new(None, true), true);
        }
        if let Some(note) = other_namespaces_note(&scan) {
            eprintln!("{note}");
        }
        prepared.drop_privileges()?;
        let width = table_width(&args, &prepared.out);
        let mut view = ObjectsView::new(prepared.out, args.common.json, filter.clone())
            .width(width)
            .detailed(args.info.is_some())
            .stuck_after(args.hangs.stuck_ns());
        let shown = live
            .objects()
            .iter()
            .any(|o| crate::views::objects::shown(&filter, o));
        if args.info.is_some() && !shown {
            anyhow::bail!("no object with id {}", args.info.unwrap_or_default());
        }
        view.print(live.objects(), monotonic_ns())?;
        return Ok(0);
    }
    let mut command = args.common.start_command(&args.follow.command)?;
    filter.follow = command.as_ref().map(FollowedCommand::pid);
    // No view of objects needs a call's start: each call is seen at its exit only.
    let probe = attach(
        &filter,
        ids_of_keys(&filter),
        ProbeOptions {
            exit_only: true,
            ..with_processes()
        },
    )?;
    // Seeded once attached: what happens in between is in the kernel's numbers, and its events
    // (stamped before the seed) only add names.
    let (mut live, scan) = LiveObjects::seed_with(&kinds, seed_scan(true))?;
    let partial_view =
        !filter.pids.is_empty() || !filter.comms.is_empty() || filter.follow.is_some();
    live.objects_mut().set_partial_view(partial_view);
    if let Ok(in_flight) = probe.pending_calls() {
        live = live.with_calls_in_flight(in_flight, !partial_view);
    }
    // Loaded while privileged; read at every report, holders shown waited on or not.
    if kinds.contains(&IpcKind::Sem) {
        live = live.with_hangs(
            HangSources::new(Some(&probe), prepared.user.is_some()),
            true,
        );
    }
    prepared.drop_privileges()?;
    let width = table_width(&args, &prepared.out);
    let view = ObjectsView::new(prepared.out, args.common.json, filter.clone())
        .stamped(true)
        .width(width)
        .detailed(args.info.is_some())
        .stuck_after(args.hangs.stuck_ns());
    let schedule = Schedule {
        duration: args.common.duration,
        interval,
        what: format!("{} objects", filter.describe()),
        notes: other_namespaces_note(&scan).into_iter().collect(),
        until_exit: command.as_ref().map(FollowedCommand::exit_fd),
        compat: Some(scan.compat),
    };
    let mut watch = Watch {
        live,
        view,
        failed: None,
        remaining: args.count.or(args.count_pos),
        losses: Default::default(),
    };
    if let Some(command) = command.as_mut() {
        command.release()?;
    }
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut watch))?;
    if let Some(e) = watch.failed {
        return Err(e.into());
    }
    watch.report()?;
    watch.view.finish(watch.live.objects(), &totals)?;
    Ok(exit_code(command.as_mut()))
}

/// The traced objects table: the model kept current, printed on every interval.
struct Watch<W: Write> {
    live: LiveObjects,
    view: ObjectsView<W>,
    /// Why printing stopped the session (a closed stdout among others).
    failed: Option<std::io::Error>,
    /// Reports still to print (`--count`); the last one is made after the session.
    remaining: Option<u64>,
    /// Says losses on stderr as they happen.
    losses: crate::views::LossWarning,
}

impl<W: Write> Watch<W> {
    /// Corrects the model with the kernel's view, then prints it.
    fn report(&mut self) -> std::io::Result<()> {
        self.live.refresh();
        self.view.print(self.live.objects(), monotonic_ns())
    }
}

/// The width to fit tables into: the terminal's, unless --wide (or no terminal) asks for all.
fn table_width(args: &ObjectsArgs, out: &crate::views::output::Output) -> Option<usize> {
    if args.wide {
        None
    } else {
        out.terminal_width()
    }
}

impl<W: Write> Sink for Watch<W> {
    fn kernel_counts(&mut self, totals: &crate::session::Totals) {
        self.live.objects_mut().calls_lost(totals.kernel.lost);
        self.losses.say(totals);
    }

    fn compat_processes(&mut self, found: &[(u32, String)]) {
        crate::views::say_compat_processes(found);
    }

    fn event(&mut self, event: &Event) -> Flow {
        self.live.apply(event);
        Flow::Continue
    }

    fn batch_done(&mut self) -> Flow {
        self.live.batch_done();
        Flow::Continue
    }

    fn caught_up(&mut self, through_ns: u64) {
        self.live.caught_up(through_ns);
    }

    /// Segments are read before the last drain of the interval, so that the fork and exit
    /// events of what changed while their maps were scanned are in the list when it is printed.
    fn before_interval(&mut self) {
        self.live.refresh_kinds(&[IpcKind::Shm]);
    }

    fn settled(&mut self) -> bool {
        self.live.recount_segments_ahead_of_list()
    }

    /// Sets and queues are read last: their waiters are the kernel's now (the events say when a
    /// wait ends, never when one begins).
    fn interval(&mut self) -> Flow {
        if let Some(left) = self.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                return Flow::Stop; // the last report follows the session
            }
        }
        self.live.refresh_kinds(&[IpcKind::Sem, IpcKind::Msg]);
        match self.view.print(self.live.objects(), monotonic_ns()) {
            Ok(()) => Flow::Continue,
            Err(e) => {
                self.failed = Some(e);
                Flow::Stop
            }
        }
    }
}

/// `--limits` and `--orphans`: what the kernel's tables say now, nothing traced.
fn kernel_tables(args: &ObjectsArgs, kinds: &[IpcKind]) -> Result<i32> {
    let prepared = args.common.prepare(false)?;
    let snap = if args.orphans {
        KernelSnapshot::read(&[IpcKind::Shm], &Default::default())?
    } else {
        KernelSnapshot::read(kinds, &Default::default())?
    };
    let limits = if args.limits {
        Some(IpcLimits::read()?)
    } else {
        None
    };
    prepared.drop_privileges()?;
    let text = match limits {
        Some(limits) => render_limits(
            &crate::model::limits::limit_uses(&limits, &snap),
            args.common.json,
        ),
        None => {
            let orphans = crate::model::orphans::orphans(&snap);
            let mut users = std::collections::HashMap::new();
            know_user_names(&mut users, orphans.iter().map(|s| s.uid));
            let now_s = crate::clock::clock_ns(libc::CLOCK_REALTIME) as i64 / 1_000_000_000;
            render_orphans(&orphans, now_s, &users, args.common.json)
        }
    };
    let mut out = prepared.out;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(0)
}
