//! What /proc says of a process: its name, IPC namespace and start time (with its pid, who it
//! is), for naming the pids the kernel's tables and the traced calls carry.

use crate::decoder::ProcessStart;
use std::fs;
use std::io;

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

/// Processes in IPC namespaces other than ours, and how many such namespaces: their objects are
/// not in our /proc/sysvipc. Processes we may not look at are not counted.
pub fn in_other_ipc_namespaces() -> (usize, usize) {
    let Some(own) = own_ipc_namespace() else {
        return (0, 0);
    };
    let Ok(dir) = fs::read_dir("/proc") else {
        return (0, 0);
    };
    let others: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(ipc_namespace_of)
        .filter(|ns| *ns != own)
        .collect();
    let namespaces: std::collections::BTreeSet<u32> = others.iter().copied().collect();
    (others.len(), namespaces.len())
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
