//! The live object table behind `ipctrace objects`: every SysV object by (IPC namespace, kind,
//! id), with who created it, who has it mapped, who touched it last and who waits on it. Calls
//! and process changes drive it; snapshots of the kernel's own view seed and correct it.

mod reconcile;
#[cfg(test)]
mod tests;

pub use crate::kernel_view::snapshot::KernelSnapshot;

use crate::decoder::aggregates::CountedDelta;
use crate::decoder::sem_undo::SemUndoWalk;
use crate::decoder::syscalls::{self, IpcKind, Op};
use crate::decoder::{Call, Comm, Event, ProcessChange, ProcessStart};
use crate::kernel_view::sysvipc::SHM_DEST;
use crate::model::deadlocks::{self, Deadlock, SemName, WaitFor};
use crate::model::holders::{self, Holder, Ledger, SemNow, SemSlot};
use crate::model::shm_addresses::ShmAddressBook;
use crate::model::FastMap;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// An object as the kernel tells them apart: ids repeat across namespaces and are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The IPC namespace (inode of /proc/<pid>/ns/ipc).
    pub ns: u32,
    pub kind: IpcKind,
    pub id: i32,
}

/// Who did something to an object, and when (CLOCK_MONOTONIC), as far as anyone can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub pid: u32,
    /// None when the process is gone and no call of it was seen.
    pub comm: Option<Comm>,
    /// None when known only from the kernel (a segment's cpid), not from a call.
    pub ts_ns: Option<u64>,
    /// Which of the pid's processes it was (see `Objects::exited`); None when known only from
    /// the kernel.
    pub process: Option<ProcessSerial>,
}

impl Actor {
    fn of(call: &Call, process: ProcessSerial) -> Actor {
        Actor {
            pid: call.pid,
            comm: Some(call.comm),
            ts_ns: Some(call.ts_ns),
            process: Some(process),
        }
    }
}

/// The model's number for one process: a pid's successive processes have different ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessSerial(u64);

/// The last call that used or changed an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastOp {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
    pub op: Op,
    pub ts_ns: u64,
    pub errno: Option<i64>,
    pub process: ProcessSerial,
}

/// A task the kernel names by a pid (a queue's last sender or receiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueUser {
    pub pid: u32,
    pub tid: u32,
    pub comm: Option<Comm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// One SysV object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcObject {
    pub identity: ObjectKey,
    /// The IPC key (0 for IPC_PRIVATE, and for a removed segment).
    pub ipc_key: i32,
    /// Known from the kernel's tables only.
    pub owner: Option<Owner>,
    /// Permission bits plus SHM_DEST/SHM_LOCKED.
    pub mode: Option<u32>,
    /// None when nobody can tell: created before we looked (the kernel keeps no creator of a
    /// semaphore set or queue) or by a call we did not see.
    pub creator: Option<Actor>,
    /// The last IPC_SET (owner or mode change).
    pub changed_by: Option<Actor>,
    pub last_op: Option<LastOp>,
    /// A segment removed with IPC_RMID while still attached: it lives until the last detach.
    pub removed: bool,
    /// Calls seen, by operation.
    pub ops: BTreeMap<Op, u64>,
    /// Calls seen that failed.
    pub errors: u64,
    pub state: ObjectState,
    /// When the model first knew of it (a call's or a snapshot's time). A get call made before
    /// then may have been its creation; one made after cannot have been.
    known_since_ns: u64,
    /// When its numbers were last read from the kernel on their own (after a SETALL): calls
    /// from before then are in them already.
    refreshed_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectState {
    Shm(Segment),
    Sem(SemaphoreSet),
    Msg(Queue),
}

/// A shared memory segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    pub size: Option<u64>,
    /// The kernel's count of mappings (not processes).
    pub nattch: u64,
    /// Who has it mapped now, by pid.
    pub attached: BTreeMap<u32, ShmAttachment>,
    pub cpid: Option<u32>,
    /// The last to attach or detach (a fork counts as the parent's, an exit as the exiter's).
    pub lpid: u32,
}

/// One process's mappings of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShmAttachment {
    pub comm: Option<Comm>,
    /// Start address of each shmat -> how many mappings it is now: mprotect or a partial munmap
    /// splits one attachment into several, and shmdt removes them all.
    pub spans: BTreeMap<u64, u32>,
}

impl ShmAttachment {
    /// Mappings, as the kernel counts them in nattch.
    pub fn maps(&self) -> u64 {
        self.spans.values().map(|&n| n as u64).sum()
    }
}

/// A semaphore set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SemaphoreSet {
    /// None for a set first seen through a call that does not tell its size.
    pub nsems: Option<u32>,
    pub sems: Vec<Semaphore>,
    /// SEM_UNDO adjustments per process: the kernel applies them when the process exits.
    undo: BTreeMap<u32, Vec<i32>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Semaphore {
    /// None after a SETALL or a semop whose operations could not be read, until reconciled.
    pub value: Option<i32>,
    /// The last process to change it (0: none yet), as the kernel's GETPID says.
    pub last_pid: u32,
    pub last_comm: Option<Comm>,
    /// Tasks waiting for it to increase, and for it to become zero (from the kernel).
    pub ncount: u32,
    pub zcount: u32,
    pub waiters: Vec<SemWaiter>,
    /// The largest value it was seen to have: what it can hand out, at least.
    pub max_value: i32,
    /// Whether `last_pid` was a running process when the kernel was last read.
    pub last_pid_alive: bool,
}

/// A task asleep in semop on one semaphore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemWaiter {
    pub pid: u32,
    pub tid: u32,
    pub comm: Option<Comm>,
    /// Waiting for zero (counted in zcount) rather than for an increase (ncount).
    pub for_zero: bool,
    /// When it began waiting (CLOCK_MONOTONIC): exact when its semop was entered while we
    /// traced, else when we first saw it waiting (a lower bound of its wait).
    pub since_ns: u64,
    pub exact: bool,
}

/// A task asleep in msgsnd or msgrcv on one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueWaiter {
    pub pid: u32,
    pub tid: u32,
    pub comm: Option<Comm>,
    pub op: Op,
    /// As a semaphore waiter's: exact when its call was entered while we traced, else when we
    /// first saw it waiting.
    pub since_ns: u64,
    pub exact: bool,
}

/// A message queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queue {
    pub qnum: u64,
    pub cbytes: u64,
    /// Its size limit; None until the kernel tells.
    pub qbytes: Option<u64>,
    pub lspid: u32,
    /// After a receive handed over by msgsnd to a waiting receiver, that receiver's thread id.
    pub lrpid: u32,
    pub last_send: Option<QueueUser>,
    pub last_recv: Option<QueueUser>,
    /// Tasks asleep in msgsnd (the queue full) or msgrcv (no message for them) on it.
    pub waiters: Vec<QueueWaiter>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// (mtype, size) of every queued message, oldest first, while all of them are known: a
    /// truncating msgrcv (MSG_NOERROR) takes the whole message's size off cbytes, not what it
    /// returned.
    messages: Option<VecDeque<(i64, u64)>>,
}

/// Beyond this, a queue's messages are no longer followed one by one.
const MAX_FOLLOWED_MESSAGES: usize = 4096;
/// SEMMSL: no set has more semaphores.
const MAX_SEMS_PER_SET: usize = 32000;
/// Beyond this, processes that hold nothing are forgotten (and counted): only lost exit events
/// leave the entries of gone processes behind.
const MAX_PROCESSES: usize = 1 << 16;

impl IpcObject {
    fn new(identity: ObjectKey, ipc_key: i32, known_since_ns: u64) -> IpcObject {
        IpcObject {
            identity,
            ipc_key,
            owner: None,
            mode: None,
            creator: None,
            changed_by: None,
            last_op: None,
            removed: false,
            ops: BTreeMap::new(),
            errors: 0,
            state: match identity.kind {
                IpcKind::Shm => ObjectState::Shm(Segment::default()),
                IpcKind::Sem => ObjectState::Sem(SemaphoreSet::default()),
                IpcKind::Msg => ObjectState::Msg(Queue::default()),
            },
            known_since_ns,
            refreshed_ns: 0,
        }
    }

    /// The object a successful get call returned; `created` when that call made it.
    fn from_get(
        call: &Call,
        caller: ProcessSerial,
        identity: ObjectKey,
        created: bool,
    ) -> IpcObject {
        let mut o = IpcObject::new(identity, call.key().unwrap_or(0), call.ts_ns);
        if !created {
            return o;
        }
        o.creator = Some(Actor::of(call, caller));
        o.mode = call.flags().map(|f| f as u32 & 0o777);
        match &mut o.state {
            ObjectState::Shm(seg) => {
                seg.size = call.size();
                seg.cpid = Some(call.pid);
            }
            ObjectState::Sem(set) => {
                let nsems = call.semnum().unwrap_or(0).max(0) as u32;
                set.nsems = Some(nsems);
                // New semaphores hold 0 and no process has operated on them.
                set.sems = vec![
                    Semaphore {
                        value: Some(0),
                        ..Default::default()
                    };
                    nsems as usize
                ];
            }
            ObjectState::Msg(queue) => queue.messages = Some(VecDeque::new()),
        }
        o
    }

    pub fn segment(&self) -> Option<&Segment> {
        match &self.state {
            ObjectState::Shm(s) => Some(s),
            _ => None,
        }
    }

    pub fn semaphores(&self) -> Option<&SemaphoreSet> {
        match &self.state {
            ObjectState::Sem(s) => Some(s),
            _ => None,
        }
    }

    pub fn queue(&self) -> Option<&Queue> {
        match &self.state {
            ObjectState::Msg(q) => Some(q),
            _ => None,
        }
    }

    /// The processes this object refers to: attached, holding SEM_UNDO adjustments, waiting.
    fn pids(&self) -> BTreeSet<u32> {
        match &self.state {
            ObjectState::Shm(seg) => seg.attached.keys().copied().collect(),
            ObjectState::Sem(set) => set
                .undo
                .keys()
                .copied()
                .chain(
                    set.sems
                        .iter()
                        .flat_map(|s| s.waiters.iter().map(|w| w.pid)),
                )
                .collect(),
            ObjectState::Msg(q) => q.waiters.iter().map(|w| w.pid).collect(),
        }
    }
}

impl SemaphoreSet {
    fn sem_mut(&mut self, num: usize) -> Option<&mut Semaphore> {
        // A set first seen through a call does not know its size: grow as calls name semaphores.
        if self.nsems.is_none() && num < MAX_SEMS_PER_SET && num >= self.sems.len() {
            self.sems.resize_with(num + 1, Default::default);
        }
        self.sems.get_mut(num)
    }

    /// Forgets the waits of tasks that stopped waiting (their semop returned, whatever its
    /// result, or they died), and with `count` takes them off the kernel's counts too.
    fn stop_waiting(&mut self, gone: impl Fn(&SemWaiter) -> bool, count: bool) {
        for sem in &mut self.sems {
            let (mut ncount, mut zcount) = (sem.ncount, sem.zcount);
            sem.waiters.retain(|w| {
                if !gone(w) {
                    return true;
                }
                if w.for_zero {
                    zcount = zcount.saturating_sub(1);
                } else {
                    ncount = ncount.saturating_sub(1);
                }
                false
            });
            if count {
                (sem.ncount, sem.zcount) = (ncount, zcount);
            }
        }
    }

    /// What the kernel does when a process holding SEM_UNDO adjustments exits: add them, clamp
    /// to 0..=SEMVMX, and name the exiting process as each adjusted semaphore's last.
    fn undo_on_exit(&mut self, pid: u32, comm: Option<Comm>) {
        let Some(adjustments) = self.undo.remove(&pid) else {
            return;
        };
        for (sem, adj) in self.sems.iter_mut().zip(adjustments) {
            if adj == 0 {
                continue;
            }
            sem.value = sem.value.map(|v| (v + adj).clamp(0, syscalls::SEMVMX));
            sem.last_pid = pid;
            sem.last_comm = comm;
        }
    }

    /// SETVAL/SETALL clear every process's adjustment of the semaphores they set.
    fn clear_undo(&mut self, num: Option<usize>) {
        for adjustments in self.undo.values_mut() {
            match num {
                Some(n) => {
                    if let Some(a) = adjustments.get_mut(n) {
                        *a = 0;
                    }
                }
                None => adjustments.iter_mut().for_each(|a| *a = 0),
            }
        }
    }
}

impl Queue {
    /// Takes the received message off the queue and returns its full size.
    fn take_message(&mut self, mtype: Option<i64>, returned: u64) -> u64 {
        // The kernel hands over the first message its selector matches, and the selector
        // depends only on the type: it is the first message of the type received.
        let Some(messages) = self.messages.as_mut() else {
            return returned;
        };
        let found = mtype.and_then(|t| messages.iter().position(|(mt, _)| *mt == t));
        match found.and_then(|i| messages.remove(i)) {
            Some((_, size)) => size,
            None => {
                self.messages = None;
                returned
            }
        }
    }
}

/// A process the model keeps a name for: it called, holds something, or descends from one that did.
/// Kept from its first call or its fork until its exit.
#[derive(Debug)]
struct ProcessEntry {
    serial: ProcessSerial,
    comm: Option<Comm>,
    /// Known once a process event or /proc told (calls do not carry it): a fork naming the pid
    /// with another start is a new process, and this one is gone.
    start: Option<ProcessStart>,
    /// Objects it is attached to, holds SEM_UNDO adjustments on, or waits on.
    objects: BTreeSet<ObjectKey>,
}

/// Every object known, and the processes that hold them.
#[derive(Debug, Default)]
pub struct Objects {
    /// Looked up several times a call: hashed (foldhash), sorted only when listed (`iter`).
    table: FastMap<ObjectKey, IpcObject>,
    processes: FastMap<u32, ProcessEntry>,
    addresses: ShmAddressBook,
    /// (namespace, kind) -> time of the last snapshot of it: calls and process changes from
    /// before then are already in the kernel's numbers and only add names.
    synced: FastMap<(u32, IpcKind), u64>,
    /// Some calls are not seen (a --pid or --comm filter): an unknown id is no proof of creation.
    partial_view: bool,
    /// Sets whose values the calls could not tell (SETALL; a semop the kernel program could
    /// not read whole), to be read from the kernel.
    unknown_values: BTreeSet<ObjectKey>,
    /// The namespace the snapshots come from (ours), once one was taken.
    own_ns: Option<u32>,
    /// Processes dropped to keep `processes` bounded (their exits were lost).
    forgotten_processes: u64,
    /// Processes found gone when their pid came back (their exits were lost).
    missed_exits: u64,
    /// Processes entered so far: the next one's serial.
    processes_seen: u64,
    /// Operations made without SEM_UNDO, per semaphore and process (holders the kernel keeps
    /// no record of).
    ledger: Ledger,
    /// Calls the kernel could not hand over: the ledger may lack a release, so what it says is
    /// held is only probably held.
    ledger_gaps: bool,
    /// Every call that ended before this (CLOCK_MONOTONIC) has been applied: the ledger is
    /// current up to here, and may still lack the release of a wait begun later.
    applied_through_ns: u64,
    /// The kernel's own SEM_UNDO adjustments of every process of our namespace, last read.
    kernel_undo: Option<SemUndoWalk>,
    /// The traced waits (tid, start) still asleep just after that walk (None: not looked):
    /// only these waited all through it, so only for these is a holding it read not their own
    /// wait's unit, taken while the walk went on.
    asleep_after_undo_walk: Option<BTreeSet<(u32, u64)>>,
}

/// What the model holds, to show it stays bounded however many objects and processes come
/// and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    pub objects: usize,
    /// Processes with a name or holdings kept.
    pub processes: usize,
    /// Processes whose shm attachment addresses are kept.
    pub address_books: usize,
    /// Sets waiting for their values to be read from the kernel.
    pub unknown_values: usize,
}

impl Objects {
    pub fn new() -> Objects {
        Objects::default()
    }

    /// Says that `lost` calls (in all, so far) never reached the model: once any did, a holder
    /// known only from traced calls may have given its units back unseen, and a deadlock
    /// through one is only possible.
    pub fn calls_lost(&mut self, lost: u64) {
        self.ledger_gaps |= lost > 0;
    }

    /// Says that every call that ended before `at_ns` has been applied (the ring buffer was
    /// found empty). Applied calls say as much by themselves: the kernel program stamps a
    /// call's end before it reserves the call's record, and the ring keeps reservation order.
    pub fn applied_through(&mut self, at_ns: u64) {
        self.applied_through_ns = self.applied_through_ns.max(at_ns);
    }

    /// Says that calls of some processes are filtered out, so a get call returning an id the
    /// model does not know may have opened, not created, it.
    pub fn set_partial_view(&mut self, partial: bool) {
        self.partial_view = partial;
    }

    pub fn get(&self, identity: &ObjectKey) -> Option<&IpcObject> {
        self.table.get(identity)
    }

    /// Every object, ordered by namespace, kind and id.
    pub fn iter(&self) -> impl Iterator<Item = &IpcObject> {
        let mut all: Vec<&IpcObject> = self.table.values().collect();
        all.sort_unstable_by_key(|o| o.identity);
        all.into_iter()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The name the model knows for a process.
    pub fn comm_of(&self, pid: u32) -> Option<Comm> {
        self.processes.get(&pid)?.comm
    }

    /// Processes the model keeps a name for (bounded by the processes alive).
    pub fn processes(&self) -> usize {
        self.processes.len()
    }

    pub fn footprint(&self) -> Footprint {
        Footprint {
            objects: self.table.len(),
            processes: self.processes.len(),
            address_books: self.addresses.len(),
            unknown_values: self.unknown_values.len(),
        }
    }

    /// Processes forgotten to keep the model bounded: their exits were lost, and their names
    /// with them.
    pub fn forgotten_processes(&self) -> u64 {
        self.forgotten_processes
    }

    /// Processes the model learnt were gone only when a new process took their pid.
    pub fn missed_exits(&self) -> u64 {
        self.missed_exits
    }

    /// The processes believed to have segments of namespace `ns` mapped.
    pub fn attached_pids(&self, ns: u32) -> BTreeSet<u32> {
        self.table
            .values()
            .filter(|o| o.identity.ns == ns)
            .filter_map(IpcObject::segment)
            .flat_map(|s| s.attached.keys().copied())
            .collect()
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Call(call) => self.apply_call(call),
            Event::Process(change) => self.apply_process(change),
        }
    }

    fn synced_at(&self, ns: u32, kind: IpcKind) -> u64 {
        self.synced.get(&(ns, kind)).copied().unwrap_or(0)
    }

    /// Whether something that happened at `ts_ns` is not yet in the kernel's numbers the model
    /// holds for `identity`.
    fn fresh(&self, identity: ObjectKey, ts_ns: u64) -> bool {
        let refreshed = self.table.get(&identity).map_or(0, |o| o.refreshed_ns);
        ts_ns > self.synced_at(identity.ns, identity.kind).max(refreshed)
    }

    /// True when an id this model does not know must be new: it has the kernel's list for the
    /// namespace and sees every process's calls.
    fn knows_every_object(&self, ns: u32, kind: IpcKind) -> bool {
        !self.partial_view && self.synced.contains_key(&(ns, kind))
    }

    fn process_mut(&mut self, pid: u32) -> &mut ProcessEntry {
        if self.processes.len() >= MAX_PROCESSES && !self.processes.contains_key(&pid) {
            let before = self.processes.len();
            self.processes.retain(|_, p| !p.objects.is_empty());
            self.forgotten_processes += (before - self.processes.len()) as u64;
        }
        let seen = &mut self.processes_seen;
        self.processes.entry(pid).or_insert_with(|| {
            *seen += 1;
            ProcessEntry {
                serial: ProcessSerial(*seen),
                comm: None,
                start: None,
                objects: BTreeSet::new(),
            }
        })
    }

    /// Whether the process an actor names is gone: the model saw it exit, or its pid taken by
    /// another (or forgot it, past `MAX_PROCESSES`). None when the actor is known from the
    /// kernel only.
    pub fn exited(&self, pid: u32, process: Option<ProcessSerial>) -> Option<bool> {
        let process = process?;
        Some(self.processes.get(&pid).is_none_or(|p| p.serial != process))
    }

    fn index(&mut self, pid: u32, identity: ObjectKey) {
        self.process_mut(pid).objects.insert(identity);
    }

    fn unindex(&mut self, pid: u32, identity: ObjectKey) {
        if let Some(p) = self.processes.get_mut(&pid) {
            p.objects.remove(&identity);
        }
    }

    /// Drops an object and every process's reference to it.
    fn remove(&mut self, identity: ObjectKey) {
        if let Some(o) = self.table.remove(&identity) {
            for pid in o.pids() {
                self.unindex(pid, identity);
            }
        }
    }

    fn insert(&mut self, object: IpcObject) {
        let identity = object.identity;
        for pid in object.pids() {
            self.index(pid, identity);
        }
        self.table.insert(identity, object);
    }

    pub fn apply_call(&mut self, call: &Call) {
        self.applied_through(call.ts_ns + call.lat_ns);
        if call.kind() == IpcKind::Sem {
            self.ledger.apply_call(call);
        }
        let kind = call.kind();
        let ns = call.ipc_ns;
        let caller = self.process_mut(call.pid);
        caller.comm = Some(call.comm);
        let caller = caller.serial;
        let id = match call.op {
            Op::Shmat => {
                self.addresses.apply_call(call);
                call.id()
            }
            Op::Shmdt => self.addresses.apply_call(call),
            _ => call.id(),
        };
        let Some(id) = id else { return };
        if call
            .cmd()
            .is_some_and(|cmd| syscalls::ctl_takes_an_index(kind, cmd))
        {
            return;
        }
        let identity = ObjectKey { ns, kind, id };
        // The kernel's numbers already hold what a call from before the last snapshot did. A
        // call takes effect by its return (a blocked semop when woken, just before): judged by
        // its start, one that slept across the snapshot would count as in it, and the model's
        // values would drift from the kernel's by each such -1.
        let fresh = self.fresh(identity, call.ts_ns + call.lat_ns);
        if call.op.is_get() {
            self.apply_get(call, caller, identity, fresh);
        }
        if !self.table.contains_key(&identity) {
            if !call.succeeded() || !fresh {
                return;
            }
            // Made by a process or at a time we did not see.
            self.insert(IpcObject::new(identity, 0, call.ts_ns));
        }
        let object = self.table.get_mut(&identity).expect("just ensured");
        *object.ops.entry(call.op).or_default() += 1;
        if !call.succeeded() {
            object.errors += 1;
        }
        if touches(call) {
            object.last_op = Some(LastOp {
                pid: call.pid,
                tid: call.tid,
                comm: call.comm,
                op: call.op,
                ts_ns: call.ts_ns,
                errno: call.errno(),
                process: caller,
            });
        }
        if !fresh {
            self.add_names(call, identity);
            // /proc never shows SEM_UNDO adjustments: they follow every call.
            self.follow_undo(identity, call);
            return;
        }
        match &mut object.state {
            ObjectState::Sem(set) if call.op.is_semop() => {
                set.stop_waiting(|w| w.tid == call.tid, true);
            }
            ObjectState::Msg(q) if call.op.can_block() => q.waiters.retain(|w| w.tid != call.tid),
            _ => {}
        }
        if call.errno() == Some(syscalls::EIDRM) {
            self.remove(identity);
            return;
        }
        if !call.succeeded() {
            return;
        }
        match call.op {
            Op::Shmat => self.attach(identity, call),
            Op::Shmdt => self.detach(identity, call),
            Op::Shmctl | Op::Semctl | Op::Msgctl => self.control(identity, call, caller),
            Op::Semop | Op::Semtimedop => self.semop(identity, call),
            Op::Msgsnd => self.msgsnd(identity, call),
            Op::Msgrcv => self.msgrcv(identity, call),
            Op::Shmget | Op::Semget | Op::Msgget => {}
        }
    }

    /// Plain calls the kernel counted instead of streaming (msgsnd and msgrcv that succeeded
    /// without sleeping): their op counts, the caller's name and the object's last op. A
    /// queue's depth, bytes and last sender and receiver are the kernel's, read each interval;
    /// its messages are no longer followed one by one.
    pub fn apply_counted(&mut self, counted: &CountedDelta) {
        let caller = self.process_mut(counted.pid);
        caller.comm = Some(counted.comm);
        let caller = caller.serial;
        let identity = ObjectKey {
            ns: counted.ipc_ns,
            kind: counted.op.kind(),
            id: counted.id,
        };
        let Some(object) = self.table.get_mut(&identity) else {
            return;
        };
        *object.ops.entry(counted.op).or_default() += counted.calls;
        if object
            .last_op
            .is_none_or(|last| last.ts_ns <= counted.last_ns)
        {
            object.last_op = Some(LastOp {
                pid: counted.pid,
                tid: counted.last_tid,
                comm: counted.comm,
                op: counted.op,
                ts_ns: counted.last_ns,
                errno: None,
                process: caller,
            });
        }
        if let ObjectState::Msg(q) = &mut object.state {
            q.messages = None;
            match counted.op {
                Op::Msgsnd => q.bytes_sent += counted.bytes,
                Op::Msgrcv => q.bytes_received += counted.bytes,
                _ => {}
            }
        }
    }

    /// A successful get call: the object it returned, new or known.
    fn apply_get(&mut self, call: &Call, caller: ProcessSerial, identity: ObjectKey, fresh: bool) {
        if !call.succeeded() {
            return;
        }
        let ipc_key = call.key().unwrap_or(0);
        let flags = call.flags().unwrap_or(0);
        let private = ipc_key == syscalls::IPC_PRIVATE;
        // Success with IPC_PRIVATE, or with IPC_CREAT|IPC_EXCL, means this call made it.
        let surely_new = private
            || flags & (syscalls::IPC_CREAT | syscalls::IPC_EXCL)
                == (syscalls::IPC_CREAT | syscalls::IPC_EXCL);
        let may_create = private || flags & syscalls::IPC_CREAT != 0;
        if !fresh {
            // Older than the snapshot that told us of the object: if it was the creation, the
            // snapshot could not say who made it (or, for a segment, knew the pid only).
            let Some(o) = self.table.get_mut(&identity) else {
                return;
            };
            if may_create && o.known_since_ns >= call.ts_ns && o.ipc_key == ipc_key {
                let made_it = match o.creator {
                    Some(c) => c.pid == call.pid && c.ts_ns.is_none(),
                    None => surely_new && o.identity.kind != IpcKind::Shm,
                };
                if made_it {
                    o.creator = Some(Actor::of(call, caller));
                }
            }
            return;
        }
        // No get call can return a removed segment (its key is gone) or an object under another
        // key: the object we knew by that id was removed unseen, and the id reused.
        let replaced = self
            .table
            .get(&identity)
            .is_some_and(|o| surely_new || o.removed || o.ipc_key != ipc_key);
        if replaced {
            self.remove(identity);
        }
        if !self.table.contains_key(&identity) {
            let created =
                may_create && (surely_new || self.knows_every_object(identity.ns, identity.kind));
            self.insert(IpcObject::from_get(call, caller, identity, created));
        }
    }

    /// A call from before the last snapshot: the kernel's numbers hold its effect already, but
    /// it can still name the pids they show.
    fn add_names(&mut self, call: &Call, identity: ObjectKey) {
        if !call.succeeded() {
            return;
        }
        let Some(object) = self.table.get_mut(&identity) else {
            return;
        };
        let task = QueueUser {
            pid: call.pid,
            tid: call.tid,
            comm: Some(call.comm),
        };
        match &mut object.state {
            ObjectState::Msg(q) => match call.op {
                Op::Msgsnd if q.lspid == call.pid => q.last_send = Some(task),
                Op::Msgrcv if q.lrpid == call.pid || q.lrpid == call.tid => {
                    q.last_recv = Some(task)
                }
                _ => {}
            },
            ObjectState::Sem(set) if call.op.is_semop() => {
                for s in call.sops() {
                    if let Some(sem) = set.sems.get_mut(s.num as usize) {
                        if sem.last_pid == call.pid {
                            sem.last_comm = Some(call.comm);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn attach(&mut self, identity: ObjectKey, call: &Call) {
        let Some(ObjectState::Shm(seg)) = self.table.get_mut(&identity).map(|o| &mut o.state)
        else {
            return;
        };
        seg.lpid = call.pid;
        let attachment = seg.attached.entry(call.pid).or_default();
        attachment.comm = Some(call.comm);
        // SHM_REMAP over an earlier attachment at the same address replaces its mappings.
        let replaced = attachment.spans.insert(call.ret as u64, 1).unwrap_or(0) as u64;
        seg.nattch = (seg.nattch + 1).saturating_sub(replaced);
        self.index(call.pid, identity);
    }

    fn detach(&mut self, identity: ObjectKey, call: &Call) {
        let address = call.args[0];
        let Some(object) = self.table.get_mut(&identity) else {
            return;
        };
        let ObjectState::Shm(seg) = &mut object.state else {
            return;
        };
        seg.lpid = call.pid;
        let mut gone = 1;
        if let Some(attachment) = seg.attached.get_mut(&call.pid) {
            gone = attachment.spans.remove(&address).unwrap_or(1) as u64;
            if attachment.spans.is_empty() {
                seg.attached.remove(&call.pid);
            }
        }
        seg.nattch = seg.nattch.saturating_sub(gone);
        let still_attached = seg.attached.contains_key(&call.pid);
        let destroyed = object.removed && seg.nattch == 0;
        if !still_attached {
            self.unindex(call.pid, identity);
        }
        if destroyed {
            self.remove(identity);
        }
    }

    fn control(&mut self, identity: ObjectKey, call: &Call, caller: ProcessSerial) {
        let Some(cmd) = call.cmd() else { return };
        let Some(object) = self.table.get_mut(&identity) else {
            return;
        };
        match (cmd, &mut object.state) {
            (syscalls::IPC_RMID, ObjectState::Shm(seg)) if seg.nattch > 0 => {
                // It lives on, attachable by id only, until the last detach.
                object.removed = true;
                object.ipc_key = 0;
                object.mode = object.mode.map(|m| m | SHM_DEST);
            }
            (syscalls::IPC_RMID, _) => {
                self.remove(identity);
            }
            (syscalls::IPC_SET, _) => object.changed_by = Some(Actor::of(call, caller)),
            (syscalls::SHM_LOCK, ObjectState::Shm(_)) => {
                object.mode = object.mode.map(|m| m | syscalls::SHM_LOCKED)
            }
            (syscalls::SHM_UNLOCK, ObjectState::Shm(_)) => {
                object.mode = object.mode.map(|m| m & !syscalls::SHM_LOCKED)
            }
            (syscalls::SETVAL, ObjectState::Sem(set)) => {
                let num = call.semnum().unwrap_or(-1);
                if let Ok(num) = usize::try_from(num) {
                    if let Some(sem) = set.sem_mut(num) {
                        sem.value = Some(call.args[3] as i32);
                        // A value set by hand is what it hands out from now on.
                        sem.max_value = call.args[3] as i32;
                        sem.last_pid = call.pid;
                        sem.last_comm = Some(call.comm);
                    }
                }
            }
            (syscalls::SETALL, ObjectState::Sem(set)) => {
                // The values sit in the caller's memory, where the kernel program does not
                // look: they are read from the kernel (`refresh_unknown_values`, reconcile).
                for sem in &mut set.sems {
                    sem.value = None;
                    sem.last_pid = call.pid;
                    sem.last_comm = Some(call.comm);
                }
                self.unknown_values.insert(identity);
            }
            _ => {}
        }
        self.follow_undo(identity, call);
    }

    fn semop(&mut self, identity: ObjectKey, call: &Call) {
        let Some(ObjectState::Sem(set)) = self.table.get_mut(&identity).map(|o| &mut o.state)
        else {
            return;
        };
        let sops = call.sops();
        let complete = sops.len() as u64 == call.nsops().unwrap_or(0);
        for s in sops {
            let Some(sem) = set.sem_mut(s.num as usize) else {
                continue;
            };
            sem.value = sem.value.map(|v| v + s.op as i32);
            sem.max_value = sem.max_value.max(sem.value.unwrap_or(0));
            sem.last_pid = call.pid;
            sem.last_comm = Some(call.comm);
        }
        if !complete {
            // Operations beyond what the kernel program could read changed values we cannot see.
            for sem in &mut set.sems {
                sem.value = None;
            }
            self.unknown_values.insert(identity);
        }
        self.follow_undo(identity, call);
    }

    /// SEM_UNDO bookkeeping: a successful semop records what its exit will take back;
    /// SETVAL and SETALL clear it for the semaphores they set.
    fn follow_undo(&mut self, identity: ObjectKey, call: &Call) {
        if !call.succeeded() {
            return;
        }
        let Some(ObjectState::Sem(set)) = self.table.get_mut(&identity).map(|o| &mut o.state)
        else {
            return;
        };
        let mut recorded = false;
        match call.op {
            Op::Semop | Op::Semtimedop => {
                for s in call.sops() {
                    let num = s.num as usize;
                    if s.flg as i64 & syscalls::SEM_UNDO == 0 || s.op == 0 || num >= set.sems.len()
                    {
                        continue;
                    }
                    let adjustments = set.undo.entry(call.pid).or_default();
                    if adjustments.len() < set.sems.len() {
                        adjustments.resize(set.sems.len(), 0);
                    }
                    adjustments[num] -= s.op as i32;
                    recorded = true;
                }
            }
            Op::Semctl => match call.cmd() {
                Some(syscalls::SETVAL) => {
                    if let Ok(num) = usize::try_from(call.semnum().unwrap_or(-1)) {
                        set.clear_undo(Some(num));
                    }
                }
                Some(syscalls::SETALL) => set.clear_undo(None),
                _ => {}
            },
            _ => {}
        }
        if recorded {
            self.index(call.pid, identity);
        }
    }

    fn msgsnd(&mut self, identity: ObjectKey, call: &Call) {
        let Some(ObjectState::Msg(q)) = self.table.get_mut(&identity).map(|o| &mut o.state) else {
            return;
        };
        let size = call.size().unwrap_or(0);
        q.qnum += 1;
        q.cbytes += size;
        q.bytes_sent += size;
        q.lspid = call.pid;
        q.last_send = Some(QueueUser {
            pid: call.pid,
            tid: call.tid,
            comm: Some(call.comm),
        });
        match (q.messages.as_mut(), call.mtype) {
            (Some(m), Some(mtype)) if m.len() < MAX_FOLLOWED_MESSAGES => m.push_back((mtype, size)),
            _ => q.messages = None,
        }
    }

    fn msgrcv(&mut self, identity: ObjectKey, call: &Call) {
        let Some(ObjectState::Msg(q)) = self.table.get_mut(&identity).map(|o| &mut o.state) else {
            return;
        };
        let returned = call.ret.max(0) as u64;
        q.bytes_received += returned;
        if call.flags().unwrap_or(0) & syscalls::MSG_COPY != 0 {
            return; // a copy leaves the queue, and its last receiver, as they were
        }
        let size = q.take_message(call.mtype, returned);
        q.qnum = q.qnum.saturating_sub(1);
        q.cbytes = q.cbytes.saturating_sub(size);
        // A receiver that slept was handed the message by msgsnd, which records the receiver's
        // thread id, not its process id.
        q.lrpid = if call.blocked_ns > 0 {
            call.tid
        } else {
            call.pid
        };
        q.last_recv = Some(QueueUser {
            pid: call.pid,
            tid: call.tid,
            comm: Some(call.comm),
        });
    }

    pub fn apply_process(&mut self, change: &ProcessChange) {
        // First who the event is about: what the model holds under its pid may be a
        // predecessor's, gone unseen (its exit was lost).
        match *change {
            ProcessChange::Fork {
                ts_ns,
                child,
                child_start_ns,
                ..
            } => {
                // Only /proc can have told of the child before its fork, and with its start.
                let start = ProcessStart::exact(child_start_ns);
                self.forget_predecessor(ts_ns, child, |known| {
                    known.is_none_or(|k| !k.matches(start))
                });
            }
            ProcessChange::Exec {
                ts_ns,
                pid,
                start_ns,
                ..
            } => {
                // Calls do not tell their process's start: an entry without one is this process's.
                let start = ProcessStart::exact(start_ns);
                self.forget_predecessor(ts_ns, pid, |known| {
                    known.is_some_and(|k| !k.matches(start))
                });
            }
            ProcessChange::Exit { .. } => {}
        }
        self.addresses.apply_process(change);
        match *change {
            ProcessChange::Fork {
                ts_ns,
                parent,
                child,
                child_start_ns,
                comm,
            } => self.fork(ts_ns, parent, child, child_start_ns, comm),
            ProcessChange::Exec {
                ts_ns,
                pid,
                start_ns,
                comm,
            } => {
                if let Some(p) = self.processes.get_mut(&pid) {
                    p.comm = Some(comm);
                    p.start = Some(ProcessStart::exact(start_ns));
                }
                // The old address space is gone; SEM_UNDO adjustments survive exec.
                self.leave(ts_ns, pid, false);
            }
            // Whether this process or one before it under the pid whose exit was lost: whatever
            // the pid held is gone.
            ProcessChange::Exit { ts_ns, pid, .. } => {
                self.ledger.exited(pid);
                self.leave(ts_ns, pid, true);
                self.processes.remove(&pid);
            }
        }
    }

    /// A process event or /proc names a pid that the model holds for a process that `gone`
    /// (given its start, if known) says is another: that one exited unseen (its exit event was
    /// lost) before the pid was reused, and nothing of it may pass to the new process.
    fn forget_predecessor(
        &mut self,
        ts_ns: u64,
        pid: u32,
        gone: impl Fn(Option<ProcessStart>) -> bool,
    ) {
        if self.processes.get(&pid).is_some_and(|p| gone(p.start)) {
            self.missed_exits += 1;
            self.leave(ts_ns, pid, true);
            self.processes.remove(&pid);
            self.addresses.forget(pid);
        }
    }

    fn fork(&mut self, ts_ns: u64, parent: u32, child: u32, child_start_ns: u64, comm: Comm) {
        // Children of processes we know nothing of hold nothing we follow.
        let Some(p) = self.processes.get(&parent) else {
            return;
        };
        let held: Vec<ObjectKey> = p
            .objects
            .iter()
            .filter(|k| k.kind == IpcKind::Shm)
            .copied()
            .collect();
        let entry = self.process_mut(child);
        entry.comm = Some(comm);
        entry.start = Some(ProcessStart::exact(child_start_ns));
        for identity in held {
            let fresh = self.fresh(identity, ts_ns);
            let Some(ObjectState::Shm(seg)) = self.table.get_mut(&identity).map(|o| &mut o.state)
            else {
                continue;
            };
            // The child gets a copy of every mapping; the kernel counts the copies as the parent's.
            let Some(mut inherited) = seg.attached.get(&parent).cloned() else {
                continue;
            };
            if !fresh {
                // Already in the kernel's count. The maps scan before it may have passed the
                // child's pid before it existed: the list gets what the count has.
                if seg.attached.contains_key(&child) {
                    continue;
                }
            } else {
                seg.nattch += inherited.maps();
                seg.lpid = parent;
            }
            inherited.comm = Some(comm);
            seg.attached.insert(child, inherited);
            self.index(child, identity);
        }
    }

    /// A process's address space went away (exec, exit): its mappings close, and on exit its
    /// SEM_UNDO adjustments apply.
    fn leave(&mut self, ts_ns: u64, pid: u32, exiting: bool) {
        let Some(p) = self.processes.get(&pid) else {
            return;
        };
        let comm = p.comm;
        let held: Vec<ObjectKey> = p.objects.iter().copied().collect();
        for identity in held {
            let fresh = self.fresh(identity, ts_ns);
            let Some(object) = self.table.get_mut(&identity) else {
                self.unindex(pid, identity);
                continue;
            };
            let mut keeps = false;
            match &mut object.state {
                ObjectState::Shm(seg) => {
                    if let Some(gone) = seg.attached.remove(&pid) {
                        if fresh {
                            seg.nattch = seg.nattch.saturating_sub(gone.maps());
                            seg.lpid = pid;
                        }
                    }
                }
                ObjectState::Sem(set) => {
                    // A task killed in its wait leaves the kernel's wait queue.
                    set.stop_waiting(|w| w.pid == pid, fresh);
                    if exiting {
                        if fresh {
                            set.undo_on_exit(pid, comm);
                        } else {
                            set.undo.remove(&pid);
                        }
                    } else {
                        keeps = set.undo.contains_key(&pid);
                    }
                }
                // A task killed in its wait leaves the queue.
                ObjectState::Msg(q) => q.waiters.retain(|w| w.pid != pid),
            }
            let destroyed = object.removed && object.segment().is_some_and(|s| s.nattch == 0);
            if !keeps {
                self.unindex(pid, identity);
            }
            if destroyed && fresh {
                self.remove(identity);
            }
        }
    }
}

/// Who holds what, who waits, and the deadlocks between them.
impl Objects {
    /// Takes the kernel's SEM_UNDO adjustments of every process (None: they could not be read,
    /// and the SEM_UNDO operations seen while tracing stand in).
    pub fn set_kernel_undo(&mut self, walk: Option<SemUndoWalk>) {
        self.kernel_undo = walk;
        self.asleep_after_undo_walk = None;
    }

    /// The traced waits (tid, start) found asleep right after the last SEM_UNDO walk.
    pub fn set_asleep_after_undo_walk(&mut self, waits: impl IntoIterator<Item = (u32, u64)>) {
        self.asleep_after_undo_walk = Some(waits.into_iter().collect());
    }

    pub fn kernel_undo(&self) -> Option<&SemUndoWalk> {
        self.kernel_undo.as_ref()
    }

    /// (namespace, id, nsems) of every set whose size is known: what the SEM_UNDO reader needs.
    pub fn sem_sizes(&self) -> Vec<(u32, i32, u32)> {
        self.table
            .values()
            .filter_map(|o| Some((o.identity.ns, o.identity.id, o.semaphores()?.nsems?)))
            .collect()
    }

    /// Whether any task waits on a semaphore (the kernel's counts, named or not).
    pub fn has_sem_waiters(&self) -> bool {
        self.table
            .values()
            .filter_map(IpcObject::semaphores)
            .flat_map(|s| &s.sems)
            .any(|s| s.ncount + s.zcount > 0)
    }

    /// Gives waits whose start is only bounded the time their semop was entered, where
    /// `entered(tid)` knows it (the call began while we traced): their waits become exact.
    pub fn set_wait_starts(&mut self, entered: impl Fn(u32) -> Option<u64>) {
        for set in self.table.values_mut().filter_map(|o| match &mut o.state {
            ObjectState::Sem(s) => Some(s),
            _ => None,
        }) {
            for w in set.sems.iter_mut().flat_map(|s| s.waiters.iter_mut()) {
                if w.exact {
                    continue;
                }
                if let Some(ts) = entered(w.tid).filter(|&ts| ts <= w.since_ns) {
                    w.since_ns = ts;
                    w.exact = true;
                }
            }
        }
    }

    /// The holders of semaphore `num` of set `identity`, each with how it is known.
    pub fn holders(&self, identity: ObjectKey, num: usize) -> Vec<Holder> {
        let Some(set) = self.table.get(&identity).and_then(IpcObject::semaphores) else {
            return Vec::new();
        };
        let Some(sem) = set.sems.get(num) else {
            return Vec::new();
        };
        let waiters: Vec<u32> = sem.waiters.iter().map(|w| w.pid).collect();
        let traced_undo = set
            .undo
            .iter()
            .filter_map(|(pid, adj)| Some((*pid, *adj.get(num)?, self.comm_of(*pid))))
            .collect();
        let now = SemNow {
            slot: SemSlot {
                ns: identity.ns,
                id: identity.id,
                num: num as u16,
            },
            value: sem.value,
            max_value: sem.max_value,
            last_pid: sem.last_pid,
            last_comm: sem.last_comm,
            ncount: sem.ncount,
            waiters: &waiters,
            traced_undo,
        };
        // The kernel's lists cover the namespace ipctrace reads (its own) only.
        let kernel = self
            .kernel_undo
            .as_ref()
            .filter(|_| self.own_ns == Some(identity.ns));
        let mut found = holders::holders_of(&now, kernel, &self.ledger, |pid| {
            pid == sem.last_pid && sem.last_pid_alive
        });
        for h in &mut found {
            h.comm = h.comm.or_else(|| self.comm_of(h.pid));
        }
        found
    }

    /// Every deadlock among the waiters the model knows, once each. A holder known from the
    /// ledger counts for a wait only once the ledger is current to the wait's start: a
    /// release made before it (the waiter's own, say) may still be in the ring buffer. One
    /// known from the kernel's SEM_UNDO lists counts for a traced wait only if the wait was
    /// still asleep after the walk: the waiters are read before it, and a waiter woken
    /// meanwhile holds the unit it waited for.
    pub fn deadlocks(&self) -> Vec<Deadlock> {
        let mut waits = Vec::new();
        for o in self.iter() {
            let Some(set) = o.semaphores() else { continue };
            for (num, sem) in set.sems.iter().enumerate() {
                if sem.waiters.is_empty() {
                    continue;
                }
                let holders: Vec<Holder> = self
                    .holders(o.identity, num)
                    .into_iter()
                    .filter(|h| !h.exited)
                    .collect();
                let name = SemName {
                    ns: o.identity.ns,
                    id: o.identity.id,
                    key: o.ipc_key,
                    num: num as u16,
                };
                for w in &sem.waiters {
                    let ledger_current = self.applied_through_ns >= w.since_ns;
                    let asleep_through_walk = !w.exact
                        || self
                            .asleep_after_undo_walk
                            .as_ref()
                            .is_none_or(|asleep| asleep.contains(&(w.tid, w.since_ns)));
                    // Each holder that counts for this wait, and whether it is only a guess.
                    let linked = holders.iter().filter_map(|h| {
                        let guessed = match h.source {
                            holders::HolderSource::Kernel => asleep_through_walk.then_some(false),
                            holders::HolderSource::Traced => {
                                ledger_current.then_some(self.ledger_gaps)
                            }
                            holders::HolderSource::Inferred => Some(true),
                        };
                        guessed.map(|g| (h.pid, g))
                    });
                    waits.push(WaitFor {
                        pid: w.pid,
                        comm: w.comm,
                        waits: name,
                        since_ns: w.since_ns,
                        holders: linked.collect(),
                    });
                }
            }
        }
        deadlocks::find_deadlocks(&waits)
    }
}

/// Whether a call counts as using or changing its object (for `last_op`): queries such as
/// IPC_STAT or GETVAL only look.
fn touches(call: &Call) -> bool {
    let Some(cmd) = call.cmd() else { return true };
    matches!(
        (call.kind(), cmd),
        (_, syscalls::IPC_RMID | syscalls::IPC_SET)
            | (IpcKind::Sem, syscalls::SETVAL | syscalls::SETALL)
            | (IpcKind::Shm, syscalls::SHM_LOCK | syscalls::SHM_UNLOCK)
    )
}
