//! Views turn the decoded stream and the model into output for people (aligned text, human
//! units) and for scripts (`--json`, one object per line). Views never reach back into the probe.

pub mod export;
pub mod hangs;
pub mod lat;
pub mod objects;
pub mod output;
pub mod top;
pub mod trace;

/// The last line of every session: what was reported and what the kernel could not hand over,
/// calls and process records apart (`lost`: calls the ring buffer had no room for, so that
/// `events + lost` is the calls made; `lost_process_events`: fork/exec/exit records;
/// `untracked`: no kernel memory for a call in flight or an object a `--key` names; 32-bit
/// processes seen), with what a view adds (`extra`, JSON only).
pub fn summary(totals: &crate::session::Totals, json: bool, extra: &[(&str, u64)]) -> String {
    let k = &totals.kernel;
    if json {
        let mut s = format!(
            "{{\"summary\": {{\"events\": {}, \"process_events\": {}, \"lost\": {}, \"lost_process_events\": {}, \"untracked\": {}, \"malformed\": {}, \"compat_processes\": {}",
            totals.events,
            totals.process_events,
            k.lost,
            k.lost_process,
            k.untracked,
            totals.malformed,
            totals.compat_processes
        );
        for (name, value) in extra {
            s.push_str(&format!(", \"{name}\": {value}"));
        }
        s.push_str("}}\n");
        return s;
    }
    let mut s = format!("\n{} calls, {} lost\n", totals.events, k.lost);
    if k.lost_process > 0 {
        s.push_str(&format!(
            "{} process records (fork, exec, exit), {} lost: who has a segment mapped may be off\n",
            totals.process_events, k.lost_process
        ));
    }
    if k.untracked > 0 || totals.malformed > 0 {
        s.push_str(&format!(
            "{} calls or objects untracked (no room in the kernel), {} malformed records\n",
            k.untracked, totals.malformed
        ));
    }
    if totals.compat_processes > 0 {
        s.push_str(&format!(
            "{} 32-bit processes seen: their calls are not traced\n",
            totals.compat_processes
        ));
    }
    s
}

/// A JSON value as one line in the layout every view prints (`{"a": 1, "b": [2, 3]}`, the
/// same as trace's hand-written hot path), newline included.
pub fn json_line(out: &mut String, value: &serde_json::Value) {
    use serde::Serialize as _;
    let mut buf = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, Spaced);
    value.serialize(&mut ser).expect("a Value serializes");
    out.push_str(std::str::from_utf8(&buf).expect("serde_json writes UTF-8"));
    out.push('\n');
}

/// serde_json's compact output with a space after each `:` and `,`.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(w, first)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// `, ` before every element of an array or object but the first.
fn separate<W: ?Sized + std::io::Write>(w: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

/// The warning for 32-bit processes, if there are any: their calls are not traced.
pub fn compat_warning(processes: &[(u32, String)]) -> Option<String> {
    if processes.is_empty() {
        return None;
    }
    let names: Vec<String> = processes
        .iter()
        .take(8)
        .map(|(pid, comm)| format!("{comm}({pid})"))
        .collect();
    let more = processes.len().saturating_sub(8);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "ipctrace: warning: {} 32-bit process(es) are not covered (their SysV IPC goes through ipc(2)): {}{more}",
        processes.len(),
        names.join(", ")
    ))
}

/// Says on stderr that 32-bit processes are not covered (every view says it the same way).
pub fn say_compat_processes(found: &[(u32, String)]) {
    if let Some(warning) = compat_warning(found) {
        eprintln!("{warning}");
    }
}

/// Says on stderr, while it happens, that the kernel could not hand records over: the summary
/// at the end says it too, but a person watching a live trace (or a script's log) should not
/// learn only then that what scrolled by was incomplete.
#[derive(Debug, Default)]
pub struct LossWarning {
    warned: crate::loader::KernelCounts,
}

impl LossWarning {
    /// Says on stderr what `totals` counts as lost since the last time it said anything.
    pub fn say(&mut self, totals: &crate::session::Totals) {
        if let Some(warning) = self.check(totals.kernel) {
            eprintln!("{warning}");
        }
    }

    /// The warning for what was lost since the last one, if anything was.
    pub fn check(&mut self, now: crate::loader::KernelCounts) -> Option<String> {
        let calls = now.lost.saturating_sub(self.warned.lost);
        let processes = now.lost_process.saturating_sub(self.warned.lost_process);
        if calls == 0 && processes == 0 {
            return None;
        }
        self.warned = now;
        let mut what = Vec::new();
        if calls > 0 {
            what.push(format!("{calls} calls"));
        }
        if processes > 0 {
            what.push(format!("{processes} process records"));
        }
        Some(format!(
            "ipctrace: {} lost: the ring buffer was full (ipctrace could not keep up; narrow the trace with --pid, --type or --id)",
            what.join(" and ")
        ))
    }
}

/// A duration in the unit a person reads best: 850ns, 12.3µs, 1.08ms, 2.50s.
pub fn human_duration(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", three_digits(f / 1e3))
    } else if ns < 1_000_000_000 {
        format!("{}ms", three_digits(f / 1e6))
    } else {
        format!("{}s", three_digits(f / 1e9))
    }
}

/// A byte count in binary units: 512B, 4.0KiB, 1.5MiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// Three significant digits: 1.08, 12.3, 456.
fn three_digits(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_spaced_like_trace_lines() {
        let mut out = String::new();
        json_line(
            &mut out,
            &serde_json::json!({"a": 1, "b": [2, 3], "c": {"d": null}}),
        );
        assert_eq!(out, "{\"a\": 1, \"b\": [2, 3], \"c\": {\"d\": null}}\n");
    }

    #[test]
    fn losses_are_told_once_each_as_they_grow() {
        let mut w = LossWarning::default();
        let counts = |lost, lost_process| crate::loader::KernelCounts {
            lost,
            lost_process,
            ..Default::default()
        };
        assert_eq!(w.check(counts(0, 0)), None);
        let first = w.check(counts(120, 0)).unwrap();
        assert!(first.starts_with("ipctrace: 120 calls lost: "), "{first}");
        assert_eq!(w.check(counts(120, 0)), None, "nothing new, nothing said");
        let second = w.check(counts(130, 4)).unwrap();
        assert!(
            second.starts_with("ipctrace: 10 calls and 4 process records lost: "),
            "{second}"
        );
        let third = w.check(counts(130, 9)).unwrap();
        assert!(
            third.starts_with("ipctrace: 5 process records lost"),
            "{third}"
        );
    }

    #[test]
    fn the_32bit_warning_reads_well() {
        assert_eq!(compat_warning(&[]), None);
        let w = compat_warning(&[(7, "old".into())]).unwrap();
        assert!(
            w.ends_with("not covered (their SysV IPC goes through ipc(2)): old(7)"),
            "{w}"
        );
    }

    #[test]
    fn durations_in_human_units() {
        assert_eq!(human_duration(0), "0ns");
        assert_eq!(human_duration(850), "850ns");
        assert_eq!(human_duration(12_345), "12.3µs");
        assert_eq!(human_duration(1_080_000), "1.08ms");
        assert_eq!(human_duration(456_000_000), "456ms");
        assert_eq!(human_duration(2_500_000_000), "2.50s");
    }

    #[test]
    fn bytes_in_human_units() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(4096), "4.0KiB");
        assert_eq!(human_bytes(3 << 20), "3.0MiB");
    }
}
