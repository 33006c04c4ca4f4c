//! The object model against the real kernel: forked processes create, attach, fork, exec, exit,
//! remove and operate on SysV objects while the real programs trace them; the model built from
//! the events alone (seeded from /proc before they start) must then say what the kernel says,
//! field by field, before any reconcile. Needs root; nothing here is skipped.

mod support;

use ipctrace::commands::live::{reconcile, LiveObjects};
use ipctrace::decoder::syscalls::{IpcKind, Op};
use ipctrace::decoder::{decode, Comm, Event, ProcessChange};
use ipctrace::filter::Filter;
use ipctrace::kernel_view::{ctl, maps, processes, sysvipc};
use ipctrace::loader::{Probe, ProbeOptions};
use ipctrace::model::objects::{ObjectKey, Objects};
use std::collections::{BTreeMap, BTreeSet};
use std::ptr;
use std::time::{Duration, Instant};
use support::*;

fn own_ns() -> u32 {
    processes::own_ipc_namespace().unwrap()
}

fn attach(filter: Filter) -> Probe {
    Probe::attach(&ProbeOptions {
        filter,
        waits: true,
        processes: true,
        ..Default::default()
    })
    .expect("attach")
}

/// Takes every record the ring buffer holds now.
fn drain(probe: &mut Probe, into: &mut Vec<Event>) {
    while let Some(item) = probe.events.next() {
        into.push(decode(&item).expect("decode"));
    }
}

/// Waits for the last records to come through, then takes them all.
fn settle(probe: &mut Probe, into: &mut Vec<Event>) {
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        drain(probe, into);
        std::thread::sleep(Duration::from_millis(10));
    }
    drain(probe, into);
}

/// `roots` and their descendants. Process changes are reported for every process on the
/// machine; only this family's matter here.
struct Family {
    members: BTreeSet<u32>,
    alive: BTreeSet<u32>,
}

impl Family {
    fn new(roots: &[u32]) -> Family {
        let members: BTreeSet<u32> = roots.iter().copied().collect();
        Family {
            alive: members.clone(),
            members,
        }
    }

    fn admit(&mut self, e: &Event) -> bool {
        match e {
            Event::Call(c) => self.members.contains(&c.pid),
            Event::Process(ProcessChange::Fork { parent, child, .. }) => {
                let ours = self.members.contains(parent);
                if ours {
                    self.members.insert(*child);
                    self.alive.insert(*child);
                }
                ours
            }
            Event::Process(ProcessChange::Exec { pid, .. }) => self.members.contains(pid),
            Event::Process(ProcessChange::Exit { pid, .. }) => {
                self.alive.remove(pid);
                self.members.contains(pid)
            }
        }
    }
}

/// The model's own sink (the one `ipctrace objects` runs), fed as the events arrive: after
/// each drain, `batch_done` reads what calls cannot tell (a SETALL's values).
struct Live {
    live: LiveObjects,
    family: Family,
    events: Vec<Event>,
}

impl Live {
    fn new(seed: LiveObjects, roots: &[u32]) -> Live {
        Live {
            live: seed,
            family: Family::new(roots),
            events: Vec::new(),
        }
    }

    fn pump(&mut self, probe: &mut Probe) {
        let mut batch = Vec::new();
        drain(probe, &mut batch);
        for e in batch {
            if self.family.admit(&e) {
                self.live.apply(&e);
                self.events.push(e);
            }
        }
        self.live.batch_done();
    }

    /// Pumps until the last records came through.
    fn settle(&mut self, probe: &mut Probe) {
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            self.pump(probe);
            std::thread::sleep(Duration::from_millis(10));
        }
        self.pump(probe);
    }

    fn model(&self) -> &Objects {
        self.live.objects()
    }
}

/// Pumps while the children run; returns their exit codes.
fn run_children(children: &[Child], probe: &mut Probe, live: &mut Live) -> Vec<i32> {
    let mut codes: Vec<Option<i32>> = vec![None; children.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while codes.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "children still running: {codes:?}"
        );
        for (code, child) in codes.iter_mut().zip(children) {
            let mut status = 0;
            // SAFETY: polls our own child.
            let reaped = unsafe { libc::waitpid(child.pid as i32, &mut status, libc::WNOHANG) };
            if code.is_none() && reaped > 0 {
                *code = Some(libc::WEXITSTATUS(status));
            }
        }
        live.pump(probe);
        std::thread::sleep(Duration::from_millis(2));
    }
    live.settle(probe);
    codes.into_iter().flatten().collect()
}

/// Kills a process on drop (grandchildren left holding segments).
struct Kill(Vec<u32>);

impl Drop for Kill {
    fn drop(&mut self) {
        // Never pid 0 (our whole process group) or -1 (every process).
        for pid in self
            .0
            .iter()
            .filter(|pid| (1..i32::MAX as u32).contains(*pid))
        {
            // SAFETY: signals a process this test made.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// Removes whatever object has one of these keys now, on drop.
struct KeyRemoval(Vec<(IpcKind, i32)>);

impl Drop for KeyRemoval {
    fn drop(&mut self) {
        for (kind, key) in &self.0 {
            // SAFETY: plain IPC calls on objects this test made; failures are fine.
            unsafe {
                match kind {
                    IpcKind::Shm => {
                        let id = libc::shmget(*key, 0, 0);
                        libc::shmctl(id, libc::IPC_RMID, ptr::null_mut());
                    }
                    IpcKind::Sem => {
                        libc::semctl(libc::semget(*key, 0, 0), 0, libc::IPC_RMID);
                    }
                    IpcKind::Msg => {
                        let id = libc::msgget(*key, 0);
                        libc::msgctl(id, libc::IPC_RMID, ptr::null_mut());
                    }
                }
            }
        }
    }
}

/// Who has which segment mapped, as /proc/<pid>/maps says: shmid -> pid -> mappings.
fn kernel_attachments(ns: u32) -> BTreeMap<i32, BTreeMap<u32, u64>> {
    let mut by_id: BTreeMap<i32, BTreeMap<u32, u64>> = BTreeMap::new();
    for p in maps::read_attachments().unwrap().processes {
        if processes::ipc_namespace_of(p.pid).is_some_and(|n| n != ns) {
            continue;
        }
        for m in p.mappings {
            *by_id.entry(m.shmid).or_default().entry(p.pid).or_default() += 1;
        }
    }
    by_id
}

/// Compares the model's objects of these ids with the kernel's, field by field; `context` says
/// which run failed.
fn assert_agrees_with_kernel(model: &Objects, ids: &BTreeSet<(IpcKind, i32)>, context: &str) {
    let ns = own_ns();
    let shm = sysvipc::read_shm().unwrap().objects;
    let sem = sysvipc::read_sem().unwrap().objects;
    let msg = sysvipc::read_msg().unwrap().objects;
    let mapped = kernel_attachments(ns);
    for &(kind, id) in ids {
        let identity = ObjectKey { ns, kind, id };
        let object = model.get(&identity);
        let what = format!("{context}: {kind} {id}");
        match kind {
            IpcKind::Shm => {
                let Some(seg) = shm.iter().find(|s| s.shmid == id) else {
                    assert!(
                        object.is_none(),
                        "{what}: gone from the kernel, not from the model"
                    );
                    continue;
                };
                let object = object.unwrap_or_else(|| panic!("{what}: missing from the model"));
                let state = object.segment().unwrap();
                assert_eq!(state.nattch, seg.nattch, "{what}: nattch");
                assert_eq!(object.removed, seg.removed(), "{what}: removed");
                assert_eq!(object.ipc_key, seg.key, "{what}: key");
                assert_eq!(state.cpid, Some(seg.cpid), "{what}: cpid");
                assert_eq!(state.lpid, seg.lpid, "{what}: lpid");
                assert_eq!(state.size, Some(seg.size), "{what}: size");
                let attached: BTreeMap<u32, u64> = state
                    .attached
                    .iter()
                    .map(|(pid, a)| (*pid, a.maps()))
                    .collect();
                assert_eq!(
                    attached,
                    mapped.get(&id).cloned().unwrap_or_default(),
                    "{what}: attached processes and their mappings"
                );
            }
            IpcKind::Sem => {
                let Some(set) = sem.iter().find(|s| s.semid == id) else {
                    assert!(
                        object.is_none(),
                        "{what}: gone from the kernel, not from the model"
                    );
                    continue;
                };
                let object = object.unwrap_or_else(|| panic!("{what}: missing from the model"));
                let state = object.semaphores().unwrap();
                assert_eq!(object.ipc_key, set.key, "{what}: key");
                assert_eq!(state.nsems, Some(set.nsems), "{what}: nsems");
                let kernel = ctl::sem_values(id, set.nsems as usize).unwrap();
                let model: Vec<(Option<i32>, u32, u32, u32)> = state
                    .sems
                    .iter()
                    .map(|s| (s.value, s.last_pid, s.ncount, s.zcount))
                    .collect();
                let kernel: Vec<(Option<i32>, u32, u32, u32)> = kernel
                    .iter()
                    .map(|v| {
                        (
                            Some(v.value),
                            v.last_pid as u32,
                            v.ncount as u32,
                            v.zcount as u32,
                        )
                    })
                    .collect();
                assert_eq!(
                    model, kernel,
                    "{what}: (value, last pid, ncount, zcount) each"
                );
            }
            IpcKind::Msg => {
                let Some(q) = msg.iter().find(|q| q.msqid == id) else {
                    assert!(
                        object.is_none(),
                        "{what}: gone from the kernel, not from the model"
                    );
                    continue;
                };
                let object = object.unwrap_or_else(|| panic!("{what}: missing from the model"));
                let state = object.queue().unwrap();
                assert_eq!(object.ipc_key, q.key, "{what}: key");
                assert_eq!(
                    (state.qnum, state.cbytes, state.lspid, state.lrpid),
                    (q.qnum, q.cbytes, q.lspid, q.lrpid),
                    "{what}: qnum, cbytes, lspid, lrpid"
                );
            }
        }
    }
}

/// Every object a traced call named, by kind and id.
fn named_objects(events: &[Event]) -> BTreeSet<(IpcKind, i32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Call(c) if c.op != Op::Shmdt => c.id().map(|id| (c.kind(), id)),
            _ => None,
        })
        .collect()
}

/// Reconciles and checks that it changes nothing a second time.
fn assert_reconcile_is_idempotent(model: &mut Objects, ids: &BTreeSet<(IpcKind, i32)>) {
    let ns = own_ns();
    let ours = |model: &Objects| -> Vec<_> {
        ids.iter()
            .filter_map(|&(kind, id)| model.get(&ObjectKey { ns, kind, id }).cloned())
            .collect()
    };
    reconcile(model, &IpcKind::ALL).unwrap();
    let once = ours(model);
    reconcile(model, &IpcKind::ALL).unwrap();
    assert_eq!(once, ours(model), "a second reconcile changed the model");
}

const SHM_SIZE: usize = 3 * 4096;

#[test]
fn the_model_of_a_multi_process_workload_agrees_with_the_kernel() {
    let (shm_key, sem_key, msg_key) = (unique_key(0x41), unique_key(0x42), unique_key(0x43));
    let _cleanup = KeyRemoval(vec![
        (IpcKind::Shm, shm_key),
        (IpcKind::Sem, sem_key),
        (IpcKind::Msg, msg_key),
    ]);
    // Pipes order the processes (pipes are not traced): `holder` tells the test which
    // grandchild keeps the segment mapped, `sem_done` and `msg_ready` release the followers.
    let pipe = || {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        fds
    };
    let (holder, sem_done, msg_ready) = (pipe(), pipe(), pipe());

    // SAFETY (every child): async-signal-safe libc calls only, on objects this test owns.
    let shm_creator = spawn(c"ot-shm", move || unsafe {
        // The holder outlives everyone: it must not keep the other pipes open.
        for fd in [
            holder[0],
            sem_done[0],
            sem_done[1],
            msg_ready[0],
            msg_ready[1],
        ] {
            libc::close(fd);
        }
        let id = libc::shmget(shm_key, SHM_SIZE, libc::IPC_CREAT | 0o600);
        let rw = libc::shmat(id, ptr::null(), 0);
        let ro = libc::shmat(id, ptr::null(), libc::SHM_RDONLY);
        if id < 0 || rw as isize == -1 || ro as isize == -1 {
            return 1;
        }
        // Each grandchild inherits both mappings without a call.
        let execs = libc::fork();
        if execs == 0 {
            libc::shmdt(ro);
            let argv = [c"/bin/true".as_ptr(), ptr::null()];
            libc::execv(c"/bin/true".as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
        let exits = libc::fork();
        if exits == 0 {
            libc::_exit(0); // without shmdt
        }
        let holds = libc::fork();
        if holds == 0 {
            libc::alarm(30); // never outlives a failed test by long
            loop {
                libc::pause();
            }
        }
        libc::waitpid(execs, ptr::null_mut(), 0);
        libc::waitpid(exits, ptr::null_mut(), 0);
        libc::write(holder[1], (&holds as *const i32).cast(), 4);
        // Removed while this process and the holder have it mapped: it lives on.
        libc::shmctl(id, libc::IPC_RMID, ptr::null_mut());
        libc::shmdt(rw);
        0 // exits with `ro` still mapped
    });
    let sem_creator = spawn(c"ot-sem", move || unsafe {
        let id = libc::semget(sem_key, 3, libc::IPC_CREAT | 0o600);
        let values: [u16; 3] = [2, 0, 5];
        libc::semctl(id, 0, libc::SETALL, values.as_ptr());
        let mut take = [sembuf(0, -1, 0)];
        libc::semop(id, take.as_mut_ptr(), 1);
        // +3 with SEM_UNDO: taken back by the kernel when this process exits.
        let mut mixed = [sembuf(1, 3, libc::SEM_UNDO as i16), sembuf(2, -2, 0)];
        libc::semop(id, mixed.as_mut_ptr(), 2);
        libc::write(sem_done[1], b"s".as_ptr().cast(), 1);
        0
    });
    let sem_user = spawn(c"ot-sem", move || unsafe {
        libc::close(sem_done[1]); // so that a failed creator means EOF, not a hang
        let mut byte = 0u8;
        libc::read(sem_done[0], (&mut byte as *mut u8).cast(), 1);
        let id = libc::semget(sem_key, 0, 0);
        let mut take = [sembuf(2, -1, 0)];
        libc::semop(id, take.as_mut_ptr(), 1);
        libc::semctl(id, 0, libc::SETVAL, 7);
        0
    });
    let msg_creator = spawn(c"ot-msg", move || unsafe {
        let id = libc::msgget(msg_key, libc::IPC_CREAT | 0o600);
        for size in [10, 20, 30] {
            let m = Message::<64> {
                mtype: 1,
                text: [b'x'; 64],
            };
            libc::msgsnd(id, (&m as *const Message<64>).cast(), size, 0);
        }
        libc::write(msg_ready[1], b"mm".as_ptr().cast(), 2);
        0
    });
    let msg_user = spawn(c"ot-msg", move || unsafe {
        libc::close(msg_ready[1]); // so that a failed creator means EOF, not a hang
        let mut byte = 0u8;
        libc::read(msg_ready[0], (&mut byte as *mut u8).cast(), 1);
        let id = libc::msgget(msg_key, 0);
        let mut buf = Message::<64> {
            mtype: 0,
            text: [0; 64],
        };
        libc::msgrcv(id, (&mut buf as *mut Message<64>).cast(), 64, 0, 0); // the 10 bytes
        let m = Message::<64> {
            mtype: 2,
            text: [b'y'; 64],
        };
        libc::msgsnd(id, (&m as *const Message<64>).cast(), 40, 0);
        libc::usleep(100_000); // the waiter is asleep by now: this send is handed to it
        let wanted = Message::<64> {
            mtype: 99,
            text: [b'z'; 64],
        };
        libc::msgsnd(id, (&wanted as *const Message<64>).cast(), 8, 0);
        0
    });
    let msg_waiter = spawn(c"ot-msg", move || unsafe {
        libc::close(msg_ready[1]); // so that a failed creator means EOF, not a hang
        let mut byte = 0u8;
        libc::read(msg_ready[0], (&mut byte as *mut u8).cast(), 1);
        let id = libc::msgget(msg_key, 0);
        let mut buf = Message::<64> {
            mtype: 0,
            text: [0; 64],
        };
        (libc::msgrcv(id, (&mut buf as *mut Message<64>).cast(), 64, 99, 0) != 8) as i32
    });
    let children = [
        shm_creator,
        sem_creator,
        sem_user,
        msg_creator,
        msg_user,
        msg_waiter,
    ];
    let pids: Vec<u32> = children.iter().map(|c| c.pid).collect();
    // Only the children write to these.
    for fd in [holder[1], sem_done[1], msg_ready[1]] {
        // SAFETY: closes our copy of a pipe end.
        unsafe { libc::close(fd) };
    }

    // By name: the grandchildren keep "ot-shm", so their calls are traced too.
    let mut probe = attach(Filter {
        comms: vec!["ot-shm".into(), "ot-sem".into(), "ot-msg".into()],
        ..Default::default()
    });
    let mut live = Live::new(LiveObjects::seed(&IpcKind::ALL).unwrap(), &pids);
    for c in &children {
        c.release();
    }
    let codes = run_children(&children, &mut probe, &mut live);
    let mut holder_pid = 0i32;
    // SAFETY: reads the 4-byte pid the shm creator wrote.
    unsafe { libc::read(holder[0], (&mut holder_pid as *mut i32).cast(), 4) };
    let _holder = Kill(vec![holder_pid as u32]);
    assert_eq!(codes, [0; 6]);
    assert_eq!(probe.counters.read().unwrap().lost, 0);
    assert_eq!(
        live.family.alive,
        BTreeSet::from([holder_pid as u32]),
        "only the holder lives on"
    );
    let events = live.events.clone();
    let mut model = live.live.into_objects();

    let ids = named_objects(&events);
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_agrees_with_kernel(&model, &ids, "events only");

    // What only the calls could tell.
    let ns = own_ns();
    let id_of = |kind| ids.iter().find(|(k, _)| *k == kind).unwrap().1;
    let (shm_id, sem_id, msg_id) = (
        id_of(IpcKind::Shm),
        id_of(IpcKind::Sem),
        id_of(IpcKind::Msg),
    );
    let get = |kind, id| model.get(&ObjectKey { ns, kind, id }).unwrap();
    let seg = get(IpcKind::Shm, shm_id);
    let creator = seg.creator.unwrap();
    assert_eq!(
        (creator.pid, creator.comm),
        (pids[0], Some(Comm::new("ot-shm")))
    );
    assert!(creator.ts_ns.is_some());
    assert!(seg.removed);
    assert_eq!(
        seg.segment()
            .unwrap()
            .attached
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [holder_pid as u32]
    );
    assert_eq!(
        seg.last_op.map(|l| (l.op, l.pid)),
        Some((Op::Shmdt, pids[0]))
    );
    let set = get(IpcKind::Sem, sem_id);
    assert_eq!(
        set.creator.map(|c| c.pid),
        Some(pids[1]),
        "the kernel cannot say this one"
    );
    let sems = &set.semaphores().unwrap().sems;
    assert_eq!(
        sems.iter().map(|s| s.value).collect::<Vec<_>>(),
        [Some(7), Some(0), Some(2)]
    );
    assert_eq!(
        sems.iter().map(|s| s.last_pid).collect::<Vec<_>>(),
        [pids[2], pids[1], pids[2]],
        "sem 1's last is the exiting process whose undo the kernel applied"
    );
    assert_eq!(sems[1].last_comm, Some(Comm::new("ot-sem")));
    let queue = get(IpcKind::Msg, msg_id);
    assert_eq!(queue.creator.map(|c| c.pid), Some(pids[3]));
    let q = queue.queue().unwrap();
    assert_eq!((q.qnum, q.cbytes), (3, 20 + 30 + 40));
    assert_eq!(q.last_send.map(|t| t.pid), Some(pids[4]));
    assert_eq!(
        q.last_recv.map(|t| (t.pid, t.comm)),
        Some((pids[5], Some(Comm::new("ot-msg"))))
    );
    assert_eq!(queue.ops[&Op::Msgsnd], 5);

    assert_reconcile_is_idempotent(&mut model, &ids);
    assert_agrees_with_kernel(&model, &ids, "after reconcile");
    let seg = get_after(&model, IpcKind::Shm, shm_id);
    assert_eq!(
        seg.creator.and_then(|c| c.ts_ns),
        creator.ts_ns,
        "reconcile keeps who and when"
    );
}

fn get_after(model: &Objects, kind: IpcKind, id: i32) -> &ipctrace::model::objects::IpcObject {
    model
        .get(&ObjectKey {
            ns: own_ns(),
            kind,
            id,
        })
        .unwrap()
}

#[test]
fn waiters_are_found_in_the_kernel_and_leave_when_their_semop_returns() {
    // SAFETY (all unsafe blocks): plain SysV calls on a set this test owns.
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0);
    let _cleanup = Removal::sem(id);
    let values: [u16; 2] = [0, 1];
    assert_eq!(
        unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) },
        0
    );
    let wait = move |sops: &'static [(u16, i16)]| {
        move || unsafe {
            let mut buf = [sembuf(0, 0, 0); 2];
            for (b, (num, op)) in buf.iter_mut().zip(sops) {
                *b = sembuf(*num, *op, 0);
            }
            libc::semop(id, buf.as_mut_ptr(), sops.len())
        }
    };
    let decrement = spawn(c"ot-wait", wait(&[(0, -1)]));
    let for_zero = spawn(c"ot-wait", wait(&[(1, 0)]));
    // Sem 1 can give 1, sem 0 cannot: the kernel queues it on sem 0.
    let complex = spawn(c"ot-wait", wait(&[(1, -1), (0, -1)]));
    let mut probe = attach(Filter {
        comms: vec!["ot-wait".into()],
        ..Default::default()
    });
    for c in [&decrement, &for_zero, &complex] {
        c.release();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while unsafe {
        (
            libc::semctl(id, 0, libc::GETNCNT),
            libc::semctl(id, 1, libc::GETZCNT),
        )
    } != (2, 1)
    {
        assert!(Instant::now() < deadline, "the children never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut model = LiveObjects::seed(&[IpcKind::Sem]).unwrap().into_objects();
    let identity = ObjectKey {
        ns: own_ns(),
        kind: IpcKind::Sem,
        id,
    };
    let waiters = |model: &Objects| -> Vec<Vec<(u32, bool)>> {
        model
            .get(&identity)
            .unwrap()
            .semaphores()
            .unwrap()
            .sems
            .iter()
            .map(|s| {
                let mut w: Vec<(u32, bool)> =
                    s.waiters.iter().map(|w| (w.pid, w.for_zero)).collect();
                w.sort();
                w
            })
            .collect()
    };
    let mut on_sem0 = vec![(decrement.pid, false), (complex.pid, false)];
    on_sem0.sort();
    assert_eq!(waiters(&model), [on_sem0, vec![(for_zero.pid, true)]]);
    let sems = &model.get(&identity).unwrap().semaphores().unwrap().sems;
    let first_seen = sems[0].waiters[0].since_ns;
    assert_eq!((sems[0].ncount, sems[1].zcount), (2, 1));
    let w = sems[1].waiters[0];
    assert_eq!((w.tid, w.comm), (for_zero.pid, Some(Comm::new("ot-wait"))));

    // Sem 1 to zero: the wait-for-zero returns; the complex one now waits on sem 1.
    assert_eq!(unsafe { libc::semctl(id, 1, libc::SETVAL, 0) }, 0);
    assert_eq!(for_zero.wait(), 0);
    let mut events = Vec::new();
    settle(&mut probe, &mut events);
    for e in &events {
        model.apply(e);
    }
    assert!(
        waiters(&model)[1].is_empty(),
        "its semop returned: no longer waiting"
    );
    assert_eq!(
        model.get(&identity).unwrap().semaphores().unwrap().sems[1].zcount,
        0
    );
    reconcile(&mut model, &[IpcKind::Sem]).unwrap();
    assert_eq!(
        waiters(&model),
        [vec![(decrement.pid, false)], vec![(complex.pid, false)]]
    );
    let sems = &model.get(&identity).unwrap().semaphores().unwrap().sems;
    assert_eq!(
        sems[0].waiters[0].since_ns, first_seen,
        "still the same wait"
    );

    // Enough for both, whichever the kernel wakes first.
    let all: [u16; 2] = [2, 1];
    assert_eq!(
        unsafe { libc::semctl(id, 0, libc::SETALL, all.as_ptr()) },
        0
    );
    assert_eq!((decrement.wait(), complex.wait()), (0, 0));
    events.clear();
    settle(&mut probe, &mut events);
    for e in &events {
        model.apply(e);
    }
    assert_eq!(waiters(&model), [vec![], vec![]]);
    reconcile(&mut model, &[IpcKind::Sem]).unwrap();
    assert_eq!(waiters(&model), [vec![], vec![]]);
}

/// One step of the property test's workload, run by one child. Copy data: children must not
/// allocate.
#[derive(Debug, Clone, Copy)]
enum Step {
    Semop {
        n: usize,
        sops: [(u16, i16, i16); 3],
    },
    SetVal {
        num: i32,
        value: i32,
    },
    SetAll([u16; NSEMS]),
    Send {
        mtype: i64,
        size: usize,
    },
    Receive {
        msgtyp: i64,
        size: usize,
        flags: i32,
    },
    Attach {
        readonly: bool,
    },
    Detach {
        slot: usize,
    },
    ForkExit,
    ForkExec,
    ForkHold,
    Replace(IpcKind),
    Stat(IpcKind),
}

const NSEMS: usize = 3;
const STEPS: usize = 48;
const CHILDREN: usize = 3;

/// A small deterministic generator (xorshift64*): the same seed, the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

fn random_step(rng: &mut Rng) -> Step {
    let nowait = libc::IPC_NOWAIT as i16;
    match rng.below(100) {
        0..=24 => {
            let n = 1 + rng.below(3) as usize;
            let mut sops = [(0u16, 0i16, 0i16); 3];
            for s in sops.iter_mut().take(n) {
                let undo = if rng.below(3) == 0 {
                    libc::SEM_UNDO as i16
                } else {
                    0
                };
                *s = (
                    rng.below(NSEMS as u64) as u16,
                    rng.range(-2, 2) as i16,
                    nowait | undo,
                );
            }
            Step::Semop { n, sops }
        }
        25..=29 => Step::SetVal {
            num: rng.below(NSEMS as u64) as i32,
            value: rng.range(0, 4) as i32,
        },
        30..=32 => Step::SetAll([0, 1, 2].map(|_| rng.below(4) as u16)),
        33..=47 => Step::Send {
            mtype: rng.range(1, 3),
            size: rng.below(65) as usize,
        },
        48..=59 => {
            let msgtyp = [0, 1, 2, 3, -2][rng.below(5) as usize];
            let mut flags = libc::IPC_NOWAIT;
            if rng.below(3) == 0 {
                flags |= libc::MSG_NOERROR;
            }
            if msgtyp > 0 && rng.below(4) == 0 {
                flags |= libc::MSG_EXCEPT;
            }
            Step::Receive {
                msgtyp,
                size: rng.below(65) as usize,
                flags,
            }
        }
        60..=71 => Step::Attach {
            readonly: rng.below(2) == 0,
        },
        72..=81 => Step::Detach {
            slot: rng.below(6) as usize,
        },
        82..=84 => Step::ForkExit,
        85..=86 => Step::ForkExec,
        87..=89 => Step::ForkHold,
        90..=93 => Step::Replace(IpcKind::ALL[rng.below(3) as usize]),
        _ => Step::Stat(IpcKind::ALL[rng.below(3) as usize]),
    }
}

/// A child's mappings, in a fixed array (no allocation after fork).
struct Mapped {
    at: [usize; 32],
    n: usize,
}

#[derive(Clone, Copy)]
struct Keys {
    shm: i32,
    sem: i32,
    msg: i32,
}

const PROP_SHM_SIZE: usize = 2 * 4096;

/// Runs one step in a child. Ids are looked up by key each time: another child may have
/// replaced the object.
///
/// # Safety
/// Async-signal-safe libc calls only; runs in a forked child of a multi-threaded process.
unsafe fn perform(step: &Step, mapped: &mut Mapped, keys: &Keys) {
    let sem = || libc::semget(keys.sem, 0, 0);
    let msg = || libc::msgget(keys.msg, 0);
    let shm = || libc::shmget(keys.shm, 0, 0);
    match *step {
        Step::Semop { n, sops } => {
            let mut buf = [sembuf(0, 0, 0); 3];
            for (b, (num, op, flg)) in buf.iter_mut().zip(sops) {
                *b = sembuf(num, op, flg);
            }
            libc::semop(sem(), buf.as_mut_ptr(), n);
        }
        Step::SetVal { num, value } => {
            libc::semctl(sem(), num, libc::SETVAL, value);
        }
        Step::SetAll(values) => {
            libc::semctl(sem(), 0, libc::SETALL, values.as_ptr());
        }
        Step::Send { mtype, size } => {
            let m = Message::<64> {
                mtype: mtype as libc::c_long,
                text: [b'm'; 64],
            };
            libc::msgsnd(
                msg(),
                (&m as *const Message<64>).cast(),
                size,
                libc::IPC_NOWAIT,
            );
        }
        Step::Receive {
            msgtyp,
            size,
            flags,
        } => {
            let mut m = Message::<64> {
                mtype: 0,
                text: [0; 64],
            };
            libc::msgrcv(
                msg(),
                (&mut m as *mut Message<64>).cast(),
                size,
                msgtyp as libc::c_long,
                flags,
            );
        }
        Step::Attach { readonly } => {
            let flags = if readonly { libc::SHM_RDONLY } else { 0 };
            let at = libc::shmat(shm(), ptr::null(), flags);
            if at as isize != -1 && mapped.n < mapped.at.len() {
                mapped.at[mapped.n] = at as usize;
                mapped.n += 1;
            }
        }
        Step::Detach { slot } => {
            if slot < mapped.n {
                libc::shmdt(mapped.at[slot] as *const libc::c_void);
                mapped.at[slot] = mapped.at[mapped.n - 1];
                mapped.n -= 1;
            } else {
                libc::shmdt(0x1000 as *const libc::c_void); // EINVAL: nothing there
            }
        }
        Step::ForkExit | Step::ForkExec => {
            let child = libc::fork();
            if child == 0 {
                if matches!(step, Step::ForkExec) {
                    let argv = [c"/bin/true".as_ptr(), ptr::null()];
                    libc::execv(c"/bin/true".as_ptr(), argv.as_ptr());
                }
                libc::_exit(0);
            }
            // Its mappings are gone once it is reaped: the workload stays sequential.
            libc::waitpid(child, ptr::null_mut(), 0);
        }
        Step::ForkHold => {
            if libc::fork() == 0 {
                libc::alarm(30);
                loop {
                    libc::pause();
                }
            }
        }
        Step::Replace(kind) => match kind {
            IpcKind::Shm => {
                libc::shmctl(shm(), libc::IPC_RMID, ptr::null_mut());
                libc::shmget(keys.shm, PROP_SHM_SIZE, libc::IPC_CREAT | 0o600);
            }
            IpcKind::Sem => {
                libc::semctl(sem(), 0, libc::IPC_RMID);
                libc::semget(keys.sem, NSEMS as i32, libc::IPC_CREAT | 0o600);
            }
            IpcKind::Msg => {
                libc::msgctl(msg(), libc::IPC_RMID, ptr::null_mut());
                libc::msgget(keys.msg, libc::IPC_CREAT | 0o600);
            }
        },
        Step::Stat(kind) => match kind {
            IpcKind::Shm => {
                let mut ds: libc::shmid_ds = std::mem::zeroed();
                libc::shmctl(shm(), libc::IPC_STAT, &mut ds);
            }
            IpcKind::Sem => {
                libc::semctl(sem(), 0, libc::GETVAL);
            }
            IpcKind::Msg => {
                let mut ds: libc::msqid_ds = std::mem::zeroed();
                libc::msgctl(msg(), libc::IPC_STAT, &mut ds);
            }
        },
    }
}

/// Random workloads across three processes (and the grandchildren they fork), run one step at
/// a time in a random order so that the kernel's order is the events' order; the model must
/// end where the kernel ends, for every object any call named.
#[test]
fn random_workloads_end_where_the_kernel_ends() {
    let mut probe = attach(Filter {
        comms: vec!["ot-prop".into()],
        ..Default::default()
    });
    let started = Instant::now();
    for round in 0..5u64 {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (round + 1).wrapping_mul(0x1234_5678_9abc));
        let keys = Keys {
            shm: unique_key(0x100 + round as i32 * 4),
            sem: unique_key(0x101 + round as i32 * 4),
            msg: unique_key(0x102 + round as i32 * 4),
        };
        let _cleanup = KeyRemoval(vec![
            (IpcKind::Shm, keys.shm),
            (IpcKind::Sem, keys.sem),
            (IpcKind::Msg, keys.msg),
        ]);
        // SAFETY: plain SysV calls creating this round's objects.
        unsafe {
            assert!(libc::shmget(keys.shm, PROP_SHM_SIZE, libc::IPC_CREAT | 0o600) >= 0);
            let sem = libc::semget(keys.sem, NSEMS as i32, libc::IPC_CREAT | 0o600);
            let start: [u16; NSEMS] = [1, 2, 0];
            assert_eq!(libc::semctl(sem, 0, libc::SETALL, start.as_ptr()), 0);
            assert!(libc::msgget(keys.msg, libc::IPC_CREAT | 0o600) >= 0);
        }
        let mut schedule = Vec::new();
        let mut plans = [[Step::Stat(IpcKind::Sem); STEPS]; CHILDREN];
        let mut planned = [0usize; CHILDREN];
        while planned.iter().any(|n| *n < STEPS) {
            let who = rng.below(CHILDREN as u64) as usize;
            if planned[who] < STEPS {
                plans[who][planned[who]] = random_step(&mut rng);
                planned[who] += 1;
                schedule.push(who);
            }
        }
        let mut fds = [[0; 2]; CHILDREN + 1];
        for f in &mut fds {
            // SAFETY: pipe writes two fds.
            assert_eq!(unsafe { libc::pipe(f.as_mut_ptr()) }, 0);
        }
        let ack = fds[CHILDREN];
        let children: Vec<Child> = (0..CHILDREN)
            .map(|i| {
                let (plan, turn) = (plans[i], fds[i][0]);
                spawn(c"ot-prop", move || unsafe {
                    let mut mapped = Mapped { at: [0; 32], n: 0 };
                    for step in &plan {
                        let mut byte = 0u8;
                        if libc::read(turn, (&mut byte as *mut u8).cast(), 1) != 1 || byte == b'x' {
                            return 0;
                        }
                        perform(step, &mut mapped, &keys);
                        libc::write(ack[1], b"k".as_ptr().cast(), 1);
                    }
                    // Exiting is a step too: the kernel closes the mappings after the exit
                    // event, so an exit racing another child's shmat would leave the kernel's
                    // lpid to chance.
                    let mut byte = 0u8;
                    libc::read(turn, (&mut byte as *mut u8).cast(), 1);
                    0 // exits with whatever it still has mapped and its SEM_UNDO adjustments
                })
            })
            .collect();
        let pids: Vec<u32> = children.iter().map(|c| c.pid).collect();
        let mut earlier = Vec::new();
        drain(&mut probe, &mut earlier);
        let mut live = Live::new(LiveObjects::seed(&IpcKind::ALL).unwrap(), &pids);
        for c in &children {
            c.release();
        }
        for who in schedule {
            // SAFETY: one byte each way through this test's pipes.
            unsafe {
                libc::write(fds[who][1], b"g".as_ptr().cast(), 1);
                let mut ready = libc::pollfd {
                    fd: ack[0],
                    events: libc::POLLIN,
                    revents: 0,
                };
                assert_eq!(
                    libc::poll(&mut ready, 1, 5_000),
                    1,
                    "child {who} stopped answering"
                );
                let mut byte = 0u8;
                assert_eq!(libc::read(ack[0], (&mut byte as *mut u8).cast(), 1), 1);
            }
            // The step's records were in the ring buffer before its child answered.
            live.pump(&mut probe);
        }
        for (who, child) in children.iter().enumerate() {
            // SAFETY: one byte through this test's pipe.
            unsafe { libc::write(fds[who][1], b"x".as_ptr().cast(), 1) };
            assert_eq!(child.wait(), 0);
            live.pump(&mut probe);
        }
        live.settle(&mut probe);
        let _holders = Kill(live.family.alive.iter().copied().collect());
        let events = &live.events;
        let model = live.model();
        let mut ids = named_objects(events);
        // SAFETY: looks up this round's objects by key.
        unsafe {
            ids.insert((IpcKind::Shm, libc::shmget(keys.shm, 0, 0)));
            ids.insert((IpcKind::Sem, libc::semget(keys.sem, 0, 0)));
            ids.insert((IpcKind::Msg, libc::msgget(keys.msg, 0)));
        }
        let context = format!("round {round}, {} events", events.len());
        assert!(events.len() > CHILDREN * STEPS, "{context}");
        assert_agrees_with_kernel(model, &ids, &context);
        for f in fds {
            // SAFETY: closes this round's pipes.
            unsafe {
                libc::close(f[0]);
                libc::close(f[1]);
            }
        }
    }
    assert_eq!(probe.counters.read().unwrap().lost, 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
