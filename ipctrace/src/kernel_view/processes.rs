//! What /proc says of processes: one walk of /proc (`ProcessScan`) that reads of each what the
//! kernel view needs at that moment, and a process's name, IPC namespace and start time (with
//! its pid, who it is), for naming the pids the kernel's tables and the traced calls carry.

use super::abi;
use super::blocked::{self, Blocked};
use super::maps::{self, AttachmentScan};
use crate::decoder::ProcessStart;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::io;

/// What a `ProcessScan` reads of each process, beside its pid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanFor {
    /// Every process's IPC namespace; without it, only the namespaces of the processes the
    /// other reads keep.
    pub namespaces: bool,
    /// The ELF class of every process's executable: 32-bit processes are not covered.
    pub abi: bool,
    /// Its SysV shared memory mappings (/proc/<pid>/maps).
    pub mappings: bool,
    /// Its threads asleep in semop, msgsnd or msgrcv (/proc/<pid>/task/<tid>/syscall).
    pub sleepers: bool,
}

/// One walk of /proc, reading of each process what `ScanFor` asked: the attachments, the
/// threads asleep in calls that wait, the 32-bit processes and the IPC namespaces the kernel view needs at
/// one moment, for one listing of /proc instead of one each.
#[derive(Debug, Clone, Default)]
pub struct ProcessScan {
    /// The processes with SysV mappings, of every namespace (see `namespace`).
    pub attachments: AttachmentScan,
    /// Threads asleep in semop, msgsnd or msgrcv, of every namespace.
    pub sleepers: Blocked,
    /// The 32-bit processes, with their command names, by pid.
    pub compat: Vec<(u32, String)>,
    /// The IPC namespace of each process read (None: gone or unreadable), by pid.
    namespaces: Vec<(u32, Option<u32>)>,
}

impl ProcessScan {
    /// Walks /proc once. Processes that exit during the walk or whose files we may not read are
    /// skipped (unreadable maps are counted). Fails only when /proc itself cannot be listed.
    pub fn read(what: ScanFor) -> Result<ProcessScan> {
        let mut scan = ProcessScan::default();
        for entry in fs::read_dir("/proc").context("listing /proc")? {
            let Some(pid) = entry
                .ok()
                .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
            else {
                continue;
            };
            let mut kept = false;
            // Listed once, if the maps or the sleepers need them.
            let mut tids: Option<Vec<u32>> = None;
            if what.mappings {
                match maps::attachments_of(pid, &mut tids) {
                    Ok(Some(process)) => {
                        scan.attachments.processes.push(process);
                        kept = true;
                    }
                    Ok(None) => {}
                    // Gone (ENOENT, ESRCH) or protected (EACCES, EPERM): normal, and nothing
                    // to tell.
                    Err(_) => scan.attachments.unreadable += 1,
                }
            }
            if what.sleepers {
                let tids = tids.get_or_insert_with(|| thread_ids(pid));
                let asleep = blocked::sleepers_of(pid, tids);
                kept |= !asleep.sems.is_empty() || !asleep.msgs.is_empty();
                scan.sleepers.sems.extend(asleep.sems);
                scan.sleepers.msgs.extend(asleep.msgs);
            }
            if what.abi && abi::is_32bit(pid) == Some(true) {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                scan.compat.push((pid, comm.trim().to_string()));
            }
            if what.namespaces || kept {
                scan.namespaces.push((pid, ipc_namespace_of(pid)));
            }
        }
        scan.attachments
            .processes
            .sort_by_key(|process| process.pid);
        scan.compat.sort();
        scan.namespaces.sort_unstable();
        Ok(scan)
    }

    /// The IPC namespace of a process the scan kept (None: not read, gone or unreadable).
    pub fn namespace(&self, pid: u32) -> Option<u32> {
        let at = self
            .namespaces
            .binary_search_by_key(&pid, |(p, _)| *p)
            .ok()?;
        self.namespaces[at].1
    }

    /// The threads asleep in calls that wait, of IPC namespace `ns` (None: any).
    pub fn sleepers_in(&self, ns: Option<u32>) -> Blocked {
        let ours = |pid: u32| ns.is_none() || self.namespace(pid) == ns;
        Blocked {
            sems: (self.sleepers.sems.iter())
                .filter(|b| ours(b.pid))
                .cloned()
                .collect(),
            msgs: (self.sleepers.msgs.iter())
                .filter(|b| ours(b.pid))
                .cloned()
                .collect(),
        }
    }

    /// Processes in IPC namespaces other than `own`, and how many such namespaces (with
    /// `ScanFor::namespaces`). Processes we may not look at are not counted.
    pub fn in_other_namespaces(&self, own: u32) -> (usize, usize) {
        let others: Vec<u32> = self
            .namespaces
            .iter()
            .filter_map(|(_, ns)| *ns)
            .filter(|ns| *ns != own)
            .collect();
        let namespaces: BTreeSet<u32> = others.iter().copied().collect();
        (others.len(), namespaces.len())
    }
}

pub(super) fn comm_at(path: &str) -> io::Result<String> {
    let comm = fs::read(path)?;
    let comm = String::from_utf8_lossy(&comm);
    Ok(comm.strip_suffix('\n').unwrap_or(&comm).to_string())
}

/// The command name of a process, or None if it is gone or unreadable.
pub fn read_comm(pid: u32) -> Option<String> {
    comm_at(&format!("/proc/{pid}/comm")).ok()
}

/// The IPC namespace of a process (the inode of /proc/<pid>/ns/ipc, the kernel's
/// ipc_ns->ns.inum), or None if it is gone or unreadable.
pub fn ipc_namespace_of(pid: u32) -> Option<u32> {
    ipc_namespace_at(&format!("/proc/{pid}/ns/ipc"))
}

/// Our own IPC namespace, whose objects /proc/sysvipc lists.
pub fn own_ipc_namespace() -> Option<u32> {
    ipc_namespace_at("/proc/self/ns/ipc")
}

/// The ids of the threads of process `pid` (empty if it is gone or unreadable).
pub(super) fn thread_ids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

fn ipc_namespace_at(path: &str) -> Option<u32> {
    parse_ipc_namespace_link(fs::read_link(path).ok()?.to_str()?)
}

/// `ipc:[4026531839]` -> 4026531839.
pub(super) fn parse_ipc_namespace_link(link: &str) -> Option<u32> {
    link.strip_prefix("ipc:[")?.strip_suffix(']')?.parse().ok()
}

/// When a process started, in seconds since the epoch: tells the process now holding a pid from
/// an older one that had it.
pub fn process_start_epoch(pid: u32) -> Option<i64> {
    let ticks = start_ticks(pid)?;
    let boot: i64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + (ticks * clock_tick_ns() / 1_000_000_000) as i64)
}

/// When a process started, since boot (the clock the kernel programs' start times count on), to
/// the clock tick: with its pid, who the process is.
pub fn process_start(pid: u32) -> Option<ProcessStart> {
    let tick = clock_tick_ns();
    Some(ProcessStart {
        ns: start_ticks(pid)? * tick,
        grain_ns: tick,
    })
}

/// Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

fn clock_tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    1_000_000_000 / hz
}
