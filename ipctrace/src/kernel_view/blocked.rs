//! Threads asleep in semop now, read from /proc/<pid>/task/<tid>/syscall and their sembufs
//! from the caller's memory: the waiters ipctrace did not see start waiting.

use super::processes::{comm_at, ProcessScan, ScanFor};
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

/// Every thread in IPC namespace `ns` (None: any) asleep in semop or semtimedop (a
/// `ProcessScan` for them alone). Threads that vanish or whose files we may not read are
/// skipped, as everywhere in /proc.
pub fn blocked_semops(ns: Option<u32>) -> Vec<BlockedSemop> {
    let what = ScanFor {
        semop_sleepers: true,
        ..ScanFor::default()
    };
    ProcessScan::read(what).map_or_else(|_| Vec::new(), |scan| scan.sleepers_in(ns))
}

/// Those of the threads `tids` of process `pid` asleep in semop or semtimedop now.
pub(super) fn semop_sleepers_of(pid: u32, tids: &[u32]) -> Vec<BlockedSemop> {
    let semop_nrs = [
        crate::decoder::syscalls::Op::Semop.syscall_nr(),
        crate::decoder::syscalls::Op::Semtimedop.syscall_nr(),
    ];
    let mut blocked = Vec::new();
    for &tid in tids {
        let dir = format!("/proc/{pid}/task/{tid}");
        let Some((nr, args)) = fs::read_to_string(format!("{dir}/syscall"))
            .ok()
            .and_then(|line| parse_syscall_line(&line))
        else {
            continue;
        };
        if !semop_nrs.contains(&nr) {
            continue;
        }
        blocked.push(BlockedSemop {
            pid,
            tid,
            comm: comm_at(&format!("{dir}/comm")).unwrap_or_default(),
            semid: args[0] as i32,
            sops: read_sops(pid, args[1], args[2] as usize).unwrap_or_default(),
        });
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
