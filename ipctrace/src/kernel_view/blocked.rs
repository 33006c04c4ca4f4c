//! Threads asleep in semop, msgsnd or msgrcv now: from the calls in flight the kernel programs
//! list (those entered while tracing), or from /proc/<pid>/task/<tid>/syscall (any, also those
//! ipctrace did not see start waiting); a semop's sembufs from the caller's memory.

use super::processes::{comm_at, ProcessScan, ScanFor};
use crate::decoder::syscalls::Op;
use crate::decoder::Comm;
use ipctrace_common::CallInFlight;
use std::fs;
use std::io;

/// A thread asleep in semop or semtimedop now, as /proc/<pid>/task/<tid>/syscall shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedSemop {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub semid: i32,
    /// Its operations, read from its memory (empty when that is not allowed).
    pub sops: Vec<crate::decoder::SemOp>,
    /// When it entered its semop, if it did while traced (None: found in /proc).
    pub entered_ns: Option<u64>,
}

/// A thread asleep in msgsnd (the queue full) or msgrcv (no message for it) now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedMsg {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub msqid: i32,
    pub op: Op,
    /// When it entered the call, if it did while traced (None: found in /proc).
    pub entered_ns: Option<u64>,
}

/// The threads asleep in calls that wait, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocked {
    pub sems: Vec<BlockedSemop>,
    pub msgs: Vec<BlockedMsg>,
}

impl Blocked {
    /// The threads in `calls` (the kernel programs' calls in flight) of IPC namespace `ns`.
    pub fn in_flight(calls: &[CallInFlight], ns: u32) -> Blocked {
        let mut blocked = Blocked::default();
        for c in calls.iter().filter(|c| c.ipc_ns == ns) {
            let comm = Comm::from_bytes(c.comm).as_str().into_owned();
            let id = c.args[0] as i32;
            match Op::from_code(c.op) {
                Some(Op::Semop | Op::Semtimedop) => blocked.sems.push(BlockedSemop {
                    pid: c.pid,
                    tid: c.tid,
                    comm,
                    semid: id,
                    sops: read_sops(c.pid, c.args[1], c.args[2] as usize).unwrap_or_default(),
                    entered_ns: Some(c.ts_ns),
                }),
                Some(op @ (Op::Msgsnd | Op::Msgrcv)) => blocked.msgs.push(BlockedMsg {
                    pid: c.pid,
                    tid: c.tid,
                    comm,
                    msqid: id,
                    op,
                    entered_ns: Some(c.ts_ns),
                }),
                _ => {}
            }
        }
        blocked
    }

    /// Adds the threads of `other` not listed yet (by thread id).
    pub fn add_missing(&mut self, other: Blocked) {
        for b in other.sems {
            if !self.sems.iter().any(|s| s.tid == b.tid) {
                self.sems.push(b);
            }
        }
        for b in other.msgs {
            if !self.msgs.iter().any(|m| m.tid == b.tid) {
                self.msgs.push(b);
            }
        }
    }
}

/// `220 0x800f 0x7fff4feabb1a 0x2 0x0 0x0 0x7fad287e6740 0x7fff4feabaf8 0x7fad288f45da`: the
/// syscall number and its six arguments; None for a running task ("running") or none ("-1 ...").
pub fn parse_syscall_line(line: &str) -> Option<(u64, [u64; 6])> {
    let mut fields = line.split_whitespace();
    let nr = fields.next()?.parse().ok()?;
    let mut args = [0u64; 6];
    for arg in &mut args {
        *arg = u64::from_str_radix(fields.next()?.strip_prefix("0x")?, 16).ok()?;
    }
    Some((nr, args))
}

/// Every thread in IPC namespace `ns` (None: any) asleep in semop, semtimedop, msgsnd or
/// msgrcv, as /proc shows it (a `ProcessScan` for them alone). Threads that vanish or whose
/// files we may not read are skipped, as everywhere in /proc.
pub fn blocked_calls(ns: Option<u32>) -> Blocked {
    let what = ScanFor {
        sleepers: true,
        ..ScanFor::default()
    };
    ProcessScan::read(what).map_or_else(|_| Blocked::default(), |scan| scan.sleepers_in(ns))
}

/// Those of the threads `tids` of process `pid` asleep in semop, semtimedop, msgsnd or msgrcv.
pub(super) fn sleepers_of(pid: u32, tids: &[u32]) -> Blocked {
    let waiting_ops = [Op::Semop, Op::Semtimedop, Op::Msgsnd, Op::Msgrcv];
    let mut blocked = Blocked::default();
    for &tid in tids {
        let dir = format!("/proc/{pid}/task/{tid}");
        let Some((nr, args)) = fs::read_to_string(format!("{dir}/syscall"))
            .ok()
            .and_then(|line| parse_syscall_line(&line))
        else {
            continue;
        };
        let Some(op) = waiting_ops.into_iter().find(|op| op.syscall_nr() == nr) else {
            continue;
        };
        let comm = comm_at(&format!("{dir}/comm")).unwrap_or_default();
        if op.is_semop() {
            blocked.sems.push(BlockedSemop {
                pid,
                tid,
                comm,
                semid: args[0] as i32,
                sops: read_sops(pid, args[1], args[2] as usize).unwrap_or_default(),
                entered_ns: None,
            });
        } else {
            blocked.msgs.push(BlockedMsg {
                pid,
                tid,
                comm,
                msqid: args[0] as i32,
                op,
                entered_ns: None,
            });
        }
    }
    blocked
}

/// The `nsops` sembufs at `address` in process `pid` (SEMOPM caps a call at 500 operations).
fn read_sops(pid: u32, address: u64, nsops: usize) -> io::Result<Vec<crate::decoder::SemOp>> {
    let mut raw = vec![
        libc::sembuf {
            sem_num: 0,
            sem_op: 0,
            sem_flg: 0
        };
        nsops.min(500)
    ];
    let bytes = std::mem::size_of_val(raw.as_slice());
    let local = libc::iovec {
        iov_base: raw.as_mut_ptr().cast(),
        iov_len: bytes,
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: bytes,
    };
    // SAFETY: writes at most `bytes` into `raw`, which holds that many.
    let read = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if read != bytes as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(raw
        .iter()
        .map(|s| crate::decoder::SemOp {
            num: s.sem_num,
            op: s.sem_op,
            flg: s.sem_flg,
        })
        .collect())
}
