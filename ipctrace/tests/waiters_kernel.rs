//! `objects --watch` names every waiter the kernel counts: children that start waiting on a
//! semaphore or an empty queue right as ipctrace starts (while its first look at /proc runs)
//! must all be named, by pid, in every report once they wait. Needs root; nothing is skipped.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

const WAITERS: usize = 20;

/// Runs `objects --watch 1 --json` on object `id` of `kind`, releases `children` (each blocks
/// on it) right after the tracer said it traces, and hands back its lines on that object.
/// `extra`: more arguments.
fn watch_while_they_block(
    kind: &str,
    id: i32,
    children: &[Child],
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let id_text = id.to_string();
    let mut args = vec![
        "objects", "--watch", "1", "--json", "--type", kind, "--id", &id_text,
    ];
    args.extend(extra);
    let (tracer, _stderr) = start_ipctrace(&args);
    for c in children {
        c.release();
    }
    std::thread::sleep(Duration::from_millis(3500));
    // SAFETY: signals our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let out = tracer.wait_with_output().unwrap();
    for c in children {
        // SAFETY: ends our own children.
        unsafe { libc::kill(c.pid as i32, libc::SIGKILL) };
        c.wait();
    }
    json_lines(&out.stdout)
        .into_iter()
        .filter(|l| l["id"] == id && l["type"] == kind)
        .collect()
}

fn pids_of(waiters: &serde_json::Value) -> BTreeSet<u64> {
    waiters
        .as_array()
        .unwrap_or_else(|| panic!("no list of waiters: {waiters}"))
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect()
}

/// `waiters` children that each take a unit of semaphore 0 of `semid`, which stays 0.
fn semaphore_waiters(semid: i32) -> Vec<Child> {
    (0..WAITERS)
        .map(|_| {
            // SAFETY (the child): semop only.
            spawn(c"it-semwait", move || unsafe {
                let mut take = [sembuf(0, -1, 0)];
                libc::semop(semid, take.as_mut_ptr(), 1)
            })
        })
        .collect()
}

/// Every report once the kernel counts all the children names exactly them.
fn assert_all_named(lines: &[serde_json::Value], children: &[Child]) {
    let expected: BTreeSet<u64> = children.iter().map(|c| c.pid as u64).collect();
    let settled: Vec<_> = lines
        .iter()
        .skip_while(|l| l["sems"][0]["ncount"] != WAITERS)
        .collect();
    assert!(
        settled.len() >= 2,
        "the kernel counted {WAITERS} waiters in few reports: {lines:?}"
    );
    let short: Vec<(u64, usize)> = settled
        .iter()
        .map(|l| &l["sems"][0])
        .map(|s| (s["ncount"].as_u64().unwrap(), pids_of(&s["waiters"])))
        .filter(|(_, named)| *named != expected)
        .map(|(counted, named)| (counted, named.len()))
        .collect();
    assert!(
        short.is_empty(),
        "reports, once all {WAITERS} waited, whose waiters were not the {WAITERS} children \
         (counted, named): {short:?} of {}",
        settled.len()
    );
}

#[test]
fn every_semaphore_waiter_that_starts_with_the_tracer_is_named() {
    // SAFETY: a private set this test owns; its semaphore stays 0, so every take sleeps.
    let semid = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    assert!(semid >= 0);
    let _cleanup = Removal::sem(semid);
    let children = semaphore_waiters(semid);
    let lines = watch_while_they_block("sem", semid, &children, &[]);
    assert_all_named(&lines, &children);
}

#[test]
fn waiters_are_named_after_privileges_are_dropped() {
    // --user nobody may not read root's /proc/<pid>/syscall: the calls in flight still name
    // them. The set is readable by all, so that nobody reads its counts.
    // SAFETY: a private set this test owns; its semaphore stays 0, so every take sleeps.
    let semid = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o666) };
    assert!(semid >= 0);
    let _cleanup = Removal::sem(semid);
    let children = semaphore_waiters(semid);
    let lines = watch_while_they_block("sem", semid, &children, &["--user", "nobody"]);
    assert_all_named(&lines, &children);
}

#[test]
fn every_receiver_waiting_on_an_empty_queue_is_named() {
    // SAFETY: a private queue this test owns, left empty, so every receive sleeps.
    let msqid = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(msqid >= 0);
    let _cleanup = Removal::msg(msqid);
    let children: Vec<Child> = (0..WAITERS)
        .map(|_| {
            // SAFETY (the child): msgrcv into its own buffer only.
            spawn(c"it-rcvwait", move || unsafe {
                let mut m = Message::<8> {
                    mtype: 0,
                    text: [0; 8],
                };
                libc::msgrcv(msqid, (&mut m as *mut Message<8>).cast(), 8, 0, 0) as i32
            })
        })
        .collect();
    let expected: BTreeSet<u64> = children.iter().map(|c| c.pid as u64).collect();
    let lines = watch_while_they_block("msg", msqid, &children, &[]);
    // The kernel counts no queue waiters: after the first report, every one waits.
    let reports: Vec<BTreeSet<u64>> = lines
        .iter()
        .skip(1)
        .map(|l| pids_of(&l["waiters"]))
        .collect();
    assert!(reports.len() >= 2, "{lines:?}");
    for named in &reports {
        assert_eq!(named, &expected, "the receivers asleep on the queue");
    }
    for l in lines.iter().skip(1) {
        for w in l["waiters"].as_array().unwrap() {
            assert_eq!(
                (&w["op"], &w["comm"]),
                (&"msgrcv".into(), &"it-rcvwait".into())
            );
        }
    }
}
