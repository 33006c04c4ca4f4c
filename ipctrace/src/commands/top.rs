//! `ipctrace top`: its arguments and help, and the wiring: the same probe as `objects --watch`
//! (no kernel work of its own), the object model seeded from /proc, and the full-screen view.

use super::hangs::HangSources;
use super::live::LiveObjects;
use super::{attach, ids_of_keys, other_namespaces_note, runtime, seed_scan, with_processes};
use crate::cli::{parse_seconds, Common, StarvedArgs};
use crate::clock::monotonic_ns;
use crate::decoder::syscalls::IpcKind;
use crate::decoder::Event;
use crate::filter::Filter;
use crate::loader::aggregates::Counted;
use crate::loader::{KernelCounts, ProbeOptions};
use crate::model::activity::Activity;
use crate::model::waits::{GroupBy, Waits};
use crate::session::{self, Flow, Schedule, Sink};
use crate::views::objects::know_user_names;
use crate::views::top::screen::Models;
use crate::views::top::TopView;
use anyhow::Result;
use clap::Args;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

pub const EXAMPLES: &str = "\
Examples:
  ipctrace top                      # every object, refreshed every second
  ipctrace top -i 2 --type sem      # semaphores only, every 2 s
  ipctrace top --key 0x5d00012a     # one object (and what waits on it)
  ipctrace top -p 1234 --stuck 30   # calls of one process; stuck means 30 s without progress
  ipctrace top --realtime 10        # keeps up when the cores are saturated (events lost otherwise)

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
    #[command(flatten)]
    pub starved: StarvedArgs,
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
    let mut probe = attach(
        &filter,
        ids_of_keys(&filter),
        ProbeOptions {
            ring_bytes: args.starved.ring_size,
            // No view of top needs a call's start: each call is seen at its exit only.
            exit_only: true,
            // Most calls of a busy queue: counted in the kernel, so that a starved top has
            // less to read (each interval takes the counts; a few stream as examples).
            count_plain_messages: kinds.contains(&IpcKind::Msg),
            ..with_processes()
        },
    )?;
    // Before --user gives up the right to raise it. The session runs on this thread.
    args.starved.raise_priority()?;
    // Seeded once attached, as objects --watch does: what happens in between is in the
    // kernel's numbers, and its events only add names.
    let (mut live, scan) = LiveObjects::seed_with(&kinds, seed_scan(true))?;
    let partial_view = !filter.pids.is_empty() || !filter.comms.is_empty();
    live.objects_mut().set_partial_view(partial_view);
    if let Ok(in_flight) = probe.pending_calls() {
        live = live.with_calls_in_flight(in_flight, !partial_view);
    }
    // Holders from the kernel's SEM_UNDO lists: the reader is loaded while privileged.
    if kinds.contains(&IpcKind::Sem) {
        live = live.with_hangs(
            HangSources::new(Some(&probe), prepared.user.is_some()),
            true,
        );
    }
    let counted = probe.counted.take();
    prepared.drop_privileges()?;
    // Waits happen on semaphores and queues; shared memory never waits.
    let wait_kinds = kinds.iter().copied().filter(|k| *k != IpcKind::Shm);
    let now = monotonic_ns();
    let mut top = Top {
        shown: Shown {
            live,
            // The object model counts each set's semops already (its op counts): the waits
            // need only the calls that slept or failed.
            waits: Waits::new(GroupBy::Semnum, wait_kinds.collect()).counting_calls_elsewhere(),
            activity: Activity::new(now),
            filter: filter.clone(),
            users: HashMap::new(),
            stuck_ns: args.stuck.as_nanos() as u64,
            counts: KernelCounts::default(),
            compat_processes: 0,
            events_per_sec: 0.0,
        },
        view: TopView::new(args.interval),
        events_since_tick: 0,
        counted,
        counted_calls: 0,
        last_tick_ns: now,
        own_pid: std::process::id(),
        failed: None,
    };
    let schedule = Schedule {
        duration: args.common.duration,
        interval: Some(args.interval),
        what: format!("{} for top", filter.describe()),
        notes: other_namespaces_note(&scan).into_iter().collect(),
        until_exit: None,
        compat: Some(scan.compat),
    };
    let totals = runtime()?.block_on(session::run(probe, schedule, &mut top));
    // The terminal is back before anything else is said.
    top.view.close();
    let mut totals = totals?;
    top.take_counted();
    // Seen, though not one by one.
    totals.events += top.counted_calls;
    if let Some(e) = top.failed {
        anyhow::bail!("drawing on the terminal: {e}");
    }
    print!("{}", crate::views::summary(&totals, false, &[]));
    if top.counted_calls > 0 {
        println!(
            "{} of them counted in the kernel, not streamed (msgsnd and msgrcv that did not sleep)",
            top.counted_calls
        );
    }
    Ok(0)
}

/// The models top shows, kept current from the stream and the kernel's view.
struct Shown {
    live: LiveObjects,
    waits: Waits,
    activity: Activity,
    /// Which objects to show (--type, --id, --key).
    filter: Filter,
    users: HashMap<u32, String>,
    stuck_ns: u64,
    counts: KernelCounts,
    compat_processes: usize,
    events_per_sec: f64,
}

impl Shown {
    fn models(&self) -> Models<'_> {
        Models {
            objects: self.live.objects(),
            waits: &self.waits,
            activity: &self.activity,
            counts: self.counts,
            filter: &self.filter,
            users: &self.users,
            alive: &running,
            stuck_ns: self.stuck_ns,
            events_per_sec: self.events_per_sec,
            compat_processes: self.compat_processes,
        }
    }
}

/// Whether a process runs now (a segment's creator known only by the kernel's cpid).
fn running(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

struct Top {
    shown: Shown,
    view: TopView,
    events_since_tick: u64,
    /// The plain msgsnd and msgrcv calls the kernel counts instead of streaming.
    counted: Option<Counted>,
    counted_calls: u64,
    last_tick_ns: u64,
    /// ipctrace's own semctl and msgctl calls (reading values) are not the workload's.
    own_pid: u32,
    /// Why the terminal could not be drawn on, if it could not.
    failed: Option<std::io::Error>,
}

impl Top {
    /// Adds what the kernel counted since the last look to the models.
    fn take_counted(&mut self) {
        let Some(counted) = self.counted.as_mut() else {
            return;
        };
        for delta in counted.take_new(|pid| !running(pid)) {
            self.counted_calls += delta.calls;
            self.events_since_tick += delta.calls;
            if delta.pid == self.own_pid {
                continue;
            }
            self.shown.live.objects_mut().apply_counted(&delta);
            self.shown.activity.apply_counted(&delta);
        }
    }

    fn fail(&mut self, e: std::io::Error) -> Flow {
        self.failed = Some(e);
        Flow::Stop
    }
}

impl Sink for Top {
    fn event(&mut self, event: &Event) -> Flow {
        self.shown.live.apply(event);
        if let Event::Call(call) = event {
            self.events_since_tick += 1;
            if call.pid == self.own_pid {
                return Flow::Continue;
            }
            self.shown.waits.record(call);
        }
        self.shown.activity.apply(event);
        Flow::Continue
    }

    fn caught_up(&mut self, through_ns: u64) {
        self.shown.live.caught_up(through_ns);
    }

    fn batch_done(&mut self) -> Flow {
        self.shown.live.batch_done();
        let now = monotonic_ns();
        let first = !self.view.started();
        if first {
            self.view.refresh(&self.shown.models(), now);
        }
        let changed = match self.view.read_keys(&self.shown.models(), now) {
            Ok(changed) => changed,
            Err(e) => return self.fail(e),
        };
        if self.view.quit() {
            self.view.close();
            return Flow::Stop;
        }
        if first || changed {
            if let Err(e) = self.view.draw() {
                return self.fail(e);
            }
        }
        Flow::Continue
    }

    /// Losses go on the alert line (stderr is held while the screen is up).
    fn kernel_counts(&mut self, totals: &session::Totals) {
        self.shown.live.objects_mut().calls_lost(totals.kernel.lost);
        self.shown.counts = totals.kernel;
    }

    /// As objects --watch does: segments first, drained again while their counts are ahead
    /// of the fork and exit events; sets and queues last, so their waiters are the kernel's now.
    fn before_interval(&mut self) {
        self.shown.live.refresh_kinds(&[IpcKind::Shm]);
    }

    fn settled(&mut self) -> bool {
        self.shown.live.recount_segments_ahead_of_list()
    }

    fn interval(&mut self) -> Flow {
        // Before the kernel's queues are read: their depths are those after these calls.
        self.take_counted();
        self.shown.live.refresh_kinds(&[IpcKind::Sem, IpcKind::Msg]);
        let now = monotonic_ns();
        let objects = self.shown.live.objects();
        self.shown.activity.tick(now, |k| objects.get(k).is_some());
        let owners = objects.iter().filter_map(|o| o.owner.map(|w| w.uid));
        know_user_names(&mut self.shown.users, owners);
        let secs = now.saturating_sub(self.last_tick_ns) as f64 / 1e9;
        if secs > 0.0 {
            self.shown.events_per_sec = self.events_since_tick as f64 / secs;
        }
        self.events_since_tick = 0;
        self.last_tick_ns = now;
        self.view.refresh(&self.shown.models(), now);
        match self.view.draw() {
            Ok(()) => Flow::Continue,
            Err(e) => self.fail(e),
        }
    }

    fn compat_processes(&mut self, found: &[(u32, String)]) {
        // On stderr, which top holds and prints once the terminal is back; and on the alert line.
        crate::views::say_compat_processes(found);
        self.shown.compat_processes += found.len();
    }

    fn stopped(&mut self) {
        self.view.close();
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use crate::decoder::syscalls::IpcKind;
    use clap::Parser;
    use std::time::Duration;

    #[test]
    fn top_takes_the_shared_filters_an_interval_and_a_stuck_threshold() {
        let cli = Cli::try_parse_from([
            "ipctrace",
            "top",
            "-p",
            "5",
            "--comm",
            "pg",
            "--type",
            "sem",
            "--id",
            "7",
            "-k",
            "0x10",
            "--duration",
            "3",
            "--user",
            "nobody",
            "-i",
            "0.5",
            "--stuck",
            "30",
        ])
        .unwrap();
        let Some(Command::Top(top)) = cli.command else {
            panic!("not top")
        };
        let f = top.common.filter();
        assert_eq!(
            (f.pids, f.comms, f.kinds, f.ids, f.keys),
            (
                vec![5],
                vec!["pg".to_string()],
                vec![IpcKind::Sem],
                vec![7],
                vec![0x10]
            )
        );
        assert_eq!(top.common.duration, Some(Duration::from_secs(3)));
        assert_eq!(top.common.user.as_deref(), Some("nobody"));
        assert_eq!(
            (top.interval, top.stuck),
            (Duration::from_millis(500), Duration::from_secs(30))
        );
        let Some(Command::Top(top)) = Cli::try_parse_from(["ipctrace", "top"]).unwrap().command
        else {
            panic!("not top")
        };
        assert_eq!(
            (top.interval, top.stuck),
            (Duration::from_secs(1), Duration::from_secs(5))
        );
        let err = Cli::try_parse_from(["ipctrace", "top", "-i", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
