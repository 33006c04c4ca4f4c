//! Writing a soak up: the figures and verdicts as markdown (target/soak/results.md, ready for the
//! README) and every RSS and CPU sample as a table (samples.tsv).
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::check::{traced_counts, warm_and_end};
use super::{Asked, Check, Ended, Observed};
use crate::ipc::Syscall;
use crate::machine::cpus;

/// Every sample, one line each: seconds, then RSS MB and CPU s of each view.
pub(super) fn write_samples(path: &Path, ended: &[Ended]) -> Result<()> {
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

/// The figures as markdown, ready for docs/performance.md.
pub(super) fn render(asked: &Asked, observed: &Observed, checks: &[Check]) -> String {
    let Asked {
        minutes,
        rate,
        warm_s,
        ref load_at_start,
    } = *asked;
    let Observed {
        report,
        ended,
        traced,
        ..
    } = observed;
    let mut text = String::new();
    let cpus = cpus();
    let _ = writeln!(text, "### Soak: {minutes} min at {rate} calls/s\n");
    let _ = writeln!(
        text,
        "- machine: {cpus} × {}, Linux {}; load average {load_at_start} at start, {} at the end",
        crate::machine::cpu_model(),
        crate::machine::kernel_release(),
        crate::machine::loadavg()
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
        "- other processes' calls traced meanwhile (the views see the whole machine): {}; \
         deadlocks trace reported among them: {}",
        traced.others, traced.deadlocks_elsewhere
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
    let scrapes = &observed.scrapes.taken;
    if let (Some(first), Some(last)) = (scrapes.first(), scrapes.last()) {
        let warm = scrapes.iter().find(|s| s.at_s >= warm_s).unwrap_or(last);
        let _ = writeln!(
            text,
            "\nexport's /metrics: {} series at {:.0} s, {} at {:.0} s, {} at the end ({} scrapes)",
            first.series,
            first.at_s,
            warm.series,
            warm.at_s,
            last.series,
            scrapes.len()
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
