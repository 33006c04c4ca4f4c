//! `ipctrace trace` (also plain `ipctrace`): every SysV IPC call as it completes, one line or
//! one JSON object each. Its options, its help, and the wiring of loader, session and view.

use super::hangs::HangSources;
use super::live::LiveObjects;
use super::{attach, ids_of_keys, runtime, shm_addresses_now, with_processes};
use crate::cli::Common;
use crate::decoder::syscalls::IpcKind;
use crate::decoder::Event;
use crate::filter::Filter;
use crate::model::deadlocks::ReportedDeadlocks;
use crate::session::{self, Schedule};
use crate::session::{Flow, Sink};
use crate::views::objects::shown_deadlocks;
use crate::views::trace::TraceView;
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::time::Duration;

pub const EXAMPLES: &str = "\
Examples:
  ipctrace                          # every SysV IPC call, one line each, until Ctrl-C
  ipctrace trace --type sem -p 1234 # semaphore calls of process 1234
  ipctrace trace --key 0x5d00012a   # calls on the object with that key
  ipctrace trace --json --duration 10 > calls.jsonl
  ipctrace trace --json --user nobody -o calls.jsonl   # attach as root, then trace as nobody

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
0600 by the user who started ipctrace, whatever the umask.";

#[derive(Debug, Args, Clone, Default)]
pub struct TraceArgs {
    #[command(flatten)]
    pub common: Common,
    /// Stop after this many calls.
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
}

/// How often trace looks for deadlocks: a /proc/sysvipc read and a semctl per set (and, when
/// something waits, a scan of the threads asleep in semop and of the kernel's undo lists).
const DEADLOCK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs `ipctrace trace`; the value is the exit code.
pub fn run(args: TraceArgs) -> Result<i32> {
    let filter = args.common.filter();
    filter.validate()?;
    let prepared = args.common.prepare(true)?;
    let key_ids = ids_of_keys(&filter);
    let probe = attach(&filter, key_ids.clone(), with_processes())?;
    let shm_addresses = shm_addresses_now(&filter, &key_ids);
    // Deadlocks are looked for every second, in the kernel's view of the semaphores; the
    // reader of its SEM_UNDO lists is loaded while privileged.
    let live = match filter.kinds().contains(&IpcKind::Sem) {
        true => Some(
            LiveObjects::seed(&[IpcKind::Sem])?.with_hangs(HangSources::new(Some(&probe)), false),
        ),
        false => None,
    };
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
    let deadlock_checks = live.is_some().then_some(DEADLOCK_CHECK_EVERY);
    let schedule = Schedule {
        duration: args.common.duration,
        interval: deadlock_checks,
        what: filter.describe(),
        notes: Vec::new(),
    };
    let mut watch = TraceWatch {
        live,
        filter,
        reported: ReportedDeadlocks::default(),
        view,
    };
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut watch))?;
    watch.view.finish(&totals)?;
    Ok(0)
}

/// The call stream, and the semaphores as the kernel has them (their ledger fed by the calls),
/// checked for deadlocks at each tick: a line when a cycle closes.
struct TraceWatch<W: Write> {
    live: Option<LiveObjects>,
    filter: Filter,
    reported: ReportedDeadlocks,
    view: TraceView<W>,
}

impl<W: Write> Sink for TraceWatch<W> {
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
