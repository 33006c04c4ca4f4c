//! Contention against the real kernel: real blocking is told apart from the fast path, wait
//! times match what the workload did, and each waiter's releaser is named. The collected
//! records are fed to the same `Waits` model `ipctrace lat` uses.

mod support;

use ipctrace::decoder::syscalls::IpcKind;
use ipctrace::filter::Filter;
use ipctrace::model::waits::{GroupBy, WaitGroup, WaitStats, Waits};
use support::*;

const MS: u64 = 1_000_000;

fn waits(t: &Traced, by: GroupBy, kinds: Vec<IpcKind>) -> Waits {
    let mut w = Waits::new(by, kinds);
    for c in &t.calls {
        w.record(c);
    }
    w
}

fn stats_for(w: &Waits, id: i32, semnum: Option<u16>) -> &WaitStats {
    w.stats
        .iter()
        .find(|(k, _)| k.id == id && k.semnum == semnum)
        .map(|(_, s)| s)
        .unwrap_or_else(|| {
            panic!(
                "no stats for {id}/{semnum:?}: {:?}",
                w.stats.keys().collect::<Vec<&WaitGroup>>()
            )
        })
}

extern "C" fn ignore(_: libc::c_int) {}

#[test]
fn a_holder_posting_every_h_ms_is_the_waiters_releaser() {
    const H_US: u32 = 20_000;
    const ROUNDS: usize = 12;
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    let waiter = taker(c"it-lat-waiter", id, 0, ROUNDS);
    let holder = spawn(c"it-lat-holder", move || unsafe {
        let mut post = [sembuf(0, 1, 0)];
        for _ in 0..ROUNDS {
            libc::usleep(H_US);
            libc::semop(id, post.as_mut_ptr(), 1);
        }
        0
    });
    let fast = spawn(c"it-lat-fast", move || unsafe {
        let mut up = [sembuf(1, 1, 0)];
        let mut down = [sembuf(1, -1, 0)];
        for _ in 0..50 {
            libc::semop(id, up.as_mut_ptr(), 1);
            libc::semop(id, down.as_mut_ptr(), 1);
        }
        0
    });
    let holder_pid = holder.pid;
    let t = trace(&[waiter, holder, fast], options(Filter::default()));
    let w = waits(&t, GroupBy::Semnum, vec![IpcKind::Sem]);

    let contended = stats_for(&w, id, Some(0));
    assert_eq!(contended.calls, 2 * ROUNDS as u64);
    // The first wait may start late; nearly every wait is a real block.
    assert!(
        contended.blocked >= ROUNDS as u64 - 1,
        "blocked {}",
        contended.blocked
    );
    let p50 = contended.percentile(0.5) as f64;
    let h = H_US as f64 * 1000.0;
    assert!((p50 - h).abs() <= 0.2 * h, "p50 {p50} vs H {h}");
    let wakers = contended.top_wakers();
    assert_eq!(wakers.len(), 1, "{wakers:?}");
    assert_eq!(
        (wakers[0].0.pid, wakers[0].0.comm.to_string()),
        (holder_pid, "it-lat-holder".to_string())
    );

    let uncontended = stats_for(&w, id, Some(1));
    assert_eq!((uncontended.calls, uncontended.blocked), (100, 0));
    assert_eq!(t.kernel.lost, 0);
}

#[test]
fn timeouts_signals_and_removal_end_waits_and_are_counted_apart() {
    let timed = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let signalled = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let removed = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let _c = (
        Removal::sem(timed),
        Removal::sem(signalled),
        Removal::sem(removed),
    );

    let sleeper = spawn(c"it-timeout", move || unsafe {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 30_000_000,
        };
        let mut take = [sembuf(0, -1, 0)];
        libc::syscall(libc::SYS_semtimedop, timed, take.as_mut_ptr(), 1, &ts);
        0
    });
    let interrupted = spawn(c"it-eintr", move || unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        let mut take = [sembuf(0, -1, 0)];
        libc::semop(signalled, take.as_mut_ptr(), 1);
        0
    });
    let target = interrupted.pid as i32;
    let signaller = spawn(c"it-signaller", move || unsafe {
        libc::usleep(60_000);
        libc::kill(target, libc::SIGUSR1)
    });
    let blocked = spawn(c"it-eidrm", move || unsafe {
        let mut take = [sembuf(0, -1, 0)];
        libc::semop(removed, take.as_mut_ptr(), 1);
        0
    });
    let remover = spawn(c"it-rmid", move || unsafe {
        libc::usleep(60_000);
        libc::semctl(removed, 0, libc::IPC_RMID)
    });
    let (signaller_pid, remover_pid) = (signaller.pid, remover.pid);
    let t = trace(
        &[sleeper, interrupted, signaller, blocked, remover],
        options(Filter::default()),
    );
    let w = waits(&t, GroupBy::Object, vec![IpcKind::Sem]);

    let s = stats_for(&w, timed, None);
    assert_eq!(
        (s.calls, s.blocked, s.timeouts, s.interrupted, s.removed),
        (1, 1, 1, 0, 0)
    );
    assert!(s.max() >= 29 * MS && s.max() < 500 * MS, "{}", s.max());
    assert!(s.wakers.is_empty(), "a timeout has no releasing process");

    let s = stats_for(&w, signalled, None);
    assert_eq!(
        (s.blocked, s.timeouts, s.interrupted, s.removed),
        (1, 0, 1, 0)
    );
    assert!(s.max() >= 50 * MS, "{}", s.max());
    assert_eq!(
        s.top_wakers()[0].0.pid,
        signaller_pid,
        "the signal's sender woke it"
    );

    let s = stats_for(&w, removed, None);
    assert_eq!(
        (s.blocked, s.timeouts, s.interrupted, s.removed),
        (1, 0, 0, 1)
    );
    assert_eq!(s.top_wakers()[0].0.pid, remover_pid);
}

#[test]
fn msgsnd_on_a_full_queue_and_msgrcv_on_an_empty_one_block() {
    let full = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    let empty = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    let _c = (Removal::msg(full), Removal::msg(empty));
    // Default MSGMNB is 16384 bytes and MSGMAX 8192: two messages fill the queue.
    let sender = spawn(c"it-full-snd", move || unsafe {
        let m = Message::<8192> {
            mtype: 1,
            text: [7; 8192],
        };
        for _ in 0..3 {
            libc::msgsnd(full, &m as *const _ as *const libc::c_void, 8192, 0);
        }
        0
    });
    let drainer = spawn(c"it-full-rcv", move || unsafe {
        libc::usleep(60_000);
        let mut m = Message::<8192> {
            mtype: 0,
            text: [0; 8192],
        };
        libc::msgrcv(full, &mut m as *mut _ as *mut libc::c_void, 8192, 0, 0) as i32
    });
    let reader = spawn(c"it-empty-rcv", move || unsafe {
        let mut m = Message::<16> {
            mtype: 0,
            text: [0; 16],
        };
        libc::msgrcv(empty, &mut m as *mut _ as *mut libc::c_void, 16, 0, 0) as i32
    });
    let writer = spawn(c"it-empty-snd", move || unsafe {
        libc::usleep(60_000);
        let m = Message::<4> {
            mtype: 2,
            text: *b"ping",
        };
        libc::msgsnd(empty, &m as *const _ as *const libc::c_void, 4, 0)
    });
    let (drainer_pid, writer_pid) = (drainer.pid, writer.pid);
    let t = trace(
        &[sender, drainer, reader, writer],
        options(Filter::default()),
    );
    let w = waits(&t, GroupBy::Object, vec![IpcKind::Msg]);

    let s = stats_for(&w, full, None);
    assert_eq!(
        (s.calls, s.blocked),
        (4, 1),
        "three sends and one receive; the third send waited"
    );
    assert!(s.max() >= 50 * MS, "{}", s.max());
    assert_eq!(s.top_wakers()[0].0.pid, drainer_pid);

    let s = stats_for(&w, empty, None);
    assert_eq!((s.calls, s.blocked), (2, 1));
    assert!(s.max() >= 50 * MS, "{}", s.max());
    assert_eq!(s.top_wakers()[0].0.pid, writer_pid);

    // Semaphore-only accounting ignores the queues entirely.
    assert!(waits(&t, GroupBy::Object, vec![IpcKind::Sem])
        .stats
        .is_empty());
}

/// `lat --by process`: a process that only ever took the fast path is still named, and the
/// contention summary names the waiter of each group rather than listing one queue twice.
#[test]
fn by_process_every_key_names_its_process() {
    use ipctrace::decoder::Event;
    use ipctrace::session::Sink;
    use ipctrace::views::lat::LatView;
    let q = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::msg(q);
    // SAFETY (every child): msgsnd, msgrcv and usleep on a queue this test owns.
    let slow = spawn(c"it-slow-rx", move || unsafe {
        let mut msg = Message::<8> {
            mtype: 0,
            text: [0; 8],
        };
        for _ in 0..2 {
            libc::msgrcv(q, (&mut msg as *mut Message<8>).cast(), 8, 1, 0);
        }
        0
    });
    let other = spawn(c"it-other-rx", move || unsafe {
        let mut msg = Message::<8> {
            mtype: 0,
            text: [0; 8],
        };
        libc::msgrcv(q, (&mut msg as *mut Message<8>).cast(), 8, 2, 0);
        0
    });
    let fast = spawn(c"it-fast-tx", move || unsafe {
        let msg = Message::<1> {
            mtype: 1,
            text: *b"x",
        };
        for mtype in [1, 1, 2] {
            libc::usleep(30_000);
            let m = Message::<1> { mtype, ..msg };
            libc::msgsnd(q, (&m as *const Message<1>).cast(), 1, 0);
        }
        0
    });
    let (slow_pid, fast_pid) = (slow.pid, fast.pid);
    let t = trace(&[slow, other, fast], options(Filter::default()));
    let render = |json: bool| {
        let waits = Waits::new(GroupBy::Process, vec![IpcKind::Msg]);
        let mut view = LatView::new(Vec::new(), json, waits, None);
        for c in &t.calls {
            view.event(&Event::Call(*c));
        }
        view.report(None).unwrap();
        String::from_utf8(view.into_output()).unwrap()
    };
    let lines = json_lines(render(true).as_bytes());
    assert_eq!(lines.len(), 3, "{lines:?}");
    let fast_line = lines
        .iter()
        .find(|l| l["pid"] == fast_pid)
        .expect("the sender has a line");
    assert_eq!(fast_line["blocked"], 0, "its sends never waited");
    assert_eq!(fast_line["comm"], "it-fast-tx", "{fast_line}");
    let human = render(false);
    let hottest = human
        .lines()
        .find(|l| l.contains("hottest (blocked time)"))
        .unwrap();
    assert!(
        hottest.contains(&format!("msg {q} waiter it-slow-rx({slow_pid})"))
            && hottest.contains("waiter it-other-rx("),
        "{hottest}"
    );
    assert!(
        human.contains(&format!("waiter it-fast-tx({fast_pid}): ")),
        "{human}"
    );
}
