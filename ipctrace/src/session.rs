//! Runs one tracing session: drains the ring buffer in batches, decodes each record and hands it
//! to the running view, until --duration, --count, Ctrl-C, SIGTERM, SIGHUP or a closed stdout.

use crate::decoder::{decode, Event, ProcessChange};
use crate::loader::{KernelCounts, Probe};
use anyhow::{Context, Result};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

/// How often the ring buffer is drained. The kernel side never wakes us (a wakeup would cost every
/// traced call), so this bounds both the delay and the backlog: 10 ms at the highest rate one core
/// drives (about 700k calls/s of 192-byte records) is 1.3 MB of the 8 MiB ring, which leaves
/// the collector 60 ms of stalls (a /proc rescan, a busy machine) before anything is lost.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// How many times a view may ask for the ring buffer to be drained again before an interval's
/// report, while the kernel's view and the events disagree.
const SETTLE_ROUNDS: usize = 4;

/// How often the kernel's loss counters are looked at, and so at most how often stderr hears
/// of losses while they happen.
const LOSS_WARNING_EVERY: Duration = Duration::from_secs(1);

/// Whether the session goes on after a view handled something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What a view does with the stream.
pub trait Sink {
    fn event(&mut self, event: &Event) -> Flow;
    /// Called when the ring buffer is empty again: the moment to flush output.
    fn batch_done(&mut self) -> Flow {
        Flow::Continue
    }
    /// Called when a drain found the ring buffer empty: every call that ended before
    /// `through_ns` (CLOCK_MONOTONIC) has been handed over.
    fn caught_up(&mut self, _through_ns: u64) {}
    /// Called every `interval` before the ring buffer is drained one last time for it: the
    /// moment to read the kernel's own view, so that the events of what changed while it was
    /// read are applied before `interval` prints.
    fn before_interval(&mut self) {}
    /// Called after that drain: false asks for another drain (and call) before `interval`,
    /// when the kernel's view and the events still disagree (a few times at most).
    fn settled(&mut self) -> bool {
        true
    }
    /// Called every `interval`, if the session has one.
    fn interval(&mut self) -> Flow {
        Flow::Continue
    }
    /// The session's totals so far, with the kernel's counts of what it could not hand over
    /// read just then: every second, and right before each `interval`. Each view says losses
    /// its own way while they happen (a line on stderr, top's alert line, export's metrics).
    fn kernel_counts(&mut self, totals: &Totals);
    /// When this is notified, the view gets an `interval` at once (a scrape asking for fresh
    /// numbers). Asked once, at the start.
    fn refresh_requests(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// How often the ring buffer is drained: views that stream few records (their counts are
    /// in the kernel's maps) wake less, since each wakeup is most of an idle collector's cost.
    fn drain_every(&self) -> Duration {
        DRAIN_EVERY
    }
    /// 32-bit processes found (at start, or exec'd since): their calls are not traced, which
    /// the view says.
    fn compat_processes(&mut self, found: &[(u32, String)]);
    /// Called once the session has stopped, before the programs are detached (which takes
    /// about a second): a full-screen view gives the terminal back here.
    fn stopped(&mut self) {}
}

/// What ended the session: the view itself (--count, a closed stdout), or something outside it
/// (--duration, a signal, the exit of `-- CMD`), after which the calls still in the ring buffer
/// are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Outside,
    View,
}

/// The session's totals, for the final summary.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    /// Calls decoded and handed to the view.
    pub events: u64,
    /// Process fork/exec/exit records (not calls).
    pub process_events: u64,
    /// 32-bit processes seen (at start or by exec), whose calls are not traced.
    pub compat_processes: u64,
    pub malformed: u64,
    pub kernel: KernelCounts,
}

pub struct Schedule {
    pub duration: Option<Duration>,
    pub interval: Option<Duration>,
    /// What the `Tracing ...` line says is traced.
    pub what: String,
    /// Lines for stderr right after the `Tracing ...` line.
    pub notes: Vec<String>,
    /// A pidfd: the session ends when that process exits (the command of `-- CMD`).
    pub until_exit: Option<std::os::fd::RawFd>,
    /// The 32-bit processes running at start, when the command's own walk of /proc read them
    /// once attached (None: the session looks).
    pub compat: Option<Vec<(u32, String)>>,
}

/// Drives `sink` from `probe` until something stops it; the probe is detached on return.
pub async fn run(probe: Probe, mut schedule: Schedule, sink: &mut dyn Sink) -> Result<Totals> {
    let Probe {
        events, counters, ..
    } = probe;
    // SAFETY: the ring buffer owns its fd, and AsyncFd owns the ring buffer until it is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("watching the ring buffer")?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let command_exit = match schedule.until_exit {
        // SAFETY: the caller keeps the pidfd open for the whole session; AsyncFd only polls it.
        Some(fd) => Some(
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map_err(std::io::Error::from)
                .context("watching the command")?,
        ),
        None => None,
    };
    // Only now can Ctrl-C end the session cleanly, so only now may scripts be told to go on.
    eprintln!("Tracing {}... Hit Ctrl-C to end.", schedule.what);
    for note in &schedule.notes {
        eprintln!("{note}");
    }
    let compat = (schedule.compat.take()).unwrap_or_else(crate::kernel_view::abi::running_32bit);
    if !compat.is_empty() {
        sink.compat_processes(&compat);
    }
    let refresh = sink.refresh_requests();
    let deadline = schedule.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = schedule
        .interval
        .map(|i| tokio::time::interval_at(tokio::time::Instant::now() + i, i));
    let mut drain_timer = tokio::time::interval(sink.drain_every());
    drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut loss_timer = tokio::time::interval(LOSS_WARNING_EVERY);
    loss_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut totals = Totals {
        events: 0,
        process_events: 0,
        compat_processes: compat.len() as u64,
        malformed: 0,
        kernel: KernelCounts::default(),
    };

    let stop = loop {
        let ready = tokio::select! {
            guard = ring.readable_mut() => Some(guard?),
            _ = sigint.recv() => break Stop::Outside,
            _ = sigterm.recv() => break Stop::Outside,
            _ = sighup.recv() => break Stop::Outside,
            _ = sleep_until(deadline) => break Stop::Outside,
            _ = exited(command_exit.as_ref()) => break Stop::Outside,
            _ = tick(&mut ticker) => None,
            _ = notified(&refresh) => None,
            _ = loss_timer.tick() => {
                totals.kernel = counters.read()?;
                sink.kernel_counts(&totals);
                continue;
            }
            _ = drain_timer.tick() => {
                if drain(ring.get_mut(), sink, &mut totals) == Flow::Stop {
                    break Stop::View;
                }
                continue;
            }
        };
        match ready {
            Some(mut guard) => {
                let flow = drain(guard.get_inner_mut(), sink, &mut totals);
                guard.clear_ready();
                // A record submitted between the drain and clear_ready raised no new edge.
                if flow == Flow::Stop || drain(ring.get_mut(), sink, &mut totals) == Flow::Stop {
                    break Stop::View;
                }
            }
            None => {
                if drain(ring.get_mut(), sink, &mut totals) == Flow::Stop {
                    break Stop::View;
                }
                totals.kernel = counters.read()?;
                sink.kernel_counts(&totals);
                sink.before_interval();
                let mut flow = Flow::Continue;
                for _ in 0..SETTLE_ROUNDS {
                    flow = drain(ring.get_mut(), sink, &mut totals);
                    if flow == Flow::Stop || sink.settled() {
                        break;
                    }
                }
                if flow == Flow::Stop {
                    break Stop::View;
                }
                if sink.interval() == Flow::Stop {
                    break Stop::View;
                }
            }
        }
    };
    // Calls that completed before the stop are still reported, every one.
    if stop != Stop::View {
        drain_for(ring.get_mut(), sink, &mut totals, None);
    }
    sink.stopped();
    totals.kernel = counters.read()?;
    Ok(totals)
}

/// How long one drain hands records over before the session looks around again: under a load
/// it cannot keep up with, the ring never empties, and signals, the deadline, the interval and
/// the loss warning must still be seen to. (The clock is read every 256 records.)
const DRAIN_BUDGET: Duration = Duration::from_millis(50);

/// How long before it is found empty the ring buffer may still lack a record: one reserved but
/// not yet submitted reads as the end (its program runs for microseconds).
const RESERVED_NOT_SUBMITTED_NS: u64 = 1_000_000;

fn drain(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    sink: &mut dyn Sink,
    totals: &mut Totals,
) -> Flow {
    drain_for(ring, sink, totals, Some(DRAIN_BUDGET))
}

/// `drain`, for `budget` at most (None: until the ring is empty).
fn drain_for(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    sink: &mut dyn Sink,
    totals: &mut Totals,
    budget: Option<Duration>,
) -> Flow {
    let started = std::time::Instant::now();
    for n in 0u64.. {
        if n % 256 == 255 && budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let Some(item) = ring.next() else {
            sink.caught_up(crate::clock::monotonic_ns().saturating_sub(RESERVED_NOT_SUBMITTED_NS));
            break;
        };
        match decode(&item) {
            Ok(event) => {
                match event {
                    Event::Call(_) => {
                        totals.events += 1;
                        #[cfg(debug_assertions)]
                        panic_if_asked();
                    }
                    Event::Process(change) => {
                        totals.process_events += 1;
                        if let ProcessChange::Exec { pid, comm, .. } = change {
                            if crate::kernel_view::abi::is_32bit(pid) == Some(true) {
                                totals.compat_processes += 1;
                                sink.compat_processes(&[(pid, comm.to_string())]);
                            }
                        }
                    }
                }
                if sink.event(&event) == Flow::Stop {
                    return Flow::Stop;
                }
            }
            Err(_) => totals.malformed += 1,
        }
    }
    sink.batch_done()
}

/// Test builds only: `IPCTRACE_FAILPOINT=panic` panics at the first call, so that a test can
/// see that a panic, too, exits non-zero with one line and leaves no BPF object behind.
#[cfg(debug_assertions)]
fn panic_if_asked() {
    static ASKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ASKED.get_or_init(|| std::env::var_os("IPCTRACE_FAILPOINT").is_some_and(|v| v == "panic")) {
        panic!("IPCTRACE_FAILPOINT=panic");
    }
}

/// Resolves once the pidfd says its process exited; never without one.
async fn exited(pidfd: Option<&AsyncFd<std::os::fd::RawFd>>) {
    match pidfd {
        Some(fd) => {
            let _ = fd.readable().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn notified(refresh: &Option<std::sync::Arc<tokio::sync::Notify>>) {
    match refresh {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
