//! How holders, waits in progress and deadlocks read, the same in `objects`, `lat` and `trace`:
//! `name(pid)` with how each holder is known, each wait so far (`>` when only a lower bound),
//! `STUCK` past --stuck, and a deadlock as its chain of who waits on what and holds what.

use super::objects::ago;
use crate::decoder::Comm;
use crate::model::deadlocks::{Deadlock, SemName};
use crate::model::holders::{Holder, HolderSource};
use crate::model::objects::{QueueWaiter, SemWaiter};
use serde_json::{json, Value};
use std::fmt::Write as _;

fn comm_json(comm: Option<Comm>) -> Value {
    comm.map_or(Value::Null, |c| Value::from(c.as_str().as_ref()))
}

fn who(pid: u32, comm: Option<Comm>) -> String {
    match comm {
        Some(c) => format!("{c}({pid})"),
        None => pid.to_string(),
    }
}

pub fn holder_json(h: &Holder) -> Value {
    let mut v = json!({
        "pid": h.pid, "comm": comm_json(h.comm), "units": h.units, "source": h.source.name(),
        "exited": h.exited,
    });
    if let Some(why) = &h.why {
        v["why"] = Value::from(why.as_str());
    }
    v
}

/// `sleeper(41)`, `pool(7) x3`, `db(9) gone`, `db(9)?` (a guess).
pub fn holder_text(h: &Holder) -> String {
    let mut s = who(h.pid, h.comm);
    if h.units > 1 {
        let _ = write!(s, " x{}", h.units);
    }
    match h.source {
        HolderSource::Kernel => {}
        HolderSource::Traced => s.push_str(" traced"),
        HolderSource::Inferred => s.push_str(" probably"),
    }
    if h.exited {
        s.push_str(" gone");
    }
    s
}

/// A holder of semaphore `num`: `sleeper(41)@0`, `pool(7)@2 x3 traced`.
pub fn holder_at(h: &Holder, num: usize) -> String {
    let text = holder_text(h);
    match text.split_once(' ') {
        Some((name, rest)) => format!("{name}@{num} {rest}"),
        None => format!("{text}@{num}"),
    }
}

/// How long a waiter has waited, and whether that is exact or a lower bound.
pub fn waited(w: &SemWaiter, now_ns: u64) -> u64 {
    now_ns.saturating_sub(w.since_ns)
}

/// `4.2s`, `>4.2s` when the wait began before ipctrace saw it, `STUCK 12s` past --stuck.
pub fn wait_text(waited_ns: u64, exact: bool, stuck_ns: u64) -> String {
    let bound = if exact { "" } else { ">" };
    let stuck = if waited_ns >= stuck_ns { "STUCK " } else { "" };
    format!("{stuck}{bound}{}", ago(waited_ns))
}

pub fn waiter_json(w: &SemWaiter, now_ns: u64, stuck_ns: u64) -> Value {
    let waited_ns = waited(w, now_ns);
    json!({
        "pid": w.pid, "tid": w.tid, "comm": comm_json(w.comm), "since_ns": w.since_ns,
        "for_zero": w.for_zero, "waited_ns": waited_ns, "exact": w.exact,
        "stuck": waited_ns >= stuck_ns,
    })
}

/// A task asleep on a queue: `op` is `"msgsnd"` (the queue full) or `"msgrcv"` (no message).
pub fn queue_waiter_json(w: &QueueWaiter, now_ns: u64, stuck_ns: u64) -> Value {
    let waited_ns = now_ns.saturating_sub(w.since_ns);
    json!({
        "pid": w.pid, "tid": w.tid, "comm": comm_json(w.comm), "op": w.op.name(),
        "since_ns": w.since_ns, "waited_ns": waited_ns, "exact": w.exact,
        "stuck": waited_ns >= stuck_ns,
    })
}

/// `rcv(12) msgrcv`, with how long once past a second: `snd(9) msgsnd >4.2s`.
pub fn queue_waiter_text(w: &QueueWaiter, now_ns: u64, stuck_ns: u64) -> String {
    let mut text = format!("{} {}", who(w.pid, w.comm), w.op.name());
    let waited_ns = now_ns.saturating_sub(w.since_ns);
    if waited_ns >= 1_000_000_000 {
        let _ = write!(text, " {}", wait_text(waited_ns, w.exact, stuck_ns));
    }
    text
}

fn sem_json(s: SemName) -> Value {
    json!({"id": s.id, "key": s.key, "semnum": s.num, "ipc_ns": s.ns})
}

/// `{"deadlock": [{pid, comm, waits, holds}, ...], "possible": bool}` (interface.md).
pub fn deadlock_json(d: &Deadlock) -> Value {
    let links: Vec<Value> = d
        .links
        .iter()
        .map(|l| {
            json!({
                "pid": l.pid, "comm": comm_json(l.comm),
                "waits": sem_json(l.waits), "holds": sem_json(l.holds),
            })
        })
        .collect();
    json!({"deadlock": links, "possible": d.possible})
}

fn sem_text(s: SemName) -> String {
    format!("semid {} #{} (key {:#010x})", s.id, s.num, s.key as u32)
}

/// One line per process of the cycle under a heading line, all ending in a newline.
pub fn deadlock_text(d: &Deadlock) -> String {
    let mut out = format!(
        "{}DEADLOCK: {} waiting on each other{}\n",
        if d.possible { "POSSIBLE " } else { "" },
        match d.links.len() {
            1 => "1 process".to_string(),
            n => format!("{n} processes"),
        },
        if d.possible {
            " (a holder is a guess)"
        } else {
            ""
        },
    );
    for l in &d.links {
        let _ = writeln!(
            out,
            "  {} waits on {}, holds {}",
            who(l.pid, l.comm),
            sem_text(l.waits),
            sem_text(l.holds)
        );
    }
    out
}

/// The whole cycle on one line, for `trace`: `a(10) waits on semid 1 #0 (key ..) held by
/// b(11) -> b(11) waits on semid 2 #0 (key ..) held by a(10)`.
pub fn deadlock_line(d: &Deadlock) -> String {
    let n = d.links.len();
    let steps: Vec<String> = (0..n)
        .map(|i| {
            let (l, next) = (&d.links[i], &d.links[(i + 1) % n]);
            format!(
                "{} waits on {} held by {}",
                who(l.pid, l.comm),
                sem_text(l.waits),
                who(next.pid, next.comm)
            )
        })
        .collect();
    format!(
        "{}DEADLOCK: {}",
        if d.possible { "POSSIBLE " } else { "" },
        steps.join(" -> ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::deadlocks::DeadlockLink;

    #[test]
    fn a_deadlock_reads_as_its_chain() {
        let sem = |id| SemName {
            ns: 1,
            id,
            key: 0x2a,
            num: 0,
        };
        let d = Deadlock {
            links: vec![
                DeadlockLink {
                    pid: 10,
                    comm: Some(Comm::new("a")),
                    waits: sem(1),
                    holds: sem(2),
                    since_ns: 0,
                },
                DeadlockLink {
                    pid: 11,
                    comm: Some(Comm::new("b")),
                    waits: sem(2),
                    holds: sem(1),
                    since_ns: 0,
                },
            ],
            possible: false,
        };
        assert_eq!(
            deadlock_text(&d),
            "DEADLOCK: 2 processes waiting on each other\n  \
             a(10) waits on semid 1 #0 (key 0x0000002a), holds semid 2 #0 (key 0x0000002a)\n  \
             b(11) waits on semid 2 #0 (key 0x0000002a), holds semid 1 #0 (key 0x0000002a)\n"
        );
        assert_eq!(
            deadlock_line(&d),
            "DEADLOCK: a(10) waits on semid 1 #0 (key 0x0000002a) held by b(11) -> \
             b(11) waits on semid 2 #0 (key 0x0000002a) held by a(10)"
        );
        let v = deadlock_json(&d);
        assert_eq!(v["deadlock"][1]["holds"]["id"], 1);
        assert_eq!(v["possible"], false);
        assert_eq!(wait_text(3_000_000_000, false, 10_000_000_000), ">3s");
        assert_eq!(wait_text(12_000_000_000, true, 10_000_000_000), "STUCK 12s");
    }
}
