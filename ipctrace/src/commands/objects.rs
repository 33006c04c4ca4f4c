//! `ipctrace objects`: every SysV object with who created it, has it mapped, touched it last and
//! waits on it; at once from /proc, or traced for a while. Its options, help and wiring.

use super::live::LiveObjects;
use super::{attach, ids_of_keys, other_namespaces_note, runtime, with_processes};
use crate::cli::{parse_seconds, Common};
use crate::clock::clock_ns;
use crate::decoder::Event;
use crate::session::{self, Flow, Schedule, Sink};
use crate::views::objects::ObjectsView;
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::time::Duration;

pub const OBJECTS_EXAMPLES: &str = "\
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

/// Runs `ipctrace objects`; the value is the exit code.
pub fn run(args: ObjectsArgs) -> Result<i32> {
    let filter = args.common.filter();
    filter.validate()?;
    let kinds = filter.kinds();
    let tracing = args.common.duration.is_some() || args.watch.is_some();
    let prepared = args.common.prepare(tracing)?;
    if !tracing {
        let live = LiveObjects::seed(&kinds)?;
        if let Some(note) = other_namespaces_note() {
            eprintln!("{note}");
        }
        prepared.drop_privileges()?;
        let mut view = ObjectsView::new(prepared.out, args.common.json, filter);
        view.print(live.objects(), now_ns())?;
        return Ok(0);
    }
    let probe = attach(&filter, ids_of_keys(&filter), with_processes())?;
    // Seeded once attached: what happens in between is in the kernel's numbers, and its events
    // (stamped before the seed) only add names.
    let mut live = LiveObjects::seed(&kinds)?;
    live.objects_mut()
        .set_partial_view(!filter.pids.is_empty() || !filter.comms.is_empty());
    prepared.drop_privileges()?;
    let view = ObjectsView::new(prepared.out, args.common.json, filter.clone()).stamped(true);
    let schedule = Schedule {
        duration: args.common.duration,
        interval: args.watch,
        what: format!("{} objects", filter.describe()),
        notes: other_namespaces_note().into_iter().collect(),
    };
    let mut watch = Watch {
        live,
        view,
        failed: None,
    };
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut watch))?;
    if let Some(e) = watch.failed {
        return Err(e.into());
    }
    watch.report()?;
    watch.view.finish(watch.live.objects(), &totals)?;
    Ok(0)
}

/// The traced objects table: the model kept current, printed on every interval.
struct Watch<W: Write> {
    live: LiveObjects,
    view: ObjectsView<W>,
    /// Why printing stopped the session (a closed stdout among others).
    failed: Option<std::io::Error>,
}

impl<W: Write> Watch<W> {
    /// Corrects the model with the kernel's view, then prints it.
    fn report(&mut self) -> std::io::Result<()> {
        self.live.refresh();
        self.view.print(self.live.objects(), now_ns())
    }
}

impl<W: Write> Sink for Watch<W> {
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

    fn interval(&mut self) -> Flow {
        match self.report() {
            Ok(()) => Flow::Continue,
            Err(e) => {
                self.failed = Some(e);
                Flow::Stop
            }
        }
    }
}

fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}
