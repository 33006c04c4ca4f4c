//! `ipctrace lat`: wait-latency histograms per object, semaphore or process, printed bcc-style
//! (log2 buckets with bars under a unit header) with HDR percentiles, the waiters' releasers and
//! a contention summary; or one JSON object per group per interval.

use super::human_duration;
use crate::clock::WallClock;
use crate::decoder::syscalls::IpcKind;
use crate::decoder::Comm;
use crate::decoder::{Call, Event};
use crate::filter::Filter;
use crate::model::holders::Holder;
use crate::model::objects::{Objects, SemWaiter};
use crate::model::waits::{log2_range, GroupBy, WaitGroup, WaitStats, Waits};
use crate::session::{Flow, Sink, Totals};
use crate::views::hangs;
use crate::views::objects::{shown, shown_deadlocks};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

pub struct LatView<W: Write> {
    out: W,
    json: bool,
    pub waits: Waits,
    /// IPC keys by object, from /proc/sysvipc at start and the get calls seen since.
    keys: HashMap<(IpcKind, u32, i32), i32>,
    /// Objects removed since the last report: their keys go once the report has named them.
    removed: Vec<(IpcKind, u32, i32)>,
    clock: WallClock,
    /// Intervals still to print (`--count`).
    remaining: Option<u64>,
    printed_any: bool,
    /// Histograms in milliseconds (`-m`, as bcc's tools take it).
    milliseconds: bool,
    /// Which semaphores' waits in progress to show (the trace's filter), and when one is stuck.
    hang_filter: Filter,
    stuck_ns: u64,
    /// Says losses on stderr as they happen.
    losses: super::LossWarning,
}

/// A group's waits in progress (each with its semaphore number) and the holders of the
/// semaphores they wait on.
#[derive(Default)]
struct InProgress {
    waiting: Vec<(SemWaiter, usize)>,
    holders: Vec<(Holder, usize)>,
}

impl<W: Write> LatView<W> {
    pub fn new(out: W, json: bool, waits: Waits, count: Option<u64>) -> Self {
        LatView {
            out,
            json,
            waits,
            keys: HashMap::new(),
            removed: Vec::new(),
            losses: super::LossWarning::default(),
            clock: WallClock::now(),
            remaining: count,
            printed_any: false,
            milliseconds: false,
            hang_filter: Filter::default(),
            stuck_ns: 10_000_000_000,
        }
    }

    /// Histogram buckets in milliseconds rather than microseconds (`-m`).
    pub fn in_milliseconds(mut self, milliseconds: bool) -> Self {
        self.milliseconds = milliseconds;
        self
    }

    /// How the waits in progress handed to `report` are shown: those of the objects and
    /// processes `filter` passes, STUCK past `stuck_ns`.
    pub fn showing_hangs(mut self, stuck_ns: u64, filter: Filter) -> Self {
        self.stuck_ns = stuck_ns;
        self.hang_filter = filter;
        self
    }

    /// The waits in progress by this view's groups, and their semaphores' holders.
    fn in_progress(&self, objects: Option<&Objects>) -> BTreeMap<WaitGroup, InProgress> {
        let mut by_group: BTreeMap<WaitGroup, InProgress> = BTreeMap::new();
        let Some(objects) = objects else {
            return by_group;
        };
        let filter = &self.hang_filter;
        let waiter_passes = |w: &SemWaiter| {
            (filter.pids.is_empty() || filter.pids.contains(&w.pid))
                && (filter.comms.is_empty()
                    || w.comm
                        .is_some_and(|c| filter.comms.iter().any(|n| Comm::new(n) == c)))
        };
        for o in objects.iter().filter(|o| shown(filter, o)) {
            let Some(set) = o.semaphores() else { continue };
            for (num, sem) in set.sems.iter().enumerate() {
                for w in sem.waiters.iter().filter(|w| waiter_passes(w)) {
                    let group = WaitGroup {
                        kind: IpcKind::Sem,
                        ipc_ns: o.identity.ns,
                        id: o.identity.id,
                        semnum: (self.waits.by == GroupBy::Semnum).then_some(num as u16),
                        pid: (self.waits.by == GroupBy::Process).then_some(w.pid),
                    };
                    let entry = by_group.entry(group).or_default();
                    entry.waiting.push((*w, num));
                    if !entry.holders.iter().any(|(_, n)| *n == num) {
                        for h in objects.holders(o.identity, num) {
                            entry.holders.push((h, num));
                        }
                    }
                }
            }
        }
        by_group
    }

    /// `waiting now: a(1)@0 >3s, ...` and `held by: h(2)@0, ...`.
    fn human_in_progress(&self, out: &mut String, p: &InProgress, now_ns: u64) {
        let waiting: Vec<String> = p
            .waiting
            .iter()
            .map(|(w, num)| {
                let waited = hangs::wait_text(hangs::waited(w, now_ns), w.exact, self.stuck_ns);
                let who = w
                    .comm
                    .map_or(w.pid.to_string(), |c| format!("{c}({})", w.pid));
                format!("{who}@{num} {waited}")
            })
            .collect();
        let _ = writeln!(out, "    waiting now: {}", waiting.join(", "));
        let holders: Vec<String> = p
            .holders
            .iter()
            .map(|(h, num)| hangs::holder_at(h, *num))
            .collect();
        let _ = writeln!(
            out,
            "    held by: {}",
            if holders.is_empty() {
                "nobody known".into()
            } else {
                holders.join(", ")
            }
        );
    }

    /// What was written (tests read it back).
    pub fn into_output(self) -> W {
        self.out
    }

    pub fn know_key(&mut self, kind: IpcKind, ipc_ns: u32, id: i32, key: i32) {
        self.keys.insert((kind, ipc_ns, id), key);
    }

    /// Prints what was gathered since the last report, then starts afresh; `now`: the
    /// semaphores as the kernel has them, for the waits still in progress and their holders.
    pub fn report(&mut self, now: Option<&Objects>) -> io::Result<()> {
        let mut text = String::new();
        if self.json {
            self.json_report(&mut text, now);
        } else {
            self.human_report(&mut text, now);
        }
        self.out.write_all(text.as_bytes())?;
        self.out.flush()?;
        self.waits.clear();
        for object in self.removed.drain(..) {
            self.keys.remove(&object);
        }
        self.printed_any = true;
        Ok(())
    }

    /// The final report and, for people, what the kernel could not hand over.
    pub fn finish(&mut self, totals: &Totals, now: Option<&Objects>) -> io::Result<()> {
        if !self.printed_any || !self.waits.stats.is_empty() {
            self.report(now)?;
        }
        self.out
            .write_all(super::summary(totals, self.json, &[]).as_bytes())?;
        self.out.flush()
    }

    fn object_name(&self, group: &WaitGroup) -> String {
        let mut s = format!("{} {}", group.kind, group.id);
        if let Some(k) = self
            .keys
            .get(&(group.kind, group.ipc_ns, group.id))
            .filter(|k| **k != 0)
        {
            let _ = write!(s, " key {:#x}", *k as u32);
        }
        if let Some(n) = group.semnum {
            let _ = write!(s, " sem[{n}]");
        }
        s
    }

    /// The object and, grouped by process, the waiter: what a group is, in one phrase.
    fn group_name(&self, group: &WaitGroup, stats: &WaitStats) -> String {
        let mut s = self.object_name(group);
        if let Some(pid) = group.pid {
            let _ = write!(s, " waiter {}({pid})", caller_comm(stats, pid));
        }
        s
    }

    fn human_report(&self, out: &mut String, objects: Option<&Objects>) {
        let now_ns = crate::clock::monotonic_ns();
        let now = self.clock.time_of_day(now_ns);
        let hottest = self.waits.hottest();
        let mut in_progress = self.in_progress(objects);
        if hottest.is_empty() && in_progress.is_empty() {
            let _ = writeln!(out, "{now}: no waits");
            return;
        }
        for (group, stats) in &hottest {
            self.human_group(out, &now, group, stats);
            if let Some(p) = in_progress.remove(group) {
                self.human_in_progress(out, &p, now_ns);
            }
        }
        // Keys whose waits have all been going on since before this report: the hang itself.
        for (group, p) in &in_progress {
            let mut head = self.object_name(group);
            if let Some(pid) = group.pid {
                let _ = write!(head, " waiter {pid}");
            }
            let _ = writeln!(out, "\n{now} {head}: no wait finished yet");
            self.human_in_progress(out, p, now_ns);
        }
        if let Some(objects) = objects {
            for d in shown_deadlocks(objects, &self.hang_filter) {
                out.push('\n');
                out.push_str(&hangs::deadlock_text(&d));
            }
        }
        if hottest.is_empty() {
            return;
        }
        self.human_summary(out, &hottest);
    }

    fn human_group(&self, out: &mut String, now: &str, group: &WaitGroup, stats: &WaitStats) {
        {
            let head = self.group_name(group, stats);
            let pct = (100 * stats.blocked).checked_div(stats.calls).unwrap_or(0);
            let _ = writeln!(
                out,
                "\n{now} {head}: {} calls, {} blocked ({pct}%), {} total; timeouts {}, EINTR {}, EIDRM {}",
                stats.calls,
                stats.blocked,
                human_duration(stats.blocked_total_ns),
                stats.timeouts,
                stats.interrupted,
                stats.removed
            );
            if stats.blocked == 0 {
                let _ = writeln!(out, "    every call took the fast path");
                return;
            }
            log2_histogram(out, stats, self.milliseconds);
            let _ = writeln!(
                out,
                "    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                human_duration(stats.percentile(0.5)),
                human_duration(stats.percentile(0.9)),
                human_duration(stats.percentile(0.99)),
                human_duration(stats.percentile(0.999)),
                human_duration(stats.max())
            );
            let wakers: Vec<String> = stats
                .top_wakers()
                .iter()
                .take(5)
                .map(|(t, n)| format!("{}({}) {n}", t.comm, t.pid))
                .collect();
            if !wakers.is_empty() {
                let _ = writeln!(out, "    released by: {}", wakers.join(", "));
            }
        }
    }

    fn human_summary(&self, out: &mut String, hottest: &[(&WaitGroup, &WaitStats)]) {
        let _ = writeln!(out, "\nContention summary");
        let hot: Vec<String> = hottest
            .iter()
            .filter(|(_, s)| s.blocked > 0)
            .take(3)
            .map(|(k, s)| {
                format!(
                    "{} {}",
                    self.group_name(k, s),
                    human_duration(s.blocked_total_ns)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  hottest (blocked time): {}",
            if hot.is_empty() {
                "none".into()
            } else {
                hot.join(", ")
            }
        );
        let waiters: Vec<String> = self
            .waits
            .top_waiters()
            .iter()
            .take(3)
            .map(|(t, n, ns)| format!("{}({}) {n} waits {}", t.comm, t.pid, human_duration(*ns)))
            .collect();
        let _ = writeln!(
            out,
            "  top waiters: {}",
            if waiters.is_empty() {
                "none".into()
            } else {
                waiters.join(", ")
            }
        );
        let wakers: Vec<String> = self
            .waits
            .top_wakers()
            .iter()
            .take(3)
            .map(|(t, n)| format!("{}({}) woke {n}", t.comm, t.pid))
            .collect();
        let _ = writeln!(
            out,
            "  top wakers: {}",
            if wakers.is_empty() {
                "none".into()
            } else {
                wakers.join(", ")
            }
        );
    }

    fn json_report(&self, out: &mut String, objects: Option<&Objects>) {
        let ts = crate::clock::clock_ns(libc::CLOCK_MONOTONIC);
        let mut in_progress = self.in_progress(objects);
        let none = WaitStats::default();
        let finished = self.waits.hottest();
        let waiting_only: Vec<(&WaitGroup, &WaitStats)> = in_progress
            .keys()
            .filter(|k| !self.waits.stats.contains_key(k))
            .map(|k| (k, &none))
            .collect();
        let waiting_only: Vec<(WaitGroup, &WaitStats)> =
            waiting_only.into_iter().map(|(k, s)| (*k, s)).collect();
        let groups = finished
            .into_iter()
            .map(|(k, s)| (*k, s))
            .chain(waiting_only);
        for (group, s) in groups {
            let group = &group;
            let mut line = json!({
                "ts_ns": ts as u64,
                "type": group.kind.name(),
                "id": group.id,
                "ipc_ns": group.ipc_ns,
                "key": self.keys.get(&(group.kind, group.ipc_ns, group.id)),
                "calls": s.calls,
                "blocked": s.blocked,
                "blocked_total_ns": s.blocked_total_ns,
                "timeouts": s.timeouts,
                "eintr": s.interrupted,
                "eidrm": s.removed,
                "p50_ns": s.percentile(0.5),
                "p90_ns": s.percentile(0.9),
                "p99_ns": s.percentile(0.99),
                "p999_ns": s.percentile(0.999),
                "max_ns": s.max(),
                "hist": s.log2_buckets(1).iter().enumerate().filter(|(_, c)| **c > 0).map(|(slot, count)| {
                    let (lo, hi) = log2_range(slot);
                    json!({"lo_ns": lo, "hi_ns": hi, "count": count})
                }).collect::<Vec<_>>(),
                "wakers": s.top_wakers().iter().map(|(t, n)| {
                    json!({"pid": t.pid, "comm": t.comm.to_string(), "count": n})
                }).collect::<Vec<_>>(),
            });
            if self.waits.by == GroupBy::Semnum {
                line["semnum"] = json!(group.semnum);
            }
            if let Some(pid) = group.pid {
                line["pid"] = json!(pid);
                line["comm"] = json!(caller_comm(s, pid));
            }
            if objects.is_some() {
                let p = in_progress.remove(group).unwrap_or_default();
                let now_ns = ts as u64;
                line["waiting"] = p
                    .waiting
                    .iter()
                    .map(|(w, num)| {
                        let mut v = hangs::waiter_json(w, now_ns, self.stuck_ns);
                        v["semnum"] = (*num).into();
                        v
                    })
                    .collect::<Vec<_>>()
                    .into();
                line["holders"] = p
                    .holders
                    .iter()
                    .map(|(h, num)| {
                        let mut v = hangs::holder_json(h);
                        v["semnum"] = (*num).into();
                        v
                    })
                    .collect::<Vec<_>>()
                    .into();
            }
            super::json_line(out, &line);
        }
        if let Some(objects) = objects {
            for d in shown_deadlocks(objects, &self.hang_filter) {
                super::json_line(out, &hangs::deadlock_json(&d));
            }
        }
    }
}

/// The command of the process a `--by process` group is about, from its calls.
fn caller_comm(stats: &WaitStats, pid: u32) -> String {
    stats
        .waiters
        .keys()
        .chain(&stats.last_caller)
        .find(|t| t.pid == pid)
        .map(|t| t.comm.to_string())
        .unwrap_or_default()
}

/// bcc's log2 histogram: a unit header, one row per power of two of the unit from the lowest
/// to the highest non-empty one, and a 40-column bar scaled to the largest count. As bcc does,
/// a bar is the count's share of 40 rounded down: a bucket of 50 next to one of 1,528 gets one
/// star, a bucket of 1 there none, so bars compare as the counts do.
pub fn log2_histogram(out: &mut String, stats: &WaitStats, milliseconds: bool) {
    if stats.blocked == 0 {
        return;
    }
    // Microseconds unless asked for milliseconds (-m, as runqlat) or the waits are long.
    let (unit, div) = if milliseconds || stats.max() >= 10_000_000_000 {
        ("msecs", 1_000_000)
    } else {
        ("usecs", 1_000)
    };
    let slots = stats.log2_buckets(div);
    let first = slots.iter().position(|c| *c > 0).unwrap_or(0);
    let last = slots.iter().rposition(|c| *c > 0).unwrap_or(0);
    let max = *slots.iter().max().unwrap_or(&1);
    let _ = writeln!(out, "    {unit:>20} : count    distribution");
    for (slot, count) in slots.iter().enumerate().take(last + 1).skip(first) {
        let (lo, hi) = log2_range(slot);
        let bar = "*".repeat((count * 40 / max.max(1)).min(40) as usize);
        let _ = writeln!(out, "    {lo:>10} -> {hi:<10}: {count:<8} |{bar:<40}|");
    }
}

impl<W: Write> Sink for LatView<W> {
    fn kernel_counts(&mut self, totals: &Totals) {
        self.losses.say(totals);
    }

    fn event(&mut self, event: &Event) -> Flow {
        if let Event::Call(call) = event {
            self.learn_key(call);
            self.waits.record(call);
        }
        Flow::Continue
    }

    fn compat_processes(&mut self, found: &[(u32, String)]) {
        super::say_compat_processes(found);
    }

    fn interval(&mut self) -> Flow {
        self.tick(None)
    }
}

impl<W: Write> LatView<W> {
    /// One interval's report (`now`: as for `report`), and the end once --count are done.
    pub fn tick(&mut self, now: Option<&Objects>) -> Flow {
        if self.report(now).is_err() {
            return Flow::Stop;
        }
        match self.remaining.as_mut() {
            Some(n) => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            }
            None => Flow::Continue,
        }
    }
}

impl<W: Write> LatView<W> {
    /// Keeps the keys of the objects that exist: learnt from get calls, forgotten after the
    /// report that follows their IPC_RMID, so that churning objects do not grow the map.
    fn learn_key(&mut self, call: &Call) {
        if let (Some(id), Some(key)) = (call.id(), call.key()) {
            self.know_key(call.kind(), call.ipc_ns, id, key);
        } else if call.cmd() == Some(crate::decoder::syscalls::IPC_RMID) && call.succeeded() {
            if let Some(id) = call.id() {
                self.removed.push((call.kind(), call.ipc_ns, id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::syscalls::Op;
    use crate::decoder::{Comm, SemOp, Waker};

    fn blocked(pid: u32, id: i32, ns: u64) -> Call {
        let mut c = Call::synthetic(
            Op::Semtimedop,
            pid,
            "waiter",
            [id as u64, 0, 1, 0, 0, 0],
            0,
            1,
        )
        .with_sops(&[SemOp {
            num: 0,
            op: -1,
            flg: 0,
        }]);
        c.blocked_ns = ns;
        c.waker = Some(Waker {
            pid: 99,
            tid: 99,
            comm: Comm::new("holder"),
        });
        c
    }

    fn view(json: bool) -> LatView<Vec<u8>> {
        let mut v = LatView::new(
            Vec::new(),
            json,
            Waits::new(GroupBy::Object, vec![IpcKind::Sem]),
            None,
        );
        v.know_key(IpcKind::Sem, 0, 5, 0x1234);
        for ns in [1_500_000, 2_100_000, 2_200_000, 40_000] {
            v.event(&Event::Call(blocked(7, 5, ns)));
        }
        v.event(&Event::Call(blocked(7, 5, 0)));
        v
    }

    #[test]
    fn keys_of_removed_objects_go_after_the_report_that_names_them() {
        let mut v = LatView::new(
            Vec::new(),
            true,
            Waits::new(GroupBy::Object, vec![IpcKind::Sem]),
            None,
        );
        for id in 0..10_000 {
            let get = Call::synthetic(Op::Semget, 7, "churn", [0x1234, 1, 0, 0, 0, 0], id, 1);
            let mut wait = blocked(7, id as i32, 1_000);
            wait.args[0] = id as u64;
            let rmid = Call::synthetic(Op::Semctl, 7, "churn", [id as u64, 0, 0, 0, 0, 0], 0, 1);
            for call in [get, wait, rmid] {
                v.event(&Event::Call(call));
            }
            if id % 1000 == 999 {
                v.report(None).unwrap();
            }
        }
        assert!(v.keys.is_empty(), "{} keys kept", v.keys.len());
        let out = String::from_utf8(v.out).unwrap();
        let last = out.lines().last().unwrap();
        assert!(
            last.contains("\"id\": 9999,") && last.contains("\"key\": 4660,"),
            "{last}"
        );
    }

    #[test]
    fn human_report_has_buckets_percentiles_and_releasers() {
        let mut v = view(false);
        v.report(None).unwrap();
        let out = String::from_utf8(v.out).unwrap();
        assert!(
            out.contains("sem 5 key 0x1234: 5 calls, 4 blocked (80%)"),
            "{out}"
        );
        assert!(out.contains("usecs : count    distribution"), "{out}");
        assert!(
            out.contains("2048 -> 4095      : 2        |****************************************|"),
            "{out}"
        );
        assert!(
            out.contains("1024 -> 2047      : 1        |********************                    |"),
            "{out}"
        );
        assert!(out.contains("32 -> 63        : 1"), "{out}");
        let mut ms = view(false).in_milliseconds(true);
        ms.report(None).unwrap();
        let out = String::from_utf8(ms.out).unwrap();
        assert!(out.contains("msecs : count    distribution"), "{out}");
        // 1.5, 2.1 and 2.2 ms fall in 1 -> 1 and 2 -> 3; 40 µs is 0 ms.
        let row = |range: &str| {
            let line = out.lines().find(|l| l.trim_start().starts_with(range));
            line.map(|l| {
                l.split(':')
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
            })
        };
        assert_eq!(
            (row("2 -> 3 "), row("0 -> 0 ")),
            (Some("2"), Some("1")),
            "{out}"
        );
        assert!(out.contains("released by: holder(99) 4"), "{out}");
        assert!(out.contains("top waiters: waiter(7) 4 waits"), "{out}");
        assert!(v.waits.stats.is_empty(), "a report starts a new interval");
    }

    #[test]
    fn json_report_follows_the_contract() {
        let mut v = view(true);
        v.report(None).unwrap();
        let out = String::from_utf8(v.out).unwrap();
        let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            (j["type"].as_str(), j["id"].as_i64(), j["key"].as_i64()),
            (Some("sem"), Some(5), Some(0x1234))
        );
        assert_eq!(
            (j["calls"].as_u64(), j["blocked"].as_u64()),
            (Some(5), Some(4))
        );
        assert!(
            j["p50_ns"].as_u64().unwrap() >= 1_500_000
                && j["max_ns"].as_u64().unwrap() >= 2_200_000
        );
        let hist_total: u64 = j["hist"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(hist_total, 4);
        assert_eq!(j["wakers"][0]["comm"], "holder");
        assert_eq!(j["wakers"][0]["count"], 4);
        for f in ["p90_ns", "p99_ns", "p999_ns"] {
            assert!(j[f].is_u64(), "{f}");
        }
    }

    #[test]
    fn bars_are_scaled_down_as_bcc_does() {
        let mut waits = Waits::new(GroupBy::Object, vec![IpcKind::Sem]);
        let waited = [(3_000, 1_528), (100_000, 50), (1_000_000, 1)]; // 2, 64 and 512 usecs
        for (ns, n) in waited {
            for _ in 0..n {
                waits.record(&blocked(7, 5, ns));
            }
        }
        let mut out = String::new();
        log2_histogram(&mut out, waits.stats.values().next().unwrap(), false);
        let bar = |lo: &str| {
            let line = out
                .lines()
                .find(|l| l.trim_start().starts_with(lo))
                .unwrap_or_else(|| panic!("{out}"));
            line.split('|').nth(1).unwrap().trim_end().len()
        };
        assert_eq!(bar("2 ->"), 40, "{out}");
        assert_eq!(bar("64 ->"), 1, "50 of 1528 is 1.3 stars: {out}");
        assert_eq!(bar("512 ->"), 0, "1 of 1528 is no star: {out}");
        assert_eq!(bar("4 ->"), 0, "{out}");
    }

    #[test]
    fn count_limits_the_intervals() {
        let mut v = LatView::new(
            Vec::new(),
            true,
            Waits::new(GroupBy::Object, vec![IpcKind::Sem]),
            Some(2),
        );
        assert_eq!(v.interval(), Flow::Continue);
        assert_eq!(v.interval(), Flow::Stop);
    }
}
