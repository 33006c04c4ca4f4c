//! Seeding and correcting the object model from a `KernelSnapshot`: the kernel's numbers (nattch,
//! values, queue depths, last pids) win, objects created or removed unseen appear and go, while
//! what only calls can tell (creators, names, last operations) is kept where it still fits.

use super::{
    Actor, IpcObject, ObjectKey, ObjectState, Objects, Owner, QueueUser, QueueWaiter, SemWaiter,
    ShmAttachment,
};
use crate::decoder::syscalls::IpcKind;
use crate::decoder::{Comm, SemOp};
use crate::kernel_view::ctl::SemValue;
use crate::kernel_view::snapshot::{KernelSnapshot, MsgTable, SemTable, ShmTable};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

impl Objects {
    /// The objects a reading of the kernel's own view shows.
    pub fn from_snapshot(snapshot: &KernelSnapshot) -> Objects {
        let mut objects = Objects::new();
        objects.reconcile(snapshot);
        objects
    }

    /// The sets (of our namespace) whose values calls left unknown, with their sizes: a SETALL's
    /// array sits in the caller's memory, so they are to be read from the kernel
    /// (`refresh_sem_values`). Taking them empties the list.
    pub fn take_unknown_values(&mut self) -> Vec<(ObjectKey, u32)> {
        let unknown = std::mem::take(&mut self.unknown_values);
        let Some(ns) = self.own_ns else {
            return Vec::new();
        };
        unknown
            .into_iter()
            .filter(|identity| identity.ns == ns)
            .filter_map(|identity| {
                Some((identity, self.table.get(&identity)?.semaphores()?.nsems?))
            })
            .collect()
    }

    /// Segments of our namespace whose kernel count exceeds the mappings listed: a process
    /// forked or exited while the kernel's view was read, and its event is still on its way.
    pub fn segments_short_of_count(&self) -> Vec<ObjectKey> {
        let Some(ns) = self.own_ns else {
            return Vec::new();
        };
        self.table
            .values()
            .filter(|o| o.identity.ns == ns)
            .filter(|o| {
                o.segment().is_some_and(|s| {
                    s.nattch > s.attached.values().map(ShmAttachment::maps).sum::<u64>()
                })
            })
            .map(|o| o.identity)
            .collect()
    }

    /// Takes a segment's count of mappings as the kernel gave it at `taken_ns` (events from
    /// before then are already in it).
    pub fn recount_segment(&mut self, identity: ObjectKey, nattch: u64, taken_ns: u64) {
        if let Some(object) = self.table.get_mut(&identity) {
            if let ObjectState::Shm(seg) = &mut object.state {
                seg.nattch = nattch;
                object.refreshed_ns = taken_ns;
            }
        }
    }

    /// Takes a set's values, last pids and waiter counts as the kernel gave them at `taken_ns`:
    /// calls from before then are already in them.
    pub fn refresh_sem_values(&mut self, identity: ObjectKey, values: &[SemValue], taken_ns: u64) {
        let comms: HashMap<u32, Comm> = values
            .iter()
            .filter_map(|v| {
                let pid = v.last_pid.max(0) as u32;
                Some((pid, self.comm_of(pid)?))
            })
            .collect();
        let Some(object) = self.table.get_mut(&identity) else {
            return;
        };
        let ObjectState::Sem(state) = &mut object.state else {
            return;
        };
        if values.len() != state.sems.len() {
            return;
        }
        take_values(state, values, |pid| comms.get(&pid).copied());
        object.refreshed_ns = taken_ns;
    }

    /// Corrects the model with a snapshot of the kernel's view of its namespace. Objects of other
    /// namespaces are left as the calls made them.
    pub fn reconcile(&mut self, snap: &KernelSnapshot) {
        self.own_ns = Some(snap.ns);
        if let Some(table) = &snap.shm {
            self.reconcile_shm(snap, table);
        }
        if let Some(table) = &snap.sem {
            self.reconcile_sem(snap, table);
        }
        if let Some(table) = &snap.msg {
            self.reconcile_msg(snap, table);
        }
    }

    /// Drops the objects of one kind the kernel no longer lists: removed unseen.
    fn drop_vanished(&mut self, ns: u32, kind: IpcKind, live: &HashSet<i32>) {
        let vanished: Vec<ObjectKey> = self
            .table
            .keys()
            .filter(|k| k.ns == ns && k.kind == kind && !live.contains(&k.id))
            .copied()
            .collect();
        for identity in vanished {
            self.remove(identity);
        }
    }

    /// The object the kernel lists under `identity`: the one we know if `same` says it is, else a
    /// fresh one (the id was reused unseen).
    fn listed(
        &mut self,
        identity: ObjectKey,
        ipc_key: i32,
        taken_ns: u64,
        same: impl Fn(&IpcObject) -> bool,
    ) -> BTreeSet<u32> {
        if self.table.get(&identity).is_some_and(|o| !same(o)) {
            self.remove(identity);
        }
        match self.table.get(&identity) {
            Some(o) => o.pids(),
            None => {
                self.table
                    .insert(identity, IpcObject::new(identity, ipc_key, taken_ns));
                BTreeSet::new()
            }
        }
    }

    /// Brings the process index in line with an object's pids after a correction.
    fn reindex(&mut self, identity: ObjectKey, before: BTreeSet<u32>, comms: &HashMap<u32, Comm>) {
        let after = self
            .table
            .get(&identity)
            .map(IpcObject::pids)
            .unwrap_or_default();
        for pid in before.difference(&after) {
            self.unindex(*pid, identity);
        }
        for pid in after.difference(&before) {
            self.index(*pid, identity);
        }
        for pid in after {
            let entry = self.process_mut(pid);
            if entry.comm.is_none() {
                entry.comm = comms.get(&pid).copied();
            }
        }
    }

    fn reconcile_shm(&mut self, snap: &KernelSnapshot, table: &ShmTable) {
        let ns = snap.ns;
        let live: HashSet<i32> = table.segments.iter().map(|s| s.shmid).collect();
        self.drop_vanished(ns, IpcKind::Shm, &live);
        // A pid that /proc shows started otherwise than the process the model holds under it
        // is a new process's: the one held exited unseen.
        for process in &table.mappings {
            if let Some(start) = process.start {
                self.forget_predecessor(table.taken_ns, process.pid, |known| {
                    known.is_some_and(|k| !k.matches(start))
                });
            }
        }

        // Who maps what: contiguous mappings of one segment are one attachment split apart.
        let mut mapped: HashMap<i32, BTreeMap<u32, ShmAttachment>> = HashMap::new();
        let mut comms: HashMap<u32, Comm> = HashMap::new();
        for process in &table.mappings {
            let comm = Comm::new(&process.comm);
            comms.insert(process.pid, comm);
            let mut mappings = process.mappings.clone();
            mappings.sort_by_key(|m| m.start);
            let mut previous: Option<(i32, u64, u64)> = None; // shmid, span start, end
            for m in mappings {
                self.addresses.seed(process.pid, m.start, m.shmid);
                let attachment = mapped
                    .entry(m.shmid)
                    .or_default()
                    .entry(process.pid)
                    .or_default();
                attachment.comm = Some(comm);
                let start = match previous {
                    Some((id, span, end)) if id == m.shmid && end == m.start => span,
                    _ => m.start,
                };
                *attachment.spans.entry(start).or_default() += 1;
                previous = Some((m.shmid, start, m.end));
            }
        }

        for seg in &table.segments {
            let identity = ObjectKey {
                ns,
                kind: IpcKind::Shm,
                id: seg.shmid,
            };
            let before = self.listed(identity, seg.key, table.taken_ns, |o| {
                let key_fits = o.ipc_key == seg.key || (seg.removed() && seg.key == 0);
                let cpid_fits = o
                    .segment()
                    .and_then(|s| s.cpid)
                    .is_none_or(|c| c == seg.cpid);
                // A segment we saw removed cannot come back unremoved.
                let removal_fits = seg.removed() || !o.removed;
                key_fits && cpid_fits && removal_fits
            });
            let object = self.table.get_mut(&identity).expect("listed");
            object.ipc_key = seg.key;
            object.owner = Some(Owner {
                uid: seg.uid,
                gid: seg.gid,
            });
            object.mode = Some(seg.perms);
            object.removed = seg.removed();
            if object.creator.map(|c| c.pid) != Some(seg.cpid) {
                object.creator = Some(Actor {
                    pid: seg.cpid,
                    comm: snap.creator_comm(seg.cpid, seg.ctime),
                    ts_ns: None,
                    process: None,
                });
            }
            let ObjectState::Shm(state) = &mut object.state else {
                unreachable!("shm object")
            };
            state.size = Some(seg.size);
            state.nattch = seg.nattch;
            state.cpid = Some(seg.cpid);
            state.lpid = seg.lpid;
            let mut attached = mapped.remove(&seg.shmid).unwrap_or_default();
            // Who we may not look at keeps what the calls said it has.
            for (pid, kept) in &state.attached {
                if table.unreadable.contains(pid) {
                    attached.insert(*pid, kept.clone());
                }
            }
            state.attached = attached;
            self.reindex(identity, before, &comms);
        }
        // Their starts, so that a fork event still in the ring buffer is known for theirs.
        for process in &table.mappings {
            if let (Some(entry), Some(start)) =
                (self.processes.get_mut(&process.pid), process.start)
            {
                entry.start.get_or_insert(start);
            }
        }
        self.synced.insert((ns, IpcKind::Shm), table.taken_ns);
    }

    fn reconcile_sem(&mut self, snap: &KernelSnapshot, table: &SemTable) {
        let ns = snap.ns;
        let live: HashSet<i32> = table.sets.iter().map(|(s, _)| s.semid).collect();
        self.drop_vanished(ns, IpcKind::Sem, &live);
        let mut comms: HashMap<u32, Comm> = snap.comms.clone();
        for b in &table.blocked {
            comms.entry(b.pid).or_insert_with(|| Comm::new(&b.comm));
        }
        for (set, values) in &table.sets {
            let identity = ObjectKey {
                ns,
                kind: IpcKind::Sem,
                id: set.semid,
            };
            let before = self.listed(identity, set.key, table.taken_ns, |o| {
                o.ipc_key == set.key
                    && o.semaphores()
                        .and_then(|s| s.nsems)
                        .is_none_or(|n| n == set.nsems)
            });
            let object = self.table.get_mut(&identity).expect("listed");
            object.owner = Some(Owner {
                uid: set.uid,
                gid: set.gid,
            });
            object.mode = Some(set.perms);
            forget_impossible_creator(object, snap, set.ctime);
            let ObjectState::Sem(state) = &mut object.state else {
                unreachable!("sem object")
            };
            state.nsems = Some(set.nsems);
            state.sems.resize_with(set.nsems as usize, Default::default);
            if let Some(values) = values.as_ref().filter(|v| v.len() == state.sems.len()) {
                take_values(state, values, |pid| snap.comm(pid));
                let mut waiters: Vec<Vec<SemWaiter>> = vec![Vec::new(); values.len()];
                for b in table.blocked.iter().filter(|b| b.semid == set.semid) {
                    let Some((num, for_zero)) = blocking_semaphore(values, &b.sops) else {
                        continue;
                    };
                    let (since_ns, exact) = match b.entered_ns {
                        Some(entered) => (entered, true),
                        None => state.sems[num]
                            .waiters
                            .iter()
                            .find(|w| w.tid == b.tid && w.for_zero == for_zero)
                            // First seen now: waiting at least since then.
                            .map_or((table.taken_ns, false), |w| (w.since_ns, w.exact)),
                    };
                    waiters[num].push(SemWaiter {
                        pid: b.pid,
                        tid: b.tid,
                        comm: Some(Comm::new(&b.comm)),
                        for_zero,
                        since_ns,
                        exact,
                    });
                }
                for (sem, waiting) in state.sems.iter_mut().zip(waiters) {
                    sem.waiters = waiting;
                }
            }
            self.reindex(identity, before, &comms);
        }
        self.synced.insert((ns, IpcKind::Sem), table.taken_ns);
    }

    fn reconcile_msg(&mut self, snap: &KernelSnapshot, table: &MsgTable) {
        let ns = snap.ns;
        let live: HashSet<i32> = table.queues.iter().map(|(q, _)| q.msqid).collect();
        self.drop_vanished(ns, IpcKind::Msg, &live);
        for (queue, qbytes) in &table.queues {
            let identity = ObjectKey {
                ns,
                kind: IpcKind::Msg,
                id: queue.msqid,
            };
            let before = self.listed(identity, queue.key, table.taken_ns, |o| {
                o.ipc_key == queue.key
            });
            let object = self.table.get_mut(&identity).expect("listed");
            let first_look = object.known_since_ns == table.taken_ns;
            object.owner = Some(Owner {
                uid: queue.uid,
                gid: queue.gid,
            });
            object.mode = Some(queue.perms);
            forget_impossible_creator(object, snap, queue.ctime);
            let ObjectState::Msg(state) = &mut object.state else {
                unreachable!("msg object")
            };
            let followed = state
                .messages
                .as_ref()
                .map(|m| (m.len() as u64, m.iter().map(|(_, size)| size).sum::<u64>()));
            if first_look && queue.qnum == 0 {
                state.messages = Some(VecDeque::new());
            } else if followed != Some((queue.qnum, queue.cbytes)) {
                state.messages = None;
            }
            state.qnum = queue.qnum;
            state.cbytes = queue.cbytes;
            state.qbytes = qbytes.or(state.qbytes).or(table.msgmnb);
            state.lspid = queue.lspid;
            state.lrpid = queue.lrpid;
            state.last_send = named(state.last_send, queue.lspid, snap);
            state.last_recv = named(state.last_recv, queue.lrpid, snap);
            state.waiters = queue_waiters(&state.waiters, queue.msqid, table);
            let mut comms = snap.comms.clone();
            for w in &state.waiters {
                if let Some(comm) = w.comm {
                    comms.entry(w.pid).or_insert(comm);
                }
            }
            self.reindex(identity, before, &comms);
        }
        self.synced.insert((ns, IpcKind::Msg), table.taken_ns);
    }
}

/// Who waits on queue `msqid` now: the threads the snapshot found asleep on it, and, when it
/// did not walk /proc, those /proc showed before (waits begun before tracing, which no call in
/// flight lists) that no return or exit has ended since.
fn queue_waiters(known: &[QueueWaiter], msqid: i32, table: &MsgTable) -> Vec<QueueWaiter> {
    let mut waiters: Vec<QueueWaiter> = table
        .blocked
        .iter()
        .filter(|b| b.msqid == msqid)
        .map(|b| {
            let (since_ns, exact) = match b.entered_ns {
                Some(entered) => (entered, true),
                None => known
                    .iter()
                    .find(|w| w.tid == b.tid && w.op == b.op)
                    .map_or((table.taken_ns, false), |w| (w.since_ns, w.exact)),
            };
            QueueWaiter {
                pid: b.pid,
                tid: b.tid,
                comm: Some(Comm::new(&b.comm)),
                op: b.op,
                since_ns,
                exact,
            }
        })
        .collect();
    if !table.scanned {
        let kept: Vec<QueueWaiter> = known
            .iter()
            .filter(|w| !w.exact && !waiters.iter().any(|n| n.tid == w.tid))
            .copied()
            .collect();
        waiters.extend(kept);
    }
    waiters.sort_by_key(|w| (w.since_ns, w.tid));
    waiters
}

/// The kernel's values, last pids and counts; a last pid's name is kept when the pid is the
/// one calls named.
fn take_values(
    state: &mut super::SemaphoreSet,
    values: &[SemValue],
    comm_of: impl Fn(u32) -> Option<Comm>,
) {
    for (sem, kernel) in state.sems.iter_mut().zip(values) {
        sem.value = Some(kernel.value);
        sem.max_value = sem.max_value.max(kernel.value);
        let last_pid = kernel.last_pid.max(0) as u32;
        let live_comm = comm_of(last_pid);
        sem.last_pid_alive = live_comm.is_some();
        if sem.last_pid != last_pid || sem.last_comm.is_none() {
            sem.last_pid = last_pid;
            sem.last_comm = live_comm;
        }
        sem.ncount = kernel.ncount.max(0) as u32;
        sem.zcount = kernel.zcount.max(0) as u32;
    }
}

/// A creator whose call came after the kernel's last change of the object (ctime, which
/// creation sets) did not create it: the object was older than the call we took for it.
fn forget_impossible_creator(object: &mut IpcObject, snap: &KernelSnapshot, ctime: i64) {
    if let Some(ts) = object.creator.and_then(|c| c.ts_ns) {
        if snap.epoch_secs(ts) > ctime + 1 {
            object.creator = None;
        }
    }
}

/// The task behind a pid the kernel keeps: the one calls named if it matches, else whoever
/// holds the pid now.
fn named(known: Option<QueueUser>, pid: u32, snap: &KernelSnapshot) -> Option<QueueUser> {
    match known {
        _ if pid == 0 => None,
        Some(t) if t.pid == pid || t.tid == pid => Some(t),
        _ => Some(QueueUser {
            pid,
            tid: pid,
            comm: snap.comm(pid),
        }),
    }
}

/// The semaphore a sleeping semop is queued on, and whether it waits for zero: as the kernel
/// decides, the first operation that cannot proceed once the ones before it are applied. The
/// values were read a moment before the thread was seen asleep: if they say every operation
/// would proceed (the mutex was free in between), it waits on the first of its semaphores the
/// kernel counts waiters of that kind on. None when its operations are unknown (and the set has
/// not exactly one semaphore with waiters) or no count fits.
pub fn blocking_semaphore(values: &[SemValue], sops: &[SemOp]) -> Option<(usize, bool)> {
    simulated_block(values, sops).or_else(|| {
        sops.iter().find_map(|s| {
            let v = values.get(s.num as usize)?;
            let for_zero = s.op == 0;
            let counted = if for_zero { v.zcount } else { v.ncount };
            (s.op <= 0 && counted > 0).then_some((s.num as usize, for_zero))
        })
    })
}

/// `blocking_semaphore` as the values say, if they say it blocks.
fn simulated_block(values: &[SemValue], sops: &[SemOp]) -> Option<(usize, bool)> {
    if sops.is_empty() {
        let mut waited = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.ncount > 0 || v.zcount > 0);
        let (num, v) = waited.next()?;
        return waited.next().is_none().then_some((num, v.ncount == 0));
    }
    let mut now: Vec<i32> = values.iter().map(|v| v.value).collect();
    for s in sops {
        let num = s.num as usize;
        let value = *now.get(num)?;
        if s.op == 0 {
            if value != 0 {
                return Some((num, true));
            }
        } else if value + (s.op as i32) < 0 {
            return Some((num, false));
        } else {
            now[num] = value + s.op as i32;
        }
    }
    None
}
