//! The bench's results as people and scripts read them: the markdown tables, the targets
//! judged PASS or FAIL, and the raw numbers as JSON.
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::workloads::{NAMES, OTHER_SYSCALL};
use super::{median, Cell, Config, Sample, Tools, CONFIGS, STRACE_DIVISOR};
use crate::machine::{cpu_model, cpus, kernel_release, memory_kib};

pub struct Results<'a> {
    pub tools: &'a Tools,
    pub cells: &'a [Cell],
    pub pinned: &'a [Result<Sample, String>],
    pub idle: &'a [Result<Sample, String>],
    /// Each tracer under the stress-ng mix (issue 15).
    pub saturated: &'a [(Config, Result<Sample, String>)],
    /// `ipctrace export` with 1,000 attached processes, scraped every 15 s; `cpu_s` holds the
    /// per cent of a core.
    pub export_idle: &'a [Result<Sample, String>],
}

/// One of the targets, judged, or a number listed with them for information.
pub struct Target {
    what: &'static str,
    verdict: Verdict,
    detail: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    /// Could not be judged (a measurement is missing); the detail says why.
    Unjudged,
    /// Not a target: the detail is the whole line.
    Info,
}

impl Verdict {
    fn of(pass: bool) -> Verdict {
        if pass {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unjudged => "N/A",
            Verdict::Info => "INFO",
        }
    }
}

impl Target {
    fn line(&self) -> String {
        let verdict = format!("{:<4}", self.verdict.word());
        match self.verdict {
            Verdict::Info => format!("{verdict}  {}", self.detail),
            _ => format!("{verdict}  {}: {}", self.what, self.detail),
        }
    }
}

impl<'a> Results<'a> {
    fn cell(&self, workload: &str, config: Config) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.workload == workload && c.config == config)
    }

    /// Median ns per call added over the untraced run of the same workload.
    fn added(&self, workload: &str, config: Config) -> Option<f64> {
        let base = self.cell(workload, Config::Untraced)?.ns_per_call()?;
        Some(self.cell(workload, config)?.ns_per_call()? - base)
    }

    /// Added ns per call as the tables print it: "+404", or "—" when a median is missing.
    fn added_text(&self, workload: &str, config: Config) -> String {
        self.added(workload, config)
            .map_or("—".into(), |a| format!("{a:+.0}"))
    }

    /// Added cost as a multiple of the floor's added cost; None when the floor added nothing
    /// measurable (a ratio to noise means nothing).
    fn vs_floor(&self, workload: &str, config: Config) -> Option<f64> {
        let floor = self.added(workload, Config::Floor)?;
        (floor > 1.0).then_some(self.added(workload, config)? / floor)
    }

    /// The whole report: machine, tables, targets, and how long it all took.
    pub fn markdown(
        &self,
        machine: &str,
        targets: &[Target],
        elapsed: Duration,
        loadavg: &str,
    ) -> String {
        let mut md = format!("{machine}\n{}", self.tables());
        md.push_str("\n## Targets\n\n");
        for target in targets {
            let _ = writeln!(md, "- {}", target.line());
        }
        let _ = writeln!(
            md,
            "\nBench took {:.0} s (build included); load average at the end: {loadavg}.",
            elapsed.as_secs_f64()
        );
        md
    }

    fn tables(&self) -> String {
        let mut md = String::from("\n## Cost per call (median)\n\n");
        md.push_str(
            "| workload | tracer | ns/call | added ns/call | slowdown | added vs floor | events | lost | collector CPU s/M events | peak RSS MB | attached ms | exit ms |\n",
        );
        md.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for cell in self.cells {
            md.push_str(&self.row(cell));
        }
        md.push_str(
            "\nadded: over the untraced median of the same workload. added vs floor: added cost ÷ \
             the floor's (`ipctrace floor`: the same tracepoints with empty programs). Collector \
             CPU is the tracer process's own user+system time (programs in the kernel are charged \
             to the workload, i.e. to ns/call); it is per million events delivered, or per \
             million calls made where no events are counted (marked *). lat traces semaphores \
             only (its default), so its msg and shm rows mostly show calls filtered in the kernel. \
             getppid makes no IPC call: its rows are the syscall slow path alone, and any events \
             on them are other processes' IPC calls (0 on a quiet machine), not losses. bpftrace raw_syscalls (empty): empty programs on \
             raw_syscalls:sys_enter and sys_exit. \
             exit ms: from SIGINT to the tracer's exit, mostly the kernel detaching tracepoints. \
             The floor, --pid 1 and both bpftrace rows come from one tracer session per run that \
             traced every workload in turn (saving a second of detaching each): their \
             events, lost, peak RSS, attach and exit are that session's; their CPU is per \
             workload.\n",
        );
        md.push_str(&self.contamination());
        md.push_str(&self.other_syscalls());

        md.push_str("\n## Zero loss at the highest rate one core drives\n\n");
        md.push_str("semop loop pinned to CPU 0, `ipctrace trace --json` pinned to CPU 1.\n\n");
        md.push_str("| run | ns/call | events | lost | collector CPU s |\n|--:|--:|--:|--:|--:|\n");
        for (i, run) in self.pinned.iter().enumerate() {
            match run {
                Ok(s) => {
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} | {} | {} | {} |",
                        i + 1,
                        s.ns_per_call,
                        opt_u64(s.events),
                        opt_u64(s.lost),
                        opt(s.cpu_s, 2)
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "| {} | failed: {} | | | |", i + 1, one_line(e));
                }
            }
        }

        md.push_str(&self.saturated_table());

        md.push_str("\n## Idle: `ipctrace trace --json` for 1 s with nothing to trace\n\n");
        md.push_str(
            "| run | peak RSS MB | RSS after 1 s MB | CPU s | attached ms | exit ms |\n\
             |--:|--:|--:|--:|--:|--:|\n",
        );
        for (i, run) in self.idle.iter().enumerate() {
            match run {
                Ok(s) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {} |",
                        i + 1,
                        opt(s.rss_mb, 1),
                        opt(s.rss_now_mb, 1),
                        opt(s.cpu_s, 3),
                        opt(s.attach_ms, 0),
                        opt(s.exit_ms, 0)
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "| {} | failed: {} | | | | |", i + 1, one_line(e));
                }
            }
        }
        md
    }

    /// Each tracer at default priority while stress-ng saturates both cores with SysV IPC, and
    /// export's idle cost on a host with many attachments.
    fn saturated_table(&self) -> String {
        let mut md = format!(
            "\n## Saturated: `stress-ng {}`, default priority\n\n",
            super::STRESS_NG_ARGS.join(" ")
        );
        md.push_str(
            "| tracer | events | lost | lost % | collector CPU s |\n|---|--:|--:|--:|--:|\n",
        );
        for (config, run) in self.saturated {
            match run {
                Ok(s) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} |",
                        config.label(),
                        opt_u64(s.events),
                        opt_u64(s.lost),
                        opt(loss_percent(s), 2),
                        opt(s.cpu_s, 2)
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "| {} | failed: {} | | | |", config.label(), one_line(e));
                }
            }
        }
        md.push_str(
            "\nexport and lat count semops and messages in the kernel (per-CPU maps): their \
             events are the few calls that still stream (gets, attaches, removals; lat: blocked \
             waits), and lost counts records and map entries the kernel had no room for.\n",
        );
        md.push_str(
            "\n## Idle: `ipctrace export` with 1,000 processes attached to 10 segments, scraped every 15 s\n\n\
             | run | CPU % of a core (30 s) | RSS MB | attached ms | exit ms |\n|--:|--:|--:|--:|--:|\n",
        );
        for (i, run) in self.export_idle.iter().enumerate() {
            match run {
                Ok(s) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} |",
                        i + 1,
                        opt(s.cpu_s, 2),
                        opt(s.rss_now_mb, 1),
                        opt(s.attach_ms, 0),
                        opt(s.exit_ms, 0)
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "| {} | failed: {} | | | |", i + 1, one_line(e));
                }
            }
        }
        md
    }

    /// The stress-ng targets: export and lat lose nothing, trace under 1 %; export's idle cost.
    fn saturated_targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for (config, what, limit) in [
            (
                Config::Export,
                "ipctrace export loses nothing under the stress-ng mix",
                0.0,
            ),
            (
                Config::Lat,
                "ipctrace lat loses nothing under the stress-ng mix",
                0.0,
            ),
            (
                Config::Top,
                "ipctrace top loses nothing under the stress-ng mix",
                0.0,
            ),
            (
                Config::Trace,
                "ipctrace trace loses < 1 % under the stress-ng mix",
                1.0,
            ),
            (
                Config::TraceNice,
                "ipctrace trace --nice -15 loses < 1 % under the stress-ng mix",
                1.0,
            ),
            (
                Config::TraceRing,
                "ipctrace trace --ring-size 128M loses < 1 % under the stress-ng mix",
                1.0,
            ),
            (
                Config::TraceRealtime,
                "ipctrace trace --realtime 10 --ring-size 128M loses < 1 % under the stress-ng mix",
                1.0,
            ),
        ] {
            let runs: Vec<&Sample> = self
                .saturated
                .iter()
                .filter(|(c, _)| *c == config)
                .filter_map(|(_, r)| r.as_ref().ok())
                .collect();
            let percents: Vec<f64> = runs.iter().filter_map(|s| loss_percent(s)).collect();
            targets.push(if percents.is_empty() || percents.len() < runs.len() {
                Target {
                    what,
                    verdict: Verdict::Unjudged,
                    detail: "a run failed or printed no summary".into(),
                }
            } else {
                let worst = percents.iter().cloned().fold(0.0, f64::max);
                let pass = if limit == 0.0 {
                    worst == 0.0
                } else {
                    worst < limit
                };
                Target {
                    what,
                    verdict: Verdict::of(pass),
                    detail: format!(
                        "lost {} % in the {} runs",
                        percents
                            .iter()
                            .map(|p| format!("{p:.2}"))
                            .collect::<Vec<_>>()
                            .join("/"),
                        percents.len()
                    ),
                }
            });
        }
        let what =
            "ipctrace export with 1,000 attached processes, scraped every 15 s, < 1 % of a core";
        let cpu: Vec<f64> = self
            .export_idle
            .iter()
            .filter_map(|r| r.as_ref().ok()?.cpu_s)
            .collect();
        targets.push(match cpu.iter().cloned().reduce(f64::max) {
            Some(worst) => Target {
                what,
                verdict: Verdict::of(worst < 1.0),
                detail: format!("{worst:.2} % of a core over 30 s"),
            },
            None => Target {
                what,
                verdict: Verdict::Unjudged,
                detail: "the idle export run failed".into(),
            },
        });
        targets
    }

    /// What tracing IPC costs the calls it does not trace, and what covering 32-bit callers
    /// would cost every call, in added ns per call over untraced.
    fn other_syscalls(&self) -> String {
        let w = OTHER_SYSCALL;
        let mut md = String::from("\n## Cost to the machine's other syscalls\n\n");
        let costs: Vec<String> = CONFIGS
            .iter()
            .filter(|&&c| !matches!(c, Config::Untraced | Config::RawSyscalls))
            .filter(|&&c| self.tools.skipped(w, c).is_none())
            .map(|&c| format!("{} {}", c.label(), self.added_text(w, c)))
            .collect();
        let _ = writeln!(
            md,
            "- **Cost to every other syscall ({w}):** {} ns a call untraced; ns added a call: {}. Any \
             syscalls:* tracepoint attached sets TIF_SYSCALL_TRACEPOINT on every task, so every \
             syscall on the machine takes the slow path, even with no program of its own.",
            opt(
                self.cell(w, Config::Untraced).and_then(Cell::ns_per_call),
                0
            ),
            costs.join(", ")
        );
        let _ = writeln!(
            md,
            "- **Price of covering 32-bit callers (raw_syscalls):** empty programs on raw \
             sys_enter/sys_exit add {} ns to {w} and {} ns to semop, against the ipctrace \
             floor's {} and {}: only these see 32-bit callers' ipc(2), and they run on every \
             syscall of every task.",
            self.added_text(w, Config::RawSyscalls),
            self.added_text("semop", Config::RawSyscalls),
            self.added_text(w, Config::Floor),
            self.added_text("semop", Config::Floor),
        );
        md
    }

    /// Says which runs shared the machine with someone else's tracing programs.
    fn contamination(&self) -> String {
        let mut all: Vec<(String, Option<u32>)> = Vec::new();
        for cell in self.cells {
            for s in &cell.samples {
                let what = format!("{} / {}", cell.workload, cell.config.label());
                all.push((what, s.foreign_programs));
            }
        }
        for s in self.pinned.iter().flatten() {
            all.push(("pinned semop".into(), s.foreign_programs));
        }
        for s in self.idle.iter().flatten() {
            all.push(("idle".into(), s.foreign_programs));
        }
        if all.iter().all(|(_, n)| n.is_none()) {
            return "\nCould not check for other tracing BPF programs (bpftool prog show failed).\n"
                .into();
        }
        let mut dirty: Vec<&str> = Vec::new();
        let mut most = 0;
        for (what, n) in &all {
            if let Some(n) = n.filter(|&n| n > 0) {
                most = most.max(n);
                if !dirty.contains(&what.as_str()) {
                    dirty.push(what);
                }
            }
        }
        let count = all.iter().filter(|(_, n)| n.is_some_and(|n| n > 0)).count();
        if count == 0 {
            return "\nNo other tracing BPF programs were loaded during any run.\n".into();
        }
        let which = if count == all.len() {
            "every run".to_string()
        } else if dirty.len() > 8 {
            format!("{} and {} more", dirty[..8].join(", "), dirty.len() - 8)
        } else {
            dirty.join(", ")
        };
        format!(
            "\n**Not a clean machine:** {count} of {} runs had someone else's tracing BPF programs \
             loaded (up to {most}: other tests or tracers), which run on these calls too and \
             compete for the CPUs: {which}.\n",
            all.len()
        )
    }

    fn row(&self, cell: &Cell) -> String {
        let label = cell.config.label();
        let w = cell.workload;
        if let Some(why) = self.tools.skipped(w, cell.config) {
            return format!("| {w} | {label} | {why} | | | | | | | | | |\n");
        }
        let Some(ns) = cell.ns_per_call() else {
            let why = cell.errors.first().map_or("no runs", String::as_str);
            return format!(
                "| {w} | {label} | failed: {} | | | | | | | | | |\n",
                one_line(why)
            );
        };
        let mut label = label.to_string();
        if !cell.errors.is_empty() {
            let _ = write!(
                label,
                " ({} of {} runs failed: {})",
                cell.errors.len(),
                cell.errors.len() + cell.samples.len(),
                one_line(&cell.errors[0])
            );
        }
        let untraced = cell.config == Config::Untraced;
        let base = self.cell(w, Config::Untraced).and_then(Cell::ns_per_call);
        let added = if untraced {
            "—".into()
        } else {
            self.added_text(w, cell.config)
        };
        let slowdown = base.map_or("—".into(), |b| format!("{:.2}×", ns / b));
        let vs_floor = match cell.config {
            Config::Untraced | Config::Floor => "—".into(),
            c => self
                .vs_floor(w, c)
                .map_or("—".into(), |r| format!("{r:.2}×")),
        };
        let counts_events = cell.samples.iter().any(|s| s.events.is_some_and(|e| e > 0));
        let cpu = cell
            .median(Sample::cpu_per_million)
            .map_or("—".into(), |v| {
                format!("{v:.3}{}", if counts_events { "" } else { "*" })
            });
        format!(
            "| {w} | {label} | {ns:.0} | {added} | {slowdown} | {vs_floor} | {} | {} | {cpu} | {} | {} | {} |\n",
            opt(cell.median(|s| s.events.map(|e| e as f64)), 0),
            opt(cell.median(|s| s.lost.map(|e| e as f64)), 0),
            opt(cell.median(|s| s.rss_mb), 1),
            opt(cell.median(|s| s.attach_ms), 0),
            opt(cell.median(|s| s.exit_ms), 0),
        )
    }

    pub fn targets(&self) -> Vec<Target> {
        let others = |config: Config| -> String {
            let parts: Vec<String> = NAMES[1..]
                .iter()
                .filter(|&&w| w != OTHER_SYSCALL)
                .filter_map(|w| self.vs_floor(w, config).map(|r| format!("{w} {r:.2}×")))
                .collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!(" (other workloads, for information: {})", parts.join(", "))
            }
        };
        let vs_floor_target = |what: &'static str, config: Config| {
            let detail_missing = || "no floor, untraced or traced median on the semop loop".into();
            match (
                self.vs_floor("semop", config),
                self.added("semop", config),
                self.added("semop", Config::Floor),
            ) {
                (Some(r), Some(a), Some(f)) => Target {
                    what,
                    verdict: Verdict::of(r <= 1.3),
                    detail: format!(
                        "{r:.2}× ({a:.0} vs {f:.0} ns added a call, semop loop){}",
                        others(config)
                    ),
                },
                _ => Target {
                    what,
                    verdict: Verdict::Unjudged,
                    detail: detail_missing(),
                },
            }
        };
        let mut targets = vec![
            vs_floor_target(
                "ipctrace trace adds ≤ 1.3× the floor's cost a call",
                Config::Trace,
            ),
            vs_floor_target(
                "ipctrace export adds ≤ 1.3× the floor's cost a call",
                Config::Export,
            ),
            vs_floor_target(
                "ipctrace lat adds ≤ 1.3× the floor's cost a call",
                Config::Lat,
            ),
        ];

        let what = "ipctrace trace adds ≤ 0.5× bpftrace's cost a call";
        targets.push(
            match (
                self.added("semop", Config::Trace),
                self.added("semop", Config::Bpftrace),
            ) {
                (Some(t), Some(b)) if b > 0.0 => Target {
                    what,
                    verdict: Verdict::of(t / b <= 0.5),
                    detail: format!(
                        "{:.2}× ({t:.0} vs {b:.0} ns added a call, semop loop)",
                        t / b
                    ),
                },
                _ => Target {
                    what,
                    verdict: Verdict::Unjudged,
                    detail: self
                        .tools
                        .unavailable(Config::Bpftrace)
                        .or_else(|| {
                            self.cell("semop", Config::Bpftrace)
                                .and_then(|c| c.errors.first().map(|e| one_line(e)))
                        })
                        .unwrap_or_else(|| "no bpftrace measurement".into()),
                },
            },
        );

        let what = "zero events lost on the pinned semop loop";
        let losses: Vec<Option<u64>> = self
            .pinned
            .iter()
            .map(|r| r.as_ref().ok().and_then(|s| s.lost))
            .collect();
        targets.push(if losses.is_empty() || losses.iter().any(Option::is_none) {
            Target {
                what,
                verdict: Verdict::Unjudged,
                detail: "a pinned run failed or printed no summary".into(),
            }
        } else {
            let lost: Vec<u64> = losses.into_iter().flatten().collect();
            let events: Vec<String> = self
                .pinned
                .iter()
                .filter_map(|r| r.as_ref().ok().and_then(|s| s.events))
                .map(|e| e.to_string())
                .collect();
            Target {
                what,
                verdict: Verdict::of(lost.iter().all(|&l| l == 0)),
                detail: format!(
                    "lost {} of events {} in the {} runs",
                    join(&lost),
                    events.join("/"),
                    lost.len()
                ),
            }
        });

        let what = "ipctrace trace attached within 100 ms";
        let attach: Vec<f64> = self
            .cells
            .iter()
            .filter(|c| c.config == Config::Trace)
            .flat_map(|c| c.samples.iter().filter_map(|s| s.attach_ms))
            .collect();
        let worst = attach.iter().copied().fold(f64::NAN, f64::max);
        targets.push(match median(attach.clone()) {
            Some(m) => Target {
                what,
                verdict: Verdict::of(m <= 100.0),
                detail: format!(
                    "median {m:.0} ms, worst {worst:.0} ms over {} starts (spawn to the Tracing line)",
                    attach.len()
                ),
            },
            None => Target {
                what,
                verdict: Verdict::Unjudged,
                detail: "no ipctrace trace run succeeded".into(),
            },
        });

        let what = "idle RSS < 30 MB";
        let idle = |field: fn(&Sample) -> Option<f64>| {
            median(
                self.idle
                    .iter()
                    .filter_map(|r| r.as_ref().ok().and_then(field))
                    .collect(),
            )
        };
        // Judged on the peak (ru_maxrss), as every other RSS here; the resident set once
        // settled is shown beside it.
        targets.push(match idle(|s| s.rss_mb) {
            Some(mb) => Target {
                what,
                verdict: Verdict::of(mb < 30.0),
                detail: format!(
                    "{mb:.1} MB peak, {} MB resident after 1 s (ipctrace trace, nothing to trace)",
                    opt(idle(|s| s.rss_now_mb), 1)
                ),
            },
            None => Target {
                what,
                verdict: Verdict::Unjudged,
                detail: "the idle runs failed".into(),
            },
        });

        targets.push(vs_floor_target(
            "filtered out (--pid 1) adds ≤ 1.3× the floor's cost a call",
            Config::FilteredOut,
        ));
        targets.push(self.top_vs_objects());
        targets.extend(self.saturated_targets());
        targets.push(self.raw_syscalls_info());
        targets
    }

    /// `top` attaches what `objects --watch` does and adds a screen: it may cost no more, within
    /// the 10% two medians of the same thing differ by on this shared machine.
    fn top_vs_objects(&self) -> Target {
        let what = "ipctrace top costs ≤ objects --watch (added ns a call and collector CPU per M events, within 10%)";
        let cpu = |c: Config| self.cell("semop", c)?.median(Sample::cpu_per_million);
        match (
            self.added("semop", Config::Top),
            self.added("semop", Config::Objects),
            cpu(Config::Top),
            cpu(Config::Objects),
        ) {
            (Some(t), Some(o), Some(tc), Some(oc)) => Target {
                what,
                verdict: Verdict::of(t <= o * 1.1 && tc <= oc * 1.1),
                detail: format!(
                    "semop loop: {t:.0} vs {o:.0} ns added a call, {tc:.3} vs {oc:.3} CPU s per M events"
                ),
            },
            _ => Target {
                what,
                verdict: Verdict::Unjudged,
                detail: "no top or objects median on the semop loop".into(),
            },
        }
    }

    /// Not a target: what tracing raw sys_enter/sys_exit, the only way to see 32-bit callers'
    /// ipc(2), would cost every syscall, next to what ipctrace's floor costs it.
    fn raw_syscalls_info(&self) -> Target {
        let what = "raw sys_enter/sys_exit with empty programs, for information";
        let w = OTHER_SYSCALL;
        let detail = match (
            self.added(w, Config::RawSyscalls),
            self.added(w, Config::Floor),
        ) {
            (Some(raw), Some(floor)) => format!(
                "raw sys_enter/sys_exit with empty programs adds {raw:.0} ns to every syscall \
                 ({w}), {} what ipctrace's floor adds ({floor:.0} ns): 32-bit callers are \
                 reported, not traced",
                self.vs_floor(w, Config::RawSyscalls)
                    .map_or("against".into(), |r| format!("{r:.1}×"))
            ),
            _ => format!(
                "{what}: {}",
                self.tools
                    .skipped(w, Config::RawSyscalls)
                    .unwrap_or_else(|| format!("no untraced, floor or raw_syscalls median on {w}"))
            ),
        };
        Target {
            what,
            verdict: Verdict::Info,
            detail,
        }
    }

    pub fn json(&self, targets: &[Target], reps: usize, elapsed: Duration) -> String {
        let runs = |runs: &'a [Result<Sample, String>]| -> Vec<Run<'a>> {
            runs.iter()
                .map(|r| match r {
                    Ok(sample) => Run::Sample(sample),
                    Err(error) => Run::Failed { error },
                })
                .collect()
        };
        let tools = self.tools;
        let json = Json {
            machine: JsonMachine {
                cpus: cpus(),
                model: cpu_model(),
                memory_kib: memory_kib(),
                kernel: kernel_release(),
                ipctrace: &tools.ipctrace_version,
                bpftrace: tools.bpftrace.as_deref().unwrap_or_else(|e| e),
                strace: tools.strace.as_deref().unwrap_or_else(|e| e),
            },
            reps,
            strace_divisor: STRACE_DIVISOR,
            iterations: Iterations(tools),
            results: self
                .cells
                .iter()
                .map(|c| JsonCell {
                    workload: c.workload,
                    config: c.config.slug(),
                    label: c.config.label(),
                    skipped: tools.skipped(c.workload, c.config),
                    median_ns_per_call: c.ns_per_call(),
                    added_ns_per_call: self.added(c.workload, c.config),
                    vs_floor: self.vs_floor(c.workload, c.config),
                    samples: &c.samples,
                    errors: &c.errors,
                })
                .collect(),
            pinned: runs(self.pinned),
            idle: runs(self.idle),
            saturated: self
                .saturated
                .iter()
                .map(|(config, run)| JsonSaturated {
                    config: config.slug(),
                    label: config.label(),
                    lost_percent: run.as_ref().ok().and_then(loss_percent),
                    run: match run {
                        Ok(sample) => Run::Sample(sample),
                        Err(error) => Run::Failed { error },
                    },
                })
                .collect(),
            export_idle: runs(self.export_idle),
            targets: targets
                .iter()
                .map(|t| JsonTarget {
                    target: t.what,
                    verdict: t.verdict.word(),
                    pass: match t.verdict {
                        Verdict::Pass => Some(true),
                        Verdict::Fail => Some(false),
                        Verdict::Unjudged | Verdict::Info => None,
                    },
                    detail: &t.detail,
                })
                .collect(),
            elapsed_s: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        };
        let mut json = serde_json::to_string_pretty(&json).expect("plain values serialize");
        json.push('\n');
        json
    }
}

/// Lost as a share of everything the kernel had to hand over.
fn loss_percent(s: &Sample) -> Option<f64> {
    let (events, lost) = (s.events?, s.lost?);
    Some(if events + lost == 0 {
        0.0
    } else {
        100.0 * lost as f64 / (events + lost) as f64
    })
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.decimals$}"))
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or("—".into(), |v| v.to_string())
}

fn join(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

/// An error fit for a table cell: one line, no pipes.
fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .replace('|', "/")
        .trim()
        .to_string()
}

/// results.json: the figures of the tables, for scripts.
#[derive(Serialize)]
struct Json<'a> {
    machine: JsonMachine<'a>,
    reps: usize,
    strace_divisor: u64,
    iterations: Iterations<'a>,
    results: Vec<JsonCell<'a>>,
    pinned: Vec<Run<'a>>,
    idle: Vec<Run<'a>>,
    /// Each tracer's runs under the stress-ng mix, in the order they ran.
    saturated: Vec<JsonSaturated<'a>>,
    /// `ipctrace export` with 1,000 attached processes; `cpu_s` holds the per cent of a core.
    export_idle: Vec<Run<'a>>,
    targets: Vec<JsonTarget<'a>>,
    elapsed_s: f64,
}

#[derive(Serialize)]
struct JsonMachine<'a> {
    cpus: usize,
    model: String,
    memory_kib: Option<u64>,
    kernel: String,
    ipctrace: &'a str,
    bpftrace: &'a str,
    strace: &'a str,
}

/// Each workload's untraced iterations, in the tables' order.
struct Iterations<'a>(&'a Tools);

impl Serialize for Iterations<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            NAMES
                .iter()
                .map(|w| (w, self.0.iterations(w, Config::Untraced))),
        )
    }
}

/// One workload under one configuration: its medians and every run.
#[derive(Serialize)]
struct JsonCell<'a> {
    workload: &'a str,
    config: &'static str,
    label: &'static str,
    skipped: Option<String>,
    #[serde(serialize_with = "thousandths")]
    median_ns_per_call: Option<f64>,
    #[serde(serialize_with = "thousandths")]
    added_ns_per_call: Option<f64>,
    #[serde(serialize_with = "thousandths")]
    vs_floor: Option<f64>,
    samples: &'a [Sample],
    errors: &'a [String],
}

/// One tracer's run under the stress-ng mix.
#[derive(Serialize)]
struct JsonSaturated<'a> {
    config: &'static str,
    label: &'static str,
    /// Lost as a share of everything the kernel had to hand over.
    lost_percent: Option<f64>,
    run: Run<'a>,
}

/// A pinned, idle or saturated run: its sample, or why it failed.
#[derive(Serialize)]
#[serde(untagged)]
enum Run<'a> {
    Sample(&'a Sample),
    Failed { error: &'a str },
}

#[derive(Serialize)]
struct JsonTarget<'a> {
    target: &'static str,
    verdict: &'static str,
    /// Null when not judged, or not a target.
    pass: Option<bool>,
    detail: &'a str,
}

/// A figure to three decimals (what a measurement on a shared VM is worth); null when missing or
/// not finite.
pub(super) fn thousandths<S: Serializer, T: Copy + Into<Option<f64>>>(
    v: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    (*v).into()
        .filter(|v: &f64| v.is_finite())
        .map(|v| (v * 1000.0).round() / 1000.0)
        .serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::super::Sample;

    #[test]
    fn a_sample_in_results_json_has_three_decimals_and_null_for_what_is_missing() {
        let sample = Sample {
            ns_per_call: 612.345_678,
            calls: 800_000,
            events: Some(800_004),
            lost: Some(0),
            cpu_s: Some(f64::NAN),
            rss_mb: Some(9.0),
            ..Sample::default()
        };
        let json: serde_json::Value = serde_json::to_value(sample).unwrap();
        assert_eq!(json["ns_per_call"], 612.346);
        assert_eq!(json["calls"], 800_000);
        assert_eq!(json["events"], 800_004);
        assert_eq!(json["lost"], 0);
        assert!(json["cpu_s"].is_null(), "not finite: null");
        assert_eq!(json["rss_mb"], 9.0);
        assert!(json["attach_ms"].is_null() && json["foreign_programs"].is_null());
    }
}
