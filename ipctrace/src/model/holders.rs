//! Who holds each semaphore, and how that is known: the kernel's own SEM_UNDO adjustments, the
//! ledger of completed operations seen while tracing, or a guess from the kernel's last-op pid.
//! A semaphore used as a counter (producers only give, consumers only take) has no holder.

use crate::decoder::sem_undo::SemUndoWalk;
use crate::decoder::syscalls::{self, Op};
use crate::decoder::{Call, Comm};
use crate::model::FastMap;
use std::collections::BTreeMap;

/// How a holder is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HolderSource {
    /// The kernel's SEM_UNDO adjustment of the process (it gives the units back at exit).
    Kernel,
    /// Operations seen while tracing: the process took more than it gave back.
    Traced,
    /// A guess: the semaphore is at 0 with waiters, and the kernel's last-op pid is alive.
    Inferred,
}

impl HolderSource {
    pub fn name(self) -> &'static str {
        match self {
            HolderSource::Kernel => "kernel",
            HolderSource::Traced => "traced",
            HolderSource::Inferred => "inferred",
        }
    }
}

/// A process holding units of one semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub comm: Option<Comm>,
    pub units: u32,
    pub source: HolderSource,
    /// The process has exited without giving the units back (taken without SEM_UNDO).
    pub exited: bool,
    /// For an inferred holder, why it is thought to hold.
    pub why: Option<String>,
}

/// One semaphore: a set (namespace, id) and a number in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SemSlot {
    pub ns: u32,
    pub id: i32,
    pub num: u16,
}

/// What one process did to one semaphore without SEM_UNDO since tracing began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Taken {
    /// Units taken minus units given back.
    net: i64,
    takes: u64,
    gives: u64,
    comm: Comm,
    last_take_ns: u64,
    exited: bool,
}

/// The ledger of completed operations made without SEM_UNDO (the kernel keeps no record of
/// those), per semaphore and process. Fed by calls; SEM_UNDO operations are the kernel's.
#[derive(Debug, Default)]
pub struct Ledger {
    sems: FastMap<SemSlot, BTreeMap<u32, Taken>>,
}

/// A process that only ever gave (or only took) this often is one side of a counter.
const COUNTER_SIDE_OPS: u64 = 2;

impl Ledger {
    pub fn apply_call(&mut self, call: &Call) {
        match call.op {
            Op::Semop | Op::Semtimedop if call.succeeded() => {
                let sops = call.sops();
                if sops.len() as u64 != call.nsops().unwrap_or(0) {
                    return; // operations we could not read: the ledger would lie
                }
                for s in sops {
                    if s.op == 0 || s.flg as i64 & syscalls::SEM_UNDO != 0 {
                        continue;
                    }
                    let slot = SemSlot {
                        ns: call.ipc_ns,
                        id: call.id().unwrap_or(-1),
                        num: s.num,
                    };
                    let by_pid = self.sems.entry(slot).or_default();
                    let entry = by_pid.entry(call.pid).or_insert(Taken {
                        net: 0,
                        takes: 0,
                        gives: 0,
                        comm: call.comm,
                        last_take_ns: 0,
                        exited: false,
                    });
                    if entry.exited {
                        // The pid came back as another process: the old one's units stay lost
                        // to the semaphore, but are no longer this pid's.
                        *entry = Taken {
                            net: 0,
                            takes: 0,
                            gives: 0,
                            comm: call.comm,
                            last_take_ns: 0,
                            exited: false,
                        };
                    }
                    entry.comm = call.comm;
                    if s.op < 0 {
                        entry.net += -(s.op as i64);
                        entry.takes += 1;
                        entry.last_take_ns = call.ts_ns;
                    } else {
                        entry.net -= s.op as i64;
                        entry.gives += 1;
                    }
                }
            }
            Op::Semctl if call.succeeded() => {
                let (ns, id) = (call.ipc_ns, call.id().unwrap_or(-1));
                match call.cmd() {
                    // A value set by hand starts the semaphore's story again.
                    Some(syscalls::SETVAL) => {
                        let num = call.semnum().unwrap_or(-1);
                        if let Ok(num) = u16::try_from(num) {
                            self.sems.remove(&SemSlot { ns, id, num });
                        }
                    }
                    Some(syscalls::SETALL) | Some(syscalls::IPC_RMID) => self.forget_set(ns, id),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// A process exited: what it took without SEM_UNDO stays taken (the kernel gives nothing
    /// back), so it stays a holder, marked as gone.
    pub fn exited(&mut self, pid: u32) {
        for by_pid in self.sems.values_mut() {
            if let Some(t) = by_pid.get_mut(&pid) {
                t.exited = true;
            }
        }
    }

    pub fn forget_set(&mut self, ns: u32, id: i32) {
        self.sems.retain(|slot, _| slot.ns != ns || slot.id != id);
    }

    /// Whether any operation on the semaphore was seen.
    pub fn knows(&self, slot: SemSlot) -> bool {
        self.sems.contains_key(&slot)
    }

    /// Whether the semaphore is used as a counter: some process only gives, or only takes.
    pub fn is_counter(&self, slot: SemSlot) -> bool {
        self.sems.get(&slot).is_some_and(|by_pid| {
            by_pid.values().any(|t| {
                (t.takes == 0 && t.gives >= COUNTER_SIDE_OPS)
                    || (t.gives == 0 && t.takes >= COUNTER_SIDE_OPS)
            })
        })
    }

    /// The processes holding units of the semaphore, most recent taker first, at most
    /// `capacity` units in all: more than the semaphore could hand out means some of the
    /// units seen taken went back in ways the ledger cannot see.
    pub fn holders(&self, slot: SemSlot, capacity: u32) -> Vec<Holder> {
        if self.is_counter(slot) {
            return Vec::new();
        }
        let Some(by_pid) = self.sems.get(&slot) else {
            return Vec::new();
        };
        let mut takers: Vec<(&u32, &Taken)> = by_pid.iter().filter(|(_, t)| t.net > 0).collect();
        takers.sort_by_key(|(_, t)| std::cmp::Reverse(t.last_take_ns));
        let mut left = capacity as i64;
        let mut holders = Vec::new();
        for (pid, t) in takers {
            let units = t.net.min(left);
            if units <= 0 {
                break;
            }
            left -= units;
            holders.push(Holder {
                pid: *pid,
                comm: Some(t.comm),
                units: units as u32,
                source: HolderSource::Traced,
                exited: t.exited,
                why: None,
            });
        }
        holders
    }

    pub fn len(&self) -> usize {
        self.sems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sems.is_empty()
    }
}

/// What the holders of one semaphore are worked out from.
pub struct SemNow<'a> {
    pub slot: SemSlot,
    /// Its value now, if known.
    pub value: Option<i32>,
    /// The largest value it was seen to have (what it can hand out, at least).
    pub max_value: i32,
    /// The kernel's last-op pid (GETPID) and its name.
    pub last_pid: u32,
    pub last_comm: Option<Comm>,
    /// Tasks waiting for it to increase.
    pub ncount: u32,
    /// The pids waiting on it.
    pub waiters: &'a [u32],
    /// SEM_UNDO adjustments the model followed from the calls (pid, semadj), for when the
    /// kernel's own could not be read.
    pub traced_undo: Vec<(u32, i32, Option<Comm>)>,
}

/// The holders of one semaphore. `kernel`: the kernel's undo lists, when they could be read
/// (they name every SEM_UNDO holder of the namespace then); `alive`: whether a pid is a live
/// process (for the guess from the last-op pid).
pub fn holders_of(
    sem: &SemNow,
    kernel: Option<&SemUndoWalk>,
    ledger: &Ledger,
    alive: impl Fn(u32) -> bool,
) -> Vec<Holder> {
    let slot = sem.slot;
    let num = slot.num as usize;
    let mut holders = Vec::new();
    let mut last_pid_holds_no_undo = false;
    match kernel {
        Some(walk) => {
            for e in walk
                .entries
                .iter()
                .filter(|e| e.ipc_ns == slot.ns && e.semid == slot.id)
            {
                let adj = e.semadj.as_ref().and_then(|a| a.get(num)).copied();
                if e.pid == sem.last_pid && adj == Some(0) {
                    last_pid_holds_no_undo = true;
                }
                if let Some(units) = adj.filter(|&a| a > 0) {
                    holders.push(Holder {
                        pid: e.pid,
                        comm: Some(e.comm),
                        units: units as u32,
                        source: HolderSource::Kernel,
                        exited: false,
                        why: None,
                    });
                }
            }
        }
        None => {
            for &(pid, adj, comm) in &sem.traced_undo {
                if adj > 0 {
                    holders.push(Holder {
                        pid,
                        comm,
                        units: adj as u32,
                        source: HolderSource::Traced,
                        exited: false,
                        why: None,
                    });
                }
            }
        }
    }
    let held: u32 = holders.iter().map(|h| h.units).sum();
    let value = sem.value.unwrap_or(0).max(0);
    // What the semaphore could hand out beyond its value now and what SEM_UNDO holders took.
    let capacity = (sem.max_value as i64 - value as i64 - held as i64).max(0) as u32;
    for h in ledger.holders(slot, capacity) {
        match holders.iter_mut().find(|k| k.pid == h.pid) {
            Some(known) => known.units += h.units,
            None => holders.push(h),
        }
    }
    if holders.is_empty()
        && !ledger.knows(slot)
        && sem.value == Some(0)
        && sem.ncount > 0
        && sem.last_pid > 0
        && !sem.waiters.contains(&sem.last_pid)
        && !last_pid_holds_no_undo
        && alive(sem.last_pid)
    {
        holders.push(Holder {
            pid: sem.last_pid,
            comm: sem.last_comm,
            units: 1,
            source: HolderSource::Inferred,
            exited: false,
            why: Some(format!(
                "probably: it was the last to operate on it (GETPID), it is at 0 and {} wait",
                sem.ncount
            )),
        });
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::sem_undo::SemUndo;
    use crate::decoder::SemOp;

    const NS: u32 = 4026531839;

    fn semop(pid: u32, ts_ns: u64, id: i32, num: u16, op: i16, undo: bool) -> Call {
        let flg = if undo { syscalls::SEM_UNDO as i16 } else { 0 };
        let mut call = Call::synthetic(
            Op::Semtimedop,
            pid,
            "worker",
            [id as u64, 0, 0, 0, 0, 0],
            0,
            ts_ns,
        )
        .with_sops(&[SemOp { num, op, flg }]);
        call.ipc_ns = NS;
        call
    }

    fn slot(id: i32, num: u16) -> SemSlot {
        SemSlot { ns: NS, id, num }
    }

    fn sem(
        slot: SemSlot,
        value: i32,
        max_value: i32,
        last_pid: u32,
        waiters: &[u32],
    ) -> SemNow<'_> {
        SemNow {
            slot,
            value: Some(value),
            max_value,
            last_pid,
            last_comm: Some(Comm::new("last")),
            ncount: waiters.len() as u32,
            waiters,
            traced_undo: Vec::new(),
        }
    }

    fn pids(holders: &[Holder]) -> Vec<(u32, u32, HolderSource)> {
        holders.iter().map(|h| (h.pid, h.units, h.source)).collect()
    }

    #[test]
    fn a_mutex_without_sem_undo_is_held_by_whoever_took_it_last() {
        let mut ledger = Ledger::default();
        for (i, pid) in [10, 11, 10].into_iter().enumerate() {
            ledger.apply_call(&semop(pid, 100 * i as u64, 3, 0, -1, false));
            ledger.apply_call(&semop(pid, 100 * i as u64 + 50, 3, 0, 1, false));
        }
        ledger.apply_call(&semop(11, 1000, 3, 0, -1, false));
        let now = sem(slot(3, 0), 0, 1, 11, &[10]);
        assert_eq!(
            pids(&holders_of(&now, None, &ledger, |_| true)),
            [(11, 1, HolderSource::Traced)]
        );
        // Its exit gives nothing back: still the holder, now a gone one.
        ledger.exited(11);
        let h = holders_of(&now, None, &ledger, |_| false);
        assert_eq!((h[0].pid, h[0].exited), (11, true));
    }

    #[test]
    fn counters_have_no_holder() {
        let mut ledger = Ledger::default();
        for i in 0..5 {
            ledger.apply_call(&semop(20, 10 * i, 4, 0, 1, false)); // producer
            ledger.apply_call(&semop(21, 10 * i + 5, 4, 0, -1, false)); // consumer
        }
        assert!(ledger.is_counter(slot(4, 0)));
        let now = sem(slot(4, 0), 0, 5, 21, &[21]);
        assert!(holders_of(&now, None, &ledger, |_| true).is_empty());
        // Known from the trace: no guess either, even with the producer as the last-op pid.
        let now = sem(slot(4, 0), 0, 5, 20, &[21]);
        assert!(holders_of(&now, None, &ledger, |_| true).is_empty());
    }

    #[test]
    fn never_more_units_than_the_semaphore_hands_out() {
        let mut ledger = Ledger::default();
        // Three takers of a semaphore that holds 2: one of them must have given back unseen.
        ledger.apply_call(&semop(30, 1, 5, 0, -1, false));
        ledger.apply_call(&semop(31, 2, 5, 0, -1, false));
        ledger.apply_call(&semop(32, 3, 5, 0, -1, false));
        let now = sem(slot(5, 0), 0, 2, 32, &[]);
        let h = holders_of(&now, None, &ledger, |_| true);
        assert_eq!(
            pids(&h),
            [(32, 1, HolderSource::Traced), (31, 1, HolderSource::Traced)]
        );
    }

    #[test]
    fn the_kernels_undo_lists_name_sem_undo_holders() {
        let walk = SemUndoWalk {
            entries: vec![
                SemUndo {
                    pid: 40,
                    comm: Comm::new("a"),
                    ipc_ns: NS,
                    semid: 6,
                    semadj: Some(vec![0, 2]),
                },
                SemUndo {
                    pid: 41,
                    comm: Comm::new("b"),
                    ipc_ns: NS,
                    semid: 6,
                    semadj: Some(vec![1, -1]),
                },
            ],
            ..Default::default()
        };
        let ledger = Ledger::default();
        let h = holders_of(
            &sem(slot(6, 1), 0, 3, 40, &[42]),
            Some(&walk),
            &ledger,
            |_| true,
        );
        assert_eq!(pids(&h), [(40, 2, HolderSource::Kernel)]);
        let h = holders_of(
            &sem(slot(6, 0), 0, 1, 41, &[]),
            Some(&walk),
            &ledger,
            |_| true,
        );
        assert_eq!(pids(&h), [(41, 1, HolderSource::Kernel)]);
    }

    #[test]
    fn a_guess_only_when_nothing_better_is_known() {
        let ledger = Ledger::default();
        let empty = SemUndoWalk::default();
        let h = holders_of(
            &sem(slot(7, 0), 0, 0, 50, &[51]),
            Some(&empty),
            &ledger,
            |p| p == 50,
        );
        assert_eq!(pids(&h), [(50, 1, HolderSource::Inferred)]);
        assert!(h[0].why.as_deref().unwrap().starts_with("probably"));
        // Not when the last-op pid is gone, waits itself, or the semaphore is not at 0.
        assert!(holders_of(&sem(slot(7, 0), 0, 0, 50, &[51]), None, &ledger, |_| false).is_empty());
        assert!(holders_of(&sem(slot(7, 0), 0, 0, 51, &[51]), None, &ledger, |_| true).is_empty());
        assert!(holders_of(&sem(slot(7, 0), 1, 1, 50, &[]), None, &ledger, |_| true).is_empty());
        // Nor when the kernel shows it uses SEM_UNDO on that semaphore and holds none.
        let walk = SemUndoWalk {
            entries: vec![SemUndo {
                pid: 50,
                comm: Comm::new("a"),
                ipc_ns: NS,
                semid: 7,
                semadj: Some(vec![0]),
            }],
            ..Default::default()
        };
        let h = holders_of(
            &sem(slot(7, 0), 0, 0, 50, &[51]),
            Some(&walk),
            &ledger,
            |_| true,
        );
        assert!(h.is_empty());
    }

    #[test]
    fn setval_starts_a_semaphores_story_again() {
        let mut ledger = Ledger::default();
        ledger.apply_call(&semop(60, 1, 8, 0, -1, false));
        assert!(ledger.knows(slot(8, 0)));
        let mut setval = Call::synthetic(Op::Semctl, 61, "admin", [8, 0, 16, 1, 0, 0], 0, 2);
        setval.ipc_ns = NS;
        ledger.apply_call(&setval);
        assert!(!ledger.knows(slot(8, 0)));
    }
}
