//! The kernel-side aggregates as plain values: one reading of the per-CPU totals, wait
//! histograms, wakers and waits in progress, summed over CPUs, and what one process's plain calls
//! added since the last look (`loader::aggregates` reads them).

use crate::decoder::syscalls::Op;
use crate::decoder::Comm;
use ipctrace_common as common;
pub use ipctrace_common::{ObjectOpKey, WaitKey, WaitingNow, WakerKey, WAIT_SLOTS};

/// Blocked waits of one semaphore (or queue and direction), summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTotals {
    pub count: u64,
    pub sum_ns: u64,
    /// Half-octave slots (`ipctrace_common::wait_slot`).
    pub slots: [u64; WAIT_SLOTS],
}

impl Default for WaitTotals {
    fn default() -> Self {
        WaitTotals {
            count: 0,
            sum_ns: 0,
            slots: [0; WAIT_SLOTS],
        }
    }
}

/// The blocked waits of one semaphore (or queue and direction) that one process released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakes {
    pub wait: WaitKey,
    pub waker_pid: u32,
    /// Its comm at one of those wakes.
    pub waker_comm: Comm,
    pub count: u64,
}

/// One reading of every aggregate map. Counters only grow (until an object's entries go).
#[derive(Debug, Clone, Default)]
pub struct AggregateReading {
    /// (op, errno or None for success, calls).
    pub calls: Vec<(Op, Option<i64>, u64)>,
    /// Per object and op: (calls, errors).
    pub object_ops: Vec<(ObjectOpKey, u64, u64)>,
    pub waits: Vec<(WaitKey, WaitTotals)>,
    /// (thread id, where and since when it waits).
    pub waiting: Vec<(u32, WaitingNow)>,
    pub wakers: Vec<Wakes>,
    /// Entries the kernel had no room for: per-object counts, histograms, waits in progress,
    /// wakers, counted calls (which streamed instead: not lost).
    pub full: [u64; common::AGGREGATE_COUNTER_COUNT as usize],
}

impl AggregateReading {
    /// All entries the kernel could not keep, for ipctrace's own `lost` counts.
    pub fn unrecorded(&self) -> u64 {
        self.full[..common::AGGREGATE_FULL_COUNTED as usize]
            .iter()
            .sum()
    }
}

/// Plain calls (they succeeded and never slept) of one process, op and object that the kernel
/// counted instead of streaming them, since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedDelta {
    pub pid: u32,
    pub ipc_ns: u32,
    pub id: i32,
    pub op: Op,
    pub calls: u64,
    /// Message bytes: sent (msgsz) or received.
    pub bytes: u64,
    /// The last of them: its exit (CLOCK_MONOTONIC), thread and comm.
    pub last_ns: u64,
    pub last_tid: u32,
    pub comm: Comm,
}
