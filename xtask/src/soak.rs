//! `cargo xtask soak`: ipctrace's trace, lat, objects and export run together for minutes under a
//! mixed SysV IPC load with objects made and removed without pause, and fail unless memory stays
//! flat, nothing is lost, export's series stay bounded and their output matches the load. run.rs
//! runs it, check.rs judges it, report.rs writes it up, metrics.rs scrapes export; here is what
//! they share.
mod check;
mod metrics;
mod report;
mod run;
mod workload;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::ipc::Kind;
use crate::ipctrace_json::Summary;
use crate::tracer::Usage;
pub use workload::main as workload_main;

const USAGE: &str = "usage: cargo xtask soak [--minutes N] [--rate CALLS_PER_SEC]
  --minutes N           how long the load runs (default 10; 0.5 is a smoke check)
  --rate CALLS_PER_SEC  the load's target rate of SysV IPC calls (default 20000)";

const DEFAULT_MINUTES: f64 = 10.0;
const DEFAULT_RATE: f64 = 20_000.0;

/// RSS is compared from here on (from a third of a shorter run): by then start-up is over and
/// every view has printed a report or two.
const WARM_UP: Duration = Duration::from_secs(60);

/// One of ipctrace's views, as the soak runs it.
struct View {
    label: &'static str,
    args: &'static [&'static str],
    slug: &'static str,
}

const TRACE: View = View {
    label: "trace --json",
    args: &["trace", "--json"],
    slug: "trace",
};

const LAT: View = View {
    label: "lat --json --interval 10",
    args: &["lat", "--json", "--interval", "10"],
    slug: "lat",
};

const OBJECTS: View = View {
    label: "objects --watch 10 --json",
    args: &["objects", "--watch", "10", "--json"],
    slug: "objects",
};

/// Few enough that the load's churned objects (three of each kind alive at a time, beside its
/// six long-lived ones) and everyone else's get folded into `id="other"`.
const EXPORT_MAX_OBJECTS: usize = 8;

const EXPORT: View = View {
    label: "export --interval 5 --max-objects 8",
    args: &["export", "--interval", "5", "--max-objects", "8"],
    slug: "export",
};

/// A tracer's resident set and CPU so far, read from /proc while it runs.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_mb: f64,
    cpu_s: f64,
}

/// A view's tracer once stopped.
struct Ended {
    view: &'static View,
    samples: Vec<Sample>,
    usage: Usage,
    summary: Option<Summary>,
}

/// What `trace --json` streamed: the calls of processes named like the load's, by pid, syscall
/// and result (pids are reused quickly, so a pid alone does not say a call was the load's), and
/// how many calls of anyone else went by.
#[derive(Default)]
struct TracedCalls {
    by_pid: HashMap<u32, CallCounts>,
    others: u64,
    /// Deadlocks trace reported among other processes than the load's.
    deadlocks_elsewhere: u64,
    /// Deadlock lines that named the load's processes (which never deadlock).
    load_deadlocks: Vec<String>,
    summary: Option<Summary>,
}

/// Calls the load made or the trace showed, by syscall: [succeeded, failed].
type CallCounts = [[u64; 2]; 12];

/// What the load reported once its time was up.
struct LoadReport {
    elapsed_s: f64,
    calls: CallCounts,
    /// Waits on the handoff semaphore, each known to have slept.
    handoffs: u64,
    /// Timed waits on the loop set that ran out after sleeping.
    timeouts: u64,
    handoff_id: i64,
    loop_id: i64,
    segment_id: i64,
    visitors: u64,
    /// Processes the load ran, its first included.
    processes: usize,
    /// The load's first process, which made the long-lived objects and forked the rest.
    parent: u32,
    pids: BTreeSet<u32>,
    /// The load's objects alive at the end, with the pid that created each.
    alive: BTreeMap<ObjectId, u32>,
}

impl LoadReport {
    fn parse(line: &str) -> Result<LoadReport> {
        let wire: workload::Report =
            serde_json::from_str(line).context("the load's report is not its JSON")?;
        let mut calls = [[0; 2]; 12];
        for (call, outcomes) in wire.calls {
            calls[call.index()] = [outcomes.ok, outcomes.failed];
        }
        Ok(LoadReport {
            elapsed_s: wire.elapsed_ns as f64 / 1e9,
            calls,
            handoffs: wire.handoffs,
            timeouts: wire.timeouts,
            handoff_id: wire.handoff_id.into(),
            loop_id: wire.loop_id.into(),
            segment_id: wire.segment_id.into(),
            visitors: wire.visitors as u64,
            processes: wire.pids.len(),
            parent: wire.parent,
            pids: wire.pids.into_iter().collect(),
            alive: wire
                .alive
                .into_iter()
                .map(|o| ((o.kind, o.id.into()), o.creator))
                .collect(),
        })
    }

    fn total(&self) -> u64 {
        self.calls.iter().flatten().sum()
    }
}

/// An object as the views name it: kind and id.
type ObjectId = (Kind, i64);

/// lat's counts for each object.
type Waits = HashMap<ObjectId, WaitTotals>;

/// The load's objects in the last table of `objects`.
type Table = BTreeMap<ObjectId, TableObject>;

/// lat's counts for one object, summed over its intervals.
#[derive(Debug, Default, Clone, Copy)]
struct WaitTotals {
    calls: u64,
    blocked: u64,
    timeouts: u64,
}

/// An object as the last table of `objects --json` shows it.
struct TableObject {
    creator: Option<u32>,
    nattch: Option<u64>,
    attached: Vec<u32>,
}

/// What was asked of a run, for the report's heading.
struct Asked {
    minutes: f64,
    rate: f64,
    /// Where the warm-up ends and RSS is first compared.
    warm_s: f64,
    load_at_start: String,
}

/// One of the soak's verdicts.
struct Check {
    what: &'static str,
    pass: bool,
    detail: String,
}

/// Everything a run leaves for the checks and the report.
struct Observed {
    report: LoadReport,
    /// The views, in the order they were started (trace, lat, objects, export).
    ended: Vec<Ended>,
    traced: TracedCalls,
    waits: Waits,
    /// The objects' last table.
    table: Table,
    /// The load's objects /proc/sysvipc listed when the load reported.
    in_proc: BTreeSet<ObjectId>,
    /// export's /metrics, every sample while the load ran and once at its end.
    scrapes: run::Scrapes,
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let (minutes, rate) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    crate::ready_to_trace("soak")?;
    let ipctrace = crate::target_dir().join("release/ipctrace");
    let out_dir = crate::target_dir().join("soak");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let left = run::remove_leftovers()?;
    if left > 0 {
        eprintln!("removed {left} objects an earlier soak left behind");
    }
    let load_at_start = crate::machine::loadavg();
    let seconds = minutes * 60.0;

    let observed = run::soak(&ipctrace, &out_dir, minutes, rate)?;
    report::write_samples(&out_dir.join("samples.tsv"), &observed.ended)?;

    let warm_s = WARM_UP.as_secs_f64().min(seconds / 3.0);
    let checks = check::all(&observed, warm_s);
    let asked = Asked {
        minutes,
        rate,
        warm_s,
        load_at_start,
    };
    let text = report::render(&asked, &observed, &checks);
    println!("{text}");
    std::fs::write(out_dir.join("results.md"), &text)?;
    eprintln!(
        "wrote {} and {}",
        out_dir.join("results.md").display(),
        out_dir.join("samples.tsv").display()
    );
    Ok(if checks.iter().all(|c| c.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_args(args: &[String]) -> Result<(f64, f64), String> {
    let mut minutes = DEFAULT_MINUTES;
    let mut rate = DEFAULT_RATE;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<f64, String> {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("{name} wants a number > 0"))
        };
        match arg.as_str() {
            "--minutes" => minutes = value("--minutes")?,
            "--rate" => rate = value("--rate")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((minutes, rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::Syscall;

    #[test]
    fn exports_folding_bound_is_the_one_the_checks_use() {
        let at = EXPORT
            .args
            .iter()
            .position(|a| *a == "--max-objects")
            .unwrap();
        assert_eq!(EXPORT.args[at + 1], EXPORT_MAX_OBJECTS.to_string());
        assert!(EXPORT
            .label
            .contains(&format!("--max-objects {EXPORT_MAX_OBJECTS}")));
    }

    #[test]
    fn the_loads_report_reads_back_as_it_was_written() {
        let mut calls = BTreeMap::new();
        calls.insert(Syscall::Semtimedop, workload::Outcomes { ok: 5, failed: 1 });
        let wire = workload::Report {
            elapsed_ns: 2_500_000_000,
            calls,
            handoffs: 7,
            timeouts: 2,
            handoff_id: 11,
            loop_id: 12,
            segment_id: 13,
            visitors: 3,
            parent: 100,
            pids: vec![100, 101, 102],
            alive: vec![workload::AliveObject {
                kind: Kind::Shm,
                id: 13,
                creator: 100,
            }],
        };
        let report = LoadReport::parse(&serde_json::to_string(&wire).unwrap()).unwrap();
        assert_eq!(report.calls[Syscall::Semtimedop.index()], [5, 1]);
        assert_eq!(report.total(), 6);
        assert_eq!(report.elapsed_s, 2.5);
        assert_eq!(
            (report.handoff_id, report.loop_id, report.segment_id),
            (11, 12, 13)
        );
        assert_eq!(
            (report.processes, report.parent, report.visitors),
            (3, 100, 3)
        );
        assert_eq!(report.alive.get(&(Kind::Shm, 13)), Some(&100));
        assert!(
            LoadReport::parse("{\"elapsed_ns\": 1}").is_err(),
            "a report cut short"
        );
    }
}
