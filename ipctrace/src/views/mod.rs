//! Views turn the decoded stream and the model into output for people (aligned text, human
//! units) and for scripts (`--json`, one object per line). Views never reach back into the probe.

pub mod export;
pub mod lat;
pub mod objects;
pub mod output;
pub mod trace;

/// The last line of every session: what was reported and what the kernel could not hand over
/// (`lost`: ring buffer full; `untracked`: no kernel memory for a call in flight or an object a
/// `--key` names; 32-bit processes seen).
pub fn summary(totals: &crate::session::Totals, json: bool) -> String {
    let k = &totals.kernel;
    if json {
        return format!(
            "{{\"summary\": {{\"events\": {}, \"lost\": {}, \"untracked\": {}, \"malformed\": {}, \"compat_processes\": {}}}}}\n",
            totals.events, k.lost, k.untracked, totals.malformed, totals.compat_processes
        );
    }
    let mut s = format!("\n{} events, {} lost\n", totals.events, k.lost);
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
