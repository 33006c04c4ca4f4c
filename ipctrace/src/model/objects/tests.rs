//! The object model fed synthetic calls, process changes and hand-made kernel snapshots.

use super::*;
use crate::decoder::SemOp;
use crate::kernel_view::snapshot::{MsgTable, SemTable, ShmTable};
use crate::kernel_view::{
    blocked::BlockedMsg, blocked::BlockedSemop, ctl::SemValue, maps::ProcessAttachments,
    maps::SysvMapping, sysvipc::MsgQueue, sysvipc::SemSet, sysvipc::ShmSeg,
};

const CREAT: u64 = 0o1000;
const EXCL: u64 = 0o2000;

fn identity(kind: IpcKind, id: i32) -> ObjectKey {
    ObjectKey { ns: 0, kind, id }
}

fn in_ns(mut c: Call, ns: u32) -> Call {
    c.ipc_ns = ns;
    c
}

fn shmget(pid: u32, ipc_key: i32, size: u64, flags: u64, id: i64, ts: u64) -> Call {
    Call::synthetic(
        Op::Shmget,
        pid,
        "db",
        [ipc_key as u32 as u64, size, flags, 0, 0, 0],
        id,
        ts,
    )
}

fn shmat(pid: u32, comm: &str, id: i32, address: u64, ts: u64) -> Call {
    Call::synthetic(
        Op::Shmat,
        pid,
        comm,
        [id as u64, 0, 0, 0, 0, 0],
        address as i64,
        ts,
    )
}

fn shmdt(pid: u32, address: u64, ts: u64) -> Call {
    Call::synthetic(Op::Shmdt, pid, "p", [address, 0, 0, 0, 0, 0], 0, ts)
}

fn ctl(op: Op, pid: u32, id: i32, cmd: i64, ts: u64) -> Call {
    let args = match op {
        Op::Semctl => [id as u64, 0, cmd as u64, 0, 0, 0],
        _ => [id as u64, cmd as u64, 0, 0, 0, 0],
    };
    Call::synthetic(op, pid, "admin", args, 0, ts)
}

fn semget(pid: u32, ipc_key: i32, nsems: u64, flags: u64, id: i64, ts: u64) -> Call {
    Call::synthetic(
        Op::Semget,
        pid,
        "db",
        [ipc_key as u32 as u64, nsems, flags, 0, 0, 0],
        id,
        ts,
    )
}

fn semop(pid: u32, id: i32, sops: &[(u16, i16, i16)], ret: i64, ts: u64) -> Call {
    let sops: Vec<SemOp> = sops
        .iter()
        .map(|&(num, op, flg)| SemOp { num, op, flg })
        .collect();
    Call::synthetic(
        Op::Semtimedop,
        pid,
        "worker",
        [id as u64, 0, 0, 0, 0, 0],
        ret,
        ts,
    )
    .with_sops(&sops)
}

fn setval(pid: u32, id: i32, num: u64, value: u64, ts: u64) -> Call {
    Call::synthetic(
        Op::Semctl,
        pid,
        "admin",
        [id as u64, num, 16, value, 0, 0],
        0,
        ts,
    )
}

fn msgget(pid: u32, ipc_key: i32, flags: u64, id: i64, ts: u64) -> Call {
    Call::synthetic(
        Op::Msgget,
        pid,
        "broker",
        [ipc_key as u32 as u64, flags, 0, 0, 0, 0],
        id,
        ts,
    )
}

fn msgsnd(pid: u32, id: i32, size: u64, mtype: i64, ts: u64) -> Call {
    let mut c = Call::synthetic(
        Op::Msgsnd,
        pid,
        "sender",
        [id as u64, 0, size, 0, 0, 0],
        0,
        ts,
    );
    c.mtype = Some(mtype);
    c
}

fn msgrcv(pid: u32, id: i32, buffer: u64, flags: u64, got: Option<(i64, i64)>, ts: u64) -> Call {
    let ret = got.map_or(-42, |(_, n)| n);
    let mut c = Call::synthetic(
        Op::Msgrcv,
        pid,
        "receiver",
        [id as u64, 0, buffer, 0, flags, 0],
        ret,
        ts,
    );
    c.mtype = got.map(|(t, _)| t);
    c
}

/// The start time of the test's process `pid` (its first life: `reborn` gives another).
fn start_of(pid: u32) -> u64 {
    pid as u64 * 1_000
}

fn fork(parent: u32, child: u32, ts: u64) -> ProcessChange {
    ProcessChange::Fork {
        ts_ns: ts,
        parent,
        child,
        child_start_ns: start_of(child),
        comm: Comm::new("parent"),
    }
}

/// A new process under a pid that had another.
fn reborn(parent: u32, child: u32, ts: u64) -> ProcessChange {
    ProcessChange::Fork {
        ts_ns: ts,
        parent,
        child,
        child_start_ns: start_of(child) + ts,
        comm: Comm::new("newborn"),
    }
}

fn exec(pid: u32, comm: &str, ts: u64) -> ProcessChange {
    ProcessChange::Exec {
        ts_ns: ts,
        pid,
        start_ns: start_of(pid),
        comm: Comm::new(comm),
    }
}

fn exit(pid: u32, ts: u64) -> ProcessChange {
    ProcessChange::Exit {
        ts_ns: ts,
        pid,
        start_ns: start_of(pid),
    }
}

/// An empty kernel view of namespace 0 at time 0: every id a call returns from then on is new.
fn empty_view() -> KernelSnapshot {
    KernelSnapshot {
        ns: 0,
        shm: Some(ShmTable::default()),
        sem: Some(SemTable::default()),
        msg: Some(MsgTable::default()),
        ..Default::default()
    }
}

fn seeded() -> Objects {
    let mut o = Objects::new();
    o.reconcile(&empty_view());
    o
}

fn apply(o: &mut Objects, calls: &[Call]) {
    for c in calls {
        o.apply(&Event::Call(*c));
    }
}

fn segment(o: &Objects, id: i32) -> &Segment {
    o.get(&identity(IpcKind::Shm, id))
        .unwrap()
        .segment()
        .unwrap()
}

fn maps_by_pid(o: &Objects, id: i32) -> Vec<(u32, u64)> {
    segment(o, id)
        .attached
        .iter()
        .map(|(pid, a)| (*pid, a.maps()))
        .collect()
}

fn values(o: &Objects, id: i32) -> Vec<Option<i32>> {
    o.get(&identity(IpcKind::Sem, id))
        .unwrap()
        .semaphores()
        .unwrap()
        .sems
        .iter()
        .map(|s| s.value)
        .collect()
}

fn queue(o: &Objects, id: i32) -> &Queue {
    o.get(&identity(IpcKind::Msg, id)).unwrap().queue().unwrap()
}

fn shm_seg(shmid: i32, ipc_key: i32, cpid: u32, nattch: u64, perms: u32) -> ShmSeg {
    ShmSeg {
        key: ipc_key,
        shmid,
        perms,
        size: 4096,
        cpid,
        lpid: cpid,
        nattch,
        uid: 1000,
        gid: 100,
        cuid: 1000,
        cgid: 100,
        atime: 0,
        dtime: 0,
        ctime: 0,
        rss: 0,
        swap: 0,
    }
}

fn sem_set(semid: i32, ipc_key: i32, nsems: u32) -> SemSet {
    SemSet::owned_by_root(semid, ipc_key, nsems)
}

fn sem_value(value: i32, last_pid: i32, ncount: i32, zcount: i32) -> SemValue {
    SemValue {
        value,
        last_pid,
        ncount,
        zcount,
    }
}

fn msg_queue(msqid: i32, qnum: u64, cbytes: u64, lspid: u32, lrpid: u32) -> MsgQueue {
    MsgQueue {
        key: 0x77,
        msqid,
        perms: 0o600,
        cbytes,
        qnum,
        lspid,
        lrpid,
        uid: 0,
        gid: 0,
        cuid: 0,
        cgid: 0,
        stime: 0,
        rtime: 0,
        ctime: 0,
    }
}

#[test]
fn the_get_call_that_made_an_object_is_its_creator() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            semget(10, 0x1234, 2, CREAT | 0o640, 5, 100),
            // Opening it again, even with IPC_CREAT, makes nobody its creator.
            semget(11, 0x1234, 2, CREAT | 0o640, 5, 200),
            semget(12, 0x1234, 0, 0, 5, 300),
        ],
    );
    let set = o.get(&identity(IpcKind::Sem, 5)).unwrap();
    assert_eq!(
        set.creator,
        Some(Actor {
            pid: 10,
            comm: Some(Comm::new("db")),
            ts_ns: Some(100),
            process: Some(ProcessSerial(1)),
        })
    );
    assert_eq!((set.ipc_key, set.mode), (0x1234, Some(0o640)));
    assert_eq!(set.semaphores().unwrap().nsems, Some(2));
    assert_eq!(values(&o, 5), [Some(0), Some(0)]);
    assert_eq!(set.ops[&Op::Semget], 3);
    assert_eq!(set.last_op.map(|l| (l.pid, l.op)), Some((12, Op::Semget)));
}

#[test]
fn without_the_kernels_list_only_private_or_exclusive_gets_prove_creation() {
    // No snapshot of namespace 7 (another container): the key may have existed before.
    let mut o = Objects::new();
    apply(
        &mut o,
        &[
            in_ns(msgget(10, 0x50, CREAT | 0o600, 1, 100), 7),
            in_ns(msgget(10, 0x51, CREAT | EXCL | 0o600, 2, 100), 7),
            in_ns(msgget(10, 0, 0o600, 3, 100), 7),
        ],
    );
    let creator = |id| {
        o.get(&ObjectKey {
            ns: 7,
            kind: IpcKind::Msg,
            id,
        })
        .unwrap()
        .creator
        .map(|c| c.pid)
    };
    assert_eq!(
        (creator(1), creator(2), creator(3)),
        (None, Some(10), Some(10))
    );

    // A --pid filter hides other processes' calls: an unknown id is no proof either.
    let mut o = seeded();
    o.set_partial_view(true);
    apply(&mut o, &[msgget(10, 0x50, CREAT | 0o600, 1, 100)]);
    assert_eq!(o.get(&identity(IpcKind::Msg, 1)).unwrap().creator, None);
}

#[test]
fn objects_that_existed_at_start_have_no_creator_but_segments_have_their_cpid() {
    let mut o = Objects::new();
    let mut view = empty_view();
    view.sem.as_mut().unwrap().sets =
        vec![(sem_set(3, 0x99, 1), Some(vec![sem_value(4, 77, 0, 0)]))];
    view.shm.as_mut().unwrap().segments = vec![shm_seg(9, 0x42, 55, 0, 0o600)];
    view.comms.insert(55, Comm::new("postgres"));
    view.comms.insert(77, Comm::new("worker"));
    o.reconcile(&view);
    apply(&mut o, &[semget(10, 0x99, 1, CREAT | 0o600, 3, 100)]);
    let set = o.get(&identity(IpcKind::Sem, 3)).unwrap();
    assert_eq!(set.creator, None, "the kernel keeps no creator of a set");
    assert_eq!(set.owner, Some(Owner { uid: 0, gid: 0 }));
    let sem = &set.semaphores().unwrap().sems[0];
    assert_eq!(
        (sem.value, sem.last_pid, sem.last_comm),
        (Some(4), 77, Some(Comm::new("worker")))
    );
    let seg = o.get(&identity(IpcKind::Shm, 9)).unwrap();
    assert_eq!(
        seg.creator,
        Some(Actor {
            pid: 55,
            comm: Some(Comm::new("postgres")),
            ts_ns: None,
            process: None,
        })
    );
    assert_eq!(seg.segment().unwrap().cpid, Some(55));
}

#[test]
fn attachments_follow_shmat_shmdt_fork_exec_and_exit() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            shmget(10, 0x42, 8192, CREAT | 0o600, 7, 1),
            shmat(10, "postgres", 7, 0x1000, 2),
            shmat(10, "postgres", 7, 0x9000, 3),
        ],
    );
    assert_eq!(segment(&o, 7).nattch, 2);
    assert_eq!(maps_by_pid(&o, 7), [(10, 2)]);

    o.apply_process(&fork(10, 20, 4));
    o.apply_process(&fork(10, 21, 5));
    assert_eq!(segment(&o, 7).nattch, 6);
    assert_eq!(
        segment(&o, 7).lpid,
        10,
        "the kernel counts a fork's copies as the parent's"
    );
    assert_eq!(maps_by_pid(&o, 7), [(10, 2), (20, 2), (21, 2)]);
    assert_eq!(o.comm_of(20), Some(Comm::new("parent")));

    // The child detaches one of its inherited mappings by address.
    apply(&mut o, &[shmdt(20, 0x9000, 6)]);
    assert_eq!(maps_by_pid(&o, 7), [(10, 2), (20, 1), (21, 2)]);
    assert_eq!((segment(&o, 7).nattch, segment(&o, 7).lpid), (5, 20));

    o.apply_process(&exec(21, "true", 7));
    assert_eq!(maps_by_pid(&o, 7), [(10, 2), (20, 1)]);
    assert_eq!((segment(&o, 7).nattch, segment(&o, 7).lpid), (3, 21));
    assert_eq!(o.comm_of(21), Some(Comm::new("true")));

    o.apply_process(&exit(20, 8));
    assert_eq!(maps_by_pid(&o, 7), [(10, 2)]);
    assert_eq!((segment(&o, 7).nattch, segment(&o, 7).lpid), (2, 20));
    assert_eq!(o.comm_of(20), None, "exited processes leave the name map");

    // A failed shmdt changes nothing; an unknown address is not this segment's.
    let mut failed = shmdt(10, 0x1000, 7);
    failed.ret = -22;
    apply(&mut o, &[failed, shmdt(10, 0x5555, 9)]);
    assert_eq!(segment(&o, 7).nattch, 2);
}

#[test]
fn children_of_unknown_processes_are_not_followed() {
    let mut o = seeded();
    o.apply_process(&fork(1, 2, 1));
    o.apply_process(&exec(2, "sh", 2));
    assert_eq!(o.processes(), 0);
    apply(&mut o, &[msgget(30, 0, 0o600, 1, 3)]);
    o.apply_process(&fork(30, 31, 4));
    assert_eq!(o.processes(), 2);
    o.apply_process(&exit(31, 5));
    o.apply_process(&exit(30, 6));
    assert_eq!(o.processes(), 0);
}

#[test]
fn a_segment_removed_while_attached_lives_until_the_last_detach() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            shmget(10, 0x42, 4096, CREAT | 0o600, 7, 1),
            shmat(10, "a", 7, 0x1000, 2),
        ],
    );
    o.apply_process(&fork(10, 20, 3));
    apply(&mut o, &[ctl(Op::Shmctl, 10, 7, 0, 4)]);
    let seg = o.get(&identity(IpcKind::Shm, 7)).unwrap();
    assert!(seg.removed);
    assert_eq!((seg.ipc_key, seg.mode), (0, Some(0o1600)));
    assert_eq!(seg.last_op.map(|l| l.op), Some(Op::Shmctl));

    apply(&mut o, &[shmdt(10, 0x1000, 5)]);
    assert!(o.get(&identity(IpcKind::Shm, 7)).unwrap().removed);
    o.apply_process(&exit(20, 6));
    assert!(
        o.get(&identity(IpcKind::Shm, 7)).is_none(),
        "the last detach destroyed it"
    );

    // Removing an unattached segment destroys it at once.
    apply(
        &mut o,
        &[
            shmget(10, 0x43, 4096, CREAT | 0o600, 8, 7),
            ctl(Op::Shmctl, 10, 8, 0, 8),
        ],
    );
    assert!(o.is_empty());
}

#[test]
fn semop_sets_values_and_last_pids_and_undo_applies_at_exit() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            semget(10, 0, 3, CREAT | 0o600, 4, 1),
            setval(10, 4, 0, 2, 2),
            semop(20, 4, &[(0, -1, 0), (1, 3, 0x1000)], 0, 3),
            // Failed operations change nothing.
            semop(21, 4, &[(0, -5, 0o4000)], -11, 4),
        ],
    );
    assert_eq!(values(&o, 4), [Some(1), Some(3), Some(0)]);
    let set = o
        .get(&identity(IpcKind::Sem, 4))
        .unwrap()
        .semaphores()
        .unwrap();
    let last: Vec<u32> = set.sems.iter().map(|s| s.last_pid).collect();
    assert_eq!(last, [20, 20, 0]);
    assert_eq!(set.sems[0].last_comm, Some(Comm::new("worker")));
    assert_eq!(o.get(&identity(IpcKind::Sem, 4)).unwrap().errors, 1);

    // Exit takes back what pid 20 did with SEM_UNDO, and names it the last to change sem 1.
    apply(&mut o, &[semop(30, 4, &[(1, 1, 0)], 0, 5)]);
    o.apply_process(&exit(20, 6));
    assert_eq!(values(&o, 4), [Some(1), Some(1), Some(0)]);
    let set = o
        .get(&identity(IpcKind::Sem, 4))
        .unwrap()
        .semaphores()
        .unwrap();
    assert_eq!((set.sems[0].last_pid, set.sems[1].last_pid), (20, 20));

    // SETVAL clears undo for its semaphore; SETALL's values are read at reconcile.
    apply(
        &mut o,
        &[
            semop(40, 4, &[(2, 5, 0x1000)], 0, 7),
            setval(41, 4, 2, 9, 8),
        ],
    );
    o.apply_process(&exit(40, 9));
    assert_eq!(values(&o, 4), [Some(1), Some(1), Some(9)]);
    let mut setall = ctl(Op::Semctl, 42, 4, 17, 10);
    setall.args[3] = 0x7fff_0000;
    apply(&mut o, &[setall]);
    assert_eq!(values(&o, 4), [None, None, None]);
    assert!(o
        .get(&identity(IpcKind::Sem, 4))
        .unwrap()
        .semaphores()
        .unwrap()
        .sems
        .iter()
        .all(|s| s.last_pid == 42));
}

#[test]
fn operations_the_kernel_program_could_not_read_make_values_unknown() {
    let mut o = seeded();
    apply(&mut o, &[semget(10, 0, 2, CREAT | 0o600, 4, 1)]);
    let mut blind = Call::synthetic(Op::Semop, 10, "w", [4, 0, 1, 0, 0, 0], 0, 2);
    blind.args[2] = 1; // one operation, not read
    apply(&mut o, &[blind]);
    assert_eq!(values(&o, 4), [None, None]);
}

#[test]
fn queue_depth_follows_sends_and_receives() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            msgget(10, 0x77, CREAT | 0o600, 3, 1),
            msgsnd(10, 3, 100, 1, 2),
            msgsnd(11, 3, 30, 2, 3),
            msgsnd(11, 3, 50, 1, 4),
            // Type 2 first: the queue keeps its order for the others.
            msgrcv(20, 3, 64, 0, Some((2, 30)), 5),
            // A truncating receive (MSG_NOERROR) takes the whole 100-byte message.
            msgrcv(21, 3, 10, 0o10000, Some((1, 10)), 6),
            // A copy and an empty-queue failure change nothing.
            msgrcv(22, 3, 64, 0o40000 | 0o4000, Some((1, 50)), 7),
            msgrcv(23, 3, 64, 0o4000, None, 8),
        ],
    );
    let q = queue(&o, 3);
    assert_eq!((q.qnum, q.cbytes), (1, 50));
    assert_eq!((q.lspid, q.lrpid), (11, 21));
    assert_eq!(q.last_send.map(|t| t.pid), Some(11));
    assert_eq!(
        q.last_recv.and_then(|t| t.comm),
        Some(Comm::new("receiver"))
    );
    assert_eq!((q.bytes_sent, q.bytes_received), (180, 90));

    // A receiver that slept was handed the message by msgsnd: the kernel records its thread.
    let mut handed = msgrcv(30, 3, 64, 0, Some((1, 50)), 9);
    handed.tid = 31;
    handed.blocked_ns = 1_000;
    apply(&mut o, &[handed]);
    assert_eq!((queue(&o, 3).qnum, queue(&o, 3).lrpid), (0, 31));
}

fn counted(pid: u32, op: Op, id: i32, calls: u64, bytes: u64, last_ns: u64) -> CountedDelta {
    CountedDelta {
        pid,
        ipc_ns: 0,
        id,
        op,
        calls,
        bytes,
        last_ns,
        last_tid: pid + 1,
        comm: Comm::new("counted"),
    }
}

#[test]
fn calls_the_kernel_counted_add_op_counts_bytes_and_the_last_op() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            msgget(10, 0x78, CREAT | 0o600, 4, 1),
            msgsnd(10, 4, 100, 1, 2),
        ],
    );
    o.apply_counted(&counted(12, Op::Msgsnd, 4, 500, 4000, 50));
    o.apply_counted(&counted(13, Op::Msgrcv, 4, 480, 3840, 40));
    // Of an object nobody knows: nothing to add to.
    o.apply_counted(&counted(12, Op::Msgsnd, 99, 7, 56, 60));
    let object = o.get(&identity(IpcKind::Msg, 4)).unwrap();
    assert_eq!(
        (object.ops.get(&Op::Msgsnd), object.ops.get(&Op::Msgrcv)),
        (Some(&501), Some(&480))
    );
    let last = object.last_op.unwrap();
    assert_eq!(
        (last.pid, last.tid, last.op, last.ts_ns),
        (12, 13, Op::Msgsnd, 50)
    );
    assert_eq!(last.comm, Comm::new("counted"));
    let q = queue(&o, 4);
    assert_eq!((q.bytes_sent, q.bytes_received), (4100, 3840));
    // Its depth is the kernel's from now on: the messages are no longer followed one by one.
    assert_eq!((q.qnum, q.cbytes), (1, 100));
    assert!(q.messages.is_none());
    assert!(o.get(&identity(IpcKind::Msg, 99)).is_none());
}

#[test]
fn a_reused_id_is_a_new_object() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            shmget(10, 0x42, 4096, CREAT | 0o600, 7, 1),
            ctl(Op::Shmctl, 10, 7, 0, 2),
            shmget(20, 0x43, 8192, CREAT | 0o644, 7, 3),
        ],
    );
    let seg = o.get(&identity(IpcKind::Shm, 7)).unwrap();
    assert_eq!((seg.ipc_key, seg.creator.map(|c| c.pid)), (0x43, Some(20)));
    assert_eq!(seg.ops.values().sum::<u64>(), 1, "counters start afresh");

    // Removal unseen (say, by a process a --pid filter hides): a get returning the id under
    // another key still means a new object.
    apply(
        &mut o,
        &[
            semget(10, 0x50, 1, CREAT | 0o600, 9, 4),
            semop(10, 9, &[(0, 1, 0)], 0, 5),
            semget(20, 0x51, 1, CREAT | 0o600, 9, 6),
        ],
    );
    assert_eq!(values(&o, 9), [Some(0)]);
    assert_eq!(
        o.get(&identity(IpcKind::Sem, 9))
            .unwrap()
            .creator
            .map(|c| c.pid),
        Some(20)
    );
}

#[test]
fn namespaces_are_kept_apart() {
    let mut o = Objects::new();
    apply(
        &mut o,
        &[
            in_ns(msgget(10, 0, 0o600, 0, 1), 1),
            in_ns(msgget(20, 0, 0o600, 0, 2), 2),
            in_ns(msgsnd(10, 0, 5, 1, 3), 1),
            in_ns(ctl(Op::Msgctl, 20, 0, 0, 4), 2),
        ],
    );
    assert_eq!(o.len(), 1);
    let q = o
        .get(&ObjectKey {
            ns: 1,
            kind: IpcKind::Msg,
            id: 0,
        })
        .unwrap();
    assert_eq!(
        (q.queue().unwrap().qnum, q.creator.map(|c| c.pid)),
        (1, Some(10))
    );
    // A snapshot of namespace 0 leaves namespace 1 alone.
    o.reconcile(&empty_view());
    assert_eq!(o.len(), 1);
}

#[test]
fn eidrm_means_the_object_is_gone_and_index_commands_name_no_object() {
    let mut o = seeded();
    apply(&mut o, &[semget(10, 0, 1, CREAT | 0o600, 4, 1)]);
    // SEM_STAT's first argument is an index into the kernel's table, not an id.
    apply(&mut o, &[ctl(Op::Semctl, 10, 4, 18, 2)]);
    assert!(!o
        .get(&identity(IpcKind::Sem, 4))
        .unwrap()
        .ops
        .contains_key(&Op::Semctl));
    // IPC_STAT is counted but only looks.
    apply(&mut o, &[ctl(Op::Semctl, 11, 4, 2, 3)]);
    let set = o.get(&identity(IpcKind::Sem, 4)).unwrap();
    assert_eq!(
        (set.ops[&Op::Semctl], set.last_op.map(|l| l.pid)),
        (1, Some(10))
    );
    apply(&mut o, &[semop(20, 4, &[(0, -1, 0)], -43, 4)]);
    assert!(o.is_empty());
    // Failed calls on unknown ids invent nothing.
    apply(&mut o, &[semop(20, 99, &[(0, -1, 0)], -22, 5)]);
    assert!(o.is_empty());
}

#[test]
fn ipc_set_records_who_changed_owner_or_mode() {
    let mut o = seeded();
    apply(
        &mut o,
        &[msgget(10, 0, 0o600, 3, 1), ctl(Op::Msgctl, 12, 3, 1, 2)],
    );
    let q = o.get(&identity(IpcKind::Msg, 3)).unwrap();
    assert_eq!(q.changed_by.map(|a| (a.pid, a.ts_ns)), Some((12, Some(2))));
}

#[test]
fn reconcile_corrects_counts_attachments_and_values() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            shmget(10, 0x42, 12288, CREAT | 0o600, 7, 1),
            shmat(10, "postgres", 7, 0x10000, 2),
            semget(10, 0x50, 2, CREAT | 0o600, 8, 3),
            msgget(10, 0x77, CREAT | 0o600, 9, 4),
            msgsnd(10, 9, 10, 1, 5),
            shmget(10, 0x44, 4096, CREAT | 0o600, 11, 6),
        ],
    );
    // Pid 10 mprotected the middle page (three mappings), pid 30 attached unseen; someone
    // removed segment 11, set the semaphores and drained the queue; a queue appeared.
    let mut view = empty_view();
    view.ns = 0;
    let shm = view.shm.as_mut().unwrap();
    shm.taken_ns = 10;
    let mut seg = shm_seg(7, 0x42, 10, 4, 0o600);
    seg.size = 12288;
    shm.segments = vec![seg];
    let mapping = |start: u64, end: u64| SysvMapping {
        start,
        end,
        shmid: 7,
        key: 0x42,
    };
    shm.mappings = vec![
        ProcessAttachments {
            pid: 10,
            comm: "postgres".into(),
            start: None,
            mappings: vec![
                mapping(0x10000, 0x11000),
                mapping(0x11000, 0x12000),
                mapping(0x12000, 0x13000),
            ],
        },
        ProcessAttachments {
            pid: 30,
            comm: "psql".into(),
            start: None,
            mappings: vec![mapping(0x50000, 0x53000)],
        },
    ];
    let sem = view.sem.as_mut().unwrap();
    sem.taken_ns = 10;
    sem.sets = vec![(
        sem_set(8, 0x50, 2),
        Some(vec![sem_value(1, 40, 0, 0), sem_value(0, 0, 1, 0)]),
    )];
    sem.blocked = vec![BlockedSemop {
        pid: 50,
        tid: 51,
        comm: "waiter".into(),
        semid: 8,
        sops: vec![SemOp {
            num: 1,
            op: -1,
            flg: 0,
        }],
        entered_ns: None,
    }];
    let msg = view.msg.as_mut().unwrap();
    msg.taken_ns = 10;
    let mut q = msg_queue(9, 0, 0, 10, 60);
    q.key = 0x77;
    msg.queues = vec![(q, Some(2048)), (msg_queue(12, 1, 5, 61, 0), None)];
    msg.msgmnb = Some(16384);
    view.comms.insert(40, Comm::new("setter"));
    view.comms.insert(60, Comm::new("drainer"));
    o.reconcile(&view);

    assert!(o.get(&identity(IpcKind::Shm, 11)).is_none());
    let seg = segment(&o, 7);
    assert_eq!(seg.nattch, 4);
    assert_eq!(maps_by_pid(&o, 7), [(10, 3), (30, 1)]);
    assert_eq!(seg.attached[&10].spans, BTreeMap::from([(0x10000, 3)]));
    assert_eq!(
        o.get(&identity(IpcKind::Shm, 7))
            .unwrap()
            .creator
            .unwrap()
            .ts_ns,
        Some(1)
    );
    // shmdt removes every mapping of the split attachment.
    apply(&mut o, &[shmdt(10, 0x10000, 11)]);
    assert_eq!(
        (segment(&o, 7).nattch, maps_by_pid(&o, 7)),
        (1, vec![(30, 1)])
    );

    let set = o
        .get(&identity(IpcKind::Sem, 8))
        .unwrap()
        .semaphores()
        .unwrap();
    assert_eq!(values(&o, 8), [Some(1), Some(0)]);
    assert_eq!(
        (set.sems[0].last_pid, set.sems[0].last_comm),
        (40, Some(Comm::new("setter")))
    );
    assert_eq!(set.sems[1].ncount, 1);
    let w = set.sems[1].waiters[0];
    assert_eq!((w.pid, w.tid, w.for_zero, w.since_ns), (50, 51, false, 10));
    assert_eq!(o.comm_of(50), Some(Comm::new("waiter")));

    let q = queue(&o, 9);
    assert_eq!((q.qnum, q.cbytes, q.qbytes), (0, 0, Some(2048)));
    assert_eq!(
        q.last_send.map(|t| t.comm),
        Some(Some(Comm::new("sender"))),
        "kept: same pid"
    );
    assert_eq!(q.last_recv.and_then(|t| t.comm), Some(Comm::new("drainer")));
    let appeared = o.get(&identity(IpcKind::Msg, 12)).unwrap();
    assert_eq!(appeared.creator, None);
    assert_eq!(appeared.queue().unwrap().qbytes, Some(16384));

    // A later reconcile keeps when a waiter was first seen; its semop returning ends the wait.
    let mut later = view.clone();
    for t in [
        &mut later.shm.as_mut().unwrap().taken_ns,
        &mut later.sem.as_mut().unwrap().taken_ns,
    ] {
        *t = 20;
    }
    later.shm.as_mut().unwrap().segments[0].nattch = 1;
    later.shm.as_mut().unwrap().mappings.remove(0);
    o.reconcile(&later);
    let w = o
        .get(&identity(IpcKind::Sem, 8))
        .unwrap()
        .semaphores()
        .unwrap()
        .sems[1]
        .waiters[0];
    assert_eq!(w.since_ns, 10);
    let mut woken = semop(50, 8, &[(1, -1, 0)], 0, 21);
    woken.tid = 51;
    apply(&mut o, &[woken]);
    let sem1 = &o
        .get(&identity(IpcKind::Sem, 8))
        .unwrap()
        .semaphores()
        .unwrap()
        .sems[1];
    assert_eq!(
        (sem1.waiters.len(), sem1.ncount, sem1.value),
        (0, 0, Some(-1))
    );
}

#[test]
fn calls_older_than_a_snapshot_add_names_not_numbers() {
    let mut o = Objects::new();
    let mut view = empty_view();
    let msg = view.msg.as_mut().unwrap();
    msg.taken_ns = 100;
    msg.queues = vec![(msg_queue(3, 1, 10, 10, 0), None)];
    let shm = view.shm.as_mut().unwrap();
    shm.taken_ns = 100;
    shm.segments = vec![shm_seg(7, 0x42, 10, 1, 0o600)];
    o.reconcile(&view);
    // These happened before the snapshot and are in its numbers already.
    apply(
        &mut o,
        &[
            shmget(10, 0x42, 4096, CREAT | 0o600, 7, 50),
            shmat(10, "db", 7, 0x1000, 60),
            msgget(10, 0x77, CREAT | 0o600, 3, 70),
            msgsnd(10, 3, 10, 1, 80),
        ],
    );
    let q = queue(&o, 3);
    assert_eq!((q.qnum, q.cbytes), (1, 10));
    assert_eq!(q.last_send.and_then(|t| t.comm), Some(Comm::new("sender")));
    assert_eq!(segment(&o, 7).nattch, 1);
    let seg = o.get(&identity(IpcKind::Shm, 7)).unwrap();
    assert_eq!(
        seg.creator.unwrap().ts_ns,
        Some(50),
        "the cpid's get call names the time"
    );
    // An IPC_RMID older than the snapshot removed an earlier object with this id, not this one.
    apply(&mut o, &[ctl(Op::Msgctl, 10, 3, 0, 90)]);
    assert!(o.get(&identity(IpcKind::Msg, 3)).is_some());
}

#[test]
fn a_creator_whose_call_came_after_the_kernels_ctime_is_forgotten() {
    let mut o = seeded();
    apply(
        &mut o,
        &[semget(10, 0x50, 1, CREAT | 0o600, 8, 5_000_000_000)],
    );
    let mut view = empty_view();
    view.epoch_offset_ns = 1_000_000_000_000; // epoch = mono + 1000 s
    let mut set = sem_set(8, 0x50, 1);
    set.ctime = 1_005;
    view.sem.as_mut().unwrap().sets = vec![(set.clone(), None)];
    o.reconcile(&view);
    assert!(o.get(&identity(IpcKind::Sem, 8)).unwrap().creator.is_some());
    set.ctime = 900;
    view.sem.as_mut().unwrap().sets = vec![(set, None)];
    o.reconcile(&view);
    assert_eq!(o.get(&identity(IpcKind::Sem, 8)).unwrap().creator, None);
}

#[test]
fn the_blocking_semaphore_is_the_first_operation_that_cannot_proceed() {
    use super::reconcile::blocking_semaphore;
    let values = [
        sem_value(0, 0, 1, 0),
        sem_value(5, 0, 0, 0),
        sem_value(1, 0, 0, 1),
    ];
    let op = |num, op| SemOp { num, op, flg: 0 };
    assert_eq!(
        blocking_semaphore(&values, &[op(1, -1), op(0, -1)]),
        Some((0, false))
    );
    assert_eq!(blocking_semaphore(&values, &[op(2, 0)]), Some((2, true)));
    assert_eq!(blocking_semaphore(&values, &[op(1, -6)]), Some((1, false)));
    assert_eq!(
        blocking_semaphore(&values, &[op(1, -5)]),
        None,
        "it can proceed"
    );
    // Unknown operations: only a set with one waited-on semaphore tells.
    assert_eq!(blocking_semaphore(&values[..2], &[]), Some((0, false)));
    assert_eq!(blocking_semaphore(&values, &[]), None);
}

#[test]
fn a_waiter_seen_asleep_after_its_mutex_read_free_waits_where_the_kernel_counts() {
    use super::reconcile::blocking_semaphore;
    let op = |num, op| SemOp { num, op, flg: 0 };
    // Read as free (1) with 11 waiting: the holder gave it back between the reads, and the
    // thread the walk then found asleep still waits on it.
    let free = [sem_value(1, 0, 11, 0)];
    assert_eq!(blocking_semaphore(&free, &[op(0, -1)]), Some((0, false)));
    // Nobody counted there: it is not waiting on this set at all (being woken).
    let idle = [sem_value(1, 0, 0, 0), sem_value(0, 0, 0, 2)];
    assert_eq!(blocking_semaphore(&idle, &[op(0, -1)]), None);
    assert_eq!(
        blocking_semaphore(&idle, &[op(0, -1), op(1, 0)]),
        Some((1, true))
    );
}

#[test]
fn a_reused_pid_is_not_its_predecessor() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            shmget(10, 0x42, 4096, CREAT | 0o600, 7, 1),
            shmat(10, "postgres", 7, 0x1000, 2),
            semget(10, 0x43, 1, CREAT | 0o600, 8, 3),
        ],
    );
    o.apply_process(&fork(10, 20, 4));
    // Pid 20 holds a mapping, a SEM_UNDO adjustment and a name; then its exit event is lost.
    apply(&mut o, &[semop(20, 8, &[(0, 1, 0x1000)], 0, 5)]);
    assert_eq!(maps_by_pid(&o, 7), [(10, 1), (20, 1)]);
    assert_eq!(o.comm_of(20), Some(Comm::new("worker")));

    // A process nobody follows forks a new pid 20.
    o.apply_process(&reborn(99, 20, 6));
    assert_eq!(maps_by_pid(&o, 7), [(10, 1)], "the new pid 20 maps nothing");
    assert_eq!(segment(&o, 7).nattch, 1);
    assert_eq!(
        values(&o, 8),
        [Some(0)],
        "the predecessor's exit undid its +1"
    );
    assert_eq!(o.comm_of(20), None, "nor does it inherit the name");
    assert_eq!(o.missed_exits(), 1);
    // Its shmdt at the predecessor's address detaches nothing of segment 7.
    apply(&mut o, &[shmdt(20, 0x1000, 7)]);
    assert_eq!(segment(&o, 7).nattch, 1);
    // What the predecessor did stays its own: that process has exited, the pid's new one not.
    let last = |o: &Objects, id| o.get(&identity(IpcKind::Sem, id)).unwrap().last_op.unwrap();
    assert_eq!(last(&o, 8).pid, 20);
    assert_eq!(o.exited(20, Some(last(&o, 8).process)), Some(true));
    let creator = o.get(&identity(IpcKind::Shm, 7)).unwrap().creator.unwrap();
    assert_eq!(o.exited(10, creator.process), Some(false));
    apply(&mut o, &[ctl(Op::Semctl, 20, 8, 1, 8)]); // IPC_SET
    assert_eq!(o.exited(20, Some(last(&o, 8).process)), Some(false));

    // Forked by a followed process, the newcomer gets its parent's mappings, and its own name.
    o.apply_process(&exit(20, 8));
    assert_eq!(o.exited(20, Some(last(&o, 8).process)), Some(true));
    o.apply_process(&reborn(10, 20, 9));
    assert_eq!(maps_by_pid(&o, 7), [(10, 1), (20, 1)]);
    assert_eq!(o.comm_of(20), Some(Comm::new("newborn")));
    assert_eq!(o.missed_exits(), 1, "that exit was seen");

    // An exec under a known pid with another start: the one held is gone too.
    apply(&mut o, &[semop(20, 8, &[(0, 2, 0x1000)], 0, 10)]);
    o.apply_process(&exec(20, "sh", 11));
    assert_eq!(values(&o, 8), [Some(0)]);
    assert_eq!(o.comm_of(20), None);
    assert_eq!(o.missed_exits(), 2);

    // A process known from its calls only (no start yet) is the one that execs.
    apply(&mut o, &[semop(30, 8, &[(0, 1, 0x1000)], 0, 12)]);
    o.apply_process(&exec(30, "sh", 13));
    assert_eq!(o.comm_of(30), Some(Comm::new("sh")));
    o.apply_process(&exit(30, 14));
    assert_eq!(values(&o, 8), [Some(0)], "its SEM_UNDO survived the exec");
    assert_eq!(o.missed_exits(), 2);
}

#[test]
fn a_child_seen_in_proc_before_its_fork_event_is_that_child() {
    let mut o = seeded();
    apply(
        &mut o,
        &[
            shmget(10, 0x42, 4096, CREAT | 0o600, 7, 1),
            shmat(10, "postgres", 7, 0x1000, 2),
        ],
    );
    // The child forked at 3; /proc is read at 5, before its fork event is handled.
    let mut view = empty_view();
    let shm = view.shm.as_mut().unwrap();
    shm.taken_ns = 5;
    shm.segments = vec![shm_seg(7, 0x42, 10, 2, 0o600)];
    let mapping = SysvMapping {
        start: 0x1000,
        end: 0x2000,
        shmid: 7,
        key: 0x42,
    };
    let tick = 10_000_000;
    shm.mappings = [10, 20]
        .map(|pid| ProcessAttachments {
            pid,
            comm: "postgres".into(),
            start: Some(ProcessStart {
                ns: start_of(pid) / tick * tick,
                grain_ns: tick,
            }),
            mappings: vec![mapping],
        })
        .to_vec();
    o.reconcile(&view);
    o.apply_process(&fork(10, 20, 3));
    assert_eq!(maps_by_pid(&o, 7), [(10, 1), (20, 1)]);
    assert_eq!(segment(&o, 7).nattch, 2);
    assert_eq!(o.missed_exits(), 0);
    apply(&mut o, &[shmdt(20, 0x1000, 6)]);
    assert_eq!(maps_by_pid(&o, 7), [(10, 1)]);

    // /proc showing another process under a pid the model holds: the held one is gone.
    o.apply_process(&exit(20, 7));
    o.apply_process(&reborn(10, 20, 8));
    assert_eq!(maps_by_pid(&o, 7), [(10, 1), (20, 1)]);
    let shm = view.shm.as_mut().unwrap();
    shm.taken_ns = 10;
    shm.mappings[1] = ProcessAttachments {
        pid: 20,
        comm: "psql".into(),
        start: Some(ProcessStart {
            ns: start_of(20) + 5 * tick,
            grain_ns: tick,
        }),
        mappings: vec![SysvMapping {
            start: 0x6000,
            end: 0x7000,
            ..mapping
        }],
    };
    o.reconcile(&view);
    assert_eq!(o.missed_exits(), 1);
    assert_eq!(o.comm_of(20), Some(Comm::new("psql")));
    assert_eq!(maps_by_pid(&o, 7), [(10, 1), (20, 1)]);
    apply(&mut o, &[shmdt(20, 0x1000, 11)]);
    assert_eq!(
        maps_by_pid(&o, 7),
        [(10, 1), (20, 1)],
        "the predecessor's address is not the newcomer's"
    );
}

#[test]
fn churn_of_objects_and_processes_leaves_the_model_bounded() {
    const OBJECTS: u32 = 100_000;
    const PROCESSES: u32 = 10_000;
    // Pids come back: 10_000 processes under 2_500 pids.
    const PIDS: u32 = 2_500;
    let mut o = seeded();
    let parent = 10;
    apply(
        &mut o,
        &[
            shmget(parent, 0x42, 4096, CREAT | 0o600, 1, 1),
            shmat(parent, "postgres", 1, 0x1000, 2),
            semget(parent, 0x43, 1, CREAT | 0o600, 2, 3),
        ],
    );
    let mut ts = 10;
    let mut tick = || {
        ts += 1;
        ts
    };
    let mut peak = Footprint::default();
    let mut feed = |o: &mut Objects, events: &[Event]| {
        for e in events {
            o.apply(e);
            let now = o.footprint();
            peak = Footprint {
                objects: peak.objects.max(now.objects),
                processes: peak.processes.max(now.processes),
                address_books: peak.address_books.max(now.address_books),
                unknown_values: peak.unknown_values.max(now.unknown_values),
            };
        }
    };
    let mut children = 0;
    for i in 0..OBJECTS {
        // Ids as the kernel hands them out: a slot and a sequence number that grows.
        let id = (1_000 + i % 3 + (i / 3) * 32_768 % 0x7fff_0000) as i32;
        let calls = match i % 3 {
            0 => [
                shmget(parent, 0, 4096, CREAT | 0o600, id as i64, tick()),
                shmat(parent, "postgres", id, 0x9000, tick()),
                shmdt(parent, 0x9000, tick()),
                ctl(Op::Shmctl, parent, id, 0, tick()),
            ],
            1 => [
                semget(parent, 0, 2, CREAT | 0o600, id as i64, tick()),
                semop(parent, id, &[(1, 1, 0x1000)], 0, tick()),
                semop(parent, id, &[(0, 1, 0)], 0, tick()),
                ctl(Op::Semctl, parent, id, 0, tick()),
            ],
            _ => [
                msgget(parent, 0, 0o600, id as i64, tick()),
                msgsnd(parent, id, 64, 1, tick()),
                msgrcv(parent, id, 64, 0, Some((1, 64)), tick()),
                ctl(Op::Msgctl, parent, id, 0, tick()),
            ],
        };
        feed(&mut o, &calls.map(Event::Call));
        if i % (OBJECTS / PROCESSES) == 0 {
            // A short-lived child: inherits the mapping, adds one of its own, takes the
            // semaphore with SEM_UNDO, and exits without detaching or releasing.
            let child = 1_000 + children % PIDS;
            let start = tick();
            feed(
                &mut o,
                &[
                    Event::Process(ProcessChange::Fork {
                        ts_ns: start,
                        parent,
                        child,
                        child_start_ns: start,
                        comm: Comm::new("worker"),
                    }),
                    Event::Call(shmat(child, "worker", 1, 0x7000, tick())),
                    Event::Call(semop(child, 2, &[(0, 1, 0x1000)], 0, tick())),
                    Event::Process(ProcessChange::Exit {
                        ts_ns: tick(),
                        pid: child,
                        start_ns: start,
                    }),
                ],
            );
            children += 1;
        }
    }
    println!(
        "after {OBJECTS} objects and {children} processes: peak {peak:?}, now {:?}",
        o.footprint()
    );
    assert_eq!(children, PROCESSES);
    assert_eq!(
        peak,
        Footprint {
            objects: 3,
            processes: 2,
            address_books: 2,
            unknown_values: 0,
        }
    );
    assert_eq!(
        o.footprint(),
        Footprint {
            objects: 2,
            processes: 1,
            address_books: 1,
            unknown_values: 0,
        }
    );
    assert_eq!(maps_by_pid(&o, 1), [(parent, 1)]);
    assert_eq!(segment(&o, 1).nattch, 1);
    assert_eq!(values(&o, 2), [Some(0)], "every child's exit undid its +1");
    assert_eq!((o.missed_exits(), o.forgotten_processes()), (0, 0));
}

#[test]
fn processes_whose_exits_were_lost_are_forgotten_and_counted() {
    let mut o = seeded();
    apply(&mut o, &[semget(1, 0, 1, CREAT | 0o600, 5, 1)]);
    apply(&mut o, &[semop(1, 5, &[(0, 1, 0x1000)], 0, 2)]);
    let callers = MAX_PROCESSES as u32 + 1_000;
    for pid in 2..callers {
        apply(&mut o, &[ctl(Op::Semctl, pid, 5, 2, pid as u64)]);
    }
    assert!(o.processes() <= MAX_PROCESSES);
    assert_eq!(o.forgotten_processes(), MAX_PROCESSES as u64 - 1);
    assert_eq!(o.comm_of(1), Some(Comm::new("worker")), "holders are kept");
}

#[test]
fn a_fork_during_the_maps_scan_joins_the_list_not_the_count() {
    // The scan found only the parent; the counts, read after it, already held a child forked
    // while it ran (its event is older than the snapshot).
    let mut view = empty_view();
    let shm = view.shm.as_mut().unwrap();
    shm.taken_ns = 100;
    shm.segments = vec![shm_seg(7, 0x42, 10, 2, 0o600)];
    shm.mappings = vec![ProcessAttachments {
        pid: 10,
        comm: "postgres".into(),
        start: None,
        mappings: vec![SysvMapping {
            start: 0x10000,
            end: 0x11000,
            shmid: 7,
            key: 0x42,
        }],
    }];
    let mut o = Objects::new();
    o.reconcile(&view);
    o.apply(&Event::Process(fork(10, 11, 90)));
    assert_eq!(segment(&o, 7).nattch, 2, "already counted");
    assert_eq!(maps_by_pid(&o, 7), [(10, 1), (11, 1)]);
    assert!(o.segments_short_of_count().is_empty());
    // A fork after the snapshot adds to both.
    o.apply(&Event::Process(fork(10, 12, 150)));
    assert_eq!(segment(&o, 7).nattch, 3);
    assert_eq!(maps_by_pid(&o, 7), [(10, 1), (11, 1), (12, 1)]);
    // An exit's event comes before the kernel stops counting: child 11 exited at 95, and the
    // count read at 100 still held it. The list is then behind the count, which is taken again.
    o.apply(&Event::Process(exit(11, 95)));
    assert_eq!(maps_by_pid(&o, 7), [(10, 1), (12, 1)]);
    assert_eq!(o.segments_short_of_count(), [identity(IpcKind::Shm, 7)]);
    o.recount_segment(identity(IpcKind::Shm, 7), 2, 200);
    assert!(o.segments_short_of_count().is_empty());
}

#[test]
fn queue_waiters_come_from_the_snapshot_and_leave_when_their_call_returns() {
    let receiver = |pid: u32, entered_ns: Option<u64>| BlockedMsg {
        pid,
        tid: pid,
        comm: "rcv".into(),
        msqid: 9,
        op: Op::Msgrcv,
        entered_ns,
    };
    let look = |taken_ns: u64, blocked: Vec<BlockedMsg>, scanned: bool| {
        let mut view = empty_view();
        let msg = view.msg.as_mut().unwrap();
        msg.taken_ns = taken_ns;
        msg.queues = vec![(msg_queue(9, 0, 0, 0, 0), Some(2048))];
        msg.blocked = blocked;
        msg.scanned = scanned;
        view
    };
    let waiters = |o: &Objects| -> Vec<(u32, u64, bool)> {
        queue(o, 9)
            .waiters
            .iter()
            .map(|w| (w.pid, w.since_ns, w.exact))
            .collect()
    };
    let mut o = Objects::new();
    // /proc shows 70 waiting (begun before tracing): at least since the look.
    o.reconcile(&look(10, vec![receiver(70, None)], true));
    assert_eq!(waiters(&o), [(70, 10, false)]);
    // Later looks list the traced calls in flight only: 70 still waits, unseen by them.
    o.reconcile(&look(20, vec![receiver(71, Some(15))], false));
    assert_eq!(waiters(&o), [(70, 10, false), (71, 15, true)]);
    assert_eq!(o.comm_of(71), Some(Comm::new("rcv")));
    apply(&mut o, &[msgrcv(70, 9, 8, 0, Some((1, 8)), 25)]);
    assert_eq!(waiters(&o), [(71, 15, true)], "its msgrcv returned");
    o.apply(&Event::Process(exit(71, 30)));
    assert_eq!(waiters(&o), [], "killed in its wait");
    // A look that walked /proc and found nobody: nobody waits.
    o.reconcile(&look(40, vec![receiver(72, None)], true));
    o.reconcile(&look(50, vec![], true));
    assert_eq!(waiters(&o), []);
}

/// A look at set 8 (one semaphore at 0, last changed by `last_pid`) taken at `taken_ns`, with
/// process 50 asleep taking a unit of it (flags `flg`) since `entered_ns`, if traced.
fn fifty_waits_on_set_8(
    taken_ns: u64,
    last_pid: i32,
    flg: i16,
    entered_ns: Option<u64>,
) -> KernelSnapshot {
    let mut view = empty_view();
    let sem = view.sem.as_mut().unwrap();
    sem.taken_ns = taken_ns;
    sem.sets = vec![(
        sem_set(8, 0x50, 1),
        Some(vec![sem_value(0, last_pid, 1, 0)]),
    )];
    sem.blocked = vec![BlockedSemop {
        pid: 50,
        tid: 50,
        comm: "worker".into(),
        semid: 8,
        sops: vec![SemOp {
            num: 0,
            op: -1,
            flg,
        }],
        entered_ns,
    }];
    view
}

/// Set 8 with its one semaphore at 1, seen at 4.
fn set_8_free() -> KernelSnapshot {
    let mut view = empty_view();
    let sem = view.sem.as_mut().unwrap();
    sem.taken_ns = 4;
    sem.sets = vec![(sem_set(8, 0x50, 1), Some(vec![sem_value(1, 0, 0, 0)]))];
    view
}

/// The pids of each cycle the model finds, in order.
fn cycles(o: &Objects) -> Vec<Vec<u32>> {
    o.deadlocks()
        .iter()
        .map(|d| d.links.iter().map(|l| l.pid).collect())
        .collect()
}

#[test]
fn a_deadlock_through_a_traced_holder_is_only_possible_once_calls_were_lost() {
    let mut o = seeded();
    // Process 50 takes semaphore 0 without SEM_UNDO, then waits on it again: by the calls
    // traced it holds the unit it waits for.
    o.reconcile(&set_8_free());
    apply(&mut o, &[semop(50, 8, &[(0, -1, 0)], 0, 5)]);
    o.reconcile(&fifty_waits_on_set_8(10, 50, 0, None));
    // The ring buffer was found empty after the look: every call before it is in the ledger.
    o.applied_through(10);
    let possible =
        |o: &Objects| -> Vec<bool> { o.deadlocks().iter().map(|d| d.possible).collect() };
    assert_eq!(possible(&o), [false], "every call seen: it waits on itself");
    // A lost call may have been its release: the ledger's word is no longer certain.
    o.calls_lost(0);
    assert_eq!(possible(&o), [false]);
    o.calls_lost(3);
    assert_eq!(possible(&o), [true]);
}

#[test]
fn a_traced_holder_counts_for_a_wait_only_once_the_ledger_is_current_to_its_start() {
    // Process 50 took semaphore 0 at 5 without SEM_UNDO, and at 15 began waiting on it again.
    // Whether it gave the unit back in between is in the calls that ended before 15.
    let took = || {
        let mut o = seeded();
        o.reconcile(&set_8_free());
        apply(&mut o, &[semop(50, 8, &[(0, -1, 0)], 0, 5)]);
        o.reconcile(&fifty_waits_on_set_8(20, 60, 0, Some(15)));
        o
    };
    // Its release at 7 may still be in the ring buffer: no deadlock yet.
    let mut o = took();
    assert_eq!(cycles(&o), Vec::<Vec<u32>>::new());
    // The ring found empty at 16 without one: it waits on the unit it holds.
    o.applied_through(16);
    assert_eq!(cycles(&o), [vec![50]]);
    // A call of another process that ended at 17 says as much.
    let mut o = took();
    apply(&mut o, &[semop(60, 9, &[(0, 1, 0)], 0, 17)]);
    assert_eq!(cycles(&o), [vec![50]]);
    // Its release did come: it holds nothing.
    let mut o = took();
    apply(&mut o, &[semop(50, 8, &[(0, 1, 0)], 0, 7)]);
    o.applied_through(16);
    assert_eq!(cycles(&o), Vec::<Vec<u32>>::new());
}

#[test]
fn a_sem_undo_holder_counts_for_a_traced_wait_only_if_it_slept_through_the_walk() {
    // Process 50 waits on semaphore 0 since 15 (read at 20); the undo walk just after says it
    // holds a unit of it with SEM_UNDO. If the wait ended during the walk, that unit is the one
    // it waited for.
    let view = fifty_waits_on_set_8(20, 50, syscalls::SEM_UNDO as i16, Some(15));
    let mut o = seeded();
    o.reconcile(&view);
    let walk = || {
        Some(SemUndoWalk {
            entries: vec![crate::decoder::sem_undo::SemUndo {
                pid: 50,
                comm: Comm::new("worker"),
                ipc_ns: view.ns,
                semid: 8,
                semadj: Some(vec![1]),
            }],
            ..SemUndoWalk::default()
        })
    };
    o.set_kernel_undo(walk());
    assert_eq!(cycles(&o), [vec![50]], "not looked after the walk: as read");
    o.set_asleep_after_undo_walk([(51, 12)]);
    assert_eq!(cycles(&o), Vec::<Vec<u32>>::new(), "woken during the walk");
    o.set_kernel_undo(walk());
    o.set_asleep_after_undo_walk([(50, 15)]);
    assert_eq!(
        cycles(&o),
        [vec![50]],
        "asleep all through: it waits on itself"
    );
}
