//! `cargo xtask soak`: ipctrace's three views (trace, lat, objects) run together for minutes under
//! a mixed SysV IPC load; fails unless their memory stays flat, nothing is lost and their output
//! matches the calls the load made and the objects it left.
mod workload;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::ipc::{Kind, Syscall};
use crate::tracer::{self, json_str, json_u64, Banner, Tracer, Usage};
pub use workload::main as workload_main;

const USAGE: &str = "usage: cargo xtask soak [--minutes N] [--rate CALLS_PER_SEC]
  --minutes N           how long the load runs (default 10; 0.5 is a smoke check)
  --rate CALLS_PER_SEC  the load's target rate of SysV IPC calls (default 20000)";

const DEFAULT_MINUTES: f64 = 10.0;
const DEFAULT_RATE: f64 = 20_000.0;

/// RSS is compared from here on (from a third of a shorter run): by then start-up is over and
/// every view has printed a report or two.
const WARM_UP: Duration = Duration::from_secs(60);
/// Memory is flat when RSS grew by less than this after warm-up, or by less than GROWTH_SHARE.
const GROWTH_MB: f64 = 2.0;
const GROWTH_SHARE: f64 = 0.10;
/// The share of the handoff waits (each known to have slept) that lat must count as blocked:
/// a post can land in the instant between the waiter queueing and going to sleep.
const HANDOFF_SEEN_SHARE: f64 = 0.98;
/// RSS and CPU are read this often (more often in a run shorter than five minutes).
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past its time the load may take to report before it counts as hung.
const LOAD_GRACE: Duration = Duration::from_secs(120);

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

/// A tracer's resident set and CPU so far, read from /proc while it runs.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_mb: f64,
    cpu_s: f64,
}

/// A view's tracer while the load runs.
struct Watched {
    view: &'static View,
    tracer: Tracer,
    samples: Vec<Sample>,
}

/// A view's tracer once stopped.
struct Ended {
    view: &'static View,
    samples: Vec<Sample>,
    usage: Usage,
    summary: Option<Summary>,
}

/// The `{"summary": ...}` line each view ends its --json output with.
#[derive(Debug, Clone, Copy)]
struct Summary {
    events: u64,
    lost: u64,
    untracked: u64,
}

impl Summary {
    fn parse(line: &str) -> Option<Summary> {
        if !line.starts_with("{\"summary\"") {
            return None;
        }
        Some(Summary {
            events: json_u64(line, "events")?,
            lost: json_u64(line, "lost")?,
            untracked: json_u64(line, "untracked")?,
        })
    }
}

/// What `trace --json` streamed: the calls of processes named like the load's, by pid, syscall
/// and result (pids are reused quickly, so a pid alone does not say a call was the load's), and
/// how many calls of anyone else went by.
#[derive(Default)]
struct TracedCalls {
    by_pid: HashMap<u32, CallCounts>,
    others: u64,
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
        let v: Value = serde_json::from_str(line).context("the load's report is not JSON")?;
        let u64_at = |key: &str| {
            v[key]
                .as_u64()
                .with_context(|| format!("no {key} in the load's report"))
        };
        let i64_at = |key: &str| {
            v[key]
                .as_i64()
                .with_context(|| format!("no {key} in the load's report"))
        };
        let mut calls = [[0; 2]; 12];
        for call in Syscall::ALL {
            let counts = &v["calls"][call.name()];
            calls[call.index()] = [
                counts["ok"].as_u64().unwrap_or(0),
                counts["failed"].as_u64().unwrap_or(0),
            ];
        }
        let pid_list = v["pids"]
            .as_array()
            .context("no pids in the load's report")?;
        let pids = pid_list
            .iter()
            .filter_map(|p| p.as_u64().map(|p| p as u32))
            .collect();
        let alive = v["alive"]
            .as_array()
            .context("no alive objects in the load's report")?
            .iter()
            .filter_map(|o| {
                let kind = Kind::from_name(o["type"].as_str()?)?;
                Some(((kind, o["id"].as_i64()?), o["creator"].as_u64()? as u32))
            })
            .collect();
        Ok(LoadReport {
            elapsed_s: u64_at("elapsed_ns")? as f64 / 1e9,
            calls,
            handoffs: u64_at("handoffs")?,
            timeouts: u64_at("timeouts")?,
            handoff_id: i64_at("handoff_id")?,
            loop_id: i64_at("loop_id")?,
            segment_id: i64_at("segment_id")?,
            visitors: u64_at("visitors")?,
            processes: pid_list.len(),
            parent: u64_at("parent")? as u32,
            pids,
            alive,
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

pub fn run(args: &[String]) -> Result<ExitCode> {
    let (minutes, rate) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("soak needs root: the tracers load BPF programs");
    }
    crate::setup::run()?;
    crate::build(true)?;
    let ipctrace = crate::target_dir().join("release/ipctrace");
    let out_dir = crate::target_dir().join("soak");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let left = remove_leftovers()?;
    if left > 0 {
        eprintln!("removed {left} objects an earlier soak left behind");
    }
    let load_at_start = crate::bench::loadavg();
    let seconds = minutes * 60.0;

    // trace's stream goes through a pipe and is counted as it comes: ~300 bytes a call would
    // make gigabytes of file in ten minutes.
    let (stream, stream_in) = std::io::pipe().context("pipe")?;
    // A megabyte of slack (the most an unprivileged pipe gets by default) so that a moment
    // without CPU for the drain below never stalls trace behind it.
    // SAFETY: F_SETPIPE_SZ on a pipe we own; failing leaves the default 64 KiB.
    unsafe { libc::fcntl(stream_in.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    let lines = Arc::new(AtomicU64::new(0));
    let counter = {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || count_calls(stream, &lines))
    };
    let mut stream_in = Some(stream_in);
    let mut watched = Vec::new();
    for view in [&TRACE, &LAT, &OBJECTS] {
        let mut cmd = Command::new(&ipctrace);
        cmd.args(view.args);
        match view.slug {
            "trace" => cmd.stdout(stream_in.take().context("one trace view")?),
            _ => cmd.stdout(create(&output_path(&out_dir, view))?),
        };
        let banner = Banner {
            text: "Tracing ",
            on_stdout: false,
        };
        let tracer = tracer::start(view.label, cmd, banner, ATTACH_TIMEOUT)?;
        watched.push(Watched {
            view,
            tracer,
            samples: Vec::new(),
        });
    }
    eprintln!(
        "soak: {minutes} min at {rate} calls/s under ipctrace {}, {} and {}",
        TRACE.label, LAT.label, OBJECTS.label
    );

    let mut load = Load::start(seconds, rate)?;
    let started = Instant::now();
    let every = SAMPLE_EVERY.min(Duration::from_secs_f64((seconds / 60.0).max(1.0)));
    let mut next_sample = started;
    let mut next_progress = started + Duration::from_secs(60);
    let report = loop {
        let now = Instant::now();
        if now >= next_sample {
            let at_s = started.elapsed().as_secs_f64();
            for w in &mut watched {
                if let (Some(rss_mb), Some(cpu_s)) = (w.tracer.rss_now_mb(), w.tracer.cpu_s_now()) {
                    w.samples.push(Sample {
                        at_s,
                        rss_mb,
                        cpu_s,
                    });
                }
            }
            next_sample += every;
        }
        if now >= next_progress {
            progress(&watched, started, minutes, lines.load(Relaxed));
            next_progress += Duration::from_secs(60);
        }
        if started.elapsed() > Duration::from_secs_f64(seconds) + LOAD_GRACE {
            bail!(
                "the load has not reported {} s past its time",
                LOAD_GRACE.as_secs()
            );
        }
        if let Some(line) = load.line(next_sample.min(next_progress))? {
            break LoadReport::parse(&line)?;
        }
    };

    // While the load's objects still exist: what the kernel says, then what the views say.
    let in_proc = soak_objects_in_proc()?;
    // The views drain their ring buffers every 20 ms; let the last calls through.
    std::thread::sleep(Duration::from_millis(300));
    let mut ended = Vec::new();
    for w in watched {
        let (usage, _) = w.tracer.stop()?;
        ended.push(Ended {
            view: w.view,
            samples: w.samples,
            usage,
            summary: None,
        });
    }
    load.finish()?;
    let traced = counter
        .join()
        .map_err(|_| anyhow::anyhow!("the trace counter panicked"))??;
    let (lat_summary, waits) = read_lat(&output_path(&out_dir, &LAT))?;
    let (objects_summary, table) = read_objects(&output_path(&out_dir, &OBJECTS))?;
    for e in &mut ended {
        e.summary = match e.view.slug {
            "trace" => traced.summary,
            "lat" => lat_summary,
            _ => objects_summary,
        };
    }
    let left = remove_leftovers()?;
    if left > 0 {
        eprintln!("warning: the load left {left} objects; removed");
    }
    write_samples(&out_dir.join("samples.tsv"), &ended)?;

    let warm_s = WARM_UP.as_secs_f64().min(seconds / 3.0);
    let checks = [
        check_memory(&ended, warm_s),
        check_losses(&ended),
        check_calls(&report, &traced),
        check_waits(&report, &waits),
        check_objects(&report, &in_proc, &table),
    ];
    let asked = Asked {
        minutes,
        rate,
        warm_s,
        load_at_start,
    };
    let text = render(&asked, &report, &ended, &traced, &checks);
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

fn output_path(out_dir: &Path, view: &View) -> PathBuf {
    out_dir.join(format!("{}.json", view.slug))
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// The load (`xtask soak-workload`) as it runs: its report comes on stdout; closing its stdin
/// lets it remove its objects and exit.
struct Load {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Load {
    fn start(seconds: f64, rate: f64) -> Result<Load> {
        let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
        let mut cmd = Command::new(xtask);
        cmd.args(["soak-workload", &seconds.to_string(), &rate.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // SAFETY: between fork and exec only prctl, a plain syscall, runs. If the soak dies,
        // so does the load (and its processes, which ask the same of it).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("cannot start the load")?;
        let stdout = child.stdout.take().context("the load's stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Load { child, lines })
    }

    /// The load's report line, if it comes before `until`; an error if the load ended without.
    fn line(&mut self, until: Instant) -> Result<Option<String>> {
        let wait = until.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => Ok(Some(line)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().context("waiting for the load")?;
                bail!("the load ended before reporting ({status})")
            }
        }
    }

    /// Lets the load remove its objects, and waits for it.
    fn finish(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        let status = self.child.wait().context("waiting for the load")?;
        if !status.success() {
            bail!("the load ended with {status}");
        }
        Ok(())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Counts trace's calls by pid, syscall and result as they stream by. One thread only drains the
/// pipe into memory, so trace never waits on the counting (slower than trace's own formatting in
/// a debug build, and starved of CPU on a busy machine): a burst queues up here instead of in
/// trace's ring buffer. Lines are read with a few string searches, not a JSON parser.
fn count_calls(stream: impl Read + Send + 'static, lines: &AtomicU64) -> Result<TracedCalls> {
    let (tx, chunks) = mpsc::channel::<Vec<u8>>();
    let drain = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = stream;
        loop {
            let mut chunk = vec![0; 1 << 16];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            chunk.truncate(n);
            if tx.send(chunk).is_err() {
                return Ok(());
            }
        }
    });
    let mut traced = TracedCalls::default();
    let mut pending = String::new();
    for chunk in chunks {
        pending.push_str(std::str::from_utf8(&chunk).context("trace's output is not UTF-8")?);
        let mut start = 0;
        while let Some(end) = pending[start..].find('\n') {
            count_line(&pending[start..start + end], &mut traced)?;
            lines.fetch_add(1, Relaxed);
            start += end + 1;
        }
        pending.drain(..start);
    }
    drain
        .join()
        .map_err(|_| anyhow::anyhow!("the pipe drain panicked"))?
        .context("reading trace's output")?;
    Ok(traced)
}

fn count_line(line: &str, traced: &mut TracedCalls) -> Result<()> {
    if let Some(summary) = Summary::parse(line) {
        traced.summary = Some(summary);
        return Ok(());
    }
    let (Some(pid), Some(call)) = (
        json_u64(line, "pid"),
        json_str(line, "op").and_then(Syscall::from_name),
    ) else {
        bail!("trace printed a line that is not a call: {}", line.trim());
    };
    if !json_str(line, "comm").is_some_and(|c| c.starts_with(workload::COMM_PREFIX)) {
        traced.others += 1;
        return Ok(());
    }
    let failed = usize::from(json_str(line, "errno").is_some());
    traced.by_pid.entry(pid as u32).or_default()[call.index()][failed] += 1;
    Ok(())
}

/// lat's summary and its counts per object (type, id), summed over every interval.
fn read_lat(path: &Path) -> Result<(Option<Summary>, Waits)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut summary = None;
    let mut waits: Waits = HashMap::new();
    for line in text.lines() {
        if let Some(s) = Summary::parse(line) {
            summary = Some(s);
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("lat printed a line that is not JSON: {line}"))?;
        let (Some(kind), Some(id)) = (
            v["type"].as_str().and_then(Kind::from_name),
            v["id"].as_i64(),
        ) else {
            bail!("lat printed a line without type and id: {line}");
        };
        let totals = waits.entry((kind, id)).or_default();
        totals.calls += v["calls"].as_u64().unwrap_or(0);
        totals.blocked += v["blocked"].as_u64().unwrap_or(0);
        totals.timeouts += v["timeouts"].as_u64().unwrap_or(0);
    }
    Ok((summary, waits))
}

/// objects' summary and its last table (the lines of its last report all carry its `ts_ns`),
/// the load's objects only.
fn read_objects(path: &Path) -> Result<(Option<Summary>, Table)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut summary = None;
    let mut last: Vec<Value> = Vec::new();
    for line in text.lines() {
        if let Some(s) = Summary::parse(line) {
            summary = Some(s);
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("objects printed a line that is not JSON: {line}"))?;
        if last
            .first()
            .is_some_and(|first| first["ts_ns"] != v["ts_ns"])
        {
            last.clear();
        }
        last.push(v);
    }
    let pids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["pid"].as_u64())
                    .map(|p| p as u32)
                    .collect()
            })
            .unwrap_or_default()
    };
    let table = last
        .iter()
        .filter(|v| v["key"].as_i64().is_some_and(workload::is_soak_key))
        .filter_map(|v| {
            let kind = Kind::from_name(v["type"].as_str()?)?;
            let object = TableObject {
                creator: v["creator"]["pid"].as_u64().map(|p| p as u32),
                nattch: v["nattch"].as_u64(),
                attached: pids(&v["attached"]),
            };
            Some(((kind, v["id"].as_i64()?), object))
        })
        .collect();
    Ok((summary, table))
}

/// The load's objects the kernel lists in /proc/sysvipc: (kind, id) for each key in its range.
fn soak_objects_in_proc() -> Result<BTreeSet<ObjectId>> {
    let mut found = BTreeSet::new();
    for kind in Kind::ALL {
        let path = format!("/proc/sysvipc/{}", kind.name());
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        // After the header: key, then id, on every line.
        for line in text.lines().skip(1) {
            let mut fields = line.split_whitespace().map(str::parse::<i64>);
            if let (Some(Ok(key)), Some(Ok(id))) = (fields.next(), fields.next()) {
                if workload::is_soak_key(key) {
                    found.insert((kind, id));
                }
            }
        }
    }
    Ok(found)
}

/// Removes every object with a key of the load's: what a killed run left behind.
fn remove_leftovers() -> Result<usize> {
    let found = soak_objects_in_proc()?;
    for &(kind, id) in &found {
        let _ = crate::ipc::remove(kind, id as libc::c_int);
    }
    Ok(found.len())
}

fn progress(watched: &[Watched], started: Instant, minutes: f64, lines: u64) {
    let rss: Vec<String> = watched
        .iter()
        .filter_map(|w| Some(format!("{} {:.1}", w.view.slug, w.samples.last()?.rss_mb)))
        .collect();
    eprintln!(
        "soak: {:.1}/{minutes} min; RSS MB {}; {lines} trace lines",
        started.elapsed().as_secs_f64() / 60.0,
        rss.join(", ")
    );
}

/// Every sample, one line each: seconds, then RSS MB and CPU s of each view.
fn write_samples(path: &Path, ended: &[Ended]) -> Result<()> {
    let mut text = String::from("seconds");
    for e in ended {
        let _ = write!(text, "\t{0}_rss_mb\t{0}_cpu_s", e.view.slug);
    }
    text.push('\n');
    let rows = ended.iter().map(|e| e.samples.len()).min().unwrap_or(0);
    for i in 0..rows {
        let _ = write!(text, "{:.1}", ended[0].samples[i].at_s);
        for e in ended {
            let s = e.samples[i];
            let _ = write!(text, "\t{:.2}\t{:.2}", s.rss_mb, s.cpu_s);
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// RSS after warm-up and at the end: the first sample at or past `warm_s`, and the last.
fn warm_and_end(samples: &[Sample], warm_s: f64) -> Option<(Sample, Sample)> {
    let warm = samples.iter().find(|s| s.at_s >= warm_s)?;
    Some((*warm, *samples.last()?))
}

fn check_memory(ended: &[Ended], warm_s: f64) -> Check {
    let mut pass = true;
    let mut parts = Vec::new();
    for e in ended {
        match warm_and_end(&e.samples, warm_s) {
            Some((warm, end)) => {
                let growth = end.rss_mb - warm.rss_mb;
                let bound = GROWTH_MB.max(GROWTH_SHARE * warm.rss_mb);
                pass &= growth < bound;
                parts.push(format!(
                    "{} {:.1} -> {:.1} MB ({growth:+.1})",
                    e.view.slug, warm.rss_mb, end.rss_mb
                ));
            }
            None => {
                pass = false;
                parts.push(format!("{}: no sample after warm-up", e.view.slug));
            }
        }
    }
    Check {
        what: "memory flat",
        pass,
        detail: format!(
            "RSS from {warm_s:.0} s to the end grew by less than {GROWTH_MB} MB or {:.0} %: {}",
            GROWTH_SHARE * 100.0,
            parts.join(", ")
        ),
    }
}

fn check_losses(ended: &[Ended]) -> Check {
    let mut pass = true;
    let mut parts = Vec::new();
    for e in ended {
        match e.summary {
            Some(s) => {
                pass &= s.lost == 0 && s.untracked == 0;
                parts.push(format!(
                    "{} {} events, {} lost, {} untracked",
                    e.view.slug, s.events, s.lost, s.untracked
                ));
            }
            None => {
                pass = false;
                parts.push(format!("{}: no summary line", e.view.slug));
            }
        }
    }
    Check {
        what: "nothing lost",
        pass,
        detail: parts.join("; "),
    }
}

/// The trace's calls by syscall and result, over the load's processes.
fn traced_counts(report: &LoadReport, traced: &TracedCalls) -> CallCounts {
    let mut counts = [[0; 2]; 12];
    for pid in &report.pids {
        if let Some(by_call) = traced.by_pid.get(pid) {
            for (total, n) in counts.iter_mut().flatten().zip(by_call.iter().flatten()) {
                *total += n;
            }
        }
    }
    counts
}

fn check_calls(report: &LoadReport, traced: &TracedCalls) -> Check {
    let seen = traced_counts(report, traced);
    let differ: Vec<String> = Syscall::ALL
        .into_iter()
        .filter(|c| seen[c.index()] != report.calls[c.index()])
        .map(|c| {
            let (made, seen) = (report.calls[c.index()], seen[c.index()]);
            format!(
                "{} made {}+{} traced {}+{}",
                c.name(),
                made[0],
                made[1],
                seen[0],
                seen[1]
            )
        })
        .collect();
    let traced_total: u64 = seen.iter().flatten().sum();
    Check {
        what: "trace shows every call",
        pass: differ.is_empty(),
        detail: if differ.is_empty() {
            format!(
                "{} calls of the load's {} processes, each syscall's successes and failures alike",
                traced_total, report.processes
            )
        } else {
            format!("differ (succeeded+failed): {}", differ.join(", "))
        },
    }
}

fn check_waits(report: &LoadReport, waits: &Waits) -> Check {
    let handoff = waits
        .get(&(Kind::Sem, report.handoff_id))
        .copied()
        .unwrap_or_default();
    let timed = waits
        .get(&(Kind::Sem, report.loop_id))
        .copied()
        .unwrap_or_default();
    let known = report.handoffs;
    let pass = handoff.calls == 2 * known
        && handoff.blocked <= known
        && handoff.blocked as f64 >= HANDOFF_SEEN_SHARE * known as f64
        && timed.timeouts == report.timeouts;
    Check {
        what: "lat counts the known waits",
        pass,
        detail: format!(
            "handoff semaphore: {known} waits known to sleep, lat blocked {} ({:.2} %), calls {} of {}; \
             loop set: timeouts {} of {}",
            handoff.blocked,
            100.0 * handoff.blocked as f64 / known.max(1) as f64,
            handoff.calls,
            2 * known,
            timed.timeouts,
            report.timeouts
        ),
    }
}

fn check_objects(report: &LoadReport, in_proc: &BTreeSet<ObjectId>, table: &Table) -> Check {
    let expected: BTreeSet<ObjectId> = report.alive.keys().copied().collect();
    let shown: BTreeSet<ObjectId> = table.keys().copied().collect();
    let wrong_creators: Vec<String> = report
        .alive
        .iter()
        .filter(|(key, creator)| table.get(key).is_some_and(|o| o.creator != Some(**creator)))
        .map(|((kind, id), creator)| {
            let shown = table[&(*kind, *id)].creator;
            format!("{} {id}: {shown:?} for {creator}", kind.name())
        })
        .collect();
    let parent = report.parent;
    let segment = table.get(&(Kind::Shm, report.segment_id));
    let segment_right = segment.is_some_and(|s| s.nattch == Some(1) && s.attached == [parent]);
    let pass =
        expected == *in_proc && expected == shown && wrong_creators.is_empty() && segment_right;
    let detail = if pass {
        format!(
            "{} objects alive, the same ids in /proc/sysvipc and the last table, every creator \
             right, the long-lived segment mapped by its creator only",
            expected.len()
        )
    } else {
        let ids = |set: &BTreeSet<ObjectId>| {
            set.iter()
                .map(|(k, id)| format!("{} {id}", k.name()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "load [{}], /proc/sysvipc [{}], table [{}]; creators wrong: [{}]; segment: {}",
            ids(&expected),
            ids(in_proc),
            ids(&shown),
            wrong_creators.join(", "),
            segment.map_or("not in the table".into(), |s| format!(
                "nattch {:?}, attached {:?} (creator {parent})",
                s.nattch, s.attached
            ))
        )
    };
    Check {
        what: "objects' last table matches the kernel",
        pass,
        detail,
    }
}

/// The figures as markdown, ready for docs/performance.md.
fn render(
    asked: &Asked,
    report: &LoadReport,
    ended: &[Ended],
    traced: &TracedCalls,
    checks: &[Check],
) -> String {
    let Asked {
        minutes,
        rate,
        warm_s,
        ref load_at_start,
    } = *asked;
    let mut text = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(text, "### Soak: {minutes} min at {rate} calls/s\n");
    let _ = writeln!(
        text,
        "- machine: {cpus} × {}, Linux {}; load average {load_at_start} at start, {} at the end",
        crate::bench::cpu_model(),
        crate::bench::kernel_release(),
        crate::bench::loadavg()
    );
    let total = report.total();
    let _ = writeln!(
        text,
        "- load: {total} calls in {:.0} s ({:.0}/s) from {} processes ({} of them short-lived); \
         {} waits known to sleep, {} timed out",
        report.elapsed_s,
        total as f64 / report.elapsed_s.max(1e-9),
        report.processes,
        report.visitors,
        report.handoffs,
        report.timeouts
    );
    let _ = writeln!(
        text,
        "- other processes' calls traced meanwhile (the views see the whole machine): {}",
        traced.others
    );
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "| ipctrace | RSS at {warm_s:.0} s MB | RSS at end MB | growth MB | peak RSS MB | CPU s | CPU % of a core | events | lost | untracked |"
    );
    let _ = writeln!(text, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for e in ended {
        let (warm, end) = warm_and_end(&e.samples, warm_s)
            .map_or((f64::NAN, f64::NAN), |(w, e)| (w.rss_mb, e.rss_mb));
        let (events, lost, untracked) = e.summary.map_or(
            ("—".to_string(), "—".to_string(), "—".to_string()),
            |s| {
                (
                    s.events.to_string(),
                    s.lost.to_string(),
                    s.untracked.to_string(),
                )
            },
        );
        let _ = writeln!(
            text,
            "| {} | {warm:.1} | {end:.1} | {:+.1} | {:.1} | {:.1} | {:.1} | {events} | {lost} | {untracked} |",
            e.view.label,
            end - warm,
            e.usage.maxrss_mb,
            e.usage.cpu_s,
            100.0 * e.usage.cpu_s / report.elapsed_s.max(1e-9),
        );
    }
    let seen = traced_counts(report, traced);
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "| call | made, ok | traced, ok | made, failed | traced, failed |"
    );
    let _ = writeln!(text, "|---|--:|--:|--:|--:|");
    for call in Syscall::ALL {
        let (made, seen) = (report.calls[call.index()], seen[call.index()]);
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} |",
            call.name(),
            made[0],
            seen[0],
            made[1],
            seen[1]
        );
    }
    let _ = writeln!(text);
    for c in checks {
        let verdict = if c.pass { "PASS" } else { "FAIL" };
        let _ = writeln!(text, "- {verdict}  {}: {}", c.what, c.detail);
    }
    text
}
