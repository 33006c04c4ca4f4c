//! Running the soak: the four views and the load started together, the views' RSS and CPU read
//! and export scraped while the load runs, and afterwards what each view printed and what the
//! kernel lists, read back.
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, PipeWriter, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

use super::metrics::{self, Scrape};
use super::{
    workload, Ended, LoadReport, ObjectId, Observed, Sample, Table, TableObject, TracedCalls, View,
    Waits, EXPORT, LAT, OBJECTS, TRACE,
};
use crate::ipc::Kind;
use crate::ipctrace_json::{LatLine, ObjectsLine, Summary, TraceLine};
use crate::tracer::{self, Banner, Tracer};

/// RSS and CPU are read this often (more often in a run shorter than five minutes).
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long past its time the load may take to report before it counts as hung.
const LOAD_GRACE: Duration = Duration::from_secs(120);

/// A view's tracer while the load runs.
struct Watched {
    view: &'static View,
    tracer: Tracer,
    samples: Vec<Sample>,
}

/// Starts the four views, runs the load under them, stops them once the load has reported,
/// and reads back what each printed (and what /proc/sysvipc listed meanwhile).
pub(super) fn soak(ipctrace: &Path, out_dir: &Path, minutes: f64, rate: f64) -> Result<Observed> {
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
    let export_at = free_loopback_port()?;
    let mut watched = start_views(ipctrace, out_dir, stream_in, export_at)?;
    eprintln!(
        "soak: {minutes} min at {rate} calls/s under ipctrace {}, {}, {} and {}",
        TRACE.label, LAT.label, OBJECTS.label, EXPORT.label
    );

    let mut load = Load::start(seconds, rate)?;
    let mut scrapes = Scrapes::new(export_at);
    let report = watch(&mut watched, &mut load, minutes, &lines, &mut scrapes)?;

    // While the load's objects still exist: what the kernel says, then what the views say.
    let in_proc = soak_objects_in_proc()?;
    scrapes.scrape(scrapes.last_at_s() + 0.1)?;
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
    let (lat_summary, waits) = read_lat(&output_path(out_dir, &LAT))?;
    let (objects_summary, table) = read_objects(&output_path(out_dir, &OBJECTS))?;
    // export writes no JSON: its own counts are in its last scrape.
    let export_summary = scrapes.taken.last().map(|s| s.own);
    for e in &mut ended {
        e.summary = match e.view.slug {
            "trace" => traced.summary,
            "lat" => lat_summary,
            "export" => export_summary,
            _ => objects_summary,
        };
    }
    let left = remove_leftovers()?;
    if left > 0 {
        eprintln!("warning: the load left {left} objects; removed");
    }
    Ok(Observed {
        report,
        ended,
        traced,
        waits,
        table,
        in_proc,
        scrapes,
    })
}

/// A loopback address no one listens on now, for export's --listen.
fn free_loopback_port() -> Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(probe.local_addr()?)
}

/// export's scrapes so far, and those it did not answer.
pub(super) struct Scrapes {
    at: SocketAddr,
    pub taken: Vec<Scrape>,
    /// (seconds into the load, why) for each scrape that got no metrics.
    pub failed: Vec<(f64, String)>,
}

impl Scrapes {
    fn new(at: SocketAddr) -> Scrapes {
        Scrapes {
            at,
            taken: Vec::new(),
            failed: Vec::new(),
        }
    }

    fn last_at_s(&self) -> f64 {
        self.taken.last().map_or(0.0, |s| s.at_s)
    }

    /// Lists the load's objects, then scrapes: an object the previous scrape showed that was
    /// already gone before this one was asked for must have no series left. A scrape export
    /// does not answer is noted (a check fails on it), and the soak goes on.
    fn scrape(&mut self, at_s: f64) -> Result<()> {
        let alive = soak_objects_in_proc()?;
        let mut scrape = match metrics::fetch(self.at).and_then(|text| metrics::parse(&text)) {
            Ok(scrape) => scrape,
            Err(e) => {
                self.failed.push((at_s, format!("{e:#}")));
                return Ok(());
            }
        };
        scrape.at_s = at_s;
        if let Some(previous) = self.taken.last() {
            scrape.stale = scrape
                .soak_objects
                .iter()
                .filter(|o| previous.soak_objects.contains(o) && !alive.contains(o))
                .copied()
                .collect();
        }
        self.taken.push(scrape);
        Ok(())
    }
}

/// Starts trace (its stdout into `stream`), lat and objects (theirs into files in `out_dir`)
/// and export (serving at `export_at`), each once it says it is attached.
fn start_views(
    ipctrace: &Path,
    out_dir: &Path,
    stream: PipeWriter,
    export_at: SocketAddr,
) -> Result<Vec<Watched>> {
    let mut stream = Some(stream);
    let mut watched = Vec::new();
    for view in [&TRACE, &LAT, &OBJECTS, &EXPORT] {
        let mut cmd = Command::new(ipctrace);
        cmd.args(view.args);
        match view.slug {
            "trace" => cmd.stdout(stream.take().context("one trace view")?),
            "export" => cmd
                .args(["--listen", &export_at.to_string()])
                .stdout(create(&out_dir.join("export.txt"))?),
            _ => cmd.stdout(create(&output_path(out_dir, view))?),
        };
        let tracer = tracer::start(view.label, cmd, Banner::IPCTRACE, ATTACH_TIMEOUT)?;
        watched.push(Watched {
            view,
            tracer,
            samples: Vec::new(),
        });
    }
    Ok(watched)
}

/// Samples the views' RSS and CPU and scrapes export while the load runs, and says how far it
/// is every minute; returns the load's report once it comes.
fn watch(
    watched: &mut [Watched],
    load: &mut Load,
    minutes: f64,
    lines: &AtomicU64,
    scrapes: &mut Scrapes,
) -> Result<LoadReport> {
    let seconds = minutes * 60.0;
    let started = Instant::now();
    let every = SAMPLE_EVERY.min(Duration::from_secs_f64((seconds / 60.0).max(1.0)));
    let mut next_sample = started;
    let mut next_progress = started + Duration::from_secs(60);
    loop {
        let now = Instant::now();
        if now >= next_sample {
            let at_s = started.elapsed().as_secs_f64();
            for w in watched.iter_mut() {
                if let (Some(rss_mb), Some(cpu_s)) = (w.tracer.rss_now_mb(), w.tracer.cpu_s_now()) {
                    w.samples.push(Sample {
                        at_s,
                        rss_mb,
                        cpu_s,
                    });
                }
            }
            scrapes.scrape(at_s)?;
            next_sample += every;
        }
        if now >= next_progress {
            progress(
                watched,
                started,
                minutes,
                lines.load(Relaxed),
                scrapes.taken.last(),
            );
            next_progress += Duration::from_secs(60);
        }
        if started.elapsed() > Duration::from_secs_f64(seconds) + LOAD_GRACE {
            bail!(
                "the load has not reported {} s past its time",
                LOAD_GRACE.as_secs()
            );
        }
        if let Some(line) = load.line(next_sample.min(next_progress))? {
            return LoadReport::parse(&line);
        }
    }
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
/// trace's ring buffer.
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
    let not_a_call = || format!("trace printed a line that is not a call: {}", line.trim());
    let parsed: TraceLine = serde_json::from_str(line).with_context(not_a_call)?;
    if let Some(summary) = parsed.summary {
        traced.summary = Some(summary);
        return Ok(());
    }
    // trace watches the whole machine: a deadlock of someone else's is theirs, but the load
    // never deadlocks, so one that names its processes is trace's mistake (a check says so).
    if let Some(steps) = parsed.deadlock {
        if steps.iter().any(|s| {
            s.comm
                .as_deref()
                .is_some_and(|c| c.starts_with(workload::COMM_PREFIX))
        }) {
            traced.load_deadlocks.push(line.trim().to_string());
        } else {
            traced.deadlocks_elsewhere += 1;
        }
        return Ok(());
    }
    let (Some(pid), Some(call)) = (parsed.pid, parsed.op) else {
        bail!(not_a_call());
    };
    if !parsed
        .comm
        .is_some_and(|c| c.starts_with(workload::COMM_PREFIX))
    {
        traced.others += 1;
        return Ok(());
    }
    let failed = usize::from(parsed.errno.is_some());
    traced.by_pid.entry(pid).or_default()[call.index()][failed] += 1;
    Ok(())
}

/// lat's summary and its counts per object (type, id), summed over every interval.
fn read_lat(path: &Path) -> Result<(Option<Summary>, Waits)> {
    let mut summary = None;
    let mut waits: Waits = HashMap::new();
    for_each_line(path, "lat", |line, parsed: LatLine| {
        if let Some(s) = parsed.summary {
            summary = Some(s);
            return Ok(());
        }
        // Deadlocks (someone else's: trace's check covers the load's) are not counts.
        if parsed.deadlock.is_some() {
            return Ok(());
        }
        let (Some(kind), Some(id)) = (parsed.kind, parsed.id) else {
            bail!("lat printed a line without type and id: {line}");
        };
        let totals = waits.entry((kind, id)).or_default();
        totals.calls += parsed.calls;
        totals.blocked += parsed.blocked;
        totals.timeouts += parsed.timeouts;
        Ok(())
    })?;
    Ok((summary, waits))
}

/// objects' summary and its last table (the lines of its last report all carry its `ts_ns`),
/// the load's objects only.
fn read_objects(path: &Path) -> Result<(Option<Summary>, Table)> {
    let mut summary = None;
    let mut last: Vec<ObjectsLine> = Vec::new();
    for_each_line(path, "objects", |_, parsed: ObjectsLine| {
        if let Some(s) = parsed.summary {
            summary = Some(s);
            return Ok(());
        }
        // Between tables, not part of one.
        if parsed.deadlock.is_some() {
            return Ok(());
        }
        if last
            .first()
            .is_some_and(|first| first.ts_ns != parsed.ts_ns)
        {
            last.clear();
        }
        last.push(parsed);
        Ok(())
    })?;
    let table = last
        .into_iter()
        .filter(|o| o.key.is_some_and(workload::is_soak_key))
        .filter_map(|o| {
            let object = TableObject {
                creator: o.creator.and_then(|c| c.pid),
                nattch: o.nattch,
                attached: o.attached.iter().filter_map(|p| p.pid).collect(),
            };
            Some(((o.kind?, o.id?), object))
        })
        .collect();
    Ok((summary, table))
}

/// Hands `each` every line of a view's `--json` file, with the line parsed as `T`.
fn for_each_line<T: DeserializeOwned>(
    path: &Path,
    view: &str,
    mut each: impl FnMut(&str, T) -> Result<()>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    for line in text.lines() {
        let parsed = serde_json::from_str(line)
            .with_context(|| format!("{view} printed a line that is not its JSON: {line}"))?;
        each(line, parsed)?;
    }
    Ok(())
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
pub(super) fn remove_leftovers() -> Result<usize> {
    let found = soak_objects_in_proc()?;
    for &(kind, id) in &found {
        let _ = crate::ipc::remove(kind, id as libc::c_int);
    }
    Ok(found.len())
}

fn progress(
    watched: &[Watched],
    started: Instant,
    minutes: f64,
    lines: u64,
    scrape: Option<&Scrape>,
) {
    let rss: Vec<String> = watched
        .iter()
        .filter_map(|w| Some(format!("{} {:.1}", w.view.slug, w.samples.last()?.rss_mb)))
        .collect();
    eprintln!(
        "soak: {:.1}/{minutes} min; RSS MB {}; {lines} trace lines; export {} series",
        started.elapsed().as_secs_f64() / 60.0,
        rss.join(", "),
        scrape.map_or(0, |s| s.series)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::Syscall;

    fn call(pid: u32, comm: &str, op: &str, errno: &str) -> String {
        format!(
            r#"{{"ts_ns": 1, "pid": {pid}, "tid": {pid}, "comm": "{comm}", "type": "sem", "op": "{op}", "id": 3, "ret": 0, "errno": {errno}, "waker": {{"pid": 9, "comm": "soak-poster"}}}}"#
        )
    }

    #[test]
    fn trace_lines_are_counted_by_pid_call_and_result_for_the_load_only() {
        let mut traced = TracedCalls::default();
        for line in [
            call(40, "soak-loop", "semop", "null"),
            call(40, "soak-loop", "semop", "null"),
            call(40, "soak-loop", "semtimedop", r#""EAGAIN""#),
            call(41, "postgres", "semop", "null"),
            r#"{"summary": {"events": 4, "lost": 0, "untracked": 0, "malformed": 0}}"#.into(),
        ] {
            count_line(&line, &mut traced).unwrap();
        }
        let counts = traced.by_pid[&40];
        assert_eq!(counts[Syscall::Semop.index()], [2, 0]);
        assert_eq!(counts[Syscall::Semtimedop.index()], [0, 1]);
        assert!(
            !traced.by_pid.contains_key(&9),
            "the waker's pid is not the caller's"
        );
        assert_eq!(traced.others, 1);
        assert_eq!(traced.summary.map(|s| s.events), Some(4));
        let elsewhere =
            r#"{"deadlock": [{"pid": 7, "comm": "stress-ng-sem-s"}], "possible": false}"#;
        count_line(elsewhere, &mut traced).unwrap();
        assert_eq!((traced.deadlocks_elsewhere, traced.others), (1, 1));
        let ours = r#"{"deadlock": [{"pid": 40, "comm": "soak-mutex"}], "possible": true}"#;
        count_line(ours, &mut traced).unwrap();
        assert_eq!(traced.load_deadlocks, [ours]);
        assert!(count_line("Tracing SysV IPC", &mut traced).is_err());
    }
}
