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

/// A set of `n` semaphores, each at `value`, under `key` (IPC_PRIVATE: 0), removed when dropped.
struct Set(i32);

impl Set {
    fn new(n: i32, value: i32) -> Set {
        Set::keyed(libc::IPC_PRIVATE, n, value)
    }

    fn keyed(key: i32, n: i32, value: i32) -> Set {
        // SAFETY: plain SysV calls on a set of our own.
        unsafe {
            let id = libc::semget(key, n, 0o600 | libc::IPC_CREAT | libc::IPC_EXCL);
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

const UNDO: i16 = libc::SEM_UNDO as i16;

/// A child that takes `take` (set, num) in order, pausing `pause_ms` between, then sleeps
/// until killed.
fn taker(comm: &'static std::ffi::CStr, take: Vec<(i32, u16, i16)>, pause_ms: u32) -> Child {
    let child = spawn(comm, move || {
        for (i, &(id, num, flg)) in take.iter().enumerate() {
            if i > 0 {
                // SAFETY: usleep is async-signal-safe.
                unsafe { libc::usleep(pause_ms * 1000) };
            }
            if semop(id, num, -1, flg) != 0 {
                return 1;
            }
        }
        // SAFETY: sleeps until killed.
        unsafe { libc::sleep(60) };
        0
    });
    child.release();
    child
}

/// ncount of semaphore `num` (tasks waiting for it to increase).
fn ncount(id: i32, num: i32) -> i32 {
    // SAFETY: GETNCNT on our own set.
    unsafe { libc::semctl(id, num, libc::GETNCNT) }
}

/// `ipctrace ARGS` to its end: its stdout's JSON lines.
fn ipctrace_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipctrace"))
        .args(args)
        .output()
        .expect("run ipctrace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

fn sem_line(lines: &[serde_json::Value], id: i32) -> &serde_json::Value {
    lines
        .iter()
        .find(|l| l["type"] == "sem" && l["id"] == id)
        .unwrap_or_else(|| panic!("no line for set {id}: {lines:?}"))
}

fn deadlocks(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .filter(|l| l.get("deadlock").is_some())
        .collect()
}

fn pids(list: &serde_json::Value) -> Vec<u64> {
    let mut v: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["pid"].as_u64().unwrap())
        .collect();
    v.sort();
    v
}

/// (pid, waits id, holds id) of each link of a deadlock line.
fn chain(d: &serde_json::Value) -> Vec<(u64, i64, i64)> {
    d["deadlock"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["pid"].as_u64().unwrap(),
                l["waits"]["id"].as_i64().unwrap(),
                l["holds"]["id"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_sleeping_sem_undo_holder_and_its_three_waiters_are_named_before_and_after_the_hang() {
    let key = unique_key(0x11);
    let set = Set::keyed(key, 1, 1);
    let id = set.0;
    let key_arg = format!("{key:#x}");
    // Started before the hang: the waits begin while traced, so their starts are exact.
    let (tracer, _stderr) = start_ipctrace(&[
        "objects",
        "--type",
        "sem",
        "--key",
        &key_arg,
        "--json",
        "--duration",
        "2",
    ]);
    let holder = taker(c"hold-undo", vec![(id, 0, UNDO)], 0);
    wait_until("the holder's take", || semval(id, 0) == 0);
    let waiters: Vec<Child> = [c"wait-a", c"wait-b", c"wait-c"]
        .into_iter()
        .map(|comm| taker(comm, vec![(id, 0, UNDO)], 0))
        .collect();
    wait_until("three waiters", || ncount(id, 0) == 3);
    let blocked_at = Instant::now();
    let out = tracer.wait_with_output().unwrap();
    let lines = json_lines(&out.stdout);
    let sem = &sem_line(&lines, id)["sems"][0];
    let mut waiter_pids: Vec<u64> = waiters.iter().map(|c| c.pid as u64).collect();
    waiter_pids.sort();
    assert_eq!(pids(&sem["waiters"]), waiter_pids, "{sem}");
    assert_eq!(sem["holders"].as_array().unwrap().len(), 1, "{sem}");
    let h = &sem["holders"][0];
    assert_eq!(
        (h["pid"].as_u64(), h["comm"].as_str()),
        (Some(holder.pid as u64), Some("hold-undo"))
    );
    assert_eq!(
        (h["source"].as_str(), h["units"].as_u64()),
        (Some("kernel"), Some(1))
    );
    for w in sem["waiters"].as_array().unwrap() {
        assert_eq!(w["exact"], true, "{w}");
        assert!(w["waited_ns"].as_u64().unwrap() > 0);
    }

    // Started after the hang: the same holder, waits as lower bounds that are still right.
    std::thread::sleep(Duration::from_millis(300));
    let lines = ipctrace_json(&["objects", "--type", "sem", "--key", &key_arg, "--json"]);
    let sem = &sem_line(&lines, id)["sems"][0];
    assert_eq!(pids(&sem["holders"]), [holder.pid as u64]);
    assert_eq!(pids(&sem["waiters"]), waiter_pids);
    for w in sem["waiters"].as_array().unwrap() {
        // First seen by this run: a lower bound of the wait, marked as such.
        assert_eq!(w["exact"], false, "{w}");
        let waited = w["waited_ns"].as_u64().unwrap();
        assert!(waited < blocked_at.elapsed().as_nanos() as u64, "{w}");
    }
    assert!(deadlocks(&lines).is_empty());
    // lat names them too, though no wait has finished.
    let lines = ipctrace_json(&["lat", "--key", &key_arg, "--json", "--duration", "0.5"]);
    let line = sem_line(&lines, id);
    assert_eq!(line["blocked"], 0);
    assert_eq!(pids(&line["waiting"]), waiter_pids, "{line}");
    assert_eq!(pids(&line["holders"]), [holder.pid as u64]);
    for child in waiters.iter().chain([&holder]) {
        kill(child);
    }
}

/// `ipctrace trace --json` of the semaphore sets of keys `k1` and `k2`, for `secs`.
fn trace_keys(
    k1: &str,
    k2: &str,
    secs: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
) {
    start_ipctrace(&[
        "trace",
        "--type",
        "sem",
        "--key",
        k1,
        "--key",
        k2,
        "--json",
        "--duration",
        secs,
    ])
}

/// A and B each hold one set and wait on the other's.
fn abba(
    comm_a: &'static std::ffi::CStr,
    comm_b: &'static std::ffi::CStr,
    s1: i32,
    s2: i32,
    flg: i16,
) -> (Child, Child) {
    let a = taker(comm_a, vec![(s1, 0, flg), (s2, 0, flg)], 200);
    let b = taker(comm_b, vec![(s2, 0, flg), (s1, 0, flg)], 200);
    wait_until("the deadlock", || ncount(s1, 0) == 1 && ncount(s2, 0) == 1);
    (a, b)
}

#[test]
fn an_abba_deadlock_is_reported_once_and_gone_when_one_side_is_killed() {
    let (k1, k2) = (unique_key(0x21), unique_key(0x22));
    let (s1, s2) = (Set::keyed(k1, 1, 1), Set::keyed(k2, 1, 1));
    let (k1, k2) = (format!("{k1:#x}"), format!("{k2:#x}"));
    let (tracer, _stderr) = trace_keys(&k1, &k2, "6");
    let (a, b) = abba(c"abba-a", c"abba-b", s1.0, s2.0, UNDO);
    // A holds s1 and waits on s2, B the other way round; the chain starts at the lower pid.
    let mut want = vec![
        (a.pid as u64, s2.0 as i64, s1.0 as i64),
        (b.pid as u64, s1.0 as i64, s2.0 as i64),
    ];
    want.sort();

    // Started after: one deadlock line, the right chain.
    let lines = ipctrace_json(&[
        "objects", "--type", "sem", "--key", &k1, "--key", &k2, "--json",
    ]);
    let found = deadlocks(&lines);
    assert_eq!(found.len(), 1, "{lines:?}");
    assert_eq!(chain(found[0]), want);
    assert_eq!(found[0]["possible"], false);

    // Let the trace see it on three ticks (it reports a cycle that lasted two), then kill A:
    // its exit gives s1 back, which wakes B.
    std::thread::sleep(Duration::from_millis(3200));
    kill(&a);
    wait_until("B to take s1", || {
        semval(s1.0, 0) == 0 && ncount(s1.0, 0) == 0
    });
    let lines = ipctrace_json(&[
        "objects", "--type", "sem", "--key", &k1, "--key", &k2, "--json",
    ]);
    assert!(deadlocks(&lines).is_empty(), "{lines:?}");
    assert_eq!(
        pids(&sem_line(&lines, s1.0)["sems"][0]["holders"]),
        [b.pid as u64]
    );
    let out = tracer.wait_with_output().unwrap();
    let lines = json_lines(&out.stdout);
    let found = deadlocks(&lines);
    assert_eq!(found.len(), 1, "reported once: {found:?}");
    assert_eq!(chain(found[0]), want);
    let woken: Vec<_> = lines
        .iter()
        .filter(|l| l["pid"] == b.pid && l["id"] == s1.0 && l["op"] == "semtimedop")
        .collect();
    assert_eq!(woken.len(), 1, "{lines:?}");
    assert_eq!(woken[0]["waker"]["pid"], a.pid, "{}", woken[0]);
    assert_eq!(woken[0]["waker"]["comm"], "abba-a");
    kill(&b);
}

#[test]
fn trace_reports_a_deadlock_it_knows_only_from_the_calls_it_traced() {
    // Without SEM_UNDO the kernel keeps no record of who holds: only trace's ledger of the
    // takes it saw names the holders. After the cycle closes nothing more is called, so the
    // ledger is known current to the waits only from the ring buffer found empty.
    let (k1, k2) = (unique_key(0x23), unique_key(0x24));
    let (s1, s2) = (Set::keyed(k1, 1, 1), Set::keyed(k2, 1, 1));
    let (k1, k2) = (format!("{k1:#x}"), format!("{k2:#x}"));
    let (tracer, _stderr) = trace_keys(&k1, &k2, "4");
    // As abba(), but the cycle is watched for in /proc: a GETNCNT would be a traced call.
    let a = taker(c"ledger-a", vec![(s1.0, 0, 0), (s2.0, 0, 0)], 200);
    let b = taker(c"ledger-b", vec![(s2.0, 0, 0), (s1.0, 0, 0)], 200);
    wait_until("the deadlock", || {
        [&a, &b].iter().all(|c| {
            std::fs::read_to_string(format!("/proc/{}/syscall", c.pid))
                .is_ok_and(|s| s.starts_with(&format!("{} ", libc::SYS_semtimedop)))
        })
    });
    let mut want = vec![
        (a.pid as u64, s2.0 as i64, s1.0 as i64),
        (b.pid as u64, s1.0 as i64, s2.0 as i64),
    ];
    want.sort();
    let out = tracer.wait_with_output().unwrap();
    kill(&a);
    kill(&b);
    let lines = json_lines(&out.stdout);
    let found = deadlocks(&lines);
    assert_eq!(found.len(), 1, "{lines:?}");
    assert_eq!(chain(found[0]), want);
    assert_eq!(found[0]["possible"], false, "no call was lost");
}

#[test]
fn a_cycle_of_three_is_one_deadlock() {
    let keys: Vec<i32> = (0..3).map(|i| unique_key(0x31 + i)).collect();
    let sets: Vec<Set> = keys.iter().map(|&k| Set::keyed(k, 1, 1)).collect();
    let ids: Vec<i32> = sets.iter().map(|s| s.0).collect();
    let comms = [c"ring-0", c"ring-1", c"ring-2"];
    let ring: Vec<Child> = (0..3)
        .map(|i| {
            taker(
                comms[i],
                vec![(ids[i], 0, UNDO), (ids[(i + 1) % 3], 0, UNDO)],
                200,
            )
        })
        .collect();
    wait_until("the ring", || ids.iter().all(|&id| ncount(id, 0) == 1));
    let mut args = vec![
        "objects".to_string(),
        "--type".into(),
        "sem".into(),
        "--json".into(),
    ];
    for k in &keys {
        args.extend(["--key".to_string(), format!("{k:#x}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines = ipctrace_json(&args);
    let found = deadlocks(&lines);
    assert_eq!(found.len(), 1, "{lines:?}");
    // Process i holds set i and waits on set i+1; the chain starts at the lowest pid.
    let mut want: Vec<(u64, i64, i64)> = (0..3)
        .map(|i| (ring[i].pid as u64, ids[(i + 1) % 3] as i64, ids[i] as i64))
        .collect();
    let start = (0..3).min_by_key(|&i| ring[i].pid).unwrap();
    want.rotate_left(start);
    assert_eq!(chain(found[0]), want);
    for child in &ring {
        kill(child);
    }
}

#[test]
fn a_counting_semaphore_of_three_has_three_holders() {
    let key = unique_key(0x41);
    let set = Set::keyed(key, 1, 3);
    let id = set.0;
    let holders: Vec<Child> = [c"pool-a", c"pool-b", c"pool-c"]
        .into_iter()
        .map(|comm| taker(comm, vec![(id, 0, UNDO)], 0))
        .collect();
    wait_until("three takes", || semval(id, 0) == 0);
    let waiter = taker(c"pool-wait", vec![(id, 0, UNDO)], 0);
    wait_until("the waiter", || ncount(id, 0) == 1);
    let lines = ipctrace_json(&[
        "objects",
        "--type",
        "sem",
        "--key",
        &format!("{key:#x}"),
        "--json",
    ]);
    let sem = &sem_line(&lines, id)["sems"][0];
    let mut want: Vec<u64> = holders.iter().map(|c| c.pid as u64).collect();
    want.sort();
    assert_eq!(pids(&sem["holders"]), want, "{sem}");
    let units: u64 = sem["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["units"].as_u64().unwrap())
        .sum();
    assert_eq!(units, 3);
    assert_eq!(pids(&sem["waiters"]), [waiter.pid as u64]);
    for child in holders.iter().chain([&waiter]) {
        kill(child);
    }
}

#[test]
fn a_producer_and_a_consumer_hold_nothing_and_never_deadlock() {
    let key = unique_key(0x51);
    let set = Set::keyed(key, 1, 0);
    let id = set.0;
    let key_arg = format!("{key:#x}");
    let (tracer, _stderr) = start_ipctrace(&[
        "objects",
        "--type",
        "sem",
        "--key",
        &key_arg,
        "--json",
        "--duration",
        "1.5",
    ]);
    // The consumer takes what the producer gives, without SEM_UNDO, and waits in between.
    let consumer = spawn(c"consumer", move || loop {
        if semop(id, 0, -1, 0) != 0 {
            return 1;
        }
    });
    consumer.release();
    let producer = spawn(c"producer", move || loop {
        // SAFETY: usleep is async-signal-safe.
        unsafe { libc::usleep(20_000) };
        if semop(id, 0, 1, 0) != 0 {
            return 1;
        }
    });
    producer.release();
    let out = tracer.wait_with_output().unwrap();
    let lines = json_lines(&out.stdout);
    let sem = &sem_line(&lines, id)["sems"][0];
    assert!(sem["holders"].as_array().unwrap().is_empty(), "{sem}");
    assert!(deadlocks(&lines).is_empty());
    // Nor does a look from outside invent one (the consumer is the last to operate).
    let lines = ipctrace_json(&["objects", "--type", "sem", "--key", &key_arg, "--json"]);
    assert!(sem_line(&lines, id)["sems"][0]["holders"]
        .as_array()
        .unwrap()
        .is_empty());
    let lines = ipctrace_json(&["lat", "--key", &key_arg, "--json", "--duration", "0.5"]);
    assert!(
        lines
            .iter()
            .all(|l| l["holders"].as_array().is_none_or(|h| h.is_empty())),
        "{lines:?}"
    );
    kill(&producer);
    kill(&consumer);
}

#[test]
fn a_mutex_without_sem_undo_is_held_as_traced_or_as_a_guess() {
    let key = unique_key(0x61);
    let set = Set::keyed(key, 1, 1);
    let id = set.0;
    let key_arg = format!("{key:#x}");
    let (tracer, _stderr) = start_ipctrace(&[
        "objects",
        "--type",
        "sem",
        "--key",
        &key_arg,
        "--json",
        "--duration",
        "1.5",
    ]);
    let holder = taker(c"hold-plain", vec![(id, 0, 0)], 0);
    wait_until("the take", || semval(id, 0) == 0);
    let waiter = taker(c"wait-plain", vec![(id, 0, 0)], 0);
    wait_until("the waiter", || ncount(id, 0) == 1);
    let out = tracer.wait_with_output().unwrap();
    let lines = json_lines(&out.stdout);
    let h = &sem_line(&lines, id)["sems"][0]["holders"];
    assert_eq!(pids(h), [holder.pid as u64], "{h}");
    assert_eq!(h[0]["source"], "traced");

    // From outside the kernel keeps no record: the last-op pid, alive, is the guess.
    let lines = ipctrace_json(&["objects", "--type", "sem", "--key", &key_arg, "--json"]);
    let h = &sem_line(&lines, id)["sems"][0]["holders"];
    assert_eq!(pids(h), [holder.pid as u64], "{h}");
    assert_eq!(h[0]["source"], "inferred");
    assert!(h[0]["why"].as_str().unwrap().starts_with("probably"));
    kill(&waiter);
    kill(&holder);

    // A deadlock resting on guesses is a possible one.
    let (k1, k2) = (unique_key(0x62), unique_key(0x63));
    let (s1, s2) = (Set::keyed(k1, 1, 1), Set::keyed(k2, 1, 1));
    let (a, b) = abba(c"plain-a", c"plain-b", s1.0, s2.0, 0);
    let lines = ipctrace_json(&[
        "objects",
        "--type",
        "sem",
        "--key",
        &format!("{k1:#x}"),
        "--key",
        &format!("{k2:#x}"),
        "--json",
    ]);
    let found = deadlocks(&lines);
    assert_eq!(found.len(), 1, "{lines:?}");
    assert_eq!(found[0]["possible"], true);
    kill(&a);
    kill(&b);
}
