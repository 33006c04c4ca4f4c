use super::*;
use crate::decoder::aggregates::{ObjectOpKey, WaitKey, WaitingNow};
use crate::decoder::Comm;

const NS: u32 = 4026531839;

fn seg(shmid: i32, nattch: u64, cpid: u32) -> ShmSeg {
    ShmSeg {
        key: 0x1234,
        shmid,
        perms: 0o600,
        size: 4096,
        cpid,
        lpid: cpid,
        nattch,
        uid: 1000,
        gid: 1000,
        cuid: 1000,
        cgid: 1000,
        atime: 0,
        dtime: 0,
        ctime: 0,
        rss: 0,
        swap: 0,
    }
}

fn queue(msqid: i32, qnum: u64, cbytes: u64) -> MsgQueue {
    MsgQueue {
        key: 0,
        msqid,
        perms: 0o600,
        cbytes,
        qnum,
        lspid: 0,
        lrpid: 0,
        uid: 0,
        gid: 0,
        cuid: 0,
        cgid: 0,
        stime: 0,
        rtime: 0,
        ctime: 0,
    }
}

fn mapping(shmid: i32) -> SysvMapping {
    SysvMapping {
        start: 0x1000 * shmid as u64,
        end: 0x1000 * shmid as u64 + 0x1000,
        shmid,
        key: 0x1234,
    }
}

fn identity(kind: IpcKind, id: i32) -> ObjectKey {
    ObjectKey { ns: NS, kind, id }
}

fn call(op: Op, pid: u32, args: [u64; 6], ret: i64) -> Event {
    let mut c = Call::synthetic(op, pid, "app", args, ret, 1);
    c.ipc_ns = NS;
    Event::Call(c)
}

#[test]
fn tables_give_depths_and_attachments_count_processes_not_mappings() {
    let mut m = ExportModel::new(NS);
    assert!(m.full_scan_due(0));
    m.refresh(Refresh {
        shm: Some(vec![seg(7, 3, 100), seg(8, 0, 200)]),
        msg: Some(vec![(queue(9, 7, 700), Some(16384))]),
        // Process 11 maps segment 7 twice (an mprotect split), 12 once.
        rescanned: vec![
            (11, Some(vec![mapping(7), mapping(7)])),
            (12, Some(vec![mapping(7)])),
        ],
        full_scan: true,
        ..Default::default()
    });
    let shm = |id| m.get(&identity(IpcKind::Shm, id)).unwrap().detail.clone();
    assert_eq!(
        shm(7),
        Detail::Shm {
            size: 4096,
            nattch: 3,
            attached: 2,
            orphaned: false,
            removed: false
        }
    );
    // Nothing attached and its creator (not among the live ones) gone.
    assert!(matches!(shm(8), Detail::Shm { orphaned: true, .. }));
    assert_eq!(
        m.get(&identity(IpcKind::Msg, 9)).unwrap().detail,
        Detail::Msg {
            messages: 7,
            bytes: 700,
            capacity_bytes: Some(16384)
        }
    );
    // The maps agree with nattch: no full rescan needed again.
    assert!(!m.full_scan_due(u64::MAX));
}

#[test]
fn events_say_whose_maps_to_read_and_forks_inherit() {
    let mut m = ExportModel::new(NS);
    m.refresh(Refresh {
        shm: Some(vec![seg(7, 1, 100)]),
        rescanned: vec![(11, Some(vec![mapping(7)]))],
        full_scan: true,
        ..Default::default()
    });
    m.apply(&call(Op::Shmat, 12, [7, 0, 0, 0, 0, 0], 0x7000));
    assert_eq!(m.pids_to_rescan(), vec![12]);
    m.apply(&Event::Process(ProcessChange::Fork {
        ts_ns: 2,
        parent: 11,
        child: 13,
        child_start_ns: 2,
        comm: Comm::new("app"),
    }));
    m.refresh(Refresh {
        shm: Some(vec![seg(7, 3, 100)]),
        rescanned: vec![(12, Some(vec![mapping(7)]))],
        ..Default::default()
    });
    assert!(m.pids_to_rescan().is_empty());
    let attached = |m: &ExportModel| match m.get(&identity(IpcKind::Shm, 7)).unwrap().detail {
        Detail::Shm { attached, .. } => attached,
        _ => panic!(),
    };
    assert_eq!(attached(&m), 3);
    m.apply(&Event::Process(ProcessChange::Exit {
        ts_ns: 3,
        pid: 11,
        start_ns: 1,
    }));
    m.refresh(Refresh {
        shm: Some(vec![seg(7, 2, 100)]),
        ..Default::default()
    });
    assert_eq!(attached(&m), 2);
}

#[test]
fn kernel_counts_land_on_their_objects_and_removed_ones_go() {
    let mut m = ExportModel::new(NS);
    let set = SemSet::owned_by_root(5, 0x42, 2);
    m.apply(&call(Op::Semget, 30, [0x42, 2, 0o1600, 0, 0, 0], 5));
    let waits = WaitTotals {
        count: 2,
        sum_ns: 40_000_000,
        ..Default::default()
    };
    let reading = AggregateReading {
        calls: vec![(Op::Semtimedop, None, 10)],
        object_ops: vec![(
            ObjectOpKey {
                ipc_ns: NS,
                id: 5,
                op: Op::Semtimedop.code(),
            },
            10,
            1,
        )],
        waits: vec![(
            WaitKey {
                ipc_ns: NS,
                id: 5,
                op: Op::Semtimedop.code(),
                semnum: 1,
            },
            waits.clone(),
        )],
        waiting: vec![(
            31,
            WaitingNow {
                wait: WaitKey {
                    ipc_ns: NS,
                    id: 5,
                    op: Op::Semtimedop.code(),
                    semnum: 1,
                },
                pid: 31,
                _pad: 0,
                since_ns: 500,
            },
        )],
        ..Default::default()
    };
    let gone = m.refresh(Refresh {
        aggregates: reading.clone(),
        sem: Some(vec![set]),
        ..Default::default()
    });
    assert!(gone.is_empty());
    let o = m.get(&identity(IpcKind::Sem, 5)).unwrap();
    assert_eq!(o.creator, Some((30, Some(Comm::new("app")))));
    assert_eq!(o.ipc_key, Some(0x42));
    assert_eq!(o.ops[&Op::Semtimedop], (10, 1));
    assert_eq!(o.waits[&(Op::Semtimedop, 1)], waits);
    assert_eq!(o.waiting[&1], (1, 500));
    assert_eq!(o.recent_calls, 10);

    // The set is gone from the table: its entries are handed back for deletion.
    let gone = m.refresh(Refresh {
        aggregates: reading,
        sem: Some(vec![]),
        ..Default::default()
    });
    assert_eq!(gone, vec![identity(IpcKind::Sem, 5)]);
    assert!(m.get(&identity(IpcKind::Sem, 5)).is_none());
}

#[test]
fn an_object_of_another_namespace_goes_with_its_traced_removal() {
    let mut m = ExportModel::new(NS);
    let other = ObjectKey {
        ns: 77,
        kind: IpcKind::Msg,
        id: 3,
    };
    let reading = AggregateReading {
        object_ops: vec![(
            ObjectOpKey {
                ipc_ns: 77,
                id: 3,
                op: Op::Msgsnd.code(),
            },
            4,
            0,
        )],
        ..Default::default()
    };
    m.refresh(Refresh {
        aggregates: reading.clone(),
        msg: Some(vec![]),
        ..Default::default()
    });
    assert_eq!(m.get(&other).unwrap().detail, Detail::Unknown);
    let mut rmid = Call::synthetic(Op::Msgctl, 40, "app", [3, 0, 0, 0, 0, 0], 0, 2);
    rmid.ipc_ns = 77;
    m.apply(&Event::Call(rmid));
    let gone = m.refresh(Refresh {
        aggregates: reading,
        msg: Some(vec![]),
        ..Default::default()
    });
    assert_eq!(gone, vec![other]);
    assert!(m.get(&other).is_none());
}

#[test]
fn holders_are_counted_per_semaphore_from_the_undo_lists_and_the_guess() {
    use crate::decoder::sem_undo::{SemUndo, SemUndoWalk};
    use crate::kernel_view::ctl::SemValue;
    let set = |semid, nsems| SemSet::owned_by_root(semid, 0x42 + semid, nsems);
    let sem = |value, last_pid, ncount| SemValue {
        value,
        last_pid,
        ncount,
        zcount: 0,
    };
    let undo = |pid, semid, semadj: Vec<i16>| SemUndo {
        pid,
        comm: Comm::new("holder"),
        ipc_ns: NS,
        semid,
        semadj: Some(semadj),
    };
    let mut m = ExportModel::new(NS);
    m.refresh(Refresh {
        sem: Some(vec![set(5, 3), set(6, 1)]),
        sem_values: HashMap::from([
            // Set 5: two SEM_UNDO holders of semaphore 1, one of semaphore 2 (which gave
            // another back: semadj 0 is no hold); semaphore 0 is free.
            (5, vec![sem(1, 0, 0), sem(0, 40, 0), sem(2, 41, 0)]),
            // Set 6: at 0 with a waiter (pid 51), last taken by 50, alive, without SEM_UNDO.
            (6, vec![sem(0, 50, 1)]),
        ]),
        undo: Some(SemUndoWalk {
            entries: vec![
                undo(40, 5, vec![0, 1, 0]),
                undo(41, 5, vec![0, 1, 1]),
                undo(42, 5, vec![0, 0, 0]),
            ],
            ..Default::default()
        }),
        live_last_pids: BTreeSet::from([50]),
        aggregates: AggregateReading {
            waiting: vec![(
                51,
                WaitingNow {
                    wait: WaitKey {
                        ipc_ns: NS,
                        id: 6,
                        op: Op::Semtimedop.code(),
                        semnum: 0,
                    },
                    pid: 51,
                    _pad: 0,
                    since_ns: 1,
                },
            )],
            ..Default::default()
        },
        ..Default::default()
    });
    let held = |m: &ExportModel, id| m.get(&identity(IpcKind::Sem, id)).unwrap().holders.clone();
    assert_eq!(held(&m, 5), BTreeMap::from([(1, 2), (2, 1)]));
    assert_eq!(
        held(&m, 6),
        BTreeMap::from([(0, 1)]),
        "the guess: last-op pid 50"
    );
    // Released: nothing held, nothing exported.
    m.refresh(Refresh {
        sem: Some(vec![set(5, 3), set(6, 1)]),
        sem_values: HashMap::from([(5, vec![sem(1, 0, 0); 3]), (6, vec![sem(1, 50, 0)])]),
        undo: Some(SemUndoWalk::default()),
        ..Default::default()
    });
    assert!(held(&m, 5).is_empty() && held(&m, 6).is_empty());
}
