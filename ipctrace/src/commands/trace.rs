//! `ipctrace trace` (also plain `ipctrace`): every SysV IPC call as it completes, one line or
//! one JSON object each. Its options, its help, and the wiring of loader, session and view.

use super::followed::FollowedCommand;
use super::hangs::HangSources;
use super::live::LiveObjects;
use super::{attach, exit_code, ids_of_keys, runtime, shm_addresses_now, with_processes};
use crate::cli::{Common, FollowArgs, StarvedArgs};
use crate::decoder::syscalls::IpcKind;
use crate::decoder::Event;
use crate::filter::{parse_duration, Filter};
use crate::kernel_view::processes::{ProcessScan, ScanFor};
use crate::loader::ProbeOptions;
use crate::model::deadlocks::ReportedDeadlocks;
use crate::session::{self, Schedule};
use crate::session::{Flow, Sink};
use crate::views::objects::shown_deadlocks;
use crate::views::trace::{FormatPool, TraceOut, TraceView};
use anyhow::Result;
use clap::Args;
use std::time::Duration;

pub const EXAMPLES: &str = "\
Examples:
  ipctrace                          # every SysV IPC call, one line each, until Ctrl-C
  ipctrace trace --type sem -p 1234 # semaphore calls of process 1234
  ipctrace trace -n postgres        # calls of processes named postgres (as bcc's -n)
  ipctrace trace --key 0x5d00012a   # calls on the object with that key
  ipctrace trace -- python3 app.py  # run app.py, follow it and its children until it exits
  ipctrace trace --failed -U        # only calls that failed, with the caller's uid
  ipctrace trace --min-blocked 10ms # only calls that slept 10 ms or more waiting
  ipctrace trace --json --duration 10 > calls.jsonl
  ipctrace trace --json --user nobody -o calls.jsonl   # attach as root, then trace as nobody
  ipctrace trace --json --realtime 10 --ring-size 128M -o calls.jsonl
                                    # keep up on saturated cores (SCHED_FIFO, a larger ring)

Lines come as calls return: TIME is when the call returned and LAT how long it took (JSON's
ts_ns is when it was made). A call a signal interrupted is reported as the process saw it: EINTR
when a handler ran, or one call the kernel restarted (the line ends saying so).

Needs root, or CAP_BPF and CAP_PERFMON, on a kernel with BTF (/sys/kernel/btf/vmlinux) and
syscall tracepoints (CONFIG_FTRACE_SYSCALLS).

With --user USER it becomes USER once its programs are attached, /proc first read and its output
open (as tcpdump -Z): no capabilities in any set and no way back to root, while the ring buffer
and counters keep working. Later reads of /proc are USER's: attachments of other users'
processes, values and queue sizes of objects USER may not read come from traced calls only, and
32-bit processes of other users go unreported. --output FILE is created (or truncated) with mode
0600 by the user who started ipctrace, whatever the umask.

With -- CMD ARGS... it runs CMD (as the user who started ipctrace), held until the programs are
attached, so its first call is seen; the kernel follows every process CMD forks from then on.
Tracing ends when CMD exits, and ipctrace exits with CMD's status (128+N if signal N killed it,
127 if it could not be found), as strace and perf stat do. With --json on stdout, CMD's own
standard output goes to stderr so that the stream stays JSON. --failed, --min-lat and
--min-blocked are judged in the kernel, so what they drop costs no ring buffer space; a shmdt
whose shmat was dropped names no segment.";

#[derive(Debug, Args, Clone, Default)]
pub struct TraceArgs {
    #[command(flatten)]
    pub common: Common,
    /// Stop after this many calls.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    #[command(flatten)]
    pub starved: StarvedArgs,
    /// Only calls that returned an error.
    #[arg(long)]
    pub failed: bool,
    /// Only calls that took at least DURATION, enter to exit (10ms, 1.5s, 250us; a number is ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_lat: Option<Duration>,
    /// Only calls that slept at least DURATION waiting (on a semaphore, a full or empty queue).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_blocked: Option<Duration>,
    /// Start each line with the caller's uid (JSON always has uid and gid), as bcc's -U.
    #[arg(short = 'U', long = "print-uid")]
    pub print_uid: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
}

impl TraceArgs {
    /// A usage error clap cannot see (exit 2).
    pub fn usage_problem(&self) -> Option<String> {
        self.common.usage_problem()
    }

    fn filter(&self, command: Option<&FollowedCommand>) -> Filter {
        Filter {
            follow: command.map(FollowedCommand::pid),
            only_failed: self.failed,
            min_lat: self.min_lat,
            min_blocked: self.min_blocked,
            ..self.common.filter()
        }
    }
}

/// How often trace looks for deadlocks: a /proc/sysvipc read and a semctl per set (and, when
/// something waits, a scan of the threads asleep in semop and of the kernel's undo lists).
const DEADLOCK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs `ipctrace trace`; the value is the exit code.
pub fn run(args: TraceArgs) -> Result<i32> {
    let prepared = args.common.prepare(true)?;
    let mut command = args.common.start_command(&args.follow.command)?;
    let filter = args.filter(command.as_ref());
    filter.validate()?;
    let key_ids = ids_of_keys(&filter);
    let probe = attach(
        &filter,
        key_ids.clone(),
        ProbeOptions {
            ring_bytes: args.starved.ring_size,
            ..with_processes()
        },
    )?;
    // Before --user gives up the right to raise it. The runtime runs on this thread.
    args.starved.raise_priority()?;
    // One walk of /proc for the attachments now, the 32-bit processes the session reports and,
    // seeding the semaphores, the threads asleep in semop.
    let what = ScanFor {
        mappings: true,
        abi: true,
        ..ScanFor::default()
    };
    // Deadlocks are looked for every second, in the kernel's view of the semaphores; the
    // reader of its SEM_UNDO lists is loaded while privileged.
    let (live, scan) = match filter.kinds().contains(&IpcKind::Sem) {
        true => {
            let (live, scan) = LiveObjects::seed_with(&[IpcKind::Sem], what)?;
            (
                Some(live.with_hangs(
                    HangSources::new(Some(&probe), prepared.user.is_some()).loading_aside(),
                    false,
                )),
                scan,
            )
        }
        false => (None, ProcessScan::read(what).unwrap_or_default()),
    };
    let shm_addresses = shm_addresses_now(&filter, &key_ids, &scan);
    prepared.drop_privileges()?;
    let mut view = TraceView::new(
        FormatPool::new(prepared.out),
        args.common.json,
        shm_addresses,
        args.count,
    )
    .with_uid_column(args.print_uid);
    if filter.filters_objects() {
        view = view.following_objects();
    }
    let deadlock_checks = live.is_some().then_some(DEADLOCK_CHECK_EVERY);
    let schedule = Schedule {
        duration: args.common.duration,
        interval: deadlock_checks,
        what: filter.describe(),
        notes: Vec::new(),
        until_exit: command.as_ref().map(FollowedCommand::exit_fd),
        compat: Some(scan.compat),
    };
    let mut watch = TraceWatch {
        live,
        filter,
        reported: ReportedDeadlocks::default(),
        view,
    };
    if let Some(command) = command.as_mut() {
        command.release()?;
    }
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut watch))?;
    watch.view.finish(&totals)?.close()?;
    Ok(exit_code(command.as_mut()))
}

/// The call stream, and the semaphores as the kernel has them (their ledger fed by the calls),
/// checked for deadlocks at each tick: a line when a cycle closes.
struct TraceWatch<W: TraceOut> {
    live: Option<LiveObjects>,
    filter: Filter,
    reported: ReportedDeadlocks,
    view: TraceView<W>,
}

impl<W: TraceOut> Sink for TraceWatch<W> {
    fn kernel_counts(&mut self, totals: &crate::session::Totals) {
        if let Some(live) = self.live.as_mut() {
            live.objects_mut().calls_lost(totals.kernel.lost);
        }
        self.view.kernel_counts(totals);
    }

    fn event(&mut self, event: &Event) -> Flow {
        if let Some(live) = self.live.as_mut() {
            match event {
                Event::Call(call) if call.kind() != IpcKind::Sem => {}
                _ => live.apply(event),
            }
        }
        self.view.event(event)
    }

    fn batch_done(&mut self) -> Flow {
        if let Some(live) = self.live.as_mut() {
            live.batch_done();
        }
        self.view.batch_done()
    }

    fn caught_up(&mut self, through_ns: u64) {
        if let Some(live) = self.live.as_mut() {
            live.caught_up(through_ns);
        }
    }

    fn compat_processes(&mut self, found: &[(u32, String)]) {
        self.view.compat_processes(found);
    }

    fn interval(&mut self) -> Flow {
        let Some(live) = self.live.as_mut() else {
            return Flow::Continue;
        };
        live.refresh();
        let found = shown_deadlocks(live.objects(), &self.filter);
        for d in self.reported.closed_since(found) {
            if self.view.deadlock(&d) == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }
}
