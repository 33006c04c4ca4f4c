//! Each SysV IPC limit against what uses it now (`ipcs -l` and `ipcs -u` in one table): from
//! the limits and one snapshot of the kernel's tables, no I/O. ENOSPC from semget or shmget is
//! a limit reached; this says which, and by how much.

use crate::decoder::syscalls::IpcKind;
use crate::kernel_view::limits::{IpcLimits, SEMVMX};
use crate::kernel_view::snapshot::KernelSnapshot;

/// What a limit counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Pages,
}

/// One limit and its use now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUse {
    /// The kernel's name (SEMMNI, SHMMAX, ...).
    pub name: &'static str,
    /// What it limits, in a few words.
    pub what: &'static str,
    pub limit: u64,
    /// None where the limit is per call or per message: nothing in the tables measures it.
    pub used: Option<u64>,
    pub unit: Unit,
    /// The object that comes closest, for the limits of one object (largest set, fullest queue).
    pub closest: Option<(IpcKind, i32)>,
}

impl LimitUse {
    /// How much of the limit is used, 0.0 to 1.0 (and above, where a raised qbytes allows it).
    pub fn fraction(&self) -> Option<f64> {
        let used = self.used?;
        (self.limit > 0).then(|| used as f64 / self.limit as f64)
    }
}

/// Every limit of `ipcs -l`, in its order (semaphores, shared memory, queues), with its use in
/// `snap`. A kind the snapshot did not read shows no use.
pub fn limit_uses(limits: &IpcLimits, snap: &KernelSnapshot) -> Vec<LimitUse> {
    let sets = snap.sem.as_ref().map(|t| &t.sets);
    let segments = snap.shm.as_ref().map(|t| &t.segments);
    let queues = snap.msg.as_ref().map(|t| &t.queues);

    let largest_set = sets.and_then(|s| s.iter().max_by_key(|(set, _)| set.nsems));
    let highest_value = sets.and_then(|s| {
        s.iter()
            .flat_map(|(set, values)| values.iter().flatten().map(move |v| (v.value, set.semid)))
            .max()
    });
    let largest_segment = segments.and_then(|s| s.iter().max_by_key(|seg| seg.size));
    let fullest_queue = queues.and_then(|q| q.iter().max_by_key(|(queue, _)| queue.cbytes));
    let page = limits.page_size.max(1);

    let use_of = |name, what, limit, used, unit, closest| LimitUse {
        name,
        what,
        limit,
        used,
        unit,
        closest,
    };
    vec![
        use_of(
            "SEMMNI",
            "semaphore sets",
            limits.semmni,
            sets.map(|s| s.len() as u64),
            Unit::Count,
            None,
        ),
        use_of(
            "SEMMSL",
            "semaphores in one set",
            limits.semmsl,
            sets.map(|_| largest_set.map_or(0, |(set, _)| set.nsems as u64)),
            Unit::Count,
            largest_set.map(|(set, _)| (IpcKind::Sem, set.semid)),
        ),
        use_of(
            "SEMMNS",
            "semaphores in all sets",
            limits.semmns,
            sets.map(|s| s.iter().map(|(set, _)| set.nsems as u64).sum()),
            Unit::Count,
            None,
        ),
        use_of(
            "SEMOPM",
            "operations in one semop call",
            limits.semopm,
            None,
            Unit::Count,
            None,
        ),
        use_of(
            "SEMVMX",
            "a semaphore's value",
            SEMVMX,
            sets.map(|_| highest_value.map_or(0, |(v, _)| v.max(0) as u64)),
            Unit::Count,
            highest_value.map(|(_, id)| (IpcKind::Sem, id)),
        ),
        use_of(
            "SHMMNI",
            "segments",
            limits.shmmni,
            segments.map(|s| s.len() as u64),
            Unit::Count,
            None,
        ),
        use_of(
            "SHMMAX",
            "bytes in one segment",
            limits.shmmax,
            segments.map(|_| largest_segment.map_or(0, |seg| seg.size)),
            Unit::Bytes,
            largest_segment.map(|seg| (IpcKind::Shm, seg.shmid)),
        ),
        use_of(
            "SHMALL",
            "pages of all segments",
            limits.shmall,
            segments.map(|s| s.iter().map(|seg| seg.size.div_ceil(page)).sum()),
            Unit::Pages,
            None,
        ),
        use_of(
            "MSGMNI",
            "message queues",
            limits.msgmni,
            queues.map(|q| q.len() as u64),
            Unit::Count,
            None,
        ),
        use_of(
            "MSGMAX",
            "bytes in one message",
            limits.msgmax,
            None,
            Unit::Bytes,
            None,
        ),
        use_of(
            "MSGMNB",
            "bytes queued on one queue",
            limits.msgmnb,
            queues.map(|_| fullest_queue.map_or(0, |(q, _)| q.cbytes)),
            Unit::Bytes,
            fullest_queue.map(|(q, _)| (IpcKind::Msg, q.msqid)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_view::ctl::SemValue;
    use crate::kernel_view::snapshot::{MsgTable, SemTable, ShmTable};
    use crate::kernel_view::sysvipc::{MsgQueue, SemSet, ShmSeg};

    fn limits() -> IpcLimits {
        IpcLimits {
            semmsl: 250,
            semmns: 1000,
            semopm: 32,
            semmni: 4,
            shmmax: 1 << 20,
            shmall: 100,
            shmmni: 10,
            msgmni: 8,
            msgmax: 8192,
            msgmnb: 16384,
            page_size: 4096,
        }
    }

    fn value(value: i32) -> SemValue {
        SemValue {
            value,
            ..Default::default()
        }
    }

    #[test]
    fn each_limit_against_its_use() {
        let snap = KernelSnapshot {
            sem: Some(SemTable {
                sets: vec![
                    (
                        SemSet {
                            semid: 1,
                            nsems: 2,
                            ..Default::default()
                        },
                        Some(vec![value(3), value(0)]),
                    ),
                    (
                        SemSet {
                            semid: 2,
                            nsems: 5,
                            ..Default::default()
                        },
                        Some(vec![value(7); 5]),
                    ),
                    // semctl refused: its values are unknown, its size is not.
                    (
                        SemSet {
                            semid: 3,
                            nsems: 1,
                            ..Default::default()
                        },
                        None,
                    ),
                ],
                ..Default::default()
            }),
            shm: Some(ShmTable {
                segments: vec![
                    ShmSeg {
                        shmid: 10,
                        size: 4096,
                        ..Default::default()
                    },
                    ShmSeg {
                        shmid: 11,
                        size: 4097,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            msg: None,
            ..Default::default()
        };
        let uses = limit_uses(&limits(), &snap);
        let get = |name: &str| uses.iter().find(|u| u.name == name).unwrap().clone();
        assert_eq!(get("SEMMNI").used, Some(3));
        assert_eq!(get("SEMMNI").fraction(), Some(0.75));
        assert_eq!(
            (get("SEMMSL").used, get("SEMMSL").closest),
            (Some(5), Some((IpcKind::Sem, 2)))
        );
        assert_eq!(get("SEMMNS").used, Some(8));
        assert_eq!(get("SEMOPM").used, None, "a per-call limit");
        assert_eq!(
            (
                get("SEMVMX").limit,
                get("SEMVMX").used,
                get("SEMVMX").closest
            ),
            (32767, Some(7), Some((IpcKind::Sem, 2)))
        );
        assert_eq!(get("SHMMNI").used, Some(2));
        assert_eq!(get("SHMMAX").used, Some(4097));
        assert_eq!(
            get("SHMALL").used,
            Some(3),
            "4096 B is one page, 4097 B two"
        );
        assert_eq!(get("MSGMNI").used, None, "queues were not read");
        assert_eq!(uses.len(), 11);
    }

    #[test]
    fn the_fullest_queue_is_named() {
        let queue = |msqid, cbytes| {
            (
                MsgQueue {
                    msqid,
                    cbytes,
                    ..Default::default()
                },
                Some(16384),
            )
        };
        let snap = KernelSnapshot {
            msg: Some(MsgTable {
                queues: vec![queue(5, 100), queue(6, 16000), queue(7, 0)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let uses = limit_uses(&limits(), &snap);
        let mnb = uses.iter().find(|u| u.name == "MSGMNB").unwrap();
        assert_eq!(
            (mnb.used, mnb.closest),
            (Some(16000), Some((IpcKind::Msg, 6)))
        );
        assert_eq!(
            uses.iter().find(|u| u.name == "MSGMNI").unwrap().used,
            Some(3)
        );
    }
}
