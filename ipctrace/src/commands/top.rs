//! `ipctrace top`: its arguments and help, and the wiring: the same probe as `objects --watch`
//! (no kernel work of its own), the object model seeded from /proc, and the full-screen view.

use super::{attach, ids_of_keys, other_namespaces_note, runtime, with_processes};
use crate::cli::{parse_seconds, Common};
use crate::model::objects::Objects;
use crate::session::{self, Schedule};
use crate::views::top::{TopOptions, TopView};
use anyhow::Result;
use clap::Args;
use std::io::IsTerminal;
use std::time::Duration;

pub const EXAMPLES: &str = "\
Examples:
  ipctrace top                      # every object, refreshed every second
  ipctrace top -i 2 --type sem      # semaphores only, every 2 s
  ipctrace top --key 0x5d00012a     # one object (and what waits on it)
  ipctrace top -p 1234 --stuck 30   # calls of one process; stuck means 30 s without progress

Views (Tab or 1-4): Semaphores (hottest first: time blocked per second, waits per second, p99,
waiters now, the longest wait), Objects (every segment, set and queue, sortable by any column),
Queues (depth, bytes against qbytes, sends and receives per second, stuck ones), Processes
(calls, errors and time blocked per second, what each has attached or waits on). Enter opens
a row's detail. Keys: q quit, arrows or j k move, s and < > sort, / filter, p pause, ? help.
The line under the title names what needs a look: stuck waiters, full or stuck queues,
segments nobody has mapped whose creator is gone, events lost.

top needs a terminal: for pipes and files, use ipctrace objects --watch SECS (or with --json).
On privileges and --user: ipctrace --help.";

#[derive(Debug, Args, Clone)]
pub struct TopArgs {
    #[command(flatten)]
    pub common: Common,
    /// Refresh every SECS seconds.
    #[arg(short = 'i', long, value_name = "SECS", value_parser = parse_seconds, default_value = "1")]
    pub interval: Duration,
    /// A waiter, or a queue holding messages nobody receives, is stuck after SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "5")]
    pub stuck: Duration,
}

pub fn run(args: TopArgs) -> Result<i32> {
    if args.common.json || args.common.output.is_some() {
        eprintln!(
            "ipctrace: top draws on the terminal and takes neither --json nor --output: \
             use ipctrace objects --watch SECS (--json) for those"
        );
        return Ok(2);
    }
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "ipctrace: top needs a terminal and stdout is not one: for a pipe or a file use \
             ipctrace objects --watch SECS, or with --json"
        );
        return Ok(2);
    }
    let filter = args.common.filter();
    filter.validate()?;
    let kinds = filter.kinds();
    let prepared = args.common.prepare(true)?;
    let probe = attach(&filter, ids_of_keys(&filter), with_processes())?;
    // Seeded once attached, as objects --watch does: what happens in between is in the
    // kernel's numbers, and its events only add names.
    let mut objects = Objects::seed_from_proc(&kinds)?;
    objects.set_partial_view(!filter.pids.is_empty() || !filter.comms.is_empty());
    prepared.drop_privileges()?;
    let users = crate::views::objects::read_users();
    let mut view = TopView::new(
        objects,
        TopOptions {
            filter: filter.clone(),
            interval: args.interval,
            stuck: args.stuck,
        },
        users,
    );
    let schedule = Schedule {
        duration: args.common.duration,
        interval: Some(args.interval),
        what: format!("{} for top", filter.describe()),
        notes: other_namespaces_note().into_iter().collect(),
    };
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut view));
    let failure = view.failure();
    // The terminal is back before anything else is said.
    view.close();
    drop(view);
    let totals = totals?;
    if let Some(e) = failure {
        anyhow::bail!("drawing on the terminal: {e}");
    }
    print!("{}", crate::views::summary(&totals, false));
    Ok(0)
}
