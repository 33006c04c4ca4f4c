//! `ipctrace objects`: the object model as `ipcs -a` style tables, with who created each object,
//! has it mapped, touched it last and waits on it; or one JSON object per line (interface.md's
//! names). While tracing it feeds the model and, with --watch, prints every interval.

use super::{hangs, human_duration};
use crate::clock::WallClock;
use crate::decoder::syscalls::{self, IpcKind};
use crate::decoder::Comm;
use crate::filter::Filter;
use crate::model::deadlocks::{Deadlock, SemName};
use crate::model::objects::{IpcObject, LastOp, ObjectKey, ObjectState, Objects, QueueUser};
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
    /// User names by uid, for the OWNER column: asked of NSS once per uid.
    users: HashMap<u32, String>,
    clock: WallClock,
    /// Put the time above each report (when tracing: reports repeat).
    stamped: bool,
    /// `-i ID`: each object shown in detail rather than as a table row.
    detailed: bool,
    /// The terminal's width, to fit the tables into; None: cut nothing.
    width: Option<usize>,
    /// Waits longer than this are flagged (--stuck).
    stuck_ns: u64,
}

mod info;
pub mod limits;
pub mod orphans;

impl<W: Write> ObjectsView<W> {
    pub fn new(out: W, json: bool, filter: Filter) -> Self {
        ObjectsView {
            out,
            json,
            filter,
            users: HashMap::new(),
            clock: WallClock::now(),
            stamped: false,
            detailed: false,
            width: None,
            stuck_ns: 10_000_000_000,
        }
    }

    /// Shows each object in detail (`-i ID`, as `ipcs -i`): per semaphore, per attachment.
    pub fn detailed(mut self, detailed: bool) -> Self {
        self.detailed = detailed;
        self
    }

    /// Flags waits in progress longer than `stuck_ns` (--stuck).
    pub fn stuck_after(mut self, stuck_ns: u64) -> Self {
        self.stuck_ns = stuck_ns;
        self
    }

    /// Fits the tables into a terminal this wide (None, the default: cut nothing).
    pub fn width(mut self, width: Option<usize>) -> Self {
        self.width = width;
        self
    }

    /// Puts the time above each table (for reports that repeat).
    pub fn stamped(mut self, stamped: bool) -> Self {
        self.stamped = stamped;
        self
    }

    /// Prints the model as it is at `now_ns` (CLOCK_MONOTONIC).
    pub fn print(&mut self, objects: &Objects, now_ns: u64) -> io::Result<()> {
        let owners = objects.iter().filter_map(|o| o.owner.map(|w| w.uid));
        know_user_names(&mut self.users, owners);
        let text = if self.json {
            render_json(objects, &self.filter, now_ns, self.stuck_ns)
        } else {
            let mut text = String::new();
            if self.stamped {
                let _ = writeln!(text, "{}", self.clock.time_of_day(now_ns));
            }
            if self.detailed {
                let shown: Vec<&IpcObject> =
                    objects.iter().filter(|o| shown(&self.filter, o)).collect();
                if shown.is_empty() {
                    let ids: Vec<String> = self.filter.ids.iter().map(i32::to_string).collect();
                    let _ = writeln!(text, "no object with id {}", ids.join(","));
                }
                text.push_str(&info::render_info(objects, &shown, now_ns, &self.users));
            } else {
                text.push_str(&render_tables(
                    objects,
                    &self.filter,
                    now_ns,
                    &self.users,
                    self.width,
                    self.stuck_ns,
                ));
            }
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
        } else if totals.kernel.lost + totals.kernel.lost_process > 0 {
            writeln!(
                self.out,
                "warning: {} calls and {} process records lost: the kernel's numbers above are right, names may be missing",
                totals.kernel.lost, totals.kernel.lost_process
            )?;
        }
        self.out.flush()
    }
}

/// Whether the filter asks for this object (--type, --id, --key; --pid and --comm choose calls).
pub fn shown(filter: &Filter, o: &IpcObject) -> bool {
    filter.kinds().contains(&o.identity.kind)
        && (filter.ids.is_empty() || filter.ids.contains(&o.identity.id))
        && (filter.keys.is_empty() || filter.keys.contains(&o.ipc_key))
}

/// The deadlocks the filter's objects are part of.
pub fn shown_deadlocks(objects: &Objects, filter: &Filter) -> Vec<Deadlock> {
    if !filter.kinds().contains(&IpcKind::Sem) {
        return Vec::new();
    }
    let passes = |s: &SemName| {
        let identity = ObjectKey {
            ns: s.ns,
            kind: IpcKind::Sem,
            id: s.id,
        };
        objects.get(&identity).is_some_and(|o| shown(filter, o))
    };
    objects
        .deadlocks()
        .into_iter()
        .filter(|d| d.links.iter().any(|l| passes(&l.waits) || passes(&l.holds)))
        .collect()
}

/// One JSON object per line, as interface.md lists them, then a line per deadlock.
pub fn render_json(objects: &Objects, filter: &Filter, now_ns: u64, stuck_ns: u64) -> String {
    let mut out = String::new();
    for o in objects.iter().filter(|o| shown(filter, o)) {
        super::json_line(&mut out, &object_json(objects, o, now_ns, stuck_ns));
    }
    for d in shown_deadlocks(objects, filter) {
        super::json_line(&mut out, &hangs::deadlock_json(&d));
    }
    out
}

fn comm_json(comm: Option<Comm>) -> Value {
    comm.map_or(Value::Null, |c| Value::from(c.as_str().as_ref()))
}

fn task_json(task: Option<QueueUser>) -> Value {
    task.map_or(
        Value::Null,
        |t| json!({"pid": t.pid, "tid": t.tid, "comm": comm_json(t.comm)}),
    )
}

/// One object as interface.md names its fields. `exited` (of an actor or the last op): the
/// process has gone since, so its pid may name another now; null when the kernel alone told.
pub fn object_json(objects: &Objects, o: &IpcObject, now_ns: u64, stuck_ns: u64) -> Value {
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
        "type": o.identity.kind.name(),
        "id": o.identity.id,
        "key": o.ipc_key,
        "ipc_ns": o.identity.ns,
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
                        .map(|w| hangs::waiter_json(w, now_ns, stuck_ns))
                        .collect();
                    let holders: Vec<Value> = objects
                        .holders(o.identity, num)
                        .iter()
                        .map(hangs::holder_json)
                        .collect();
                    json!({
                        "num": num, "value": sem.value, "last_pid": sem.last_pid,
                        "last_comm": comm_json(sem.last_comm), "ncount": sem.ncount,
                        "zcount": sem.zcount, "waiters": waiters, "holders": holders,
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
            let waiters: Vec<Value> = q
                .waiters
                .iter()
                .map(|w| hangs::queue_waiter_json(w, now_ns, stuck_ns))
                .collect();
            fields.insert("waiters".into(), Value::from(waiters));
        }
    }
    v
}

/// One cell: text, or a list of names with their count (ATTACHED, WAITERS), which gets the
/// room the other columns leave on the terminal.
enum Cell {
    Text(String),
    Names { count: usize, names: Vec<String> },
}

impl Cell {
    /// The whole cell: `3: postgres(4)x2,bash(70),sh(9)`; `-` for no names.
    fn full(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Names { names, .. } if names.is_empty() => "-".into(),
            Cell::Names { count, names } => format!("{count}: {}", names.join(",")),
        }
    }

    /// The cell in at most `width` characters: as many names as fit, then how many more.
    fn fitted(&self, width: usize) -> String {
        let full = self.full();
        let Cell::Names { count, names } = self else {
            return cut(&full, width);
        };
        if full.chars().count() <= width {
            return full;
        }
        let mut text = format!("{count}: ");
        for (i, name) in names.iter().enumerate() {
            let rest = names.len() - i - 1;
            let more = if rest > 0 {
                format!(",+{rest}")
            } else {
                String::new()
            };
            let sep = if i > 0 { "," } else { "" };
            let next = text.chars().count() + sep.len() + name.chars().count() + more.len();
            if next > width {
                // The first name, cut, says more than a count alone.
                let room = width.saturating_sub(text.chars().count() + more.len());
                if i == 0 && room >= 6 {
                    let _ = write!(text, "{}{more}", cut(name, room));
                } else {
                    let _ = write!(text, "{}+{}", sep, names.len() - i);
                }
                return text;
            }
            text.push_str(sep);
            text.push_str(name);
        }
        text
    }
}

/// A text table whose columns are as wide as their widest cell. On a terminal, text cells past
/// their column's limit are cut (with …) and name lists get the width left, so that hundreds of
/// rows stay aligned and on one line each; elsewhere (a pipe, a file, --wide) nothing is cut.
struct Table {
    columns: Vec<(&'static str, usize, bool)>, // header, widest allowed, right-aligned
    rows: Vec<Vec<Cell>>,
}

/// The least a name list is given, however narrow the terminal: a count and a name.
const MIN_NAMES_WIDTH: usize = 16;

impl Table {
    fn new(columns: &[(&'static str, usize, bool)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// A row of plain text cells (the detail, limits and orphans tables).
    fn push_text(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(Cell::Text).collect());
    }

    /// `terminal`: the terminal's width, or None to cut nothing.
    fn render(&self, out: &mut String, terminal: Option<usize>) {
        let is_names = |i: usize| self.rows.iter().any(|r| matches!(r[i], Cell::Names { .. }));
        let widest = |i: usize, cells: &dyn Fn(&Cell) -> String| {
            self.rows
                .iter()
                .map(|r| cells(&r[i]).chars().count())
                .chain([self.columns[i].0.len()])
                .max()
                .unwrap_or(0)
        };
        let mut widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                let full = widest(i, &|c: &Cell| c.full());
                match terminal {
                    Some(_) if !is_names(i) => full.min(self.columns[i].1),
                    _ => full,
                }
            })
            .collect();
        if let Some(terminal) = terminal {
            let others: usize = (0..widths.len())
                .filter(|i| !is_names(*i))
                .map(|i| widths[i] + 1)
                .sum();
            let names = terminal.saturating_sub(others).max(MIN_NAMES_WIDTH);
            for (i, width) in widths.iter_mut().enumerate() {
                if is_names(i) {
                    *width = widest(i, &|c: &Cell| c.fitted(names)).min(names);
                }
            }
        }
        let line = |out: &mut String, cells: Vec<String>| {
            let last = cells.len() - 1;
            let mut text = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
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
        line(out, self.columns.iter().map(|c| c.0.to_string()).collect());
        for row in &self.rows {
            let cells = row
                .iter()
                .enumerate()
                .map(|(i, c)| match terminal {
                    Some(_) => c.fitted(widths[i]),
                    None => c.full(),
                })
                .collect();
            line(out, cells);
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
pub fn who(pid: u32, comm: Option<Comm>) -> String {
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

/// Processes with their mapping counts: `2: postgres(4)x2,bash(7)`.
fn attached_cell(s: &crate::model::objects::Segment) -> Cell {
    let names: Vec<String> = s
        .attached
        .iter()
        .map(|(pid, a)| match a.maps() {
            1 => who(*pid, a.comm),
            n => format!("{}x{n}", who(*pid, a.comm)),
        })
        .collect();
    Cell::Names {
        count: names.len(),
        names,
    }
}

/// Waiters by semaphore: `2: worker(12)@1 >2s,db(9)@0=0 450ms` (`=0`: waits for zero; `>2s`:
/// waiting at least that long, its start unseen; `STUCK` past --stuck), counted as the kernel
/// counts them; `3 on 0` for those it counts and we could not name.
fn waiters_cell(s: &crate::model::objects::SemaphoreSet, now_ns: u64, stuck_ns: u64) -> Cell {
    let mut names = Vec::new();
    let mut count = 0;
    for (num, sem) in s.sems.iter().enumerate() {
        for w in &sem.waiters {
            let zero = if w.for_zero { "=0" } else { "" };
            let mut part = format!("{}@{num}{zero}", who(w.pid, w.comm));
            // Waits under a second are the everyday kind: the table names their age no more.
            let waited = hangs::waited(w, now_ns);
            if waited >= 1_000_000_000 {
                let _ = write!(part, " {}", hangs::wait_text(waited, w.exact, stuck_ns));
            }
            names.push(part);
        }
        let counted = (sem.ncount + sem.zcount) as usize;
        count += counted.max(sem.waiters.len());
        let unnamed = counted.saturating_sub(sem.waiters.len());
        if unnamed > 0 {
            names.push(format!("{unnamed} on {num}"));
        }
    }
    Cell::Names { count, names }
}

/// Holders by semaphore: `sleeper(41)@0`, `pool(7)@2 x3 traced`, `db(9)@0 probably`.
fn holders_text(objects: &Objects, o: &IpcObject, nsems: usize) -> String {
    let parts: Vec<String> = (0..nsems)
        .flat_map(|num| {
            objects
                .holders(o.identity, num)
                .into_iter()
                .map(move |h| hangs::holder_at(&h, num))
        })
        .collect();
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

fn task_text(task: Option<QueueUser>) -> String {
    task.map_or("-".into(), |t| who(t.pid, t.comm))
}

/// One `ipcs -a` style section per kind the filter shows, with our extra columns. `width`: the
/// terminal's, to fit each row into; None to cut nothing (a pipe, a file, --wide).
pub fn render_tables(
    objects: &Objects,
    filter: &Filter,
    now_ns: u64,
    users: &HashMap<u32, String>,
    width: Option<usize>,
    stuck_ns: u64,
) -> String {
    let shown: Vec<&IpcObject> = objects.iter().filter(|o| shown(filter, o)).collect();
    let namespaces: BTreeSet<u32> = shown.iter().map(|o| o.identity.ns).collect();
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
                ("HOLDERS", 32, false),
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
                ("WAITERS", 40, false),
                ("LAST OP", 48, false),
            ]),
        }
        let mut table = Table::new(&columns);
        for o in shown.iter().filter(|o| o.identity.kind == kind) {
            let mut row: Vec<String> = Vec::new();
            if with_ns {
                row.push(o.identity.ns.to_string());
            }
            row.extend([
                format!("{:#010x}", o.ipc_key as u32),
                o.identity.id.to_string(),
                owner_text(o, users),
                perms_text(o),
            ]);
            let names = match &o.state {
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
                    ]);
                    attached_cell(s)
                }
                ObjectState::Sem(s) => {
                    row.extend([
                        s.nsems.map_or("?".into(), |n| n.to_string()),
                        creator_text(o),
                        values_text(s),
                        holders_text(objects, o, s.sems.len()),
                    ]);
                    waiters_cell(s, now_ns, stuck_ns)
                }
                ObjectState::Msg(q) => {
                    row.extend([
                        q.cbytes.to_string(),
                        q.qnum.to_string(),
                        q.qbytes.map_or("?".into(), |n| n.to_string()),
                        creator_text(o),
                        task_text(q.last_send),
                        task_text(q.last_recv),
                    ]);
                    let waiters: Vec<String> = q
                        .waiters
                        .iter()
                        .map(|w| hangs::queue_waiter_text(w, now_ns, stuck_ns))
                        .collect();
                    Cell::Names {
                        count: waiters.len(),
                        names: waiters,
                    }
                }
            };
            let mut cells: Vec<Cell> = row.into_iter().map(Cell::Text).collect();
            cells.push(names);
            cells.push(Cell::Text(last_op_text(o.last_op, now_ns)));
            table.rows.push(cells);
        }
        table.render(&mut out, width);
    }
    for d in shown_deadlocks(objects, filter) {
        out.push('\n');
        out.push_str(&hangs::deadlock_text(&d));
    }
    out
}

/// Adds the names of `uids` not yet in `users`, from the system's user database (NSS: LDAP,
/// systemd and the like as well as /etc/passwd); a uid without a name stays a number.
pub fn know_user_names(users: &mut HashMap<u32, String>, uids: impl Iterator<Item = u32>) {
    for uid in uids {
        if let std::collections::hash_map::Entry::Vacant(slot) = users.entry(uid) {
            slot.insert(crate::users::user_name(uid).unwrap_or_else(|| uid.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::syscalls::Op;
    use crate::decoder::{Call, Event, SemOp};
    use crate::kernel_view::snapshot::{MsgTable, SemTable, ShmTable};
    use crate::model::objects::KernelSnapshot;

    const S: u64 = 1_000_000_000;
    const STUCK: u64 = 10 * S;

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
        let text = render_json(&model(), &Filter::default(), 5 * S, STUCK);
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
                "zcount": 0, "waiters": [], "holders": []
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
        let only = |f: Filter| render_json(&m, &f, 0, STUCK).lines().count();
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
        let text = render_tables(
            &model(),
            &Filter::default(),
            5 * S,
            &HashMap::new(),
            None,
            STUCK,
        );
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
        let text = render_tables(&o, &filter, 2 * S, &HashMap::new(), Some(200), STUCK);
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
        assert!(text.contains(" 6: "), "lists that fit are whole: {text}");
    }

    #[test]
    fn name_lists_give_the_count_and_fit_the_terminal_or_list_everyone() {
        let mut o = model();
        for pid in 100..114u32 {
            let at = Call::synthetic(Op::Shmat, pid, "postgres", [7, 0, 0, 0, 0, 0], 0x1000, S);
            o.apply(&Event::Call(at));
        }
        let filter = Filter {
            kinds: vec![IpcKind::Shm],
            ..Default::default()
        };
        let row = |width| {
            let text = render_tables(&o, &filter, 2 * S, &HashMap::new(), width, STUCK);
            text.lines().nth(3).unwrap().to_string()
        };
        let narrow = row(Some(160));
        assert!(narrow.chars().count() <= 160, "{narrow}");
        let at = narrow.find(" 16: ").unwrap() + 5;
        let cell = narrow[at..].split_whitespace().next().unwrap();
        assert!(
            narrow.contains(" 16: postgres(4)x2,bash(70),postgres(100),"),
            "{narrow}"
        );
        let shown = cell.matches('(').count();
        assert!(cell.ends_with(&format!(",+{}", 16 - shown)), "{cell}");
        let wide = row(None);
        assert!(
            wide.contains("16: postgres(4)x2,bash(70),postgres(100)"),
            "{wide}"
        );
        for pid in 100..114 {
            assert!(wide.contains(&format!("postgres({pid})")), "{wide}");
        }
        assert!(!wide.contains(",+"), "{wide}");
        let tiny = row(Some(40));
        assert!(
            tiny.contains(" 16: postgre…,+15"),
            "a name at least: {tiny}"
        );
    }

    #[test]
    fn waiters_are_counted_as_the_kernel_counts_them() {
        let mut set = crate::model::objects::SemaphoreSet::default();
        set.sems = vec![
            crate::model::objects::Semaphore {
                ncount: 3,
                waiters: vec![crate::model::objects::SemWaiter {
                    pid: 5,
                    tid: 5,
                    comm: Some(Comm::new("apache2")),
                    for_zero: false,
                    since_ns: S,
                    exact: false,
                }],
                ..Default::default()
            },
            crate::model::objects::Semaphore::default(),
        ];
        assert_eq!(
            waiters_cell(&set, S, STUCK).full(),
            "3: apache2(5)@0,2 on 0"
        );
        assert_eq!(
            waiters_cell(&set, 13 * S, STUCK).full(),
            "3: apache2(5)@0 STUCK >12s,2 on 0"
        );
        assert_eq!(
            waiters_cell(&Default::default(), S, STUCK).full(),
            "-",
            "no waiters, no count"
        );
    }

    #[test]
    fn ages_in_coarse_units() {
        assert_eq!(ago(850_000_000), "850ms");
        assert_eq!(ago(3 * S), "3s");
        assert_eq!(ago(245 * S), "4m05s");
        assert_eq!(ago(7_800 * S), "2h10m");
    }
}
