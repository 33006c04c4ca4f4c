//! Who holds a semaphore, against the real kernel: the SEM_UNDO reader's view of every process's
//! undo list checked against what the processes did and what semctl says. Needs root; nothing
//! here is skipped.

mod support;

use ipctrace::decoder::sem_undo::decode_sem_undo;
use ipctrace::loader::sem_undo::SemUndoReader;
use std::time::{Duration, Instant};
use support::*;

fn own_ns() -> u32 {
    ipctrace::kernel_view::processes::own_ipc_namespace().unwrap()
}

/// A private set of `n` semaphores, each at `value`, removed when dropped.
struct Set(i32);

impl Set {
    fn new(n: i32, value: i32) -> Set {
        // SAFETY: plain SysV calls on a set of our own.
        unsafe {
            let id = libc::semget(libc::IPC_PRIVATE, n, 0o600);
            assert!(id >= 0);
            for num in 0..n {
                assert_eq!(libc::semctl(id, num, libc::SETVAL, value), 0);
            }
            Set(id)
        }
    }
}

impl Drop for Set {
    fn drop(&mut self) {
        // SAFETY: removes our own set.
        unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
    }
}

/// semop on one semaphore; the child's whole job before it sleeps.
fn semop(id: i32, num: u16, op: i16, flg: i16) -> i32 {
    let mut sop = libc::sembuf {
        sem_num: num,
        sem_op: op,
        sem_flg: flg,
    };
    // SAFETY: one sembuf on the stack.
    unsafe { libc::semop(id, &mut sop, 1) }
}

fn kill(child: &Child) {
    // SAFETY: our own child.
    unsafe { libc::kill(child.pid as i32, libc::SIGKILL) };
    child.wait();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn semval(id: i32, num: i32) -> i32 {
    // SAFETY: GETVAL on our own set.
    unsafe { libc::semctl(id, num, libc::GETVAL) }
}

#[test]
fn the_kernel_reader_sees_each_processes_sem_undo_adjustments() {
    let set = Set::new(3, 5);
    let id = set.0;
    // Takes 2 of sem 0 and 1 of sem 2 with SEM_UNDO, gives 1 of sem 1 back without, then sleeps.
    let holder = spawn(c"undo-holder", move || {
        if semop(id, 0, -2, libc::SEM_UNDO as i16) != 0
            || semop(id, 2, -1, libc::SEM_UNDO as i16) != 0
            || semop(id, 1, 1, 0) != 0
        {
            return 1;
        }
        // SAFETY: sleeps until killed.
        unsafe { libc::sleep(60) };
        0
    });
    holder.release();
    wait_until("the holder's semops", || semval(id, 2) == 4);
    let mut reader = SemUndoReader::load().expect("load the SEM_UNDO reader");
    let ns = own_ns();
    let raw = reader.read(&[(ns, id, 3)]).expect("read");
    let walk = decode_sem_undo(&raw, |n, s| (n == ns && s == id).then_some(3));
    let mine: Vec<_> = walk.entries.iter().filter(|e| e.semid == id).collect();
    assert_eq!(mine.len(), 1, "{:?}", walk.entries);
    assert_eq!(mine[0].pid, holder.pid);
    assert_eq!(mine[0].comm.as_str(), "undo-holder");
    assert_eq!(mine[0].ipc_ns, ns);
    // +N: what the exit will give back; the semop without SEM_UNDO left no trace.
    assert_eq!(mine[0].semadj, Some(vec![2, 0, 1]));
    assert_eq!((semval(id, 0), semval(id, 1), semval(id, 2)), (3, 6, 4));

    // The kernel applies exactly those adjustments at exit, and the entry is gone.
    kill(&holder);
    assert_eq!((semval(id, 0), semval(id, 1), semval(id, 2)), (5, 6, 5));
    let raw = reader.read(&[(ns, id, 3)]).expect("read");
    let walk = decode_sem_undo(&raw, |n, s| (n == ns && s == id).then_some(3));
    assert!(walk.entries.iter().all(|e| e.semid != id));
}
