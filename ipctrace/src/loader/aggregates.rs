//! The kernel-side aggregate maps seen from user space: reads them into a plain
//! `AggregateReading`, and deletes the entries of objects that are gone; and the plain calls
//! counted instead of streamed (`Counted`), as what each process added since the last look.

use crate::decoder::aggregates::{
    AggregateReading, CountedDelta, ObjectOpKey, WaitKey, WaitTotals, WaitingNow, WakerKey, Wakes,
};
use crate::decoder::syscalls::Op;
use crate::decoder::Comm;
use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap};
use ipctrace_common as common;

/// The aggregate maps, taken from the loaded object (`Probe::aggregates`).
pub struct Aggregates {
    pub(crate) call_totals: PerCpuArray<MapData, u64>,
    pub(crate) object_ops: PerCpuHashMap<MapData, ObjectOpKey, common::ObjectOpStats>,
    pub(crate) waits: PerCpuHashMap<MapData, WaitKey, common::WaitHistogram>,
    pub(crate) waiting: HashMap<MapData, u32, WaitingNow>,
    pub(crate) wakers: PerCpuHashMap<MapData, WakerKey, common::WakerCount>,
    pub(crate) full: PerCpuArray<MapData, u64>,
}

impl Aggregates {
    pub fn read(&self) -> Result<AggregateReading> {
        let mut reading = AggregateReading::default();
        for op in Op::ALL {
            for errno in 0..common::AGG_ERRNO_SLOTS {
                let slot = op.code() * common::AGG_ERRNO_SLOTS + errno;
                let n: u64 = self
                    .call_totals
                    .get(&slot, 0)
                    .context("reading call totals")?
                    .iter()
                    .sum();
                if n > 0 {
                    reading
                        .calls
                        .push((op, (errno != 0).then_some(errno as i64), n));
                }
            }
        }
        for entry in self.object_ops.iter() {
            // An entry deleted between listing and reading its key is simply gone.
            let Ok((key, per_cpu)) = entry else { continue };
            let (calls, errors) = per_cpu
                .iter()
                .fold((0, 0), |(c, e), s| (c + s.calls, e + s.errors));
            reading.object_ops.push((key, calls, errors));
        }
        for entry in self.waits.iter() {
            let Ok((key, per_cpu)) = entry else { continue };
            let mut totals = WaitTotals::default();
            for h in per_cpu.iter() {
                totals.count += h.count;
                totals.sum_ns += h.sum_ns;
                for (sum, n) in totals.slots.iter_mut().zip(h.slots) {
                    *sum += n;
                }
            }
            reading.waits.push((key, totals));
        }
        for entry in self.waiting.iter() {
            let Ok((tid, now)) = entry else { continue };
            reading.waiting.push((tid, now));
        }
        for entry in self.wakers.iter() {
            let Ok((key, per_cpu)) = entry else { continue };
            // Each CPU keeps the comm of the last wake it counted; any of them names the waker.
            let comm = per_cpu
                .iter()
                .find(|w| w.count > 0)
                .map_or([0; common::TASK_COMM_LEN], |w| w.comm);
            reading.wakers.push(Wakes {
                wait: key.wait,
                waker_pid: key.waker_pid,
                waker_comm: Comm::from_bytes(comm),
                count: per_cpu.iter().map(|w| w.count).sum(),
            });
        }
        for (i, slot) in reading.full.iter_mut().enumerate() {
            *slot = self
                .full
                .get(&(i as u32), 0)
                .context("reading aggregate counters")?
                .iter()
                .sum();
        }
        Ok(reading)
    }

    /// Deletes the entries of objects for which `gone(ipc_ns, op, id)` says so (read them
    /// first: what they counted since is lost with them), and waits of threads that are gone.
    pub fn forget(
        &mut self,
        gone: impl Fn(u32, Op, u32) -> bool,
        thread_gone: impl Fn(u32) -> bool,
    ) {
        let by_op = |ipc_ns, op: u32, id| Op::from_code(op).is_some_and(|op| gone(ipc_ns, op, id));
        let keys: Vec<ObjectOpKey> = self.object_ops.keys().flatten().collect();
        for key in keys {
            if by_op(key.ipc_ns, key.op, key.id) {
                let _ = self.object_ops.remove(&key);
            }
        }
        let keys: Vec<WaitKey> = self.waits.keys().flatten().collect();
        for key in keys {
            if by_op(key.ipc_ns, key.op, key.id) {
                let _ = self.waits.remove(&key);
            }
        }
        let keys: Vec<WakerKey> = self.wakers.keys().flatten().collect();
        for key in keys {
            if by_op(key.wait.ipc_ns, key.wait.op, key.wait.id) {
                let _ = self.wakers.remove(&key);
            }
        }
        // A thread killed in its wait never reached sys_exit to take itself off.
        let tids: Vec<u32> = self.waiting.keys().flatten().collect();
        for tid in tids {
            if thread_gone(tid) {
                let _ = self.waiting.remove(&tid);
            }
        }
    }
}

/// `COUNTED_CALLS`, taken from the loaded object (`Probe::counted`), and how much of each entry
/// was already handed on.
pub struct Counted {
    map: PerCpuHashMap<MapData, common::CountedKey, common::CountedCalls>,
    /// Per key: calls and bytes as of the last look.
    seen: std::collections::HashMap<common::CountedKey, (u64, u64)>,
}

impl Counted {
    pub(crate) fn new(
        map: PerCpuHashMap<MapData, common::CountedKey, common::CountedCalls>,
    ) -> Self {
        Counted {
            map,
            seen: Default::default(),
        }
    }

    /// What the kernel counted since the last look, per process, op and object. The entries
    /// of processes `exited` says are gone, once read to the end, are deleted (their pids may
    /// come back as other processes).
    pub fn take_new(&mut self, exited: impl Fn(u32) -> bool) -> Vec<CountedDelta> {
        let mut new = Vec::new();
        let mut idle = Vec::new();
        for entry in self.map.iter() {
            let Ok((key, per_cpu)) = entry else { continue };
            let calls: u64 = per_cpu.iter().map(|c| c.calls).sum();
            let bytes: u64 = per_cpu.iter().map(|c| c.bytes).sum();
            let seen = self.seen.entry(key).or_default();
            if calls == seen.0 {
                idle.push(key);
                continue;
            }
            let Some(op) = Op::from_code(key.op) else {
                continue;
            };
            let last = per_cpu
                .iter()
                .max_by_key(|c| c.last_ns)
                .copied()
                .unwrap_or_default();
            new.push(CountedDelta {
                pid: key.pid,
                ipc_ns: key.ipc_ns,
                id: key.id as i32,
                op,
                calls: calls.saturating_sub(seen.0),
                bytes: bytes.saturating_sub(seen.1),
                last_ns: last.last_ns,
                last_tid: last.last_tid,
                comm: Comm::from_bytes(last.comm),
            });
            *seen = (calls, bytes);
        }
        for key in idle {
            if exited(key.pid) {
                let _ = self.map.remove(&key);
                self.seen.remove(&key);
            }
        }
        new
    }

    /// How many (process, op, object) entries the kernel holds now.
    pub fn entries(&self) -> usize {
        self.map.keys().count()
    }
}
