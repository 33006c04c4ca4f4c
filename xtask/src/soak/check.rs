//! Judging a soak: memory flat after warm-up, nothing lost, every call the load made traced,
//! the waits it knows of counted by lat, the objects' last table matching the kernel, and export's
//! series bounded by --max-objects with a removed object's gone at the next scrape.
use std::collections::BTreeSet;

use super::metrics::Scrape;

use super::{
    CallCounts, Check, Ended, LoadReport, ObjectId, Observed, Sample, Table, TracedCalls, Waits,
    EXPORT_MAX_OBJECTS,
};
use crate::ipc::{Kind, Syscall};

/// Memory is flat when RSS grew by less than this after warm-up, or by less than GROWTH_SHARE.
const GROWTH_MB: f64 = 2.0;
const GROWTH_SHARE: f64 = 0.10;

/// The share of the handoff waits (each known to have slept) that lat must count as blocked:
/// a post can land in the instant between the waiter queueing and going to sleep.
const HANDOFF_SEEN_SHARE: f64 = 0.98;

/// export's median series count after warm-up may be at most this many times the one before
/// it: which objects are the most active (and how many semaphores and buckets they bring)
/// changes, but the series must not grow with the objects made and removed.
const SERIES_GROWTH: f64 = 1.5;

/// Every verdict, in the order the report lists them.
pub(super) fn all(observed: &Observed, warm_s: f64) -> Vec<Check> {
    let report = &observed.report;
    vec![
        check_memory(&observed.ended, warm_s),
        check_losses(&observed.ended),
        check_calls(report, &observed.traced),
        check_no_deadlock(&observed.traced),
        check_waits(report, &observed.waits),
        check_objects(report, &observed.in_proc, &observed.table),
        check_series(&observed.scrapes.taken, &observed.scrapes.failed, warm_s),
    ]
}

/// RSS after warm-up and at the end: the first sample at or past `warm_s`, and the last.
pub(super) fn warm_and_end(samples: &[Sample], warm_s: f64) -> Option<(Sample, Sample)> {
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
pub(super) fn traced_counts(report: &LoadReport, traced: &TracedCalls) -> CallCounts {
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

fn check_no_deadlock(traced: &TracedCalls) -> Check {
    let n = traced.load_deadlocks.len();
    Check {
        what: "trace finds no deadlock in the load",
        pass: n == 0,
        detail: match traced.load_deadlocks.first() {
            None => "none reported".into(),
            Some(first) => format!("{n} deadlock lines named its processes, the first: {first}"),
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

/// export's series: every scrape answered, at most --max-objects objects with series of their
/// own in each, no series of an object removed before the scrape, and no growth after warm-up.
pub(super) fn check_series(scrapes: &[Scrape], failed: &[(f64, String)], warm_s: f64) -> Check {
    // Medians: another process's short-lived set of many semaphores is a spike, a leak is not.
    let median = |scrapes: &mut dyn Iterator<Item = &Scrape>| {
        let mut n: Vec<usize> = scrapes.map(|s| s.series).collect();
        n.sort_unstable();
        n.get(n.len() / 2).copied()
    };
    let warm = median(&mut scrapes.iter().filter(|s| s.at_s <= warm_s));
    let after = median(&mut scrapes.iter().filter(|s| s.at_s > warm_s));
    let most = scrapes.iter().map(|s| s.series).max().unwrap_or(0);
    let objects = scrapes.iter().map(|s| s.objects).max().unwrap_or(0);
    let stale: BTreeSet<_> = scrapes.iter().flat_map(|s| &s.stale).collect();
    let churned: BTreeSet<_> = scrapes.iter().flat_map(|s| &s.soak_objects).collect();
    let bounded = match (warm, after) {
        (Some(warm), Some(after)) => after as f64 <= SERIES_GROWTH * warm as f64,
        _ => false,
    };
    Check {
        what: "export's series bounded",
        pass: bounded && objects <= EXPORT_MAX_OBJECTS && stale.is_empty() && failed.is_empty(),
        detail: format!(
            "{} scrapes{}; median series up to {warm_s:.0} s {}, after {} (at most {SERIES_GROWTH}x), \
             the most {most}, at the end {}; at most {objects} objects with series of their own (--max-objects \
             {EXPORT_MAX_OBJECTS}); {} of the load's objects had series at some scrape, {} still \
             had them after their removal{}",
            scrapes.len(),
            match failed.first() {
                None => String::new(),
                Some((at_s, why)) => format!(
                    " ({} unanswered, the first at {at_s:.0} s: {why})",
                    failed.len()
                ),
            },
            warm.map_or("-".into(), |n| n.to_string()),
            after.map_or("-".into(), |n| n.to_string()),
            scrapes.last().map_or(0, |s| s.series),
            churned.len(),
            stale.len(),
            if stale.is_empty() {
                String::new()
            } else {
                let ids: Vec<String> = stale
                    .iter()
                    .map(|(k, id)| format!("{} {id}", k.name()))
                    .collect();
                format!(": {}", ids.join(" "))
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::Kind;
    use crate::ipctrace_json::Summary;

    fn scrape(at_s: f64, series: usize, objects: usize, stale: &[i64]) -> Scrape {
        Scrape {
            at_s,
            series,
            objects,
            soak_objects: BTreeSet::new(),
            stale: stale.iter().map(|id| (Kind::Sem, *id)).collect(),
            own: Summary {
                events: 0,
                lost: 0,
                untracked: 0,
            },
        }
    }

    #[test]
    fn series_fail_when_they_grow_leave_the_bound_or_outlive_their_object() {
        let steady = [scrape(5.0, 400, 8, &[]), scrape(90.0, 450, 8, &[])];
        assert!(check_series(&steady, &[], 60.0).pass);
        let growing = [scrape(5.0, 400, 8, &[]), scrape(90.0, 900, 8, &[])];
        assert!(!check_series(&growing, &[], 60.0).pass);
        let spike = [
            scrape(5.0, 400, 8, &[]),
            scrape(70.0, 400, 8, &[]),
            scrape(80.0, 900, 8, &[]),
            scrape(90.0, 420, 8, &[]),
        ];
        assert!(
            check_series(&spike, &[], 60.0).pass,
            "one scrape is no trend"
        );
        let unfolded = [scrape(5.0, 400, 9, &[]), scrape(90.0, 400, 8, &[])];
        assert!(!check_series(&unfolded, &[], 60.0).pass);
        let stale = [scrape(5.0, 400, 8, &[]), scrape(90.0, 400, 8, &[7])];
        let check = check_series(&stale, &[], 60.0);
        assert!(
            !check.pass && check.detail.ends_with("sem 7"),
            "{}",
            check.detail
        );
        assert!(
            !check_series(&steady[..1], &[], 60.0).pass,
            "nothing after warm-up"
        );
        let unanswered = [(30.0, "timed out".to_string())];
        let check = check_series(&steady, &unanswered, 60.0);
        assert!(
            !check.pass && check.detail.contains("1 unanswered"),
            "{}",
            check.detail
        );
    }
}
