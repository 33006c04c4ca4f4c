//! One refresh of `top` as plain data: the four tables (cells as text, with sort keys and what a
//! filter matches), the alerts and the open detail, built from the models at a given time. The
//! app sorts, filters and scrolls these; rendering only lays them out.

mod detail;

use crate::decoder::Comm;
use crate::filter::Filter;
use crate::loader::KernelCounts;
use crate::model::activity::Activity;
use crate::model::holders::Holder;
use crate::model::objects::{IpcObject, ObjectKey, ObjectState, Objects, SemaphoreSet};
use crate::model::waits::{Caller, WaitStats, Waits};
use crate::views::hangs::deadlock_text;
use crate::views::objects::{ago, shown, shown_deadlocks, who};
use crate::views::{human_bytes, human_duration};
use hdrhistogram::Histogram;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Semaphores,
    Objects,
    Queues,
    Processes,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Semaphores, Tab::Objects, Tab::Queues, Tab::Processes];

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn title(self) -> &'static str {
        match self {
            Tab::Semaphores => "Semaphores",
            Tab::Objects => "Objects",
            Tab::Queues => "Queues",
            Tab::Processes => "Processes",
        }
    }
}

/// A column: its header, the widths it may take, how it aligns, and how soon it is dropped
/// when the terminal is narrow (0: never).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub min: u16,
    pub max: u16,
    pub right: bool,
    pub drop_order: u8,
}

const fn col(header: &'static str, min: u16, max: u16, right: bool, drop_order: u8) -> Column {
    Column {
        header,
        min,
        max,
        right,
        drop_order,
    }
}

pub const SEM_COLUMNS: &[Column] = &[
    col("KEY", 10, 10, false, 3),
    col("SEMID", 5, 10, true, 0),
    col("BLOCKED/s", 9, 10, true, 0),
    col("WAITS/s", 7, 8, true, 0),
    col("P99", 6, 7, true, 1),
    col("WAITING", 7, 7, true, 0),
    col("LONGEST", 7, 7, true, 0),
    col("HOLDERS", 7, 24, false, 4),
    col("TOP WAKER", 9, 24, false, 2),
];

pub const OBJECT_COLUMNS: &[Column] = &[
    col("TYPE", 4, 5, false, 0),
    col("KEY", 10, 10, false, 2),
    col("ID", 5, 10, true, 0),
    col("OWNER", 5, 8, false, 5),
    col("CREATOR", 7, 20, false, 1),
    col("ATT", 3, 3, true, 0),
    col("LAST OP", 7, 28, false, 0),
    col("WHEN", 5, 6, true, 3),
    col("AGE", 5, 6, true, 4),
];

pub const QUEUE_COLUMNS: &[Column] = &[
    col("KEY", 10, 10, false, 3),
    col("MSQID", 5, 10, true, 0),
    col("MSGS", 5, 6, true, 0),
    col("BYTES/QBYTES", 12, 22, false, 0),
    col("SND/s", 6, 7, true, 0),
    col("RCV/s", 6, 7, true, 0),
    col("LAST SENDER", 8, 20, false, 2),
    col("LAST RECEIVER", 8, 20, false, 1),
    col("STUCK", 5, 12, false, 0),
];

pub const PROCESS_COLUMNS: &[Column] = &[
    col("PID", 7, 7, true, 0),
    col("COMM", 8, 15, false, 0),
    col("CALLS/s", 7, 8, true, 0),
    col("ERR/s", 6, 7, true, 0),
    col("BLOCKED/s", 9, 10, true, 0),
    col("OBJECTS", 7, 60, false, 0),
];

/// How a cell sorts: numbers by value, text by text; unknown sorts below any number.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Num(f64),
    Text(String),
}

impl SortKey {
    pub fn compare(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Num(a), SortKey::Num(b)) => a.total_cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            (SortKey::Num(_), SortKey::Text(_)) => Ordering::Less,
            (SortKey::Text(_), SortKey::Num(_)) => Ordering::Greater,
        }
    }
}

/// What a row is about: an object, or a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowId {
    Object(ObjectKey),
    Process(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Severity {
    #[default]
    Normal,
    Warn,
    Alert,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: RowId,
    pub cells: Vec<String>,
    pub sort: Vec<SortKey>,
    /// What `/` matches: pids, command names, the IPC key and id.
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub ipc_key: Option<i32>,
    pub severity: Severity,
}

impl Row {
    /// Whether a `/` filter matches: a number is a pid, an id or a key (decimal or 0x hex);
    /// anything else is part of a command name (any case).
    pub fn matches(&self, filter: &str) -> bool {
        let filter = filter.trim();
        if filter.is_empty() {
            return true;
        }
        let id = match self.id {
            RowId::Object(k) => Some(k.id as i64),
            RowId::Process(_) => None,
        };
        if let Ok(key) = crate::filter::parse_key(filter) {
            let n = filter.parse::<i64>().ok();
            if self.ipc_key == Some(key)
                || n.is_some_and(|n| id == Some(n) || self.pids.iter().any(|p| *p as i64 == n))
            {
                return true;
            }
        }
        let needle = filter.to_lowercase();
        self.comms
            .iter()
            .any(|c| c.to_lowercase().contains(&needle))
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    pub columns: &'static [Column],
    pub rows: Vec<Row>,
    /// The column sorted by until the user picks another, and whether largest first.
    pub default_sort: (usize, bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub severity: Severity,
    pub text: String,
}

/// A line of a detail: a heading, text, or a histogram bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailLine {
    Heading(String),
    Text(String),
    Bar { label: String, count: u64, max: u64 },
}

#[derive(Debug, Clone)]
pub struct Detail {
    pub id: RowId,
    pub title: String,
    pub lines: Vec<DetailLine>,
}

/// One refresh.
#[derive(Debug, Clone)]
pub struct Screen {
    pub taken_ns: u64,
    pub tables: Vec<Table>,
    pub alerts: Vec<Alert>,
    pub events_per_sec: f64,
    pub lost: u64,
    /// The detail asked for, if its row still exists.
    pub detail: Option<Detail>,
}

impl Screen {
    pub fn table(&self, tab: Tab) -> &Table {
        &self.tables[tab.index()]
    }

    /// An empty screen, before the first refresh.
    pub fn empty() -> Screen {
        Screen {
            taken_ns: 0,
            tables: [SEM_COLUMNS, OBJECT_COLUMNS, QUEUE_COLUMNS, PROCESS_COLUMNS]
                .into_iter()
                .map(|columns| Table {
                    columns,
                    rows: Vec::new(),
                    default_sort: (0, false),
                })
                .collect(),
            alerts: Vec::new(),
            events_per_sec: 0.0,
            lost: 0,
            detail: None,
        }
    }
}

/// Everything a refresh reads.
pub struct Models<'a> {
    pub objects: &'a Objects,
    pub waits: &'a Waits,
    pub activity: &'a Activity,
    pub counts: KernelCounts,
    /// Which objects to show (--type, --id, --key).
    pub filter: &'a Filter,
    pub users: &'a HashMap<u32, String>,
    /// Whether a process runs now (for segments whose creator is gone).
    pub alive: &'a dyn Fn(u32) -> bool,
    /// A waiter or a queue with no receive this long is stuck.
    pub stuck_ns: u64,
    pub events_per_sec: f64,
    /// 32-bit processes seen, whose calls are not traced.
    pub compat_processes: usize,
}

impl Models<'_> {
    fn shown(&self) -> impl Iterator<Item = &IpcObject> {
        self.objects.iter().filter(|o| shown(self.filter, o))
    }

    fn rate(&self, n: u64) -> f64 {
        self.activity.rate(n)
    }
}

/// Builds a refresh at `now_ns`, with the detail of `open` if asked.
pub fn build(m: &Models, now_ns: u64, open: Option<RowId>) -> Screen {
    let per_set = sem_stats(m.waits);
    let tables = vec![
        semaphores(m, now_ns, &per_set),
        objects_table(m, now_ns),
        queues(m, now_ns),
        processes(m),
    ];
    Screen {
        taken_ns: now_ns,
        tables,
        alerts: alerts(m, now_ns),
        events_per_sec: m.events_per_sec,
        lost: m.counts.lost,
        detail: open.and_then(|id| detail::detail(m, now_ns, id, &per_set)),
    }
}

/// The detail of `open` alone (when it opens between refreshes).
pub fn detail_of(m: &Models, now_ns: u64, open: Option<RowId>) -> Option<Detail> {
    detail::detail(m, now_ns, open?, &sem_stats(m.waits))
}

/// Waits of one set, over its semaphores.
#[derive(Default)]
struct SetWaits {
    hdr: Option<Histogram<u64>>,
    wakers: HashMap<Caller, u64>,
    /// Per semaphore (None: calls that named none, such as queues' or unread sembufs).
    by_sem: BTreeMap<Option<u16>, WaitStats>,
}

fn sem_stats(waits: &Waits) -> HashMap<ObjectKey, SetWaits> {
    let mut sets: HashMap<ObjectKey, SetWaits> = HashMap::new();
    for (k, s) in &waits.stats {
        let identity = ObjectKey {
            ns: k.ipc_ns,
            kind: k.kind,
            id: k.id,
        };
        let set = sets.entry(identity).or_default();
        if let Some(h) = &s.hdr {
            match &mut set.hdr {
                Some(all) => {
                    let _ = all.add(h);
                }
                None => set.hdr = Some(h.clone()),
            }
        }
        for (t, n) in &s.wakers {
            *set.wakers.entry(*t).or_default() += n;
        }
        set.by_sem.insert(k.semnum, s.clone());
    }
    sets
}

fn top_waker(set: Option<&SetWaits>) -> String {
    let Some(set) = set else { return "-".into() };
    set.wakers
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        // The count is in the detail: the name is what fits on 80 columns.
        .map_or("-".into(), |(t, _)| who(t.pid, Some(t.comm)))
}

fn percentile(hdr: Option<&Histogram<u64>>, q: f64) -> Option<u64> {
    hdr.filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(q))
}

/// 12, 3.5, 1.2k: a rate in three characters or so.
pub fn rate_text(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else if v < 10_000.0 {
        format!("{v:.0}")
    } else if v < 10_000_000.0 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{:.0}M", v / 1e6)
    }
}

/// Time blocked per second of the interval: 450ms/s (several waiters can make it over 1s/s).
fn blocked_text(ns_per_sec: f64) -> String {
    if ns_per_sec < 1.0 {
        "0".into()
    } else {
        format!("{}/s", human_duration(ns_per_sec as u64))
    }
}

fn key_text(key: i32) -> String {
    format!("{:#010x}", key as u32)
}

fn opt_duration(ns: Option<u64>) -> (String, SortKey) {
    match ns {
        Some(ns) => (human_duration(ns), SortKey::Num(ns as f64)),
        None => ("-".into(), SortKey::Num(-1.0)),
    }
}

fn holders_text(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "-".into();
    }
    holders
        .iter()
        .map(|h| format!("{}x{}", who(h.pid, h.comm), h.units))
        .collect::<Vec<_>>()
        .join(",")
}

/// The set's holders over all its semaphores (the kernel's SEM_UNDO lists, the traced ledger,
/// or a guess).
fn set_holders(m: &Models, o: &IpcObject, set: &SemaphoreSet) -> Vec<Holder> {
    (0..set.sems.len())
        .flat_map(|num| m.objects.holders(o.identity, num))
        .collect()
}

fn waiters_now(set: &SemaphoreSet) -> u64 {
    set.sems
        .iter()
        .map(|s| (s.waiters.len() as u64).max((s.ncount + s.zcount) as u64))
        .sum()
}

/// How long the longest wait in progress has lasted (a lower bound: seen since then).
fn longest_waiting(set: &SemaphoreSet, now_ns: u64) -> Option<u64> {
    set.sems
        .iter()
        .flat_map(|s| &s.waiters)
        .map(|w| now_ns.saturating_sub(w.since_ns))
        .max()
}

fn semaphores(m: &Models, now_ns: u64, per_set: &HashMap<ObjectKey, SetWaits>) -> Table {
    let mut rows = Vec::new();
    for o in m.shown() {
        let ObjectState::Sem(set) = &o.state else {
            continue;
        };
        let tally = m
            .activity
            .object(&o.identity)
            .map(|a| a.tally.last_interval);
        let tally = tally.unwrap_or_default();
        let waits = per_set.get(&o.identity);
        let blocked = m.rate(tally.blocked_ns);
        let wait_rate = m.rate(tally.waits);
        let p99 = percentile(waits.and_then(|w| w.hdr.as_ref()), 0.99);
        let done_max = waits.and_then(|w| w.hdr.as_ref()).filter(|h| !h.is_empty());
        let longest_now = longest_waiting(set, now_ns);
        let longest = done_max.map(|h| h.max()).max(longest_now);
        let waiting = waiters_now(set);
        let (p99_text, p99_sort) = opt_duration(p99);
        let (longest_text, longest_sort) = opt_duration(longest);
        let holders = holders_text(&set_holders(m, o, set));
        let waker = top_waker(waits);
        let mut pids: Vec<u32> = set
            .sems
            .iter()
            .flat_map(|s| &s.waiters)
            .map(|w| w.pid)
            .collect();
        let mut comms: Vec<String> = set
            .sems
            .iter()
            .flat_map(|s| &s.waiters)
            .filter_map(|w| w.comm.map(|c| c.to_string()))
            .collect();
        for s in &set.sems {
            pids.push(s.last_pid);
            comms.extend(s.last_comm.map(|c| c.to_string()));
        }
        if let Some(w) = waits {
            pids.extend(w.wakers.keys().map(|t| t.pid));
            comms.extend(w.wakers.keys().map(|t| t.comm.to_string()));
        }
        let severity = if longest_now.is_some_and(|l| l >= m.stuck_ns) {
            Severity::Alert
        } else if waiting > 0 {
            Severity::Warn
        } else {
            Severity::Normal
        };
        rows.push(Row {
            id: RowId::Object(o.identity),
            cells: vec![
                key_text(o.ipc_key),
                o.identity.id.to_string(),
                blocked_text(blocked),
                rate_text(wait_rate),
                p99_text,
                waiting.to_string(),
                longest_text,
                holders.clone(),
                waker.clone(),
            ],
            sort: vec![
                SortKey::Num(o.ipc_key as u32 as f64),
                SortKey::Num(o.identity.id as f64),
                SortKey::Num(blocked),
                SortKey::Num(wait_rate),
                p99_sort,
                SortKey::Num(waiting as f64),
                longest_sort,
                SortKey::Text(holders),
                SortKey::Text(waker),
            ],
            pids,
            comms,
            ipc_key: Some(o.ipc_key),
            severity,
        });
    }
    // Hottest first: blocked time, then waits, then waiters now, then the longest wait.
    rows.sort_by(|a, b| {
        [2, 3, 5, 6]
            .iter()
            .map(|&c| b.sort[c].compare(&a.sort[c]))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    Table {
        columns: SEM_COLUMNS,
        rows,
        default_sort: (2, true),
    }
}

fn owner_text(o: &IpcObject, users: &HashMap<u32, String>) -> String {
    o.owner.map_or("?".into(), |w| {
        users
            .get(&w.uid)
            .cloned()
            .unwrap_or_else(|| w.uid.to_string())
    })
}

/// Processes an object is in use by now: attached (shm), waiting (sem).
fn users_of(o: &IpcObject) -> Vec<(u32, Option<Comm>)> {
    match &o.state {
        ObjectState::Shm(s) => s.attached.iter().map(|(p, a)| (*p, a.comm)).collect(),
        ObjectState::Sem(s) => s
            .sems
            .iter()
            .flat_map(|s| &s.waiters)
            .map(|w| (w.pid, w.comm))
            .collect(),
        ObjectState::Msg(_) => Vec::new(),
    }
}

fn objects_table(m: &Models, now_ns: u64) -> Table {
    let mut rows = Vec::new();
    for o in m.shown() {
        let creator = o.creator.map_or("-".into(), |c| who(c.pid, c.comm));
        let attached = match &o.state {
            ObjectState::Shm(s) => s.attached.len() as u64,
            ObjectState::Sem(s) => waiters_now(s),
            // Nothing attaches to a queue.
            ObjectState::Msg(_) => 0,
        };
        let last = o.last_op.map_or("-".into(), |l| {
            let err = l.errno.map_or(String::new(), |e| {
                format!(
                    " {}",
                    crate::decoder::syscalls::errno_name(e).unwrap_or("error")
                )
            });
            format!("{}{err} {}", l.op.name(), who(l.pid, Some(l.comm)))
        });
        let when = o.last_op.map(|l| now_ns.saturating_sub(l.ts_ns));
        let age = o
            .creator
            .and_then(|c| c.ts_ns)
            .map(|t| now_ns.saturating_sub(t));
        let mut pids: Vec<u32> = users_of(o).iter().map(|u| u.0).collect();
        let mut comms: Vec<String> = users_of(o)
            .iter()
            .filter_map(|u| u.1.map(|c| c.to_string()))
            .collect();
        if let Some(c) = o.creator {
            pids.push(c.pid);
            comms.extend(c.comm.map(|c| c.to_string()));
        }
        if let Some(l) = o.last_op {
            pids.push(l.pid);
            comms.push(l.comm.to_string());
        }
        let ago_cell = |ns: Option<u64>| ns.map_or("-".into(), ago);
        let owner = owner_text(o, m.users);
        rows.push(Row {
            id: RowId::Object(o.identity),
            cells: vec![
                o.identity.kind.name().to_string(),
                key_text(o.ipc_key),
                o.identity.id.to_string(),
                owner.clone(),
                creator.clone(),
                attached.to_string(),
                last.clone(),
                ago_cell(when),
                ago_cell(age),
            ],
            sort: vec![
                SortKey::Text(o.identity.kind.name().into()),
                SortKey::Num(o.ipc_key as u32 as f64),
                SortKey::Num(o.identity.id as f64),
                SortKey::Text(owner),
                SortKey::Text(creator),
                SortKey::Num(attached as f64),
                SortKey::Text(last),
                // Most recent first when sorted largest first: sort by the time itself.
                SortKey::Num(o.last_op.map_or(-1.0, |l| l.ts_ns as f64)),
                SortKey::Num(age.map_or(-1.0, |a| a as f64)),
            ],
            pids,
            comms,
            ipc_key: Some(o.ipc_key),
            severity: Severity::Normal,
        });
    }
    Table {
        columns: OBJECT_COLUMNS,
        rows,
        default_sort: (0, false),
    }
}

/// A fill bar of `width` cells and the figures: `██████░░ 12.0KiB/16.0KiB`.
pub fn fill_bar(used: u64, limit: Option<u64>, width: usize) -> String {
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return format!("{}/?", human_bytes(used));
    };
    let filled = ((used as u128 * width as u128).div_ceil(limit as u128) as usize).min(width);
    format!(
        "{}{} {}/{}",
        "█".repeat(filled),
        "░".repeat(width - filled),
        human_bytes(used),
        human_bytes(limit)
    )
}

/// Why a queue is stuck, if it is: full, or messages waiting that nobody received lately.
fn queue_stuck(m: &Models, o: &IpcObject, now_ns: u64) -> Option<String> {
    let ObjectState::Msg(q) = &o.state else {
        return None;
    };
    let activity = m.activity.object(&o.identity);
    let full = q.qbytes.is_some_and(|l| l > 0 && q.cbytes >= l)
        || activity.is_some_and(|a| a.tally.last_interval.blocked_sends > 0);
    if full {
        return Some("FULL".into());
    }
    if q.qnum == 0 {
        return None;
    }
    // No receive since we started: at least that long.
    let (since, lower_bound) = match activity.and_then(|a| a.last_receive_ns) {
        Some(t) => (t, false),
        None => (m.activity.started_ns(), true),
    };
    let idle = now_ns.saturating_sub(since);
    (idle >= m.stuck_ns).then(|| format!("{}{}", if lower_bound { ">" } else { "" }, ago(idle)))
}

fn queues(m: &Models, now_ns: u64) -> Table {
    let mut rows = Vec::new();
    for o in m.shown() {
        let ObjectState::Msg(q) = &o.state else {
            continue;
        };
        let tally = m
            .activity
            .object(&o.identity)
            .map(|a| a.tally.last_interval);
        let tally = tally.unwrap_or_default();
        let task = |t: Option<crate::model::objects::QueueUser>| {
            t.map_or("-".into(), |t| who(t.pid, t.comm))
        };
        let stuck = queue_stuck(m, o, now_ns);
        let fill = q
            .qbytes
            .filter(|l| *l > 0)
            .map_or(0.0, |l| q.cbytes as f64 / l as f64);
        let mut pids = vec![q.lspid, q.lrpid];
        let mut comms = Vec::new();
        for t in [q.last_send, q.last_recv].into_iter().flatten() {
            pids.push(t.pid);
            comms.extend(t.comm.map(|c| c.to_string()));
        }
        let (send, recv) = (task(q.last_send), task(q.last_recv));
        rows.push(Row {
            id: RowId::Object(o.identity),
            cells: vec![
                key_text(o.ipc_key),
                o.identity.id.to_string(),
                q.qnum.to_string(),
                fill_bar(q.cbytes, q.qbytes, 6),
                rate_text(m.rate(tally.sends)),
                rate_text(m.rate(tally.receives)),
                send.clone(),
                recv.clone(),
                stuck.clone().unwrap_or_default(),
            ],
            sort: vec![
                SortKey::Num(o.ipc_key as u32 as f64),
                SortKey::Num(o.identity.id as f64),
                SortKey::Num(q.qnum as f64),
                SortKey::Num(fill),
                SortKey::Num(m.rate(tally.sends)),
                SortKey::Num(m.rate(tally.receives)),
                SortKey::Text(send),
                SortKey::Text(recv),
                SortKey::Text(stuck.clone().unwrap_or_default()),
            ],
            pids,
            comms,
            ipc_key: Some(o.ipc_key),
            severity: if stuck.is_some() {
                Severity::Alert
            } else {
                Severity::Normal
            },
        });
    }
    Table {
        columns: QUEUE_COLUMNS,
        rows,
        default_sort: (2, true),
    }
}

/// What each process has attached (shm) or waits on (sem[num]) now.
fn holdings(m: &Models) -> BTreeMap<u32, (Option<Comm>, Vec<String>)> {
    let mut by_pid: BTreeMap<u32, (Option<Comm>, Vec<String>)> = BTreeMap::new();
    for o in m.shown() {
        match &o.state {
            ObjectState::Shm(s) => {
                for (pid, a) in &s.attached {
                    let e = by_pid.entry(*pid).or_default();
                    e.0 = e.0.or(a.comm);
                    e.1.push(format!("shm {} attached", o.identity.id));
                }
            }
            ObjectState::Sem(s) => {
                for (num, sem) in s.sems.iter().enumerate() {
                    for w in &sem.waiters {
                        let e = by_pid.entry(w.pid).or_default();
                        e.0 = e.0.or(w.comm);
                        e.1.push(format!("sem {}[{num}] waiting", o.identity.id));
                    }
                }
            }
            ObjectState::Msg(_) => {}
        }
    }
    by_pid
}

fn processes(m: &Models) -> Table {
    let mut held = holdings(m);
    let mut pids: BTreeSet<u32> = held.keys().copied().collect();
    pids.extend(m.activity.processes().map(|(pid, _)| pid));
    let mut rows = Vec::new();
    for pid in pids {
        let activity = m.activity.process(pid);
        let tally = activity.map(|a| a.tally.last_interval).unwrap_or_default();
        let (held_comm, objects) = held.remove(&pid).unwrap_or_default();
        let comm = activity
            .map(|a| a.comm)
            .or(held_comm)
            .or_else(|| m.objects.comm_of(pid))
            .map_or("?".into(), |c| c.to_string());
        let objects = if objects.is_empty() {
            "-".into()
        } else {
            objects.join(", ")
        };
        let (calls, errors, blocked) = (
            m.rate(tally.calls),
            m.rate(tally.errors),
            m.rate(tally.blocked_ns),
        );
        rows.push(Row {
            id: RowId::Process(pid),
            cells: vec![
                pid.to_string(),
                comm.clone(),
                rate_text(calls),
                rate_text(errors),
                blocked_text(blocked),
                objects.clone(),
            ],
            sort: vec![
                SortKey::Num(pid as f64),
                SortKey::Text(comm.clone()),
                SortKey::Num(calls),
                SortKey::Num(errors),
                SortKey::Num(blocked),
                SortKey::Text(objects),
            ],
            pids: vec![pid],
            comms: vec![comm],
            ipc_key: None,
            severity: if errors > 0.0 {
                Severity::Warn
            } else {
                Severity::Normal
            },
        });
    }
    Table {
        columns: PROCESS_COLUMNS,
        rows,
        default_sort: (2, true),
    }
}

/// The alert line's parts, worst first.
fn alerts(m: &Models, now_ns: u64) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for d in shown_deadlocks(m.objects, &Filter::default()) {
        alerts.push(Alert {
            severity: Severity::Alert,
            // It says DEADLOCK (or POSSIBLE DEADLOCK) itself.
            text: deadlock_text(&d),
        });
    }
    // Stuck waiters, the longest first.
    let mut stuck = Vec::new();
    for o in m.shown() {
        if let ObjectState::Sem(set) = &o.state {
            for (num, sem) in set.sems.iter().enumerate() {
                for w in &sem.waiters {
                    let waited = now_ns.saturating_sub(w.since_ns);
                    if waited >= m.stuck_ns {
                        stuck.push((
                            waited,
                            format!("{} on sem {}[{num}]", who(w.pid, w.comm), o.identity.id),
                        ));
                    }
                }
            }
        }
    }
    stuck.sort_by_key(|s| std::cmp::Reverse(s.0));
    if let Some((waited, first)) = stuck.first() {
        let more = match stuck.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        alerts.push(Alert {
            severity: Severity::Alert,
            text: format!("stuck: {first} {}{more}", ago(*waited)),
        });
    }
    for o in m.shown() {
        if let Some(why) = queue_stuck(m, o, now_ns) {
            let ObjectState::Msg(q) = &o.state else {
                continue;
            };
            let text = if why == "FULL" {
                format!(
                    "queue {} full ({})",
                    o.identity.id,
                    fill_bar(q.cbytes, q.qbytes, 0).trim()
                )
            } else {
                format!(
                    "queue {}: {} msgs, no receive for {why}",
                    o.identity.id, q.qnum
                )
            };
            alerts.push(Alert {
                severity: Severity::Alert,
                text,
            });
        }
    }
    // Segments nobody has mapped whose creator is gone: nobody will remove them.
    let orphans: Vec<&IpcObject> = m
        .shown()
        .filter(|o| {
            let Some(seg) = o.segment() else { return false };
            let gone = o.creator.is_some_and(|c| {
                m.objects
                    .exited(c.pid, c.process)
                    .unwrap_or_else(|| !(m.alive)(c.pid))
            });
            seg.nattch == 0 && !o.removed && gone
        })
        .collect();
    if let Some(first) = orphans.first() {
        let size = first
            .segment()
            .and_then(|s| s.size)
            .map_or("?".into(), human_bytes);
        let more = match orphans.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        alerts.push(Alert {
            severity: Severity::Warn,
            text: format!(
                "orphan: shm {} {size}, unattached, creator {} gone{more}",
                first.identity.id,
                first.creator.map_or(0, |c| c.pid)
            ),
        });
    }
    if m.counts.lost > 0 {
        alerts.push(Alert {
            severity: Severity::Alert,
            text: format!("{} events lost (ring buffer full)", m.counts.lost),
        });
    }
    if m.counts.lost_process > 0 {
        // Forks, execs and exits: who has a segment mapped may be wrong until the next refresh.
        alerts.push(Alert {
            severity: Severity::Alert,
            text: format!("{} process events lost", m.counts.lost_process),
        });
    }
    if m.compat_processes > 0 {
        alerts.push(Alert {
            severity: Severity::Warn,
            text: format!("{} 32-bit processes: not traced", m.compat_processes),
        });
    }
    if m.counts.untracked > 0 {
        alerts.push(Alert {
            severity: Severity::Warn,
            text: format!(
                "{} calls untracked (no room in the kernel)",
                m.counts.untracked
            ),
        });
    }
    alerts
}
