//! `ipctrace trace` (also plain `ipctrace`): every SysV IPC call as it completes, one line or
//! one JSON object each. Its options, its help, and the wiring of loader, session and view.

use super::{attach, ids_of_keys, runtime, shm_addresses_now, with_processes};
use crate::cli::Common;
use crate::session::{self, Schedule};
use crate::views::trace::TraceView;
use anyhow::Result;
use clap::Args;

pub const EXAMPLES: &str = "\
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

#[derive(Debug, Args, Clone, Default)]
pub struct TraceArgs {
    #[command(flatten)]
    pub common: Common,
    /// Stop after this many calls.
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
    /// Run the collector at this nice value (-20..19; below 0 needs root): on a machine whose
    /// cores are saturated, the default priority can starve it and the ring buffer fills.
    #[arg(long, value_name = "NICE", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub nice: Option<i32>,
}

/// Runs `ipctrace trace`; the value is the exit code.
pub fn run(args: TraceArgs) -> Result<i32> {
    let filter = args.common.filter();
    filter.validate()?;
    let prepared = args.common.prepare(true)?;
    let key_ids = ids_of_keys(&filter);
    let probe = attach(&filter, key_ids.clone(), with_processes())?;
    let shm_addresses = shm_addresses_now(&filter, &key_ids);
    if let Some(nice) = args.nice {
        // Before --user gives up the right to raise it. The runtime runs on this thread.
        // SAFETY: setpriority on ourselves.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
            anyhow::bail!("--nice {nice}: {}", std::io::Error::last_os_error());
        }
    }
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
    };
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut view))?;
    view.finish(&totals)?;
    Ok(0)
}
