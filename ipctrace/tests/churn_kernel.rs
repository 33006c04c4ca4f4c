//! Churn against the real kernel: while `ipctrace objects` traces, this test creates and removes
//! tens of thousands of objects and forks thousands of short-lived processes, one of them under
//! a reused pid. The tracer's memory must stay bounded, no event be lost, and its table be right.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::io::Read;
use std::time::{Duration, Instant};
use support::*;

/// Objects created and removed (a third of each kind).
const OBJECTS: usize = 30_000;
/// Short-lived processes, each attaching a segment and taking a semaphore with SEM_UNDO.
const PROCESSES: usize = 4_000;
/// The tracer's peak resident memory, all of it (BTF, maps, the model).
const MAX_PEAK_KB: u64 = 60 * 1024;
/// How much the tracer's resident memory may grow while the churn goes on.
const MAX_GROWTH_KB: u64 = 8 * 1024;

/// A `Vm*:` line of /proc/<pid>/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Waits for a child that ended successfully; returns its peak resident memory (kB), its
/// VmHWM as it exited, after its last output.
fn reap(child: std::process::Child) -> u64 {
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 reaps our own child and fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
    usage.ru_maxrss as u64
}

/// This run's name for a `role` of its processes: the role and the test's pid.
fn name(role: &str) -> &'static CStr {
    let name = CString::new(format!("{role}-{:x}", std::process::id())).unwrap();
    assert!(name.as_bytes().len() < 16, "{name:?} is longer than a comm");
    Box::leak(name.into_boxed_c_str())
}

/// Creates and removes one object of `kind` (shm, sem or msg), using it once; its id.
fn churn_one(kind: &str) -> i32 {
    // SAFETY: plain SysV calls on objects this test creates and removes at once.
    unsafe {
        match kind {
            "shm" => {
                let id = libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
                assert!(id >= 0, "shmget: errno {}", errno());
                let address = libc::shmat(id, std::ptr::null(), 0);
                assert_ne!(address as isize, -1);
                libc::shmdt(address);
                libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
                id
            }
            "sem" => {
                let id = libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600);
                assert!(id >= 0, "semget: errno {}", errno());
                let mut up = [sembuf(1, 1, libc::SEM_UNDO as i16)];
                assert_eq!(libc::semop(id, up.as_mut_ptr(), 1), 0);
                libc::semctl(id, 0, libc::IPC_RMID);
                id
            }
            _ => {
                let id = libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600);
                assert!(id >= 0, "msgget: errno {}", errno());
                let mut m = Message::<8> {
                    mtype: 1,
                    text: *b"churning",
                };
                let m = &mut m as *mut Message<8> as *mut libc::c_void;
                assert_eq!(libc::msgsnd(id, m, 8, 0), 0);
                assert_eq!(libc::msgrcv(id, m, 8, 0, 0), 8);
                libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut());
                id
            }
        }
    }
}

/// Forks a child named `comm` that runs `work`, under exactly `pid` (free now): the kernel hands
/// out the pid after ns_last_pid. Another process on the machine may take it first: then the
/// child is killed and the fork tried again.
fn spawn_as(pid: u32, comm: &'static CStr, work: impl Fn() -> i32) -> Child {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let child = spawn(comm, &work);
        if child.pid == pid {
            return child;
        }
        // SAFETY: kills our own child, still waiting at its gate.
        unsafe { libc::kill(child.pid as i32, libc::SIGKILL) };
        child.wait();
    }
    panic!("pid {pid} was taken by other processes 50 times");
}

#[test]
fn churn_keeps_the_tracer_bounded_and_its_table_right() {
    let started = Instant::now();
    let me = std::process::id();
    // Only this run's calls are traced (other tests, and other runs of this one, may load the
    // machine): by the names of this thread and of the children it forks.
    let [test, child, reuse_a, reuse_b] = ["churn", "child", "reuse-a", "reuse-b"].map(name);
    // SAFETY: names the calling thread.
    unsafe { libc::prctl(libc::PR_SET_NAME, test.as_ptr()) };
    let comms = [test, child, reuse_a, reuse_b].map(|c| c.to_str().unwrap());
    // SAFETY: plain SysV calls on objects this test owns (removed on drop).
    let (segment, set) = unsafe {
        let segment = libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
        let set = libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600);
        assert!(segment >= 0 && set >= 0);
        (segment, set)
    };
    let _removals = (Removal::shm(segment), Removal::sem(set));
    let queue_key = unique_key(0x6368);

    // Traced until told to stop (or the test's time is up): no reconcile with /proc until
    // then, so the model alone must let go of what is removed and of who exits.
    let mut args = vec!["objects", "--json", "--duration", "20"];
    args.extend(comms.iter().flat_map(|c| ["--comm", &c[..]]));
    let (mut tracer, mut stderr) = start_ipctrace(&args);
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = status_kb(tracer.id(), "VmRSS");

    // In bursts, as a busy server would: the test is of memory and names, not of how fast the
    // tracer drains its ring on a loaded machine.
    let churned: BTreeSet<(&str, i32)> = (0..OBJECTS)
        .map(|i| {
            if i % 300 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let kind = ["shm", "sem", "msg"][i % 3];
            (kind, churn_one(kind))
        })
        .collect();
    let objects_done = started.elapsed();

    // Short-lived processes, a batch at a time: each maps the segment and takes the semaphore
    // with SEM_UNDO, and exits holding both.
    for _ in 0..PROCESSES / 50 {
        let batch: Vec<Child> = (0..50)
            .map(|_| {
                spawn(child, move || {
                    // SAFETY: plain SysV calls; exit detaches and undoes them.
                    unsafe {
                        let mut up = [sembuf(0, 1, libc::SEM_UNDO as i16)];
                        let mapped = libc::shmat(segment, std::ptr::null(), 0) as isize != -1;
                        i32::from(!mapped || libc::semop(set, up.as_mut_ptr(), 1) != 0)
                    }
                })
            })
            .collect();
        batch.iter().for_each(Child::release);
        assert!(
            batch.iter().all(|c| c.wait() == 0),
            "a child's calls failed"
        );
    }
    let processes_done = started.elapsed();

    // A pid reused: "reuse-a" makes a queue and exits; "reuse-b", under the same pid, sends to
    // it and stays until the tracer has reported. (IPC_EXCL: with calls filtered, only that
    // proves the call made it.)
    let first_life = spawn(reuse_a, move || {
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
        // SAFETY: creates the queue this test removes.
        i32::from(unsafe { libc::msgget(queue_key, flags) } < 0)
    });
    first_life.release();
    assert_eq!(first_life.wait(), 0);
    // SAFETY: looks up the queue reuse-a made.
    let queue = unsafe { libc::msgget(queue_key, 0) };
    assert!(queue >= 0);
    let _removal = Removal::msg(queue);
    let mut hold = [0; 2];
    // SAFETY: a pipe whose write end this test closes to let reuse-b go.
    assert_eq!(unsafe { libc::pipe(hold.as_mut_ptr()) }, 0);
    let second_life = spawn_as(first_life.pid, reuse_b, move || {
        // SAFETY: one message to our queue, then wait for the write end to close.
        unsafe {
            libc::close(hold[1]);
            let mut m = Message::<4> {
                mtype: 7,
                text: *b"mine",
            };
            let sent = libc::msgsnd(queue, &mut m as *mut Message<4> as *mut libc::c_void, 4, 0);
            let mut byte = 0u8;
            libc::read(hold[0], &mut byte as *mut u8 as *mut libc::c_void, 1);
            i32::from(sent != 0)
        }
    });
    second_life.release();

    // Let the last records through, then read the memory and stop the tracer.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = status_kb(tracer.id(), "VmRSS");
    // SAFETY: signals our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGTERM) };
    let mut out = Vec::new();
    tracer.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let peak = reap(tracer);
    // SAFETY: closes our ends: reuse-b returns from read and exits.
    unsafe {
        libc::close(hold[1]);
        libc::close(hold[0]);
    }
    assert_eq!(second_life.wait(), 0);
    let mut errors = String::new();
    stderr.read_to_string(&mut errors).unwrap();

    let lines = json_lines(&out);
    let (summary, objects) = lines.split_last().unwrap();
    let summary = &summary["summary"];
    println!(
        "{OBJECTS} objects in {objects_done:.1?}, {PROCESSES} processes by {processes_done:.1?}; \
         tracer RSS {rss_before} kB before, {rss_after} kB after (+{} kB), peak {peak} kB; \
         {} objects listed; summary {summary}",
        rss_after as i64 - rss_before as i64,
        objects.len()
    );
    assert!(peak < MAX_PEAK_KB, "peak RSS {peak} kB");
    assert!(
        rss_after < rss_before + MAX_GROWTH_KB,
        "RSS grew from {rss_before} to {rss_after} kB"
    );
    for counter in [
        "lost",
        "untracked",
        "malformed",
        "missed_exits",
        "forgotten_processes",
    ] {
        assert_eq!(
            summary[counter], 0,
            "{counter}: {summary}; stderr: {errors}"
        );
    }
    // Every call: 4 per segment and queue, 3 per set, 2 per child, and the queue's 3.
    let calls = OBJECTS / 3 * (4 + 3 + 4) + 2 * PROCESSES + 3;
    assert_eq!(summary["events"], calls, "{summary}");
    assert!(summary["process_events"].as_u64().unwrap() >= 2 * PROCESSES as u64);

    // Of what this test made, only the segment, the set and the queue are left.
    let ours: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            let object = (
                o["type"].as_str().unwrap(),
                o["id"].as_i64().unwrap() as i32,
            );
            o["creator"]["pid"] == me && churned.contains(&object)
        })
        .collect();
    assert!(ours.is_empty(), "removed objects listed: {ours:?}");
    let find = |kind: &str, id: i32| {
        objects
            .iter()
            .find(|o| o["type"] == kind && o["id"] == id)
            .unwrap_or_else(|| panic!("{kind} {id} missing"))
    };
    let seg = find("shm", segment);
    assert_eq!(seg["ops"]["shmat"], PROCESSES, "every child's shmat: {seg}");
    assert_eq!(
        (seg["nattch"].as_u64(), &seg["attached"]),
        (Some(0), &Value::Array(vec![]))
    );
    let sem = find("sem", set);
    let semops =
        sem["ops"]["semop"].as_u64().unwrap_or(0) + sem["ops"]["semtimedop"].as_u64().unwrap_or(0);
    assert_eq!(semops, PROCESSES as u64, "every child's semop: {sem}");
    assert_eq!(sem["sems"][0]["value"], 0, "each exit undid its +1: {sem}");

    // The queue's creator and its sender share a pid and are two processes.
    let q = find("msg", queue);
    let pid = first_life.pid;
    let (creator, last) = (&q["creator"], &q["last_op"]);
    assert!(
        creator["pid"] == pid && creator["comm"] == comms[2] && creator["exited"] == true,
        "{q}"
    );
    assert!(
        last["pid"] == pid
            && last["comm"] == comms[3]
            && last["op"] == "msgsnd"
            && last["exited"] == false,
        "{q}"
    );
    assert_eq!(q["last_send"]["comm"], comms[3], "{q}");
    assert_eq!(q["qnum"], 1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
