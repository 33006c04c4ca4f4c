//! The kernel's own view of SysV IPC, read from /proc and semctl: the object tables in
//! /proc/sysvipc, who has which segment mapped (/proc/<pid>/maps), process names, IPC namespaces
//! and semaphore values. The model is seeded from here at start and reconciled against it.

use crate::event::ProcessStart;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io;
use std::str::FromStr;

/// Mode bit of a segment removed with IPC_RMID while still attached (it lives until the last
/// detach, attachable by id only, and its key reads 0).
pub const SHM_DEST: u32 = 0o1000;

/// The objects parsed from one /proc/sysvipc table, and how many data lines could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcTable<T> {
    pub objects: Vec<T>,
    pub skipped: usize,
}

/// A line of /proc/sysvipc/shm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmSeg {
    /// Signed, as the kernel prints it: keys >= 0x80000000 are negative. See [`ShmSeg::key_u32`].
    pub key: i32,
    pub shmid: i32,
    /// Mode: permission bits plus SHM_DEST (0o1000) and SHM_LOCKED (0o2000).
    pub perms: u32,
    pub size: u64,
    pub cpid: u32,
    /// Last shmat/shmdt; after a fork it stays the parent's.
    pub lpid: u32,
    /// Counts mappings, not processes: fork, mprotect splits and mremap raise it too.
    pub nattch: u64,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub atime: i64,
    pub dtime: i64,
    pub ctime: i64,
    /// Resident bytes.
    pub rss: u64,
    /// Swapped-out bytes.
    pub swap: u64,
}

impl ShmSeg {
    /// The key as the program passed it to shmget.
    pub fn key_u32(&self) -> u32 {
        self.key as u32
    }

    /// Removed with IPC_RMID but still attached somewhere.
    pub fn removed(&self) -> bool {
        self.perms & SHM_DEST != 0
    }
}

/// A line of /proc/sysvipc/sem. The kernel keeps no creator pid for a semaphore set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemSet {
    /// Signed, as the kernel prints it. See [`SemSet::key_u32`].
    pub key: i32,
    pub semid: i32,
    pub perms: u32,
    pub nsems: u32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub otime: i64,
    pub ctime: i64,
}

impl SemSet {
    /// The key as the program passed it to semget.
    pub fn key_u32(&self) -> u32 {
        self.key as u32
    }
}

/// A line of /proc/sysvipc/msg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgQueue {
    /// Signed, as the kernel prints it. See [`MsgQueue::key_u32`].
    pub key: i32,
    pub msqid: i32,
    pub perms: u32,
    /// Bytes of message text queued.
    pub cbytes: u64,
    /// Messages queued.
    pub qnum: u64,
    pub lspid: u32,
    /// After a pipelined msgsnd (handed straight to a waiting receiver) this is the receiver's
    /// thread id, not its process id.
    pub lrpid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub stime: i64,
    pub rtime: i64,
    pub ctime: i64,
}

impl MsgQueue {
    /// The key as the program passed it to msgget.
    pub fn key_u32(&self) -> u32 {
        self.key as u32
    }
}

/// One data line of a /proc/sysvipc table, read by column name.
struct Row<'a> {
    header: &'a [&'a str],
    fields: &'a [&'a str],
}

impl Row<'_> {
    fn field(&self, column: &str) -> Option<&str> {
        let index = self.header.iter().position(|name| *name == column)?;
        self.fields.get(index).copied()
    }

    fn int<T: FromStr>(&self, column: &str) -> Option<T> {
        self.field(column)?.parse().ok()
    }

    fn octal(&self, column: &str) -> Option<u32> {
        u32::from_str_radix(self.field(column)?, 8).ok()
    }
}

/// Finds the named columns in the header (the first non-blank line), so that columns added or
/// reordered by another kernel do not break parsing. A data line whose field count differs from
/// the header's, or whose wanted fields do not parse, is skipped and counted.
fn parse_table<T>(
    text: &str,
    columns: &[&str],
    object: impl Fn(&Row) -> Option<T>,
) -> Result<IpcTable<T>> {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let Some(header) = lines.next() else {
        bail!("no header line");
    };
    let header: Vec<&str> = header.split_whitespace().collect();
    let missing: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|column| !header.contains(column))
        .collect();
    if !missing.is_empty() {
        bail!("header lacks column(s) {}", missing.join(" "));
    }
    let mut table = IpcTable {
        objects: Vec::new(),
        skipped: 0,
    };
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let row = Row {
            header: &header,
            fields: &fields,
        };
        let parsed = if fields.len() == header.len() {
            object(&row)
        } else {
            None
        };
        match parsed {
            Some(parsed) => table.objects.push(parsed),
            None => table.skipped += 1,
        }
    }
    Ok(table)
}

const SHM_COLUMNS: &[&str] = &[
    "key", "shmid", "perms", "size", "cpid", "lpid", "nattch", "uid", "gid", "cuid", "cgid",
    "atime", "dtime", "ctime", "rss", "swap",
];
const SEM_COLUMNS: &[&str] = &[
    "key", "semid", "perms", "nsems", "uid", "gid", "cuid", "cgid", "otime", "ctime",
];
const MSG_COLUMNS: &[&str] = &[
    "key", "msqid", "perms", "cbytes", "qnum", "lspid", "lrpid", "uid", "gid", "cuid", "cgid",
    "stime", "rtime", "ctime",
];

/// Parses the text of /proc/sysvipc/shm. Fails only when the header is missing or lacks a column.
pub fn parse_shm(text: &str) -> Result<IpcTable<ShmSeg>> {
    parse_table(text, SHM_COLUMNS, |row| {
        Some(ShmSeg {
            key: row.int("key")?,
            shmid: row.int("shmid")?,
            perms: row.octal("perms")?,
            size: row.int("size")?,
            cpid: row.int("cpid")?,
            lpid: row.int("lpid")?,
            nattch: row.int("nattch")?,
            uid: row.int("uid")?,
            gid: row.int("gid")?,
            cuid: row.int("cuid")?,
            cgid: row.int("cgid")?,
            atime: row.int("atime")?,
            dtime: row.int("dtime")?,
            ctime: row.int("ctime")?,
            rss: row.int("rss")?,
            swap: row.int("swap")?,
        })
    })
}

/// Parses the text of /proc/sysvipc/sem. Fails only when the header is missing or lacks a column.
pub fn parse_sem(text: &str) -> Result<IpcTable<SemSet>> {
    parse_table(text, SEM_COLUMNS, |row| {
        Some(SemSet {
            key: row.int("key")?,
            semid: row.int("semid")?,
            perms: row.octal("perms")?,
            nsems: row.int("nsems")?,
            uid: row.int("uid")?,
            gid: row.int("gid")?,
            cuid: row.int("cuid")?,
            cgid: row.int("cgid")?,
            otime: row.int("otime")?,
            ctime: row.int("ctime")?,
        })
    })
}

/// Parses the text of /proc/sysvipc/msg. Fails only when the header is missing or lacks a column.
pub fn parse_msg(text: &str) -> Result<IpcTable<MsgQueue>> {
    parse_table(text, MSG_COLUMNS, |row| {
        Some(MsgQueue {
            key: row.int("key")?,
            msqid: row.int("msqid")?,
            perms: row.octal("perms")?,
            cbytes: row.int("cbytes")?,
            qnum: row.int("qnum")?,
            lspid: row.int("lspid")?,
            lrpid: row.int("lrpid")?,
            uid: row.int("uid")?,
            gid: row.int("gid")?,
            cuid: row.int("cuid")?,
            cgid: row.int("cgid")?,
            stime: row.int("stime")?,
            rtime: row.int("rtime")?,
            ctime: row.int("ctime")?,
        })
    })
}

fn read_table<T>(path: &str, parse: fn(&str) -> Result<IpcTable<T>>) -> Result<IpcTable<T>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse(&text).with_context(|| format!("parsing {path}"))
}

/// The shared memory segments of our IPC namespace.
pub fn read_shm() -> Result<IpcTable<ShmSeg>> {
    read_table("/proc/sysvipc/shm", parse_shm)
}

/// The semaphore sets of our IPC namespace.
pub fn read_sem() -> Result<IpcTable<SemSet>> {
    read_table("/proc/sysvipc/sem", parse_sem)
}

/// The message queues of our IPC namespace.
pub fn read_msg() -> Result<IpcTable<MsgQueue>> {
    read_table("/proc/sysvipc/msg", parse_msg)
}

/// One SysV shared memory attachment in a process's address space. A single shmat can show up
/// as several of these once part of the mapping is mprotected or unmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvMapping {
    pub start: u64,
    pub end: u64,
    pub shmid: i32,
    /// The key the segment was created with (0 for IPC_PRIVATE); unlike /proc/sysvipc/shm, it
    /// stays after IPC_RMID.
    pub key: u32,
}

/// The SysV shared memory mappings in the text of a /proc/<pid>/maps; other lines are ignored.
pub fn parse_sysv_maps(text: &str) -> Vec<SysvMapping> {
    text.lines().filter_map(parse_sysv_mapping).collect()
}

/// `7f1c2a000000-7f1c2a001000 rw-s 00000000 00:01 32769      /SYSV0000abcd (deleted)`: the
/// inode column is the shmid and the name is the key as %08x.
fn parse_sysv_mapping(line: &str) -> Option<SysvMapping> {
    let mut rest = line;
    let range = next_field(&mut rest)?;
    let _perms = next_field(&mut rest)?;
    let _offset = next_field(&mut rest)?;
    let _device = next_field(&mut rest)?;
    let inode = next_field(&mut rest)?;
    let name = rest.trim().strip_prefix("/SYSV")?;
    let (key, suffix) = name.split_at_checked(8)?;
    if !key.bytes().all(|b| b.is_ascii_hexdigit()) || !matches!(suffix.trim(), "" | "(deleted)") {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(SysvMapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        shmid: inode.parse().ok()?,
        key: u32::from_str_radix(key, 16).ok()?,
    })
}

/// Takes the next whitespace-separated field off the front of `rest`.
fn next_field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let trimmed = rest.trim_start();
    let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    let (field, after) = trimmed.split_at(end);
    *rest = after;
    (!field.is_empty()).then_some(field)
}

/// A process with at least one SysV shared memory mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessAttachments {
    pub pid: u32,
    pub comm: String,
    /// None if it could not be read (the process is exiting).
    pub start: Option<ProcessStart>,
    pub mappings: Vec<SysvMapping>,
}

/// Who has which segment mapped now, by pid. Processes that exited during the scan or whose
/// files we may not read (/proc/1/maps gives EACCES even to root under lockdown) are only counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentScan {
    pub processes: Vec<ProcessAttachments>,
    pub unreadable: usize,
}

/// Scans /proc/<pid>/maps of every process for SysV shared memory mappings. Fails only when
/// /proc itself cannot be listed.
pub fn read_attachments() -> Result<AttachmentScan> {
    let mut scan = AttachmentScan::default();
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        match process_attachments(pid) {
            Ok(Some(process)) => scan.processes.push(process),
            Ok(None) => {}
            // Gone (ENOENT, ESRCH) or protected (EACCES, EPERM): normal, and nothing to tell.
            Err(_) => scan.unreadable += 1,
        }
    }
    scan.processes.sort_by_key(|process| process.pid);
    Ok(scan)
}

pub fn process_attachments(pid: u32) -> io::Result<Option<ProcessAttachments>> {
    let mut maps = fs::read(format!("/proc/{pid}/maps"))?;
    if maps.is_empty() {
        // A leader that exited before its other threads shows no mappings of its own.
        maps = other_thread_maps(pid);
    }
    let mappings = parse_sysv_maps(&String::from_utf8_lossy(&maps));
    if mappings.is_empty() {
        return Ok(None);
    }
    let comm = comm_at(&format!("/proc/{pid}/comm"))?;
    Ok(Some(ProcessAttachments {
        pid,
        comm,
        start: process_start(pid),
        mappings,
    }))
}

/// The maps of the first other thread of `pid` that has any (empty if none has).
fn other_thread_maps(pid: u32) -> Vec<u8> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&tid| tid != pid)
        .filter_map(|tid| fs::read(format!("/proc/{pid}/task/{tid}/maps")).ok())
        .find(|maps| !maps.is_empty())
        .unwrap_or_default()
}

fn comm_at(path: &str) -> io::Result<String> {
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
fn parse_ipc_namespace_link(link: &str) -> Option<u32> {
    link.strip_prefix("ipc:[")?.strip_suffix(']')?.parse().ok()
}

/// One semaphore of a set as the kernel holds it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemValue {
    pub value: i32,
    /// The last process to operate on it (semop or SETVAL/SETALL); 0 if none has.
    pub last_pid: i32,
    /// Tasks waiting for the value to increase.
    pub ncount: i32,
    /// Tasks waiting for the value to become zero.
    pub zcount: i32,
}

/// The values (one consistent GETALL snapshot), last pids and waiter counts of a semaphore set.
/// Fails with InvalidInput if the set does not have `nsems` semaphores, and with the semctl
/// errno (EINVAL, EIDRM: gone; EACCES: no read permission) otherwise.
pub fn sem_values(semid: i32, nsems: usize) -> io::Result<Vec<SemValue>> {
    let count = libc::c_int::try_from(nsems)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many semaphores"))?;
    // GETALL writes as many values as the set has, whatever the buffer: check the size first.
    // Only removing the set and reusing its id (which needs the id's sequence part to wrap)
    // between the two calls could hand GETALL a larger set.
    // SAFETY: semid_ds is plain integers, valid zeroed; IPC_STAT writes one semid_ds into it.
    let mut stat: libc::semid_ds = unsafe { std::mem::zeroed() };
    check(unsafe { libc::semctl(semid, 0, libc::IPC_STAT, &mut stat as *mut libc::semid_ds) })?;
    if stat.sem_nsems != nsems as libc::c_ulong {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "semaphore set {semid} has {} semaphores, not {nsems}",
                stat.sem_nsems
            ),
        ));
    }
    let mut values = vec![0u16; nsems];
    // SAFETY: the set has exactly `nsems` semaphores, so GETALL writes within the buffer.
    check(unsafe { libc::semctl(semid, 0, libc::GETALL, values.as_mut_ptr()) })?;
    (0..count)
        .zip(values)
        .map(|(semnum, value)| {
            // SAFETY: these commands take no fourth argument.
            let query = |cmd| check(unsafe { libc::semctl(semid, semnum, cmd) });
            Ok(SemValue {
                value: value.into(),
                last_pid: query(libc::GETPID)?,
                ncount: query(libc::GETNCNT)?,
                zcount: query(libc::GETZCNT)?,
            })
        })
        .collect()
}

/// The size limit new message queues get (/proc/sys/kernel/msgmnb), None if unreadable.
pub fn read_msgmnb() -> Option<u64> {
    fs::read_to_string("/proc/sys/kernel/msgmnb")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A queue's size limit in bytes (msg_qbytes): /proc/sysvipc/msg does not show it, IPC_STAT does.
pub fn msg_qbytes(msqid: i32) -> io::Result<u64> {
    // SAFETY: msqid_ds is plain integers, valid zeroed; IPC_STAT writes one msqid_ds into it.
    let mut stat: libc::msqid_ds = unsafe { std::mem::zeroed() };
    check(unsafe { libc::msgctl(msqid, libc::IPC_STAT, &mut stat) })?;
    Ok(stat.msg_qbytes as u64)
}

/// A thread asleep in semop or semtimedop now, as /proc/<pid>/task/<tid>/syscall shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedSemop {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub semid: i32,
    /// Its operations, read from its memory (empty when that is not allowed).
    pub sops: Vec<crate::event::SemOp>,
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

/// Every thread in IPC namespace `ns` (None: any) asleep in semop or semtimedop. Threads that
/// vanish or whose files we may not read are skipped, as everywhere in /proc.
pub fn blocked_semops(ns: Option<u32>) -> Vec<BlockedSemop> {
    use ipctrace_common as common;
    let semop_nrs = [
        common::SYSCALL_NR[crate::syscalls::Op::Semop.code() as usize] as u64,
        common::SYSCALL_NR[crate::syscalls::Op::Semtimedop.code() as usize] as u64,
    ];
    let mut blocked = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return blocked;
    };
    for pid in procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for tid in tasks.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            let dir = format!("/proc/{pid}/task/{tid}");
            let Some((nr, args)) = fs::read_to_string(format!("{dir}/syscall"))
                .ok()
                .and_then(|line| parse_syscall_line(&line))
            else {
                continue;
            };
            if !semop_nrs.contains(&nr) || (ns.is_some() && ipc_namespace_of(pid) != ns) {
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
    }
    blocked
}

/// The `nsops` sembufs at `address` in process `pid` (SEMOPM caps a call at 500 operations).
fn read_sops(pid: u32, address: u64, nsops: usize) -> io::Result<Vec<crate::event::SemOp>> {
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
        .map(|s| crate::event::SemOp {
            num: s.sem_num,
            op: s.sem_op,
            flg: s.sem_flg,
        })
        .collect())
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

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHM: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
 267506986          0   640                  8192  9749     0      0     0     0     0     0          0          0 1795373142                     0                     0
-1412628479      32769  1600               1048576  9750  9811      2  1000  1000  1000  1000 1795373150 1795373149 1795373160                 12288                  4096
";

    #[test]
    fn shm_lines_parse_by_column() {
        let table = parse_shm(SHM).unwrap();
        assert_eq!(table.skipped, 0);
        assert_eq!(
            table.objects[0],
            ShmSeg {
                key: 267506986,
                shmid: 0,
                perms: 0o640,
                size: 8192,
                cpid: 9749,
                lpid: 0,
                nattch: 0,
                uid: 0,
                gid: 0,
                cuid: 0,
                cgid: 0,
                atime: 0,
                dtime: 0,
                ctime: 1795373142,
                rss: 0,
                swap: 0,
            }
        );
        assert!(!table.objects[0].removed());
        let removed = &table.objects[1];
        assert_eq!(removed.key, -1412628479);
        assert_eq!(removed.key_u32(), 0xabcd_0001);
        assert_eq!((removed.shmid, removed.perms), (32769, 0o1600));
        assert!(removed.removed());
        assert_eq!(
            (removed.size, removed.nattch, removed.lpid),
            (1048576, 2, 9811)
        );
        assert_eq!((removed.rss, removed.swap), (12288, 4096));
    }

    #[test]
    fn perms_are_octal_with_high_mode_bits() {
        let text =
            "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
0 5 101600 4096 1 1 1 0 0 0 0 0 0 0 0 0
";
        let seg = &parse_shm(text).unwrap().objects[0];
        assert_eq!(seg.perms, 0o101600);
        assert!(seg.removed());
    }

    #[test]
    fn extra_and_reordered_columns_do_not_break_parsing() {
        let text = "shmid key perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap future
7 -1 600 4096 10 11 1 0 0 0 0 1 2 3 4096 0 whatever
";
        let table = parse_shm(text).unwrap();
        assert_eq!(table.skipped, 0);
        let seg = &table.objects[0];
        assert_eq!((seg.shmid, seg.key, seg.key_u32()), (7, -1, u32::MAX));
        assert_eq!((seg.cpid, seg.lpid, seg.atime, seg.ctime), (10, 11, 1, 3));
    }

    #[test]
    fn truncated_and_garbage_lines_are_skipped_and_counted() {
        let text = format!(
            "{SHM}\
 1 2 600 4096 10
this is not a segment
 1 2 6x0 4096 10 11 1 0 0 0 0 1 2 3 4096 0
 1 2 600 -4096 10 11 1 0 0 0 0 1 2 3 4096 0
 1 2 600 4096 10 11 1 0 0 0 0 1 2 3 4096 0 extra
\u{0}\u{ffff}🦀

 3 4 600 4096 10 11 1 0 0 0 0 1 2 3 4096 0
"
        );
        let table = parse_shm(&text).unwrap();
        assert_eq!(table.skipped, 6);
        let ids: Vec<i32> = table.objects.iter().map(|seg| seg.shmid).collect();
        assert_eq!(ids, [0, 32769, 4]);
    }

    #[test]
    fn empty_input_and_missing_columns_are_errors_header_only_is_empty() {
        assert!(parse_shm("").is_err());
        assert!(parse_sem("\n  \n").is_err());
        assert!(parse_msg("key msqid perms\n1 2 600\n").is_err());
        for header_only in [
            SHM.lines().next().unwrap(),
            "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap\n",
        ] {
            let table = parse_shm(header_only).unwrap();
            assert_eq!((table.objects.len(), table.skipped), (0, 0));
        }
    }

    #[test]
    fn no_input_panics() {
        let inputs = [
            "key",
            "key key key",
            "\u{0}",
            "key semid perms nsems uid gid cuid cgid otime ctime\n1 2 3",
            "key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime\n99999999999 1 1 1 1 1 1 1 1 1 1 1 1 1",
            "/SYSV",
            "0-1 rw-s 0 0:0 1 /SYSV",
            "ffffffffffffffffff-1 rw-s 0 0:0 1 /SYSV00000000",
        ];
        for text in inputs {
            let _ = parse_shm(text);
            let _ = parse_sem(text);
            let _ = parse_msg(text);
            let _ = parse_sysv_maps(text);
            let _ = parse_ipc_namespace_link(text);
        }
    }

    #[test]
    fn sem_lines_parse() {
        let text =
            "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
1694481146          5   644          3     0     0     0     0          0 1795373142
-2147483648     131077   600        250  1000  1000  1000  1000 1795373200 1795373142
         0          9   600
";
        let table = parse_sem(text).unwrap();
        assert_eq!(table.skipped, 1);
        assert_eq!(
            table.objects[0],
            SemSet {
                key: 1694481146,
                semid: 5,
                perms: 0o644,
                nsems: 3,
                uid: 0,
                gid: 0,
                cuid: 0,
                cgid: 0,
                otime: 0,
                ctime: 1795373142,
            }
        );
        let big = &table.objects[1];
        assert_eq!(
            (big.key_u32(), big.semid, big.nsems),
            (0x8000_0000, 131077, 250)
        );
        assert_eq!((big.uid, big.otime), (1000, 1795373200));
    }

    #[test]
    fn msg_lines_parse() {
        let text = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime
 326702921          0   644           0          0     0     0     0     0     0     0          0          0 1795373142
-559038737      32768   660        1500          3  4242  4343  1000   100  1000   100 1795373300 1795373290 1795373142
";
        let table = parse_msg(text).unwrap();
        assert_eq!(table.skipped, 0);
        assert_eq!(table.objects[0].key, 326702921);
        assert_eq!(
            table.objects[1],
            MsgQueue {
                key: -559038737,
                msqid: 32768,
                perms: 0o660,
                cbytes: 1500,
                qnum: 3,
                lspid: 4242,
                lrpid: 4343,
                uid: 1000,
                gid: 100,
                cuid: 1000,
                cgid: 100,
                stime: 1795373300,
                rtime: 1795373290,
                ctime: 1795373142,
            }
        );
        assert_eq!(table.objects[1].key_u32(), 0xdead_beef);
    }

    #[test]
    fn sysv_maps_lines() {
        let text = "\
55d0c8a00000-55d0c8a21000 r--p 00000000 fd:01 1319562                    /usr/bin/cat
7f1c2a000000-7f1c2a001000 rw-s 00000000 00:01 32769                      /SYSV0000abcd (deleted)
7f1c2a001000-7f1c2a003000 r--s 00000000 00:01 65538                      /SYSVdeadbeef
7f1c2b000000-7f1c2b001000 rw-s 00000000 00:01 7                          /SYSV00000000 (deleted)
7f1c2c000000-7f1c2c001000 rw-s 00000000 00:05 1                          /SYSVnothex0 (deleted)
7f1c2c001000-7f1c2c002000 rw-s 00000000 00:05 1                          /SYSV1234 (deleted)
7f1c2c002000-7f1c2c003000 rw-s 00000000 00:05 2                          /SYSV00001234.bak
7f1c2c003000-7f1c2c004000 rw-p 00000000 00:00 0                          [heap]
7f1c2c004000-7f1c2c005000 rw-p 00000000 00:00 0
7ffd1b9e0000-7ffd1b9e2000 r-xp 00000000 00:00 0                          [vdso]
7f1c2a000000 rw-s 00000000 00:01 32769 /SYSV0000abcd (deleted)
";
        assert_eq!(
            parse_sysv_maps(text),
            [
                SysvMapping {
                    start: 0x7f1c2a000000,
                    end: 0x7f1c2a001000,
                    shmid: 32769,
                    key: 0xabcd,
                },
                SysvMapping {
                    start: 0x7f1c2a001000,
                    end: 0x7f1c2a003000,
                    shmid: 65538,
                    key: 0xdeadbeef,
                },
                SysvMapping {
                    start: 0x7f1c2b000000,
                    end: 0x7f1c2b001000,
                    shmid: 7,
                    key: 0,
                },
            ]
        );
        assert!(parse_sysv_maps("").is_empty());
    }

    #[test]
    fn namespace_links() {
        assert_eq!(
            parse_ipc_namespace_link("ipc:[4026531839]"),
            Some(4026531839)
        );
        assert_eq!(parse_ipc_namespace_link("net:[4026531839]"), None);
        assert_eq!(parse_ipc_namespace_link("ipc:[]"), None);
        assert_eq!(parse_ipc_namespace_link("ipc:[99999999999]"), None);
    }

    // Against the live kernel: every test makes its own IPC_PRIVATE objects, so tests run side by
    // side, and guards remove them even when an assertion fails.

    fn our_pid() -> u32 {
        std::process::id()
    }

    fn ok(ret: libc::c_int, what: &str) -> libc::c_int {
        assert!(ret >= 0, "{what}: {}", io::Error::last_os_error());
        ret
    }

    /// A private segment, attached once; detached and removed on drop.
    struct Segment {
        shmid: i32,
        address: *mut libc::c_void,
    }

    impl Segment {
        fn new(size: usize) -> Segment {
            // SAFETY: plain syscalls on an object this test owns.
            let shmid = ok(
                unsafe { libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | 0o600) },
                "shmget",
            );
            let mut segment = Segment {
                shmid,
                address: std::ptr::null_mut(),
            };
            let address = unsafe { libc::shmat(shmid, std::ptr::null(), 0) };
            assert_ne!(
                address as isize,
                -1,
                "shmat: {}",
                io::Error::last_os_error()
            );
            segment.address = address;
            segment
        }
    }

    impl Drop for Segment {
        fn drop(&mut self) {
            // SAFETY: detaches the mapping this guard made; nothing else refers to it.
            unsafe {
                libc::shmdt(self.address);
                libc::shmctl(self.shmid, libc::IPC_RMID, std::ptr::null_mut());
            }
        }
    }

    struct SemaphoreSet(i32);

    impl Drop for SemaphoreSet {
        fn drop(&mut self) {
            // SAFETY: IPC_RMID takes no fourth argument.
            unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
        }
    }

    struct Queue(i32);

    impl Drop for Queue {
        fn drop(&mut self) {
            // SAFETY: IPC_RMID needs no buffer.
            unsafe { libc::msgctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }

    #[test]
    fn kernel_lists_our_attached_segment_and_our_mapping() {
        let segment = Segment::new(3 * 4096);
        // SAFETY: the segment is 3 pages, attached read-write.
        unsafe { segment.address.cast::<u8>().write(1) };

        let table = read_shm().unwrap();
        assert_eq!(table.skipped, 0);
        let seg = table
            .objects
            .iter()
            .find(|seg| seg.shmid == segment.shmid)
            .expect("our segment in /proc/sysvipc/shm");
        assert_eq!((seg.key, seg.size, seg.perms), (0, 3 * 4096, 0o600));
        assert!(seg.nattch >= 1);
        assert_eq!((seg.cpid, seg.lpid), (our_pid(), our_pid()));
        assert!(!seg.removed());
        assert!(seg.rss >= 4096, "rss {} after touching a page", seg.rss);

        let scan = read_attachments().unwrap();
        let us = scan
            .processes
            .iter()
            .find(|process| process.pid == our_pid())
            .expect("our process among the attachments");
        assert_eq!(Some(&us.comm), read_comm(our_pid()).as_ref());
        let mapping = us
            .mappings
            .iter()
            .find(|mapping| mapping.shmid == segment.shmid)
            .expect("our mapping in /proc/self/maps");
        assert_eq!(mapping.start, segment.address as u64);
        assert_eq!((mapping.end - mapping.start, mapping.key), (3 * 4096, 0));
        assert!(scan.processes.iter().all(|p| !p.mappings.is_empty()));
    }

    #[test]
    fn removed_but_attached_segment_shows_shm_dest() {
        let segment = Segment::new(4096);
        // SAFETY: IPC_RMID needs no buffer.
        ok(
            unsafe { libc::shmctl(segment.shmid, libc::IPC_RMID, std::ptr::null_mut()) },
            "shmctl IPC_RMID",
        );
        let table = read_shm().unwrap();
        let seg = table
            .objects
            .iter()
            .find(|seg| seg.shmid == segment.shmid)
            .expect("removed segment still listed while attached");
        assert!(seg.removed(), "perms {:o}", seg.perms);
        assert_eq!(seg.perms, SHM_DEST | 0o600);
        assert_eq!(seg.key, 0);
    }

    #[test]
    fn kernel_lists_our_semaphore_set_and_its_values() {
        // SAFETY: plain syscalls on an object this test owns.
        let set = SemaphoreSet(ok(
            unsafe { libc::semget(libc::IPC_PRIVATE, 3, libc::IPC_CREAT | 0o600) },
            "semget",
        ));
        // SETVAL's fourth argument is the union's int, passed full width.
        ok(
            unsafe { libc::semctl(set.0, 1, libc::SETVAL, 5 as libc::c_ulong) },
            "semctl SETVAL",
        );

        let table = read_sem().unwrap();
        assert_eq!(table.skipped, 0);
        let listed = table
            .objects
            .iter()
            .find(|listed| listed.semid == set.0)
            .expect("our set in /proc/sysvipc/sem");
        assert_eq!((listed.key, listed.nsems, listed.perms), (0, 3, 0o600));

        let values = sem_values(set.0, listed.nsems as usize).unwrap();
        let pid = our_pid() as i32;
        assert_eq!(
            values,
            [
                SemValue {
                    value: 0,
                    last_pid: 0,
                    ncount: 0,
                    zcount: 0
                },
                SemValue {
                    value: 5,
                    last_pid: pid,
                    ncount: 0,
                    zcount: 0
                },
                SemValue {
                    value: 0,
                    last_pid: 0,
                    ncount: 0,
                    zcount: 0
                },
            ]
        );
        let wrong = sem_values(set.0, 4).unwrap_err();
        assert_eq!(wrong.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn sem_values_of_a_missing_set_is_an_error() {
        // SAFETY: plain syscalls on an object this test owns.
        let set = SemaphoreSet(ok(
            unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) },
            "semget",
        ));
        let semid = set.0;
        drop(set);
        let gone = sem_values(semid, 1).unwrap_err();
        assert!(
            matches!(gone.raw_os_error(), Some(libc::EINVAL | libc::EIDRM)),
            "{gone}"
        );
    }

    #[test]
    fn kernel_lists_our_queue_with_its_message() {
        // SAFETY: plain syscalls on an object this test owns.
        let queue = Queue(ok(
            unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) },
            "msgget",
        ));
        #[repr(C)]
        struct Message {
            mtype: libc::c_long,
            mtext: [u8; 10],
        }
        let message = Message {
            mtype: 1,
            mtext: *b"0123456789",
        };
        // SAFETY: `message` is a long followed by 10 bytes of text, as msgsnd reads it.
        ok(
            unsafe {
                libc::msgsnd(
                    queue.0,
                    (&message as *const Message).cast(),
                    10,
                    libc::IPC_NOWAIT,
                )
            },
            "msgsnd",
        );

        let table = read_msg().unwrap();
        assert_eq!(table.skipped, 0);
        let listed = table
            .objects
            .iter()
            .find(|listed| listed.msqid == queue.0)
            .expect("our queue in /proc/sysvipc/msg");
        assert_eq!((listed.key, listed.perms), (0, 0o600));
        assert_eq!((listed.qnum, listed.cbytes), (1, 10));
        assert_eq!((listed.lspid, listed.lrpid), (our_pid(), 0));
        assert!(listed.stime > 0);
    }

    #[test]
    fn our_process_name_and_namespace() {
        let comm = read_comm(our_pid()).unwrap();
        assert!(!comm.is_empty() && !comm.ends_with('\n'));
        assert_eq!(
            Some(comm),
            fs::read_to_string("/proc/self/comm")
                .ok()
                .map(|c| c.trim_end().to_string())
        );

        let ns = own_ipc_namespace().unwrap();
        assert_eq!(ipc_namespace_of(our_pid()), Some(ns));
        let link = fs::read_link("/proc/self/ns/ipc").unwrap();
        assert_eq!(link.to_str().unwrap(), format!("ipc:[{ns}]"));

        assert_eq!(read_comm(u32::MAX), None);
        assert_eq!(ipc_namespace_of(u32::MAX), None);
    }

    #[test]
    fn protected_processes_are_counted_not_fatal() {
        // Lockdown makes /proc/1/maps EACCES even to root on the machines this is tested on.
        let denied = fs::read("/proc/1/maps").unwrap_err();
        assert_eq!(denied.raw_os_error(), Some(libc::EACCES), "{denied}");
        let scan = read_attachments().unwrap();
        assert!(scan.unreadable >= 1);
        assert!(scan.processes.iter().all(|process| process.pid != 1));
    }

    #[test]
    fn a_split_attachment_is_several_mappings() {
        let segment = Segment::new(3 * 4096);
        // SAFETY: changes protection inside the segment's own mapping, which nothing else uses.
        ok(
            unsafe {
                libc::mprotect(
                    segment.address.cast::<u8>().add(4096).cast(),
                    4096,
                    libc::PROT_READ,
                )
            },
            "mprotect",
        );
        let base = segment.address as u64;
        let scan = read_attachments().unwrap();
        let ours: Vec<SysvMapping> = scan
            .processes
            .iter()
            .filter(|process| process.pid == our_pid())
            .flat_map(|process| process.mappings.iter().copied())
            .filter(|mapping| mapping.shmid == segment.shmid)
            .collect();
        let ranges: Vec<(u64, u64)> = ours
            .iter()
            .map(|m| (m.start - base, m.end - base))
            .collect();
        assert_eq!(ranges, [(0, 4096), (4096, 8192), (8192, 12288)]);
        let seg = read_shm()
            .unwrap()
            .objects
            .into_iter()
            .find(|seg| seg.shmid == segment.shmid)
            .unwrap();
        assert_eq!(seg.nattch, 3);
    }
}
