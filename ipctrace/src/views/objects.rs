//! `ipctrace objects`: the object model as `ipcs -a` style tables, with who created each object,
//! has it mapped, touched it last and waits on it; or one JSON object per line (interface.md's
//! names). While tracing it feeds the model and, with --watch, prints every interval.

use super::human_duration;
use crate::clock::WallClock;
use crate::decoder::syscalls::{self, IpcKind};
use crate::decoder::Comm;
use crate::filter::Filter;
use crate::model::objects::{IpcObject, LastOp, ObjectState, Objects, Task};
use crate::session::Totals;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

pub struct ObjectsView<W: Write> {
    out: W,
    json: bool,
    /// Which objects to print (--type, --id, --key).
    filter: Filter,
    /// User names by uid, for the OWNER column.
    users: HashMap<u32, String>,
    clock: WallClock,
    /// Put the time above each report (when tracing: reports repeat).
    stamped: bool,
}

impl<W: Write> ObjectsView<W> {
    pub fn new(out: W, json: bool, filter: Filter) -> Self {
        ObjectsView {
            out,
            json,
            filter,
            users: read_users(),
            clock: WallClock::now(),
            stamped: false,
        }
    }

    /// Puts the time above each table (for reports that repeat).
    pub fn stamped(mut self, stamped: bool) -> Self {
        self.stamped = stamped;
        self
    }

    /// Prints the model as it is at `now_ns` (CLOCK_MONOTONIC).
    pub fn print(&mut self, objects: &Objects, now_ns: u64) -> io::Result<()> {
        let text = if self.json {
            render_json(objects, &self.filter, now_ns)
        } else {
            let mut text = String::new();
            if self.stamped {
                let _ = writeln!(text, "{}", self.clock.time_of_day(now_ns));
            }
            text.push_str(&render_tables(objects, &self.filter, now_ns, &self.users));
            text
        };
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }

    /// After the last report: for scripts, the summary line every tracing command ends with.
    pub fn finish(&mut self, objects: &Objects, totals: &Totals) -> io::Result<()> {
        if self.json {
            // missed_exits: processes found gone when their pid came back; forgotten_processes:
            // dropped to keep the model bounded. Both follow lost exit events.
            let extra = [
                ("missed_exits", objects.missed_exits()),
                ("forgotten_processes", objects.forgotten_processes()),
            ];
            self.out
                .write_all(super::summary(totals, true, &extra).as_bytes())?;
        } else if totals.kernel.lost > 0 {
            writeln!(
                self.out,
                "warning: {} events lost: the kernel's numbers above are right, names may be missing",
                totals.kernel.lost
            )?;
        }
        self.out.flush()
    }
}

/// Whether the filter asks for this object (--type, --id, --key; --pid and --comm choose calls).
pub fn shown(filter: &Filter, o: &IpcObject) -> bool {
    filter.kinds().contains(&o.key.kind)
        && (filter.ids.is_empty() || filter.ids.contains(&o.key.id))
        && (filter.keys.is_empty() || filter.keys.contains(&o.ipc_key))
}

/// One JSON object per line, as interface.md lists them.
pub fn render_json(objects: &Objects, filter: &Filter, now_ns: u64) -> String {
    let mut out = String::new();
    for o in objects.iter().filter(|o| shown(filter, o)) {
        super::json_line(&mut out, &object_json(objects, o, now_ns));
    }
    out
}

fn comm_json(comm: Option<Comm>) -> Value {
    comm.map_or(Value::Null, |c| Value::from(c.as_str().as_ref()))
}

fn task_json(task: Option<Task>) -> Value {
    task.map_or(
        Value::Null,
        |t| json!({"pid": t.pid, "tid": t.tid, "comm": comm_json(t.comm)}),
    )
}

/// One object as interface.md names its fields. `exited` (of an actor or the last op): the
/// process has gone since, so its pid may name another now; null when the kernel alone told.
pub fn object_json(objects: &Objects, o: &IpcObject, now_ns: u64) -> Value {
    let actor = |a: Option<crate::model::objects::Actor>| {
        a.map_or(Value::Null, |a| {
            json!({
                "pid": a.pid, "comm": comm_json(a.comm), "ts_ns": a.ts_ns,
                "exited": objects.exited(a.pid, a.process),
            })
        })
    };
    let last_op = o.last_op.map_or(Value::Null, |l| {
        json!({
            "pid": l.pid, "tid": l.tid, "comm": l.comm.as_str(), "op": l.op.name(), "ts_ns": l.ts_ns,
            "errno": l.errno.map(|e| syscalls::errno_name(e).map_or_else(|| format!("E{e}"), str::to_string)),
            "exited": objects.exited(l.pid, Some(l.process)),
        })
    });
    let ops: serde_json::Map<String, Value> = o
        .ops
        .iter()
        .map(|(op, n)| (op.name().to_string(), Value::from(*n)))
        .collect();
    let mut v = json!({
        "type": o.key.kind.name(),
        "id": o.key.id,
        "key": o.ipc_key,
        "ipc_ns": o.key.ns,
        "owner": o.owner.map(|w| json!({"uid": w.uid, "gid": w.gid})),
        "mode": o.mode,
        "creator": actor(o.creator),
        "changed_by": actor(o.changed_by),
        "last_op": last_op,
        "removed": o.removed,
        "ops": ops,
        "errors": o.errors,
        "ts_ns": now_ns,
    });
    let fields = v.as_object_mut().expect("an object");
    match &o.state {
        ObjectState::Shm(s) => {
            let attached: Vec<Value> = s
                .attached
                .iter()
                .map(|(pid, a)| json!({"pid": pid, "comm": comm_json(a.comm), "maps": a.maps()}))
                .collect();
            fields.insert("size".into(), json!(s.size));
            fields.insert("nattch".into(), json!(s.nattch));
            fields.insert("attached".into(), Value::from(attached));
            fields.insert("cpid".into(), json!(s.cpid));
            fields.insert("lpid".into(), json!(s.lpid));
        }
        ObjectState::Sem(s) => {
            let sems: Vec<Value> = s
                .sems
                .iter()
                .enumerate()
                .map(|(num, sem)| {
                    let waiters: Vec<Value> = sem
                        .waiters
                        .iter()
                        .map(|w| {
                            json!({
                                "pid": w.pid, "tid": w.tid, "comm": comm_json(w.comm),
                                "since_ns": w.since_ns, "for_zero": w.for_zero,
                            })
                        })
                        .collect();
                    json!({
                        "num": num, "value": sem.value, "last_pid": sem.last_pid,
                        "last_comm": comm_json(sem.last_comm), "ncount": sem.ncount,
                        "zcount": sem.zcount, "waiters": waiters,
                    })
                })
                .collect();
            fields.insert("nsems".into(), json!(s.nsems));
            fields.insert("sems".into(), Value::from(sems));
        }
        ObjectState::Msg(q) => {
            fields.insert("qnum".into(), json!(q.qnum));
            fields.insert("cbytes".into(), json!(q.cbytes));
            fields.insert("qbytes".into(), json!(q.qbytes));
            fields.insert("lspid".into(), json!(q.lspid));
            fields.insert("lrpid".into(), json!(q.lrpid));
            fields.insert("last_send".into(), task_json(q.last_send));
            fields.insert("last_recv".into(), task_json(q.last_recv));
            fields.insert("bytes_sent".into(), json!(q.bytes_sent));
            fields.insert("bytes_received".into(), json!(q.bytes_received));
        }
    }
    v
}

/// A text table whose columns are as wide as their widest cell, up to a limit past which cells
/// are cut (with …), so that hundreds of rows stay aligned and on one line each.
struct Table {
    columns: Vec<(&'static str, usize, bool)>, // header, widest allowed, right-aligned
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, usize, bool)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn render(&self, out: &mut String) {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (header, limit, _))| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([header.len()])
                    .max()
                    .unwrap_or(0)
                    .min(*limit)
            })
            .collect();
        let line = |out: &mut String, cells: Vec<&str>| {
            let last = cells.len() - 1;
            let mut text = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                let cell = cut(cell, widths[i]);
                let pad = widths[i] - cell.chars().count();
                if i > 0 {
                    text.push(' ');
                }
                if self.columns[i].2 {
                    text.extend(std::iter::repeat_n(' ', pad));
                    text.push_str(&cell);
                } else {
                    text.push_str(&cell);
                    if i < last {
                        text.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(out, self.columns.iter().map(|c| c.0).collect());
        for row in &self.rows {
            line(out, row.iter().map(String::as_str).collect());
        }
    }
}

/// `s` cut to `width` characters, the last one an ellipsis when cut.
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `name(pid)`, or the pid alone when the name is unknown.
fn who(pid: u32, comm: Option<Comm>) -> String {
    match comm {
        Some(c) => format!("{c}({pid})"),
        None => pid.to_string(),
    }
}

/// How long ago, coarse: 850ms, 3s, 4m05s, 2h10m.
pub fn ago(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0 => human_duration(ns),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

fn last_op_text(last: Option<LastOp>, now_ns: u64) -> String {
    let Some(l) = last else {
        return "-".into();
    };
    let mut s = l.op.name().to_string();
    if let Some(e) = l.errno {
        let _ = write!(s, " {}", syscalls::errno_name(e).unwrap_or("error"));
    }
    let _ = write!(
        s,
        " by {} {} ago",
        who(l.pid, Some(l.comm)),
        ago(now_ns.saturating_sub(l.ts_ns))
    );
    s
}

fn owner_text(o: &IpcObject, users: &HashMap<u32, String>) -> String {
    o.owner.map_or("?".into(), |w| {
        users
            .get(&w.uid)
            .cloned()
            .unwrap_or_else(|| w.uid.to_string())
    })
}

fn perms_text(o: &IpcObject) -> String {
    o.mode.map_or("?".into(), |m| format!("{:o}", m & 0o777))
}

fn creator_text(o: &IpcObject) -> String {
    o.creator.map_or("-".into(), |c| who(c.pid, c.comm))
}

/// Processes with their mapping counts: `postgres(4)x2,bash(7)`.
fn attached_text(s: &crate::model::objects::Segment) -> String {
    let parts: Vec<String> = s
        .attached
        .iter()
        .map(|(pid, a)| match a.maps() {
            1 => who(*pid, a.comm),
            n => format!("{}x{n}", who(*pid, a.comm)),
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// Waiters by semaphore: `worker(12)@1 >2s,db(9)@0=0` (`=0`: waits for zero; `>2s`: seen
/// waiting that long); counts alone when the kernel counts waiters we could not name.
fn waiters_text(s: &crate::model::objects::SemaphoreSet, now_ns: u64) -> String {
    let mut parts = Vec::new();
    for (num, sem) in s.sems.iter().enumerate() {
        for w in &sem.waiters {
            let zero = if w.for_zero { "=0" } else { "" };
            let mut part = format!("{}@{num}{zero}", who(w.pid, w.comm));
            // The wait began before we first saw it: its age is a lower bound.
            let waited = now_ns.saturating_sub(w.since_ns);
            if waited >= 1_000_000_000 {
                let _ = write!(part, " >{}", ago(waited));
            }
            parts.push(part);
        }
        let unnamed = ((sem.ncount + sem.zcount) as usize).saturating_sub(sem.waiters.len());
        if unnamed > 0 {
            parts.push(format!("{unnamed} on {num}"));
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

fn values_text(s: &crate::model::objects::SemaphoreSet) -> String {
    let values: Vec<String> = s
        .sems
        .iter()
        .map(|sem| sem.value.map_or("?".into(), |v| v.to_string()))
        .collect();
    if values.is_empty() {
        "?".into()
    } else {
        values.join(",")
    }
}

fn task_text(task: Option<Task>) -> String {
    task.map_or("-".into(), |t| who(t.pid, t.comm))
}

/// One `ipcs -a` style section per kind the filter shows, with our extra columns.
pub fn render_tables(
    objects: &Objects,
    filter: &Filter,
    now_ns: u64,
    users: &HashMap<u32, String>,
) -> String {
    let shown: Vec<&IpcObject> = objects.iter().filter(|o| shown(filter, o)).collect();
    let namespaces: BTreeSet<u32> = shown.iter().map(|o| o.key.ns).collect();
    let with_ns = namespaces.len() > 1;
    let mut out = String::new();
    for kind in filter.kinds() {
        let title = match kind {
            IpcKind::Shm => "Shared Memory Segments",
            IpcKind::Sem => "Semaphore Arrays",
            IpcKind::Msg => "Message Queues",
        };
        let _ = writeln!(out, "\n------ {title} ------");
        let mut columns: Vec<(&'static str, usize, bool)> = Vec::new();
        if with_ns {
            columns.push(("IPC_NS", 10, true));
        }
        columns.extend([
            ("KEY", 10, false),
            (
                match kind {
                    IpcKind::Shm => "SHMID",
                    IpcKind::Sem => "SEMID",
                    IpcKind::Msg => "MSQID",
                },
                10,
                true,
            ),
            ("OWNER", 10, false),
            ("PERMS", 5, false),
        ]);
        match kind {
            IpcKind::Shm => columns.extend([
                ("BYTES", 12, true),
                ("NATTCH", 6, true),
                ("STATUS", 11, false),
                ("CREATOR", 24, false),
                ("ATTACHED", 40, false),
                ("LAST OP", 48, false),
            ]),
            IpcKind::Sem => columns.extend([
                ("NSEMS", 5, true),
                ("CREATOR", 24, false),
                ("VALUES", 24, false),
                ("WAITERS", 40, false),
                ("LAST OP", 48, false),
            ]),
            IpcKind::Msg => columns.extend([
                ("USED-BYTES", 10, true),
                ("MESSAGES", 8, true),
                ("QBYTES", 8, true),
                ("CREATOR", 24, false),
                ("LAST SEND", 24, false),
                ("LAST RECV", 24, false),
                ("LAST OP", 48, false),
            ]),
        }
        let mut table = Table::new(&columns);
        for o in shown.iter().filter(|o| o.key.kind == kind) {
            let mut row = Vec::new();
            if with_ns {
                row.push(o.key.ns.to_string());
            }
            row.extend([
                format!("{:#010x}", o.ipc_key as u32),
                o.key.id.to_string(),
                owner_text(o, users),
                perms_text(o),
            ]);
            match &o.state {
                ObjectState::Shm(s) => {
                    let mut status = Vec::new();
                    if o.removed {
                        status.push("dest");
                    }
                    if o.mode.is_some_and(|m| m & syscalls::SHM_LOCKED != 0) {
                        status.push("locked");
                    }
                    row.extend([
                        s.size.map_or("?".into(), |n| n.to_string()),
                        s.nattch.to_string(),
                        status.join(","),
                        creator_text(o),
                        attached_text(s),
                    ]);
                }
                ObjectState::Sem(s) => row.extend([
                    s.nsems.map_or("?".into(), |n| n.to_string()),
                    creator_text(o),
                    values_text(s),
                    waiters_text(s, now_ns),
                ]),
                ObjectState::Msg(q) => row.extend([
                    q.cbytes.to_string(),
                    q.qnum.to_string(),
                    q.qbytes.map_or("?".into(), |n| n.to_string()),
                    creator_text(o),
                    task_text(q.last_send),
                    task_text(q.last_recv),
                ]),
            }
            row.push(last_op_text(o.last_op, now_ns));
            table.rows.push(row);
        }
        table.render(&mut out);
    }
    out
}

/// uid -> user name from /etc/passwd (empty when unreadable: OWNER shows numbers).
fn read_users() -> HashMap<u32, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::syscalls::Op;
    use crate::decoder::{Call, Event, SemOp};
    use crate::kernel_view::snapshot::{MsgTable, SemTable, ShmTable};
    use crate::model::objects::KernelSnapshot;

    const S: u64 = 1_000_000_000;

    fn model() -> Objects {
        let mut o = Objects::new();
        o.reconcile(&KernelSnapshot {
            shm: Some(ShmTable::default()),
            sem: Some(SemTable::default()),
            msg: Some(MsgTable::default()),
            ..Default::default()
        });
        let calls = [
            Call::synthetic(
                Op::Shmget,
                4,
                "postgres",
                [0x5d, 4096, 0o1600, 0, 0, 0],
                7,
                S,
            ),
            Call::synthetic(Op::Shmat, 4, "postgres", [7, 0, 0, 0, 0, 0], 0x1000, S),
            Call::synthetic(Op::Shmat, 4, "postgres", [7, 0, 0, 0, 0, 0], 0x9000, S),
            Call::synthetic(Op::Shmat, 70, "bash", [7, 0, 0, 0, 0, 0], 0x1000, 2 * S),
            Call::synthetic(Op::Semget, 9, "db", [0, 2, 0o1600, 0, 0, 0], 3, S),
            Call::synthetic(Op::Semop, 12, "worker", [3, 0, 0, 0, 0, 0], 0, 2 * S).with_sops(&[
                SemOp {
                    num: 1,
                    op: 2,
                    flg: 0,
                },
            ]),
            Call::synthetic(Op::Msgget, 5, "broker", [0x77, 0o1600, 0, 0, 0, 0], 1, S),
        ];
        for c in calls {
            o.apply(&Event::Call(c));
        }
        o
    }

    #[test]
    fn json_lines_have_the_contract_fields() {
        let text = render_json(&model(), &Filter::default(), 5 * S);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        let common = [
            "type", "id", "key", "ipc_ns", "owner", "mode", "creator", "last_op", "removed",
        ];
        let extra: &[(&str, &[&str])] = &[
            ("shm", &["size", "nattch", "attached", "cpid", "lpid"]),
            ("sem", &["nsems", "sems"]),
            (
                "msg",
                &[
                    "qnum",
                    "cbytes",
                    "qbytes",
                    "lspid",
                    "lrpid",
                    "last_send",
                    "last_recv",
                ],
            ),
        ];
        for line in &lines {
            let kind = line["type"].as_str().unwrap();
            let own = extra.iter().find(|(k, _)| *k == kind).unwrap().1;
            for field in common.iter().chain(own) {
                assert!(line.get(*field).is_some(), "{kind} lacks {field}: {line}");
            }
        }
        let shm = &lines[0];
        assert_eq!(
            (
                shm["type"].as_str(),
                shm["id"].as_i64(),
                shm["key"].as_i64()
            ),
            (Some("shm"), Some(7), Some(0x5d))
        );
        assert_eq!(
            shm["attached"][0],
            json!({"pid": 4, "comm": "postgres", "maps": 2})
        );
        assert_eq!(
            shm["creator"],
            json!({"pid": 4, "comm": "postgres", "ts_ns": S, "exited": false})
        );
        assert_eq!(
            (
                shm["nattch"].as_u64(),
                shm["cpid"].as_u64(),
                shm["lpid"].as_u64()
            ),
            (Some(3), Some(4), Some(70))
        );
        assert_eq!(shm["last_op"]["op"], "shmat");
        assert_eq!(shm["mode"], 0o600);
        assert_eq!(shm["removed"], false);
        let sem = &lines[1];
        assert_eq!(
            sem["sems"][1],
            json!({
                "num": 1, "value": 2, "last_pid": 12, "last_comm": "worker", "ncount": 0,
                "zcount": 0, "waiters": []
            })
        );
        assert_eq!(sem["creator"]["comm"], "db");
        let msg = &lines[2];
        assert_eq!(
            (msg["qnum"].as_u64(), msg["last_send"].is_null()),
            (Some(0), true)
        );
        assert_eq!(
            msg["owner"],
            Value::Null,
            "unknown until the kernel's table is read"
        );
    }

    #[test]
    fn filters_choose_the_objects_printed() {
        let m = model();
        let only = |f: Filter| render_json(&m, &f, 0).lines().count();
        assert_eq!(
            only(Filter {
                kinds: vec![IpcKind::Sem],
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            only(Filter {
                ids: vec![7, 1],
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            only(Filter {
                keys: vec![0x77],
                ..Default::default()
            }),
            1
        );
        // --pid chooses calls to trace, not objects to print.
        assert_eq!(
            only(Filter {
                pids: vec![1],
                ..Default::default()
            }),
            3
        );
    }

    #[test]
    fn tables_read_like_ipcs_with_who_did_what() {
        let text = render_tables(&model(), &Filter::default(), 5 * S, &HashMap::new());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "------ Shared Memory Segments ------", "{text}");
        assert!(
            lines[2].starts_with("KEY        SHMID OWNER PERMS BYTES NATTCH STATUS CREATOR"),
            "{text}"
        );
        assert!(lines[3].contains("postgres(4)x2,bash(70)"), "{text}");
        assert!(lines[3].contains("shmat by bash(70) 3s ago"), "{text}");
        assert!(
            lines[3].starts_with("0x0000005d     7 ?     600    4096      3"),
            "{text}"
        );
        let sem = lines
            .iter()
            .position(|l| l.contains("Semaphore Arrays"))
            .unwrap();
        assert!(
            lines[sem + 2].contains("0,2") && lines[sem + 2].contains("db(9)"),
            "{text}"
        );
        assert!(
            lines[sem + 2].contains("semop by worker(12) 3s ago"),
            "{text}"
        );
        assert!(
            text.contains("------ Message Queues ------\nKEY        MSQID"),
            "{text}"
        );
    }

    #[test]
    fn two_hundred_objects_stay_aligned_with_long_cells_cut() {
        let mut o = model();
        for i in 0..200u32 {
            let pid = 1000 + i;
            let comm = if i % 2 == 0 {
                "a-very-long-process-name"
            } else {
                "sh"
            };
            let id = 100 + i as i64;
            o.apply(&Event::Call(Call::synthetic(
                Op::Shmget,
                pid,
                comm,
                [i as u64, 1 << 20, 0o1600, 0, 0, 0],
                id,
                S,
            )));
            for k in 0..(i % 7) {
                let at = Call::synthetic(
                    Op::Shmat,
                    pid + k,
                    comm,
                    [id as u64, 0, 0, 0, 0, 0],
                    0x1000,
                    S,
                );
                o.apply(&Event::Call(at));
            }
        }
        let filter = Filter {
            kinds: vec![IpcKind::Shm],
            ..Default::default()
        };
        let text = render_tables(&o, &filter, 2 * S, &HashMap::new());
        let lines: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(lines.len(), 202);
        let attached_at = lines[0].find("ATTACHED").unwrap();
        let last_op_at = lines[0].find("LAST OP").unwrap();
        for line in &lines[1..] {
            let chars: Vec<char> = line.chars().collect();
            assert!(chars.len() <= 200, "{line}");
            // Every ATTACHED cell starts in its column and the next column follows in line.
            assert_ne!(chars[attached_at], ' ', "{line}");
            assert_eq!(chars[attached_at - 1], ' ', "{line}");
            assert_ne!(chars[last_op_at], ' ', "{line}");
        }
        assert!(text.contains('…'), "long cells are cut: {text}");
    }

    #[test]
    fn ages_in_coarse_units() {
        assert_eq!(ago(850_000_000), "850ms");
        assert_eq!(ago(3 * S), "3s");
        assert_eq!(ago(245 * S), "4m05s");
        assert_eq!(ago(7_800 * S), "2h10m");
    }
}
