//! `ipctrace lat`: wait-latency histograms per object, semaphore or waiting process, bcc-style.
//! Its options, its help, and the wiring of loader, session, wait model and view. Per object,
//! the kernel counts the calls and only the waits that really slept stream.

use super::followed::FollowedCommand;
use super::hangs::{HangArgs, HangSources};
use super::live::LiveObjects;
use super::{attach, exit_code, ids_of_keys, known_keys, runtime};
use crate::cli::{parse_seconds, Common, FollowArgs};
use crate::decoder::aggregates::ObjectOpKey;
use crate::decoder::syscalls::{IpcKind, Op};
use crate::decoder::Event;
use crate::kernel_view::{processes, sysvipc};
use crate::loader::aggregates::Aggregates;
use crate::loader::ProbeOptions;
use crate::model::waits::{GroupBy, Waits};
use crate::session::{self, Schedule};
use crate::session::{Flow, Sink};
use crate::views::lat::LatView;
use anyhow::Result;
use clap::Args;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

pub const LAT_EXAMPLES: &str = "\
Examples:
  ipctrace lat                      # semaphore waits until Ctrl-C, then histograms
  ipctrace lat 1 10                 # a histogram every second, ten times (as runqlat 1 10)
  ipctrace lat -m 5                 # every 5 s, buckets in milliseconds (as runqlat -m)
  ipctrace lat -- ./bench --clients 8   # the waits of a command and its children, until it exits
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
    /// Stop after this many intervals (needs an interval).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Histogram buckets in milliseconds (default microseconds), as bcc's -m.
    #[arg(short = 'm', long)]
    pub milliseconds: bool,
    /// Histogram per object, per semaphore of a set, or per waiting process.
    #[arg(long, value_enum, default_value_t = By::Object)]
    pub by: By,
    /// Interval in seconds, positional as in bcc's tools.
    #[arg(value_name = "INTERVAL", value_parser = parse_seconds, conflicts_with = "interval")]
    pub interval_pos: Option<Duration>,
    /// Number of intervals, positional as in bcc's tools.
    #[arg(value_name = "COUNT", conflicts_with = "count")]
    pub count_pos: Option<u64>,
    #[command(flatten)]
    pub hangs: HangArgs,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    #[default]
    Object,
    Semnum,
    Process,
}

impl LatArgs {
    /// A usage error clap cannot see (exit 2).
    pub fn usage_problem(&self) -> Option<String> {
        if self.common.kinds.contains(&IpcKind::Shm) {
            return Some("shared memory calls never wait: use --type sem or --type msg".into());
        }
        if self.count.is_some() && self.interval.or(self.interval_pos).is_none() {
            return Some("--count needs an interval (--interval SECS, or INTERVAL)".into());
        }
        self.common.usage_problem()
    }
}

/// Runs `ipctrace lat`; the value is the exit code.
pub fn run(args: LatArgs) -> Result<i32> {
    let mut filter = args.common.filter();
    // Waits happen on semaphores, and on queues when asked; shared memory never waits.
    if filter.kinds.is_empty() {
        filter.kinds = vec![IpcKind::Sem];
    }
    let by = match args.by {
        By::Object => GroupBy::Object,
        By::Semnum => GroupBy::Semnum,
        By::Process => GroupBy::Process,
    };
    let interval = args.interval.or(args.interval_pos);
    let count = args.count.or(args.count_pos);
    let prepared = args.common.prepare(true)?;
    let mut command = args.common.start_command(&args.follow.command)?;
    filter.follow = command.as_ref().map(FollowedCommand::pid);
    filter.validate()?;
    // Waits need no process events, and no sembufs unless grouped by semaphore number. Per
    // object the kernel counts the calls: only blocked waits (HDR percentiles, wakers), the
    // get calls (keys) and removals stream. Per semaphore or process, every call streams.
    // Either way calls are seen at their exit only.
    let in_kernel = by == GroupBy::Object;
    let mut probe = attach(
        &filter,
        ids_of_keys(&filter),
        ProbeOptions {
            skip_user_memory: !matches!(by, GroupBy::Semnum),
            aggregate: in_kernel,
            stream_ops: in_kernel.then(|| vec![Op::Semget, Op::Msgget]),
            stream_removals: in_kernel,
            stream_blocked: in_kernel,
            // Waits are measured from the sleeps: no call's start is needed.
            exit_only: true,
            ..Default::default()
        },
    )?;
    let kernel_calls = probe.aggregates.take().map(KernelCalls::new);
    let keys = known_keys(&filter.kinds());
    // Waits in progress and holders come from the kernel at each report (semaphores only);
    // the reader is loaded while privileged.
    let live = match filter.kinds().contains(&IpcKind::Sem) {
        true => Some(LiveObjects::seed(&[IpcKind::Sem])?.with_hangs(
            HangSources::new(Some(&probe), prepared.user.is_some()),
            false,
        )),
        false => None,
    };
    prepared.drop_privileges()?;
    let mut waits = Waits::new(by, filter.kinds());
    if kernel_calls.is_some() {
        waits = waits.counting_calls_elsewhere();
    }
    let mut view = LatView::new(prepared.out, args.common.json, waits, count)
        .in_milliseconds(args.milliseconds);
    if live.is_some() {
        view = view.showing_hangs(args.hangs.stuck_ns(), filter.clone());
    }
    for (kind, ns, id, key) in keys {
        view.know_key(kind, ns, id, key);
    }
    let schedule = Schedule {
        duration: args.common.duration,
        interval,
        what: format!("{} waits", filter.describe()),
        notes: Vec::new(),
        until_exit: command.as_ref().map(FollowedCommand::exit_fd),
        compat: None,
    };
    let mut watch = LatWatch {
        live,
        view,
        kernel_calls,
    };
    if let Some(command) = command.as_mut() {
        command.release()?;
    }
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut watch))?;
    let LatWatch {
        mut live,
        mut view,
        mut kernel_calls,
    } = watch;
    if let Some(live) = live.as_mut() {
        live.refresh();
    }
    if let Some(k) = kernel_calls.as_mut() {
        k.hand_over(&mut view.waits);
    }
    view.finish(&totals, live.as_ref().map(LiveObjects::objects))?;
    Ok(exit_code(command.as_mut()))
}

/// The histograms, and the semaphores as the kernel has them (read again at each report) for
/// the waits still in progress: the hang no finished wait shows.
struct LatWatch<W: Write> {
    live: Option<LiveObjects>,
    view: LatView<W>,
    kernel_calls: Option<KernelCalls>,
}

/// The calls the kernel counted per object, handed to the wait model at each report.
struct KernelCalls {
    aggregates: Aggregates,
    /// Each entry's count at the last report.
    seen: HashMap<ObjectOpKey, u64>,
}

impl KernelCalls {
    fn new(aggregates: Aggregates) -> KernelCalls {
        KernelCalls {
            aggregates,
            seen: HashMap::new(),
        }
    }

    /// Adds the calls since the last report to `waits`, then deletes the entries of our
    /// namespace's objects that /proc/sysvipc no longer lists (what churn would fill the map with).
    fn hand_over(&mut self, waits: &mut Waits) {
        let Ok(reading) = self.aggregates.read() else {
            return;
        };
        for (key, calls, _) in reading.object_ops {
            let Some(op) = Op::from_code(key.op) else {
                continue;
            };
            if !matches!(op, Op::Semop | Op::Semtimedop | Op::Msgsnd | Op::Msgrcv) {
                continue;
            }
            let before = self.seen.insert(key, calls).unwrap_or(0);
            waits.add_calls(
                op.kind(),
                key.ipc_ns,
                key.id as i32,
                calls - before.min(calls),
            );
        }
        let Some(own_ns) = processes::own_ipc_namespace() else {
            return;
        };
        let (Ok(sems), Ok(queues)) = (sysvipc::read_sem(), sysvipc::read_msg()) else {
            return;
        };
        let listed: HashSet<(IpcKind, i32)> = sems
            .objects
            .iter()
            .map(|s| (IpcKind::Sem, s.semid))
            .chain(queues.objects.iter().map(|q| (IpcKind::Msg, q.msqid)))
            .collect();
        let gone = |ns: u32, op: Op, id: u32| {
            ns == own_ns && op.kind() != IpcKind::Shm && !listed.contains(&(op.kind(), id as i32))
        };
        self.seen
            .retain(|k, _| Op::from_code(k.op).is_none_or(|op| !gone(k.ipc_ns, op, k.id)));
        self.aggregates.forget(gone, |_| false);
    }
}

impl<W: Write> Sink for LatWatch<W> {
    fn kernel_counts(&mut self, totals: &crate::session::Totals) {
        self.view.kernel_counts(totals);
    }

    fn event(&mut self, event: &Event) -> Flow {
        self.view.event(event)
    }

    fn compat_processes(&mut self, found: &[(u32, String)]) {
        self.view.compat_processes(found);
    }

    fn interval(&mut self) -> Flow {
        if let Some(live) = self.live.as_mut() {
            live.refresh();
        }
        if let Some(k) = self.kernel_calls.as_mut() {
            k.hand_over(&mut self.view.waits);
        }
        self.view.tick(self.live.as_ref().map(LiveObjects::objects))
    }
}
