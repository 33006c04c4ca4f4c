//! `cargo xtask bench`: what tracing SysV IPC costs IPC calls and every other syscall, ipctrace's
//! commands against their floor, bpftrace and strace in one run; report in target/bench/results.*.
mod pty;
mod report;
mod workloads;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::ipc::Syscall;
use crate::ipctrace_json::SummaryLine;
use crate::machine::{cpu_model, cpus, kernel_release, loadavg, memory_kib};
use crate::tracer::{self, Banner};
use report::{thousandths, Results};
pub use workloads::main as workload_main;
use workloads::{Report, NAMES};

const USAGE: &str = "usage: cargo xtask bench [--reps N] [--scale F]
  --reps N   runs of every measurement, the median is reported (default 3)
  --scale F  multiply every workload's iterations by F (default 1; 0.1 for a quick look)";

const DEFAULT_REPS: usize = 3;

/// Iterations of each workload: about half a second untraced on the 2-core VM this was written
/// on (semop ~600 ns a call, getppid ~170 ns), so a traced run stays within seconds.
fn iterations(workload: &str) -> u64 {
    match workload {
        "semop" => 400_000,
        "contended" => 30_000,
        "pingpong" => 55_000,
        workloads::OTHER_SYSCALL => 3_000_000,
        _ => 55_000,
    }
}

/// strace stops the workload twice a call (~45 µs a call here): it runs this fraction of the
/// iterations, or the bench would take minutes. Costs are per call, so they still compare.
const STRACE_DIVISOR: u64 = 50;

const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// How a workload runs: untraced, under one of ipctrace's commands, under bpftrace or strace.
/// RawSyscalls is bpftrace with empty programs on raw sys_enter/sys_exit, the only tracepoints
/// that see 32-bit callers' ipc(2): what covering those would cost every syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    Untraced,
    Floor,
    Trace,
    Lat,
    Objects,
    Top,
    Export,
    /// Only under the saturated mix: trace at a raised priority.
    TraceNice,
    /// Only under the saturated mix: trace with a 128 MiB ring buffer.
    TraceRing,
    /// Only under the saturated mix: trace at a real-time priority (SCHED_FIFO) with a
    /// 128 MiB ring, what its --help suggests for a saturated host.
    TraceRealtime,
    FilteredOut,
    Bpftrace,
    RawSyscalls,
    Strace,
}

const CONFIGS: [Config; 11] = [
    Config::Untraced,
    Config::Floor,
    Config::Trace,
    Config::Lat,
    Config::Objects,
    Config::Top,
    Config::Export,
    Config::FilteredOut,
    Config::Bpftrace,
    Config::RawSyscalls,
    Config::Strace,
];

impl Config {
    fn label(self) -> &'static str {
        match self {
            Config::Untraced => "untraced",
            Config::Floor => "ipctrace floor",
            Config::Trace => "ipctrace trace --json",
            Config::Lat => "ipctrace lat",
            // --json for its summary line: the human table only mentions losses when there are some.
            Config::Objects => "ipctrace objects --watch 1 --json",
            // On a pseudo-terminal of its own, drawing every second.
            Config::Top => "ipctrace top (80x24 pty)",
            Config::Export => "ipctrace export",
            Config::TraceNice => "ipctrace trace --json --nice -15",
            Config::TraceRing => "ipctrace trace --json --ring-size 128M",
            Config::TraceRealtime => "ipctrace trace --json --realtime 10 --ring-size 128M",
            Config::FilteredOut => "ipctrace trace --json --pid 1",
            Config::Bpftrace => "bpftrace latency hist",
            Config::RawSyscalls => "bpftrace raw_syscalls (empty)",
            Config::Strace => "strace -f -e trace=%ipc",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Config::Untraced => "untraced",
            Config::Floor => "floor",
            Config::Trace => "trace",
            Config::Lat => "lat",
            Config::Objects => "objects",
            Config::Top => "top",
            Config::Export => "export",
            Config::TraceNice => "trace_nice",
            Config::TraceRing => "trace_ring_128m",
            Config::TraceRealtime => "trace_realtime_128m",
            Config::FilteredOut => "trace_pid1",
            Config::Bpftrace => "bpftrace",
            Config::RawSyscalls => "bpftrace_raw_syscalls",
            Config::Strace => "strace",
        }
    }

    /// Tracers that deliver nothing per call to user space share one session across the
    /// workloads (see measure_shared).
    fn shared_session(self) -> bool {
        matches!(
            self,
            Config::Floor | Config::FilteredOut | Config::Bpftrace | Config::RawSyscalls
        )
    }

    fn ipctrace_args(self) -> Option<&'static [&'static str]> {
        Some(match self {
            Config::Floor => &["floor"],
            Config::Trace => &["trace", "--json"],
            Config::Lat => &["lat"],
            Config::Objects => &["objects", "--watch", "1", "--json"],
            // Any free port: nobody scrapes; its summary line says what it lost.
            Config::Export => &["export", "--listen", "127.0.0.1:0"],
            Config::TraceNice => &["trace", "--json", "--nice", "-15"],
            Config::TraceRing => &["trace", "--json", "--ring-size", "128M"],
            Config::TraceRealtime => {
                &["trace", "--json", "--realtime", "10", "--ring-size", "128M"]
            }
            Config::Top => &["top"],
            Config::FilteredOut => &["trace", "--json", "--pid", "1"],
            _ => return None,
        })
    }

    fn bpftrace_script(self) -> Option<String> {
        match self {
            Config::Bpftrace => Some(bpftrace_latency_script()),
            Config::RawSyscalls => Some(RAW_SYSCALLS_SCRIPT.into()),
            _ => None,
        }
    }
}

/// One run of one workload under one configuration (as results.json lists it, too).
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Sample {
    #[serde(serialize_with = "thousandths")]
    ns_per_call: f64,
    calls: u64,
    /// From ipctrace's summary line; None for tracers that have none.
    events: Option<u64>,
    lost: Option<u64>,
    /// The collector's own CPU (user + system) seconds; programs in the kernel are charged to
    /// the traced process and show up in ns_per_call instead.
    #[serde(serialize_with = "thousandths")]
    cpu_s: Option<f64>,
    #[serde(serialize_with = "thousandths")]
    rss_mb: Option<f64>,
    #[serde(serialize_with = "thousandths")]
    attach_ms: Option<f64>,
    /// From SIGINT to the tracer's exit.
    #[serde(serialize_with = "thousandths")]
    exit_ms: Option<f64>,
    /// The idle run's resident set after a second (VmRSS), next to the peak.
    #[serde(serialize_with = "thousandths")]
    rss_now_mb: Option<f64>,
    /// Tracing BPF programs someone else had loaded before or after the run (their tests,
    /// their tracers): they run on our calls too, so the run's numbers are not clean.
    foreign_programs: Option<u32>,
}

impl Sample {
    fn from_report(report: Report) -> Sample {
        Sample {
            ns_per_call: report.elapsed_ns as f64 / report.calls.max(1) as f64,
            calls: report.calls,
            ..Sample::default()
        }
    }

    /// Collector CPU seconds per million events delivered, or per million calls made when the
    /// tracer delivers none to count (floor, bpftrace, strace, a filter that drops them all).
    fn cpu_per_million(&self) -> Option<f64> {
        let per = match self.events {
            Some(events) if events > 0 => events,
            _ => self.calls,
        };
        Some(self.cpu_s? / (per.max(1) as f64 / 1e6))
    }
}

/// All runs of one workload under one configuration.
struct Cell {
    workload: &'static str,
    config: Config,
    samples: Vec<Sample>,
    errors: Vec<String>,
}

impl Cell {
    fn median(&self, field: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        median(self.samples.iter().filter_map(field).collect())
    }
    fn ns_per_call(&self) -> Option<f64> {
        self.median(|s| Some(s.ns_per_call))
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The programs the bench runs, and why a configuration cannot run when it cannot.
struct Tools {
    ipctrace: PathBuf,
    /// This very program, which runs the workloads as `bench-workload NAME ITERS`.
    xtask: PathBuf,
    out_dir: PathBuf,
    ipctrace_version: String,
    objects: Result<(), String>,
    bpftrace: Result<String, String>,
    strace: Result<String, String>,
    scale: f64,
}

impl Tools {
    fn find(scale: f64) -> Result<Tools> {
        let ipctrace = crate::target_dir().join("release/ipctrace");
        let ipctrace_version = first_line(Command::new(&ipctrace).arg("--version"))
            .with_context(|| format!("{} --version failed", ipctrace.display()))?;
        let objects = first_line(Command::new(&ipctrace).args(["objects", "--help"]))
            .map(drop)
            .ok_or_else(|| "skipped: objects not available".to_string());
        let out_dir = crate::target_dir().join("bench");
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        Ok(Tools {
            ipctrace,
            xtask: std::env::current_exe().context("cannot find the xtask binary")?,
            out_dir,
            ipctrace_version,
            objects,
            bpftrace: find_bpftrace(),
            strace: first_line(Command::new("strace").arg("-V"))
                .ok_or_else(|| "skipped: strace not found (cargo xtask setup installs it)".into()),
            scale,
        })
    }

    /// Why `config` cannot run here, if it cannot.
    fn unavailable(&self, config: Config) -> Option<String> {
        match config {
            Config::Objects => self.objects.clone().err(),
            Config::Bpftrace | Config::RawSyscalls => self.bpftrace.clone().err(),
            Config::Strace => self.strace.clone().err(),
            _ => None,
        }
    }

    /// Why `config` does not run `workload`, if it does not.
    fn skipped(&self, workload: &str, config: Config) -> Option<String> {
        if config == Config::Strace && workload == workloads::OTHER_SYSCALL {
            // It would show strace's cost to its own tracee, not to the machine's other calls.
            return Some("not run: strace slows only the processes it traces".into());
        }
        self.unavailable(config)
    }

    fn iterations(&self, workload: &str, config: Config) -> u64 {
        let base = (iterations(workload) as f64 * self.scale).max(1.0) as u64;
        match config {
            Config::Strace => (base / STRACE_DIVISOR).max(1),
            _ => base,
        }
    }

    fn workload(&self, workload: &str, iters: u64) -> Command {
        let mut cmd = Command::new(&self.xtask);
        cmd.args(["bench-workload", workload, &iters.to_string()]);
        cmd
    }

    /// The tracer of `config` and where it says it is attached; None for untraced and strace,
    /// which wrap the workload instead.
    fn tracer(&self, config: Config) -> Option<(Command, Banner)> {
        if let Some(args) = config.ipctrace_args() {
            let mut cmd = Command::new(&self.ipctrace);
            cmd.args(args);
            return Some((cmd, Banner::IPCTRACE));
        }
        if let Some(script) = config.bpftrace_script() {
            let mut cmd = Command::new("bpftrace");
            // bpftrace 0.17 warns that it cannot set RLIMIT_MEMLOCK: harmless on kernels ≥ 5.11.
            cmd.arg("-e").arg(script);
            // "Attaching N probes..." on stdout up to 0.20; newer ones say "Attached", on stderr.
            let banner = Banner {
                text: "Attach",
                on_stdout: true,
            };
            return Some((cmd, banner));
        }
        None
    }
}

/// Programs that do nothing on the tracepoints every syscall of every task passes.
const RAW_SYSCALLS_SCRIPT: &str =
    "tracepoint:raw_syscalls:sys_enter { } tracepoint:raw_syscalls:sys_exit { }";

/// The latency histogram ipctrace lat would give, written the way a bpftrace user would.
fn bpftrace_latency_script() -> String {
    let probes = |dir: &str| {
        Syscall::ALL
            .iter()
            .map(|call| format!("tracepoint:syscalls:sys_{dir}_{}", call.name()))
            .collect::<Vec<_>>()
            .join(",\n")
    };
    format!(
        "{}\n{{ @start[tid] = nsecs; }}\n{}\n/@start[tid]/\n{{ @ns = hist(nsecs - @start[tid]); delete(@start[tid]); }}\n",
        probes("enter"),
        probes("exit")
    )
}

/// bpftrace's version, installing it first when it is missing (apt-get update only if the plain
/// install fails, since that is the slow part).
fn find_bpftrace() -> Result<String, String> {
    if let Some(version) = first_line(Command::new("bpftrace").arg("--version")) {
        return Ok(version);
    }
    eprintln!("installing: bpftrace");
    let install = || {
        crate::run_ok(
            crate::setup::apt_get()
                .args(["install", "-y", "bpftrace"])
                .stdout(std::io::stderr()),
        )
    };
    if install().is_err() {
        let _ = crate::run_ok(
            crate::setup::apt_get()
                .arg("update")
                .stdout(std::io::stderr()),
        );
        if let Err(e) = install() {
            return Err(format!("skipped: bpftrace could not be installed ({e:#})"));
        }
    }
    first_line(Command::new("bpftrace").arg("--version"))
        .ok_or_else(|| "skipped: bpftrace installed but `bpftrace --version` fails".into())
}

/// The first line `cmd` prints on stdout, if it runs and succeeds.
fn first_line(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let (reps, scale) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let began = Instant::now();
    crate::ready_to_trace("bench")?;
    let tools = Tools::find(scale)?;
    let machine = machine(&tools, reps);
    eprintln!("{machine}");
    match foreign_programs() {
        Some(0) => {}
        Some(n) => eprintln!(
            "warning: {n} tracing BPF programs of someone else are loaded (tests? another \
             tracer?); they run on the workloads' calls too, and the report will say so"
        ),
        None => eprintln!("warning: bpftool prog show failed: cannot tell if the machine is quiet"),
    }

    let mut cells: Vec<Cell> = NAMES
        .iter()
        .flat_map(|&workload| {
            CONFIGS.iter().map(move |&config| Cell {
                workload,
                config,
                samples: Vec::new(),
                errors: Vec::new(),
            })
        })
        .collect();
    let mut pinned = Vec::new();
    let mut idle = Vec::new();
    let mut saturated = Vec::new();
    let mut export_idle = Vec::new();
    // Repetitions outermost, so drift on a shared VM spreads over every configuration alike.
    for rep in 1..=reps {
        let log = |workload: &str, label: &str, result: &Result<Sample>, took: Duration| {
            progress(rep, reps, workload, label, result, took);
        };
        for config in CONFIGS {
            if !config.shared_session() || tools.unavailable(config).is_some() {
                continue;
            }
            for (workload, result, took) in measure_shared(&tools, config) {
                log(workload, config.label(), &result, took);
                record(&mut cells, workload, config, result);
            }
        }
        for workload in NAMES {
            for config in CONFIGS {
                if config.shared_session() || tools.skipped(workload, config).is_some() {
                    continue;
                }
                let started = Instant::now();
                let result = checked(|| measure(&tools, workload, config));
                log(workload, config.label(), &result, started.elapsed());
                record(&mut cells, workload, config, result);
            }
        }
        let started = Instant::now();
        let result = checked(|| measure_pinned(&tools));
        log(
            "semop",
            "pinned: ipctrace trace --json",
            &result,
            started.elapsed(),
        );
        pinned.push(result.map_err(|e| format!("{e:#}")));
        let started = Instant::now();
        let result = checked(|| measure_idle(&tools));
        log(
            "idle 1 s",
            "ipctrace trace --json",
            &result,
            started.elapsed(),
        );
        idle.push(result.map_err(|e| format!("{e:#}")));
        for config in SATURATED_CONFIGS {
            let started = Instant::now();
            let result = checked(|| measure_saturated(&tools, config));
            log("stress-ng mix", config.label(), &result, started.elapsed());
            saturated.push((config, result.map_err(|e| format!("{e:#}"))));
        }
        // Once: it takes half a minute.
        if rep == 1 {
            let started = Instant::now();
            let result = checked(|| measure_export_idle(&tools));
            log(
                "1000 attached, scraped every 15 s",
                "ipctrace export",
                &result,
                started.elapsed(),
            );
            export_idle.push(result.map_err(|e| format!("{e:#}")));
        }
    }

    let results = Results {
        tools: &tools,
        cells: &cells,
        pinned: &pinned,
        idle: &idle,
        saturated: &saturated,
        export_idle: &export_idle,
    };
    let targets = results.targets();
    let elapsed = began.elapsed();
    let markdown = results.markdown(&machine, &targets, elapsed, &loadavg());
    println!("{markdown}");
    let md_path = tools.out_dir.join("results.md");
    let json_path = tools.out_dir.join("results.json");
    std::fs::write(&md_path, &markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    std::fs::write(&json_path, results.json(&targets, reps, elapsed))
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    eprintln!("wrote {} and {}", md_path.display(), json_path.display());
    Ok(ExitCode::SUCCESS)
}

fn record(cells: &mut [Cell], workload: &str, config: Config, result: Result<Sample>) {
    let Some(cell) = cells
        .iter_mut()
        .find(|c| c.workload == workload && c.config == config)
    else {
        return;
    };
    match result {
        Ok(sample) => cell.samples.push(sample),
        Err(e) => cell.errors.push(format!("{e:#}")),
    }
}

fn parse_args(args: &[String]) -> Result<(usize, f64), String> {
    let mut reps = DEFAULT_REPS;
    let mut scale = 1.0;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        match arg.as_str() {
            "--reps" => {
                reps = value("--reps")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--reps wants a whole number > 0")?;
            }
            "--scale" => {
                scale = value("--scale")?
                    .parse()
                    .ok()
                    .filter(|&f: &f64| f.is_finite() && f > 0.0)
                    .ok_or("--scale wants a number > 0")?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((reps, scale))
}

fn progress(
    rep: usize,
    reps: usize,
    workload: &str,
    label: &str,
    result: &Result<Sample>,
    took: Duration,
) {
    let what = match result {
        Ok(s) => {
            let mut text = format!("{:>8.0} ns/call", s.ns_per_call);
            if let (Some(events), Some(lost)) = (s.events, s.lost) {
                let _ = write!(text, ", {events} events, {lost} lost");
            }
            if let Some(ms) = s.attach_ms {
                let _ = write!(text, ", attached in {ms:.0} ms");
            }
            text
        }
        Err(e) => format!("failed: {e:#}"),
    };
    eprintln!(
        "[{rep}/{reps}] {workload:<9} {label:<35} {what} ({:.1} s)",
        took.as_secs_f64()
    );
}

/// Runs `measurement`, noting whether anyone else had tracing programs loaded around it.
fn checked(measurement: impl FnOnce() -> Result<Sample>) -> Result<Sample> {
    let before = foreign_programs();
    let mut sample = measurement()?;
    sample.foreign_programs = match (before, foreign_programs()) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Ok(sample)
}

/// How many tracing BPF programs someone else has loaded; called when none of ours should run.
/// A tracer that just exited can leave a program behind for some milliseconds while the kernel
/// frees it, so a non-zero count is read again after a pause (which costs only on a busy machine).
fn foreign_programs() -> Option<u32> {
    match tracing_programs()? {
        0 => Some(0),
        _ => {
            std::thread::sleep(Duration::from_millis(50));
            tracing_programs()
        }
    }
}

/// Loaded programs of the tracing types (tracepoint, raw_tracepoint, tracing, kprobe,
/// perf_event), from `bpftool prog show`; None when bpftool is missing or fails.
fn tracing_programs() -> Option<u32> {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let tracing = text
        .lines()
        .filter_map(|line| {
            let (id, rest) = line.split_once(": ")?;
            id.parse::<u32>().ok()?;
            rest.split_whitespace().next()
        })
        .filter(|kind| {
            matches!(
                *kind,
                "tracepoint"
                    | "raw_tracepoint"
                    | "raw_tracepoint_writable"
                    | "tracing"
                    | "kprobe"
                    | "perf_event"
            )
        })
        .count();
    u32::try_from(tracing).ok()
}

/// One run of `workload` under `config`, in a tracer session of its own.
fn measure(tools: &Tools, workload: &str, config: Config) -> Result<Sample> {
    let iters = tools.iterations(workload, config);
    match config {
        Config::Untraced => Ok(Sample::from_report(
            run_workload(tools.workload(workload, iters))?.0,
        )),
        Config::Strace => {
            let mut cmd = Command::new("strace");
            cmd.args(["-f", "-qq", "-e", "trace=%ipc", "-o", "/dev/null"])
                .arg(&tools.xtask)
                .args(["bench-workload", workload, &iters.to_string()]);
            let (report, usage) = run_workload(cmd)?;
            // wait4 counts strace and the workload it reaped; the workload's part is its own.
            Ok(Sample {
                cpu_s: Some((usage.cpu_s - report.cpu_ns as f64 / 1e9).max(0.0)),
                rss_mb: Some(usage.maxrss_mb),
                ..Sample::from_report(report)
            })
        }
        _ => traced(tools, config, tools.workload(workload, iters), None),
    }
}

/// One session of `config`'s tracer, and each workload in turn under it. For the tracers that hand
/// nothing per call to user space (floor, a filter that drops everything, bpftrace), one session
/// serves all the workloads: detaching ~24 tracepoints takes the kernel about a second, and per-workload
/// sessions would push the bench well past three minutes. Their CPU is split per workload from
/// /proc/PID/stat; peak RSS, attach and exit times and the summary are the session's.
fn measure_shared(tools: &Tools, config: Config) -> Vec<(&'static str, Result<Sample>, Duration)> {
    let before = foreign_programs();
    let started = Instant::now();
    let session = start_tracer(tools, config, None);
    let (running, out, _) = match session {
        Ok(session) => session,
        Err(e) => {
            let took = started.elapsed();
            let why = format!("{e:#}");
            return NAMES
                .iter()
                .map(|&w| (w, Err(anyhow::anyhow!("{why}")), took))
                .collect();
        }
    };
    let mut runs = Vec::new();
    for workload in NAMES {
        let started = Instant::now();
        let cpu_before = running.cpu_s_now();
        let result = run_workload(tools.workload(workload, tools.iterations(workload, config)))
            .map(|(report, _)| Sample {
                cpu_s: running
                    .cpu_s_now()
                    .zip(cpu_before)
                    .map(|(after, before)| after - before),
                attach_ms: Some(running.attach_ms),
                ..Sample::from_report(report)
            });
        runs.push((workload, result, started.elapsed()));
    }
    let stopped = running.stop();
    let (events, lost) = take_summary_counts(&out);
    let after = foreign_programs();
    let foreign = before.max(after);
    match stopped {
        Ok((usage, exit_ms)) => {
            for (_, result, _) in runs.iter_mut() {
                if let Ok(sample) = result {
                    sample.rss_mb = Some(usage.maxrss_mb);
                    sample.exit_ms = Some(exit_ms);
                    sample.events = events;
                    sample.lost = lost;
                    sample.foreign_programs = foreign;
                }
            }
            runs
        }
        Err(e) => {
            let why = format!("{e:#}");
            runs.into_iter()
                .map(|(w, _, took)| (w, Err(anyhow::anyhow!("{why}")), took))
                .collect()
        }
    }
}

/// The semop loop on CPU 0 and `ipctrace trace` on CPU 1: the highest rate one core can drive,
/// with a whole core to collect it; nothing may be lost.
fn measure_pinned(tools: &Tools) -> Result<Sample> {
    let mut workload = tools.workload("semop", tools.iterations("semop", Config::Trace));
    tracer::pin(&mut workload, 0);
    traced(tools, Config::Trace, workload, Some(1))
}

/// `ipctrace trace` with nothing to trace for a second: what it costs just to be there.
fn measure_idle(tools: &Tools) -> Result<Sample> {
    let (running, out, _) = start_tracer(tools, Config::Trace, None)?;
    let attach_ms = running.attach_ms;
    std::thread::sleep(Duration::from_secs(1));
    let rss_now_mb = running.rss_now_mb();
    let (usage, exit_ms) = running.stop()?;
    let (events, lost) = take_summary_counts(&out);
    Ok(Sample {
        events,
        lost,
        cpu_s: Some(usage.cpu_s),
        rss_mb: Some(usage.maxrss_mb),
        rss_now_mb,
        attach_ms: Some(attach_ms),
        exit_ms: Some(exit_ms),
        ..Sample::default()
    })
}

/// The saturated mix (issue 15): stress-ng keeps both cores busy with queues, semaphores and
/// segments while each tracer runs at default priority.
const SATURATED_CONFIGS: [Config; 7] = [
    Config::Trace,
    Config::TraceNice,
    Config::TraceRing,
    Config::TraceRealtime,
    Config::Lat,
    Config::Top,
    Config::Export,
];
const STRESS_NG_ARGS: [&str; 10] = [
    "--msg",
    "2",
    "--sem-sysv",
    "2",
    "--shm-sysv",
    "1",
    "--timeout",
    "5s",
    "--quiet",
    "--oomable",
];

fn measure_saturated(tools: &Tools, config: Config) -> Result<Sample> {
    let (running, out, screen) = start_tracer(tools, config, None)?;
    let cpu_before = running.cpu_s_now();
    tracer::run(
        {
            let mut cmd = Command::new("stress-ng");
            cmd.args(STRESS_NG_ARGS);
            cmd
        },
        WORKLOAD_TIMEOUT,
    )
    .context("stress-ng (apt-get install stress-ng; cargo xtask setup does)")?;
    let cpu_after = running.cpu_s_now();
    let (_, exit_ms) = running.stop()?;
    // top's summary is on its terminal, copied to `out` until it has exited.
    if let Some(screen) = screen {
        let _ = screen.join();
    }
    let (events, lost) = take_summary_counts(&out);
    Ok(Sample {
        events,
        lost,
        cpu_s: cpu_after.zip(cpu_before).map(|(a, b)| a - b),
        exit_ms: Some(exit_ms),
        ..Sample::default()
    })
}

/// `ipctrace export` on a host where 1,000 processes have segments attached, scraped every
/// 15 s as Prometheus would: its CPU over 30 s once settled (the first full look at /proc and
/// the walk for 32-bit processes are at start).
fn measure_export_idle(tools: &Tools) -> Result<Sample> {
    const PROCESSES: usize = 1000;
    const SEGMENTS: usize = 10;
    const SCRAPE_EVERY: Duration = Duration::from_secs(15);
    let segments: Vec<libc::c_int> = (0..SEGMENTS)
        .map(|_| unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) })
        .collect();
    let mut children = Vec::new();
    for i in 0..PROCESSES {
        let id = segments[i % SEGMENTS];
        // SAFETY: the child makes two syscalls and never returns.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                libc::shmat(id, std::ptr::null(), 0);
                loop {
                    libc::pause();
                }
            }
        }
        if pid > 0 {
            children.push(pid);
        }
    }
    // SAFETY: our own segments, removed now: they live until the children go.
    for id in &segments {
        unsafe { libc::shmctl(*id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
    let result = (|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&tools.ipctrace);
        cmd.args(["export", "--listen", &listen]);
        let out = tools.out_dir.join("export_idle.out");
        cmd.stdout(File::create(&out)?);
        let banner = Banner {
            text: "Tracing ",
            on_stdout: false,
        };
        let running = tracer::start("ipctrace export", cmd, banner, ATTACH_TIMEOUT)?;
        let scrape = || -> Result<usize> {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&listen)?;
            write!(s, "GET /metrics HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body.len())
        };
        // Steady state: past the start's one-off look for 32-bit processes (a /proc walk).
        std::thread::sleep(Duration::from_secs(2));
        let cpu_before = running.cpu_s_now();
        let began = Instant::now();
        let mut bytes = scrape()?;
        for _ in 0..2 {
            std::thread::sleep(SCRAPE_EVERY);
            bytes = scrape()?;
        }
        let window = began.elapsed().as_secs_f64();
        let cpu_after = running.cpu_s_now();
        let rss_now_mb = running.rss_now_mb();
        let attach_ms = running.attach_ms;
        let (usage, exit_ms) = running.stop()?;
        let (events, lost) = take_summary_counts(&out);
        anyhow::ensure!(bytes > 1000, "a scrape of {bytes} bytes");
        Ok(Sample {
            events,
            lost,
            // Per cent of a core over the window.
            cpu_s: cpu_after
                .zip(cpu_before)
                .map(|(a, b)| 100.0 * (a - b) / window),
            rss_mb: Some(usage.maxrss_mb),
            rss_now_mb,
            attach_ms: Some(attach_ms),
            exit_ms: Some(exit_ms),
            ..Sample::default()
        })
    })();
    for pid in children {
        // SAFETY: our own children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    result
}

/// Starts the tracer of `config` with its stdout going to a file; returns both, and for top
/// the thread that copies its terminal's output there (done once top has exited).
fn start_tracer(
    tools: &Tools,
    config: Config,
    cpu: Option<usize>,
) -> Result<(tracer::Tracer, PathBuf, Option<std::thread::JoinHandle<()>>)> {
    let (mut cmd, banner) = tools.tracer(config).context("no tracer")?;
    let out = tools.out_dir.join(format!("{}.out", config.slug()));
    let file = File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut screen = None;
    if config == Config::Top {
        screen = Some(pty::give_terminal(&mut cmd, file)?);
    } else {
        cmd.stdout(file);
    }
    if let Some(cpu) = cpu {
        tracer::pin(&mut cmd, cpu);
    }
    let running = tracer::start(config.label(), cmd, banner, ATTACH_TIMEOUT)?;
    Ok((running, out, screen))
}

/// Starts the tracer of `config`, runs `workload` once it is attached, stops the tracer.
fn traced(
    tools: &Tools,
    config: Config,
    workload: Command,
    tracer_cpu: Option<usize>,
) -> Result<Sample> {
    let (running, out, screen) = start_tracer(tools, config, tracer_cpu)?;
    let attach_ms = running.attach_ms;
    // On a workload error the tracer is stopped as it is dropped.
    let (report, _) = run_workload(workload)?;
    let (usage, exit_ms) = running.stop()?;
    if let Some(screen) = screen {
        let _ = screen.join();
    }
    let (events, lost) = take_summary_counts(&out);
    Ok(Sample {
        events,
        lost,
        cpu_s: Some(usage.cpu_s),
        rss_mb: Some(usage.maxrss_mb),
        attach_ms: Some(attach_ms),
        exit_ms: Some(exit_ms),
        ..Sample::from_report(report)
    })
}

fn run_workload(cmd: Command) -> Result<(Report, tracer::Usage)> {
    let (stdout, usage) = tracer::run(cmd, WORKLOAD_TIMEOUT)?;
    let report = stdout
        .lines()
        .rev()
        .find_map(Report::parse)
        .with_context(|| format!("the workload printed no report: {:?}", stdout.trim()))?;
    Ok((report, usage))
}

/// Events and lost from the end of a tracer's output, which is then removed (trace --json
/// writes ~300 bytes a call: no need to keep hundreds of MB around): the JSON summary line, or
/// the human "N calls, M lost" (or "N events, M lost"). Only the tail is read.
fn take_summary_counts(path: &Path) -> (Option<u64>, Option<u64>) {
    let counts = summary_counts(path);
    let _ = std::fs::remove_file(path);
    counts
}

fn summary_counts(path: &Path) -> (Option<u64>, Option<u64>) {
    let tail = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let Ok(text) = tail() else {
        return (None, None);
    };
    for line in text.lines().rev() {
        if let Some(summary) = SummaryLine::parse(line) {
            return (Some(summary.events), Some(summary.lost));
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [events, "events," | "calls,", lost, "lost"] = words.as_slice() {
            return (events.parse().ok(), lost.parse().ok());
        }
    }
    (None, None)
}

/// The header: what machine the numbers come from, and how they were taken.
fn machine(tools: &Tools, reps: usize) -> String {
    let cpus = cpus();
    let model = cpu_model();
    let kernel = kernel_release();
    let memory = memory_kib().map_or("unknown".into(), |kib| {
        format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0)
    });
    let mut text = String::from("# ipctrace benchmark\n\n## Machine\n\n");
    let _ = writeln!(text, "- CPUs: {cpus} × {model}");
    let _ = writeln!(text, "- kernel: {kernel}");
    let _ = writeln!(text, "- memory: {memory}");
    let _ = writeln!(text, "- load average at start: {}", loadavg());
    let _ = writeln!(
        text,
        "- tools: {}; {}; {}",
        tools.ipctrace_version,
        tools.bpftrace.as_deref().unwrap_or_else(|e| e),
        tools.strace.as_deref().unwrap_or_else(|e| e)
    );
    let iters: Vec<String> = NAMES
        .iter()
        .map(|w| format!("{w} {}", tools.iterations(w, Config::Untraced)))
        .collect();
    let _ = writeln!(
        text,
        "- iterations: {} (strace runs 1/{STRACE_DIVISOR} of them); {reps} runs each, medians shown",
        iters.join(", ")
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_read_from_json_and_from_tops_terminal() {
        let path = std::env::temp_dir().join(format!("bench-summary-{}", std::process::id()));
        std::fs::write(&path, "\x1b[?1049l\x1b[?25h\r\n1234 calls, 5 lost\r\n").unwrap();
        assert_eq!(summary_counts(&path), (Some(1234), Some(5)));
        std::fs::write(
            &path,
            "{\"summary\": {\"events\": 7, \"lost\": 0, \"untracked\": 0}}\n",
        )
        .unwrap();
        assert_eq!(summary_counts(&path), (Some(7), Some(0)));
        std::fs::write(&path, "no summary\n").unwrap();
        assert_eq!(summary_counts(&path), (None, None));
        let _ = std::fs::remove_file(&path);
    }
}
