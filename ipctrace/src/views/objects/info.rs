//! `objects -i ID`: one object in detail, as `ipcs -i` shows it and more: per semaphore its
//! value, last pid and comm, ncount, zcount, who waits and who holds it; a queue's counts, last
//! sender and receiver and who waits; a segment's attachments, one process a line with its
//! addresses.

use super::{ago, owner_text, perms_text, who, Table};
use crate::decoder::syscalls::IpcKind;
use crate::model::holders::HolderSource;
use crate::model::objects::{IpcObject, ObjectState, Objects, Queue, Segment, SemaphoreSet};
use std::collections::HashMap;
use std::fmt::Write as _;

/// The detail of every object with this id (ids of different kinds may coincide).
pub fn render_info(
    model: &Objects,
    objects: &[&IpcObject],
    now_ns: u64,
    users: &HashMap<u32, String>,
) -> String {
    let mut out = String::new();
    for o in objects {
        let (title, id_name) = match o.identity.kind {
            IpcKind::Shm => ("Shared Memory Segment", "shmid"),
            IpcKind::Sem => ("Semaphore Array", "semid"),
            IpcKind::Msg => ("Message Queue", "msqid"),
        };
        let _ = writeln!(out, "\n------ {title} {id_name}={} ------", o.identity.id);
        let owner = o.owner.map_or("?".to_string(), |w| {
            format!("{} (uid {}, gid {})", owner_text(o, users), w.uid, w.gid)
        });
        let _ = writeln!(
            out,
            "key {:#010x}  owner {owner}  perms {}  ipc_ns {}{}",
            o.ipc_key as u32,
            perms_text(o),
            o.identity.ns,
            if o.removed {
                "  removed (lives until the last detach)"
            } else {
                ""
            }
        );
        let creator = o
            .creator
            .map_or("unknown".to_string(), |c| who(c.pid, c.comm));
        let _ = write!(out, "created by {creator}");
        match o.last_op {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "; last {} by {} {} ago",
                    l.op.name(),
                    who(l.pid, Some(l.comm)),
                    ago(now_ns.saturating_sub(l.ts_ns))
                );
            }
            None => out.push('\n'),
        }
        match &o.state {
            ObjectState::Shm(s) => segment(&mut out, s),
            ObjectState::Sem(s) => {
                semaphores(&mut out, s, now_ns);
                holders(&mut out, model, o, s.sems.len());
            }
            ObjectState::Msg(q) => queue(&mut out, q, now_ns),
        }
    }
    out
}

fn segment(out: &mut String, s: &Segment) {
    let size = s.size.map_or("?".to_string(), |n| format!("{n} bytes"));
    let _ = writeln!(
        out,
        "{size}, nattch {} (mappings), cpid {}, lpid {}",
        s.nattch,
        s.cpid.map_or("?".to_string(), |p| p.to_string()),
        s.lpid
    );
    if s.attached.is_empty() {
        let _ = writeln!(out, "attached: none");
        return;
    }
    let mut table = Table::new(&[
        ("PID", 10, true),
        ("COMM", 16, false),
        ("MAPS", 6, true),
        ("ADDRESSES", usize::MAX, false),
    ]);
    for (pid, a) in &s.attached {
        let addresses: Vec<String> = a
            .spans
            .iter()
            .map(|(start, maps)| match maps {
                1 => format!("{start:#x}"),
                n => format!("{start:#x} ({n} maps)"),
            })
            .collect();
        table.push_text(vec![
            pid.to_string(),
            a.comm.map_or("?".to_string(), |c| c.to_string()),
            a.maps().to_string(),
            addresses.join(" "),
        ]);
    }
    out.push('\n');
    table.render(out, None);
}

fn semaphores(out: &mut String, s: &SemaphoreSet, now_ns: u64) {
    let _ = writeln!(
        out,
        "{} semaphores",
        s.nsems.map_or("?".to_string(), |n| n.to_string())
    );
    let mut table = Table::new(&[
        ("SEMNUM", 6, true),
        ("VALUE", 6, true),
        ("NCOUNT", 6, true),
        ("ZCOUNT", 6, true),
        ("LAST PID", 28, false),
    ]);
    for (num, sem) in s.sems.iter().enumerate() {
        let last = match sem.last_pid {
            0 => "-".to_string(),
            pid => who(pid, sem.last_comm),
        };
        table.push_text(vec![
            num.to_string(),
            sem.value.map_or("?".to_string(), |v| v.to_string()),
            sem.ncount.to_string(),
            sem.zcount.to_string(),
            last,
        ]);
    }
    out.push('\n');
    table.render(out, None);
    let mut waits = String::new();
    for (num, sem) in s.sems.iter().enumerate() {
        for w in &sem.waiters {
            let what = if w.for_zero {
                "for zero"
            } else {
                "to decrement"
            };
            let tid = if w.tid != w.pid {
                format!(" tid {}", w.tid)
            } else {
                String::new()
            };
            let _ = writeln!(
                waits,
                "  sem[{num}] {}{tid} waits {what}, at least {}",
                who(w.pid, w.comm),
                ago(now_ns.saturating_sub(w.since_ns))
            );
        }
        let unnamed = ((sem.ncount + sem.zcount) as usize).saturating_sub(sem.waiters.len());
        if unnamed > 0 {
            let _ = writeln!(
                waits,
                "  sem[{num}] {unnamed} more the kernel counts, unnamed"
            );
        }
    }
    if !waits.is_empty() {
        let _ = writeln!(out, "\nwaiters:\n{}", waits.trim_end());
    }
}

/// Who took units of each semaphore and has not given them back, and how that is known:
/// `sem[0] sleeper(41) holds 1 (kernel: SEM_UNDO)`.
fn holders(out: &mut String, model: &Objects, o: &IpcObject, nsems: usize) {
    let mut lines = String::new();
    for num in 0..nsems {
        for h in model.holders(o.identity, num) {
            let how = match h.source {
                HolderSource::Kernel => "kernel: SEM_UNDO".to_string(),
                HolderSource::Traced => "traced".to_string(),
                HolderSource::Inferred => match &h.why {
                    Some(why) => format!("inferred: {why}"),
                    None => "inferred".to_string(),
                },
            };
            let gone = if h.exited { ", gone" } else { "" };
            let _ = writeln!(
                lines,
                "  sem[{num}] {} holds {} ({how}{gone})",
                who(h.pid, h.comm),
                h.units
            );
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "\nholders:\n{}", lines.trim_end());
    }
}

fn queue(out: &mut String, q: &Queue, now_ns: u64) {
    let _ = writeln!(
        out,
        "{} messages, {} bytes queued of {} (qbytes)",
        q.qnum,
        q.cbytes,
        q.qbytes.map_or("?".to_string(), |n| n.to_string())
    );
    let task = |t: Option<crate::model::objects::QueueUser>, pid: u32| match t {
        Some(t) => who(t.pid, t.comm),
        None if pid != 0 => pid.to_string(),
        None => "-".to_string(),
    };
    let _ = writeln!(
        out,
        "last send by {} (lspid {}), last receive by {} (lrpid {})",
        task(q.last_send, q.lspid),
        q.lspid,
        task(q.last_recv, q.lrpid),
        q.lrpid
    );
    if q.bytes_sent + q.bytes_received > 0 {
        let _ = writeln!(
            out,
            "while traced: {} bytes sent, {} bytes received",
            q.bytes_sent, q.bytes_received
        );
    }
    if !q.waiters.is_empty() {
        let _ = writeln!(out, "\nwaiters:");
        for w in &q.waiters {
            let bound = if w.exact { "" } else { "at least " };
            let _ = writeln!(
                out,
                "  {} waits in {}, {bound}{}",
                who(w.pid, w.comm),
                w.op.name(),
                ago(now_ns.saturating_sub(w.since_ns))
            );
        }
    }
}
