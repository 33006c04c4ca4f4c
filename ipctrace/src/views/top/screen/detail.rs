//! The detail of one row: a semaphore set's values, waiters, releasers and wait histogram; a
//! queue's fill and stuck state; a segment's attachments; a process's rates and objects; and
//! the last operations on it.

use super::{
    blocked_text, fill_bar, holders_text, holdings, key_text, opt_duration, owner_text, percentile,
    queue_stuck, rate_text, Detail, DetailLine, Models, RowId, SetWaits,
};
use crate::decoder::syscalls::Op;
use crate::model::objects::{IpcObject, ObjectKey, ObjectState};
use crate::model::waits::{log2_range, Caller, LOG2_SLOTS};
use crate::views::objects::{ago, who};
use crate::views::trace::args_text;
use crate::views::{human_bytes, human_duration};
use hdrhistogram::Histogram;
use std::collections::HashMap;

pub(super) fn detail(
    m: &Models,
    now_ns: u64,
    id: RowId,
    per_set: &HashMap<ObjectKey, SetWaits>,
) -> Option<Detail> {
    match id {
        RowId::Object(identity) => object_detail(m, now_ns, m.objects.get(&identity)?, per_set),
        RowId::Process(pid) => process_detail(m, now_ns, pid),
    }
}

fn heading(s: impl Into<String>) -> DetailLine {
    DetailLine::Heading(s.into())
}

fn text(s: impl Into<String>) -> DetailLine {
    DetailLine::Text(s.into())
}

/// The last calls on an object, newest first.
fn recent_lines(m: &Models, identity: &ObjectKey, now_ns: u64, lines: &mut Vec<DetailLine>) {
    let Some(a) = m.activity.object(identity) else {
        return;
    };
    lines.push(heading("Last operations"));
    let mut recent: Vec<&crate::decoder::Call> = a.recent.iter().collect();
    recent.sort_by_key(|c| std::cmp::Reverse(c.ts_ns));
    for c in recent {
        let result = match c.errno_name() {
            Some(e) => e,
            None => c.ret.to_string(),
        };
        let blocked = if c.blocked_ns > 0 {
            format!(" blocked {}", human_duration(c.blocked_ns))
        } else {
            String::new()
        };
        lines.push(text(format!(
            "{:>6} ago  {:<20} {:<10} {} = {result}{blocked}",
            ago(now_ns.saturating_sub(c.ts_ns)),
            who(c.pid, Some(c.comm)),
            c.op.name(),
            args_text(c)
        )));
    }
}

/// A log2 histogram of blocked waits, one bar per power of two from the lowest to the highest.
fn histogram_lines(hdr: Option<&Histogram<u64>>, lines: &mut Vec<DetailLine>) {
    let Some(hdr) = hdr.filter(|h| !h.is_empty()) else {
        lines.push(text("no wait has blocked yet"));
        return;
    };
    let mut slots = [0u64; LOG2_SLOTS + 1];
    for v in hdr.iter_recorded() {
        slots[crate::model::waits::log2_slot(v.value_iterated_to())] += v.count_at_value();
    }
    let first = slots.iter().position(|c| *c > 0).unwrap_or(0);
    let last = slots.iter().rposition(|c| *c > 0).unwrap_or(0);
    let max = slots.iter().copied().max().unwrap_or(1);
    for (slot, count) in slots.iter().enumerate().take(last + 1).skip(first) {
        let (lo, hi) = log2_range(slot);
        lines.push(DetailLine::Bar {
            label: format!("{:>8} - {:<8}", human_duration(lo), human_duration(hi)),
            count: *count,
            max,
        });
    }
}

fn object_detail(
    m: &Models,
    now_ns: u64,
    o: &IpcObject,
    per_set: &HashMap<ObjectKey, SetWaits>,
) -> Option<Detail> {
    let mut lines = Vec::new();
    let creator = o.creator.map_or("unknown".into(), |c| who(c.pid, c.comm));
    lines.push(text(format!(
        "key {}  owner {}  mode {}  created by {creator}{}",
        key_text(o.ipc_key),
        owner_text(o, m.users),
        o.mode.map_or("?".into(), |m| format!("{:o}", m & 0o777)),
        o.creator
            .and_then(|c| c.ts_ns)
            .map_or(String::new(), |t| format!(
                " {} ago",
                ago(now_ns.saturating_sub(t))
            ))
    )));
    let title = format!("{} {}", o.identity.kind.name(), o.identity.id);
    match &o.state {
        ObjectState::Sem(set) => {
            let waits = per_set.get(&o.identity);
            lines.push(heading("Semaphores"));
            lines.push(text(format!(
                "{:>4} {:>6} {:>6} {:>6}  {:<20} {:<8} {}",
                "NUM", "VALUE", "NCOUNT", "ZCOUNT", "LAST", "HOLDERS", "WAITERS (for how long)"
            )));
            for (num, sem) in set.sems.iter().enumerate() {
                let waiters: Vec<String> = sem
                    .waiters
                    .iter()
                    .map(|w| {
                        format!(
                            "{}{} {}",
                            who(w.pid, w.comm),
                            if w.for_zero { " for 0" } else { "" },
                            ago(now_ns.saturating_sub(w.since_ns))
                        )
                    })
                    .collect();
                let last = if sem.last_pid == 0 {
                    "-".into()
                } else {
                    who(sem.last_pid, sem.last_comm)
                };
                lines.push(text(format!(
                    "{num:>4} {:>6} {:>6} {:>6}  {last:<20} {:<8} {}",
                    sem.value.map_or("?".into(), |v| v.to_string()),
                    sem.ncount,
                    sem.zcount,
                    holders_text(&m.objects.holders(o.identity, num)),
                    if waiters.is_empty() {
                        "-".into()
                    } else {
                        waiters.join(", ")
                    }
                )));
            }
            // The waits hold only the calls that slept or failed; the object counts them all.
            let calls: u64 = [Op::Semop, Op::Semtimedop]
                .iter()
                .filter_map(|op| o.ops.get(op))
                .sum();
            if calls > 0 || waits.is_some() {
                let blocked: u64 = waits.map_or(0, |w| w.by_sem.values().map(|s| s.blocked).sum());
                let hdr = waits.and_then(|w| w.hdr.as_ref());
                lines.push(heading(format!(
                    "Waits since start: {calls} calls, {blocked} blocked, p50 {} p99 {} max {}",
                    opt_duration(percentile(hdr, 0.5)).0,
                    opt_duration(percentile(hdr, 0.99)).0,
                    opt_duration(hdr.filter(|h| !h.is_empty()).map(|h| h.max())).0
                )));
                let mut wakers: Vec<(&Caller, &u64)> =
                    waits.iter().flat_map(|w| w.wakers.iter()).collect();
                wakers.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                if !wakers.is_empty() {
                    let list: Vec<String> = wakers
                        .iter()
                        .take(5)
                        .map(|(t, n)| format!("{} {n}", who(t.pid, Some(t.comm))))
                        .collect();
                    lines.push(text(format!("released by: {}", list.join(", "))));
                }
                histogram_lines(hdr, &mut lines);
            } else {
                lines.push(heading("Waits since start"));
                lines.push(text("no semop seen yet"));
            }
        }
        ObjectState::Msg(q) => {
            lines.push(heading("Queue"));
            lines.push(text(format!(
                "{} messages  {}  sent {}  received {}",
                q.qnum,
                fill_bar(q.cbytes, q.qbytes, 20),
                human_bytes(q.bytes_sent),
                human_bytes(q.bytes_received)
            )));
            let task = |t: Option<crate::model::objects::QueueUser>| {
                t.map_or("-".into(), |t| who(t.pid, t.comm))
            };
            lines.push(text(format!(
                "last sender {} (lspid {})  last receiver {} (lrpid {})",
                task(q.last_send),
                q.lspid,
                task(q.last_recv),
                q.lrpid
            )));
            if let Some(why) = queue_stuck(m, o, now_ns) {
                lines.push(text(format!("STUCK: {why}")));
            }
            if let Some(w) = per_set.get(&o.identity) {
                lines.push(heading(
                    "Waits in msgsnd (queue full) and msgrcv (queue empty)",
                ));
                histogram_lines(w.hdr.as_ref(), &mut lines);
            }
        }
        ObjectState::Shm(s) => {
            lines.push(heading("Segment"));
            lines.push(text(format!(
                "size {}  nattch {}  cpid {}  lpid {}{}",
                s.size.map_or("?".into(), human_bytes),
                s.nattch,
                s.cpid.map_or("?".into(), |p| p.to_string()),
                s.lpid,
                if o.removed {
                    "  removed (IPC_RMID), lives until the last detach"
                } else {
                    ""
                }
            )));
            lines.push(heading(format!(
                "Attached ({} processes)",
                s.attached.len()
            )));
            for (pid, a) in &s.attached {
                lines.push(text(format!(
                    "{} with {} mappings",
                    who(*pid, a.comm),
                    a.maps()
                )));
            }
        }
    }
    recent_lines(m, &o.identity, now_ns, &mut lines);
    Some(Detail {
        id: RowId::Object(o.identity),
        title,
        lines,
    })
}

fn process_detail(m: &Models, now_ns: u64, pid: u32) -> Option<Detail> {
    let activity = m.activity.process(pid);
    let held = holdings(m).remove(&pid);
    if activity.is_none() && held.is_none() {
        return None;
    }
    let comm = activity
        .map(|a| a.comm)
        .or(held.as_ref().and_then(|h| h.0))
        .map_or("?".into(), |c| c.to_string());
    let mut lines = Vec::new();
    if let Some(a) = activity {
        let (t, l) = (a.tally.total, a.tally.last_interval);
        lines.push(text(format!(
            "since start: {} calls, {} errors, {} waits, blocked {}{}",
            t.calls,
            t.errors,
            t.waits,
            human_duration(t.blocked_ns),
            if a.exited { "  (exited)" } else { "" }
        )));
        lines.push(text(format!(
            "last interval: {} calls/s, {} errors/s, blocked {}",
            rate_text(m.rate(l.calls)),
            rate_text(m.rate(l.errors)),
            blocked_text(m.rate(l.blocked_ns))
        )));
    }
    lines.push(heading("Objects attached or waited on"));
    match held {
        Some((_, objects)) => lines.extend(objects.into_iter().map(text)),
        None => lines.push(text("none")),
    }
    // Its last calls, over the objects it used.
    let mut calls: Vec<crate::decoder::Call> = m
        .objects
        .iter()
        .filter_map(|o| m.activity.object(&o.identity))
        .flat_map(|a| a.recent.iter().filter(|c| c.pid == pid).copied())
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.ts_ns));
    if !calls.is_empty() {
        lines.push(heading("Last operations"));
        for c in calls.iter().take(10) {
            lines.push(text(format!(
                "{:>6} ago  {:<10} {} {}  {} = {}",
                ago(now_ns.saturating_sub(c.ts_ns)),
                c.op.name(),
                c.kind().name(),
                c.id().map_or("?".into(), |i| i.to_string()),
                args_text(c),
                c.errno_name().unwrap_or_else(|| c.ret.to_string())
            )));
        }
    }
    Some(Detail {
        id: RowId::Process(pid),
        title: format!("process {pid} {comm}"),
        lines,
    })
}
