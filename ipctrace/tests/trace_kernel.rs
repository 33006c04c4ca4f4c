//! Loads the real programs into the running kernel and makes forked children perform every SysV
//! IPC call, successes and failures, then checks each record against what the child did.
//! Needs root (every machine this project runs on is root); nothing here is skipped.

mod support;

use ipctrace::decoder::syscalls::{IpcKind, Op};
use ipctrace::decoder::{Event, SemOp};
use ipctrace::filter::Filter;
use ipctrace::loader::KernelCounts;
use ipctrace::model::shm_addresses::ShmAddressBook;
use ipctrace::session::Sink;
use ipctrace::views::trace::TraceView;
use std::ptr;
use support::*;

const MS: u64 = 1_000_000;

fn own_ipc_ns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/ipc").unwrap().ino() as u32
}

#[test]
fn semaphore_calls_successes_and_failures() {
    // SAFETY (all unsafe blocks below): plain SysV IPC syscalls on objects this test owns.
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0);
    let _cleanup = Removal::sem(id);
    let child = spawn(c"it-sem", move || unsafe {
        libc::semctl(id, 0, libc::SETVAL, 1);
        let mut take = [sembuf(0, -1, libc::SEM_UNDO as i16), sembuf(0, 1, 0)];
        libc::semop(id, take.as_mut_ptr(), 2); // glibc: the semtimedop syscall
        libc::syscall(libc::SYS_semop, id, take.as_mut_ptr().add(1), 1); // the real semop syscall: +1
        let mut nowait = [sembuf(1, -1, libc::IPC_NOWAIT as i16)];
        libc::semop(id, nowait.as_mut_ptr(), 1); // EAGAIN
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        let mut wait = [sembuf(1, -1, 0)];
        libc::syscall(libc::SYS_semtimedop, id, wait.as_mut_ptr(), 1, &timeout); // EAGAIN after 20ms
        libc::semctl(id, 0, libc::GETVAL);
        libc::semctl(0x7fff_fff0, 0, libc::GETVAL); // EINVAL
        0
    });
    let pid = child.pid;
    let t = trace(&[child], options(Filter::default()));
    let calls = t.of(pid);
    let ops: Vec<Op> = calls.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            Op::Semctl,
            Op::Semtimedop,
            Op::Semop,
            Op::Semtimedop,
            Op::Semtimedop,
            Op::Semctl,
            Op::Semctl
        ],
        "{calls:#?}"
    );
    for c in &calls {
        assert_eq!(
            (c.pid, c.tid, c.comm.as_str().as_ref()),
            (pid, pid, "it-sem")
        );
        assert_eq!(c.ipc_ns, own_ipc_ns());
        assert!(c.lat_ns > 0 && c.lat_ns < 5_000 * MS, "{c:?}");
    }
    let setval = calls[0];
    assert_eq!(
        (setval.id(), setval.cmd_name().as_deref(), setval.semnum()),
        (Some(id), Some("SETVAL"), Some(0))
    );
    assert_eq!(setval.semctl_arg(), Some(1));
    assert!(setval.succeeded());

    let glibc_semop = calls[1];
    assert_eq!(
        (glibc_semop.id(), glibc_semop.nsops(), glibc_semop.ret),
        (Some(id), Some(2), 0)
    );
    let sops = glibc_semop.sops();
    assert_eq!(
        (sops[0].num, sops[0].op, sops[0].flg),
        (0, -1, libc::SEM_UNDO as i16)
    );
    assert_eq!((sops[1].num, sops[1].op, sops[1].flg), (0, 1, 0));
    assert_eq!(glibc_semop.timeout_ns, None);
    assert_eq!(
        glibc_semop.blocked_ns, 0,
        "a free semaphore takes the fast path"
    );

    assert_eq!(
        (calls[2].op, calls[2].nsops(), calls[2].ret),
        (Op::Semop, Some(1), 0)
    );
    assert_eq!((calls[2].sops()[0].num, calls[2].sops()[0].op), (0, 1));

    let nowait = calls[3];
    assert_eq!(nowait.errno_name().as_deref(), Some("EAGAIN"));
    assert_eq!(nowait.sops()[0].flg, libc::IPC_NOWAIT as i16);

    let timed = calls[4];
    assert_eq!(timed.errno_name().as_deref(), Some("EAGAIN"));
    assert_eq!(timed.timeout_ns, Some(20 * MS as i64));
    assert!(
        timed.lat_ns >= 20 * MS && timed.lat_ns < 1000 * MS,
        "{timed:?}"
    );
    assert!(
        timed.blocked_ns >= 19 * MS,
        "the timed wait really slept: {timed:?}"
    );

    assert_eq!(
        (calls[5].cmd_name().as_deref(), calls[5].ret),
        (Some("GETVAL"), 2)
    );
    assert_eq!(
        (calls[6].id(), calls[6].errno_name().as_deref()),
        (Some(0x7fff_fff0), Some("EINVAL"))
    );
    assert_eq!(t.kernel.lost, 0);
}

#[test]
fn semget_and_removal_are_attributed() {
    let key = unique_key(1);
    let child = spawn(c"it-semget", move || unsafe {
        let id = libc::semget(key, 3, libc::IPC_CREAT | libc::IPC_EXCL | 0o640);
        libc::semget(key, 3, libc::IPC_CREAT | libc::IPC_EXCL | 0o640); // EEXIST
        libc::semctl(id, 0, libc::IPC_RMID);
        libc::semget(key, 0, 0); // ENOENT: gone
        0
    });
    let pid = child.pid;
    let calls = trace(&[child], options(Filter::default())).of(pid);
    assert_eq!(calls.len(), 4, "{calls:#?}");
    let created = calls[0];
    let id = created.id().expect("semget returned an id");
    assert_eq!(
        (created.op, created.key(), created.semnum()),
        (Op::Semget, Some(key), Some(3))
    );
    assert_eq!(
        created.flags(),
        Some((libc::IPC_CREAT | libc::IPC_EXCL | 0o640) as i64)
    );
    assert_eq!(
        (calls[1].errno_name().as_deref(), calls[1].id()),
        (Some("EEXIST"), None)
    );
    assert_eq!(
        (calls[2].id(), calls[2].cmd_name().as_deref()),
        (Some(id), Some("IPC_RMID"))
    );
    assert_eq!(calls[3].errno_name().as_deref(), Some("ENOENT"));
}

#[test]
fn shared_memory_calls() {
    let key = unique_key(2);
    let child = spawn(c"it-shm", move || unsafe {
        let id = libc::shmget(key, 8192, libc::IPC_CREAT | 0o600);
        let addr = libc::shmat(id, ptr::null(), 0);
        let ro = libc::shmat(id, ptr::null(), libc::SHM_RDONLY);
        libc::shmdt(addr);
        libc::shmdt(ro);
        libc::shmdt(ro); // EINVAL: no longer attached
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        libc::shmctl(id, libc::IPC_STAT, &mut ds);
        libc::shmctl(id, libc::IPC_RMID, ptr::null_mut());
        libc::shmget(key, 8192, 0); // ENOENT
        0
    });
    let pid = child.pid;
    let calls = trace(
        &[child],
        options(Filter {
            kinds: vec![IpcKind::Shm],
            ..Default::default()
        }),
    )
    .of(pid);
    let ops: Vec<Op> = calls.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            Op::Shmget,
            Op::Shmat,
            Op::Shmat,
            Op::Shmdt,
            Op::Shmdt,
            Op::Shmdt,
            Op::Shmctl,
            Op::Shmctl,
            Op::Shmget
        ]
    );
    let id = calls[0].id().unwrap();
    let _cleanup = Removal::shm(id);
    assert_eq!((calls[0].key(), calls[0].size()), (Some(key), Some(8192)));
    let (rw, ro) = (calls[1], calls[2]);
    assert_eq!(
        (rw.id(), rw.shmaddr(), rw.flags()),
        (Some(id), Some(0), Some(0))
    );
    assert_eq!(ro.flags(), Some(libc::SHM_RDONLY as i64));
    assert!(rw.succeeded() && rw.ret > 0x1000 && ro.ret != rw.ret);
    assert_eq!((calls[3].shmaddr(), calls[3].ret), (Some(rw.ret as u64), 0));
    assert_eq!(calls[4].shmaddr(), Some(ro.ret as u64));
    assert_eq!(calls[5].errno_name().as_deref(), Some("EINVAL"));
    assert_eq!(calls[6].cmd_name().as_deref(), Some("IPC_STAT"));
    assert_eq!(calls[7].cmd_name().as_deref(), Some("IPC_RMID"));
    assert_eq!(calls[8].errno_name().as_deref(), Some("ENOENT"));
}

#[test]
fn message_queue_calls() {
    let key = unique_key(3);
    let child = spawn(c"it-msg", move || unsafe {
        let id = libc::msgget(key, libc::IPC_CREAT | 0o600);
        let out = Message::<10> {
            mtype: 7,
            text: *b"0123456789",
        };
        libc::msgsnd(id, &out as *const _ as *const libc::c_void, 10, 0);
        let mut buf = Message::<64> {
            mtype: 0,
            text: [0; 64],
        };
        libc::msgrcv(id, &mut buf as *mut _ as *mut libc::c_void, 64, 0, 0);
        libc::msgrcv(
            id,
            &mut buf as *mut _ as *mut libc::c_void,
            64,
            5,
            libc::IPC_NOWAIT,
        ); // ENOMSG
        let mut ds: libc::msqid_ds = std::mem::zeroed();
        libc::msgctl(id, libc::IPC_STAT, &mut ds);
        libc::msgctl(id, libc::IPC_RMID, ptr::null_mut());
        0
    });
    let pid = child.pid;
    let calls = trace(
        &[child],
        options(Filter {
            kinds: vec![IpcKind::Msg],
            ..Default::default()
        }),
    )
    .of(pid);
    let ops: Vec<Op> = calls.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            Op::Msgget,
            Op::Msgsnd,
            Op::Msgrcv,
            Op::Msgrcv,
            Op::Msgctl,
            Op::Msgctl
        ]
    );
    let id = calls[0].id().unwrap();
    let _cleanup = Removal::msg(id);
    assert_eq!(calls[0].key(), Some(key));
    let snd = calls[1];
    assert_eq!(
        (snd.id(), snd.size(), snd.mtype, snd.ret),
        (Some(id), Some(10), Some(7), 0)
    );
    let rcv = calls[2];
    assert_eq!(
        (rcv.ret, rcv.mtype, rcv.size(), rcv.msgtyp()),
        (10, Some(7), Some(64), Some(0))
    );
    let empty = calls[3];
    assert_eq!(
        (empty.errno_name().as_deref(), empty.msgtyp()),
        (Some("ENOMSG"), Some(5))
    );
    assert_eq!(empty.flags(), Some(libc::IPC_NOWAIT as i64));
    assert_eq!(calls[4].cmd_name().as_deref(), Some("IPC_STAT"));
    assert_eq!(calls[5].cmd_name().as_deref(), Some("IPC_RMID"));
}

#[test]
fn removal_wakes_a_blocked_waiter_with_eidrm() {
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    let waiter = spawn(c"it-waiter", move || unsafe {
        let mut take = [sembuf(0, -1, 0)];
        libc::semop(id, take.as_mut_ptr(), 1)
    });
    let remover = spawn(c"it-remover", move || unsafe {
        libc::usleep(100_000);
        libc::semctl(id, 0, libc::IPC_RMID)
    });
    let (wpid, rpid) = (waiter.pid, remover.pid);
    let t = trace(&[waiter, remover], options(Filter::default()));
    let waited = t.of(wpid);
    assert_eq!(waited.len(), 1, "{:#?}", t.calls);
    let w = waited[0];
    assert_eq!(
        (w.op, w.errno_name().as_deref()),
        (Op::Semtimedop, Some("EIDRM"))
    );
    assert!(w.lat_ns >= 90 * MS, "{w:?}");
    assert!(w.blocked_ns >= 80 * MS && w.blocked_ns <= w.lat_ns, "{w:?}");
    let waker = w.waker.expect("the remover woke the waiter");
    assert_eq!(
        (waker.pid, waker.comm.as_str().as_ref()),
        (rpid, "it-remover")
    );
    assert_eq!(t.of(rpid)[0].cmd_name().as_deref(), Some("IPC_RMID"));
}

#[test]
fn pid_comm_type_id_and_key_filters_apply_in_the_kernel() {
    let key = unique_key(4);
    let other = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let _cleanup_other = Removal::sem(other);
    let work = move || unsafe {
        let id = libc::semget(key, 1, libc::IPC_CREAT | 0o600);
        libc::semctl(id, 0, libc::GETVAL);
        libc::semctl(other, 0, libc::GETVAL);
        let q = libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600);
        libc::msgctl(q, libc::IPC_RMID, ptr::null_mut());
        libc::semctl(id, 0, libc::IPC_RMID);
        0
    };
    // --type sem: no message queue calls.
    let a = spawn(c"it-filter-a", work);
    let a_pid = a.pid;
    let t = trace(
        &[a],
        options(Filter {
            kinds: vec![IpcKind::Sem],
            ..Default::default()
        }),
    );
    let ops: Vec<Op> = t.of(a_pid).iter().map(|c| c.op).collect();
    assert_eq!(ops, [Op::Semget, Op::Semctl, Op::Semctl, Op::Semctl]);

    // --key: the get call, then only calls on the object the key named (not `other`).
    let b = spawn(c"it-filter-b", work);
    let b_pid = b.pid;
    let t = trace(
        &[b],
        options(Filter {
            pids: vec![b_pid],
            keys: vec![key],
            ..Default::default()
        }),
    );
    let calls = t.of(b_pid);
    let id = calls[0].id().unwrap();
    assert!(calls.iter().all(|c| c.id() == Some(id)), "{calls:#?}");
    assert_eq!(calls.len(), 3);

    // --id: only calls naming that object.
    let c = spawn(c"it-filter-c", work);
    let c_pid = c.pid;
    let t = trace(
        &[c],
        options(Filter {
            pids: vec![c_pid],
            ids: vec![other],
            ..Default::default()
        }),
    );
    let calls = t.of(c_pid);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].id(), Some(other));

    // --comm: by name, with no pid filter at all; the other child is not seen.
    let d = spawn(c"it-filter-d", work);
    let e = spawn(c"it-filter-e", work);
    let (d_pid, e_pid) = (d.pid, e.pid);
    let t = trace(
        &[d, e],
        options(Filter {
            comms: vec!["it-filter-d".into()],
            ..Default::default()
        }),
    );
    assert_eq!(t.of(d_pid).len(), 6);
    assert!(t.of(e_pid).is_empty());
    assert!(t.calls.iter().all(|c| c.pid == d_pid));
}

#[test]
fn a_full_ring_buffer_is_counted_as_lost_never_silent() {
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    const CALLS: u64 = 2000;
    let child = spawn(c"it-burst", move || unsafe {
        for _ in 0..CALLS {
            libc::semctl(id, 0, libc::GETVAL);
        }
        0
    });
    let pid = child.pid;
    // One page holds ~20 records; nobody reads until the child is done.
    let mut opts = options(Filter::default());
    opts.ring_bytes = Some(4096);
    let mut opts_pids = opts.clone();
    opts_pids.filter.pids = vec![pid];
    let mut probe = ipctrace::loader::Probe::attach(&opts_pids).unwrap();
    child.release();
    child.wait();
    let mut delivered = 0;
    while probe.events.next().is_some() {
        delivered += 1;
    }
    let counts = probe.counters.read().unwrap();
    assert!(counts.lost > 0);
    assert_eq!(
        delivered + counts.lost,
        CALLS,
        "every call is either delivered or counted"
    );
}

#[test]
fn blocked_msgsnd_and_msgrcv_record_their_waker() {
    let q = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::msg(q);
    let receiver = spawn(c"it-rcv", move || unsafe {
        let mut buf = Message::<16> {
            mtype: 0,
            text: [0; 16],
        };
        libc::msgrcv(q, &mut buf as *mut _ as *mut libc::c_void, 16, 0, 0) as i32
    });
    let sender = spawn(c"it-snd", move || unsafe {
        libc::usleep(50_000);
        let m = Message::<4> {
            mtype: 1,
            text: *b"ping",
        };
        libc::msgsnd(q, &m as *const _ as *const libc::c_void, 4, 0)
    });
    let (rpid, spid) = (receiver.pid, sender.pid);
    let t = trace(&[receiver, sender], options(Filter::default()));
    let rcv = t.of(rpid)[0];
    assert_eq!((rcv.op, rcv.ret), (Op::Msgrcv, 4));
    assert!(rcv.blocked_ns >= 40 * MS, "{rcv:?}");
    assert_eq!(rcv.waker.map(|w| w.pid), Some(spid));
}

#[test]
fn key_churn_follows_every_object_the_key_names() {
    // More objects of each kind than the kernel's object filter holds (1024): each is followed
    // from its get call and forgotten once removed, so none crowds out the next.
    const OBJECTS: usize = 1100;
    let key = unique_key(5);
    let child = spawn(c"it-key-churn", move || unsafe {
        let create = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
        for _ in 0..OBJECTS {
            let sem = libc::semget(key, 1, create);
            let shm = libc::shmget(key, 4096, create);
            let q = libc::msgget(key, create);
            if sem < 0 || shm < 0 || q < 0 {
                return 1;
            }
            libc::semctl(sem, 0, libc::GETVAL);
            let mut shm_ds: libc::shmid_ds = std::mem::zeroed();
            libc::shmctl(shm, libc::IPC_STAT, &mut shm_ds);
            let mut msg_ds: libc::msqid_ds = std::mem::zeroed();
            libc::msgctl(q, libc::IPC_STAT, &mut msg_ds);
            libc::semctl(sem, 0, libc::IPC_RMID);
            libc::shmctl(shm, libc::IPC_RMID, ptr::null_mut());
            libc::msgctl(q, libc::IPC_RMID, ptr::null_mut());
        }
        0
    });
    let t = trace(
        &[child],
        options(Filter {
            keys: vec![key],
            ..Default::default()
        }),
    );
    assert_eq!(t.exit_codes, [0], "the child could not create its objects");
    for (get, ctl) in [
        (Op::Semget, Op::Semctl),
        (Op::Shmget, Op::Shmctl),
        (Op::Msgget, Op::Msgctl),
    ] {
        let ctls = by_op(&t.calls, ctl);
        let removals = ctls.iter().filter(|c| c.cmd() == Some(0)).count();
        assert_eq!(
            (by_op(&t.calls, get).len(), ctls.len() - removals, removals),
            (OBJECTS, OBJECTS, OBJECTS),
            "{get:?}, {ctl:?} and its IPC_RMID calls"
        );
    }
    assert_eq!(t.kernel, KernelCounts::default());
}

#[test]
fn shmdt_of_a_followed_segment_passes_the_id_and_key_filters() {
    let key = unique_key(6);
    // SAFETY (all unsafe blocks below): plain SysV IPC syscalls on segments this test owns.
    let followed = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | 0o600) };
    let other = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(followed >= 0 && other >= 0);
    let _cleanup = (Removal::shm(followed), Removal::shm(other));
    let work = move || unsafe {
        let id = libc::shmget(key, 0, 0); // with --key, this get makes the segment followed
        let mine = libc::shmat(id, ptr::null(), 0);
        let theirs = libc::shmat(other, ptr::null(), 0);
        libc::shmdt(theirs);
        libc::shmdt(mine);
        0
    };
    let filters = [
        Filter {
            ids: vec![followed],
            ..Default::default()
        },
        Filter {
            keys: vec![key],
            ..Default::default()
        },
    ];
    for filter in filters {
        let t = trace(&[spawn(c"it-shmdt", work)], options(filter.clone()));
        let lines = reported_by_trace(&t);
        let of = |op: &str| -> Vec<&serde_json::Value> {
            lines.iter().filter(|l| l["op"] == op).collect()
        };
        let (attached, detached) = (of("shmat"), of("shmdt"));
        assert_eq!(
            (attached.len(), detached.len()),
            (1, 1),
            "{filter:?}: {lines:#?}"
        );
        assert_eq!(
            (
                &detached[0]["id"],
                &detached[0]["shmaddr"],
                &detached[0]["ret"]
            ),
            (&followed.into(), &attached[0]["ret"], &0.into()),
            "{filter:?}"
        );
    }
}

/// What `ipctrace trace --json` with `--id`/`--key` reports of a traced workload (no segment
/// was attached when it started).
fn reported_by_trace(t: &Traced) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut view =
        TraceView::new(&mut out, true, ShmAddressBook::default(), None).following_objects();
    for call in &t.calls {
        view.event(&Event::Call(*call));
    }
    view.batch_done();
    drop(view);
    json_lines(&out)
}

#[test]
fn objects_the_object_filter_has_no_room_for_are_counted() {
    // Removed by a process outside the --pid filter, the objects are never forgotten: the map
    // fills, and what it cannot follow is counted.
    const OBJECTS: usize = 1100;
    let key = unique_key(7);
    let child = spawn(c"it-key-full", move || unsafe {
        for _ in 0..OBJECTS {
            let sem = libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o600);
            if sem < 0 {
                return 1;
            }
            libc::semctl(sem, 0, libc::GETVAL);
            let remover = libc::fork();
            if remover == 0 {
                libc::semctl(sem, 0, libc::IPC_RMID);
                libc::_exit(0);
            }
            libc::waitpid(remover, ptr::null_mut(), 0);
        }
        0
    });
    let t = trace(
        &[child],
        options(Filter {
            keys: vec![key],
            kinds: vec![IpcKind::Sem],
            ..Default::default()
        }),
    );
    assert_eq!(t.exit_codes, [0], "the child could not create its objects");
    let followed = by_op(&t.calls, Op::Semctl).len();
    assert_eq!(by_op(&t.calls, Op::Semget).len(), OBJECTS);
    assert!(t.kernel.untracked > 0, "{:?}", t.kernel);
    assert_eq!(followed as u64 + t.kernel.untracked, OBJECTS as u64);
}

#[test]
fn skipping_user_memory_leaves_sembufs_timeouts_and_mtypes_unread() {
    // SAFETY (all unsafe blocks below): plain SysV IPC syscalls on objects this test owns.
    let sem = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let msq = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(sem >= 0 && msq >= 0);
    let _cleanup = (Removal::sem(sem), Removal::msg(msq));
    let run = |comm| {
        spawn(comm, move || unsafe {
            let mut up = [sembuf(0, 1, 0)];
            let timeout = libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            libc::syscall(libc::SYS_semtimedop, sem, up.as_mut_ptr(), 1, &timeout);
            let message: [libc::c_long; 2] = [7, 0];
            libc::msgsnd(msq, message.as_ptr().cast(), 8, 0);
            0
        })
    };
    let read = run(c"it-read");
    let (pid, t) = (read.pid, trace(&[read], options(Filter::default())));
    let [semtimedop, msgsnd] = t.of(pid)[..] else {
        panic!("{:?}", t.of(pid))
    };
    assert_eq!(semtimedop.sops()[0].op, 1);
    assert_eq!(semtimedop.timeout_ns, Some(1_000_000_000));
    assert_eq!(msgsnd.mtype, Some(7));

    let skipped = run(c"it-skip");
    let pid = skipped.pid;
    let mut skip = options(Filter::default());
    skip.skip_user_memory = true;
    let t = trace(&[skipped], skip);
    let [semtimedop, msgsnd] = t.of(pid)[..] else {
        panic!("{:?}", t.of(pid))
    };
    assert_eq!((semtimedop.nsops(), semtimedop.ret), (Some(1), 0));
    assert!(semtimedop.sops().is_empty(), "{semtimedop:?}");
    assert_eq!(semtimedop.timeout_ns, None);
    assert_eq!((msgsnd.mtype, msgsnd.ret), (None, 0));
}

#[test]
fn hostile_calls_are_traced_with_their_errors_and_tracing_goes_on() {
    // SAFETY (all unsafe blocks below): SysV IPC syscalls on objects this test owns, given
    // pointers that are null, unmapped or at the end of the child's own mapping: the kernel
    // checks them, and the child writes only to the page it mapped.
    let sem = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let msq = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(sem >= 0 && msq >= 0);
    let _cleanup = (Removal::sem(sem), Removal::msg(msq));
    let key = unique_key(8) | i32::MIN; // above 0x7fff_ffff as a u32: a negative key_t
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    const HUGE_NSOPS: usize = 100_000; // above SEMOPM: E2BIG before the kernel reads a sembuf
    let child = spawn(c"it-hostile", move || unsafe {
        // Two pages, the second unmapped again: an address nothing is mapped at, and a last
        // sembuf of the first page with nothing readable after it.
        let base = libc::mmap(
            ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED || libc::munmap(base.cast::<u8>().add(page).cast(), page) != 0 {
            return 1;
        }
        let unmapped = base.cast::<u8>().add(page);
        let last = unmapped
            .sub(size_of::<libc::sembuf>())
            .cast::<libc::sembuf>();
        last.write(sembuf(0, 1, 0));
        for bad in [ptr::null_mut(), unmapped] {
            libc::syscall(libc::SYS_semop, sem, bad, 1);
            libc::syscall(
                libc::SYS_semtimedop,
                sem,
                bad,
                1,
                ptr::null::<libc::timespec>(),
            );
        }
        // On an ordinary buffer: whatever follows it on the stack is not the caller's sembufs.
        let mut one = [
            sembuf(0, 1, 0),
            sembuf(7, 7, 7),
            sembuf(7, 7, 7),
            sembuf(7, 7, 7),
        ];
        libc::syscall(libc::SYS_semop, sem, one.as_mut_ptr(), HUGE_NSOPS);
        let mut wait = [sembuf(0, -1, libc::IPC_NOWAIT as i16)];
        libc::syscall(libc::SYS_semtimedop, sem, wait.as_mut_ptr(), 1, unmapped);
        let message: [libc::c_long; 2] = [3, 0];
        for bad in [ptr::null_mut(), unmapped] {
            libc::msgsnd(msq, bad.cast(), 8, 0);
            libc::msgsnd(msq, message.as_ptr().cast(), 8, 0);
            libc::msgrcv(msq, bad.cast(), 8, 0, libc::IPC_NOWAIT); // the message is dequeued
        }
        libc::semctl(-1, 0, libc::IPC_STAT, ptr::null_mut::<libc::semid_ds>());
        libc::shmat(-5, ptr::null(), 0);
        libc::msgctl(-7, libc::IPC_STAT, ptr::null_mut());
        libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o600);
        // Tracing goes on: an ordinary semop, with the page's last sembuf.
        libc::syscall(libc::SYS_semop, sem, last, 1) as i32
    });
    let pid = child.pid;
    let t = trace(&[child], options(Filter::default()));
    let created = unsafe { libc::semget(key, 0, 0) };
    let _cleanup_key = Removal::sem(created);
    assert_eq!(t.exit_codes, [0], "the child's last semop failed");
    let calls = t.of(pid);
    let ops: Vec<Op> = calls.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            Op::Semop,
            Op::Semtimedop,
            Op::Semop,
            Op::Semtimedop,
            Op::Semop,
            Op::Semtimedop,
            Op::Msgsnd,
            Op::Msgsnd,
            Op::Msgrcv,
            Op::Msgsnd,
            Op::Msgsnd,
            Op::Msgrcv,
            Op::Semctl,
            Op::Shmat,
            Op::Msgctl,
            Op::Semget,
            Op::Semop
        ],
        "{calls:#?}"
    );
    let errors: Vec<Option<String>> = calls.iter().map(|c| c.errno_name()).collect();
    let e = |name: &str| Some(name.to_string());
    assert_eq!(
        errors,
        [
            e("EFAULT"),
            e("EFAULT"),
            e("EFAULT"),
            e("EFAULT"),
            e("E2BIG"),
            e("EFAULT"),
            e("EFAULT"),
            None,
            e("EFAULT"),
            e("EFAULT"),
            None,
            e("EFAULT"),
            e("EINVAL"),
            e("EINVAL"),
            e("EINVAL"),
            None,
            None
        ],
        "{calls:#?}"
    );

    // The kernel side could not read the sembufs: none are made up.
    for c in &calls[..4] {
        assert_eq!((c.id(), c.nsops()), (Some(sem), Some(1)), "{c:?}");
        assert!(c.sops().is_empty(), "{c:?}");
        assert_eq!(c.timeout_ns, None, "{c:?}");
    }
    let huge = calls[4];
    assert_eq!(huge.nsops(), Some(HUGE_NSOPS as u64));
    assert!(
        huge.sops().is_empty(),
        "E2BIG: the kernel read no sembuf, and what follows the first is not the caller's: {huge:?}"
    );
    let bad_timeout = calls[5];
    assert_eq!(
        bad_timeout.sops(),
        [SemOp {
            num: 0,
            op: -1,
            flg: libc::IPC_NOWAIT as i16
        }]
    );
    assert!(bad_timeout.timed());
    assert_eq!(bad_timeout.timeout_ns, None, "{bad_timeout:?}");

    for (i, c) in calls[6..12].iter().enumerate() {
        let expected = if i % 3 == 1 { Some(3) } else { None };
        assert_eq!((c.id(), c.mtype), (Some(msq), expected), "{c:?}");
    }

    assert_eq!(
        (calls[12].id(), calls[12].cmd_name().as_deref()),
        (Some(-1), Some("IPC_STAT"))
    );
    assert_eq!(
        (calls[13].id(), calls[13].shmaddr(), calls[13].ret),
        (Some(-5), Some(0), -libc::EINVAL as i64)
    );
    assert_eq!(
        (calls[14].id(), calls[14].cmd_name().as_deref()),
        (Some(-7), Some("IPC_STAT"))
    );

    let semget = calls[15];
    assert!(created >= 0, "the child's semget made no semaphore set");
    assert_eq!(
        (semget.key(), semget.id(), semget.semnum()),
        (Some(key), Some(created), Some(1))
    );

    let ordinary = calls[16];
    assert_eq!(
        (ordinary.id(), ordinary.nsops(), ordinary.ret),
        (Some(sem), Some(1), 0)
    );
    assert_eq!(
        ordinary.sops(),
        [SemOp {
            num: 0,
            op: 1,
            flg: 0
        }]
    );
    assert_eq!(t.kernel, KernelCounts::default());
}
