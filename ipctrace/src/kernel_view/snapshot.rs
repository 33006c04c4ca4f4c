//! One reading of the kernel's own view of our IPC namespace (/proc/sysvipc, every process's
//! maps, semctl and msgctl), kept as plain data so that seeding and reconciling the object model
//! are pure functions, unit-tested with snapshots made by hand.

use super::blocked::{self, Blocked, BlockedMsg, BlockedSemop};
use super::ctl::{self, SemValue};
use super::maps::ProcessAttachments;
use super::processes::{self, ProcessScan, ScanFor};
use super::sysvipc::{self, MsgQueue, SemSet, ShmSeg};
use crate::clock::monotonic_ns;
use crate::decoder::syscalls::IpcKind;
use crate::decoder::Comm;
use anyhow::{Context, Result};
use std::collections::{BTreeSet, HashMap};

/// The kernel's view of one namespace's objects; a kind not read is None.
#[derive(Debug, Clone, Default)]
pub struct KernelSnapshot {
    /// The namespace /proc/sysvipc showed (ours).
    pub ns: u32,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, to compare call times with the kernel's ctime.
    pub epoch_offset_ns: i128,
    pub shm: Option<ShmTable>,
    pub sem: Option<SemTable>,
    pub msg: Option<MsgTable>,
    /// Names of the processes (and threads) the tables name, those still running.
    pub comms: HashMap<u32, Comm>,
    /// When each of those started (seconds since the epoch): a creator pid now held by a
    /// process younger than the object names someone else.
    pub started: HashMap<u32, i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ShmTable {
    /// CLOCK_MONOTONIC just before reading.
    pub taken_ns: u64,
    pub segments: Vec<ShmSeg>,
    /// The processes of this namespace with SysV mappings.
    pub mappings: Vec<ProcessAttachments>,
    /// Pids asked about whose maps we may not read: what they have mapped is unknown.
    pub unreadable: BTreeSet<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct SemTable {
    pub taken_ns: u64,
    /// Each set with its semaphores (None when semctl refused).
    pub sets: Vec<(SemSet, Option<Vec<SemValue>>)>,
    /// Threads asleep in semop, read only when some set has waiters.
    pub blocked: Vec<BlockedSemop>,
}

/// Where a snapshot finds the threads asleep in calls that wait.
#[derive(Clone, Copy, Default)]
pub struct WaiterLooks<'a> {
    /// The calls in flight the kernel programs list (None: nothing is traced, /proc alone
    /// tells). /proc is then walked only when they name fewer semaphore waiters than the
    /// kernel counts.
    pub in_flight: Option<&'a dyn Fn() -> Option<Vec<ipctrace_common::CallInFlight>>>,
    /// Walk /proc for queue waiters even so (the kernel counts none): the first look, or
    /// when some callers are not traced.
    pub scan_queues: bool,
}

impl WaiterLooks<'_> {
    /// The threads asleep in traced calls now, of namespace `ns` (None: not known).
    fn in_flight(&self, ns: u32) -> Option<Blocked> {
        let calls = (self.in_flight?)()?;
        Some(Blocked::in_flight(&calls, ns))
    }
}

/// How many times the semaphore counts and the walk of sleeping threads are taken, at most,
/// while the walk finds fewer waiters than the kernel counts.
const WAITER_LOOKS: usize = 3;

impl SemTable {
    /// One look at the counts of the sets `listed`, the sleeping threads not yet searched for.
    fn counts(listed: &[SemSet]) -> SemTable {
        let taken_ns = monotonic_ns();
        let sets = listed
            .iter()
            .map(|set| {
                let values = ctl::sem_values(set.semid, set.nsems as usize).ok();
                (set.clone(), values)
            })
            .collect();
        SemTable {
            taken_ns,
            sets,
            blocked: Vec::new(),
        }
    }

    /// Whether some semaphore has a thread waiting on it: only then is /proc searched for them.
    fn waited_on(&self) -> bool {
        self.sets.iter().any(|(_, values)| {
            values
                .iter()
                .flatten()
                .any(|v| v.ncount > 0 || v.zcount > 0)
        })
    }

    /// Waiters the kernel counts that the walk of sleeping threads did not find.
    pub fn unnamed_waiters(&self) -> usize {
        self.sets
            .iter()
            .map(|(set, values)| {
                let counted: usize = values
                    .iter()
                    .flatten()
                    .map(|v| (v.ncount.max(0) + v.zcount.max(0)) as usize)
                    .sum();
                let found = self.blocked.iter().filter(|b| b.semid == set.semid).count();
                counted.saturating_sub(found)
            })
            .sum()
    }
}

#[derive(Debug, Clone, Default)]
pub struct MsgTable {
    pub taken_ns: u64,
    /// Each queue with its size limit (None when IPC_STAT refused).
    pub queues: Vec<(MsgQueue, Option<u64>)>,
    /// The limit new queues get (/proc/sys/kernel/msgmnb).
    pub msgmnb: Option<u64>,
    /// Threads asleep in msgsnd or msgrcv.
    pub blocked: Vec<BlockedMsg>,
    /// Whether /proc was walked for them: if not, a waiter /proc found before may still wait.
    pub scanned: bool,
}

impl MsgTable {
    /// The queues and their limits, as the kernel has them now; no waiters yet.
    fn counts() -> Result<MsgTable> {
        let taken_ns = monotonic_ns();
        let queues = sysvipc::read_msg()?
            .objects
            .into_iter()
            .map(|q| {
                let qbytes = ctl::msg_qbytes(q.msqid).ok();
                (q, qbytes)
            })
            .collect();
        Ok(MsgTable {
            taken_ns,
            queues,
            msgmnb: ctl::read_msgmnb(),
            blocked: Vec::new(),
            scanned: false,
        })
    }
}

impl KernelSnapshot {
    /// Reads the kinds asked for. `believed_attached` are pids the caller thinks have segments
    /// mapped: those whose maps turn out unreadable are listed as such. Fails when our namespace
    /// or a /proc/sysvipc table cannot be read.
    pub fn read(kinds: &[IpcKind], believed_attached: &BTreeSet<u32>) -> Result<KernelSnapshot> {
        let looks = WaiterLooks::default();
        Ok(Self::read_with(kinds, believed_attached, ScanFor::default(), looks)?.0)
    }

    /// `read`, with the waiters found where `looks` says, its one walk of /proc also reading
    /// what `also` asks (every process's namespace, the 32-bit processes), handed back beside it.
    pub fn read_with(
        kinds: &[IpcKind],
        believed_attached: &BTreeSet<u32>,
        also: ScanFor,
        looks: WaiterLooks,
    ) -> Result<(KernelSnapshot, ProcessScan)> {
        let ns = processes::own_ipc_namespace().context("reading /proc/self/ns/ipc")?;
        let mut snap = KernelSnapshot {
            ns,
            epoch_offset_ns: crate::clock::clock_ns(libc::CLOCK_REALTIME)
                - crate::clock::clock_ns(libc::CLOCK_MONOTONIC),
            ..Default::default()
        };
        let mut named: BTreeSet<u32> = BTreeSet::new();
        let mut creators: Vec<u32> = Vec::new();
        let read_shm = kinds.contains(&IpcKind::Shm);
        // The semaphore counts come before the walk of /proc, the segment counts after it (see
        // below), so that one walk serves both.
        let sem_listed = if kinds.contains(&IpcKind::Sem) {
            Some(sysvipc::read_sem()?.objects)
        } else {
            None
        };
        let mut first_look = sem_listed.as_deref().map(SemTable::counts);
        let waited_on = first_look.as_ref().is_some_and(SemTable::waited_on);
        // The queues too, for the same walk to find their waiters.
        let queues = if kinds.contains(&IpcKind::Msg) {
            Some(MsgTable::counts()?)
        } else {
            None
        };
        // The traced calls in flight first: /proc is walked for sleepers only for what they
        // cannot name (waits begun before tracing, callers not traced, queues at first).
        let traced = if waited_on || queues.is_some() {
            looks.in_flight(ns)
        } else {
            None
        };
        if let (Some(look), true) = (&mut first_look, waited_on) {
            look.blocked = traced.as_ref().map_or(Vec::new(), |b| b.sems.clone());
        }
        let sems_unnamed = first_look
            .as_ref()
            .is_some_and(|look| waited_on && (traced.is_none() || look.unnamed_waiters() > 0));
        let queues_scanned = traced.is_none() || looks.scan_queues;
        let scan_queues = queues_scanned && queues.as_ref().is_some_and(|q| !q.queues.is_empty());
        let what = ScanFor {
            mappings: read_shm || also.mappings,
            sleepers: sems_unnamed || scan_queues || also.sleepers,
            ..also
        };
        let scan = if what == ScanFor::default() {
            ProcessScan::default()
        } else {
            match ProcessScan::read(what) {
                Ok(scan) => scan,
                Err(e) if read_shm => return Err(e),
                // Without the sleeping threads, the waiters stay unnamed.
                Err(_) => ProcessScan::default(),
            }
        };
        if read_shm {
            // The maps first, then the counts, and the time after the counts: a process that
            // forks or exits during the scan is then in the counts as it is after it, and its
            // fork or exit event (older than `taken_ns`) brings the scanned list in line without
            // counting it twice. Counts read first would keep those that exited mid-scan, and
            // NATTCH would exceed the ATTACHED list until the next look.
            let segments = sysvipc::read_shm()?.objects;
            let taken_ns = monotonic_ns();
            let mappings: Vec<ProcessAttachments> = scan
                .attachments
                .processes
                .iter()
                // A process in another namespace maps that namespace's segment with this id.
                .filter(|p| scan.namespace(p.pid).is_none_or(|n| n == ns))
                .cloned()
                .collect();
            let unreadable = believed_attached
                .iter()
                .copied()
                .filter(|pid| !mappings.iter().any(|p| p.pid == *pid))
                .filter(|pid| maps_unreadable(*pid))
                .collect();
            for seg in &segments {
                named.extend([seg.cpid, seg.lpid]);
                creators.push(seg.cpid);
            }
            snap.shm = Some(ShmTable {
                taken_ns,
                segments,
                mappings,
                unreadable,
            });
        }
        if let (Some(listed), Some(mut look)) = (&sem_listed, first_look) {
            // The counts and the /proc walk are two moments: a waiter woken between them (and
            // running, so not in the walk) leaves a counted waiter unnamed. Under contention
            // that is often, so the counts and the walk are taken again, a few times, until
            // they agree, and the closest look is kept.
            if sems_unnamed {
                let mut found = traced.clone().unwrap_or_default();
                found.add_missing(scan.sleepers_in(Some(ns)));
                look.blocked = found.sems;
            }
            let mut best: Option<(usize, SemTable)> = None;
            for again in 0..WAITER_LOOKS {
                if again > 0 {
                    look = SemTable::counts(listed);
                    if look.waited_on() {
                        let traced = looks.in_flight(ns);
                        look.blocked = traced.as_ref().map_or(Vec::new(), |b| b.sems.clone());
                        if traced.is_none() || look.unnamed_waiters() > 0 {
                            let mut found = traced.unwrap_or_default();
                            found.add_missing(blocked::blocked_calls(Some(ns)));
                            look.blocked = found.sems;
                        }
                    }
                }
                let unnamed = look.unnamed_waiters();
                if best.as_ref().is_none_or(|(fewest, _)| unnamed < *fewest) {
                    best = Some((unnamed, std::mem::take(&mut look)));
                }
                if unnamed == 0 {
                    break;
                }
            }
            let (_, table) = best.expect("looked at least once");
            for value in table.sets.iter().filter_map(|(_, v)| v.as_ref()).flatten() {
                named.insert(value.last_pid as u32);
            }
            snap.sem = Some(table);
        }
        if let Some(mut table) = queues {
            for (q, _) in &table.queues {
                named.extend([q.lspid, q.lrpid]);
            }
            let mut found = traced.unwrap_or_default();
            if scan_queues {
                found.add_missing(scan.sleepers_in(Some(ns)));
            }
            table.blocked = found.msgs;
            table.scanned = queues_scanned;
            snap.msg = Some(table);
        }
        named.remove(&0);
        for pid in named {
            if let Some(comm) = processes::read_comm(pid) {
                snap.comms.insert(pid, Comm::new(&comm));
            }
        }
        for pid in creators {
            if let Some(start) = processes::process_start_epoch(pid) {
                snap.started.insert(pid, start);
            }
        }
        Ok((snap, scan))
    }

    /// The name of a process the tables name, if it still runs.
    pub fn comm(&self, pid: u32) -> Option<Comm> {
        self.comms.get(&pid).copied()
    }

    /// The name of an object's creator, unless the process now holding that pid started after
    /// the object's last change (`ctime`, seconds since the epoch) and so cannot have made it.
    pub fn creator_comm(&self, pid: u32, ctime: i64) -> Option<Comm> {
        match self.started.get(&pid) {
            Some(&start) if start > ctime + 1 => None,
            _ => self.comm(pid),
        }
    }

    /// A CLOCK_MONOTONIC time in whole seconds since the epoch.
    pub fn epoch_secs(&self, mono_ns: u64) -> i64 {
        ((mono_ns as i128 + self.epoch_offset_ns) / 1_000_000_000) as i64
    }
}

/// EACCES (or EPERM) on /proc/<pid>/maps; a process that is gone is not unreadable, it holds nothing.
fn maps_unreadable(pid: u32) -> bool {
    match std::fs::File::open(format!("/proc/{pid}/maps")) {
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creator_names_need_a_process_older_than_the_object() {
        let mut snap = KernelSnapshot::default();
        snap.comms.insert(10, Comm::new("db"));
        snap.started.insert(10, 1_000);
        assert_eq!(snap.creator_comm(10, 1_000), Some(Comm::new("db")));
        assert_eq!(snap.creator_comm(10, 900), None, "pid 10 was reused");
        assert_eq!(snap.creator_comm(11, 900), None);
    }

    #[test]
    fn syscall_lines_of_sleeping_and_running_tasks() {
        let line =
            "220 0x800f 0x7fff4feabb1a 0x2 0x0 0x0 0x7fad287e6740 0x7fff4feabaf8 0x7fad288f45da";
        assert_eq!(
            blocked::parse_syscall_line(line),
            Some((220, [0x800f, 0x7fff4feabb1a, 2, 0, 0, 0x7fad287e6740]))
        );
        assert_eq!(blocked::parse_syscall_line("running"), None);
        assert_eq!(blocked::parse_syscall_line("-1 0x7ffc 0x401000"), None);
    }

    #[test]
    fn reads_our_own_namespace_and_process() {
        let snap = KernelSnapshot::read(&IpcKind::ALL, &BTreeSet::new()).unwrap();
        assert_eq!(Some(snap.ns), processes::own_ipc_namespace());
        assert!(snap.shm.is_some() && snap.sem.is_some() && snap.msg.is_some());
        let start = processes::process_start_epoch(std::process::id()).unwrap();
        let now = crate::clock::clock_ns(libc::CLOCK_REALTIME) / 1_000_000_000;
        assert!(start <= now as i64 && start > now as i64 - 86_400 * 365);
    }
}
