//! What `ipctrace export` knows: every object with its kernel numbers, the kernel's aggregate
//! counts and histograms, who has each segment mapped, waits in progress and how many processes
//! hold each semaphore. Fed the few calls that stream (gets, shmat, shmdt, IPC_RMID) and process
//! changes; corrected on each refresh.

use crate::decoder::aggregates::{AggregateReading, WaitTotals};
use crate::decoder::sem_undo::SemUndoWalk;
use crate::decoder::syscalls::{self, IpcKind, Op};
use crate::decoder::{Call, Comm, Event, ProcessChange};
use crate::kernel_view::ctl::SemValue;
use crate::kernel_view::maps::SysvMapping;
use crate::kernel_view::sysvipc::{MsgQueue, SemSet, ShmSeg};
use crate::model::holders::{self, Ledger, SemNow, SemSlot};
use crate::model::objects::ObjectKey;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A full rescan of every process's maps, when the bookkeeping disagrees with the kernel's
/// nattch (an mprotect split or an mremap raises it with no event), at most this often.
pub const FULL_SCAN_EVERY_NS: u64 = 60_000_000_000;

/// Per op: (calls, errors).
type OpCounts = BTreeMap<Op, (u64, u64)>;
/// Per (op, semnum): blocked waits.
type WaitsBySemnum = BTreeMap<(Op, u32), WaitTotals>;

/// One object as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedObject {
    pub identity: ObjectKey,
    /// The IPC key, when /proc or a traced get call told it.
    pub ipc_key: Option<i32>,
    /// Owner uid and gid (from /proc/sysvipc: objects of our namespace only).
    pub owner: Option<(u32, u32)>,
    /// The creator's pid and, when known, name.
    pub creator: Option<(u32, Option<Comm>)>,
    pub detail: Detail,
    /// Per op: (calls, errors), as the kernel counted them.
    pub ops: OpCounts,
    /// Per (op, semnum): blocked waits.
    pub waits: WaitsBySemnum,
    /// Per semnum (0 for queues): (threads asleep now, since when the longest has slept).
    pub waiting: BTreeMap<u32, (u64, u64)>,
    /// Per semnum: processes holding units of it now (semaphores nobody holds are left out).
    pub holders: BTreeMap<u32, u64>,
    /// Calls counted during the last refresh interval: what `--max-objects` ranks by.
    pub recent_calls: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    Shm {
        size: u64,
        /// The kernel's count of mappings.
        nattch: u64,
        /// Processes that have it mapped (each counted once, however many mappings).
        attached: u64,
        /// Nothing attached and the creator gone: nobody is left to remove it.
        orphaned: bool,
        /// Removed with IPC_RMID, alive until the last detach.
        removed: bool,
    },
    Sem {
        nsems: u32,
    },
    Msg {
        messages: u64,
        bytes: u64,
        capacity_bytes: Option<u64>,
    },
    /// Known only from traced calls (another IPC namespace: /proc/sysvipc lists ours only).
    Unknown,
}

impl ExportedObject {
    fn new(identity: ObjectKey) -> ExportedObject {
        ExportedObject {
            identity,
            ipc_key: None,
            owner: None,
            creator: None,
            detail: Detail::Unknown,
            ops: BTreeMap::new(),
            waits: BTreeMap::new(),
            waiting: BTreeMap::new(),
            holders: BTreeMap::new(),
            recent_calls: 0,
        }
    }

    pub fn calls(&self) -> u64 {
        self.ops.values().map(|(calls, _)| calls).sum()
    }

    /// Successful calls of `op`.
    pub fn succeeded(&self, op: Op) -> u64 {
        self.ops
            .get(&op)
            .map_or(0, |(calls, errors)| calls - errors)
    }
}

/// The kernel's view at one refresh, read by the command (I/O) and handed to the model.
#[derive(Debug, Clone, Default)]
pub struct Refresh {
    pub now_ns: u64,
    /// Read before the tables: an entry whose object the tables then lack was removed.
    pub aggregates: AggregateReading,
    pub shm: Option<Vec<ShmSeg>>,
    pub sem: Option<Vec<SemSet>>,
    /// Each queue with its size limit (None when IPC_STAT refused).
    pub msg: Option<Vec<(MsgQueue, Option<u64>)>>,
    /// The maps of the processes `pids_to_rescan` (or every process, after `full_scan_due`),
    /// those of our namespace: None for a process gone or unreadable.
    pub rescanned: Vec<(u32, Option<Vec<SysvMapping>>)>,
    pub full_scan: bool,
    /// Creators of segments with nothing attached that are still alive.
    pub live_creators: BTreeSet<u32>,
    /// Names of the creator pids `creators_to_name` asked for (those still running).
    pub creator_comms: HashMap<u32, Comm>,
    /// The semaphores of each set of our namespace (semctl), by semid; a set missing here has
    /// no holders counted.
    pub sem_values: HashMap<i32, Vec<SemValue>>,
    /// The kernel's SEM_UNDO lists (our namespace), None when they could not be read.
    pub undo: Option<SemUndoWalk>,
    /// The last-op pids of semaphores at 0 with waiters that are alive (a holder's guess).
    pub live_last_pids: BTreeSet<u32>,
}

#[derive(Debug, Default)]
pub struct ExportModel {
    own_ns: u32,
    objects: BTreeMap<ObjectKey, ExportedObject>,
    /// Calls by (op, errno), from the kernel.
    calls: Vec<(Op, Option<i64>, u64)>,
    /// Segment mappings of the processes of our namespace that have any: pid -> shmid -> maps.
    attached: HashMap<u32, BTreeMap<i32, u64>>,
    /// Processes whose maps changed by what the events say (shmat, shmdt).
    dirty: BTreeSet<u32>,
    /// Entries the kernel's aggregate maps had no room for, so far.
    pub unrecorded: u64,
    last_full_scan_ns: Option<u64>,
    scan_disagrees: bool,
    /// Objects a traced IPC_RMID removed since the last refresh (their kernel entries go too).
    removed: BTreeSet<ObjectKey>,
}

impl ExportModel {
    pub fn new(own_ns: u32) -> ExportModel {
        ExportModel {
            own_ns,
            ..Default::default()
        }
    }

    pub fn objects(&self) -> impl Iterator<Item = &ExportedObject> {
        self.objects.values()
    }

    pub fn get(&self, identity: &ObjectKey) -> Option<&ExportedObject> {
        self.objects.get(identity)
    }

    pub fn calls(&self) -> &[(Op, Option<i64>, u64)] {
        &self.calls
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Call(call) => self.apply_call(call),
            Event::Process(change) => self.apply_process(change),
        }
    }

    fn apply_call(&mut self, call: &Call) {
        if !call.succeeded() {
            return;
        }
        match call.op {
            Op::Shmat | Op::Shmdt if call.ipc_ns == self.own_ns => {
                self.dirty.insert(call.pid);
            }
            Op::Shmget | Op::Semget | Op::Msgget => {
                let Some(id) = call.id() else { return };
                let identity = ObjectKey {
                    ns: call.ipc_ns,
                    kind: call.kind(),
                    id,
                };
                // An object nobody knew of yet was made by this call: another process can get
                // it only after it exists, and everything that existed was read at start.
                let object = self.objects.entry(identity).or_insert_with(|| {
                    let mut o = ExportedObject::new(identity);
                    o.creator = Some((call.pid, Some(call.comm)));
                    o
                });
                object.ipc_key = object.ipc_key.or(call.key());
            }
            Op::Shmctl | Op::Semctl | Op::Msgctl => {
                let removed = call
                    .cmd()
                    .is_some_and(|c| syscalls::ctl_command(c) == libc::IPC_RMID as i64);
                let Some(id) = call.id() else { return };
                let identity = ObjectKey {
                    ns: call.ipc_ns,
                    kind: call.kind(),
                    id,
                };
                // A segment of ours lives on while attached: /proc says when it is gone.
                if removed && !(identity.kind == IpcKind::Shm && identity.ns == self.own_ns) {
                    self.objects.remove(&identity);
                    self.removed.insert(identity);
                }
            }
            _ => {}
        }
    }

    fn apply_process(&mut self, change: &ProcessChange) {
        match *change {
            // The child inherits every mapping: no rescan needed.
            ProcessChange::Fork { parent, child, .. } => {
                if let Some(maps) = self.attached.get(&parent).cloned() {
                    self.attached.insert(child, maps);
                }
            }
            ProcessChange::Exec { pid, .. } | ProcessChange::Exit { pid, .. } => {
                self.attached.remove(&pid);
                self.dirty.remove(&pid);
            }
        }
    }

    /// Processes whose maps the next refresh should read.
    pub fn pids_to_rescan(&self) -> Vec<u32> {
        self.dirty.iter().copied().collect()
    }

    /// Whether the next refresh should read every process's maps: at the first, and when the
    /// mappings followed disagree with the kernel's nattch (at most every FULL_SCAN_EVERY_NS).
    pub fn full_scan_due(&self, now_ns: u64) -> bool {
        match self.last_full_scan_ns {
            None => true,
            Some(last) => self.scan_disagrees && now_ns.saturating_sub(last) >= FULL_SCAN_EVERY_NS,
        }
    }

    /// Creator pids of segments whose creator has no name yet.
    pub fn creators_to_name(&self, segments: &[ShmSeg]) -> Vec<u32> {
        segments
            .iter()
            .filter(|s| {
                let identity = self.own_identity(IpcKind::Shm, s.shmid);
                self.objects
                    .get(&identity)
                    .is_none_or(|o| o.creator.is_none_or(|(_, comm)| comm.is_none()))
            })
            .map(|s| s.cpid)
            .collect()
    }

    fn own_identity(&self, kind: IpcKind, id: i32) -> ObjectKey {
        ObjectKey {
            ns: self.own_ns,
            kind,
            id,
        }
    }

    /// Takes the kernel's view. Returns the objects found gone, whose kernel entries the caller
    /// deletes (the model forgets them: their series disappear).
    pub fn refresh(&mut self, r: Refresh) -> Vec<ObjectKey> {
        if r.full_scan {
            self.attached.clear();
            self.last_full_scan_ns = Some(r.now_ns);
        }
        for (pid, maps) in r.rescanned {
            self.dirty.remove(&pid);
            let mut by_id: BTreeMap<i32, u64> = BTreeMap::new();
            for m in maps.unwrap_or_default() {
                *by_id.entry(m.shmid).or_default() += 1;
            }
            if by_id.is_empty() {
                self.attached.remove(&pid);
            } else {
                self.attached.insert(pid, by_id);
            }
        }

        // The tables are the truth for our namespace: every object they list, no other.
        let mut listed: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut processes: HashMap<i32, (u64, u64)> = HashMap::new();
        for maps in self.attached.values() {
            for (&shmid, &n) in maps {
                let e = processes.entry(shmid).or_default();
                e.0 += 1;
                e.1 += n;
            }
        }
        self.scan_disagrees = false;
        for seg in r.shm.iter().flatten() {
            let (attached, mappings) = processes.get(&seg.shmid).copied().unwrap_or_default();
            self.scan_disagrees |= mappings != seg.nattch;
            let o = self.listed(
                IpcKind::Shm,
                seg.shmid,
                seg.key,
                seg.uid,
                seg.gid,
                &mut listed,
            );
            if o.creator.is_none_or(|(pid, _)| pid != seg.cpid) {
                o.creator = Some((seg.cpid, r.creator_comms.get(&seg.cpid).copied()));
            } else if let Some((pid, None)) = o.creator {
                o.creator = Some((pid, r.creator_comms.get(&pid).copied()));
            }
            o.detail = Detail::Shm {
                size: seg.size,
                nattch: seg.nattch,
                attached,
                orphaned: seg.nattch == 0 && !r.live_creators.contains(&seg.cpid),
                removed: seg.removed(),
            };
        }
        for set in r.sem.iter().flatten() {
            let o = self.listed(
                IpcKind::Sem,
                set.semid,
                set.key,
                set.uid,
                set.gid,
                &mut listed,
            );
            o.detail = Detail::Sem { nsems: set.nsems };
        }
        for (queue, qbytes) in r.msg.iter().flatten() {
            let o = self.listed(
                IpcKind::Msg,
                queue.msqid,
                queue.key,
                queue.uid,
                queue.gid,
                &mut listed,
            );
            o.detail = Detail::Msg {
                messages: queue.qnum,
                bytes: queue.cbytes,
                capacity_bytes: *qbytes,
            };
        }
        let read_kinds: Vec<IpcKind> = [
            (IpcKind::Shm, r.shm.is_some()),
            (IpcKind::Sem, r.sem.is_some()),
            (IpcKind::Msg, r.msg.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, read)| read.then_some(k))
        .collect();
        let own_ns = self.own_ns;
        let gone_in_tables = |identity: &ObjectKey| {
            identity.ns == own_ns
                && read_kinds.contains(&identity.kind)
                && !listed.contains(identity)
        };
        let mut gone: Vec<ObjectKey> = self
            .objects
            .keys()
            .copied()
            .filter(gone_in_tables)
            .collect();

        // The kernel's counts: objects of ours the tables lack were removed since.
        let reading = r.aggregates;
        self.unrecorded = reading.unrecorded();
        self.calls = reading.calls;
        let mut seen: BTreeMap<ObjectKey, (OpCounts, WaitsBySemnum)> = BTreeMap::new();
        for (k, calls, errors) in reading.object_ops {
            let Some(op) = Op::from_code(k.op) else {
                continue;
            };
            let identity = ObjectKey {
                ns: k.ipc_ns,
                kind: op.kind(),
                id: k.id as i32,
            };
            seen.entry(identity)
                .or_default()
                .0
                .insert(op, (calls, errors));
        }
        for (k, totals) in reading.waits {
            let Some(op) = Op::from_code(k.op) else {
                continue;
            };
            let identity = ObjectKey {
                ns: k.ipc_ns,
                kind: op.kind(),
                id: k.id as i32,
            };
            seen.entry(identity)
                .or_default()
                .1
                .insert((op, k.semnum), totals);
        }
        for o in self.objects.values_mut() {
            o.waiting.clear();
        }
        for (identity, (ops, waits)) in seen {
            if gone_in_tables(&identity) || self.removed.contains(&identity) {
                gone.push(identity);
                continue;
            }
            let o = self
                .objects
                .entry(identity)
                .or_insert_with(|| ExportedObject::new(identity));
            let before = o.calls();
            o.ops = ops;
            o.waits = waits;
            o.recent_calls = o.calls().saturating_sub(before);
        }
        // Who waits on each semaphore: a waiter is never its holder.
        let mut waiter_pids: HashMap<(i32, u32), Vec<u32>> = HashMap::new();
        for (_, w) in reading.waiting {
            let Some(op) = Op::from_code(w.wait.op) else {
                continue;
            };
            if op.is_semop() && w.wait.ipc_ns == self.own_ns {
                waiter_pids
                    .entry((w.wait.id as i32, w.wait.semnum))
                    .or_default()
                    .push(w.pid);
            }
            let identity = ObjectKey {
                ns: w.wait.ipc_ns,
                kind: op.kind(),
                id: w.wait.id as i32,
            };
            if let Some(o) = self.objects.get_mut(&identity) {
                let e = o.waiting.entry(w.wait.semnum).or_insert((0, w.since_ns));
                e.0 += 1;
                e.1 = e.1.min(w.since_ns);
            }
        }
        self.count_holders(
            &r.sem_values,
            r.undo.as_ref(),
            &r.live_last_pids,
            &waiter_pids,
        );
        gone.extend(std::mem::take(&mut self.removed));
        gone.sort();
        gone.dedup();
        for identity in &gone {
            self.objects.remove(identity);
        }
        gone
    }

    /// Holders per semaphore of each set of ours, as `objects` works them out (the kernel's
    /// SEM_UNDO lists, else a guess from the last-op pid); no semop streams here, so the ledger
    /// of operations without SEM_UNDO is empty.
    fn count_holders(
        &mut self,
        values: &HashMap<i32, Vec<SemValue>>,
        undo: Option<&SemUndoWalk>,
        live_last_pids: &BTreeSet<u32>,
        waiter_pids: &HashMap<(i32, u32), Vec<u32>>,
    ) {
        let ledger = Ledger::default();
        for o in self.objects.values_mut() {
            o.holders.clear();
            if o.identity.kind != IpcKind::Sem || o.identity.ns != self.own_ns {
                continue;
            }
            let Some(sems) = values.get(&o.identity.id) else {
                continue;
            };
            for (num, v) in sems.iter().enumerate() {
                let waiters = waiter_pids
                    .get(&(o.identity.id, num as u32))
                    .map_or(&[][..], Vec::as_slice);
                let now = SemNow {
                    slot: SemSlot {
                        ns: o.identity.ns,
                        id: o.identity.id,
                        num: num as u16,
                    },
                    value: Some(v.value),
                    max_value: v.value,
                    last_pid: v.last_pid.max(0) as u32,
                    last_comm: None,
                    ncount: v.ncount.max(0) as u32,
                    waiters,
                    traced_undo: Vec::new(),
                };
                let n =
                    holders::holders_of(&now, undo, &ledger, |pid| live_last_pids.contains(&pid))
                        .len();
                if n > 0 {
                    o.holders.insert(num as u32, n as u64);
                }
            }
        }
    }

    /// The object a table line names, made known if it was not, with what the line tells.
    fn listed(
        &mut self,
        kind: IpcKind,
        id: i32,
        ipc_key: i32,
        uid: u32,
        gid: u32,
        listed: &mut BTreeSet<ObjectKey>,
    ) -> &mut ExportedObject {
        let identity = self.own_identity(kind, id);
        listed.insert(identity);
        let o = self
            .objects
            .entry(identity)
            .or_insert_with(|| ExportedObject::new(identity));
        // A removed segment's key reads 0 in the table; the one it was made with stays.
        if ipc_key != 0 || o.ipc_key.is_none() {
            o.ipc_key = Some(ipc_key);
        }
        o.owner = Some((uid, gid));
        o
    }
}

#[cfg(test)]
mod tests;
