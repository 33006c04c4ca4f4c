//! `ipctrace lat`: wait-latency histograms per object, semaphore or waiting process, bcc-style.
//! Its options, its help, and the wiring of loader, session, wait model and view.

use super::followed::FollowedCommand;
use super::hangs::{HangArgs, HangSources};
use super::live::LiveObjects;
use super::{attach, exit_code, ids_of_keys, known_keys, runtime};
use crate::cli::{parse_seconds, Common, FollowArgs};
use crate::decoder::syscalls::IpcKind;
use crate::decoder::Event;
use crate::loader::ProbeOptions;
use crate::model::waits::{GroupBy, Waits};
use crate::session::{self, Schedule};
use crate::session::{Flow, Sink};
use crate::views::lat::LatView;
use anyhow::Result;
use clap::Args;
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
    // Waits in progress and holders come from the kernel at each report (semaphores only);
    // the reader is loaded while privileged.
    let live = match filter.kinds().contains(&IpcKind::Sem) {
        true => Some(
            LiveObjects::seed(&[IpcKind::Sem])?.with_hangs(HangSources::new(Some(&probe)), false),
        ),
        false => None,
    };
    prepared.drop_privileges()?;
    let mut view = LatView::new(
        prepared.out,
        args.common.json,
        Waits::new(by, filter.kinds()),
        count,
    )
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
    let mut watch = LatWatch { live, view };
    if let Some(command) = command.as_mut() {
        command.release()?;
    }
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut watch))?;
    let LatWatch { mut live, mut view } = watch;
    if let Some(live) = live.as_mut() {
        live.refresh();
    }
    view.finish(&totals, live.as_ref().map(LiveObjects::objects))?;
    Ok(exit_code(command.as_mut()))
}

/// The histograms, and the semaphores as the kernel has them (read again at each report) for
/// the waits still in progress: the hang no finished wait shows.
struct LatWatch<W: Write> {
    live: Option<LiveObjects>,
    view: LatView<W>,
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
        self.view.tick(self.live.as_ref().map(LiveObjects::objects))
    }
}
