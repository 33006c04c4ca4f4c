//! Wait statistics for `ipctrace lat`: per object, semaphore or process, how many calls came,
//! how many really blocked and for how long (HDR and log2 histograms), how those waits ended
//! (timeout, EINTR, EIDRM) and who released the waiters.

use crate::decoder::syscalls::{self, IpcKind, Op};
use crate::decoder::{Call, Comm};
use crate::model::FastMap;
use hdrhistogram::Histogram;
use std::collections::HashMap;

/// How waits are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    #[default]
    Object,
    Semnum,
    Process,
}

/// What one histogram describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitGroup {
    pub kind: IpcKind,
    pub ipc_ns: u32,
    pub id: i32,
    /// The semaphore the call waited on (`--by semnum`).
    pub semnum: Option<u16>,
    /// The waiting process (`--by process`).
    pub pid: Option<u32>,
}

/// The process and command of a waiter or waker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Caller {
    pub pid: u32,
    pub comm: Comm,
}

pub const LOG2_SLOTS: usize = 64;

/// Waits in one group (see `GroupBy`).
#[derive(Debug, Clone, Default)]
pub struct WaitStats {
    pub calls: u64,
    pub blocked: u64,
    pub blocked_total_ns: u64,
    pub timeouts: u64,
    pub interrupted: u64,
    pub removed: u64,
    /// Blocked waits, nanoseconds, 3 significant digits; made at the first (at 16 KiB and up,
    /// not for each of the many groups whose calls all take the fast path).
    pub hdr: Option<Histogram<u64>>,
    pub wakers: FastMap<Caller, u64>,
    pub waiters: FastMap<Caller, (u64, u64)>, // waits, total blocked ns
    /// The process of the latest call, blocked or not: names a `--by process` group whose calls
    /// all took the fast path.
    pub last_caller: Option<Caller>,
}

/// The log2 slot of a value: 0 for 0, else 1 + floor(log2 v).
pub fn log2_slot(v: u64) -> usize {
    (64 - v.leading_zeros()) as usize
}

/// The range [lo, hi] of a log2 slot.
pub fn log2_range(slot: usize) -> (u64, u64) {
    match slot {
        0 => (0, 0),
        64.. => (1 << 63, u64::MAX),
        s => (1 << (s - 1), (1 << s) - 1),
    }
}

impl WaitStats {
    pub fn percentile(&self, q: f64) -> u64 {
        self.hdr
            .as_ref()
            .filter(|h| !h.is_empty())
            .map_or(0, |h| h.value_at_quantile(q))
    }

    pub fn max(&self) -> u64 {
        self.hdr
            .as_ref()
            .filter(|h| !h.is_empty())
            .map_or(0, |h| h.max())
    }

    /// Blocked waits by power of two of `unit_ns`: slot s holds [2^(s-1), 2^s) units (slot 0:
    /// under one unit). Derived from the one histogram the waits are recorded in: HDR buckets
    /// never straddle a power of two, so in nanoseconds the counts are exact.
    pub fn log2_buckets(&self, unit_ns: u64) -> [u64; LOG2_SLOTS] {
        let mut slots = [0u64; LOG2_SLOTS];
        for v in self.hdr.iter().flat_map(|h| h.iter_recorded()) {
            let slot = log2_slot(v.value_iterated_to() / unit_ns.max(1)).min(LOG2_SLOTS - 1);
            slots[slot] += v.count_at_value();
        }
        slots
    }

    /// Wakers, most first (ties by pid).
    pub fn top_wakers(&self) -> Vec<(Caller, u64)> {
        let mut v: Vec<(Caller, u64)> = self.wakers.iter().map(|(t, n)| (*t, *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    fn record(&mut self, call: &Call, count_call: bool) {
        if count_call {
            self.calls += 1;
        }
        self.last_caller = Some(Caller {
            pid: call.pid,
            comm: call.comm,
        });
        match call.errno() {
            Some(syscalls::EAGAIN) if call.timed() && call.blocked_ns > 0 => self.timeouts += 1,
            Some(e) if syscalls::interrupted(e) => self.interrupted += 1,
            Some(syscalls::EIDRM) => self.removed += 1,
            _ => {}
        }
        if call.blocked_ns == 0 {
            return;
        }
        self.blocked += 1;
        self.blocked_total_ns += call.blocked_ns;
        let hdr = self
            .hdr
            .get_or_insert_with(|| Histogram::new(3).expect("3 significant digits is valid"));
        let _ = hdr.record(call.blocked_ns.max(1));
        let waiter = self
            .waiters
            .entry(Caller {
                pid: call.pid,
                comm: call.comm,
            })
            .or_default();
        waiter.0 += 1;
        waiter.1 += call.blocked_ns;
        // A timed-out wait was ended by a timer, not by a process.
        if let Some(w) = call
            .waker
            .filter(|_| call.errno() != Some(syscalls::EAGAIN))
        {
            *self
                .wakers
                .entry(Caller {
                    pid: w.pid,
                    comm: w.comm,
                })
                .or_default() += 1;
        }
    }
}

/// The semaphore a semop call waits on: the first operation that can block (a decrement or a
/// wait-for-zero). The kernel sleeps on the first operation that cannot proceed; without the
/// values at that instant, the first that can block is the best guess, and exact for the
/// common single-operation call.
pub fn blocking_semnum(call: &Call) -> Option<u16> {
    let sops = call.sops();
    sops.iter()
        .find(|s| s.op <= 0)
        .or(sops.first())
        .map(|s| s.num)
}

/// All wait statistics of a session, grouped one way.
#[derive(Debug, Default)]
pub struct Waits {
    pub by: GroupBy,
    /// Which families count: semaphores, and message queues with `--type msg`.
    pub kinds: Vec<IpcKind>,
    pub stats: FastMap<WaitGroup, WaitStats>,
    /// The calls are counted elsewhere (by the kernel, handed over with `add_calls`; or, for
    /// top, by the object model's op counts): the calls recorded one by one are the waits.
    calls_counted_elsewhere: bool,
}

impl Waits {
    pub fn new(by: GroupBy, kinds: Vec<IpcKind>) -> Waits {
        Waits {
            by,
            kinds,
            stats: FastMap::default(),
            calls_counted_elsewhere: false,
        }
    }

    /// Calls are counted elsewhere: by the kernel and handed over with `add_calls` (per object
    /// only), or not here at all. `record` then keeps only the calls that slept or failed, and
    /// passes over the rest (most calls, the fast path) before any lookup.
    pub fn counting_calls_elsewhere(mut self) -> Waits {
        self.calls_counted_elsewhere = true;
        self
    }

    /// `n` more calls on one object that can wait (semop, msgsnd, msgrcv), counted in the kernel.
    pub fn add_calls(&mut self, kind: IpcKind, ipc_ns: u32, id: i32, n: u64) {
        if n == 0 || self.by != GroupBy::Object || !self.kinds.contains(&kind) {
            return;
        }
        let group = WaitGroup {
            kind,
            ipc_ns,
            id,
            semnum: None,
            pid: None,
        };
        self.stats.entry(group).or_default().calls += n;
    }

    pub fn record(&mut self, call: &Call) {
        let waits = matches!(
            call.op,
            Op::Semop | Op::Semtimedop | Op::Msgsnd | Op::Msgrcv
        );
        if !waits || !self.kinds.contains(&call.kind()) {
            return;
        }
        // Uncounted, a call that neither slept nor failed adds nothing to any figure here.
        if self.calls_counted_elsewhere && call.blocked_ns == 0 && call.succeeded() {
            return;
        }
        let Some(id) = call.id() else { return };
        let group = WaitGroup {
            kind: call.kind(),
            ipc_ns: call.ipc_ns,
            id,
            semnum: match self.by {
                GroupBy::Semnum => blocking_semnum(call),
                _ => None,
            },
            pid: match self.by {
                GroupBy::Process => Some(call.pid),
                _ => None,
            },
        };
        let count_call = !self.calls_counted_elsewhere;
        self.stats
            .entry(group)
            .or_default()
            .record(call, count_call);
    }

    /// Keys with at least one call, hottest (most blocked time) first.
    pub fn hottest(&self) -> Vec<(&WaitGroup, &WaitStats)> {
        let mut v: Vec<_> = self.stats.iter().collect();
        v.sort_by(|a, b| {
            b.1.blocked_total_ns
                .cmp(&a.1.blocked_total_ns)
                .then(a.0.cmp(b.0))
        });
        v
    }

    /// Waiters over all groups: (task, waits, blocked ns), most blocked time first.
    pub fn top_waiters(&self) -> Vec<(Caller, u64, u64)> {
        let mut all: HashMap<Caller, (u64, u64)> = HashMap::new();
        for s in self.stats.values() {
            for (t, (n, ns)) in &s.waiters {
                let e = all.entry(*t).or_default();
                e.0 += n;
                e.1 += ns;
            }
        }
        let mut v: Vec<_> = all.into_iter().map(|(t, (n, ns))| (t, n, ns)).collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        v
    }

    /// Wakers over all groups, most first.
    pub fn top_wakers(&self) -> Vec<(Caller, u64)> {
        let mut all: HashMap<Caller, u64> = HashMap::new();
        for s in self.stats.values() {
            for (t, n) in &s.wakers {
                *all.entry(*t).or_default() += n;
            }
        }
        let mut v: Vec<_> = all.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Starts a new interval.
    pub fn clear(&mut self) {
        self.stats.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{SemOp, Waker};

    fn semop(pid: u32, id: i32, num: u16, blocked_ns: u64, waker: Option<u32>, ret: i64) -> Call {
        let mut c = Call::synthetic(
            Op::Semtimedop,
            pid,
            "waiter",
            [id as u64, 0, 1, 0, 0, 0],
            ret,
            1,
        )
        .with_sops(&[SemOp {
            num,
            op: -1,
            flg: 0,
        }]);
        c.blocked_ns = blocked_ns;
        c.waker = waker.map(|pid| Waker {
            pid,
            tid: pid,
            comm: Comm::new("holder"),
        });
        c
    }

    #[test]
    fn counts_calls_blocked_waits_and_wakers_per_object() {
        let mut w = Waits::new(GroupBy::Object, vec![IpcKind::Sem]);
        w.record(&semop(10, 5, 0, 0, None, 0));
        w.record(&semop(10, 5, 0, 2_000_000, Some(20), 0));
        w.record(&semop(11, 5, 1, 4_000_000, Some(20), 0));
        w.record(&semop(11, 6, 0, 1_000, Some(21), 0));
        let s = &w.stats[&WaitGroup {
            kind: IpcKind::Sem,
            ipc_ns: 0,
            id: 5,
            semnum: None,
            pid: None,
        }];
        assert_eq!((s.calls, s.blocked, s.blocked_total_ns), (3, 2, 6_000_000));
        assert_eq!(s.top_wakers()[0].1, 2);
        assert_eq!(s.top_wakers()[0].0.pid, 20);
        let p50 = s.percentile(0.5) as f64;
        assert!((p50 - 2_000_000.0).abs() / 2e6 < 0.01, "{p50}");
        assert!((s.max() as f64 - 4e6).abs() / 4e6 < 0.01);
        assert_eq!(s.log2_buckets(1)[log2_slot(2_000_000)], 1);
        assert_eq!(w.hottest()[0].0.id, 5);
        assert_eq!(w.top_waiters()[0].0.pid, 11);
        assert_eq!(
            w.top_wakers()[0],
            (
                Caller {
                    pid: 20,
                    comm: Comm::new("holder")
                },
                2
            )
        );
    }

    #[test]
    fn by_semnum_and_by_process_split_the_groups() {
        let mut w = Waits::new(GroupBy::Semnum, vec![IpcKind::Sem]);
        w.record(&semop(10, 5, 0, 10, Some(2), 0));
        w.record(&semop(10, 5, 1, 0, None, 0));
        assert_eq!(w.stats.len(), 2);
        assert!(w.stats.keys().any(|k| k.semnum == Some(1)));
        let mut w = Waits::new(GroupBy::Process, vec![IpcKind::Sem]);
        w.record(&semop(10, 5, 0, 10, Some(2), 0));
        w.record(&semop(11, 5, 0, 10, Some(2), 0));
        assert_eq!(w.stats.len(), 2);
        assert!(w.stats.keys().all(|k| k.pid.is_some()));
    }

    #[test]
    fn outcomes_are_counted_apart_and_timeouts_have_no_waker() {
        let mut w = Waits::new(GroupBy::Object, vec![IpcKind::Sem]);
        let mut timed_out = semop(1, 5, 0, 1_000_000, Some(0), -11);
        timed_out.args[3] = 0x7ffd_0000; // the timeout's address: lat leaves the value unread
        w.record(&timed_out);
        w.record(&semop(1, 5, 0, 5_000, Some(9), -4));
        w.record(&semop(1, 5, 0, 5_000, Some(8), -43));
        w.record(&semop(1, 5, 0, 0, None, -11)); // IPC_NOWAIT: not a timeout
        let s = w.stats.values().next().unwrap();
        assert_eq!(
            (s.timeouts, s.interrupted, s.removed, s.calls, s.blocked),
            (1, 1, 1, 4, 3)
        );
        assert_eq!(s.wakers.len(), 2, "the timer is nobody");
    }

    #[test]
    fn queues_count_only_with_their_type_and_other_calls_never() {
        let mut w = Waits::new(GroupBy::Object, vec![IpcKind::Sem]);
        let mut rcv = Call::synthetic(Op::Msgrcv, 1, "r", [3, 0, 8, 0, 0, 0], 8, 1);
        rcv.blocked_ns = 10;
        w.record(&rcv);
        w.record(&Call::synthetic(
            Op::Semctl,
            1,
            "r",
            [3, 0, 12, 0, 0, 0],
            0,
            1,
        ));
        assert!(w.stats.is_empty());
        let mut w = Waits::new(GroupBy::Object, vec![IpcKind::Msg]);
        w.record(&rcv);
        assert_eq!(w.stats.values().next().unwrap().blocked, 1);
    }

    #[test]
    fn groups_whose_calls_never_block_hold_no_histogram() {
        let mut w = Waits::new(GroupBy::Object, vec![IpcKind::Sem]);
        for id in 0..100_000 {
            w.record(&semop(10, id, 0, 0, None, 0));
        }
        assert!(w.stats.values().all(|s| s.hdr.is_none()));
        let s = &w.stats[&WaitGroup {
            kind: IpcKind::Sem,
            ipc_ns: 0,
            id: 7,
            semnum: None,
            pid: None,
        }];
        assert_eq!((s.calls, s.percentile(0.5), s.max()), (1, 0, 0));
    }

    #[test]
    fn calls_counted_in_the_kernel_are_added_and_not_counted_again() {
        let mut w = Waits::new(GroupBy::Object, vec![IpcKind::Sem]).counting_calls_elsewhere();
        // The kernel counted 10 calls on set 9, one of which slept and streamed.
        w.add_calls(IpcKind::Sem, 0, 9, 10);
        w.record(&semop(4, 9, 0, 5_000, Some(7), 0));
        w.add_calls(IpcKind::Msg, 0, 3, 4);
        assert_eq!(w.stats.len(), 1, "queues were not asked for");
        let s = w.stats.values().next().unwrap();
        assert_eq!((s.calls, s.blocked, s.wakers.len()), (10, 1, 1));
        // Streaming every call, each counts itself.
        let mut w = Waits::new(GroupBy::Object, vec![IpcKind::Sem]);
        w.record(&semop(4, 9, 0, 5_000, Some(7), 0));
        w.add_calls(IpcKind::Sem, 0, 9, 0);
        assert_eq!(w.stats.values().next().unwrap().calls, 1);
    }

    #[test]
    fn calls_counted_elsewhere_leave_only_the_waits_and_the_failures() {
        let mut w = Waits::new(GroupBy::Semnum, vec![IpcKind::Sem]).counting_calls_elsewhere();
        // The fast path: no group is made for it.
        w.record(&semop(4, 9, 0, 0, None, 0));
        assert!(w.stats.is_empty());
        // A wait that slept, and one a signal ended before it slept, still count.
        w.record(&semop(4, 9, 0, 5_000, Some(7), 0));
        w.record(&semop(5, 9, 0, 0, None, -syscalls::EINTR));
        let s = w.stats.values().next().unwrap();
        assert_eq!(
            (w.stats.len(), s.calls, s.blocked, s.interrupted),
            (1, 0, 1, 1)
        );
    }

    #[test]
    fn log2_slots_cover_every_value() {
        assert_eq!(log2_slot(0), 0);
        assert_eq!(log2_slot(1), 1);
        assert_eq!(log2_slot(1023), 10);
        assert_eq!(log2_slot(1024), 11);
        assert_eq!(log2_range(11), (1024, 2047));
        assert_eq!(log2_range(64).1, u64::MAX);
        assert_eq!(log2_slot(u64::MAX), 64);
    }

    #[test]
    fn the_blocking_semaphore_is_the_first_that_can_block() {
        let c = Call::synthetic(Op::Semop, 1, "x", [1, 0, 0, 0, 0, 0], 0, 1).with_sops(&[
            SemOp {
                num: 3,
                op: 1,
                flg: 0,
            },
            SemOp {
                num: 2,
                op: -1,
                flg: 0,
            },
        ]);
        assert_eq!(blocking_semnum(&c), Some(2));
    }
}
